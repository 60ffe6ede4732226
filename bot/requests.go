package bot

import (
	"context"
	"encoding/json"
	"strings"

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
// with the reply, and only then does I/O in a handler.
func (b *Bot) handleSlashCommand(sm *socketmode.Client, req *socketmode.Request, sc slack.SlashCommand) {
	parsed, err := ParseCommand(sc.Text)
	switch {
	case err != nil:
		b.refuseCommand(sm, req, sc, err, true)
		return
	case parsed.Help:
		b.ack(sm, req, ephemeral{ResponseType: "ephemeral", Text: Usage})
		return
	case parsed.Reason == "":
		if err := b.wf.Policy().MayRequest(sc.UserID, sc.ChannelID); err != nil {
			b.refuseCommand(sm, req, sc, err, false)
			return
		}
		// The trigger_id lives about 3 s: open the form right after the ack.
		b.ack(sm, req, nil)
		b.spawn(func(ctx context.Context) { b.askForReason(ctx, sc, parsed) })
		return
	}
	r, err := b.wf.NewRequest(sc.UserID, sc.ChannelID, parsed.Target, parsed.Reason)
	if err != nil {
		b.refuseCommand(sm, req, sc, err, false)
		return
	}
	text, blocks := requesterConfirmation(r)
	b.ack(sm, req, ephemeral{ResponseType: "ephemeral", Text: text, Blocks: blocks})
	b.spawn(func(ctx context.Context) { b.openRequest(ctx, r, sc.ResponseURL) })
}

// refuseCommand answers a refused command in the ack (with usage when the
// text was malformed) and records the refusal.
func (b *Bot) refuseCommand(sm *socketmode.Client, req *socketmode.Request, sc slack.SlashCommand, err error, usage bool) {
	text := ":warning: " + replyText(err)
	if usage {
		text += "\n" + Usage
	}
	b.ack(sm, req, ephemeral{ResponseType: "ephemeral", Text: text})
	b.log.Info("command refused", "user", sc.UserID, "channel", sc.ChannelID, "reason", err.Error())
	b.wf.RefusedRequest(sc.UserID, sc.ChannelID, err)
}

// reasonForm is what the reason modal carries between open and submit.
type reasonForm struct {
	Target      string `json:"target"`
	Channel     string `json:"channel"`
	ResponseURL string `json:"response_url,omitempty"`
}

func (b *Bot) askForReason(ctx context.Context, sc slack.SlashCommand, parsed Command) {
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
	r, err := b.wf.NewRequest(cb.User.ID, form.Channel, parsed.Target, reason)
	if err != nil {
		b.ack(sm, req, slack.NewErrorsViewSubmissionResponse(map[string]string{blockReason: replyText(err)}))
		return
	}
	b.ack(sm, req, nil)
	b.spawn(func(ctx context.Context) {
		text, blocks := requesterConfirmation(r)
		b.tellUserBlocks(ctx, form.ResponseURL, form.Channel, r.RequesterID, text, blocks)
		b.openRequest(ctx, r, form.ResponseURL)
	})
}

// formReason is the reason typed into the reason or deny form, without
// invisible characters (see stripInvisible) and surrounding white space.
func formReason(cb slack.InteractionCallback) string {
	if cb.View.State == nil {
		return ""
	}
	return strings.TrimSpace(stripInvisible(cb.View.State.Values[blockReason][inputReason].Value))
}

// openRequest stores the request and prompts its approvers (the workflow
// does both); a problem is told to the requester.
func (b *Bot) openRequest(ctx context.Context, r *approvals.Request, responseURL string) {
	if err := b.wf.Open(ctx, r); err != nil {
		b.tellUser(ctx, responseURL, r.RequestChannelID, r.RequesterID, replyText(err))
	}
}
