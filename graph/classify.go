package graph

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// maxGraphText bounds Graph's code, message and request-id in a GraphError (runes,
// "…" included).
const maxGraphText = 200

// classify maps an error from this package's Client (or the context/credential errors
// it passes through) to an *approvals.GraphError: what can be done about it (Kind), why
// (Cause) and Graph's facts. It is the only place that decides a Graph error's kind.
//
// method is the HTTP method of the call ("POST" for Reprovision, "GET" for the
// lookups). The call is treated as a POST unless both method and the error's own
// Error.Method (when set) say GET or HEAD, so a mixed-up argument can only make the
// answer more cautious; the GraphError's Method is that verdict ("GET"/"HEAD" when safe,
// otherwise the unsafe method, "POST" when none is known). For a POST,
// (*Error).OutcomeUnknown decides GraphOutcomeUnknown. classify(nil, …) is nil; an
// *approvals.GraphError is returned as it is. The original error is kept in Err.
func classify(err error, method string) *approvals.GraphError {
	if err == nil {
		return nil
	}
	var done *approvals.GraphError
	if errors.As(err, &done) {
		return done
	}
	var ge *Error
	isErr := errors.As(err, &ge)
	safe := safeMethod(method) && (!isErr || ge.Method == "" || safeMethod(ge.Method))
	g := &approvals.GraphError{Method: effectiveMethod(method, ge, safe), Err: err}
	with := func(k approvals.GraphErrorKind, c approvals.GraphCause) *approvals.GraphError {
		g.Kind, g.Cause = k, c
		return g
	}
	if isErr {
		g.Status = ge.StatusCode
		g.Code = oneLine(ge.Code, maxGraphText-1)
		g.Message = oneLine(ge.Message, maxGraphText-1)
		g.RequestID = oneLine(ge.RequestID, maxGraphText-1)
		g.Claims = ge.Claims
		g.Retries = max(ge.Attempts-1, 0)
	}

	var are *azidentity.AuthenticationRequiredError
	switch {
	case errors.As(err, &are) && (!isErr || ge.StatusCode == 0):
		return with(approvals.GraphSignInAgain, approvals.CauseTokenExpired)
	case errors.Is(err, ErrInvalidCloudPCID):
		return with(approvals.GraphInvalid, approvals.CauseInvalidID)
	case errors.Is(err, ErrInvalidTarget):
		return with(approvals.GraphInvalid, approvals.CauseInvalidTarget)
	case errors.Is(err, ErrInvalidPolicy), errors.Is(err, ErrAmbiguousPolicy):
		// approvals has no cause of its own for a policy; the closest one.
		return with(approvals.GraphInvalid, approvals.CauseInvalidTarget)
	case errors.Is(err, ErrPolicyNotFound):
		return with(approvals.GraphNotFound, approvals.CauseNotFound)
	case errors.Is(err, ErrUntrustedNextLink):
		return with(approvals.GraphFailed, approvals.CauseUntrustedLink)
	case errors.Is(err, ErrTooManyPages):
		g.Pages = MaxPages
		return with(approvals.GraphFailed, approvals.CauseTooManyPages)
	case !isErr:
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return with(approvals.GraphFailed, approvals.CauseNotSent)
		}
		return with(approvals.GraphFailed, approvals.CauseUnexpected)
	}

	status := ge.StatusCode
	switch {
	case ge.Claims != "":
		return with(approvals.GraphSignInAgain, approvals.CauseClaimsChallenge)
	case status == http.StatusUnauthorized || errors.As(ge.Err, &are):
		return with(approvals.GraphSignInAgain, approvals.CauseUnauthorized)
	case status == http.StatusForbidden:
		return with(approvals.GraphSignInAgain, approvals.CauseForbidden)
	case status == http.StatusNotFound:
		return with(approvals.GraphNotFound, approvals.CauseNotFound)
	case status == http.StatusConflict || (status == http.StatusBadRequest && !safe):
		return with(approvals.GraphConflict, approvals.CauseConflict)
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		return with(approvals.GraphThrottled, approvals.CauseThrottled)
	case !safe && ge.OutcomeUnknown():
		if status == 0 {
			return with(approvals.GraphOutcomeUnknown, approvals.CauseNoAnswer)
		}
		return with(approvals.GraphOutcomeUnknown, approvals.CauseServerError)
	case status == 0 && ge.Attempts == 0:
		if errors.Is(ge.Err, context.Canceled) || errors.Is(ge.Err, context.DeadlineExceeded) {
			return with(approvals.GraphFailed, approvals.CauseNotSent)
		}
		return with(approvals.GraphFailed, approvals.CauseNoToken)
	case status == 0 && !safe:
		return with(approvals.GraphFailed, approvals.CauseUnreachable)
	case status == 0:
		return with(approvals.GraphFailed, approvals.CauseNoAnswer)
	case status >= 200 && status < 300:
		// A lookup's 2xx that cannot be used: not the expected JSON (ErrBadAnswer) or
		// longer than MaxAnswerBytes (ErrAnswerTooLarge). A POST's 2xx is no error. An
		// over-long error body keeps its status's classification above or below.
		return with(approvals.GraphFailed, approvals.CauseBadAnswer)
	case status >= 500:
		return with(approvals.GraphFailed, approvals.CauseServerError)
	default:
		return with(approvals.GraphFailed, approvals.CauseRefused)
	}
}

// effectiveMethod is the method classify judged the call by: the read-only method when
// safe, otherwise the first unsafe method known (the error's own, then the argument),
// and POST when neither names one.
func effectiveMethod(method string, ge *Error, safe bool) string {
	norm := func(m string) string { return strings.ToUpper(strings.TrimSpace(m)) }
	if safe {
		return norm(method)
	}
	if ge != nil && ge.Method != "" && !safeMethod(ge.Method) {
		return norm(ge.Method)
	}
	if m := norm(method); m != "" && !safeMethod(m) {
		return m
	}
	return http.MethodPost
}
