package approvals_test

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

const a3 = "U0A3" // a third approver, for two-person approval

// withTwoApprovals: approvers a1, a2 and a3, two of whom must approve.
func withTwoApprovals(c *approvals.Config) {
	c.Policy.Approvers = []string{a1, a2, a3}
	c.Policy.ApprovalsRequired = 2
	c.ApproverUPNs = map[string]string{a1: upn1, a2: email2, a3: "u0a3@contoso.com"}
}

// approveFirst has approver give the first of two approvals of ref and
// waits for it to be recorded (the request waits for a decision again).
func (h *harness) approveFirst(approver, ref string) *approvals.Request {
	h.t.Helper()
	if _, err := h.w.Approve(ctx, approver, ref, false); err != nil {
		h.t.Fatalf("Approve(%s, %s): %v", approver, ref, err)
	}
	var r *approvals.Request
	h.waitFor("the approval to be recorded", func() bool {
		r = h.get(ref)
		return r.State == approvals.StatePending && r.HasApproved(approver)
	})
	return r
}

// Two approvals: the first approver signs in and their approval is recorded
// (nothing looked up, nothing asked, nothing sent); they may not give the
// second; the second approver signs in, confirms, and the one call is made
// with their token. The audit trail names both, with their usernames.
func TestTwoApprovals(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTwoApprovals)
	r := h.open(pc1)
	if r.Required() != 2 || len(r.Approvals) != 0 {
		t.Fatalf("opened %+v, want 2 approvals required and none given", r)
	}

	first := h.approveFirst(a1, r.ID)
	if len(first.Approvals) != 1 || first.Approvals[0].By != a1 || first.Approvals[0].SignedInAs != upn1 || first.Approvals[0].At.IsZero() {
		t.Errorf("approvals after the first: %+v", first.Approvals)
	}
	if !first.ExpiresAt.Equal(first.DecideBy) || first.Outcome != nil {
		t.Errorf("waiting again: expires %v (decide by %v), outcome %v", first.ExpiresAt, first.DecideBy, first.Outcome)
	}
	if h.graph.getCount() != 0 || len(h.graph.reprovisioned()) != 0 || len(h.notes.askedFor(r.ID)) != 0 {
		t.Errorf("after the first approval: %d GETs, %d POSTs, %d confirmations asked; want none",
			h.graph.getCount(), len(h.graph.reprovisioned()), len(h.notes.askedFor(r.ID)))
	}
	h.drain()
	h.wantTold(r.ID, note(a1, approvals.NoticeApprovalRecorded, approvals.StatePending), note(alice, approvals.NoticeApprovalRecorded, approvals.StatePending))
	if e := h.eventsOf(r.ID, approvals.EventApprovalRecorded); len(e) != 1 || e[0].Actor != a1 || e[0].Details["upn"] != upn1 || e[0].Details["approvals"] != "1 of 2" {
		t.Errorf("approval record: %+v", e)
	}

	_, err := h.w.Approve(ctx, a1, r.ID, false)
	if refusal := wantRefusal(t, err, approvals.RefusedAlreadyApproved); refusal != nil && !slices.Equal(refusal.Users, []string{a2, a3}) {
		t.Errorf("a second approval by the same approver: who may give it = %v, want %v", refusal.Users, []string{a2, a3})
	}

	asked := h.approve(a2, r.ID)
	if asked.SignedInAs != email2 || len(asked.Approvals) != 1 {
		t.Errorf("asked to confirm: signed in as %q with approvals %+v", asked.SignedInAs, asked.Approvals)
	}
	done := h.confirm(a2, r.ID, approvals.StateSucceeded)
	h.stop()
	if got := h.graph.reprovisioned(); !slices.Equal(got, []string{pc1 + " by " + email2}) {
		t.Errorf("reprovision calls %q, want one with the last approver's token", got)
	}
	if done.DecidedBy != a2 || len(done.Approvals) != 1 {
		t.Errorf("succeeded: decided by %s, approvals %+v", done.DecidedBy, done.Approvals)
	}
	signedIn := map[string]string{}
	for _, e := range h.eventsOf(r.ID, approvals.EventSignedIn) {
		signedIn[e.Actor] = e.Details["upn"]
	}
	if signedIn[a1] != upn1 || signedIn[a2] != email2 {
		t.Errorf("sign-ins audited: %v", signedIn)
	}
	if e := h.eventsOf(r.ID, approvals.EventApproved); len(e) != 2 || e[0].Details["approval"] != "1 of 2" || e[1].Details["approval"] != "2 of 2" {
		t.Errorf("approvals audited: %+v", e)
	}
}

// Any single Deny ends the request, also after an approval; a denial by
// the approver who approved is a change of mind and counts too.
func TestDenyAfterTheFirstApproval(t *testing.T) {
	t.Parallel()
	for _, denier := range []string{a2, a1} {
		t.Run(denier, func(t *testing.T) {
			h := newHarness(t, withTwoApprovals)
			r := h.open(pc1)
			h.approveFirst(a1, r.ID)
			denied, err := h.w.Deny(ctx, denier, r.ID, "not this week")
			if err != nil || denied.State != approvals.StateDenied || denied.DecidedBy != denier {
				t.Fatalf("Deny = %+v, %v", denied, err)
			}
			if _, err := h.w.Approve(ctx, a3, r.ID, false); err == nil {
				t.Error("approving a denied request succeeded")
			}
			h.stop()
			if n := len(h.graph.reprovisioned()); n != 0 {
				t.Errorf("%d reprovision calls, want none", n)
			}
		})
	}
}

// With two approvals required the requester never approves their own
// request, even where self-approval is allowed; an approver asking needs
// two others.
func TestTwoApprovalsNeverTheRequester(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTwoApprovals, func(c *approvals.Config) { c.Policy.AllowSelfApproval = true })
	r := h.openBy(a1, pc1)
	_, err := h.w.Approve(ctx, a1, r.ID, false)
	wantRefusal(t, err, approvals.RefusedOwnRequest)
	h.approveFirst(a2, r.ID)
	_, err = h.w.Approve(ctx, a1, r.ID, false)
	wantRefusal(t, err, approvals.RefusedOwnRequest)
	if h.signIn.count() != 1 {
		t.Errorf("%d sign-ins, want 1 (a2's)", h.signIn.count())
	}

	policy := approvals.Policy{Approvers: []string{a1, a2}, ApprovalsRequired: 2, AllowSelfApproval: true}
	wantRefusal(t, policy.MayRequest(a1, ops), approvals.RefusedTooFewApprovers)
	if err := policy.MayRequest(alice, ops); err != nil {
		t.Errorf("a requester who is no approver, two approvers for two approvals: %v", err)
	}
}

// Two approvers racing for the second approval: one wins, the other is
// told it is being handled; exactly one call.
func TestTwoApproversRaceForTheSecondApproval(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTwoApprovals)
	r := h.open(pc1)
	h.approveFirst(a1, r.ID)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, approver := range []string{a2, a3} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.w.Approve(ctx, approver, r.ID, false)
		}()
	}
	wg.Wait()
	var won []string
	for i, err := range errs {
		var refusal *approvals.Refusal
		switch {
		case err == nil:
			won = append(won, []string{a2, a3}[i])
		case errors.As(err, &refusal) && refusal.Kind == approvals.RefusedHandled:
		default:
			t.Errorf("Approve by %s: %v, want success or already handled", []string{a2, a3}[i], err)
		}
	}
	if len(won) != 1 {
		t.Fatalf("approvals taken: %v, want exactly one", won)
	}
	h.waitAsked(r.ID, 1)
	h.confirm(won[0], r.ID, approvals.StateSucceeded)
	h.stop()
	if n := len(h.graph.reprovisioned()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}
}

// Two approvals must be two people: a second approver whose sign-in is the
// first approver's username (two chat accounts mapped to one Entra user)
// does not count; the request waits again and both sides are told.
func TestSecondApprovalBySameIdentityRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTwoApprovals, func(c *approvals.Config) { c.ApproverUPNs[a2] = upn1 })
	r := h.open(pc1)
	h.approveFirst(a1, r.ID)
	h.signIn.next(h.signInAs(upn1))
	if _, err := h.w.Approve(ctx, a2, r.ID, false); err != nil {
		t.Fatal(err)
	}
	var back *approvals.Request
	h.waitFor("the request to wait again", func() bool {
		back = h.get(r.ID)
		return back.State == approvals.StatePending && back.Outcome != nil
	})
	if back.Outcome.Kind != approvals.OutcomeSameIdentity || back.Outcome.SignedInAs != upn1 || len(back.Approvals) != 1 {
		t.Errorf("after the same identity twice: outcome %+v, approvals %+v", back.Outcome, back.Approvals)
	}
	h.stop()
	if h.graph.getCount() != 0 || len(h.graph.reprovisioned()) != 0 {
		t.Errorf("%d GETs and %d POSTs, want none", h.graph.getCount(), len(h.graph.reprovisioned()))
	}
	if e := h.eventsOf(r.ID, approvals.EventIdentityMismatch); len(e) != 1 || e[0].Actor != a2 {
		t.Errorf("identity mismatch records: %+v", e)
	}
}

// Each approval is a fresh sign-in: a sign-in kept for reuse does not stand
// in for one when more than one approval is required.
func TestTwoApprovalsEachSignsIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTwoApprovals, withSignInTTL(time.Hour))
	r1, r2 := h.open(pc1), h.open(pc2)
	h.approveFirst(a1, r1.ID)
	h.approveFirst(a1, r2.ID)
	if n := h.signIn.count(); n != 2 {
		t.Errorf("%d sign-ins for two approvals, want 2", n)
	}
	// Approve with final set (details on the prompt) still signs in and
	// asks to confirm.
	if _, err := h.w.Approve(ctx, a2, r1.ID, true); err != nil {
		t.Fatal(err)
	}
	h.waitAsked(r1.ID, 1)
	if n := h.signIn.count(); n != 3 {
		t.Errorf("%d sign-ins, want 3", n)
	}
}

// A restart between the approvals keeps the first: the second approver
// completes the request after it.
func TestApprovalSurvivesRestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTwoApprovals)
	r := h.open(pc1)
	h.approveFirst(a1, r.ID)
	h.restart()
	if got := h.get(r.ID); got.State != approvals.StatePending || !got.HasApproved(a1) {
		t.Fatalf("after the restart: %s, approvals %+v", got.State, got.Approvals)
	}
	h.approve(a3, r.ID)
	h.confirm(a3, r.ID, approvals.StateSucceeded)
	h.stop()
	if got := h.graph.reprovisioned(); !slices.Equal(got, []string{pc1 + " by u0a3@contoso.com"}) {
		t.Errorf("reprovision calls %q", got)
	}
}

func TestPolicyApprovalsRequired(t *testing.T) {
	for _, tc := range []struct {
		policy approvals.Policy
		ok     bool
	}{
		{approvals.Policy{Approvers: []string{a1}}, true},
		{approvals.Policy{Approvers: []string{a1}, ApprovalsRequired: 1}, true},
		{approvals.Policy{Approvers: []string{a1, a2}, ApprovalsRequired: 2}, true},
		{approvals.Policy{Approvers: []string{a1, a2, a3}, ApprovalsRequired: 3}, true},
		{approvals.Policy{Approvers: []string{a1}, ApprovalsRequired: 2}, false},
		{approvals.Policy{Approvers: []string{a1, a2, a3, alice}, ApprovalsRequired: 4}, false},
		{approvals.Policy{Approvers: []string{a1}, ApprovalsRequired: -1}, false},
	} {
		if err := tc.policy.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%d of %v) = %v, want ok=%v", tc.policy.ApprovalsRequired, tc.policy.Approvers, err, tc.ok)
		}
	}
	r := approvals.Policy{Approvers: []string{a1, a2}, ApprovalsRequired: 2}.NewRequest(time.Now(), alice, ops, pc1, "why")
	if r.ApprovalsRequired != 2 {
		t.Errorf("new request needs %d approvals, want 2 (copied from the policy)", r.ApprovalsRequired)
	}
}

// The options asked for reach the reprovision call as they are.
func TestOptionsReachTheCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	opts := approvals.Options{OSVersion: approvals.OSWindows11, UserAccountType: approvals.AccountStandardUser}
	r, err := h.w.NewRequestWith(alice, ops, pc1, "upgrade", opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.w.Open(ctx, r); err != nil {
		t.Fatal(err)
	}
	h.approve(a1, r.ID)
	h.confirm(a1, r.ID, approvals.StateSucceeded)
	h.stop()
	h.graph.mu.Lock()
	got := slices.Clone(h.graph.postOptions)
	h.graph.mu.Unlock()
	if len(got) != 1 || got[0] != opts {
		t.Errorf("options sent %+v, want %+v", got, opts)
	}
	if e := h.eventsOf(r.ID, approvals.EventRequested); len(e) != 1 || e[0].Details["os_version"] != "windows11" || e[0].Details["user_account_type"] != "standardUser" {
		t.Errorf("request record: %+v", e)
	}
	if _, err := h.w.NewRequestWith(alice, ops, pc2, "x", approvals.Options{OSVersion: "windows7"}); err == nil {
		t.Error("NewRequestWith accepted an unknown OS version")
	}
}
