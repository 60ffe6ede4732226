package bot

import (
	"strings"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// The sentences people see for each failed Graph call (they are the ones package graph's
// Explain produced before the errors became data).
func TestGraphErrorText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  approvals.GraphError
		want string
	}{
		{"claims challenge 401", approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: approvals.CauseClaimsChallenge, Method: "POST", Status: 401, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph asks for a fresh sign-in (Conditional Access or a revoked session): the approver must sign in again (Graph code `SomeCode`, request-id `req-1`)."},
		{"claims challenge 403", approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: approvals.CauseClaimsChallenge, Method: "GET", Status: 403, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph asks for a fresh sign-in (Conditional Access or a revoked session): the approver must sign in again (Graph code `SomeCode`, request-id `req-1`)."},
		{"401", approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: approvals.CauseUnauthorized, Method: "GET", Status: 401, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph did not accept the approver's sign-in (HTTP 401): they must sign in again (Graph code `SomeCode`, request-id `req-1`)."},
		{"403 no claims", approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: approvals.CauseForbidden, Method: "POST", Status: 403, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph refused the approver's access (HTTP 403): they must sign in again with an account that has the Windows 365 administrator role (Graph code `SomeCode`, request-id `req-1`)."},
		{"401 claims unsatisfiable", approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: approvals.CauseClaimsChallenge, Method: "POST", Status: 401},
			"Microsoft Graph asks for a fresh sign-in (Conditional Access or a revoked session): the approver must sign in again."},
		{"AuthenticationRequiredError in *Error", approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: approvals.CauseTokenExpired, Method: "POST"},
			"The approver's sign-in can no longer be used: they must sign in again; nothing was sent to Microsoft Graph."},
		{"AuthenticationRequiredError bare", approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: approvals.CauseTokenExpired, Method: "GET"},
			"The approver's sign-in can no longer be used: they must sign in again; nothing was sent to Microsoft Graph."},
		{"404 POST", approvals.GraphError{Kind: approvals.GraphNotFound, Cause: approvals.CauseNotFound, Method: "POST", Status: 404, Code: "ResourceNotFound", RequestID: "req-1"},
			"Microsoft Graph has no such Cloud PC (HTTP 404); it may have been deleted (Graph code `ResourceNotFound`, request-id `req-1`)."},
		{"404 GET", approvals.GraphError{Kind: approvals.GraphNotFound, Cause: approvals.CauseNotFound, Method: "GET", Status: 404, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph has no such Cloud PC (HTTP 404); it may have been deleted (Graph code `SomeCode`, request-id `req-1`)."},
		{"409", approvals.GraphError{Kind: approvals.GraphConflict, Cause: approvals.CauseConflict, Method: "POST", Status: 409, Code: "Conflict", Message: "busy", RequestID: "req-1"},
			"Microsoft Graph refused (HTTP 409): the Cloud PC's current state does not allow it (Graph code `Conflict`, request-id `req-1`: “busy”)."},
		{"400 POST", approvals.GraphError{Kind: approvals.GraphConflict, Cause: approvals.CauseConflict, Method: "POST", Status: 400, Code: "SomeCode", Message: "Cloud PC is not provisioned", RequestID: "req-1"},
			"Microsoft Graph refused (HTTP 400): the Cloud PC's current state does not allow it (Graph code `SomeCode`, request-id `req-1`: “Cloud PC is not provisioned”)."},
		{"409 GET", approvals.GraphError{Kind: approvals.GraphConflict, Cause: approvals.CauseConflict, Method: "GET", Status: 409, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph refused (HTTP 409): the Cloud PC's current state does not allow it (Graph code `SomeCode`, request-id `req-1`)."},
		{"400 GET is a bad query, not a state", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseRefused, Method: "GET", Status: 400, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph refused the request (HTTP 400 Bad Request) (Graph code `SomeCode`, request-id `req-1`)."},
		{"429 after retries POST", approvals.GraphError{Kind: approvals.GraphThrottled, Cause: approvals.CauseThrottled, Method: "POST", Status: 429, Code: "TooManyRequests", RequestID: "req-1", Retries: 3},
			"Microsoft Graph is busy (HTTP 429); waited and retried 3 times, and nothing was done; try again in a few minutes (Graph code `TooManyRequests`, request-id `req-1`)."},
		{"503 after retries GET", approvals.GraphError{Kind: approvals.GraphThrottled, Cause: approvals.CauseThrottled, Method: "GET", Status: 503, Code: "SomeCode", RequestID: "req-1", Retries: 1},
			"Microsoft Graph is busy (HTTP 503); waited and retried once; try again in a few minutes (Graph code `SomeCode`, request-id `req-1`)."},
		{"429 Retry-After too long", approvals.GraphError{Kind: approvals.GraphThrottled, Cause: approvals.CauseThrottled, Method: "POST", Status: 429, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph is busy (HTTP 429); it asked to wait longer than allowed, so it was not retried, and nothing was done; try again in a few minutes (Graph code `SomeCode`, request-id `req-1`)."},
		{"500 POST", approvals.GraphError{Kind: approvals.GraphOutcomeUnknown, Cause: approvals.CauseServerError, Method: "POST", Status: 500, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph failed (HTTP 500): it may have been accepted; check the Cloud PC before trying again (Graph code `SomeCode`, request-id `req-1`)."},
		{"502 POST", approvals.GraphError{Kind: approvals.GraphOutcomeUnknown, Cause: approvals.CauseServerError, Method: "POST", Status: 502, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph failed (HTTP 502): it may have been accepted; check the Cloud PC before trying again (Graph code `SomeCode`, request-id `req-1`)."},
		{"504 POST", approvals.GraphError{Kind: approvals.GraphOutcomeUnknown, Cause: approvals.CauseServerError, Method: "POST", Status: 504, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph failed (HTTP 504): it may have been accepted; check the Cloud PC before trying again (Graph code `SomeCode`, request-id `req-1`)."},
		{"timeout POST", approvals.GraphError{Kind: approvals.GraphOutcomeUnknown, Cause: approvals.CauseNoAnswer, Method: "POST"},
			"No answer from Microsoft Graph (timeout or dropped connection): it may have been accepted; check the Cloud PC before trying again."},
		{"method unset counts as POST", approvals.GraphError{Kind: approvals.GraphOutcomeUnknown, Cause: approvals.CauseServerError, Method: "POST", Status: 500, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph failed (HTTP 500): it may have been accepted; check the Cloud PC before trying again (Graph code `SomeCode`, request-id `req-1`)."},
		{"GET argument cannot hide a POST error", approvals.GraphError{Kind: approvals.GraphOutcomeUnknown, Cause: approvals.CauseServerError, Method: "POST", Status: 502, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph failed (HTTP 502): it may have been accepted; check the Cloud PC before trying again (Graph code `SomeCode`, request-id `req-1`)."},
		{"lower-case post", approvals.GraphError{Kind: approvals.GraphOutcomeUnknown, Cause: approvals.CauseServerError, Method: "POST", Status: 500, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph failed (HTTP 500): it may have been accepted; check the Cloud PC before trying again (Graph code `SomeCode`, request-id `req-1`)."},
		{"500 GET", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseServerError, Method: "GET", Status: 500, Code: "SomeCode", RequestID: "req-1", Retries: 3},
			"Microsoft Graph failed (HTTP 500) after 3 retries; try again later (Graph code `SomeCode`, request-id `req-1`)."},
		{"504 GET no retries", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseServerError, Method: "GET", Status: 504, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph failed (HTTP 504); try again later (Graph code `SomeCode`, request-id `req-1`)."},
		{"timeout GET", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseNoAnswer, Method: "GET", Retries: 1},
			"No answer from Microsoft Graph (timeout or dropped connection) after 1 retry; try again later."},
		{"POST never sent (connection refused)", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseUnreachable, Method: "POST"},
			"Could not reach Microsoft Graph; nothing was sent to Microsoft Graph."},
		{"POST 408", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseRefused, Method: "POST", Status: 408, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph refused the request (HTTP 408 Request Timeout) (Graph code `SomeCode`, request-id `req-1`)."},
		{"POST 503 alone is throttled, not unknown", approvals.GraphError{Kind: approvals.GraphThrottled, Cause: approvals.CauseThrottled, Method: "POST", Status: 503, Code: "SomeCode", RequestID: "req-1", Retries: 3},
			"Microsoft Graph is busy (HTTP 503); waited and retried 3 times, and nothing was done; try again in a few minutes (Graph code `SomeCode`, request-id `req-1`)."},
		{"redirect", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseRefused, Method: "POST", Status: 307, Code: "SomeCode", RequestID: "req-1"},
			"Microsoft Graph refused the request (HTTP 307 Temporary Redirect) (Graph code `SomeCode`, request-id `req-1`)."},
		{"token failure", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseNoToken, Method: "POST"},
			"Could not get a Microsoft Graph token for the approver; nothing was sent to Microsoft Graph."},
		{"ctx done before sending (*Error)", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseNotSent, Method: "GET"},
			"Stopped before contacting Microsoft Graph (canceled or timed out); nothing was sent to Microsoft Graph."},
		{"ctx done before sending (bare)", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseNotSent, Method: "POST"},
			"Stopped before contacting Microsoft Graph (canceled or timed out); nothing was sent to Microsoft Graph."},
		{"bad answer", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseBadAnswer, Method: "GET", Status: 200, RequestID: "req-9"},
			"Microsoft Graph's answer could not be understood (request-id `req-9`)."},
		{"untrusted nextLink", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseUntrustedLink, Method: "GET"},
			"Microsoft Graph pointed the next page of results to another address, which was not followed, so the list is incomplete."},
		{"too many pages", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseTooManyPages, Method: "GET", Pages: 20},
			"Microsoft Graph returned more than 20 pages of results, so the list is incomplete; use a more precise name."},
		{"other error", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseUnexpected, Method: "GET"},
			"The call to Microsoft Graph failed."},
		{"invalid id", approvals.GraphError{Kind: approvals.GraphInvalid, Cause: approvals.CauseInvalidID, Method: "POST"},
			"That is not a valid Cloud PC id (a GUID is expected); nothing was sent to Microsoft Graph."},
		{"invalid name", approvals.GraphError{Kind: approvals.GraphInvalid, Cause: approvals.CauseInvalidTarget, Method: "GET"},
			"That is not a valid device name or user principal name; nothing was sent to Microsoft Graph."},

		// Graph's message equal to its code is said once.
		{"message is the code", approvals.GraphError{Kind: approvals.GraphNotFound, Cause: approvals.CauseNotFound, Method: "GET", Status: 404, Code: "NotFound", Message: "NotFound"},
			"Microsoft Graph has no such Cloud PC (HTTP 404); it may have been deleted (Graph code `NotFound`)."},
		{"message only", approvals.GraphError{Kind: approvals.GraphConflict, Cause: approvals.CauseConflict, Method: "POST", Status: 409, Message: "busy"},
			"Microsoft Graph refused (HTTP 409): the Cloud PC's current state does not allow it (“busy”)."},
		{"status without a text", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseRefused, Method: "GET", Status: 499},
			"Microsoft Graph refused the request (HTTP 499)."},
		{"GET throttled, not retried", approvals.GraphError{Kind: approvals.GraphThrottled, Cause: approvals.CauseThrottled, Method: "GET", Status: 429},
			"Microsoft Graph is busy (HTTP 429); it asked to wait longer than allowed, so it was not retried; try again in a few minutes."},
		{"throttled, method unknown", approvals.GraphError{Kind: approvals.GraphThrottled, Cause: approvals.CauseThrottled, Status: 503, Retries: 2},
			"Microsoft Graph is busy (HTTP 503); waited and retried 2 times, and nothing was done; try again in a few minutes."},
		{"too many pages, no count", approvals.GraphError{Kind: approvals.GraphFailed, Cause: approvals.CauseTooManyPages, Method: "GET"},
			"Microsoft Graph returned too many pages of results, so the list is incomplete; use a more precise name."},

		// A cause this version does not know: the kind decides.
		{"unknown cause, sign in again", approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: "new", Status: 401},
			"Microsoft Graph did not accept the approver's sign-in (HTTP 401): they must sign in again."},
		{"no cause, not found", approvals.GraphError{Kind: approvals.GraphNotFound},
			"Microsoft Graph has no such Cloud PC; it may have been deleted."},
		{"no cause, conflict", approvals.GraphError{Kind: approvals.GraphConflict, Status: 409},
			"Microsoft Graph refused (HTTP 409): the Cloud PC's current state does not allow it."},
		{"no cause, throttled", approvals.GraphError{Kind: approvals.GraphThrottled, Status: 429},
			"Microsoft Graph is busy (HTTP 429); try again in a few minutes."},
		{"no cause, outcome unknown", approvals.GraphError{Kind: approvals.GraphOutcomeUnknown, RequestID: "r-1"},
			"The call to Microsoft Graph failed: it may have been accepted; check the Cloud PC before trying again (request-id `r-1`)."},
		{"no cause, invalid", approvals.GraphError{Kind: approvals.GraphInvalid},
			"That is not a valid Cloud PC id, device name or user principal name; nothing was sent to Microsoft Graph."},
		{"nothing known", approvals.GraphError{},
			"The call to Microsoft Graph failed."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := graphErrorText(&tc.err)
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			if !strings.HasSuffix(got, ".") || strings.Contains(got, ". ") || strings.ContainsAny(got, "\n<>") {
				t.Errorf("not one plain sentence: %q", got)
			}
		})
	}
	if got := graphErrorText(nil); got != "" {
		t.Errorf("graphErrorText(nil) = %q", got)
	}
}

func TestGraphErrorTextEscapesGraphText(t *testing.T) {
	t.Parallel()
	e := &approvals.GraphError{Kind: approvals.GraphConflict, Cause: approvals.CauseConflict, Method: "POST", Status: 409,
		Code: "Con`flict<b>", RequestID: "id <x> & `y`", Message: "State is <b>busy</b> & <!channel> second line"}
	got := graphErrorText(e)
	want := "Microsoft Graph refused (HTTP 409): the Cloud PC's current state does not allow it (Graph code `Conflictb`, request-id `idxy`: " +
		"“State is &lt;b&gt;busy&lt;/b&gt; &amp; &lt;!channel&gt; second line”)."
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	for _, bad := range []string{"<", ">", "\n", "<!channel>", "& "} {
		if strings.Contains(got, bad) {
			t.Errorf("text %q contains %q", got, bad)
		}
	}

	// A message stored by an older version may still hold line breaks or be long.
	stored := &approvals.GraphError{Kind: approvals.GraphNotFound, Cause: approvals.CauseNotFound, Method: "GET", Status: 404,
		Message: "first\n\tsecond \x00 line", Code: strings.Repeat("c", 300), RequestID: strings.Repeat("r", 300)}
	got = graphErrorText(stored)
	if !strings.Contains(got, "“first second line”") || strings.Contains(got, strings.Repeat("c", 101)) || strings.Contains(got, strings.Repeat("r", 101)) {
		t.Errorf("stored: %q", got)
	}
	long := &approvals.GraphError{Kind: approvals.GraphNotFound, Cause: approvals.CauseNotFound, Method: "GET", Status: 404, Message: strings.Repeat("m", 1000)}
	if n := len(graphErrorText(long)); n > 400 {
		t.Errorf("text is %d bytes long", n)
	}
}
