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

// openReader opens path with OpenReader, closing it when the test ends.
func openReader(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.OpenReader(path)
	if err != nil {
		t.Fatalf("OpenReader(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close reader: %v", err)
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
		"cache_size":   "-512", // KiB
		"user_version": "5",
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
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r := mustCreate(t, s, newRequest())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Opening an existing, current database must not re-migrate.
	s = openStore(t, path)
	mustGet(t, s, r.ID)
	// Nor does a reader alongside.
	mustGet(t, openReader(t, path), r.ID)
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := dbPath(t)
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := rawDB(t, path).Exec("PRAGMA user_version = 6"); err != nil {
		t.Fatal(err)
	}
	s, err = sqlite.Open(path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a version 6 database succeeded, want an error")
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

// TestSchemaChecksJSON: the JSON columns refuse what the store would never
// write, should another tool write to the file.
func TestSchemaChecksJSON(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path)
	r := mustCreate(t, s, newRequest())
	raw := rawDB(t, path)
	for _, set := range []string{
		`approvers = 'U1'`, `approvers = '[]'`, `approvers = 'null'`, `approvers = '{"a":1}'`,
		`prompts = '{'`, `prompts = '"x"'`, `device = '[]'`, `candidates = '{}'`,
		`tracking_paused = 2`, `holds_cloud_pc = 2`, `tracking_checks = -1`,
		`batch = '[]'`, `batch = 'null'`, `batch = '{'`, `batch = 'x'`,
	} {
		if _, err := raw.Exec(`UPDATE requests SET `+set+` WHERE id = ?`, r.ID); err == nil {
			t.Errorf("SET %s accepted, want a refusal", set)
		}
	}
	if got := mustGet(t, s, r.ID); !reflect.DeepEqual(got, r) {
		t.Errorf("request changed: %+v", got)
	}
}

// TestReadersDoNotWaitForWriter: while the serving store holds the write
// lock, a reader (the audit command) still reads (WAL), sees only committed
// data, and sees the new data once committed.
func TestReadersDoNotWaitForWriter(t *testing.T) {
	path := dbPath(t)
	writer := openStore(t, path)
	reader := openReader(t, path)
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
	if _, err := reader.OpenFor(short, r.CloudPCID); err != nil {
		t.Errorf("OpenFor while another handle writes: %v", err)
	}
	if _, err := reader.ListTracking(short); err != nil {
		t.Errorf("ListTracking while another handle writes: %v", err)
	}
	if _, err := reader.ListByRequester(short, r.RequesterID, 10); err != nil {
		t.Errorf("ListByRequester while another handle writes: %v", err)
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
	writer := openStore(t, path)
	reader := openReader(t, path)
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

// TestAuditTrailRefusesReplace: besides UPDATE and DELETE (the conformance
// suite's AuditTrailIsAppendOnly), SQLite's own ways around the triggers
// are refused: INSERT OR REPLACE deletes without firing the DELETE
// trigger, and a non-positive id would defeat the no-replace trigger.
func TestAuditTrailRefusesReplace(t *testing.T) {
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

// TestConcurrentOpenOfNewFile: the bot (several tries to start it at once)
// and the audit command, starting at the same moment on a new file. Exactly
// one Open serves it, the others are refused with ErrInUse, and no one fails
// with SQLITE_BUSY: a reader either finds no store yet, a store without
// its schema yet, or the whole schema. (Before the lock several Opens could
// all serve the file; about 1 in 30 runs one failed with SQLITE_BUSY.)
func TestConcurrentOpenOfNewFile(t *testing.T) {
	path := dbPath(t)
	const writers, readers = 3, 4
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		stores  = make([]*sqlite.Store, writers)
		errs    = make([]error, writers)
		created = make(chan string, writers)
	)
	for i := range writers {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = sqlite.Open(path)
			if errs[i] == nil {
				created <- mustCreate(t, stores[i], newRequest()).ID
			}
		})
	}
	for i := range readers {
		wg.Go(func() {
			<-start
			deadline := time.Now().Add(10 * time.Second)
			for {
				r, err := sqlite.OpenReader(path)
				if err == nil {
					if _, err := r.Events(context.Background(), time.Time{}); err != nil {
						t.Errorf("reader #%d: Events: %v", i, err)
					}
					r.Close()
					return
				}
				if !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "no schema") || time.Now().After(deadline) {
					t.Errorf("reader #%d: %v", i, err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	close(start)
	wg.Wait()

	var served *sqlite.Store
	for i, err := range errs {
		switch {
		case err == nil && served == nil:
			served = stores[i]
			defer served.Close()
		case err == nil:
			defer stores[i].Close()
			t.Errorf("Open #%d also serves the file", i)
		case !errors.Is(err, sqlite.ErrInUse):
			t.Errorf("Open #%d: %v, want success or ErrInUse", i, err)
		}
	}
	if served == nil {
		t.Fatal("no Open serves the file")
	}
	id := <-created
	mustGet(t, served, id)
	mustGet(t, openReader(t, path), id)
}

// TestWritersTakeTurnsOnNewFile: processes retrying to serve a new file,
// each writing once and closing, take turns: every Open either serves it or
// is refused with ErrInUse, never SQLITE_BUSY, and nothing is lost.
func TestWritersTakeTurnsOnNewFile(t *testing.T) {
	path := dbPath(t)
	const n = 4
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		ids   = make([]string, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			deadline := time.Now().Add(20 * time.Second)
			for {
				s, err := sqlite.Open(path)
				if errors.Is(err, sqlite.ErrInUse) && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
					continue
				}
				if err != nil {
					t.Errorf("writer #%d: %v", i, err)
					return
				}
				r := newRequest()
				if err := s.Create(context.Background(), r); err != nil {
					t.Errorf("writer #%d: Create: %v", i, err)
				}
				ids[i] = r.ID
				if err := s.Close(); err != nil {
					t.Errorf("writer #%d: Close: %v", i, err)
				}
				return
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	s := openStore(t, path)
	for _, id := range ids {
		mustGet(t, s, id)
	}
}

// TestOpenOfNewFileWaitsForAnOutsideWriteLock: another SQLite client (a
// sqlite3 shell, say) holding the write lock on a new file makes Open wait
// for it, as any write waits (busy_timeout), rather than fail at once with
// SQLITE_BUSY: switching the file to WAL mode upgrades a read lock, where
// SQLite does not wait by itself.
func TestOpenOfNewFileWaitsForAnOutsideWriteLock(t *testing.T) {
	path := dbPath(t)
	ctx := context.Background()
	conn, err := rawDB(t, path).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	const hold = 300 * time.Millisecond
	released := make(chan error, 1)
	time.AfterFunc(hold, func() {
		_, err := conn.ExecContext(ctx, "ROLLBACK")
		released <- err
	})

	begin := time.Now()
	s, err := sqlite.Open(path)
	took := time.Since(begin)
	if err != nil {
		t.Fatalf("Open while another client held the write lock for %s: %v (after %s)", hold, err, took)
	}
	defer s.Close()
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	if took < hold/2 {
		t.Errorf("Open took %s, less than the lock was held (%s)", took, hold)
	}
	var mode string
	var version int
	if err := sqlite.DB(s).QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	if err := sqlite.DB(s).QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != 5 {
		t.Errorf("user_version = %d, %v; want 5", version, err)
	}
	mustCreate(t, s, newRequest())
}

// TestOutcomeOfAnOlderVersionStillReads: versions before the workflow moved
// into approvals stored the outcome as a sentence; such a row must still
// load, with the sentence kept as the outcome's text, and a row without an
// outcome has none.
func TestOutcomeOfAnOlderVersionStillReads(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path)
	old := mustCreate(t, s, newRequest())
	none := mustCreate(t, s, newRequest())
	sentence := "Microsoft Graph refused (HTTP 409): the Cloud PC's current state does not allow it."
	if _, err := rawDB(t, path).Exec("UPDATE requests SET outcome = ? WHERE id = ?", sentence, old.ID); err != nil {
		t.Fatal(err)
	}
	got := mustGet(t, s, old.ID)
	if got.Outcome == nil || got.Outcome.Text != sentence || got.Outcome.Kind != "" {
		t.Errorf("older outcome read as %+v, want its sentence as Text", got.Outcome)
	}
	if got := mustGet(t, s, none.ID); got.Outcome != nil {
		t.Errorf("request without an outcome read as %+v, want nil", got.Outcome)
	}
}

// A version 1 store (before the approval deadline had a column of its own)
// is migrated at Open: each request's approval deadline is its expiry.
func TestMigrationKeepsTheApprovalDeadline(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path)
	r := newRequest()
	r.ExpiresAt = time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	r.DecideBy = time.Time{}
	mustCreate(t, s, r)
	confirming := newRequest()
	confirming.ExpiresAt = time.Date(2030, 1, 1, 0, 30, 0, 0, time.UTC) // the confirmation window
	mustCreate(t, s, confirming)
	mustMove(t, s, confirming.ID, approvals.StateApproved)
	mustMove(t, s, confirming.ID, approvals.StateConfirming)
	s.Close()
	raw := rawDB(t, path)
	for _, stmt := range []string{"DROP TABLE cloud_pc_holds", "ALTER TABLE requests DROP COLUMN batch", "ALTER TABLE requests DROP COLUMN heads_up_user_id", "ALTER TABLE requests DROP COLUMN heads_up_result", "ALTER TABLE requests DROP COLUMN send_at", "ALTER TABLE requests DROP COLUMN more_time_asked", "ALTER TABLE requests DROP COLUMN postponed", "ALTER TABLE requests DROP COLUMN sign_in_lost", "ALTER TABLE requests DROP COLUMN approvals", "ALTER TABLE requests DROP COLUMN approvals_required", "ALTER TABLE requests DROP COLUMN user_account_type", "ALTER TABLE requests DROP COLUMN os_version", "DROP TABLE outbox", "DROP INDEX requests_by_update", "ALTER TABLE requests DROP COLUMN decide_by", "PRAGMA user_version = 1"} {
		if _, err := raw.Exec(stmt); err != nil {
			t.Fatalf("making a version 1 store: %s: %v", stmt, err)
		}
	}
	raw.Close()
	s = openStore(t, path)
	got := mustGet(t, s, r.ID)
	if !got.DecideBy.Equal(r.ExpiresAt) || !got.ExpiresAt.Equal(r.ExpiresAt) {
		t.Errorf("after the migration: decide by %v, expires %v; want both %v", got.DecideBy, got.ExpiresAt, r.ExpiresAt)
	}
	// Awaiting confirmation, its expiry is the confirmation window, not an
	// approval deadline: it gets none rather than one that ends early.
	if got := mustGet(t, s, confirming.ID); !got.DecideBy.IsZero() || !got.ExpiresAt.Equal(confirming.ExpiresAt) {
		t.Errorf("confirming after the migration: decide by %v, expires %v", got.DecideBy, got.ExpiresAt)
	}
}

// A version 4 store (before batches and cloud_pc_holds) is migrated at
// Open: its requests read as single ones (Batch nil), and those open at the
// upgrade hold their Cloud PC in cloud_pc_holds, so OpenFor finds them and
// they block another request for it, batch members included; the others
// hold nothing.
func TestMigrationFillsCloudPCHolds(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path)
	open := mustCreate(t, s, newRequest())
	mustMove(t, s, open.ID, approvals.StateApproved)
	denied := mustCreate(t, s, newRequest())
	mustMove(t, s, denied.ID, approvals.StateDenied)
	unresolved := newRequest()
	unresolved.CloudPCID = ""
	mustCreate(t, s, unresolved)
	s.Close()
	raw := rawDB(t, path)
	for _, stmt := range []string{"DROP TABLE cloud_pc_holds", "ALTER TABLE requests DROP COLUMN batch", "PRAGMA user_version = 4"} {
		if _, err := raw.Exec(stmt); err != nil {
			t.Fatalf("making a version 4 store: %s: %v", stmt, err)
		}
	}
	raw.Close()

	s = openStore(t, path)
	ctx := context.Background()
	var holds int
	if err := sqlite.DB(s).QueryRow(`SELECT count(*) FROM cloud_pc_holds`).Scan(&holds); err != nil || holds != 1 {
		t.Errorf("cloud_pc_holds has %d rows (%v) after the migration, want 1", holds, err)
	}
	for _, r := range []*approvals.Request{open, denied, unresolved} {
		if got := mustGet(t, s, r.ID); got.Batch != nil {
			t.Errorf("%s read as a batch: %+v", r.ID, got.Batch)
		}
	}
	if got, err := s.OpenFor(ctx, open.CloudPCID); err != nil || got.ID != open.ID {
		t.Errorf("OpenFor(the open request's Cloud PC) = %v, %v; want %s", got, err, open.ID)
	}
	if _, err := s.OpenFor(ctx, denied.CloudPCID); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("OpenFor(the denied request's Cloud PC): %v, want ErrNotFound", err)
	}
	dup := newRequest()
	dup.CloudPCID = open.CloudPCID
	if err := s.Create(ctx, dup); !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("Create for the open request's Cloud PC: %v, want ErrOpenRequestExists", err)
	}
	batch := newRequest()
	batch.CloudPCID, batch.Target = "", "2 Cloud PCs"
	batch.Batch = &approvals.Batch{Targets: []string{open.CloudPCID, denied.CloudPCID}, Members: []approvals.Member{
		{Target: open.CloudPCID, CloudPCID: open.CloudPCID, Result: approvals.MemberWaiting},
		{Target: denied.CloudPCID, CloudPCID: denied.CloudPCID, Result: approvals.MemberWaiting},
	}}
	if err := s.Create(ctx, batch); !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("Create of a batch with the open request's Cloud PC: %v, want ErrOpenRequestExists", err)
	}
	batch.Batch.Targets, batch.Batch.Members = batch.Batch.Targets[1:], batch.Batch.Members[1:]
	mustCreate(t, s, batch)
	if got, err := s.OpenFor(ctx, denied.CloudPCID); err != nil || got.ID != batch.ID {
		t.Errorf("OpenFor(the batch member's Cloud PC) = %v, %v; want %s", got, err, batch.ID)
	}
}
