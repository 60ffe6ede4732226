package approvals_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// The status gate at the look-up: a Cloud PC in a status not allowed is
// refused before the confirmation; the approver sees its status.
func TestStatusGateAtLookUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.setStatus(pc1, "inGracePeriod")
	r := h.open(pc1)
	if _, err := h.w.Approve(ctx, a1, r.ID, false); err != nil {
		t.Fatal(err)
	}
	failed := h.waitState(r.ID, approvals.StateFailed)
	h.stop()
	wantOutcome(t, failed, approvals.OutcomeStatusNotAllowed, "")
	if failed.Outcome.Status != "inGracePeriod" || !slices.Equal(failed.Outcome.Allowed, []string{"provisioned", "failed"}) {
		t.Errorf("outcome %+v", failed.Outcome)
	}
	if failed.Device == nil || failed.Device.Status != "inGracePeriod" {
		t.Errorf("Device %+v, want what was seen", failed.Device)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateFailed), note(a1, approvals.NoticeStatus, approvals.StateFailed))
	if len(h.notes.askedFor(r.ID)) != 0 || len(h.graph.reprovisioned()) != 0 {
		t.Error("asked to confirm or reprovisioned")
	}
	if e := h.eventsOf(r.ID, approvals.EventStatusRefused); len(e) != 1 || e[0].Details["status"] != "inGracePeriod" {
		t.Errorf("status_refused events %+v", e)
	}
	if e := h.eventsOf(r.ID, approvals.EventFailed); len(e) != 1 || e[0].Details["outcome"] != string(approvals.OutcomeStatusNotAllowed) || e[0].Details["status"] != "inGracePeriod" {
		t.Errorf("failed events %+v", e)
	}
}

// The status gate right before the POST: the Cloud PC changed status
// after the confirmation was shown.
func TestStatusGateAtReCheck(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSignInTTL(time.Hour))
	r := h.open(pc1)
	h.approve(a1, r.ID)
	h.graph.setStatus(pc1, "provisioning")
	failed := h.confirm(a1, r.ID, approvals.StateFailed)
	h.stop()
	wantOutcome(t, failed, approvals.OutcomeStatusNotAllowed, "")
	// (The stored Device stays as the confirmation showed it; the
	// outcome says what the re-check saw.)
	if failed.Outcome.Status != "provisioning" {
		t.Errorf("outcome %+v", failed.Outcome)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateFailed), note(a1, approvals.NoticeStatus, approvals.StateFailed))
	if len(h.graph.reprovisioned()) != 0 || h.graph.getCount() != 2 {
		t.Errorf("Graph: %d GETs, POSTs %v", h.graph.getCount(), h.graph.reprovisioned())
	}
}

// The re-check itself fails: a Cloud PC gone ends the request; a busy Graph
// leaves it approvable.
func TestReCheckFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		err   error
		state approvals.State
	}{
		{"404", &approvals.GraphError{Kind: approvals.GraphNotFound, Status: 404}, approvals.StateFailed},
		{"503", &approvals.GraphError{Kind: approvals.GraphThrottled, Status: 503, Retries: 3}, approvals.StatePending},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.graph.set(func(g *fakeGraph) {
				g.onGet = func(_ context.Context, n int, _ string) (*approvals.CloudPC, error) {
					if n == 2 {
						return nil, tc.err
					}
					return nil, nil
				}
			})
			r := h.open(pc1)
			h.approve(a1, r.ID)
			h.confirm(a1, r.ID, tc.state)
			h.waitFor("both told", func() bool { return len(h.notes.tellsOf(r.ID)) == 2 })
			h.stop()
			if len(h.graph.reprovisioned()) != 0 {
				t.Error("reprovisioned after a failed re-check")
			}
			wantOutcome(t, h.get(r.ID), approvals.OutcomeGraph, tc.err.(*approvals.GraphError).Kind)
		})
	}
}

// What the one POST's answer does to the request: accepted → succeeded;
// refused for the sign-in (401/403) → pending, to be approved with a fresh
// sign-in; refused otherwise (404/409/400/429/503/not sent) → failed; no
// answer, 5xx or timeout → outcome unknown. Never a second POST.
func TestReprovisionOutcomes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		err   error
		state approvals.State
		event approvals.EventKind
	}{
		{"401", graphErr(approvals.GraphSignInAgain, approvals.CauseUnauthorized, 401), approvals.StatePending, approvals.EventFailed},
		{"401 token expired", graphErr(approvals.GraphSignInAgain, approvals.CauseTokenExpired, 0), approvals.StatePending, approvals.EventFailed},
		{"403", graphErr(approvals.GraphSignInAgain, approvals.CauseForbidden, 403), approvals.StatePending, approvals.EventFailed},
		{"404", graphErr(approvals.GraphNotFound, approvals.CauseNotFound, 404), approvals.StateFailed, approvals.EventFailed},
		{"409", graphErr(approvals.GraphConflict, approvals.CauseConflict, 409), approvals.StateFailed, approvals.EventFailed},
		{"400", graphErr(approvals.GraphConflict, approvals.CauseConflict, 400), approvals.StateFailed, approvals.EventFailed},
		{"429", graphErr(approvals.GraphThrottled, approvals.CauseThrottled, 429), approvals.StateFailed, approvals.EventFailed},
		{"503", graphErr(approvals.GraphThrottled, approvals.CauseThrottled, 503), approvals.StateFailed, approvals.EventFailed},
		{"other 4xx", graphErr(approvals.GraphFailed, approvals.CauseRefused, 422), approvals.StateFailed, approvals.EventFailed},
		{"not sent", graphErr(approvals.GraphFailed, approvals.CauseNotSent, 0), approvals.StateFailed, approvals.EventFailed},
		{"500", graphErr(approvals.GraphOutcomeUnknown, approvals.CauseServerError, 500), approvals.StateOutcomeUnknown, approvals.EventOutcomeUnknown},
		{"502", graphErr(approvals.GraphOutcomeUnknown, approvals.CauseServerError, 502), approvals.StateOutcomeUnknown, approvals.EventOutcomeUnknown},
		{"timeout", graphErr(approvals.GraphOutcomeUnknown, approvals.CauseNoAnswer, 0), approvals.StateOutcomeUnknown, approvals.EventOutcomeUnknown},
		{"not a Graph error", errors.New("port broke its contract"), approvals.StateFailed, approvals.EventFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, withSignInTTL(time.Hour), withTrackFor(time.Hour))
			h.graph.set(func(g *fakeGraph) {
				g.onReprovision = func(context.Context, string) error { return tc.err }
			})
			r := h.open(pc1)
			h.approve(a1, r.ID)
			got := h.confirm(a1, r.ID, tc.state)
			// The outbox loop may tell before the outcome's audit record
			// is written (the move and its notices commit together).
			h.waitFor("requester told and the outcome audited", func() bool {
				return len(h.notes.tellsOf(r.ID)) == 1 && len(h.eventsOf(r.ID, tc.event)) == 1
			})

			wantKind := approvals.GraphFailed
			var ge *approvals.GraphError
			if errors.As(tc.err, &ge) {
				wantKind = ge.Kind
			}
			wantOutcome(t, got, approvals.OutcomeGraph, wantKind)
			if ge != nil && (got.Outcome.Graph.Status != ge.Status || got.Outcome.Graph.Code != ge.Code || got.GraphRequestID != ge.RequestID) {
				t.Errorf("outcome %+v, GraphRequestID %q; want Graph's facts %+v", got.Outcome.Graph, got.GraphRequestID, ge)
			}
			if ge == nil && got.Outcome.Graph.Cause != approvals.CauseUnexpected {
				t.Errorf("cause %s, want %s", got.Outcome.Graph.Cause, approvals.CauseUnexpected)
			}
			if got.Tracking.Active() {
				t.Error("tracking a reprovision Graph did not accept")
			}
			h.wantTold(r.ID, note(alice, approvals.NoticeStatus, tc.state))
			if last := h.notes.lastPrompt(t, r.ID); last.State != tc.state {
				t.Errorf("prompt shows %s", last.State)
			}
			e := h.eventsOf(r.ID, tc.event)
			if len(e) != 1 || e[0].Details["graph_kind"] != string(wantKind) || (ge != nil && e[0].Details["request_id"] != ge.RequestID) {
				t.Errorf("%s events %+v", tc.event, e)
			}
			if tc.state == approvals.StatePending {
				// Approvable again, with a fresh sign-in: the refused
				// one is not reused.
				h.approve(a1, r.ID)
				if n := h.signIn.count(); n != 2 {
					t.Errorf("%d sign-ins, want a fresh one after Graph refused the token", n)
				}
			}
			h.stop()
			if n := len(h.graph.reprovisioned()); n != 1 {
				t.Errorf("%d reprovision calls, want 1", n)
			}
		})
	}
}

// Between the re-check and the call the request expired (its confirmation
// window closed): nothing is sent.
func TestExpiresBeforeTheCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.open(pc1)
	h.approve(a1, r.ID)
	h.store.pauseScheduler()
	deadline := time.Now().Add(300 * time.Millisecond)
	if _, err := h.store.Store.Update(ctx, r.ID, func(r *approvals.Request) { r.ExpiresAt = deadline }); err != nil {
		t.Fatal(err)
	}
	h.graph.set(func(g *fakeGraph) {
		g.onGet = func(ctx context.Context, n int, _ string) (*approvals.CloudPC, error) {
			for n == 2 && !time.Now().After(deadline) { // the re-check takes its time
				time.Sleep(time.Millisecond)
			}
			return nil, nil
		}
	})
	_, err := h.w.Confirm(ctx, a1, r.ID, "")
	if err != nil {
		// Slower than the deadline already: refused at the click instead.
		wantRefusal(t, err, approvals.RefusedExpired)
		t.Log("the click itself came after the deadline")
	}
	h.waitState(r.ID, approvals.StateExpired)
	h.waitFor("requester told", func() bool { return len(h.notes.tellsOf(r.ID)) == 1 })
	h.stop()
	h.wantTold(r.ID, note(alice, approvals.NoticeExpired, approvals.StateExpired))
	if len(h.graph.reprovisioned()) != 0 {
		t.Error("reprovisioned after the deadline")
	}
}

// The request moved on while the re-check ran (the scheduler expired it):
// no call; the approver is told where it stands.
func TestRequestMovesOnBeforeTheCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	release := make(chan struct{})
	inGet := h.holdGet(2, release)
	r := h.open(pc1)
	h.approve(a1, r.ID)
	if _, err := h.w.Confirm(ctx, a1, r.ID, ""); err != nil {
		t.Fatal(err)
	}
	h.waitClosed(inGet, "inGet")
	if _, err := h.store.Store.Update(ctx, r.ID, func(r *approvals.Request) { r.ExpiresAt = time.Now().Add(-time.Second) }); err != nil {
		t.Fatal(err)
	}
	h.open(pc2) // a new request wakes the scheduler
	h.waitState(r.ID, approvals.StateExpired)
	h.waitFor("requester told", func() bool { return len(h.notes.tellsOf(r.ID)) == 1 })
	close(release)
	h.waitFor("approver told", func() bool { return len(h.notes.tellsOf(r.ID)) == 2 })
	h.stop()
	h.wantTold(r.ID, note(alice, approvals.NoticeExpired, approvals.StateExpired), note(a1, approvals.NoticeStatus, approvals.StateExpired))
	if len(h.graph.reprovisioned()) != 0 {
		t.Error("reprovisioned a request that moved on")
	}
}

// The store cannot mark the request executing: Graph is not called.
func TestNotMarkedExecuting(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.store.failWhen(func(op string, to approvals.State) error {
		if op == "transition" && to == approvals.StateExecuting {
			return errStoreDown
		}
		return nil
	})
	r := h.open(pc1)
	h.approve(a1, r.ID)
	got := h.confirm(a1, r.ID, approvals.StatePending)
	h.stop()
	wantOutcome(t, got, approvals.OutcomeNotRecorded, "")
	if len(h.graph.reprovisioned()) != 0 {
		t.Error("Graph called without the request marked executing")
	}
}

// Graph accepted but the store refuses the outcome until the stop: both are
// told what Graph said, and the next start settles the request from the
// call's audit record, which did get in: succeeded, not outcome unknown,
// and never sent again.
func TestOutcomeNotStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTrackFor(time.Hour))
	h.store.failWhen(func(op string, to approvals.State) error {
		if op == "transition" && to == approvals.StateSucceeded {
			return errStoreDown
		}
		return nil
	})
	r := h.open(pc1)
	h.approve(a1, r.ID)
	if _, err := h.w.Confirm(ctx, a1, r.ID, ""); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the outcome tried again", func() bool { return h.store.failures("transition") >= 3 })
	h.stop()
	h.wantTold(r.ID, note(alice, approvals.NoticeNotRecorded, approvals.StateExecuting), note(a1, approvals.NoticeNotRecorded, approvals.StateExecuting))
	for _, n := range h.notes.tellsOf(r.ID) {
		if !n.Accepted || n.Why != nil {
			t.Errorf("told %+v, want accepted", n)
		}
	}
	if got := h.get(r.ID); got.State != approvals.StateExecuting {
		t.Fatalf("state %s", got.State)
	}

	h.store.failWhen(nil)
	h.start()
	done := h.waitState(r.ID, approvals.StateSucceeded)
	h.stop()
	if done.Outcome != nil || done.GraphRequestID == "" || !done.Tracking.Active() {
		t.Errorf("settled from the record as %+v, request-id %q, tracking %+v", done.Outcome, done.GraphRequestID, done.Tracking)
	}
	if n := len(h.graph.reprovisioned()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}
}

// The store is busy for a while right after Graph answers (another
// connection holds the write lock; the disk is full): the answer is kept and
// written once the store takes it, the call's record too, and the requester
// hears the outcome, not "could not record".
func TestOutcomeWaitsForABusyStore(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// From the moment Graph answers, the store refuses the outcome and the
	// call's record five times each (the old code tried three times in 3 s
	// and wrote the record once).
	var mu sync.Mutex
	posted, outcomes, records := false, 0, 0
	h.graph.set(func(g *fakeGraph) {
		g.onReprovision = func(context.Context, string) error {
			mu.Lock()
			defer mu.Unlock()
			posted = true
			return nil
		}
	})
	h.store.failWhen(func(op string, to approvals.State) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case !posted:
		case op == "transition" && to == approvals.StateSucceeded && outcomes < 5:
			outcomes++
			return errStoreDown
		case op == "record" && records < 5:
			records++
			return errStoreDown
		}
		return nil
	})
	r := h.open(pc1)
	h.approve(a1, r.ID)
	done := h.confirm(a1, r.ID, approvals.StateSucceeded)
	h.waitFor("the requester told", func() bool { return len(h.notes.tellsOf(r.ID)) == 1 })
	h.stop()
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateSucceeded))
	if done.GraphRequestID == "" {
		t.Error("Graph's request-id not kept")
	}
	posts := 0
	for _, e := range h.eventsOf(r.ID, approvals.EventGraphCall) {
		if e.Details["method"] == "POST" && e.Details["status"] == "204" {
			posts++
		}
	}
	if posts != 1 || len(h.eventsOf(r.ID, approvals.EventSucceeded)) != 1 {
		t.Errorf("audit trail %v: want the POST's record and the outcome", h.kinds(r.ID))
	}
}

// A restart finds a request executing whose call's answer is in the audit
// trail: the recorded status decides (a refusal is a failure, a refusal of
// the sign-in sends it back to pending), never "outcome unknown".
func TestRestartSettlesFromTheRecordedAnswer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		want   approvals.State
	}{
		{204, approvals.StateSucceeded},
		{409, approvals.StateFailed},
		{401, approvals.StatePending},
		{500, approvals.StateOutcomeUnknown},
	} {
		h := newHarness(t)
		h.stop()
		r := h.seed(pc1, func(r *approvals.Request) { r.DecidedBy, r.SignedInAs = a1, upn1 },
			approvals.StateApproved, approvals.StateExecuting)
		if err := h.store.Store.Record(ctx, approvals.Event{Time: time.Now().UTC(), RequestID: r.ID, Kind: approvals.EventGraphCall,
			Actor: a1, Details: map[string]string{"method": "POST", "status": fmt.Sprint(tc.status), "request_id": "rid-9"}}); err != nil {
			t.Fatal(err)
		}
		h.start()
		got := h.waitState(r.ID, tc.want)
		h.stop()
		if got.GraphRequestID != "rid-9" {
			t.Errorf("HTTP %d: request-id %q, want Graph's", tc.status, got.GraphRequestID)
		}
		if tc.want == approvals.StateOutcomeUnknown && (got.Outcome == nil || got.Outcome.Kind != approvals.OutcomeGraph) {
			t.Errorf("HTTP %d: outcome %+v", tc.status, got.Outcome)
		}
		h.wantTold(r.ID, note(alice, approvals.NoticeStatus, tc.want), note(a1, approvals.NoticeStatus, tc.want))
		if len(h.graph.reprovisioned()) != 0 {
			t.Errorf("HTTP %d: sent again", tc.status)
		}
	}
}

// Stop while the POST is in flight: the call gets the shutdown grace, then
// is cut off; the outcome is recorded as unknown and the requester told.
func TestStopDuringTheCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *approvals.Config) { c.ShutdownGrace = 100 * time.Millisecond })
	inCall := make(chan struct{})
	h.graph.set(func(g *fakeGraph) {
		g.onReprovision = func(ctx context.Context, _ string) error {
			close(inCall)
			<-ctx.Done()
			return &approvals.GraphError{Kind: approvals.GraphOutcomeUnknown, Cause: approvals.CauseNoAnswer, Method: "POST", Err: ctx.Err()}
		}
	})
	r := h.open(pc1)
	h.approve(a1, r.ID)
	if _, err := h.w.Confirm(ctx, a1, r.ID, ""); err != nil {
		t.Fatal(err)
	}
	h.waitClosed(inCall, "inCall")
	begin := time.Now()
	h.stop()
	if took := time.Since(begin); took < 100*time.Millisecond || took > 5*time.Second {
		t.Errorf("Stop took %v, want the grace (100ms) and little more", took)
	}
	got := h.get(r.ID)
	if got.State != approvals.StateOutcomeUnknown {
		t.Fatalf("state %s", got.State)
	}
	wantOutcome(t, got, approvals.OutcomeGraph, approvals.GraphOutcomeUnknown)
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateOutcomeUnknown))
	if e := h.eventsOf(r.ID, approvals.EventGraphCall); len(e) != 3 || e[2].Details["status"] != "0" || e[2].Details["error"] == "" {
		t.Errorf("graph calls audited %+v", e)
	}
	// Started again, it is not sent again.
	h.start()
	h.stop()
	if n := len(h.graph.reprovisioned()); n != 1 {
		t.Errorf("%d reprovision calls", n)
	}
}

// What Confirm and Approve return is the caller's: the worker they start
// keeps its own copy, so the adapter may read it while the worker runs
// (go test -race catches a shared one).
func TestConfirmReturnsTheCallersOwnRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSignInTTL(time.Hour))
	r := h.open(pc1)
	h.approve(a1, r.ID)
	h.waitAsked(r.ID, 1)
	h.graph.setStatus(pc1, "provisioning") // the worker's re-check refuses
	confirmed, err := h.w.Confirm(ctx, a1, r.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitLimit)
	for h.get(r.ID).State != approvals.StateFailed && time.Now().Before(deadline) {
		if confirmed.Device == nil || confirmed.Device.Status != "provisioned" {
			t.Fatalf("the returned request changed under the caller: %+v", confirmed.Device)
		}
	}
	h.stop()
}
