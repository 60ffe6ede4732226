package bot

import (
	"context"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// resumeAfterRestart settles what a previous process left half done:
//   - executing: the Graph call may have been sent; mark the outcome unknown
//     and tell both sides, never resend;
//   - approved or awaiting confirmation: the sign-in died with the process
//     (sign-ins live only in memory); reopen the request so an approver can
//     click Approve again;
//   - being tracked: nobody is signed in to look, so tracking pauses and the
//     prompt offers Resume tracking.
//
// Pending requests need nothing: their prompts still work. Expiries missed
// while down are handled by the scheduler's first run.
func (b *Bot) resumeAfterRestart(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stuck, err := b.cfg.Store.ListByState(ctx, approvals.StateExecuting, approvals.StateApproved, approvals.StateConfirming)
	if err != nil {
		b.log.Error("could not list unfinished requests", "err", err)
		return
	}
	for _, r := range stuck {
		if r.State != approvals.StateExecuting {
			b.log.Warn("sign-in lost in restart; request reopened", "ref", r.ID)
			b.reopen(ctx, r, "The bot restarted during sign-in. Approve again to retry.")
			continue
		}
		unknown, err := b.cfg.Store.TransitionFrom(ctx, r.ID, []approvals.State{approvals.StateExecuting}, approvals.StateOutcomeUnknown, func(r *approvals.Request) {
			r.Outcome = "The bot stopped while the reprovision call may have been in flight; it was not sent again."
		})
		if err != nil {
			b.log.Error("could not settle request after restart", "ref", r.ID, "err", err)
			continue
		}
		b.log.Warn("call may have been in flight at the last stop: outcome unknown", "ref", r.ID)
		b.audit(ctx, r.ID, approvals.EventOutcomeUnknown, "", map[string]string{"reason": "restart while executing"})
		b.updatePrompts(ctx, unknown)
		b.dm(ctx, unknown.RequesterID, requesterUpdate(unknown))
		if unknown.DecidedBy != "" {
			b.dm(ctx, unknown.DecidedBy, requestSummary(unknown))
		}
	}
	tracked, err := b.cfg.Store.ListTracking(ctx)
	if err != nil {
		b.log.Error("could not list tracked requests", "err", err)
		return
	}
	for _, r := range tracked {
		if !r.Tracking.Paused {
			b.pauseTracking(ctx, r)
		}
	}
}
