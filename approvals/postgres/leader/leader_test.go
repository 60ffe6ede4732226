package leader_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/leader"
	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/pgtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestMain(m *testing.M) { pgtest.Main(m) }

// testURL is a fresh database: advisory locks are per database, so each
// test has its own leadership.
func testURL(t *testing.T) string { return pgtest.URL(t) }

// One holder at a time: a second process waits as a standby (told so) and
// takes over when the holder releases.
func TestOneLeaderAtATime(t *testing.T) {
	t.Parallel()
	url := testURL(t)
	ctx := context.Background()
	first, err := leader.Acquire(ctx, url, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	standby := make(chan struct{})
	got := make(chan *leader.Lease, 1)
	go func() {
		l, err := leader.Acquire(ctx, url, quiet, func() { close(standby) })
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	select {
	case <-standby:
	case <-time.After(5 * time.Second):
		t.Fatal("the second process was not told it stands by")
	}
	select {
	case <-got:
		t.Fatal("two leaders at once")
	case <-time.After(1500 * time.Millisecond):
	}
	begin := time.Now()
	first.Release()
	select {
	case second := <-got:
		t.Logf("taken over %v after the release", time.Since(begin).Round(time.Millisecond))
		second.Release()
	case <-time.After(5 * time.Second):
		t.Fatal("no takeover after the release")
	}
}

// The holder's session killed (as when its process dies or the database
// drops it): the holder learns it has lost leadership within seconds, and
// a standby takes over.
func TestLeaderLosesItsSession(t *testing.T) {
	t.Parallel()
	url := testURL(t)
	ctx := context.Background()
	first, err := leader.Acquire(ctx, url, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *leader.Lease, 1)
	go func() {
		l, _ := leader.Acquire(ctx, url, quiet, nil)
		got <- l
	}()
	admin, err := pgtest.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	time.Sleep(200 * time.Millisecond)
	begin := time.Now()
	// Only this test's database: the server may be shared with other tests.
	if _, err := admin.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'reprovision-bot leader'
		AND datname = current_database() AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.Lost():
		t.Logf("holder knew after %v", time.Since(begin).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("the holder did not notice it lost leadership")
	}
	select {
	case second := <-got:
		t.Logf("taken over after %v", time.Since(begin).Round(time.Millisecond))
		second.Release()
	case <-time.After(10 * time.Second):
		t.Fatal("no takeover within 10 s")
	}
	first.Release()
}

// A standby stops waiting when its context ends.
func TestAcquireEndsWithTheContext(t *testing.T) {
	t.Parallel()
	url := testURL(t)
	first, err := leader.Acquire(context.Background(), url, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if l, err := leader.Acquire(ctx, url, quiet, nil); err == nil {
		l.Release()
		t.Fatal("a second leader")
	}
}

// The holder's network cut (no answer, no reset: the server still thinks
// the session alive for a while): the holder's check times out and it
// learns it has lost leadership within seconds, before the server drops
// the session (about 5 s of silence) and a standby could take over; and
// Release does not hang on the dead connection.
func TestLeaderLosesItsNetwork(t *testing.T) {
	t.Parallel()
	url, freeze := pgtest.Proxy(t, testURL(t))
	first, err := leader.Acquire(context.Background(), url, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // a check or so on a live connection
	select {
	case <-first.Lost():
		t.Fatal("leadership lost on a live connection")
	default:
	}
	freeze()
	begin := time.Now()
	select {
	case <-first.Lost():
		t.Logf("holder knew after %v", time.Since(begin).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("the holder did not notice it lost its network")
	}
	released := make(chan struct{})
	go func() {
		first.Release()
		close(released)
	}()
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("Release hangs on the cut connection")
	}
}
