package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	are := &azidentity.AuthenticationRequiredError{}
	withIDs := func(e Error) *Error {
		if e.Code == "" {
			e.Code = "SomeCode"
		}
		e.RequestID = "req-1"
		return &e
	}
	const (
		signInAgain    = approvals.GraphSignInAgain
		notFound       = approvals.GraphNotFound
		conflict       = approvals.GraphConflict
		throttled      = approvals.GraphThrottled
		outcomeUnknown = approvals.GraphOutcomeUnknown
		invalid        = approvals.GraphInvalid
		failed         = approvals.GraphFailed
	)
	for _, tc := range []struct {
		name    string
		err     error
		method  string
		kind    approvals.GraphErrorKind
		cause   approvals.GraphCause
		as      string // the GraphError's Method
		retries int
	}{
		{"nil", nil, "POST", "", "", "", 0},

		// Sign in again.
		{"claims challenge 401", withIDs(Error{Method: "POST", StatusCode: 401, Claims: `{"a":1}`, Attempts: 1}), "POST", signInAgain, approvals.CauseClaimsChallenge, "POST", 0},
		{"claims challenge 403", withIDs(Error{Method: "GET", StatusCode: 403, Claims: `{}`, Attempts: 1}), "GET", signInAgain, approvals.CauseClaimsChallenge, "GET", 0},
		{"401", withIDs(Error{Method: "GET", StatusCode: 401, Attempts: 1}), "GET", signInAgain, approvals.CauseUnauthorized, "GET", 0},
		{"403 no claims", withIDs(Error{Method: "POST", StatusCode: 403, Attempts: 1}), "POST", signInAgain, approvals.CauseForbidden, "POST", 0},
		{"401 claims unsatisfiable", &Error{Method: "POST", StatusCode: 401, Claims: "{}", Err: are, Attempts: 1}, "POST", signInAgain, approvals.CauseClaimsChallenge, "POST", 0},
		{"AuthenticationRequiredError in *Error", &Error{Method: "POST", Err: are}, "POST", signInAgain, approvals.CauseTokenExpired, "POST", 0},
		{"AuthenticationRequiredError bare", fmt.Errorf("wrapped: %w", are), "GET", signInAgain, approvals.CauseTokenExpired, "GET", 0},
		{"AuthenticationRequiredError with a status", &Error{Method: "GET", StatusCode: 400, Err: are, Attempts: 1}, "GET", signInAgain, approvals.CauseUnauthorized, "GET", 0},

		// Not found.
		{"404 POST", withIDs(Error{Method: "POST", StatusCode: 404, Code: "ResourceNotFound", Attempts: 1}), "POST", notFound, approvals.CauseNotFound, "POST", 0},
		{"404 GET", withIDs(Error{Method: "GET", StatusCode: 404, Attempts: 1}), "GET", notFound, approvals.CauseNotFound, "GET", 0},

		// Conflict.
		{"409", withIDs(Error{Method: "POST", StatusCode: 409, Code: "Conflict", Message: "busy", Attempts: 1}), "POST", conflict, approvals.CauseConflict, "POST", 0},
		{"400 POST", withIDs(Error{Method: "POST", StatusCode: 400, Message: "Cloud PC is not provisioned", Attempts: 1}), "POST", conflict, approvals.CauseConflict, "POST", 0},
		{"409 GET", withIDs(Error{Method: "GET", StatusCode: 409, Attempts: 1}), "GET", conflict, approvals.CauseConflict, "GET", 0},
		{"400 GET is a bad query, not a state", withIDs(Error{Method: "GET", StatusCode: 400, Attempts: 1}), "GET", failed, approvals.CauseRefused, "GET", 0},

		// Throttled.
		{"429 after retries POST", withIDs(Error{Method: "POST", StatusCode: 429, Code: "TooManyRequests", Attempts: 4}), "POST", throttled, approvals.CauseThrottled, "POST", 3},
		{"503 after retries GET", withIDs(Error{Method: "GET", StatusCode: 503, Attempts: 2}), "GET", throttled, approvals.CauseThrottled, "GET", 1},
		{"429 Retry-After too long", withIDs(Error{Method: "POST", StatusCode: 429, Attempts: 1}), "POST", throttled, approvals.CauseThrottled, "POST", 0},

		// Outcome unknown (POST only).
		{"500 POST", withIDs(Error{Method: "POST", StatusCode: 500, Attempts: 1}), "POST", outcomeUnknown, approvals.CauseServerError, "POST", 0},
		{"502 POST", withIDs(Error{Method: "POST", StatusCode: 502, Attempts: 1}), "POST", outcomeUnknown, approvals.CauseServerError, "POST", 0},
		{"504 POST", withIDs(Error{Method: "POST", StatusCode: 504, Attempts: 1}), "POST", outcomeUnknown, approvals.CauseServerError, "POST", 0},
		{"timeout POST", &Error{Method: "POST", Err: context.DeadlineExceeded, sent: true, Attempts: 1, ClientRequestID: "c1"}, "POST", outcomeUnknown, approvals.CauseNoAnswer, "POST", 0},
		{"method unset counts as POST", withIDs(Error{StatusCode: 500}), "POST", outcomeUnknown, approvals.CauseServerError, "POST", 0},
		{"GET argument cannot hide a POST error", withIDs(Error{Method: "POST", StatusCode: 502, Attempts: 1}), "GET", outcomeUnknown, approvals.CauseServerError, "POST", 0},
		{"lower-case post", withIDs(Error{StatusCode: 500, Attempts: 1}), "post", outcomeUnknown, approvals.CauseServerError, "POST", 0},

		// Failed.
		{"500 GET", withIDs(Error{Method: "GET", StatusCode: 500, Attempts: 4}), "GET", failed, approvals.CauseServerError, "GET", 3},
		{"504 GET no retries", withIDs(Error{Method: "GET", StatusCode: 504, Attempts: 1}), "GET", failed, approvals.CauseServerError, "GET", 0},
		{"timeout GET", &Error{Method: "GET", Err: context.DeadlineExceeded, sent: true, Attempts: 2}, "GET", failed, approvals.CauseNoAnswer, "GET", 1},
		{"POST never sent (connection refused)", &Error{Method: "POST", Err: errors.New("dial tcp: connection refused"), sent: false, Attempts: 1}, "POST", failed, approvals.CauseUnreachable, "POST", 0},
		{"POST 408", withIDs(Error{Method: "POST", StatusCode: 408, Attempts: 1}), "POST", failed, approvals.CauseRefused, "POST", 0},
		{"POST 503 alone is throttled, not unknown", withIDs(Error{Method: "POST", StatusCode: 503, Attempts: 4}), "POST", throttled, approvals.CauseThrottled, "POST", 3},
		{"redirect", withIDs(Error{Method: "POST", StatusCode: 307, Attempts: 1}), "POST", failed, approvals.CauseRefused, "POST", 0},
		{"token failure", &Error{Method: "POST", Err: errors.New("no token")}, "POST", failed, approvals.CauseNoToken, "POST", 0},
		{"ctx done before sending (*Error)", &Error{Method: "GET", Err: context.Canceled}, "GET", failed, approvals.CauseNotSent, "GET", 0},
		{"ctx done before sending (bare)", context.Canceled, "POST", failed, approvals.CauseNotSent, "POST", 0},
		{"bad answer", &Error{Method: "GET", StatusCode: 200, RequestID: "req-9", Err: ErrBadAnswer, Attempts: 1}, "GET", failed, approvals.CauseBadAnswer, "GET", 0},
		{"untrusted nextLink", fmt.Errorf("%w (page 1)", ErrUntrustedNextLink), "GET", failed, approvals.CauseUntrustedLink, "GET", 0},
		{"too many pages", fmt.Errorf("%w: more than 20", ErrTooManyPages), "GET", failed, approvals.CauseTooManyPages, "GET", 0},
		{"other error", errors.New("boom"), "GET", failed, approvals.CauseUnexpected, "GET", 0},

		// Invalid input.
		{"invalid id", fmt.Errorf("%w: %q", ErrInvalidCloudPCID, "x"), "POST", invalid, approvals.CauseInvalidID, "POST", 0},
		{"invalid name", fmt.Errorf("%w: %q", ErrInvalidTarget, "x"), "GET", invalid, approvals.CauseInvalidTarget, "GET", 0},
		{"no method at all", errors.New("boom"), "", failed, approvals.CauseUnexpected, "POST", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err, tc.method)
			if tc.err == nil {
				if got != nil {
					t.Errorf("classify(nil) = %+v", got)
				}
				return
			}
			if got == nil {
				t.Fatal("classify = nil")
			}
			if got.Kind != tc.kind || got.Cause != tc.cause {
				t.Errorf("Kind, Cause = %q, %q; want %q, %q", got.Kind, got.Cause, tc.kind, tc.cause)
			}
			if got.Method != tc.as || got.Retries != tc.retries {
				t.Errorf("Method %q, Retries %d; want %q, %d", got.Method, got.Retries, tc.as, tc.retries)
			}
			if got.Err != tc.err || !errors.Is(got, tc.err) {
				t.Errorf("Err = %v, want the original error", got.Err)
			}
			wantPages := 0
			if tc.cause == approvals.CauseTooManyPages {
				wantPages = MaxPages
			}
			if got.Pages != wantPages {
				t.Errorf("Pages = %d, want %d", got.Pages, wantPages)
			}
			var ge *Error
			if !errors.As(tc.err, &ge) {
				if got.Status != 0 || got.Code != "" || got.Message != "" || got.RequestID != "" || got.Claims != "" {
					t.Errorf("facts without a Graph answer: %+v", got)
				}
				return
			}
			if got.Status != ge.StatusCode || got.Code != ge.Code || got.Message != ge.Message || got.RequestID != ge.RequestID || got.Claims != ge.Claims {
				t.Errorf("facts %+v, from %+v", got, ge)
			}
			// Never a token, and no Slack formatting.
			if s := got.Error(); strings.Contains(s, testToken) {
				t.Errorf("Error() = %q", s)
			}
		})
	}
}

func TestClassifyKeepsGraphTextPlain(t *testing.T) {
	t.Parallel()
	e := &Error{Method: "POST", StatusCode: 409, Code: "Con`flict<b>", RequestID: "id <x> & `y`", Attempts: 1,
		Message: "State is <b>busy</b> & <!channel>\nsecond line"}
	got := classify(e, "POST")
	if got.Kind != approvals.GraphConflict || got.Cause != approvals.CauseConflict {
		t.Fatalf("%+v", got)
	}
	// Plain text, one line, not escaped: escaping is the chat adapter's.
	if got.Message != "State is <b>busy</b> & <!channel> second line" || got.Code != "Con`flict<b>" || got.RequestID != "id <x> & `y`" {
		t.Errorf("facts %q, %q, %q", got.Message, got.Code, got.RequestID)
	}
	long := &Error{Method: "GET", StatusCode: 404, Message: strings.Repeat("m", 1000), Code: strings.Repeat("c", 1000), RequestID: strings.Repeat("r", 1000), Attempts: 1}
	g := classify(long, "GET")
	for name, s := range map[string]string{"Message": g.Message, "Code": g.Code, "RequestID": g.RequestID} {
		if n := len([]rune(s)); n > 200 || !strings.HasSuffix(s, "…") {
			t.Errorf("%s is %d runes: %q", name, n, s)
		}
	}
	if g := classify(&approvals.GraphError{Kind: approvals.GraphNotFound}, "POST"); g.Kind != approvals.GraphNotFound {
		t.Errorf("a GraphError is reclassified: %+v", g)
	}
}

// The errors the client really returns classify as the table says.
func TestClassifyRealErrors(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 502, map[string]any{"error": map[string]any{"code": "BadGateway", "message": "upstream <failed>", "innerError": map[string]any{"request-id": "rid-502"}}})
	})
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{MaxRetries: 1, RetryDelay: time.Millisecond})
	_, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	if e := classify(err, http.MethodPost); e.Kind != approvals.GraphOutcomeUnknown || e.Cause != approvals.CauseServerError ||
		e.Status != 502 || e.Code != "BadGateway" || e.RequestID != "rid-502" || e.Message != "upstream <failed>" || e.Retries != 0 {
		t.Errorf("POST 502: %+v", e)
	}
	_, _, err = c.GetCloudPC(context.Background(), testCloudPC)
	if e := classify(err, http.MethodGet); e.Kind != approvals.GraphFailed || e.Cause != approvals.CauseServerError || e.Retries != 1 {
		t.Errorf("GET 502: %+v", e)
	}
	// Even if the caller passes the wrong method, the POST error stays "outcome unknown".
	_, err = c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	if e := classify(err, http.MethodGet); e.Kind != approvals.GraphOutcomeUnknown || e.Method != http.MethodPost {
		t.Errorf("POST error classified as GET: %+v", e)
	}
}
