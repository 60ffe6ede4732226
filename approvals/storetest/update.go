package storetest

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// updateTests: changes that do not move the state.
var updateTests = []test{
	{"Update", testUpdate},
	{"UpdateRefusesFixedFields", testUpdateRefusesFixedFields},
	{"UpdateResolvesCloudPCOnce", testUpdateResolvesCloudPCOnce},
	{"UpdateNotFound", testUpdateNotFound},
	{"TrackingHoldsCloudPC", testTrackingHoldsCloudPC},
	{"ApprovalsOnlyGrow", testApprovalsOnlyGrow},
	{"ApplyUpdateFromStates", testApplyUpdateFromStates},
}

// testApplyUpdateFromStates: an update (no move) with From applies only in
// those states; elsewhere it is a *TransitionError carrying the request as
// it is, and nothing is enqueued.
func testApplyUpdateFromStates(t *testing.T, h *Harness) {
	s := h.open(t)
	r := createIn(t, s, newRequest(), approvals.StateConfirming)
	notify := func(r *approvals.Request) []approvals.Outgoing {
		return []approvals.Outgoing{{RequestID: r.ID, Kind: approvals.OutgoingPrompts}}
	}
	_, err := s.Apply(context.Background(), r.ID, approvals.Change{
		From: []approvals.State{approvals.StateScheduled}, Update: func(c *approvals.Request) { c.HeadsUp.Postponed = true }, Notify: notify})
	var te *approvals.TransitionError
	if !errors.As(err, &te) || te.Current.State != approvals.StateConfirming {
		t.Fatalf("update from scheduled on a confirming request: %v, want a *TransitionError", err)
	}
	if got := mustGet(t, s, r.ID); got.HeadsUp.Postponed {
		t.Error("refused update stored")
	}
	if due, err := s.Due(context.Background(), time.Now().Add(time.Hour), r.ID, 10); err != nil || len(due) != 0 {
		t.Errorf("refused update enqueued %d entries (%v)", len(due), err)
	}
	got, err := s.Apply(context.Background(), r.ID, approvals.Change{
		From: []approvals.State{approvals.StateConfirming}, Update: func(c *approvals.Request) { c.HeadsUp.Postponed = true }, Notify: notify})
	if err != nil || !got.HeadsUp.Postponed || got.State != approvals.StateConfirming {
		t.Errorf("update from confirming: %+v, %v", got, err)
	}
}

// testApprovalsOnlyGrow: approvals are added one by one, with who, as whom
// and when; a recorded one is never removed or rewritten.
func testApprovalsOnlyGrow(t *testing.T, h *Harness) {
	s := h.open(t)
	r := newRequest()
	r.ApprovalsRequired = 2
	r = mustCreate(t, s, r)
	at := time.Now()
	first := approvals.Approval{By: "U_APPROVER", SignedInAs: "approver@example.com", At: at}
	got := mustUpdate(t, s, r.ID, func(c *approvals.Request) { c.Approvals = append(c.Approvals, first) })
	if len(got.Approvals) != 1 || got.Approvals[0].By != first.By || !got.Approvals[0].At.Equal(h.at(at)) {
		t.Fatalf("approvals after the first = %+v", got.Approvals)
	}
	if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored.Approvals, got.Approvals) || stored.ApprovalsRequired != 2 {
		t.Errorf("Get: approvals %+v of %d, want %+v of 2", stored.Approvals, stored.ApprovalsRequired, got.Approvals)
	}
	for name, spoil := range map[string]func(*approvals.Request){
		"removed":          func(c *approvals.Request) { c.Approvals = nil },
		"approver changed": func(c *approvals.Request) { c.Approvals[0].By = "U_MALLORY" },
		"username changed": func(c *approvals.Request) { c.Approvals[0].SignedInAs = "mallory@example.com" },
		"time changed":     func(c *approvals.Request) { c.Approvals[0].At = c.Approvals[0].At.Add(-time.Hour) },
		"replaced":         func(c *approvals.Request) { c.Approvals = []approvals.Approval{{By: "U_OTHER", At: at}} },
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := s.Update(context.Background(), r.ID, spoil); err == nil {
				t.Error("Update succeeded, want an error")
			}
			if _, err := s.Transition(context.Background(), r.ID, approvals.StateApproved, spoil); err == nil {
				t.Error("Transition succeeded, want an error")
			}
			if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, got) {
				t.Errorf("refused change stored: %+v", stored.Approvals)
			}
		})
	}
	second := approvals.Approval{By: "U_OTHER", SignedInAs: "other@example.com", At: at.Add(time.Minute)}
	moved, err := s.Transition(context.Background(), r.ID, approvals.StateApproved, func(c *approvals.Request) { c.Approvals = append(c.Approvals, second) })
	if err != nil || len(moved.Approvals) != 2 || moved.Approvals[1].By != second.By {
		t.Fatalf("Transition adding the second approval: %+v, %v", moved, err)
	}
}

func testUpdate(t *testing.T, h *Harness) {
	s := h.open(t)
	r := createIn(t, s, newRequest(), approvals.StateSucceeded)
	time.Sleep(time.Millisecond)
	next := time.Now().Add(time.Minute)
	got := mustUpdate(t, s, r.ID, func(c *approvals.Request) {
		c.Prompts = append(c.Prompts, approvals.MessageRef{ChannelID: "D1", TS: "1.1"}, approvals.MessageRef{ChannelID: "D2", TS: "2.2"})
		c.Candidates = []approvals.CloudPC{{ID: c.CloudPCID}}
		c.DecisionReason = "why not"
		c.Tracking = approvals.Tracking{Until: next.Add(time.Hour), NextCheck: next, Checks: 1, LastStatus: "provisioning"}
		c.UpdatedAt = time.Unix(0, 0) // overridden
	})
	if got.State != approvals.StateSucceeded || len(got.Prompts) != 2 || got.DecisionReason != "why not" ||
		got.Tracking.Checks != 1 || len(got.Candidates) != 1 {
		t.Errorf("update not applied: %+v", got)
	}
	if !got.Tracking.NextCheck.Equal(h.at(next)) || got.Tracking.NextCheck.Location() != time.UTC {
		t.Errorf("NextCheck = %v, want %v in UTC", got.Tracking.NextCheck, h.at(next))
	}
	if !got.UpdatedAt.After(r.UpdatedAt) {
		t.Errorf("UpdatedAt = %v, want later than %v", got.UpdatedAt, r.UpdatedAt)
	}
	if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, got) {
		t.Errorf("Get = %+v\nUpdate returned %+v", stored, got)
	}

	// A nil update only touches UpdatedAt.
	touched := mustUpdate(t, s, r.ID, nil)
	touched.UpdatedAt = got.UpdatedAt
	if !reflect.DeepEqual(touched, got) {
		t.Errorf("nil update changed %+v", touched)
	}
}

func testUpdateRefusesFixedFields(t *testing.T, h *Harness) {
	s := h.open(t)
	r := mustCreate(t, s, newRequest())
	changes := map[string]func(*approvals.Request){
		"State":                func(c *approvals.Request) { c.State = approvals.StateApproved },
		"CloudPCID not a GUID": func(c *approvals.Request) { c.CloudPCID = "../../users" },
		"time out of range":    func(c *approvals.Request) { c.ExpiresAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"approvers emptied":    func(c *approvals.Request) { c.Approvers = nil },
		"change plus other work": func(c *approvals.Request) {
			c.Outcome, c.Target = &approvals.Outcome{Kind: approvals.OutcomeNoMatch}, "y"
		},
	}
	for name, change := range fixedFieldChanges {
		changes[name] = change
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			_, err := s.Update(context.Background(), r.ID, change)
			if err == nil {
				t.Fatal("Update succeeded, want an error")
			}
			if errors.Is(err, approvals.ErrOpenRequestExists) || errors.Is(err, approvals.ErrNotFound) {
				t.Errorf("got %v, want a plain error", err)
			}
			if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, r) {
				t.Errorf("refused update changed the request: %+v", stored)
			}
		})
	}
}

func testUpdateResolvesCloudPCOnce(t *testing.T, h *Harness) {
	s := h.open(t)
	r := mustCreate(t, s, unresolved())
	pc := uuid.NewString()
	got := mustUpdate(t, s, r.ID, func(c *approvals.Request) { c.CloudPCID = strings.ToUpper(pc) })
	if got.CloudPCID != pc {
		t.Errorf("CloudPCID = %q, want %q", got.CloudPCID, pc)
	}
	// The same id in another spelling is no change.
	mustUpdate(t, s, r.ID, func(c *approvals.Request) { c.CloudPCID = strings.ToUpper(pc) })
	if _, err := s.Update(context.Background(), r.ID, func(c *approvals.Request) { c.CloudPCID = uuid.NewString() }); err == nil {
		t.Error("second resolve succeeded, want an error")
	}
	dup := newRequest()
	dup.CloudPCID = pc
	if err := s.Create(context.Background(), dup); !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("Create for the resolved Cloud PC: %v, want ErrOpenRequestExists", err)
	}
}

func testUpdateNotFound(t *testing.T, h *Harness) {
	s := h.open(t)
	_, err := s.Update(context.Background(), "R-ZZZZZZ", func(*approvals.Request) {
		t.Error("update called for a missing request")
	})
	if !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("Update of unknown reference: %v, want ErrNotFound", err)
	}
}

// testTrackingHoldsCloudPC: a succeeded request keeps its Cloud PC while
// its reprovision is followed and lets go when tracking ends.
func testTrackingHoldsCloudPC(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	r := createIn(t, s, newRequest(), approvals.StateExecuting)
	r, err := s.Transition(ctx, r.ID, approvals.StateSucceeded, func(c *approvals.Request) { c.Tracking = trackingActive() })
	if err != nil {
		t.Fatal(err)
	}
	dup := newRequest()
	dup.CloudPCID = r.CloudPCID
	if err := s.Create(ctx, dup); !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("Create while tracking: %v, want ErrOpenRequestExists", err)
	}
	mustUpdate(t, s, r.ID, func(c *approvals.Request) { c.Tracking.Result = approvals.TrackProvisioned })
	if _, err := s.OpenFor(ctx, r.CloudPCID); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("OpenFor after tracking ended: %v, want ErrNotFound", err)
	}
	if err := s.Create(ctx, dup); err != nil {
		t.Errorf("Create after tracking ended: %v", err)
	}
	// Tracking may not start again while another request holds the PC.
	_, err = s.Update(ctx, r.ID, func(c *approvals.Request) { c.Tracking.Result = "" })
	if !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("restarting tracking on a taken Cloud PC: %v, want ErrOpenRequestExists", err)
	}
}
