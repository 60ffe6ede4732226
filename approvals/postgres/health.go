package postgres

import (
	"context"
	"fmt"
)

// Ping checks that the store answers a query on its tables (readiness).
func (s *Store) Ping(ctx context.Context) error {
	var n int
	if err := s.q(nil).QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM requests LIMIT 1) AS one`).Scan(&n); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// CountOpen counts the requests holding their Cloud PC (Request.Open as of
// their last save), for metrics.
func (s *Store) CountOpen(ctx context.Context) (int, error) {
	var n int
	if err := s.q(nil).QueryRowContext(ctx, `SELECT count(*) FROM requests WHERE holds_cloud_pc`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count open requests: %w", err)
	}
	return n, nil
}
