package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// historyTests: a store that has served for years.
var historyTests = []test{
	{"LargeHistory", testLargeHistory},
}

// Sizes of the large history: a busy tenant's years of requests, and a
// few audit records each.
const (
	historyRequests = 5000
	historyEvents   = 20000
	historyOutbox   = 1000
	// listLimit is what "reasonably fast" means for one query over the
	// whole history, with the race detector on a busy 2-core machine (a
	// store takes a fraction of it).
	listLimit = 10 * time.Second
)

// testLargeHistory: 5000 requests in every state, 20000 audit records and
// 1000 undelivered notices, stored in random order: every query lists
// exactly what it should, in its order, within listLimit; the rules
// still hold on the full tables.
func testLargeHistory(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	base := h.at(time.Date(2024, 1, 1, 0, 0, 0, 123456789, time.UTC))
	states := slices.Sorted(func(yield func(approvals.State) bool) {
		for st := range pathTo {
			if !yield(st) {
				return
			}
		}
	})

	requests := make([]*approvals.Request, historyRequests)
	taken := map[string]bool{}
	for i := range requests {
		r := newRequest()
		for taken[r.ID] { // 5000 random references collide about once in 85 runs
			r.ID = approvals.NewReference()
		}
		taken[r.ID] = true
		r.RequesterID = fmt.Sprintf("U%03d", i%50)
		r.State = states[i%len(states)]
		r.CreatedAt = base.Add(time.Duration(i) * time.Minute)
		// Not in creation order, some equal: the id breaks ties.
		r.UpdatedAt = r.CreatedAt.Add(time.Duration(i%97) * time.Hour)
		r.Prompts = []approvals.MessageRef{{ChannelID: "D" + r.ID, TS: fmt.Sprintf("1700000000.%06d", i), UserID: "U_APPROVER"}}
		switch r.State {
		case approvals.StatePending:
			r.ExpiresAt = r.CreatedAt.Add(24 * time.Hour)
			r.DecideBy = r.ExpiresAt
		case approvals.StateSucceeded:
			if i%3 == 0 {
				r.Tracking = approvals.Tracking{Since: r.UpdatedAt, Until: r.UpdatedAt.Add(3 * time.Hour), Checks: i % 5,
					NextCheck: base.Add(time.Duration(i*7919%historyRequests) * time.Second)}
				if i%9 == 0 {
					r.Tracking.NextCheck = time.Time{} // at once
				}
			}
		case approvals.StateDenied:
			r.DecidedBy, r.DecisionReason = "U_APPROVER", fmt.Sprintf("not now (%d)", i)
		}
		requests[i] = r
	}
	events := make([]approvals.Event, historyEvents)
	for i := range events {
		events[i] = approvals.Event{Time: base.Add(time.Duration(i) * 1500 * time.Millisecond), RequestID: requests[i%historyRequests].ID,
			Kind: approvals.EventGraphCall, Actor: "U_APPROVER", Details: map[string]string{"i": fmt.Sprint(i), "method": "GET"}}
	}

	shuffled := slices.Clone(requests)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	shuffledEvents := slices.Clone(events)
	rng.Shuffle(len(shuffledEvents), func(i, j int) { shuffledEvents[i], shuffledEvents[j] = shuffledEvents[j], shuffledEvents[i] })
	begin := time.Now()
	h.Seed(t, s, shuffled, shuffledEvents)
	t.Logf("seeded %d requests and %d audit records in %v", historyRequests, historyEvents, time.Since(begin).Round(time.Millisecond))

	timed := func(what string, f func()) {
		t.Helper()
		begin := time.Now()
		f()
		within(t, what, time.Since(begin), listLimit)
	}
	byCreated := func(a, b *approvals.Request) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	}

	t.Run("ListByState", func(t *testing.T) {
		var all []*approvals.Request
		timed("ListByState(every state)", func() {
			var err error
			if all, err = s.ListByState(ctx, states...); err != nil {
				t.Fatal(err)
			}
		})
		want := slices.SortedFunc(slices.Values(requests), byCreated)
		if len(all) != len(want) {
			t.Fatalf("%d requests listed, want %d", len(all), len(want))
		}
		for i := range want {
			if !reflect.DeepEqual(all[i], want[i]) {
				t.Fatalf("listed #%d = %+v\nwant %+v", i, all[i], want[i])
			}
		}
		for _, st := range states {
			got, err := s.ListByState(ctx, st)
			if err != nil {
				t.Fatal(err)
			}
			if w := filter(want, func(r *approvals.Request) bool { return r.State == st }); !slices.Equal(ids(got), ids(w)) {
				t.Errorf("ListByState(%s): %d requests, want %d in creation order", st, len(got), len(w))
			}
		}
	})

	t.Run("ListByRequester", func(t *testing.T) {
		var got []*approvals.Request
		timed("ListByRequester", func() {
			var err error
			if got, err = s.ListByRequester(ctx, "U007", 20); err != nil {
				t.Fatal(err)
			}
		})
		mine := filter(requests, func(r *approvals.Request) bool { return r.RequesterID == "U007" })
		slices.Reverse(mine)
		if want := ids(mine[:20]); !slices.Equal(ids(got), want) {
			t.Errorf("ListByRequester(U007, 20) = %v, want %v", ids(got), want)
		}
	})

	t.Run("ListUpdatedSince", func(t *testing.T) {
		since := base.Add(historyRequests / 2 * time.Minute)
		var got []*approvals.Request
		timed("ListUpdatedSince", func() {
			var err error
			if got, err = s.ListUpdatedSince(ctx, since); err != nil {
				t.Fatal(err)
			}
		})
		want := filter(requests, func(r *approvals.Request) bool { return !r.UpdatedAt.Before(since) })
		slices.SortFunc(want, func(a, b *approvals.Request) int {
			return cmp.Or(a.UpdatedAt.Compare(b.UpdatedAt), cmp.Compare(a.ID, b.ID))
		})
		if !slices.Equal(ids(got), ids(want)) {
			t.Errorf("ListUpdatedSince: %d requests, want %d, by update time then reference", len(got), len(want))
		}
	})

	t.Run("ListTracking", func(t *testing.T) {
		var got []*approvals.Request
		timed("ListTracking", func() {
			var err error
			if got, err = s.ListTracking(ctx); err != nil {
				t.Fatal(err)
			}
		})
		want := filter(requests, func(r *approvals.Request) bool { return r.Tracking.Active() })
		slices.SortFunc(want, func(a, b *approvals.Request) int {
			return cmp.Or(a.Tracking.NextCheck.Compare(b.Tracking.NextCheck), cmp.Compare(a.ID, b.ID))
		})
		if len(want) < 100 || !slices.Equal(ids(got), ids(want)) {
			t.Errorf("ListTracking: %d requests, want %d, soonest check first", len(got), len(want))
		}
	})

	t.Run("Events", func(t *testing.T) {
		var all []approvals.Event
		timed("Events(all)", func() { all = mustEvents(t, s, time.Time{}) })
		if !reflect.DeepEqual(all, events) {
			t.Fatalf("Events: %d records, want the %d recorded, oldest first", len(all), len(events))
		}
		from := historyEvents - 1234
		var since []approvals.Event
		timed("Events(since)", func() { since = mustEvents(t, s, events[from].Time) })
		if !reflect.DeepEqual(since, events[from:]) {
			t.Errorf("Events(since): %d records, want the last %d", len(since), historyEvents-from)
		}
	})

	t.Run("Outbox", func(t *testing.T) {
		var entries []approvals.Outgoing
		for i := range historyOutbox {
			ref := requests[i*7%historyRequests].ID
			if i%5 == 0 {
				entries = append(entries, redrawOf(ref))
			} else {
				entries = append(entries, approvals.Outgoing{RequestID: ref, Kind: approvals.OutgoingNotice, User: fmt.Sprintf("U%d", i), Notice: approvals.NoticeExpired})
			}
		}
		timed("Enqueue(1000 entries)", func() { enqueueOK(t, s, entries...) })
		if n, err := s.Undelivered(ctx); err != nil || n != historyOutbox {
			t.Errorf("Undelivered = %d, %v; want %d", n, err, historyOutbox)
		}
		var first []approvals.Outgoing
		timed("Due(100)", func() {
			var err error
			if first, err = s.Due(ctx, time.Now(), "", 100); err != nil {
				t.Fatal(err)
			}
		})
		if len(first) != 100 || first[0].RequestID != entries[0].RequestID || first[99].User != entries[99].User {
			t.Errorf("Due(100): %d entries, not the first enqueued first", len(first))
		}
		ref := requests[7].ID
		mine, err := s.Due(ctx, time.Now(), ref, 100)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, e := range entries {
			if e.RequestID == ref {
				want++
			}
		}
		if len(mine) != want {
			t.Errorf("Due(%s): %d entries, want %d", ref, len(mine), want)
		}
		for _, o := range first {
			if err := s.Delivered(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := s.Undelivered(ctx); err != nil || n != historyOutbox-100 {
			t.Errorf("Undelivered after delivering 100 = %d, %v", n, err)
		}
	})

	t.Run("RulesHold", func(t *testing.T) {
		wantOpen := len(filter(requests, func(r *approvals.Request) bool { return r.Open() }))
		if n := countOpen(t, s); n != wantOpen {
			t.Errorf("CountOpen = %d, want %d", n, wantOpen)
		}
		held := requests[slices.IndexFunc(requests, func(r *approvals.Request) bool { return r.State == approvals.StateExecuting })]
		timed("OpenFor", func() {
			if got, err := s.OpenFor(ctx, held.CloudPCID); err != nil || got.ID != held.ID {
				t.Errorf("OpenFor = %s, %v; want %s", describe(got), err, held.ID)
			}
		})
		dup := newRequest()
		dup.CloudPCID = held.CloudPCID
		if err := s.Create(ctx, dup); !errors.Is(err, approvals.ErrOpenRequestExists) {
			t.Errorf("Create for a held Cloud PC: %v", err)
		}
		pending := requests[slices.IndexFunc(requests, func(r *approvals.Request) bool { return r.State == approvals.StatePending })]
		timed("a transition", func() {
			if _, err := s.Transition(ctx, pending.ID, approvals.StateApproved, nil); err != nil {
				t.Error(err)
			}
		})
		if _, err := s.Transition(ctx, pending.ID, approvals.StateApproved, nil); err == nil {
			t.Error("approved twice")
		}
	})
}

func filter(rs []*approvals.Request, keep func(*approvals.Request) bool) []*approvals.Request {
	var out []*approvals.Request
	for _, r := range rs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}
