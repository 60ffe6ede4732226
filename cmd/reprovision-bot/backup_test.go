package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// envWith is a getenv that knows REPROVISION_DB only.
func envWith(db string) func(string) string {
	return func(k string) string {
		if k == "REPROVISION_DB" {
			return db
		}
		return ""
	}
}

// auditOf runs the audit command on the store at db and returns its
// records.
func auditOf(t *testing.T, db string) []auditLine {
	t.Helper()
	var buf bytes.Buffer
	if err := runAudit(context.Background(), []string{"-format", "jsonl"}, envWith(db), &buf); err != nil {
		t.Fatalf("audit of %s: %v", db, err)
	}
	return parseJSONL(t, buf.String())
}

// key identifies an audit record.
func key(a auditLine) string {
	return fmt.Sprintf("%s|%s|%s|%s|%v", a.Time, a.RequestID, a.Kind, a.Actor, a.Details)
}

// summary matches backup's one line.
var summary = regexp.MustCompile(`^backed up (.+) to (.+): (\d+) bytes, (\d+) requests?, (\d+) audit records? \(schema version (\d+)\)\n$`)

// makeReadOnly takes the write permission away from the file and its
// directory, giving it back when the test ends.
func makeReadOnly(t *testing.T, path string) {
	t.Helper()
	if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.Chmod(dir, 0o755)
		os.Chmod(path, 0o600)
	})
}

// TestBackupWhileTheBotServes: with the bot serving the store (it holds
// the lock) and a reprovision in flight, the built binary's backup, run as
// an operator would in another process, copies the store and prints one
// line. The bot goes on undisturbed. The audit command reads the copy, made
// read-only (0444 in a 0555 directory), with every record committed before
// the backup, creating nothing beside it; and the copy serves with
// sqlite.Open.
func TestBackupWhileTheBotServes(t *testing.T) {
	t.Parallel()
	bin := binary(t) // built first: the backup must happen while the call is in flight
	h := newHarness(t)
	h.graph.QueueReprovision(cloudPCID, fakes.Response{Status: http.StatusNoContent, Delay: 3 * time.Second})
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	r := ref(t, prompt)
	h.approveWithSignIn(prompt)
	h.slack.WaitFor(t, wait, "the Graph call is in flight", func() bool { return len(h.reprovisionPOSTs()) == 1 })
	before := h.auditTrail()

	dir := t.TempDir()
	copyPath := filepath.Join(dir, "backup.db")
	cmd := exec.Command(bin, "backup", "-o", copyPath)
	cmd.Env = append(os.Environ(), "REPROVISION_DB="+h.env["REPROVISION_DB"])
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	begin := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("backup while the bot serves: %v\n%s%s", err, out, stderr.String())
	}
	t.Logf("backup took %s: %s", time.Since(begin), out)
	m := summary.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("backup printed %q, want one summary line", out)
	}
	if m[1] != h.env["REPROVISION_DB"] || m[2] != copyPath || m[4] != "1" || m[6] != "5" {
		t.Errorf("backup summary %q: want the store, %s, 1 request, schema version 5", out, copyPath)
	}
	if n, _ := strconv.Atoi(m[5]); n < len(before) {
		t.Errorf("backup summary counts %d audit records, %d were committed before it", n, len(before))
	}
	if fi, err := os.Stat(copyPath); err != nil || fi.Mode().Perm() != 0o600 || strconv.FormatInt(fi.Size(), 10) != m[3] {
		t.Errorf("the copy: %v, %v; want mode 0600 and the size printed (%s)", fi, err, m[3])
	}

	// The bot was not disturbed: Graph's answer is kept and told.
	h.waitAudit(r, "succeeded", nil)
	h.waitDM(requesterID, "Reprovision started")

	// The copy, read-only, reads with the audit command, with everything
	// committed before the backup; what it holds is what the store held.
	makeReadOnly(t, copyPath)
	copied := auditOf(t, copyPath)
	after := h.auditTrail()
	has := map[string]bool{}
	for _, a := range copied {
		has[key(a)] = true
	}
	for _, a := range before {
		if !has[key(a)] {
			t.Errorf("the copy lacks %+v, committed before the backup", a)
		}
	}
	inStore := map[string]bool{}
	for _, a := range after {
		inStore[key(a)] = true
	}
	for _, a := range copied {
		if !inStore[key(a)] {
			t.Errorf("the copy has %+v, which the store does not", a)
		}
	}
	if len(eventsOf(copied, r, "approved")) != 1 {
		t.Errorf("the copy has no approval of %s", r)
	}
	if got, err := os.ReadDir(dir); err != nil || len(got) != 1 {
		t.Errorf("beside the copy after the audit: %v, %v; want the copy alone", got, err)
	}

	// It is a store: it serves with sqlite.Open.
	os.Chmod(dir, 0o755)
	os.Chmod(copyPath, 0o600)
	s, err := sqlite.Open(copyPath)
	if err != nil {
		t.Fatalf("Open of the copy: %v", err)
	}
	defer s.Close()
	got, err := s.Get(context.Background(), r)
	if err != nil {
		t.Fatalf("the copy lacks %s: %v", r, err)
	}
	t.Logf("in the copy, %s is %s", r, got.State)
}

// TestBackupWhileRequestsAreWritten: a store served in this process takes
// new requests, each with an audit record, as fast as it can, while
// backup copies it. The copy holds every request and record committed
// before the backup began, reads with the audit command, and serves with
// sqlite.Open.
func TestBackupWhileRequestsAreWritten(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "reprovision.db")
	store, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()

	var (
		mu         sync.Mutex
		committed  []string // requests created and recorded, in order
		stop       = make(chan struct{})
		writerDone = make(chan error, 1)
	)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			r := &approvals.Request{
				ID:               approvals.NewReference(),
				Target:           fmt.Sprintf("CPC-user-%06d", i),
				RequesterID:      requesterID,
				RequestChannelID: channelID,
				Approvers:        []string{approverID},
			}
			if err := store.Create(ctx, r); err != nil {
				writerDone <- err
				return
			}
			if err := store.Record(ctx, approvals.Event{Kind: approvals.EventRequested, RequestID: r.ID, Actor: requesterID}); err != nil {
				writerDone <- err
				return
			}
			mu.Lock()
			committed = append(committed, r.ID)
			mu.Unlock()
		}
	}()
	for {
		mu.Lock()
		n := len(committed)
		mu.Unlock()
		if n >= 20 {
			break
		}
		time.Sleep(time.Millisecond)
	}

	copyPath := filepath.Join(t.TempDir(), "backup.db")
	mu.Lock()
	before := slices.Clone(committed)
	mu.Unlock()
	var out bytes.Buffer
	err = runBackup(ctx, []string{"-o", copyPath}, envWith(path), &out)
	mu.Lock()
	during := len(committed) - len(before)
	mu.Unlock()
	close(stop)
	if werr := <-writerDone; werr != nil {
		t.Fatalf("the writer failed: %v", werr)
	}
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	t.Logf("%d requests committed before the backup, %d while it ran; %s", len(before), during, strings.TrimSpace(out.String()))
	m := summary.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("backup printed %q, want one summary line", out.String())
	}

	makeReadOnly(t, copyPath)
	trail := auditOf(t, copyPath)
	recorded := map[string]bool{}
	for _, a := range trail {
		if a.Kind == string(approvals.EventRequested) {
			recorded[a.RequestID] = true
		}
	}
	for _, id := range before {
		if !recorded[id] {
			t.Errorf("the copy's audit trail lacks the record of %s, committed before the backup", id)
		}
	}
	if n, _ := strconv.Atoi(m[5]); n != len(trail) {
		t.Errorf("backup counted %d audit records, the audit command reads %d", n, len(trail))
	}

	os.Chmod(filepath.Dir(copyPath), 0o755)
	os.Chmod(copyPath, 0o600)
	copied, err := sqlite.Open(copyPath)
	if err != nil {
		t.Fatalf("Open of the copy: %v", err)
	}
	defer copied.Close()
	for _, id := range before {
		if _, err := copied.Get(ctx, id); err != nil {
			t.Errorf("the copy lacks %s, committed before the backup: %v", id, err)
		}
	}
	pending, err := copied.ListByState(ctx, approvals.StatePending)
	if err != nil {
		t.Fatal(err)
	}
	if strconv.Itoa(len(pending)) != m[4] {
		t.Errorf("backup counted %s requests, the copy has %d", m[4], len(pending))
	}
}

// TestBackupRefuses: an existing -o file (left as it was), no -o, a stray
// argument, a missing store (neither it nor the copy is created).
func TestBackupRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "reprovision.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	existing := filepath.Join(dir, "existing.db")
	if err := os.WriteFile(existing, []byte("yesterday's backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = runBackup(ctx, []string{"-o", existing}, envWith(path), &out)
	if err == nil || !strings.Contains(err.Error(), existing) || !strings.Contains(err.Error(), "exists") || !strings.Contains(err.Error(), "not overwriting") {
		t.Errorf("backup to an existing file: %v, want an error naming it and saying it exists", err)
	}
	if b, _ := os.ReadFile(existing); string(b) != "yesterday's backup" {
		t.Errorf("the existing file now holds %q", b)
	}
	if out.Len() > 0 {
		t.Errorf("a refused backup printed %q", out.String())
	}

	if err := runBackup(ctx, nil, envWith(path), &out); err == nil || !strings.Contains(err.Error(), "-o FILE is required") {
		t.Errorf("backup without -o: %v, want an error saying -o is required", err)
	}
	if err := runBackup(ctx, []string{"-o", filepath.Join(dir, "a.db"), "b.db"}, envWith(path), &out); err == nil || !strings.Contains(err.Error(), `"b.db"`) {
		t.Errorf("backup with a stray argument: %v, want an error naming it", err)
	}

	missing := filepath.Join(dir, "missing.db")
	copyPath := filepath.Join(dir, "copy.db")
	err = runBackup(ctx, []string{"-o", copyPath}, envWith(missing), &out)
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) ||
		!strings.Contains(err.Error(), "REPROVISION_DB") || !strings.Contains(err.Error(), "no store there") {
		t.Errorf("backup of a missing store: %v, want an error naming REPROVISION_DB and saying there is no store", err)
	}
	for _, p := range []string{missing, copyPath} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the backup of a missing store created %s: %v", filepath.Base(p), err)
		}
	}
	if out.Len() > 0 {
		t.Errorf("the refused backups printed %q", out.String())
	}
}
