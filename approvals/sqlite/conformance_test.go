package sqlite_test

import (
	"database/sql"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite/sqlitetest"
	"github.com/reprovision-bot/reprovision-bot/approvals/storetest"
)

// harness describes the SQLite store to the conformance suite. One process
// serves a file (no replicas: TestOpenRefusedWhileAnotherProcessServes
// shows a second is refused), and times keep nanoseconds.
var harness = storetest.Harness{
	NewDatabase: func(t testing.TB) string { return sqlitetest.Path(t) },
	Open: func(t testing.TB, path string) (approvals.Store, error) {
		s, err := sqlite.Open(path)
		if err != nil {
			return nil, err
		}
		return s, nil
	},
	Replicas: false,
	Exec: func(t testing.TB, path, stmt string) error {
		db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
		if err != nil {
			return err
		}
		defer db.Close()
		_, err = db.Exec(stmt)
		return err
	},
	Precision: time.Nanosecond,
	Seed: func(t testing.TB, s approvals.Store, requests []*approvals.Request, events []approvals.Event) {
		t.Helper()
		if err := sqlite.Seed(s.(*sqlite.Store), requests, events); err != nil {
			t.Fatalf("seed: %v", err)
		}
	},
}

// TestConformance runs the store conformance suite (approvals/storetest).
func TestConformance(t *testing.T) { storetest.Run(t, harness) }

// BenchmarkTransitions: go test -run '^$' -bench Transitions ./approvals/sqlite/
func BenchmarkTransitions(b *testing.B) { storetest.Bench(b, harness) }
