// Package bot is the Slack side of reprovision-bot: the Socket Mode loop,
// decoding the `/reprovision` command, button clicks and forms into calls of
// the workflow (package approvals), the Block Kit and mrkdwn people see, and
// the workflow's Notices port. It knows nothing of Microsoft Graph.
package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

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
	Logger      *slog.Logger
	// Observer is told about acks and reconnects, for metrics (nil: nobody).
	Observer Observer
	// PaceScale paces Slack calls that many times faster than Slack's
	// published limits (PaceLimits). 0 is 1, Slack's own pace (or the
	// benchmark's knob, benchknobs.go); only tests set it.
	PaceScale float64
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
	// tab is kept current (homes redraws them).
	homeViewers idSet
	homes       homeRefresh

	// pace books the turns of Web API calls (pace.go).
	pace *pacer
	// requests stores new requests and prompts their approvers; forms
	// opens reason forms: the work after an ack (queue.go).
	requests, forms *workQueue
	// pacedPrompts: requests whose prompt waits for its turn in the outbox
	// (Slack's pace), not for Slack to recover.
	pacedPrompts refTimes

	connected connection
	arrivals  arrivals
}

var _ approvals.Notices = (*Bot)(nil)

// New builds a Bot; nothing is contacted until Run.
func New(cfg Config) (*Bot, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
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
	scale := paceScale
	if cfg.PaceScale > 0 {
		scale = cfg.PaceScale
	}
	b.pace = newPacer(PaceLimits(), scale)
	b.requests = newWorkQueue("requests", requestWorkers, queueCapacity)
	b.forms = newWorkQueue("forms", formWorkers, queueCapacity)
	b.homes.init()
	return b, nil
}

// The work after an ack runs on a few workers (queue.go). Opening a request
// writes to the store (one writer at a time) and makes at most one Slack
// call at once (a free turn or none): two workers keep the store busy
// without leaving the Socket Mode loop short of CPU. Opening a form is one
// Slack call, which must come within the trigger_id's 3 s.
const (
	requestWorkers = 2
	formWorkers    = 4
	// queueCapacity bounds each queue: a command finding it full is
	// refused in its ack (nothing is recorded).
	queueCapacity = 4096
	// dropBudget bounds telling, at a stop, those whose acked command no
	// worker got to.
	dropBudget = time.Second
)

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
	b.requests.start(b.handlerCtx, interactionTimeout)
	b.forms.start(b.handlerCtx, interactionTimeout)
	b.handlers.Go(func() { b.homes.run(b.handlerCtx, b.publishHome) })

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

// handlerStopBudget bounds the wait for handlers, interrupted ones included;
// the workflow's own stop then ends within its budget of 9 s from the same
// moment.
const handlerStopBudget = 7 * time.Second

// stop ends sign-ins at once, lets handlers under way and the queued work
// finish (within handlerGrace), tells those whose command no worker got
// to, then stops the workflow.
func (b *Bot) stop(wf *approvals.Workflow) {
	wf.Stopping()
	b.requests.close()
	b.forms.close()
	b.homes.stop()
	done := make(chan struct{})
	go func() {
		b.requests.wait()
		b.forms.wait()
		b.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(handlerGrace):
		b.log.Warn("handlers still running at the stop; interrupting them")
		b.cancelHandler()
		select {
		case <-done:
		case <-time.After(handlerStopBudget - handlerGrace):
			// What they had not recorded is settled at the next start.
			b.log.Error("handlers still running at the stop deadline; exiting anyway")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), dropBudget)
	if n := b.requests.leftovers(ctx); n > 0 {
		b.log.Error("acked requests not recorded: the bot stopped first", "requests", n)
	}
	if n := b.forms.leftovers(ctx); n > 0 {
		b.log.Warn("reason forms not opened: the bot stopped first", "forms", n)
	}
	cancel()
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
	if b.connectionEvent(sm, evt) {
		return
	}
	if evt.Request == nil || evt.Request.EnvelopeID == "" {
		b.log.Debug("socket mode event without an envelope id ignored", "event", string(evt.Type))
		return
	}
	envelope := evt.Request.EnvelopeID
	arrived := time.Now()
	b.arrivals.arrived(envelope, arrived)
	b.log.Debug("envelope received", "envelope", envelope, "type", string(evt.Type), "retry_attempt", evt.Request.RetryAttempt)
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
			b.ackMalformed(sm, evt)
			return
		}
		b.handleSlashCommand(sm, evt.Request, cmd, arrived)
	case socketmode.EventTypeInteractive:
		callback, ok := evt.Data.(slack.InteractionCallback)
		if !ok {
			b.ackMalformed(sm, evt)
			return
		}
		if callback.Type == slack.InteractionTypeViewSubmission {
			b.handleViewSubmission(sm, evt.Request, callback)
			return
		}
		b.ack(sm, evt.Request, nil)
		b.spawn(func(ctx context.Context) { b.handleBlockAction(withTrigger(ctx, arrived), callback) })
	case socketmode.EventTypeEventsAPI:
		b.ack(sm, evt.Request, nil)
		if user, ok := appHomeOpened(evt.Data); ok {
			b.spawn(func(ctx context.Context) { b.homeOpened(ctx, user) })
		}
	default:
		b.ack(sm, evt.Request, nil)
	}
}

// connectionEvent handles what slack-go says about the connection itself
// (and frames it could not decode); false for envelopes to act on.
func (b *Bot) connectionEvent(sm *socketmode.Client, evt socketmode.Event) bool {
	switch evt.Type {
	case socketmode.EventTypeConnecting:
		b.connected.Store(false) // a new connection is being made: the old one is gone
		b.log.Info("connecting to Slack")
	case socketmode.EventTypeConnected:
		b.connected.Store(true)
		if c, ok := evt.Data.(*socketmode.ConnectedEvent); ok && c.ConnectionCount > 0 {
			b.cfg.Observer.Reconnected()
		}
		b.log.Info("connected to Slack")
	case socketmode.EventTypeConnectionError:
		b.connected.Store(false)
		b.log.Warn("socket mode trouble", "event", string(evt.Type), "detail", fmt.Sprint(evt.Data))
	case socketmode.EventTypeIncomingError, socketmode.EventTypeErrorWriteFailed:
		b.log.Warn("socket mode trouble", "event", string(evt.Type), "detail", fmt.Sprint(evt.Data))
	case socketmode.EventTypeErrorBadMessage:
		b.ackBadMessage(sm, evt)
	case socketmode.EventTypeInvalidAuth:
		b.log.Error("Slack refused SLACK_APP_TOKEN")
	case socketmode.EventTypeHello:
	default:
		return false
	}
	return true
}

// ackBadMessage answers an envelope slack-go could not decode (an unknown
// type, or a payload that is not what its type says). slack-go then sends
// an EventTypeErrorBadMessage with the raw frame and no Request; the frame
// still names its envelope, so it is acked (Slack would redeliver it
// otherwise, with the same result) and logged, without its payload. A frame
// that is not JSON at all never gets here (slack-go reports it as
// EventTypeIncomingError, without the frame): there is nothing to ack then.
func (b *Bot) ackBadMessage(sm *socketmode.Client, evt socketmode.Event) {
	var raw json.RawMessage
	cause := fmt.Sprint(evt.Data)
	if bad, ok := evt.Data.(*socketmode.ErrorBadMessage); ok && bad != nil {
		raw = bad.Message
		cause = fmt.Sprint(bad.Cause)
	}
	id, typ := envelopeOf(raw)
	if id == "" {
		b.log.Warn("undecodable socket mode message without an envelope id; nothing to ack",
			"type", typ, "cause", cause, "bytes", len(raw))
		return
	}
	b.ack(sm, &socketmode.Request{EnvelopeID: id}, nil)
	b.log.Warn("malformed envelope acked and dropped", "envelope", id, "type", typ, "cause", cause, "bytes", len(raw))
}

// ackMalformed acks and logs an envelope whose decoded data is not of the
// type its envelope type promises.
func (b *Bot) ackMalformed(sm *socketmode.Client, evt socketmode.Event) {
	b.ack(sm, evt.Request, nil)
	b.log.Warn("malformed envelope acked and dropped", "envelope", evt.Request.EnvelopeID, "type", string(evt.Type),
		"data", fmt.Sprintf("%T", evt.Data))
}

// maxEnvelopeID bounds an envelope id taken from a frame slack-go could
// not decode (Slack's are UUIDs).
const maxEnvelopeID = 128

// envelopeOf reads the envelope id and type of a raw Socket Mode frame,
// each only if it is a short printable string; "" otherwise.
func envelopeOf(raw json.RawMessage) (id, typ string) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return "", ""
	}
	str := func(name string) string {
		var s string
		if json.Unmarshal(fields[name], &s) != nil || len(s) > maxEnvelopeID || strings.ContainsFunc(s, func(r rune) bool {
			return r <= ' ' || r == utf8.RuneError || unicode.IsControl(r) || isInvisible(r)
		}) {
			return ""
		}
		return s
	}
	return str("envelope_id"), str("type")
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
	if d, ok := b.arrivals.acked(req.EnvelopeID); ok {
		b.cfg.Observer.Acked(d)
		b.log.Debug("envelope acked", "envelope", req.EnvelopeID, "after", d.String())
	}
}

// envelopeLog remembers the envelope IDs handled in the last
// envelopeMemory, the latest envelopeLogSize of them at most: a FIFO ring
// in arrival order, and a set of what it holds. O(1) per envelope, and
// bounded however many come.
type envelopeLog struct {
	mu      sync.Mutex
	seen    map[string]struct{}
	ring    []loggedEnvelope
	head, n int // the oldest entry, and how many there are
}

type loggedEnvelope struct {
	id string
	at time.Time
}

const (
	// envelopeMemory: Slack gives up redelivering well within this (its
	// retries come within minutes).
	envelopeMemory = time.Hour
	// envelopeLogSize bounds the log: more envelopes than this within
	// Slack's retry window would be a flood no bot answers in time anyway.
	envelopeLogSize = 16384
)

func (l *envelopeLog) firstTime(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.seen == nil {
		l.seen = map[string]struct{}{}
	}
	if _, dup := l.seen[id]; dup {
		return false
	}
	for l.n > 0 && now.Sub(l.ring[l.head].at) > envelopeMemory {
		l.pop()
	}
	if l.n == len(l.ring) {
		if len(l.ring) >= envelopeLogSize {
			l.pop()
		} else {
			// Grow, oldest first.
			grown := make([]loggedEnvelope, min(envelopeLogSize, max(64, 2*len(l.ring))))
			for i := range l.n {
				grown[i] = l.ring[(l.head+i)%len(l.ring)]
			}
			l.ring, l.head = grown, 0
		}
	}
	l.ring[(l.head+l.n)%len(l.ring)] = loggedEnvelope{id: id, at: now}
	l.n++
	l.seen[id] = struct{}{}
	return true
}

// pop forgets the oldest entry.
func (l *envelopeLog) pop() {
	delete(l.seen, l.ring[l.head].id)
	l.ring[l.head] = loggedEnvelope{}
	l.head = (l.head + 1) % len(l.ring)
	l.n--
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
