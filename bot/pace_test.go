package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/mock"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite/sqlitetest"
	"github.com/reprovision-bot/reprovision-bot/fakes"
)

func TestPacerBooksTurns(t *testing.T) {
	t.Parallel()
	p := newPacer([]PaceLimit{
		{Method: "chat.postMessage", Every: 100 * time.Millisecond, Burst: 3},
		{Method: "chat.postMessage", PerChannel: true, Every: time.Second, Burst: 2},
	}, 1)
	if !p.limits["chat.postMessage"][0].PerChannel {
		t.Fatal("the channel's limit is not taken first")
	}
	t0 := time.Unix(1_000_000, 0)
	channel := func(ch string, at time.Duration, budget time.Duration) (time.Duration, bool) {
		return p.reserve("chat.postMessage", 0, ch, t0.Add(at), budget)
	}
	workspace := func(at time.Duration, budget time.Duration) (time.Duration, bool) {
		return p.reserve("chat.postMessage", 1, "", t0.Add(at), budget)
	}
	// A burst of two per channel goes at once; the third waits a second.
	for i := range 2 {
		if wait, ok := channel("D1", 0, 0); !ok || wait != 0 {
			t.Fatalf("call %d: wait %v ok %v, want at once", i+1, wait, ok)
		}
	}
	if wait, ok := channel("D1", 0, 0); ok || wait != time.Second {
		t.Fatalf("third call with no budget: wait %v ok %v, want refused with 1s", wait, ok)
	}
	// Refused, it booked nothing: the same call with a budget gets the
	// same turn.
	if wait, ok := channel("D1", 0, 2*time.Second); !ok || wait != time.Second {
		t.Fatalf("third call with a budget: wait %v ok %v, want 1s", wait, ok)
	}
	// Another channel has an allowance of its own.
	if wait, ok := channel("D2", 0, 0); !ok || wait != 0 {
		t.Fatalf("other channel: wait %v ok %v, want at once", wait, ok)
	}
	// The workspace's: three at once, then one per 100 ms.
	for i, want := range []time.Duration{0, 0, 0, 100 * time.Millisecond, 200 * time.Millisecond} {
		if wait, ok := workspace(0, time.Second); !ok || wait != want {
			t.Fatalf("workspace call %d: wait %v ok %v, want %v", i+1, wait, ok, want)
		}
	}
	// Much later, the allowance is whole again.
	if wait, ok := channel("D1", time.Minute, 0); !ok || wait != 0 {
		t.Fatalf("a minute later: wait %v ok %v", wait, ok)
	}
}

func TestPacerScale(t *testing.T) {
	t.Parallel()
	p := newPacer([]PaceLimit{{Method: "views.open", Every: time.Second, Burst: 1}}, 20)
	now := time.Now()
	p.reserve("views.open", 0, "", now, 0)
	if wait, _ := p.reserve("views.open", 0, "", now, time.Second); wait != 50*time.Millisecond {
		t.Errorf("scaled ×20: wait %v, want 50ms", wait)
	}
}

func TestPaceBudget(t *testing.T) {
	t.Parallel()
	now := time.Now()
	within := func(d time.Duration) context.Context {
		ctx, cancel := context.WithDeadline(context.Background(), now.Add(d))
		t.Cleanup(cancel)
		return ctx
	}
	for _, c := range []struct {
		name   string
		ctx    context.Context
		method string
		want   time.Duration
	}{
		{"no deadline", context.Background(), "chat.postMessage", maxPaceWait},
		{"a notice sent at once (3 s)", within(3 * time.Second), "chat.postMessage", 0},
		{"the outbox loop (15 s)", within(15 * time.Second), "chat.postMessage", 7500 * time.Millisecond},
		{"long", within(10 * time.Minute), "chat.update", maxPaceWait},
		{"a modal: until the trigger expires", withTrigger(context.Background(), now.Add(-time.Second)), "views.open", triggerLife - time.Second},
		{"the trigger is only for modals", withTrigger(within(3*time.Second), now.Add(-time.Minute)), "chat.postEphemeral", 0},
	} {
		if got := paceBudget(c.ctx, c.method, now); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// A notice sent at once takes a free turn or none: beyond the burst it is
// not made, and the outbox learns when to try again.
func TestNoticesBeyondTheBurstWaitForTheirTurn(t *testing.T) {
	t.Parallel()
	b, slack := newNoticesBot(t)
	b.pace = newPacer([]PaceLimit{{Method: "chat.postMessage", PerChannel: true, Every: time.Second, Burst: 3}}, 1)
	slack.ObservePace(fakes.PaceRule{Method: "chat.postMessage", PerChannel: true, Every: time.Second, Burst: 3})
	r := &approvals.Request{ID: "R-ABCDEF", Target: "CPC-1", RequesterID: "U0ALICE", State: approvals.StateDenied}
	n := approvals.Notice{Kind: approvals.NoticeStatus, Request: r}
	atOnce := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	for i := range 3 {
		if err := b.Tell(atOnce(), "U0ALICE", n); err != nil {
			t.Fatalf("notice %d of the burst: %v", i+1, err)
		}
	}
	err := b.Tell(atOnce(), "U0ALICE", n)
	var (
		later approvals.RetryAfter
		paced *pacedError
	)
	if !errors.As(err, &paced) || !errors.As(err, &later) || later.RetryAfter() <= 0 || later.RetryAfter() > time.Second {
		t.Fatalf("fourth notice at once: %v, want a pacedError saying to try again within 1 s", err)
	}
	if errors.Is(err, approvals.ErrUndeliverable) {
		t.Error("a paced notice is not undeliverable")
	}
	// Another DM is not held back by this one.
	if err := b.Tell(atOnce(), "U0BOB", n); err != nil {
		t.Errorf("a notice to someone else: %v", err)
	}
	// One that may wait (a click's work, the outbox loop) waits its turn.
	begin := time.Now()
	if err := b.Tell(context.Background(), "U0ALICE", n); err != nil {
		t.Fatalf("a notice that may wait: %v", err)
	}
	if waited := time.Since(begin); waited < 500*time.Millisecond {
		t.Errorf("waited %v for its turn, want about 1 s", waited)
	}
	st := slack.CallStats("chat.postMessage", "")
	if st.Calls != 5 || st.OverPace != 0 {
		t.Errorf("Slack saw %d calls, %d over its limits; want 5 and 0", st.Calls, st.OverPace)
	}
}

// A reason form whose turn would come after its trigger_id expires is not
// opened, and the requester is told to give the reason in the command.
func TestReasonFormRefusedWhenItsTurnComesTooLate(t *testing.T) {
	t.Parallel()
	b, fake := newNoticesBot(t)
	b.pace = newPacer([]PaceLimit{{Method: "views.open", Every: time.Minute, Burst: 1}}, 1)
	for _, target := range []string{"CPC-ONE", "CPC-TWO"} {
		sc := slack.SlashCommand{UserID: "U0ALICE", ChannelID: "C0HELP", ResponseURL: fake.ResponseURL("U0ALICE"),
			TriggerID: "1.2.trigger-" + target, Text: target}
		b.askForReason(withTrigger(context.Background(), time.Now()), sc, Command{Target: target})
	}
	if v := fake.CallStats("views.open", ""); v.Calls != 1 {
		t.Errorf("views.open called %d times, want 1 (the second's turn comes a minute later)", v.Calls)
	}
	posts := fake.HookPosts()
	if len(posts) != 2 || !strings.Contains(string(posts[1].Body), "give the reason after the target") {
		t.Errorf("the requesters were told %v; want the second asked for the reason in the command", posts)
	}
}

func TestWorkQueueIsBoundedAndDropsWhatItDidNotRun(t *testing.T) {
	t.Parallel()
	q := newWorkQueue("test", 1, 3)
	for i := range 3 {
		if !q.book() {
			t.Fatalf("place %d refused", i+1)
		}
	}
	if q.book() {
		t.Fatal("a fourth place in a queue of 3")
	}
	ctx, cancel := context.WithCancel(context.Background())
	var ran, dropped atomic.Int32
	release := make(chan struct{})
	q.push(job{run: func(context.Context) { ran.Add(1); <-release }})
	q.push(job{run: func(context.Context) { ran.Add(1) }, drop: func(context.Context) { dropped.Add(1) }})
	q.push(job{run: func(context.Context) { ran.Add(1) }, drop: func(context.Context) { dropped.Add(1) }})
	q.start(ctx, time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for ran.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !q.book() {
		t.Error("no place once a worker took a job")
	}
	q.push(job{run: func(context.Context) { ran.Add(1) }, drop: func(context.Context) { dropped.Add(1) }})
	q.close()
	if q.book() {
		t.Error("a place after close")
	}
	cancel() // the stop's grace is over
	close(release)
	q.wait()
	if n := q.leftovers(context.Background()); n != 3 || dropped.Load() != 3 || ran.Load() != 1 {
		t.Errorf("leftovers %d, dropped %d, ran %d; want 3, 3, 1", n, dropped.Load(), ran.Load())
	}
}

func TestWorkQueueDrainsAfterClose(t *testing.T) {
	t.Parallel()
	q := newWorkQueue("test", 2, 100)
	var ran atomic.Int32
	for range 50 {
		if !q.book() {
			t.Fatal("place refused")
		}
		q.push(job{run: func(context.Context) { ran.Add(1) }})
	}
	q.start(context.Background(), time.Minute)
	q.close()
	q.wait()
	if ran.Load() != 50 || q.leftovers(context.Background()) != 0 {
		t.Errorf("ran %d of 50", ran.Load())
	}
}

func TestEnvelopeLogIsBoundedAndForgetsTheOldest(t *testing.T) {
	t.Parallel()
	var l envelopeLog
	if !l.firstTime("e0") || l.firstTime("e0") {
		t.Fatal("a repeated envelope is not recognised")
	}
	for i := 1; i <= envelopeLogSize; i++ {
		if !l.firstTime(fmt.Sprint("e", i)) {
			t.Fatalf("e%d seen before", i)
		}
	}
	if len(l.seen) != envelopeLogSize || l.n != envelopeLogSize {
		t.Errorf("holds %d (%d), want %d", len(l.seen), l.n, envelopeLogSize)
	}
	if !l.firstTime("e0") {
		t.Error("the oldest envelope is still remembered past the bound")
	}
	if l.firstTime(fmt.Sprint("e", envelopeLogSize)) {
		t.Error("a recent envelope was forgotten")
	}
	// Entries older than envelopeMemory go first.
	l.ring[l.head].at = time.Now().Add(-2 * envelopeMemory)
	oldest := l.ring[l.head].id
	l.firstTime("fresh")
	if _, ok := l.seen[oldest]; ok {
		t.Error("an envelope older than envelopeMemory is remembered")
	}
}

// A burst of requests while the approver's turns are taken: every one is
// stored at once, the prompts wait for their turn in the outbox (nobody is
// told of a problem), and all of them reach the approver at the pace, none
// over Slack's limits.
func TestBurstOfRequestsPromptsAtThePace(t *testing.T) {
	t.Parallel()
	b, slack := newNoticesBot(t)
	// The bot paces at 150 ms, the fake judges by 100 ms: between the bot's
	// turn and the fake's reading the call lie two schedulers, which on a
	// loaded 2-CPU box can hold one call back until the next one (CI saw
	// one call "over" when both were 100 ms).
	limits := []PaceLimit{{Method: "chat.postMessage", PerChannel: true, Every: 150 * time.Millisecond, Burst: 3}}
	b.pace = newPacer(limits, 1)
	slack.ObservePace(fakes.PaceRule{Method: "chat.postMessage", PerChannel: true, Every: 100 * time.Millisecond, Burst: 3})
	// Earlier posts (not to the fake) took the approver's turns of the
	// next 3 s: the burst finds none free.
	for range 22 {
		b.pace.reserve("chat.postMessage", 0, "U0A1", time.Now(), time.Minute)
	}
	store, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	b.wf, err = approvals.New(approvals.Config{Policy: approvals.Policy{Approvers: []string{"U0A1"}}, Store: store,
		SignIns: &mock.SignIns{}, Notices: b, AllowedStatuses: []string{"provisioned"}, Logger: b.log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.wf.Start(ctx)
	t.Cleanup(func() { cancel(); b.wf.Stop() })

	const n = 8
	for i := range n {
		r, err := b.wf.NewRequest("U0ALICE", "C0HELP", fmt.Sprintf("%08d-0000-4000-8000-000000000000", i), "profile broken")
		if err != nil {
			t.Fatal(err)
		}
		b.openRequest(context.Background(), r, slack.ResponseURL("U0ALICE"))
	}
	if pending, err := store.ListByState(context.Background(), approvals.StatePending); err != nil || len(pending) != n {
		t.Fatalf("%d pending requests stored (%v), want %d", len(pending), err, n)
	}
	if st := slack.CallStats("chat.postMessage", "U0A1"); st.OK != 0 {
		t.Errorf("%d prompts posted before their turn", st.OK)
	}
	slack.WaitFor(t, 15*time.Second, "every prompt", func() bool { return slack.CallStats("chat.postMessage", "U0A1").OK == n })
	if st := slack.CallStats("chat.postMessage", ""); st.OverPace != 0 || st.Calls != n {
		t.Errorf("%d calls, %d over the limit; want %d and 0", st.Calls, st.OverPace, n)
	}
	if posts := slack.HookPosts(); len(posts) != 0 {
		t.Errorf("the requester was told %d things, want nothing: %v", len(posts), posts)
	}
	if eph := slack.Ephemerals("U0ALICE"); len(eph) != 0 {
		t.Errorf("the requester was told %d things, want nothing", len(eph))
	}
}
