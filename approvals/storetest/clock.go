package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// clockTests: the queries the workflow's timers, restart and redraws make
// with times, at their boundaries, to the store's precision.
var clockTests = []test{
	{"ListUpdatedSince", testListUpdatedSince},
	{"UpdatedSinceBoundary", testUpdatedSinceBoundary},
	{"EventsSinceTheChange", testEventsSinceTheChange},
	{"DueAtItsTime", testDueAtItsTime},
	{"DeadlinesNeverMoveLater", testDeadlinesNeverMoveLater},
}

func testListUpdatedSince(t *testing.T, h *Harness) {
	s := h.open(t)
	old := mustCreate(t, s, newRequest())
	time.Sleep(5 * time.Millisecond)
	since := time.Now()
	fresh := mustCreate(t, s, newRequest())
	mustUpdate(t, s, old.ID, func(r *approvals.Request) { r.DecisionReason = "touched" })
	unchanged := mustCreate(t, s, newRequest())
	got, err := s.ListUpdatedSince(context.Background(), since)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{fresh.ID, old.ID, unchanged.ID}; !reflect.DeepEqual(ids(got), want) {
		t.Errorf("updated since: %v, want %v (by update time)", ids(got), want)
	}
	later, err := s.ListUpdatedSince(context.Background(), time.Now().Add(time.Second))
	if err != nil || len(later) != 0 {
		t.Errorf("updated in the future: %v, %v", ids(later), err)
	}
}

// testUpdatedSinceBoundary: "since" is inclusive, to the store's step:
// the request's own UpdatedAt finds it, one step later does not.
func testUpdatedSinceBoundary(t *testing.T, h *Harness) {
	s := h.open(t)
	r := mustCreate(t, s, newRequest())
	r = mustUpdate(t, s, r.ID, nil)
	for since, want := range map[time.Time]int{r.UpdatedAt: 1, r.UpdatedAt.Add(h.step()): 0, r.UpdatedAt.Add(-h.step()): 1} {
		got, err := s.ListUpdatedSince(context.Background(), since)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != want {
			t.Errorf("ListUpdatedSince(UpdatedAt %+v) = %v, want %d", since.Sub(r.UpdatedAt), ids(got), want)
		}
	}
}

// testEventsSinceTheChange: after a restart the workflow reads the audit
// records made since a request last changed (Events(r.UpdatedAt)), to
// find the answer to a call in flight: a record made right after the
// change must be among them, whatever the precision.
func testEventsSinceTheChange(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	for i := range 20 {
		r := createIn(t, s, newRequest(), approvals.StateApproved)
		mustRecord(t, s, approvals.Event{RequestID: r.ID, Kind: approvals.EventConfirmed, Actor: "before"})
		moved, err := s.Transition(ctx, r.ID, approvals.StateExecuting, nil)
		if err != nil {
			t.Fatal(err)
		}
		mustRecord(t, s, approvals.Event{RequestID: r.ID, Kind: approvals.EventGraphCall, Details: map[string]string{"method": "POST", "status": "204"}})
		stored := mustGet(t, s, r.ID)
		found := false
		for _, e := range mustEvents(t, s, stored.UpdatedAt) {
			if e.RequestID == r.ID && e.Kind == approvals.EventGraphCall {
				found = true
			}
			if e.RequestID == r.ID && e.Time.Before(moved.UpdatedAt) {
				t.Errorf("#%d: Events(%v) returned a record of %v", i, stored.UpdatedAt, e.Time)
			}
		}
		if !found {
			t.Fatalf("#%d: the call recorded after the change is not among Events(UpdatedAt %v)", i, stored.UpdatedAt)
		}
	}
}

// testDueAtItsTime: an entry postponed to T is due at T, not one step
// before, and NextAt reads back as T to the precision.
func testDueAtItsTime(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	r := mustCreate(t, s, newRequest())
	enqueueOK(t, s, redrawOf(r.ID))
	o := dueNow(t, s, "")[0]
	at := time.Now().Add(90*time.Second + 123456789*time.Nanosecond)
	if err := s.Postpone(ctx, o, at, "later"); err != nil {
		t.Fatal(err)
	}
	for when, want := range map[time.Time]int{h.at(at): 1, at: 1, h.at(at).Add(-h.step()): 0, at.Add(time.Hour): 1, time.Now(): 0} {
		got, err := s.Due(ctx, when, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != want {
			t.Errorf("Due(T%+v) = %d entries, want %d", when.Sub(at), len(got), want)
		}
		if len(got) == 1 && !got[0].NextAt.Equal(h.at(at)) {
			t.Errorf("NextAt = %v, want %v", got[0].NextAt, h.at(at))
		}
	}
}

// testDeadlinesNeverMoveLater: a deadline kept to the store's precision is
// never later than the one given (no request expires late, no look at a
// Cloud PC comes late), and is stable: saving the request again as read
// keeps it exactly.
func testDeadlinesNeverMoveLater(t *testing.T, h *Harness) {
	s := h.open(t)
	now := time.Now()
	expires, decide, next := now.Add(24*time.Hour+999*time.Nanosecond), now.Add(24*time.Hour+1), now.Add(time.Minute+500)
	r := newRequest()
	r.ExpiresAt, r.DecideBy = expires, decide
	mustCreate(t, s, r)
	r = createInFrom(t, s, r, approvals.StateSucceeded)
	r = mustUpdate(t, s, r.ID, func(c *approvals.Request) {
		c.Tracking = approvals.Tracking{Since: now, Until: now.Add(3 * time.Hour), NextCheck: next}
	})
	got := mustGet(t, s, r.ID)
	for name, pair := range map[string][2]time.Time{
		"ExpiresAt": {got.ExpiresAt, expires}, "DecideBy": {got.DecideBy, decide}, "NextCheck": {got.Tracking.NextCheck, next},
	} {
		if pair[0].After(pair[1]) || pair[1].Sub(pair[0]) >= h.step() {
			t.Errorf("%s = %v, given %v: want it at most one step (%v) earlier, never later", name, pair[0], pair[1], h.step())
		}
	}
	// Saved again as read (the workflow's "back to pending with its
	// deadline" copies DecideBy into ExpiresAt): nothing moves.
	again := mustUpdate(t, s, r.ID, func(c *approvals.Request) { c.ExpiresAt = c.DecideBy })
	if !again.ExpiresAt.Equal(got.DecideBy) || !again.DecideBy.Equal(got.DecideBy) || !again.Tracking.NextCheck.Equal(got.Tracking.NextCheck) {
		t.Errorf("saved again: expires %v, decide by %v, next check %v; want %v, %v, %v",
			again.ExpiresAt, again.DecideBy, again.Tracking.NextCheck, got.DecideBy, got.DecideBy, got.Tracking.NextCheck)
	}
	tracking, err := s.ListTracking(context.Background())
	if err != nil || len(tracking) != 1 || !reflect.DeepEqual(tracking[0], again) {
		t.Errorf("ListTracking = %v, %v; want %s as saved", ids(tracking), err, again.ID)
	}
}

// createInFrom moves the created request r on to state.
func createInFrom(t testing.TB, s approvals.Store, r *approvals.Request, state approvals.State) *approvals.Request {
	t.Helper()
	for _, to := range pathTo[state] {
		r = mustMove(t, s, r.ID, to)
	}
	return r
}
