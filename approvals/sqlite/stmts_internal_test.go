package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/approvals/internal/stmtcache"
)

// Statements are prepared once and reused; a text SQLite refuses is not
// cached and gives SQLite's error; the cache stops growing at its bound.
func TestStatementsPreparedOnce(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	// Open prepares the transactions' statements.
	if n := s.stmts.Len(); n != len(txStatements) {
		t.Errorf("%d statements cached after Open, want the %d transactions run", n, len(txStatements))
	}
	for range 3 {
		if _, err := s.ListByState(ctx, "pending"); err != nil {
			t.Fatal(err)
		}
	}
	n := s.stmts.Len()
	if n != len(txStatements)+1 {
		t.Errorf("%d statements cached after three identical lists, want one more than after Open", n)
	}
	if _, err := s.q(nil).ExecContext(ctx, "UPDATE nowhere SET x = 1"); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("a bad statement: %v, want SQLite's error naming the table", err)
	}
	for i := range stmtcache.Max + 5 {
		if _, err := s.q(nil).ExecContext(ctx, "SELECT "+strings.Repeat("1,", i)+"1"); err != nil {
			t.Fatal(err)
		}
	}
	n = s.stmts.Len()
	if n != stmtcache.Max {
		t.Errorf("%d statements cached, want the bound %d", n, stmtcache.Max)
	}
}
