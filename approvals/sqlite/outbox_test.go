package sqlite_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
)

func due(t *testing.T, s *sqlite.Store, ref string) []approvals.Outgoing {
	t.Helper()
	out, err := s.Due(context.Background(), time.Now(), ref, 100)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func enqueueOK(t *testing.T, s *sqlite.Store, entries ...approvals.Outgoing) {
	t.Helper()
	if err := s.Enqueue(context.Background(), entries...); err != nil {
		t.Fatal(err)
	}
}

// Every field of every kind comes back as it went in.
func TestOutboxRoundTrip(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := mustCreate(t, s, newRequest())
	why := &approvals.Outcome{Kind: approvals.OutcomeGraph, Graph: &approvals.GraphError{Kind: approvals.GraphConflict, Status: 409, Code: "conflict", RequestID: "rid"}}
	in := []approvals.Outgoing{
		{RequestID: r.ID, Kind: approvals.OutgoingPrompts},
		{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: "U1", Notice: approvals.NoticeNotRecorded, Why: why, Accepted: true},
		{RequestID: r.ID, Kind: approvals.OutgoingProgress, Progress: approvals.Progress{Kind: approvals.ProgressStatus, Status: "provisioning", Detail: "d", Every: time.Minute}},
	}
	before := time.Now().UTC()
	enqueueOK(t, s, in...)
	got := due(t, s, "")
	if len(got) != 3 {
		t.Fatalf("due: %d entries, want 3", len(got))
	}
	for i, o := range got {
		if o.ID == 0 || o.RequestID != r.ID || o.Kind != in[i].Kind || o.User != in[i].User || o.Notice != in[i].Notice ||
			o.Accepted != in[i].Accepted || o.Progress != in[i].Progress || o.Attempts != 0 || o.Generation != 0 {
			t.Errorf("entry %d: %+v, want %+v", i, o, in[i])
		}
		if o.CreatedAt.Before(before) || o.NextAt.Before(before) {
			t.Errorf("entry %d: created %v, next %v, want after %v", i, o.CreatedAt, o.NextAt, before)
		}
	}
	if w := got[1].Why; w == nil || w.Kind != why.Kind || w.Graph == nil || w.Graph.Code != "conflict" || w.Graph.RequestID != "rid" {
		t.Errorf("why: %+v", w)
	}
	if n, err := s.Undelivered(context.Background()); err != nil || n != 3 {
		t.Errorf("Undelivered = %d, %v; want 3", n, err)
	}
}

// An entry that fails Validate is refused whole: nothing is enqueued.
func TestOutboxRefusesInvalid(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := mustCreate(t, s, newRequest())
	for name, bad := range map[string]approvals.Outgoing{
		"no reference":     {Kind: approvals.OutgoingPrompts},
		"unknown kind":     {RequestID: r.ID, Kind: "fax"},
		"notice no user":   {RequestID: r.ID, Kind: approvals.OutgoingNotice, Notice: approvals.NoticeStatus},
		"progress no kind": {RequestID: r.ID, Kind: approvals.OutgoingProgress},
	} {
		if err := s.Enqueue(context.Background(), approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingPrompts}, bad); err == nil {
			t.Errorf("%s: enqueued", name)
		}
	}
	if got := due(t, s, ""); len(got) != 0 {
		t.Errorf("after refusals: %d entries due", len(got))
	}
}

// Redraws, and status notices to one person, coalesce while undelivered:
// the newer one moves the generation on, so delivering the older one does
// not remove it.
func TestOutboxCoalesces(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := mustCreate(t, s, newRequest())
	other := mustCreate(t, s, unresolved())
	status := func(user string) approvals.Outgoing {
		return approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: user, Notice: approvals.NoticeStatus}
	}
	enqueueOK(t, s, approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingPrompts}, status("U1"))
	first := due(t, s, r.ID)
	enqueueOK(t, s, approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingPrompts}, status("U1"), status("U2"),
		approvals.Outgoing{RequestID: other.ID, Kind: approvals.OutgoingPrompts},
		approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: "U1", Notice: approvals.NoticeExpired},
		approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: "U1", Notice: approvals.NoticeExpired})
	now := due(t, s, r.ID)
	if len(now) != 5 {
		t.Fatalf("due for %s: %d entries, want 5 (redraw, status U1, status U2, expired twice): %+v", r.ID, len(now), now)
	}
	if now[0].ID != first[0].ID || now[0].Generation != 1 || now[1].ID != first[1].ID || now[1].Generation != 1 {
		t.Errorf("coalesced entries: %+v, want ids %d and %d at generation 1", now[:2], first[0].ID, first[1].ID)
	}
	if len(due(t, s, other.ID)) != 1 {
		t.Error("another request's redraw coalesced into this one's")
	}
	// Delivering what was read before the newer enqueue leaves it due.
	for _, o := range first {
		if err := s.Delivered(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	if got := due(t, s, r.ID); len(got) != 5 {
		t.Errorf("after delivering the older generation: %d due, want 5", len(got))
	}
	for _, o := range now {
		if err := s.Delivered(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	if got := due(t, s, r.ID); len(got) != 0 {
		t.Errorf("after delivering all: %d due", len(got))
	}
	// Once delivered, a new redraw is a new entry.
	enqueueOK(t, s, approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingPrompts})
	if got := due(t, s, r.ID); len(got) != 1 || got[0].Generation != 0 || got[0].ID == now[0].ID {
		t.Errorf("redraw after delivery: %+v", got)
	}
}

// A failed delivery waits until the time given, counting attempts; an
// entry enqueued again meanwhile stays due now.
func TestOutboxPostpone(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := mustCreate(t, s, newRequest())
	enqueueOK(t, s, approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingPrompts},
		approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: "U1", Notice: approvals.NoticeExpired})
	got := due(t, s, "")
	later := time.Now().Add(time.Hour)
	for _, o := range got {
		if err := s.Postpone(context.Background(), o, later, "ratelimited"); err != nil {
			t.Fatal(err)
		}
	}
	if now := due(t, s, ""); len(now) != 0 {
		t.Fatalf("postponed entries due now: %+v", now)
	}
	then, err := s.Due(context.Background(), later, "", 10)
	if err != nil || len(then) != 2 || then[0].Attempts != 1 || then[0].LastError != "ratelimited" || !then[0].NextAt.Equal(later.UTC()) {
		t.Fatalf("due an hour later: %+v, %v", then, err)
	}
	// A newer state for the redraw: due now, whatever the backoff said,
	// and counted as a new notice (no attempts yet).
	enqueueOK(t, s, approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingPrompts})
	if now := due(t, s, ""); len(now) != 1 || now[0].Kind != approvals.OutgoingPrompts || now[0].Attempts != 0 || now[0].LastError != "" {
		t.Fatalf("after a new redraw: %+v", now)
	}
	// Postponing what was read before it does not push it back.
	if err := s.Postpone(context.Background(), then[0], later, "again"); err != nil {
		t.Fatal(err)
	}
	if now := due(t, s, ""); len(now) != 1 {
		t.Errorf("stale postpone delayed the newer redraw: %+v", now)
	}
}

// Apply stores the change and its notices together, or neither.
func TestApplyEnqueuesWithTheChange(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := mustCreate(t, s, newRequest())
	moved, err := s.Apply(context.Background(), r.ID, approvals.Change{
		To:     approvals.StateDenied,
		Update: func(r *approvals.Request) { r.DecidedBy = "U0A1" },
		Notify: func(r *approvals.Request) []approvals.Outgoing {
			// The request as saved: DecidedBy is set.
			return []approvals.Outgoing{{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: r.DecidedBy, Notice: approvals.NoticeStatus}}
		},
	})
	if err != nil || moved.State != approvals.StateDenied {
		t.Fatalf("Apply: %v, %v", moved, err)
	}
	if got := due(t, s, r.ID); len(got) != 1 || got[0].User != "U0A1" {
		t.Errorf("due after the move: %+v", got)
	}

	// A move the state machine refuses enqueues nothing.
	_, err = s.Apply(context.Background(), r.ID, approvals.Change{To: approvals.StateApproved,
		Notify: func(r *approvals.Request) []approvals.Outgoing {
			return []approvals.Outgoing{{RequestID: r.ID, Kind: approvals.OutgoingPrompts}}
		}})
	var te *approvals.TransitionError
	if !errors.As(err, &te) {
		t.Fatalf("refused move: %v", err)
	}
	// An entry the outbox refuses undoes the change.
	other := mustCreate(t, s, newRequest())
	_, err = s.Apply(context.Background(), other.ID, approvals.Change{To: approvals.StateDenied,
		Notify: func(r *approvals.Request) []approvals.Outgoing {
			return []approvals.Outgoing{{RequestID: r.ID, Kind: approvals.OutgoingNotice}}
		}})
	if err == nil {
		t.Fatal("Apply with an invalid notice succeeded")
	}
	if got := mustGet(t, s, other.ID); got.State != approvals.StatePending {
		t.Errorf("state after a refused notice: %s, want pending (nothing stored)", got.State)
	}
	if got := due(t, s, ""); len(got) != 1 {
		t.Errorf("entries: %+v, want only the first move's", got)
	}
	// Without To, Apply is an Update.
	updated, err := s.Apply(context.Background(), other.ID, approvals.Change{
		Update: func(r *approvals.Request) { r.DecisionReason = "note" },
		Notify: func(r *approvals.Request) []approvals.Outgoing {
			return []approvals.Outgoing{{RequestID: r.ID, Kind: approvals.OutgoingPrompts}}
		}})
	if err != nil || updated.State != approvals.StatePending || updated.DecisionReason != "note" {
		t.Fatalf("update: %+v, %v", updated, err)
	}
	if got := due(t, s, other.ID); len(got) != 1 {
		t.Errorf("entries after the update: %+v", got)
	}
}

// Entries outlive the process: a store opened again has them due.
func TestOutboxSurvivesReopen(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path)
	r := mustCreate(t, s, newRequest())
	enqueueOK(t, s, approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: "U1", Notice: approvals.NoticeExpired})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	again := openStore(t, path)
	if got := due(t, again, ""); len(got) != 1 || got[0].User != "U1" {
		t.Errorf("after reopening: %+v", got)
	}
}

func TestListUpdatedSince(t *testing.T) {
	s := openStore(t, dbPath(t))
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
	if want := []string{fresh.ID, old.ID, unchanged.ID}; !equalIDs(ids(got), want) {
		t.Errorf("updated since: %v, want %v (by update time)", ids(got), want)
	}
	later, err := s.ListUpdatedSince(context.Background(), time.Now().Add(time.Second))
	if err != nil || len(later) != 0 {
		t.Errorf("updated in the future: %v, %v", ids(later), err)
	}
}

func equalIDs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
