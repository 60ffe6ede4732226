package approvals_test

import (
	"context"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/mock"
)

// Entra takes the device-code request and never answers: the sign-in gives
// up after SignInStartTimeout, the request waits for a decision again with
// the reason, both sides are told, and the approver can approve again.
func TestEntraIssuingNoCodeDoesNotHoldTheRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.stop()
	working := h.cfg.SignIns
	hangs := make(chan struct{}, 1)
	h.cfg.SignIns = &mock.SignIns{SignInFn: func(ctx context.Context, claims string, showCode func(context.Context, approvals.DeviceCode) error) (*approvals.Session, error) {
		hangs <- struct{}{}
		<-ctx.Done() // no code, no answer
		return nil, ctx.Err()
	}}
	h.cfg.SignInStartTimeout = 50 * time.Millisecond
	h.start()
	r := h.open(pc1)
	if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	<-hangs
	got := h.waitState(r.ID, approvals.StatePending)
	wantOutcome(t, got, approvals.OutcomeSignInUnavailable, "")
	h.waitFor("both told", func() bool { return len(h.notes.tellsOf(r.ID)) == 2 })
	h.wantTold(r.ID, note(a1, approvals.NoticeSignInFailed, approvals.StatePending),
		note(alice, approvals.NoticeSignInFailed, approvals.StatePending))

	// Entra is back: the same approver approves again and it goes ahead.
	h.stop()
	h.cfg.SignIns = working
	h.start()
	h.approve(a1, r.ID)
	h.waitAsked(r.ID, 1)
	h.confirm(a1, r.ID, approvals.StateSucceeded)
}

// The code was shown but the sign-in never ends (the approver walks away and
// Entra never says the code expired): SignInTimeout bounds it.
func TestUnfinishedSignInEndsAtTheDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.stop()
	h.cfg.SignInTimeout = 100 * time.Millisecond
	h.start()
	started := make(chan struct{})
	h.signIn.next(h.signInWaits(started, make(chan struct{})))
	r := h.open(pc1)
	if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	h.waitClosed(started, "the approver has the code")
	got := h.waitState(r.ID, approvals.StatePending)
	wantOutcome(t, got, approvals.OutcomeSignInExpired, "")
	if n := len(h.notes.codesFor(r.ID)); n != 1 {
		t.Errorf("%d codes shown, want 1", n)
	}
}
