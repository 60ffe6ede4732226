package approvals_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// together runs fns at the same moment, each in its own goroutine, and
// returns their errors.
func together(fns ...func() error) []error {
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, len(fns))
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn()
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// refusedAs checks that err is a refusal of one of kinds.
func refusedAs(t *testing.T, err error, kinds ...approvals.RefusalKind) {
	t.Helper()
	var r *approvals.Refusal
	if !errors.As(err, &r) {
		t.Fatalf("got %v, want a refusal (%v)", err, kinds)
	}
	for _, k := range kinds {
		if r.Kind == k {
			return
		}
	}
	t.Fatalf("refusal %s, want one of %v", r.Kind, kinds)
}

// Two approvers click Approve at once: one decides, the other is told it
// was handled; one sign-in, one reprovision.
func TestRacingApprovers(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for i, id := range []string{pc1, pc2, pc3} {
		r := h.open(id)
		errs := together(
			func() error { _, err := h.w.Approve(ctx, a1, r.ID, false); return err },
			func() error { _, err := h.w.Approve(ctx, a2, r.ID, false); return err },
		)
		winner, loser := a1, errs[1]
		if errs[0] != nil {
			winner, loser = a2, errs[0]
			if errs[1] != nil {
				t.Fatalf("both approvals refused: %v", errs)
			}
		}
		refusedAs(t, loser, approvals.RefusedHandled)
		asked := h.waitAsked(r.ID, 1)
		if asked.DecidedBy != winner {
			t.Fatalf("decided by %s, want the winner %s", asked.DecidedBy, winner)
		}
		h.confirm(winner, r.ID, approvals.StateSucceeded)
		if n := len(h.eventsOf(r.ID, approvals.EventApproved)); n != 1 {
			t.Errorf("round %d: %d approved events", i, n)
		}
	}
	h.stop()
	if n, m := h.signIn.count(), len(h.graph.reprovisioned()); n != 3 || m != 3 {
		t.Errorf("%d sign-ins, %d reprovisions; want one each per request", n, m)
	}
}

// The same Confirm clicked three times at once (a double click and a
// redelivered event): one reprovision.
func TestRacingConfirms(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	h.approve(a1, r.ID)
	confirm := func() error { _, err := h.w.Confirm(ctx, a1, r.ID, ""); return err }
	errs := together(confirm, confirm, confirm)
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			refusedAs(t, err, approvals.RefusedBusy, approvals.RefusedHandled)
		}
	}
	if ok != 1 {
		t.Fatalf("%d confirmations went through: %v", ok, errs)
	}
	h.waitState(r.ID, approvals.StateSucceeded)
	h.stop()
	if n := len(h.graph.reprovisioned()); n != 1 {
		t.Errorf("%d reprovision calls", n)
	}
	if n := len(h.eventsOf(r.ID, approvals.EventConfirmed)); n != 1 {
		t.Errorf("%d confirmed events", n)
	}
}

// Reprovision now and Cancel at once: either it is sent once, or canceled
// and never sent.
func TestConfirmRacesAbort(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	sent := 0
	for round := range 4 {
		r := h.open(pc1)
		h.approve(a1, r.ID)
		errs := together(
			func() error { _, err := h.w.Confirm(ctx, a1, r.ID, ""); return err },
			func() error { _, err := h.w.Abort(ctx, a1, r.ID); return err },
		)
		var final *approvals.Request
		h.waitFor(fmt.Sprintf("round %d to settle", round), func() bool {
			final = h.get(r.ID)
			return final.State == approvals.StateSucceeded || final.State == approvals.StateCanceled
		})
		switch final.State {
		case approvals.StateSucceeded:
			sent++
			if errs[0] != nil {
				t.Errorf("sent, but Confirm = %v", errs[0])
			}
			refusedAs(t, errs[1], approvals.RefusedBusy, approvals.RefusedHandled)
		case approvals.StateCanceled:
			if errs[1] != nil {
				t.Errorf("canceled, but Abort = %v", errs[1])
			}
			// Confirm lost: refused (its sign-in already released with
			// the cancel: stale), or its worker found the request
			// canceled and told the approver.
			if errs[0] != nil {
				refusedAs(t, errs[0], approvals.RefusedBusy, approvals.RefusedHandled, approvals.RefusedSignInStale)
			} else {
				h.waitFor("the approver told", func() bool {
					for _, n := range h.notes.tellsOf(r.ID) {
						if n.User == a1 && n.State == approvals.StateCanceled {
							return true
						}
					}
					return false
				})
			}
		}
	}
	h.stop()
	if n := len(h.graph.reprovisioned()); n != sent {
		t.Errorf("%d reprovision calls for %d requests that went ahead", n, sent)
	}
}

// The requester cancels as an approver approves: whichever comes first,
// the request ends canceled, a sign-in under way ends, and nothing is sent.
func TestCancelRacesApprove(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for range 4 {
		r := h.open(pc1)
		h.signIn.next(h.signInWaits(make(chan struct{}), make(chan struct{})))
		errs := together(
			func() error { _, err := h.w.Cancel(ctx, alice, r.ID); return err },
			func() error { _, err := h.w.Approve(ctx, a1, r.ID, false); return err },
		)
		if errs[0] != nil {
			t.Fatalf("the requester's cancel was refused: %v", errs[0])
		}
		if errs[1] != nil {
			refusedAs(t, errs[1], approvals.RefusedHandled)
		}
		if got := h.get(r.ID); got.State != approvals.StateCanceled {
			t.Fatalf("after cancel and approve the request is %s", got.State)
		}
	}
	h.stop()
	if n := len(h.graph.reprovisioned()); n != 0 {
		t.Errorf("%d reprovision calls for canceled requests", n)
	}
}

// Both approvers signed in, the prompt showing the details, both click the
// final Approve at once: one reprovision, with the winner's sign-in.
func TestRacingFinalApprovals(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSignInTTL(time.Hour))
	for _, s := range []struct{ approver, id string }{{a1, pc2}, {a2, pc3}} {
		r := h.open(s.id)
		h.approve(s.approver, r.ID)
		if _, err := h.w.Abort(ctx, s.approver, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	r := h.open(pc1)
	if posted := h.notes.postedFor(r.ID); len(posted) != 1 || posted[0].Device == nil {
		t.Fatalf("prompt without the details: %+v", posted)
	}
	errs := together(
		func() error { _, err := h.w.Approve(ctx, a1, r.ID, true); return err },
		func() error { _, err := h.w.Approve(ctx, a2, r.ID, true); return err },
	)
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("Approve, Approve = %v", errs)
	}
	winner := a1
	for i, err := range errs {
		if err != nil {
			refusedAs(t, err, approvals.RefusedHandled)
		} else if i == 1 {
			winner = a2
		}
	}
	done := h.waitState(r.ID, approvals.StateSucceeded)
	h.stop()
	if done.DecidedBy != winner || done.SignedInAs != h.upnOf(winner) {
		t.Errorf("decided by %s signed in as %s; want %s", done.DecidedBy, done.SignedInAs, winner)
	}
	var forPC1 []string
	for _, p := range h.graph.reprovisioned() {
		if p[:len(pc1)] == pc1 {
			forPC1 = append(forPC1, p)
		}
	}
	if len(forPC1) != 1 || forPC1[0] != pc1+" by "+h.upnOf(winner) {
		t.Errorf("reprovisions of %s: %v", pc1, forPC1)
	}
	if n := h.signIn.count(); n != 2 || len(h.notes.askedFor(r.ID)) != 0 {
		t.Errorf("%d sign-ins and %d confirmations; the details were on the prompt", n, len(h.notes.askedFor(r.ID)))
	}
}
