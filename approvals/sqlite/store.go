// Package sqlite keeps approvals requests and the audit trail in a SQLite
// database file, using the pure-Go driver modernc.org/sqlite.
//
// The database is opened in WAL mode with synchronous=FULL, so a committed
// decision survives a crash or power loss, and readers (such as the audit
// export command running in another process, through OpenReader) never
// block the bot's writes. Every read-modify-write runs in a BEGIN IMMEDIATE
// transaction, which takes the write lock before reading: two racing
// transitions on the same request are serialised, and the loser sees the
// winner's result instead of both succeeding.
//
// One process serves a store at a time (see Open): a second one is refused
// before it can touch requests the first one owns.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/reprovision-bot/reprovision-bot/approvals/internal/stmtcache"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	msqlite "modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// schemaVersion is stored in PRAGMA user_version. Bump it and add a step to
// migrations when the schema changes.
const schemaVersion = 5

// migrations[i] takes the schema from version i to i+1.
//
// Lists and nested structs (approvers, prompts, device, candidates) are JSON
// text, checked by json_valid: nothing queries inside them, and a column per
// element would need a table per list. Tracking is plain columns because
// ListTracking filters and orders on it. Optional times are empty text when zero.
// holds_cloud_pc is Request.Open() as of the last save, written by the store
// on every save rather than restated in SQL, so the unique index follows the
// domain's one definition of "open". Likewise cloud_pc_holds (version 5) is
// Request.HeldCloudPCs() as of each request's last save.
var migrations = []string{
	// 0 → 1
	`
CREATE TABLE requests (
	id                   TEXT PRIMARY KEY,
	target               TEXT NOT NULL,
	cloud_pc_id          TEXT NOT NULL,
	reason               TEXT NOT NULL,
	requester_id         TEXT NOT NULL,
	request_channel_id   TEXT NOT NULL,
	approvers            TEXT NOT NULL CHECK (json_valid(approvers) AND json_type(approvers) = 'array' AND json_array_length(approvers) > 0),
	state                TEXT NOT NULL,
	decided_by           TEXT NOT NULL,
	decision_reason      TEXT NOT NULL,
	signed_in_as         TEXT NOT NULL,
	prompts              TEXT NOT NULL CHECK (json_valid(prompts) AND json_type(prompts) IN ('array', 'null')),
	device               TEXT NOT NULL CHECK (json_valid(device) AND json_type(device) IN ('object', 'null')),
	candidates           TEXT NOT NULL CHECK (json_valid(candidates) AND json_type(candidates) IN ('array', 'null')),
	outcome              TEXT NOT NULL,
	graph_request_id     TEXT NOT NULL,
	tracking_since       TEXT NOT NULL,
	tracking_until       TEXT NOT NULL,
	tracking_next_check  TEXT NOT NULL,
	tracking_checks      INTEGER NOT NULL CHECK (tracking_checks >= 0),
	tracking_last_status TEXT NOT NULL,
	tracking_paused      INTEGER NOT NULL CHECK (tracking_paused IN (0, 1)),
	tracking_result      TEXT NOT NULL,
	created_at           TEXT NOT NULL,
	updated_at           TEXT NOT NULL,
	expires_at           TEXT NOT NULL,
	holds_cloud_pc       INTEGER NOT NULL CHECK (holds_cloud_pc IN (0, 1))
) STRICT;

-- One open request per Cloud PC, enforced by the database so that two
-- requests racing through Create (or a target being resolved to a Cloud PC
-- that meanwhile got a request) cannot both get in. Unresolved requests have
-- no Cloud PC yet and hold nothing.
CREATE UNIQUE INDEX requests_one_open_per_cloud_pc
	ON requests (cloud_pc_id) WHERE holds_cloud_pc = 1 AND cloud_pc_id <> '';

CREATE INDEX requests_by_state ON requests (state, created_at);
CREATE INDEX requests_by_requester ON requests (requester_id, created_at);

-- Tracking.Active: the WHERE matches the one in ListTracking.
CREATE INDEX requests_tracking ON requests (tracking_next_check)
	WHERE tracking_until <> '' AND tracking_result = '';

CREATE TABLE audit_events (
	id         INTEGER PRIMARY KEY AUTOINCREMENT CHECK (id > 0),
	time       TEXT NOT NULL,
	request_id TEXT NOT NULL,
	kind       TEXT NOT NULL,
	actor      TEXT NOT NULL,
	details    TEXT NOT NULL CHECK (json_valid(details))
) STRICT;

CREATE INDEX audit_events_by_time ON audit_events (time, id);

-- The audit trail is append-only: nobody, the bot included, edits history.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
	SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
	SELECT RAISE(ABORT, 'audit_events is append-only');
END;

-- INSERT OR REPLACE deletes the row it replaces without firing the DELETE
-- trigger (recursive_triggers is off), so refuse reusing an id outright.
-- NEW.id is -1 here when the id is left to AUTOINCREMENT, hence the CHECK
-- (id > 0) on the table and the NEW.id > 0 below.
CREATE TRIGGER audit_events_no_replace BEFORE INSERT ON audit_events
WHEN NEW.id > 0 AND EXISTS (SELECT 1 FROM audit_events WHERE id = NEW.id)
BEGIN
	SELECT RAISE(ABORT, 'audit_events is append-only');
END;
`,
	// 1 → 2: the approval deadline, kept apart from the deadline of the
	// current wait (expires_at), so that a request sent back from the final
	// confirmation gets its own deadline back. Rows from version 1 take
	// expires_at, which is the approval deadline, except those awaiting
	// confirmation at the upgrade: theirs is the confirmation window, and
	// the approval deadline is not known, so they get none (sent back to
	// pending, such a request waits rather than expiring early).
	`
ALTER TABLE requests ADD COLUMN decide_by TEXT NOT NULL DEFAULT '';
UPDATE requests SET decide_by = CASE WHEN state = 'awaiting_confirmation' THEN '' ELSE expires_at END;
`,
	// 2 → 3: the outbox of notices (approvals.Outbox), and an index for
	// the requests changed recently (their prompts are redrawn at start).
	`
CREATE TABLE outbox (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	request_id   TEXT NOT NULL,
	kind         TEXT NOT NULL,
	coalesce_key TEXT NOT NULL,
	payload      TEXT NOT NULL CHECK (json_valid(payload)),
	generation   INTEGER NOT NULL CHECK (generation >= 0),
	attempts     INTEGER NOT NULL CHECK (attempts >= 0),
	last_error   TEXT NOT NULL,
	created_at   TEXT NOT NULL,
	next_at      TEXT NOT NULL
) STRICT;

-- One undelivered entry per request and coalesce key (the latest state wins).
CREATE UNIQUE INDEX outbox_coalesced ON outbox (request_id, coalesce_key) WHERE coalesce_key <> '';
CREATE INDEX outbox_due ON outbox (next_at, id);
CREATE INDEX requests_by_update ON requests (updated_at);
`,
	// 3 → 4: the reprovision options, two-person approval (how many
	// approvals a request needs, and those given; older requests needed
	// one), and the heads-up to the Cloud PC's user.
	`
ALTER TABLE requests ADD COLUMN os_version TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN user_account_type TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN approvals_required INTEGER NOT NULL DEFAULT 1;
ALTER TABLE requests ADD COLUMN approvals TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(approvals));
ALTER TABLE requests ADD COLUMN heads_up_user_id TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN heads_up_result TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN send_at TEXT NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN more_time_asked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN postponed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN sign_in_lost INTEGER NOT NULL DEFAULT 0;
`,
	// 4 → 5: batches (approvals.Batch, as JSON; NULL for a single
	// request), and the Cloud PCs each open request holds, batch members
	// included (Request.HeldCloudPCs): one row per Cloud PC, so one holder
	// per Cloud PC, whatever kind of request holds it. The store rewrites a
	// request's rows in the transaction that saves it. Requests open at the
	// upgrade are single ones, holding their own Cloud PC. The partial
	// unique index on requests stays: it says the same of single requests
	// (cloud_pc_holds holds their rows too), at no cost worth saving.
	`
ALTER TABLE requests ADD COLUMN batch TEXT CHECK (batch IS NULL OR (json_valid(batch) AND json_type(batch) = 'object'));

CREATE TABLE cloud_pc_holds (
	cloud_pc_id TEXT PRIMARY KEY CHECK (cloud_pc_id <> ''),
	request_id  TEXT NOT NULL REFERENCES requests (id)
) STRICT;
CREATE INDEX cloud_pc_holds_by_request ON cloud_pc_holds (request_id);

INSERT INTO cloud_pc_holds (cloud_pc_id, request_id)
	SELECT cloud_pc_id, id FROM requests WHERE holds_cloud_pc = 1 AND cloud_pc_id <> '';
`,
}

// Store is an approvals.Store backed by one SQLite file. It is safe for
// concurrent use by goroutines. Only one process serves a file at a time
// (Open); others may read it meanwhile (OpenReader).
type Store struct {
	db    *sql.DB
	stmts *stmtcache.Cache // frequent statements, prepared once
	lock  *storeLock       // nil for a reader
}

var _ approvals.Store = (*Store)(nil)

// pageCacheKiB is each serving connection's page cache. A store is small
// and the file's pages stay in the OS cache; SQLite's default 2 MB per
// connection grew the process by that much per connection after a burst,
// memory the driver's allocator does not give back.
const pageCacheKiB = 512

// busyTimeout is how long a statement waits for another connection's or
// process's lock before failing with SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// Open opens the database file at path to serve it, reading and writing,
// creating it if needed and bringing its schema up to date.
//
// One process serves a store at a time. Open first takes an exclusive,
// non-blocking advisory lock on the file path+".lock" (created 0600) and
// holds it until Close; when another process, or another Store in this
// process, holds it, Open fails without waiting for it (up to 100 ms to
// read the holder's name, when it has only just taken the lock), before
// opening the database, with an *InUseError (errors.Is(err, ErrInUse))
// naming the file and, when it can, the holder's pid and host. The kernel
// releases the lock when its holder dies, so a crash never leaves a stale
// lock; the lock file itself stays, to be reused. Only Open takes the lock:
// OpenReader, for reading while the bot runs, takes none and never writes.
// The lock, like SQLite's WAL, needs a local file system.
//
// Files Open creates (the database, its lock file, and SQLite's -wal and
// -shm files, which SQLite gives the database file's mode) are readable
// and writable by the owner only (0600), whatever the umask. An existing
// database file keeps its mode.
//
// Making a new file ready (WAL mode, the schema) waits for SQLite's write
// lock, held for instance by a sqlite3 shell or a reader that got there
// first, up to the busy timeout like any write, instead of failing with
// SQLITE_BUSY.
func Open(path string) (*Store, error) {
	abs, err := absPath(path)
	if err != nil {
		return nil, err
	}
	lock, err := acquire(abs)
	if err != nil {
		return nil, err
	}
	s, err := open(abs, lock)
	if err != nil {
		lock.release()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

func open(abs string, lock *storeLock) (*Store, error) {
	// SQLite would create it 0644 less the umask; -wal and -shm copy its mode.
	if err := createPrivate(abs); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		return nil, err
	}
	// A few connections, kept open. SQLite serialises writers anyway
	// (BEGIN IMMEDIATE), so more connections under a burst only wait for
	// its lock; and each one opened and closed again costs memory the
	// driver's C allocator keeps (a burst of 2000 requests opened 220).
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	// With the pool bounded, a transaction must not wait for a second
	// connection to prepare a statement on: those it runs are prepared here.
	s := &Store{db: db, stmts: stmtcache.New(db, true), lock: lock}
	ctx := context.Background()
	if err := enableWAL(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	s.stmts.PrepareAll(ctx, txStatements)
	return s, nil
}

// maxConns bounds the serving pool: a writer and one more connection, for
// a read beside it or the next writer, which waits for the write lock (a
// read may then wait for a connection: latency, never a deadlock, since no
// transaction needs a second connection).
const maxConns = 2

// txStatements are the statements the store's transactions run, which
// open prepares (see stmtcache.New: a transaction prepares none).
var txStatements = []string{
	insertRequest, selectRequest, updateRequest, deleteHolds, insertHold, selectHolder, upsertOutgoing,
}

// OpenReader opens an existing store at path read-only, to read it while
// another process serves it (the audit command while the bot runs), or to
// read a copy (see Backup) that may itself be read-only. It takes no lock
// and never writes: its connections open the file with SQLite's mode=ro and
// query_only, so every write through the returned Store fails; no migration
// runs, and it fails if the file is missing, has no schema (not a store, or
// its first Open has not finished) or has a schema of another version.
//
// A store in WAL mode (every store Open has served) is read through its
// -wal and -shm files, which SQLite creates when they are missing (they get
// the database file's mode). Where they cannot be created, or should not
// be, OpenReader opens the file with SQLite's immutable=1 instead, which
// reads the database file alone and creates nothing; it does so only when
// the file stands alone, with no -wal holding data, no -shm and no
// -journal (so everything committed is in the file, and no connection has
// it open in WAL mode), and either
//   - the file or its directory has no write permission bit at all (a copy
//     made read-only on purpose: chmod 0444, or a 0555 directory), or
//   - the ordinary open failed because SQLite could not open or create
//     those files (a directory the reader may not write, a read-only
//     mount).
//
// immutable=1 promises SQLite that nobody writes the file while it is open:
// a process that starts serving the store meanwhile could make such a
// reader see a half-written page (it would fail or read stale data; the
// store is not harmed). A store that a running bot serves always has its
// -wal and -shm, so reading it never takes that path.
func OpenReader(path string) (*Store, error) {
	abs, err := absPath(path)
	if err != nil {
		return nil, err
	}
	db, version, err := openReadOnly(abs)
	if err == nil && version < schemaVersion {
		db.Close()
		err = fmt.Errorf("its schema version %d is older than this program's (%d): start the bot once to migrate it", version, schemaVersion)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s read-only: %w", path, err)
	}
	return &Store{db: db, stmts: stmtcache.New(db, false)}, nil
}

// openReadOnly opens the database file abs as OpenReader does and returns
// it with its schema version, from 1 to schemaVersion (older ones are the
// caller's to refuse).
//
// Nothing here opens the database file other than through SQLite: closing
// any descriptor of a file drops every POSIX lock the process holds on it,
// SQLite's included (another Store in this process may be serving it).
func openReadOnly(abs string) (*sql.DB, int, error) {
	// mode=ro would fail with "unable to open database file": say why.
	fi, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, fmt.Errorf("no store there: %w", err)
		}
		return nil, 0, err
	}
	if fi.IsDir() {
		return nil, 0, errors.New("it is a directory, not a store file")
	}
	alone := standsAlone(abs)
	immutable := alone && readOnlyCopy(abs, fi)
	db, version, err := openRO(abs, immutable)
	if err != nil && !immutable && alone && cannotOpenSideFiles(err) {
		// Its error, if any, is about the file itself (its schema, say).
		return openRO(abs, true)
	}
	return db, version, err
}

// openRO opens abs with mode=ro and query_only (and immutable=1 if
// immutable) and reads its schema version.
func openRO(abs string, immutable bool) (*sql.DB, int, error) {
	source := dsn(abs, true)
	if immutable {
		source += "&immutable=1"
	}
	db, err := sql.Open("sqlite", source)
	if err != nil {
		return nil, 0, err
	}
	version, err := userVersion(context.Background(), db)
	if err == nil && version == 0 {
		err = errors.New("it has no schema: not a reprovision-bot store, or the bot is still creating it")
	}
	if err != nil {
		db.Close()
		return nil, 0, err
	}
	return db, version, nil
}

// standsAlone reports whether the database file abs has none of the files
// SQLite keeps beside a database in use: no -shm, no -journal, and no
// -wal, or an empty one. Then everything committed is in the file itself.
func standsAlone(abs string) bool {
	for _, suffix := range []string{"-shm", "-journal"} {
		if _, err := os.Lstat(abs + suffix); !errors.Is(err, fs.ErrNotExist) {
			return false
		}
	}
	fi, err := os.Lstat(abs + "-wal")
	return errors.Is(err, fs.ErrNotExist) || err == nil && fi.Mode().IsRegular() && fi.Size() == 0
}

// readOnlyCopy reports whether the file (whose FileInfo is fi) or its
// directory has no write permission bit at all: made read-only on purpose,
// which the bot never does to the store it serves.
func readOnlyCopy(abs string, fi fs.FileInfo) bool {
	if fi.Mode().Perm()&0o222 == 0 {
		return true
	}
	dir, err := os.Stat(filepath.Dir(abs))
	return err == nil && dir.Mode().Perm()&0o222 == 0
}

// cannotOpenSideFiles reports whether err is SQLite failing to open or
// create the -wal or -shm file of a WAL database that it may only read:
// SQLITE_CANTOPEN, or SQLITE_READONLY with any extended code (such as
// SQLITE_READONLY_DIRECTORY). Reading the schema version writes nothing,
// so those codes can only come from there.
func cannotOpenSideFiles(err error) bool {
	switch sqliteCode(err) & 0xff {
	case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY:
		return true
	}
	return false
}

// absPath refuses paths that are not a database file and makes path
// absolute (the store and its lock are then found whatever the working
// directory later is).
func absPath(path string) (string, error) {
	if path == "" || path == ":memory:" {
		// Each pooled connection would get its own empty in-memory database.
		return "", errors.New("sqlite store: a database file path is required")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", path, err)
	}
	return abs, nil
}

// dsn builds the modernc.org/sqlite connection string. The pragmas are applied
// by the driver to every new pooled connection, busy_timeout first:
//   - busy_timeout: wait for another connection or process holding the lock
//     instead of failing at once with SQLITE_BUSY;
//   - foreign_keys, synchronous(FULL): crash safety;
//   - cache_size: pageCacheKiB per connection instead of SQLite's 2 MB;
//   - _txlock=immediate: BeginTx issues BEGIN IMMEDIATE, taking the write lock
//     before the first read, so a read-modify-write never fails half way on a
//     lock upgrade and concurrent transitions are serialised.
//
// WAL mode is not set here but once, by enableWAL in Open: it is stored in
// the file, so every later connection finds it, and switching to it can
// fail with SQLITE_BUSY whatever busy_timeout says.
//
// A reader's connections are opened with mode=ro (SQLite refuses any
// write, and does not create a missing file) and query_only.
//
// The absolute path is escaped as a file: URI so that '?', '#' or '%' in it
// are taken literally.
func dsn(absPath string, readOnly bool) string {
	u := url.URL{Scheme: "file", Path: absPath}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	if readOnly {
		q.Set("mode", "ro")
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "synchronous(FULL)")
		q.Add("_pragma", fmt.Sprintf("cache_size(-%d)", pageCacheKiB))
		q.Set("_txlock", "immediate")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// enableWAL puts the file in WAL mode (a no-op when it is already) and
// checks that it took: journal_mode silently stays as it was when WAL is
// impossible (e.g. on some network file systems).
//
// Switching a new file out of its rollback journal upgrades a read lock to
// the write lock, and SQLite answers SQLITE_BUSY at once, without waiting
// busy_timeout, when that upgrade meets another connection's lock (waiting
// there could deadlock). Whoever holds the lock finishes soon, so retry, for
// as long as busy_timeout would have waited.
func enableWAL(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeout)
	pause := time.Millisecond
	for {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		if err == nil {
			if !strings.EqualFold(mode, "wal") {
				return fmt.Errorf("journal mode is %q, want wal", mode)
			}
			return nil
		}
		if sqliteCode(err)&0xff != sqlite3.SQLITE_BUSY || time.Now().Add(pause).After(deadline) {
			return fmt.Errorf("switch to WAL mode: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// migrate brings the schema up to date.
func (s *Store) migrate(ctx context.Context) error {
	// Fast path without the write lock, for an up-to-date database.
	version, err := userVersion(ctx, s.db)
	if err != nil || version == schemaVersion {
		return err
	}

	// Immediate transaction: it waits for the write lock (busy_timeout, set
	// on the connection before anything else) and, holding it, looks again,
	// so that whoever else may have written the file meanwhile (an older
	// version without the lock, a sqlite3 shell) cannot make the migrations
	// run twice.
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if version, err = userVersion(ctx, tx); err != nil || version == schemaVersion {
		return err
	}
	for v := version; v < schemaVersion; v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	// PRAGMA takes no bound parameters; schemaVersion is a constant.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return err
	}
	return tx.Commit()
}

// userVersion reads the schema version and refuses one newer than this code.
func userVersion(ctx context.Context, q queryer) (int, error) {
	var version int
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return 0, err
	}
	if version > schemaVersion {
		return 0, fmt.Errorf("database schema version %d is newer than this program supports (%d)", version, schemaVersion)
	}
	return version, nil
}

// Close closes the database and then, for a Store from Open, releases the
// lock, so that the next process only starts once SQLite is done with the
// file.
func (s *Store) Close() error {
	s.stmts.Close()
	err := s.db.Close()
	if s.lock != nil {
		if lerr := s.lock.release(); err == nil {
			err = lerr
		}
	}
	return err
}

// Create stores r as a new pending request. An empty State is set to
// pending, zero CreatedAt/UpdatedAt are set to now, times are normalised to
// UTC and CloudPCID to lower case; on success r is updated to match what Get
// returns afterwards (its slices and Device are then the store's copies).
//
// It returns an error wrapping approvals.ErrOpenRequestExists when a Cloud PC
// r would hold (Request.HeldCloudPCs: its own, or its batch members') is
// held by another request (checked by the database, so racing Creates
// cannot both pass), one wrapping ErrDuplicateReference when r.ID is taken,
// and a plain error when r is invalid or not pending; nothing is stored then.
// A request whose target is not resolved yet (empty CloudPCID) holds no
// Cloud PC.
func (s *Store) Create(ctx context.Context, r *approvals.Request) error {
	c := normalized(r)
	if c.State == "" {
		c.State = approvals.StatePending
	}
	if c.State != approvals.StatePending {
		return fmt.Errorf("create request %s: state is %s, want %s", c.ID, c.State, approvals.StatePending)
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("create request: %w", err)
	}
	now := time.Now().UTC()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = now
	}
	values, err := encodeRequest(c)
	if err != nil {
		return fmt.Errorf("create request %s: %w", c.ID, err)
	}

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create request %s: %w", c.ID, err)
	}
	defer tx.Rollback()
	_, err = s.q(tx).ExecContext(ctx, insertRequest, values...)
	switch code := sqliteCode(err); {
	case err == nil:
	case code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return fmt.Errorf("create request %s: %w", c.ID, approvals.ErrDuplicateReference)
	case code == sqlite3.SQLITE_CONSTRAINT_UNIQUE:
		// The only UNIQUE constraint of requests besides the primary key.
		return fmt.Errorf("create request %s for cloud PC %s: %w", c.ID, c.CloudPCID, approvals.ErrOpenRequestExists)
	default:
		return fmt.Errorf("create request %s: %w", c.ID, err)
	}
	if err := hold(ctx, s.q(tx), c); err != nil {
		return fmt.Errorf("create request %s: %w", c.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create request %s: commit: %w", c.ID, err)
	}
	*r = *c
	return nil
}

// sqliteCode returns the extended SQLite result code carried by err, or 0.
func sqliteCode(err error) int {
	var e *msqlite.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

// Get returns the request with reference id, or an error wrapping
// approvals.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*approvals.Request, error) {
	return getRequest(ctx, s.q(nil), id)
}

// queryer is what Get needs from either the database or a transaction.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getRequest(ctx context.Context, q queryer, id string) (*approvals.Request, error) {
	r, err := scanRequest(q.QueryRowContext(ctx, selectRequest, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("request %s: %w", id, approvals.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get request %s: %w", id, err)
	}
	return r, nil
}

// Transition moves request id to state to, if the state machine allows it
// from its current state, inside one BEGIN IMMEDIATE transaction: of several
// concurrent moves from the same state, in this or another process, exactly
// one succeeds and the others get a *approvals.TransitionError carrying the
// request as the winner left it.
//
// update, if not nil, is applied to a copy of the loaded request before it is
// saved. State and UpdatedAt are set by Transition afterwards, whatever update
// did to them. Changing ID, Target, RequesterID, RequestChannelID, Approvers
// or CreatedAt, a CloudPCID that is already set, or a batch's targets or
// policy (approvals.KeepsIdentity), is a programming error and fails the
// transition with a plain error. Setting CloudPCID while it is empty
// (resolving the target) is allowed. When the saved request would hold a
// Cloud PC (Request.HeldCloudPCs: its own, or a batch member's) that another
// request holds, the error wraps approvals.ErrOpenRequestExists. Nothing is
// saved on any error.
//
// update runs while the write lock is held: it must be quick and must not call
// the store (that would wait for the lock it is holding, until busy_timeout).
func (s *Store) Transition(ctx context.Context, id string, to approvals.State, update func(*approvals.Request)) (*approvals.Request, error) {
	return s.TransitionFrom(ctx, id, nil, to, update)
}

// TransitionFrom is Transition that also requires the request to be in one
// of from (nil: any state the state machine allows), checked under the same
// write lock.
func (s *Store) TransitionFrom(ctx context.Context, id string, from []approvals.State, to approvals.State, update func(*approvals.Request)) (*approvals.Request, error) {
	return s.Apply(ctx, id, approvals.Change{From: from, To: to, Update: update})
}

// Apply makes one change of request id (a move when c.To is set, else an
// Update) and enqueues the outbox entries c.Notify returns for the saved
// request, in one transaction: both are stored or neither.
func (s *Store) Apply(ctx context.Context, id string, c approvals.Change) (*approvals.Request, error) {
	return s.change(ctx, c.Op(id), id, func(current *approvals.Request) (*approvals.Request, error) {
		next := clone(current)
		if err := c.Edit(current, next); err != nil {
			return nil, err
		}
		return next, nil
	}, c.Notify)
}

// Update applies update to a copy of request id and saves it, in one BEGIN
// IMMEDIATE transaction like Transition, without moving its state: for
// prompt locations, device details, tracking and the like. UpdatedAt is set
// by Update. It refuses, saving nothing, with a plain error when update
// changed State or anything Transition's update may not change, and with an
// error wrapping approvals.ErrOpenRequestExists when the request would then
// hold a Cloud PC another request holds (a target resolved to it, a batch
// member added for it). A nil update only
// bumps UpdatedAt. The same locking caveats as for Transition apply.
func (s *Store) Update(ctx context.Context, id string, update func(*approvals.Request)) (*approvals.Request, error) {
	return s.Apply(ctx, id, approvals.Change{Update: update})
}

// change is the read-modify-write behind Transition and Update. edit gets
// the request as stored and returns what to store (or an error, returned
// as it is); change then stamps UpdatedAt, validates and saves, all under the
// write lock taken by BEGIN IMMEDIATE. op prefixes the errors change makes.
func (s *Store) change(ctx context.Context, op, id string, edit func(current *approvals.Request) (*approvals.Request, error), notify func(*approvals.Request) []approvals.Outgoing) (*approvals.Request, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer tx.Rollback()

	current, err := getRequest(ctx, s.q(tx), id)
	if err != nil {
		return nil, err
	}
	next, err := edit(current)
	if err != nil {
		var te *approvals.TransitionError
		if errors.As(err, &te) {
			return nil, err
		}
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	// A copy, so that normalising does not reach into slices or a Device
	// that update took from its caller.
	next = normalized(next)
	next.UpdatedAt = time.Now().UTC()
	if err := next.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	values, err := encodeRequest(next)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	// values[0] is the id, which is not rewritten but names the row.
	res, err := s.q(tx).ExecContext(ctx, updateRequest, append(values[1:], id)...)
	if sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_UNIQUE {
		return nil, fmt.Errorf("%s: cloud PC %s: %w", op, next.CloudPCID, approvals.ErrOpenRequestExists)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return nil, fmt.Errorf("%s: %d rows saved (%v), want 1", op, n, err)
	}
	if err := hold(ctx, s.q(tx), next); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if notify != nil {
		if err := enqueue(ctx, s.q(tx), next.UpdatedAt, notify(clone(next))...); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("%s: commit: %w", op, err)
	}
	return next, nil
}

// ListByState returns the requests in any of states, oldest (by CreatedAt)
// first. No states means no requests.
func (s *Store) ListByState(ctx context.Context, states ...approvals.State) ([]*approvals.Request, error) {
	if len(states) == 0 {
		return nil, nil
	}
	in, args := stateIn(states)
	return s.list(ctx, `WHERE `+in+` ORDER BY created_at, id`, args...)
}

// stateIn is the condition "state is one of states" and its arguments.
func stateIn(states []approvals.State) (string, []any) {
	args := make([]any, len(states))
	for i, st := range states {
		args[i] = string(st)
	}
	return `state IN (` + strings.TrimSuffix(strings.Repeat("?, ", len(states)), ", ") + `)`, args
}

// ListExpiringBefore returns the requests in any of states whose ExpiresAt
// is set and earlier than before, soonest first. No states means no
// requests.
func (s *Store) ListExpiringBefore(ctx context.Context, before time.Time, states ...approvals.State) ([]*approvals.Request, error) {
	if len(states) == 0 {
		return nil, nil
	}
	until, err := formatTime(before)
	if err != nil {
		return nil, fmt.Errorf("list expiring requests: %w", err)
	}
	in, args := stateIn(states)
	return s.list(ctx, `WHERE `+in+` AND expires_at <> '' AND expires_at < ?
		ORDER BY expires_at, id`, append(args, until)...)
}

// OpenFor returns the open request that holds the Cloud PC
// (approvals.Request.HeldCloudPCs): a single request for it, or a batch one
// of whose members holds it; or an error wrapping approvals.ErrNotFound. The
// id is matched without regard to case; an empty id (an unresolved target)
// has no open request.
func (s *Store) OpenFor(ctx context.Context, cloudPCID string) (*approvals.Request, error) {
	id := strings.ToLower(cloudPCID)
	if id == "" {
		return nil, fmt.Errorf("open request for cloud PC %q: %w", cloudPCID, approvals.ErrNotFound)
	}
	r, err := scanRequest(s.q(nil).QueryRowContext(ctx, `SELECT `+selectColumns+` FROM requests
		WHERE id = (SELECT request_id FROM cloud_pc_holds WHERE cloud_pc_id = ?)`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("open request for cloud PC %s: %w", id, approvals.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open request for cloud PC %s: %w", id, err)
	}
	return r, nil
}

// ListTracking returns the requests whose reprovision is being followed
// (approvals.Tracking.Active), soonest NextCheck first; a zero NextCheck
// (check at once) comes before any other.
func (s *Store) ListTracking(ctx context.Context) ([]*approvals.Request, error) {
	return s.list(ctx, `WHERE tracking_until <> '' AND tracking_result = ''
		ORDER BY tracking_next_check, id`)
}

// ListByRequester returns at most limit requests made by requesterID, newest
// (by CreatedAt) first. A limit below 1 means no requests.
func (s *Store) ListByRequester(ctx context.Context, requesterID string, limit int) ([]*approvals.Request, error) {
	if limit < 1 {
		return nil, nil
	}
	return s.list(ctx, `WHERE requester_id = ? ORDER BY created_at DESC, id DESC LIMIT ?`, requesterID, limit)
}

// list returns the requests selected by the WHERE/ORDER BY clause tail.
func (s *Store) list(ctx context.Context, tail string, args ...any) ([]*approvals.Request, error) {
	rows, err := s.q(nil).QueryContext(ctx, `SELECT `+selectColumns+` FROM requests `+tail, args...)
	if err != nil {
		return nil, fmt.Errorf("list requests: %w", err)
	}
	defer rows.Close()
	var out []*approvals.Request
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("list requests: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list requests: %w", err)
	}
	return out, nil
}

// Record appends e to the audit trail. A zero e.Time is set to now.
func (s *Store) Record(ctx context.Context, e approvals.Event) error {
	if e.Kind == "" {
		return errors.New("record audit event: kind is missing")
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	at, err := formatTime(e.Time)
	if err != nil {
		return fmt.Errorf("record audit event: %w", err)
	}
	details := []byte("{}")
	if len(e.Details) > 0 {
		if details, err = json.Marshal(e.Details); err != nil {
			return fmt.Errorf("record audit event: %w", err)
		}
	}
	_, err = s.q(nil).ExecContext(ctx,
		`INSERT INTO audit_events (time, request_id, kind, actor, details) VALUES (?, ?, ?, ?, ?)`,
		at, e.RequestID, string(e.Kind), e.Actor, string(details))
	if err != nil {
		return fmt.Errorf("record audit event %s for %s: %w", e.Kind, e.RequestID, err)
	}
	return nil
}

// Events returns the audit records whose Time is at or after since (all of
// them when since is zero), oldest first; records with the same Time come in
// the order they were recorded. Times are in UTC; empty Details are nil.
func (s *Store) Events(ctx context.Context, since time.Time) ([]approvals.Event, error) {
	query := `SELECT time, request_id, kind, actor, details FROM audit_events`
	var args []any
	if !since.IsZero() {
		from, err := formatTime(since)
		if err != nil {
			return nil, fmt.Errorf("list audit events: %w", err)
		}
		query += ` WHERE time >= ?`
		args = append(args, from)
	}
	query += ` ORDER BY time, id`

	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	defer rows.Close()
	var out []approvals.Event
	for rows.Next() {
		var (
			e             approvals.Event
			at, kind, det string
		)
		if err := rows.Scan(&at, &e.RequestID, &kind, &e.Actor, &det); err != nil {
			return nil, fmt.Errorf("list audit events: %w", err)
		}
		e.Kind = approvals.EventKind(kind)
		if e.Time, err = parseTime(at); err != nil {
			return nil, fmt.Errorf("list audit events: %w", err)
		}
		if err := json.Unmarshal([]byte(det), &e.Details); err != nil {
			return nil, fmt.Errorf("list audit events: details: %w", err)
		}
		if len(e.Details) == 0 {
			e.Details = nil
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	return out, nil
}

// timeLayout is RFC 3339 in UTC with always nine fractional digits: the text
// is readable in the sqlite3 shell, keeps every nanosecond, and sorts
// lexicographically in time order, which ORDER BY and the since filter rely
// on.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// formatTime renders t for storage. Years outside 0000-9999 would break the
// fixed width, hence the sort order, and are refused.
func formatTime(t time.Time) (string, error) {
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return "", fmt.Errorf("time %v is out of range", t)
	}
	return t.Format(timeLayout), nil
}

// parseTime reads what formatTime wrote, as a UTC time.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}
