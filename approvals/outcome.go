package approvals

import (
	"encoding/json"
	"fmt"
	"strings"
)

// GraphErrorKind is what can be done about a failed Graph call.
type GraphErrorKind string

const (
	// GraphSignInAgain: the approver's token was refused or cannot be
	// renewed (401, 403, a claims challenge): they must sign in again.
	GraphSignInAgain GraphErrorKind = "sign_in_again"
	// GraphNotFound: Graph has no such Cloud PC (404).
	GraphNotFound GraphErrorKind = "not_found"
	// GraphConflict: the Cloud PC's state does not allow it (409; 400 on a POST).
	GraphConflict GraphErrorKind = "conflict"
	// GraphThrottled: Graph stayed busy (429/503) after the retries; nothing was done.
	GraphThrottled GraphErrorKind = "throttled"
	// GraphOutcomeUnknown: a POST may have been carried out (no answer after
	// it may have been sent, or a 5xx other than 503). Never resend blindly.
	GraphOutcomeUnknown GraphErrorKind = "outcome_unknown"
	// GraphInvalid: the id, name or UPN is malformed; nothing was sent.
	GraphInvalid GraphErrorKind = "invalid"
	// GraphFailed: anything else.
	GraphFailed GraphErrorKind = "failed"
)

// GraphCause is the finer reason behind a GraphErrorKind, for the words
// people are shown.
type GraphCause string

const (
	CauseTokenExpired    GraphCause = "token_expired"      // the sign-in cannot be renewed without the approver
	CauseClaimsChallenge GraphCause = "claims_challenge"   // Conditional Access asks for a fresh sign-in
	CauseUnauthorized    GraphCause = "unauthorized"       // 401
	CauseForbidden       GraphCause = "forbidden"          // 403: usually a missing role
	CauseNotFound        GraphCause = "not_found"          // 404
	CauseConflict        GraphCause = "conflict"           // 409, or 400 on a POST
	CauseThrottled       GraphCause = "throttled"          // 429/503 after the retries (Retries says how many)
	CauseNoAnswer        GraphCause = "no_answer"          // timeout or dropped connection (Status 0)
	CauseServerError     GraphCause = "server_error"       // 5xx
	CauseInvalidID       GraphCause = "invalid_id"         // not a GUID; nothing sent
	CauseInvalidTarget   GraphCause = "invalid_target"     // not a device name or UPN; nothing sent
	CauseUntrustedLink   GraphCause = "untrusted_nextlink" // a page pointed elsewhere; list incomplete
	CauseTooManyPages    GraphCause = "too_many_pages"     // list incomplete (Pages)
	CauseNotSent         GraphCause = "not_sent"           // canceled or timed out before sending
	CauseNoToken         GraphCause = "no_token"           // no token could be had; nothing sent
	CauseUnreachable     GraphCause = "unreachable"        // the POST could not be sent
	CauseBadAnswer       GraphCause = "bad_answer"         // a 2xx that could not be understood
	CauseRefused         GraphCause = "refused"            // any other 4xx
	CauseUnexpected      GraphCause = "unexpected"         // an error of no known shape
)

// GraphError is a failed Graph call as plain facts: no words for people
// (the adapters render them) and never a token.
type GraphError struct {
	Kind  GraphErrorKind `json:"kind"`
	Cause GraphCause     `json:"cause,omitempty"`
	// Method is the call's HTTP method (GET for look-ups, POST for the
	// reprovision).
	Method string `json:"method,omitempty"`
	// Status is the last attempt's HTTP status (0: no response).
	Status int `json:"status,omitempty"`
	// Code, Message and RequestID are Graph's, when it answered.
	Code      string `json:"code,omitempty"`
	Message   string `json:"message,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// Retries is how many times the call was resent (429/503).
	Retries int `json:"retries,omitempty"`
	// Pages is the page limit a list hit (CauseTooManyPages).
	Pages int `json:"pages,omitempty"`
	// Claims is a Conditional Access claims challenge the next sign-in
	// must satisfy. Kept in memory only.
	Claims string `json:"-"`
	// Err is the underlying error, for logs.
	Err error `json:"-"`
}

func (e *GraphError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "graph %s", e.Kind)
	if e.Cause != "" {
		fmt.Fprintf(&b, " (%s)", e.Cause)
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.RequestID != "" {
		b.WriteString(" request-id " + e.RequestID)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *GraphError) Unwrap() error { return e.Err }

// OutcomeKind says why a request ended, or went back to waiting.
type OutcomeKind string

const (
	// OutcomeGraph: Graph answered with an error (Graph).
	OutcomeGraph OutcomeKind = "graph"
	// OutcomeSignInDeclined, …: an approver's sign-in did not complete.
	OutcomeSignInDeclined   OutcomeKind = "sign_in_declined"
	OutcomeSignInExpired    OutcomeKind = "sign_in_expired"
	OutcomeIdentityMismatch OutcomeKind = "identity_mismatch" // SignedInAs, Expected
	// OutcomeSameIdentity: the approver signed in as SignedInAs, whom an
	// earlier approval of the request was signed in as: two approvals must
	// be two people.
	OutcomeSameIdentity      OutcomeKind = "same_identity"
	OutcomeSignInFailed      OutcomeKind = "sign_in_failed"
	OutcomeSignInInterrupted OutcomeKind = "sign_in_interrupted" // the bot stopped during it
	OutcomeSignInStale       OutcomeKind = "sign_in_stale"       // no longer valid at confirmation
	OutcomeSignInUnavailable OutcomeKind = "sign_in_unavailable" // Entra failed or did not answer in time: no code issued
	// OutcomeNoMatch: no Cloud PC matches Target.
	OutcomeNoMatch OutcomeKind = "no_match"
	// OutcomeTooManyMatches: Matches Cloud PCs match Target.
	OutcomeTooManyMatches OutcomeKind = "too_many_matches"
	// OutcomeStatusNotAllowed: the Cloud PC's Status is not one of Allowed.
	OutcomeStatusNotAllowed OutcomeKind = "status_not_allowed"
	// OutcomeOpenElsewhere: CloudPCID has another open request (Other, by
	// OtherRequester; empty when it could not be read).
	OutcomeOpenElsewhere OutcomeKind = "open_elsewhere"
	// OutcomeNotRecorded: the store refused a step; nothing was sent.
	OutcomeNotRecorded OutcomeKind = "not_recorded"
	// OutcomeConfirmationNotSent: the final confirmation could not be sent.
	OutcomeConfirmationNotSent OutcomeKind = "confirmation_not_sent"
	// OutcomeInFlightAtRestart: the process stopped while the call may have
	// been in flight; it was not sent again.
	OutcomeInFlightAtRestart OutcomeKind = "in_flight_at_restart"
	// OutcomeBatchTooLarge: the look-up found more Cloud PCs (Matches) than
	// a batch may have (Max).
	OutcomeBatchTooLarge OutcomeKind = "batch_too_large"
	// OutcomeNothingToSend: none of a batch's Cloud PCs may be sent
	// (skipped, excluded or not found: see its members).
	OutcomeNothingToSend OutcomeKind = "nothing_to_send"
)

// Outcome is why a request ended or was sent back to waiting, as a kind and
// the facts a message needs. A request that needs no explanation has none
// (Request.Outcome is nil).
type Outcome struct {
	Kind  OutcomeKind `json:"kind"`
	Graph *GraphError `json:"graph,omitempty"`

	Target         string   `json:"target,omitempty"`
	Matches        int      `json:"matches,omitempty"`
	Max            int      `json:"max,omitempty"`
	Status         string   `json:"status,omitempty"`
	Allowed        []string `json:"allowed,omitempty"`
	CloudPCID      string   `json:"cloud_pc_id,omitempty"`
	Other          string   `json:"other,omitempty"`
	OtherRequester string   `json:"other_requester,omitempty"`
	SignedInAs     string   `json:"signed_in_as,omitempty"`
	Expected       string   `json:"expected,omitempty"`
	// Text is a plain-text note from an older version of the bot, which
	// stored outcomes as sentences.
	Text string `json:"text,omitempty"`
}

// EncodeOutcome is how stores keep an outcome: JSON ("" for none; an older
// version's sentence, which has no Kind, stays that sentence, so saving such
// a request again does not wrap it). An older
// version's sentence (no Kind) is kept as the sentence, so that it reads
// back the same however often the request is saved.
func EncodeOutcome(o *Outcome) (string, error) {
	if o == nil {
		return "", nil
	}
	if o.Kind == "" {
		return o.Text, nil
	}
	b, err := json.Marshal(o)
	return string(b), err
}

// DecodeOutcome reads what EncodeOutcome wrote; anything else is an older
// version's sentence, kept as Text.
func DecodeOutcome(s string) *Outcome {
	if s == "" {
		return nil
	}
	var o Outcome
	if strings.HasPrefix(s, "{") && json.Unmarshal([]byte(s), &o) == nil && o.Kind != "" {
		return &o
	}
	return &Outcome{Text: s}
}

// auditDetails are the outcome's facts for an audit record.
func (o *Outcome) auditDetails(details map[string]string) map[string]string {
	if details == nil {
		details = map[string]string{}
	}
	if o == nil {
		return details
	}
	details["outcome"] = string(o.Kind)
	if o.Text != "" {
		details["outcome"] = o.Text
	}
	if g := o.Graph; g != nil {
		details["graph_kind"] = string(g.Kind)
		details["graph_cause"] = string(g.Cause)
		if g.Message != "" {
			details["graph_message"] = g.Message
		}
		if g.Retries > 0 {
			details["graph_retries"] = fmt.Sprint(g.Retries)
		}
		if g.Status != 0 {
			details["graph_status"] = fmt.Sprint(g.Status)
		}
		if g.Code != "" {
			details["graph_code"] = g.Code
		}
		if g.RequestID != "" {
			details["request_id"] = g.RequestID
		}
	}
	if o.Status != "" {
		details["status"] = o.Status
	}
	return details
}
