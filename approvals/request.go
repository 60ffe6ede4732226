// Package approvals is the domain and the workflow of reprovision-bot: a
// reprovision request, the states it moves through, the policy, the store
// that keeps requests and the audit trail, and the Workflow that carries a
// request from asking to the end of its follow-through. It knows nothing of
// Slack or Microsoft Graph: it reaches them through the ports in ports.go,
// and its refusals and outcomes are kinds and plain facts that the chat
// adapter puts into words.
package approvals

import (
	"crypto/rand"
	"errors"
	"fmt"
	"regexp"
	"slices"
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
	// StateCanceled: the requester withdrew it, or the approver stopped at
	// the final confirmation or during the wait before the call.
	StateCanceled State = "canceled"
	// StateConfirming: the approver signed in; they have been shown what
	// will be wiped (or a list to pick from) and must confirm once more.
	StateConfirming State = "awaiting_confirmation"
	// StateScheduled: confirmed; the Cloud PC's user has had a heads-up and
	// the call goes at HeadsUp.SendAt (Config.UserNotice), unless the
	// approver sends it now or cancels, or anyone withdraws it.
	StateScheduled State = "scheduled"
)

// transitions lists, for each state, the states it may move to.
// approved → pending is the way back when the approver's sign-in is declined,
// expires, or is interrupted: the request stays approvable. The requester may
// cancel until the call is sent (pending, approved, confirming → canceled).
// confirming → expired: a confirmation nobody gives must not hold the Cloud
// PC forever. executing → pending only when Graph refused the call for
// want of a fresh sign-in (401/403): it did nothing, so the request may be
// approved again. approved, confirming → denied: with more than one approval
// required, any approver's Deny ends the request until it is confirmed
// (Workflow.Deny). A scheduled request has not been sent either: it moves as
// one awaiting confirmation does (expired: its approver never signed in
// again after a restart). executing → canceled: a batch stopped before any
// of its calls was sent.
var transitions = map[State][]State{
	StatePending:    {StateApproved, StateDenied, StateExpired, StateCanceled},
	StateApproved:   {StateConfirming, StateScheduled, StateExecuting, StatePending, StateFailed, StateCanceled, StateDenied},
	StateConfirming: {StateExecuting, StateScheduled, StatePending, StateCanceled, StateFailed, StateExpired, StateDenied},
	StateScheduled:  {StateExecuting, StatePending, StateCanceled, StateFailed, StateExpired},
	StateExecuting:  {StateSucceeded, StateFailed, StateOutcomeUnknown, StatePending, StateCanceled},
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

// Open reports whether a request in this state holds its Cloud PC: one open
// request per Cloud PC at a time. (A succeeded request also holds it while
// its reprovision is being followed: see Request.Open.)
func (s State) Open() bool {
	return s == StatePending || s == StateApproved || s == StateConfirming || s == StateScheduled || s == StateExecuting
}

// Open reports whether r blocks another request for the same Cloud PC: it is
// undecided or running, or its reprovision is still being followed.
func (r *Request) Open() bool {
	return r.State.Open() || (r.State == StateSucceeded && r.Tracking.Active())
}

// Request is one ask to reprovision one Cloud PC.
type Request struct {
	// ID is the short reference people quote ("R-7K3F9Q").
	ID string
	// Target is what the requester named: a Cloud PC id, a device name or a
	// user principal name. Validated by the chat adapter before it is stored.
	Target string
	// CloudPCID is the Graph id of the Cloud PC (a GUID, lower case). Empty
	// until a name or UPN target has been resolved.
	CloudPCID string
	// Reason is why the requester asks (free text, shown escaped).
	Reason string
	// Options are the reprovision call's parameters, fixed when asked.
	Options Options
	// RequesterID is the chat user ID of who asked.
	RequesterID string
	// RequestChannelID is where they asked.
	RequestChannelID string
	// Approvers are the chat user IDs who may decide, fixed when the
	// request is made. Any one denies; ApprovalsRequired of them approve.
	Approvers []string
	// ApprovalsRequired is how many distinct approvers must approve (0 is
	// read as 1: requests stored before two-person approval), fixed when
	// the request is made.
	ApprovalsRequired int
	// Approvals are the approvals given before the last one, in order,
	// each by a distinct approver who signed in as themselves. While more
	// are needed the request waits in StatePending. The last approver is
	// DecidedBy (signed in as SignedInAs): the one who confirms, and whose
	// sign-in the call is made with. An approval once recorded is never
	// removed.
	Approvals []Approval

	State State
	// DecidedBy is who approved, denied or canceled.
	DecidedBy string
	// DecisionReason is the approver's reason for a denial.
	DecisionReason string
	// SignedInAs is the Entra username the approver signed in with.
	SignedInAs string

	// Prompts locate the approval prompt messages (one per approver), so
	// they can all be edited, also after a restart.
	Prompts []MessageRef

	// Device is what Graph said about the Cloud PC when last looked up.
	Device *CloudPC
	// Candidates are the Cloud PCs a name or UPN matched, when more than one
	// did and the approver must pick.
	Candidates []CloudPC

	// Outcome is why the request ended, or went back to waiting (Graph's
	// error, why a sign-in did not complete, …); nil when nothing needs
	// explaining.
	Outcome *Outcome
	// GraphRequestID is Graph's request-id for the reprovision call.
	GraphRequestID string

	// HeadsUp is what the Cloud PC's user was told before the call.
	HeadsUp HeadsUp

	// Tracking follows the reprovision after Graph accepted it.
	Tracking Tracking

	// Batch makes this a request for many Cloud PCs (nil: one, CloudPCID);
	// see batch.go.
	Batch *Batch

	CreatedAt time.Time
	UpdatedAt time.Time
	// ExpiresAt is when the current wait ends (zero: never): the approval
	// deadline while pending, the confirmation window while awaiting
	// confirmation, and HeadsUp.SendAt plus that window while scheduled
	// (the approver's sign-in, if lost in a restart, must be renewed by
	// then).
	ExpiresAt time.Time
	// DecideBy is the approval deadline, fixed when the request was made
	// (zero: never). A request sent back to pending gets it back as its
	// ExpiresAt.
	DecideBy time.Time
}

// Approval is one approver's approval: who, the Entra username they signed
// in with, and when.
type Approval struct {
	By         string
	SignedInAs string
	At         time.Time
}

// Required is how many approvals r needs (at least 1).
func (r *Request) Required() int { return max(1, r.ApprovalsRequired) }

// HasApproved reports whether user's approval of r is recorded.
func (r *Request) HasApproved(user string) bool {
	return slices.ContainsFunc(r.Approvals, func(a Approval) bool { return a.By == user })
}

// LastApproval reports whether one more approval completes r's: the next
// approver's is the one the call is sent with.
func (r *Request) LastApproval() bool { return len(r.Approvals)+1 >= r.Required() }

// ApprovedAs reports whether an earlier approval of r was signed in as
// username (Entra usernames compare without case).
func (r *Request) ApprovedAs(username string) bool {
	return slices.ContainsFunc(r.Approvals, func(a Approval) bool { return strings.EqualFold(a.SignedInAs, username) })
}

// MaxApprovalsRequired bounds two-person (or three-person) approval.
const MaxApprovalsRequired = 3

// MessageRef locates one chat message (an approval prompt).
type MessageRef struct {
	ChannelID string
	TS        string
	// UserID is whom the message is for (the approver of a prompt copy).
	UserID string
}

// CloudPC is what an approver is shown before a Cloud PC is wiped. Status
// values are Graph's own (provisioned, failed, inGracePeriod, …); unknown
// values are kept as they come.
type CloudPC struct {
	ID                     string
	DisplayName            string
	UserPrincipalName      string
	ManagedDeviceName      string
	ServicePlanName        string
	ProvisioningPolicyName string
	// ProvisioningPolicyID is the provisioning policy's id (Graph's
	// provisioningPolicyId), for batches by policy.
	ProvisioningPolicyID string
	Status               string
	StatusDetails        string
	LastModified         time.Time
}

// HeadsUp is the notice to the person whose Cloud PC it is: they are signed
// out and lose their data, so they hear of it before the call (when
// Config.NotifyUser is set), and hear when their Cloud PC is ready.
type HeadsUp struct {
	// UserID is the chat user found for the Cloud PC's user principal
	// name ("" when none was).
	UserID string
	// Result is how finding and telling them went: "" (not tried),
	// HeadsUpSent, HeadsUpNoAccount, HeadsUpNoUser or HeadsUpLookupFailed.
	Result string
	// SendAt is when a scheduled call goes (zero: at once).
	SendAt time.Time
	// MoreTimeAsked: the user asked for more time; Postponed: the approver
	// gave it (once).
	MoreTimeAsked, Postponed bool
	// SignInLost: the process restarted during the wait, and with it the
	// approver's sign-in; they must sign in again before the call can go.
	SignInLost bool
}

// HeadsUp results.
const (
	HeadsUpSent         = "sent"
	HeadsUpNoAccount    = "no_chat_account" // no chat user has that address
	HeadsUpNoUser       = "no_user"         // the Cloud PC has no user principal name
	HeadsUpLookupFailed = "lookup_failed"   // chat could not be asked
)

// Told reports whether the user was sent the heads-up.
func (h HeadsUp) Told() bool { return h.Result == HeadsUpSent && h.UserID != "" }

// Tracking is the follow-through of an accepted reprovision.
type Tracking struct {
	// Since is when Graph accepted the reprovision: remote actions and
	// statuses from before it say nothing about this one.
	Since time.Time
	// Until is the deadline; zero means the request is not tracked.
	Until time.Time
	// NextCheck is when to look at the Cloud PC next.
	NextCheck time.Time
	// Checks counts the looks so far (for the backoff).
	Checks int
	// LastStatus is the Cloud PC status seen last.
	LastStatus string
	// Paused: no valid sign-in to look with (e.g. after a restart).
	Paused bool
	// Result is how tracking ended: "", TrackProvisioned, TrackFailed or
	// TrackTimedOut.
	Result string
}

// Tracking results.
const (
	TrackProvisioned = "provisioned"
	TrackFailed      = "failed"
	TrackTimedOut    = "timed_out"
)

// Active reports whether the reprovision is still being followed.
func (t Tracking) Active() bool { return !t.Until.IsZero() && t.Result == "" }

// IsApprover reports whether user may decide on r.
func (r *Request) IsApprover(user string) bool {
	for _, a := range r.Approvers {
		if a == user {
			return true
		}
	}
	return false
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
	if r.CloudPCID != "" && !ValidCloudPCID(r.CloudPCID) {
		problems = append(problems, fmt.Sprintf("cloud PC id %q is not a GUID", r.CloudPCID))
	}
	if r.CloudPCID == "" && r.Target == "" {
		problems = append(problems, "target is missing")
	}
	if r.RequesterID == "" {
		problems = append(problems, "requester is missing")
	}
	if len(r.Approvers) == 0 {
		problems = append(problems, "approvers are missing")
	}
	if err := r.Options.Validate(); err != nil {
		problems = append(problems, err.Error())
	}
	if r.ApprovalsRequired < 0 || r.ApprovalsRequired > MaxApprovalsRequired {
		problems = append(problems, fmt.Sprintf("approvals required %d is not between 1 and %d", r.ApprovalsRequired, MaxApprovalsRequired))
	}
	for _, a := range r.Approvals {
		if a.By == "" {
			problems = append(problems, "an approval names no approver")
		}
	}
	if r.Batch != nil {
		problems = append(problems, r.Batch.validate()...)
		if r.CloudPCID != "" {
			problems = append(problems, "a batch has no Cloud PC id of its own")
		}
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
	StateOutcomeUnknown: {}, StateDenied: {}, StateExpired: {}, StateCanceled: {}, StateConfirming: {}, StateScheduled: {},
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

func sameApproval(a, b Approval) bool {
	return a.By == b.By && a.SignedInAs == b.SignedInAs && a.At.Equal(b.At)
}

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
	if e.To == e.Current.State { // an update that needs another state
		return fmt.Sprintf("request %s is %s; it cannot be changed so now", e.Current.ID, e.Current.State)
	}
	return fmt.Sprintf("request %s is %s; cannot become %s", e.Current.ID, e.Current.State, e.To)
}

// KeepsIdentity reports an error if after (an update of before) changed a
// field that says which request this is, what it is for, who asked or who
// decides and how many must approve, the options, or the state (a store's
// Transition sets that itself), or removed an approval: the rule
// every store applies to Update and to a transition's update. CloudPCID may
// go from empty to set once, when the target is resolved; after that it is
// fixed.
func KeepsIdentity(before, after *Request) error {
	var changed []string
	if after.ID != before.ID {
		changed = append(changed, "ID")
	}
	if after.Target != before.Target {
		changed = append(changed, "Target")
	}
	if before.CloudPCID != "" && !strings.EqualFold(after.CloudPCID, before.CloudPCID) {
		changed = append(changed, "CloudPCID")
	}
	if after.RequesterID != before.RequesterID {
		changed = append(changed, "RequesterID")
	}
	if after.RequestChannelID != before.RequestChannelID {
		changed = append(changed, "RequestChannelID")
	}
	if !slices.Equal(after.Approvers, before.Approvers) {
		changed = append(changed, "Approvers")
	}
	if after.ApprovalsRequired != before.ApprovalsRequired {
		changed = append(changed, "ApprovalsRequired")
	}
	if len(after.Approvals) < len(before.Approvals) || !slices.EqualFunc(before.Approvals, after.Approvals[:len(before.Approvals)], sameApproval) {
		changed = append(changed, "Approvals (recorded ones)")
	}
	if after.Options != before.Options {
		changed = append(changed, "Options")
	}
	if !sameBatchAsk(before.Batch, after.Batch) {
		changed = append(changed, "Batch (targets, policy)")
	}
	if !after.CreatedAt.Equal(before.CreatedAt) {
		changed = append(changed, "CreatedAt")
	}
	if after.State != before.State {
		changed = append(changed, "State")
	}
	if len(changed) > 0 {
		return fmt.Errorf("update may not change %s", strings.Join(changed, ", "))
	}
	return nil
}
