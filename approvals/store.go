package approvals

import (
	"context"
	"time"
)

// Store keeps requests and the audit trail. Implementations must make
// Transition atomic: two concurrent moves from the same state must not both
// succeed (this is what stops a double click from causing two Graph calls).
type Store interface {
	// Create stores a new request in StatePending. It returns
	// ErrOpenRequestExists (wrapped) when the Cloud PC already has an open
	// request (Request.Open), ErrDuplicateReference (wrapped) when the ID is
	// taken, and an error when r fails Validate.
	Create(ctx context.Context, r *Request) error

	// Get returns the request with that reference, or ErrNotFound.
	Get(ctx context.Context, id string) (*Request, error)

	// Transition moves the request to state `to` if the state machine allows
	// it from the state it is in now, applying update (may be nil) to the
	// loaded request before saving. It returns the saved request, or a
	// *TransitionError carrying the current request when the move is not
	// allowed, or ErrNotFound.
	Transition(ctx context.Context, id string, to State, update func(*Request)) (*Request, error)

	// TransitionFrom is Transition that also requires the request to be in
	// one of the states from (else *TransitionError). It is how a worker
	// claims a step: of two workers racing from the same state, one wins,
	// and a worker whose step was taken over never undoes the winner's.
	TransitionFrom(ctx context.Context, id string, from []State, to State, update func(*Request)) (*Request, error)

	// Update changes a request without moving its state (prompt locations,
	// details, tracking), atomically like Transition. update must not change
	// ID, Target, RequesterID, RequestChannelID, Approvers, CreatedAt or
	// State; it may set CloudPCID only while it is empty.
	Update(ctx context.Context, id string, update func(*Request)) (*Request, error)

	// ListByState returns the requests in any of the given states, oldest first.
	ListByState(ctx context.Context, states ...State) ([]*Request, error)

	// ListExpiringBefore returns the requests in any of the given states
	// whose ExpiresAt is set and earlier than before, soonest first. The
	// scheduler asks only for what falls due before its next wake-up, so
	// that thousands of pending requests stay in the store, not in memory.
	ListExpiringBefore(ctx context.Context, before time.Time, states ...State) ([]*Request, error)

	// OpenFor returns the open request (Request.Open) for the Cloud PC, or
	// ErrNotFound.
	OpenFor(ctx context.Context, cloudPCID string) (*Request, error)

	// ListTracking returns the requests whose reprovision is being
	// followed (Tracking.Active), soonest NextCheck first.
	ListTracking(ctx context.Context) ([]*Request, error)

	// ListByRequester returns the newest requests of a requester, at most limit.
	ListByRequester(ctx context.Context, requesterID string, limit int) ([]*Request, error)

	// Apply makes one change of a request, as Transition / TransitionFrom
	// when c.To is set, else as Update, and enqueues the outbox entries
	// c.Notify returns for the saved request in the same transaction.
	Apply(ctx context.Context, id string, c Change) (*Request, error)

	// ListUpdatedSince returns the requests changed at or after since,
	// oldest change first.
	ListUpdatedSince(ctx context.Context, since time.Time) ([]*Request, error)

	// Outbox keeps what people must be told until it is delivered.
	Outbox

	// Record appends one event to the audit trail. Records are never edited
	// or deleted.
	Record(ctx context.Context, e Event) error

	// Events returns audit records at or after since, oldest first.
	Events(ctx context.Context, since time.Time) ([]Event, error)

	Close() error
}

// EventKind names what happened, for the audit trail.
type EventKind string

const (
	EventRequested EventKind = "requested"
	EventApproved  EventKind = "approved"
	// EventApprovalRecorded: an approval that is not the last one needed,
	// after its approver signed in (details: upn, approvals "1 of 2").
	EventApprovalRecorded EventKind = "approval_recorded"
	EventDenied           EventKind = "denied"
	EventRefusedClick     EventKind = "refused_click"
	EventSignInStarted    EventKind = "signin_started"
	EventSignedIn         EventKind = "signed_in"
	EventSignInFailed     EventKind = "signin_failed"
	EventGraphCall        EventKind = "graph_call"
	EventSucceeded        EventKind = "succeeded"
	EventFailed           EventKind = "failed"
	EventOutcomeUnknown   EventKind = "outcome_unknown"
	EventRefusedRequest   EventKind = "refused_request"
	EventIdentityMismatch EventKind = "identity_mismatch"
	EventResolved         EventKind = "resolved"
	EventConfirmed        EventKind = "confirmed"
	EventStatusRefused    EventKind = "status_refused"
	EventCanceled         EventKind = "canceled"
	EventExpired          EventKind = "expired"
	EventTracked          EventKind = "tracked"
	EventReprompted       EventKind = "reprompted"
	EventNoticeDropped    EventKind = "notice_dropped"
	// EventUserNotified: the heads-up to the Cloud PC's user (details:
	// upn, user, result, send_at).
	EventUserNotified  EventKind = "user_notified"
	EventMoreTimeAsked EventKind = "more_time_asked"
	EventPostponed     EventKind = "postponed"
	EventSentEarly     EventKind = "sent_early"
	// Batches: the look-up's counts (batch_looked_up), one record per
	// member as found and at each new result (batch_member: cloud_pc_id,
	// device, upn, result, graph_code, request_id), and Stop, a halt and
	// Resume.
	EventBatchLookedUp EventKind = "batch_looked_up"
	EventBatchMember   EventKind = "batch_member"
	EventBatchStopped  EventKind = "batch_stopped"
	EventBatchHalted   EventKind = "batch_halted"
	EventBatchResumed  EventKind = "batch_resumed"
)

// Event is one audit record.
type Event struct {
	Time      time.Time
	RequestID string
	Kind      EventKind
	// Actor is the chat user ID of who caused it ("" for the bot itself).
	Actor string
	// Details are small key/value facts: target, UPN, Graph method, path,
	// status, client-request-id, request-id. Never a token.
	Details map[string]string
}
