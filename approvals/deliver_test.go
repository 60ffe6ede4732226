package approvals_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// slackSays is a delivery error with Slack's Retry-After.
type slackSays struct{ after time.Duration }

func (e slackSays) Error() string             { return fmt.Sprintf("ratelimited (retry after %v)", e.after) }
func (e slackSays) RetryAfter() time.Duration { return e.after }

func (h *harness) undelivered() []approvals.Outgoing {
	h.t.Helper()
	out, err := h.store.Store.Due(context.Background(), time.Now().Add(100*365*24*time.Hour), "", 100)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// Chat fails while a denial is announced: the requester's notice and the
// prompt's redraw stay in the outbox and go out once chat works again, once.
func TestNoticesRetriedUntilDelivered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	down := errors.New("slack: 503 Service Unavailable")
	h.notes.set(func(n *recorder) { n.tellErr, n.updateErr = down, down })
	if _, err := h.w.Deny(ctx, a1, r.ID, "not now"); err != nil {
		t.Fatal(err)
	}
	if got := h.undelivered(); len(got) != 2 || got[0].Attempts != 1 || got[0].LastError != down.Error() {
		t.Fatalf("outbox after the failed announcement: %+v, want the redraw and the notice, tried once", got)
	}
	h.notes.set(func(n *recorder) { n.tellErr, n.updateErr = nil, nil })
	// The loop tries again after the first backoff (2 s).
	h.waitFor("the notice delivered", func() bool { return len(h.undelivered()) == 0 })
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateDenied), note(alice, approvals.NoticeStatus, approvals.StateDenied))
	if last := h.notes.lastPrompt(t, r.ID); last.State != approvals.StateDenied {
		t.Errorf("prompt shows %s", last.State)
	}
	// Delivered: not sent again.
	time.Sleep(2500 * time.Millisecond)
	if got := len(h.notes.tellsOf(r.ID)); got != 2 {
		t.Errorf("%d tells (one failed, one delivered), want 2", got)
	}
}

// Slack's Retry-After is honoured: no attempt before it.
func TestNoticesHonourRetryAfter(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	h.notes.set(func(n *recorder) { n.tellErr = slackSays{time.Hour} })
	before := time.Now()
	if _, err := h.w.Deny(ctx, a1, r.ID, "not now"); err != nil {
		t.Fatal(err)
	}
	got := h.undelivered()
	if len(got) != 1 || got[0].Kind != approvals.OutgoingNotice {
		t.Fatalf("outbox: %+v, want the notice", got)
	}
	if wait := got[0].NextAt.Sub(before); wait < time.Hour || wait > time.Hour+time.Minute {
		t.Errorf("next attempt in %v, want Retry-After (1h)", wait)
	}
}

// A notice no retry can deliver is dropped, and the trail says so.
func TestUndeliverableNoticeDropped(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	h.notes.set(func(n *recorder) {
		n.tellErr = fmt.Errorf("%w: channel_not_found", approvals.ErrUndeliverable)
	})
	if _, err := h.w.Deny(ctx, a1, r.ID, "not now"); err != nil {
		t.Fatal(err)
	}
	if got := h.undelivered(); len(got) != 0 {
		t.Errorf("outbox: %+v, want empty", got)
	}
	dropped := h.eventsOf(r.ID, approvals.EventNoticeDropped)
	if len(dropped) != 1 || dropped[0].Details["user"] != alice || dropped[0].Details["notice"] != "status" {
		t.Errorf("drop records: %+v", dropped)
	}
}

// What a stopped process could not deliver, the next one delivers.
func TestNoticesDeliveredAfterRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	h.notes.set(func(n *recorder) { n.tellErr, n.updateErr = slackSays{time.Hour}, slackSays{time.Hour} })
	if _, err := h.w.Deny(ctx, a1, r.ID, "not now"); err != nil {
		t.Fatal(err)
	}
	h.stop()
	if got := h.undelivered(); len(got) != 2 {
		t.Fatalf("outbox at the stop: %+v", got)
	}
	h.notes.set(func(n *recorder) { n.tellErr, n.updateErr = nil, nil })
	// Retry-After outlives the process: at the next start the entry is
	// due when it said, and the prompts are redrawn at once regardless.
	redraws := len(h.notes.updatesOf(r.ID))
	h.start()
	h.waitFor("the prompt redrawn", func() bool { return len(h.undelivered()) == 1 })
	if u := h.notes.updatesOf(r.ID); len(u) != redraws+1 || u[len(u)-1].State != approvals.StateDenied {
		t.Errorf("redraws at start: %d, want 1 showing denied", len(u)-redraws)
	}
	got := h.undelivered()
	if len(got) != 1 || got[0].Kind != approvals.OutgoingNotice {
		t.Fatalf("outbox after the start: %+v, want the notice, waiting for its time", got)
	}
	// Make it due now, as an hour passing would.
	if err := h.store.Store.Postpone(ctx, got[0], time.Now(), "test: the hour is over"); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the notice delivered", func() bool { return len(h.undelivered()) == 0 })
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateDenied), note(alice, approvals.NoticeStatus, approvals.StateDenied))
}

// At start the prompts of open and recently settled requests are redrawn:
// whatever was lost, they show the state stored.
func TestPromptsRedrawnAtStart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	pending := h.open(pc1)
	denied := h.open(pc2)
	if _, err := h.w.Deny(ctx, a1, denied.ID, "no"); err != nil {
		t.Fatal(err)
	}
	h.stop()
	before := map[string]int{pending.ID: len(h.notes.updatesOf(pending.ID)), denied.ID: len(h.notes.updatesOf(denied.ID))}
	h.start()
	h.waitFor("both prompts redrawn", func() bool {
		return len(h.notes.updatesOf(pending.ID)) == before[pending.ID]+1 && len(h.notes.updatesOf(denied.ID)) == before[denied.ID]+1
	})
	if last := h.notes.lastPrompt(t, denied.ID); last.State != approvals.StateDenied {
		t.Errorf("denied request's prompt redrawn as %s", last.State)
	}
}

// When the store refuses even the outbox until the stop, a notice is sent
// directly rather than lost.
func TestNoticeSentDirectlyWhenTheOutboxFails(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	h.store.failOps("enqueue")
	if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	// Asked to confirm; the prompt's redraw to "awaiting confirmation" is
	// what cannot be queued.
	h.waitFor("the redraw queued in vain", func() bool { return h.store.failures("enqueue") > 0 })
	if last := h.notes.lastPrompt(t, r.ID); last.State == approvals.StateConfirming {
		t.Fatal("prompt redrawn before the outbox gave up")
	}
	h.stop()
	if last := h.notes.lastPrompt(t, r.ID); last.State != approvals.StateConfirming {
		t.Errorf("prompt shows %s, want awaiting confirmation (sent directly)", last.State)
	}
}

// A Tell that hangs uses up its attempt; the failure is still recorded
// (with a context of its own), so the next try waits for the backoff.
func TestHangingDeliveryIsPostponed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	h.notes.set(func(n *recorder) { n.tellHangs = true })
	if _, err := h.w.Deny(ctx, a1, r.ID, "no"); err != nil {
		t.Fatal(err)
	}
	got := h.undelivered()
	if len(got) != 1 || got[0].Attempts != 1 || !got[0].NextAt.After(time.Now()) {
		t.Fatalf("after a hanging attempt: %+v, want it tried once and due later", got)
	}
	if n := len(h.notes.tellsOf(r.ID)); n != 1 {
		t.Errorf("%d attempts, want 1 before the backoff", n)
	}
}

// A store that reads but does not write (disk full, locked from outside):
// a delivered notice cannot be marked, and is not sent again meanwhile.
func TestDeliveredButNotMarkedIsNotResent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	h.store.failOps("delivered", "postpone")
	if _, err := h.w.Deny(ctx, a1, r.ID, "no"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // two looks of the loop
	if n := len(h.notes.tellsOf(r.ID)); n != 1 {
		t.Errorf("%d DMs with the store refusing to mark them, want 1", n)
	}
	h.store.failOps()
	h.waitFor("the notice marked once the store writes", func() bool { return len(h.undelivered()) == 0 })
	if n := len(h.notes.tellsOf(r.ID)); n != 1 {
		t.Errorf("%d DMs in all, want 1", n)
	}
}

// Start does not wait for chat: what recovery announces goes out through
// the loop, so a hanging Slack cannot hold the start (or the stop).
func TestStartDoesNotWaitForChat(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.seed(pc1, func(r *approvals.Request) { r.DecidedBy = a1 }, approvals.StateApproved)
	h.stop()
	h.notes.set(func(n *recorder) { n.tellHangs = true })
	begin := time.Now()
	w, err := approvals.New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.Start(context.Background())
	if took := time.Since(begin); took > time.Second {
		t.Errorf("Start took %v with Slack hanging", took)
	}
	if got := h.get(r.ID); got.State != approvals.StatePending {
		t.Errorf("state %s after the start, want pending (sign-in lost)", got.State)
	}
	h.waitFor("the loop trying to tell", func() bool { return len(h.notes.tellsOf(r.ID)) > 0 })
	begin = time.Now()
	w.Stop()
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("Stop took %v with the loop waiting on Slack", took)
	}
}

// When chat says no approver can ever get the prompt, the requester is told
// so at once (not that the bot keeps trying).
func TestOpenNoApproverReachable(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.notes.set(func(n *recorder) { n.postErr = fmt.Errorf("%w: user_disabled", approvals.ErrUndeliverable) })
	r, _ := h.w.NewRequest(alice, ops, pc1, "black screen")
	wantRefusal(t, h.w.Open(ctx, r), approvals.RefusedNoApproverReachable)
	if dropped := h.eventsOf(r.ID, approvals.EventNoticeDropped); len(dropped) != 1 || dropped[0].Details["kind"] != "post" {
		t.Errorf("drop records: %+v", dropped)
	}
}

// A process that died between storing a request and queueing its prompt:
// the next start posts it.
func TestPendingRequestWithoutPromptsIsPromptedAtStart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.seed(pc1, nil)
	h.restart()
	h.waitFor("the prompts posted", func() bool { return len(h.get(r.ID).Prompts) == 2 })
	if got := h.eventsOf(r.ID, approvals.EventReprompted); len(got) != 0 {
		t.Errorf("audited as re-prompted to other approvers: %+v", got)
	}
}

// A sign-in failure notice delivered after the request moved on would say
// "approve again" about a done request: it is not sent.
func TestOutdatedNoticeNotSent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.seed(pc1, nil, approvals.StateApproved, approvals.StateConfirming, approvals.StateExecuting, approvals.StateSucceeded)
	if err := h.store.Store.Enqueue(ctx, approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: alice,
		Notice: approvals.NoticeSignInFailed, Why: &approvals.Outcome{Kind: approvals.OutcomeSignInExpired}}); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the entry handled", func() bool { return len(h.undelivered()) == 0 })
	if got := h.notes.tellsOf(r.ID); len(got) != 0 {
		t.Errorf("told %+v about a request that succeeded", got)
	}
}
