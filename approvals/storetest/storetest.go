// Package storetest is the conformance suite of approvals.Store: the same
// tests, run against every store (approvals/sqlite, approvals/postgres), so
// that the workflow may rely on one set of guarantees whichever serves it.
//
// A store's package calls Run from a test, and Bench from a benchmark,
// with a Harness that says how to make a database and open the store on
// it:
//
//	func TestConformance(t *testing.T) { storetest.Run(t, harness) }
//	func BenchmarkTransitions(b *testing.B) { storetest.Bench(b, harness) }
//
// What the suite holds every store to: the request round-trips (every
// field, nil apart from empty; times in UTC to the store's Precision, at
// least microseconds, truncated, never rounded up; ties in time order
// broken by reference, in byte order); the state machine, compare-and-swap
// transitions and updates that keep a request's identity, also when many
// goroutines, and several replicas where the store allows them, race; one
// holder per Cloud PC, single requests and batch members alike; the
// append-only audit trail; the outbox
// (coalescing with generations, postponing, at least once, atomic with the
// change it announces); the clock and deadline queries; and large
// histories. Store-specific matters (files, locks, migrations, connection
// settings, privileges) stay with each store's own tests.
package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// Harness describes a store to the suite.
type Harness struct {
	// NewDatabase returns a database for this test alone (a file path, a
	// URL: whatever Open takes), removed or given back when the test ends:
	// a new, empty one, or one with the store's schema made and no rows
	// (the PostgreSQL harness reuses databases).
	NewDatabase func(t testing.TB) string

	// Open opens a store on db as the bot does, creating its schema in an
	// empty database. The suite closes what it opens.
	Open func(t testing.TB, db string) (approvals.Store, error)

	// Replicas says whether more than one store may serve a database at a
	// time (Open again while a store is open on it: another process or
	// replica). When it does, the races run across two stores on one
	// database as well as across goroutines of one. A store that allows
	// one process per database (SQLite) says false: its races run within
	// the one store, and its own tests show a second process is refused.
	Replicas bool

	// Exec runs one SQL statement on db directly, not through the store,
	// as another client with the owner's credentials would (for the
	// append-only audit trail: the statements are plain SQL both stores
	// understand).
	Exec func(t testing.TB, db, stmt string) error

	// Precision is the finest step of the times the store keeps (zero:
	// nanoseconds). A store may truncate every time it is given to it,
	// rounding down, never up (so no deadline moves later), and must keep
	// at least microseconds. What Create, Transition and Update return is
	// what Get reads back, truncated alike.
	Precision time.Duration

	// Text, when not nil, is how the store keeps a string it puts in a
	// text column of its own: the plain string fields of a Request
	// (Target, Reason, DecisionReason, …), an Event's RequestID, Kind and
	// Actor, an outbox entry's LastError. (PostgreSQL's text holds no NUL
	// character.) nil: kept exactly. Strings inside lists and nested
	// values (Approvers, Prompts, Device, Candidates, Outcome, an event's
	// Details, an outbox entry's payload) are kept exactly by every store.
	Text func(string) string

	// Seed stores requests (in whatever state, with their own CreatedAt
	// and UpdatedAt, as if each had got there through the store) and audit
	// records in bulk, for the large-history tests. The requests are as
	// Get would return them (normalised).
	Seed func(t testing.TB, s approvals.Store, requests []*approvals.Request, events []approvals.Event)
}

// Health is what the bot's readiness probe and metrics need besides
// approvals.Store; every store provides it.
type Health interface {
	// Ping checks that the store answers a query.
	Ping(ctx context.Context) error
	// CountOpen counts the requests holding their Cloud PC.
	CountOpen(ctx context.Context) (int, error)
}

// test is one conformance test.
type test struct {
	name string
	run  func(t *testing.T, h *Harness)
}

// Run runs the conformance suite against the store h describes. Each test
// gets a database of its own; they run in parallel.
func Run(t *testing.T, h Harness) {
	h.check(t)
	tests := concat(requestTests, updateTests, batchTests, listTests, auditTests, outboxTests, clockTests, raceTests, historyTests)
	if h.Replicas {
		tests = concat(tests, replicaTests)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, &h)
		})
	}
}

func concat(lists ...[]test) []test {
	var out []test
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// check refuses an incomplete harness.
func (h *Harness) check(t testing.TB) {
	t.Helper()
	if h.NewDatabase == nil || h.Open == nil || h.Exec == nil || h.Seed == nil {
		t.Fatal("storetest: the Harness needs NewDatabase, Open, Exec and Seed")
	}
	if h.Precision < 0 || h.Precision > time.Microsecond {
		t.Fatalf("storetest: Precision %v: a store must keep at least microseconds", h.Precision)
	}
}

// open returns a store on a new database, closed when the test ends.
func (h *Harness) open(t testing.TB) approvals.Store {
	t.Helper()
	s, _ := h.openNew(t)
	return s
}

// openNew is open that also returns the database.
func (h *Harness) openNew(t testing.TB) (approvals.Store, string) {
	t.Helper()
	db := h.NewDatabase(t)
	return h.openDB(t, db), db
}

// openDB opens a store on db, closed when the test ends (closing it
// earlier is fine: Close may be called twice).
func (h *Harness) openDB(t testing.TB, db string) approvals.Store {
	t.Helper()
	s, err := h.Open(t, db)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// at is t as the store keeps it: UTC, truncated to the precision.
func (h *Harness) at(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	p := h.Precision
	if p == 0 {
		p = time.Nanosecond
	}
	return t.Truncate(p).UTC()
}

// step is the smallest difference between two times the store tells apart.
func (h *Harness) step() time.Duration {
	if h.Precision == 0 {
		return time.Nanosecond
	}
	return h.Precision
}

// text is s as the store keeps it in a text column.
func (h *Harness) text(s string) string {
	if h.Text == nil {
		return s
	}
	return h.Text(s)
}

// health returns s's Health.
func health(t testing.TB, s approvals.Store) Health {
	t.Helper()
	hs, ok := s.(Health)
	if !ok {
		t.Fatalf("%T has no Ping and CountOpen (storetest.Health)", s)
	}
	return hs
}

func countOpen(t testing.TB, s approvals.Store) int {
	t.Helper()
	n, err := health(t, s).CountOpen(context.Background())
	if err != nil {
		t.Fatalf("CountOpen: %v", err)
	}
	return n
}

func newRequest() *approvals.Request {
	pc := uuid.NewString()
	return &approvals.Request{
		ID:               approvals.NewReference(),
		Target:           pc,
		CloudPCID:        pc,
		RequesterID:      "U_REQUESTER",
		RequestChannelID: "C_REQUESTS",
		Approvers:        []string{"U_APPROVER", "U_OTHER"},
	}
}

// unresolved returns a request for a device name whose Cloud PC is not
// known yet.
func unresolved() *approvals.Request {
	r := newRequest()
	r.Target, r.CloudPCID = "CPC-alice-01", ""
	return r
}

func mustCreate(t testing.TB, s approvals.Store, r *approvals.Request) *approvals.Request {
	t.Helper()
	if err := s.Create(context.Background(), r); err != nil {
		t.Fatalf("Create(%s): %v", r.ID, err)
	}
	return r
}

func mustGet(t testing.TB, s approvals.Store, id string) *approvals.Request {
	t.Helper()
	r, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return r
}

func mustMove(t testing.TB, s approvals.Store, id string, to approvals.State) *approvals.Request {
	t.Helper()
	r, err := s.Transition(context.Background(), id, to, nil)
	if err != nil {
		t.Fatalf("Transition(%s, %s): %v", id, to, err)
	}
	return r
}

func mustUpdate(t testing.TB, s approvals.Store, id string, update func(*approvals.Request)) *approvals.Request {
	t.Helper()
	r, err := s.Update(context.Background(), id, update)
	if err != nil {
		t.Fatalf("Update(%s): %v", id, err)
	}
	return r
}

func mustRecord(t testing.TB, s approvals.Store, e approvals.Event) {
	t.Helper()
	if err := s.Record(context.Background(), e); err != nil {
		t.Fatalf("Record: %v", err)
	}
}

func mustEvents(t testing.TB, s approvals.Store, since time.Time) []approvals.Event {
	t.Helper()
	events, err := s.Events(context.Background(), since)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	return events
}

// ids lists the references of rs, in order.
func ids(rs []*approvals.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

// pathTo lists the moves from pending to reach each state.
var pathTo = map[approvals.State][]approvals.State{
	approvals.StatePending:        nil,
	approvals.StateApproved:       {approvals.StateApproved},
	approvals.StateConfirming:     {approvals.StateApproved, approvals.StateConfirming},
	approvals.StateScheduled:      {approvals.StateApproved, approvals.StateConfirming, approvals.StateScheduled},
	approvals.StateExecuting:      {approvals.StateApproved, approvals.StateExecuting},
	approvals.StateSucceeded:      {approvals.StateApproved, approvals.StateExecuting, approvals.StateSucceeded},
	approvals.StateFailed:         {approvals.StateApproved, approvals.StateFailed},
	approvals.StateOutcomeUnknown: {approvals.StateApproved, approvals.StateExecuting, approvals.StateOutcomeUnknown},
	approvals.StateDenied:         {approvals.StateDenied},
	approvals.StateExpired:        {approvals.StateExpired},
	approvals.StateCanceled:       {approvals.StateCanceled},
}

// createIn creates r and moves it to state.
func createIn(t testing.TB, s approvals.Store, r *approvals.Request, state approvals.State) *approvals.Request {
	t.Helper()
	mustCreate(t, s, r)
	for _, to := range pathTo[state] {
		r = mustMove(t, s, r.ID, to)
	}
	return r
}

// trackingActive and trackingDone are a followed and a finished
// reprovision.
func trackingActive() approvals.Tracking {
	return approvals.Tracking{Until: time.Now().Add(time.Hour), LastStatus: "provisioning"}
}

func trackingDone() approvals.Tracking {
	return approvals.Tracking{Until: time.Now().Add(time.Hour), Result: approvals.TrackProvisioned}
}

// within fails the test when took is more than limit: what "reasonably
// fast" means here, with room for the race detector on a busy machine.
func within(t testing.TB, what string, took, limit time.Duration) {
	t.Helper()
	t.Logf("%s took %v", what, took.Round(time.Millisecond))
	if took > limit {
		t.Errorf("%s took %v, want under %v", what, took, limit)
	}
}

// describe is a short form of r for messages.
func describe(r *approvals.Request) string {
	if r == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s (%s, cloud PC %q)", r.ID, r.State, r.CloudPCID)
}
