package bot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// interactionTimeout bounds the store and Slack work for one click.
const interactionTimeout = 30 * time.Second

// handleInteraction handles a click on the approval prompt. It runs in a
// worker, after the envelope was acked.
func (b *Bot) handleInteraction(cb slack.InteractionCallback) {
	if cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) == 0 {
		return
	}
	action := cb.ActionCallback.BlockActions[0]
	if action.ActionID != actionApprove && action.ActionID != actionDeny {
		return // e.g. the sign-in link button: nothing to do
	}
	ctx, cancel := context.WithTimeout(b.execCtx, interactionTimeout)
	defer cancel()
	clicker := cb.User.ID
	ref := action.Value
	if !approvals.ValidReference(ref) {
		b.log.Warn("click with a malformed reference ignored", "user", clicker)
		return
	}
	log := b.log.With("ref", ref, "user", clicker, "action", action.ActionID)

	if clicker != b.cfg.Approver {
		log.Warn("click by someone who may not decide")
		b.audit(ctx, ref, approvals.EventRefusedClick, clicker, map[string]string{"action": action.ActionID})
		b.tellUser(ctx, cb.ResponseURL, cb.Channel.ID, clicker,
			fmt.Sprintf(":no_entry: Only <@%s> can approve or deny %s. Nothing was changed.", b.cfg.Approver, ref))
		return
	}

	to, kind := approvals.StateApproved, approvals.EventApproved
	if action.ActionID == actionDeny {
		to, kind = approvals.StateDenied, approvals.EventDenied
	}
	r, err := b.cfg.Store.Transition(ctx, ref, to, func(r *approvals.Request) {
		r.DecidedBy = clicker
		r.Outcome = ""
		if r.PromptTS == "" {
			// The click can beat the worker that records where the
			// prompt was posted; the click itself says where it is.
			r.PromptChannelID, r.PromptTS = cb.Container.ChannelID, cb.Container.MessageTs
		}
	})
	var late *approvals.TransitionError
	switch {
	case errors.As(err, &late):
		log.Info("late click; request already decided", "state", string(late.Current.State))
		b.tellUser(ctx, cb.ResponseURL, cb.Channel.ID, clicker,
			fmt.Sprintf("%s was already handled: %s", ref, statusLine(late.Current)))
		return
	case errors.Is(err, approvals.ErrNotFound):
		b.tellUser(ctx, cb.ResponseURL, cb.Channel.ID, clicker, fmt.Sprintf("There is no request %s.", ref))
		return
	case err != nil:
		log.Error("decision not recorded", "err", err)
		b.tellUser(ctx, cb.ResponseURL, cb.Channel.ID, clicker,
			fmt.Sprintf(":x: Your decision on %s could not be recorded; nothing was done. Please try again.", ref))
		return
	}
	b.audit(ctx, ref, kind, clicker, nil)
	log.Info("decided", "state", string(r.State))
	b.updatePrompt(ctx, r)
	if to == approvals.StateDenied {
		b.dm(ctx, r.RequesterID, requesterUpdate(r))
		return
	}
	b.spawn(func() { b.signInAndReprovision(r) })
}
