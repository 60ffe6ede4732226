package postgres

import (
	"context"
	"encoding/json"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// Pool exposes the store's connections to the tests.
func Pool(s *Store) *pgxpool.Pool { return s.pool }

// Seed stores requests as they are (in whatever state, with their own
// times), with the Cloud PCs they hold, and audit records, in one transaction (COPY), through the store's
// own encoding: the conformance suite's large histories
// (storetest.Harness.Seed).
func Seed(s *Store, requests []*approvals.Request, events []approvals.Event) error {
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var rows, holds [][]any
	for _, r := range requests {
		r = normalized(r)
		values, err := encodeRequest(r)
		if err != nil {
			return err
		}
		rows = append(rows, values)
		for _, pc := range r.HeldCloudPCs() {
			holds = append(holds, []any{pc, r.ID})
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"requests"}, requestColumns, pgx.CopyFromRows(rows)); err != nil {
		return err
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"cloud_pc_holds"}, []string{"cloud_pc_id", "request_id"}, pgx.CopyFromRows(holds)); err != nil {
		return err
	}
	rows = rows[:0]
	for _, e := range events {
		details := []byte("{}")
		if len(e.Details) > 0 {
			if details, err = json.Marshal(e.Details); err != nil {
				return err
			}
		}
		rows = append(rows, []any{Time(e.Time), Text(e.RequestID), Text(string(e.Kind)), Text(e.Actor), string(details)})
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"audit_events"}, []string{"time", "request_id", "kind", "actor", "details"}, pgx.CopyFromRows(rows)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
