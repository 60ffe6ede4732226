// Package stmtcache is the stores' statement cache: each statement text of
// a store's frequent queries is prepared once and kept, and database/sql
// then holds one prepared copy per connection. For SQLite, parsing is most
// of what a small query costs (40% of the workflow tests' CPU was in
// sqlite3_prepare_v2 before); for PostgreSQL through lib/pq, a statement
// with arguments that is not prepared takes two round trips (Parse and
// Describe, then Bind and Execute), a prepared one a single one.
package stmtcache

import (
	"context"
	"database/sql"
	"sync"
)

// Max bounds a Cache; the stores' texts are a few dozen (queries built
// from optional filters included), so the bound is only a guard.
const Max = 128

// Cache holds the prepared statements of one *sql.DB.
type Cache struct {
	db *sql.DB
	// onlyPreparedInTx: a transaction uses only statements prepared
	// already, none prepared on demand. Preparing takes a connection of the
	// pool, and a pool with a bound, full of transactions each waiting for
	// one more connection, would wait (for ever on PostgreSQL; on SQLite
	// until busy_timeout fails one of them). Both stores bound their pools.
	onlyPreparedInTx bool

	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// New returns an empty cache for db. With onlyPreparedInTx, a transaction
// runs a statement prepared already (see Prepared) or its text, never
// preparing one.
func New(db *sql.DB, onlyPreparedInTx bool) *Cache {
	return &Cache{db: db, onlyPreparedInTx: onlyPreparedInTx}
}

// Prepared returns the statement for query, preparing it the first time;
// nil if it cannot be prepared (the caller runs the text as it is, which
// reports the same error) or the cache is full.
func (c *Cache) Prepared(ctx context.Context, query string) *sql.Stmt {
	c.mu.Lock()
	st, ok := c.m[query]
	full := len(c.m) >= Max
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

// PrepareAll prepares queries (a store's transactions' statements, at Open:
// see New); one that cannot be prepared runs as text.
func (c *Cache) PrepareAll(ctx context.Context, queries []string) {
	for _, query := range queries {
		c.Prepared(ctx, query)
	}
}

// Len is how many statements are cached.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Close closes every statement (before the database is closed).
func (c *Cache) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m = nil
}

// Queryer runs queries through c's prepared statements, in the transaction
// tx if not nil, else on the database. It is a queryer and an execer.
func (c *Cache) Queryer(tx *sql.Tx) Queryer { return Queryer{c: c, tx: tx} }

// Queryer: see Cache.Queryer.
type Queryer struct {
	c  *Cache
	tx *sql.Tx
}

// stmt is query's prepared statement, bound to the transaction if any (the
// connection's prepared copy is reused when there is one); nil: run the text.
func (q Queryer) stmt(ctx context.Context, query string) *sql.Stmt {
	var st *sql.Stmt
	if q.tx != nil && q.c.onlyPreparedInTx {
		q.c.mu.Lock()
		st = q.c.m[query]
		q.c.mu.Unlock()
	} else {
		st = q.c.Prepared(ctx, query)
	}
	if st == nil || q.tx == nil {
		return st
	}
	return q.tx.StmtContext(ctx, st) // closed with the transaction
}

func (q Queryer) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := q.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.QueryRowContext(ctx, query, args...)
	}
	return q.c.db.QueryRowContext(ctx, query, args...)
}

func (q Queryer) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := q.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.QueryContext(ctx, query, args...)
	}
	return q.c.db.QueryContext(ctx, query, args...)
}

func (q Queryer) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := q.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	if q.tx != nil {
		return q.tx.ExecContext(ctx, query, args...)
	}
	return q.c.db.ExecContext(ctx, query, args...)
}
