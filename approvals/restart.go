package approvals

import (
	"context"
	"time"
)

// recover settles what a previous process left half done:
//   - a request executing when it stopped may or may not have reached Graph:
//     outcome unknown, both sides told, never resent;
//   - a request waiting for a sign-in or a confirmation lost its sign-in
//     (sign-ins live in memory only): back to pending;
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
			w.reopen(ctx, r, &Outcome{Kind: OutcomeSignInInterrupted})
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
