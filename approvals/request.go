// Package approvals is the domain core of reprovision-bot: a reprovision
// request, the states it moves through, and the store that keeps it and the
// audit trail. It knows nothing of Slack or Microsoft Graph; adapters translate
// their events into calls here.
package approvals

import (
	"crypto/rand"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// State is where a request is in its life. The legal moves are listed in
// transitions; everything else is refused by the store.
type State string

const (
	// StatePending: waiting for the approver's decision.
	StatePending State = "pending"
	// StateApproved: the approver clicked Approve; waiting for their sign-in.
	StateApproved State = "approved"
	// StateExecuting: the Graph call is about to be sent or is in flight.
	// A request found in this state after a restart may or may not have
	// reached Graph, so it becomes StateOutcomeUnknown and is never resent.
	StateExecuting State = "executing"
	// StateSucceeded: Graph accepted the reprovision (204).
	StateSucceeded State = "succeeded"
	// StateFailed: Graph refused the reprovision, or it could not be sent.
	StateFailed State = "failed"
	// StateOutcomeUnknown: the call may have reached Graph but no answer came
	// back (crash, timeout). A human must check the Cloud PC.
	StateOutcomeUnknown State = "outcome_unknown"
	// StateDenied: the approver said no.
	StateDenied State = "denied"
	// StateExpired: nobody decided in time.
	StateExpired State = "expired"
	// StateCanceled: the requester withdrew it.
	StateCanceled State = "canceled"
)

// transitions lists, for each state, the states it may move to.
// approved → pending is the way back when the approver's sign-in is declined,
// expires, or is interrupted: the request stays approvable.
var transitions = map[State][]State{
	StatePending:   {StateApproved, StateDenied, StateExpired, StateCanceled},
	StateApproved:  {StateExecuting, StatePending, StateFailed},
	StateExecuting: {StateSucceeded, StateFailed, StateOutcomeUnknown},
}

// CanMoveTo reports whether the state machine allows s → next.
func (s State) CanMoveTo(next State) bool {
	for _, t := range transitions[s] {
		if t == next {
			return true
		}
	}
	return false
}

// Final reports whether no further move is possible.
func (s State) Final() bool { return len(transitions[s]) == 0 }

// Open reports whether the request still holds its Cloud PC: one open request
// per Cloud PC at a time.
func (s State) Open() bool {
	return s == StatePending || s == StateApproved || s == StateExecuting
}

// Request is one ask to reprovision one Cloud PC.
type Request struct {
	// ID is the short reference people quote ("R-7K3F9Q").
	ID string
	// CloudPCID is the Graph id of the Cloud PC (a GUID, lower case).
	CloudPCID string
	// RequesterID is the Slack user ID of who asked.
	RequesterID string
	// RequestChannelID is where they asked.
	RequestChannelID string
	// ApproverID is the Slack user ID of the designated approver.
	ApproverID string

	State State
	// DecidedBy is who approved or denied.
	DecidedBy string

	// PromptChannelID and PromptTS locate the approval prompt message, so it
	// can be edited after a restart.
	PromptChannelID string
	PromptTS        string

	// Outcome is the human-readable result (Graph error code and message, or
	// why sign-in did not complete).
	Outcome string
	// GraphRequestID is Graph's request-id for the reprovision call.
	GraphRequestID string

	CreatedAt time.Time
	UpdatedAt time.Time
}

// cloudPCIDPattern: Graph cloudPC ids are GUIDs. Nothing else may reach the
// Graph URL path.
var cloudPCIDPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ValidCloudPCID reports whether id is a Cloud PC id (a GUID).
func ValidCloudPCID(id string) bool { return cloudPCIDPattern.MatchString(id) }

// Validate checks the fields every stored request must have.
func (r *Request) Validate() error {
	var problems []string
	if !referencePattern.MatchString(r.ID) {
		problems = append(problems, fmt.Sprintf("reference %q is malformed", r.ID))
	}
	if !ValidCloudPCID(r.CloudPCID) {
		problems = append(problems, fmt.Sprintf("cloud PC id %q is not a GUID", r.CloudPCID))
	}
	if r.RequesterID == "" {
		problems = append(problems, "requester is missing")
	}
	if r.ApproverID == "" {
		problems = append(problems, "approver is missing")
	}
	if _, known := stateNames[r.State]; !known {
		problems = append(problems, fmt.Sprintf("state %q is unknown", r.State))
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid request: %s", strings.Join(problems, "; "))
	}
	return nil
}

var stateNames = map[State]struct{}{
	StatePending: {}, StateApproved: {}, StateExecuting: {}, StateSucceeded: {}, StateFailed: {},
	StateOutcomeUnknown: {}, StateDenied: {}, StateExpired: {}, StateCanceled: {},
}

// referenceAlphabet leaves out 0/O and 1/I so references read aloud cleanly.
const referenceAlphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"

// referenceLength: 32^6 ≈ 10^9 references; collisions are caught by the store.
const referenceLength = 6

var referencePattern = regexp.MustCompile(`^R-[` + referenceAlphabet + `]{6}$`)

// NewReference returns a fresh random request reference such as "R-7K3F9Q".
func NewReference() string {
	b := make([]byte, referenceLength)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	for i := range b {
		b[i] = referenceAlphabet[int(b[i])%len(referenceAlphabet)]
	}
	return "R-" + string(b)
}

// ValidReference reports whether s looks like a request reference.
func ValidReference(s string) bool { return referencePattern.MatchString(s) }

// ErrNotFound: no request with that reference.
var ErrNotFound = errors.New("request not found")

// ErrDuplicateReference: the reference is taken (a random collision); retry
// with a fresh one.
var ErrDuplicateReference = errors.New("a request with this reference already exists")

// ErrOpenRequestExists: the Cloud PC already has a pending or running request.
var ErrOpenRequestExists = errors.New("an open request for this cloud PC already exists")

// TransitionError is returned when a move is not allowed from the request's
// current state, e.g. a second click after a decision. Current carries the
// request as it is now so the late clicker can be told.
type TransitionError struct {
	Current *Request
	To      State
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("request %s is %s; cannot become %s", e.Current.ID, e.Current.State, e.To)
}
