package approvals

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Delivering the outbox (outbox.go): an entry is tried as soon as the change
// it announces is stored (in the goroutine that made the change, so people
// hear at once), and the outbox loop tries whatever is still due, with
// backoff, for as long as the process runs; what is left at a stop is
// delivered after the next start.
const (
	// outboxPoll is how often the loop looks for entries due again.
	outboxPoll = time.Second
	// outboxBatch is the most entries the loop takes at once.
	outboxBatch = 20
	// deliveryTimeout bounds one delivery attempt by the loop;
	// inlineDeliveryTimeout one made at once, by the goroutine that made the
	// change (it has more to do; the loop tries again).
	deliveryTimeout       = 15 * time.Second
	inlineDeliveryTimeout = 3 * time.Second
	// deliveryRetryFirst and deliveryRetryMax bound the backoff between
	// failed attempts (Slack's Retry-After, when longer, wins).
	deliveryRetryFirst = 2 * time.Second
	deliveryRetryMax   = 5 * time.Minute
	// deliveryGiveUp: an entry still undelivered this long after it was
	// made is dropped (and audited): news a day late misleads more than
	// it helps, and the prompt is redrawn at every start anyway.
	deliveryGiveUp = 24 * time.Hour
	// redrawRecent: at start, prompts of requests changed this recently are
	// redrawn, in case a redraw was lost with an older version's process.
	redrawRecent = 24 * time.Hour
)

// deliveries serialises delivery per request in this process: the loop and
// an immediate delivery never send one entry twice at once, and the
// redraws of one request go out in order, each showing the state stored
// when it was sent, the last one the latest.
type deliveries struct {
	mu          sync.Mutex
	locks       map[string]*requestLock
	heldEntries map[int64]heldEntry
}

// held is an entry this process must not send now: delivered but not
// marked (until zero), or failed with the retry time not recorded.
type heldEntry struct {
	generation int64
	until      time.Time
}

// hold remembers o as held until then (zero: delivered, not marked).
func (d *deliveries) hold(o Outgoing, until time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.heldEntries == nil {
		d.heldEntries = map[int64]heldEntry{}
	}
	d.heldEntries[o.ID] = heldEntry{generation: o.Generation, until: until}
}

// held says whether o must not be sent now; a delivered one is marked again
// in the store on the way.
func (d *deliveries) held(o Outgoing, store Outbox) bool {
	d.mu.Lock()
	h, ok := d.heldEntries[o.ID]
	if ok && h.generation != o.Generation {
		delete(d.heldEntries, o.ID) // enqueued again since: a new notice
		ok = false
	}
	d.mu.Unlock()
	switch {
	case !ok:
		return false
	case h.until.IsZero():
		ctx, cancel := context.WithTimeout(context.Background(), storeTryTimeout)
		defer cancel()
		if store.Delivered(ctx, o) == nil {
			d.mu.Lock()
			delete(d.heldEntries, o.ID)
			d.mu.Unlock()
		}
		return true
	case time.Now().Before(h.until):
		return true
	}
	d.mu.Lock()
	delete(d.heldEntries, o.ID)
	d.mu.Unlock()
	return false
}

type requestLock struct {
	sync.Mutex
	users int
}

// lock takes request ref's lock, waiting for it when wait, else only if it
// is free. It returns the unlock function, or nil when not taken.
func (d *deliveries) lock(ref string, wait bool) func() {
	d.mu.Lock()
	if d.locks == nil {
		d.locks = map[string]*requestLock{}
	}
	l := d.locks[ref]
	if l == nil {
		l = &requestLock{}
		d.locks[ref] = l
	}
	l.users++
	d.mu.Unlock()
	release := func() {
		d.mu.Lock()
		if l.users--; l.users == 0 {
			delete(d.locks, ref)
		}
		d.mu.Unlock()
	}
	if wait {
		l.Lock()
	} else if !l.TryLock() {
		release()
		return nil
	}
	return func() { l.Unlock(); release() }
}

// post is the outbox entry that posts r's prompt to those who have none.
func post(r *Request) Outgoing { return Outgoing{RequestID: r.ID, Kind: OutgoingPost} }

// redraw is the outbox entry that redraws r's prompts.
func redraw(r *Request) Outgoing { return Outgoing{RequestID: r.ID, Kind: OutgoingPrompts} }

// notice is the outbox entry that tells user n (n.Request names the request,
// n.Member the batch member, if any).
func notice(user string, n Notice) Outgoing {
	o := Outgoing{RequestID: n.Request.ID, Kind: OutgoingNotice, User: user, Notice: n.Kind, Why: n.Why, Accepted: n.Accepted}
	if n.Member != nil {
		o.CloudPCID = n.Member.CloudPCID
	}
	return o
}

// memberOf is r's batch member with that Cloud PC id, as it is now (nil for
// none).
func memberOf(r *Request, cloudPCID string) *Member {
	if cloudPCID == "" || r.Batch == nil {
		return nil
	}
	if m := r.Batch.Member(cloudPCID); m != nil {
		c := *m
		return &c
	}
	return nil
}

// tellEach is the outbox entries that tell each of users n (once each, none
// for "").
func tellEach(n Notice, users ...string) []Outgoing {
	var out []Outgoing
	for i, u := range users {
		if u != "" && !slices.Contains(users[:i], u) {
			out = append(out, notice(u, n))
		}
	}
	return out
}

// progress is the outbox entry that posts p beside r's prompt.
func progress(r *Request, p Progress) Outgoing {
	o := Outgoing{RequestID: r.ID, Kind: OutgoingProgress, Progress: p}
	if p.Member != nil {
		o.CloudPCID = p.Member.CloudPCID
		o.Progress.Member = nil // read afresh at delivery
	}
	return o
}

// apply is Store.Apply, then an immediate delivery of what it enqueued.
func (w *Workflow) apply(ctx context.Context, id string, c Change) (*Request, error) {
	r, err := w.store.Apply(ctx, id, c)
	if err == nil && c.Notify != nil {
		w.deliverDue(id)
	}
	return r, err
}

// send puts entries about request ref in the outbox (durably: a busy store
// is tried again) and delivers them.
func (w *Workflow) send(ref string, entries ...Outgoing) {
	err := w.durably("notice", func(ctx context.Context) error { return w.store.Enqueue(ctx, entries...) })
	if err != nil {
		// The store refuses even the outbox: try once directly, so that
		// the news is not lost with it.
		w.log.Error("notice not stored; sending it directly", "ref", ref, "err", err)
		for _, o := range entries {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(w.execCtx), deliveryTimeout)
			if err := w.deliverDirect(ctx, o, nil); err != nil {
				w.log.Error("notice not delivered", "ref", ref, "kind", string(o.Kind), "user", o.User, "err", err)
			}
			cancel()
		}
		return
	}
	w.deliverDue(ref)
}

// wakeOutbox makes the loop look at once.
func (w *Workflow) wakeOutbox() {
	select {
	case w.outboxWake <- struct{}{}:
	default:
	}
}

// deliverLoop delivers what is due until a stop is requested; a delivery
// in progress then is cut short (what it did not finish stays in the
// outbox for the next start).
func (w *Workflow) deliverLoop() {
	tick := time.NewTicker(outboxPoll)
	defer tick.Stop()
	for {
		w.deliverAll()
		select {
		case <-w.signInCtx.Done(): // a stop was requested
			return
		case <-tick.C:
		case <-w.outboxWake:
		}
	}
}

// deliverDue delivers request ref's entries now, in the caller's goroutine
// (people hear at once), waiting first for a delivery of its entries in
// progress (then what that one left due, such as a redraw for a newer
// state, goes out now). All of it within a few seconds; what fails or
// does not fit is left to the loop. Before Start has settled what a
// previous process left, and for the steps that must not wait for chat,
// the loop is woken instead.
func (w *Workflow) deliverDue(ref string) {
	if !w.started.Load() {
		w.wakeOutbox()
		return
	}
	unlock := w.delivering.lock(ref, true)
	defer unlock()
	// One short window for all of them, also during a stop: news of an
	// outcome is told before the process exits if chat answers at all.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.execCtx), inlineDeliveryTimeout)
	defer cancel()
	w.deliverLocked(ctx, ref, inlineDeliveryTimeout)
}

// deliverAll delivers the entries due now of every request not being
// delivered right now; a stop cuts it short.
func (w *Workflow) deliverAll() {
	seen := map[string]bool{}
	for _, o := range w.due("") {
		if w.signInCtx.Err() != nil {
			return
		}
		if seen[o.RequestID] {
			continue
		}
		seen[o.RequestID] = true
		if unlock := w.delivering.lock(o.RequestID, false); unlock != nil {
			// Read again under the lock: another delivery may have
			// sent some of them meanwhile.
			w.deliverLocked(w.signInCtx, o.RequestID, deliveryTimeout)
			unlock()
		}
	}
}

// deliverLocked delivers request ref's due entries, and those the
// deliveries queue (posting a prompt may call for a redraw), each attempt
// within timeout and ctx; the caller holds ref's delivery lock.
func (w *Workflow) deliverLocked(ctx context.Context, ref string, timeout time.Duration) {
	tried := map[int64]int64{} // id → generation tried: each once per call
	for pass := 0; pass < 3; pass++ {
		fresh := 0
		for _, o := range w.due(ref) {
			if g, ok := tried[o.ID]; (ok && g == o.Generation) || w.delivering.held(o, w.store) {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			tried[o.ID] = o.Generation
			fresh++
			w.deliverOne(ctx, o, timeout)
		}
		if fresh == 0 {
			return
		}
	}
}

// undelivered says whether request ref has an entry of that kind in the
// outbox, due now or later.
func (w *Workflow) undelivered(ctx context.Context, ref string, kind OutgoingKind) bool {
	entries, err := w.store.Due(ctx, time.Now().Add(deliveryGiveUp+time.Hour), ref, outboxBatch)
	return err == nil && slices.ContainsFunc(entries, func(o Outgoing) bool { return o.Kind == kind })
}

// due reads the entries due now (of request ref only, if not "").
func (w *Workflow) due(ref string) []Outgoing {
	ctx, cancel := context.WithTimeout(context.Background(), storeTryTimeout)
	defer cancel()
	due, err := w.store.Due(ctx, time.Now().UTC(), ref, outboxBatch)
	if err != nil {
		w.log.Warn("outbox not read; trying later", "err", err)
	}
	return due
}

// deliverOne makes one attempt at o (within timeout and ctx) and records
// how it went, with a context of its own: an attempt that used up its time
// is still recorded.
func (w *Workflow) deliverOne(ctx context.Context, o Outgoing, timeout time.Duration) {
	attempt, cancel := context.WithTimeout(ctx, timeout)
	err := w.attempt(attempt, o)
	cancel()
	if err != nil && ctx.Err() != nil && w.signInCtx.Err() != nil {
		// Cut short by the stop, not failed: it stays due, for an
		// immediate delivery still to come or the next start.
		return
	}
	book, cancel := context.WithTimeout(context.Background(), storeTryTimeout)
	defer cancel()
	now := time.Now().UTC()
	switch {
	case err == nil:
		w.log.Debug("notice delivered", "ref", o.RequestID, "kind", string(o.Kind), "user", o.User, "notice", string(o.Notice), "attempts", o.Attempts+1)
		w.markDelivered(book, o)
	case errors.Is(err, ErrUndeliverable), errors.Is(err, ErrNotFound), now.Sub(o.CreatedAt) > deliveryGiveUp:
		w.log.Error("notice dropped", "ref", o.RequestID, "kind", string(o.Kind), "user", o.User, "attempts", o.Attempts+1, "err", err)
		w.markDelivered(book, o)
		if o.Kind == OutgoingPost {
			w.unreachable.claim(o.RequestID)
		}
		w.audit(book, o.RequestID, EventNoticeDropped, "", map[string]string{
			"kind": string(o.Kind), "user": o.User, "notice": string(o.Notice), "attempts": strconv.Itoa(o.Attempts + 1), "error": err.Error(),
		})
	default:
		wait := retryWait(o.Attempts+1, err)
		w.log.Warn("notice not delivered; trying again", "ref", o.RequestID, "kind", string(o.Kind), "user", o.User,
			"attempt", o.Attempts+1, "in", wait.String(), "err", err)
		if perr := w.store.Postpone(book, o, now.Add(wait), err.Error()); perr != nil {
			// Not before then all the same: a store that reads but does
			// not write must not make the loop hammer Slack.
			w.delivering.hold(o, now.Add(wait))
			w.log.Warn("notice retry not recorded", "id", o.ID, "err", perr)
		}
	}
}

// markDelivered removes o from the outbox; if the store refuses, o is
// remembered as sent so that it is not sent again while the store is
// refusing (it is marked again at each look).
func (w *Workflow) markDelivered(ctx context.Context, o Outgoing) {
	if err := w.store.Delivered(ctx, o); err != nil {
		w.delivering.hold(o, time.Time{})
		w.log.Warn("delivered notice not marked; not sending it again while the store refuses", "id", o.ID, "err", err)
	}
}

// attempt loads o's request as it is now and hands o to the port, unless
// the request has moved on so far that o no longer applies.
func (w *Workflow) attempt(ctx context.Context, o Outgoing) error {
	r, err := w.store.Get(ctx, o.RequestID)
	if err != nil {
		return err
	}
	if outdated(o, r) {
		w.log.Info("notice no longer applies; not sent", "ref", o.RequestID, "notice", string(o.Notice), "state", string(r.State))
		return nil
	}
	return w.deliverDirect(ctx, o, r)
}

// outdated: a notice whose words assume a state the request has left (a
// sign-in failure says "approve again", a paused tracking "resume"), late
// after an outage, would mislead; status notices show the state as it is.
// A heads-up is never outdated: whatever happened since, the user hears
// about it next, and that news needs the heads-up before it.
func outdated(o Outgoing, r *Request) bool {
	if o.Kind != OutgoingNotice {
		return false
	}
	switch o.Notice {
	case NoticeSignInFailed:
		return r.State != StatePending
	case NoticeStillPaused:
		return !r.Tracking.Active() || !r.Tracking.Paused
	case NoticeExpired:
		return r.State != StateExpired
	case NoticeApprovalRecorded: // "waiting for another approver"
		return r.State != StatePending && r.State != StateApproved
	case NoticeMoreTimeAsked, NoticeSignInToSend: // they offer buttons for the wait
		return r.State != StateScheduled
	case NoticeBatchHalted: // it offers Resume and Stop
		return r.State != StateExecuting || r.Batch == nil || !r.Batch.Halted
	}
	return false
}

// deliverDirect hands o to the Notices port, with r as it is now (loaded
// when nil).
func (w *Workflow) deliverDirect(ctx context.Context, o Outgoing, r *Request) error {
	if r == nil {
		var err error
		if r, err = w.store.Get(ctx, o.RequestID); err != nil {
			return err
		}
	}
	switch o.Kind {
	case OutgoingPost:
		return w.postPrompts(ctx, r)
	case OutgoingPrompts:
		return w.notices.UpdatePrompts(ctx, r)
	case OutgoingProgress:
		p := o.Progress
		p.Member = memberOf(r, o.CloudPCID)
		return w.notices.Progress(ctx, r, p)
	default:
		return w.notices.Tell(ctx, o.User, Notice{Kind: o.Notice, Request: r, Why: o.Why, Accepted: o.Accepted, Member: memberOf(r, o.CloudPCID)})
	}
}

// postPrompts posts r's prompt to each approver who decides it and has no
// copy yet, and records where the copies went. A request decided meanwhile
// needs no more prompts.
func (w *Workflow) postPrompts(ctx context.Context, r *Request) error {
	if r.State != StatePending {
		return nil
	}
	var missing []string
	for _, a := range w.cfg.Policy.ApproversOf(r) {
		if !slices.ContainsFunc(r.Prompts, func(p MessageRef) bool { return p.UserID == a }) {
			missing = append(missing, a)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	posted, err := w.notices.PostPrompts(ctx, r, missing)
	if len(posted) > 0 {
		_, serr := w.store.Apply(ctx, r.ID, Change{
			Update: func(r *Request) { r.Prompts = append(r.Prompts, posted...) },
			// A decision may have landed while posting: make sure
			// every copy shows it.
			Notify: func(r *Request) []Outgoing {
				if r.State != StatePending {
					return []Outgoing{redraw(r)}
				}
				return nil
			},
		})
		if serr != nil {
			// Not posted again (they have it), but these copies will not
			// be redrawn: the buttons answer with the stored state.
			w.log.Error("prompt locations not stored", "ref", r.ID, "err", serr)
		}
		w.log.Info("approval prompt posted", "ref", r.ID, "approvers", len(posted))
	}
	return err
}

// retryWait is how long to wait after the nth failed attempt: doubling from
// deliveryRetryFirst up to deliveryRetryMax, or what the error says if
// longer (Slack's Retry-After).
func retryWait(n int, err error) time.Duration {
	wait := deliveryRetryFirst
	for i := 1; i < n && wait < deliveryRetryMax; i++ {
		wait *= 2
	}
	wait = min(wait, deliveryRetryMax)
	var ra RetryAfter
	if errors.As(err, &ra) && ra.RetryAfter() > wait {
		wait = ra.RetryAfter()
	}
	return wait
}

// redrawAtStart redraws the prompts of the open requests and of those
// changed recently: whatever a previous process could not deliver, the
// prompts show the truth.
func (w *Workflow) redrawAtStart(ctx context.Context) {
	open, err := w.store.ListByState(ctx, StatePending, StateApproved, StateConfirming, StateScheduled, StateExecuting)
	if err != nil {
		w.log.Error("could not list open requests", "err", err)
		return
	}
	recent, err := w.store.ListUpdatedSince(ctx, time.Now().Add(-redrawRecent))
	if err != nil {
		w.log.Error("could not list recent requests", "err", err)
		return
	}
	seen := map[string]bool{}
	var entries []Outgoing
	for _, r := range append(open, recent...) {
		if seen[r.ID] || len(r.Prompts) == 0 {
			continue
		}
		seen[r.ID] = true
		entries = append(entries, redraw(r))
	}
	if len(entries) == 0 {
		return
	}
	if err := w.store.Enqueue(ctx, entries...); err != nil {
		w.log.Error("prompts not queued for a redraw", "err", err)
		return
	}
	w.log.Info("prompts queued for a redraw", "requests", len(entries))
}
