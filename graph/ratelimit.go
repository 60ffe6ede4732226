package graph

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// MaxPause bounds how long one Retry-After pauses a RateLimiter, so a bogus header
// cannot stop the bot for hours. The call that got it still follows its own
// Retry-After (or gives up, beyond ClientOptions.MaxRetryDelay).
const MaxPause = 5 * time.Minute

// WindowMargin is added to a RateLimiter's one-second window (see RateLimiter).
// 100 ms was not enough: with the tests' fake Graph in the same process, on 2
// CPUs busy compiling under -race, a request reached the fake 103 ms later than
// the one five before it, and six arrived within one second at RPS 5.
const WindowMargin = 250 * time.Millisecond

// RateLimiter caps the HTTP requests to Graph of every Client that shares it (one per
// process, in ClientOptions.RateLimiter: every approver's sign-in gets its own Client,
// all of them pace together). It is safe for concurrent use.
//
// The guarantee is a sliding window: never more than RPS requests start in any one
// second; request k starts no earlier than one second and WindowMargin after request
// k−RPS. (A token bucket of burst RPS would let up to 2×RPS through some one-second
// window.) A Client counts a start when the request has its connection, right before
// it is written; the margin covers the milliseconds from there to Graph's reading it,
// which vary from request to request. Every HTTP attempt waits its turn, azcore's
// retries included; waiters go in arrival order.
//
// When Graph answers 429 or 503 with a Retry-After, every Client sharing the limiter
// waits until then (at most MaxPause) before its next attempt.
type RateLimiter struct {
	rps int

	mu sync.Mutex
	// starts are the last rps start times, a ring; starts[oldest] is the earliest
	// (zero until rps requests started).
	starts []time.Time
	oldest int
	// pausedUntil: no request starts before it (Retry-After).
	pausedUntil time.Time
	// queue holds the waiters in arrival order; only queue[0] may start.
	queue []*rateWaiter
	// onStart, if set (tests), is called with each start time, with mu held.
	onStart func(time.Time)
}

type rateWaiter struct{ wake chan struct{} }

// NewRateLimiter returns a limiter letting at most rps requests start in any one
// second; rps must be at least 1.
func NewRateLimiter(rps int) (*RateLimiter, error) {
	if rps < 1 {
		return nil, fmt.Errorf("graph: the request rate must be at least 1 per second, not %d", rps)
	}
	return &RateLimiter{rps: rps, starts: make([]time.Time, rps)}, nil
}

// RPS is the most requests that start in any one second.
func (l *RateLimiter) RPS() int { return l.rps }

// Wait blocks until the caller may start a request (its turn in arrival order, the
// window allowing it, no pause in force), and counts that start. It returns ctx's
// error, without counting a start, if ctx ends first.
func (l *RateLimiter) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &rateWaiter{wake: make(chan struct{}, 1)}
	l.mu.Lock()
	l.queue = append(l.queue, w)
	for {
		delay := time.Duration(-1) // not first in line: wait to be woken
		if l.queue[0] == w {
			now := time.Now()
			at := l.pausedUntil
			if next := l.starts[l.oldest].Add(time.Second + WindowMargin); next.After(at) {
				at = next
			}
			if !now.Before(at) {
				l.starts[l.oldest] = now
				l.oldest = (l.oldest + 1) % l.rps
				l.dequeue(w)
				if l.onStart != nil {
					l.onStart(now)
				}
				l.mu.Unlock()
				return nil
			}
			delay = at.Sub(now)
		}
		l.mu.Unlock()
		var timer *time.Timer
		var fire <-chan time.Time
		if delay >= 0 {
			timer = time.NewTimer(delay)
			fire = timer.C
		}
		select {
		case <-w.wake:
		case <-fire:
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			l.mu.Lock()
			l.dequeue(w)
			l.mu.Unlock()
			return ctx.Err()
		}
		if timer != nil {
			timer.Stop()
		}
		l.mu.Lock()
	}
}

// dequeue removes w from the line and, if it was first, wakes the next one. Call with
// l.mu held.
func (l *RateLimiter) dequeue(w *rateWaiter) {
	for i, q := range l.queue {
		if q != w {
			continue
		}
		copy(l.queue[i:], l.queue[i+1:])
		l.queue[len(l.queue)-1] = nil
		l.queue = l.queue[:len(l.queue)-1]
		if i == 0 && len(l.queue) > 0 {
			select {
			case l.queue[0].wake <- struct{}{}:
			default:
			}
		}
		return
	}
}

// PauseUntil makes every waiter wait until t (at most MaxPause from now). A pause
// only ever grows: an earlier t than the one in force changes nothing.
func (l *RateLimiter) PauseUntil(t time.Time) {
	if limit := time.Now().Add(MaxPause); t.After(limit) {
		t = limit
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.After(l.pausedUntil) {
		l.pausedUntil = t
	}
	// The first waiter, if any, sleeps until its own time at most, then looks again:
	// no need to wake it.
}

// PausedUntil is when the pause in force ends (zero or past: none).
func (l *RateLimiter) PausedUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pausedUntil
}

// retryAfter reads how long a 429 or 503 answer asks the client to wait, as azcore
// does: retry-after-ms, x-ms-retry-after-ms, then Retry-After (seconds or an HTTP
// date), at most MaxPause. 0 when there is none, or for any other status.
func retryAfter(resp *http.Response, now time.Time) time.Duration {
	if resp == nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return 0
	}
	for _, h := range []string{"retry-after-ms", "x-ms-retry-after-ms"} {
		if v := resp.Header.Get(h); v != "" {
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
				return min(time.Duration(min(ms, int64(MaxPause/time.Millisecond)))*time.Millisecond, MaxPause)
			}
		}
	}
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s > 0 {
			return time.Duration(min(s, int64(MaxPause/time.Second))) * time.Second
		}
		return 0
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), MaxPause)
	}
	return 0
}
