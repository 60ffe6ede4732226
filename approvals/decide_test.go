package approvals_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

var ctx = context.Background()

// The whole path by Cloud PC id with a fresh sign-in: prompt, Approve,
// device code, confirmation with the details, one reprovision with the
// approver's token, the requester told; three Graph calls (GET, GET, POST).
func TestApproveConfirmReprovision(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	posted := h.notes.postedFor(r.ID)
	if len(posted) != 1 || posted[0].State != approvals.StatePending || posted[0].Device != nil {
		t.Fatalf("prompts posted: %+v", posted)
	}
	if len(r.Prompts) != 2 || r.Prompts[0].UserID != a1 || r.Prompts[1].UserID != a2 {
		t.Errorf("prompt locations stored: %+v", r.Prompts)
	}
	if h.graph.getCount() != 0 || h.signIn.count() != 0 {
		t.Errorf("opening made %d Graph calls and %d sign-ins; nobody is signed in", h.graph.getCount(), h.signIn.count())
	}

	approved, err := h.w.Approve(ctx, a1, r.ID, false)
	if err != nil || approved.State != approvals.StateApproved || approved.DecidedBy != a1 {
		t.Fatalf("Approve = %+v, %v", approved, err)
	}
	asked := h.waitAsked(r.ID, 1)
	if asked.State != approvals.StateConfirming || asked.Device == nil || asked.Device.ID != pc1 ||
		asked.Device.ServicePlanName == "" || asked.SignedInAs != upn1 {
		t.Errorf("asked to confirm: %+v", asked)
	}
	if left := time.Until(asked.ExpiresAt); left < 29*time.Minute || left > 31*time.Minute {
		t.Errorf("confirmation window: expires in %v, want 30m", left)
	}
	codes := h.notes.codesFor(r.ID)
	if len(codes) != 1 || codes[0].Approver != a1 || codes[0].Why != approvals.SignInToApprove {
		t.Errorf("device codes shown: %+v", codes)
	}
	if calls := h.signIn.calls(); len(calls) != 1 || calls[0].Claims != "" || calls[0].Approver != a1 {
		t.Errorf("sign-ins: %+v", calls)
	}

	done := h.confirm(a1, r.ID, approvals.StateSucceeded)
	h.stop()
	if got := h.graph.reprovisioned(); !slices.Equal(got, []string{pc1 + " by " + upn1}) {
		t.Errorf("reprovision calls %q, want one for %s with %s's token", got, pc1, upn1)
	}
	if h.graph.getCount() != 2 {
		t.Errorf("%d GETs, want 2 (details, re-check)", h.graph.getCount())
	}
	if done.Outcome != nil || done.GraphRequestID == "" || done.SignedInAs != upn1 || done.Tracking.Active() {
		t.Errorf("succeeded request: %+v", done)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateSucceeded))
	// A redraw shows the state it finds when delivered, and one undelivered
	// redraw stands for all: a quick step may be drawn only as the next one
	// (the move to executing is left to the outbox loop, so the call never
	// waits for chat). The prompts must follow the path in order and end
	// showing the outcome.
	path := []approvals.State{approvals.StateApproved, approvals.StateConfirming, approvals.StateExecuting, approvals.StateSucceeded}
	drawn := h.notes.promptStates(r.ID)
	at := 0
	for _, s := range drawn {
		i := slices.Index(path, s)
		if i < at {
			t.Errorf("prompts redrawn as %v: %s after %s", drawn, s, path[at])
		}
		at = max(at, i)
	}
	if len(drawn) == 0 || drawn[len(drawn)-1] != approvals.StateSucceeded {
		t.Errorf("prompts redrawn as %v, want the last showing succeeded", drawn)
	}
	h.wantKinds(r.ID, approvals.EventRequested, approvals.EventApproved, approvals.EventSignInStarted,
		approvals.EventSignedIn, approvals.EventConfirmed, approvals.EventSucceeded)
	if e := h.eventsOf(r.ID, approvals.EventSucceeded); len(e) != 1 || e[0].Details["request_id"] != done.GraphRequestID {
		t.Errorf("succeeded event %+v, want request_id %s", e, done.GraphRequestID)
	}
	calls := h.eventsOf(r.ID, approvals.EventGraphCall)
	if len(calls) != 3 || calls[2].Details["method"] != "POST" || calls[2].Details["status"] != "204" ||
		calls[2].Details["client_request_id"] == "" || calls[2].Actor != a1 {
		t.Errorf("graph calls audited: %+v", calls)
	}
	if e := h.eventsOf(r.ID, approvals.EventSignedIn); len(e) != 1 || e[0].Details["upn"] != upn1 {
		t.Errorf("signed_in event: %+v", e)
	}
	// Done and not followed: the Cloud PC is free again.
	h.restart()
	h.open(pc1)
}

func TestOpenRefusedWhileCloudPCHasOpenRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	first := h.open(pc1)
	second, err := h.w.NewRequest(bob, ops, "4E1F0B9A-2C3D-4E5F-8A9B-0C1D2E3F4A51", "mine too")
	if err != nil {
		t.Fatal(err)
	}
	refusal := wantRefusal(t, h.w.Open(ctx, second), approvals.RefusedOpenElsewhere)
	if refusal.Other == nil || refusal.Other.ID != first.ID || refusal.Other.RequesterID != alice || refusal.Ref != second.ID {
		t.Errorf("refusal %+v, want Other = %s", refusal, first.ID)
	}
	if _, err := h.store.Store.Get(ctx, second.ID); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("second stored: %v", err)
	}
	if len(h.notes.postedFor(second.ID)) != 0 {
		t.Error("prompts posted for a refused request")
	}

	// The open request holding it could not be read: refused all the same.
	h.store.failWhen(func(op string, _ approvals.State) error {
		if op == "open_for" {
			return errStoreDown
		}
		return nil
	})
	third, _ := h.w.NewRequest(bob, ops, pc1, "again")
	if refusal := wantRefusal(t, h.w.Open(ctx, third), approvals.RefusedOpenElsewhere); refusal.Other != nil {
		t.Errorf("Other = %v, want nil when unknown", refusal.Other)
	}
}

func TestOpenNoApproverReached(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.notes.set(func(n *recorder) { n.noPrompts = true })
	r, _ := h.w.NewRequest(alice, ops, pc1, "black screen")
	refusal := wantRefusal(t, h.w.Open(ctx, r), approvals.RefusedNoApprover)
	if refusal.Ref != r.ID {
		t.Errorf("refusal for %s, want %s", refusal.Ref, r.ID)
	}
	if got := h.get(r.ID); got.State != approvals.StatePending || len(got.Prompts) != 0 {
		t.Errorf("request after no prompt: %+v", got)
	}
	h.wantKinds(r.ID, approvals.EventRequested)
	// Chat is back: the outbox posts the prompt after its backoff.
	h.notes.set(func(n *recorder) { n.noPrompts = false })
	h.waitFor("the prompt posted", func() bool { return len(h.get(r.ID).Prompts) == 2 })
	if posted := h.notes.postedFor(r.ID); len(posted) != 2 || !slices.Equal(posted[1].Approvers, []string{a1, a2}) {
		t.Errorf("posts: %+v, want a failed one, then one to both approvers", posted)
	}
}

func TestOpenNotStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.store.failWhen(func(op string, _ approvals.State) error {
		if op == "create" {
			return errStoreDown
		}
		return nil
	})
	r, _ := h.w.NewRequest(alice, ops, pc1, "black screen")
	err := h.w.Open(ctx, r)
	var refusal *approvals.Refusal
	if !errors.Is(err, errStoreDown) || errors.As(err, &refusal) {
		t.Errorf("Open = %v, want the store's error, not a refusal", err)
	}
	if len(h.notes.postedFor(r.ID)) != 0 || len(h.events(r.ID)) != 0 {
		t.Error("a request that was not stored was prompted or audited")
	}
}

// Prompt locations that cannot be stored: the prompts are out, the request
// is open; only redrawing them later is lost.
func TestOpenPromptLocationsNotStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.store.failWhen(func(op string, _ approvals.State) error {
		if op == "update" {
			return errStoreDown
		}
		return nil
	})
	r, _ := h.w.NewRequest(alice, ops, pc1, "black screen")
	if err := h.w.Open(ctx, r); err != nil {
		t.Fatalf("Open = %v", err)
	}
	if got := h.get(r.ID); got.State != approvals.StatePending || len(got.Prompts) != 0 || len(h.notes.postedFor(r.ID)) != 1 {
		t.Errorf("request %+v", got)
	}
}

// A denial that lands between posting the prompts and storing where they
// went: every copy still ends up showing it.
func TestDecisionWhilePromptsArePosted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	denied := make(chan struct{})
	h.notes.set(func(n *recorder) {
		n.onPost = func(r *approvals.Request) {
			// A click on another goroutine, stored while the post is
			// under way (its own redraw waits for the post to end).
			go func() {
				defer close(denied)
				if _, err := h.w.Deny(ctx, a2, r.ID, "fast"); err != nil {
					t.Errorf("Deny: %v", err)
				}
			}()
			h.waitFor("the denial stored", func() bool { return h.get(r.ID).State == approvals.StateDenied })
		}
	})
	r, _ := h.w.NewRequest(alice, ops, pc1, "black screen")
	if err := h.w.Open(ctx, r); err != nil {
		t.Fatal(err)
	}
	<-denied
	last := h.notes.lastPrompt(t, r.ID)
	if last.State != approvals.StateDenied || len(last.Prompts) != 2 {
		t.Errorf("last redraw: %s with %d prompt locations, want denied with 2", last.State, len(last.Prompts))
	}
}

func TestNewRequestRefusedByPolicy(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *approvals.Config) {
		c.Policy.Requesters = []string{alice}
		c.Policy.Channels = []string{ops}
	})
	_, err := h.w.NewRequest(bob, ops, pc1, "x")
	if r := wantRefusal(t, err, approvals.RefusedNotARequester); !slices.Equal(r.Users, []string{a1, a2}) {
		t.Errorf("refusal names %v, want the approvers", r.Users)
	}
	_, err = h.w.NewRequest(alice, "C0ELSEWHERE", pc1, "x")
	if r := wantRefusal(t, err, approvals.RefusedChannel); !slices.Equal(r.Channels, []string{ops}) {
		t.Errorf("refusal names %v", r.Channels)
	}
	h.w.RefusedRequest(bob, ops, err)
	h.waitFor("refused request audited", func() bool {
		return len(h.eventsOf("", approvals.EventRefusedRequest)) == 1
	})
	e := h.eventsOf("", approvals.EventRefusedRequest)[0]
	if e.Actor != bob || e.Details["channel"] != ops || e.Details["why"] != err.Error() {
		t.Errorf("refused request event %+v", e)
	}
	if p := h.w.Policy(); !slices.Equal(p.Requesters, []string{alice}) {
		t.Errorf("Policy() = %+v", p)
	}
}

func TestDeny(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)

	_, err := h.w.MayDeny(ctx, bob, r.ID)
	if refusal := wantRefusal(t, err, approvals.RefusedNotDecider); !slices.Equal(refusal.Users, []string{a1, a2}) {
		t.Errorf("refusal names %v", refusal.Users)
	}
	h.wantRefusedClick(r.ID, bob, approvals.ActionDeny, approvals.RefusedNotDecider)
	_, err = h.w.Deny(ctx, alice, r.ID, "never mind")
	wantRefusal(t, err, approvals.RefusedNotDecider)
	h.wantRefusedClick(r.ID, alice, approvals.ActionDeny, approvals.RefusedNotDecider)

	if got, err := h.w.MayDeny(ctx, a2, r.ID); err != nil || got.ID != r.ID {
		t.Fatalf("MayDeny = %v, %v", got, err)
	}
	denied, err := h.w.Deny(ctx, a2, r.ID, "use a restore point")
	if err != nil || denied.State != approvals.StateDenied || denied.DecidedBy != a2 || denied.DecisionReason != "use a restore point" {
		t.Fatalf("Deny = %+v, %v", denied, err)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateDenied))
	if last := h.notes.lastPrompt(t, r.ID); last.State != approvals.StateDenied || last.DecisionReason != "use a restore point" {
		t.Errorf("prompt shows %+v", last)
	}
	if e := h.eventsOf(r.ID, approvals.EventDenied); len(e) != 1 || e[0].Actor != a2 || e[0].Details["reason"] != "use a restore point" {
		t.Errorf("denied events %+v", e)
	}

	// Late clicks are told where it stands and change nothing.
	_, err = h.w.Deny(ctx, a1, r.ID, "me too")
	if refusal := wantRefusal(t, err, approvals.RefusedHandled); refusal.Request.State != approvals.StateDenied {
		t.Errorf("late deny told %s", refusal.Request.State)
	}
	_, err = h.w.MayDeny(ctx, a1, r.ID)
	wantRefusal(t, err, approvals.RefusedHandled)
	_, err = h.w.Approve(ctx, a1, r.ID, false)
	if refusal := wantRefusal(t, err, approvals.RefusedHandled); refusal.Request.DecidedBy != a2 {
		t.Errorf("late approve told %+v", refusal.Request)
	}
	h.stop()
	if h.get(r.ID).DecisionReason != "use a restore point" || h.signIn.count() != 0 || h.graph.getCount() != 0 {
		t.Error("a late click changed the request or reached Microsoft")
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateDenied))
}

func TestCancelPending(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	_, err := h.w.Cancel(ctx, a1, r.ID)
	if refusal := wantRefusal(t, err, approvals.RefusedNotRequester); !slices.Equal(refusal.Users, []string{alice}) {
		t.Errorf("refusal names %v", refusal.Users)
	}
	h.wantRefusedClick(r.ID, a1, approvals.ActionCancel, approvals.RefusedNotRequester)

	canceled, err := h.w.Cancel(ctx, alice, r.ID)
	if err != nil || canceled.State != approvals.StateCanceled || canceled.DecidedBy != alice {
		t.Fatalf("Cancel = %+v, %v", canceled, err)
	}
	if last := h.notes.lastPrompt(t, r.ID); last.State != approvals.StateCanceled {
		t.Errorf("prompt shows %s", last.State)
	}
	h.wantKinds(r.ID, approvals.EventRequested, approvals.EventRefusedClick, approvals.EventCanceled)
	// The Cloud PC is free; a second cancel is told it is done.
	h.open(pc1)
	_, err = h.w.Cancel(ctx, alice, r.ID)
	wantRefusal(t, err, approvals.RefusedHandled)
	_, err = h.w.Approve(ctx, a1, r.ID, false)
	wantRefusal(t, err, approvals.RefusedHandled)
	h.stop()
	h.wantTold(r.ID) // the requester canceled it; the prompts say so
}

// Until the call is sent the requester may withdraw the request: while the
// approver signs in (the sign-in ends) and at the final confirmation (the
// confirmation is refused after). The approver is told; nothing is sent.
func TestCancelAfterApproval(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	started := make(chan struct{})
	h.signIn.next(h.signInWaits(started, make(chan struct{})))
	if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	h.waitClosed(started, "started")
	canceled, err := h.w.Cancel(ctx, alice, r.ID)
	if err != nil || canceled.State != approvals.StateCanceled || canceled.DecidedBy != alice {
		t.Fatalf("cancel while the approver signs in = %+v, %v", canceled, err)
	}
	h.waitFor("the sign-in ended", func() bool { return len(h.eventsOf(r.ID, approvals.EventSignInFailed)) == 1 })
	if e := h.eventsOf(r.ID, approvals.EventSignInFailed); e[0].Details["reason"] != "withdrawn" {
		t.Errorf("the ended sign-in is recorded as %v, want withdrawn", e[0].Details)
	}

	r2 := h.open(pc2)
	h.approve(a1, r2.ID)
	h.waitAsked(r2.ID, 1)
	if _, err := h.w.Cancel(ctx, alice, r2.ID); err != nil {
		t.Fatalf("cancel at the final confirmation: %v", err)
	}
	_, err = h.w.Confirm(ctx, a1, r2.ID, "")
	if refusal := wantRefusal(t, err, approvals.RefusedHandled); refusal.Request.State != approvals.StateCanceled {
		t.Errorf("confirm after the cancel told %s", refusal.Request.State)
	}
	h.stop()
	for _, ref := range []string{r.ID, r2.ID} {
		if got := h.get(ref); got.State != approvals.StateCanceled {
			t.Errorf("%s is %s, want canceled", ref, got.State)
		}
		h.wantTold(ref, note(a1, approvals.NoticeStatus, approvals.StateCanceled))
		if len(h.eventsOf(ref, approvals.EventCanceled)) != 1 {
			t.Errorf("%s: cancel not audited", ref)
		}
	}
	if n := len(h.graph.reprovisioned()); n != 0 {
		t.Errorf("%d reprovision calls, want none", n)
	}
}

func TestSelfApproval(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.openBy(a2, pc1) // an approver asks; the other may decide
	_, err := h.w.Approve(ctx, a2, r.ID, false)
	if refusal := wantRefusal(t, err, approvals.RefusedOwnRequest); !slices.Equal(refusal.Users, []string{a1}) || refusal.Action != approvals.ActionApprove {
		t.Errorf("refusal %+v", refusal)
	}
	h.wantRefusedClick(r.ID, a2, approvals.ActionApprove, approvals.RefusedOwnRequest)
	if got := h.get(r.ID); got.State != approvals.StatePending {
		t.Errorf("state %s after a refused approval", got.State)
	}

	lenient := newHarness(t, func(c *approvals.Config) { c.Policy.AllowSelfApproval = true })
	own := lenient.openBy(a2, pc1)
	lenient.approve(a2, own.ID)
	lenient.confirm(a2, own.ID, approvals.StateSucceeded)
	lenient.stop()
	if got := lenient.graph.reprovisioned(); !slices.Equal(got, []string{pc1 + " by " + email2}) {
		t.Errorf("reprovisions %v", got)
	}
}

func TestRequestAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	old := h.seed("CPC-alice-01", func(r *approvals.Request) {}, approvals.StateExpired)

	_, err := h.w.RequestAgain(ctx, bob, old.ID)
	if refusal := wantRefusal(t, err, approvals.RefusedNotRequester); !slices.Equal(refusal.Users, []string{alice}) {
		t.Errorf("refusal %+v", refusal)
	}
	h.wantRefusedClick(old.ID, bob, approvals.ActionRequestAgain, approvals.RefusedNotRequester)

	again, err := h.w.RequestAgain(ctx, alice, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == old.ID || again.State != approvals.StatePending || again.Target != old.Target ||
		again.Reason != old.Reason || again.RequestChannelID != ops || again.RequesterID != alice {
		t.Errorf("asked again: %+v", again)
	}
	if _, err := h.store.Store.Get(ctx, again.ID); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("again stored: %v", err)
	}
	if err := h.w.Open(ctx, again); err != nil {
		t.Fatal(err)
	}

	// The policy changed since: the same checks as a new request.
	strict := newHarness(t, func(c *approvals.Config) { c.Policy.Channels = []string{"C0ELSEWHERE"} })
	old = strict.seed(pc1, nil, approvals.StateExpired)
	_, err = strict.w.RequestAgain(ctx, alice, old.ID)
	if refusal := wantRefusal(t, err, approvals.RefusedChannel); refusal.Action != approvals.ActionRequestAgain || refusal.Ref != old.ID {
		t.Errorf("refusal %+v", refusal)
	}
}

func TestNoSuchRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, ref := range []string{"R-222222", "R-1", "../../x"} {
		for name, click := range map[string]func() error{
			"approve": func() error { _, err := h.w.Approve(ctx, a1, ref, false); return err },
			"deny":    func() error { _, err := h.w.Deny(ctx, a1, ref, "x"); return err },
			"maydeny": func() error { _, err := h.w.MayDeny(ctx, a1, ref); return err },
			"cancel":  func() error { _, err := h.w.Cancel(ctx, alice, ref); return err },
			"again":   func() error { _, err := h.w.RequestAgain(ctx, alice, ref); return err },
			"confirm": func() error { _, err := h.w.Confirm(ctx, a1, ref, ""); return err },
			"abort":   func() error { _, err := h.w.Abort(ctx, a1, ref); return err },
			"resume":  func() error { _, err := h.w.ResumeTracking(ctx, a1, ref); return err },
		} {
			if refusal := wantRefusal(t, click(), approvals.RefusedNoSuchRequest); refusal.Ref != ref {
				t.Errorf("%s %q: refusal for %q", name, ref, refusal.Ref)
			}
		}
	}
	// A store that fails is not "no such request".
	h.store.Store.Close()
	_, err := h.w.Approve(ctx, a1, "R-222222", false)
	var refusal *approvals.Refusal
	if err == nil || errors.As(err, &refusal) {
		t.Errorf("Approve with the store closed = %v, want a plain error", err)
	}
}

func TestListings(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	first := h.open(pc1)
	second := h.open(pc2)
	own := h.openBy(a2, pc3)
	waiting, err := h.w.AwaitingDecision(ctx, a1, 10)
	if err != nil || len(waiting) != 3 || waiting[0].ID != first.ID || waiting[1].ID != second.ID || waiting[2].ID != own.ID {
		t.Errorf("AwaitingDecision(a1) = %v, %v", waiting, err)
	}
	if waiting, _ := h.w.AwaitingDecision(ctx, a1, 1); len(waiting) != 1 || waiting[0].ID != first.ID {
		t.Errorf("AwaitingDecision(a1, 1) = %v", waiting)
	}
	if waiting, _ := h.w.AwaitingDecision(ctx, bob, 10); len(waiting) != 0 {
		t.Errorf("AwaitingDecision(bob) = %v", waiting)
	}
	if _, err := h.w.Deny(ctx, a1, first.ID, "no"); err != nil {
		t.Fatal(err)
	}
	if waiting, _ := h.w.AwaitingDecision(ctx, a2, 10); len(waiting) != 2 {
		t.Errorf("AwaitingDecision(a2) after a denial = %v", waiting)
	}
	mine, err := h.w.RequestsOf(ctx, alice, 10)
	if err != nil || len(mine) != 2 || mine[0].ID != second.ID || mine[1].ID != first.ID {
		t.Errorf("RequestsOf(alice) = %v, %v", mine, err)
	}
	h.store.failWhen(func(op string, _ approvals.State) error {
		if op == "list" {
			return errStoreDown
		}
		return nil
	})
	if _, err := h.w.AwaitingDecision(ctx, a1, 10); !errors.Is(err, errStoreDown) {
		t.Errorf("AwaitingDecision with the store down = %v", err)
	}
}

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for name, spoil := range map[string]func(*approvals.Config){
		"no store":    func(c *approvals.Config) { c.Store = nil },
		"no sign-ins": func(c *approvals.Config) { c.SignIns = nil },
		"no notices":  func(c *approvals.Config) { c.Notices = nil },
		"bad policy":  func(c *approvals.Config) { c.Policy.Approvers = []string{"@alice"} },
		"no statuses": func(c *approvals.Config) { c.AllowedStatuses = nil },
	} {
		cfg := h.cfg
		spoil(&cfg)
		if w, err := approvals.New(cfg); err == nil || w != nil {
			t.Errorf("%s: New = %v, %v", name, w, err)
		}
	}
	// Defaults for the rest.
	cfg := h.cfg
	cfg.TrackEvery, cfg.ShutdownGrace, cfg.Logger = 0, time.Hour, nil
	if _, err := approvals.New(cfg); err != nil {
		t.Errorf("New with defaults: %v", err)
	}
}
