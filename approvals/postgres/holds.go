package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/lib/pq"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// The statements of cloud_pc_holds.
const (
	selectHeld  = `SELECT cloud_pc_id FROM cloud_pc_holds WHERE request_id = $1`
	insertHold  = `INSERT INTO cloud_pc_holds (cloud_pc_id, request_id) VALUES ($1, $2)`
	deleteHolds = `DELETE FROM cloud_pc_holds WHERE request_id = $1 AND cloud_pc_id = ANY($2)`
)

// execer is what writing needs from a transaction (through the statement
// cache).
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// heldBy returns the Cloud PCs request id holds as stored in
// cloud_pc_holds. The caller has the request's row locked (or has just
// inserted it), so no other transaction changes these rows meanwhile.
func heldBy(ctx context.Context, tx querier, id string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, selectHeld, id)
	if err != nil {
		return nil, fmt.Errorf("read held cloud PCs: %w", err)
	}
	defer rows.Close()
	var held []string
	for rows.Next() {
		var pc string
		if err := rows.Scan(&pc); err != nil {
			return nil, fmt.Errorf("read held cloud PCs: %w", err)
		}
		held = append(held, pc)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read held cloud PCs: %w", err)
	}
	return held, nil
}

// hold makes request id's rows of cloud_pc_holds go from held (what it
// holds now) to want (Request.HeldCloudPCs of what is being saved), in tx.
// A Cloud PC another request holds fails it with an error wrapping
// approvals.ErrOpenRequestExists (the caller then rolls the whole write
// back): the primary key, which also makes a transaction inserting a Cloud
// PC another one has inserted and not yet committed wait for it, and fail
// if it commits.
//
// Only what changes is written, the new Cloud PCs first, in id order, then
// those let go. So a transaction waits only while inserting, only for one
// that has inserted, in the same order, a smaller id (or is letting one
// go, and waits for nothing more): no two can wait for each other, and
// racing writes end in one winner and ErrOpenRequestExists, never in a
// deadlock. (Rewriting a Cloud PC the request keeps would make others
// wait for it needlessly, and deleting first could close such a cycle.)
func hold(ctx context.Context, tx execer, id string, held, want []string) error {
	take := slices.Sorted(slices.Values(want))
	take = slices.DeleteFunc(slices.Compact(take), func(pc string) bool { return slices.Contains(held, pc) })
	free := slices.DeleteFunc(slices.Clone(held), func(pc string) bool { return slices.Contains(want, pc) })
	for _, pc := range take {
		_, err := tx.ExecContext(ctx, insertHold, pc, id)
		switch constraint(err) {
		case "":
			if err != nil {
				return fmt.Errorf("hold cloud PC %s: %w", pc, err)
			}
		case holdsKey:
			return fmt.Errorf("cloud PC %s is held by another request: %w", pc, approvals.ErrOpenRequestExists)
		default:
			return fmt.Errorf("hold cloud PC %s: %w", pc, err)
		}
	}
	if len(free) > 0 {
		if _, err := tx.ExecContext(ctx, deleteHolds, id, pq.Array(free)); err != nil {
			return fmt.Errorf("let cloud PCs go: %w", err)
		}
	}
	return nil
}
