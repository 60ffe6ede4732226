package approvals

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// recover settles what a previous process left half done:
//   - a request executing when it stopped may or may not have reached Graph:
//     outcome unknown, both sides told, never resent;
//   - a request waiting for a sign-in or a confirmation lost its sign-in
//     (sign-ins live in memory only): back to pending;
//   - a request none of whose approvers is configured any more is prompted
//     to the configured ones;
//   - a reprovision being followed has nobody signed in to look with:
//     tracking pauses until an approver resumes it.
//
// Expiries missed while down are handled by the scheduler's first run.
func (w *Workflow) recover(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stuck, err := w.store.ListByState(ctx, StateExecuting, StateApproved, StateConfirming)
	if err != nil {
		w.log.Error("could not list unfinished requests", "err", err)
		return
	}
	for _, r := range stuck {
		if r.State != StateExecuting {
			w.log.Warn("sign-in lost in restart; request reopened", "ref", r.ID)
			why := &Outcome{Kind: OutcomeSignInInterrupted}
			if reopened := w.reopen(ctx, r, why); reopened != nil {
				w.tell(ctx, reopened.DecidedBy, Notice{Kind: NoticeSignInFailed, Request: reopened, Why: why})
				w.tell(ctx, reopened.RequesterID, Notice{Kind: NoticeSignInFailed, Request: reopened, Why: why})
			}
			continue
		}
		_, err := w.settle(ctx, r.ID, step{
			from: []State{StateExecuting}, to: StateOutcomeUnknown,
			update:        func(r *Request) { r.Outcome = &Outcome{Kind: OutcomeInFlightAtRestart} },
			event:         EventOutcomeUnknown,
			details:       map[string]string{"reason": "restart while executing"},
			tellRequester: true, tellApprover: true,
		})
		if err != nil {
			w.log.Error("could not settle request after restart", "ref", r.ID, "err", err)
			continue
		}
		w.log.Warn("call may have been in flight at the last stop: outcome unknown", "ref", r.ID)
	}
	w.repromptOrphans(ctx)
	tracked, err := w.store.ListTracking(ctx)
	if err != nil {
		w.log.Error("could not list tracked requests", "err", err)
		return
	}
	for _, r := range tracked {
		if !r.Tracking.Paused {
			w.pauseTracking(ctx, r)
		}
	}
}

// repromptOrphans prompts the configured approvers for the pending requests
// none of whose own approvers is configured any more (Policy.ApproversOf):
// they decide now, and must be asked.
func (w *Workflow) repromptOrphans(ctx context.Context) {
	pending, err := w.store.ListByState(ctx, StatePending)
	if err != nil {
		w.log.Error("could not list pending requests", "err", err)
		return
	}
	for _, r := range pending {
		if slices.ContainsFunc(r.Approvers, func(a string) bool { return slices.Contains(w.cfg.Policy.Approvers, a) }) {
			continue
		}
		// The prompt shows who decides now; the request keeps the list it
		// was made with, for the record.
		view := *r
		view.Approvers = w.cfg.Policy.ApproversOf(r)
		posted := w.notices.PostPrompts(ctx, &view)
		if _, err := w.store.Update(ctx, r.ID, func(r *Request) { r.Prompts = append(r.Prompts, posted...) }); err != nil {
			w.log.Error("new prompt locations not stored", "ref", r.ID, "err", err)
		}
		w.log.Warn("no approver of the request is configured any more; prompted the current ones", "ref", r.ID)
		w.audit(ctx, r.ID, EventReprompted, "", map[string]string{"approvers": fmt.Sprint(view.Approvers), "was": fmt.Sprint(r.Approvers)})
	}
}
