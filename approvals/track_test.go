package approvals_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// reprovisioned runs a request for pc1 through to an accepted reprovision
// and returns it.
func (h *harness) reprovisioned() *approvals.Request {
	h.t.Helper()
	r := h.open(pc1)
	h.approve(a1, r.ID)
	done := h.confirm(a1, r.ID, approvals.StateSucceeded)
	if done.Tracking.Until.IsZero() {
		h.t.Fatalf("accepted reprovision not followed: %+v", done.Tracking)
	}
	return done
}

// waitTracked waits until following ref ended and returns it.
func (h *harness) waitTracked(ref string) *approvals.Request {
	h.t.Helper()
	var r *approvals.Request
	h.waitFor("tracking of "+ref+" to end", func() bool {
		r = h.get(ref)
		return r.Tracking.Result != ""
	})
	return r
}

// waitPaused waits until following ref is paused and returns it.
func (h *harness) waitPaused(ref string) *approvals.Request {
	h.t.Helper()
	var r *approvals.Request
	h.waitFor("tracking of "+ref+" to pause", func() bool {
		r = h.get(ref)
		return r.Tracking.Paused
	})
	return r
}

func progressKinds(ps []progressed) []approvals.ProgressKind {
	var out []approvals.ProgressKind
	for _, p := range ps {
		out = append(out, p.Kind)
	}
	return out
}

// Provisioning, then provisioned: the progress goes beside the prompt, the
// end to the requester and onto the prompt, and the Cloud PC is free again.
func TestTrackToProvisioned(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTrackFor(time.Minute))
	lookReady := make(chan struct{})
	h.graph.set(func(g *fakeGraph) {
		g.afterPOST = []string{"provisioning", "provisioning", "provisioned"}
		g.onGet = func(ctx context.Context, n int, _ string) (*approvals.CloudPC, error) {
			if n == 3 { // the first look waits until the test has looked
				select { // or the test gave up
				case <-lookReady:
				case <-ctx.Done():
				}
			}
			return nil, nil
		}
	})
	r := h.reprovisioned()
	if r.Tracking.Since.IsZero() || r.Tracking.Until.Sub(r.Tracking.Since) != time.Minute || r.Tracking.Checks != 0 {
		t.Errorf("tracking %+v, want it followed for TrackFor", r.Tracking)
	}
	// Held while followed.
	held, _ := h.w.NewRequest(bob, ops, pc1, "me too")
	wantRefusal(t, h.w.Open(ctx, held), approvals.RefusedOpenElsewhere)
	close(lookReady)

	done := h.waitTracked(r.ID)
	h.waitFor("requester told the end", func() bool { return len(h.notes.tellsOf(r.ID)) == 2 })
	h.stop()
	if done.State != approvals.StateSucceeded || done.Tracking.Result != approvals.TrackProvisioned ||
		done.Tracking.LastStatus != "provisioned" || done.Tracking.Checks != 3 || done.Device.Status != "provisioned" {
		t.Errorf("followed to %+v (device %+v)", done.Tracking, done.Device)
	}
	ps := h.notes.progressOf(r.ID)
	if got := progressKinds(ps); !slices.Equal(got, []approvals.ProgressKind{approvals.ProgressAccepted, approvals.ProgressStatus, approvals.ProgressEnded}) {
		t.Errorf("progress %v", got)
	}
	if ps[0].Every != 5*time.Millisecond || ps[1].Status != "provisioning" || ps[2].Result != approvals.TrackProvisioned {
		t.Errorf("progress %+v", ps)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateSucceeded), note(alice, approvals.NoticeStatus, approvals.StateSucceeded))
	if last := h.notes.lastPrompt(t, r.ID); last.Tracking.Result != approvals.TrackProvisioned {
		t.Errorf("prompt shows %+v", last.Tracking)
	}
	if h.graph.actionCount() != 0 || h.graph.getCount() != 5 {
		t.Errorf("Graph: %d GETs, %d remote-action reads; want 5 and 0", h.graph.getCount(), h.graph.actionCount())
	}
	tracked := h.eventsOf(r.ID, approvals.EventTracked)
	if len(tracked) != 3 || tracked[2].Details["result"] != approvals.TrackProvisioned {
		t.Errorf("tracked events %+v", tracked)
	}
	h.restart()
	h.open(pc1)
}

func TestTrackToFailed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTrackFor(time.Minute))
	h.graph.set(func(g *fakeGraph) { g.afterPOST = []string{"provisioning", "failed"} })
	r := h.reprovisioned()
	done := h.waitTracked(r.ID)
	h.stop()
	if done.Tracking.Result != approvals.TrackFailed {
		t.Errorf("result %q", done.Tracking.Result)
	}
	if got := progressKinds(h.notes.progressOf(r.ID)); !slices.Equal(got, []approvals.ProgressKind{approvals.ProgressAccepted, approvals.ProgressStatus, approvals.ProgressEnded}) {
		t.Errorf("progress %v", got)
	}
}

// A first look that still reads provisioned says nothing by itself: the
// reprovision action of this request tells (older ones and other actions
// do not count; a failed read of them says nothing either).
func TestTrackByRemoteAction(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTrackFor(time.Minute))
	h.graph.set(func(g *fakeGraph) {
		g.afterPOST = []string{"provisioned"}
		g.onActions = func(n int) ([]approvals.RemoteAction, error) {
			old := approvals.RemoteAction{Name: "Reprovision", State: "done", Started: time.Now().Add(-time.Hour)}
			reboot := approvals.RemoteAction{Name: "Reboot", State: "done", Started: time.Now()}
			ours := approvals.RemoteAction{Name: "reprovision", State: "active", Started: time.Now().Add(-time.Minute)}
			switch n {
			case 1:
				return []approvals.RemoteAction{old, reboot, ours}, nil
			case 2:
				return nil, &approvals.GraphError{Kind: approvals.GraphThrottled, Status: 429}
			case 3:
				return []approvals.RemoteAction{old}, nil
			}
			ours.State = "done"
			return []approvals.RemoteAction{old, ours}, nil
		}
	})
	r := h.reprovisioned()
	done := h.waitTracked(r.ID)
	h.stop()
	if done.Tracking.Result != approvals.TrackProvisioned || h.graph.actionCount() != 4 || done.Tracking.Checks != 4 {
		t.Errorf("result %q after %d action reads, %d checks", done.Tracking.Result, h.graph.actionCount(), done.Tracking.Checks)
	}
	if got := progressKinds(h.notes.progressOf(r.ID)); !slices.Equal(got, []approvals.ProgressKind{approvals.ProgressAccepted, approvals.ProgressEnded}) {
		t.Errorf("progress %v, want no status note for an unchanged status", got)
	}
}

// A Cloud PC reprovisioned from failed, failing again.
func TestTrackFailedAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTrackFor(time.Minute))
	h.graph.setStatus(pc1, "failed")
	h.graph.set(func(g *fakeGraph) {
		g.actions = []approvals.RemoteAction{{Name: "Reprovision", State: "failed", Started: time.Now().Add(time.Second)}}
	})
	r := h.reprovisioned()
	done := h.waitTracked(r.ID)
	h.stop()
	if done.Tracking.Result != approvals.TrackFailed || done.Tracking.Checks != 1 {
		t.Errorf("tracking %+v", done.Tracking)
	}
}

// Never seen to end: followed until TrackFor runs out, then everyone is
// told it timed out.
func TestTrackTimesOut(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTrackFor(300*time.Millisecond))
	h.graph.set(func(g *fakeGraph) { g.afterPOST = []string{"provisioned"} })
	r := h.reprovisioned()
	done := h.waitTracked(r.ID)
	h.waitFor("requester told the end", func() bool { return len(h.notes.tellsOf(r.ID)) == 2 })
	h.stop()
	if done.Tracking.Result != approvals.TrackTimedOut || time.Since(done.Tracking.Since) < 300*time.Millisecond {
		t.Errorf("tracking %+v", done.Tracking)
	}
	if ps := h.notes.progressOf(r.ID); len(ps) != 2 || ps[1].Kind != approvals.ProgressEnded || ps[1].Result != approvals.TrackTimedOut {
		t.Errorf("progress %+v", ps)
	}
	if done.Tracking.Checks < 1 || h.graph.getCount() != 2+done.Tracking.Checks {
		t.Errorf("%d looks recorded, %d GETs in all", done.Tracking.Checks, h.graph.getCount())
	}
}

// Graph errors while following: a busy Graph is looked at again later; a
// refused sign-in pauses it (the prompt offers to resume) and the next
// sign-in meets Graph's claims; an approver resumes it and it is followed
// to the end.
func TestTrackPausesAndResumes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTrackFor(time.Minute))
	const claims = `{"access_token":{"acrs":{"essential":true,"value":"c2"}}}`
	provisioning := h.graph.pc(pc1)
	provisioning.Status = "provisioning"
	provisioned := h.graph.pc(pc1)
	h.graph.set(func(g *fakeGraph) {
		g.onGet = func(_ context.Context, n int, _ string) (*approvals.CloudPC, error) {
			switch n { // 1 and 2: the look-up and the re-check
			case 3:
				return nil, &approvals.GraphError{Kind: approvals.GraphThrottled, Status: 429, Method: "GET"}
			case 4:
				return nil, &approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: approvals.CauseClaimsChallenge, Status: 401, Claims: claims}
			case 5:
				return &provisioning, nil
			}
			return &provisioned, nil
		}
	})
	r := h.reprovisioned()
	paused := h.waitPaused(r.ID)
	if !paused.Tracking.Active() || paused.Tracking.Checks != 1 {
		t.Errorf("paused tracking %+v", paused.Tracking)
	}
	h.waitFor("paused progress", func() bool {
		ps := h.notes.progressOf(r.ID)
		return len(ps) > 0 && ps[len(ps)-1].Kind == approvals.ProgressPaused
	})
	if last := h.notes.lastPrompt(t, r.ID); !last.Tracking.Paused {
		t.Errorf("prompt does not show it paused: %+v", last.Tracking)
	}

	_, err := h.w.ResumeTracking(ctx, bob, r.ID)
	if refusal := wantRefusal(t, err, approvals.RefusedNotAnApprover); !slices.Equal(refusal.Users, []string{a1, a2}) {
		t.Errorf("refusal names %v", refusal.Users)
	}
	h.wantRefusedClick(r.ID, bob, approvals.ActionResume, approvals.RefusedNotAnApprover)

	started, release := make(chan struct{}), make(chan struct{})
	h.signIn.next(h.signInWaits(started, release))
	h.retryResume(a1, r.ID)
	h.waitClosed(started, "started")
	_, err = h.w.ResumeTracking(ctx, a2, r.ID)
	wantRefusal(t, err, approvals.RefusedBusy)
	close(release)

	done := h.waitTracked(r.ID)
	h.stop()
	if done.Tracking.Result != approvals.TrackProvisioned || done.Tracking.Paused {
		t.Errorf("tracking %+v", done.Tracking)
	}
	calls := h.signIn.calls()
	if len(calls) != 2 || calls[1].Claims != claims || calls[1].Approver != a1 {
		t.Errorf("sign-ins %+v, want the resume's with the claims", calls)
	}
	if codes := h.notes.codesFor(r.ID); len(codes) != 2 || codes[1].Why != approvals.SignInToResumeTracking {
		t.Errorf("codes %+v", codes)
	}
	if got := progressKinds(h.notes.progressOf(r.ID)); !slices.Equal(got, []approvals.ProgressKind{approvals.ProgressAccepted,
		approvals.ProgressPaused, approvals.ProgressStatus, approvals.ProgressEnded}) {
		t.Errorf("progress %v", got)
	}
	if n := len(h.graph.reprovisioned()); n != 1 {
		t.Errorf("%d reprovision calls", n)
	}
	// Done: nothing left to resume.
	h.start()
	_, err = h.w.ResumeTracking(ctx, a1, r.ID)
	wantRefusal(t, err, approvals.RefusedNotPaused)
}

// A resume whose sign-in does not complete leaves tracking paused and tells
// who tried.
func TestResumeSignInFails(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTrackFor(time.Minute))
	h.stop()
	r := h.seedTracked(pc1, time.Minute)
	h.start()
	h.waitPaused(r.ID)
	h.signIn.next(signInFails(approvals.ErrSignInDeclined))
	if _, err := h.w.ResumeTracking(ctx, a2, r.ID); err != nil {
		t.Fatal(err)
	}
	h.waitFor("told", func() bool { return len(h.notes.tellsOf(r.ID)) == 1 })
	n := h.notes.tellsOf(r.ID)[0]
	if n.User != a2 || n.Kind != approvals.NoticeStillPaused || n.Why == nil || n.Why.Kind != approvals.OutcomeSignInDeclined {
		t.Errorf("told %+v", n)
	}
	if got := h.get(r.ID); !got.Tracking.Paused {
		t.Errorf("tracking %+v, want still paused", got.Tracking)
	}
	// Another try works (once the first has let go of the request).
	h.retryResume(a2, r.ID)
	done := h.waitTracked(r.ID)
	h.stop()
	if done.Tracking.Result != approvals.TrackProvisioned {
		t.Errorf("result %q", done.Tracking.Result)
	}
}

// retryResume has user resume ref, again while the workflow answers that
// an earlier resume is still being handled.
func (h *harness) retryResume(user, ref string) {
	h.t.Helper()
	h.waitFor("the resume to be taken", func() bool {
		_, err := h.w.ResumeTracking(ctx, user, ref)
		var refusal *approvals.Refusal
		if errors.As(err, &refusal) && refusal.Kind == approvals.RefusedBusy {
			return false
		}
		if err != nil {
			h.t.Fatalf("ResumeTracking = %v", err)
		}
		return true
	})
}

// seedTracked stores a request whose accepted reprovision of id is being
// followed (as a previous process left it), decided by a1.
func (h *harness) seedTracked(id string, left time.Duration) *approvals.Request {
	h.t.Helper()
	h.graph.set(func(g *fakeGraph) {
		g.actions = []approvals.RemoteAction{{Name: "Reprovision", State: "done", Started: time.Now()}}
	})
	now := time.Now().UTC()
	return h.seed(id, func(r *approvals.Request) {
		r.DecidedBy, r.SignedInAs, r.GraphRequestID = a1, upn1, "rid-seeded"
		r.Tracking = approvals.Tracking{Since: now, Until: now.Add(left), NextCheck: now}
	}, approvals.StateApproved, approvals.StateExecuting, approvals.StateSucceeded)
}

// Paused with nobody resuming: it still ends when TrackFor runs out, and
// frees the Cloud PC.
func TestPausedTrackingRunsOut(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.stop()
	r := h.seedTracked(pc1, 200*time.Millisecond)
	h.start()
	done := h.waitTracked(r.ID)
	h.waitFor("requester told", func() bool { return len(h.notes.tellsOf(r.ID)) == 1 })
	h.stop()
	if done.Tracking.Result != approvals.TrackTimedOut || done.Tracking.Paused {
		t.Errorf("tracking %+v", done.Tracking)
	}
	if got := progressKinds(h.notes.progressOf(r.ID)); !slices.Equal(got, []approvals.ProgressKind{approvals.ProgressPaused, approvals.ProgressEnded}) {
		t.Errorf("progress %v", got)
	}
	h.wantTold(r.ID, note(alice, approvals.NoticeStatus, approvals.StateSucceeded))
	if h.graph.getCount() != 0 {
		t.Error("looked without a sign-in")
	}
	h.start()
	h.open(pc1)
}

// An approver signed in already (for another request) resumes without a
// new sign-in.
func TestResumeWithValidSignIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withSignInTTL(time.Hour))
	h.stop()
	r := h.seedTracked(pc1, time.Minute)
	h.start()
	h.waitPaused(r.ID)
	other := h.open(pc2)
	h.approve(a1, other.ID)
	if _, err := h.w.ResumeTracking(ctx, a1, r.ID); err != nil {
		t.Fatal(err)
	}
	done := h.waitTracked(r.ID)
	h.stop()
	if done.Tracking.Result != approvals.TrackProvisioned || h.signIn.count() != 1 {
		t.Errorf("result %q with %d sign-ins", done.Tracking.Result, h.signIn.count())
	}
}

// Tracking state that cannot be stored: nothing is lost but time; the next
// pass looks again.
func TestTrackingNotStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTrackFor(time.Minute))
	h.graph.set(func(g *fakeGraph) { g.afterPOST = []string{"provisioning", "provisioning", "provisioned"} })
	h.store.failOps("update")
	r := h.reprovisioned()
	h.waitFor("a look that could not be stored", func() bool { return h.graph.getCount() >= 3 && h.store.failures("update") >= 2 })
	if got := h.get(r.ID); got.Tracking.Checks != 0 || got.Tracking.LastStatus != "" {
		t.Errorf("tracking %+v stored", got.Tracking)
	}
	h.store.failWhen(nil)
	h.open(pc2) // wakes the scheduler
	done := h.waitTracked(r.ID)
	h.stop()
	if done.Tracking.Result != approvals.TrackProvisioned {
		t.Errorf("result %q", done.Tracking.Result)
	}
}

// Pausing that cannot be stored is tried again at the next pass; a resume
// that cannot be stored leaves it paused, to be resumed again.
func TestPauseAndResumeNotStored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withTrackFor(time.Minute))
	h.stop()
	r := h.seedTracked(pc1, time.Minute)
	h.store.failOps("update")
	h.start()
	h.waitFor("the start and the scheduler to try pausing", func() bool { return h.store.failures("update") >= 2 })
	if got := h.get(r.ID); got.Tracking.Paused || len(h.notes.progressOf(r.ID)) != 0 {
		t.Errorf("paused without storing it: %+v", got.Tracking)
	}
	h.store.failWhen(nil)
	h.open(pc2) // wakes the scheduler
	h.waitPaused(r.ID)

	h.store.failOps("update")
	if _, err := h.w.ResumeTracking(ctx, a1, r.ID); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the resume to give up", func() bool { return h.store.failures("update") >= 3 })
	h.store.failWhen(nil)
	// Claimed until the resume gave up; then another try goes through.
	h.retryResume(a1, r.ID)
	done := h.waitTracked(r.ID)
	h.stop()
	if done.Tracking.Result != approvals.TrackProvisioned {
		t.Errorf("result %q", done.Tracking.Result)
	}
	if n := h.signIn.count(); n != 2 {
		t.Errorf("%d sign-ins, want 2 (no reuse with SignInTTL 0)", n)
	}
}
