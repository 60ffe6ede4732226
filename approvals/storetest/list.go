package storetest

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// listTests: the queries that list requests.
var listTests = []test{
	{"OpenFor", testOpenFor},
	{"ListTracking", testListTracking},
	{"ListByRequester", testListByRequester},
	{"ListByState", testListByState},
	{"ListExpiringBefore", testListExpiringBefore},
}

func testOpenFor(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	if _, err := s.OpenFor(ctx, uuid.NewString()); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("OpenFor of an unknown Cloud PC: %v, want ErrNotFound", err)
	}
	old := createIn(t, s, newRequest(), approvals.StateDenied)
	r := newRequest()
	r.CloudPCID = old.CloudPCID
	mustCreate(t, s, r)
	got, err := s.OpenFor(ctx, old.CloudPCID)
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Errorf("OpenFor = %+v, %v; want the open one %+v", got, err, r)
	}
}

func testListTracking(t *testing.T, h *Harness) {
	s := h.open(t)
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	track := func(state approvals.State, tr approvals.Tracking) *approvals.Request {
		r := createIn(t, s, newRequest(), state)
		return mustUpdate(t, s, r.ID, func(c *approvals.Request) { c.Tracking = tr })
	}
	until := base.Add(time.Hour)
	later := track(approvals.StateSucceeded, approvals.Tracking{Until: until, NextCheck: base.Add(2 * time.Minute)})
	paused := track(approvals.StateSucceeded, approvals.Tracking{Until: until, NextCheck: base.Add(time.Minute), Paused: true})
	now := track(approvals.StateSucceeded, approvals.Tracking{Until: until}) // zero NextCheck: at once
	// Less than the store's step apart: still in this order.
	soon := track(approvals.StateSucceeded, approvals.Tracking{Until: until, NextCheck: base.Add(time.Minute + h.step())})
	track(approvals.StateSucceeded, approvals.Tracking{Until: until, NextCheck: base, Result: approvals.TrackFailed})
	track(approvals.StateSucceeded, approvals.Tracking{NextCheck: base}) // never tracked
	mustCreate(t, s, newRequest())

	got, err := s.ListTracking(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{now.ID, paused.ID, soon.ID, later.ID}; !reflect.DeepEqual(ids(got), want) {
		t.Errorf("ListTracking = %v, want %v", ids(got), want)
	}
	if len(got) == 4 && !reflect.DeepEqual(got[1], paused) {
		t.Errorf("listed %+v\nwant   %+v", got[1], paused)
	}
}

func testListByRequester(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	mk := func(requester string, minutes int) *approvals.Request {
		r := newRequest()
		r.RequesterID = requester
		r.CreatedAt = base.Add(time.Duration(minutes) * time.Minute)
		return mustCreate(t, s, r)
	}
	second, first, third := mk("U_ALICE", 20), mk("U_ALICE", 10), mk("U_ALICE", 30)
	mk("U_BOB", 40)
	mustMove(t, s, second.ID, approvals.StateCanceled)

	for _, tc := range []struct {
		limit int
		want  []string
	}{
		{10, []string{third.ID, second.ID, first.ID}},
		{2, []string{third.ID, second.ID}},
		{0, nil},
		{-1, nil},
	} {
		got, err := s.ListByRequester(ctx, "U_ALICE", tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ids(got), tc.want) {
			t.Errorf("ListByRequester(limit %d) = %v, want %v", tc.limit, ids(got), tc.want)
		}
	}
	if got, err := s.ListByRequester(ctx, "U_NOBODY", 5); err != nil || len(got) != 0 {
		t.Errorf("ListByRequester(U_NOBODY) = %v, %v; want none", ids(got), err)
	}
}

func testListByState(t *testing.T, h *Harness) {
	s := h.open(t)
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	// Created out of time order, to show the order comes from CreatedAt.
	mk := func(minutes int) *approvals.Request {
		r := newRequest()
		r.CreatedAt = base.Add(time.Duration(minutes) * time.Minute)
		return mustCreate(t, s, r)
	}
	third, first, second, fourth := mk(30), mk(10), mk(20), mk(40)
	mustMove(t, s, second.ID, approvals.StateApproved)
	mustMove(t, s, fourth.ID, approvals.StateDenied)

	list := func(states ...approvals.State) []string {
		t.Helper()
		rs, err := s.ListByState(context.Background(), states...)
		if err != nil {
			t.Fatal(err)
		}
		return ids(rs)
	}
	if got, want := list(approvals.StatePending), []string{first.ID, third.ID}; !reflect.DeepEqual(got, want) {
		t.Errorf("pending = %v, want %v", got, want)
	}
	if got, want := list(approvals.StateApproved, approvals.StatePending), []string{first.ID, second.ID, third.ID}; !reflect.DeepEqual(got, want) {
		t.Errorf("pending+approved = %v, want %v", got, want)
	}
	if got := list(approvals.StateExecuting); len(got) != 0 {
		t.Errorf("executing = %v, want none", got)
	}
	if got := list(); len(got) != 0 {
		t.Errorf("no states = %v, want none", got)
	}
	rs, err := s.ListByState(context.Background(), approvals.StatePending)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rs[0], first) {
		t.Errorf("listed %+v\nwant    %+v", rs[0], first)
	}
}

func testListExpiringBefore(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	before := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	mk := func(state approvals.State, expires time.Time) *approvals.Request {
		r := newRequest()
		r.ExpiresAt = expires
		return createIn(t, s, r, state)
	}
	// Created out of expiry order, to show the order comes from ExpiresAt.
	second := mk(approvals.StatePending, before.Add(-time.Minute))
	first := mk(approvals.StateConfirming, before.Add(-time.Hour))
	last := mk(approvals.StatePending, before.Add(-h.step())) // just in time
	atBefore := mk(approvals.StatePending, before)            // not before: excluded
	mk(approvals.StatePending, before.Add(time.Hour))
	mk(approvals.StatePending, time.Time{}) // never expires
	mk(approvals.StateApproved, before.Add(-time.Hour))

	list := func(states ...approvals.State) []*approvals.Request {
		t.Helper()
		rs, err := s.ListExpiringBefore(ctx, before, states...)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	got := list(approvals.StatePending, approvals.StateConfirming)
	if want := []string{first.ID, second.ID, last.ID}; !reflect.DeepEqual(ids(got), want) {
		t.Errorf("pending+confirming expiring before %v = %v, want %v", before, ids(got), want)
	}
	if stored, err := s.Get(ctx, second.ID); err != nil || len(got) != 3 || !reflect.DeepEqual(got[1], stored) {
		t.Errorf("listed %+v\nwant   %+v (%v)", got[1], stored, err)
	}
	// A nanosecond later it is before, whatever the store's precision.
	rs, err := s.ListExpiringBefore(ctx, before.Add(time.Nanosecond), approvals.StatePending)
	if want := []string{second.ID, last.ID, atBefore.ID}; err != nil || !reflect.DeepEqual(ids(rs), want) {
		t.Errorf("pending expiring before %v = %v, %v; want %v", before.Add(time.Nanosecond), ids(rs), err, want)
	}
	if got := list(approvals.StateConfirming); !reflect.DeepEqual(ids(got), []string{first.ID}) {
		t.Errorf("confirming = %v, want %v", ids(got), []string{first.ID})
	}
	if got := list(); len(got) != 0 {
		t.Errorf("no states = %v, want none", ids(got))
	}
}
