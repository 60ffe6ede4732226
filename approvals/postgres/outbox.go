package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/lib/pq"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// This file is the store's outbox (approvals.Outbox): what people must be
// told, kept until it is delivered.

const upsertOutgoing = `
INSERT INTO outbox (request_id, kind, coalesce_key, payload, generation, attempts, last_error, created_at, next_at)
VALUES ($1, $2, $3, $4, 0, 0, '', $5, $5)
ON CONFLICT (request_id, coalesce_key) WHERE coalesce_key <> '' DO UPDATE SET
	payload = excluded.payload, generation = outbox.generation + 1, next_at = excluded.next_at,
	attempts = 0, last_error = '', created_at = excluded.created_at`

// lockRequests locks the rows of requests, in id order.
const lockRequests = `SELECT id FROM requests WHERE id = ANY($1) ORDER BY id FOR UPDATE`

// enqueue inserts entries due at now, in tx, coalescing those with a key
// into the undelivered entry of the same request and key, one statement
// (one round trip) each. With lock, it first locks the rows of the requests the entries
// are about, in id order, as a change of them does (Apply holds its
// request's row already): two transactions coalescing into the same
// entries then take turns instead of deadlocking on them.
func enqueue(ctx context.Context, tx execer, now time.Time, lock bool, entries ...approvals.Outgoing) error {
	if len(entries) == 0 {
		return nil
	}
	bodies := make([]string, len(entries))
	for i, o := range entries {
		if err := o.Validate(); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
		body, err := o.Payload()
		if err != nil {
			return fmt.Errorf("enqueue %s for %s: %w", o.Kind, o.RequestID, err)
		}
		bodies[i] = body
	}
	if lock {
		var refs []string
		for _, o := range entries {
			refs = append(refs, o.RequestID)
		}
		slices.Sort(refs)
		if _, err := tx.ExecContext(ctx, lockRequests, pq.Array(slices.Compact(refs))); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
	}
	for i, o := range entries {
		if _, err := tx.ExecContext(ctx, upsertOutgoing, o.RequestID, string(o.Kind), Text(o.Coalesce()), bodies[i], Time(now)); err != nil {
			return fmt.Errorf("enqueue: %w", err)
		}
	}
	return nil
}

// Enqueue adds entries to the outbox, due now (approvals.Outbox): all of
// them or, on an error, none.
func (s *Store) Enqueue(ctx context.Context, entries ...approvals.Outgoing) error {
	if len(entries) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	defer tx.Rollback()
	if err := enqueue(ctx, s.q(tx), time.Now(), true, entries...); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("enqueue: commit: %w", err)
	}
	return nil
}

// Due returns the undelivered entries due at now (to Precision; of
// request ref only, if ref is not ""), oldest first, at most limit (a
// negative limit: all of them).
func (s *Store) Due(ctx context.Context, now time.Time, ref string, limit int) ([]approvals.Outgoing, error) {
	var max *int
	if limit >= 0 {
		max = &limit
	}
	query := `SELECT id, request_id, kind, payload::text, generation, attempts, last_error, created_at, next_at
FROM outbox WHERE next_at <= $1`
	args := []any{Time(now), max}
	if ref != "" {
		query += ` AND request_id = $3`
		args = append(args, ref)
	}
	query += ` ORDER BY id LIMIT $2`
	rows, err := s.q(nil).QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("due notices: %w", err)
	}
	defer rows.Close()
	var out []approvals.Outgoing
	for rows.Next() {
		var (
			o          approvals.Outgoing
			kind, body string
		)
		if err := rows.Scan(&o.ID, &o.RequestID, &kind, &body, &o.Generation, &o.Attempts, &o.LastError, &o.CreatedAt, &o.NextAt); err != nil {
			return nil, fmt.Errorf("due notices: %w", err)
		}
		o.Kind = approvals.OutgoingKind(kind)
		o.CreatedAt, o.NextAt = o.CreatedAt.UTC(), o.NextAt.UTC()
		if err := o.SetPayload(body); err != nil {
			return nil, fmt.Errorf("due notices: entry %d: %w", o.ID, err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("due notices: %w", err)
	}
	return out, nil
}

// Delivered removes the entry unless it was enqueued again since it was
// read. (A concurrent Enqueue coalescing into it either commits first, and
// then the DELETE, re-checking the row it waited for, finds another
// generation and leaves it; or waits for the DELETE and then inserts a new
// entry.)
func (s *Store) Delivered(ctx context.Context, o approvals.Outgoing) error {
	if _, err := s.q(nil).ExecContext(ctx, `DELETE FROM outbox WHERE id = $1 AND generation = $2`, o.ID, o.Generation); err != nil {
		return fmt.Errorf("notice %d delivered: %w", o.ID, err)
	}
	return nil
}

// Postpone records a failed delivery and makes the entry due at `at`,
// unless it was enqueued again since it was read.
func (s *Store) Postpone(ctx context.Context, o approvals.Outgoing, at time.Time, why string) error {
	if err := checkTime(at); err != nil {
		return fmt.Errorf("postpone notice %d: %w", o.ID, err)
	}
	_, err := s.q(nil).ExecContext(ctx,
		`UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_at = $2 WHERE id = $3 AND generation = $4`,
		Text(why), Time(at), o.ID, o.Generation)
	if err != nil {
		return fmt.Errorf("postpone notice %d: %w", o.ID, err)
	}
	return nil
}

// Undelivered counts the entries not delivered yet.
func (s *Store) Undelivered(ctx context.Context) (int, error) {
	var n int
	if err := s.q(nil).QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count notices: %w", err)
	}
	return n, nil
}
