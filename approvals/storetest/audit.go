package storetest

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// auditTests: the audit trail.
var auditTests = []test{
	{"RecordAndEvents", testRecordAndEvents},
	{"RecordDefaultsAndRefusals", testRecordDefaultsAndRefusals},
	{"AuditTrailIsAppendOnly", testAuditTrailIsAppendOnly},
	{"RecordWhileListing", testRecordWhileListing},
}

func testRecordAndEvents(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 500, time.UTC)
	recorded := []approvals.Event{
		{Time: t0.Add(2 * time.Second), RequestID: "R-CCCCCC", Kind: approvals.EventSucceeded},
		{Time: t0, RequestID: "R-AAAAAA", Kind: approvals.EventRequested, Actor: "U1",
			Details: map[string]string{"target": "pc-1", "quote": `"x"`, "utf8": "✓", "tricky": tricky}},
		{Time: t0.Add(time.Second).In(time.FixedZone("X", -7200)), RequestID: "R-AAAAAA", Kind: approvals.EventApproved, Actor: "U2"},
		{Time: t0.Add(time.Second), RequestID: "R-AAAAAA", Kind: approvals.EventGraphCall, Details: map[string]string{}},
	}
	for _, e := range recorded {
		mustRecord(t, s, e)
	}

	all := mustEvents(t, s, time.Time{})
	// Oldest first; equal times in recording order; UTC to the store's
	// precision; empty details nil.
	want := []approvals.Event{recorded[1], recorded[2], recorded[3], recorded[0]}
	for i := range want {
		want[i].Time = h.at(want[i].Time)
	}
	want[2].Details = nil
	if !reflect.DeepEqual(all, want) {
		t.Errorf("Events(zero) =\n%+v\nwant\n%+v", all, want)
	}

	since := mustEvents(t, s, t0.Add(time.Second)) // inclusive
	if !reflect.DeepEqual(since, want[1:]) {
		t.Errorf("Events(since) =\n%+v\nwant\n%+v", since, want[1:])
	}
	if none, err := s.Events(ctx, t0.Add(time.Hour)); err != nil || len(none) != 0 {
		t.Errorf("Events(future) = %v, %v; want none", none, err)
	}
}

func testRecordDefaultsAndRefusals(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	before := h.at(time.Now())
	mustRecord(t, s, approvals.Event{Kind: approvals.EventRefusedClick, RequestID: "R-AAAAAA", Actor: "U\x00X"})
	events := mustEvents(t, s, time.Time{})
	if len(events) != 1 {
		t.Fatalf("Events = %v", events)
	}
	if at := events[0].Time; at.Before(before) || at.After(time.Now()) || at.Location() != time.UTC {
		t.Errorf("zero Time recorded as %v, want now in UTC", at)
	}
	if got, want := events[0].Actor, h.text("U\x00X"); got != want {
		t.Errorf("Actor = %q, want %q", got, want)
	}
	if err := s.Record(ctx, approvals.Event{RequestID: "R-AAAAAA"}); err == nil {
		t.Error("Record without a kind succeeded, want an error")
	}
	if err := s.Record(ctx, approvals.Event{Kind: approvals.EventApproved, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("Record of a time out of range succeeded, want an error")
	}
	if got := mustEvents(t, s, time.Time{}); len(got) != 1 {
		t.Errorf("refused records were kept: %+v", got)
	}
}

// testAuditTrailIsAppendOnly: nobody edits history, not even a client
// with the owner's credentials going around the store.
func testAuditTrailIsAppendOnly(t *testing.T, h *Harness) {
	s, db := h.openNew(t)
	ctx := context.Background()
	e := approvals.Event{Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), RequestID: "R-AAAAAA",
		Kind: approvals.EventApproved, Actor: "U2", Details: map[string]string{"k": "v"}}
	mustRecord(t, s, e)

	for _, stmt := range []string{
		`UPDATE audit_events SET actor = 'U_MALLORY'`,
		`UPDATE audit_events SET actor = 'U_MALLORY' WHERE kind = 'approved'`,
		`DELETE FROM audit_events`,
		`DELETE FROM audit_events WHERE request_id = 'R-AAAAAA'`,
	} {
		err := h.Exec(t, db, stmt)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: got %v, want a refusal mentioning append-only", stmt, err)
		}
	}
	// Still appendable, through the store and directly.
	mustRecord(t, s, approvals.Event{Time: e.Time.Add(time.Second), Kind: approvals.EventSucceeded})
	if err := h.Exec(t, db, `INSERT INTO audit_events (time, request_id, kind, actor, details)
		VALUES ('2025-01-01T00:00:02.000000000Z', 'R-AAAAAA', 'tracked', '', '{}')`); err != nil {
		t.Errorf("INSERT: %v", err)
	}

	events, err := s.Events(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 3 || !reflect.DeepEqual(events[0], e) || events[2].Kind != approvals.EventTracked {
		t.Errorf("audit trail changed: %+v", events)
	}
}

// testRecordWhileListing: records appended while another goroutine (or,
// where the store allows it, another replica) lists them: every listing
// is a prefix of the final trail, in order, and none is lost.
func testRecordWhileListing(t *testing.T, h *Harness) {
	writer, db := h.openNew(t)
	reader := writer
	if h.Replicas {
		reader = h.openDB(t, db)
	}
	const n = 100
	ctx := context.Background()
	base := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := range n {
			e := approvals.Event{Time: base.Add(time.Duration(i) * time.Millisecond), Kind: approvals.EventGraphCall,
				Details: map[string]string{"i": fmt.Sprint(i)}}
			if err := writer.Record(ctx, e); err != nil {
				t.Errorf("Record: %v", err)
				return
			}
		}
	})
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			events, err := reader.Events(ctx, time.Time{})
			if err != nil {
				t.Errorf("Events during writes: %v", err)
				return
			}
			for i, e := range events {
				if e.Details["i"] != fmt.Sprint(i) {
					t.Errorf("listing during writes: record %d is %v, want the %dth recorded", i, e.Details, i)
					return
				}
			}
		}
	})
	wg.Wait()
	if events := mustEvents(t, reader, time.Time{}); len(events) != n {
		t.Errorf("%d events, want %d", len(events), n)
	}
}
