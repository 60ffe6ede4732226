package main

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// The batches issue's proof: a SIGKILL midway through a batch and Resume
// after the restart send exactly one POST per Cloud PC sent. The built
// binary runs twice, one process after the other, on one SQLite file.

// crashBatchSize is how many Cloud PCs the batch lists (one approval: at
// most REPROVISION_BATCH_TWO_PERSON, 10 by default).
const crashBatchSize = 8

// crashHeld are the members (0-based, in the order asked) whose POST the
// fake Graph holds unanswered: with 2 calls in flight at a time, the
// first three are answered, then both workers wait on these two and the
// last three have not had their turn when the process is killed.
var crashHeld = map[int]bool{3: true, 4: true}

// crashCloudPCID is the id of the batch's i-th Cloud PC (0-based).
func crashCloudPCID(i int) string {
	return fmt.Sprintf("%08x-0b0b-4c4c-8d8d-0e0e0f0f1010", 0xc0ffee00+i)
}

// crashDevice is its device name.
func crashDevice(i int) string { return fmt.Sprintf("CPC-CRASH-%02d", i+1) }

// crashThreadHas reports whether a reply under the prompt names device
// and contains want.
func crashThreadHas(h *harness, prompt fakes.Message, device, want string) bool {
	for _, text := range h.threadReplies(prompt) {
		if strings.Contains(text, device+"`") && strings.Contains(text, want) {
			return true
		}
	}
	return false
}

func crashWaitThread(h *harness, prompt fakes.Message, device, want string) {
	h.t.Helper()
	h.slack.WaitFor(h.t, wait, fmt.Sprintf("a thread reply: %s %s", device, want), func() bool {
		return crashThreadHas(h, prompt, device, want)
	})
}

// crashStartAndConnect starts a bot process on h's store and waits until
// it has a Socket Mode connection of its own.
func crashStartAndConnect(t *testing.T, h *harness) *replica {
	t.Helper()
	before := h.slack.Connections()
	r := h.startReplica(t)
	h.slack.WaitFor(t, wait, "the bot process connects to Socket Mode", func() bool { return h.slack.Connections() > before })
	h.slack.WaitConnected(t, wait)
	return r
}

func TestBatchCrashSIGKILLMidwayThenResume(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.env["REPROVISION_BATCH_PARALLEL"] = "2"
	h.env["REPROVISION_GRAPH_RPS"] = "20"
	h.env["REPROVISION_NOTIFY_USER"] = "false"
	h.env["REPROVISION_TRACK_FOR"] = "0"
	var ids []string
	for i := range crashBatchSize {
		ids = append(ids, crashCloudPCID(i))
		h.graph.AddCloudPC(fakes.CloudPC{ID: crashCloudPCID(i), DisplayName: "Cloud PC " + crashDevice(i),
			UserPrincipalName: fmt.Sprintf("user%d@contoso.example", i+1), ManagedDeviceName: crashDevice(i), Status: "provisioned"})
		if crashHeld[i] {
			// Held far longer than the test: answered only if nobody hangs up.
			h.graph.QueueReprovision(crashCloudPCID(i), fakes.Response{Status: http.StatusNoContent, Delay: 10 * time.Minute})
		}
	}

	first := crashStartAndConnect(t, h)
	prompt := h.ask(strings.Join(ids, ",") + " " + reason)
	r := ref(t, prompt)
	h.approveWithSignIn(prompt)

	// The first three are answered and stored; the next two are in flight.
	for i := range 3 {
		crashWaitThread(h, prompt, crashDevice(i), "sent")
	}
	h.graph.WaitFor(t, wait, "the held POSTs are in flight", func() bool {
		posts := h.graph.ReprovisionPosts()
		return posts[crashCloudPCID(3)].Posts == 1 && posts[crashCloudPCID(4)].Posts == 1
	})
	if posts := h.reprovisionPOSTs(); len(posts) != 5 {
		t.Fatalf("%d reprovision POSTs before the kill, want 5 (3 answered, 2 held): %v", len(posts), posts)
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-first.done
	first.done <- err // for the cleanup
	t.Logf("first process: %v", err)

	// A new process on the same store: the two in flight are outcome
	// unknown, the three not sent wait, and the approver is asked.
	crashStartAndConnect(t, h)
	halted := h.waitDMMessage(approverID, `"block_id":"batch_halted:`+r+`"`)
	haltedText := halted.Text + " " + blocks(halted)
	for _, want := range []string{"restarted", "3 Cloud PCs not sent yet", "2 outcome unknown", `"action_id":"resume_batch"`, `"action_id":"stop_batch"`} {
		if !strings.Contains(haltedText, want) {
			t.Errorf("the halted DM lacks %q:\n%s", want, haltedText)
		}
	}
	for i := range crashHeld {
		crashWaitThread(h, prompt, crashDevice(i), "outcome unknown")
		h.waitAudit(r, "batch_member", func(a auditLine) bool {
			return a.Details["cloud_pc_id"] == crashCloudPCID(i) && a.Details["result"] == "outcome_unknown"
		})
	}
	h.waitPrompt(prompt.TS, `"action_id":"resume_batch"`)
	if posts := h.reprovisionPOSTs(); len(posts) != 5 {
		t.Errorf("%d reprovision POSTs after the restart, before Resume; want still 5", len(posts))
	}

	// Resume: a fresh device-code sign-in, then the three waiting are sent.
	codes := len(h.entra.DeviceCodes())
	h.clickOn(approverID, "resume_batch", "batch_halted:", r, halted)
	h.signIn(approverUPN)
	if n := len(h.entra.DeviceCodes()); n != codes+1 || n != 2 {
		t.Errorf("%d device-code flows in all (%d before Resume), want 2: Resume signs in afresh", n, codes)
	}
	h.waitAudit(r, "batch_resumed", nil)
	h.waitAudit(r, "succeeded", nil)
	for i := 5; i < crashBatchSize; i++ {
		crashWaitThread(h, prompt, crashDevice(i), "sent")
	}

	// Across both processes: one POST per Cloud PC sent, none for the two
	// in flight at the kill beyond that one.
	posts := h.graph.ReprovisionPosts()
	for i := range crashBatchSize {
		got := posts[crashCloudPCID(i)]
		want := fakes.PostCount{Posts: 1, Accepted: 1}
		if crashHeld[i] {
			want.Accepted = 0 // the caller hung up (killed)
		}
		if got != want {
			t.Errorf("%s: %+v reprovision POSTs, want %+v", crashDevice(i), got, want)
		}
	}
	if len(posts) != crashBatchSize {
		t.Errorf("reprovision POSTs for %d Cloud PCs, want %d: %v", len(posts), crashBatchSize, posts)
	}
	end := h.waitAudit(r, "succeeded", nil)
	if end.Details["sent"] != "6" || end.Details["outcome_unknown"] != "2" {
		t.Errorf("the batch's end counts %v, want 6 sent and 2 outcome unknown", end.Details)
	}
	final := h.promptNow(prompt.TS)
	for i := range crashHeld {
		if !strings.Contains(blocks(final), crashDevice(i)+"` (user") {
			t.Errorf("the prompt does not list %s", crashDevice(i))
		}
	}
	if n := strings.Count(blocks(final), "outcome unknown"); n < 2 {
		t.Errorf("the final prompt shows %d outcome unknown, want the 2 in flight at the kill:\n%s", n, blocks(final))
	}
	// No more POSTs come later (say, from a stray retry).
	time.Sleep(500 * time.Millisecond)
	if n := len(h.reprovisionPOSTs()); n != crashBatchSize {
		t.Errorf("%d reprovision POSTs at the end, want %d", n, crashBatchSize)
	}
}
