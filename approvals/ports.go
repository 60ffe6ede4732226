package approvals

import (
	"context"
	"errors"
	"time"
)

// The workflow reaches the world only through the three ports below. Each
// lists just the calls the flow makes; package graph implements SignIns and
// CloudPCs, package bot implements Notices, and approvals/mock has
// function-field fakes of all three for tests.

// SignIns starts device-code sign-ins for approvers.
type SignIns interface {
	// SignIn runs one device-code sign-in. showCode is called as soon as
	// Entra issues the code and must deliver it to the approver; if it
	// fails, the sign-in is abandoned with its error. claims is a
	// Conditional Access claims challenge the sign-in must satisfy ("" for
	// none). SignIn blocks until the approver signs in, declines
	// (ErrSignInDeclined), the code expires (ErrSignInExpired) or ctx ends.
	SignIn(ctx context.Context, claims string, showCode func(context.Context, DeviceCode) error) (*Session, error)
}

// DeviceCode is what an approver needs to sign in.
type DeviceCode struct {
	UserCode, VerificationURL string
	// ExpiresAt is when Entra stops accepting the code (zero if unknown).
	ExpiresAt time.Time
}

// Session is a completed sign-in: who signed in, and the Cloud PCs as that
// person may see and change them. It lives in memory only.
type Session struct {
	// Username is the Entra username (preferred_username) of who signed
	// in. Anyone holding the code can complete a sign-in, so the workflow
	// compares it with the approver's expected username before use.
	Username string
	// CloudPCs makes Graph calls with this sign-in's delegated token.
	CloudPCs CloudPCs
}

// Sign-in outcomes that people are told apart.
var (
	// ErrSignInDeclined: the approver refused the sign-in.
	ErrSignInDeclined = errors.New("sign-in declined")
	// ErrSignInExpired: the code expired before the approver signed in.
	ErrSignInExpired = errors.New("sign-in code expired")
)

// CloudPCs is Microsoft Graph as the workflow uses it, with one approver's
// token. Every method returns the record of its HTTP attempts (also on
// error) so that each one goes into the audit trail, and fails with a
// *GraphError when Graph refused or could not be reached.
type CloudPCs interface {
	// Get reads one Cloud PC by id.
	Get(ctx context.Context, id string) (CloudPC, GraphCall, error)
	// Resolve finds the Cloud PCs a device name or user principal name
	// names (no match: an empty slice).
	Resolve(ctx context.Context, target string) ([]CloudPC, []GraphCall, error)
	// Reprovision sends the one reprovision call, with opts (the zero
	// Options: none).
	Reprovision(ctx context.Context, id string, opts Options) (GraphCall, error)
	// RemoteActions reads the remote actions run on a Cloud PC.
	RemoteActions(ctx context.Context, id string) ([]RemoteAction, GraphCall, error)
	// FindPolicy finds a provisioning policy by its id or its exact
	// display name (a batch by policy). None: a *GraphError of kind
	// GraphNotFound; a name several policies have: kind GraphInvalid.
	FindPolicy(ctx context.Context, policy string) (ProvisioningPolicy, GraphCall, error)
	// PolicyCloudPCs lists every Cloud PC of the provisioning policy with
	// that id, following every page (one GraphCall per page).
	PolicyCloudPCs(ctx context.Context, policyID string) ([]CloudPC, []GraphCall, error)
}

// GraphCall records one Graph call: its method, URL path and every HTTP
// attempt, for the audit trail.
type GraphCall struct {
	Method, Path string
	Attempts     []GraphAttempt
}

// GraphAttempt is one HTTP attempt of a Graph call.
type GraphAttempt struct {
	At time.Time
	// Status is the HTTP status, 0 when no response came.
	Status int
	// ClientRequestID is what the bot sent; RequestID what Graph answered.
	ClientRequestID, RequestID string
	// Err is why no usable response came, if so.
	Err string
}

// LastRequestID is Graph's request-id of the final attempt.
func (c GraphCall) LastRequestID() string {
	if len(c.Attempts) == 0 {
		return ""
	}
	return c.Attempts[len(c.Attempts)-1].RequestID
}

// RemoteAction is one remote action (Reprovision, Reboot, …) on a Cloud PC.
type RemoteAction struct {
	// Name is Graph's actionName; State its actionState (pending, active,
	// done, failed, …).
	Name, State      string
	Started, Updated time.Time
	Details          string
}

// Notices is how the workflow tells people things. The adapter decides the
// words and the formatting; the workflow says what and to whom. PostPrompts,
// UpdatePrompts, Tell and Progress are delivered through the outbox (outbox.go): they are
// tried again until they succeed, so their errors say whether that helps
// (ErrUndeliverable: no; an error with RetryAfter: not before then).
// An implementation must not call the Workflow back from these methods in
// the same goroutine (it would wait for its own delivery).
type Notices interface {
	// PostPrompts sends r's approval prompt to each of the approvers in to
	// and returns where each copy went (only those that could be posted),
	// with an error when some could not (through the outbox, like
	// UpdatePrompts).
	PostPrompts(ctx context.Context, r *Request, to []string) ([]MessageRef, error)
	// UpdatePrompts redraws every copy of r's prompt, and anything else
	// showing r, for its current state.
	UpdatePrompts(ctx context.Context, r *Request) error
	// Tell sends one person a notice about a request.
	Tell(ctx context.Context, user string, n Notice) error
	// Progress posts news of r's follow-through beside its prompt.
	Progress(ctx context.Context, r *Request, p Progress) error
	// SignInCode gives an approver the device code to sign in with.
	SignInCode(ctx context.Context, approver string, why SignInPurpose, r *Request, code DeviceCode) error
	// AskToConfirm asks r's approver, signed in, for the final word on the
	// Cloud PC in r.Device, or to pick one of r.Candidates.
	AskToConfirm(ctx context.Context, r *Request) error
	// ProfileEmail is the email address of a chat user, for the identity
	// check when no Entra username is configured for an approver.
	ProfileEmail(ctx context.Context, user string) (string, error)
	// ChatUserByEmail finds the chat user whose email address is email
	// (the Cloud PC's user principal name), for the heads-up: their ID, or
	// ErrNoChatAccount.
	ChatUserByEmail(ctx context.Context, email string) (string, error)
}

// ErrNoChatAccount: no chat user has that email address.
var ErrNoChatAccount = errors.New("no chat account with that email address")

// NoticeKind says what a notice is about.
type NoticeKind string

const (
	// NoticeStatus: where the request stands now (state and outcome).
	NoticeStatus NoticeKind = "status"
	// NoticeExpired: nobody decided in time; offer to ask again.
	NoticeExpired NoticeKind = "expired"
	// NoticeSignInFailed: the approver's sign-in did not complete (Why
	// says why); the request waits for a decision again.
	NoticeSignInFailed NoticeKind = "sign_in_failed"
	// NoticeStillPaused: a sign-in to resume tracking did not complete
	// (Why says why); tracking stays paused.
	NoticeStillPaused NoticeKind = "tracking_still_paused"
	// NoticeApprovalRecorded: an approval was recorded and another
	// approver's is needed (Request.Approvals; the last one is the new one).
	NoticeApprovalRecorded NoticeKind = "approval_recorded"
	// NoticeHeadsUp: to the Cloud PC's user (Request.HeadsUp.UserID): their
	// Cloud PC will be reprovisioned, by whom and why, and that they will be
	// signed out and lose their data; at HeadsUp.SendAt when it is set,
	// when they may ask for more time (unless asked or postponed already).
	NoticeHeadsUp NoticeKind = "heads_up"
	// NoticeUserUpdate: to the Cloud PC's user, after a heads-up: the time
	// moved (still scheduled), or it will not happen now (the state says).
	NoticeUserUpdate NoticeKind = "user_update"
	// NoticeUserReady: to the Cloud PC's user: following the reprovision
	// ended (Request.Tracking.Result: provisioned, or failed and IT knows).
	NoticeUserReady NoticeKind = "user_ready"
	// NoticeUserNotNotified: to the approver and requester: the Cloud PC's
	// user could not be told (Request.HeadsUp.Result says why); the
	// reprovision goes on.
	NoticeUserNotNotified NoticeKind = "user_not_notified"
	// NoticeMoreTimeAsked: to the approver: the Cloud PC's user asks for
	// more time before the scheduled call (they may postpone it once).
	NoticeMoreTimeAsked NoticeKind = "more_time_asked"
	// NoticeSignInToSend: to the approver of a scheduled request whose
	// sign-in was lost in a restart (Why nil), or whose new sign-in did
	// not complete (Why): sign in again so that it can be sent.
	NoticeSignInToSend NoticeKind = "sign_in_to_send"
	// NoticeNotRecorded: Graph answered (Why; Accepted when it took the
	// reprovision) but the answer could not be stored.
	NoticeNotRecorded NoticeKind = "not_recorded"
	// NoticeBatchHalted: to the approver who confirmed a batch: it stopped
	// sending (the bot restarted during it, or Graph wants a fresh
	// sign-in: Why); Resume (with a new sign-in) or Stop. With Why and the
	// batch still halted: the sign-in to resume did not complete.
	NoticeBatchHalted NoticeKind = "batch_halted"
)

// Notice is one thing a person must be told about a request.
type Notice struct {
	Kind    NoticeKind
	Request *Request
	// Member is the batch member a notice to a Cloud PC's user is about
	// (NoticeHeadsUp, NoticeUserReady of a batch); nil otherwise.
	Member *Member
	// Why is what went wrong, for the kinds that say so.
	Why *Outcome
	// Accepted: Graph accepted the reprovision (NoticeNotRecorded).
	Accepted bool
}

// ProgressKind says what a follow-through update is.
type ProgressKind string

const (
	// ProgressAccepted: Graph accepted; the first look is in Every.
	ProgressAccepted ProgressKind = "accepted"
	// ProgressStatus: the Cloud PC's status changed to Status (Detail).
	ProgressStatus ProgressKind = "status"
	// ProgressEnded: following it ended (Request.Tracking.Result).
	ProgressEnded ProgressKind = "ended"
	// ProgressPaused: nobody is signed in to look with.
	ProgressPaused ProgressKind = "paused"
	// ProgressMember: one Cloud PC of a batch has a new result (Member).
	ProgressMember ProgressKind = "member"
)

// Progress is one follow-through update.
type Progress struct {
	Kind           ProgressKind
	Status, Detail string
	Every          time.Duration
	// Member is the batch member whose result is news (ProgressMember).
	Member *Member
}

// Observer is told what happens, for metrics. Its methods must be quick and
// safe for concurrent use.
type Observer interface {
	// RequestCreated: a request was stored.
	RequestCreated()
	// RequestSettled: a request reached a final state (State.Final).
	RequestSettled(State)
}

type noObserver struct{}

func (noObserver) RequestCreated()      {}
func (noObserver) RequestSettled(State) {}

// SignInPurpose says what an approver signs in for.
type SignInPurpose string

const (
	SignInToApprove        SignInPurpose = "approve"
	SignInToResumeTracking SignInPurpose = "resume_tracking"
	// SignInToSend: again, after a restart, for a scheduled call.
	SignInToSend SignInPurpose = "send"
	// SignInToResumeBatch: to go on with a halted batch.
	SignInToResumeBatch SignInPurpose = "resume_batch"
)
