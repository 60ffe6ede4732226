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
