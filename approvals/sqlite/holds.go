package sqlite

import (
	"context"
	"fmt"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/internal/stmtcache"
	sqlite3 "modernc.org/sqlite/lib"
)

const (
	deleteHolds  = `DELETE FROM cloud_pc_holds WHERE request_id = ?`
	insertHold   = `INSERT INTO cloud_pc_holds (cloud_pc_id, request_id) VALUES (?, ?)`
	selectHolder = `SELECT request_id FROM cloud_pc_holds WHERE cloud_pc_id = ?`
)

// hold makes request r's rows of cloud_pc_holds what r, about to be saved
// in the write transaction tx, holds (Request.HeldCloudPCs): one row per
// Cloud PC, so that a Cloud PC held by another request, single or batch,
// fails the save with an error wrapping approvals.ErrOpenRequestExists
// (the caller then rolls the whole write back). The write lock serialises
// every writer, so dropping r's rows and inserting the new set is safe.
func hold(ctx context.Context, tx stmtcache.Queryer, r *approvals.Request) error {
	if _, err := tx.ExecContext(ctx, deleteHolds, r.ID); err != nil {
		return fmt.Errorf("release cloud PCs: %w", err)
	}
	for _, pc := range r.HeldCloudPCs() {
		_, err := tx.ExecContext(ctx, insertHold, pc, r.ID)
		switch code := sqliteCode(err); {
		case err == nil:
		case code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || code == sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			// The failed statement alone is undone: tx can still say who.
			var holder string
			if err := tx.QueryRowContext(ctx, selectHolder, pc).Scan(&holder); err != nil {
				holder = "another request"
			}
			return fmt.Errorf("cloud PC %s is held by %s: %w", pc, holder, approvals.ErrOpenRequestExists)
		default:
			return fmt.Errorf("hold cloud PC %s: %w", pc, err)
		}
	}
	return nil
}
