package bot

import (
	"fmt"
	"net/http"
	"strings"
	"unicode"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// graphErrorText tells people, in one mrkdwn sentence, why a Graph call failed and what
// they can do: the sentence for e's kind and cause, then Graph's code and request-id (in
// code spans) and its message (in quotes, &, < and > escaped) when there are any, then a
// full stop. nil gives "".
func graphErrorText(e *approvals.GraphError) string {
	if e == nil {
		return ""
	}
	return graphTextDetails(graphTextBase(e), e) + "."
}

// graphTextNothingSent ends the sentences for calls that never reached Graph.
const graphTextNothingSent = "; nothing was sent to Microsoft Graph"

// graphTextBase is the sentence for e's kind and cause, without Graph's details.
func graphTextBase(e *approvals.GraphError) string {
	status := fmt.Sprintf("HTTP %d", e.Status)
	switch e.Cause {
	case approvals.CauseTokenExpired:
		return "The approver's sign-in can no longer be used: they must sign in again" + graphTextNothingSent
	case approvals.CauseInvalidID:
		return "That is not a valid Cloud PC id (a GUID is expected)" + graphTextNothingSent
	case approvals.CauseInvalidTarget:
		return "That is not a valid device name or user principal name" + graphTextNothingSent
	case approvals.CauseUntrustedLink:
		return "Microsoft Graph pointed the next page of results to another address, which was not followed, so the list is incomplete"
	case approvals.CauseTooManyPages:
		if e.Pages > 0 {
			return fmt.Sprintf("Microsoft Graph returned more than %d pages of results, so the list is incomplete; use a more precise name", e.Pages)
		}
		return "Microsoft Graph returned too many pages of results, so the list is incomplete; use a more precise name"
	case approvals.CauseNotSent:
		return "Stopped before contacting Microsoft Graph (canceled or timed out)" + graphTextNothingSent
	case approvals.CauseUnexpected:
		return "The call to Microsoft Graph failed"
	case approvals.CauseClaimsChallenge:
		return "Microsoft Graph asks for a fresh sign-in (Conditional Access or a revoked session): the approver must sign in again"
	case approvals.CauseUnauthorized:
		return "Microsoft Graph did not accept the approver's sign-in (" + status + "): they must sign in again"
	case approvals.CauseForbidden:
		return "Microsoft Graph refused the approver's access (" + status + "): they must sign in again with an account that has the Windows 365 administrator role"
	case approvals.CauseNotFound:
		return "Microsoft Graph has no such Cloud PC (" + status + "); it may have been deleted"
	case approvals.CauseConflict:
		return "Microsoft Graph refused (" + status + "): the Cloud PC's current state does not allow it"
	case approvals.CauseThrottled:
		return graphTextThrottled(e, status)
	case approvals.CauseNoAnswer:
		if e.Kind == approvals.GraphOutcomeUnknown {
			return "No answer from Microsoft Graph (timeout or dropped connection): it may have been accepted; check the Cloud PC before trying again"
		}
		return "No answer from Microsoft Graph (timeout or dropped connection)" + graphTextAfterRetries(e.Retries) + "; try again later"
	case approvals.CauseServerError:
		if e.Kind == approvals.GraphOutcomeUnknown {
			return "Microsoft Graph failed (" + status + "): it may have been accepted; check the Cloud PC before trying again"
		}
		return "Microsoft Graph failed (" + status + ")" + graphTextAfterRetries(e.Retries) + "; try again later"
	case approvals.CauseNoToken:
		return "Could not get a Microsoft Graph token for the approver" + graphTextNothingSent
	case approvals.CauseUnreachable:
		return "Could not reach Microsoft Graph" + graphTextNothingSent
	case approvals.CauseBadAnswer:
		return "Microsoft Graph's answer could not be understood"
	case approvals.CauseRefused:
		if t := http.StatusText(e.Status); t != "" {
			return "Microsoft Graph refused the request (" + status + " " + t + ")"
		}
		return "Microsoft Graph refused the request (" + status + ")"
	}
	return graphTextByKind(e)
}

// graphTextThrottled is the sentence for a call Graph kept refusing as busy (429/503).
func graphTextThrottled(e *approvals.GraphError, status string) string {
	text := "Microsoft Graph is busy (" + status + "); "
	switch e.Retries {
	case 0:
		text += "it asked to wait longer than allowed, so it was not retried"
	case 1:
		text += "waited and retried once"
	default:
		text += fmt.Sprintf("waited and retried %d times", e.Retries)
	}
	if !graphTextSafe(e.Method) {
		text += ", and nothing was done"
	}
	return text + "; try again in a few minutes"
}

// graphTextByKind is the sentence for an error without a cause this version knows: what
// its kind says can be done.
func graphTextByKind(e *approvals.GraphError) string {
	status := ""
	if e.Status != 0 {
		status = fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	switch e.Kind {
	case approvals.GraphSignInAgain:
		return "Microsoft Graph did not accept the approver's sign-in" + status + ": they must sign in again"
	case approvals.GraphNotFound:
		return "Microsoft Graph has no such Cloud PC" + status + "; it may have been deleted"
	case approvals.GraphConflict:
		return "Microsoft Graph refused" + status + ": the Cloud PC's current state does not allow it"
	case approvals.GraphThrottled:
		return "Microsoft Graph is busy" + status + "; try again in a few minutes"
	case approvals.GraphOutcomeUnknown:
		return "The call to Microsoft Graph failed" + status + ": it may have been accepted; check the Cloud PC before trying again"
	case approvals.GraphInvalid:
		return "That is not a valid Cloud PC id, device name or user principal name" + graphTextNothingSent
	}
	return "The call to Microsoft Graph failed" + status
}

// graphTextSafe reports whether method is read-only; an empty or unknown method is not
// (a POST may have changed something).
func graphTextSafe(method string) bool {
	m := strings.ToUpper(strings.TrimSpace(method))
	return m == http.MethodGet || m == http.MethodHead
}

func graphTextAfterRetries(n int) string {
	switch {
	case n <= 0:
		return ""
	case n == 1:
		return " after 1 retry"
	}
	return fmt.Sprintf(" after %d retries", n)
}

// graphTextDetails appends Graph's code, request-id and message to base, when e has any.
func graphTextDetails(base string, e *approvals.GraphError) string {
	var parts []string
	if code := graphTextToken(e.Code); code != "" {
		parts = append(parts, "Graph code `"+code+"`")
	}
	if id := graphTextToken(e.RequestID); id != "" {
		parts = append(parts, "request-id `"+id+"`")
	}
	msg := ""
	if m := graphTextOneLine(e.Message, 200); m != "" && m != e.Code {
		msg = "“" + escapeText(m) + "”"
	}
	switch {
	case len(parts) > 0 && msg != "":
		return base + " (" + strings.Join(parts, ", ") + ": " + msg + ")"
	case len(parts) > 0:
		return base + " (" + strings.Join(parts, ", ") + ")"
	case msg != "":
		return base + " (" + msg + ")"
	}
	return base
}

// graphTextToken keeps an identifier printable inside a code span: letters, digits and
// ._:- (others dropped), at most 100 characters.
func graphTextToken(s string) string {
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

// graphTextOneLine collapses whitespace and control characters to single spaces and cuts
// s to max runes (with "…"). Package graph already sends one line; this keeps a stored
// outcome from breaking the sentence.
func graphTextOneLine(s string, max int) string {
	fields := strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar })
	out := strings.Join(fields, " ")
	if r := []rune(out); len(r) > max {
		return strings.TrimSpace(string(r[:max])) + "…"
	}
	return out
}
