package approvals

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Policy is who may ask, who may decide, and how long a request lives. It is
// configuration: the Slack adapter asks it before creating a request or
// acting on a click, and turns a *Refusal into a reply to the user.
type Policy struct {
	// Approvers are Slack user IDs; at least one. A request copies them when
	// it is made, so changing the policy does not change who decides on
	// requests already waiting.
	Approvers []string
	// Requesters are the Slack user IDs who may ask; empty means anyone.
	Requesters []string
	// Channels are the Slack channel IDs requests are taken in; empty means
	// any channel.
	Channels []string
	// AllowSelfApproval lets a requester who is also an approver decide on
	// their own request. Off by default: a wipe should need two people.
	AllowSelfApproval bool
	// ApprovalTTL is how long a request may wait for a decision; 0 means it
	// never expires.
	ApprovalTTL time.Duration
}

// Slack IDs: upper-case letters and digits after a type letter (U or W for
// users, C, G or D for channels). Checked so that a name or a lower-case typo
// in the configuration is caught at start-up rather than locking everyone
// out, and so that mentions built from them render.
var (
	slackUserID    = regexp.MustCompile(`^[UW][A-Z0-9]{2,20}$`)
	slackChannelID = regexp.MustCompile(`^[CGD][A-Z0-9]{2,20}$`)
)

// ValidSlackUserID reports whether s looks like a Slack user ID (U…, W…).
func ValidSlackUserID(s string) bool { return slackUserID.MatchString(s) }

// ValidSlackChannelID reports whether s looks like a Slack channel ID (C…, G…, D…).
func ValidSlackChannelID(s string) bool { return slackChannelID.MatchString(s) }

// Validate reports every problem with the policy at once.
func (p Policy) Validate() error {
	var problems []string
	if len(p.Approvers) == 0 {
		problems = append(problems, "at least one approver is required")
	}
	problems = append(problems, checkIDs("approver", p.Approvers, slackUserID, "a Slack user ID like U0123ABCD")...)
	problems = append(problems, checkIDs("requester", p.Requesters, slackUserID, "a Slack user ID like U0123ABCD")...)
	problems = append(problems, checkIDs("channel", p.Channels, slackChannelID, "a Slack channel ID like C0123ABCD")...)
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
func checkIDs(what string, ids []string, pattern *regexp.Regexp, like string) []string {
	var problems []string
	seen := map[string]bool{}
	for _, id := range ids {
		switch {
		case !pattern.MatchString(id):
			problems = append(problems, fmt.Sprintf("%s %q is not %s", what, id, like))
		case seen[id]:
			problems = append(problems, fmt.Sprintf("%s %s is listed twice", what, id))
		}
		seen[id] = true
	}
	return problems
}

// Refusal is a "no" meant for the person who clicked or typed: Message is a
// complete sentence in Slack mrkdwn, with people and channels as mentions,
// ready to be shown as it is. Adapters tell it apart from failures with
// errors.As.
type Refusal struct {
	Message string
}

func (r *Refusal) Error() string { return r.Message }

func refuse(format string, args ...any) error {
	return &Refusal{Message: fmt.Sprintf(format, args...)}
}

// MayRequest returns nil if user may ask for a reprovision in channel, or a
// *Refusal saying why not. It also refuses the sole approver when
// self-approval is off: nobody could ever approve their request, and saying
// so now beats leaving it to expire.
func (p Policy) MayRequest(user, channel string) error {
	if len(p.Requesters) > 0 && !slices.Contains(p.Requesters, user) {
		return refuse("You are not on the list of people who may request a reprovision. If you need one, ask %s.",
			mentions(p.Approvers))
	}
	if len(p.Channels) > 0 && !slices.Contains(p.Channels, channel) {
		return refuse("Reprovision requests are taken only in %s.", channelMentions(p.Channels))
	}
	if slices.Contains(p.Approvers, user) && len(p.deciders(p.Approvers, user)) == 0 {
		return refuse("You are the only approver, and approving your own request is not allowed, so nobody could approve it. Ask for another approver to be added.")
	}
	return nil
}

// MayDecide returns nil if user may approve or deny r, or a *Refusal naming
// who may. Who decides is r.Approvers, fixed when r was made; whether a
// requester may decide on their own request is the policy's current rule, so
// turning self-approval off takes effect at once. With self-approval off the
// requester may not deny their own request either: withdrawing is canceling,
// a separate action.
func (p Policy) MayDecide(user string, r *Request) error {
	deciders := p.deciders(r.Approvers, r.RequesterID)
	switch {
	case slices.Contains(deciders, user):
		return nil
	case len(r.Approvers) == 0:
		return refuse("Nobody can approve or deny %s: it has no approvers.", r.ID)
	case len(deciders) == 0 && user == r.RequesterID:
		return refuse("You asked for %s and are its only approver; approving your own request is not allowed, so it cannot be approved.", r.ID)
	case len(deciders) == 0:
		return refuse("Nobody can approve or deny %s: its only approver, <@%s>, asked for it, and approving your own request is not allowed.",
			r.ID, r.RequesterID)
	case user == r.RequesterID && r.IsApprover(user):
		return refuse("You asked for %s, and approving your own request is not allowed: %s can approve or deny it.",
			r.ID, mentions(deciders))
	default:
		return refuse("Only %s can approve or deny %s.", mentions(deciders), r.ID)
	}
}

// deciders are those of approvers who may decide on a request by requester.
func (p Policy) deciders(approvers []string, requester string) []string {
	if p.AllowSelfApproval {
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
		ID:               NewReference(),
		Target:           target,
		Reason:           reason,
		RequesterID:      requester,
		RequestChannelID: channel,
		Approvers:        slices.Clone(p.Approvers),
		State:            StatePending,
		CreatedAt:        now,
		UpdatedAt:        now,
	}
	if ValidCloudPCID(target) {
		r.CloudPCID = strings.ToLower(target)
	}
	if p.ApprovalTTL > 0 {
		r.ExpiresAt = now.Add(p.ApprovalTTL)
	}
	return r
}

// ExpiredAt reports whether r is waiting for a person (StatePending or
// StateConfirming, the states that may move to StateExpired) and ExpiresAt
// is set and not after now. It is a Request method rather than a Policy one
// because ExpiresAt was fixed when r was made: a later change of ApprovalTTL
// does not expire or revive requests already waiting. An adapter that wants
// a fresh deadline for the final confirmation sets ExpiresAt when it moves r
// to StateConfirming.
func (r *Request) ExpiredAt(now time.Time) bool {
	return r.State.CanMoveTo(StateExpired) && !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt)
}

// mentions renders user IDs as Slack mentions in a readable list:
// "<@U1>", "<@U1> or <@U2>", "<@U1>, <@U2> or <@U3>".
func mentions(users []string) string { return orList(users, "<@%s>") }

// channelMentions is mentions for channels: "<#C1> or <#C2>".
func channelMentions(channels []string) string { return orList(channels, "<#%s>") }

func orList(ids []string, format string) string {
	items := make([]string, len(ids))
	for i, id := range ids {
		items[i] = fmt.Sprintf(format, id)
	}
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}
