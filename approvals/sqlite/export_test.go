package sqlite

import "database/sql"

// DB exposes the store's connection pool to the tests, to check the
// connection settings and to hold a write transaction open.
func DB(s *Store) *sql.DB { return s.db }
