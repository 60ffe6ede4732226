package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// outboxTests: what people must be told, kept until delivered.
var outboxTests = []test{
	{"OutboxRoundTrip", testOutboxRoundTrip},
	{"OutboxRefusesInvalid", testOutboxRefusesInvalid},
	{"OutboxCoalesces", testOutboxCoalesces},
	{"OutboxPostpone", testOutboxPostpone},
	{"OutboxDueLimitAndRequest", testOutboxDueLimitAndRequest},
	{"ApplyEnqueuesWithTheChange", testApplyEnqueuesWithTheChange},
}

// dueNow returns what is due now (of ref only, if not "").
func dueNow(t testing.TB, s approvals.Store, ref string) []approvals.Outgoing {
	t.Helper()
	out, err := s.Due(context.Background(), time.Now(), ref, 100)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func enqueueOK(t testing.TB, s approvals.Store, entries ...approvals.Outgoing) {
	t.Helper()
	if err := s.Enqueue(context.Background(), entries...); err != nil {
		t.Fatal(err)
	}
}

func redrawOf(ref string) approvals.Outgoing {
	return approvals.Outgoing{RequestID: ref, Kind: approvals.OutgoingPrompts}
}

// Every field of every kind comes back as it went in.
func testOutboxRoundTrip(t *testing.T, h *Harness) {
	s := h.open(t)
	r := mustCreate(t, s, newRequest())
	why := &approvals.Outcome{Kind: approvals.OutcomeGraph, Text: tricky,
		Graph: &approvals.GraphError{Kind: approvals.GraphConflict, Status: 409, Code: "conflict", RequestID: "rid"}}
	in := []approvals.Outgoing{
		redrawOf(r.ID),
		{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: "U1", Notice: approvals.NoticeNotRecorded, Why: why, Accepted: true},
		{RequestID: r.ID, Kind: approvals.OutgoingProgress, Progress: approvals.Progress{Kind: approvals.ProgressStatus, Status: "provisioning", Detail: tricky, Every: time.Minute}},
		{RequestID: r.ID, Kind: approvals.OutgoingPost},
	}
	before := h.at(time.Now())
	enqueueOK(t, s, in...)
	got := dueNow(t, s, "")
	if len(got) != len(in) {
		t.Fatalf("due: %d entries, want %d", len(got), len(in))
	}
	for i, o := range got {
		if o.ID == 0 || o.RequestID != r.ID || o.Kind != in[i].Kind || o.User != in[i].User || o.Notice != in[i].Notice ||
			o.Accepted != in[i].Accepted || o.Progress != in[i].Progress || o.Attempts != 0 || o.Generation != 0 || o.LastError != "" {
			t.Errorf("entry %d: %+v, want %+v", i, o, in[i])
		}
		if o.CreatedAt.Before(before) || o.NextAt.Before(before) || o.CreatedAt.Location() != time.UTC || o.NextAt.Location() != time.UTC {
			t.Errorf("entry %d: created %v, next %v, want after %v, in UTC", i, o.CreatedAt, o.NextAt, before)
		}
		if i > 0 && o.ID <= got[i-1].ID {
			t.Errorf("entry %d: id %d after %d: not oldest first", i, o.ID, got[i-1].ID)
		}
	}
	if w := got[1].Why; w == nil || w.Kind != why.Kind || w.Text != tricky || w.Graph == nil || w.Graph.Code != "conflict" || w.Graph.RequestID != "rid" {
		t.Errorf("why: %+v", w)
	}
	if n, err := s.Undelivered(context.Background()); err != nil || n != len(in) {
		t.Errorf("Undelivered = %d, %v; want %d", n, err, len(in))
	}
}

// An entry that fails Validate is refused whole: nothing is enqueued.
func testOutboxRefusesInvalid(t *testing.T, h *Harness) {
	s := h.open(t)
	r := mustCreate(t, s, newRequest())
	for name, bad := range map[string]approvals.Outgoing{
		"no reference":     {Kind: approvals.OutgoingPrompts},
		"unknown kind":     {RequestID: r.ID, Kind: "fax"},
		"notice no user":   {RequestID: r.ID, Kind: approvals.OutgoingNotice, Notice: approvals.NoticeStatus},
		"progress no kind": {RequestID: r.ID, Kind: approvals.OutgoingProgress},
	} {
		if err := s.Enqueue(context.Background(), redrawOf(r.ID), bad); err == nil {
			t.Errorf("%s: enqueued", name)
		}
	}
	if got := dueNow(t, s, ""); len(got) != 0 {
		t.Errorf("after refusals: %d entries due", len(got))
	}
}

// Redraws, and status notices to one person, coalesce while undelivered:
// the newer one moves the generation on, so delivering the older one does
// not remove it.
func testOutboxCoalesces(t *testing.T, h *Harness) {
	s := h.open(t)
	r := mustCreate(t, s, newRequest())
	other := mustCreate(t, s, unresolved())
	status := func(user string) approvals.Outgoing {
		return approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: user, Notice: approvals.NoticeStatus}
	}
	enqueueOK(t, s, redrawOf(r.ID), status("U1"))
	first := dueNow(t, s, r.ID)
	enqueueOK(t, s, redrawOf(r.ID), status("U1"), status("U2"), redrawOf(other.ID),
		approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: "U1", Notice: approvals.NoticeExpired},
		approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: "U1", Notice: approvals.NoticeExpired})
	now := dueNow(t, s, r.ID)
	if len(now) != 5 {
		t.Fatalf("due for %s: %d entries, want 5 (redraw, status U1, status U2, expired twice): %+v", r.ID, len(now), now)
	}
	if now[0].ID != first[0].ID || now[0].Generation != 1 || now[1].ID != first[1].ID || now[1].Generation != 1 {
		t.Errorf("coalesced entries: %+v, want ids %d and %d at generation 1", now[:2], first[0].ID, first[1].ID)
	}
	if len(dueNow(t, s, other.ID)) != 1 {
		t.Error("another request's redraw coalesced into this one's")
	}
	// Delivering what was read before the newer enqueue leaves it due.
	for _, o := range first {
		if err := s.Delivered(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	if got := dueNow(t, s, r.ID); len(got) != 5 {
		t.Errorf("after delivering the older generation: %d due, want 5", len(got))
	}
	for _, o := range now {
		if err := s.Delivered(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	if got := dueNow(t, s, r.ID); len(got) != 0 {
		t.Errorf("after delivering all: %d due", len(got))
	}
	// Once delivered, a new redraw is a new entry.
	enqueueOK(t, s, redrawOf(r.ID))
	if got := dueNow(t, s, r.ID); len(got) != 1 || got[0].Generation != 0 || got[0].ID == now[0].ID {
		t.Errorf("redraw after delivery: %+v", got)
	}
}

// A failed delivery waits until the time given, counting attempts; an
// entry enqueued again meanwhile stays due now.
func testOutboxPostpone(t *testing.T, h *Harness) {
	s := h.open(t)
	r := mustCreate(t, s, newRequest())
	enqueueOK(t, s, redrawOf(r.ID),
		approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: "U1", Notice: approvals.NoticeExpired})
	got := dueNow(t, s, "")
	later := time.Now().Add(time.Hour)
	for _, o := range got {
		if err := s.Postpone(context.Background(), o, later, "ratelimited"); err != nil {
			t.Fatal(err)
		}
	}
	if now := dueNow(t, s, ""); len(now) != 0 {
		t.Fatalf("postponed entries due now: %+v", now)
	}
	then, err := s.Due(context.Background(), later, "", 10)
	if err != nil || len(then) != 2 || then[0].Attempts != 1 || then[0].LastError != "ratelimited" || !then[0].NextAt.Equal(h.at(later)) {
		t.Fatalf("due an hour later: %+v, %v", then, err)
	}
	// A second failure counts on.
	if err := s.Postpone(context.Background(), then[1], later, "again \x00"); err != nil {
		t.Fatal(err)
	}
	if again, err := s.Due(context.Background(), later, "", 10); err != nil || len(again) != 2 || again[1].Attempts != 2 || again[1].LastError != h.text("again \x00") {
		t.Fatalf("after a second failure: %+v, %v", again, err)
	}
	// A newer state for the redraw: due now, whatever the backoff said,
	// and counted as a new notice (no attempts yet).
	enqueueOK(t, s, redrawOf(r.ID))
	if now := dueNow(t, s, ""); len(now) != 1 || now[0].Kind != approvals.OutgoingPrompts || now[0].Attempts != 0 || now[0].LastError != "" {
		t.Fatalf("after a new redraw: %+v", now)
	}
	// Postponing what was read before it does not push it back.
	if err := s.Postpone(context.Background(), then[0], later, "again"); err != nil {
		t.Fatal(err)
	}
	if now := dueNow(t, s, ""); len(now) != 1 {
		t.Errorf("stale postpone delayed the newer redraw: %+v", now)
	}
	if n, err := s.Undelivered(context.Background()); err != nil || n != 2 {
		t.Errorf("Undelivered = %d, %v; want 2 (one due later too)", n, err)
	}
}

// Due honours its limit, oldest first, and its request filter.
func testOutboxDueLimitAndRequest(t *testing.T, h *Harness) {
	s := h.open(t)
	a, b := mustCreate(t, s, newRequest()), mustCreate(t, s, newRequest())
	notice := func(ref, user string) approvals.Outgoing {
		return approvals.Outgoing{RequestID: ref, Kind: approvals.OutgoingNotice, User: user, Notice: approvals.NoticeExpired}
	}
	enqueueOK(t, s, notice(a.ID, "U1"), notice(b.ID, "U2"), notice(a.ID, "U3"), notice(b.ID, "U4"), notice(a.ID, "U5"))
	ctx := context.Background()
	users := func(os []approvals.Outgoing) (out []string) {
		for _, o := range os {
			out = append(out, o.User)
		}
		return out
	}
	for _, tc := range []struct {
		ref   string
		limit int
		want  []string
	}{
		{"", 100, []string{"U1", "U2", "U3", "U4", "U5"}},
		{"", 2, []string{"U1", "U2"}},
		{a.ID, 2, []string{"U1", "U3"}},
		{b.ID, 100, []string{"U2", "U4"}},
		{"", 0, nil},
		{"R-ZZZZZZ", 100, nil},
	} {
		got, err := s.Due(ctx, time.Now(), tc.ref, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if g := users(got); !equalStrings(g, tc.want) {
			t.Errorf("Due(%q, %d) = %v, want %v", tc.ref, tc.limit, g, tc.want)
		}
	}
}

func equalStrings(a, b []string) bool {
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

// Apply stores the change and its notices together, or neither.
func testApplyEnqueuesWithTheChange(t *testing.T, h *Harness) {
	s := h.open(t)
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
		t.Fatalf("Apply: %v, %v", describe(moved), err)
	}
	if got := dueNow(t, s, r.ID); len(got) != 1 || got[0].User != "U0A1" || got[0].CreatedAt.After(moved.UpdatedAt) {
		t.Errorf("due after the move: %+v (the change at %v)", got, moved.UpdatedAt)
	}

	// A move the state machine refuses enqueues nothing.
	_, err = s.Apply(context.Background(), r.ID, approvals.Change{To: approvals.StateApproved,
		Notify: func(r *approvals.Request) []approvals.Outgoing {
			return []approvals.Outgoing{redrawOf(r.ID)}
		}})
	var te *approvals.TransitionError
	if !errors.As(err, &te) {
		t.Fatalf("refused move: %v", err)
	}
	// An entry the outbox refuses undoes the change.
	other := mustCreate(t, s, newRequest())
	_, err = s.Apply(context.Background(), other.ID, approvals.Change{To: approvals.StateDenied,
		Notify: func(r *approvals.Request) []approvals.Outgoing {
			return []approvals.Outgoing{redrawOf(r.ID), {RequestID: r.ID, Kind: approvals.OutgoingNotice}}
		}})
	if err == nil {
		t.Fatal("Apply with an invalid notice succeeded")
	}
	if got := mustGet(t, s, other.ID); got.State != approvals.StatePending {
		t.Errorf("state after a refused notice: %s, want pending (nothing stored)", got.State)
	}
	if got := dueNow(t, s, ""); len(got) != 1 {
		t.Errorf("entries: %+v, want only the first move's", got)
	}
	// An update that breaks a rule enqueues nothing either.
	_, err = s.Apply(context.Background(), other.ID, approvals.Change{
		Update: func(r *approvals.Request) { r.RequesterID = "U_MALLORY" },
		Notify: func(r *approvals.Request) []approvals.Outgoing { return []approvals.Outgoing{redrawOf(r.ID)} }})
	if err == nil {
		t.Fatal("Apply changing the requester succeeded")
	}
	if got := dueNow(t, s, other.ID); len(got) != 0 {
		t.Errorf("entries after a refused update: %+v", got)
	}
	// Without To, Apply is an Update.
	updated, err := s.Apply(context.Background(), other.ID, approvals.Change{
		Update: func(r *approvals.Request) { r.DecisionReason = "note" },
		Notify: func(r *approvals.Request) []approvals.Outgoing {
			return []approvals.Outgoing{redrawOf(r.ID)}
		}})
	if err != nil || updated.State != approvals.StatePending || updated.DecisionReason != "note" {
		t.Fatalf("update: %+v, %v", updated, err)
	}
	if got := dueNow(t, s, other.ID); len(got) != 1 {
		t.Errorf("entries after the update: %+v", got)
	}
	// TransitionFrom's claim through Apply: from the wrong state, nothing.
	_, err = s.Apply(context.Background(), other.ID, approvals.Change{From: []approvals.State{approvals.StateApproved}, To: approvals.StateCanceled,
		Notify: func(r *approvals.Request) []approvals.Outgoing { return []approvals.Outgoing{redrawOf(r.ID)} }})
	if !errors.As(err, &te) {
		t.Fatalf("Apply from the wrong state: %v, want *TransitionError", err)
	}
	if got := dueNow(t, s, other.ID); len(got) != 1 || got[0].Generation != 0 {
		t.Errorf("entries after a refused claim: %+v", got)
	}
}
