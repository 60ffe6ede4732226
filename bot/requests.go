package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// ephemeral is the ack payload that answers a slash command privately.
type ephemeral struct {
	ResponseType string        `json:"response_type"`
	Text         string        `json:"text"`
	Blocks       []slack.Block `json:"blocks,omitempty"`
}

// handleSlashCommand validates in memory (command text and policy), acks
// with the reply, and only then does I/O in a worker.
func (b *Bot) handleSlashCommand(sm *socketmode.Client, req *socketmode.Request, sc slack.SlashCommand) {
	log := b.log.With("user", sc.UserID, "channel", sc.ChannelID)
	parsed, err := ParseCommand(sc.Text)
	if err == nil && !parsed.Help {
		err = b.cfg.Policy.MayRequest(sc.UserID, sc.ChannelID)
	}
	switch {
	case err != nil:
		text := ":warning: " + err.Error()
		var refusal *approvals.Refusal
		if !errors.As(err, &refusal) {
			text += "\n" + Usage
		}
		b.ack(sm, req, ephemeral{ResponseType: "ephemeral", Text: text})
		log.Info("command refused", "reason", err.Error())
		b.spawn(func() {
			b.audit(b.execCtx, "", approvals.EventRefusedRequest, sc.UserID, map[string]string{"channel": sc.ChannelID, "why": err.Error()})
		})
		return
	case parsed.Help:
		b.ack(sm, req, ephemeral{ResponseType: "ephemeral", Text: Usage})
		return
	case parsed.Reason == "":
		// The trigger_id lives about 3 s: open the form right after the ack.
		b.ack(sm, req, nil)
		b.spawn(func() { b.askForReason(sc, parsed) })
		return
	}
	r := b.cfg.Policy.NewRequest(time.Now(), sc.UserID, sc.ChannelID, parsed.Target, parsed.Reason)
	text, blocks := requesterConfirmation(r)
	b.ack(sm, req, ephemeral{ResponseType: "ephemeral", Text: text, Blocks: blocks})
	b.spawn(func() { b.openRequest(r, sc.ResponseURL) })
}

// reasonForm is what the reason modal carries between open and submit.
type reasonForm struct {
	Target      string `json:"target"`
	Channel     string `json:"channel"`
	ResponseURL string `json:"response_url,omitempty"`
}

func (b *Bot) askForReason(sc slack.SlashCommand, parsed Command) {
	ctx, cancel := context.WithTimeout(b.execCtx, interactionTimeout)
	defer cancel()
	meta, _ := json.Marshal(reasonForm{Target: parsed.Target, Channel: sc.ChannelID, ResponseURL: sc.ResponseURL})
	err := b.slackCall(ctx, "views.open", func(ctx context.Context) error {
		_, err := b.api.OpenViewContext(ctx, sc.TriggerID, reasonModal(string(meta), parsed.Target))
		return err
	})
	if err != nil {
		b.log.Warn("reason form not opened", "user", sc.UserID, "err", err)
		b.tellUser(ctx, sc.ResponseURL, sc.ChannelID, sc.UserID,
			":warning: I could not open the form for a reason. Please give it after the target: `/reprovision <target> <reason>`.")
	}
}

// reasonSubmitted handles the reason form. Validation errors go back in the
// ack so Slack shows them on the form.
func (b *Bot) reasonSubmitted(sm *socketmode.Client, req *socketmode.Request, cb slack.InteractionCallback) {
	var form reasonForm
	parsed, err := Command{}, json.Unmarshal([]byte(cb.View.PrivateMetadata), &form)
	if err == nil {
		parsed, err = parseTarget(form.Target)
	}
	if err != nil {
		b.ack(sm, req, nil)
		b.log.Warn("reason form with bad metadata", "user", cb.User.ID)
		return
	}
	reason := formReason(cb)
	if err := CheckReason(reason, true); err != nil {
		b.ack(sm, req, slack.NewErrorsViewSubmissionResponse(map[string]string{blockReason: err.Error()}))
		return
	}
	if err := b.cfg.Policy.MayRequest(cb.User.ID, form.Channel); err != nil {
		b.ack(sm, req, slack.NewErrorsViewSubmissionResponse(map[string]string{blockReason: err.Error()}))
		return
	}
	b.ack(sm, req, nil)
	r := b.cfg.Policy.NewRequest(time.Now(), cb.User.ID, form.Channel, parsed.Target, reason)
	b.spawn(func() {
		ctx, cancel := context.WithTimeout(b.execCtx, interactionTimeout)
		defer cancel()
		text, blocks := requesterConfirmation(r)
		b.tellUserBlocks(ctx, form.ResponseURL, form.Channel, r.RequesterID, text, blocks)
		b.openRequest(r, form.ResponseURL)
	})
}

func formReason(cb slack.InteractionCallback) string {
	if cb.View.State == nil {
		return ""
	}
	return cb.View.State.Values[blockReason][inputReason].Value
}

// openRequest stores the request and posts a prompt to every approver.
func (b *Bot) openRequest(r *approvals.Request, responseURL string) {
	ctx, cancel := context.WithTimeout(b.execCtx, interactionTimeout)
	defer cancel()
	log := b.log.With("ref", r.ID)
	if err := b.cfg.Store.Create(ctx, r); err != nil {
		text := fmt.Sprintf(":x: Request %s could not be recorded, so it was not sent. Please try again.", r.ID)
		if errors.Is(err, approvals.ErrOpenRequestExists) {
			text = b.alreadyOpenText(ctx, r)
		}
		log.Warn("request not stored", "err", err)
		b.tellUser(ctx, responseURL, r.RequestChannelID, r.RequesterID, text)
		return
	}
	b.audit(ctx, r.ID, approvals.EventRequested, r.RequesterID, map[string]string{
		"target": r.Target, "channel": r.RequestChannelID, "reason": r.Reason, "approvers": fmt.Sprint(r.Approvers),
	})
	log.Info("request opened", "requester", r.RequesterID, "target", r.Target)
	b.nudge() // a new expiry deadline

	// An approver who is signed in already lets us show the details on the
	// prompt itself; then their Approve is final.
	if r.CloudPCID != "" {
		if s := b.sessions.anyValid(r.Approvers); s != nil {
			if device, ok := b.lookUp(ctx, r, s); ok {
				if updated, err := b.cfg.Store.Update(ctx, r.ID, func(r *approvals.Request) { r.Device = &device }); err == nil {
					r = updated
				}
			}
		}
	}
	b.postPrompts(ctx, r)
	b.refreshHomes(ctx, r)
}

// alreadyOpenText points at the request that holds the Cloud PC.
func (b *Bot) alreadyOpenText(ctx context.Context, r *approvals.Request) string {
	existing, err := b.cfg.Store.OpenFor(ctx, r.CloudPCID)
	if err != nil {
		return fmt.Sprintf(":x: `%s` already has an open reprovision request, so %s was not sent.", escapeText(targetOf(r)), r.ID)
	}
	return fmt.Sprintf(":x: `%s` already has an open reprovision request: %s from <@%s> (%s). %s was not sent.",
		escapeText(targetOf(r)), existing.ID, existing.RequesterID, existing.State, r.ID)
}

// postPrompts sends the approval prompt to each approver and remembers
// where, so every copy can be updated.
func (b *Bot) postPrompts(ctx context.Context, r *approvals.Request) {
	log := b.log.With("ref", r.ID)
	var posted []approvals.MessageRef
	for _, approver := range r.Approvers {
		var channel, ts string
		err := b.slackCall(ctx, "chat.postMessage", func(ctx context.Context) (err error) {
			channel, ts, err = b.api.PostMessageContext(ctx, approver,
				slack.MsgOptionText(promptText(r), false),
				slack.MsgOptionBlocks(promptBlocks(r)...))
			return err
		})
		if err != nil {
			log.Error("approval prompt not posted", "approver", approver, "err", err)
			continue
		}
		posted = append(posted, approvals.MessageRef{ChannelID: channel, TS: ts, UserID: approver})
		log.Info("approval prompt posted", "approver", approver, "channel", channel, "ts", ts)
	}
	if len(posted) == 0 {
		b.tellUser(ctx, "", r.RequestChannelID, r.RequesterID,
			fmt.Sprintf(":x: Request %s is recorded but no approver could be reached on Slack. Please tell them, or try again later.", r.ID))
		return
	}
	updated, err := b.cfg.Store.Update(ctx, r.ID, func(r *approvals.Request) { r.Prompts = append(r.Prompts, posted...) })
	if err != nil {
		log.Error("prompt locations not stored", "err", err)
		return
	}
	// A decision may have landed between posting and recording: make sure
	// every copy shows it.
	if updated.State != approvals.StatePending {
		b.updatePrompts(ctx, updated)
	}
}

// requestAgain re-asks for an expired request, with the same target and
// reason, after the same checks as a new command.
func (b *Bot) requestAgain(ctx context.Context, cb slack.InteractionCallback, old *approvals.Request) {
	user := cb.User.ID
	if user != old.RequesterID {
		b.tellUser(ctx, cb.ResponseURL, cb.Channel.ID, user, fmt.Sprintf("Only <@%s> can ask again for %s.", old.RequesterID, old.ID))
		return
	}
	if err := b.cfg.Policy.MayRequest(user, old.RequestChannelID); err != nil {
		b.tellUser(ctx, cb.ResponseURL, cb.Channel.ID, user, ":warning: "+err.Error())
		return
	}
	r := b.cfg.Policy.NewRequest(time.Now(), user, old.RequestChannelID, old.Target, old.Reason)
	text, blocks := requesterConfirmation(r)
	b.tellUserBlocks(ctx, cb.ResponseURL, cb.Channel.ID, user, text, blocks)
	b.openRequest(r, cb.ResponseURL)
}

// audit appends to the trail; a failure is logged, never fatal to the flow
// (the flow's own state is in the store already).
func (b *Bot) audit(ctx context.Context, ref string, kind approvals.EventKind, actor string, details map[string]string) {
	// Recorded even when the work that caused it was canceled, but within
	// the shutdown budget.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	err := b.cfg.Store.Record(ctx, approvals.Event{
		Time: time.Now().UTC(), RequestID: ref, Kind: kind, Actor: actor, Details: details,
	})
	if err != nil {
		b.log.Error("audit record not written", "ref", ref, "kind", string(kind), "err", err)
	}
}
