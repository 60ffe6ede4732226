package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// raceTests: compare-and-swap under contention, within one store. (With
// Replicas, replicaTests run them again across two stores on one
// database.)
var raceTests = []test{
	{"TransitionRace", func(t *testing.T, h *Harness) { raceTransition(t, 20, h.open(t)) }},
	{"TransitionFromClaimsOnce", func(t *testing.T, h *Harness) { raceClaim(t, 10, h.open(t)) }},
	{"CreateRaceOnSameCloudPC", func(t *testing.T, h *Harness) { raceCreate(t, 10, h.open(t)) }},
	{"UpdateRaceLosesNothing", func(t *testing.T, h *Harness) { raceUpdate(t, 20, h.open(t)) }},
	{"ApplyRaceEnqueuesOnce", func(t *testing.T, h *Harness) { raceApply(t, 10, h.open(t)) }},
	{"OutboxAtLeastOnce", func(t *testing.T, h *Harness) { raceOutbox(t, h.open(t)) }},
	{"ChainsInParallel", func(t *testing.T, h *Harness) { raceChains(t, h.open(t)) }},
	{"HoldRaceOnSameCloudPC", func(t *testing.T, h *Harness) { raceHold(t, 16, h.open(t)) }},
	{"OverlappingBatchesRace", func(t *testing.T, h *Harness) { raceOverlappingBatches(t, 8, h.open(t)) }},
}

// replicaTests: the races across two stores serving one database, as two
// replicas of the bot would.
var replicaTests = []test{
	{"Replicas/TransitionRace", func(t *testing.T, h *Harness) { raceTransition(t, 20, replicas(t, h)...) }},
	{"Replicas/TransitionFromClaimsOnce", func(t *testing.T, h *Harness) { raceClaim(t, 10, replicas(t, h)...) }},
	{"Replicas/CreateRaceOnSameCloudPC", func(t *testing.T, h *Harness) { raceCreate(t, 10, replicas(t, h)...) }},
	{"Replicas/UpdateRaceLosesNothing", func(t *testing.T, h *Harness) { raceUpdate(t, 20, replicas(t, h)...) }},
	{"Replicas/ApplyRaceEnqueuesOnce", func(t *testing.T, h *Harness) { raceApply(t, 10, replicas(t, h)...) }},
	{"Replicas/OutboxAtLeastOnce", func(t *testing.T, h *Harness) { raceOutbox(t, replicas(t, h)...) }},
	{"Replicas/ChainsInParallel", func(t *testing.T, h *Harness) { raceChains(t, replicas(t, h)...) }},
	{"Replicas/SeeEachOthersChanges", testReplicasSeeEachOthersChanges},
	{"Replicas/HoldRaceOnSameCloudPC", func(t *testing.T, h *Harness) { raceHold(t, 16, replicas(t, h)...) }},
	{"Replicas/OverlappingBatchesRace", func(t *testing.T, h *Harness) { raceOverlappingBatches(t, 8, replicas(t, h)...) }},
	{"Replicas/BatchSwapRefused", func(t *testing.T, h *Harness) { raceSwap(t, 20, replicas(t, h)...) }},
}

// replicas opens two stores on one new database.
func replicas(t *testing.T, h *Harness) []approvals.Store {
	s, db := h.openNew(t)
	return []approvals.Store{s, h.openDB(t, db)}
}

// together runs f(i) for i in [0, n) in goroutines released at once.
func together(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

// raceTransition runs n concurrent pending→approved moves of one request,
// the i-th through stores[i%len(stores)], and checks exactly one wins and
// its update ran once.
func raceTransition(t *testing.T, n int, stores ...approvals.Store) {
	r := mustCreate(t, stores[0], newRequest())
	var (
		updates atomic.Int32
		results = make([]*approvals.Request, n)
		errs    = make([]error, n)
	)
	together(n, func(i int) {
		results[i], errs[i] = stores[i%len(stores)].Transition(context.Background(), r.ID, approvals.StateApproved,
			func(c *approvals.Request) {
				updates.Add(1)
				c.DecidedBy = fmt.Sprintf("U_APPROVER_%d", i)
			})
	})
	winners, winner := 0, ""
	for i, err := range errs {
		if err == nil {
			winners++
			winner = results[i].DecidedBy
			if results[i].State != approvals.StateApproved {
				t.Errorf("winner returned state %s", results[i].State)
			}
		}
	}
	for _, err := range errs {
		var te *approvals.TransitionError
		switch {
		case err == nil:
		case errors.As(err, &te):
			if te.Current.State != approvals.StateApproved || te.Current.DecidedBy != winner {
				t.Errorf("loser saw %s decided by %q, want the winner's approved request (%q)", te.Current.State, te.Current.DecidedBy, winner)
			}
		default:
			t.Errorf("Transition: %v, want success or *TransitionError", err)
		}
	}
	if winners != 1 {
		t.Errorf("%d of %d racing transitions succeeded, want exactly 1", winners, n)
	}
	if got := updates.Load(); got != 1 {
		t.Errorf("update ran %d times, want 1", got)
	}
	for _, s := range stores {
		if got := mustGet(t, s, r.ID); got.State != approvals.StateApproved || got.DecidedBy != winner {
			t.Errorf("stored: %s decided by %q, want approved by %q", got.State, got.DecidedBy, winner)
		}
	}
}

// raceClaim: TransitionFrom is the claim a worker makes: of n workers
// moving from the same state, one wins; a worker whose step was taken over
// cannot undo it, even where the state machine would allow the move from
// the new state.
func raceClaim(t *testing.T, n int, stores ...approvals.Store) {
	ctx := context.Background()
	r := createIn(t, stores[0], newRequest(), approvals.StateApproved)
	before := []approvals.State{approvals.StateApproved, approvals.StateConfirming}
	wins := make([]bool, n)
	together(n, func(i int) {
		_, err := stores[i%len(stores)].TransitionFrom(ctx, r.ID, before, approvals.StateExecuting, nil)
		var te *approvals.TransitionError
		if err != nil && !errors.As(err, &te) {
			t.Errorf("TransitionFrom: %v", err)
		}
		wins[i] = err == nil
	})
	if n := count(wins); n != 1 {
		t.Fatalf("%d workers claimed the step, want 1", n)
	}
	// executing → pending is a legal move, but not for a worker that
	// expected the request still to be approved.
	for _, s := range stores {
		_, err := s.TransitionFrom(ctx, r.ID, before, approvals.StatePending, nil)
		var te *approvals.TransitionError
		if !errors.As(err, &te) || te.Current.State != approvals.StateExecuting {
			t.Fatalf("a stale worker moved the request: %v", err)
		}
	}
	if got := mustGet(t, stores[len(stores)-1], r.ID); got.State != approvals.StateExecuting {
		t.Errorf("state %s, want executing", got.State)
	}
}

func count(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// raceCreate: n requests for one Cloud PC at once: one is created, the
// others refused with ErrOpenRequestExists; then n requests resolving to
// one Cloud PC at once: one resolves.
func raceCreate(t *testing.T, n int, stores ...approvals.Store) {
	pc := uuid.NewString()
	errs := make([]error, n)
	together(n, func(i int) {
		r := newRequest()
		r.CloudPCID = pc
		errs[i] = stores[i%len(stores)].Create(context.Background(), r)
	})
	created := 0
	for _, err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, approvals.ErrOpenRequestExists):
			t.Errorf("Create: %v, want nil or ErrOpenRequestExists", err)
		}
	}
	if created != 1 {
		t.Errorf("%d requests created for one Cloud PC, want 1", created)
	}

	other := uuid.NewString()
	waiting := make([]*approvals.Request, n)
	for i := range waiting {
		waiting[i] = mustCreate(t, stores[0], unresolved())
	}
	together(n, func(i int) {
		_, errs[i] = stores[i%len(stores)].Update(context.Background(), waiting[i].ID, func(c *approvals.Request) { c.CloudPCID = other })
	})
	resolved := 0
	for _, err := range errs {
		switch {
		case err == nil:
			resolved++
		case !errors.Is(err, approvals.ErrOpenRequestExists):
			t.Errorf("resolving: %v, want nil or ErrOpenRequestExists", err)
		}
	}
	if resolved != 1 {
		t.Errorf("%d requests resolved to one Cloud PC, want 1", resolved)
	}
	if open, err := stores[len(stores)-1].OpenFor(context.Background(), other); err != nil {
		t.Errorf("OpenFor: %v", err)
	} else if open.CloudPCID != other {
		t.Errorf("OpenFor = %s", describe(open))
	}
}

// raceUpdate: concurrent read-modify-writes each add a prompt; none may
// be lost.
func raceUpdate(t *testing.T, n int, stores ...approvals.Store) {
	r := mustCreate(t, stores[0], newRequest())
	together(n, func(i int) {
		_, err := stores[i%len(stores)].Update(context.Background(), r.ID, func(c *approvals.Request) {
			c.Prompts = append(c.Prompts, approvals.MessageRef{ChannelID: fmt.Sprintf("D%d", i), TS: "1.0"})
		})
		if err != nil {
			t.Errorf("Update #%d: %v", i, err)
		}
	})
	got := mustGet(t, stores[0], r.ID)
	seen := map[string]bool{}
	for _, p := range got.Prompts {
		seen[p.ChannelID] = true
	}
	if len(got.Prompts) != n || len(seen) != n {
		t.Errorf("%d prompts (%d distinct) after %d concurrent updates, want %d", len(got.Prompts), len(seen), n, n)
	}
}

// raceApply: racing Applys of one move, each with its notice: the one
// that moves the request enqueues its notice, the others nothing.
func raceApply(t *testing.T, n int, stores ...approvals.Store) {
	r := mustCreate(t, stores[0], newRequest())
	errs := make([]error, n)
	together(n, func(i int) {
		_, errs[i] = stores[i%len(stores)].Apply(context.Background(), r.ID, approvals.Change{
			To:     approvals.StateDenied,
			Update: func(c *approvals.Request) { c.DecidedBy = fmt.Sprintf("U%d", i) },
			Notify: func(c *approvals.Request) []approvals.Outgoing {
				return []approvals.Outgoing{redrawOf(c.ID),
					{RequestID: c.ID, Kind: approvals.OutgoingNotice, User: c.DecidedBy, Notice: approvals.NoticeExpired}}
			},
		})
	})
	winner := -1
	for i, err := range errs {
		var te *approvals.TransitionError
		switch {
		case err == nil:
			winner = i
		case !errors.As(err, &te):
			t.Errorf("Apply: %v", err)
		}
	}
	due := dueNow(t, stores[len(stores)-1], r.ID)
	if winner < 0 || len(due) != 2 || due[0].Generation != 0 || due[1].User != fmt.Sprintf("U%d", winner) {
		t.Errorf("winner #%d; due: %+v, want its redraw and its notice, once", winner, due)
	}
}

// raceOutbox: one goroutine (store) keeps enqueuing status notices for one
// person, each newer than the last, while another keeps delivering what is
// due: at least once means the newest is delivered, whatever the
// interleaving; coalescing means far fewer deliveries than notices.
func raceOutbox(t *testing.T, stores ...approvals.Store) {
	writer, deliverer := stores[0], stores[len(stores)-1]
	r := mustCreate(t, writer, newRequest())
	const n = 200
	ctx := context.Background()
	status := func(i int) approvals.Outgoing {
		return approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: "U1", Notice: approvals.NoticeStatus,
			Why: &approvals.Outcome{Text: strconv.Itoa(i)}}
	}
	var (
		wg        sync.WaitGroup
		done      atomic.Bool
		delivered []int
	)
	wg.Go(func() {
		defer done.Store(true)
		for i := range n {
			if err := writer.Enqueue(ctx, status(i)); err != nil {
				t.Errorf("Enqueue: %v", err)
				return
			}
		}
	})
	wg.Go(func() {
		for {
			finished := done.Load() // read before looking: then nothing newer comes
			due, err := deliverer.Due(ctx, time.Now().Add(time.Hour), r.ID, 10)
			if err != nil {
				t.Errorf("Due: %v", err)
				return
			}
			if finished && len(due) == 0 {
				return
			}
			for _, o := range due {
				i, _ := strconv.Atoi(o.Why.Text)
				delivered = append(delivered, i)
				if err := deliverer.Delivered(ctx, o); err != nil {
					t.Errorf("Delivered: %v", err)
					return
				}
			}
		}
	})
	wg.Wait()
	if len(delivered) == 0 || delivered[len(delivered)-1] != n-1 {
		t.Fatalf("delivered %v: the newest notice (%d) was not delivered last", delivered, n-1)
	}
	for i := 1; i < len(delivered); i++ {
		if delivered[i] < delivered[i-1] {
			t.Errorf("delivered %d after %d: an older state after a newer", delivered[i], delivered[i-1])
		}
	}
	if n, err := deliverer.Undelivered(ctx); err != nil || n != 0 {
		t.Errorf("Undelivered = %d, %v after draining", n, err)
	}
	t.Logf("%d notices enqueued, %d delivered", n, len(delivered))
}

// raceChains: goroutines each carry their own requests through the whole
// chain at once, on one store or alternating between replicas: nothing
// interferes, every request ends where its chain ends.
func raceChains(t *testing.T, stores ...approvals.Store) {
	const workers, each = 8, 5
	chain := []approvals.State{approvals.StateApproved, approvals.StateConfirming, approvals.StateExecuting, approvals.StateSucceeded}
	refs := make([][]string, workers)
	together(workers, func(w int) {
		for j := range each {
			s := stores[(w+j)%len(stores)]
			r := newRequest()
			if err := s.Create(context.Background(), r); err != nil {
				t.Errorf("Create: %v", err)
				return
			}
			refs[w] = append(refs[w], r.ID)
			for k, to := range chain {
				if _, err := stores[(w+j+k)%len(stores)].Transition(context.Background(), r.ID, to, nil); err != nil {
					t.Errorf("%s → %s: %v", r.ID, to, err)
					return
				}
			}
		}
	})
	all, err := stores[0].ListByState(context.Background(), approvals.StateSucceeded)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != workers*each {
		t.Errorf("%d requests succeeded, want %d", len(all), workers*each)
	}
}

// testReplicasSeeEachOthersChanges: what one replica commits, the other
// reads at once, and its compare-and-swap starts from it.
func testReplicasSeeEachOthersChanges(t *testing.T, h *Harness) {
	rs := replicas(t, h)
	a, b := rs[0], rs[1]
	ctx := context.Background()
	r := mustCreate(t, a, newRequest())
	if got := mustGet(t, b, r.ID); got.State != approvals.StatePending {
		t.Fatalf("the other replica reads %s", got.State)
	}
	mustMove(t, a, r.ID, approvals.StateApproved)
	if _, err := b.Transition(ctx, r.ID, approvals.StateApproved, nil); err == nil {
		t.Error("the other replica approved an approved request")
	}
	mustMove(t, b, r.ID, approvals.StateExecuting)
	mustRecord(t, b, approvals.Event{RequestID: r.ID, Kind: approvals.EventGraphCall})
	if events := mustEvents(t, a, time.Time{}); len(events) != 1 {
		t.Errorf("the first replica reads %d events, want 1", len(events))
	}
	enqueueOK(t, a, redrawOf(r.ID))
	enqueueOK(t, b, redrawOf(r.ID))
	if due := dueNow(t, a, r.ID); len(due) != 1 || due[0].Generation != 1 {
		t.Errorf("two replicas' redraws: %+v, want one entry at generation 1", due)
	}
	if open, err := a.OpenFor(ctx, r.CloudPCID); err != nil || open.State != approvals.StateExecuting {
		t.Errorf("OpenFor on the first replica: %s, %v", describe(open), err)
	}
}
