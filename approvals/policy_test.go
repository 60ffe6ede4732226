package approvals_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

func TestPolicyValidate(t *testing.T) {
	valid := approvals.Policy{
		Approvers:   []string{"U0APPROVER", "W0GRID"},
		Requesters:  []string{"U0ALICE"},
		Channels:    []string{"C0OPS", "G0PRIVATE"},
		ApprovalTTL: time.Hour,
	}
	if err := valid.Validate(); err != nil {
		t.Fatalf("valid policy: %v", err)
	}
	if err := (approvals.Policy{Approvers: []string{"U0APPROVER"}}).Validate(); err != nil {
		t.Fatalf("minimal policy: %v", err)
	}
	for name, tc := range map[string]struct {
		spoil func(*approvals.Policy)
		want  string
	}{
		"no approvers":          {func(p *approvals.Policy) { p.Approvers = nil }, "at least one approver"},
		"approver by name":      {func(p *approvals.Policy) { p.Approvers = []string{"@alice"} }, `approver "@alice"`},
		"approver blank":        {func(p *approvals.Policy) { p.Approvers = []string{""} }, "approver"},
		"approver twice":        {func(p *approvals.Policy) { p.Approvers = []string{"U0A1", "U0A1"} }, "listed twice"},
		"requester malformed":   {func(p *approvals.Policy) { p.Requesters = []string{"U0ALICE "} }, "requester"},
		"channel by name":       {func(p *approvals.Policy) { p.Channels = []string{"#ops"} }, `channel "#ops"`},
		"negative TTL":          {func(p *approvals.Policy) { p.ApprovalTTL = -time.Second }, "negative"},
		"several, all reported": {func(p *approvals.Policy) { p.Approvers, p.Channels = nil, []string{"#x"} }, "approver"},
	} {
		t.Run(name, func(t *testing.T) {
			p := valid
			tc.spoil(&p)
			err := p.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error about %s", err, tc.want)
			}
		})
	}
	err := (approvals.Policy{Channels: []string{"#x"}, ApprovalTTL: -1}).Validate()
	for _, want := range []string{"approver", "channel", "negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, does not mention %s", err, want)
		}
	}
}

// refusal checks that err is a *Refusal of kind want naming users (who may,
// in that order) and channels, and that its sentence for the logs names the
// kind. It returns the refusal (nil if err is none).
func refusal(t *testing.T, err error, want approvals.RefusalKind, users, channels []string) *approvals.Refusal {
	t.Helper()
	var r *approvals.Refusal
	if !errors.As(err, &r) {
		t.Errorf("got %v, want a *Refusal %s", err, want)
		return nil
	}
	if r.Kind != want {
		t.Errorf("refusal kind %q, want %q (%v)", r.Kind, want, r)
	}
	if !slices.Equal(r.Users, users) {
		t.Errorf("refusal %s: Users %q, want %q", r.Kind, r.Users, users)
	}
	if !slices.Equal(r.Channels, channels) {
		t.Errorf("refusal %s: Channels %q, want %q", r.Kind, r.Channels, channels)
	}
	if !strings.Contains(r.Error(), string(want)) {
		t.Errorf("Error() = %q, does not name %s", r.Error(), want)
	}
	return r
}

func TestMayRequest(t *testing.T) {
	open := approvals.Policy{Approvers: []string{"U0A1", "U0A2"}}
	if err := open.MayRequest("U0ANYONE", "C0ANYWHERE"); err != nil {
		t.Errorf("open policy refused: %v", err)
	}
	// An approver may ask when someone else can approve.
	if err := open.MayRequest("U0A1", "C0OPS"); err != nil {
		t.Errorf("approver with a colleague refused: %v", err)
	}

	limited := approvals.Policy{
		Approvers:  []string{"U0A1", "U0A2"},
		Requesters: []string{"U0ALICE", "U0BOB"},
		Channels:   []string{"C0OPS", "C0HELP"},
	}
	if err := limited.MayRequest("U0BOB", "C0HELP"); err != nil {
		t.Errorf("listed requester in a listed channel refused: %v", err)
	}
	// Whom to ask instead: the approvers.
	refusal(t, limited.MayRequest("U0MALLORY", "C0OPS"), approvals.RefusedNotARequester, []string{"U0A1", "U0A2"}, nil)
	// Where requests are taken.
	refusal(t, limited.MayRequest("U0ALICE", "C0RANDOM"), approvals.RefusedChannel, nil, []string{"C0OPS", "C0HELP"})
	// Not being allowed at all is the more useful thing to hear.
	refusal(t, limited.MayRequest("U0MALLORY", "C0RANDOM"), approvals.RefusedNotARequester, []string{"U0A1", "U0A2"}, nil)
	// The refusal's lists are its own: changing them leaves the policy be.
	if r := refusal(t, limited.MayRequest("U0MALLORY", "C0OPS"), approvals.RefusedNotARequester, []string{"U0A1", "U0A2"}, nil); r != nil {
		r.Users[0] = "U0MALLORY"
		if limited.Approvers[0] != "U0A1" {
			t.Errorf("a refusal shares the policy's approvers: %v", limited.Approvers)
		}
	}

	sole := approvals.Policy{Approvers: []string{"U0A1"}}
	refusal(t, sole.MayRequest("U0A1", "C0OPS"), approvals.RefusedSoleApprover, nil, nil)
	if err := sole.MayRequest("U0ALICE", "C0OPS"); err != nil {
		t.Errorf("non-approver with a sole approver refused: %v", err)
	}
	sole.AllowSelfApproval = true
	if err := sole.MayRequest("U0A1", "C0OPS"); err != nil {
		t.Errorf("sole approver with self-approval allowed refused: %v", err)
	}
}

func TestMayDecide(t *testing.T) {
	r := func(requester string, approvers ...string) *approvals.Request {
		return &approvals.Request{ID: "R-7K3F9Q", RequesterID: requester, Approvers: approvers}
	}
	// Who decides is the request's approvers who are still configured.
	strict := approvals.Policy{Approvers: []string{"U0A1", "U0A2", "U0A3"}}
	lenient := approvals.Policy{Approvers: []string{"U0A1", "U0A2", "U0A3"}, AllowSelfApproval: true}

	for _, tc := range []struct {
		name   string
		policy approvals.Policy
		user   string
		req    *approvals.Request
		want   approvals.RefusalKind // "": allowed
		users  []string              // who may decide, as the refusal names them
	}{
		{"approver", strict, "U0A2", r("U0ALICE", "U0A2", "U0A3"), "", nil},
		{"other approver", strict, "U0A3", r("U0ALICE", "U0A2", "U0A3"), "", nil},
		{"request's approvers, not the policy's", strict, "U0A1", r("U0ALICE", "U0A2", "U0A3"),
			approvals.RefusedNotDecider, []string{"U0A2", "U0A3"}},
		{"stranger", strict, "U0MALLORY", r("U0ALICE", "U0A1", "U0A2", "U0A3"),
			approvals.RefusedNotDecider, []string{"U0A1", "U0A2", "U0A3"}},
		{"requester who is not an approver", strict, "U0ALICE", r("U0ALICE", "U0A1"),
			approvals.RefusedNotDecider, []string{"U0A1"}},
		{"self, others may", strict, "U0A1", r("U0A1", "U0A1", "U0A2"),
			approvals.RefusedOwnRequest, []string{"U0A2"}},
		{"stranger is not told the requester may decide", strict, "U0MALLORY", r("U0A1", "U0A1", "U0A2"),
			approvals.RefusedNotDecider, []string{"U0A2"}},
		{"self, sole approver", strict, "U0A1", r("U0A1", "U0A1"),
			approvals.RefusedOwnRequestNoOther, []string{}},
		{"stranger, sole approver asked", strict, "U0MALLORY", r("U0A1", "U0A1"),
			approvals.RefusedOnlyApproverAsked, []string{"U0A1"}},
		{"no approvers anywhere", approvals.Policy{}, "U0A1", r("U0ALICE"), approvals.RefusedNoApprovers, []string{}},
		{"removed approver", strict, "U0OLD", r("U0ALICE", "U0A2", "U0OLD"),
			approvals.RefusedNotDecider, []string{"U0A2"}},
		{"removed approvers only: the configured ones take over", strict, "U0A3", r("U0ALICE", "U0OLD"), "", nil},
		{"removed approvers only: still refused", strict, "U0OLD", r("U0ALICE", "U0OLD"),
			approvals.RefusedNotDecider, []string{"U0A1", "U0A2", "U0A3"}},
		{"self allowed", lenient, "U0A1", r("U0A1", "U0A1"), "", nil},
		{"self allowed, still an approver only", lenient, "U0ALICE", r("U0ALICE", "U0A1"),
			approvals.RefusedNotDecider, []string{"U0A1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]string(nil), tc.req.Approvers...)
			err := tc.policy.MayDecide(tc.user, tc.req)
			if tc.want == "" {
				if err != nil {
					t.Errorf("MayDecide(%s) = %v, want nil", tc.user, err)
				}
			} else if got := refusal(t, err, tc.want, tc.users, nil); got != nil && got.Request != tc.req {
				t.Errorf("refusal carries request %v, want the one decided on", got.Request)
			}
			if strings.Join(tc.req.Approvers, ",") != strings.Join(before, ",") {
				t.Errorf("MayDecide changed the request's approvers to %v", tc.req.Approvers)
			}
		})
	}
}

func TestNewRequest(t *testing.T) {
	p := approvals.Policy{Approvers: []string{"U0A1", "U0A2"}, ApprovalTTL: 30 * time.Minute}
	now := time.Date(2025, 6, 1, 14, 0, 0, 123, time.FixedZone("CEST", 2*3600))
	r := p.NewRequest(now, "U0ALICE", "C0OPS", "CPC-alice-01", "screen is black")

	if !approvals.ValidReference(r.ID) || r.State != approvals.StatePending {
		t.Errorf("ID, State = %q, %q", r.ID, r.State)
	}
	if r.Target != "CPC-alice-01" || r.CloudPCID != "" || r.Reason != "screen is black" ||
		r.RequesterID != "U0ALICE" || r.RequestChannelID != "C0OPS" {
		t.Errorf("fields not as given: %+v", r)
	}
	if !r.CreatedAt.Equal(now) || r.CreatedAt.Location() != time.UTC || !r.UpdatedAt.Equal(r.CreatedAt) {
		t.Errorf("CreatedAt, UpdatedAt = %v, %v; want %v in UTC", r.CreatedAt, r.UpdatedAt, now)
	}
	if want := now.Add(30 * time.Minute); !r.ExpiresAt.Equal(want) || r.ExpiresAt.Location() != time.UTC {
		t.Errorf("ExpiresAt = %v, want %v in UTC", r.ExpiresAt, want)
	}
	if err := r.Validate(); err != nil {
		t.Errorf("new request is invalid: %v", err)
	}
	// The request's approvers are its own.
	p.Approvers[0] = "U0MALLORY"
	if r.Approvers[0] != "U0A1" || len(r.Approvers) != 2 {
		t.Errorf("Approvers = %v, changed with the policy", r.Approvers)
	}

	byID := p.NewRequest(now, "U0ALICE", "C0OPS", "4E1F0B9A-2C3D-4E5F-8A9B-0C1D2E3F4A5B", "")
	if byID.CloudPCID != "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b" || byID.Target != "4E1F0B9A-2C3D-4E5F-8A9B-0C1D2E3F4A5B" {
		t.Errorf("Cloud PC id target: CloudPCID %q, Target %q", byID.CloudPCID, byID.Target)
	}
	if byID.ID == r.ID {
		t.Error("two requests got the same reference")
	}

	forever := approvals.Policy{Approvers: []string{"U0A1"}}.NewRequest(now, "U0ALICE", "C0OPS", "alice@example.com", "")
	if !forever.ExpiresAt.IsZero() {
		t.Errorf("ExpiresAt = %v with no TTL, want zero", forever.ExpiresAt)
	}
}

func TestExpiredAt(t *testing.T) {
	expires := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, s := range allStates {
		waiting := s == approvals.StatePending || s == approvals.StateConfirming || s == approvals.StateScheduled
		for _, tc := range []struct {
			name    string
			expires time.Time
			now     time.Time
			want    bool
		}{
			{"before", expires, expires.Add(-time.Nanosecond), false},
			{"at", expires, expires, waiting},
			{"after", expires, expires.Add(time.Hour), waiting},
			{"after, other zone", expires, expires.In(time.FixedZone("X", -3600)).Add(time.Nanosecond), waiting},
			{"never expires", time.Time{}, expires.Add(24 * 365 * time.Hour), false},
		} {
			r := &approvals.Request{State: s, ExpiresAt: tc.expires}
			if got := r.ExpiredAt(tc.now); got != tc.want {
				t.Errorf("%s, %s: ExpiredAt = %v, want %v", s, tc.name, got, tc.want)
			}
		}
	}
}
