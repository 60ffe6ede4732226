package graph

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// Sign-in outcomes: the approvals package's own errors, so that SignIn's errors match
// the approvals.SignIns port. SignIn returns errors for which errors.Is reports one of
// these; the returned error also wraps the azidentity error that ended the sign-in.
var (
	// ErrSignInDeclined: the approver refused the sign-in on the Entra page
	// (OAuth error "authorization_declined", or RFC 8628's "access_denied").
	ErrSignInDeclined = approvals.ErrSignInDeclined
	// ErrSignInExpired: the device code expired before the approver finished signing in.
	ErrSignInExpired = approvals.ErrSignInExpired
)

// ErrInvalidCloudPCID is wrapped by the error Reprovision returns, without sending
// anything, when the Cloud PC id is not a GUID.
var ErrInvalidCloudPCID = errors.New("graph: Cloud PC id is not a GUID")

// ErrInvalidOptions: a reprovision option is not one of Graph's values.
var ErrInvalidOptions = errors.New("graph: invalid reprovision options")

// ErrAnswerTooLarge is Error.Err when Graph's response body was longer than
// MaxAnswerBytes: the client stops reading there and drops what it read. On a 2xx to a
// lookup the call fails (Error.StatusCode is the 2xx; classified as a bad answer); on
// any other status the error keeps that status, without Graph's code and message. A 2xx
// to Reprovision is a success whatever its body (the body is never read).
var ErrAnswerTooLarge = errors.New("graph: the answer was larger than 1 MiB")

// signInError classifies a failed sign-in (kind is ErrSignInDeclined or ErrSignInExpired)
// and keeps the azidentity error that ended it.
type signInError struct {
	kind error
	err  error
}

func (e *signInError) Error() string {
	// azidentity's messages are multi-line dumps of the HTTP response; the first line is enough.
	msg := e.err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return "graph: " + e.kind.Error() + ": " + strings.TrimSpace(msg)
}

func (e *signInError) Unwrap() []error { return []error{e.kind, e.err} }

// Error is returned by Reprovision and the lookups when Graph refused the request or the
// call failed after the request was built. Use OutcomeUnknown to decide whether the Cloud PC may be being
// reprovisioned anyway.
type Error struct {
	// Method is the request's HTTP method ("" is treated like POST: not safe to resend).
	Method string
	// StatusCode is the HTTP status of the last attempt; 0 if that attempt got no response
	// (or if no attempt was made: see Err).
	StatusCode int
	// Code and Message come from Graph's {"error":{"code","message",...}} body.
	Code, Message string
	// RequestID, ClientRequestID and Date come from the body's innerError, falling back to
	// the response's request-id, client-request-id and Date headers, and (for
	// ClientRequestID) to the value this client sent on the last attempt.
	RequestID, ClientRequestID, Date string
	// Claims is set when the response is 401 or 403 with WWW-Authenticate carrying
	// error="insufficient_claims": the approver must sign in again (pass Claims to
	// Authenticator.SignInWithClaims). It holds the decoded claims JSON (the raw header
	// value if it is not valid base64).
	Claims string
	// Err is the transport, timeout, context or token-acquisition error, if any, or why
	// a 2xx answer could not be used (body unreadable or not the expected JSON), or
	// ErrAnswerTooLarge when the body (of any status) was longer than MaxAnswerBytes.
	Err error
	// Attempts is how many HTTP attempts the request made (retries = Attempts-1); 0 when
	// nothing was sent. For a paged list it counts the failing page's request only.
	Attempts int

	// sent is meaningful only when StatusCode is 0: whether the last attempt may have been
	// (partly) written to the connection.
	sent bool
}

// Error describes the failure: status, Graph code and message, request ids. It never
// contains a token (Graph error bodies and transport errors do not carry one, and the
// request headers are not included).
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("graph: ")
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, "HTTP %d", e.StatusCode)
		if t := http.StatusText(e.StatusCode); t != "" {
			b.WriteString(" " + t)
		}
	} else {
		b.WriteString("no response")
	}
	if e.Code != "" {
		b.WriteString(": " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Claims != "" {
		b.WriteString(" (claims challenge: sign in again)")
	}
	if e.Err != nil {
		msg := e.Err.Error()
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		b.WriteString(": " + strings.TrimSpace(msg))
	}
	if e.RequestID != "" {
		b.WriteString(" [request-id " + e.RequestID + "]")
	}
	if e.ClientRequestID != "" {
		b.WriteString(" [client-request-id " + e.ClientRequestID + "]")
	}
	if e.OutcomeUnknown() {
		b.WriteString(" (outcome unknown: the request may have been carried out)")
	}
	return b.String()
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// OutcomeUnknown reports whether the reprovision may have been carried out although the
// call failed, so the caller must not report "not done" and must not resend blindly; it
// should check the Cloud PC's state instead. Only the last HTTP attempt matters (the
// client retries only after 429 or 503, which Graph sends without acting, and the bearer
// policy resends only after a 401). It is true when:
//
//   - the last attempt got no HTTP response (timeout, cancellation, connection reset...)
//     after the request may have been written: the transport reported writing the request
//     headers, or the transport gives no such report (a custom Transporter); it is false
//     when the connection could not be set up (dial or TLS failure) and nothing was
//     written, and when no attempt was made at all (invalid id, token failure, context
//     already done);
//   - the last attempt got a 5xx other than 503 (500, 502, 504...): Graph or a gateway
//     failed after the request arrived.
//
// It is false for every 2xx/3xx/4xx answer (Graph refused, including 408 and a 429 whose
// Retry-After exceeds MaxRetryDelay) and for 503, even after the retries ran out. It is
// always false for a GET (Method "GET"): a lookup changes nothing.
func (e *Error) OutcomeUnknown() bool {
	if safeMethod(e.Method) {
		return false
	}
	if e.StatusCode == 0 {
		return e.sent
	}
	return e.StatusCode >= 500 && e.StatusCode != http.StatusServiceUnavailable
}

// SignInRequired reports whether the delegated token was refused or could not be
// obtained without the approver signing in again: a claims challenge, any 401, or the
// credential needing interaction (azidentity.AuthenticationRequiredError).
func (e *Error) SignInRequired() bool {
	var are *azidentity.AuthenticationRequiredError
	return e.Claims != "" || e.StatusCode == http.StatusUnauthorized || errors.As(e.Err, &are)
}

// safeMethod reports whether method is a read-only HTTP method.
func safeMethod(method string) bool {
	m := strings.ToUpper(strings.TrimSpace(method))
	return m == http.MethodGet || m == http.MethodHead
}
