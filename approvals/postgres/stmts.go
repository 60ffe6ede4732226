package postgres

import (
	"context"
	"database/sql"
	"sync"
)

// statements prepares each statement text of the store's frequent queries
// once and keeps it: database/sql then holds one prepared copy per
// connection (a named prepared statement of that session). pgx did this by
// itself (its statement cache); lib/pq runs a statement with arguments that
// is not prepared as two round trips (Parse and Describe, then Bind and
// Execute), a prepared one as one, without parsing it again.
type statements struct {
	db *sql.DB

	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// maxStatements bounds the cache; the store's texts are a few dozen
// (queries built from optional filters included), so the bound is only a
// guard.
const maxStatements = 128

// prepared returns the statement for query, preparing it the first time;
// nil if it cannot be prepared (the caller runs the text as it is, which
// reports the same error) or the cache is full.
func (c *statements) prepared(ctx context.Context, query string) *sql.Stmt {
	c.mu.Lock()
	st, ok := c.m[query]
	full := len(c.m) >= maxStatements
	c.mu.Unlock()
	if ok || full {
		return st
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if other, ok := c.m[query]; ok { // prepared meanwhile by another caller
		st.Close()
		return other
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[query] = st
	return st
}

// cached returns query's statement if it is prepared already, else nil.
func (c *statements) cached(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[query]
}

// close closes every statement (before the database is closed).
func (c *statements) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// stmtQueryer runs queries through the store's prepared statements, in the
// transaction tx if not nil, else on the database. It is a querier and an
// execer.
type stmtQueryer struct {
	c  *statements
	tx *sql.Tx
}

// q returns the store's statement runner, inside tx if not nil.
func (s *Store) q(tx *sql.Tx) stmtQueryer { return stmtQueryer{c: &s.stmts, tx: tx} }

// stmt is query's prepared statement, bound to the transaction if any (the
// connection's prepared copy is reused when there is one, else it is
// prepared on the transaction's connection); nil: run the text.
//
// A transaction only uses statements prepared already (Open prepares
// those of the transactions, txStatements): preparing a new one takes a
// connection of the pool, and a pool full of transactions each waiting
// for one more connection would wait for ever.
func (q stmtQueryer) stmt(ctx context.Context, query string) *sql.Stmt {
	if q.tx == nil {
		return q.c.prepared(ctx, query)
	}
	st := q.c.cached(query)
	if st == nil {
		return nil
	}
	return q.tx.StmtContext(ctx, st) // closed with the transaction
}

func (q stmtQueryer) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := q.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.QueryRowContext(ctx, query, args...)
	}
	return q.c.db.QueryRowContext(ctx, query, args...)
}

func (q stmtQueryer) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := q.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.QueryContext(ctx, query, args...)
	}
	return q.c.db.QueryContext(ctx, query, args...)
}

func (q stmtQueryer) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := q.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.ExecContext(ctx, query, args...)
	}
	return q.c.db.ExecContext(ctx, query, args...)
}
