package approvals_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// A sign-in that does not complete leaves the request approvable; the
// approver and the requester are told why; nothing reaches Graph.
func TestSignInFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		approver string
		setup    func(h *harness)
		want     approvals.OutcomeKind
		mismatch bool // audited as an identity mismatch
	}{
		{"declined", a1, func(h *harness) {
			h.signIn.next(signInFails(fmt.Errorf("AADSTS70000: %w", approvals.ErrSignInDeclined)))
		}, approvals.OutcomeSignInDeclined, false},
		{"code expired", a1, func(h *harness) { h.signIn.next(signInFails(approvals.ErrSignInExpired)) },
			approvals.OutcomeSignInExpired, false},
		{"other error", a1, func(h *harness) { h.signIn.next(signInFails(errors.New("entra unreachable"))) },
			approvals.OutcomeSignInFailed, false},
		{"code not delivered", a1, func(h *harness) {
			h.notes.set(func(n *recorder) { n.codeErr = errors.New("slack down") })
		}, approvals.OutcomeSignInFailed, false},
		{"someone else signed in", a1, func(h *harness) { h.signIn.next(h.signInAs("mallory@contoso.com")) },
			approvals.OutcomeIdentityMismatch, true},
		{"no username", a1, func(h *harness) { h.signIn.next(h.signInAs("")) },
			approvals.OutcomeIdentityMismatch, true},
		{"profile email differs", a2, func(h *harness) { h.signIn.next(h.signInAs(upn1)) },
			approvals.OutcomeIdentityMismatch, true},
		{"profile email unreadable", a2, func(h *harness) {
			h.notes.set(func(n *recorder) { n.emailErr = errors.New("users:read.email missing") })
		}, approvals.OutcomeSignInFailed, false},
		{"profile without email", a2, func(h *harness) {
			h.notes.set(func(n *recorder) { n.emails = nil })
		}, approvals.OutcomeSignInFailed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			tc.setup(h)
			r := h.open(pc1)
			if _, err := h.w.Approve(ctx, tc.approver, r.ID, false); err != nil {
				t.Fatal(err)
			}
			h.waitFor("both sides told", func() bool { return len(h.notes.tellsOf(r.ID)) == 2 })
			h.stop()
			got := h.get(r.ID)
			if got.State != approvals.StatePending {
				t.Fatalf("state %s, want pending (approvable again)", got.State)
			}
			wantOutcome(t, got, tc.want, "")
			h.wantTold(r.ID, note(tc.approver, approvals.NoticeSignInFailed, approvals.StatePending),
				note(alice, approvals.NoticeSignInFailed, approvals.StatePending))
			for _, n := range h.notes.tellsOf(r.ID) {
				if n.Why == nil || n.Why.Kind != tc.want {
					t.Errorf("told %s why %v, want %s", n.User, n.Why, tc.want)
				}
			}
			if last := h.notes.lastPrompt(t, r.ID); last.State != approvals.StatePending || last.Outcome == nil {
				t.Errorf("prompt shows %+v", last)
			}
			if h.graph.getCount() != 0 || len(h.graph.reprovisioned()) != 0 || len(h.notes.askedFor(r.ID)) != 0 {
				t.Error("a failed sign-in went on to Graph or the confirmation")
			}
			if e := h.eventsOf(r.ID, approvals.EventSignInFailed); len(e) != 1 || e[0].Details["reason"] != string(tc.want) || e[0].Actor != tc.approver {
				t.Errorf("signin_failed events %+v", e)
			}
			if mm := h.eventsOf(r.ID, approvals.EventIdentityMismatch); tc.mismatch != (len(mm) == 1) {
				t.Errorf("identity_mismatch events %+v", mm)
			} else if tc.mismatch && mm[0].Details["expected"] != h.upnOf(tc.approver) {
				t.Errorf("mismatch expected %q", mm[0].Details["expected"])
			}
			if tc.mismatch && got.Outcome.Expected != h.upnOf(tc.approver) {
				t.Errorf("outcome %+v, want expected %s", got.Outcome, h.upnOf(tc.approver))
			}
		})
	}
}

// After a failed sign-in the same or another approver approves again.
func TestApproveAgainAfterFailedSignIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	h.signIn.next(signInFails(approvals.ErrSignInDeclined))
	if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	h.waitFor("sign-in failure told", func() bool { return len(h.notes.tellsOf(r.ID)) == 2 })
	h.waitState(r.ID, approvals.StatePending)
	asked := h.approve(a2, r.ID)
	if asked.DecidedBy != a2 || asked.SignedInAs != email2 || asked.Outcome != nil {
		t.Errorf("asked %+v", asked)
	}
	done := h.confirm(a2, r.ID, approvals.StateSucceeded)
	h.stop()
	if done.Outcome != nil || !slices.Equal(h.graph.reprovisioned(), []string{pc1 + " by " + email2}) {
		t.Errorf("done %+v, reprovisions %v", done, h.graph.reprovisioned())
	}
}

// The bot stopping while an approver signs in: the request goes back to
// pending (its prompt says why) and nobody is messaged on the way out.
func TestSignInInterruptedByStop(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	started := make(chan struct{})
	h.signIn.next(h.signInWaits(started, make(chan struct{})))
	if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	h.waitClosed(started, "started")
	begin := time.Now()
	h.stop()
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("Stop took %v with a sign-in waiting", took)
	}
	got := h.get(r.ID)
	if got.State != approvals.StatePending {
		t.Fatalf("state %s", got.State)
	}
	wantOutcome(t, got, approvals.OutcomeSignInInterrupted, "")
	if last := h.notes.lastPrompt(t, r.ID); last.State != approvals.StatePending {
		t.Errorf("prompt shows %s", last.State)
	}
	// Both sides hear that the sign-in was cut short (through the outbox,
	// delivered before the process exits or after the next start).
	h.wantTold(r.ID, "U0A1:sign_in_failed:pending", "U0ALICE:sign_in_failed:pending")
	if h.graph.getCount() != 0 {
		t.Error("Graph called")
	}
}

func TestProfileEmailMatchesIgnoringCase(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.signIn.next(h.signInAs("A2@Contoso.com"))
	r := h.open(pc1)
	if asked := h.approve(a2, r.ID); asked.SignedInAs != "A2@Contoso.com" {
		t.Errorf("signed in as %q", asked.SignedInAs)
	}
}

// By device name: one list call resolves it, the re-check reads the
// resolved id, and the POST goes to it.
func TestLookUpByName(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.set(func(g *fakeGraph) { g.resolve["CPC-alice-02"] = []approvals.CloudPC{g.pcs[pc2]} })
	r := h.open("CPC-alice-02")
	if r.CloudPCID != "" {
		t.Fatalf("CloudPCID %q before resolving", r.CloudPCID)
	}
	asked := h.approve(a1, r.ID)
	if asked.CloudPCID != pc2 || asked.Device == nil || asked.Device.ManagedDeviceName != "CPC-alice-02" || len(asked.Candidates) != 0 {
		t.Errorf("asked %+v", asked)
	}
	h.confirm(a1, r.ID, approvals.StateSucceeded)
	h.stop()
	if h.graph.resolveCount() != 1 || h.graph.getCount() != 1 || !slices.Equal(h.graph.reprovisioned(), []string{pc2 + " by " + upn1}) {
		t.Errorf("Graph: %d lists, %d GETs, POSTs %v; want 1, 1, [%s]", h.graph.resolveCount(), h.graph.getCount(), h.graph.reprovisioned(), pc2)
	}
	if e := h.eventsOf(r.ID, approvals.EventResolved); len(e) != 1 || e[0].Details["matches"] != "1" || e[0].Details["target"] != "CPC-alice-02" {
		t.Errorf("resolved events %+v", e)
	}
	if got := h.get(r.ID); got.CloudPCID != pc2 || got.Target != "CPC-alice-02" {
		t.Errorf("stored CloudPCID %q, Target %q", got.CloudPCID, got.Target)
	}
}

// Several matches: the approver picks one; a pick that was not offered is
// refused and changes nothing; the picked one is re-checked and sent.
func TestPicker(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.set(func(g *fakeGraph) {
		// pc1 twice: once per page of the list.
		g.resolve["alice@contoso.com"] = []approvals.CloudPC{g.pcs[pc1], g.pcs[pc3], g.pcs[pc1]}
	})
	r := h.open("alice@contoso.com")
	asked := h.approve(a1, r.ID)
	if len(asked.Candidates) != 2 || asked.Candidates[0].ID != pc1 || asked.Candidates[1].ID != pc3 || asked.CloudPCID != "" || asked.Device != nil {
		t.Fatalf("asked to pick among %+v (CloudPCID %q)", asked.Candidates, asked.CloudPCID)
	}
	if e := h.eventsOf(r.ID, approvals.EventResolved); len(e) != 1 || e[0].Details["matches"] != "2" {
		t.Errorf("resolved events %+v", e)
	}

	_, err := h.w.Confirm(ctx, a1, r.ID, pc2) // not offered
	if refusal := wantRefusal(t, err, approvals.RefusedChoiceGone); refusal.Action != approvals.ActionPick {
		t.Errorf("refusal %+v", refusal)
	}
	if got := h.get(r.ID); got.State != approvals.StateConfirming || got.CloudPCID != "" {
		t.Errorf("after a bad pick: %s, CloudPCID %q", got.State, got.CloudPCID)
	}
	_, err = h.w.Confirm(ctx, a2, r.ID, pc3)
	wantRefusal(t, err, approvals.RefusedNotConfirmer)
	h.wantRefusedClick(r.ID, a2, approvals.ActionPick, approvals.RefusedNotConfirmer)

	picked, err := h.w.Confirm(ctx, a1, r.ID, pc3)
	if err != nil || picked.CloudPCID != pc3 || picked.Device == nil || picked.Device.ID != pc3 {
		t.Fatalf("Confirm(pick) = %+v, %v", picked, err)
	}
	h.waitState(r.ID, approvals.StateSucceeded)
	h.stop()
	if got := h.graph.reprovisioned(); !slices.Equal(got, []string{pc3 + " by " + upn1}) {
		t.Errorf("reprovisions %v", got)
	}
	if h.graph.resolveCount() != 1 || h.graph.getCount() != 1 {
		t.Errorf("%d lists, %d GETs; want 1 and 1 (the re-check of the pick)", h.graph.resolveCount(), h.graph.getCount())
	}
	if e := h.eventsOf(r.ID, approvals.EventResolved); len(e) != 2 || e[1].Details["picked"] != "true" || e[1].Details["cloud_pc_id"] != pc3 {
		t.Errorf("resolved events %+v", e)
	}
}

// Picking a Cloud PC that meanwhile got a request of its own ends this one.
func TestPickOfCloudPCWithOpenRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.set(func(g *fakeGraph) { g.resolve["alice@contoso.com"] = []approvals.CloudPC{g.pcs[pc1], g.pcs[pc2]} })
	r := h.open("alice@contoso.com")
	h.approve(a1, r.ID)
	other := h.openBy(bob, pc1)
	// The clicker gets the failed request back, no error: both sides are
	// told by the notices below, not asked to try again.
	returned, err := h.w.Confirm(ctx, a1, r.ID, pc1)
	if err != nil || returned == nil || returned.State != approvals.StateFailed {
		t.Errorf("Confirm = %+v, %v; want the failed request", returned, err)
	}
	failed := h.waitState(r.ID, approvals.StateFailed)
	h.stop()
	wantOutcome(t, failed, approvals.OutcomeOpenElsewhere, "")
	if failed.Outcome.Other != other.ID || failed.Outcome.OtherRequester != bob || failed.Outcome.CloudPCID != pc1 {
		t.Errorf("outcome %+v, want it to name %s by %s", failed.Outcome, other.ID, bob)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateFailed), note(a1, approvals.NoticeStatus, approvals.StateFailed))
	if len(h.graph.reprovisioned()) != 0 {
		t.Error("reprovisioned")
	}
	if got := h.get(other.ID); got.State != approvals.StatePending {
		t.Errorf("the other request is %s", got.State)
	}
}

// A name resolving to a Cloud PC that has an open request ends the request
// at look-up, naming the one holding it.
func TestResolvedCloudPCHasOpenRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.set(func(g *fakeGraph) { g.resolve["CPC-alice-01"] = []approvals.CloudPC{g.pcs[pc1]} })
	holder := h.openBy(bob, pc1)
	r := h.open("CPC-alice-01")
	if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	failed := h.waitState(r.ID, approvals.StateFailed)
	h.stop()
	wantOutcome(t, failed, approvals.OutcomeOpenElsewhere, "")
	if failed.Outcome.Other != holder.ID || failed.CloudPCID != "" {
		t.Errorf("outcome %+v, CloudPCID %q", failed.Outcome, failed.CloudPCID)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateFailed), note(a1, approvals.NoticeStatus, approvals.StateFailed))
	if len(h.notes.askedFor(r.ID)) != 0 {
		t.Error("asked to confirm")
	}
}

// Names that match nothing, or too many, end the request before any call.
func TestLookUpMatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		matches int
		want    approvals.OutcomeKind
	}{
		{"none", 0, approvals.OutcomeNoMatch},
		{"too many", approvals.MaxCandidates + 1, approvals.OutcomeTooManyMatches},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.graph.set(func(g *fakeGraph) {
				for i := range tc.matches {
					id := fmt.Sprintf("4e1f0b9a-2c3d-4e5f-8a9b-%012d", i)
					g.resolve["CPC-shared"] = append(g.resolve["CPC-shared"], approvals.CloudPC{ID: id, Status: "provisioned"})
				}
			})
			r := h.open("CPC-shared")
			if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
				t.Fatal(err)
			}
			failed := h.waitState(r.ID, approvals.StateFailed)
			h.stop()
			wantOutcome(t, failed, tc.want, "")
			if failed.Outcome.Target != "CPC-shared" || failed.Outcome.Matches != tc.matches {
				t.Errorf("outcome %+v", failed.Outcome)
			}
			h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateFailed), note(a1, approvals.NoticeStatus, approvals.StateFailed))
			if len(h.notes.askedFor(r.ID)) != 0 || len(h.graph.reprovisioned()) != 0 {
				t.Error("went on after the look-up")
			}
			h.wantKinds(r.ID, approvals.EventRequested, approvals.EventApproved, approvals.EventSignInStarted,
				approvals.EventSignedIn, approvals.EventResolved, approvals.EventFailed)
		})
	}
}

// A look-up Graph refuses: a Cloud PC that is not there (or a malformed
// target) ends the request; anything else leaves it approvable, and a
// sign-in Graph refused is not reused — the next one meets its claims.
func TestLookUpErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		err    error
		byName bool
		state  approvals.State
		graph  approvals.GraphErrorKind
	}{
		{"404", &approvals.GraphError{Kind: approvals.GraphNotFound, Status: 404, Method: "GET"}, false, approvals.StateFailed, approvals.GraphNotFound},
		{"invalid target", &approvals.GraphError{Kind: approvals.GraphInvalid, Cause: approvals.CauseInvalidTarget}, true, approvals.StateFailed, approvals.GraphInvalid},
		{"429", &approvals.GraphError{Kind: approvals.GraphThrottled, Status: 429, Retries: 3}, false, approvals.StatePending, approvals.GraphThrottled},
		{"list incomplete", &approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseTooManyPages, Pages: 10}, true, approvals.StatePending, approvals.GraphFailed},
		{"403", &approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: approvals.CauseForbidden, Status: 403}, false, approvals.StatePending, approvals.GraphSignInAgain},
		{"claims challenge", &approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: approvals.CauseClaimsChallenge, Status: 401,
			Claims: `{"access_token":{"acrs":{"essential":true,"value":"c1"}}}`}, false, approvals.StatePending, approvals.GraphSignInAgain},
		{"not a Graph error", errors.New("port broke its contract"), false, approvals.StatePending, approvals.GraphFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, withSignInTTL(time.Hour))
			target := pc1
			if tc.byName {
				target = "CPC-alice-01"
				var once atomic.Bool
				h.graph.set(func(g *fakeGraph) {
					g.resolve[target] = []approvals.CloudPC{g.pcs[pc1]}
					g.onResolve = func(string) error {
						if once.CompareAndSwap(false, true) {
							return tc.err
						}
						return nil
					}
				})
			} else {
				h.graph.set(func(g *fakeGraph) {
					g.onGet = func(_ context.Context, n int, _ string) (*approvals.CloudPC, error) {
						if n == 1 {
							return nil, tc.err
						}
						return nil, nil
					}
				})
			}
			r := h.open(target)
			if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
				t.Fatal(err)
			}
			h.waitFor("both sides told", func() bool { return len(h.notes.tellsOf(r.ID)) == 2 })
			got := h.waitState(r.ID, tc.state)
			wantOutcome(t, got, approvals.OutcomeGraph, tc.graph)
			if tc.state != approvals.StatePending {
				h.wantTold(r.ID, note(alice, approvals.NoticeStatus, tc.state), note(a1, approvals.NoticeStatus, tc.state))
				return
			}
			h.wantTold(r.ID, note(a1, approvals.NoticeStatus, tc.state), note(alice, approvals.NoticeStatus, tc.state))
			if len(h.notes.askedFor(r.ID)) != 0 || len(h.graph.reprovisioned()) != 0 {
				t.Fatal("went on after the failed look-up")
			}
			// Approvable again; the sign-in is reused unless Graph refused it.
			asked := h.approve(a1, r.ID)
			calls := h.signIn.calls()
			if tc.graph != approvals.GraphSignInAgain {
				if len(calls) != 1 {
					t.Errorf("%d sign-ins, want the first reused", len(calls))
				}
			} else {
				ge := tc.err.(*approvals.GraphError)
				if len(calls) != 2 || calls[1].Claims != ge.Claims {
					t.Errorf("sign-ins %+v, want a second one with claims %q", calls, ge.Claims)
				}
			}
			if asked.Outcome != nil {
				t.Errorf("outcome %+v kept after a successful look-up", asked.Outcome)
			}
		})
	}
}

// A claims challenge on the POST: nothing was done, the request waits
// again, and the next sign-in carries the claims (once).
func TestClaimsChallengeOnReprovision(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSignInTTL(time.Hour))
	const claims = `{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}`
	h.graph.set(func(g *fakeGraph) {
		var first atomic.Bool
		g.onReprovision = func(context.Context, string) error {
			if first.CompareAndSwap(false, true) {
				return &approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: approvals.CauseClaimsChallenge, Status: 401, Claims: claims, RequestID: "rid-claims"}
			}
			return nil
		}
	})
	r := h.open(pc1)
	h.approve(a1, r.ID)
	pending := h.confirm(a1, r.ID, approvals.StatePending)
	wantOutcome(t, pending, approvals.OutcomeGraph, approvals.GraphSignInAgain)
	if pending.GraphRequestID != "rid-claims" {
		t.Errorf("GraphRequestID %q", pending.GraphRequestID)
	}
	h.waitFor("requester told", func() bool { return len(h.notes.tellsOf(r.ID)) == 1 })

	h.approve(a1, r.ID)
	h.confirmWhenFree(a1, r.ID)
	h.waitState(r.ID, approvals.StateSucceeded)
	r2 := h.open(pc2)
	h.approve(a1, r2.ID)
	h.stop()
	calls := h.signIn.calls()
	if len(calls) != 2 || calls[0].Claims != "" || calls[1].Claims != claims {
		t.Errorf("sign-ins %+v, want a second one with the claims, then reuse", calls)
	}
	if n := len(h.graph.reprovisioned()); n != 2 {
		t.Errorf("%d reprovision calls, want 2 (refused, then accepted)", n)
	}
}

// The final confirmation could not be sent: back to pending, with why.
func TestConfirmationNotSent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.notes.set(func(n *recorder) { n.askErr = errors.New("slack down") })
	r := h.open(pc1)
	if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	h.waitAsked(r.ID, 1)
	got := h.waitState(r.ID, approvals.StatePending)
	h.stop()
	wantOutcome(t, got, approvals.OutcomeConfirmationNotSent, "")
	if len(h.graph.reprovisioned()) != 0 {
		t.Error("reprovisioned")
	}
}

// The request moved on while the Cloud PC was being looked up (another
// process put it back): the worker leaves it as it is.
func TestLookUpWhileRequestMovesOn(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	release := make(chan struct{})
	inGet := h.holdGet(1, release)
	r := h.open(pc1)
	if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	h.waitClosed(inGet, "inGet")
	if _, err := h.store.Store.TransitionFrom(ctx, r.ID, []approvals.State{approvals.StateApproved}, approvals.StatePending, nil); err != nil {
		t.Fatal(err)
	}
	close(release)
	h.stop()
	if got := h.get(r.ID); got.State != approvals.StatePending || got.Device != nil {
		t.Errorf("request %+v", got)
	}
	if len(h.notes.askedFor(r.ID)) != 0 || len(h.notes.tellsOf(r.ID)) != 0 {
		t.Error("asked or told after the request moved on")
	}
}

// The store refuses to record the look-up: nothing is sent, the request
// ends and both are told.
func TestLookUpNotRecorded(t *testing.T) {
	t.Parallel()
	for _, byName := range []bool{false, true} {
		t.Run(fmt.Sprint("by name ", byName), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			target := pc1
			if byName {
				target = "alice@contoso.com"
				h.graph.set(func(g *fakeGraph) { g.resolve[target] = []approvals.CloudPC{g.pcs[pc1], g.pcs[pc2]} })
			}
			h.store.failWhen(func(op string, to approvals.State) error {
				if op == "transition" && to == approvals.StateConfirming {
					return errStoreDown
				}
				return nil
			})
			r := h.open(target)
			if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
				t.Fatal(err)
			}
			failed := h.waitState(r.ID, approvals.StateFailed)
			h.stop()
			wantOutcome(t, failed, approvals.OutcomeNotRecorded, "")
			h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateFailed), note(a1, approvals.NoticeStatus, approvals.StateFailed))
		})
	}
}
