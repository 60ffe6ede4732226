package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// interactionTimeout bounds the store and Slack work for one click.
const interactionTimeout = 30 * time.Second

// click is one button press, checked and with its request loaded.
type click struct {
	cb      slack.InteractionCallback
	action  string
	user    string
	request *approvals.Request
	// pick is the Cloud PC id of an actionPick.
	pick string
}

// tell answers the clicker privately.
func (b *Bot) tell(ctx context.Context, c click, text string) {
	b.tellUser(ctx, c.cb.ResponseURL, c.cb.Channel.ID, c.user, text)
}

// handleBlockAction handles a button press. It runs in a worker, after the
// envelope was acked.
func (b *Bot) handleBlockAction(cb slack.InteractionCallback) {
	if cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) == 0 {
		return
	}
	action := cb.ActionCallback.BlockActions[0]
	if action.ActionID == actionSignInLink {
		return // a URL button: Slack opened the link, nothing to do
	}
	ctx, cancel := context.WithTimeout(b.execCtx, interactionTimeout)
	defer cancel()
	// Buttons repeated in one message (Home tab, candidates) carry a
	// ":suffix" to keep action_ids unique; the value says what they act on.
	base, _, _ := strings.Cut(action.ActionID, ":")
	c := click{cb: cb, action: base, user: cb.User.ID}
	ref := action.Value
	if c.action == actionPick {
		ref, c.pick, _ = strings.Cut(action.Value, "|")
		if !approvals.ValidCloudPCID(c.pick) {
			b.log.Warn("pick with a malformed Cloud PC id ignored", "user", c.user)
			return
		}
	}
	if !approvals.ValidReference(ref) {
		b.log.Warn("click with a malformed reference ignored", "user", c.user, "action", c.action)
		return
	}
	r, err := b.cfg.Store.Get(ctx, ref)
	if err != nil {
		if errors.Is(err, approvals.ErrNotFound) {
			b.tell(ctx, c, fmt.Sprintf("There is no request %s.", ref))
		} else {
			b.log.Error("request not loaded", "ref", ref, "err", err)
			b.tell(ctx, c, fmt.Sprintf(":x: %s could not be loaded; nothing was done. Please try again.", ref))
		}
		return
	}
	c.request = r
	b.log.Info("click", "ref", ref, "user", c.user, "action", c.action)

	switch c.action {
	case actionApprove:
		b.approve(ctx, c)
	case actionDeny:
		b.openDenyForm(ctx, c)
	case actionCancel:
		b.cancelByRequester(ctx, c)
	case actionConfirm, actionPick:
		b.confirm(ctx, c)
	case actionAbort:
		b.abort(ctx, c)
	case actionResumeTrack:
		b.resumeTracking(ctx, c)
	case actionRequestOver:
		b.requestAgain(ctx, cb, r)
	}
}

// mayDecide applies the policy to a decision click; a refusal is told,
// audited, and changes nothing.
func (b *Bot) mayDecide(ctx context.Context, c click) bool {
	if c.request.ExpiredAt(time.Now()) {
		// The scheduler has not got to it yet; a decision now is too late.
		b.expire(ctx, c.request)
		b.tell(ctx, c, fmt.Sprintf("%s has expired; nothing was changed.", c.request.ID))
		return false
	}
	err := b.cfg.Policy.MayDecide(c.user, c.request)
	if err == nil {
		return true
	}
	b.log.Warn("click refused", "ref", c.request.ID, "user", c.user, "why", err.Error())
	b.audit(ctx, c.request.ID, approvals.EventRefusedClick, c.user, map[string]string{"action": c.action, "why": err.Error()})
	b.tell(ctx, c, ":no_entry: "+err.Error()+" Nothing was changed.")
	return false
}

// tellLate answers a click that lost the race or came after the fact.
func (b *Bot) tellLate(ctx context.Context, c click, err error) {
	var late *approvals.TransitionError
	switch {
	case errors.As(err, &late):
		b.log.Info("late click", "ref", c.request.ID, "state", string(late.Current.State))
		b.tell(ctx, c, fmt.Sprintf("%s was already handled: %s", c.request.ID, statusLine(late.Current)))
	default:
		b.log.Error("decision not recorded", "ref", c.request.ID, "err", err)
		b.tell(ctx, c, fmt.Sprintf(":x: Your click on %s could not be recorded; nothing was done. Please try again.", c.request.ID))
	}
}

// approve: with a valid sign-in and a known Cloud PC, Approve is final;
// otherwise the approver signs in first and confirms after seeing details.
func (b *Bot) approve(ctx context.Context, c click) {
	if !b.mayDecide(ctx, c) {
		return
	}
	r, err := b.cfg.Store.Transition(ctx, c.request.ID, approvals.StateApproved, func(r *approvals.Request) {
		r.DecidedBy = c.user
		r.Outcome = ""
	})
	if err != nil {
		b.tellLate(ctx, c, err)
		return
	}
	b.audit(ctx, r.ID, approvals.EventApproved, c.user, nil)
	s := b.sessions.valid(c.user)
	// Approve is final only on the prompt that showed the details, with a
	// valid sign-in; elsewhere (the Home tab) the approver confirms after
	// seeing them.
	onPrompt := c.cb.Container.Type == "message"
	if s != nil && onPrompt && r.CloudPCID != "" && r.Device != nil && b.inFlight.claim(r.ID) {
		b.sessions.pin(r.ID, s)
		b.spawn(func() { b.execute(r, s) })
		return
	}
	b.updatePrompts(ctx, r)
	b.spawn(func() { b.signInThenConfirm(r, s) })
}

// openDenyForm asks the approver for a reason before denying.
func (b *Bot) openDenyForm(ctx context.Context, c click) {
	if !b.mayDecide(ctx, c) {
		return
	}
	if c.request.State != approvals.StatePending {
		b.tell(ctx, c, fmt.Sprintf("%s was already handled: %s", c.request.ID, statusLine(c.request)))
		return
	}
	err := b.slackCall(ctx, "views.open", func(ctx context.Context) error {
		_, err := b.api.OpenViewContext(ctx, c.cb.TriggerID, denyModal(c.request))
		return err
	})
	if err != nil {
		b.log.Warn("deny form not opened", "ref", c.request.ID, "err", err)
		b.tell(ctx, c, ":warning: The form for a reason did not open; please click Deny again.")
	}
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
		b.spawn(func() { b.deny(cb, strings.TrimSpace(reason)) })
	default:
		b.ack(sm, req, nil)
	}
}

func (b *Bot) deny(cb slack.InteractionCallback, reason string) {
	ctx, cancel := context.WithTimeout(b.execCtx, interactionTimeout)
	defer cancel()
	ref := cb.View.PrivateMetadata
	c := click{cb: cb, action: actionDeny, user: cb.User.ID}
	if !approvals.ValidReference(ref) {
		return
	}
	r, err := b.cfg.Store.Get(ctx, ref)
	if err != nil {
		b.log.Error("request not loaded", "ref", ref, "err", err)
		return
	}
	c.request = r
	if !b.mayDecide(ctx, c) {
		return
	}
	r, err = b.cfg.Store.Transition(ctx, ref, approvals.StateDenied, func(r *approvals.Request) {
		r.DecidedBy = c.user
		r.DecisionReason = reason
	})
	if err != nil {
		b.tellLate(ctx, c, err)
		return
	}
	b.audit(ctx, ref, approvals.EventDenied, c.user, map[string]string{"reason": reason})
	b.log.Info("denied", "ref", ref, "user", c.user)
	b.updatePrompts(ctx, r)
	b.dm(ctx, r.RequesterID, requesterUpdate(r))
}

// cancelByRequester withdraws a pending request.
func (b *Bot) cancelByRequester(ctx context.Context, c click) {
	if c.user != c.request.RequesterID {
		b.audit(ctx, c.request.ID, approvals.EventRefusedClick, c.user, map[string]string{"action": c.action})
		b.tell(ctx, c, fmt.Sprintf("Only <@%s> can cancel %s.", c.request.RequesterID, c.request.ID))
		return
	}
	r, err := b.cfg.Store.TransitionFrom(ctx, c.request.ID, []approvals.State{approvals.StatePending}, approvals.StateCanceled,
		func(r *approvals.Request) { r.DecidedBy = c.user })
	if err != nil {
		b.tellLate(ctx, c, err)
		return
	}
	b.audit(ctx, r.ID, approvals.EventCanceled, c.user, nil)
	b.updatePrompts(ctx, r)
	text := fmt.Sprintf(":leftwards_arrow_with_hook: You canceled %s; the approvers' prompts say so.", r.ID)
	if !b.replaceOriginal(ctx, c.cb.ResponseURL, text) {
		b.tell(ctx, c, text)
	}
}

// confirm is the approver's final word (Reprovision now, or a pick among
// several Cloud PCs) after they signed in.
func (b *Bot) confirm(ctx context.Context, c click) {
	r := c.request
	if r.State != approvals.StateConfirming {
		b.tell(ctx, c, fmt.Sprintf("%s was already handled: %s", r.ID, statusLine(r)))
		return
	}
	if c.user != r.DecidedBy {
		b.audit(ctx, r.ID, approvals.EventRefusedClick, c.user, map[string]string{"action": c.action})
		b.tell(ctx, c, fmt.Sprintf("Only <@%s>, who approved and signed in, can confirm %s.", r.DecidedBy, r.ID))
		return
	}
	if r.ExpiredAt(time.Now()) {
		b.expire(ctx, r)
		b.tell(ctx, c, fmt.Sprintf("The confirmation of %s has expired; nothing was sent.", r.ID))
		return
	}
	s := b.sessions.forRequest(r.ID, r.DecidedBy)
	if s == nil {
		b.reopen(ctx, r, "The sign-in is no longer valid. Approve again to sign in.")
		return
	}
	// One confirmation starts one worker; a second click (or pick) while
	// it runs is told so.
	if !b.inFlight.claim(r.ID) {
		b.tell(ctx, c, fmt.Sprintf("%s is already being handled.", r.ID))
		return
	}
	if c.action == actionPick {
		var chosen *approvals.CloudPC
		for i := range r.Candidates {
			if r.Candidates[i].ID == c.pick {
				chosen = &r.Candidates[i]
			}
		}
		if chosen == nil || r.CloudPCID != "" {
			b.inFlight.remove(r.ID)
			b.tell(ctx, c, "That choice is no longer on offer.")
			return
		}
		updated, err := b.cfg.Store.Update(ctx, r.ID, func(r *approvals.Request) {
			r.CloudPCID = chosen.ID
			r.Device = chosen
		})
		if err != nil {
			b.inFlight.remove(r.ID)
			b.failBeforeCall(ctx, r, b.openRequestConflict(ctx, r, chosen.ID, err))
			return
		}
		r = updated
		b.audit(ctx, r.ID, approvals.EventResolved, c.user, map[string]string{"cloud_pc_id": r.CloudPCID, "picked": "true"})
	}
	b.audit(ctx, r.ID, approvals.EventConfirmed, c.user, nil)
	b.replaceOriginal(ctx, c.cb.ResponseURL, fmt.Sprintf("Confirmed: reprovisioning %s (%s)…", escapeText(targetLabel(r)), r.ID))
	b.spawn(func() { b.execute(r, s) })
}

// abort is Cancel at the final confirmation.
func (b *Bot) abort(ctx context.Context, c click) {
	if c.user != c.request.DecidedBy {
		b.tell(ctx, c, fmt.Sprintf("Only <@%s> can cancel at the confirmation.", c.request.DecidedBy))
		return
	}
	if !b.inFlight.claim(c.request.ID) {
		b.tell(ctx, c, fmt.Sprintf("%s is already being handled.", c.request.ID))
		return
	}
	defer b.inFlight.remove(c.request.ID)
	r, err := b.cfg.Store.TransitionFrom(ctx, c.request.ID, []approvals.State{approvals.StateConfirming}, approvals.StateCanceled, nil)
	if err != nil {
		b.tellLate(ctx, c, err)
		return
	}
	b.sessions.release(r.ID)
	b.audit(ctx, r.ID, approvals.EventCanceled, c.user, map[string]string{"at": "confirmation"})
	b.replaceOriginal(ctx, c.cb.ResponseURL, fmt.Sprintf("Canceled %s: nothing was reprovisioned.", r.ID))
	b.updatePrompts(ctx, r)
	b.dm(ctx, r.RequesterID, requesterUpdate(r))
}
