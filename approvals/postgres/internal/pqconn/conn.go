package pqconn

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/lib/pq"
)

// Connector is lib/pq's connector, made to honour contexts as pgx did.
// lib/pq, when a context ends during a statement, asks the server to
// cancel it (a CancelRequest on a new connection) and waits for the
// server's answer; while connecting it watches the context only to dial.
// With a server that does not answer (a network cut, a frozen host) the
// call would wait for TCP to give up, many minutes. Here, besides, the end
// of the context of a connection attempt or of a call (a statement, the
// reading of its rows, a transaction) sets the connection's deadline in
// the past: the call returns at once with an error wrapping the context's,
// and the connection is discarded. This is what the leadership check
// relies on to give leadership up within its timeout.
type Connector struct {
	pq *pq.Connector
}

var _ driver.Connector = (*Connector)(nil)

// NewConnector makes the connector for cfg.
func NewConnector(cfg pq.Config) (*Connector, error) {
	c, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, err
	}
	c.Dialer(dialer{})
	return &Connector{pq: c}, nil
}

// Open opens a database/sql pool of s's connections, with s's pool
// settings, and returns it with the configuration it uses.
func Open(s *Settings) (*sql.DB, pq.Config, error) {
	cfg, err := s.Config()
	if err != nil {
		return nil, cfg, err
	}
	c, err := NewConnector(cfg)
	if err != nil {
		return nil, cfg, err
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(s.MaxConns)
	db.SetMaxIdleConns(s.MaxConns) // pgxpool keeps its idle connections until they are too old or idle too long
	db.SetConnMaxLifetime(s.MaxConnLifetime)
	db.SetConnMaxIdleTime(s.MaxConnIdleTime)
	return db, cfg, nil
}

// Driver is lib/pq's.
func (c *Connector) Driver() driver.Driver { return c.pq.Driver() }

// Connect opens a connection, within ctx.
func (c *Connector) Connect(ctx context.Context) (driver.Conn, error) {
	a := &attempt{}
	stop := context.AfterFunc(ctx, a.abort)
	dc, err := c.pq.Connect(context.WithValue(ctx, attemptKey{}, a))
	if !stop() { // ctx ended meanwhile
		if err == nil { // (on an error dc is a nil *pq.conn in an interface)
			dc.Close()
		}
		return nil, ctxError(ctx, err)
	}
	if err != nil {
		return nil, err
	}
	nc := a.last()
	if nc == nil {
		dc.Close()
		return nil, errors.New("pq: connected without a network connection of its dialer")
	}
	return &conn{Conn: dc, nc: nc}, nil
}

// attemptKey marks the context of a connection attempt, for the dialer.
type attemptKey struct{}

// attempt is the network connections one Connect dialed (lib/pq dials
// again for sslmode=prefer, and one per host of a list).
type attempt struct {
	mu      sync.Mutex
	conns   []net.Conn
	aborted bool
}

// aLongTimeAgo is a deadline in the past: it fails reads and writes at
// once.
var aLongTimeAgo = time.Unix(1, 0)

func (a *attempt) add(nc net.Conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conns = append(a.conns, nc)
	if a.aborted {
		nc.SetDeadline(aLongTimeAgo)
	}
}

func (a *attempt) abort() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.aborted = true
	for _, nc := range a.conns {
		nc.SetDeadline(aLongTimeAgo)
	}
}

func (a *attempt) last() net.Conn {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.conns) == 0 {
		return nil
	}
	return a.conns[len(a.conns)-1]
}

// dialer is lib/pq's default dialer that tells a Connect's attempt what it
// dialed. (lib/pq dials its CancelRequests with it too, outside any
// attempt.)
type dialer struct{}

func (d dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

func (dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	if a, ok := ctx.Value(attemptKey{}).(*attempt); ok {
		a.add(nc)
	}
	return nc, nil
}

// ctxError is err (nil: the bare context error) for a call that ctx ended:
// it wraps ctx.Err() too, so errors.Is(err, context.Canceled) holds, as it
// did with pgx.
func ctxError(ctx context.Context, err error) error {
	cerr := context.Cause(ctx)
	if err == nil || errors.Is(err, cerr) {
		return cerr
	}
	return &canceledError{ctx: cerr, err: err}
}

type canceledError struct{ ctx, err error }

func (e *canceledError) Error() string   { return fmt.Sprintf("%v (%v)", e.ctx, e.err) }
func (e *canceledError) Unwrap() []error { return []error{e.ctx, e.err} }

// conn is a lib/pq connection whose calls end with their context (see
// Connector). database/sql uses one connection from one goroutine at a
// time.
type conn struct {
	driver.Conn          // lib/pq's
	nc          net.Conn // its network connection
	mu          sync.Mutex
	dead        bool // a context ended a call: the deadline is in the past
}

// watch sets the connection's deadline in the past when ctx ends, until
// the returned stop is called; stop reports whether ctx ended first.
func (c *conn) watch(ctx context.Context) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return false }
	}
	s := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.dead = true
		c.mu.Unlock()
		c.nc.SetDeadline(aLongTimeAgo)
	})
	return func() bool { return !s() }
}

// done ends a call watched with stop: its error, wrapping ctx's if ctx
// ended it.
func done(ctx context.Context, stop func() bool, err error) error {
	if stop() && err != nil {
		return ctxError(ctx, err)
	}
	return err
}

func (c *conn) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	stop := c.watch(ctx)
	r, err := c.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
	return r, done(ctx, stop, err)
}

func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	stop := c.watch(ctx)
	r, err := c.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
	if err != nil {
		return nil, done(ctx, stop, err)
	}
	return &rows{Rows: r, ctx: ctx, stop: stop}, nil
}

func (c *conn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	stop := c.watch(ctx)
	st, err := c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
	if err = done(ctx, stop, err); err != nil {
		return nil, err
	}
	return &stmt{Stmt: st, c: c}, nil
}

func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	stop := c.watch(ctx)
	t, err := c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, done(ctx, stop, err)
	}
	return &tx{Tx: t, ctx: ctx, stop: stop}, nil
}

func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *conn) Ping(ctx context.Context) error {
	stop := c.watch(ctx)
	return done(ctx, stop, c.Conn.(driver.Pinger).Ping(ctx))
}

func (c *conn) ResetSession(ctx context.Context) error {
	if c.isDead() {
		return driver.ErrBadConn
	}
	return c.Conn.(driver.SessionResetter).ResetSession(ctx)
}

func (c *conn) IsValid() bool {
	return !c.isDead() && c.Conn.(driver.Validator).IsValid()
}

func (c *conn) CheckNamedValue(nv *driver.NamedValue) error {
	return c.Conn.(driver.NamedValueChecker).CheckNamedValue(nv)
}

// rows are a query's rows, read within its context.
type rows struct {
	driver.Rows
	ctx    context.Context
	stop   func() bool
	closed bool
}

func (r *rows) Next(dest []driver.Value) error {
	err := r.Rows.Next(dest)
	if err != nil && err != io.EOF && r.ctx.Err() != nil {
		return ctxError(r.ctx, err)
	}
	return err
}

func (r *rows) Close() error {
	err := r.Rows.Close()
	if !r.closed {
		r.closed = true
		return done(r.ctx, r.stop, err)
	}
	return err
}

// tx is a transaction, ended with its context.
type tx struct {
	driver.Tx
	ctx  context.Context
	stop func() bool
}

func (t *tx) Commit() error   { return done(t.ctx, t.stop, t.Tx.Commit()) }
func (t *tx) Rollback() error { return done(t.ctx, t.stop, t.Tx.Rollback()) }

// stmt is a prepared statement whose calls end with their context. (A
// COPY … FROM STDIN statement has only Exec: it runs without a context.)
type stmt struct {
	driver.Stmt
	c *conn
}

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	se, ok := s.Stmt.(driver.StmtExecContext)
	if !ok {
		return s.Stmt.Exec(values(args)) //nolint:staticcheck // lib/pq's COPY statement has only Exec
	}
	stop := s.c.watch(ctx)
	r, err := se.ExecContext(ctx, args)
	return r, done(ctx, stop, err)
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	sq, ok := s.Stmt.(driver.StmtQueryContext)
	if !ok {
		return s.Stmt.Query(values(args)) //nolint:staticcheck // as ExecContext
	}
	stop := s.c.watch(ctx)
	r, err := sq.QueryContext(ctx, args)
	if err != nil {
		return nil, done(ctx, stop, err)
	}
	return &rows{Rows: r, ctx: ctx, stop: stop}, nil
}

func values(args []driver.NamedValue) []driver.Value {
	v := make([]driver.Value, len(args))
	for i, a := range args {
		v[i] = a.Value
	}
	return v
}
