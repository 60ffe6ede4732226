package fakes

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Fault kinds, as recorded in Call.Fault, HookPost.Fault and EntraFault.Fault.
const (
	// FaultRateLimited: HTTP 429 with Retry-After (Slack RateLimit,
	// RateLimitHooks).
	FaultRateLimited = "ratelimited"
	// FaultOutage: HTTP 503 with a non-JSON body (Slack Outage).
	FaultOutage = "outage"
	// FaultHang: held without an answer until the client gave up or the
	// fake closed (Entra Hang).
	FaultHang = "hang"
	// FaultDown: HTTP 503 with an AADSTS error body (Entra Down).
	FaultDown = "down"
)

// slackOutageBody is what Slack's edge answers during an outage: HTML, not
// the Web API's JSON (slack-go does not parse it and returns
// slack.StatusCodeError).
const slackOutageBody = "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n"

// ---- Slack ----

type rateLimit struct {
	until      time.Time
	retryAfter int
}

func (l rateLimit) active(now time.Time) bool { return now.Before(l.until) }

// slackFault is the fault that refuses a request; kind "" for none.
type slackFault struct {
	kind       string
	retryAfter int
}

func (f slackFault) status() int {
	if f.kind == FaultOutage {
		return http.StatusServiceUnavailable
	}
	return http.StatusTooManyRequests
}

// write answers the refused request: a Web API rate limit in Slack's JSON
// ({"ok":false,"error":"ratelimited"}), a response_url rate limit as the
// plain text hooks answer with, an outage as HTML.
func (f slackFault) write(w http.ResponseWriter, webAPI bool) {
	switch {
	case f.kind == FaultOutage:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, slackOutageBody)
	case webAPI:
		w.Header().Set("Retry-After", strconv.Itoa(f.retryAfter))
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"ok": false, "error": "ratelimited"})
	default:
		w.Header().Set("Retry-After", strconv.Itoa(f.retryAfter))
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, "rate_limited")
	}
}

// apiFault returns the fault refusing a Web API call of method at now.
// Call with s.mu held.
func (s *Slack) apiFault(method string, now time.Time) slackFault {
	if now.Before(s.outageUntil) {
		return slackFault{kind: FaultOutage}
	}
	if l, ok := s.rateLimits[method]; ok && l.active(now) {
		return slackFault{kind: FaultRateLimited, retryAfter: l.retryAfter}
	}
	if l, ok := s.rateLimits[""]; ok && l.active(now) {
		return slackFault{kind: FaultRateLimited, retryAfter: l.retryAfter}
	}
	return slackFault{}
}

// hookFault returns the fault refusing a response_url post at now. Call
// with s.mu held.
func (s *Slack) hookFault(now time.Time) slackFault {
	if now.Before(s.outageUntil) {
		return slackFault{kind: FaultOutage}
	}
	if s.hookLimit.active(now) {
		return slackFault{kind: FaultRateLimited, retryAfter: s.hookLimit.retryAfter}
	}
	return slackFault{}
}

// describeFaults lists the knobs active at now for Dump ("" if none). Call
// with s.mu held.
func (s *Slack) describeFaults(now time.Time) string {
	var parts []string
	if now.Before(s.outageUntil) {
		parts = append(parts, fmt.Sprintf("outage for %v", s.outageUntil.Sub(now).Round(time.Millisecond)))
	}
	for m, l := range s.rateLimits {
		if l.active(now) {
			if m == "" {
				m = "every method"
			}
			parts = append(parts, fmt.Sprintf("%s rate limited for %v", m, l.until.Sub(now).Round(time.Millisecond)))
		}
	}
	if s.hookLimit.active(now) {
		parts = append(parts, fmt.Sprintf("response_url rate limited for %v", s.hookLimit.until.Sub(now).Round(time.Millisecond)))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (now: " + strings.Join(parts, ", ") + ")"
}

func methodLabel(method string) string {
	if method == "" {
		return "every Web API method"
	}
	return method
}

// RateLimit rate-limits the Web API method ("" = every method) for d from
// now: each call answers HTTP 429 with "Retry-After: retryAfter" (seconds)
// and {"ok":false,"error":"ratelimited"}, as Slack does; slack-go returns a
// *slack.RateLimitedError. Refused calls are recorded by Calls (Status 429,
// Fault FaultRateLimited, Error "ratelimited") but the method does not run:
// nothing is posted, updated or opened. Calling it again for the same method
// replaces the window; d <= 0 ends it. A method-specific window is checked
// before the "" one. Socket Mode reconnects go through apps.connections.open
// and are refused too when it is limited.
func (s *Slack) RateLimit(method string, d time.Duration, retryAfter int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if retryAfter < 0 {
		retryAfter = 0
	}
	if d <= 0 {
		delete(s.rateLimits, method)
		s.log.logf(s.closed, "fakes: Slack: rate limit of %s ended", methodLabel(method))
	} else {
		s.rateLimits[method] = rateLimit{until: time.Now().Add(d), retryAfter: retryAfter}
		s.log.logf(s.closed, "fakes: Slack: rate limiting %s for %v (Retry-After: %d)", methodLabel(method), d, retryAfter)
	}
	s.changed.broadcast()
}

// RateLimitHooks rate-limits every response_url for d from now: each post
// answers HTTP 429 with "Retry-After: retryAfter" (seconds) and the text
// "rate_limited" (slack.PostWebhook returns a *slack.RateLimitedError).
// Refused posts are listed by HookPosts with Status 429, Fault
// FaultRateLimited and Error "rate_limited"; they are not delivered, have no
// side effect and do not count as a use. d <= 0 ends the window.
func (s *Slack) RateLimitHooks(d time.Duration, retryAfter int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if retryAfter < 0 {
		retryAfter = 0
	}
	if d <= 0 {
		s.hookLimit = rateLimit{}
		s.log.logf(s.closed, "fakes: Slack: response_url rate limit ended")
	} else {
		s.hookLimit = rateLimit{until: time.Now().Add(d), retryAfter: retryAfter}
		s.log.logf(s.closed, "fakes: Slack: rate limiting response_url posts for %v (Retry-After: %d)", d, retryAfter)
	}
	s.changed.broadcast()
}

// Outage makes Slack unavailable for d from now: every Web API call and
// every response_url post answers HTTP 503 with a short HTML body, as
// Slack's edge does (slack-go returns slack.StatusCodeError{Code: 503}).
// Refused requests are recorded (Calls, HookPosts) with Status 503 and Fault
// FaultOutage and have no side effect. An outage wins over rate limits.
// Socket Mode connections already open are left alone (use SendDisconnect
// to drop them); new ones fail at apps.connections.open. d <= 0 ends it.
func (s *Slack) Outage(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		s.outageUntil = time.Time{}
		s.log.logf(s.closed, "fakes: Slack: outage ended")
	} else {
		s.outageUntil = time.Now().Add(d)
		s.log.logf(s.closed, "fakes: Slack: outage for %v", d)
	}
	s.changed.broadcast()
}

// ---- Entra ----

// EntraFault is one device-code or token request a fault knob (Hang, Down)
// refused. Such requests never reach DeviceCodes, WaitDeviceCode or
// TokenRequests and have no side effect.
type EntraFault struct {
	// Endpoint is "devicecode" or "token".
	Endpoint string
	// GrantType is the grant_type form field of a token request.
	GrantType string
	// Fault is FaultHang or FaultDown.
	Fault string
	// Status is the HTTP status answered: 503 for FaultDown, 0 for FaultHang
	// (never answered).
	Status int
	At     time.Time
	// Released is when a held request ended, without an answer; zero while
	// it is still held. Canceled says the client gave up (its request
	// context ended) rather than the fake closing.
	Released time.Time
	Canceled bool
}

// Hang holds every device-code and token request received within d from
// now without an answer, until the client gives up (its request context
// ends: timeout, cancel, closed connection) or the fake closes. A held
// request is never answered late: when released, its connection is dropped.
// OpenID discovery keeps working. Held requests are listed by Faults. Hang
// wins over Down. d <= 0 ends the window (requests already held stay held).
func (e *Entra) Hang(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if d <= 0 {
		e.hangUntil = time.Time{}
		e.log.logf(e.closed, "fakes: Entra: hang window ended")
	} else {
		e.hangUntil = time.Now().Add(d)
		e.log.logf(e.closed, "fakes: Entra: holding device-code and token requests for %v", d)
	}
	e.changed.broadcast()
}

// Down makes the device-code and token endpoints answer HTTP 503 for d from
// now, with Entra's error JSON (error "temporarily_unavailable", AADSTS90006
// "The service is temporarily unavailable."). OpenID discovery keeps
// working. Refused requests are listed by Faults. d <= 0 ends it.
func (e *Entra) Down(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if d <= 0 {
		e.downUntil = time.Time{}
		e.log.logf(e.closed, "fakes: Entra: down window ended")
	} else {
		e.downUntil = time.Now().Add(d)
		e.log.logf(e.closed, "fakes: Entra: device-code and token endpoints down for %v", d)
	}
	e.changed.broadcast()
}

// Faults returns the requests refused by Hang or Down, in order.
func (e *Entra) Faults() []EntraFault {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]EntraFault(nil), e.faults...)
}

// WaitFor polls cond until it returns true; after timeout it fails the test
// with msg and a dump of everything the fake recorded.
func (e *Entra) WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	if !waitUntil(timeout, e.changedC, cond) {
		t.Fatalf("fakes: Entra: timed out after %v waiting for %s\n%s", timeout, msg, e.Dump())
	}
}

// refuse applies Hang or Down to a request of endpoint ("devicecode" or
// "token"); it reports whether it handled the request. A held request ends
// in panic(http.ErrAbortHandler), which drops the connection unanswered.
func (e *Entra) refuse(w http.ResponseWriter, r *http.Request, corr, endpoint string) bool {
	now := time.Now()
	e.mu.Lock()
	kind := ""
	switch {
	case now.Before(e.hangUntil):
		kind = FaultHang
	case now.Before(e.downUntil):
		kind = FaultDown
	}
	e.mu.Unlock()
	if kind == "" {
		return false
	}
	// Read the whole body: net/http only notices a client that went away
	// (and cancels r.Context()) once the body is consumed.
	_ = r.ParseForm()
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 10<<20))
	f := EntraFault{Endpoint: endpoint, Fault: kind, At: now}
	if endpoint == "token" {
		f.GrantType = r.PostForm.Get("grant_type")
	}
	if kind == FaultDown {
		f.Status = http.StatusServiceUnavailable
	}
	e.mu.Lock()
	idx := len(e.faults)
	e.faults = append(e.faults, f)
	e.changed.broadcast()
	e.mu.Unlock()

	if kind == FaultDown {
		oauthError(w, http.StatusServiceUnavailable, corr, "temporarily_unavailable", 90006, "The service is temporarily unavailable.")
		return true
	}
	canceled := false
	select {
	case <-r.Context().Done():
		canceled = true
	case <-e.release:
	}
	e.mu.Lock()
	e.faults[idx].Released = time.Now()
	e.faults[idx].Canceled = canceled
	e.changed.broadcast()
	e.mu.Unlock()
	panic(http.ErrAbortHandler)
}
