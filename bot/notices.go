package bot

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// This file is the workflow's Notices port: what the workflow says, as
// Slack messages.

// PostPrompts sends the approval prompt to each approver in to and returns
// where. An approver Slack cannot reach for good (deactivated, DMs closed) is
// skipped; the error says whether trying again can help the others.
func (b *Bot) PostPrompts(ctx context.Context, r *approvals.Request, to []string) ([]approvals.MessageRef, error) {
	r = b.asShown(r)
	var (
		posted []approvals.MessageRef
		errs   []error
		gone   error // an approver Slack cannot reach for good
	)
	for _, approver := range to {
		var channel, ts string
		err := b.slackCallTo(ctx, "chat.postMessage", approver, func(ctx context.Context) (err error) {
			channel, ts, err = b.api.PostMessageContext(ctx, approver,
				slack.MsgOptionText(promptText(r), false),
				slack.MsgOptionBlocks(promptBlocks(r)...))
			return err
		})
		var paced *pacedError
		if errors.As(err, &paced) {
			// Not a failure: the outbox posts it when its turn comes.
			b.pacedPrompts.add(r.ID)
			b.log.Debug("approval prompt waits for its turn", "ref", r.ID, "approver", approver, "in", paced.wait.String())
			errs = append(errs, err)
			continue
		}
		if err = deliveryError(err); err != nil {
			b.log.Error("approval prompt not posted", "ref", r.ID, "approver", approver, "err", err)
			if errors.Is(err, approvals.ErrUndeliverable) {
				gone = err
			} else {
				errs = append(errs, err)
			}
			continue
		}
		b.pacedPrompts.take(r.ID)
		posted = append(posted, approvals.MessageRef{ChannelID: channel, TS: ts, UserID: approver})
		b.log.Info("approval prompt posted", "ref", r.ID, "approver", approver, "channel", channel, "ts", ts)
	}
	b.refreshHomes(ctx, r)
	if len(errs) == 0 && len(posted) == 0 {
		return nil, gone // nobody reachable: dropped, and audited
	}
	return posted, errors.Join(errs...)
}

// UpdatePrompts redraws every approver's copy of the prompt for r's current
// state (buttons only while pending), and keeps Home tabs current. Redrawing
// is idempotent, so a failed redraw is tried again whole: a copy deleted in
// Slack is skipped, the others must all succeed.
func (b *Bot) UpdatePrompts(ctx context.Context, r *approvals.Request) error {
	r = b.asShown(r)
	var errs []error
	for _, p := range r.Prompts {
		err := b.slackCall(ctx, "chat.update", func(ctx context.Context) error {
			_, _, _, err := b.api.UpdateMessageContext(ctx, p.ChannelID, p.TS,
				slack.MsgOptionText(promptText(r), false),
				slack.MsgOptionBlocks(promptBlocks(r)...))
			return err
		})
		if err = deliveryError(err); err != nil {
			b.log.Warn("approval prompt not updated", "ref", r.ID, "channel", p.ChannelID, "err", err)
			if !errors.Is(err, approvals.ErrUndeliverable) {
				errs = append(errs, err)
			}
		}
	}
	b.refreshHomes(ctx, r)
	return errors.Join(errs...)
}

// asShown is r with the approvers who decide it now (the workflow's policy:
// someone removed from the configuration is no longer shown as deciding).
func (b *Bot) asShown(r *approvals.Request) *approvals.Request {
	shown := *r
	shown.Approvers = b.wf.Policy().ApproversOf(r)
	return &shown
}

// Tell sends user a direct message about a request.
func (b *Bot) Tell(ctx context.Context, user string, n approvals.Notice) error {
	n = memberNotice(n)
	var blocks []slack.Block
	switch n.Kind {
	case approvals.NoticeExpired:
		text, blocks := expiredNotice(n.Request)
		return deliveryError(b.dm(ctx, user, msgText(text), msgBlocks(blocks)))
	case approvals.NoticeHeadsUp:
		blocks = headsUpBlocks(user, n.Request)
	case approvals.NoticeMoreTimeAsked:
		blocks = moreTimeAskedBlocks(n.Request)
	case approvals.NoticeSignInToSend:
		blocks = signInToSendBlocks(n)
	case approvals.NoticeBatchHalted:
		blocks = batchHaltedBlocks(n)
	}
	if blocks != nil {
		return deliveryError(b.dm(ctx, user, msgText(noticeText(user, n)), msgBlocks(blocks)))
	}
	return deliveryError(b.dm(ctx, user, msgText(noticeText(user, n))))
}

// Progress posts under the deciding approver's prompt (or the first one).
func (b *Bot) Progress(ctx context.Context, r *approvals.Request, p approvals.Progress) error {
	if len(r.Prompts) == 0 {
		return nil
	}
	prompt := r.Prompts[0]
	for _, candidate := range r.Prompts {
		if candidate.UserID == r.DecidedBy {
			prompt = candidate
		}
	}
	err := b.slackCallTo(ctx, "chat.postMessage", prompt.ChannelID, func(ctx context.Context) error {
		_, _, err := b.api.PostMessageContext(ctx, prompt.ChannelID, msgText(progressText(r, p)), slack.MsgOptionTS(prompt.TS))
		return err
	})
	if err != nil {
		b.log.Warn("thread reply failed", "ref", r.ID, "err", err)
	}
	return deliveryError(err)
}

// SignInCode DMs the device code to the approver. The verification URL
// comes from Entra and must be https before it becomes a link button.
func (b *Bot) SignInCode(ctx context.Context, approver string, why approvals.SignInPurpose, r *approvals.Request, code approvals.DeviceCode) error {
	link, err := url.Parse(code.VerificationURL)
	if err != nil || link.Scheme != "https" {
		return errors.New("sign-in: Entra sent a verification URL that is not https")
	}
	purpose := signInPurposeText(why, r)
	return b.dm(ctx, approver,
		msgText(fmt.Sprintf("Sign in to %s: open %s and enter the code %s", purpose, link, code.UserCode)),
		msgBlocks(signInBlocks(purpose, link.String(), code.UserCode)))
}

// AskToConfirm DMs the signed-in approver the final confirmation (or the
// list to pick from).
func (b *Bot) AskToConfirm(ctx context.Context, r *approvals.Request) error {
	text, blocks := confirmBlocks(r)
	return b.dm(ctx, r.DecidedBy, msgText(text), msgBlocks(blocks))
}

// ProfileEmail is the user's Slack profile email (needs users:read.email).
func (b *Bot) ProfileEmail(ctx context.Context, user string) (string, error) {
	var profile *slack.User
	err := b.slackCall(ctx, "users.info", func(ctx context.Context) (err error) {
		profile, err = b.api.GetUserInfoContext(ctx, user)
		return err
	})
	if err != nil {
		return "", err
	}
	if profile.Profile.Email == "" {
		return "", fmt.Errorf("the Slack profile of %s shows no email (is users:read.email granted?)", user)
	}
	return profile.Profile.Email, nil
}

// ChatUserByEmail finds the Slack user with that email address
// (users.lookupByEmail, scope users:read.email): the Cloud PC's user, for
// the heads-up. Slack's users_not_found is approvals.ErrNoChatAccount; so is
// a deactivated account or a bot, which cannot be told anything.
func (b *Bot) ChatUserByEmail(ctx context.Context, email string) (string, error) {
	var user *slack.User
	err := b.slackCall(ctx, "users.lookupByEmail", func(ctx context.Context) (err error) {
		user, err = b.api.GetUserByEmailContext(ctx, email)
		return err
	})
	var se slack.SlackErrorResponse
	switch {
	case err != nil && (errors.As(err, &se) && se.Err == "users_not_found" || err.Error() == "users_not_found"):
		return "", approvals.ErrNoChatAccount
	case err != nil:
		return "", err
	case user == nil || user.Deleted || user.IsBot || !ValidUserID(user.ID):
		return "", approvals.ErrNoChatAccount
	}
	return user.ID, nil
}
