package main

import (
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/pgtest"
	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// Issue 10: two bot processes on one PostgreSQL database. One serves; the
// other stands by and takes over within 10 s of the leader's death,
// settling what it left as a restart does.

// otherCloudPCID is a second Cloud PC, for a second request.
const otherCloudPCID = "7c2d9e11-4b5a-4c3d-9e8f-1a2b3c4d5e6f"

// replica is one bot process (the built binary) of a harness's fakes.
type replica struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// startReplica starts the binary with h's environment (its store and fakes).
func (h *harness) startReplica(t *testing.T) *replica {
	t.Helper()
	cmd := exec.Command(binary(t))
	cmd.Env = []string{"SSL_CERT_FILE=" + fakes.WriteCAFile(t, t.TempDir())}
	for k, v := range h.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	r := &replica{t: t, cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	go func() { r.done <- cmd.Wait() }()
	h.t.Cleanup(func() {
		cmd.Process.Kill()
		<-r.done
		if h.t.Failed() {
			h.t.Logf("replica %d log:\n%s", cmd.Process.Pid, r.out.String())
		}
	})
	return r
}

// readyz is the replica's /readyz status and body ("" if not listening yet).
func (r *replica) readyz() (int, string) {
	m := opsAddrLine.FindStringSubmatch(r.out.String())
	if m == nil {
		return 0, ""
	}
	resp, err := http.Get("http://" + m[1] + "/readyz")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 256)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, b.String()
}

func (h *harness) waitReady(r *replica, status int, body string) {
	h.t.Helper()
	h.slack.WaitFor(h.t, wait, "replica /readyz "+body, func() bool {
		code, got := r.readyz()
		return code == status && got == body+"\n"
	})
}

// twoReplicas starts two bot processes on one fresh PostgreSQL database:
// the first serves, the second stands by.
func twoReplicas(t *testing.T) (h *harness, leader, standby *replica) {
	t.Helper()
	h = newHarness(t)
	h.env["REPROVISION_DB"] = pgtest.URL(t)
	leader = h.startReplica(t)
	h.slack.WaitConnected(t, wait)
	h.waitReady(leader, 200, "ready")
	standby = h.startReplica(t)
	h.waitReady(standby, 503, "standby")
	return h, leader, standby
}

// The leader is SIGKILLed while Graph holds its answer to the reprovision
// POST: the standby takes over within 10 s, marks the request outcome
// unknown (never resent), and tells both people; a second request on the
// new leader gets exactly one POST.
func TestLeaderKilledDuringTheCall(t *testing.T) {
	t.Parallel()
	h, first, second := twoReplicas(t)
	if n := h.slack.Connections(); n != 1 {
		t.Fatalf("%d Socket Mode connections with a standby, want 1", n)
	}

	h.graph.QueueReprovision(cloudPCID, fakes.Response{Status: http.StatusNoContent, Delay: time.Minute})
	prompt := h.ask(cloudPCID + " " + reason)
	r := ref(t, prompt)
	h.approveWithSignIn(prompt)
	h.waitPOSTArrives()
	killed := time.Now()
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.waitReady(second, 200, "ready")
	took := time.Since(killed)
	t.Logf("the standby serves %v after the leader was killed", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("takeover took %v, want within 10 s", took)
	}
	h.waitPrompt(prompt.TS, "Outcome unknown")
	h.waitDM(requesterID, "Outcome unknown")
	h.waitDM(approverID, "check the Cloud PC")
	h.waitAudit(r, "outcome_unknown", nil)

	// A second request, on the new leader: one POST.
	h.graph.AddCloudPC(fakes.CloudPC{ID: otherCloudPCID, DisplayName: "Bob's Cloud PC", UserPrincipalName: "bob@contoso.example",
		ManagedDeviceName: "CPC-bob-1", Status: "provisioned"})
	again := h.ask(otherCloudPCID + " " + reason)
	h.approveWithSignIn(again)
	h.waitDM(requesterID, "Reprovision started")
	posts := h.reprovisionPOSTs()
	if len(posts) != 2 || !strings.Contains(posts[0].Path, cloudPCID) || !strings.Contains(posts[1].Path, otherCloudPCID) {
		t.Errorf("reprovision POSTs %v, want one per Cloud PC (the first never resent)", posts)
	}
}

// The leader dies with a request pending: the standby serves the click on
// the prompt the old leader posted.
func TestStandbyServesTheOldPrompt(t *testing.T) {
	t.Parallel()
	h, first, second := twoReplicas(t)
	prompt := h.ask(cloudPCID + " " + reason)
	first.cmd.Process.Signal(syscall.SIGKILL)
	h.waitReady(second, 200, "ready")
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "Reprovision started")
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision POSTs, want 1", n)
	}
}

var leaderLine = regexp.MustCompile(`"msg":"leadership acquired: serving"`)

// A clean stop (SIGTERM) of the leader hands over at once; the standby's
// log says it took over.
func TestLeaderStopHandsOver(t *testing.T) {
	t.Parallel()
	h, first, second := twoReplicas(t)
	first.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-first.done:
		first.done <- err
		if err != nil {
			t.Errorf("the leader exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the leader did not exit after SIGTERM")
	}
	h.waitReady(second, 200, "ready")
	if !leaderLine.MatchString(second.out.String()) {
		t.Error("the standby's log does not say it took over")
	}
}
