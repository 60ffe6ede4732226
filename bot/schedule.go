package bot

import (
	"context"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// maxSleep bounds how long the scheduler sleeps, so deadlines moved by
// another process or a clock jump are noticed.
const maxSleep = time.Minute

// schedule runs the timed work: expiring undecided requests and following
// accepted reprovisions. It wakes at the next deadline, or when nudged, and
// stops when the bot stops. Deadlines live in the store, so a restart picks
// up where the last process left off (an expiry missed while down is
// handled at start).
func (b *Bot) schedule() {
	for {
		next := b.runDue()
		wait := min(max(time.Until(next), 10*time.Millisecond), maxSleep)
		select {
		case <-b.signInCtx.Done():
			return
		case <-b.wake:
		case <-time.After(wait):
		}
	}
}

// runDue does what is due now and returns when it should run next.
func (b *Bot) runDue() time.Time {
	ctx, cancel := context.WithTimeout(b.execCtx, graphTimeout)
	defer cancel()
	now := time.Now()
	next := now.Add(maxSleep)
	undecided, err := b.cfg.Store.ListByState(ctx, approvals.StatePending, approvals.StateConfirming)
	if err != nil {
		b.log.Error("could not list undecided requests", "err", err)
	}
	for _, r := range undecided {
		switch {
		case r.ExpiredAt(now):
			b.expire(ctx, r)
		case !r.ExpiresAt.IsZero() && r.ExpiresAt.Before(next):
			next = r.ExpiresAt
		}
	}
	tracked, err := b.cfg.Store.ListTracking(ctx)
	if err != nil {
		b.log.Error("could not list tracked requests", "err", err)
	}
	for _, r := range tracked {
		if b.signInCtx.Err() != nil {
			break
		}
		if r.Tracking.Paused {
			// Nobody signed in to look, but the deadline still holds:
			// the request must not keep its Cloud PC forever.
			if !now.Before(r.Tracking.Until) {
				b.stopTracking(ctx, r, r.Tracking)
			} else if r.Tracking.Until.Before(next) {
				next = r.Tracking.Until
			}
			continue
		}
		if !now.Before(r.Tracking.NextCheck) {
			r = b.track(ctx, r)
		}
		if r != nil && r.Tracking.Active() && !r.Tracking.Paused && r.Tracking.NextCheck.Before(next) {
			next = r.Tracking.NextCheck
		}
	}
	return next
}

// expire ends a request nobody decided in time and offers the requester a
// one-click retry.
func (b *Bot) expire(ctx context.Context, r *approvals.Request) {
	expired, err := b.cfg.Store.Transition(ctx, r.ID, approvals.StateExpired, nil)
	if err != nil {
		b.log.Info("not expired", "ref", r.ID, "err", err) // decided meanwhile
		return
	}
	b.sessions.release(r.ID)
	b.log.Info("request expired", "ref", r.ID)
	b.audit(ctx, r.ID, approvals.EventExpired, "", map[string]string{"expires_at": r.ExpiresAt.Format(time.RFC3339)})
	b.updatePrompts(ctx, expired)
	text, blocks := expiredNotice(expired)
	b.dmBlocks(ctx, expired.RequesterID, msgText(text), msgBlocks(blocks))
}
