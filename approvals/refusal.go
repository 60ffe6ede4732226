package approvals

import (
	"fmt"
	"strings"
)

// RefusalKind says why someone may not do what they tried.
type RefusalKind string

const (
	// Asking (Policy.MayRequest).
	RefusedNotARequester RefusalKind = "not_a_requester" // Users: whom to ask instead (the approvers)
	RefusedChannel       RefusalKind = "wrong_channel"   // Channels: where requests are taken
	RefusedSoleApprover  RefusalKind = "sole_approver"   // the asker is the only approver; nobody could approve
	// RefusedTooFewApprovers: the asker is an approver, and without them
	// fewer approvers are left than the approvals required (Required);
	// Users: those left.
	RefusedTooFewApprovers RefusalKind = "too_few_approvers"

	// Deciding (Policy.MayDecide); Users are who may decide.
	RefusedNoApprovers       RefusalKind = "no_approvers"
	RefusedOwnRequestNoOther RefusalKind = "own_request_no_other_approver"
	RefusedOnlyApproverAsked RefusalKind = "only_approver_asked" // Users: the requester, who is the only approver
	RefusedOwnRequest        RefusalKind = "own_request"
	RefusedNotDecider        RefusalKind = "not_a_decider"
	// RefusedAlreadyApproved: this approver's approval is recorded; another
	// approver must give the next one (Users: those who may).
	RefusedAlreadyApproved RefusalKind = "already_approved"

	// Acting on a request.
	RefusedNotRequester  RefusalKind = "not_the_requester"   // Users: the requester (cancel, ask again)
	RefusedNotConfirmer  RefusalKind = "not_the_confirmer"   // Users: the approver who signed in (confirm, abort)
	RefusedNotAnApprover RefusalKind = "not_an_approver"     // Users: the approvers (resume tracking)
	RefusedNotPaused     RefusalKind = "not_paused"          // tracking is not paused
	RefusedNotTheUser    RefusalKind = "not_the_user"        // only the Cloud PC's user may ask for more time
	RefusedAskedAlready  RefusalKind = "asked_already"       // more time was asked (or given) already
	RefusedPostponed     RefusalKind = "postponed_already"   // it was postponed once already
	RefusedNotScheduled  RefusalKind = "not_scheduled"       // Request: it is not waiting to be sent (now)
	RefusedHandled       RefusalKind = "already_handled"     // Request: as it is now
	RefusedBusy          RefusalKind = "busy"                // another click on it is being handled
	RefusedExpired       RefusalKind = "expired"             // too late: it expired (and now is)
	RefusedChoiceGone    RefusalKind = "choice_gone"         // the picked Cloud PC is no longer on offer
	RefusedSignInStale   RefusalKind = "sign_in_stale"       // the sign-in is gone; the request waits again
	RefusedOpenElsewhere RefusalKind = "open_elsewhere"      // Other: the open request holding the Cloud PC (nil if unknown)
	RefusedNoSuchRequest RefusalKind = "no_such_request"     // Ref: the reference asked for
	RefusedNoApprover    RefusalKind = "no_approver_reached" // the prompt reached nobody yet; the outbox keeps trying
	// RefusedNoApproverReachable: chat says no approver can ever get the
	// prompt (accounts gone or closed to the bot); the request is recorded.
	RefusedNoApproverReachable RefusalKind = "no_approver_reachable"
	// RefusedBatchTooLarge: a batch names more Cloud PCs (Count) than
	// Config.BatchMax (Max).
	RefusedBatchTooLarge RefusalKind = "batch_too_large"
)

// Action names what a person tried, for refusals and the audit trail.
type Action string

const (
	ActionRequest      Action = "request"
	ActionApprove      Action = "approve"
	ActionDeny         Action = "deny"
	ActionCancel       Action = "cancel"
	ActionConfirm      Action = "confirm"
	ActionPick         Action = "pick"
	ActionAbort        Action = "abort"
	ActionResume       Action = "resume_tracking"
	ActionRequestAgain Action = "request_again"
	ActionSendNow      Action = "send_now"
	ActionPostpone     Action = "postpone"
	ActionMoreTime     Action = "more_time"
	ActionSignInToSend Action = "sign_in_to_send"
	ActionStopBatch    Action = "stop_batch"
	ActionResumeBatch  Action = "resume_batch"
)

// Refusal is a "no" for the person who clicked or typed, as a kind and plain
// facts; the adapter puts it into words. Nothing was changed.
type Refusal struct {
	Kind   RefusalKind
	Action Action
	// Ref is the request reference acted on.
	Ref string
	// Request is that request as it is now, when loaded.
	Request *Request
	// Users and Channels are who may do it, or where (see the kinds).
	Users    []string
	Channels []string
	// Other is the open request holding the Cloud PC (RefusedOpenElsewhere).
	Other *Request
	// Required is how many approvals are required (RefusedTooFewApprovers).
	Required int
	// Count and Max: how many Cloud PCs a batch named, and the most it may
	// (RefusedBatchTooLarge).
	Count, Max int
}

// Error is a plain sentence for logs and the audit trail.
func (r *Refusal) Error() string {
	var b strings.Builder
	b.WriteString("refused: " + string(r.Kind))
	if r.Action != "" {
		b.WriteString(" (" + string(r.Action) + ")")
	}
	if len(r.Users) > 0 {
		b.WriteString("; may: " + strings.Join(r.Users, ", "))
	}
	if len(r.Channels) > 0 {
		b.WriteString("; in: " + strings.Join(r.Channels, ", "))
	}
	if r.Request != nil {
		fmt.Fprintf(&b, "; %s is %s", r.Request.ID, r.Request.State)
	}
	if r.Other != nil {
		fmt.Fprintf(&b, "; held by %s", r.Other.ID)
	}
	return b.String()
}
