package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// This file is the store's outbox (approvals.Outbox): what people must be
// told, kept until it is delivered.

// execer is a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

const upsertOutgoing = `
INSERT INTO outbox (request_id, kind, coalesce_key, payload, generation, attempts, last_error, created_at, next_at)
VALUES (?, ?, ?, ?, 0, 0, '', ?, ?)
ON CONFLICT (request_id, coalesce_key) WHERE coalesce_key <> '' DO UPDATE SET
	payload = excluded.payload, generation = generation + 1, next_at = excluded.next_at,
	attempts = 0, last_error = '', created_at = excluded.created_at`

// enqueue inserts entries due at now, coalescing those with a key into the
// undelivered entry of the same request and key.
func enqueue(ctx context.Context, x execer, now time.Time, entries ...approvals.Outgoing) error {
	at, err := formatTime(now)
	if err != nil {
		return err
	}
	for _, o := range entries {
		if err := o.Validate(); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
		body, err := o.Payload()
		if err != nil {
			return fmt.Errorf("enqueue %s for %s: %w", o.Kind, o.RequestID, err)
		}
		_, err = x.ExecContext(ctx, upsertOutgoing, o.RequestID, string(o.Kind), o.Coalesce(), body, at, at)
		if err != nil {
			return fmt.Errorf("enqueue %s for %s: %w", o.Kind, o.RequestID, err)
		}
	}
	return nil
}

// Enqueue adds entries to the outbox, due now (approvals.Outbox).
func (s *Store) Enqueue(ctx context.Context, entries ...approvals.Outgoing) error {
	if len(entries) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	defer tx.Rollback()
	if err := enqueue(ctx, s.q(tx), time.Now(), entries...); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("enqueue: commit: %w", err)
	}
	return nil
}

// Due returns the undelivered entries due at now (of request ref only, if
// ref is not ""), oldest first, at most limit.
func (s *Store) Due(ctx context.Context, now time.Time, ref string, limit int) ([]approvals.Outgoing, error) {
	at, err := formatTime(now)
	if err != nil {
		return nil, fmt.Errorf("due notices: %w", err)
	}
	query := `SELECT id, request_id, kind, payload, generation, attempts, last_error, created_at, next_at
FROM outbox WHERE next_at <= ?`
	args := []any{at}
	if ref != "" {
		query += ` AND request_id = ?`
		args = append(args, ref)
	}
	query += ` ORDER BY id LIMIT ?`
	rows, err := s.q(nil).QueryContext(ctx, query, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("due notices: %w", err)
	}
	defer rows.Close()
	var out []approvals.Outgoing
	for rows.Next() {
		var (
			o                     approvals.Outgoing
			kind, body, from, due string
		)
		if err := rows.Scan(&o.ID, &o.RequestID, &kind, &body, &o.Generation, &o.Attempts, &o.LastError, &from, &due); err != nil {
			return nil, fmt.Errorf("due notices: %w", err)
		}
		o.Kind = approvals.OutgoingKind(kind)
		err := o.SetPayload(body)
		if err == nil {
			o.CreatedAt, err = parseTime(from)
		}
		if err == nil {
			o.NextAt, err = parseTime(due)
		}
		if err != nil {
			return nil, fmt.Errorf("due notices: entry %d: %w", o.ID, err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("due notices: %w", err)
	}
	return out, nil
}

// Delivered removes the entry unless it was enqueued again since it was read.
func (s *Store) Delivered(ctx context.Context, o approvals.Outgoing) error {
	if _, err := s.q(nil).ExecContext(ctx, `DELETE FROM outbox WHERE id = ? AND generation = ?`, o.ID, o.Generation); err != nil {
		return fmt.Errorf("notice %d delivered: %w", o.ID, err)
	}
	return nil
}

// Postpone records a failed delivery and makes the entry due at `at`,
// unless it was enqueued again since it was read.
func (s *Store) Postpone(ctx context.Context, o approvals.Outgoing, at time.Time, why string) error {
	next, err := formatTime(at)
	if err != nil {
		return fmt.Errorf("postpone notice %d: %w", o.ID, err)
	}
	_, err = s.q(nil).ExecContext(ctx,
		`UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ? WHERE id = ? AND generation = ?`,
		why, next, o.ID, o.Generation)
	if err != nil {
		return fmt.Errorf("postpone notice %d: %w", o.ID, err)
	}
	return nil
}

// Undelivered counts the entries not delivered yet.
func (s *Store) Undelivered(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count notices: %w", err)
	}
	return n, nil
}

// ListUpdatedSince returns the requests changed at or after since, oldest
// change first.
func (s *Store) ListUpdatedSince(ctx context.Context, since time.Time) ([]*approvals.Request, error) {
	from, err := formatTime(since)
	if err != nil {
		return nil, fmt.Errorf("list changed requests: %w", err)
	}
	return s.list(ctx, `WHERE updated_at >= ? ORDER BY updated_at, id`, from)
}
