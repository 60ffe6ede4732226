// Package bot is the Slack side of reprovision-bot: the Socket Mode loop,
// decoding the `/reprovision` command, button clicks and forms into calls of
// the workflow (package approvals), the Block Kit and mrkdwn people see, and
// the workflow's Notices port. It knows nothing of Microsoft Graph.
package bot

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// Config is what the Slack side needs; cmd/reprovision-bot builds it from
// the environment.
type Config struct {
	BotToken, AppToken string
	// SlackAPIURL is the Web API base with a trailing slash.
	SlackAPIURL string
	// Approvers are the Slack user IDs who decide (for the Home tab).
	Approvers []string
	Logger    *slog.Logger
}

// Bot serves one Slack app. It implements approvals.Notices; Run drives a
// workflow with what people do in Slack.
type Bot struct {
	cfg        Config
	api        *slack.Client
	httpClient *http.Client
	log        *slog.Logger
	// hooksHosts are the hosts a response_url may point at; apiHost (the
	// configured Slack API's) is the only one allowed over plain http.
	hooksHosts map[string]bool
	apiHost    string

	wf *approvals.Workflow
	// handlerCtx ends when Run's stop budget is spent; click and command
	// handlers run under it.
	handlerCtx    context.Context
	cancelHandler context.CancelFunc
	handlers      sync.WaitGroup

	seen envelopeLog
	// homeViewers are users who opened the App Home since start; their Home
	// tab is kept current.
	homeViewers idSet
}

var _ approvals.Notices = (*Bot)(nil)

// New builds a Bot; nothing is contacted until Run.
func New(cfg Config) (*Bot, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	apiURL, err := url.Parse(cfg.SlackAPIURL)
	if err != nil || apiURL.Host == "" {
		return nil, fmt.Errorf("bot: Slack API URL %q is not a URL", cfg.SlackAPIURL)
	}
	httpClient := &http.Client{Timeout: slackHTTPTimeout}
	b := &Bot{
		cfg:        cfg,
		httpClient: httpClient,
		log:        cfg.Logger,
		// response_url posts go to hooks.slack.com; a Slack-compatible
		// endpoint given as SLACK_API_URL (tests, proxies) may serve them too.
		hooksHosts: map[string]bool{"hooks.slack.com": true, apiURL.Host: true},
		apiHost:    apiURL.Host,
		api: slack.New(cfg.BotToken,
			slack.OptionAppLevelToken(cfg.AppToken),
			slack.OptionAPIURL(cfg.SlackAPIURL),
			slack.OptionHTTPClient(httpClient)),
	}
	b.handlerCtx, b.cancelHandler = context.WithCancel(context.Background())
	return b, nil
}

// slackHTTPTimeout bounds one Slack Web API call.
const slackHTTPTimeout = 15 * time.Second

// Run connects to Slack and serves wf until ctx is done or Slack refuses
// the tokens. On ctx done it stops taking events, stops the workflow (which
// lets in-flight work finish or records it) and returns nil.
func (b *Bot) Run(ctx context.Context, wf *approvals.Workflow) error {
	if _, err := b.api.AuthTestContext(ctx); err != nil {
		return fmt.Errorf("slack: checking SLACK_BOT_TOKEN: %w", err)
	}
	b.wf = wf
	wf.Start(ctx)

	sm := socketmode.New(b.api)
	socketCtx, stopSocket := context.WithCancel(context.Background())
	defer stopSocket()
	socketDone := make(chan error, 1)
	go func() { socketDone <- sm.RunContext(socketCtx) }()

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-socketDone:
			// RunContext only returns on fatal auth errors (it redials
			// everything else by itself).
			runErr = fmt.Errorf("slack socket mode: %w", err)
			break loop
		case evt := <-sm.Events:
			b.dispatch(sm, evt)
		}
	}
	stopSocket()
	b.stop(wf)
	return runErr
}

// handlerGrace is how long handlers under way at a stop may finish their
// store and Slack work (the workflow's stop budget counts from the same
// moment).
const handlerGrace = 5 * time.Second

// stop ends sign-ins at once, lets handlers under way finish (within
// handlerGrace), then stops the workflow.
func (b *Bot) stop(wf *approvals.Workflow) {
	wf.Stopping()
	done := make(chan struct{})
	go func() { b.handlers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(handlerGrace):
		b.log.Warn("handlers still running at the stop; interrupting them")
		b.cancelHandler()
		<-done
	}
	wf.Stop()
	b.cancelHandler()
}

// spawn runs a handler in the background, tracked for the stop.
func (b *Bot) spawn(work func(ctx context.Context)) {
	b.handlers.Add(1)
	go func() {
		defer b.handlers.Done()
		ctx, cancel := context.WithTimeout(b.handlerCtx, interactionTimeout)
		defer cancel()
		work(ctx)
	}()
}

// dispatch acks every envelope first (Slack redelivers unacked ones after a
// few seconds), then handles it. Slow work goes to a worker.
func (b *Bot) dispatch(sm *socketmode.Client, evt socketmode.Event) {
	switch evt.Type {
	case socketmode.EventTypeConnecting:
		b.log.Info("connecting to Slack")
		return
	case socketmode.EventTypeConnected:
		b.log.Info("connected to Slack")
		return
	case socketmode.EventTypeConnectionError, socketmode.EventTypeIncomingError, socketmode.EventTypeErrorBadMessage, socketmode.EventTypeErrorWriteFailed:
		b.log.Warn("socket mode trouble", "event", string(evt.Type), "detail", fmt.Sprint(evt.Data))
		return
	case socketmode.EventTypeInvalidAuth:
		b.log.Error("Slack refused SLACK_APP_TOKEN")
		return
	}
	if evt.Request == nil || evt.Request.EnvelopeID == "" {
		return
	}
	envelope := evt.Request.EnvelopeID
	// Slack redelivers an envelope it thinks was not acked, possibly on
	// another connection: ack again, handle once.
	if !b.seen.firstTime(envelope) {
		b.ack(sm, evt.Request, nil)
		b.log.Info("duplicate envelope ignored", "envelope", envelope, "retry_attempt", evt.Request.RetryAttempt)
		return
	}
	switch evt.Type {
	case socketmode.EventTypeSlashCommand:
		cmd, ok := evt.Data.(slack.SlashCommand)
		if !ok {
			b.ack(sm, evt.Request, nil)
			return
		}
		b.handleSlashCommand(sm, evt.Request, cmd)
	case socketmode.EventTypeInteractive:
		callback, ok := evt.Data.(slack.InteractionCallback)
		if !ok {
			b.ack(sm, evt.Request, nil)
			return
		}
		if callback.Type == slack.InteractionTypeViewSubmission {
			b.handleViewSubmission(sm, evt.Request, callback)
			return
		}
		b.ack(sm, evt.Request, nil)
		b.spawn(func(ctx context.Context) { b.handleBlockAction(ctx, callback) })
	case socketmode.EventTypeEventsAPI:
		b.ack(sm, evt.Request, nil)
		if user, ok := appHomeOpened(evt.Data); ok {
			b.spawn(func(ctx context.Context) { b.homeOpened(ctx, user) })
		}
	default:
		b.ack(sm, evt.Request, nil)
	}
}

func (b *Bot) ack(sm *socketmode.Client, req *socketmode.Request, payload any) {
	var err error
	if payload == nil {
		err = sm.Ack(*req)
	} else {
		err = sm.Ack(*req, payload)
	}
	if err != nil {
		b.log.Warn("ack failed", "envelope", req.EnvelopeID, "err", err)
	}
}

// envelopeLog remembers recently handled envelope IDs.
type envelopeLog struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// envelopeMemory: Slack gives up redelivering well within this.
const envelopeMemory = time.Hour

func (l *envelopeLog) firstTime(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.seen == nil {
		l.seen = map[string]time.Time{}
	}
	if _, dup := l.seen[id]; dup {
		return false
	}
	if len(l.seen) > 1000 {
		for k, t := range l.seen {
			if now.Sub(t) > envelopeMemory {
				delete(l.seen, k)
			}
		}
	}
	l.seen[id] = now
	return true
}

// idSet is a small concurrent set of Slack user IDs.
type idSet struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (s *idSet) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = map[string]bool{}
	}
	s.ids[id] = true
}

func (s *idSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[id]
}
