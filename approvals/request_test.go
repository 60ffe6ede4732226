package approvals_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

var allStates = []approvals.State{
	approvals.StatePending, approvals.StateApproved, approvals.StateExecuting,
	approvals.StateSucceeded, approvals.StateFailed, approvals.StateOutcomeUnknown,
	approvals.StateDenied, approvals.StateExpired, approvals.StateCanceled, approvals.StateConfirming,
	approvals.StateScheduled,
}

func TestStateMachine(t *testing.T) {
	allowed := map[[2]approvals.State]bool{
		{approvals.StatePending, approvals.StateApproved}:         true,
		{approvals.StatePending, approvals.StateDenied}:           true,
		{approvals.StatePending, approvals.StateExpired}:          true,
		{approvals.StatePending, approvals.StateCanceled}:         true,
		{approvals.StateApproved, approvals.StateConfirming}:      true,
		{approvals.StateApproved, approvals.StateExecuting}:       true,
		{approvals.StateApproved, approvals.StatePending}:         true,
		{approvals.StateApproved, approvals.StateFailed}:          true,
		{approvals.StateConfirming, approvals.StateExecuting}:     true,
		{approvals.StateConfirming, approvals.StatePending}:       true,
		{approvals.StateConfirming, approvals.StateCanceled}:      true,
		{approvals.StateApproved, approvals.StateCanceled}:        true, // the requester withdraws it during the sign-in
		{approvals.StateConfirming, approvals.StateFailed}:        true,
		{approvals.StateConfirming, approvals.StateExpired}:       true,
		{approvals.StateExecuting, approvals.StateSucceeded}:      true,
		{approvals.StateExecuting, approvals.StateFailed}:         true,
		{approvals.StateExecuting, approvals.StateOutcomeUnknown}: true,
		{approvals.StateExecuting, approvals.StatePending}:        true, // Graph refused for want of a fresh sign-in
		// Any Deny ends a request needing more approvals until it is confirmed.
		{approvals.StateApproved, approvals.StateDenied}:   true,
		{approvals.StateConfirming, approvals.StateDenied}: true,
		// The wait between the heads-up and the call.
		{approvals.StateConfirming, approvals.StateScheduled}: true,
		{approvals.StateApproved, approvals.StateScheduled}:   true, // Approve on a prompt with the details, signed in
		{approvals.StateScheduled, approvals.StateExecuting}:  true,
		{approvals.StateScheduled, approvals.StatePending}:    true,
		{approvals.StateScheduled, approvals.StateCanceled}:   true,
		{approvals.StateScheduled, approvals.StateFailed}:     true,
		{approvals.StateScheduled, approvals.StateExpired}:    true,
		// A batch stopped before any of its calls was sent.
		{approvals.StateExecuting, approvals.StateCanceled}: true,
	}
	for _, from := range allStates {
		for _, to := range allStates {
			if got, want := from.CanMoveTo(to), allowed[[2]approvals.State{from, to}]; got != want {
				t.Errorf("%s.CanMoveTo(%s) = %v, want %v", from, to, got, want)
			}
		}
	}
	// Only an approved (and possibly confirmed) request may start executing:
	// that is what keeps a Graph call from being sent twice.
	for _, from := range allStates {
		if from != approvals.StateApproved && from != approvals.StateConfirming && from != approvals.StateScheduled && from.CanMoveTo(approvals.StateExecuting) {
			t.Errorf("%s may move to executing", from)
		}
	}
	if approvals.State("bogus").CanMoveTo(approvals.StatePending) {
		t.Error("an unknown state may move")
	}
}

func TestFinalAndOpen(t *testing.T) {
	open := map[approvals.State]bool{
		approvals.StatePending: true, approvals.StateApproved: true, approvals.StateExecuting: true,
		approvals.StateConfirming: true, approvals.StateScheduled: true,
	}
	for _, s := range allStates {
		if got := s.Open(); got != open[s] {
			t.Errorf("%s.Open() = %v, want %v", s, got, open[s])
		}
		// Open and final are complements: an open request can still move,
		// a closed one never can.
		if got := s.Final(); got != !open[s] {
			t.Errorf("%s.Final() = %v, want %v", s, got, !open[s])
		}
	}
}

func TestNewReference(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		ref := approvals.NewReference()
		if !approvals.ValidReference(ref) {
			t.Fatalf("NewReference() = %q, not a valid reference", ref)
		}
		if strings.ContainsAny(ref[2:], "01IO") {
			t.Errorf("NewReference() = %q uses an ambiguous character", ref)
		}
		seen[ref] = true
	}
	// 1000 draws from 32^6: a collision or two is possible, many are not.
	if len(seen) < 995 {
		t.Errorf("only %d distinct references in 1000", len(seen))
	}
}

func TestValidReference(t *testing.T) {
	for ref, want := range map[string]bool{
		"R-7K3F9Q":  true,
		"R-7k3f9q":  false, // lower case
		"R-7K3F90":  false, // 0 is not in the alphabet
		"R-7K3F9":   false,
		"R-7K3F9QQ": false,
		"X-7K3F9Q":  false,
		"":          false,
	} {
		if got := approvals.ValidReference(ref); got != want {
			t.Errorf("ValidReference(%q) = %v, want %v", ref, got, want)
		}
	}
}

func TestValidCloudPCID(t *testing.T) {
	for id, want := range map[string]bool{
		"4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b":             true,
		"4E1F0B9A-2C3D-4E5F-8A9B-0C1D2E3F4A5B":             true,
		"4e1f0b9a2c3d4e5f8a9b0c1d2e3f4a5b":                 false,
		"{4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b}":           false,
		"4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5":              false,
		"4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5g":             false,
		"4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b/../../users": false,
		"../4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b":          false,
		"4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b\n":           false,
		"4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b?$select=id":  false,
		"": false,
		"4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b%2F..%2Fsomething": false,
	} {
		if got := approvals.ValidCloudPCID(id); got != want {
			t.Errorf("ValidCloudPCID(%q) = %v, want %v", id, got, want)
		}
	}
}

func validRequest() *approvals.Request {
	return &approvals.Request{
		ID:          "R-7K3F9Q",
		Target:      "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
		CloudPCID:   "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
		RequesterID: "U1",
		Approvers:   []string{"U2", "U3"},
		State:       approvals.StatePending,
	}
}

func TestValidate(t *testing.T) {
	if err := validRequest().Validate(); err != nil {
		t.Fatalf("valid request: %v", err)
	}
	unresolved := validRequest()
	unresolved.Target, unresolved.CloudPCID = "CPC-alice-01", ""
	if err := unresolved.Validate(); err != nil {
		t.Fatalf("request with an unresolved target: %v", err)
	}
	for _, tc := range []struct {
		spoil func(*approvals.Request)
		want  string
	}{
		{func(r *approvals.Request) { r.ID = "R-7K3F90" }, "reference"},
		{func(r *approvals.Request) { r.CloudPCID = "not-a-guid" }, "cloud PC id"},
		{func(r *approvals.Request) { r.RequesterID = "" }, "requester"},
		{func(r *approvals.Request) { r.Target, r.CloudPCID = "", "" }, "target"},
		{func(r *approvals.Request) { r.Approvers = nil }, "approver"},
		{func(r *approvals.Request) { r.Approvers = []string{} }, "approver"},
		{func(r *approvals.Request) { r.State = "" }, "state"},
		{func(r *approvals.Request) { r.State = "done" }, "state"},
	} {
		r := validRequest()
		tc.spoil(r)
		err := r.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error about %s", r, err, tc.want)
		}
	}

	// All problems are reported at once.
	err := (&approvals.Request{}).Validate()
	if err == nil {
		t.Fatal("empty request is valid")
	}
	for _, want := range []string{"reference", "target", "requester", "approver", "state"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestTransitionError(t *testing.T) {
	r := validRequest()
	r.State = approvals.StateDenied
	var err error = &approvals.TransitionError{Current: r, To: approvals.StateApproved}
	var te *approvals.TransitionError
	if !errors.As(err, &te) || te.Current != r {
		t.Fatal("errors.As does not recover the TransitionError")
	}
	if got, want := err.Error(), "request R-7K3F9Q is denied; cannot become approved"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestRequestOpen(t *testing.T) {
	tracking := approvals.Tracking{Until: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	done := tracking
	done.Result = approvals.TrackProvisioned
	for _, s := range allStates {
		for name, tc := range map[string]struct {
			tracking approvals.Tracking
			want     bool
		}{
			"untracked":     {approvals.Tracking{}, s.Open()},
			"tracking":      {tracking, s.Open() || s == approvals.StateSucceeded},
			"tracking done": {done, s.Open()},
		} {
			r := validRequest()
			r.State, r.Tracking = s, tc.tracking
			if got := r.Open(); got != tc.want {
				t.Errorf("%s, %s: Open() = %v, want %v", s, name, got, tc.want)
			}
		}
	}
}

func TestTrackingActive(t *testing.T) {
	until := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		t    approvals.Tracking
		want bool
	}{
		{approvals.Tracking{}, false},
		{approvals.Tracking{NextCheck: until, Checks: 2}, false},
		{approvals.Tracking{Until: until}, true},
		{approvals.Tracking{Until: until, Paused: true}, true},
		{approvals.Tracking{Until: until, Result: approvals.TrackTimedOut}, false},
	} {
		if got := tc.t.Active(); got != tc.want {
			t.Errorf("%+v.Active() = %v, want %v", tc.t, got, tc.want)
		}
	}
}

func TestIsApprover(t *testing.T) {
	r := validRequest()
	for user, want := range map[string]bool{"U2": true, "U3": true, "U1": false, "": false, "u2": false} {
		if got := r.IsApprover(user); got != want {
			t.Errorf("IsApprover(%q) = %v, want %v", user, got, want)
		}
	}
}
