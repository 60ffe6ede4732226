package approvals_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/mock"
)

// Races and edges of the heads-up wait and two-person approval, each found
// in review as a bug (the test failed before its fix).

// Postpone lands while the scheduler's execute is in its pre-call
// status GET. The user is told the new (later) time, and the call goes at
// the old one.
func TestPostponeRacingTheDueCallIsRefused(t *testing.T) {
	t.Parallel()
	const notice = 300 * time.Millisecond
	h := newHarness(t, withHeadsUp(notice))
	h.withUsers()
	r := h.open(pc2)
	h.approve(a1, r.ID) // GET 1: the look-up
	release := make(chan struct{})
	waiting := h.holdGet(2, release) // GET 2: the re-check right before the POST
	h.confirmScheduled(r.ID)
	h.waitClosed(waiting, "the scheduler's pre-call GET")
	later, err := h.w.Postpone(ctx, a1, r.ID)
	if err != nil {
		t.Logf("Postpone refused (%v): fine", err)
		close(release)
		h.stop()
		return
	}
	h.waitTold(r.ID, carol, approvals.NoticeUserUpdate) // "your reprovision moved to <later>"
	close(release)
	done := h.waitState(r.ID, approvals.StateSucceeded)
	h.stop()
	if calls := h.eventsOf(r.ID, approvals.EventGraphCall); len(calls) > 0 {
		last := calls[len(calls)-1]
		if last.Time.Before(later.HeadsUp.SendAt) {
			t.Errorf("user told the call moved to %v, but it was sent at %v (state %s)", later.HeadsUp.SendAt.Format(time.StampMilli), last.Time.Format(time.StampMilli), done.State)
		}
	}
}

// listHookStore lets a test hold the scheduler between its list of
// undecided requests and what it does with them.
type listHookStore struct {
	approvals.Store
	mu        sync.Mutex
	afterList func([]*approvals.Request)
}

func (s *listHookStore) ListExpiringBefore(ctx context.Context, before time.Time, states ...approvals.State) ([]*approvals.Request, error) {
	got, err := s.Store.ListExpiringBefore(ctx, before, states...)
	s.mu.Lock()
	hook := s.afterList
	s.mu.Unlock()
	if err == nil && hook != nil && slices.Equal(states, []approvals.State{approvals.StatePending, approvals.StateConfirming}) {
		hook(got)
	}
	return got, err
}

// the scheduler saw the request awaiting confirmation past its
// window; meanwhile the approver's (in-time) confirmation scheduled it. The
// generic expire has no From, and scheduled → expired is now a legal move,
// so the freshly scheduled request (new deadline SendAt+30m, heads-up sent)
// is expired as "nobody decided in time".
func TestStaleExpiryDoesNotKillAFreshSchedule(t *testing.T) {
	t.Parallel()
	hook := &listHookStore{}
	lookUp := make(chan struct{})
	h := newHarness(t, withHeadsUp(20*time.Minute), func(c *approvals.Config) {
		hook.Store = c.Store
		c.Store = hook
		m := c.Notices.(*mock.Notices)
		orig := m.ChatUserByEmailFn
		m.ChatUserByEmailFn = func(ctx context.Context, email string) (string, error) {
			<-lookUp
			return orig(ctx, email)
		}
	})
	h.withUsers()
	r := h.open(pc2)
	h.approve(a1, r.ID)
	deadline := time.Now().Add(400 * time.Millisecond)
	if _, err := h.store.Store.Update(ctx, r.ID, func(r *approvals.Request) { r.ExpiresAt = deadline }); err != nil {
		t.Fatal(err)
	}
	listed, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook.mu.Lock()
	hook.afterList = func(rs []*approvals.Request) {
		for _, x := range rs {
			if x.ID == r.ID && x.ExpiredAt(time.Now()) {
				once.Do(func() { close(listed); <-release })
			}
		}
	}
	hook.mu.Unlock()
	// In time: the approver confirms; finding the user in chat takes a moment.
	if _, err := h.w.Confirm(ctx, a1, r.ID, ""); err != nil {
		t.Fatal(err)
	}
	h.open(pc3) // nudges the scheduler: it now sleeps until the deadline
	h.waitClosed(listed, "the scheduler to list the request past its window")
	close(lookUp)
	sched := h.waitState(r.ID, approvals.StateScheduled)
	t.Logf("scheduled, send at %v, expires %v", sched.HeadsUp.SendAt.Format(time.Kitchen), sched.ExpiresAt.Format(time.Kitchen))
	close(release)
	time.Sleep(300 * time.Millisecond)
	got := h.get(r.ID)
	h.stop()
	if got.State != approvals.StateScheduled {
		t.Errorf("a request scheduled in time (expires %v) is %s: %q", sched.ExpiresAt, got.State, h.toldKinds(r.ID))
	}
}

// Approve with final set (details on the prompt, approver signed
// in already) now runs confirmed(), which moves the *approved* request to
// scheduled — a move the state machine does not allow from approved. The
// request is left in approved with no worker: nobody can approve, it never
// expires, and the Cloud PC is held until a restart.
func TestFinalApproveWithAWaitIsScheduled(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSignInTTL(time.Hour), withHeadsUp(20*time.Minute))
	h.withUsers()
	h.signedIn(a1, pc1)
	r := h.open(pc2) // carol's; the prompt shows the details
	if posted := h.notes.postedFor(r.ID); len(posted) != 1 || posted[0].Device == nil {
		t.Fatalf("prompt %+v, want the details", posted)
	}
	if _, err := h.w.Approve(ctx, a1, r.ID, true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	got := h.get(r.ID)
	_, err := h.w.Approve(ctx, a2, r.ID, false)
	h.stop()
	if got.State != approvals.StateScheduled {
		t.Errorf("after a final Approve with a wait configured: %s (outcome %+v); told %q; a2's Approve: %v",
			got.State, got.Outcome, h.toldKinds(r.ID), err)
	}
}

// the store refuses the move to scheduled (busy, disk full) once.
// confirmed() only logs it: the request sits awaiting confirmation, nobody
// is told, the approver's Confirm click was answered as taken.
// execute() in the same spot reopens with OutcomeNotRecorded and tells both.
func TestScheduleNotStoredIsTold(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withHeadsUp(20*time.Minute))
	h.withUsers()
	r := h.open(pc2)
	h.approve(a1, r.ID)
	var once sync.Once
	h.store.failWhen(func(op string, to approvals.State) error {
		var err error
		if op == "transition" && to == approvals.StateScheduled {
			once.Do(func() { err = errStoreDown })
		}
		return err
	})
	before := len(h.notes.tellsOf(r.ID))
	if _, err := h.w.Confirm(ctx, a1, r.ID, ""); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the failed move", func() bool { return h.store.failures("transition") == 1 })
	time.Sleep(300 * time.Millisecond)
	h.drain()
	got := h.get(r.ID)
	told := h.notes.tellsOf(r.ID)[before:]
	h.stop()
	if got.State == approvals.StateConfirming && len(told) == 0 {
		t.Errorf("confirmed, the schedule not stored: left %s, nobody told", got.State)
	}
}

// the user had the heads-up; Graph accepted; tracking runs out
// (the Cloud PC stays provisioning). userNews held back their news ("they
// hear when it is ready") and stopTracking only tells them for provisioned
// or failed: they hear nothing more.
func TestTrackingTimesOutUserIsTold(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withHeadsUp(0), withTrackFor(200*time.Millisecond))
	h.withUsers()
	h.graph.set(func(g *fakeGraph) { g.afterPOST = []string{"provisioning"} })
	r := h.open(pc2)
	h.approve(a1, r.ID)
	h.confirm(a1, r.ID, approvals.StateSucceeded)
	h.waitFor("tracking to end", func() bool { return h.get(r.ID).Tracking.Result != "" })
	h.drain()
	h.stop()
	got := h.get(r.ID)
	if k := h.toldKinds(r.ID); !slices.ContainsFunc(k, func(s string) bool { return s != carol+":heads_up" && strings.HasPrefix(s, carol+":") }) {
		t.Errorf("tracking ended %s; carol was told only %q", got.Tracking.Result, k)
	}
}

// two approvals required; while the first approver signs in
// (approved), a second approver's Deny is refused as "already handled" and
// lost; once the first approval is recorded the request waits for a second
// approval again, as if nobody had said no.
func TestDenyDuringTheFirstApproversSignIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTwoApprovals)
	r := h.open(pc1)
	started, release := make(chan struct{}), make(chan struct{})
	h.signIn.next(h.signInWaits(started, release))
	if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	h.waitClosed(started, "a1's sign-in")
	denied, err := h.w.Deny(ctx, a2, r.ID, "not this week")
	if err != nil || denied.State != approvals.StateDenied {
		t.Fatalf("a2's Deny during a1's sign-in: %+v, %v", denied, err)
	}
	close(release)
	// a1's sign-in ends with the denial; their approval is moot.
	h.waitTold(r.ID, a1, approvals.NoticeStatus)
	h.stop()
	if got := h.get(r.ID); got.State != approvals.StateDenied || got.HasApproved(a1) {
		t.Errorf("after the denial: %s, approvals %+v", got.State, got.Approvals)
	}
	if _, err := h.w.Approve(ctx, a3, r.ID, false); err == nil {
		t.Error("a denied request could still be approved")
	}
}

// 7 (design question): after a restart the approver is told to sign
// in again to send; signing in for some other request (SIGNIN_TTL, default
// 1h) is enough: the scheduler sends with that reusable sign-in, and the
// request keeps SignInLost.
func TestRestartThenAnotherSignInDoesNotSend(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withHeadsUp(300*time.Millisecond), withSignInTTL(time.Hour))
	h.withUsers()
	r := h.open(pc2)
	h.approve(a1, r.ID)
	h.store.pauseScheduler()
	h.confirmScheduled(r.ID)
	h.restart()
	h.signedIn(a1, pc1) // another request
	time.Sleep(time.Second)
	got := h.get(r.ID)
	h.stop()
	if got.State != approvals.StateScheduled {
		t.Errorf("sent without Sign in to send: %s, SignInLost=%v, calls %q", got.State, got.HeadsUp.SignInLost, h.graph.reprovisioned())
	}
}
