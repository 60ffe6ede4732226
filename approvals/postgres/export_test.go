package postgres

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"

	"github.com/lib/pq"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// Pool exposes the store's connections to the tests.
func Pool(s *Store) *sql.DB { return s.db }

// Seed stores requests as they are (in whatever state, with their own
// times), with the Cloud PCs they hold, and audit records, in one transaction (COPY), through the store's
// own encoding: the conformance suite's large histories
// (storetest.Harness.Seed).
func Seed(s *Store, requests []*approvals.Request, events []approvals.Event) error {
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
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
	if err := copyFrom(ctx, tx, "requests", requestColumns, rows); err != nil {
		return err
	}
	if err := copyFrom(ctx, tx, "cloud_pc_holds", []string{"cloud_pc_id", "request_id"}, holds); err != nil {
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
	if err := copyFrom(ctx, tx, "audit_events", []string{"time", "request_id", "kind", "actor", "details"}, rows); err != nil {
		return err
	}
	return tx.Commit()
}

// copyFrom copies rows into table's columns (COPY … FROM STDIN).
func copyFrom(ctx context.Context, tx *sql.Tx, table string, columns []string, rows [][]any) error {
	quoted := make([]string, len(columns))
	for i, c := range columns {
		quoted[i] = pq.QuoteIdentifier(c)
	}
	st, err := tx.PrepareContext(ctx, `COPY `+pq.QuoteIdentifier(table)+` (`+strings.Join(quoted, ", ")+`) FROM STDIN`)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, row := range rows {
		if _, err := st.ExecContext(ctx, row...); err != nil {
			return err
		}
	}
	_, err = st.ExecContext(ctx) // flushes
	return err
}
