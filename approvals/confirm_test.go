package approvals_test

import (
	"slices"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// Cancel at the final confirmation: nothing is sent, the requester is told.
func TestAbortAtConfirmation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	h.approve(a1, r.ID)

	for _, user := range []string{a2, alice, bob} {
		_, err := h.w.Abort(ctx, user, r.ID)
		if refusal := wantRefusal(t, err, approvals.RefusedNotConfirmer); !slices.Equal(refusal.Users, []string{a1}) {
			t.Errorf("refusal to %s names %v", user, refusal.Users)
		}
		h.wantRefusedClick(r.ID, user, approvals.ActionAbort, approvals.RefusedNotConfirmer)
	}
	aborted, err := h.w.Abort(ctx, a1, r.ID)
	if err != nil || aborted.State != approvals.StateCanceled {
		t.Fatalf("Abort = %+v, %v", aborted, err)
	}
	if e := h.eventsOf(r.ID, approvals.EventCanceled); len(e) != 1 || e[0].Actor != a1 || e[0].Details["at"] != "confirmation" {
		t.Errorf("canceled events %+v", e)
	}
	// Late clicks on it.
	_, err = h.w.Abort(ctx, a1, r.ID)
	wantRefusal(t, err, approvals.RefusedHandled)
	_, err = h.w.Confirm(ctx, a1, r.ID, "")
	if refusal := wantRefusal(t, err, approvals.RefusedHandled); refusal.Request.State != approvals.StateCanceled {
		t.Errorf("late confirm told %s", refusal.Request.State)
	}
	h.stop()
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateCanceled))
	if last := h.notes.lastPrompt(t, r.ID); last.State != approvals.StateCanceled {
		t.Errorf("prompt shows %s", last.State)
	}
	if len(h.graph.reprovisioned()) != 0 || h.graph.getCount() != 1 {
		t.Errorf("Graph: %d GETs, POSTs %v; want the look-up only", h.graph.getCount(), h.graph.reprovisioned())
	}
	// The Cloud PC is free again.
	h.restart()
	h.open(pc1)
}

// A stale Abort button (the sign-in failed and the request waits again) is
// told the request is no longer at that step.
func TestAbortAfterRequestReopened(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	h.signIn.next(signInFails(approvals.ErrSignInExpired))
	if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	h.waitFor("sign-in failure told", func() bool { return len(h.notes.tellsOf(r.ID)) == 2 })
	_, err := h.w.Abort(ctx, a1, r.ID)
	if refusal := wantRefusal(t, err, approvals.RefusedHandled); refusal.Request.State != approvals.StatePending {
		t.Errorf("told %s", refusal.Request.State)
	}
	if got := h.get(r.ID); got.State != approvals.StatePending {
		t.Errorf("state %s", got.State)
	}
}

func TestConfirmRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	_, err := h.w.Confirm(ctx, a1, r.ID, "")
	if refusal := wantRefusal(t, err, approvals.RefusedHandled); refusal.Request.State != approvals.StatePending {
		t.Errorf("told %s", refusal.Request.State)
	}
	h.approve(a1, r.ID)
	for _, user := range []string{a2, alice} {
		_, err := h.w.Confirm(ctx, user, r.ID, "")
		if refusal := wantRefusal(t, err, approvals.RefusedNotConfirmer); !slices.Equal(refusal.Users, []string{a1}) || refusal.Action != approvals.ActionConfirm {
			t.Errorf("refusal %+v", refusal)
		}
		h.wantRefusedClick(r.ID, user, approvals.ActionConfirm, approvals.RefusedNotConfirmer)
	}
	if got := h.get(r.ID); got.State != approvals.StateConfirming {
		t.Errorf("state %s after refused confirmations", got.State)
	}
	h.confirm(a1, r.ID, approvals.StateSucceeded)
	// A redelivered click after it ran.
	_, err = h.w.Confirm(ctx, a1, r.ID, "")
	wantRefusal(t, err, approvals.RefusedHandled)
	h.stop()
	if n := len(h.graph.reprovisioned()); n != 1 {
		t.Errorf("%d reprovision calls", n)
	}
}

// A confirmation with no sign-in behind it (another process signed the
// approver in): the request waits again, and they are told to approve anew.
func TestConfirmSignInStale(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.seed(pc1, func(r *approvals.Request) {
		r.DecidedBy, r.SignedInAs = a1, upn1
		r.ExpiresAt = time.Now().Add(30 * time.Minute)
	}, approvals.StateApproved, approvals.StateConfirming)
	_, err := h.w.Confirm(ctx, a1, r.ID, "")
	wantRefusal(t, err, approvals.RefusedSignInStale)
	got := h.get(r.ID)
	if got.State != approvals.StatePending {
		t.Fatalf("state %s", got.State)
	}
	wantOutcome(t, got, approvals.OutcomeSignInStale, "")
	h.stop()
	if h.graph.getCount() != 0 || len(h.graph.reprovisioned()) != 0 {
		t.Error("Graph called without a sign-in")
	}
}

// A second click while the first confirmation runs is told it is being
// handled; so is an abort. One reprovision.
func TestConfirmWhileConfirmationRuns(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	release := make(chan struct{})
	inGet := h.holdGet(2, release) // the re-check right before the call
	r := h.open(pc1)
	h.approve(a1, r.ID)
	if _, err := h.w.Confirm(ctx, a1, r.ID, ""); err != nil {
		t.Fatal(err)
	}
	h.waitClosed(inGet, "inGet")
	_, err := h.w.Confirm(ctx, a1, r.ID, "")
	wantRefusal(t, err, approvals.RefusedBusy)
	_, err = h.w.Abort(ctx, a1, r.ID)
	wantRefusal(t, err, approvals.RefusedBusy)
	close(release)
	h.waitState(r.ID, approvals.StateSucceeded)
	h.stop()
	if n := len(h.graph.reprovisioned()); n != 1 {
		t.Errorf("%d reprovision calls", n)
	}
	if n := len(h.eventsOf(r.ID, approvals.EventConfirmed)); n != 1 {
		t.Errorf("%d confirmed events", n)
	}
}

// A click after the confirmation window: expired on the spot, the requester
// offered to ask again, nothing sent.
func TestConfirmAfterDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	h.approve(a1, r.ID)
	h.store.pauseScheduler()
	deadline := time.Now().Add(20 * time.Millisecond)
	if _, err := h.store.Store.Update(ctx, r.ID, func(r *approvals.Request) { r.ExpiresAt = deadline }); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the deadline to pass", func() bool { return time.Now().After(deadline) })
	_, err := h.w.Confirm(ctx, a1, r.ID, "")
	wantRefusal(t, err, approvals.RefusedExpired)
	got := h.get(r.ID)
	h.stop()
	if got.State != approvals.StateExpired {
		t.Fatalf("state %s", got.State)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeExpired, approvals.StateExpired))
	if len(h.graph.reprovisioned()) != 0 {
		t.Error("reprovisioned after the deadline")
	}
	if e := h.eventsOf(r.ID, approvals.EventExpired); len(e) != 1 || e[0].Details["expires_at"] != deadline.UTC().Format(time.RFC3339) {
		t.Errorf("expired events %+v", e)
	}
	// Expired is final; the Cloud PC is free.
	h.restart()
	h.open(pc1)
}

// Abort on a request nobody has approved yet (a forged or replayed click:
// its button only exists at the confirmation) changes nothing, whoever
// clicks, and says where the request is.
func TestAbortOnUndecidedRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	for _, user := range []string{"", a1, alice} {
		_, err := h.w.Abort(ctx, user, r.ID)
		if refusal := wantRefusal(t, err, approvals.RefusedHandled); refusal.Request.State != approvals.StatePending {
			t.Errorf("abort by %q told %s", user, refusal.Request.State)
		}
	}
	if got := h.get(r.ID); got.State != approvals.StatePending || got.DecidedBy != "" {
		t.Errorf("abort changed the request: %s, decided by %q", got.State, got.DecidedBy)
	}
}
