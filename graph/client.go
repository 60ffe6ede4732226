package graph

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/google/uuid"

	"github.com/reprovision-bot/reprovision-bot/approvals"
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

// MaxAnswerBytes bounds the response body the client reads from Graph (1 MiB). It reads
// at most one byte more, to tell an answer of exactly this size from a longer one; a
// longer answer is dropped and reported with ErrAnswerTooLarge.
const MaxAnswerBytes = 1 << 20

// ClientOptions configures a Client.
type ClientOptions struct {
	// BaseURL of Graph, e.g. "https://graph.microsoft.com/beta" (a trailing slash is
	// fine). Must be https. Default DefaultBaseURL.
	BaseURL string
	// MaxRetries is how many times a request is resent. A POST (Reprovision) is resent
	// only after 429 or 503; a GET (the read-only lookups) also after 408, 500, 502, 504,
	// a transport error or a per-try timeout. Default 3; negative means no retries.
	MaxRetries int
	// MaxRetryDelay caps the wait before a retry. A Retry-After longer than this ends the
	// call with that 429/503 instead of waiting. Default 60s.
	MaxRetryDelay time.Duration
	// TryTimeout bounds each HTTP attempt, and separately the token acquisition
	// before it. The wait for RateLimiter is not part of it. Default 60s.
	TryTimeout time.Duration
	// RetryDelay is the first backoff before a retry when Graph sends no Retry-After
	// (it grows exponentially, capped by MaxRetryDelay). Default 800ms (azcore's);
	// negative means no delay.
	RetryDelay time.Duration
	// Scope is the permission tokens are asked for (default Scope, the public
	// cloud's; Cloud.Scope for others), as at sign-in.
	Scope string
	// Observe, if set, is called once per HTTP attempt with the operation
	// ("get", "list", "reprovision", "action_results") and the status (0
	// when no response came), for metrics. It must be quick.
	Observe func(operation string, status int)
	// RateLimiter, if set, paces every HTTP attempt (retries included) of every
	// Client given the same one, and pauses them all after a 429/503 with
	// Retry-After. nil: no pacing.
	RateLimiter *RateLimiter
	// Transport, if set, sends the requests (for tests). nil uses a client like azcore's
	// default. Redirects are never followed (an *http.Client is copied with CheckRedirect
	// replaced).
	Transport policy.Transporter
}

// Client calls Microsoft Graph with a delegated credential. It is safe for concurrent use.
type Client struct {
	base    string
	pl      runtime.Pipeline
	observe func(operation string, status int)
	// Retry behaviour per method, set on every request's context (so a caller's
	// policy.WithRetryOptions can never make a POST retry a timeout).
	postRetry, getRetry policy.RetryOptions
}

// NewClient builds the pipeline: bearer token (Scope, CAE) and a fresh client-request-id
// on every attempt; no telemetry besides the User-Agent header. Retries honour
// Retry-After. POST (Reprovision) is retried only on 429/503, never after a transport
// error or timeout. GET (GetCloudPC, FindCloudPCs, RemoteActionResults: safe and
// idempotent) is also retried on 408/500/502/504, transport errors and per-try timeouts.
// With opts.RateLimiter every attempt first waits its turn there.
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
	retryDelay := opts.RetryDelay
	if retryDelay < 0 {
		// azcore reads a zero (or negative) RetryDelay as an overflow and waits
		// MaxRetryDelay instead; a nanosecond's backoff is no delay.
		retryDelay = time.Nanosecond
	}
	postRetry := policy.RetryOptions{
		MaxRetries:    int32(maxRetries),
		MaxRetryDelay: maxDelay,
		RetryDelay:    retryDelay,
		// No azcore per-try timeout: it would also run while the attempt waits for the
		// RateLimiter. pacePolicy bounds the attempt, timedCredential the token.
		TryTimeout:  0,
		StatusCodes: []int{http.StatusTooManyRequests, http.StatusServiceUnavailable},
		// ShouldRetry replaces azcore's own test, which would also retry transport
		// errors and timeouts: a POST that may have reached Graph is never resent.
		ShouldRetry: shouldRetry,
	}
	getRetry := postRetry
	getRetry.StatusCodes = getRetryStatusCodes
	getRetry.ShouldRetry = shouldRetryGET
	transport := capAnswers{next: noRedirects(opts.Transport)}
	scope := strings.TrimSpace(opts.Scope)
	if scope == "" {
		scope = Scope
	}
	pl := runtime.NewPipeline(moduleName, moduleVersion,
		runtime.PipelineOptions{
			// Order matters: the attempt policy runs after the bearer policy, so it also
			// records the resend the bearer policy makes after a 401 CAE challenge.
			// pacePolicy sits right before it: every HTTP attempt waits for the
			// rate limiter and then gets TryTimeout.
			PerRetry: []policy.Policy{
				runtime.NewBearerTokenPolicy(timedCredential{cred: cred, timeout: tryTimeout}, []string{scope}, nil),
				pacePolicy{limiter: opts.RateLimiter, tryTimeout: tryTimeout},
				policy.Policy(attemptPolicy{}),
			},
		},
		&policy.ClientOptions{
			Retry:     postRetry, // every request overrides it with its method's options
			Telemetry: policy.TelemetryOptions{ApplicationID: applicationID},
			Transport: transport,
		})
	return &Client{base: base, pl: pl, observe: opts.Observe, postRetry: postRetry, getRetry: getRetry}, nil
}

// timedCredential bounds each token acquisition by timeout (azcore's per-try timeout
// used to, before the rate limiter's wait was moved into the try).
type timedCredential struct {
	cred    azcore.TokenCredential
	timeout time.Duration
}

func (c timedCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return c.cred.GetToken(ctx, opts)
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

// capAnswers makes every response body it passes on stop at MaxAnswerBytes+1 bytes with
// ErrAnswerTooLarge. It sits under azcore's body download policy, which reads every
// body it does not skip (error bodies always), so nothing reads past the cap.
type capAnswers struct{ next policy.Transporter }

func (t capAnswers) Do(req *http.Request) (*http.Response, error) {
	resp, err := t.next.Do(req)
	if resp != nil && resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = &cappedBody{body: resp.Body, left: MaxAnswerBytes + 1}
	}
	return resp, err
}

// cappedBody reads at most left bytes of body; reading the last of them means the body
// is longer than MaxAnswerBytes, and that read (and every later one) returns
// ErrAnswerTooLarge.
type cappedBody struct {
	body io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, ErrAnswerTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.body.Read(p)
	b.left -= int64(n)
	if b.left <= 0 {
		return n, ErrAnswerTooLarge
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.body.Close() }

func shouldRetry(resp *http.Response, err error) bool {
	if err != nil || resp == nil {
		return false
	}
	return resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable
}

// getRetryStatusCodes are azcore's defaults: safe to resend for a GET.
var getRetryStatusCodes = []int{
	http.StatusRequestTimeout,      // 408
	http.StatusTooManyRequests,     // 429
	http.StatusInternalServerError, // 500
	http.StatusBadGateway,          // 502
	http.StatusServiceUnavailable,  // 503
	http.StatusGatewayTimeout,      // 504
}

// shouldRetryGET retries a GET after a transport error, a per-try timeout or a body that
// could not be read, and after the statuses in getRetryStatusCodes. azcore checks before
// calling it that the caller's context is still live and that the error is retriable
// (token acquisition errors are not).
func shouldRetryGET(resp *http.Response, err error) bool {
	if err != nil {
		return true
	}
	return resp != nil && runtime.HasStatusCode(resp, getRetryStatusCodes...)
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
	// Err is the transport/timeout error text when there was no response, or the error
	// reading the response body.
	Err string
}

// Call records a Graph call: Path is the URL path (without host) and Attempts every HTTP
// attempt in order.
type Call struct {
	Method, Path string
	Attempts     []Attempt
}

// IsGUID reports whether s is a GUID in the 8-4-4-4-12 form.
func IsGUID(s string) bool { return approvals.ValidCloudPCID(s) }

// Reprovision sends POST {BaseURL}/deviceManagement/virtualEndpoint/cloudPCs/{id}/reprovision
// and expects 204 (any 2xx counts as success; its body is not read). With options it
// sends a JSON body holding exactly the options given ({"osVersion":"windows11"}), with
// Content-Type application/json; without, no body, as Graph's documentation shows
// it. The Call is returned even on error. An error body longer than MaxAnswerBytes is dropped: the
// *Error keeps its status and has Err ErrAnswerTooLarge.
//
// Errors: one wrapping ErrInvalidCloudPCID or ErrInvalidOptions (nothing sent),
// ctx.Err() if ctx is already done (nothing sent), or *Error. See Error.OutcomeUnknown
// before reporting a failure.
func (c *Client) Reprovision(ctx context.Context, cloudPCID string, opts approvals.Options) (Call, error) {
	call := Call{Method: http.MethodPost}
	if !IsGUID(cloudPCID) {
		return call, fmt.Errorf("%w: %q", ErrInvalidCloudPCID, cloudPCID)
	}
	if err := opts.Validate(); err != nil {
		return call, fmt.Errorf("%w: %v", ErrInvalidOptions, err)
	}
	body, err := reprovisionBody(opts)
	if err != nil {
		return call, err
	}
	rawURL := c.cloudPCsURL() + "/" + url.PathEscape(cloudPCID) + "/reprovision"
	call.Path = escapedPath(rawURL)
	if err := ctx.Err(); err != nil {
		return call, err
	}
	_, _, err = c.send(ctx, http.MethodPost, rawURL, body, &call)
	return call, err
}

// reprovisionParameters is the reprovision action's body: only the options
// given (omitempty), so Graph keeps the Cloud PC's own choice for the rest.
type reprovisionParameters struct {
	OSVersion       string `json:"osVersion,omitempty"`
	UserAccountType string `json:"userAccountType,omitempty"`
}

// reprovisionBody is the body for opts, nil when none is given.
func reprovisionBody(opts approvals.Options) ([]byte, error) {
	if opts.IsZero() {
		return nil, nil
	}
	return json.Marshal(reprovisionParameters{OSVersion: opts.OSVersion, UserAccountType: opts.UserAccountType})
}

func (c *Client) cloudPCsURL() string {
	return c.base + "/deviceManagement/virtualEndpoint/cloudPCs"
}

func escapedPath(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		return u.EscapedPath()
	}
	return ""
}

// send makes one request (with the method's retries) and appends its attempts to call.
// It returns the body of the last attempt's 2xx answer, or an error: *Error, or an error
// building the request. A POST succeeds on any 2xx, whose body is never read; a GET only
// if the body was read in full (at most MaxAnswerBytes).
//
// body (nil: none) is sent as application/json, again on each retry.
func (c *Client) send(ctx context.Context, method, rawURL string, body []byte, call *Call) ([]byte, *attemptResult, error) {
	retry := c.postRetry
	if method == http.MethodGet {
		retry = c.getRetry
	}
	rec := &recorder{}
	ctx = policy.WithRetryOptions(context.WithValue(ctx, recorderKey{}, rec), retry)
	req, err := runtime.NewRequest(ctx, method, rawURL)
	if err != nil {
		return nil, nil, &Error{Method: method, Err: err}
	}
	req.Raw().Header.Set("Accept", "application/json")
	if body != nil {
		// SetBody rewinds it for each retry and sets Content-Length.
		if err := req.SetBody(streaming.NopCloser(bytes.NewReader(body)), "application/json"); err != nil {
			return nil, nil, &Error{Method: method, Err: err}
		}
	}
	if method == http.MethodGet {
		// Without it Graph reports newer members of evolvable enums (e.g. the Cloud PC
		// status "movingRegion") as "unknownFutureValue".
		req.Raw().Header.Set("Prefer", "include-unknown-enum-members")
	} else {
		// A 2xx to the POST says Graph accepted it, whatever its body: azcore does not
		// download it (it still downloads an error body, up to MaxAnswerBytes), and
		// attemptPolicy does not read it either.
		runtime.SkipBodyDownload(req)
	}

	resp, err := c.pl.Do(req)
	if resp != nil && resp.Body != nil {
		// Already buffered for a GET; a POST's 2xx body is closed unread.
		_ = resp.Body.Close()
	}
	attempts, last := rec.result()
	call.Attempts = append(call.Attempts, attempts...)
	if c.observe != nil {
		op := operationOf(method, rawURL)
		for _, a := range attempts {
			c.observe(op, a.Status)
		}
	}
	// Success is judged on the last attempt: the pipeline may also report a context
	// error that arrived after Graph had answered.
	if last != nil && last.status >= 200 && last.status < 300 && (method != http.MethodGet || last.complete) {
		return last.body, last, nil
	}
	e := newError(err, last)
	e.Method, e.Attempts = method, len(attempts)
	return nil, last, e
}

// operationOf names a request for metrics: the reprovision POST, a list (of Cloud PCs
// or provisioning policies), the remote action results, or one Cloud PC or policy.
func operationOf(method, rawURL string) string {
	path := rawURL
	if u, err := url.Parse(rawURL); err == nil {
		path = u.Path
	}
	switch {
	case method == http.MethodPost:
		return "reprovision"
	case strings.HasSuffix(path, "/retrieveCloudPcRemoteActionResults"):
		return "action_results"
	case strings.HasSuffix(path, "/cloudPCs"), strings.HasSuffix(path, "/provisioningPolicies"):
		return "list"
	}
	return "get"
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
	if last.tooLarge && e.Err == nil {
		e.Err = ErrAnswerTooLarge
	}
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
	// complete: a response came and its body was read in full.
	complete bool
	// tooLarge: the body was longer than MaxAnswerBytes and was dropped (body is nil).
	tooLarge  bool
	maybeSent bool
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
	if ps, _ := ctx.Value(pacedKey{}).(*pacedStart); ps != nil && resp == nil && !wroteHeaders.Load() {
		if werr := ps.waitError(); werr != nil {
			return nil, werr // ended waiting for the rate limiter, nothing written: not an attempt
		}
	}
	res := &attemptResult{clientRequestID: crid}
	if resp != nil && errors.Is(err, ErrAnswerTooLarge) {
		// azcore's body download stopped at the cap (and closed the body). The answer
		// stays an answer: its status decides, as for any other (retries included),
		// only without its body.
		resp.Body, err, res.tooLarge = http.NoBody, nil, true
	}
	if resp != nil {
		a.Status = resp.StatusCode
		a.RequestID = resp.Header.Get(headerRequestID)
		res.status = resp.StatusCode
		res.header = resp.Header.Clone()
		switch {
		case err != nil || res.tooLarge:
		case req.Raw().Method != http.MethodGet && resp.StatusCode >= 200 && resp.StatusCode < 300:
			// The POST's 2xx: not downloaded (SkipBodyDownload) and not needed.
		default:
			// Buffered by azcore's body download policy, except a non-error answer to
			// the POST (a 3xx), read here through the same cap. An error here means
			// reading the body failed.
			b, perr := runtime.Payload(resp)
			switch {
			case perr == nil:
				res.body, res.complete = b, true
			case errors.Is(perr, ErrAnswerTooLarge):
				resp.Body, res.tooLarge = http.NoBody, true
			}
		}
		if res.tooLarge {
			a.Err = ErrAnswerTooLarge.Error()
		}
	} else {
		// Without a response the request may still have reached Graph, unless the transport
		// reported trying to connect but never finished writing the request headers.
		res.maybeSent = wroteHeaders.Load() || !triedConn.Load()
	}
	if err != nil {
		a.Err = err.Error()
	}
	rec.add(a, res)
	return resp, err
}
