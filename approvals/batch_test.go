package approvals_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// Batches: one approval for many Cloud PCs, one call each, an outcome each.

func withBatch(max, twoPerson, parallel int) option {
	return func(c *approvals.Config) { c.BatchMax, c.BatchTwoPerson, c.BatchParallel = max, twoPerson, parallel }
}

// addPCs adds n Cloud PCs of policy "Sales" (ids pcN(i), device CPC-SALES-i,
// user user-i@contoso.com) and returns their ids.
func (h *harness) addPCs(n int) []string {
	var ids []string
	h.graph.set(func(g *fakeGraph) {
		for i := range n {
			id := pcN(i)
			g.pcs[id] = approvals.CloudPC{
				ID: id, DisplayName: fmt.Sprintf("Sales PC %02d", i), UserPrincipalName: fmt.Sprintf("user-%02d@contoso.com", i),
				ManagedDeviceName: fmt.Sprintf("CPC-SALES-%02d", i), ProvisioningPolicyName: "Sales", Status: "provisioned",
			}
			ids = append(ids, id)
		}
	})
	return ids
}

func pcN(i int) string { return fmt.Sprintf("7b2c0d1e-3f40-4a5b-8c6d-%012d", i) }

// openBatch asks, as alice, for a batch of targets (or of policy) and opens it.
func (h *harness) openBatch(targets []string, policy string) *approvals.Request {
	h.t.Helper()
	r, err := h.w.NewBatch(alice, ops, targets, policy, "bad image", approvals.Options{})
	if err != nil {
		h.t.Fatalf("NewBatch: %v", err)
	}
	if err := h.w.Open(context.Background(), r); err != nil {
		h.t.Fatalf("Open: %v", err)
	}
	return h.get(r.ID)
}

// members maps a batch's members by Cloud PC id.
func members(r *approvals.Request) map[string]approvals.Member {
	out := map[string]approvals.Member{}
	for _, m := range r.Batch.Members {
		out[m.CloudPCID] = m
	}
	return out
}

// postsPer counts the reprovision calls per Cloud PC id.
func (g *fakeGraph) postsPer() map[string]int {
	out := map[string]int{}
	for _, p := range g.reprovisioned() {
		out[strings.Fields(p)[0]]++
	}
	return out
}

// memberLines are the progress lines posted under the batch's prompt, as
// "id result".
func (h *harness) memberLines(ref string) []string {
	var out []string
	for _, p := range h.notes.progressOf(ref) {
		if p.Kind == approvals.ProgressMember {
			out = append(out, p.Member.CloudPCID+" "+string(p.Member.Result))
		}
	}
	return out
}

func TestBatchByListSendsEachCloudPCOnceWithTheApproversSignIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ids := h.addPCs(4)
	h.graph.set(func(g *fakeGraph) { g.resolve["CPC-SALES-03"] = []approvals.CloudPC{g.pcs[ids[3]]} })
	// The fourth by name, the first twice (once in capitals): three ids, one name, one repeat.
	r := h.openBatch([]string{ids[0], ids[1], ids[2], strings.ToUpper(ids[0]), "CPC-SALES-03"}, "")
	if got := r.Batch.Targets; len(got) != 4 {
		t.Fatalf("targets %v, want the repeat collapsed to 4", got)
	}
	if r.Required() != 1 || r.CloudPCID != "" {
		t.Fatalf("a batch of 4: %d approvals required, Cloud PC id %q", r.Required(), r.CloudPCID)
	}
	asked := h.approve(a1, r.ID)
	if asked.State != approvals.StateConfirming || len(asked.Batch.Members) != 4 {
		t.Fatalf("asked to confirm %s with %d members", asked.State, len(asked.Batch.Members))
	}
	for _, m := range asked.Batch.Members {
		if m.Result != approvals.MemberWaiting || m.Device.ManagedDeviceName == "" {
			t.Errorf("member as offered: %+v", m)
		}
	}
	if len(h.graph.reprovisioned()) != 0 {
		t.Fatal("a call went out before the confirmation")
	}
	done := h.confirm(a1, r.ID, approvals.StateSucceeded)
	for _, id := range ids {
		if n := h.graph.postsPer()[id]; n != 1 {
			t.Errorf("%s: %d calls, want 1", id, n)
		}
		if m := members(done)[id]; m.Result != approvals.MemberSent || m.GraphRequestID == "" {
			t.Errorf("%s: %+v, want sent with Graph's request-id", id, m)
		}
	}
	for _, p := range h.graph.reprovisioned() {
		if !strings.HasSuffix(p, " by "+upn1) {
			t.Errorf("call %q not made with the approver's sign-in", p)
		}
	}
	h.waitFor("a line per Cloud PC under the prompt", func() bool { return len(h.memberLines(r.ID)) == 4 })
	h.waitFor("the summary to both", func() bool {
		return slices.Contains(h.notes.toldWhom(r.ID), note(alice, approvals.NoticeStatus, approvals.StateSucceeded)) &&
			slices.Contains(h.notes.toldWhom(r.ID), note(a1, approvals.NoticeStatus, approvals.StateSucceeded))
	})
	if n := len(h.eventsOf(r.ID, approvals.EventBatchMember)); n != 8 {
		t.Errorf("%d member records, want 8 (4 as found, 4 results)", n)
	}
	// Every call has its audit record: 4 look-ups (3 reads, 1 name), 4 re-checks, 4 calls.
	if n := len(h.eventsOf(r.ID, approvals.EventGraphCall)); n != 12 {
		t.Errorf("%d Graph call records, want 12", n)
	}
	// The Cloud PCs are free again (not followed).
	if _, err := h.w.NewRequest(bob, ops, ids[0], "again"); err != nil {
		t.Fatal(err)
	}
	again := h.open(ids[0])
	if again.State != approvals.StatePending {
		t.Errorf("a new request for a member after the batch: %s", again.State)
	}
}

func TestBatchLimitsAndTwoPersonApproval(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withBatch(3, 2, 2))
	ids := h.addPCs(4)
	_, err := h.w.NewBatch(alice, ops, ids, "", "bad image", approvals.Options{})
	if refusal := wantRefusal(t, err, approvals.RefusedBatchTooLarge); refusal.Count != 4 || refusal.Max != 3 {
		t.Errorf("refusal counts %d of %d, want 4 of 3", refusal.Count, refusal.Max)
	}
	// Repeats do not count.
	r, err := h.w.NewBatch(alice, ops, []string{ids[0], ids[1], ids[0], ids[2]}, "", "bad image", approvals.Options{})
	if err != nil {
		t.Fatalf("3 Cloud PCs and a repeat: %v", err)
	}
	if r.Required() != 2 {
		t.Errorf("a batch of 3 above the two-person limit of 2 needs %d approvals, want 2", r.Required())
	}
	small, err := h.w.NewBatch(alice, ops, ids[:2], "", "bad image", approvals.Options{})
	if err != nil || small.Required() != 1 {
		t.Fatalf("a batch of 2: %v, %d approvals", err, small.Required())
	}
	byPolicy, err := h.w.NewBatch(alice, ops, nil, "Sales", "bad image", approvals.Options{})
	if err != nil || byPolicy.Required() != 2 {
		t.Fatalf("a batch by policy (size unknown until the sign-in): %v, %d approvals, want 2", err, byPolicy.Required())
	}
	// Two approvals: the first is recorded, the second looks up and confirms.
	if err := h.w.Open(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if _, err := h.w.Approve(context.Background(), a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the first approval recorded", func() bool { return len(h.get(r.ID).Approvals) == 1 })
	if h.graph.getCount() != 0 {
		t.Error("the first approval looked the Cloud PCs up")
	}
	h.approve(a2, r.ID)
	h.confirm(a2, r.ID, approvals.StateSucceeded)
	if n := len(h.graph.reprovisioned()); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
}

func TestBatchOnlyOneApproverCannotAskForATwoPersonBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withBatch(50, 1, 4), func(c *approvals.Config) { c.Policy.Approvers = []string{a1} })
	_, err := h.w.NewBatch(a1, ops, []string{pc1, pc2}, "", "x", approvals.Options{})
	wantRefusal(t, err, approvals.RefusedSoleApprover)
	_, err = h.w.NewBatch(alice, ops, []string{pc1, pc2}, "", "x", approvals.Options{})
	if refusal := wantRefusal(t, err, approvals.RefusedTooFewApprovers); refusal.Required != 2 {
		t.Errorf("refusal says %d approvals are required, want 2", refusal.Required)
	}
}

func TestBatchSkipsExcludesAndRechecksEachCloudPC(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ids := h.addPCs(5)
	h.graph.setStatus(ids[1], "inGracePeriod") // not allowed: skipped at the look-up
	held := h.openBy(bob, ids[2])              // another open request holds it
	r := h.openBatch([]string{ids[0], ids[1], ids[2], ids[3], ids[4], "CPC-NOBODY"}, "")
	asked := h.approve(a1, r.ID)
	got := members(asked)
	if m := got[ids[1]]; m.Result != approvals.MemberSkipped || m.Detail != "inGracePeriod" {
		t.Errorf("status not allowed: %+v", m)
	}
	if m := got[ids[2]]; m.Result != approvals.MemberExcluded || m.Other != held.ID {
		t.Errorf("held elsewhere: %+v, want excluded naming %s", m, held.ID)
	}
	var nobody *approvals.Member
	for i, m := range asked.Batch.Members {
		if m.Target == "CPC-NOBODY" {
			nobody = &asked.Batch.Members[i]
		}
	}
	if nobody == nil || nobody.Result != approvals.MemberExcluded || nobody.CloudPCID != "" {
		t.Errorf("a name matching nothing: %+v", nobody)
	}
	// Between the confirmation and its turn a Cloud PC's status changes.
	h.graph.setStatus(ids[4], "provisioning")
	done := h.confirm(a1, r.ID, approvals.StateSucceeded)
	if m := members(done)[ids[4]]; m.Result != approvals.MemberSkipped || m.Detail != "provisioning" {
		t.Errorf("re-checked before its call: %+v", m)
	}
	if posts := h.graph.postsPer(); len(posts) != 2 || posts[ids[0]] != 1 || posts[ids[3]] != 1 {
		t.Errorf("calls %v, want one each for the two sendable Cloud PCs", posts)
	}
	// The single request holding one of them was never touched.
	if h.get(held.ID).State != approvals.StatePending {
		t.Errorf("the other request is %s", h.get(held.ID).State)
	}
}

func TestBatchCloudPCsAreHeldWhileItIsOpen(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ids := h.addPCs(2)
	r := h.openBatch(ids, "")
	h.approve(a1, r.ID) // members known and held from here on
	single, err := h.w.NewRequest(bob, ops, ids[1], "mine")
	if err != nil {
		t.Fatal(err)
	}
	refusal := wantRefusal(t, h.w.Open(context.Background(), single), approvals.RefusedOpenElsewhere)
	if refusal.Other == nil || refusal.Other.ID != r.ID {
		t.Errorf("refusal names %v, want the batch %s", refusal.Other, r.ID)
	}
	h.confirm(a1, r.ID, approvals.StateSucceeded)
	h.open(ids[1]) // free once the batch ended
}

func TestBatchNothingToSendEndsFailed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ids := h.addPCs(2)
	for _, id := range ids {
		h.graph.setStatus(id, "inGracePeriod")
	}
	r := h.openBatch(ids, "")
	if _, err := h.w.Approve(context.Background(), a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	failed := h.waitState(r.ID, approvals.StateFailed)
	wantOutcome(t, failed, approvals.OutcomeNothingToSend, "")
	if len(failed.Batch.Members) != 2 || failed.Batch.Counts()[approvals.MemberSkipped] != 2 {
		t.Errorf("members kept for the record: %+v", failed.Batch.Members)
	}
}

func TestBatchByPolicyListsItsCloudPCs(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withBatch(50, 50, 4)) // no second approval needed
	ids := h.addPCs(6)
	r := h.openBatch(nil, "Sales")
	if r.Required() != 1 {
		t.Fatalf("%d approvals required", r.Required())
	}
	asked := h.approve(a1, r.ID)
	if asked.Batch.PolicyName != "Sales" || asked.Batch.PolicyID == "" || len(asked.Batch.Members) != 6 {
		t.Fatalf("policy %q (%s) with %d members", asked.Batch.PolicyName, asked.Batch.PolicyID, len(asked.Batch.Members))
	}
	for i, m := range asked.Batch.Members {
		if want := fmt.Sprintf("CPC-SALES-%02d", i); m.Device.ManagedDeviceName != want {
			t.Errorf("member %d is %s, want %s (by name)", i, m.Device.ManagedDeviceName, want)
		}
	}
	h.confirm(a1, r.ID, approvals.StateSucceeded)
	for _, id := range ids {
		if h.graph.postsPer()[id] != 1 {
			t.Errorf("%s: %d calls", id, h.graph.postsPer()[id])
		}
	}
	// Too many for the limit: found only after the sign-in.
	h2 := newHarness(t, withBatch(5, 50, 4))
	h2.addPCs(6)
	big := h2.openBatch(nil, "Sales")
	if _, err := h2.w.Approve(context.Background(), a1, big.ID, false); err != nil {
		t.Fatal(err)
	}
	failed := h2.waitState(big.ID, approvals.StateFailed)
	if failed.Outcome == nil || failed.Outcome.Kind != approvals.OutcomeBatchTooLarge || failed.Outcome.Matches != 6 || failed.Outcome.Max != 5 {
		t.Errorf("outcome %+v, want too large: 6 of at most 5", failed.Outcome)
	}
	if len(h2.graph.reprovisioned()) != 0 {
		t.Error("a call was sent")
	}
	// An unknown policy ends the request with Graph's not found.
	h3 := newHarness(t, withBatch(50, 50, 4))
	none := h3.openBatch(nil, "Nope")
	if _, err := h3.w.Approve(context.Background(), a1, none.ID, false); err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, h3.waitState(none.ID, approvals.StateFailed), approvals.OutcomeGraph, approvals.GraphNotFound)
}

func TestBatchOneRefusedCallTheRestGoOn(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ids := h.addPCs(4)
	h.graph.set(func(g *fakeGraph) {
		g.onReprovision = func(ctx context.Context, id string) error {
			switch id {
			case ids[1]:
				return &approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseRefused, Method: "POST", Status: 500,
					Code: "InternalServerError", Message: "boom", RequestID: "rid-500"}
			case ids[2]:
				return &approvals.GraphError{Kind: approvals.GraphOutcomeUnknown, Cause: approvals.CauseServerError, Method: "POST", Status: 504}
			}
			return nil
		}
	})
	r := h.openBatch(ids, "")
	h.approve(a1, r.ID)
	done := h.confirm(a1, r.ID, approvals.StateSucceeded)
	got := members(done)
	if m := got[ids[1]]; m.Result != approvals.MemberFailed || m.GraphCode != "InternalServerError" || m.GraphRequestID != "rid-500" || m.GraphStatus != 500 {
		t.Errorf("refused call: %+v", m)
	}
	if m := got[ids[2]]; m.Result != approvals.MemberUnknown {
		t.Errorf("unanswered call: %+v", m)
	}
	for _, id := range []string{ids[0], ids[3]} {
		if got[id].Result != approvals.MemberSent {
			t.Errorf("%s: %s", id, got[id].Result)
		}
	}
	if posts := h.graph.postsPer(); len(posts) != 4 || slices.ContainsFunc(ids, func(id string) bool { return posts[id] != 1 }) {
		t.Errorf("calls %v, want exactly one each", posts)
	}
}

func TestBatchWithNoCallAcceptedEndsAsItsCallsDid(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ids := h.addPCs(2)
	h.graph.set(func(g *fakeGraph) {
		g.onReprovision = func(ctx context.Context, id string) error {
			return &approvals.GraphError{Kind: approvals.GraphConflict, Cause: approvals.CauseConflict, Method: "POST", Status: 409, Code: "Conflict"}
		}
	})
	r := h.openBatch(ids, "")
	h.approve(a1, r.ID)
	done := h.confirm(a1, r.ID, approvals.StateFailed)
	if c := done.Batch.Counts(); c[approvals.MemberFailed] != 2 {
		t.Errorf("counts %v", c)
	}
}

// holdCalls makes every reprovision call wait for release; started gets
// the id of each call as it starts.
func (h *harness) holdCalls(release <-chan struct{}) <-chan string {
	started := make(chan string, 100)
	h.graph.set(func(g *fakeGraph) {
		g.onReprovision = func(ctx context.Context, id string) error {
			started <- id
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return &approvals.GraphError{Kind: approvals.GraphOutcomeUnknown, Cause: approvals.CauseNoAnswer, Method: "POST", Err: ctx.Err()}
			}
		}
	})
	return started
}

func TestBatchStopMidwaySendsNothingMore(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withBatch(50, 50, 1)) // one call at a time
	ids := h.addPCs(5)
	release := make(chan struct{})
	started := h.holdCalls(release)
	r := h.openBatch(ids, "")
	h.approve(a1, r.ID)
	if _, err := h.w.Confirm(context.Background(), a1, r.ID, ""); err != nil {
		t.Fatal(err)
	}
	<-started // the first call is in flight
	_, err := h.w.StopBatch(context.Background(), bob, r.ID)
	wantRefusal(t, err, approvals.RefusedNotAnApprover)
	h.wantRefusedClick(r.ID, bob, approvals.ActionStopBatch, approvals.RefusedNotAnApprover)
	stopped, err := h.w.StopBatch(context.Background(), a2, r.ID) // any approver may stop it
	if err != nil {
		t.Fatal(err)
	}
	if !stopped.Batch.Stopped || stopped.Batch.StoppedBy != a2 {
		t.Errorf("stopped: %+v", stopped.Batch)
	}
	_, err = h.w.StopBatch(context.Background(), a1, r.ID)
	wantRefusal(t, err, approvals.RefusedHandled)
	close(release)
	done := h.waitState(r.ID, approvals.StateSucceeded)
	c := done.Batch.Counts()
	if c[approvals.MemberSent] != 1 || c[approvals.MemberNotSent] != 4 {
		t.Errorf("counts %v, want 1 sent (in flight at the stop) and 4 not sent", c)
	}
	if n := len(h.graph.reprovisioned()); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
	h.waitFor("whoever stopped it told how it ended", func() bool {
		return slices.Contains(h.notes.toldWhom(r.ID), note(a2, approvals.NoticeStatus, approvals.StateSucceeded))
	})
	if len(h.eventsOf(r.ID, approvals.EventBatchStopped)) != 1 {
		t.Error("the stop is not in the audit trail")
	}
}

func TestBatchStoppedBeforeAnyCallIsCanceled(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withBatch(50, 50, 1))
	ids := h.addPCs(3)
	release := make(chan struct{})
	h.holdGet(len(ids)+1, release) // the first re-check, after the look-up's reads
	r := h.openBatch(ids, "")
	h.approve(a1, r.ID)
	if _, err := h.w.Confirm(context.Background(), a1, r.ID, ""); err != nil {
		t.Fatal(err)
	}
	h.waitState(r.ID, approvals.StateExecuting)
	if _, err := h.w.StopBatch(context.Background(), a1, r.ID); err != nil {
		t.Fatal(err)
	}
	close(release)
	done := h.waitState(r.ID, approvals.StateCanceled)
	if c := done.Batch.Counts(); c[approvals.MemberNotSent] != 3 {
		t.Errorf("counts %v", c)
	}
	if n := len(h.graph.reprovisioned()); n != 0 {
		t.Errorf("%d calls after a stop before any", n)
	}
}

func TestBatchRestartMidwayWaitsForResumeWithAFreshSignIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withBatch(50, 50, 1), withSignInTTL(time.Hour))
	ids := h.addPCs(4)
	release := make(chan struct{})
	started := h.holdCalls(release)
	r := h.openBatch(ids, "")
	h.approve(a1, r.ID)
	if _, err := h.w.Confirm(context.Background(), a1, r.ID, ""); err != nil {
		t.Fatal(err)
	}
	first := <-started
	// The process stops with that call in flight (the stop's grace ends it
	// unanswered), and starts again.
	h.restart()
	halted := h.waitState(r.ID, approvals.StateExecuting)
	h.waitFor("the batch halted", func() bool { return h.get(r.ID).Batch.Halted })
	halted = h.get(r.ID)
	if m := members(halted)[first]; m.Result != approvals.MemberUnknown {
		t.Errorf("the call in flight at the stop: %+v, want outcome unknown", m)
	}
	if c := halted.Batch.Counts(); c[approvals.MemberWaiting] != 3 {
		t.Errorf("counts after the restart %v, want 3 waiting", c)
	}
	h.waitFor("the approver asked to resume or stop", func() bool {
		return slices.Contains(h.notes.toldWhom(r.ID), note(a1, approvals.NoticeBatchHalted, approvals.StateExecuting))
	})
	_, err := h.w.ResumeBatch(context.Background(), a2, r.ID)
	wantRefusal(t, err, approvals.RefusedNotConfirmer)
	close(release)
	signIns := h.signIn.count()
	h.resumeWhenFree(a1, r.ID)
	done := h.waitState(r.ID, approvals.StateSucceeded)
	if h.signIn.count() != signIns+1 {
		t.Errorf("resumed without a fresh sign-in")
	}
	posts := h.graph.postsPer()
	for _, id := range ids {
		if posts[id] != 1 {
			t.Errorf("%s: %d calls, want exactly 1 (never resent)", id, posts[id])
		}
	}
	if c := done.Batch.Counts(); c[approvals.MemberSent] != 3 || c[approvals.MemberUnknown] != 1 {
		t.Errorf("counts %v", c)
	}
	if len(h.eventsOf(r.ID, approvals.EventBatchHalted)) != 1 || len(h.eventsOf(r.ID, approvals.EventBatchResumed)) != 1 {
		t.Errorf("audit trail: %v", h.kinds(r.ID))
	}
}

// resumeWhenFree resumes ref as approver, again while the workflow answers
// that the worker that halted it has not let go yet.
func (h *harness) resumeWhenFree(approver, ref string) {
	h.t.Helper()
	h.waitFor("the resume to be taken", func() bool {
		_, err := h.w.ResumeBatch(context.Background(), approver, ref)
		var refusal *approvals.Refusal
		if errors.As(err, &refusal) && refusal.Kind == approvals.RefusedBusy {
			return false
		}
		if err != nil {
			h.t.Fatalf("ResumeBatch(%s, %s) = %v", approver, ref, err)
		}
		return true
	})
}

func TestBatchHaltedCanBeStoppedWithoutSigningIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withBatch(50, 50, 1))
	ids := h.addPCs(3)
	release := make(chan struct{})
	started := h.holdCalls(release)
	r := h.openBatch(ids, "")
	h.approve(a1, r.ID)
	if _, err := h.w.Confirm(context.Background(), a1, r.ID, ""); err != nil {
		t.Fatal(err)
	}
	<-started
	h.restart()
	h.waitFor("the batch halted", func() bool { return h.get(r.ID).Batch.Halted })
	close(release)
	if _, err := h.w.StopBatch(context.Background(), a1, r.ID); err != nil {
		t.Fatal(err)
	}
	done := h.waitState(r.ID, approvals.StateOutcomeUnknown) // its only call went unanswered
	if c := done.Batch.Counts(); c[approvals.MemberNotSent] != 2 || c[approvals.MemberUnknown] != 1 {
		t.Errorf("counts %v", c)
	}
	if n := len(h.graph.reprovisioned()); n != 1 {
		t.Errorf("%d calls", n)
	}
}

func TestBatchGraphWantingAFreshSignInHaltsIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withBatch(50, 50, 1))
	ids := h.addPCs(3)
	var once sync.Once
	h.graph.set(func(g *fakeGraph) {
		g.onReprovision = func(ctx context.Context, id string) (err error) {
			if id == ids[1] {
				once.Do(func() {
					err = &approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: approvals.CauseUnauthorized, Method: "POST", Status: 401}
				})
			}
			return err
		}
	})
	r := h.openBatch(ids, "")
	h.approve(a1, r.ID)
	if _, err := h.w.Confirm(context.Background(), a1, r.ID, ""); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the batch halted", func() bool { return h.get(r.ID).Batch.Halted })
	halted := h.get(r.ID)
	if m := members(halted)[ids[1]]; m.Result != approvals.MemberWaiting {
		t.Errorf("refused for want of a sign-in: %+v, want waiting again", m)
	}
	wantOutcome(t, halted, approvals.OutcomeGraph, approvals.GraphSignInAgain)
	h.resumeWhenFree(a1, r.ID)
	done := h.waitState(r.ID, approvals.StateSucceeded)
	if c := done.Batch.Counts(); c[approvals.MemberSent] != 3 {
		t.Errorf("counts %v", c)
	}
}

func TestBatchTrackingFollowsEverySentCloudPC(t *testing.T) {
	t.Parallel()
	for _, byPolicy := range []bool{false, true} {
		t.Run(fmt.Sprintf("policy=%v", byPolicy), func(t *testing.T) {
			h := newHarness(t, withTrackFor(time.Minute), withBatch(50, 50, 2), withSignInTTL(time.Hour))
			ids := h.addPCs(3)
			// Each Cloud PC reads provisioning once after the calls, then
			// provisioned; the third one's reprovision fails.
			looks := map[string]int{}
			var mu sync.Mutex
			status := func(id string) string {
				mu.Lock()
				defer mu.Unlock()
				looks[id]++
				switch {
				case looks[id] == 1:
					return "provisioning"
				case id == ids[2]:
					return "failed"
				}
				return "provisioned"
			}
			r := h.openBatch(ids, "")
			if byPolicy {
				r = h.openBatch(nil, "Sales")
			}
			h.approve(a1, r.ID)
			h.graph.set(func(g *fakeGraph) {
				g.statusAfterPOST = status
				g.onGet = func(ctx context.Context, n int, id string) (*approvals.CloudPC, error) {
					if len(g.posts) < 3 {
						return nil, nil // the re-checks before the calls
					}
					pc := g.pcs[id]
					pc.Status = status(id)
					return &pc, nil
				}
			})
			h.confirm(a1, r.ID, approvals.StateSucceeded)
			h.waitFor("following to end", func() bool { return !h.get(r.ID).Tracking.Active() })
			done := h.get(r.ID)
			if done.Tracking.Result != approvals.TrackFailed {
				t.Errorf("tracking result %q, want failed (one reprovision failed)", done.Tracking.Result)
			}
			got := members(done)
			for _, id := range ids[:2] {
				if got[id].Result != approvals.MemberSucceeded || got[id].Tracked != approvals.TrackProvisioned {
					t.Errorf("%s: %+v", id, got[id])
				}
			}
			if m := got[ids[2]]; m.Result != approvals.MemberFailed || m.Tracked != approvals.TrackFailed {
				t.Errorf("failed reprovision: %+v", m)
			}
			h.waitFor("the requester told how it ended", func() bool {
				n := 0
				for _, tl := range h.notes.tellsOf(r.ID) {
					if tl.User == alice && tl.Kind == approvals.NoticeStatus && tl.State == approvals.StateSucceeded && !tl.TrackingActive {
						n++
					}
				}
				return n == 1
			})
			if byPolicy {
				// One list per look, never a read per Cloud PC.
				if h.graph.policyLists < 2 {
					t.Errorf("%d policy lists", h.graph.policyLists)
				}
				mu.Lock()
				for _, id := range ids {
					if looks[id] != 2 {
						t.Errorf("%s looked at %d times, want 2 (one per list)", id, looks[id])
					}
				}
				mu.Unlock()
			}
			h.open(ids[0]) // free again
		})
	}
}

func TestBatchUsersHearBeforeTheirCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *approvals.Config) { c.NotifyUser = true })
	ids := h.addPCs(2)
	h.notes.set(func(n *recorder) {
		n.chatUsers = map[string]string{"user-00@contoso.com": "U0USER0"}
	})
	r := h.openBatch(ids, "")
	h.approve(a1, r.ID)
	h.confirm(a1, r.ID, approvals.StateSucceeded)
	h.waitFor("the heads-up to the one user found", func() bool {
		for _, tl := range h.notes.tellsOf(r.ID) {
			if tl.User == "U0USER0" && tl.Kind == approvals.NoticeHeadsUp && tl.Member != nil && tl.Member.CloudPCID == ids[0] {
				return true
			}
		}
		return false
	})
	got := members(h.get(r.ID))
	if hu := got[ids[0]].HeadsUp; !hu.Told() {
		t.Errorf("heads-up not recorded: %+v", hu)
	}
	// The other user has no chat account: recorded on the member (its line
	// and the counts say so), not a DM each to the approver and requester.
	if hu := got[ids[1]].HeadsUp; hu.Result != approvals.HeadsUpNoAccount {
		t.Errorf("the user without a chat account: %+v", hu)
	}
	h.drain()
	for _, tl := range h.notes.tellsOf(r.ID) {
		if tl.Kind == approvals.NoticeUserNotNotified {
			t.Errorf("told %s that a user was not told: %+v", tl.User, tl)
		}
	}
}

func TestBatchStoppedDuringTheSignInToResumeEnds(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withBatch(50, 50, 1))
	ids := h.addPCs(3)
	release := make(chan struct{})
	started := h.holdCalls(release)
	r := h.openBatch(ids, "")
	h.approve(a1, r.ID)
	if _, err := h.w.Confirm(context.Background(), a1, r.ID, ""); err != nil {
		t.Fatal(err)
	}
	<-started
	h.restart()
	h.waitFor("the batch halted", func() bool { return h.get(r.ID).Batch.Halted })
	close(release)
	signingIn, giveUp := make(chan struct{}), make(chan struct{})
	h.signIn.next(func(ctx context.Context, approver string) (*approvals.Session, error) {
		close(signingIn)
		<-giveUp
		return nil, approvals.ErrSignInDeclined
	})
	h.resumeWhenFree(a1, r.ID)
	h.waitClosed(signingIn, "the sign-in to resume")
	if _, err := h.w.StopBatch(context.Background(), a2, r.ID); err != nil {
		t.Fatal(err)
	}
	close(giveUp)
	done := h.waitState(r.ID, approvals.StateOutcomeUnknown)
	if c := done.Batch.Counts(); c[approvals.MemberNotSent] != 2 {
		t.Errorf("counts %v", c)
	}
}

func TestBatchRequestAgainAsksForTheSameBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withApprovalTTL(time.Millisecond))
	ids := h.addPCs(2)
	r := h.openBatch(ids, "")
	h.waitState(r.ID, approvals.StateExpired)
	again, err := h.w.RequestAgain(context.Background(), alice, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !again.IsBatch() || !slices.Equal(again.Batch.Targets, ids) || again.CloudPCID != "" {
		t.Errorf("asked again: batch %+v, Cloud PC %q", again.Batch, again.CloudPCID)
	}
}
