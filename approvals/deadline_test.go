package approvals_test

import (
	"context"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// A request sent back to pending from the final confirmation (here: a
// restart lost the sign-in) gets its approval deadline back, not the 30
// minutes the confirmation had: with a TTL it expires when it always would
// have, and with no TTL it never expires.
func TestReopeningRestoresTheApprovalDeadline(t *testing.T) {
	t.Parallel()
	for _, ttl := range []time.Duration{0, 24 * time.Hour} {
		h := newHarness(t, withApprovalTTL(ttl))
		r := h.open(pc1)
		if !r.DecideBy.Equal(r.ExpiresAt) {
			t.Fatalf("TTL %v: a new request's approval deadline %v differs from its expiry %v", ttl, r.DecideBy, r.ExpiresAt)
		}
		h.approve(a1, r.ID)
		h.waitAsked(r.ID, 1)
		if got := h.get(r.ID); got.State != approvals.StateConfirming || got.ExpiresAt.IsZero() || got.ExpiresAt.After(time.Now().Add(31*time.Minute)) {
			t.Fatalf("TTL %v: at the confirmation: %s, expires %v", ttl, got.State, got.ExpiresAt)
		}
		h.restart()
		got := h.waitState(r.ID, approvals.StatePending)
		if !got.ExpiresAt.Equal(r.DecideBy) || !got.DecideBy.Equal(r.DecideBy) {
			t.Errorf("TTL %v: reopened with expiry %v (approval deadline %v), want the approval deadline %v back",
				ttl, got.ExpiresAt, got.DecideBy, r.DecideBy)
		}
		if ttl == 0 && got.ExpiredAt(time.Now().Add(100*365*24*time.Hour)) {
			t.Errorf("with no approval TTL the reopened request expires")
		}
	}
}

// Graph refuses the reprovision for want of a fresh sign-in (401): the
// request waits for a decision again, with its approval deadline back.
func TestSignInRefusedByGraphRestoresTheApprovalDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withApprovalTTL(0))
	h.graph.set(func(g *fakeGraph) {
		g.onReprovision = func(context.Context, string) error {
			return graphErr(approvals.GraphSignInAgain, approvals.CauseUnauthorized, 401)
		}
	})
	r := h.open(pc1)
	h.approve(a1, r.ID)
	h.waitAsked(r.ID, 1)
	got := h.confirm(a1, r.ID, approvals.StatePending)
	h.stop()
	if !got.ExpiresAt.IsZero() {
		t.Errorf("with no approval TTL the request waits again until %v, want no deadline", got.ExpiresAt)
	}
}
