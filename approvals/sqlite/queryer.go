package sqlite

import (
	"database/sql"

	"github.com/reprovision-bot/reprovision-bot/approvals/internal/stmtcache"
)

// q returns the store's statement runner, inside tx if not nil.
func (s *Store) q(tx *sql.Tx) stmtcache.Queryer { return s.stmts.Queryer(tx) }
