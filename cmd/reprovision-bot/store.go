package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync/atomic"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/postgres"
	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/leader"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
)

// servedStore is what the bot serves from: either store, with the health
// queries the operations listener and the metrics use.
type servedStore interface {
	approvals.Store
	Ping(ctx context.Context) error
	CountOpen(ctx context.Context) (int, error)
}

var (
	_ servedStore = (*sqlite.Store)(nil)
	_ servedStore = (*postgres.Store)(nil)
)

// isPostgres says whether REPROVISION_DB names a PostgreSQL database (a
// postgres:// or postgresql:// URL) rather than a SQLite file.
func isPostgres(db string) bool { return postgres.IsURL(db) }

// shownDB is REPROVISION_DB as it may be logged: a URL without its password.
func shownDB(db string) string {
	if !isPostgres(db) {
		return db
	}
	u, err := url.Parse(db)
	if err != nil {
		return "(a PostgreSQL URL that does not parse)"
	}
	return u.Redacted()
}

// openStore opens the store REPROVISION_DB names, bringing its schema up to
// date.
func openStore(ctx context.Context, db string) (servedStore, error) {
	if isPostgres(db) {
		s, err := postgres.Open(ctx, db)
		if err != nil {
			return nil, fmt.Errorf("opening REPROVISION_DB (PostgreSQL %s): %w", shownDB(db), err)
		}
		return s, nil
	}
	s, err := sqlite.Open(db)
	if err != nil {
		return nil, fmt.Errorf("opening REPROVISION_DB %q: %w", db, err)
	}
	return s, nil
}

// lead waits until this process leads the PostgreSQL database at db (the
// others stand by: /readyz says "standby", no Socket Mode connection, no
// timers), then serves with serve until ctx ends (nil) or leadership is lost
// (an error: the process exits, and restarts as a standby, rather than
// serving on without the lock). A new leader settles what the last one left
// exactly as a restart does (Workflow.Start): calls in flight become
// "outcome unknown", never resent.
func lead(ctx context.Context, db string, log *slog.Logger, m *metrics, serving *atomic.Bool, serve func(context.Context) error) error {
	lease, err := leader.Acquire(ctx, db, log, nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while standing by
		}
		return err
	}
	defer lease.Release()
	serveCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lease.Lost():
			cancel()
		case <-serveCtx.Done():
		}
	}()
	serving.Store(true)
	m.Leading(true)
	err = serve(serveCtx)
	serving.Store(false)
	m.Leading(false)
	select {
	case <-lease.Lost():
		return errors.New("leadership of the database lost: stopped serving; exiting so that another replica takes over")
	default:
	}
	return err
}
