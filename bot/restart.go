package bot

import (
	"context"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// resumeAfterRestart settles what a previous process left half done:
//   - executing: the Graph call may have been sent; mark the outcome unknown
//     and tell both sides, never resend;
//   - approved: the device-code sign-in died with the process; reopen the
//     request so the approver can click Approve again.
//
// Pending requests need nothing: their prompts still work.
func (b *Bot) resumeAfterRestart(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stuck, err := b.cfg.Store.ListByState(ctx, approvals.StateExecuting, approvals.StateApproved)
	if err != nil {
		b.log.Error("could not list unfinished requests", "err", err)
		return
	}
	for _, r := range stuck {
		log := b.log.With("ref", r.ID)
		var to approvals.State
		var outcome string
		switch r.State {
		case approvals.StateExecuting:
			to, outcome = approvals.StateOutcomeUnknown, "The bot stopped while the reprovision call may have been in flight; it was not sent again."
		default:
			to, outcome = approvals.StatePending, "The bot restarted during sign-in. Approve again to retry."
		}
		r, err := b.cfg.Store.Transition(ctx, r.ID, to, func(r *approvals.Request) { r.Outcome = outcome })
		if err != nil {
			log.Error("could not settle request after restart", "err", err)
			continue
		}
		log.Warn("settled after restart", "state", string(r.State))
		b.updatePrompt(ctx, r)
		if to == approvals.StateOutcomeUnknown {
			b.audit(ctx, r.ID, approvals.EventOutcomeUnknown, "", map[string]string{"reason": "restart while executing"})
			b.dm(ctx, r.RequesterID, requesterUpdate(r))
			b.dm(ctx, r.ApproverID, requestSummary(r))
		}
	}
}
