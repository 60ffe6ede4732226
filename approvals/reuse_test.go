package approvals_test

import (
	"context"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// signedIn has approver sign in (by approving and aborting a request for
// id) and returns when the sign-in is recorded.
func (h *harness) signedIn(approver, id string) {
	h.t.Helper()
	r := h.open(id)
	h.approve(approver, r.ID)
	if _, err := h.w.Abort(ctx, approver, r.ID); err != nil {
		h.t.Fatal(err)
	}
}

// Signed in already: a new request's prompt shows the Cloud PC, and the
// approver's Approve on it is final — no second sign-in, no confirmation;
// GET (details), GET (re-check), POST.
func TestFinalApproveWithReusedSignIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSignInTTL(time.Hour))
	h.signedIn(a1, pc2)
	gets := h.graph.getCount()
	r := h.open(pc1)
	posted := h.notes.postedFor(r.ID)
	if len(posted) != 1 || posted[0].Device == nil || posted[0].Device.ID != pc1 || posted[0].Device.Status != "provisioned" {
		t.Fatalf("prompt %+v, want the details", posted)
	}
	approved, err := h.w.Approve(ctx, a1, r.ID, true)
	if err != nil || approved.State != approvals.StateApproved {
		t.Fatalf("Approve = %+v, %v", approved, err)
	}
	done := h.waitState(r.ID, approvals.StateSucceeded)
	h.stop()
	if done.SignedInAs != upn1 || done.DecidedBy != a1 {
		t.Errorf("done %+v", done)
	}
	if n := h.signIn.count(); n != 1 {
		t.Errorf("%d sign-ins, want the first reused", n)
	}
	if len(h.notes.askedFor(r.ID)) != 0 {
		t.Error("asked to confirm what the prompt showed")
	}
	if n := h.graph.getCount() - gets; n != 2 {
		t.Errorf("%d GETs for the request, want 2", n)
	}
	h.wantKinds(r.ID, approvals.EventRequested, approvals.EventApproved, approvals.EventSucceeded)
	if e := h.eventsOf(r.ID, approvals.EventGraphCall); len(e) != 3 || e[0].Actor != "" || e[2].Details["method"] != "POST" {
		t.Errorf("graph calls %+v", e)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateSucceeded))
}

// Not final (the Home tab): the reused sign-in looks the Cloud PC up and
// the approver still confirms.
func TestApproveWithReusedSignInConfirms(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSignInTTL(time.Hour))
	h.signedIn(a1, pc2)
	r := h.open(pc1)
	asked := h.approve(a1, r.ID)
	if asked.Device == nil || asked.SignedInAs != upn1 {
		t.Errorf("asked %+v", asked)
	}
	h.confirm(a1, r.ID, approvals.StateSucceeded)
	h.stop()
	if n := h.signIn.count(); n != 1 {
		t.Errorf("%d sign-ins", n)
	}
}

// Another approver's sign-in fetched the details; the clicker has none:
// the fresh sign-in path, with the confirmation.
func TestFinalApproveWithoutOwnSignIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSignInTTL(time.Hour))
	h.signedIn(a1, pc2)
	r := h.open(pc1)
	if posted := h.notes.postedFor(r.ID); posted[0].Device == nil {
		t.Fatal("prompt without the details")
	}
	if _, err := h.w.Approve(ctx, a2, r.ID, true); err != nil {
		t.Fatal(err)
	}
	asked := h.waitAsked(r.ID, 1)
	if asked.SignedInAs != email2 {
		t.Errorf("asked %+v", asked)
	}
	if calls := h.signIn.calls(); len(calls) != 2 || calls[1].Approver != a2 {
		t.Errorf("sign-ins %+v", calls)
	}
}

// The details could not be fetched for the prompt, or the target is a
// name: the final Approve still asks for the confirmation, with the reused
// sign-in.
func TestFinalApproveWithoutDetails(t *testing.T) {
	t.Parallel()
	for _, byName := range []bool{false, true} {
		t.Run(map[bool]string{false: "details not fetched", true: "by name"}[byName], func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, withSignInTTL(time.Hour))
			h.signedIn(a1, pc2)
			target := pc1
			if byName {
				target = "CPC-alice-01"
				h.graph.set(func(g *fakeGraph) { g.resolve[target] = []approvals.CloudPC{g.pcs[pc1]} })
			} else {
				gets := h.graph.getCount()
				h.graph.set(func(g *fakeGraph) {
					g.onGet = func(_ context.Context, n int, _ string) (*approvals.CloudPC, error) {
						if n == gets+1 {
							return nil, &approvals.GraphError{Kind: approvals.GraphThrottled, Status: 429}
						}
						return nil, nil
					}
				})
			}
			r := h.open(target)
			if posted := h.notes.postedFor(r.ID); len(posted) != 1 || posted[0].Device != nil {
				t.Fatalf("prompt %+v", posted)
			}
			if _, err := h.w.Approve(ctx, a1, r.ID, true); err != nil {
				t.Fatal(err)
			}
			asked := h.waitAsked(r.ID, 1)
			if asked.Device == nil || asked.Device.ID != pc1 {
				t.Errorf("asked %+v", asked)
			}
			if n := h.signIn.count(); n != 1 {
				t.Errorf("%d sign-ins", n)
			}
		})
	}
}

// SignInTTL 0: a fresh sign-in for every approval, and no details on
// prompts.
func TestNoSignInReuse(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.signedIn(a1, pc2)
	r := h.open(pc1)
	if posted := h.notes.postedFor(r.ID); posted[0].Device != nil {
		t.Error("details on the prompt with no sign-in reuse")
	}
	h.approve(a1, r.ID)
	if n := h.signIn.count(); n != 2 {
		t.Errorf("%d sign-ins, want 2", n)
	}
}

// Reuse ends SignInTTL after the sign-in.
func TestSignInReuseEnds(t *testing.T) {
	t.Parallel()
	const ttl = 200 * time.Millisecond
	h := newHarness(t, withSignInTTL(ttl))
	first := h.open(pc2)
	h.approve(a1, first.ID)
	signedInBefore := time.Now() // the confirmation is asked after the sign-in
	h.waitFor("the sign-in to age past the TTL", func() bool { return time.Since(signedInBefore) > ttl })
	r := h.open(pc1)
	if posted := h.notes.postedFor(r.ID); posted[0].Device != nil {
		t.Error("details fetched with an expired sign-in")
	}
	h.approve(a1, r.ID)
	if n := h.signIn.count(); n != 2 {
		t.Errorf("%d sign-ins, want a fresh one after the TTL", n)
	}
	// The first request keeps the sign-in it started with.
	h.confirm(a1, first.ID, approvals.StateSucceeded)
}
