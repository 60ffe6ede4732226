package approvals_test

import (
	"slices"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// An approver removed from the configuration loses the power at once, also
// on requests made while they were one: their click is refused and audited,
// and a request left with none of its approvers configured is prompted to
// the configured ones at start, who may then decide.
func TestRemovedApproverLosesThePower(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	both := h.open(pc1) // approvers a1 and a2
	h.stop()
	h.cfg.Policy.Approvers = []string{a1} // a2 removed
	h.start()

	_, err := h.w.Approve(ctx, a2, both.ID, false)
	if refusal := wantRefusal(t, err, approvals.RefusedNotDecider); !slices.Equal(refusal.Users, []string{a1}) {
		t.Errorf("refusal names %v, want only the approver still configured", refusal.Users)
	}
	h.wantRefusedClick(both.ID, a2, approvals.ActionApprove, approvals.RefusedNotDecider)
	if got := h.get(both.ID); got.State != approvals.StatePending {
		t.Errorf("a removed approver's click moved the request to %s", got.State)
	}
	if _, err := h.w.MayDeny(ctx, a2, both.ID); err == nil {
		t.Error("a removed approver may still deny")
	}
	if awaiting, err := h.w.AwaitingDecision(ctx, a2, 20); err != nil || len(awaiting) != 0 {
		t.Errorf("a removed approver is still shown %d requests to decide (%v)", len(awaiting), err)
	}
	// Nobody is prompted again for a request that still has a configured
	// approver.
	if posted := h.notes.postedFor(both.ID); len(posted) != 1 {
		t.Errorf("prompted %d times, want once", len(posted))
	}
}

func TestOrphanedRequestIsPromptedToTheCurrentApprovers(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	orphan := h.open(pc1) // approvers a1 and a2
	h.stop()
	h.cfg.Policy.Approvers = []string{bob} // both removed; bob is new
	h.start()

	h.waitFor("the new approver prompted", func() bool { return len(h.notes.postedFor(orphan.ID)) == 2 })
	again := h.notes.postedFor(orphan.ID)[1]
	if !slices.Equal(again.Approvers, []string{bob}) {
		t.Errorf("re-prompt shows approvers %v, want the configured one", again.Approvers)
	}
	if e := h.eventsOf(orphan.ID, approvals.EventReprompted); len(e) != 1 {
		t.Errorf("reprompted events %+v, want one", e)
	}
	if got := h.get(orphan.ID); len(got.Prompts) != 3 || got.Prompts[2].UserID != bob {
		t.Errorf("prompt locations %+v: the new one is not kept for later edits", got.Prompts)
	}
	// Another start while it still waits prompts nobody again.
	h.restart()
	if n := len(h.notes.postedFor(orphan.ID)); n != 2 {
		t.Errorf("prompted %d times after a second start, want 2", n)
	}
	for _, gone := range []string{a1, a2} {
		if _, err := h.w.Approve(ctx, gone, orphan.ID, false); err == nil {
			t.Errorf("removed approver %s may still approve", gone)
		}
	}
	if _, err := h.w.Deny(ctx, bob, orphan.ID, "not needed"); err != nil {
		t.Fatalf("the configured approver may not decide: %v", err)
	}
	if got := h.get(orphan.ID); got.State != approvals.StateDenied || got.DecidedBy != bob {
		t.Errorf("after the new approver's denial: %s by %s", got.State, got.DecidedBy)
	}
	// A second start prompts nobody again: the request is decided.
	h.restart()
	if n := len(h.notes.postedFor(orphan.ID)); n != 2 {
		t.Errorf("prompted %d times after a second start, want 2", n)
	}
}
