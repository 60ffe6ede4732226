package approvals

import (
	"fmt"
	"slices"
	"strings"
)

// Batch makes a request one for many Cloud PCs under one approval: the
// Cloud PCs the requester listed (Targets), or every Cloud PC of a
// provisioning policy (Policy). The approver signs in, sees the list
// (Members) and confirms once; the workflow then sends one reprovision call
// per Cloud PC, paced, and keeps an outcome for each. A request with a
// Batch never has a CloudPCID of its own.
//
// Rules:
//   - at most Config.BatchMax Cloud PCs; repeats collapse;
//   - more than Config.BatchTwoPerson Cloud PCs (a policy batch, whose size
//     is known only after the sign-in, counts as more) needs at least two
//     approvals;
//   - a Cloud PC another open request holds is left out (MemberExcluded,
//     Other names it), and a Cloud PC a batch holds cannot be asked for on
//     its own (Request.HeldCloudPCs, enforced by the store);
//   - the status is checked again right before each Cloud PC's call;
//   - a member whose call may have been in flight when the process stopped
//     is MemberUnknown and never sent again; those not sent yet wait for the
//     approver to Resume (after a fresh sign-in) or Stop.
type Batch struct {
	// Targets are what the requester named (Cloud PC ids, device names,
	// user principal names), repeats removed; empty for a policy batch.
	Targets []string
	// Policy is the provisioning policy asked for, by id or display name;
	// "" for a list.
	Policy string
	// PolicyID and PolicyName are the provisioning policy the look-up
	// found (a policy batch).
	PolicyID, PolicyName string
	// Members are the Cloud PCs the look-up found, each with its own
	// outcome, in the order asked (by name for a policy). Empty until the
	// last approver signed in.
	Members []Member
	// Stopped: an approver stopped the batch; nothing more is sent.
	Stopped bool
	// StoppedBy is who stopped it.
	StoppedBy string
	// Halted: the process stopped while the batch ran; the members not sent
	// wait for Resume or Stop.
	Halted bool
}

// MemberResult is where one Cloud PC of a batch stands.
type MemberResult string

const (
	// MemberWaiting: to be sent, in its turn.
	MemberWaiting MemberResult = "waiting"
	// MemberSkipped: its status did not allow a reprovision (at the look-up
	// or the re-check right before its call); Detail is the status.
	MemberSkipped MemberResult = "skipped"
	// MemberExcluded: left out: another open request holds it (Other), or
	// its target matched no Cloud PC or several (Detail).
	MemberExcluded MemberResult = "excluded"
	// MemberSending: its call is about to be sent or in flight.
	MemberSending MemberResult = "sending"
	// MemberSent: Graph accepted the reprovision (204).
	MemberSent MemberResult = "sent"
	// MemberSucceeded: following it saw the Cloud PC provisioned again.
	MemberSucceeded MemberResult = "succeeded"
	// MemberFailed: Graph refused the call (GraphCode, GraphRequestID), or
	// the reprovision itself failed (Detail).
	MemberFailed MemberResult = "failed"
	// MemberUnknown: the call may have reached Graph but no answer came
	// (or the process stopped during it). Never sent again.
	MemberUnknown MemberResult = "outcome_unknown"
	// MemberNotSent: the batch was stopped, or ended, before its turn.
	MemberNotSent MemberResult = "not_sent"
)

// Member is one Cloud PC of a batch.
type Member struct {
	// Target is what the requester named for it ("" in a policy batch).
	Target string
	// CloudPCID is its Graph id ("" when the target matched none or
	// several).
	CloudPCID string
	// Device is what Graph said of it when last looked at.
	Device CloudPC
	Result MemberResult
	// Detail says more: the status that was not allowed, why a target was
	// left out, Graph's message, how following it ended.
	Detail string
	// Other is the open request that holds it (MemberExcluded).
	Other string
	// GraphCode, GraphStatus and GraphRequestID are Graph's answer to its
	// call.
	GraphCode      string
	GraphStatus    int
	GraphRequestID string
	// HeadsUp is what its user was told.
	HeadsUp HeadsUp
	// Tracked is how following it ended ("" while it is followed):
	// TrackProvisioned, TrackFailed or TrackTimedOut.
	Tracked string
}

// Holds reports whether the member keeps its Cloud PC from other requests
// (while its request is open): it is to be sent, being sent, or sent and
// being followed.
func (m Member) Holds() bool {
	if m.CloudPCID == "" {
		return false
	}
	switch m.Result {
	case MemberWaiting, MemberSending:
		return true
	case MemberSent:
		return m.Tracked == ""
	}
	return false
}

// Finished reports whether nothing more will happen to the member.
func (m Member) Finished() bool {
	switch m.Result {
	case MemberWaiting, MemberSending:
		return false
	case MemberSent:
		return m.Tracked == ""
	}
	return true
}

// IsBatch reports whether r is a batch.
func (r *Request) IsBatch() bool { return r.Batch != nil }

// HeldCloudPCs are the Cloud PC ids r keeps from other requests: its own
// while it is open, or for a batch, its members' that hold theirs. Every
// store enforces one holder per Cloud PC.
func (r *Request) HeldCloudPCs() []string {
	if !r.Open() {
		return nil
	}
	if r.Batch == nil {
		if r.CloudPCID == "" {
			return nil
		}
		return []string{strings.ToLower(r.CloudPCID)}
	}
	var ids []string
	for _, m := range r.Batch.Members {
		if m.Holds() {
			ids = append(ids, strings.ToLower(m.CloudPCID))
		}
	}
	return ids
}

// BatchCounts are a batch's members by result.
type BatchCounts map[MemberResult]int

// Counts tallies b's members by result.
func (b *Batch) Counts() BatchCounts {
	c := BatchCounts{}
	for _, m := range b.Members {
		c[m.Result]++
	}
	return c
}

// Sent is how many calls Graph accepted (sent, succeeded, and failed after
// being accepted are counted by the caller from Members when needed).
func (c BatchCounts) Sent() int { return c[MemberSent] + c[MemberSucceeded] }

// Size is how many Cloud PCs the batch names: its members once looked up,
// else its targets (0 for a policy batch not looked up yet).
func (b *Batch) Size() int {
	if len(b.Members) > 0 {
		return len(b.Members)
	}
	return len(b.Targets)
}

// Member returns the member for the Cloud PC id (nil if none).
func (b *Batch) Member(cloudPCID string) *Member {
	for i := range b.Members {
		if strings.EqualFold(b.Members[i].CloudPCID, cloudPCID) {
			return &b.Members[i]
		}
	}
	return nil
}

// validate checks what every stored batch must be.
func (b *Batch) validate() []string {
	var problems []string
	switch {
	case len(b.Targets) == 0 && b.Policy == "":
		problems = append(problems, "a batch names neither Cloud PCs nor a provisioning policy")
	case len(b.Targets) > 0 && b.Policy != "":
		problems = append(problems, "a batch names both Cloud PCs and a provisioning policy")
	}
	if slices.Contains(b.Targets, "") {
		problems = append(problems, "a batch target is empty")
	}
	seen := map[string]bool{}
	for _, m := range b.Members {
		if m.CloudPCID == "" {
			continue
		}
		id := strings.ToLower(m.CloudPCID)
		if !ValidCloudPCID(id) {
			problems = append(problems, fmt.Sprintf("batch member %q is not a GUID", m.CloudPCID))
		}
		if seen[id] {
			problems = append(problems, fmt.Sprintf("batch member %s is listed twice", id))
		}
		seen[id] = true
	}
	return problems
}

// sameBatchAsk reports whether after asks for what before asked: the
// targets and the policy are fixed when the request is made.
func sameBatchAsk(before, after *Batch) bool {
	if (before == nil) != (after == nil) {
		return false
	}
	return before == nil || (slices.Equal(before.Targets, after.Targets) && before.Policy == after.Policy)
}

// ProvisioningPolicy is a Windows 365 provisioning policy, as a batch names
// it.
type ProvisioningPolicy struct {
	ID, DisplayName string
}
