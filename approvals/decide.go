package approvals

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// NewRequest applies the policy and builds a pending request in memory: it
// does no I/O, so an adapter can answer at once with its reference, then
// Open it. A refusal is a *Refusal; record it with RefusedRequest.
func (w *Workflow) NewRequest(user, channel, target, reason string) (*Request, error) {
	return w.NewRequestWith(user, channel, target, reason, Options{})
}

// NewRequestWith is NewRequest with reprovision options. Options the adapter
// let through unchecked are an error, not a refusal.
func (w *Workflow) NewRequestWith(user, channel, target, reason string, opts Options) (*Request, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := w.cfg.Policy.MayRequest(user, channel); err != nil {
		return nil, err
	}
	r := w.cfg.Policy.NewRequest(time.Now(), user, channel, target, reason)
	r.Options = opts
	return r, nil
}

// RefusedRequest records, in the background, that user's request in channel
// was refused (bad input or policy).
func (w *Workflow) RefusedRequest(user, channel string, why error) {
	w.spawn(func() {
		w.audit(w.execCtx, "", EventRefusedRequest, user, map[string]string{"channel": channel, "why": why.Error()})
	})
}

// Open stores r and prompts its approvers. When an approver is signed in
// already and r names a Cloud PC id, the prompt shows the Cloud PC's details
// and that approver's Approve is final. Errors: a *Refusal
// (RefusedOpenElsewhere: the Cloud PC has an open request; RefusedNoApprover:
// no prompt could be posted, the request stays recorded), or a store error
// (nothing was recorded).
func (w *Workflow) Open(ctx context.Context, r *Request) error {
	if err := w.store.Create(ctx, r); err != nil {
		w.log.Warn("request not stored", "ref", r.ID, "err", err)
		if errors.Is(err, ErrOpenRequestExists) {
			refusal := &Refusal{Kind: RefusedOpenElsewhere, Action: ActionRequest, Ref: r.ID, Request: r}
			if other, oerr := w.store.OpenFor(ctx, r.CloudPCID); oerr == nil {
				refusal.Other = other
			}
			return refusal
		}
		return fmt.Errorf("recording %s: %w", r.ID, err)
	}
	details := r.Options.AuditDetails(map[string]string{
		"target": r.Target, "channel": r.RequestChannelID, "reason": r.Reason, "approvers": fmt.Sprint(r.Approvers),
	})
	if r.Required() > 1 {
		details["approvals_required"] = fmt.Sprint(r.Required())
	}
	w.audit(ctx, r.ID, EventRequested, r.RequesterID, details)
	w.log.Info("request opened", "ref", r.ID, "requester", r.RequesterID, "target", r.Target)
	w.cfg.Observer.RequestCreated()
	w.nudge() // a new expiry deadline
	r = w.withDetails(ctx, r)
	// Through the outbox: if chat does not take the prompt now, it is
	// posted later, and the requester is told it has not reached anyone yet.
	w.send(r.ID, post(r))
	if w.undelivered(ctx, r.ID, OutgoingPost) {
		return &Refusal{Kind: RefusedNoApprover, Action: ActionRequest, Ref: r.ID, Request: r}
	}
	if w.unreachable.take(r.ID) {
		return &Refusal{Kind: RefusedNoApproverReachable, Action: ActionRequest, Ref: r.ID, Request: r}
	}
	return nil
}

// withDetails looks r's Cloud PC up with a signed-in approver's token, so the
// prompt can show what will be wiped. Failing that, r is returned as it is.
func (w *Workflow) withDetails(ctx context.Context, r *Request) *Request {
	if r.CloudPCID == "" {
		return r
	}
	s := w.sessions.anyValid(w.cfg.Policy.ApproversOf(r))
	if s == nil {
		return r
	}
	device, call, err := s.CloudPCs.Get(ctx, r.CloudPCID)
	w.auditGraphCalls(r.ID, "", call)
	if err != nil {
		w.log.Warn("details for the prompt not fetched", "ref", r.ID, "err", err)
		return r
	}
	updated, err := w.store.Update(ctx, r.ID, func(r *Request) { r.Device = &device })
	if err != nil {
		return r
	}
	return updated
}

// mayDecide applies the policy to a decision; a request past its deadline
// is expired on the spot (the scheduler has not got to it yet).
func (w *Workflow) mayDecide(ctx context.Context, user string, r *Request, action Action) error {
	if r.ExpiredAt(time.Now()) {
		w.expire(ctx, r)
		return &Refusal{Kind: RefusedExpired, Action: action, Request: r, Ref: r.ID}
	}
	if err := w.cfg.Policy.MayDecide(user, r); err != nil {
		var refusal *Refusal
		if errors.As(err, &refusal) {
			refusal.Action = action
			return w.refuse(ctx, user, refusal)
		}
		return err
	}
	return nil
}

// Approve records user's approval of ref. With final set (the click came
// from a prompt that showed the Cloud PC's details) and a valid sign-in of
// user's, the reprovision goes ahead at once; otherwise user signs in (unless
// signed in already), sees the details and confirms (Confirm).
func (w *Workflow) Approve(ctx context.Context, user, ref string, final bool) (*Request, error) {
	r, err := w.load(ctx, ref, ActionApprove)
	if err != nil {
		return nil, err
	}
	if err := w.mayDecide(ctx, user, r, ActionApprove); err != nil {
		return nil, err
	}
	if r.HasApproved(user) {
		return nil, w.refuse(ctx, user, &Refusal{Kind: RefusedAlreadyApproved, Action: ActionApprove, Request: r, Users: w.stillToApprove(r)})
	}
	r, err = w.apply(ctx, ref, Change{To: StateApproved, Update: func(r *Request) {
		r.DecidedBy = user
		r.Outcome = nil
	}, Notify: func(r *Request) []Outgoing { return []Outgoing{redraw(r)} }})
	if err != nil {
		return nil, late(err, ActionApprove)
	}
	w.audit(ctx, r.ID, EventApproved, user, map[string]string{"approval": approvalCount(len(r.Approvals)+1, r.Required())})
	var s *Session
	if r.Required() == 1 {
		// With more than one approval required, each is a fresh sign-in
		// of its own: a reused one would let one sign-in stand for two.
		s = w.sessions.valid(user)
	}
	work := *r // the worker's own copy: the caller reads r
	if s != nil && final && r.CloudPCID != "" && r.Device != nil && w.inFlight.claim(r.ID) {
		w.sessions.pin(r.ID, s)
		w.spawn(func() { w.confirmed(&work, s) })
		return r, nil
	}
	w.spawn(func() { w.signInThenConfirm(&work, s) })
	return r, nil
}

// stillToApprove are those who may give r's next approval: its deciders
// whose approval is not recorded yet.
func (w *Workflow) stillToApprove(r *Request) []string {
	var who []string
	for _, a := range w.cfg.Policy.ApproversOf(r) {
		if w.cfg.Policy.MayDecide(a, r) == nil && !r.HasApproved(a) {
			who = append(who, a)
		}
	}
	return who
}

// approvalCount is "1 of 2", for the audit trail.
func approvalCount(n, of int) string { return fmt.Sprintf("%d of %d", n, of) }

// MayDeny checks, before a form asks for a reason, that user may deny ref
// now.
func (w *Workflow) MayDeny(ctx context.Context, user, ref string) (*Request, error) {
	r, err := w.load(ctx, ref, ActionDeny)
	if err != nil {
		return nil, err
	}
	if err := w.mayDecide(ctx, user, r, ActionDeny); err != nil {
		return nil, err
	}
	if !slices.Contains(deniableIn(r), r.State) {
		return nil, &Refusal{Kind: RefusedHandled, Action: ActionDeny, Ref: r.ID, Request: r}
	}
	return r, nil
}

// deniableIn are the states r may be denied in: waiting for a decision; and,
// when it needs more than one approval, also while an approver signs in or
// confirms (any single Deny ends it until it is confirmed). With one
// approval the first decision wins.
func deniableIn(r *Request) []State {
	if r.Required() > 1 {
		return []State{StatePending, StateApproved, StateConfirming}
	}
	return []State{StatePending}
}

// Deny records user's denial of ref with their reason, and tells the
// requester.
func (w *Workflow) Deny(ctx context.Context, user, ref, reason string) (*Request, error) {
	r, err := w.load(ctx, ref, ActionDeny)
	if err != nil {
		return nil, err
	}
	if err := w.mayDecide(ctx, user, r, ActionDeny); err != nil {
		return nil, err
	}
	var approving string // an approver signing in or confirming: they are told
	r, err = w.settle(ctx, ref, step{
		from: deniableIn(r), to: StateDenied,
		update: func(r *Request) {
			if r.State != StatePending && r.DecidedBy != user {
				approving = r.DecidedBy
			}
			r.DecidedBy, r.DecisionReason = user, reason
		},
		event: EventDenied, actor: user, details: map[string]string{"reason": reason},
		tellRequester: true,
		also: func(r *Request) []Outgoing {
			return tellEach(Notice{Kind: NoticeStatus, Request: r}, approving)
		},
	})
	if err != nil {
		return nil, late(err, ActionDeny)
	}
	w.signingIn.cancel(r.ID) // an approver's sign-in for it ends
	return r, nil
}

// Cancel withdraws a request until its call is sent (pending, approved,
// awaiting confirmation or scheduled); only its requester may. A sign-in under way for it
// ends, and the approver who decided is told.
func (w *Workflow) Cancel(ctx context.Context, user, ref string) (*Request, error) {
	r, err := w.load(ctx, ref, ActionCancel)
	if err != nil {
		return nil, err
	}
	if user != r.RequesterID {
		return nil, w.refuse(ctx, user, &Refusal{Kind: RefusedNotRequester, Action: ActionCancel, Request: r, Users: []string{r.RequesterID}})
	}
	var approver string // who approved, if anyone: they are told
	r, err = w.settle(ctx, ref, step{
		from: []State{StatePending, StateApproved, StateConfirming, StateScheduled}, to: StateCanceled,
		update: func(r *Request) {
			if r.State != StatePending {
				approver = r.DecidedBy
			}
			r.DecidedBy = user
		},
		event: EventCanceled, actor: user,
		also: func(r *Request) []Outgoing {
			if approver == user {
				return nil
			}
			return tellEach(Notice{Kind: NoticeStatus, Request: r}, approver)
		},
	})
	if err != nil {
		return nil, late(err, ActionCancel)
	}
	w.signingIn.cancel(r.ID)
	return r, nil
}

// RequestAgain builds a new request like an expired one (same target,
// options and reason), after the same checks as a new one. Only its requester may ask
// again. Like NewRequest, nothing is stored: Open it.
func (w *Workflow) RequestAgain(ctx context.Context, user, ref string) (*Request, error) {
	old, err := w.load(ctx, ref, ActionRequestAgain)
	if err != nil {
		return nil, err
	}
	if user != old.RequesterID {
		return nil, w.refuse(ctx, user, &Refusal{Kind: RefusedNotRequester, Action: ActionRequestAgain, Request: old, Users: []string{old.RequesterID}})
	}
	var r *Request
	if old.IsBatch() {
		r, err = w.NewBatch(user, old.RequestChannelID, old.Batch.Targets, old.Batch.Policy, old.Reason, old.Options)
	} else {
		r, err = w.NewRequestWith(user, old.RequestChannelID, old.Target, old.Reason, old.Options)
	}
	if err != nil {
		var refusal *Refusal
		if errors.As(err, &refusal) {
			refusal.Action, refusal.Ref = ActionRequestAgain, old.ID
		}
		return nil, err
	}
	return r, nil
}
