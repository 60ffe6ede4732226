package bot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// ephemeral is the ack payload that answers a slash command privately.
type ephemeral struct {
	ResponseType string `json:"response_type"`
	Text         string `json:"text"`
}

// handleSlashCommand validates in memory, acks with the reply, and only then
// does I/O (store, prompt) in a worker.
func (b *Bot) handleSlashCommand(sm *socketmode.Client, req *socketmode.Request, sc slack.SlashCommand) {
	parsed, err := ParseCommand(sc.Text)
	switch {
	case err != nil:
		b.ack(sm, req, ephemeral{"ephemeral", ":warning: " + err.Error() + "\n" + Usage})
		b.log.Info("command refused", "user", sc.UserID, "reason", err.Error())
		return
	case parsed.Help:
		b.ack(sm, req, ephemeral{"ephemeral", Usage})
		return
	}
	r := &approvals.Request{
		ID:               approvals.NewReference(),
		CloudPCID:        parsed.CloudPCID,
		RequesterID:      sc.UserID,
		RequestChannelID: sc.ChannelID,
		ApproverID:       b.cfg.Approver,
		State:            approvals.StatePending,
		CreatedAt:        time.Now().UTC(),
	}
	b.ack(sm, req, ephemeral{"ephemeral", fmt.Sprintf(
		"Request %s: asking <@%s> to approve reprovisioning Cloud PC `%s`. I'll tell you here when they decide.",
		r.ID, r.ApproverID, r.CloudPCID)})
	b.spawn(func() { b.openRequest(r, sc.ResponseURL) })
}

// openRequest stores the request and posts the approval prompt.
func (b *Bot) openRequest(r *approvals.Request, responseURL string) {
	ctx, cancel := context.WithTimeout(b.execCtx, 30*time.Second)
	defer cancel()
	log := b.log.With("ref", r.ID)
	if err := b.cfg.Store.Create(ctx, r); err != nil {
		text := fmt.Sprintf(":x: Request %s could not be recorded, so it was not sent. Please try again.", r.ID)
		if errors.Is(err, approvals.ErrOpenRequestExists) {
			text = fmt.Sprintf(":x: Cloud PC `%s` already has an open reprovision request, so %s was not sent.", r.CloudPCID, r.ID)
		}
		log.Error("request not stored", "err", err)
		b.tellUser(ctx, responseURL, r.RequestChannelID, r.RequesterID, text)
		return
	}
	b.audit(ctx, r.ID, approvals.EventRequested, r.RequesterID, map[string]string{
		"cloud_pc_id": r.CloudPCID, "channel": r.RequestChannelID, "approver": r.ApproverID,
	})
	log.Info("request opened", "requester", r.RequesterID, "cloud_pc_id", r.CloudPCID)

	var channel, ts string
	err := b.slackCall(ctx, "chat.postMessage", func(ctx context.Context) (err error) {
		channel, ts, err = b.api.PostMessageContext(ctx, r.ApproverID,
			slack.MsgOptionText(promptText(r), false),
			slack.MsgOptionBlocks(promptBlocks(r, statusLine(r))...))
		return err
	})
	if err != nil {
		log.Error("approval prompt not posted", "err", err)
		b.tellUser(ctx, responseURL, r.RequestChannelID, r.RequesterID,
			fmt.Sprintf(":x: Request %s is recorded but the approver could not be reached on Slack. Please tell them, or try again later.", r.ID))
		return
	}
	if err := b.cfg.Store.SetPrompt(ctx, r.ID, channel, ts); err != nil {
		log.Error("prompt location not stored", "err", err)
	}
	log.Info("approval prompt posted", "channel", channel, "ts", ts)
}

// audit appends to the trail; a failure is logged, never fatal to the flow
// (the flow's own state is in the store already).
func (b *Bot) audit(ctx context.Context, ref string, kind approvals.EventKind, actor string, details map[string]string) {
	err := b.cfg.Store.Record(ctx, approvals.Event{
		Time: time.Now().UTC(), RequestID: ref, Kind: kind, Actor: actor, Details: details,
	})
	if err != nil {
		b.log.Error("audit record not written", "ref", ref, "kind", string(kind), "err", err)
	}
}
