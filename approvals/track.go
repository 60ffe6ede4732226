package approvals

import (
	"context"
	"slices"
	"strings"
	"time"
)

// maxTrackInterval caps the backoff between looks at a reprovisioning Cloud
// PC: reprovisioning takes tens of minutes, no need to look more often, nor
// to leave people waiting much longer than that for the news.
const maxTrackInterval = 15 * time.Minute

// actionClockSkew: Graph stamps the reprovision action when it accepts the
// call, a little before the bot records Tracking.Since.
const actionClockSkew = 5 * time.Minute

// trackInterval is the wait before look number checks+1: TrackEvery, then
// doubling.
func (w *Workflow) trackInterval(checks int) time.Duration {
	d := w.cfg.TrackEvery
	for i := 0; i < checks && d < maxTrackInterval; i++ {
		d *= 2
	}
	return min(d, maxTrackInterval)
}

// track looks at a reprovisioning Cloud PC once (one GET, plus the remote
// action results when the status alone cannot tell) and records what it
// saw. It returns the updated request (nil if it could not be stored).
func (w *Workflow) track(ctx context.Context, r *Request) *Request {
	if r.IsBatch() {
		return w.trackBatch(ctx, r)
	}
	s := w.sessions.forRequest(r.ID, r.DecidedBy)
	if s == nil {
		return w.pauseTracking(ctx, r)
	}
	device, call, err := s.CloudPCs.Get(ctx, r.CloudPCID)
	w.auditGraphCalls(r.ID, r.DecidedBy, call)
	now := time.Now().UTC()
	t := r.Tracking
	var news []Outgoing // stored with what this look saw
	t.Checks++
	t.NextCheck = now.Add(w.trackInterval(t.Checks))
	if err != nil {
		ge := asGraphError(err, "GET")
		w.log.Warn("tracking look failed", "ref", r.ID, "kind", string(ge.Kind), "err", err)
		if ge.Kind == GraphSignInAgain {
			w.sessions.forget(r.DecidedBy, r.ID, ge.Claims)
			return w.pauseTracking(ctx, r)
		}
	} else {
		seen := device.Status
		// A first look that still reads the starting status says nothing
		// new: no progress note for it.
		unchanged := t.LastStatus == "" && endStatus(seen)
		if result := w.trackResult(ctx, s, r, t, seen); result != "" {
			t.Result = result
		} else if seen != t.LastStatus && !unchanged {
			news = append(news, progress(r, Progress{Kind: ProgressStatus, Status: seen, Detail: device.StatusDetails}))
		}
		t.LastStatus = seen
		r.Device = &device
	}
	if t.Result != "" || !now.Before(t.Until) {
		return w.stopTracking(ctx, r, t, news...)
	}
	updated, uerr := w.apply(ctx, r.ID, Change{
		Update: func(u *Request) { u.Tracking, u.Device = t, r.Device },
		Notify: func(*Request) []Outgoing { return news },
	})
	if uerr != nil {
		w.log.Error("tracking state not stored", "ref", r.ID, "err", uerr)
		return nil
	}
	w.audit(ctx, r.ID, EventTracked, "", map[string]string{"status": t.LastStatus})
	return updated
}

// stopTracking records how following r ended (t.Result; timed out when
// empty), frees its Cloud PC, and tells everyone (after news, the last
// look's).
func (w *Workflow) stopTracking(ctx context.Context, r *Request, t Tracking, news ...Outgoing) *Request {
	if t.Result == "" {
		t.Result = TrackTimedOut
	}
	t.Paused = false
	updated, err := w.apply(ctx, r.ID, Change{
		Update: func(u *Request) {
			u.Tracking, u.Device = t, r.Device
			timeOutMembers(u.Batch) // a batch nobody could look at any more
		},
		Notify: func(u *Request) []Outgoing {
			out := append(news, redraw(u), progress(u, Progress{Kind: ProgressEnded}))
			ready := u.HeadsUp.Told() // provisioned, failed or timed out: the bot words each
			if ready {
				out = append(out, notice(u.HeadsUp.UserID, Notice{Kind: NoticeUserReady, Request: u}))
			}
			if !ready || u.HeadsUp.UserID != u.RequesterID { // one message each
				out = append(out, notice(u.RequesterID, Notice{Kind: NoticeStatus, Request: u}))
			}
			return out
		},
	})
	if err != nil {
		w.log.Error("tracking result not stored", "ref", r.ID, "err", err)
		return nil
	}
	w.sessions.release(r.ID)
	w.log.Info("tracking finished", "ref", r.ID, "result", t.Result)
	w.audit(ctx, r.ID, EventTracked, "", map[string]string{"status": t.LastStatus, "result": t.Result})
	return updated
}

// trackResult decides from the status seen now whether this reprovision has
// ended. "provisioned" or "failed" alone is not enough: a Cloud PC reads so
// before the reprovision starts too (failed is an allowed starting status).
// It has ended when a working status (provisioning, …) was seen before, or
// when the reprovision action that began with this request says so.
func (w *Workflow) trackResult(ctx context.Context, s *Session, r *Request, t Tracking, seen string) string {
	var want, actionState string
	switch {
	case seen == "failed":
		want, actionState = TrackFailed, "failed"
	case endStatus(seen):
		want, actionState = TrackProvisioned, "done"
	default:
		return ""
	}
	if t.LastStatus != "" && !endStatus(t.LastStatus) {
		return want
	}
	if w.reprovisionActionState(ctx, s, r, t.Since) == actionState {
		return want
	}
	return ""
}

// endStatus: the statuses a reprovision ends in (and may start from).
func endStatus(status string) bool {
	switch status {
	case "provisioned", "provisionedWithWarnings", "failed":
		return true
	}
	return false
}

// reprovisionActionState is the state of the reprovision remote action that
// began with this request (one GET), or "" when there is none yet.
func (w *Workflow) reprovisionActionState(ctx context.Context, s *Session, r *Request, since time.Time) string {
	actions, call, err := s.CloudPCs.RemoteActions(ctx, r.CloudPCID)
	w.auditGraphCalls(r.ID, r.DecidedBy, call)
	if err != nil {
		return ""
	}
	var latest *RemoteAction
	for i := range actions {
		a := &actions[i]
		if !strings.EqualFold(a.Name, "reprovision") || a.Started.Before(since.Add(-actionClockSkew)) {
			continue
		}
		if latest == nil || a.Started.After(latest.Started) {
			latest = a
		}
	}
	if latest == nil {
		return ""
	}
	return latest.State
}

// pauseTracking records that nobody is signed in to look with, and offers
// to resume on the prompt.
func (w *Workflow) pauseTracking(ctx context.Context, r *Request) *Request {
	updated, err := w.apply(ctx, r.ID, Change{
		Update: func(r *Request) { r.Tracking.Paused = true },
		Notify: func(r *Request) []Outgoing { return []Outgoing{redraw(r), progress(r, Progress{Kind: ProgressPaused})} },
	})
	if err != nil {
		w.log.Error("could not pause tracking", "ref", r.ID, "err", err)
		return nil
	}
	w.log.Info("tracking paused: no valid sign-in", "ref", r.ID)
	return updated
}

// ResumeTracking signs an approver in again (unless they are signed in) and
// restarts the follow-through of a paused reprovision, in the background.
func (w *Workflow) ResumeTracking(ctx context.Context, user, ref string) (*Request, error) {
	r, err := w.load(ctx, ref, ActionResume)
	if err != nil {
		return nil, err
	}
	if approvers := w.cfg.Policy.ApproversOf(r); !slices.Contains(approvers, user) {
		return nil, w.refuse(ctx, user, &Refusal{Kind: RefusedNotAnApprover, Action: ActionResume, Request: r, Users: approvers})
	}
	if r.State != StateSucceeded || !r.Tracking.Active() || !r.Tracking.Paused {
		return nil, &Refusal{Kind: RefusedNotPaused, Action: ActionResume, Ref: r.ID, Request: r}
	}
	if !w.inFlight.claim(r.ID) {
		return nil, &Refusal{Kind: RefusedBusy, Action: ActionResume, Ref: r.ID, Request: r}
	}
	w.spawn(func() {
		defer w.inFlight.remove(r.ID)
		w.resume(r, user)
	})
	return r, nil
}

func (w *Workflow) resume(r *Request, user string) {
	s := w.sessions.valid(user)
	if s == nil {
		var err error
		if s, err = w.signIn(r, user, SignInToResumeTracking); err != nil {
			w.tell(user, Notice{Kind: NoticeStillPaused, Request: r, Why: w.signInOutcome(err)})
			return
		}
	}
	w.sessions.pin(r.ID, s)
	ctx, cancel := context.WithTimeout(w.execCtx, workTimeout)
	defer cancel()
	_, err := w.apply(ctx, r.ID, Change{
		Update: func(r *Request) {
			r.Tracking.Paused = false
			r.Tracking.NextCheck = time.Now().UTC()
		},
		Notify: func(r *Request) []Outgoing { return []Outgoing{redraw(r)} },
	})
	if err != nil {
		w.log.Error("could not resume tracking", "ref", r.ID, "err", err)
		return
	}
	w.log.Info("tracking resumed", "ref", r.ID, "by", user)
	w.nudge()
}
