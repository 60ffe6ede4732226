package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// DB exposes the store's connection pool to the tests, to check the
// connection settings and to hold a write transaction open.
func DB(s *Store) *sql.DB { return s.db }

// Seed stores requests as they are (in whatever state, with their own
// times), with the Cloud PCs they hold, and audit records, in one
// transaction, through the store's own encoding: the conformance suite's large histories (storetest.Harness.Seed).
func Seed(s *Store, requests []*approvals.Request, events []approvals.Event) error {
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	insert, err := tx.PrepareContext(ctx, insertRequest)
	if err != nil {
		return err
	}
	defer insert.Close()
	for _, r := range requests {
		r = normalized(r)
		values, err := encodeRequest(r)
		if err != nil {
			return err
		}
		if _, err := insert.ExecContext(ctx, values...); err != nil {
			return err
		}
		if err := hold(ctx, s.q(tx), r); err != nil {
			return err
		}
	}
	record, err := tx.PrepareContext(ctx, `INSERT INTO audit_events (time, request_id, kind, actor, details) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer record.Close()
	for _, e := range events {
		at, err := formatTime(e.Time)
		if err != nil {
			return err
		}
		details := []byte("{}")
		if len(e.Details) > 0 {
			if details, err = json.Marshal(e.Details); err != nil {
				return err
			}
		}
		if _, err := record.ExecContext(ctx, at, e.RequestID, string(e.Kind), e.Actor, string(details)); err != nil {
			return err
		}
	}
	return tx.Commit()
}
