// Package bot is the Slack side of reprovision-bot: the Socket Mode loop, the
// `/reprovision` command, the approval prompt and the button clicks. It moves
// requests through the approvals state machine and hands approved ones to the
// Microsoft side (package graph).
package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/graph"
)

// Config is what the bot needs; cmd/reprovision-bot builds it from the
// environment.
type Config struct {
	BotToken, AppToken string
	// SlackAPIURL is the Web API base with a trailing slash.
	SlackAPIURL string
	// Policy says who may ask, who may decide, and how long requests live.
	Policy approvals.Policy
	// ApproverUPNs maps approver Slack IDs to the Entra username each must
	// sign in as; an approver missing here is checked against their Slack
	// profile email.
	ApproverUPNs map[string]string
	Store        approvals.Store
	SignIn       *graph.Authenticator
	Graph        graph.ClientOptions
	// SignInTTL is how long an approver's sign-in is reused (0: never).
	SignInTTL time.Duration
	// AllowedStatuses are the Cloud PC statuses in which a reprovision may
	// be sent.
	AllowedStatuses []string
	// TrackEvery is the first wait before looking at a reprovisioning Cloud
	// PC (then it backs off); TrackFor is how long to follow it.
	TrackEvery, TrackFor time.Duration
	Logger               *slog.Logger
	// ShutdownGrace is how long in-flight Graph calls may run on after a
	// stop signal; the process must exit within 10 s.
	ShutdownGrace time.Duration
}

// defaultShutdownGrace leaves room in the 10 s stop budget for recording the
// outcome of a call cut short (finishTimeout) and closing the store.
const defaultShutdownGrace = 6 * time.Second

// stopBudget is the most a stop may take before Run returns (the process
// must exit within 10 s of SIGTERM; the store is closed after this).
const stopBudget = 9 * time.Second

// cleanupTimeout bounds the Slack and store writes that record an interrupted
// sign-in or call while shutting down.
const cleanupTimeout = 2 * time.Second

// Bot serves one Slack app.
type Bot struct {
	cfg        Config
	api        *slack.Client
	httpClient *http.Client
	log        *slog.Logger
	// hooksHosts are the hosts a response_url may point at; apiHost (the
	// configured Slack API's) is the only one allowed over plain http.
	hooksHosts map[string]bool
	apiHost    string

	// signInCtx is canceled as soon as a stop is requested: nobody will
	// finish a device-code sign-in for a process that is going away.
	signInCtx    context.Context
	cancelSignIn context.CancelFunc
	// execCtx is canceled only when the shutdown grace runs out, so a
	// reprovision call in flight gets its answer if it can.
	execCtx    context.Context
	cancelExec context.CancelFunc
	workers    sync.WaitGroup

	seen     envelopeLog
	sessions sessions
	// inFlight: requests a worker is acting on in this process, so that a
	// double click starts one worker, not two.
	inFlight idSet
	// homeViewers are users who opened the App Home since start; their Home
	// tab is kept current.
	homeViewers idSet
	// wake nudges the scheduler (expiry, tracking) when a deadline moved.
	wake chan struct{}
}

// New builds a Bot; nothing is contacted until Run.
func New(cfg Config) (*Bot, error) {
	if cfg.Store == nil || cfg.SignIn == nil {
		return nil, errors.New("bot: store and sign-in are required")
	}
	if err := cfg.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("bot: %w", err)
	}
	if cfg.TrackEvery <= 0 {
		cfg.TrackEvery = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ShutdownGrace <= 0 || cfg.ShutdownGrace >= stopBudget {
		cfg.ShutdownGrace = defaultShutdownGrace
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
	b.wake = make(chan struct{}, 1)
	b.sessions.ttl = cfg.SignInTTL
	b.signInCtx, b.cancelSignIn = context.WithCancel(context.Background())
	b.execCtx, b.cancelExec = context.WithCancel(context.Background())
	return b, nil
}

// slackHTTPTimeout bounds one Slack Web API call.
const slackHTTPTimeout = 15 * time.Second

// Run connects to Slack and serves until ctx is done or Slack refuses the
// tokens. On ctx done it stops taking events, lets in-flight work finish or
// records it, and returns nil.
func (b *Bot) Run(ctx context.Context) error {
	if _, err := b.api.AuthTestContext(ctx); err != nil {
		return fmt.Errorf("slack: checking SLACK_BOT_TOKEN: %w", err)
	}
	b.resumeAfterRestart(ctx)
	b.spawn(b.schedule)

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
	b.shutdown()
	return runErr
}

// shutdown stops sign-ins at once, gives Graph calls the grace period, and
// waits for every worker.
func (b *Bot) shutdown() {
	start := time.Now()
	b.cancelSignIn()
	done := make(chan struct{})
	go func() { b.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(b.cfg.ShutdownGrace):
		b.log.Warn("shutdown grace over; interrupting Graph calls still in flight")
		b.cancelExec()
		select {
		case <-done:
		case <-time.After(stopBudget - b.cfg.ShutdownGrace):
			// Whatever is still running is recorded as it stands: a call
			// cut off in executing is settled as outcome unknown at start.
			b.log.Error("workers still running at the stop deadline; exiting anyway")
		}
	}
	b.cancelExec()
	b.log.Info("stopped", "took", time.Since(start).Round(time.Millisecond).String())
}

// spawn runs work in the background, tracked for shutdown.
func (b *Bot) spawn(work func()) {
	b.workers.Add(1)
	go func() {
		defer b.workers.Done()
		work()
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
		b.spawn(func() { b.handleBlockAction(callback) })
	case socketmode.EventTypeEventsAPI:
		b.ack(sm, evt.Request, nil)
		if user, ok := appHomeOpened(evt.Data); ok {
			b.spawn(func() { b.homeOpened(user) })
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

// idSet is a small concurrent set of IDs (Slack users, request references).
type idSet struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (s *idSet) add(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = map[string]bool{}
	}
	s.ids[user] = true
}

// claim adds id unless present; false if it was (someone holds it).
func (s *idSet) claim(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids[id] {
		return false
	}
	if s.ids == nil {
		s.ids = map[string]bool{}
	}
	s.ids[id] = true
	return true
}

func (s *idSet) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ids, id)
}

func (s *idSet) has(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[user]
}

// nudge wakes the scheduler without blocking.
func (b *Bot) nudge() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}
