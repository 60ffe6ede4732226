package approvals_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// An audit trail that cannot be written does not stop the flow.
func TestAuditTrailDown(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.store.failOps("record")
	r := h.open(pc1)
	h.approve(a1, r.ID)
	h.confirm(a1, r.ID, approvals.StateSucceeded)
	h.stop()
	if n := len(h.graph.reprovisioned()); n != 1 {
		t.Errorf("%d reprovision calls", n)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateSucceeded))
	if e := h.events(r.ID); len(e) != 0 || h.store.failures("record") < 6 {
		t.Errorf("audit trail %v after %d failed writes", e, h.store.failures("record"))
	}
}

// A notice that cannot be delivered does not undo or block the decision.
func TestNoticeNotDelivered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.notes.set(func(n *recorder) { n.tellErr = errors.New("channel_not_found") })
	r := h.open(pc1)
	denied, err := h.w.Deny(ctx, a1, r.ID, "no")
	if err != nil || denied.State != approvals.StateDenied {
		t.Errorf("Deny = %+v, %v", denied, err)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateDenied))
}

// A sign-in or look-up failure that cannot be recorded leaves the request
// approved (nobody is told a state that was not stored); the next start
// puts it back to pending.
func TestFailureBeforeCallNotRecorded(t *testing.T) {
	t.Parallel()
	for name, setup := range map[string]func(h *harness){
		"sign-in declined": func(h *harness) { h.signIn.next(signInFails(approvals.ErrSignInDeclined)) },
		"status refused":   func(h *harness) { h.graph.setStatus(pc1, "deprovisioning") },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			setup(h)
			r := h.open(pc1)
			h.store.failWhen(func(op string, to approvals.State) error {
				if op == "transition" && to != approvals.StateApproved {
					return errStoreDown
				}
				return nil
			})
			if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
				t.Fatal(err)
			}
			h.waitFor("the failed move", func() bool { return h.store.failures("transition") >= 1 })
			h.stop()
			if got := h.get(r.ID); got.State != approvals.StateApproved {
				t.Fatalf("state %s", got.State)
			}
			for _, n := range h.notes.tellsOf(r.ID) {
				if n.State != approvals.StateApproved {
					t.Errorf("told %+v: a state that was not stored", n)
				}
			}
			h.store.failWhen(nil)
			h.start()
			if got := h.get(r.ID); got.State != approvals.StatePending {
				t.Errorf("state %s after the next start", got.State)
			}
		})
	}
}

// An expiry that cannot be stored is tried again.
func TestExpiryNotStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withApprovalTTL(50*time.Millisecond))
	h.store.failWhen(func(op string, to approvals.State) error {
		if op == "transition" && to == approvals.StateExpired {
			return errStoreDown
		}
		return nil
	})
	r := h.open(pc1)
	h.waitFor("the scheduler to try", func() bool { return h.store.failures("transition") >= 1 })
	if got := h.get(r.ID); got.State != approvals.StatePending || len(h.notes.tellsOf(r.ID)) != 0 {
		t.Fatalf("state %s, told %v", got.State, h.notes.tellsOf(r.ID))
	}
	h.store.failWhen(nil)
	h.open(pc2) // wakes the scheduler
	h.waitState(r.ID, approvals.StateExpired)
	h.waitFor("requester told", func() bool { return len(h.notes.tellsOf(r.ID)) == 1 })
	h.wantTold(r.ID, note(alice, approvals.NoticeExpired, approvals.StateExpired))
}

// The end of tracking that cannot be stored is found again at the next
// look.
func TestTrackingEndNotStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTrackFor(time.Minute))
	storeDown := make(chan struct{})
	h.graph.set(func(g *fakeGraph) {
		g.afterPOST = []string{"provisioning", "provisioned"}
		g.onGet = func(ctx context.Context, n int, _ string) (*approvals.CloudPC, error) {
			if n == 4 { // the second look, which sees the end
				select { // or the test gave up
				case <-storeDown:
				case <-ctx.Done():
				}
			}
			return nil, nil
		}
	})
	r := h.reprovisioned()
	h.waitFor("the first look", func() bool { return h.get(r.ID).Tracking.Checks == 1 })
	h.store.failOps("update")
	close(storeDown)
	h.waitFor("the end not stored", func() bool { return h.store.failures("update") >= 1 })
	h.store.failWhen(nil)
	h.open(pc2) // wakes the scheduler
	done := h.waitTracked(r.ID)
	h.waitFor("requester told", func() bool { return len(h.notes.tellsOf(r.ID)) == 2 })
	h.stop()
	if done.Tracking.Result != approvals.TrackProvisioned {
		t.Errorf("result %q", done.Tracking.Result)
	}
	if got := progressKinds(h.notes.progressOf(r.ID)); !slices.Equal(got, []approvals.ProgressKind{approvals.ProgressAccepted, approvals.ProgressStatus, approvals.ProgressEnded}) {
		t.Errorf("progress %v: the end announced once", got)
	}
}

// Details fetched for the prompt but not stored: the prompt goes out
// without them (and the approver confirms as usual).
func TestPromptDetailsNotStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSignInTTL(time.Hour))
	h.signedIn(a1, pc2)
	h.store.failOps("update")
	r, _ := h.w.NewRequest(alice, ops, pc1, "black screen")
	if err := h.w.Open(ctx, r); err != nil {
		t.Fatal(err)
	}
	if posted := h.notes.postedFor(r.ID); len(posted) != 1 || posted[0].Device != nil {
		t.Errorf("posted %+v", posted)
	}
}

// Approving again after a failed sign-in starts afresh: the old outcome
// goes.
func TestApproveOutcomeCleared(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	h.signIn.next(signInFails(approvals.ErrSignInExpired))
	if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	h.waitFor("told", func() bool { return len(h.notes.tellsOf(r.ID)) == 2 })
	approved, err := h.w.Approve(ctx, a1, r.ID, false)
	if err != nil || approved.Outcome != nil {
		t.Errorf("Approve = %+v, %v; the old outcome must go", approved, err)
	}
}
