package pqconn_test

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/internal/pqconn"
	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t *testing.T, url string) *sql.DB {
	t.Helper()
	s, err := pqconn.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	db, _, err := pqconn.Open(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// A server that accepts the connection and never answers: connecting
// ends with the context (lib/pq alone would wait for ever).
func TestConnectEndsWithTheContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, unanswered, until the test ends
		}
	}()
	db := open(t, "postgres://u:p@"+ln.Addr().String()+"/db?sslmode=disable")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	begin := time.Now()
	err = db.PingContext(ctx)
	if took := time.Since(begin); took > 3*time.Second {
		t.Errorf("the ping took %v with a 300 ms context", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ping: %v, want context.DeadlineExceeded", err)
	}
}

// A statement whose context ends while the server runs it returns at
// once, the connection is discarded, and the pool goes on with another.
func TestStatementEndsWithTheContext(t *testing.T) {
	db := open(t, pgtest.URL(t))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, err := db.ExecContext(ctx, `SELECT pg_sleep(10)`)
	if took := time.Since(begin); took > 3*time.Second {
		t.Errorf("the statement took %v with a 300 ms context", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("statement: %v, want context.DeadlineExceeded", err)
	}
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT 1`).Scan(&n); err != nil || n != 1 {
		t.Errorf("the next statement: %d, %v", n, err)
	}
}

// With the network cut (nothing answers, nothing is reset), a statement
// and a transaction still end with their contexts.
func TestFrozenNetwork(t *testing.T) {
	url, freeze := pgtest.Proxy(t, pgtest.URL(t))
	db := open(t, url)
	tx, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	freeze()
	for name, run := range map[string]func(context.Context) error{
		"query": func(ctx context.Context) error {
			var n int
			return db.QueryRowContext(ctx, `SELECT 1`).Scan(&n)
		},
		"statement in a transaction": func(ctx context.Context) error {
			_, err := tx.ExecContext(ctx, `SELECT 1`)
			return err
		},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		begin := time.Now()
		err := run(ctx)
		cancel()
		if took := time.Since(begin); took > 3*time.Second {
			t.Errorf("%s: took %v with a 300 ms context", name, took)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v, want context.DeadlineExceeded", name, err)
		}
	}
}
