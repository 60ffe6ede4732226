package approvals_test

import (
	"slices"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// What a previous process left half done is settled at start: a call that
// may have been in flight → outcome unknown, both told, never resent; a
// sign-in or confirmation lost → pending again, both told; a reprovision being
// followed → paused, with the prompt offering to resume. Nothing else moves.
func TestRestartSettlesEachState(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTrackFor(time.Minute))
	h.stop()
	executing := h.seed(pc1, func(r *approvals.Request) { r.DecidedBy, r.SignedInAs = a1, upn1 },
		approvals.StateApproved, approvals.StateExecuting)
	approved := h.seed(pc2, func(r *approvals.Request) { r.DecidedBy = a2 }, approvals.StateApproved)
	confirming := h.seed("alice@contoso.com", func(r *approvals.Request) {
		r.DecidedBy, r.SignedInAs = a1, upn1
		r.Candidates = []approvals.CloudPC{h.graph.pc(pc1), h.graph.pc(pc2)}
		r.ExpiresAt = time.Now().Add(30 * time.Minute)
	}, approvals.StateApproved, approvals.StateConfirming)
	tracked := h.seedTracked(pc3, time.Minute)
	pending := h.seed("CPC-bob-01", nil)
	denied := h.seed("CPC-bob-02", func(r *approvals.Request) { r.DecidedBy = a1 }, approvals.StateDenied)

	h.start()
	h.waitFor("the tracked request paused", func() bool { return h.get(tracked.ID).Tracking.Paused })

	unknown := h.get(executing.ID)
	if unknown.State != approvals.StateOutcomeUnknown {
		t.Fatalf("executing at restart → %s", unknown.State)
	}
	wantOutcome(t, unknown, approvals.OutcomeInFlightAtRestart, "")
	h.wantTold(executing.ID, note(alice, approvals.NoticeStatus, approvals.StateOutcomeUnknown),
		note(a1, approvals.NoticeStatus, approvals.StateOutcomeUnknown))
	if e := h.eventsOf(executing.ID, approvals.EventOutcomeUnknown); len(e) != 1 || e[0].Details["outcome"] != string(approvals.OutcomeInFlightAtRestart) {
		t.Errorf("outcome_unknown events %+v", e)
	}
	for _, r := range []*approvals.Request{approved, confirming} {
		got := h.get(r.ID)
		if got.State != approvals.StatePending {
			t.Errorf("%s at restart → %s, want pending", r.State, got.State)
			continue
		}
		wantOutcome(t, got, approvals.OutcomeSignInInterrupted, "")
		if last := h.notes.lastPrompt(t, r.ID); last.State != approvals.StatePending {
			t.Errorf("prompt of %s shows %s", r.ID, last.State)
		}
		// Both sides learn the sign-in was cut short and it waits again.
		h.wantTold(r.ID, note(r.DecidedBy, approvals.NoticeSignInFailed, approvals.StatePending),
			note(alice, approvals.NoticeSignInFailed, approvals.StatePending))
	}
	if ps := h.notes.progressOf(tracked.ID); len(ps) != 1 || ps[0].Kind != approvals.ProgressPaused {
		t.Errorf("progress of the tracked one %+v", ps)
	}
	if last := h.notes.lastPrompt(t, tracked.ID); !last.Tracking.Paused {
		t.Errorf("tracked prompt %+v", last.Tracking)
	}
	for _, r := range []*approvals.Request{pending, denied} {
		if got := h.get(r.ID); got.State != r.State || len(h.notes.updatesOf(r.ID)) != 0 {
			t.Errorf("%s moved to %s at restart", r.State, got.State)
		}
	}
	if h.graph.getCount() != 0 || len(h.graph.reprovisioned()) != 0 || h.signIn.count() != 0 {
		t.Error("restart reached Microsoft")
	}

	// The reopened ones are approvable again.
	h.approve(a2, approved.ID)
	h.confirm(a2, approved.ID, approvals.StateSucceeded)
	h.stop()
	if got := h.graph.reprovisioned(); !slices.Equal(got, []string{pc2 + " by " + email2}) {
		t.Errorf("reprovisions %v, want the re-approved one only", got)
	}
}

// Restarted at the final confirmation: the sign-in is gone, so the stale
// confirmation is refused and the approver signs in again.
func TestRestartAtConfirmation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSignInTTL(time.Hour))
	r := h.open(pc1)
	h.approve(a1, r.ID)
	h.restart()
	_, err := h.w.Confirm(ctx, a1, r.ID, "")
	if refusal := wantRefusal(t, err, approvals.RefusedHandled); refusal.Request.State != approvals.StatePending {
		t.Errorf("told %s", refusal.Request.State)
	}
	h.approve(a1, r.ID)
	h.confirm(a1, r.ID, approvals.StateSucceeded)
	h.stop()
	if n := h.signIn.count(); n != 2 {
		t.Errorf("%d sign-ins, want 2: sign-ins do not survive a restart", n)
	}
	if n := len(h.graph.reprovisioned()); n != 1 {
		t.Errorf("%d reprovision calls", n)
	}
}

// Restarted while following: paused until an approver resumes it.
func TestRestartWhileTracking(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTrackFor(time.Minute), func(c *approvals.Config) { c.TrackEvery = time.Hour })
	h.graph.set(func(g *fakeGraph) { g.afterPOST = []string{"provisioning", "provisioned"} })
	r := h.reprovisioned()
	h.restart()
	paused := h.get(r.ID)
	if !paused.Tracking.Paused || !paused.Tracking.Active() {
		t.Fatalf("tracking after restart %+v", paused.Tracking)
	}
	if _, err := h.w.ResumeTracking(ctx, a2, r.ID); err != nil {
		t.Fatal(err)
	}
	h.waitFor("a look after resuming", func() bool { return h.get(r.ID).Tracking.Checks == 1 })
	if got := h.get(r.ID); got.Tracking.LastStatus != "provisioning" || got.Tracking.Paused {
		t.Errorf("tracking %+v", got.Tracking)
	}
	// Delivered just after the look is stored (through the outbox).
	h.waitFor("the new status posted", func() bool {
		ps := h.notes.progressOf(r.ID)
		return ps[len(ps)-1].Kind == approvals.ProgressStatus
	})
}

// A store that fails at start: nothing is settled and nobody is told;
// the next start settles it.
func TestStartWithStoreFailing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.stop()
	r := h.seed(pc1, func(r *approvals.Request) { r.DecidedBy = a1 }, approvals.StateApproved, approvals.StateExecuting)
	for _, ops := range [][]string{{"list", "list_tracking"}, {"transition"}} {
		h.store.failOps(ops...)
		h.start()
		h.stop()
		if got := h.get(r.ID); got.State != approvals.StateExecuting {
			t.Errorf("store failing %v: state %s", ops, got.State)
		}
		h.wantTold(r.ID)
	}
	h.store.failOps("list_tracking")
	h.start()
	h.stop()
	if got := h.get(r.ID); got.State != approvals.StateOutcomeUnknown {
		t.Errorf("state %s", got.State)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateOutcomeUnknown),
		note(a1, approvals.NoticeStatus, approvals.StateOutcomeUnknown))
}
