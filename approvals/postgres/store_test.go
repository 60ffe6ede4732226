package postgres_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/postgres"
	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/pgtest"
)

func open(t testing.TB, url string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newRequest() *approvals.Request {
	pc := uuid.NewString()
	return &approvals.Request{ID: approvals.NewReference(), Target: pc, CloudPCID: pc,
		RequesterID: "U_REQUESTER", RequestChannelID: "C_REQUESTS", Approvers: []string{"U_APPROVER"}}
}

func mustCreate(t testing.TB, s approvals.Store, r *approvals.Request) *approvals.Request {
	t.Helper()
	if err := s.Create(context.Background(), r); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return r
}

// queryInt reads one integer with a connection of its own.
func queryInt(t testing.TB, url, query string) int {
	t.Helper()
	db, err := pgtest.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(context.Background(), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// withScheme returns u with its scheme replaced.
func withScheme(u, scheme string) string {
	_, rest, _ := strings.Cut(u, "://")
	return scheme + "://" + rest
}

// TestOpenTakesPostgresURLs: postgres:// and postgresql:// (any case) name
// the store; anything else, a key=value string included, is refused before
// any connection is tried.
func TestOpenTakesPostgresURLs(t *testing.T) {
	u := pgtest.URL(t)
	for _, scheme := range []string{"postgres", "postgresql", "PostgreSQL"} {
		s := open(t, withScheme(u, scheme))
		mustCreate(t, s, newRequest())
		s.Close()
	}
	for _, bad := range []string{"reprovision.db", "/var/lib/reprovision.db", "host=127.0.0.1 dbname=x", "mysql://u@h/db", ""} {
		if postgres.IsURL(bad) {
			t.Errorf("IsURL(%q) = true", bad)
		}
		if s, err := postgres.Open(context.Background(), bad); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
}

// TestOpenErrorsHideThePassword: a refused connection says where it tried,
// never with what password.
func TestOpenErrorsHideThePassword(t *testing.T) {
	parsed, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	const secret = "s3cret-Pa55word"
	parsed.User = url.UserPassword("nobody_here", secret)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, u := range []string{parsed.String(), parsed.String() + "&sslmode=bogus"} {
		s, err := postgres.Open(ctx, u)
		if err == nil {
			s.Close()
			t.Fatal("Open as an unknown role succeeded")
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the password: %v", err)
		}
		t.Logf("%v", err)
	}
}

// TestMigrationRunsOnce: replicas starting together on an empty database
// all open it; the schema is made once (two making it would collide on
// its tables) and is at the current version.
func TestMigrationRunsOnce(t *testing.T) {
	u := pgtest.URL(t)
	const n = 6
	stores := make([]*postgres.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = postgres.Open(context.Background(), u)
		})
	}
	close(start)
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
	if _, err := stores[n-1].Transition(context.Background(), r.ID, approvals.StateApproved, nil); err != nil {
		t.Fatal(err)
	}
	if v := queryInt(t, u, `SELECT version FROM schema_version`); v != 3 {
		t.Errorf("schema version %d, want 3", v)
	}
	if rows := queryInt(t, u, `SELECT count(*) FROM schema_version`); rows != 1 {
		t.Errorf("schema_version has %d rows, want 1", rows)
	}
	// Opening a current database changes nothing.
	s := open(t, u)
	if got, err := s.Get(context.Background(), r.ID); err != nil || got.State != approvals.StateApproved {
		t.Errorf("after another Open: %v, %v", got, err)
	}
}

// TestMigrationWaitsForTheLock: while another session holds the migration
// lock (a replica migrating), Open of an empty database waits for it, then
// migrates.
func TestMigrationWaitsForTheLock(t *testing.T) {
	u := pgtest.URL(t)
	ctx := context.Background()
	db, err := pgtest.Open(u)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, postgres.MigrationLockKey); err != nil {
		t.Fatal(err)
	}
	const hold = 500 * time.Millisecond
	released := make(chan struct{})
	time.AfterFunc(hold, func() {
		tx.Rollback()
		close(released)
	})
	begin := time.Now()
	s := open(t, u)
	if took := time.Since(begin); took < hold/2 {
		t.Errorf("Open took %v while the lock was held for %v", took, hold)
	}
	<-released
	mustCreate(t, s, newRequest())
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	u := pgtest.URL(t)
	open(t, u).Close()
	if err := execSQL(t, u, `UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	s, err := postgres.Open(context.Background(), u)
	if err == nil {
		s.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Errorf("error %q does not say the schema is newer", err)
	}
}

// TestAuditTrailRefusesTruncate: besides UPDATE and DELETE (the suite's
// AuditTrailIsAppendOnly), TRUNCATE, and statements that match no row.
func TestAuditTrailRefusesTruncate(t *testing.T) {
	u := pgtest.URL(t)
	s := open(t, u)
	if err := s.Record(context.Background(), approvals.Event{Kind: approvals.EventRequested, RequestID: "R-AAAAAA"}); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`TRUNCATE audit_events`,
		// With every table that references requests (else the foreign
		// key refuses first).
		`TRUNCATE audit_events, requests, cloud_pc_holds`,
		`UPDATE audit_events SET actor = 'x' WHERE false`,
		`DELETE FROM audit_events WHERE false`,
		`INSERT INTO audit_events ("time", request_id, kind, actor, details) VALUES (now(), 'R-AAAAAA', 'x', '', '{}')
			ON CONFLICT (id) DO UPDATE SET actor = 'x'`,
	} {
		if err := execSQL(t, u, stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want a refusal mentioning append-only", stmt, err)
		}
	}
	if n := queryInt(t, u, `SELECT count(*) FROM audit_events`); n != 1 {
		t.Errorf("%d audit records, want 1", n)
	}
}

// TestSchemaChecks: the columns refuse what the store would never write,
// should another client write to the tables.
func TestSchemaChecks(t *testing.T) {
	u := pgtest.URL(t)
	s := open(t, u)
	r := mustCreate(t, s, newRequest())
	for _, set := range []string{
		`approvers = '"U1"'`, `approvers = '[]'`, `approvers = 'null'`, `approvers = '{"a":1}'`, `approvers = '['`,
		`prompts = '"x"'`, `device = '[]'`, `candidates = '{}'`, `tracking_checks = -1`, `created_at = NULL`,
		`batch = '[]'`, `batch = 'null'`, `batch = '"x"'`, `batch = '{'`,
	} {
		if err := execSQL(t, u, `UPDATE requests SET `+set+` WHERE id = '`+r.ID+`'`); err == nil {
			t.Errorf("SET %s accepted, want a refusal", set)
		}
	}
	if err := execSQL(t, u, `INSERT INTO cloud_pc_holds (cloud_pc_id, request_id) VALUES ('`+uuid.NewString()+`', 'R-NOSUCH')`); err == nil {
		t.Error("a hold by a request that does not exist was accepted")
	}
	if err := execSQL(t, u, `INSERT INTO outbox (request_id, kind, coalesce_key, payload, generation, attempts, last_error, created_at, next_at)
		VALUES ('`+r.ID+`', 'prompts', '', '[]', 0, 0, '', now(), now())`); err == nil {
		t.Error("an outbox payload that is not an object was accepted")
	}
	if got, err := s.Get(context.Background(), r.ID); err != nil || got.State != approvals.StatePending {
		t.Errorf("request after the refusals: %v, %v", got, err)
	}
}

// TestGrantsSuffice: the bot's role with exactly Grants' privileges runs
// every store operation, cannot alter or empty the audit trail (no
// privilege, on top of the trigger) nor the schema; and on a database whose
// schema is not there yet, its Open says the owner must migrate.
func TestGrantsSuffice(t *testing.T) {
	owner := pgtest.URL(t)
	role, bot := pgtest.NewRole(t, owner)
	ctx := context.Background()

	_, err := postgres.Open(ctx, bot)
	if err == nil || !strings.Contains(err.Error(), "owner") {
		t.Fatalf("Open of an empty database as the bot's role: %v, want an error saying the owner must migrate", err)
	}

	open(t, owner).Close() // the owner migrates
	grants := postgres.Grants(role)
	t.Logf("grants:\n%s", grants)
	if err := execSQL(t, owner, grants); err != nil {
		t.Fatalf("granting: %v", err)
	}
	s := open(t, bot)
	r := mustCreate(t, s, newRequest())
	steps := []func() error{
		func() error { _, err := s.Get(ctx, r.ID); return err },
		func() error { _, err := s.Transition(ctx, r.ID, approvals.StateApproved, nil); return err },
		func() error {
			_, err := s.TransitionFrom(ctx, r.ID, []approvals.State{approvals.StateApproved}, approvals.StateConfirming, nil)
			return err
		},
		func() error {
			_, err := s.Apply(ctx, r.ID, approvals.Change{To: approvals.StateExecuting,
				Notify: func(r *approvals.Request) []approvals.Outgoing {
					return []approvals.Outgoing{{RequestID: r.ID, Kind: approvals.OutgoingPrompts}}
				}})
			return err
		},
		func() error {
			_, err := s.Update(ctx, r.ID, func(r *approvals.Request) { r.GraphRequestID = "g" })
			return err
		},
		func() error {
			return s.Enqueue(ctx, approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingPrompts},
				approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: "U1", Notice: approvals.NoticeExpired})
		},
		func() error {
			due, err := s.Due(ctx, time.Now(), "", 10)
			if err != nil || len(due) != 2 {
				return fmt.Errorf("due: %v, %v", due, err)
			}
			if err := s.Postpone(ctx, due[1], time.Now().Add(time.Minute), "later"); err != nil {
				return err
			}
			return s.Delivered(ctx, due[0])
		},
		func() error { _, err := s.Undelivered(ctx); return err },
		func() error {
			return s.Record(ctx, approvals.Event{Kind: approvals.EventGraphCall, RequestID: r.ID, Details: map[string]string{"status": "204"}})
		},
		func() error { _, err := s.Events(ctx, time.Time{}); return err },
		func() error { _, err := s.ListByState(ctx, approvals.StateExecuting); return err },
		func() error { _, err := s.ListTracking(ctx); return err },
		func() error { _, err := s.ListByRequester(ctx, "U_REQUESTER", 20); return err },
		func() error { _, err := s.ListUpdatedSince(ctx, time.Time{}); return err },
		func() error { _, err := s.OpenFor(ctx, r.CloudPCID); return err },
		func() error { return holdAndLetGo(ctx, s) },
		func() error { return s.Ping(ctx) },
		func() error { _, err := s.CountOpen(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Errorf("step %d as the bot's role: %v", i, err)
		}
	}
	for _, stmt := range []string{
		`UPDATE audit_events SET actor = 'x'`,
		`DELETE FROM audit_events`,
		`TRUNCATE audit_events`,
		`ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only`,
		`DROP TRIGGER audit_events_append_only ON audit_events`,
		`DELETE FROM requests`,
		`DROP TABLE outbox`,
		`CREATE TABLE intruder (x int)`,
		`UPDATE schema_version SET version = 0`,
	} {
		err := execSQL(t, bot, stmt)
		if err == nil || !strings.Contains(err.Error(), "permission denied") && !strings.Contains(err.Error(), "must be owner") {
			t.Errorf("%s as the bot's role: %v, want permission denied", stmt, err)
		}
	}
}

// TestSessionSettings: the store's sessions end a transaction left idle
// (a frozen replica's row locks are freed), unless the URL says otherwise.
func TestSessionSettings(t *testing.T) {
	u := pgtest.URL(t)
	show := func(s *postgres.Store, name string) string {
		var v string
		if err := postgres.Pool(s).QueryRowContext(context.Background(), "SHOW "+name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	s := open(t, u)
	if got := show(s, "idle_in_transaction_session_timeout"); got != "10s" {
		t.Errorf("idle_in_transaction_session_timeout = %s, want 10s", got)
	}
	if got := show(s, "application_name"); got != "reprovision-bot" {
		t.Errorf("application_name = %s", got)
	}
	s.Close()
	s = open(t, u+"&idle_in_transaction_session_timeout=1min&application_name=mine")
	if got := show(s, "idle_in_transaction_session_timeout"); got != "1min" {
		t.Errorf("idle_in_transaction_session_timeout = %s, want the URL's 1min", got)
	}
	if got := show(s, "application_name"); got != "mine" {
		t.Errorf("application_name = %s, want the URL's", got)
	}
}

// raceChild is the child process of TestTransitionsAcrossProcesses (the
// test binary run again with PGTEST_RACE_URL set: TestMain comes here): it
// opens the store at url, reads the references to approve from stdin (one
// line), says "ready", waits for a second line, tries to approve each as
// "child", prints those it won, and exits.
func raceChild(url string) {
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(nil, 1<<20)
	in.Scan()
	refs := strings.Fields(in.Text())
	fmt.Println("ready")
	in.Scan() // go
	var won []string
	for _, ref := range refs {
		_, err := s.Transition(context.Background(), ref, approvals.StateApproved, func(r *approvals.Request) { r.DecidedBy = "child" })
		var te *approvals.TransitionError
		switch {
		case err == nil:
			won = append(won, ref)
		case !errors.As(err, &te):
			fmt.Println("error:", err)
			os.Exit(1)
		}
	}
	fmt.Println("won", strings.Join(won, " "))
	s.Close()
	os.Exit(0)
}

// TestTransitionsAcrossProcesses: two processes on one database approve
// the same requests at the same moment: each request is approved exactly
// once, by one of them, and the other is told it already was.
func TestTransitionsAcrossProcesses(t *testing.T) {
	u := pgtest.URL(t)
	s := open(t, u)
	const n = 200
	var refs []string
	for range n {
		refs = append(refs, mustCreate(t, s, newRequest()).ID)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PGTEST_RACE_URL="+u)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	lines := make(chan string, 2)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if l := sc.Text(); l == "ready" || strings.HasPrefix(l, "won") || strings.HasPrefix(l, "error:") {
				lines <- l
			}
		}
		io.Copy(io.Discard, stdout)
		close(lines)
	}()
	fmt.Fprintln(stdin, strings.Join(refs, " "))
	select {
	case l := <-lines:
		if l != "ready" {
			t.Fatalf("child: %s", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the child did not get ready")
	}
	fmt.Fprintln(stdin, "go")
	parentWon := map[string]bool{}
	for _, ref := range refs { // the same order as the child: they meet on every row
		_, err := s.Transition(context.Background(), ref, approvals.StateApproved, func(r *approvals.Request) { r.DecidedBy = "parent" })
		var te *approvals.TransitionError
		switch {
		case err == nil:
			parentWon[ref] = true
		case errors.As(err, &te):
			if te.Current.DecidedBy != "child" {
				t.Errorf("%s: refused, but decided by %q", ref, te.Current.DecidedBy)
			}
		default:
			t.Fatal(err)
		}
	}
	var childLine string
	select {
	case childLine = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatal("the child did not finish")
	}
	childWon, ok := strings.CutPrefix(childLine, "won")
	if !ok {
		t.Fatalf("child: %s", childLine)
	}
	both := 0
	for _, ref := range strings.Fields(childWon) {
		if parentWon[ref] {
			t.Errorf("%s approved by both processes", ref)
		}
		both++
	}
	if both+len(parentWon) != n {
		t.Errorf("parent won %d, child %d: want %d in all", len(parentWon), both, n)
	}
	t.Logf("parent won %d, child %d", len(parentWon), both)
	for _, ref := range refs {
		r, err := s.Get(context.Background(), ref)
		if err != nil || r.State != approvals.StateApproved || (r.DecidedBy == "parent") != parentWon[ref] {
			t.Errorf("%s: %v, %v", ref, r, err)
		}
	}
}

// holdAndLetGo makes a batch holding two Cloud PCs, lets one go, then
// ends it (cloud_pc_holds: INSERT, SELECT, DELETE).
func holdAndLetGo(ctx context.Context, s approvals.Store) error {
	b := newBatch(uuid.NewString(), uuid.NewString())
	if err := s.Create(ctx, b); err != nil {
		return err
	}
	if _, err := s.Update(ctx, b.ID, func(r *approvals.Request) { r.Batch.Members[0].Result = approvals.MemberSkipped }); err != nil {
		return err
	}
	_, err := s.Transition(ctx, b.ID, approvals.StateCanceled, nil)
	return err
}

// newBatch returns a batch of the Cloud PCs, each waiting (holding it).
func newBatch(pcs ...string) *approvals.Request {
	r := newRequest()
	r.CloudPCID, r.Target = "", fmt.Sprintf("%d Cloud PCs", len(pcs))
	r.Batch = &approvals.Batch{Targets: pcs}
	for _, pc := range pcs {
		r.Batch.Members = append(r.Batch.Members, approvals.Member{Target: pc, CloudPCID: pc, Result: approvals.MemberWaiting})
	}
	return r
}

// TestMigrationFromVersion2: a version 2 database (before batches and
// cloud_pc_holds), its bot's role granted what version 2's Grants gave, is
// migrated by the owner's Open: its requests read as single ones, those
// open at the upgrade hold their Cloud PC in cloud_pc_holds (OpenFor finds
// them; they block another request, batch members included), the others
// hold nothing; and the bot's role may keep cloud_pc_holds without a new
// GRANT.
func TestMigrationFromVersion2(t *testing.T) {
	owner := pgtest.URL(t)
	role, bot := pgtest.NewRole(t, owner)
	ctx := context.Background()
	s := open(t, owner)
	held := mustCreate(t, s, newRequest())
	if _, err := s.Transition(ctx, held.ID, approvals.StateApproved, nil); err != nil {
		t.Fatal(err)
	}
	denied := mustCreate(t, s, newRequest())
	if _, err := s.Transition(ctx, denied.ID, approvals.StateDenied, nil); err != nil {
		t.Fatal(err)
	}
	unresolved := newRequest()
	unresolved.CloudPCID = ""
	mustCreate(t, s, unresolved)
	s.Close()
	r := pq.QuoteIdentifier(role)
	for _, stmt := range []string{
		`DROP TABLE cloud_pc_holds`,
		`ALTER TABLE requests DROP COLUMN batch`,
		`UPDATE schema_version SET version = 2`,
		// Version 2's Grants.
		`GRANT USAGE ON SCHEMA public TO ` + r,
		`GRANT SELECT ON schema_version TO ` + r,
		`GRANT SELECT, INSERT, UPDATE ON requests TO ` + r,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO ` + r,
		`GRANT SELECT, INSERT ON audit_events TO ` + r,
	} {
		if err := execSQL(t, owner, stmt); err != nil {
			t.Fatalf("making a version 2 database: %s: %v", stmt, err)
		}
	}
	if _, err := postgres.Open(ctx, bot); err == nil || !strings.Contains(err.Error(), "owner") {
		t.Fatalf("Open of the version 2 database as the bot's role: %v, want an error saying the owner must migrate", err)
	}

	open(t, owner).Close() // the owner migrates
	if v := queryInt(t, owner, `SELECT version FROM schema_version`); v != 3 {
		t.Errorf("schema version %d after the migration, want 3", v)
	}
	if n := queryInt(t, owner, `SELECT count(*) FROM cloud_pc_holds`); n != 1 {
		t.Errorf("cloud_pc_holds has %d rows after the migration, want 1", n)
	}
	s = open(t, bot)
	for _, r := range []*approvals.Request{held, denied, unresolved} {
		got, err := s.Get(ctx, r.ID)
		if err != nil || got.Batch != nil {
			t.Errorf("%s after the migration: %+v, %v; want a single request", r.ID, got, err)
		}
	}
	if got, err := s.OpenFor(ctx, held.CloudPCID); err != nil || got.ID != held.ID {
		t.Errorf("OpenFor(the open request's Cloud PC) = %v, %v; want %s", got, err, held.ID)
	}
	if _, err := s.OpenFor(ctx, denied.CloudPCID); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("OpenFor(the denied request's Cloud PC): %v, want ErrNotFound", err)
	}
	dup := newRequest()
	dup.CloudPCID = held.CloudPCID
	if err := s.Create(ctx, dup); !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("Create for the open request's Cloud PC: %v, want ErrOpenRequestExists", err)
	}
	if err := s.Create(ctx, newBatch(denied.CloudPCID, held.CloudPCID)); !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("Create of a batch with the open request's Cloud PC: %v, want ErrOpenRequestExists", err)
	}
	b := mustCreate(t, s, newBatch(denied.CloudPCID))
	if got, err := s.OpenFor(ctx, denied.CloudPCID); err != nil || got.ID != b.ID {
		t.Errorf("OpenFor(the batch member's Cloud PC) = %v, %v; want %s", got, err, b.ID)
	}
	if err := holdAndLetGo(ctx, s); err != nil {
		t.Errorf("the bot's role keeping cloud_pc_holds: %v", err)
	}
}
