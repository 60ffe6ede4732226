package approvals

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Workflow is the reprovision flow: decide → sign in → look up → confirm →
// execute → track → expire → restart. It owns every rule of the flow and
// reaches the world only through its ports (Config.SignIns, Config.Notices,
// and the Session.CloudPCs of a sign-in) and the Store. Its methods are
// called by a chat adapter for what people do; it tells people what
// happened through Notices. It is safe for concurrent use.
//
// The files of this package follow the flow: decide.go (asking, approving,
// denying, canceling), signin.go (sign-in and look-up), confirm.go (the
// final word), headsup.go (telling the Cloud PC's user, and the wait
// before the call), execute.go (the one Graph call), track.go (following
// it), schedule.go (expiry and the timer loop) and restart.go.
type Workflow struct {
	cfg     Config
	store   Store
	notices Notices
	log     *slog.Logger

	// signInCtx is canceled as soon as a stop is requested: nobody will
	// finish a device-code sign-in for a process that is going away.
	signInCtx    context.Context
	cancelSignIn context.CancelFunc
	// execCtx is canceled only when the shutdown grace runs out, so a
	// reprovision call in flight gets its answer if it can.
	execCtx    context.Context
	cancelExec context.CancelFunc
	workers    sync.WaitGroup
	// stopping is when the stop began (set once, by Stopping).
	stopOnce sync.Once
	stopping time.Time
	// waiting: Stop is waiting for the workers; spawn runs work in line.
	spawnMu sync.Mutex
	waiting bool

	sessions sessions
	// signingIn cancels the sign-in a request is waiting for, when the
	// requester withdraws it.
	signingIn cancels
	// inFlight: requests a worker is acting on in this process, so that a
	// double click starts one worker, not two.
	inFlight idSet
	// wake nudges the scheduler (expiry, tracking) when a deadline moved.
	wake chan struct{}
	// delivering: outbox entries being delivered now (deliver.go).
	delivering deliveries
	outboxWake chan struct{}
	// started: Start has settled what a previous process left; deliveries
	// are made at once from then on (before, the loop makes them).
	started atomic.Bool
	// unreachable: requests whose prompt no approver can ever get (their
	// post was dropped), for Open to tell the requester.
	unreachable idSet
}

// Config is what the workflow needs; cmd/reprovision-bot builds it from the
// environment.
type Config struct {
	// Policy says who may ask, who may decide, and how long requests live.
	Policy Policy
	// ApproverUPNs maps approver IDs to the Entra username each must sign
	// in as; an approver missing here is checked against their chat
	// profile email (Notices.ProfileEmail).
	ApproverUPNs map[string]string
	Store        Store
	SignIns      SignIns
	Notices      Notices
	// SignInTTL is how long an approver's sign-in is reused (0: never),
	// counted from the sign-in.
	SignInTTL time.Duration
	// SignInStartTimeout bounds the wait for Entra to issue a device code
	// (default 30 s); SignInTimeout bounds a whole sign-in, the approver's
	// part included (default 20 min: device codes live 15). Either way the
	// request goes back to waiting for a decision.
	SignInStartTimeout, SignInTimeout time.Duration
	// AllowedStatuses are the Cloud PC statuses in which a reprovision may
	// be sent.
	AllowedStatuses []string
	// TrackEvery is the first wait before looking at a reprovisioning Cloud
	// PC (then it backs off); TrackFor is how long to follow it (0: not).
	TrackEvery, TrackFor time.Duration
	// NotifyUser: the Cloud PC's user gets a heads-up when the approver
	// confirms, and word when their Cloud PC is ready.
	NotifyUser bool
	// UserNotice is the wait between the heads-up and the call (0: none; at
	// most MaxUserNotice), during which the approver may send it now or
	// cancel, and the user may ask for more time (postponed once by as
	// much).
	UserNotice time.Duration
	// BatchMax is the most Cloud PCs one batch may have (default
	// DefaultBatchMax); a batch of more than BatchTwoPerson (default
	// DefaultBatchTwoPerson) needs at least two approvals; BatchParallel
	// calls of a batch are in flight at most (default
	// DefaultBatchParallel). The Graph port paces them to the bot's
	// request rate.
	BatchMax, BatchTwoPerson, BatchParallel int
	// ShutdownGrace is how long a Graph call in flight may run on after
	// Stop; the process must exit within 10 s.
	ShutdownGrace time.Duration
	Logger        *slog.Logger
	// Observer is told what happens, for metrics (nil: nobody).
	Observer Observer
}

const (
	// defaultShutdownGrace leaves room in the 10 s stop budget for
	// recording the outcome of a call cut short and closing the store.
	defaultShutdownGrace = 6 * time.Second
	// stopBudget is the most Stop may take.
	stopBudget = 9 * time.Second
	// finishTimeout bounds recording and announcing an outcome, also when
	// the work that led to it was canceled.
	finishTimeout = 3 * time.Second
	// cleanupTimeout bounds one audit write.
	cleanupTimeout = 2 * time.Second
	// graphTimeout bounds the look-ups and the call of one step.
	graphTimeout = 2 * time.Minute
	// workTimeout bounds background store and notice work of one request.
	workTimeout = 30 * time.Second
)

// New checks cfg and returns a workflow; nothing runs until Start.
func New(cfg Config) (*Workflow, error) {
	if cfg.Store == nil || cfg.SignIns == nil || cfg.Notices == nil {
		return nil, errors.New("approvals: store, sign-ins and notices are required")
	}
	if err := cfg.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("approvals: %w", err)
	}
	if cfg.UserNotice < 0 || cfg.UserNotice > MaxUserNotice {
		return nil, fmt.Errorf("approvals: the user notice %v is not between 0 and %v", cfg.UserNotice, MaxUserNotice)
	}
	if len(cfg.AllowedStatuses) == 0 {
		return nil, errors.New("approvals: at least one allowed Cloud PC status is required")
	}
	if cfg.TrackEvery <= 0 {
		cfg.TrackEvery = time.Minute
	}
	if cfg.BatchMax == 0 {
		cfg.BatchMax = DefaultBatchMax
	}
	if cfg.BatchTwoPerson == 0 {
		cfg.BatchTwoPerson = DefaultBatchTwoPerson
	}
	if cfg.BatchParallel == 0 {
		cfg.BatchParallel = DefaultBatchParallel
	}
	if cfg.BatchMax < 2 || cfg.BatchMax > MaxBatchTargets || cfg.BatchTwoPerson < 1 || cfg.BatchParallel < 1 {
		return nil, fmt.Errorf("approvals: batch limits (max %d, two-person above %d, parallel %d) must be a max of 2 to %d, and at least 1", cfg.BatchMax, cfg.BatchTwoPerson, cfg.BatchParallel, MaxBatchTargets)
	}
	if cfg.SignInStartTimeout <= 0 {
		cfg.SignInStartTimeout = 30 * time.Second
	}
	if cfg.SignInTimeout <= 0 {
		cfg.SignInTimeout = 20 * time.Minute
	}
	if cfg.ShutdownGrace <= 0 || cfg.ShutdownGrace >= stopBudget {
		cfg.ShutdownGrace = defaultShutdownGrace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Observer == nil {
		cfg.Observer = noObserver{}
	}
	w := &Workflow{cfg: cfg, store: cfg.Store, notices: cfg.Notices, log: cfg.Logger, wake: make(chan struct{}, 1), outboxWake: make(chan struct{}, 1)}
	w.sessions.ttl = cfg.SignInTTL
	w.signInCtx, w.cancelSignIn = context.WithCancel(context.Background())
	w.execCtx, w.cancelExec = context.WithCancel(context.Background())
	return w, nil
}

// Policy is the policy the workflow applies.
func (w *Workflow) Policy() Policy { return w.cfg.Policy }

// Start settles what a previous process left half done, queues a redraw of
// the prompts that may show an old state, then runs the timed work (expiry,
// tracking) and the delivery of the outbox in the background until Stop.
func (w *Workflow) Start(ctx context.Context) {
	w.recover(ctx)
	w.redrawAtStart(ctx)
	w.started.Store(true)
	w.spawn(w.deliverLoop)
	w.spawn(w.schedule)
}

// Stopping begins a stop: sign-ins end at once (nobody will finish one for
// a process that is going away) and the stop budget starts. The adapter
// calls it as soon as it stops taking events, lets its own handlers finish,
// then calls Stop.
func (w *Workflow) Stopping() {
	w.stopOnce.Do(func() {
		w.stopping = time.Now()
		w.cancelSignIn()
	})
}

// Stop gives Graph calls in flight what is left of the grace period since
// Stopping, and waits for every worker, within the stop budget.
func (w *Workflow) Stop() {
	w.Stopping()
	start := w.stopping
	w.spawnMu.Lock()
	w.waiting = true
	w.spawnMu.Unlock()
	done := make(chan struct{})
	go func() { w.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(start.Add(w.cfg.ShutdownGrace))):
		w.log.Warn("shutdown grace over; interrupting Graph calls still in flight")
		w.cancelExec()
		select {
		case <-done:
		case <-time.After(time.Until(start.Add(stopBudget))):
			// A call cut off in executing is settled as outcome
			// unknown at the next start.
			w.log.Error("workers still running at the stop deadline; exiting anyway")
		}
	}
	w.cancelExec()
	w.log.Info("stopped", "took", time.Since(start).Round(time.Millisecond).String())
}

// spawn runs work in the background, tracked for Stop. Once Stop waits for
// the workers, work runs in line instead (a handler that outlived the
// stop's grace must not add to a WaitGroup being waited on).
func (w *Workflow) spawn(work func()) {
	w.spawnMu.Lock()
	if w.waiting {
		w.spawnMu.Unlock()
		work()
		return
	}
	w.workers.Add(1)
	w.spawnMu.Unlock()
	go func() {
		defer w.workers.Done()
		work()
	}()
}

// nudge wakes the scheduler without blocking.
func (w *Workflow) nudge() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// detached is ctx without its cancellation, bounded by finishTimeout: what
// was decided must be recorded and told even when the work was cut short.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
}

// audit appends to the trail; a failure is logged, never fatal to the flow
// (the flow's own state is in the store already).
func (w *Workflow) audit(ctx context.Context, ref string, kind EventKind, actor string, details map[string]string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	err := w.store.Record(ctx, Event{Time: time.Now().UTC(), RequestID: ref, Kind: kind, Actor: actor, Details: details})
	if err != nil {
		w.log.Error("audit record not written", "ref", ref, "kind", string(kind), "err", err)
	}
}

// auditGraphCalls records every HTTP attempt of Graph calls. These records
// are never dropped: a write the store refuses is tried again in the
// background (durably) until the stop, without holding up the flow. The record of the reprovision call is what a restart settles a
// request by when its outcome could not be stored.
func (w *Workflow) auditGraphCalls(ref, actor string, calls ...GraphCall) {
	for _, call := range calls {
		for i, a := range call.Attempts {
			details := map[string]string{
				"method": call.Method, "path": call.Path, "attempt": strconv.Itoa(i + 1),
				"status": strconv.Itoa(a.Status), "client_request_id": a.ClientRequestID, "request_id": a.RequestID,
			}
			if a.Err != "" {
				details["error"] = a.Err
			}
			w.log.Debug("graph call", "ref", ref, "method", call.Method, "path", call.Path, "attempt", i+1, "status", a.Status,
				"request_id", a.RequestID, "error", a.Err)
			e := Event{Time: time.Now().UTC(), RequestID: ref, Kind: EventGraphCall, Actor: actor, Details: details}
			ctx, cancel := context.WithTimeout(context.WithoutCancel(w.execCtx), cleanupTimeout)
			err := w.store.Record(ctx, e)
			cancel()
			if err == nil {
				continue // in the trail before the flow goes on, as a reader expects
			}
			w.spawn(func() {
				if err := w.durably("graph call record", func(ctx context.Context) error { return w.store.Record(ctx, e) }); err != nil {
					w.log.Error("graph call record not written", "ref", ref, "details", fmt.Sprint(e.Details), "err", err)
				}
			})
		}
	}
}

// storeTryTimeout bounds one try of a durable write: longer than SQLite's
// own wait for a lock (5 s), so that wait is used in full.
const storeTryTimeout = 6 * time.Second

// durably runs write until it succeeds, the store refuses the move for good
// (*TransitionError, ErrNotFound), or the stop's grace is over, waiting a
// little longer after each failure (a busy or full disk comes back). What
// Graph answered is written this way: it must not be lost to a store that
// is busy for a while.
func (w *Workflow) durably(what string, write func(ctx context.Context) error) error {
	wait := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(w.execCtx), storeTryTimeout)
		err := write(ctx)
		cancel()
		var te *TransitionError
		if err == nil || errors.As(err, &te) || errors.Is(err, ErrNotFound) || w.execCtx.Err() != nil {
			return err
		}
		w.log.Warn("store write failed; trying again", "what", what, "in", wait.String(), "err", err)
		select {
		case <-w.execCtx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// step is one state change with everything that goes with it.
type step struct {
	// from are the states the move may start from (nil: any the state
	// machine allows). A worker claims its step this way, and a worker that
	// lost a race never undoes the winner's move.
	from   []State
	to     State
	update func(*Request)
	// event, actor and details go into the audit trail (with the
	// outcome's facts).
	event   EventKind
	actor   string
	details map[string]string
	// tellRequester and tellApprover: who gets the news besides the
	// prompts (the approver is whoever decided).
	tellRequester, tellApprover bool
	// also returns more outbox entries for the moved request.
	also func(r *Request) []Outgoing
	// byLoop: the outbox loop delivers the news, not this goroutine (a
	// step on the way to the Graph call must not wait for chat).
	byLoop bool
}

// notify is what a step puts in the outbox with the move: the prompts'
// redraw, the news for those it tells, and its own entries.
func (s step) notify(r *Request) []Outgoing {
	out := []Outgoing{redraw(r)}
	var told []string
	if s.tellRequester {
		told = append(told, r.RequesterID)
	}
	if s.tellApprover {
		told = append(told, r.DecidedBy)
	}
	out = append(out, tellEach(Notice{Kind: NoticeStatus, Request: r}, told...)...)
	if s.also != nil {
		out = append(out, s.also(r)...)
	}
	return out
}

// settle is the one way a request changes state: move it in the store
// (with what people must be told, in the outbox), then announce it.
func (w *Workflow) settle(ctx context.Context, id string, s step) (*Request, error) {
	r, err := w.move(ctx, id, s)
	if err != nil {
		return nil, err
	}
	w.announce(ctx, r, s)
	return r, nil
}

// move is the store half of settle: the compare-and-swap, and the outbox
// entries that announce it, in one transaction. A Cloud PC's user who had a
// heads-up hears when it will not happen after all (userNews); a request
// waiting for a decision again tells its user afresh when next confirmed.
func (w *Workflow) move(ctx context.Context, id string, s step) (*Request, error) {
	var before *Request
	update := func(r *Request) {
		b := *r
		before = &b
		if s.update != nil {
			s.update(r)
		}
		if s.to == StatePending {
			r.HeadsUp = HeadsUp{}
		}
	}
	notify := func(r *Request) []Outgoing {
		out := s.notify(r)
		return append(out, userNews(before, r, out)...)
	}
	return w.store.Apply(ctx, id, Change{From: s.from, To: s.to, Update: update, Notify: notify})
}

// announce is the rest of settle, once r has moved: release a sign-in it no
// longer needs, audit, and deliver what the move put in the outbox.
func (w *Workflow) announce(ctx context.Context, r *Request, s step) {
	if !needsSignIn(r) {
		w.sessions.release(r.ID)
	}
	w.log.Info("request moved", "ref", r.ID, "state", string(r.State), "actor", s.actor)
	if r.State.Final() {
		w.cfg.Observer.RequestSettled(r.State)
	}
	if s.event != "" {
		w.audit(ctx, r.ID, s.event, s.actor, r.Outcome.auditDetails(s.details))
	}
	if s.byLoop {
		w.wakeOutbox()
		return
	}
	w.deliverDue(r.ID)
}

// needsSignIn: a request approved and not yet settled, or whose reprovision
// is being followed, runs with its approver's sign-in.
func needsSignIn(r *Request) bool {
	return r.State == StateApproved || r.State == StateConfirming || r.State == StateScheduled || r.State == StateExecuting || r.Tracking.Active()
}

// tell sends a notice through the outbox.
func (w *Workflow) tell(user string, n Notice) {
	w.send(n.Request.ID, notice(user, n))
}

// tellDirect sends a notice without the outbox, for when the store is what
// failed; a failure is logged.
func (w *Workflow) tellDirect(ctx context.Context, user string, n Notice) {
	if err := w.notices.Tell(ctx, user, n); err != nil {
		w.log.Warn("notice not delivered", "user", user, "kind", string(n.Kind), "err", err)
	}
}

// load returns the request a click acts on, or a refusal when there is none.
func (w *Workflow) load(ctx context.Context, ref string, action Action) (*Request, error) {
	if !ValidReference(ref) {
		return nil, &Refusal{Kind: RefusedNoSuchRequest, Action: action, Ref: ref}
	}
	r, err := w.store.Get(ctx, ref)
	if errors.Is(err, ErrNotFound) {
		return nil, &Refusal{Kind: RefusedNoSuchRequest, Action: action, Ref: ref}
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", ref, err)
	}
	return r, nil
}

// refuse audits a refused click and returns the refusal.
func (w *Workflow) refuse(ctx context.Context, user string, r *Refusal) error {
	if r.Request != nil && r.Ref == "" {
		r.Ref = r.Request.ID
	}
	w.log.Info("click refused", "ref", r.Ref, "user", user, "why", r.Error())
	w.audit(ctx, r.Ref, EventRefusedClick, user, map[string]string{"action": string(r.Action), "why": string(r.Kind)})
	return r
}

// late turns a lost compare-and-swap into a refusal showing where the
// request is now; other store errors pass through.
func late(err error, action Action) error {
	var te *TransitionError
	if errors.As(err, &te) {
		return &Refusal{Kind: RefusedHandled, Action: action, Ref: te.Current.ID, Request: te.Current}
	}
	return err
}

// AwaitingDecision lists the pending requests user may decide (not those
// they approved already), oldest first, at most limit.
func (w *Workflow) AwaitingDecision(ctx context.Context, user string, limit int) ([]*Request, error) {
	pending, err := w.store.ListByState(ctx, StatePending)
	if err != nil {
		return nil, err
	}
	pending = slices.DeleteFunc(pending, func(r *Request) bool {
		return !slices.Contains(w.cfg.Policy.ApproversOf(r), user) || r.HasApproved(user)
	})
	return pending[:min(len(pending), limit)], nil
}

// RequestsOf lists the newest requests of a requester, at most limit.
func (w *Workflow) RequestsOf(ctx context.Context, user string, limit int) ([]*Request, error) {
	return w.store.ListByRequester(ctx, user, limit)
}
