package graph

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

const testToken = "graph-token-abc"

const wantPath = "/beta/deviceManagement/virtualEndpoint/cloudPCs/" + testCloudPC + "/reprovision"

func noContent(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }

func TestNewClientValidation(t *testing.T) {
	t.Parallel()
	cred := &staticCred{token: testToken}
	if _, err := NewClient(nil, ClientOptions{}); err == nil {
		t.Error("nil credential accepted")
	}
	for _, base := range []string{"http://graph.microsoft.com/beta", "graph.microsoft.com/beta", "https://graph.microsoft.com/beta?x=1", "https:///beta"} {
		if _, err := NewClient(cred, ClientOptions{BaseURL: base}); err == nil {
			t.Errorf("BaseURL %q accepted", base)
		}
	}
	c, err := NewClient(cred, ClientOptions{})
	if err != nil || c.base != DefaultBaseURL {
		t.Errorf("default base = %v, %v", c, err)
	}
}

func TestReprovisionSuccess(t *testing.T) {
	t.Parallel()
	for _, suffix := range []string{"/beta", "/beta/"} {
		t.Run(suffix, func(t *testing.T) {
			g := newFakeGraph(t, noContent)
			cred := &staticCred{token: testToken}
			c := g.client(t, cred, ClientOptions{BaseURL: g.srv.URL + suffix})
			call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
			if err != nil {
				t.Fatalf("Reprovision: %v", err)
			}
			reqs := g.requests()
			if len(reqs) != 1 || len(call.Attempts) != 1 {
				t.Fatalf("graph saw %d requests, call has %d attempts; want 1 and 1", len(reqs), len(call.Attempts))
			}
			r, a := reqs[0], call.Attempts[0]
			if r.Method != http.MethodPost || r.Path != wantPath {
				t.Errorf("request %s %s, want POST %s", r.Method, r.Path, wantPath)
			}
			if call.Method != http.MethodPost || call.Path != wantPath {
				t.Errorf("call %s %s, want POST %s", call.Method, call.Path, wantPath)
			}
			if r.Authorization != "Bearer "+testToken {
				t.Errorf("Authorization = %q", r.Authorization)
			}
			if !IsGUID(r.ClientRequestID) || r.ClientRequestID != a.ClientRequestID {
				t.Errorf("client-request-id sent %q, recorded %q", r.ClientRequestID, a.ClientRequestID)
			}
			if a.Status != http.StatusNoContent || a.RequestID != "server-request-1" || a.Err != "" {
				t.Errorf("attempt = %+v", a)
			}
			if d := time.Since(a.At); d < 0 || d > time.Minute || a.At.Location() != time.UTC {
				t.Errorf("attempt time %v", a.At)
			}
			if r.ContentLength != 0 || r.TransferEncodingChunked {
				t.Errorf("body: Content-Length %d, chunked %v; want an empty body", r.ContentLength, r.TransferEncodingChunked)
			}
			if !strings.HasPrefix(r.UserAgent, "reprovision-bot azsdk-go-graph/") {
				t.Errorf("User-Agent = %q", r.UserAgent)
			}
			// What the bearer policy asked the credential for.
			calls := cred.requests()
			if len(calls) != 1 || !calls[0].EnableCAE || len(calls[0].Scopes) != 1 || calls[0].Scopes[0] != Scope {
				t.Errorf("token requests = %+v", calls)
			}
		})
	}
}

func TestReprovisionGraphError(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Date", "Mon, 01 Jan 2024 00:00:00 GMT")
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{
			"code":    "ResourceNotFound",
			"message": "Cloud PC not found",
			"innerError": map[string]any{
				"request-id":        "body-request-id",
				"date":              "2024-01-01T00:00:00",
				"client-request-id": "body-client-request-id",
			},
		}})
	})
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{})
	call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	var ge *Error
	if !errors.As(err, &ge) {
		t.Fatalf("err = %v (%T), want *Error", err, err)
	}
	if ge.StatusCode != 404 || ge.Code != "ResourceNotFound" || ge.Message != "Cloud PC not found" ||
		ge.RequestID != "body-request-id" || ge.ClientRequestID != "body-client-request-id" || ge.Date != "2024-01-01T00:00:00" {
		t.Errorf("error = %+v", ge)
	}
	if ge.OutcomeUnknown() || ge.SignInRequired() || ge.Claims != "" || ge.Err != nil {
		t.Errorf("404: OutcomeUnknown %v, SignInRequired %v, Claims %q, Err %v", ge.OutcomeUnknown(), ge.SignInRequired(), ge.Claims, ge.Err)
	}
	msg := err.Error()
	for _, want := range []string{"404", "ResourceNotFound", "Cloud PC not found", "body-request-id"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Error() = %q, lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, testToken) {
		t.Errorf("Error() leaks the token: %q", msg)
	}
	if len(call.Attempts) != 1 || call.Attempts[0].Status != 404 || call.Attempts[0].RequestID != "server-request-1" {
		t.Errorf("attempts = %+v", call.Attempts)
	}
}

func TestReprovisionGraphErrorHeaderFallback(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest) // no body
	})
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{})
	call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	var ge *Error
	if !errors.As(err, &ge) {
		t.Fatalf("err = %v", err)
	}
	if ge.StatusCode != 400 || ge.RequestID != "server-request-1" || ge.ClientRequestID != call.Attempts[0].ClientRequestID || ge.Date == "" {
		t.Errorf("error = %+v", ge)
	}
}

func TestReprovisionThrottledThenSucceeds(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": map[string]any{"code": "TooManyRequests", "message": "slow down"}})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{})
	call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	if err != nil {
		t.Fatalf("Reprovision: %v", err)
	}
	reqs := g.requests()
	if len(reqs) != 2 || len(call.Attempts) != 2 {
		t.Fatalf("graph saw %d requests, call has %d attempts; want 2 and 2", len(reqs), len(call.Attempts))
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 950*time.Millisecond {
		t.Errorf("retry came %v after the 429, want >= 1s (Retry-After: 1)", gap)
	}
	a0, a1 := call.Attempts[0], call.Attempts[1]
	if a0.Status != 429 || a1.Status != 204 || a0.RequestID != "server-request-1" || a1.RequestID != "server-request-2" {
		t.Errorf("attempts = %+v", call.Attempts)
	}
	if a0.ClientRequestID == a1.ClientRequestID || !IsGUID(a0.ClientRequestID) || !IsGUID(a1.ClientRequestID) {
		t.Errorf("client-request-ids %q, %q: want two different GUIDs", a0.ClientRequestID, a1.ClientRequestID)
	}
	if reqs[0].ClientRequestID != a0.ClientRequestID || reqs[1].ClientRequestID != a1.ClientRequestID {
		t.Errorf("sent ids %q, %q differ from recorded", reqs[0].ClientRequestID, reqs[1].ClientRequestID)
	}
	if !a1.At.After(a0.At) {
		t.Errorf("attempt times not increasing: %v, %v", a0.At, a1.At)
	}
}

func TestReprovisionRetryAfterBeyondCapIsNotWaited(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
	})
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{MaxRetryDelay: 5 * time.Second})
	start := time.Now()
	call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	var ge *Error
	if !errors.As(err, &ge) || ge.StatusCode != 429 || ge.OutcomeUnknown() {
		t.Fatalf("err = %v, want a 429 *Error with a known outcome", err)
	}
	if len(call.Attempts) != 1 || len(g.requests()) != 1 {
		t.Errorf("attempts %d, requests %d; want 1", len(call.Attempts), len(g.requests()))
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("took %v: waited for a Retry-After beyond the cap", d)
	}
}

func TestReprovision503RetriesThenKnownFailure(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After-Ms", "20")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]any{"code": "ServiceUnavailable", "message": "try later"}})
	})
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{MaxRetries: 2})
	call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	var ge *Error
	if !errors.As(err, &ge) || ge.StatusCode != 503 || ge.Code != "ServiceUnavailable" {
		t.Fatalf("err = %v", err)
	}
	if ge.OutcomeUnknown() {
		t.Error("503 after retries reported as outcome unknown")
	}
	if len(call.Attempts) != 3 || len(g.requests()) != 3 {
		t.Errorf("attempts %d, requests %d; want 3 (1 + MaxRetries 2)", len(call.Attempts), len(g.requests()))
	}
	if ge.RequestID != "server-request-3" {
		t.Errorf("RequestID = %q, want the last attempt's", ge.RequestID)
	}
}

func TestReprovisionNoRetryMeansOneTry(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After-Ms", "20")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{MaxRetries: -1})
	call, _ := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	if len(call.Attempts) != 1 || len(g.requests()) != 1 {
		t.Errorf("attempts %d, requests %d; want 1", len(call.Attempts), len(g.requests()))
	}
}

func TestReprovision5xxIsNotRetried(t *testing.T) {
	t.Parallel()
	for _, status := range []int{500, 502, 504} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", "0")
				writeJSON(w, status, map[string]any{"error": map[string]any{"code": "InternalServerError", "message": "boom"}})
			})
			c := g.client(t, &staticCred{token: testToken}, ClientOptions{})
			call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
			var ge *Error
			if !errors.As(err, &ge) || ge.StatusCode != status {
				t.Fatalf("err = %v", err)
			}
			if len(call.Attempts) != 1 || len(g.requests()) != 1 {
				t.Errorf("attempts %d, requests %d; want exactly 1", len(call.Attempts), len(g.requests()))
			}
			if !ge.OutcomeUnknown() {
				t.Errorf("%d: OutcomeUnknown = false, want true", status)
			}
		})
	}
}

// hanging returns a handler that never answers. When the client goes away it aborts the
// connection instead of returning: a handler that returns makes net/http write a 200,
// which can still reach a client whose deadline just passed (it closes the TLS
// connection with close_notify first), and that would be a fake Graph answer.
func hanging(t *testing.T) func(int, http.ResponseWriter, *http.Request) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return func(_ int, _ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		panic(http.ErrAbortHandler)
	}
}

func TestReprovisionHangPastDeadline(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, hanging(t))
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	call, err := c.Reprovision(ctx, testCloudPC, approvals.Options{})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Reprovision took %v with a 300ms deadline", d)
	}
	var ge *Error
	if !errors.As(err, &ge) {
		t.Fatalf("err = %v (%T), want *Error; call %+v, requests %+v", err, err, call, g.requests())
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want it to wrap context.DeadlineExceeded", err)
	}
	if ge.StatusCode != 0 || !ge.OutcomeUnknown() {
		t.Errorf("StatusCode %d, OutcomeUnknown %v; want 0, true", ge.StatusCode, ge.OutcomeUnknown())
	}
	if len(call.Attempts) != 1 || len(g.requests()) != 1 {
		t.Fatalf("attempts %d, requests %d; want exactly 1", len(call.Attempts), len(g.requests()))
	}
	a := call.Attempts[0]
	if a.Status != 0 || a.Err == "" || a.ClientRequestID != ge.ClientRequestID || a.ClientRequestID != g.requests()[0].ClientRequestID {
		t.Errorf("attempt = %+v, error client-request-id %q", a, ge.ClientRequestID)
	}
	if !strings.Contains(err.Error(), "outcome unknown") || strings.Contains(err.Error(), testToken) {
		t.Errorf("Error() = %q", err.Error())
	}
}

// azcore would retry a per-try timeout by default; the client must not resend the POST.
func TestReprovisionTryTimeoutIsNotRetried(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, hanging(t))
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{TryTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := c.Reprovision(ctx, testCloudPC, approvals.Options{})
	var ge *Error
	if !errors.As(err, &ge) || !ge.OutcomeUnknown() {
		t.Fatalf("err = %v, want *Error with OutcomeUnknown", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the test deadline fired, not the try timeout")
	}
	if len(call.Attempts) != 1 || len(g.requests()) != 1 {
		t.Errorf("attempts %d, requests %d; want exactly 1", len(call.Attempts), len(g.requests()))
	}
}

func TestReprovisionConnectionRefusedIsKnownNotSent(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := NewClient(&staticCred{token: testToken}, ClientOptions{BaseURL: "https://" + addr + "/beta", Transport: &http.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	var ge *Error
	if !errors.As(err, &ge) || ge.Err == nil {
		t.Fatalf("err = %v", err)
	}
	if ge.OutcomeUnknown() {
		t.Errorf("connection refused reported as outcome unknown: %v", err)
	}
	if len(call.Attempts) != 1 || call.Attempts[0].Err == "" || call.Attempts[0].Status != 0 {
		t.Errorf("attempts = %+v, want one failed attempt", call.Attempts)
	}
}

func TestReprovisionClaimsChallenge(t *testing.T) {
	t.Parallel()
	claims := `{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}`
	challenge := `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="` +
		base64.StdEncoding.EncodeToString([]byte(claims)) + `"`
	for _, status := range []int{401, 403} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("WWW-Authenticate", challenge)
				writeJSON(w, status, map[string]any{"error": map[string]any{"code": "InvalidAuthenticationToken", "message": "Continuous access evaluation resulted in challenge"}})
			})
			// Like a DeviceCodeCredential whose refresh token no longer satisfies the policy.
			cred := &staticCred{token: testToken, failOnClaims: true}
			c := g.client(t, cred, ClientOptions{})
			call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
			var ge *Error
			if !errors.As(err, &ge) {
				t.Fatalf("err = %v", err)
			}
			if ge.StatusCode != status || ge.Claims != claims || !ge.SignInRequired() || ge.OutcomeUnknown() {
				t.Errorf("error = %+v (SignInRequired %v, OutcomeUnknown %v)", ge, ge.SignInRequired(), ge.OutcomeUnknown())
			}
			if len(call.Attempts) != 1 || len(g.requests()) != 1 {
				t.Errorf("attempts %d, requests %d; want 1", len(call.Attempts), len(g.requests()))
			}
			if status == 401 {
				// azcore's bearer policy tried to get a token satisfying the claims.
				reqs := cred.requests()
				if len(reqs) != 2 || reqs[1].Claims != claims {
					t.Errorf("token requests = %+v, want a second one with the claims", reqs)
				}
				var are *azidentity.AuthenticationRequiredError
				if !errors.As(err, &are) {
					t.Errorf("err does not wrap the credential's error: %v", err)
				}
			}
		})
	}
}

// When the credential can satisfy a 401 claims challenge (refresh token still good), the
// bearer policy resends once; Graph refused the first request, so that is no blind
// resend, and both attempts are recorded.
func TestReprovisionClaimsChallengeSatisfiedIsRecorded(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_claims", claims="`+base64.StdEncoding.EncodeToString([]byte(`{"access_token":{}}`))+`"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{})
	call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(call.Attempts) != 2 || call.Attempts[0].Status != 401 || call.Attempts[1].Status != 204 ||
		call.Attempts[0].ClientRequestID == call.Attempts[1].ClientRequestID {
		t.Errorf("attempts = %+v", call.Attempts)
	}
}

func TestReprovisionTokenFailureSendsNothing(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, noContent)
	c := g.client(t, &staticCred{fail: errors.New("no token")}, ClientOptions{})
	call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	var ge *Error
	if !errors.As(err, &ge) || ge.StatusCode != 0 || ge.OutcomeUnknown() {
		t.Fatalf("err = %v", err)
	}
	if len(call.Attempts) != 0 || len(g.requests()) != 0 {
		t.Errorf("attempts %d, requests %d; want 0", len(call.Attempts), len(g.requests()))
	}
}

func TestReprovisionInvalidIDSendsNothing(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, noContent)
	cred := &staticCred{token: testToken}
	c := g.client(t, cred, ClientOptions{})
	for _, id := range []string{
		"",
		"not-a-guid",
		"ac74ae8b85f7427288cc5419267403ed",
		"{ac74ae8b-85f7-4272-88cc-5419267403ed}",
		"urn:uuid:ac74ae8b-85f7-4272-88cc-5419267403ed",
		"ac74ae8b-85f7-4272-88cc-5419267403ed/../x",
		"../../users",
		" ac74ae8b-85f7-4272-88cc-5419267403ed",
		"ac74ae8b-85f7-4272-88cc-5419267403eg",
	} {
		call, err := c.Reprovision(context.Background(), id, approvals.Options{})
		if !errors.Is(err, ErrInvalidCloudPCID) {
			t.Errorf("%q: err = %v, want ErrInvalidCloudPCID", id, err)
		}
		if len(call.Attempts) != 0 {
			t.Errorf("%q: %d attempts", id, len(call.Attempts))
		}
	}
	if n := len(g.requests()); n != 0 {
		t.Errorf("graph saw %d requests, want 0", n)
	}
	if n := len(cred.requests()); n != 0 {
		t.Errorf("credential asked %d times, want 0", n)
	}
}

func TestReprovisionContextAlreadyDone(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, noContent)
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	call, err := c.Reprovision(ctx, testCloudPC, approvals.Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if len(call.Attempts) != 0 || len(g.requests()) != 0 {
		t.Errorf("attempts %d, requests %d; want 0", len(call.Attempts), len(g.requests()))
	}
}

func TestOutcomeUnknownDefinition(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		e    Error
		want bool
	}{
		{Error{StatusCode: 0, sent: true}, true},
		{Error{StatusCode: 0, sent: false}, false},
		{Error{StatusCode: 500}, true},
		{Error{StatusCode: 502}, true},
		{Error{StatusCode: 504}, true},
		{Error{StatusCode: 503}, false},
		{Error{StatusCode: 429}, false},
		{Error{StatusCode: 408}, false},
		{Error{StatusCode: 404}, false},
		{Error{StatusCode: 401}, false},
	} {
		if got := tc.e.OutcomeUnknown(); got != tc.want {
			t.Errorf("%+v: OutcomeUnknown = %v, want %v", tc.e, got, tc.want)
		}
	}
}

func TestClaimsChallengeParsing(t *testing.T) {
	t.Parallel()
	enc := base64.StdEncoding.EncodeToString([]byte(`{"a":1}`))
	for _, tc := range []struct{ header, want string }{
		{`Bearer error="insufficient_claims", claims="` + enc + `"`, `{"a":1}`},
		{`Bearer realm="", error="invalid_token"`, ""},
		{`Basic realm="x", Bearer error="insufficient_claims", claims="` + enc + `"`, `{"a":1}`},
		{`Bearer error="insufficient_claims", claims="not base64!"`, "not base64!"},
		{``, ""},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("WWW-Authenticate", tc.header)
		}
		if got := claimsChallenge(h); got != tc.want {
			t.Errorf("%q: claims = %q, want %q", tc.header, got, tc.want)
		}
	}
}

type transporterFunc func(*http.Request) (*http.Response, error)

func (f transporterFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

// Graph's answer wins over a context error that arrives with it: the pipeline reports
// the context error, but the 204 says the reprovision was accepted.
func TestReprovisionAnswerBeatsLateContextError(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := transporterFunc(func(r *http.Request) (*http.Response, error) {
		cancel()
		return &http.Response{StatusCode: http.StatusNoContent, Header: http.Header{"Request-Id": {"late"}}, Body: http.NoBody, Request: r}, nil
	})
	c, err := NewClient(&staticCred{token: testToken}, ClientOptions{BaseURL: "https://graph.test/beta", Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	call, err := c.Reprovision(ctx, testCloudPC, approvals.Options{})
	if err != nil {
		t.Fatalf("err = %v, want success", err)
	}
	if len(call.Attempts) != 1 || call.Attempts[0].Status != 204 || call.Attempts[0].RequestID != "late" {
		t.Errorf("attempts = %+v", call.Attempts)
	}
}

// A transport that reports nothing through httptrace: a failure cannot be shown to have
// happened before sending, so the outcome is unknown.
func TestReprovisionUntracedTransportFailureIsUnknown(t *testing.T) {
	t.Parallel()
	var sent int
	tr := transporterFunc(func(*http.Request) (*http.Response, error) {
		sent++
		return nil, errors.New("connection reset by peer")
	})
	c, err := NewClient(&staticCred{token: testToken}, ClientOptions{BaseURL: "https://graph.test/beta", Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	var ge *Error
	if !errors.As(err, &ge) || !ge.OutcomeUnknown() {
		t.Fatalf("err = %v, want *Error with OutcomeUnknown", err)
	}
	if sent != 1 || len(call.Attempts) != 1 || call.Attempts[0].Err == "" {
		t.Errorf("sent %d, attempts %+v; want 1 failed attempt and no retry", sent, call.Attempts)
	}
}

func TestReprovisionRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{})
	call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	var ge *Error
	if !errors.As(err, &ge) || ge.StatusCode != http.StatusTemporaryRedirect || ge.OutcomeUnknown() {
		t.Fatalf("err = %v, want a 307 *Error", err)
	}
	if len(g.requests()) != 1 || len(call.Attempts) != 1 {
		t.Errorf("requests %d, attempts %d; want 1 (redirect not followed)", len(g.requests()), len(call.Attempts))
	}
}

// TestReprovisionOptions: the options given, and only those, go in a JSON
// body (also on a retry); with none there is no body at all.
func TestReprovisionOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		opts     approvals.Options
		wantBody string
	}{
		{"none", approvals.Options{}, ""},
		{"OS", approvals.Options{OSVersion: approvals.OSWindows11}, `{"osVersion":"windows11"}`},
		{"account", approvals.Options{UserAccountType: approvals.AccountStandardUser}, `{"userAccountType":"standardUser"}`},
		{"both", approvals.Options{OSVersion: approvals.OSWindows10, UserAccountType: approvals.AccountAdministrator},
			`{"osVersion":"windows10","userAccountType":"administrator"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGraph(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 0 {
					w.Header().Set("Retry-After", "0")
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.WriteHeader(http.StatusNoContent)
			})
			c := g.client(t, &staticCred{token: testToken}, ClientOptions{})
			if _, err := c.Reprovision(context.Background(), testCloudPC, tc.opts); err != nil {
				t.Fatalf("Reprovision: %v", err)
			}
			reqs := g.requests()
			if len(reqs) != 2 {
				t.Fatalf("graph saw %d requests, want 2 (a 503, then the retry)", len(reqs))
			}
			for i, r := range reqs {
				if r.Body != tc.wantBody {
					t.Errorf("attempt %d: body %q, want %q", i+1, r.Body, tc.wantBody)
				}
				wantType, wantLength := "application/json", int64(len(tc.wantBody))
				if tc.wantBody == "" {
					wantType = ""
				}
				if r.ContentType != wantType || r.ContentLength != wantLength {
					t.Errorf("attempt %d: Content-Type %q, Content-Length %d; want %q, %d", i+1, r.ContentType, r.ContentLength, wantType, wantLength)
				}
			}
		})
	}
}

func TestReprovisionRefusesUnknownOptions(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, noContent)
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{})
	for _, opts := range []approvals.Options{{OSVersion: "windows7"}, {UserAccountType: `admin","x":"`}} {
		if _, err := c.Reprovision(context.Background(), testCloudPC, opts); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Reprovision with %+v: %v, want ErrInvalidOptions", opts, err)
		}
	}
	if n := len(g.requests()); n != 0 {
		t.Errorf("graph saw %d requests, want none", n)
	}
}

// A negative RetryDelay means no backoff. azcore reads a zero RetryDelay as an overflow
// and would wait MaxRetryDelay (60s) instead; the context's 20s would run out first.
func TestNegativeRetryDelayMeansNoDelay(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]any{"code": "ServiceUnavailable", "message": "busy"}})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{RetryDelay: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := c.Reprovision(ctx, testCloudPC, approvals.Options{})
	if err != nil || len(call.Attempts) != 2 {
		t.Fatalf("err %v, attempts %+v", err, call.Attempts)
	}
}
