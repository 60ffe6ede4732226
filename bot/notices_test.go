package bot

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/mock"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite/sqlitetest"
	"github.com/reprovision-bot/reprovision-bot/fakes"
)

func newNoticesBot(t *testing.T) (*Bot, *fakes.Slack) {
	t.Helper()
	slack := fakes.NewSlack(t)
	b, err := New(Config{BotToken: fakes.BotToken, AppToken: fakes.AppToken, SlackAPIURL: slack.APIURL(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return b, slack
}

// The outbox learns from Tell's error whether and when to try again.
func TestTellErrorsSayWhenToTryAgain(t *testing.T) {
	t.Parallel()
	b, slack := newNoticesBot(t)
	r := &approvals.Request{ID: "R-ABCDEF", Target: "CPC-1", RequesterID: "U0ALICE", State: approvals.StateDenied}
	n := approvals.Notice{Kind: approvals.NoticeStatus, Request: r}

	slack.RateLimit("chat.postMessage", time.Minute, 7)
	err := b.Tell(context.Background(), "U0ALICE", n)
	var later approvals.RetryAfter
	if !errors.As(err, &later) || later.RetryAfter() != 7*time.Second {
		t.Errorf("rate limited: %v, want an error with RetryAfter 7s", err)
	}
	if calls := slack.Calls("chat.postMessage"); len(calls) != 1 {
		t.Errorf("%d calls during a 7 s Retry-After, want 1 (the outbox waits, not the call)", len(calls))
	}
	slack.RateLimit("chat.postMessage", 0, 0)

	slack.FailNext("chat.postMessage", "channel_not_found")
	if err := b.Tell(context.Background(), "U0ALICE", n); !errors.Is(err, approvals.ErrUndeliverable) {
		t.Errorf("channel_not_found: %v, want ErrUndeliverable", err)
	}
	slack.FailNext("chat.postMessage", "internal_error")
	slack.FailNext("chat.postMessage", "internal_error")
	slack.FailNext("chat.postMessage", "internal_error")
	err = b.Tell(context.Background(), "U0ALICE", n)
	if err == nil || errors.Is(err, approvals.ErrUndeliverable) || errors.As(err, &later) {
		t.Errorf("internal_error thrice: %v, want a plain error (try again with backoff)", err)
	}
	if err := b.Tell(context.Background(), "U0ALICE", n); err != nil {
		t.Errorf("healthy Slack: %v", err)
	}
	if got := slack.Messages(fakes.DMChannel("U0ALICE")); len(got) != 1 {
		t.Errorf("%d DMs delivered, want 1", len(got))
	}
}

// A prompt copy deleted in Slack does not hold the others' redraw back;
// any other failure makes the whole redraw be tried again.
func TestUpdatePromptsErrors(t *testing.T) {
	t.Parallel()
	b, slack := newNoticesBot(t)
	store, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	b.wf, err = approvals.New(approvals.Config{Policy: approvals.Policy{Approvers: []string{"U0A1"}}, Store: store,
		SignIns: &mock.SignIns{}, Notices: b, AllowedStatuses: []string{"provisioned"}})
	if err != nil {
		t.Fatal(err)
	}
	r := &approvals.Request{ID: "R-ABCDEF", Target: "CPC-1", RequesterID: "U0ALICE", State: approvals.StateDenied,
		Approvers: []string{"U0A1"}, Prompts: []approvals.MessageRef{{ChannelID: "DU0A1", TS: "1.000001", UserID: "U0A1"}}}
	slack.FailNext("chat.update", "message_not_found")
	if err := b.UpdatePrompts(context.Background(), r); err != nil {
		t.Errorf("a deleted copy: %v, want nil (nothing to retry)", err)
	}
	slack.Outage(time.Minute)
	if err := b.UpdatePrompts(context.Background(), r); err == nil {
		t.Error("during an outage: nil, want an error to try again")
	}
}
