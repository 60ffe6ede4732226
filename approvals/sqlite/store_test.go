package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
)

func dbPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "approvals.db")
}

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// rawDB opens the file with plain database/sql, as another tool (or an
// intruder with file access) would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newRequest() *approvals.Request {
	return &approvals.Request{
		ID:               approvals.NewReference(),
		CloudPCID:        uuid.NewString(),
		RequesterID:      "U_REQUESTER",
		RequestChannelID: "C_REQUESTS",
		ApproverID:       "U_APPROVER",
	}
}

func mustCreate(t *testing.T, s *sqlite.Store, r *approvals.Request) *approvals.Request {
	t.Helper()
	if err := s.Create(context.Background(), r); err != nil {
		t.Fatalf("Create(%s): %v", r.ID, err)
	}
	return r
}

func mustGet(t *testing.T, s *sqlite.Store, id string) *approvals.Request {
	t.Helper()
	r, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return r
}

func mustMove(t *testing.T, s *sqlite.Store, id string, to approvals.State) *approvals.Request {
	t.Helper()
	r, err := s.Transition(context.Background(), id, to, nil)
	if err != nil {
		t.Fatalf("Transition(%s, %s): %v", id, to, err)
	}
	return r
}

func TestOpenConfiguresConnections(t *testing.T) {
	s := openStore(t, dbPath(t))
	db := sqlite.DB(s)
	for pragma, want := range map[string]string{
		"journal_mode": "wal",
		"synchronous":  "2", // FULL
		"foreign_keys": "1",
		"busy_timeout": "5000",
		"user_version": "1",
	} {
		var got string
		if err := db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", pragma, err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
}

func TestOpenTwiceKeepsSchema(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path)
	r := mustCreate(t, s, newRequest())
	// A second handle on an existing, current database must not re-migrate.
	s2 := openStore(t, path)
	mustGet(t, s2, r.ID)
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := dbPath(t)
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := rawDB(t, path).Exec("PRAGMA user_version = 2"); err != nil {
		t.Fatal(err)
	}
	s, err = sqlite.Open(path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a version 2 database succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Errorf("error %q does not say the schema is newer", err)
	}
}

func TestOpenRefusesMemory(t *testing.T) {
	for _, path := range []string{"", ":memory:"} {
		if s, err := sqlite.Open(path); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want an error", path)
		}
	}
}

func TestOpenPathIsTakenLiterally(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "odd name?x=1#frag%41.db")
	openStore(t, path)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not created at %q: %v", path, err)
	}

	t.Chdir(dir)
	openStore(t, "relative.db")
	if _, err := os.Stat(filepath.Join(dir, "relative.db")); err != nil {
		t.Errorf("relative path not created in the working directory: %v", err)
	}
}

func TestCreateAndGet(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := newRequest()
	before := time.Now()
	mustCreate(t, s, r)

	if r.State != approvals.StatePending {
		t.Errorf("State = %q after Create, want pending", r.State)
	}
	if r.CreatedAt.Before(before) || r.CreatedAt.After(time.Now()) || r.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want now in UTC", r.CreatedAt)
	}
	if !r.UpdatedAt.Equal(r.CreatedAt) {
		t.Errorf("UpdatedAt = %v, want CreatedAt %v", r.UpdatedAt, r.CreatedAt)
	}
	if got := mustGet(t, s, r.ID); !reflect.DeepEqual(got, r) {
		t.Errorf("Get = %+v\nwant  %+v", got, r)
	}
}

func TestCreateRoundTripsEveryField(t *testing.T) {
	s := openStore(t, dbPath(t))
	east := time.FixedZone("UTC+5", 5*3600)
	r := &approvals.Request{
		ID:               approvals.NewReference(),
		CloudPCID:        uuid.NewString(),
		RequesterID:      "U1",
		RequestChannelID: "C1",
		ApproverID:       "U2",
		State:            approvals.StatePending,
		DecidedBy:        "",
		PromptChannelID:  "D9",
		PromptTS:         "1712345678.000100",
		Outcome:          "ünïcode ✓ 'quotes' \"and\" ; DROP TABLE requests; --",
		GraphRequestID:   "g-1",
		CreatedAt:        time.Date(2024, 2, 29, 23, 59, 59, 123456789, east),
		UpdatedAt:        time.Date(2024, 3, 1, 0, 0, 0, 1, time.UTC),
	}
	mustCreate(t, s, r)
	if r.CreatedAt.Location() != time.UTC {
		t.Errorf("Create left CreatedAt in %v, want UTC", r.CreatedAt.Location())
	}
	got := mustGet(t, s, r.ID)
	if !reflect.DeepEqual(got, r) {
		t.Errorf("Get = %+v\nwant  %+v", got, r)
	}
	if !got.CreatedAt.Equal(time.Date(2024, 2, 29, 18, 59, 59, 123456789, time.UTC)) {
		t.Errorf("CreatedAt = %v, lost precision or zone", got.CreatedAt)
	}
}

func TestCreateLowerCasesCloudPCID(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := newRequest()
	r.CloudPCID = strings.ToUpper(r.CloudPCID)
	mustCreate(t, s, r)
	if got := mustGet(t, s, r.ID).CloudPCID; got != strings.ToLower(got) {
		t.Errorf("CloudPCID stored as %q, want lower case", got)
	}
}

func TestCreateRefusesInvalid(t *testing.T) {
	tests := map[string]func(*approvals.Request){
		"malformed reference": func(r *approvals.Request) { r.ID = "R-0000" },
		"cloud PC not a GUID": func(r *approvals.Request) { r.CloudPCID = "../../deviceManagement" },
		"no requester":        func(r *approvals.Request) { r.RequesterID = "" },
		"no approver":         func(r *approvals.Request) { r.ApproverID = "" },
		"not pending":         func(r *approvals.Request) { r.State = approvals.StateApproved },
		"unknown state":       func(r *approvals.Request) { r.State = "bogus" },
		"year out of range":   func(r *approvals.Request) { r.CreatedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	s := openStore(t, dbPath(t))
	for name, spoil := range tests {
		t.Run(name, func(t *testing.T) {
			r := newRequest()
			spoil(r)
			if err := s.Create(context.Background(), r); err == nil {
				t.Fatal("Create succeeded, want an error")
			}
			if _, err := s.Get(context.Background(), r.ID); !errors.Is(err, approvals.ErrNotFound) {
				t.Errorf("Get after refused Create: %v, want ErrNotFound", err)
			}
		})
	}
}

func TestCreateDuplicateReference(t *testing.T) {
	s := openStore(t, dbPath(t))
	first := mustCreate(t, s, newRequest())
	second := newRequest()
	second.ID = first.ID
	err := s.Create(context.Background(), second)
	if !errors.Is(err, approvals.ErrDuplicateReference) {
		t.Fatalf("Create with a used reference: %v, want ErrDuplicateReference", err)
	}
	if errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("duplicate reference reported as ErrOpenRequestExists: %v", err)
	}
	if got := mustGet(t, s, first.ID); got.CloudPCID != first.CloudPCID {
		t.Errorf("first request overwritten: %+v", got)
	}
}

// pathTo lists the moves from pending to reach each state.
var pathTo = map[approvals.State][]approvals.State{
	approvals.StatePending:        nil,
	approvals.StateApproved:       {approvals.StateApproved},
	approvals.StateExecuting:      {approvals.StateApproved, approvals.StateExecuting},
	approvals.StateSucceeded:      {approvals.StateApproved, approvals.StateExecuting, approvals.StateSucceeded},
	approvals.StateFailed:         {approvals.StateApproved, approvals.StateFailed},
	approvals.StateOutcomeUnknown: {approvals.StateApproved, approvals.StateExecuting, approvals.StateOutcomeUnknown},
	approvals.StateDenied:         {approvals.StateDenied},
	approvals.StateExpired:        {approvals.StateExpired},
	approvals.StateCanceled:       {approvals.StateCanceled},
}

func createIn(t *testing.T, s *sqlite.Store, r *approvals.Request, state approvals.State) *approvals.Request {
	t.Helper()
	mustCreate(t, s, r)
	for _, to := range pathTo[state] {
		r = mustMove(t, s, r.ID, to)
	}
	return r
}

func TestCreateOneOpenRequestPerCloudPC(t *testing.T) {
	s := openStore(t, dbPath(t))
	for state := range pathTo {
		t.Run(string(state), func(t *testing.T) {
			first := createIn(t, s, newRequest(), state)
			second := newRequest()
			second.CloudPCID = strings.ToUpper(first.CloudPCID) // same PC, other spelling
			err := s.Create(context.Background(), second)
			if state.Open() {
				if !errors.Is(err, approvals.ErrOpenRequestExists) {
					t.Errorf("second request while first is %s: %v, want ErrOpenRequestExists", state, err)
				}
				return
			}
			if err != nil {
				t.Errorf("second request after first became %s: %v, want success", state, err)
			}
		})
	}
}

func TestCreateRaceOnSameCloudPC(t *testing.T) {
	s := openStore(t, dbPath(t))
	pc := uuid.NewString()
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			r := newRequest()
			r.CloudPCID = pc
			<-start
			errs[i] = s.Create(context.Background(), r)
		})
	}
	close(start)
	wg.Wait()
	created := 0
	for _, err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, approvals.ErrOpenRequestExists):
			t.Errorf("Create: %v, want nil or ErrOpenRequestExists", err)
		}
	}
	if created != 1 {
		t.Errorf("%d requests created for one Cloud PC, want 1", created)
	}
}

func TestGetNotFound(t *testing.T) {
	s := openStore(t, dbPath(t))
	if _, err := s.Get(context.Background(), "R-ZZZZZZ"); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("Get of unknown reference: %v, want ErrNotFound", err)
	}
}

func TestGetHonoursContext(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := mustCreate(t, s, newRequest())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, r.ID); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with canceled context: %v, want context.Canceled", err)
	}
}

// TestTransitionFollowsStateMachine tries every move from every state and
// checks the store agrees with State.CanMoveTo.
func TestTransitionFollowsStateMachine(t *testing.T) {
	s := openStore(t, dbPath(t))
	for from := range pathTo {
		for to := range pathTo {
			t.Run(string(from)+"→"+string(to), func(t *testing.T) {
				r := createIn(t, s, newRequest(), from)
				got, err := s.Transition(context.Background(), r.ID, to, nil)
				if from.CanMoveTo(to) {
					if err != nil {
						t.Fatalf("allowed move refused: %v", err)
					}
					if got.State != to {
						t.Errorf("State = %s, want %s", got.State, to)
					}
					if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, got) {
						t.Errorf("Get = %+v\nTransition returned %+v", stored, got)
					}
					return
				}
				var te *approvals.TransitionError
				if !errors.As(err, &te) {
					t.Fatalf("forbidden move: %v, want *TransitionError", err)
				}
				if te.To != to || !reflect.DeepEqual(te.Current, r) {
					t.Errorf("TransitionError{Current: %+v, To: %s}, want Current %+v", te.Current, te.To, r)
				}
				if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, r) {
					t.Errorf("refused move changed the request: %+v", stored)
				}
			})
		}
	}
}

func TestTransitionAppliesUpdate(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := mustCreate(t, s, newRequest())
	time.Sleep(time.Millisecond) // let the clock move past CreatedAt

	got, err := s.Transition(context.Background(), r.ID, approvals.StateApproved, func(c *approvals.Request) {
		if c.State != approvals.StatePending {
			t.Errorf("update saw State %s, want the current state pending", c.State)
		}
		c.DecidedBy = "U_APPROVER"
		c.Outcome = "approved in Slack"
		c.GraphRequestID = "req-1"
		c.PromptChannelID, c.PromptTS = "D1", "1.2"
		c.State = approvals.StateDenied // overridden by the transition
		c.UpdatedAt = time.Unix(0, 0)   // overridden too
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != approvals.StateApproved {
		t.Errorf("State = %s, want approved", got.State)
	}
	if got.DecidedBy != "U_APPROVER" || got.Outcome != "approved in Slack" || got.GraphRequestID != "req-1" ||
		got.PromptChannelID != "D1" || got.PromptTS != "1.2" {
		t.Errorf("update not applied: %+v", got)
	}
	if !got.UpdatedAt.After(r.UpdatedAt) || !got.CreatedAt.Equal(r.CreatedAt) {
		t.Errorf("times = created %v, updated %v; want created %v, updated later than %v",
			got.CreatedAt, got.UpdatedAt, r.CreatedAt, r.UpdatedAt)
	}
	if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, got) {
		t.Errorf("Get = %+v\nTransition returned %+v", stored, got)
	}
}

func TestTransitionRefusesIdentityChange(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := mustCreate(t, s, newRequest())
	changes := map[string]func(*approvals.Request){
		"ID":        func(c *approvals.Request) { c.ID = approvals.NewReference() },
		"CloudPCID": func(c *approvals.Request) { c.CloudPCID = uuid.NewString() },
		"Approver":  func(c *approvals.Request) { c.ApproverID = "U_SOMEONE_ELSE" },
		"CreatedAt": func(c *approvals.Request) { c.CreatedAt = c.CreatedAt.Add(time.Second) },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			_, err := s.Transition(context.Background(), r.ID, approvals.StateApproved, change)
			if err == nil {
				t.Fatal("Transition succeeded, want an error")
			}
			var te *approvals.TransitionError
			if errors.As(err, &te) {
				t.Errorf("got *TransitionError %v, want a plain error", err)
			}
			if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, r) {
				t.Errorf("refused update changed the request: %+v", stored)
			}
		})
	}
}

func TestTransitionNotFound(t *testing.T) {
	s := openStore(t, dbPath(t))
	_, err := s.Transition(context.Background(), "R-ZZZZZZ", approvals.StateApproved, func(*approvals.Request) {
		t.Error("update called for a missing request")
	})
	if !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("Transition of unknown reference: %v, want ErrNotFound", err)
	}
}

func TestTransitionSkipsUpdateWhenRefused(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := createIn(t, s, newRequest(), approvals.StateDenied)
	_, err := s.Transition(context.Background(), r.ID, approvals.StateApproved, func(*approvals.Request) {
		t.Error("update called for a refused move")
	})
	var te *approvals.TransitionError
	if !errors.As(err, &te) {
		t.Errorf("got %v, want *TransitionError", err)
	}
}

// race runs n concurrent pending→approved moves of one request, the i-th
// through stores[i%len(stores)], and checks exactly one wins.
func race(t *testing.T, n int, stores ...*sqlite.Store) {
	t.Helper()
	r := mustCreate(t, stores[0], newRequest())
	var (
		wg      sync.WaitGroup
		updates atomic.Int32
		start   = make(chan struct{})
		results = make([]*approvals.Request, n)
		errs    = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = stores[i%len(stores)].Transition(context.Background(), r.ID, approvals.StateApproved,
				func(c *approvals.Request) {
					updates.Add(1)
					c.DecidedBy = "U_APPROVER"
				})
		})
	}
	close(start)
	wg.Wait()

	winners := 0
	for i, err := range errs {
		var te *approvals.TransitionError
		switch {
		case err == nil:
			winners++
			if results[i].State != approvals.StateApproved {
				t.Errorf("winner returned state %s", results[i].State)
			}
		case errors.As(err, &te):
			if te.Current.State != approvals.StateApproved || te.Current.DecidedBy != "U_APPROVER" {
				t.Errorf("loser saw %+v, want the approved request", te.Current)
			}
		default:
			t.Errorf("Transition: %v, want success or *TransitionError", err)
		}
	}
	if winners != 1 {
		t.Errorf("%d of %d racing transitions succeeded, want exactly 1", winners, n)
	}
	if got := updates.Load(); got != 1 {
		t.Errorf("update ran %d times, want 1", got)
	}
}

func TestTransitionRace(t *testing.T) {
	race(t, 20, openStore(t, dbPath(t)))
}

// TestTransitionRaceTwoHandles stands in for two processes on one file.
func TestTransitionRaceTwoHandles(t *testing.T) {
	path := dbPath(t)
	race(t, 20, openStore(t, path), openStore(t, path))
}

// TestReadersDoNotWaitForWriter: while one handle holds the write lock, the
// other still reads (WAL), sees only committed data, and sees the new data
// once committed.
func TestReadersDoNotWaitForWriter(t *testing.T) {
	path := dbPath(t)
	writer, reader := openStore(t, path), openStore(t, path)
	ctx := context.Background()
	r := mustCreate(t, writer, newRequest())
	if err := writer.Record(ctx, approvals.Event{Kind: approvals.EventRequested, RequestID: r.ID}); err != nil {
		t.Fatal(err)
	}

	tx, err := sqlite.DB(writer).BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO audit_events (time, request_id, kind, actor, details)
		VALUES ('2030-01-01T00:00:00.000000000Z', 'R-BBBBBB', 'approved', '', '{}')`); err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	events, err := reader.Events(short, time.Time{})
	if err != nil {
		t.Fatalf("Events while another handle writes: %v", err)
	}
	if len(events) != 1 {
		t.Errorf("reader saw %d events before commit, want 1", len(events))
	}
	if _, err := reader.Get(short, r.ID); err != nil {
		t.Errorf("Get while another handle writes: %v", err)
	}
	if _, err := reader.ListByState(short, approvals.StatePending); err != nil {
		t.Errorf("ListByState while another handle writes: %v", err)
	}

	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	events, err = reader.Events(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 {
		t.Errorf("reader saw %d events after commit, want 2", len(events))
	}
}

func TestConcurrentRecordAndEvents(t *testing.T) {
	path := dbPath(t)
	writer, reader := openStore(t, path), openStore(t, path)
	const n = 50
	ctx := context.Background()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := range n {
			if err := writer.Record(ctx, approvals.Event{Kind: approvals.EventGraphCall, Details: map[string]string{"i": string(rune('a' + i%26))}}); err != nil {
				t.Errorf("Record: %v", err)
				return
			}
		}
	})
	wg.Go(func() {
		seen := 0
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
			if len(events) < seen {
				t.Errorf("event count went from %d to %d", seen, len(events))
			}
			seen = len(events)
		}
	})
	wg.Wait()
	events, err := reader.Events(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != n {
		t.Errorf("%d events, want %d", len(events), n)
	}
}

func TestSetPrompt(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := mustCreate(t, s, newRequest())
	if err := s.SetPrompt(context.Background(), r.ID, "D_APPROVER", "1712345678.000200"); err != nil {
		t.Fatal(err)
	}
	got := mustGet(t, s, r.ID)
	if got.PromptChannelID != "D_APPROVER" || got.PromptTS != "1712345678.000200" {
		t.Errorf("prompt = %q/%q", got.PromptChannelID, got.PromptTS)
	}
	if got.State != approvals.StatePending || got.UpdatedAt.Before(r.UpdatedAt) {
		t.Errorf("SetPrompt: state %s, UpdatedAt %v (was %v)", got.State, got.UpdatedAt, r.UpdatedAt)
	}
	if err := s.SetPrompt(context.Background(), "R-ZZZZZZ", "D", "1"); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("SetPrompt of unknown reference: %v, want ErrNotFound", err)
	}
}

func TestListByState(t *testing.T) {
	s := openStore(t, dbPath(t))
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

	ids := func(states ...approvals.State) []string {
		t.Helper()
		rs, err := s.ListByState(context.Background(), states...)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	if got, want := ids(approvals.StatePending), []string{first.ID, third.ID}; !reflect.DeepEqual(got, want) {
		t.Errorf("pending = %v, want %v", got, want)
	}
	if got, want := ids(approvals.StateApproved, approvals.StatePending), []string{first.ID, second.ID, third.ID}; !reflect.DeepEqual(got, want) {
		t.Errorf("pending+approved = %v, want %v", got, want)
	}
	if got := ids(approvals.StateExecuting); len(got) != 0 {
		t.Errorf("executing = %v, want none", got)
	}
	if got := ids(); len(got) != 0 {
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

func TestRecordAndEvents(t *testing.T) {
	s := openStore(t, dbPath(t))
	ctx := context.Background()
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 500, time.UTC)
	recorded := []approvals.Event{
		{Time: t0.Add(2 * time.Second), RequestID: "R-CCCCCC", Kind: approvals.EventSucceeded},
		{Time: t0, RequestID: "R-AAAAAA", Kind: approvals.EventRequested, Actor: "U1",
			Details: map[string]string{"target": "pc-1", "quote": `"x"`, "utf8": "✓"}},
		{Time: t0.Add(time.Second).In(time.FixedZone("X", -7200)), RequestID: "R-AAAAAA", Kind: approvals.EventApproved, Actor: "U2"},
		{Time: t0.Add(time.Second), RequestID: "R-AAAAAA", Kind: approvals.EventGraphCall, Details: map[string]string{}},
	}
	for _, e := range recorded {
		if err := s.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}

	all, err := s.Events(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// Oldest first; equal times in recording order; UTC; empty details nil.
	want := []approvals.Event{recorded[1], recorded[2], recorded[3], recorded[0]}
	want[1].Time = want[1].Time.UTC()
	want[2].Details = nil
	if !reflect.DeepEqual(all, want) {
		t.Errorf("Events(zero) =\n%+v\nwant\n%+v", all, want)
	}

	since, err := s.Events(ctx, t0.Add(time.Second)) // inclusive
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(since, want[1:]) {
		t.Errorf("Events(since) =\n%+v\nwant\n%+v", since, want[1:])
	}
	none, err := s.Events(ctx, t0.Add(time.Hour))
	if err != nil || len(none) != 0 {
		t.Errorf("Events(future) = %v, %v; want none", none, err)
	}
}

func TestRecordDefaultsAndRefusals(t *testing.T) {
	s := openStore(t, dbPath(t))
	ctx := context.Background()
	before := time.Now()
	if err := s.Record(ctx, approvals.Event{Kind: approvals.EventRefusedClick, RequestID: "R-AAAAAA"}); err != nil {
		t.Fatal(err)
	}
	events, err := s.Events(ctx, time.Time{})
	if err != nil || len(events) != 1 {
		t.Fatalf("Events = %v, %v", events, err)
	}
	if at := events[0].Time; at.Before(before) || at.After(time.Now()) {
		t.Errorf("zero Time recorded as %v, want now", at)
	}
	if err := s.Record(ctx, approvals.Event{RequestID: "R-AAAAAA"}); err == nil {
		t.Error("Record without a kind succeeded, want an error")
	}
}

func TestAuditTrailIsAppendOnly(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path)
	ctx := context.Background()
	e := approvals.Event{Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), RequestID: "R-AAAAAA",
		Kind: approvals.EventApproved, Actor: "U2", Details: map[string]string{"k": "v"}}
	if err := s.Record(ctx, e); err != nil {
		t.Fatal(err)
	}

	raw := rawDB(t, path)
	for stmt, why := range map[string]string{
		`UPDATE audit_events SET actor = 'U_MALLORY'`: "append-only",
		`DELETE FROM audit_events`:                    "append-only",
		`INSERT OR REPLACE INTO audit_events (id, time, request_id, kind, actor, details)
			SELECT id, time, request_id, kind, 'U_MALLORY', details FROM audit_events`: "append-only",
		// A non-positive id would defeat the no-replace trigger.
		`INSERT INTO audit_events (id, time, request_id, kind, actor, details)
			VALUES (-1, '2025-01-01T00:00:00.000000000Z', 'R-AAAAAA', 'x', '', '{}')`: "CHECK constraint",
	} {
		_, err := raw.Exec(stmt)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("%s: got %v, want refusal mentioning %q", stmt, err, why)
		}
	}
	// Still appendable, through the store and directly.
	if err := s.Record(ctx, approvals.Event{Time: e.Time.Add(time.Second), Kind: approvals.EventSucceeded}); err != nil {
		t.Fatalf("Record after refused edits: %v", err)
	}

	events, err := s.Events(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || !reflect.DeepEqual(events[0], e) {
		t.Errorf("audit trail changed: %+v", events)
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	path := dbPath(t)
	ctx := context.Background()
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r := mustCreate(t, s, newRequest())
	if err := s.SetPrompt(ctx, r.ID, "D_APPROVER", "1712345678.000300"); err != nil {
		t.Fatal(err)
	}
	if err := s.Record(ctx, approvals.Event{RequestID: r.ID, Kind: approvals.EventRequested}); err != nil {
		t.Fatal(err)
	}
	want := mustGet(t, s, r.ID)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, path)
	got := mustGet(t, s, r.ID)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after reopen Get = %+v\nwant %+v", got, want)
	}
	if got.State != approvals.StatePending || got.PromptChannelID != "D_APPROVER" || got.PromptTS != "1712345678.000300" {
		t.Errorf("after reopen: %+v", got)
	}
	pending, err := s.ListByState(ctx, approvals.StatePending)
	if err != nil || len(pending) != 1 {
		t.Errorf("pending after reopen = %v, %v", pending, err)
	}
	events, err := s.Events(ctx, time.Time{})
	if err != nil || len(events) != 1 || events[0].RequestID != r.ID {
		t.Errorf("events after reopen = %v, %v", events, err)
	}
	// The open request still blocks another for the same Cloud PC.
	dup := newRequest()
	dup.CloudPCID = r.CloudPCID
	if err := s.Create(ctx, dup); !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("Create after reopen: %v, want ErrOpenRequestExists", err)
	}
}

// TestConcurrentOpenOfNewFile: the bot and the audit command starting at the
// same moment on a fresh file must not both create the schema.
func TestConcurrentOpenOfNewFile(t *testing.T) {
	path := dbPath(t)
	const n = 4
	stores := make([]*sqlite.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { stores[i], errs[i] = sqlite.Open(path) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open #%d: %v", i, err)
			continue
		}
		defer stores[i].Close()
	}
	if t.Failed() {
		return
	}
	r := mustCreate(t, stores[0], newRequest())
	mustGet(t, stores[n-1], r.ID)
}
