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
)

func TestExplain(t *testing.T) {
	are := &azidentity.AuthenticationRequiredError{}
	withIDs := func(e Error) *Error {
		if e.Code == "" {
			e.Code = "SomeCode"
		}
		e.RequestID = "req-1"
		return &e
	}
	for _, tc := range []struct {
		name   string
		err    error
		method string
		kind   Kind
		text   []string // substrings the text must contain
	}{
		{"nil", nil, "POST", "", nil},

		// Sign in again.
		{"claims challenge 401", withIDs(Error{Method: "POST", StatusCode: 401, Claims: `{"a":1}`, Attempts: 1}), "POST", KindSignInAgain, []string{"sign in again", "`SomeCode`", "`req-1`"}},
		{"claims challenge 403", withIDs(Error{Method: "GET", StatusCode: 403, Claims: `{}`, Attempts: 1}), "GET", KindSignInAgain, []string{"fresh sign-in"}},
		{"401", withIDs(Error{Method: "GET", StatusCode: 401, Attempts: 1}), "GET", KindSignInAgain, []string{"HTTP 401", "sign in again"}},
		{"403 no claims", withIDs(Error{Method: "POST", StatusCode: 403, Attempts: 1}), "POST", KindSignInAgain, []string{"HTTP 403", "administrator role"}},
		{"401 claims unsatisfiable", &Error{Method: "POST", StatusCode: 401, Claims: "{}", Err: are, Attempts: 1}, "POST", KindSignInAgain, []string{"sign in again"}},
		{"AuthenticationRequiredError in *Error", &Error{Method: "POST", Err: are}, "POST", KindSignInAgain, []string{"nothing was sent"}},
		{"AuthenticationRequiredError bare", fmt.Errorf("wrapped: %w", are), "GET", KindSignInAgain, []string{"sign in again"}},

		// Not found.
		{"404 POST", withIDs(Error{Method: "POST", StatusCode: 404, Code: "ResourceNotFound", Attempts: 1}), "POST", KindNotFound, []string{"no such Cloud PC", "`ResourceNotFound`", "`req-1`"}},
		{"404 GET", withIDs(Error{Method: "GET", StatusCode: 404, Attempts: 1}), "GET", KindNotFound, []string{"HTTP 404"}},

		// Conflict.
		{"409", withIDs(Error{Method: "POST", StatusCode: 409, Code: "Conflict", Message: "busy", Attempts: 1}), "POST", KindConflict, []string{"current state does not allow it", "“busy”"}},
		{"400 POST", withIDs(Error{Method: "POST", StatusCode: 400, Message: "Cloud PC is not provisioned", Attempts: 1}), "POST", KindConflict, []string{"HTTP 400", "not provisioned"}},
		{"409 GET", withIDs(Error{Method: "GET", StatusCode: 409, Attempts: 1}), "GET", KindConflict, nil},
		{"400 GET is a bad query, not a state", withIDs(Error{Method: "GET", StatusCode: 400, Attempts: 1}), "GET", KindFailed, []string{"HTTP 400 Bad Request"}},

		// Throttled.
		{"429 after retries POST", withIDs(Error{Method: "POST", StatusCode: 429, Code: "TooManyRequests", Attempts: 4}), "POST", KindThrottled, []string{"busy", "retried 3 times", "nothing was done", "`TooManyRequests`"}},
		{"503 after retries GET", withIDs(Error{Method: "GET", StatusCode: 503, Attempts: 2}), "GET", KindThrottled, []string{"HTTP 503", "retried once"}},
		{"429 Retry-After too long", withIDs(Error{Method: "POST", StatusCode: 429, Attempts: 1}), "POST", KindThrottled, []string{"not retried"}},

		// Outcome unknown (POST only).
		{"500 POST", withIDs(Error{Method: "POST", StatusCode: 500, Attempts: 1}), "POST", KindOutcomeUnknown, []string{"HTTP 500", "may have been accepted", "check the Cloud PC"}},
		{"502 POST", withIDs(Error{Method: "POST", StatusCode: 502, Attempts: 1}), "POST", KindOutcomeUnknown, nil},
		{"504 POST", withIDs(Error{Method: "POST", StatusCode: 504, Attempts: 1}), "POST", KindOutcomeUnknown, nil},
		{"timeout POST", &Error{Method: "POST", Err: context.DeadlineExceeded, sent: true, Attempts: 1, ClientRequestID: "c1"}, "POST", KindOutcomeUnknown, []string{"No answer", "may have been accepted"}},
		{"method unset counts as POST", withIDs(Error{StatusCode: 500}), "POST", KindOutcomeUnknown, nil},
		{"GET argument cannot hide a POST error", withIDs(Error{Method: "POST", StatusCode: 502, Attempts: 1}), "GET", KindOutcomeUnknown, nil},
		{"lower-case post", withIDs(Error{StatusCode: 500, Attempts: 1}), "post", KindOutcomeUnknown, nil},

		// Failed.
		{"500 GET", withIDs(Error{Method: "GET", StatusCode: 500, Attempts: 4}), "GET", KindFailed, []string{"HTTP 500", "after 3 retries", "try again later"}},
		{"504 GET no retries", withIDs(Error{Method: "GET", StatusCode: 504, Attempts: 1}), "GET", KindFailed, []string{"HTTP 504"}},
		{"timeout GET", &Error{Method: "GET", Err: context.DeadlineExceeded, sent: true, Attempts: 2}, "GET", KindFailed, []string{"No answer", "after 1 retry"}},
		{"POST never sent (connection refused)", &Error{Method: "POST", Err: errors.New("dial tcp: connection refused"), sent: false, Attempts: 1}, "POST", KindFailed, []string{"Could not reach", "nothing was sent"}},
		{"POST 408", withIDs(Error{Method: "POST", StatusCode: 408, Attempts: 1}), "POST", KindFailed, []string{"HTTP 408 Request Timeout"}},
		{"POST 503 alone is throttled, not unknown", withIDs(Error{Method: "POST", StatusCode: 503, Attempts: 4}), "POST", KindThrottled, nil},
		{"redirect", withIDs(Error{Method: "POST", StatusCode: 307, Attempts: 1}), "POST", KindFailed, []string{"HTTP 307"}},
		{"token failure", &Error{Method: "POST", Err: errors.New("no token")}, "POST", KindFailed, []string{"token", "nothing was sent"}},
		{"ctx done before sending (*Error)", &Error{Method: "GET", Err: context.Canceled}, "GET", KindFailed, []string{"Stopped before", "nothing was sent"}},
		{"ctx done before sending (bare)", context.Canceled, "POST", KindFailed, []string{"Stopped before", "nothing was sent"}},
		{"bad answer", &Error{Method: "GET", StatusCode: 200, RequestID: "req-9", Err: ErrBadAnswer, Attempts: 1}, "GET", KindFailed, []string{"could not be understood", "`req-9`"}},
		{"untrusted nextLink", fmt.Errorf("%w (page 1)", ErrUntrustedNextLink), "GET", KindFailed, []string{"not followed"}},
		{"too many pages", fmt.Errorf("%w: more than 20", ErrTooManyPages), "GET", KindFailed, []string{"more than 20 pages"}},
		{"other error", errors.New("boom"), "GET", KindFailed, []string{"failed"}},

		// Invalid input.
		{"invalid id", fmt.Errorf("%w: %q", ErrInvalidCloudPCID, "x"), "POST", KindInvalid, []string{"not a valid Cloud PC id", "nothing was sent"}},
		{"invalid name", fmt.Errorf("%w: %q", ErrInvalidTarget, "x"), "GET", KindInvalid, []string{"nothing was sent"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Explain(tc.err, tc.method)
			if got.Kind != tc.kind {
				t.Errorf("Kind = %q, want %q (text %q)", got.Kind, tc.kind, got.Text)
			}
			if tc.err == nil {
				if got != (Explanation{}) {
					t.Errorf("Explain(nil) = %+v", got)
				}
				return
			}
			for _, want := range tc.text {
				if !strings.Contains(got.Text, want) {
					t.Errorf("Text %q lacks %q", got.Text, want)
				}
			}
			if !strings.HasSuffix(got.Text, ".") || strings.Count(got.Text, ". ") > 0 || strings.ContainsAny(got.Text, "\n<>") {
				t.Errorf("Text is not one plain sentence: %q", got.Text)
			}
			var ge *Error
			if errors.As(tc.err, &ge) {
				if ge.Code != "" && !strings.Contains(got.Text, "`"+ge.Code+"`") {
					t.Errorf("Text %q lacks the code %q", got.Text, ge.Code)
				}
				if ge.RequestID != "" && !strings.Contains(got.Text, "`"+ge.RequestID+"`") {
					t.Errorf("Text %q lacks the request-id %q", got.Text, ge.RequestID)
				}
			}
		})
	}
}

func TestExplainEscapesGraphText(t *testing.T) {
	e := &Error{Method: "POST", StatusCode: 409, Code: "Con`flict<b>", RequestID: "id <x> & `y`", Attempts: 1,
		Message: "State is <b>busy</b> & <!channel>\nsecond line"}
	got := Explain(e, "POST")
	if got.Kind != KindConflict {
		t.Fatalf("%+v", got)
	}
	for _, bad := range []string{"<", ">", "\n", "<!channel>", "& "} {
		if strings.Contains(got.Text, bad) {
			t.Errorf("Text %q contains %q", got.Text, bad)
		}
	}
	for _, want := range []string{"&lt;b&gt;busy&lt;/b&gt; &amp; &lt;!channel&gt; second line", "`Conflictb`", "`idxy`"} {
		if !strings.Contains(got.Text, want) {
			t.Errorf("Text %q lacks %q", got.Text, want)
		}
	}
	long := &Error{Method: "GET", StatusCode: 404, Message: strings.Repeat("m", 1000), Attempts: 1}
	if n := len(Explain(long, "GET").Text); n > 400 {
		t.Errorf("Text is %d bytes long", n)
	}
}

// The errors the client really returns explain as the table says.
func TestExplainRealErrors(t *testing.T) {
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 502, map[string]any{"error": map[string]any{"code": "BadGateway", "message": "upstream <failed>", "innerError": map[string]any{"request-id": "rid-502"}}})
	})
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{MaxRetries: 1, RetryDelay: time.Millisecond})
	_, err := c.Reprovision(context.Background(), testCloudPC)
	if e := Explain(err, http.MethodPost); e.Kind != KindOutcomeUnknown || !strings.Contains(e.Text, "`rid-502`") || !strings.Contains(e.Text, "upstream &lt;failed&gt;") {
		t.Errorf("POST 502: %+v", e)
	}
	_, _, err = c.GetCloudPC(context.Background(), testCloudPC)
	if e := Explain(err, http.MethodGet); e.Kind != KindFailed || !strings.Contains(e.Text, "after 1 retry") {
		t.Errorf("GET 502: %+v", e)
	}
	// Even if the caller passes the wrong method, the POST error stays "outcome unknown".
	_, err = c.Reprovision(context.Background(), testCloudPC)
	if e := Explain(err, http.MethodGet); e.Kind != KindOutcomeUnknown {
		t.Errorf("POST error explained as GET: %+v", e)
	}
}
