package postgres_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/postgres"
	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/pgtest"
	"github.com/reprovision-bot/reprovision-bot/approvals/storetest"
)

func TestMain(m *testing.M) {
	if url := os.Getenv("PGTEST_RACE_URL"); url != "" {
		raceChild(url) // exits
	}
	pgtest.Main(m)
}

// harness describes the PostgreSQL store to the conformance suite: any
// number of stores serve one database (the races run across two as well),
// times keep microseconds, and text columns hold no NUL. Its ~300 tests
// reuse databases (pgtest.Reused, emptied by emptyStore): a new database
// for each was most of this package's time, and of the server's CPU.
var harness = storetest.Harness{
	NewDatabase: func(t testing.TB) string { return pgtest.Reused(t, emptyStore) },
	Open: func(t testing.TB, url string) (approvals.Store, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := postgres.Open(ctx, url)
		if err != nil {
			return nil, err
		}
		return s, nil
	},
	Replicas:  true,
	Exec:      execSQL,
	Precision: postgres.Precision,
	Text:      postgres.Text,
	Seed: func(t testing.TB, s approvals.Store, requests []*approvals.Request, events []approvals.Event) {
		t.Helper()
		if err := postgres.Seed(s.(*postgres.Store), requests, events); err != nil {
			t.Fatalf("seed: %v", err)
		}
	},
}

// emptyStore deletes every row a test left in the store's tables, so that
// the next test finds the schema made (its Open only checks it) and no
// rows, as in a new database. The audit trail refuses TRUNCATE (its
// append-only trigger) but not from its owner with the trigger disabled.
// A database a test made no schema in fails here and is dropped instead.
const emptyStore = `
DO $$
DECLARE tables text;
BEGIN
	SELECT string_agg(format('%I', tablename), ', ') INTO STRICT tables
		FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_version';
	ALTER TABLE audit_events DISABLE TRIGGER USER;
	EXECUTE 'TRUNCATE ' || tables || ' RESTART IDENTITY';
	ALTER TABLE audit_events ENABLE TRIGGER USER;
END $$`

// execSQL runs stmt on the database at url on a connection of its own.
func execSQL(t testing.TB, url, stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := pgtest.Open(url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, stmt)
	return err
}

// TestConformance runs the store conformance suite (approvals/storetest).
func TestConformance(t *testing.T) { storetest.Run(t, harness) }

// BenchmarkTransitions: go test -run '^$' -bench Transitions ./approvals/postgres/
func BenchmarkTransitions(b *testing.B) { storetest.Bench(b, harness) }
