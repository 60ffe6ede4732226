package sqlitetest_test

import (
	"context"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite/sqlitetest"
)

// A copy opens without migrating, is empty, and stores what any store stores;
// two copies are two databases.
func TestPathIsAFreshStoreEachTime(t *testing.T) {
	ctx := context.Background()
	a, b := sqlitetest.Path(t), sqlitetest.Path(t)
	if a == b {
		t.Fatalf("both copies at %s", a)
	}
	sa, err := sqlite.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	const pc = "8c1d3c8a-2f3e-4b5a-9c6d-7e8f9a0b1c2d"
	r := &approvals.Request{ID: "R-ABCDEF", Target: pc, CloudPCID: pc, RequesterID: "U1", Reason: "broken", Approvers: []string{"U2"}}
	if err := sa.Create(ctx, r); err != nil {
		t.Fatalf("create in a copy: %v", err)
	}
	sb, err := sqlite.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if pending, err := sb.ListByState(ctx, approvals.StatePending); err != nil || len(pending) != 0 {
		t.Errorf("the other copy holds %d pending requests (%v), want none", len(pending), err)
	}
	if got, err := sa.Get(ctx, "R-ABCDEF"); err != nil || got.Reason != "broken" {
		t.Errorf("get from the copy: %+v, %v", got, err)
	}
}
