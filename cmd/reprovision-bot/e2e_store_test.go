package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// One process serves a store at a time. A second bot started on the same
// REPROVISION_DB, here while the first has a Graph call in flight, exits at
// once with an error naming the file and the process serving it, without
// connecting to Slack or touching the requests: it used to run its start-up
// recovery and mark the call in flight outcome_unknown, losing Graph's 204.
// The audit command still reads the store while the bot serves it.
func TestSecondBotOnTheSameStoreExitsAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.QueueReprovision(cloudPCID, fakes.Response{Status: http.StatusNoContent, Delay: 3 * time.Second})
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	r := ref(t, prompt)
	h.approveWithSignIn(prompt)
	h.slack.WaitFor(t, wait, "the Graph call is in flight", func() bool { return len(h.reprovisionPOSTs()) == 1 })

	connections := h.slack.Connections()
	var stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	begin := time.Now()
	go func() { done <- run(ctx, func(k string) string { return h.env[k] }, &stderr) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		cancel()
		<-done
		t.Fatalf("a second bot on the same REPROVISION_DB still ran after 5 s; its log:\n%s", stderr.String())
	}
	took := time.Since(begin)
	t.Logf("the second bot returned after %s: %v", took, err)
	if err == nil {
		t.Fatal("the second bot returned nil, want an error")
	}
	for _, want := range []string{h.env["REPROVISION_DB"], "in use", fmt.Sprintf("pid %d", os.Getpid()),
		"only one process may serve a store at a time"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if n := h.slack.Connections(); n != connections {
		t.Errorf("the second bot connected to Socket Mode (%d connections, was %d)", n, connections)
	}
	if inFlight := !strings.Contains(strings.Join(h.dmsTo(requesterID), "\n"), "Reprovision started"); !inFlight {
		t.Log("the Graph call had already been answered when the second bot returned (slow machine?)")
	}

	// The audit command reads while the bot serves the store.
	if got := eventsOf(h.auditTrail(), r, "approved"); len(got) != 1 {
		t.Errorf("audit while the bot runs: %d approved records for %s, want 1", len(got), r)
	}

	// The first bot keeps serving: Graph's answer to the call in flight is
	// kept and told.
	h.waitDM(requesterID, "Reprovision started")
	h.waitPrompt(prompt.TS, "Reprovision started")
	h.waitAudit(r, "succeeded", nil)
	if got := eventsOf(h.auditTrail(), r, "outcome_unknown"); len(got) != 0 {
		t.Errorf("the call in flight was recorded outcome_unknown: %+v", got)
	}
	for _, m := range h.dmsTo(requesterID) {
		if strings.Contains(m, "Outcome unknown") {
			t.Errorf("the requester was told %q", m)
		}
	}
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}
	// Once the first stops, the store can be served again.
	if _, err := h.stop(); err != nil {
		t.Fatalf("the first bot returned %v", err)
	}
	h.start()
}

// The audit command only reads: on a file that is not a store (here empty)
// it fails saying so, and leaves the file as it was instead of creating the
// schema in it.
func TestAuditWritesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.db")
	for path, want := range map[string]string{empty: "no schema", missing: "no store"} {
		var out strings.Builder
		err := runAudit(context.Background(), nil, func(k string) string {
			if k == "REPROVISION_DB" {
				return path
			}
			return ""
		}, &out)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("audit of %s: %v, want an error naming it and saying %q", filepath.Base(path), err, want)
		}
	}
	if fi, err := os.Stat(empty); err != nil || fi.Size() != 0 {
		t.Errorf("audit wrote to the empty file: size %d, %v", fi.Size(), err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("audit left files behind: %v", names)
	}
}

// As an operator sees it: a second reprovision-bot process on the same
// REPROVISION_DB exits with status 1 at once, naming the file and the pid of
// the process serving it, which keeps running.
func TestBinarySecondProcessOnTheSameStoreExits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env, s := binaryEnv(t, dir)
	env = append(env, "REPROVISION_DB="+filepath.Join(dir, "reprovision.db"))
	first := exec.Command(binary(t))
	first.Env = env
	var firstErr syncBuffer
	first.Stderr = &firstErr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Wait() }()
	defer func() {
		first.Process.Kill()
		<-firstDone
	}()
	s.WaitConnected(t, wait)
	connections := s.Connections()

	second := exec.Command(binary(t))
	second.Env = env
	begin := time.Now()
	out, err := runWithin(second, 10*time.Second)
	took := time.Since(begin)
	t.Logf("second process: %v after %s: %s", err, took, out)
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 {
		t.Errorf("second process: %v, want exit status 1", err)
	}
	for _, want := range []string{filepath.Join(dir, "reprovision.db"), fmt.Sprintf("another process (pid %d", first.Process.Pid)} {
		if !strings.Contains(out, want) {
			t.Errorf("second process's message does not mention %q:\n%s", want, out)
		}
	}
	if took > 5*time.Second {
		t.Errorf("the second process took %s to exit", took)
	}
	if n := s.Connections(); n != connections {
		t.Errorf("the second process connected to Socket Mode")
	}

	// The first still serves, and stops cleanly.
	select {
	case err := <-firstDone:
		t.Fatalf("the first process exited: %v\n%s", err, firstErr.String())
	default:
	}
	if err := first.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-firstDone:
		firstDone <- err // for the deferred Kill
		if err != nil {
			t.Errorf("the first process exited with %v after SIGTERM\n%s", err, firstErr.String())
		}
	case <-time.After(10 * time.Second):
		t.Errorf("the first process still runs 10 s after SIGTERM")
	}
}

// runWithin runs cmd and returns its combined output, killing it after d.
func runWithin(cmd *exec.Cmd, d time.Duration) (string, error) {
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("still running after %s", d)
	}
}

// Two bot processes started at the same moment on a store that does not
// exist yet: one creates it and serves, the other exits with the "served by
// another process" error, never with SQLite's "database is locked" (schema
// creation used to fail one of them with SQLITE_BUSY at once). A few rounds,
// since it is a race.
func TestBinaryTwoProcessesCreatingOneStore(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		dir := t.TempDir()
		env, s := binaryEnv(t, dir)
		env = append(env, "REPROVISION_DB="+filepath.Join(dir, "new.db"))
		type result struct {
			out string
			err error
		}
		var cmds [2]*exec.Cmd
		done := make(chan result, 2)
		for i := range cmds {
			c := exec.Command(binary(t))
			c.Env = env
			out := &syncBuffer{}
			c.Stdout, c.Stderr = out, out
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			cmds[i] = c
			go func() {
				err := c.Wait()
				done <- result{out.String(), err}
			}()
		}
		// The loser exits at once; the winner serves until stopped.
		first := <-done
		if exit, ok := first.err.(*exec.ExitError); !ok || exit.ExitCode() != 1 || !strings.Contains(first.out, "another process (pid") {
			t.Errorf("round %d: the process that exited: %v\n%s", round, first.err, first.out)
		}
		for _, bad := range []string{"database is locked", "SQLITE_BUSY"} {
			if strings.Contains(first.out, bad) {
				t.Errorf("round %d: %q in\n%s", round, bad, first.out)
			}
		}
		s.WaitConnected(t, wait)
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGTERM) // the one that exited: an error, ignored
		}
		select {
		case second := <-done:
			if second.err != nil {
				t.Errorf("round %d: the serving process after SIGTERM: %v\n%s", round, second.err, second.out)
			}
		case <-time.After(15 * time.Second):
			for _, c := range cmds {
				c.Process.Kill()
			}
			t.Fatalf("round %d: the serving process still runs 15 s after SIGTERM", round)
		}
	}
}
