// Package postgres keeps approvals requests, the audit trail and the outbox
// in a PostgreSQL database, through database/sql and github.com/lib/pq, so
// that several replicas of the bot can share them.
//
// It gives the guarantees of the SQLite store (approvals/sqlite), across
// processes and hosts:
//
//   - Compare-and-swap changes. Transition, TransitionFrom, Update and
//     Apply read the request with SELECT … FOR UPDATE in a READ COMMITTED
//     transaction, check the move against the state machine, and write it
//     back in the same transaction. Of several racing changes of one
//     request, on one replica or several, the first to lock the row goes
//     first; the others wait for its commit, then read what it left (a
//     locking read sees the latest committed version) and are refused with
//     an *approvals.TransitionError when the move is no longer allowed.
//   - One holder per Cloud PC, single requests and batch members alike:
//     the table cloud_pc_holds, one row per Cloud PC (its primary key),
//     which every save rewrites for its request from
//     Request.HeldCloudPCs() in the same transaction (and, for single
//     requests, also a partial unique index on cloud_pc_id where
//     holds_cloud_pc, the column the store writes from Request.Open()). A
//     unique violation is returned wrapping approvals.ErrOpenRequestExists,
//     and nothing of that write is saved.
//   - An append-only audit trail: a trigger refuses UPDATE, DELETE and
//     TRUNCATE on audit_events for every role but a superuser, and the
//     bot's role needs only SELECT and INSERT there (Grants).
//   - The outbox (approvals.Outbox) with the same coalescing: a partial
//     unique index on (request_id, coalesce_key) and INSERT … ON CONFLICT
//     moving the generation on; Delivered and Postpone act only on the
//     generation they read.
//   - Migrations run once: Open migrates in one transaction that first
//     takes pg_advisory_xact_lock(MigrationLockKey), and looks at the
//     version again under it, so replicas starting together on a new
//     database create the schema once.
//
// Times are timestamptz, which keeps microseconds: the store truncates
// every time it is given to Precision (see Time), so that what Create,
// Transition and Update return is exactly what Get reads back. Text
// columns cannot hold NUL or invalid UTF-8; the store replaces those with
// U+FFFD (see Text). There is no backup command: back the database up with
// pg_dump, like any PostgreSQL database.
package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/reprovision-bot/reprovision-bot/approvals/internal/stmtcache"
	"strings"
	"sync"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/internal/pqconn"
)

// Store is an approvals.Store backed by a PostgreSQL database. It is safe
// for concurrent use by goroutines, and any number of Stores, in this
// process or others, may serve one database at a time.
type Store struct {
	db        *sql.DB
	stmts     *stmtcache.Cache // frequent statements, prepared once
	closeOnce sync.Once
}

var _ approvals.Store = (*Store)(nil)

// IsURL reports whether s names a PostgreSQL database: a postgres:// or
// postgresql:// URL.
func IsURL(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	return ok && (strings.EqualFold(scheme, "postgres") || strings.EqualFold(scheme, "postgresql"))
}

// Session settings Open asks for unless the URL sets them (any URL query
// parameter lib/pq does not know itself is sent to the server as a
// setting).
var defaultSettings = map[string]string{
	"application_name": "reprovision-bot",
	// A replica that stops in the middle of a change (frozen, or its host
	// gone without closing the connection) would hold the request's row
	// lock, and so every other replica's change of that request, until the
	// server noticed: by default after two hours of TCP silence. The store
	// holds a transaction open only for a few statements, so the server
	// may end a session idle in one after this long, freeing its locks.
	"idle_in_transaction_session_timeout": "10s",
}

// Open connects to the database at url (postgres://… or postgresql://…,
// as libpq reads them: user, password, hosts, ports, database, and
// parameters such as sslmode; and pgxpool's pool_max_conns,
// pool_max_conn_lifetime and pool_max_conn_idle_time, for database/sql's
// pool: see package pqconn for what else changed from pgx) and brings its
// schema up to date, creating it in an empty database. It fails when the
// database cannot be reached within ctx, when its schema is newer than
// this program's, or when the schema needs a migration and the role may
// not make it (see Grants). Errors never repeat the URL's password.
func Open(ctx context.Context, url string) (*Store, error) {
	if !IsURL(url) {
		return nil, errors.New("postgres store: the database must be a postgres:// or postgresql:// URL")
	}
	settings, err := pqconn.Parse(url)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	for k, v := range defaultSettings {
		settings.SetDefault(k, v)
	}
	db, cfg, err := pqconn.Open(settings)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	s := &Store{db: db, stmts: stmtcache.New(db, true)}
	where := pqconn.Where(cfg)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres store: connect to %s: %w", where, err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres store: %s: %w", where, err)
	}
	s.stmts.PrepareAll(ctx, txStatements)
	return s, nil
}

// Close closes the connections; later calls do nothing.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.stmts.Close()
		err = s.db.Close()
	})
	return err
}

// querier is what reading needs from the database, a transaction or the
// statement cache.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// migrate brings the schema up to date.
func (s *Store) migrate(ctx context.Context) error {
	// Fast path without the lock, for an up-to-date database (and for a
	// role that may not change the schema: it needs none).
	version, err := readVersion(ctx, s.db)
	if err != nil || version == schemaVersion {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Whoever else migrates waits here until that one commits; then, each
	// statement reading what was committed before it began, the version is
	// read again and nothing runs twice.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, MigrationLockKey); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	if version, err = readVersion(ctx, tx); err != nil || version == schemaVersion {
		return err
	}
	for v := version; v < schemaVersion; v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			if pq.As(err, pqerror.InsufficientPrivilege) != nil {
				return fmt.Errorf("migrate schema to version %d: %w (the schema's owner must run this version once: see Grants)", v+1, err)
			}
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = $1`, schemaVersion); err != nil {
		return err
	}
	return tx.Commit()
}

// readVersion reads the schema version (0: no schema yet) and refuses one
// newer than this code.
func readVersion(ctx context.Context, q querier) (int, error) {
	// A query of the catalog, not to_regclass: that looks in the
	// session's catalog cache, which taking an advisory lock does not
	// refresh, so under the migration lock it could miss the table another
	// session has just committed (and the migration would run twice).
	var exists bool
	if err := q.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relname = 'schema_version' AND n.nspname = current_schema())`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("read the schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var version int
	if err := q.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&version); err != nil {
		return 0, fmt.Errorf("read the schema version: %w", err)
	}
	if version > schemaVersion {
		return 0, fmt.Errorf("database schema version %d is newer than this program supports (%d)", version, schemaVersion)
	}
	return version, nil
}

// constraint returns the name of the unique constraint or index err
// violates, or "".
func constraint(err error) string {
	if pe := pq.As(err, pqerror.UniqueViolation); pe != nil {
		return pe.Constraint
	}
	return ""
}

// txStatements are the statements the store's transactions run, which
// Open prepares (see stmtcache.New: a transaction prepares none).
var txStatements = []string{
	insertRequest, updateRequest, getForUpdate, selectHeld, insertHold, deleteHolds, lockRequests, upsertOutgoing,
	insertEvent,
}

const (
	primaryKey   = "requests_pkey"
	oneOpenPerPC = "requests_one_open_per_cloud_pc"
	holdsKey     = "cloud_pc_holds_pkey"
)

// Create stores r as a new pending request. An empty State is set to
// pending, zero CreatedAt/UpdatedAt are set to now; times are normalised
// to UTC and Precision, text as Text says, and CloudPCID to lower case; on
// success r is updated to match what Get returns afterwards (its slices
// and Device are then the store's copies).
//
// It returns an error wrapping approvals.ErrOpenRequestExists when a
// Cloud PC r would hold (Request.HeldCloudPCs: its own, or its batch
// members') is held by another request (checked by the database, so
// racing Creates, on any replica, cannot both pass), one wrapping
// approvals.ErrDuplicateReference when r.ID is taken, and a plain error
// when r is invalid or not pending; nothing is stored then. A request
// whose target is not resolved yet (empty CloudPCID) holds no Cloud PC.
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
	now := Time(time.Now())
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
	switch constraint(err) {
	case "":
		if err != nil {
			return fmt.Errorf("create request %s: %w", c.ID, err)
		}
	case primaryKey:
		return fmt.Errorf("create request %s: %w", c.ID, approvals.ErrDuplicateReference)
	case oneOpenPerPC:
		return fmt.Errorf("create request %s for cloud PC %s: %w", c.ID, c.CloudPCID, approvals.ErrOpenRequestExists)
	default:
		return fmt.Errorf("create request %s: %w", c.ID, err)
	}
	if err := hold(ctx, s.q(tx), c.ID, nil, c.HeldCloudPCs()); err != nil {
		return fmt.Errorf("create request %s: %w", c.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create request %s: commit: %w", c.ID, err)
	}
	*r = *c
	return nil
}

// Get returns the request with reference id, or an error wrapping
// approvals.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*approvals.Request, error) {
	return getRequest(ctx, s.q(nil), id, false)
}

// The SELECTs of one request, and of one to change (its row locked).
var (
	getByID      = `SELECT ` + selectColumns + ` FROM requests WHERE id = $1`
	getForUpdate = getByID + ` FOR UPDATE`
)

// getRequest reads request id, locking its row (FOR UPDATE) if lock.
func getRequest(ctx context.Context, q querier, id string, lock bool) (*approvals.Request, error) {
	query := getByID
	if lock {
		query = getForUpdate
	}
	r, err := scanRequest(q.QueryRowContext(ctx, query, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("request %s: %w", id, approvals.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get request %s: %w", id, err)
	}
	return r, nil
}

// Transition moves request id to state to, if the state machine allows it
// from its current state, as one compare-and-swap (see the package
// documentation): of several concurrent moves from the same state, in this
// or another process, exactly one succeeds and the others get a
// *approvals.TransitionError carrying the request as the winner left it.
//
// update, if not nil, is applied to a copy of the loaded request before it
// is saved. State and UpdatedAt are set by Transition afterwards, whatever
// update did to them. Changing ID, Target, RequesterID, RequestChannelID,
// Approvers or CreatedAt, a CloudPCID that is already set, or a batch's
// targets or policy (approvals.KeepsIdentity), is a programming error and
// fails the transition with a plain error. Setting CloudPCID while it is
// empty (resolving the target) is allowed. When the saved request would
// hold a Cloud PC (Request.HeldCloudPCs: its own, or a batch member's)
// that another request holds, the error wraps
// approvals.ErrOpenRequestExists. Nothing is saved on any error.
//
// update runs while the request's row is locked: it must be quick and must
// not call the store for the same request (that would wait for the lock
// it holds, until ctx ends).
func (s *Store) Transition(ctx context.Context, id string, to approvals.State, update func(*approvals.Request)) (*approvals.Request, error) {
	return s.Apply(ctx, id, approvals.Change{To: to, Update: update})
}

// TransitionFrom is Transition that also requires the request to be in one
// of from (nil: any state the state machine allows), checked under the
// same row lock.
func (s *Store) TransitionFrom(ctx context.Context, id string, from []approvals.State, to approvals.State, update func(*approvals.Request)) (*approvals.Request, error) {
	return s.Apply(ctx, id, approvals.Change{From: from, To: to, Update: update})
}

// Update applies update to a copy of request id and saves it, as one
// compare-and-swap like Transition, without moving its state: for prompt
// locations, device details, tracking and the like. UpdatedAt is set by
// Update. It refuses, saving nothing, with a plain error when update
// changed State or anything Transition's update may not change, and with
// an error wrapping approvals.ErrOpenRequestExists when the request would
// then hold a Cloud PC another request holds (a target resolved to it, a
// batch member added for it). A nil update only bumps UpdatedAt.
func (s *Store) Update(ctx context.Context, id string, update func(*approvals.Request)) (*approvals.Request, error) {
	return s.Apply(ctx, id, approvals.Change{Update: update})
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

// change is the read-modify-write behind Transition and Update: in one
// transaction it locks and reads the row (SELECT … FOR UPDATE), lets edit
// say what to store (or an error, returned as it is), stamps UpdatedAt,
// validates, saves, and enqueues what notify returns for the saved
// request. op prefixes the errors change makes.
func (s *Store) change(ctx context.Context, op, id string, edit func(current *approvals.Request) (*approvals.Request, error), notify func(*approvals.Request) []approvals.Outgoing) (*approvals.Request, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer tx.Rollback()

	current, err := getRequest(ctx, s.q(tx), id, true)
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
	next.UpdatedAt = Time(time.Now())
	if err := next.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	values, err := encodeRequest(next)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	// values[0] is the id ($1), which is not rewritten but names the row.
	res, err := s.q(tx).ExecContext(ctx, updateRequest, values...)
	if constraint(err) == oneOpenPerPC {
		return nil, fmt.Errorf("%s: cloud PC %s: %w", op, next.CloudPCID, approvals.ErrOpenRequestExists)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if n != 1 {
		return nil, fmt.Errorf("%s: %d rows saved, want 1", op, n)
	}
	held, err := heldBy(ctx, s.q(tx), id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if err := hold(ctx, s.q(tx), id, held, next.HeldCloudPCs()); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if notify != nil {
		if err := enqueue(ctx, s.q(tx), next.UpdatedAt, false, notify(clone(next))...); err != nil {
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
	return s.list(ctx, `WHERE state = ANY($1) ORDER BY created_at, id`, stateNames(states))
}

// stateNames is states as the array argument of "state = ANY($n)".
func stateNames(states []approvals.State) any {
	names := make([]string, len(states))
	for i, st := range states {
		names[i] = string(st)
	}
	return pq.Array(names)
}

// ListExpiringBefore returns the requests in any of states whose ExpiresAt
// is set and earlier than before, soonest first. No states means no
// requests.
func (s *Store) ListExpiringBefore(ctx context.Context, before time.Time, states ...approvals.State) ([]*approvals.Request, error) {
	if len(states) == 0 {
		return nil, nil
	}
	// Stored times are whole microseconds: rounding before up keeps one
	// stored at its truncation (earlier than before) in.
	until := Time(before)
	if until.Before(before) {
		until = until.Add(Precision)
	}
	return s.list(ctx, `WHERE state = ANY($1) AND expires_at IS NOT NULL AND expires_at < $2
		ORDER BY expires_at, id`, stateNames(states), until)
}

// OpenFor returns the open request that holds the Cloud PC
// (approvals.Request.HeldCloudPCs): a single request for it, or a batch
// one of whose members holds it; or an error wrapping
// approvals.ErrNotFound. The id is matched without regard to case; an
// empty id (an unresolved target) has no open request.
func (s *Store) OpenFor(ctx context.Context, cloudPCID string) (*approvals.Request, error) {
	id := strings.ToLower(Text(cloudPCID))
	if id == "" {
		return nil, fmt.Errorf("open request for cloud PC %q: %w", cloudPCID, approvals.ErrNotFound)
	}
	r, err := scanRequest(s.q(nil).QueryRowContext(ctx, `SELECT `+selectColumns+` FROM requests
		WHERE id = (SELECT request_id FROM cloud_pc_holds WHERE cloud_pc_id = $1)`, id))
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
	return s.list(ctx, `WHERE tracking_until IS NOT NULL AND tracking_result = ''
		ORDER BY tracking_next_check NULLS FIRST, id`)
}

// ListByRequester returns at most limit requests made by requesterID,
// newest (by CreatedAt) first. A limit below 1 means no requests.
func (s *Store) ListByRequester(ctx context.Context, requesterID string, limit int) ([]*approvals.Request, error) {
	if limit < 1 {
		return nil, nil
	}
	return s.list(ctx, `WHERE requester_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, Text(requesterID), limit)
}

// ListUpdatedSince returns the requests changed at or after since (to
// Precision), oldest change first.
func (s *Store) ListUpdatedSince(ctx context.Context, since time.Time) ([]*approvals.Request, error) {
	return s.list(ctx, `WHERE updated_at >= $1 ORDER BY updated_at, id`, Time(since))
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

// Record appends e to the audit trail. A zero e.Time is set to now; the
// time is kept to Precision, and text as Text says (Details, stored as
// JSON, keep any string).
func (s *Store) Record(ctx context.Context, e approvals.Event) error {
	if e.Kind == "" {
		return errors.New("record audit event: kind is missing")
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if err := checkTime(e.Time); err != nil {
		return fmt.Errorf("record audit event: %w", err)
	}
	details := []byte("{}")
	if len(e.Details) > 0 {
		var err error
		if details, err = json.Marshal(e.Details); err != nil {
			return fmt.Errorf("record audit event: %w", err)
		}
	}
	// In a transaction of its own: outside one, database/sql sends a
	// statement again on another connection when lib/pq reports the
	// connection bad (driver.ErrBadConn), which lib/pq also does when the
	// server closes it while the answer is awaited (io.EOF), after the
	// insert may have committed: a record written twice. A transaction is
	// never resent; a failed one is rolled back by the server.
	tx, err := s.db.BeginTx(ctx, nil)
	if err == nil {
		defer tx.Rollback()
		_, err = s.q(tx).ExecContext(ctx, insertEvent,
			Time(e.Time), Text(e.RequestID), Text(string(e.Kind)), Text(e.Actor), string(details))
		if err == nil {
			err = tx.Commit()
		}
	}
	if err != nil {
		return fmt.Errorf("record audit event %s for %s: %w", e.Kind, e.RequestID, err)
	}
	return nil
}

const insertEvent = `INSERT INTO audit_events ("time", request_id, kind, actor, details) VALUES ($1, $2, $3, $4, $5)`

// Events returns the audit records whose Time is at or after since (to
// Precision; all of them when since is zero), oldest first; records with
// the same Time come in the order they were recorded. Times are in UTC;
// empty Details are nil.
func (s *Store) Events(ctx context.Context, since time.Time) ([]approvals.Event, error) {
	query := `SELECT "time", request_id, kind, actor, details::text FROM audit_events`
	var args []any
	if !since.IsZero() {
		query += ` WHERE "time" >= $1`
		args = append(args, Time(since))
	}
	query += ` ORDER BY "time", id`
	rows, err := s.q(nil).QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	defer rows.Close()
	var out []approvals.Event
	for rows.Next() {
		var (
			e         approvals.Event
			kind, det string
		)
		if err := rows.Scan(&e.Time, &e.RequestID, &kind, &e.Actor, &det); err != nil {
			return nil, fmt.Errorf("list audit events: %w", err)
		}
		e.Time = e.Time.UTC()
		e.Kind = approvals.EventKind(kind)
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
