package approvals

import (
	"context"
	"fmt"
	"time"
)

// Confirm is the approver's final word after signing in: Reprovision now
// (pick "") or, when a name matched several Cloud PCs, the one picked (its
// id). Only the approver who signed in may give it, within the confirmation
// window. On success the reprovision runs in the background.
func (w *Workflow) Confirm(ctx context.Context, user, ref, pick string) (*Request, error) {
	action := ActionConfirm
	if pick != "" {
		action = ActionPick
	}
	r, err := w.load(ctx, ref, action)
	if err != nil {
		return nil, err
	}
	if r.State != StateConfirming {
		return nil, &Refusal{Kind: RefusedHandled, Action: action, Ref: r.ID, Request: r}
	}
	if user != r.DecidedBy {
		return nil, w.refuse(ctx, user, &Refusal{Kind: RefusedNotConfirmer, Action: action, Request: r, Users: []string{r.DecidedBy}})
	}
	if r.ExpiredAt(time.Now()) {
		w.expire(ctx, r)
		return nil, &Refusal{Kind: RefusedExpired, Action: action, Ref: r.ID, Request: r}
	}
	s := w.sessions.forRequest(r.ID, r.DecidedBy)
	if s == nil {
		// No sign-in to run with: it expired, or a racing click already
		// ran (or ended) the request and released it. Only the first means
		// the request waits for an approval again.
		if w.reopen(ctx, r, &Outcome{Kind: OutcomeSignInStale}, "") == nil {
			if now, err := w.store.Get(ctx, r.ID); err == nil && now.State != StateConfirming {
				return nil, &Refusal{Kind: RefusedHandled, Action: action, Ref: r.ID, Request: now}
			}
		}
		return nil, &Refusal{Kind: RefusedSignInStale, Action: action, Ref: r.ID, Request: r}
	}
	// One confirmation starts one worker; a second click (or pick) while it
	// runs is told so.
	if !w.inFlight.claim(r.ID) {
		return nil, &Refusal{Kind: RefusedBusy, Action: action, Ref: r.ID, Request: r}
	}
	if pick != "" {
		picked, failed, err := w.pick(ctx, user, r, pick)
		if picked == nil {
			w.inFlight.remove(ref)
			return failed, err // a failed pick was told to both sides
		}
		r = picked
	}
	w.audit(ctx, r.ID, EventConfirmed, user, nil)
	work := *r // the worker's own copy: the caller reads r
	w.spawn(func() { w.confirmed(&work, s) })
	return r, nil
}

// pick records the Cloud PC the approver chose among r.Candidates and
// returns the request with it. When the choice cannot be recorded because
// another request holds that Cloud PC (or the store failed) r ends failed,
// both sides are told, and the failed request is returned second.
func (w *Workflow) pick(ctx context.Context, user string, r *Request, id string) (picked, failed *Request, err error) {
	var chosen *CloudPC
	for i := range r.Candidates {
		if r.Candidates[i].ID == id {
			chosen = &r.Candidates[i]
		}
	}
	if chosen == nil || r.CloudPCID != "" {
		return nil, nil, &Refusal{Kind: RefusedChoiceGone, Action: ActionPick, Ref: r.ID, Request: r}
	}
	updated, err := w.store.Update(ctx, r.ID, func(r *Request) {
		r.CloudPCID = chosen.ID
		r.Device = chosen
	})
	if err != nil {
		failed := w.failBeforeCall(ctx, r, w.conflictOutcome(ctx, chosen.ID, err), chosen)
		if failed == nil {
			return nil, nil, fmt.Errorf("recording the choice for %s: %w", r.ID, err)
		}
		return nil, failed, nil
	}
	w.audit(ctx, r.ID, EventResolved, user, map[string]string{"cloud_pc_id": updated.CloudPCID, "picked": "true"})
	return updated, nil, nil
}

// abortedAt names where an Abort stopped a request, for the audit trail.
var abortedAt = map[State]string{StateConfirming: "confirmation", StateScheduled: "scheduled"}

// Abort is Cancel at the final confirmation, or while a scheduled call
// waits: nothing is sent. Only the approver who signed in may.
func (w *Workflow) Abort(ctx context.Context, user, ref string) (*Request, error) {
	r, err := w.load(ctx, ref, ActionAbort)
	if err != nil {
		return nil, err
	}
	if r.State != StateConfirming && r.State != StateScheduled {
		return nil, &Refusal{Kind: RefusedHandled, Action: ActionAbort, Ref: r.ID, Request: r}
	}
	if user != r.DecidedBy {
		return nil, w.refuse(ctx, user, &Refusal{Kind: RefusedNotConfirmer, Action: ActionAbort, Request: r, Users: []string{r.DecidedBy}})
	}
	if !w.inFlight.claim(r.ID) {
		return nil, &Refusal{Kind: RefusedBusy, Action: ActionAbort, Ref: r.ID, Request: r}
	}
	defer w.inFlight.remove(r.ID)
	r, err = w.settle(ctx, ref, step{
		from: []State{StateConfirming, StateScheduled}, to: StateCanceled,
		event: EventCanceled, actor: user, details: map[string]string{"at": abortedAt[r.State]},
		tellRequester: true,
	})
	return r, late(err, ActionAbort)
}
