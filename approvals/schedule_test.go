package approvals_test

import (
	"errors"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// Nobody decides in time: the prompt says expired, the requester is
// offered to ask again, late clicks are told.
func TestPendingExpires(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withApprovalTTL(100*time.Millisecond))
	r := h.open(pc1)
	expired := h.waitState(r.ID, approvals.StateExpired)
	h.waitFor("requester told", func() bool { return len(h.notes.tellsOf(r.ID)) == 1 })
	if time.Now().Before(r.ExpiresAt) {
		t.Errorf("expired before its deadline %v", r.ExpiresAt)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeExpired, approvals.StateExpired))
	if last := h.notes.lastPrompt(t, r.ID); last.State != approvals.StateExpired {
		t.Errorf("prompt shows %s", last.State)
	}
	h.wantKinds(r.ID, approvals.EventRequested, approvals.EventExpired)
	_, err := h.w.Approve(ctx, a1, r.ID, false)
	if refusal := wantRefusal(t, err, approvals.RefusedHandled); refusal.Request.State != approvals.StateExpired {
		t.Errorf("late approve told %s", refusal.Request.State)
	}
	again, err := h.w.RequestAgain(ctx, alice, expired.ID)
	if err != nil || again.Target != pc1 {
		t.Fatalf("RequestAgain = %+v, %v", again, err)
	}
	if err := h.w.Open(ctx, again); err != nil {
		t.Errorf("the Cloud PC is not free after expiry: %v", err)
	}
	h.stop()
	if h.signIn.count() != 0 || h.graph.getCount() != 0 {
		t.Error("an expired request reached Microsoft")
	}
}

// A click after the deadline, before the scheduler got to it: expired on
// the spot and refused as such.
func TestApproveAfterDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withApprovalTTL(20*time.Millisecond))
	h.store.pauseScheduler()
	r := h.open(pc1)
	h.waitFor("the deadline to pass", func() bool { return time.Now().After(r.ExpiresAt) })
	_, err := h.w.Approve(ctx, a1, r.ID, false)
	if refusal := wantRefusal(t, err, approvals.RefusedExpired); refusal.Action != approvals.ActionApprove || refusal.Ref != r.ID {
		t.Errorf("refusal %+v", refusal)
	}
	if got := h.get(r.ID); got.State != approvals.StateExpired || got.DecidedBy != "" {
		t.Errorf("request %+v", got)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeExpired, approvals.StateExpired))
	_, err = h.w.Deny(ctx, a2, r.ID, "too late")
	wantRefusal(t, err, approvals.RefusedHandled)
	h.stop()
	if h.signIn.count() != 0 {
		t.Error("signed in for an expired request")
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeExpired, approvals.StateExpired))
}

// A confirmation nobody gives expires with the window, freeing the Cloud PC.
func TestConfirmationExpires(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	h.approve(a1, r.ID)
	if _, err := h.store.Store.Update(ctx, r.ID, func(r *approvals.Request) { r.ExpiresAt = time.Now() }); err != nil {
		t.Fatal(err)
	}
	h.open(pc2) // a new request wakes the scheduler
	h.waitState(r.ID, approvals.StateExpired)
	h.waitFor("requester told", func() bool { return len(h.notes.tellsOf(r.ID)) == 1 })
	_, err := h.w.Confirm(ctx, a1, r.ID, "")
	wantRefusal(t, err, approvals.RefusedHandled)
	h.open(pc1)
	h.stop()
	h.wantTold(r.ID, note(alice, approvals.NoticeExpired, approvals.StateExpired))
	if len(h.graph.reprovisioned()) != 0 {
		t.Error("reprovisioned")
	}
}

// Expiries missed while the bot was down are handled at start.
func TestExpiredWhileDown(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.stop()
	// Its outcome is an older version's sentence.
	r := h.seed(pc1, func(r *approvals.Request) {
		r.ExpiresAt = time.Now().Add(-time.Hour)
		r.Outcome = &approvals.Outcome{Text: "The sign-in was declined."}
	})
	waiting := h.seed(pc2, func(r *approvals.Request) { r.ExpiresAt = time.Now().Add(time.Hour) })
	never := h.seed(pc3, func(r *approvals.Request) { r.ExpiresAt = time.Time{} })
	h.start()
	h.waitState(r.ID, approvals.StateExpired)
	h.waitFor("requester told", func() bool { return len(h.notes.tellsOf(r.ID)) == 1 })
	h.stop()
	if got := h.get(r.ID); got.Outcome == nil || got.Outcome.Text != "The sign-in was declined." || got.Outcome.Kind != "" {
		t.Errorf("older outcome after saving again: %+v", got.Outcome)
	}
	if e := h.eventsOf(r.ID, approvals.EventExpired); len(e) != 1 || e[0].Details["outcome"] != "The sign-in was declined." {
		t.Errorf("expired events %+v", e)
	}
	for _, other := range []*approvals.Request{waiting, never} {
		if got := h.get(other.ID); got.State != approvals.StatePending {
			t.Errorf("%s is %s", other.ID, got.State)
		}
	}
}

// Expiry and a decision racing: exactly one wins; the loser changes
// nothing and is told.
func TestExpiryRacesDenial(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withApprovalTTL(30*time.Millisecond))
	for range 5 {
		r := h.open(pc1)
		h.waitFor("the deadline to come near", func() bool { return time.Until(r.ExpiresAt) < 3*time.Millisecond })
		_, err := h.w.Deny(ctx, a1, r.ID, "no")
		var want approvals.State
		if err == nil {
			want = approvals.StateDenied
		} else {
			want = approvals.StateExpired
			var refusal *approvals.Refusal
			if !errors.As(err, &refusal) || (refusal.Kind != approvals.RefusedExpired && refusal.Kind != approvals.RefusedHandled) {
				t.Fatalf("Deny = %v, want success or a refusal saying it expired", err)
			}
			if refusal.Kind == approvals.RefusedHandled && refusal.Request.State != approvals.StateExpired {
				t.Errorf("refusal shows %s", refusal.Request.State)
			}
		}
		h.waitState(r.ID, want)
		h.waitFor("requester told", func() bool { return len(h.notes.tellsOf(r.ID)) == 1 })
		denied, expired := len(h.eventsOf(r.ID, approvals.EventDenied)), len(h.eventsOf(r.ID, approvals.EventExpired))
		if denied+expired != 1 || (want == approvals.StateDenied) != (denied == 1) {
			t.Errorf("%s with %d denied and %d expired events", want, denied, expired)
		}
	}
	h.stop()
	h.notes.mu.Lock()
	defer h.notes.mu.Unlock()
	for _, n := range h.notes.tells {
		if n.User != alice || (n.State != approvals.StateDenied && n.State != approvals.StateExpired) {
			t.Errorf("told %+v", n)
		}
	}
}
