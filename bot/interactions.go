package bot

import (
	"context"
	"strings"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// interactionTimeout bounds the store and Slack work for one click.
const interactionTimeout = 30 * time.Second

// click is one button press, decoded.
type click struct {
	cb     slack.InteractionCallback
	action string
	user   string
	ref    string
	// pick is the Cloud PC id of an actionPick.
	pick string
	// block is the block_id of the button's block.
	block string
}

// decodeClick reads a button press; false when there is nothing to act on
// (a link button, a malformed value).
func (b *Bot) decodeClick(cb slack.InteractionCallback) (click, bool) {
	if cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) == 0 {
		return click{}, false
	}
	action := cb.ActionCallback.BlockActions[0]
	if action.ActionID == actionSignInLink {
		return click{}, false // a URL button: Slack opened the link, nothing to do
	}
	// Buttons repeated in one message (Home tab, candidates) carry a
	// ":suffix" to keep action_ids unique; the value says what they act on.
	base, _, _ := strings.Cut(action.ActionID, ":")
	c := click{cb: cb, action: base, user: cb.User.ID, ref: action.Value, block: action.BlockID}
	if c.action == actionPick {
		c.ref, c.pick, _ = strings.Cut(action.Value, "|")
		if !approvals.ValidCloudPCID(c.pick) {
			b.log.Warn("pick with a malformed Cloud PC id ignored", "user", c.user)
			return click{}, false
		}
	}
	if !approvals.ValidReference(c.ref) {
		b.log.Warn("click with a malformed reference ignored", "user", c.user, "action", c.action)
		return click{}, false
	}
	return c, true
}

// handleBlockAction handles a button press after the envelope was acked:
// decode, one workflow call, then one reply to the clicker.
func (b *Bot) handleBlockAction(ctx context.Context, cb slack.InteractionCallback) {
	c, ok := b.decodeClick(cb)
	if !ok {
		return
	}
	b.log.Info("click", "ref", c.ref, "user", c.user, "action", c.action)
	var (
		r   *approvals.Request
		err error
	)
	switch c.action {
	case actionApprove:
		// Approve is final only on the prompt that showed the details;
		// on the Home tab the approver confirms after seeing them.
		r, err = b.wf.Approve(ctx, c.user, c.ref, cb.Container.Type == "message")
	case actionDeny:
		r, err = b.wf.MayDeny(ctx, c.user, c.ref)
		if err == nil {
			err = b.openDenyForm(ctx, c, r)
		}
	case actionCancel:
		r, err = b.wf.Cancel(ctx, c.user, c.ref)
	case actionConfirm, actionPick:
		r, err = b.wf.Confirm(ctx, c.user, c.ref, c.pick)
	case actionAbort:
		r, err = b.wf.Abort(ctx, c.user, c.ref)
	case actionResumeTrack:
		r, err = b.wf.ResumeTracking(ctx, c.user, c.ref)
	case actionSendNow:
		r, err = b.wf.SendNow(ctx, c.user, c.ref)
	case actionPostpone:
		r, err = b.wf.Postpone(ctx, c.user, c.ref)
	case actionMoreTime:
		r, err = b.wf.AskMoreTime(ctx, c.user, c.ref)
	case actionSignInSend:
		r, err = b.wf.SignInToSend(ctx, c.user, c.ref)
	case actionStopBatch:
		r, err = b.wf.StopBatch(ctx, c.user, c.ref)
	case actionResumeBatch:
		r, err = b.wf.ResumeBatch(ctx, c.user, c.ref)
	case actionRequestOver:
		r, err = b.wf.RequestAgain(ctx, c.user, c.ref)
		if err == nil {
			text, blocks := requesterConfirmation(r)
			b.tellUserBlocks(ctx, cb.ResponseURL, cb.Channel.ID, c.user, text, blocks)
			b.openRequest(ctx, r, cb.ResponseURL)
			return
		}
	default:
		return
	}
	b.reply(ctx, c, r, err)
}

// reply tells the clicker how their click went: a problem privately, a done
// step by rewriting the message they clicked on where that is how Slack
// shows it.
func (b *Bot) reply(ctx context.Context, c click, r *approvals.Request, err error) {
	if err != nil {
		b.log.Info("click not carried out", "ref", c.ref, "user", c.user, "err", err)
		b.tell(ctx, c, replyText(err))
		return
	}
	text := doneText(c.action, r)
	if text == "" {
		return // the prompt itself shows the news
	}
	if c.action == actionMoreTime || strings.HasPrefix(c.block, blockScheduled) || strings.HasPrefix(c.block, blockBatch) {
		// The heads-up and the prompt stay as they are (the workflow
		// redraws the prompt); the clicker hears privately.
		b.tell(ctx, c, text)
		return
	}
	if !b.replaceOriginal(ctx, c.cb.ResponseURL, text) && c.action == actionCancel {
		b.tell(ctx, c, text)
	}
}

// tell answers the clicker privately.
func (b *Bot) tell(ctx context.Context, c click, text string) {
	b.tellUser(ctx, c.cb.ResponseURL, c.cb.Channel.ID, c.user, text)
}

// openDenyForm asks the approver for a reason before denying.
func (b *Bot) openDenyForm(ctx context.Context, c click, r *approvals.Request) error {
	err := b.slackCall(ctx, "views.open", func(ctx context.Context) error {
		_, err := b.api.OpenViewContext(ctx, c.cb.TriggerID, denyModal(r))
		return err
	})
	if err != nil {
		b.log.Warn("deny form not opened", "ref", r.ID, "err", err)
		return errFormNotOpened
	}
	return nil
}

// handleViewSubmission answers a submitted form in the ack: errors go back
// onto the form, an empty ack closes it.
func (b *Bot) handleViewSubmission(sm *socketmode.Client, req *socketmode.Request, cb slack.InteractionCallback) {
	switch cb.View.CallbackID {
	case callbackReason:
		b.reasonSubmitted(sm, req, cb)
	case callbackDeny:
		reason := formReason(cb)
		if err := CheckReason(reason, true); err != nil {
			b.ack(sm, req, slack.NewErrorsViewSubmissionResponse(map[string]string{blockReason: err.Error()}))
			return
		}
		b.ack(sm, req, nil)
		c := click{cb: cb, action: actionDeny, user: cb.User.ID, ref: cb.View.PrivateMetadata}
		if !approvals.ValidReference(c.ref) {
			return
		}
		b.spawn(func(ctx context.Context) {
			r, err := b.wf.Deny(ctx, c.user, c.ref, strings.TrimSpace(reason))
			b.reply(ctx, c, r, err)
		})
	default:
		b.ack(sm, req, nil)
	}
}
