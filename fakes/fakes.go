// Package fakes holds protocol-faithful fakes of Slack (Web API, response_url
// and Socket Mode), Microsoft Entra ID (device-code sign-in) and Microsoft
// Graph (Cloud PC endpoints) for end-to-end tests.
//
// Every fake listens on 127.0.0.1 only and speaks the real wire format, so
// the unmodified bot binary can be pointed at them: Slack through
// slack.OptionAPIURL(s.APIURL()), Entra through the azidentity authority host
// (AuthorityHost, with DisableInstanceDiscovery) and Graph through its base
// URL. Entra and Graph serve TLS with httptest's built-in certificate; a
// child process trusts it through SSL_CERT_FILE=WriteCAFile(t, dir).
//
// All fakes are safe for concurrent use and are shut down by t.Cleanup.
// Wait* helpers must be called from the test goroutine (they call t.Fatalf).
package fakes

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"sync"
	"testing"
	"time"
)

// guarded is what every fake shares: one lock over all its state, the
// notifier tests wait on, and whether t.Cleanup closed it.
type guarded struct {
	mu      sync.Mutex
	changed notifier
	closed  bool
}

// changedC is the channel closed at the fake's next state change.
func (g *guarded) changedC() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed.c()
}

// markClosed stops logging and wakes every waiter; the caller then closes
// its server.
func (g *guarded) markClosed() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	g.changed.broadcast()
}

// notifier wakes waiters when the state of a fake changes. The owner's mutex
// guards it.
type notifier struct {
	ch chan struct{}
}

// c returns the channel closed on the next broadcast. Call with the owner's
// lock held.
func (n *notifier) c() <-chan struct{} {
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

// broadcast wakes all waiters. Call with the owner's lock held.
func (n *notifier) broadcast() {
	if n.ch != nil {
		close(n.ch)
	}
	n.ch = make(chan struct{})
}

// waitUntil calls cond until it returns true or timeout passes. cond does its
// own locking. changed returns the channel that is closed on the next state
// change (obtained under the owner's lock); waitUntil also polls every 10ms so
// a cond that depends on time alone still progresses.
func waitUntil(timeout time.Duration, changed func() <-chan struct{}, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ch := changed()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-deadline.C:
			return cond()
		}
	}
}

// safeLog calls t.Logf unless the fake is closed; the caller holds the lock
// that guards closed, so no log can happen after t.Cleanup ran.
type safeLog struct {
	tb testing.TB
}

func (l safeLog) logf(closed bool, format string, args ...any) {
	if closed || l.tb == nil {
		return
	}
	l.tb.Helper()
	l.tb.Logf(format, args...)
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func randB64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

const upperAlnum = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

func randUpper(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = upperAlnum[int(b[i])%len(upperAlnum)]
	}
	return string(b)
}

// compactJSON returns the compact form of raw (key order kept), or a copy of
// raw if it is not valid JSON.
func compactJSON(raw []byte) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return json.RawMessage(append([]byte(nil), raw...))
	}
	return json.RawMessage(buf.Bytes())
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("fakes: marshal: " + err.Error())
	}
	return b
}
