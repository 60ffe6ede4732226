package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Kind is what people can do about a failed Graph call.
type Kind string

const (
	// KindSignInAgain: the approver's token was refused or cannot be renewed (401, 403,
	// a claims challenge, azidentity.AuthenticationRequiredError). A 403 without a claims
	// challenge usually means the account lacks the Windows 365 / Intune role: the Text
	// says so.
	KindSignInAgain Kind = "sign_in_again"
	// KindNotFound: Graph has no such Cloud PC (404).
	KindNotFound Kind = "not_found"
	// KindConflict: Graph refused because of the Cloud PC's state (409; 400 on a POST).
	KindConflict Kind = "conflict"
	// KindThrottled: Graph stayed busy (429/503) after the retries; nothing was done.
	KindThrottled Kind = "throttled"
	// KindOutcomeUnknown: a POST may have been carried out (Error.OutcomeUnknown: no
	// answer after the request may have been sent, or a 5xx other than 503). Check the
	// Cloud PC before trying again; never resend blindly.
	KindOutcomeUnknown Kind = "outcome_unknown"
	// KindInvalid: the Cloud PC id, name or UPN is malformed; nothing was sent.
	KindInvalid Kind = "invalid"
	// KindFailed: anything else (5xx or no answer on a GET after its retries, a POST that
	// could not be sent, an unusable answer, a context ended before sending, …).
	KindFailed Kind = "failed"
)

// Explanation is a failed Graph call told to people.
type Explanation struct {
	Kind Kind
	// Text is one sentence for Slack (mrkdwn; everything that came from Graph has &, <
	// and > escaped). It shows Graph's error code and request-id when there are any.
	Text string
}

// Explain maps an error from this package's Client (or the context/credential errors it
// passes through) to what people can act on. method is the HTTP method of the call
// ("POST" for Reprovision, "GET" for the lookups); the call is treated as a POST unless
// both method and the error's own Error.Method (when set) say GET or HEAD, so a mixed-up
// argument can only make the answer more cautious. For a POST, (*Error).OutcomeUnknown
// decides KindOutcomeUnknown. Explain(nil, …) is the zero Explanation.
func Explain(err error, method string) Explanation {
	if err == nil {
		return Explanation{}
	}
	var ge *Error
	isErr := errors.As(err, &ge)
	safe := safeMethod(method) && (!isErr || ge.Method == "" || safeMethod(ge.Method))
	nothingSent := "; nothing was sent to Microsoft Graph"

	var are *azidentity.AuthenticationRequiredError
	switch {
	case errors.As(err, &are) && (!isErr || ge.StatusCode == 0):
		return explained(KindSignInAgain, "The approver's sign-in can no longer be used: they must sign in again"+nothingSent, ge)
	case errors.Is(err, ErrInvalidCloudPCID):
		return explained(KindInvalid, "That is not a valid Cloud PC id (a GUID is expected)"+nothingSent, nil)
	case errors.Is(err, ErrInvalidTarget):
		return explained(KindInvalid, "That is not a valid device name or user principal name"+nothingSent, nil)
	case errors.Is(err, ErrUntrustedNextLink):
		return explained(KindFailed, "Microsoft Graph pointed the next page of results to another address, which was not followed, so the list is incomplete", nil)
	case errors.Is(err, ErrTooManyPages):
		return explained(KindFailed, fmt.Sprintf("Microsoft Graph returned more than %d pages of results, so the list is incomplete; use a more precise name", MaxPages), nil)
	case !isErr:
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return explained(KindFailed, "Stopped before contacting Microsoft Graph (canceled or timed out)"+nothingSent, nil)
		}
		return explained(KindFailed, "The call to Microsoft Graph failed", nil)
	}

	status := ge.StatusCode
	httpStatus := fmt.Sprintf("HTTP %d", status)
	retries := ge.Attempts - 1
	if retries < 0 {
		retries = 0
	}
	switch {
	case ge.Claims != "":
		return explained(KindSignInAgain, "Microsoft Graph asks for a fresh sign-in (Conditional Access or a revoked session): the approver must sign in again", ge)
	case status == http.StatusUnauthorized || errors.As(ge.Err, &are):
		return explained(KindSignInAgain, "Microsoft Graph did not accept the approver's sign-in ("+httpStatus+"): they must sign in again", ge)
	case status == http.StatusForbidden:
		return explained(KindSignInAgain, "Microsoft Graph refused the approver's access ("+httpStatus+"): they must sign in again with an account that has the Windows 365 administrator role", ge)
	case status == http.StatusNotFound:
		return explained(KindNotFound, "Microsoft Graph has no such Cloud PC ("+httpStatus+"); it may have been deleted", ge)
	case status == http.StatusConflict || (status == http.StatusBadRequest && !safe):
		return explained(KindConflict, "Microsoft Graph refused ("+httpStatus+"): the Cloud PC's current state does not allow it", ge)
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		text := "Microsoft Graph is busy (" + httpStatus + "); "
		switch retries {
		case 0:
			text += "it asked to wait longer than allowed, so it was not retried"
		case 1:
			text += "waited and retried once"
		default:
			text += fmt.Sprintf("waited and retried %d times", retries)
		}
		if !safe {
			text += ", and nothing was done"
		}
		return explained(KindThrottled, text+"; try again in a few minutes", ge)
	case !safe && ge.OutcomeUnknown():
		what := "Microsoft Graph failed (" + httpStatus + ")"
		if status == 0 {
			what = "No answer from Microsoft Graph (timeout or dropped connection)"
		}
		return explained(KindOutcomeUnknown, what+": it may have been accepted; check the Cloud PC before trying again", ge)
	case status == 0 && ge.Attempts == 0:
		if errors.Is(ge.Err, context.Canceled) || errors.Is(ge.Err, context.DeadlineExceeded) {
			return explained(KindFailed, "Stopped before contacting Microsoft Graph (canceled or timed out)"+nothingSent, ge)
		}
		return explained(KindFailed, "Could not get a Microsoft Graph token for the approver"+nothingSent, ge)
	case status == 0 && !safe:
		return explained(KindFailed, "Could not reach Microsoft Graph"+nothingSent, ge)
	case status == 0:
		return explained(KindFailed, "No answer from Microsoft Graph (timeout or dropped connection)"+afterRetries(retries)+"; try again later", ge)
	case status >= 200 && status < 300:
		return explained(KindFailed, "Microsoft Graph's answer could not be understood", ge)
	case status >= 500:
		return explained(KindFailed, "Microsoft Graph failed ("+httpStatus+")"+afterRetries(retries)+"; try again later", ge)
	default:
		text := "Microsoft Graph refused the request (" + httpStatus + ")"
		if t := http.StatusText(status); t != "" {
			text = "Microsoft Graph refused the request (" + httpStatus + " " + t + ")"
		}
		return explained(KindFailed, text, ge)
	}
}

func afterRetries(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return " after 1 retry"
	}
	return fmt.Sprintf(" after %d retries", n)
}

// explained finishes the sentence: base, then Graph's code, request-id and message when
// ge has them, then a full stop.
func explained(k Kind, base string, ge *Error) Explanation {
	var parts []string
	var msg string
	if ge != nil {
		if code := token(ge.Code); code != "" {
			parts = append(parts, "Graph code `"+code+"`")
		}
		if id := token(ge.RequestID); id != "" {
			parts = append(parts, "request-id `"+id+"`")
		}
		if m := oneLine(ge.Message, 200); m != "" && m != ge.Code {
			msg = "“" + escapeMrkdwn(m) + "”"
		}
	}
	text := base
	switch {
	case len(parts) > 0 && msg != "":
		text += " (" + strings.Join(parts, ", ") + ": " + msg + ")"
	case len(parts) > 0:
		text += " (" + strings.Join(parts, ", ") + ")"
	case msg != "":
		text += " (" + msg + ")"
	}
	return Explanation{Kind: k, Text: text + "."}
}

// escapeMrkdwn escapes the three characters Slack requires escaped in text.
func escapeMrkdwn(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// token keeps an identifier printable inside a code span: letters, digits and ._:-
// (others dropped), at most 100 characters.
func token(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 100 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == ':' || r == '-' {
			b.WriteRune(r)
		}
	}
	return b.String()
}
