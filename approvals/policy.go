package approvals

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Policy is who may ask, who may decide, and how long a request lives. It is
// configuration: the workflow asks it before creating a request or acting on
// a click; its refusals are *Refusal values the adapters put into words.
type Policy struct {
	// Approvers are chat user IDs; at least one. A request copies them when
	// it is made, so changing the policy does not change who decides on
	// requests already waiting.
	Approvers []string
	// Requesters are the chat user IDs who may ask; empty means anyone.
	Requesters []string
	// Channels are the chat channel IDs requests are taken in; empty means
	// any channel.
	Channels []string
	// AllowSelfApproval lets a requester who is also an approver decide on
	// their own request. Off by default: a wipe should need two people.
	AllowSelfApproval bool
	// ApprovalTTL is how long a request may wait for a decision; 0 means it
	// never expires.
	ApprovalTTL time.Duration
	// ApprovalsRequired is how many distinct approvers must approve a
	// request (0 or 1: one; at most MaxApprovalsRequired). With more than
	// one, the requester never approves their own request, whatever
	// AllowSelfApproval says: two people means two others.
	ApprovalsRequired int
}

// required is how many approvals a new request needs.
func (p Policy) required() int { return max(1, p.ApprovalsRequired) }

// chatID is the shape of a user or channel ID as the workflow accepts it:
// an opaque token of letters and digits. The chat adapter checks its own
// finer format (bot.ValidUserID); this catches a name ("@alice", "#ops"), a
// blank or a stray space, which would otherwise lock everyone out.
var chatID = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)

// Validate reports every problem with the policy at once.
func (p Policy) Validate() error {
	var problems []string
	if len(p.Approvers) == 0 {
		problems = append(problems, "at least one approver is required")
	}
	problems = append(problems, checkIDs("approver", p.Approvers)...)
	problems = append(problems, checkIDs("requester", p.Requesters)...)
	problems = append(problems, checkIDs("channel", p.Channels)...)
	switch {
	case p.ApprovalsRequired < 0 || p.ApprovalsRequired > MaxApprovalsRequired:
		problems = append(problems, fmt.Sprintf("approvals required %d is not between 1 and %d", p.ApprovalsRequired, MaxApprovalsRequired))
	case len(p.Approvers) > 0 && len(p.Approvers) < p.required():
		problems = append(problems, fmt.Sprintf("%d approvals are required but only %d approvers are configured", p.required(), len(p.Approvers)))
	}
	if p.ApprovalTTL < 0 {
		problems = append(problems, fmt.Sprintf("approval TTL %v is negative", p.ApprovalTTL))
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid policy: %s", strings.Join(problems, "; "))
	}
	return nil
}

// checkIDs reports malformed and repeated IDs: a repeat is harmless to the
// checks but most likely a copy-and-paste slip hiding a missing person.
func checkIDs(what string, ids []string) []string {
	var problems []string
	seen := map[string]bool{}
	for _, id := range ids {
		switch {
		case !chatID.MatchString(id):
			problems = append(problems, fmt.Sprintf("%s %q is not an ID (letters and digits)", what, id))
		case seen[id]:
			problems = append(problems, fmt.Sprintf("%s %s is listed twice", what, id))
		}
		seen[id] = true
	}
	return problems
}

// MayRequest returns nil if user may ask for a reprovision in channel, or a
// *Refusal saying why not. It also refuses the sole approver when
// self-approval is off: nobody could ever approve their request, and saying
// so now beats leaving it to expire.
func (p Policy) MayRequest(user, channel string) error {
	return p.mayRequest(user, channel, p.required())
}

// mayRequest is MayRequest for a request that needs required approvals.
func (p Policy) mayRequest(user, channel string, required int) error {
	if len(p.Requesters) > 0 && !slices.Contains(p.Requesters, user) {
		return &Refusal{Kind: RefusedNotARequester, Users: slices.Clone(p.Approvers)}
	}
	if len(p.Channels) > 0 && !slices.Contains(p.Channels, channel) {
		return &Refusal{Kind: RefusedChannel, Channels: slices.Clone(p.Channels)}
	}
	deciders := p.deciders(p.Approvers, user, required)
	if slices.Contains(p.Approvers, user) && len(deciders) == 0 {
		return &Refusal{Kind: RefusedSoleApprover}
	}
	if len(deciders) < required {
		// Only when user is an approver: Validate saw to the rest.
		return &Refusal{Kind: RefusedTooFewApprovers, Users: deciders, Required: required}
	}
	return nil
}

// ApproversOf are the people who may decide on r now: those of its
// approvers (copied when it was made) who are still configured. When none
// is, the configured approvers take over (the workflow prompts them at
// start), so a request never waits for someone who was removed.
func (p Policy) ApproversOf(r *Request) []string {
	var now []string
	for _, a := range r.Approvers {
		if slices.Contains(p.Approvers, a) {
			now = append(now, a)
		}
	}
	if len(now) == 0 {
		return slices.Clone(p.Approvers)
	}
	return now
}

// MayDecide returns nil if user may approve or deny r, or a *Refusal naming
// who may. Who decides is ApproversOf(r): an approver removed from the
// configuration loses the power at once, also on requests made before.
// Whether a requester may decide on their own request is the policy's
// current rule too. With self-approval off the requester may not deny their
// own request either: withdrawing is canceling, a separate action.
func (p Policy) MayDecide(user string, r *Request) error {
	approvers := p.ApproversOf(r)
	deciders := p.deciders(approvers, r.RequesterID, r.Required())
	refusal := &Refusal{Request: r, Users: deciders}
	switch {
	case slices.Contains(deciders, user):
		return nil
	case len(approvers) == 0:
		refusal.Kind = RefusedNoApprovers
	case len(deciders) == 0 && user == r.RequesterID:
		refusal.Kind = RefusedOwnRequestNoOther
	case len(deciders) == 0:
		refusal.Kind, refusal.Users = RefusedOnlyApproverAsked, []string{r.RequesterID}
	case user == r.RequesterID && slices.Contains(approvers, user):
		refusal.Kind = RefusedOwnRequest
	default:
		refusal.Kind = RefusedNotDecider
	}
	return refusal
}

// deciders are those of approvers who may decide on a request by requester
// that needs required approvals.
func (p Policy) deciders(approvers []string, requester string, required int) []string {
	if p.AllowSelfApproval && required <= 1 {
		return approvers
	}
	return slices.DeleteFunc(slices.Clone(approvers), func(a string) bool { return a == requester })
}

// NewRequest starts a pending request under this policy: a fresh reference,
// a copy of the approvers, CreatedAt and UpdatedAt at now (UTC), and
// ExpiresAt now+ApprovalTTL (zero when the TTL is 0). When target is already
// a Cloud PC id, CloudPCID is set to it (lower case) so that the store's
// one-open-request-per-Cloud-PC rule applies from the start; a name or UPN
// leaves it empty for the adapter to resolve.
func (p Policy) NewRequest(now time.Time, requester, channel, target, reason string) *Request {
	now = now.UTC()
	r := &Request{
		ID:                NewReference(),
		Target:            target,
		Reason:            reason,
		RequesterID:       requester,
		RequestChannelID:  channel,
		Approvers:         slices.Clone(p.Approvers),
		ApprovalsRequired: p.required(),
		State:             StatePending,
		CreatedAt:         now,
		UpdatedAt:         now,
	}
	if ValidCloudPCID(target) {
		r.CloudPCID = strings.ToLower(target)
	}
	if p.ApprovalTTL > 0 {
		r.ExpiresAt = now.Add(p.ApprovalTTL)
		r.DecideBy = r.ExpiresAt
	}
	return r
}

// ExpiredAt reports whether r is waiting for a person (StatePending,
// StateConfirming or StateScheduled, the states that may move to
// StateExpired) and ExpiresAt is set and not after now. It is a Request method rather than a Policy one
// because ExpiresAt was fixed when r was made: a later change of ApprovalTTL
// does not expire or revive requests already waiting. An adapter that wants
// a fresh deadline for the final confirmation sets ExpiresAt when it moves r
// to StateConfirming.
func (r *Request) ExpiredAt(now time.Time) bool {
	return r.State.CanMoveTo(StateExpired) && !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}
