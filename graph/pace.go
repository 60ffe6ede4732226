package graph

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// pacePolicy runs once per HTTP attempt (after the bearer policy, so also for its
// resend after a claims challenge). It bounds the attempt by tryTimeout (its answer's
// body included) and, with a RateLimiter, waits for the limiter once the attempt has
// its connection, right before the request is written: a start counted by the limiter
// is then a request arriving at Graph, not one still dialing or shaking hands with
// TLS for a varying time (which let a one-second window at Graph hold more than the
// limiter's RPS). The wait is not part of tryTimeout. It pauses the limiter when Graph
// answers 429/503 with a Retry-After.
type pacePolicy struct {
	limiter    *RateLimiter
	tryTimeout time.Duration
}

// pacedKey carries the attempt's *pacedStart to attemptPolicy.
type pacedKey struct{}

func (p pacePolicy) Do(req *policy.Request) (*http.Response, error) {
	attempt := newAttemptContext(req.Raw().Context())
	ctx := context.Context(attempt)
	if p.limiter != nil {
		ps := &pacedStart{limiter: p.limiter, attempt: attempt, tryTimeout: p.tryTimeout}
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: ps.gotConn})
		ctx = context.WithValue(ctx, pacedKey{}, ps)
	}
	attempt.arm(p.tryTimeout) // the connection's dial and handshake count
	resp, err := req.WithContext(ctx).Next()
	if p.limiter != nil {
		now := time.Now()
		if d := retryAfter(resp, now); d > 0 {
			p.limiter.PauseUntil(now.Add(d))
		}
	}
	if err != nil || resp == nil || resp.Body == nil || resp.Body == http.NoBody {
		attempt.end()
		return resp, err
	}
	// Like azcore's per-try timeout: a body not read yet keeps its context until closed.
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: attempt.end}
	return resp, nil
}

// pacedStart is one attempt's turn at the RateLimiter, taken in the GotConn hook:
// net/http calls it with the connection in hand, before the request is written
// (HTTP/1.1 and HTTP/2 alike).
type pacedStart struct {
	limiter    *RateLimiter
	attempt    *attemptContext
	tryTimeout time.Duration
	// notSent is set when the wait ended with the attempt's context: the request is
	// kept from being written (see gotConn), so the attempt is no attempt.
	notSent atomic.Pointer[error]
}

func (s *pacedStart) gotConn(info httptrace.GotConnInfo) {
	s.attempt.disarm()
	if err := s.limiter.Wait(s.attempt); err != nil {
		s.notSent.Store(&err)
		// HTTP/2 checks the request's context, which has ended, before writing its
		// headers. HTTP/1.1 writes without looking: the connection is this request's
		// alone, so closing it makes the write fail with nothing written.
		if !isHTTP2(info.Conn) {
			info.Conn.Close()
		}
		return
	}
	s.attempt.arm(s.tryTimeout)
}

// waitError is the context's error that kept the request from being written, or nil.
func (s *pacedStart) waitError() error {
	if p := s.notSent.Load(); p != nil {
		return *p
	}
	return nil
}

func isHTTP2(c net.Conn) bool {
	tc, ok := c.(*tls.Conn)
	return ok && tc.ConnectionState().NegotiatedProtocol == "h2"
}

// attemptContext is an attempt's context: it ends with its parent or when its try
// timer fires (Err then is context.DeadlineExceeded, as for context.WithTimeout). Unlike
// context.WithTimeout, the timer can be stopped while the attempt waits for the rate
// limiter and started again afterwards.
type attemptContext struct {
	parent context.Context
	done   chan struct{}

	mu       sync.Mutex
	err      error
	timer    *time.Timer
	deadline time.Time
	stop     func() bool // stops the parent's AfterFunc
}

func newAttemptContext(parent context.Context) *attemptContext {
	c := &attemptContext{parent: parent, done: make(chan struct{})}
	c.stop = context.AfterFunc(parent, func() { c.cancel(parent.Err()) })
	return c
}

func (c *attemptContext) Deadline() (time.Time, bool) {
	c.mu.Lock()
	d := c.deadline
	c.mu.Unlock()
	if pd, ok := c.parent.Deadline(); ok && (d.IsZero() || pd.Before(d)) {
		return pd, true
	}
	return d, !d.IsZero()
}

func (c *attemptContext) Done() <-chan struct{} { return c.done }

func (c *attemptContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *attemptContext) Value(key any) any { return c.parent.Value(key) }

// arm starts the try timer: the context ends d from now.
func (c *attemptContext) arm(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.deadline = time.Now().Add(d)
	c.timer = time.AfterFunc(d, func() { c.cancel(context.DeadlineExceeded) })
}

// disarm stops the try timer, if it has not fired.
func (c *attemptContext) disarm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.deadline = time.Time{}
}

// end releases the context once the attempt is over (as a CancelFunc would).
func (c *attemptContext) end() { c.cancel(context.Canceled) }

func (c *attemptContext) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	close(c.done)
	if c.timer != nil {
		c.timer.Stop()
	}
	c.stop()
}

type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
