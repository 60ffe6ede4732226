package approvals

import (
	"context"
	"time"
)

// maxSleep bounds how long the scheduler sleeps, so deadlines moved by
// another process or a clock jump are noticed.
const maxSleep = time.Minute

// nudgeGap is the least time from one run to the next that a nudge starts.
// Every new request nudges, and a run lists the undecided requests due
// before its next wake-up (it used to list them all): in a burst of
// commands, runs back to back would list once per request (most of the
// process's CPU in a 2000-command burst, when it listed them all). A
// deadline that falls due is not delayed by it; a nudge waits at most this
// long.
const nudgeGap = 200 * time.Millisecond

// schedule runs the timed work: expiring undecided requests and following
// accepted reprovisions. It wakes at the next deadline, or when nudged (at
// most once per nudgeGap), and ends at Stop. Deadlines live in the store,
// so a restart picks up where the last process left off (an expiry missed
// while down is handled at start).
func (w *Workflow) schedule() {
	for {
		ran := time.Now()
		next := w.runDue()
		wait := min(max(time.Until(next), 10*time.Millisecond), maxSleep)
		select {
		case <-w.signInCtx.Done():
			return
		case <-w.wake:
			if gap := min(time.Until(ran.Add(nudgeGap)), time.Until(next)); gap > 0 {
				select {
				case <-w.signInCtx.Done():
					return
				case <-time.After(gap):
				}
			}
		case <-time.After(wait):
		}
	}
}

// runDue does what is due now and returns when it should run next.
func (w *Workflow) runDue() time.Time {
	ctx, cancel := context.WithTimeout(w.execCtx, graphTimeout)
	defer cancel()
	now := time.Now()
	next := now.Add(maxSleep)
	// Only the undecided requests that expire before the next wake-up
	// matter here; the rest wait in the store.
	undecided, err := w.store.ListExpiringBefore(ctx, next, StatePending, StateConfirming)
	if err != nil {
		w.log.Error("could not list undecided requests", "err", err)
	}
	for _, r := range undecided {
		switch {
		case r.ExpiredAt(now):
			w.expire(ctx, r)
		case !r.ExpiresAt.IsZero() && r.ExpiresAt.Before(next):
			next = r.ExpiresAt
		}
	}
	next = w.runScheduled(ctx, now, next)
	tracked, err := w.store.ListTracking(ctx)
	if err != nil {
		w.log.Error("could not list tracked requests", "err", err)
	}
	for _, r := range tracked {
		if w.signInCtx.Err() != nil {
			break
		}
		if r.Tracking.Paused {
			// Nobody signed in to look, but the deadline still holds:
			// the request must not keep its Cloud PC forever.
			if !now.Before(r.Tracking.Until) {
				w.stopTracking(ctx, r, r.Tracking)
			} else if r.Tracking.Until.Before(next) {
				next = r.Tracking.Until
			}
			continue
		}
		if !now.Before(r.Tracking.NextCheck) {
			r = w.track(ctx, r)
		}
		if r != nil && r.Tracking.Active() && !r.Tracking.Paused && r.Tracking.NextCheck.Before(next) {
			next = r.Tracking.NextCheck
		}
	}
	return next
}

// expire ends a request nobody decided in time and offers the requester a
// one-click retry. A scheduled call whose approver did not sign in again
// after a restart ends so too, with that as its outcome, and both sides are
// told.
func (w *Workflow) expire(ctx context.Context, r *Request) {
	if r.State == StateScheduled {
		_, err := w.settle(ctx, r.ID, step{
			from: []State{StateScheduled}, to: StateExpired,
			update: func(r *Request) { r.Outcome = &Outcome{Kind: OutcomeSignInStale} },
			event:  EventExpired, details: map[string]string{"expires_at": r.ExpiresAt.Format(time.RFC3339), "at": "scheduled"},
			tellRequester: true, tellApprover: true,
		})
		if err != nil {
			w.log.Info("not expired", "ref", r.ID, "err", err)
		}
		return
	}
	_, err := w.settle(ctx, r.ID, step{
		from: []State{r.State}, to: StateExpired,
		event: EventExpired, details: map[string]string{"expires_at": r.ExpiresAt.Format(time.RFC3339)},
		also: func(r *Request) []Outgoing {
			return []Outgoing{notice(r.RequesterID, Notice{Kind: NoticeExpired, Request: r})}
		},
	})
	if err != nil {
		w.log.Info("not expired", "ref", r.ID, "err", err) // decided meanwhile
	}
}
