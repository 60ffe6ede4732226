package bot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// tellUser answers one user privately: through the interaction's response_url
// when it is a Slack hooks URL, else chat.postEphemeral in the channel, else a DM.
func (b *Bot) tellUser(ctx context.Context, responseURL, channel, user, text string) {
	b.tellUserBlocks(ctx, responseURL, channel, user, text, nil)
}

// tellUserBlocks is tellUser with Block Kit content (text is the fallback).
func (b *Bot) tellUserBlocks(ctx context.Context, responseURL, channel, user, text string, blocks []slack.Block) {
	if b.validResponseURL(responseURL) {
		msg := &slack.WebhookMessage{Text: text, ResponseType: slack.ResponseTypeEphemeral}
		if blocks != nil {
			msg.Blocks = &slack.Blocks{BlockSet: blocks}
		}
		err := b.slackCall(ctx, "response_url", func(ctx context.Context) error {
			return slack.PostWebhookCustomHTTPContext(ctx, responseURL, b.httpClient, msg)
		})
		if err == nil {
			return
		}
		b.log.Warn("response_url post failed", "err", err)
	}
	options := []slack.MsgOption{slack.MsgOptionText(text, false)}
	if blocks != nil {
		options = append(options, slack.MsgOptionBlocks(blocks...))
	}
	if channel != "" && channel[0] != 'D' {
		err := b.slackCall(ctx, "chat.postEphemeral", func(ctx context.Context) error {
			_, err := b.api.PostEphemeralContext(ctx, channel, user, options...)
			return err
		})
		if err == nil {
			return
		}
		b.log.Warn("ephemeral post failed", "err", err)
	}
	_ = b.dm(ctx, user, options...) // logged; the last way to reach them
}

// replaceOriginal rewrites the message a button was on (ephemeral messages
// can only be changed this way).
func (b *Bot) replaceOriginal(ctx context.Context, responseURL, text string) bool {
	if !b.validResponseURL(responseURL) {
		return false
	}
	err := b.slackCall(ctx, "response_url", func(ctx context.Context) error {
		return slack.PostWebhookCustomHTTPContext(ctx, responseURL, b.httpClient, &slack.WebhookMessage{
			Text: text, ReplaceOriginal: true, Blocks: &slack.Blocks{BlockSet: []slack.Block{section(text)}},
		})
	})
	return err == nil
}

// validResponseURL: a response_url comes from the Slack payload; only post
// to Slack's own hooks host (or the configured Slack API host).
func (b *Bot) validResponseURL(raw string) bool {
	if raw == "" {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return false
	}
	if u.Scheme == "http" && u.Host != b.apiHost {
		return false
	}
	return b.hooksHosts[u.Host]
}

func msgText(text string) slack.MsgOption { return slack.MsgOptionText(text, false) }
func msgBlocks(blocks []slack.Block) slack.MsgOption {
	return slack.MsgOptionBlocks(blocks...)
}

// dm posts to the user's direct messages with the app.
func (b *Bot) dm(ctx context.Context, user string, options ...slack.MsgOption) error {
	err := b.slackCallTo(ctx, "chat.postMessage", user, func(ctx context.Context) error {
		_, _, err := b.api.PostMessageContext(ctx, user, options...)
		return err
	})
	if err != nil {
		b.log.Error("direct message failed", "user", user, "err", err)
	}
	return err
}

// Slack Web API errors are classified here, and only here: transient ones
// are retried a few times, everything else is returned at once.
const (
	slackAttempts     = 3
	slackBackoff      = 500 * time.Millisecond
	slackMaxRateLimit = 30 * time.Second
	// slackMaxInlineWait is the longest Retry-After waited out in a call.
	slackMaxInlineWait = 2 * time.Second
)

// deliveryError tells the workflow's outbox what a failed Slack call means
// for trying again: Slack's Retry-After when it gave one, and
// approvals.ErrUndeliverable when no retry can help (the channel, message or
// user is gone). nil stays nil.
func deliveryError(err error) error {
	if err == nil {
		return nil
	}
	var rate *slack.RateLimitedError
	if errors.As(err, &rate) {
		return &retryLater{err: err, after: rate.RetryAfter}
	}
	var resp slack.SlackErrorResponse
	if errors.As(err, &resp) {
		switch resp.Err {
		case "channel_not_found", "message_not_found", "cant_update_message", "edit_window_closed", "is_archived",
			"user_not_found", "user_disabled", "account_inactive", "not_in_channel", "cannot_dm_bot", "messages_tab_disabled":
			return fmt.Errorf("%w: %w", approvals.ErrUndeliverable, err)
		}
	}
	return err
}

// retryLater is a Slack error that says when to try again.
type retryLater struct {
	err   error
	after time.Duration
}

func (e *retryLater) Error() string             { return e.err.Error() }
func (e *retryLater) Unwrap() error             { return e.err }
func (e *retryLater) RetryAfter() time.Duration { return e.after }

// slackCall runs one Web API call, retrying transient failures.
func (b *Bot) slackCall(ctx context.Context, method string, call func(context.Context) error) error {
	return b.slackCallTo(ctx, method, "", call)
}

// slackCallTo is slackCall for a call to channel (a user id for a DM),
// for the methods Slack limits per channel. Each attempt first takes its
// turn under Slack's rate limits (pace.go); a turn that would come too late
// fails the call with a *pacedError, without calling Slack.
func (b *Bot) slackCallTo(ctx context.Context, method, channel string, call func(context.Context) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		if err = b.takeTurn(ctx, method, channel); err != nil {
			return err
		}
		err = call(ctx)
		wait, retry := transientSlackError(err)
		if !retry || attempt == slackAttempts || wait > slackMaxInlineWait {
			// A longer Retry-After is honoured by the outbox, which
			// tries notices again later, rather than by a goroutine
			// sleeping here.
			return err
		}
		if wait == 0 {
			wait = slackBackoff * time.Duration(attempt)
		}
		b.log.Warn("slack call failed; retrying", "method", method, "attempt", attempt, "wait", wait.String(), "err", err)
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// transientSlackError says whether err is worth retrying, and after how long
// if Slack said.
func transientSlackError(err error) (time.Duration, bool) {
	if err == nil {
		return 0, false
	}
	var rate *slack.RateLimitedError
	if errors.As(err, &rate) {
		return min(rate.RetryAfter, slackMaxRateLimit), true
	}
	var status slack.StatusCodeError
	if errors.As(err, &status) {
		return 0, status.Code >= 500
	}
	var resp slack.SlackErrorResponse
	if errors.As(err, &resp) {
		switch resp.Err {
		case "internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited":
			return 0, true
		}
		return 0, false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return 0, false
	}
	var netErr net.Error
	return 0, errors.As(err, &netErr)
}
