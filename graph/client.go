package graph

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/google/uuid"
)

const (
	// DefaultBaseURL is used when ClientOptions.BaseURL is empty.
	DefaultBaseURL = "https://graph.microsoft.com/beta"

	moduleName    = "github.com/reprovision-bot/reprovision-bot/graph" // User-Agent: azsdk-go-graph/...
	moduleVersion = "v0.1.0"
	applicationID = "reprovision-bot"

	defaultMaxRetries    = 3
	defaultMaxRetryDelay = 60 * time.Second
	defaultTryTimeout    = 60 * time.Second

	headerClientRequestID = "client-request-id"
	headerRequestID       = "request-id"
)

// ClientOptions configures a Client.
type ClientOptions struct {
	// BaseURL of Graph, e.g. "https://graph.microsoft.com/beta" (a trailing slash is
	// fine). Must be https. Default DefaultBaseURL.
	BaseURL string
	// MaxRetries is how many times a request is resent after 429 or 503 (nothing else is
	// ever retried). Default 3; negative means no retries.
	MaxRetries int
	// MaxRetryDelay caps the wait before a retry. A Retry-After longer than this ends the
	// call with that 429/503 instead of waiting. Default 60s.
	MaxRetryDelay time.Duration
	// TryTimeout bounds each HTTP attempt. Default 60s.
	TryTimeout time.Duration
	// Transport, if set, sends the requests (for tests). nil uses a client like azcore's
	// default. Redirects are never followed (an *http.Client is copied with CheckRedirect
	// replaced).
	Transport policy.Transporter
}

// Client calls Microsoft Graph with a delegated credential.
type Client struct {
	base string
	pl   runtime.Pipeline
}

// NewClient builds the pipeline: bearer token (Scope, CAE) and a fresh client-request-id
// on every attempt; retries only on 429/503, honouring Retry-After, and never after a
// transport error or timeout; no telemetry besides the User-Agent header.
func NewClient(cred azcore.TokenCredential, opts ClientOptions) (*Client, error) {
	if cred == nil {
		return nil, errors.New("graph: NewClient needs a credential")
	}
	base := strings.TrimSpace(opts.BaseURL)
	if base == "" {
		base = DefaultBaseURL
	}
	base = strings.TrimRight(base, "/")
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("graph: invalid BaseURL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("graph: BaseURL must be an https URL with no query, got %q", base)
	}
	maxRetries := opts.MaxRetries
	switch {
	case maxRetries == 0:
		maxRetries = defaultMaxRetries
	case maxRetries < 0:
		maxRetries = -1 // azcore: negative means one try
	case maxRetries > 100:
		maxRetries = 100
	}
	maxDelay := opts.MaxRetryDelay
	if maxDelay <= 0 {
		maxDelay = defaultMaxRetryDelay
	}
	tryTimeout := opts.TryTimeout
	if tryTimeout <= 0 {
		tryTimeout = defaultTryTimeout
	}
	transport := noRedirects(opts.Transport)
	pl := runtime.NewPipeline(moduleName, moduleVersion,
		runtime.PipelineOptions{
			// Order matters: the attempt policy runs after the bearer policy, so it also
			// records the resend the bearer policy makes after a 401 CAE challenge.
			PerRetry: []policy.Policy{
				runtime.NewBearerTokenPolicy(cred, []string{Scope}, nil),
				policy.Policy(attemptPolicy{}),
			},
		},
		&policy.ClientOptions{
			Retry: policy.RetryOptions{
				MaxRetries:    int32(maxRetries),
				MaxRetryDelay: maxDelay,
				TryTimeout:    tryTimeout,
				StatusCodes:   []int{http.StatusTooManyRequests, http.StatusServiceUnavailable},
				// ShouldRetry replaces azcore's own test, which would also retry transport
				// errors and timeouts: a POST that may have reached Graph is never resent.
				ShouldRetry: shouldRetry,
			},
			Telemetry: policy.TelemetryOptions{ApplicationID: applicationID},
			Transport: transport,
		})
	return &Client{base: base, pl: pl}, nil
}

// noRedirects returns a transport that does not follow redirects: a 307/308 would make
// net/http resend the POST, and the action has no business being redirected. An
// *http.Client is copied with CheckRedirect replaced; other Transporters are used as they
// are; nil gets a client like azcore's default (proxy from environment, TLS 1.2+, HTTP/2).
func noRedirects(t policy.Transporter) policy.Transporter {
	stop := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	switch c := t.(type) {
	case nil:
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		return &http.Client{Transport: tr, CheckRedirect: stop}
	case *http.Client:
		cp := *c
		cp.CheckRedirect = stop
		return &cp
	default:
		return t
	}
}

func shouldRetry(resp *http.Response, err error) bool {
	if err != nil || resp == nil {
		return false
	}
	return resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable
}

// Attempt is one HTTP attempt, for the audit trail.
type Attempt struct {
	// At is when the attempt started (UTC).
	At time.Time
	// Status is the HTTP status, 0 if no response.
	Status int
	// ClientRequestID is the GUID sent in the client-request-id header; RequestID is the
	// response's request-id header.
	ClientRequestID, RequestID string
	// Err is the transport/timeout error text when there was no response.
	Err string
}

// Call records a Graph call: Path is the URL path (without host) and Attempts every HTTP
// attempt in order.
type Call struct {
	Method, Path string
	Attempts     []Attempt
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsGUID reports whether s is a GUID in the 8-4-4-4-12 form.
func IsGUID(s string) bool { return guidRE.MatchString(s) }

// Reprovision sends POST {BaseURL}/deviceManagement/virtualEndpoint/cloudPCs/{id}/reprovision
// and expects 204 (any 2xx counts as success). The Call is returned even on error.
//
// Errors: one wrapping ErrInvalidCloudPCID (nothing sent), ctx.Err() if ctx is already
// done (nothing sent), or *Error. See Error.OutcomeUnknown before reporting a failure.
func (c *Client) Reprovision(ctx context.Context, cloudPCID string) (Call, error) {
	call := Call{Method: http.MethodPost}
	if !IsGUID(cloudPCID) {
		return call, fmt.Errorf("%w: %q", ErrInvalidCloudPCID, cloudPCID)
	}
	rawURL := c.base + "/deviceManagement/virtualEndpoint/cloudPCs/" + url.PathEscape(cloudPCID) + "/reprovision"
	if u, err := url.Parse(rawURL); err == nil {
		call.Path = u.EscapedPath()
	}
	if err := ctx.Err(); err != nil {
		return call, err
	}
	rec := &recorder{}
	req, err := runtime.NewRequest(context.WithValue(ctx, recorderKey{}, rec), http.MethodPost, rawURL)
	if err != nil {
		return call, &Error{Err: err}
	}
	req.Raw().Header.Set("Accept", "application/json")

	resp, err := c.pl.Do(req)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close() // already buffered by azcore
	}
	attempts, last := rec.result()
	call.Attempts = attempts
	// Success is judged on the last attempt's status: the pipeline may also report a
	// context error that arrived after Graph had answered.
	if last != nil && last.status >= 200 && last.status < 300 {
		return call, nil
	}
	return call, newError(err, last)
}

// newError builds the *Error from the pipeline's error and the last attempt.
func newError(err error, last *attemptResult) *Error {
	e := &Error{Err: err}
	if last == nil { // no attempt: the token could not be acquired, or ctx was done
		return e
	}
	e.ClientRequestID = last.clientRequestID
	if last.status == 0 {
		e.sent = last.maybeSent
		return e
	}
	e.StatusCode = last.status
	h := last.header
	e.RequestID = h.Get(headerRequestID)
	e.Date = h.Get("Date")
	if v := h.Get(headerClientRequestID); v != "" {
		e.ClientRequestID = v
	}
	var body struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError struct {
				RequestID       string `json:"request-id"`
				ClientRequestID string `json:"client-request-id"`
				Date            string `json:"date"`
			} `json:"innerError"`
		} `json:"error"`
	}
	if len(last.body) > 0 && json.Unmarshal(last.body, &body) == nil {
		e.Code, e.Message = body.Error.Code, body.Error.Message
		if v := body.Error.InnerError.RequestID; v != "" {
			e.RequestID = v
		}
		if v := body.Error.InnerError.ClientRequestID; v != "" {
			e.ClientRequestID = v
		}
		if v := body.Error.InnerError.Date; v != "" {
			e.Date = v
		}
	}
	if e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden {
		e.Claims = claimsChallenge(h)
	}
	return e
}

var (
	challengeRE = regexp.MustCompile(`(\w+) ((?:\w+="[^"]*",?\s*)+)`)
	paramRE     = regexp.MustCompile(`(\w+)="([^"]*)"`)
)

// claimsChallenge returns the claims of a Bearer challenge with error="insufficient_claims",
// base64-decoded when possible.
func claimsChallenge(h http.Header) string {
	for _, v := range h.Values("WWW-Authenticate") {
		for _, ch := range challengeRE.FindAllStringSubmatch(v, -1) {
			if !strings.EqualFold(ch[1], "Bearer") {
				continue
			}
			params := map[string]string{}
			for _, p := range paramRE.FindAllStringSubmatch(ch[2], -1) {
				params[strings.ToLower(p[1])] = p[2]
			}
			if params["error"] != "insufficient_claims" {
				continue
			}
			claims := params["claims"]
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
				if b, err := enc.DecodeString(claims); err == nil && json.Valid(b) {
					return string(b)
				}
			}
			if claims == "" {
				return "{}" // challenge without claims: still a sign-in-again signal
			}
			return claims
		}
	}
	return ""
}

// recorder collects a call's attempts; it travels in the request context.
type recorderKey struct{}

type attemptResult struct {
	clientRequestID string
	status          int
	header          http.Header
	body            []byte
	maybeSent       bool
}

type recorder struct {
	mu       sync.Mutex
	attempts []Attempt
	last     *attemptResult
}

func (r *recorder) add(a Attempt, res *attemptResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts = append(r.attempts, a)
	r.last = res
}

func (r *recorder) result() ([]Attempt, *attemptResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Attempt(nil), r.attempts...), r.last
}

// attemptPolicy runs once per HTTP attempt, after the bearer policy: it sets a fresh
// client-request-id and records the attempt. It never logs and never records headers that
// were sent (the Authorization header stays out of the audit trail).
type attemptPolicy struct{}

func (attemptPolicy) Do(req *policy.Request) (*http.Response, error) {
	ctx := req.Raw().Context()
	rec, _ := ctx.Value(recorderKey{}).(*recorder)
	crid := uuid.NewString()
	req.Raw().Header.Set(headerClientRequestID, crid)
	if rec == nil {
		return req.Next()
	}
	if err := ctx.Err(); err != nil {
		return nil, err // nothing sent: not an attempt
	}
	var triedConn, wroteHeaders atomic.Bool
	trace := &httptrace.ClientTrace{
		GetConn:      func(string) { triedConn.Store(true) },
		WroteHeaders: func() { wroteHeaders.Store(true) },
	}
	a := Attempt{At: time.Now().UTC(), ClientRequestID: crid}
	resp, err := req.WithContext(httptrace.WithClientTrace(ctx, trace)).Next()
	res := &attemptResult{clientRequestID: crid}
	if resp != nil {
		a.Status = resp.StatusCode
		a.RequestID = resp.Header.Get(headerRequestID)
		res.status = resp.StatusCode
		res.header = resp.Header.Clone()
		if resp.StatusCode >= 300 {
			// Error bodies are small and already buffered by azcore's body download policy.
			if b, perr := runtime.Payload(resp); perr == nil {
				res.body = b
			}
		}
	} else {
		// Without a response the request may still have reached Graph, unless the transport
		// reported trying to connect but never finished writing the request headers.
		res.maybeSent = wroteHeaders.Load() || !triedConn.Load()
	}
	if err != nil && resp == nil {
		a.Err = err.Error()
	}
	rec.add(a, res)
	return resp, err
}
