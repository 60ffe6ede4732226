package bot

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/graph"
)

// maxTrackInterval caps the backoff between looks at a reprovisioning
// Cloud PC: reprovisioning takes tens of minutes, no need to look more often,
// nor to leave people waiting much longer than that for the news.
const maxTrackInterval = 15 * time.Minute

// trackInterval is the wait before look number checks+1: TrackEvery, then
// doubling.
func (b *Bot) trackInterval(checks int) time.Duration {
	d := b.cfg.TrackEvery
	for i := 0; i < checks && d < maxTrackInterval; i++ {
		d *= 2
	}
	return min(d, maxTrackInterval)
}

// track looks at a reprovisioning Cloud PC once (one GET, plus the remote
// action results when the status alone cannot tell) and records what it
// saw. It returns the updated request.
func (b *Bot) track(ctx context.Context, r *approvals.Request) *approvals.Request {
	log := b.log.With("ref", r.ID)
	s := b.sessions.forRequest(r.ID, r.DecidedBy)
	if s == nil {
		return b.pauseTracking(ctx, r)
	}
	client, err := graph.NewClient(s.Credential(), b.cfg.Graph)
	if err != nil {
		return b.pauseTracking(ctx, r)
	}
	device, call, err := client.GetCloudPC(ctx, r.CloudPCID)
	b.auditGraphCall(r.ID, r.DecidedBy, call)
	now := time.Now().UTC()
	t := r.Tracking
	t.Checks++
	t.NextCheck = now.Add(b.trackInterval(t.Checks))
	if err != nil {
		why := graph.Explain(err, "GET")
		log.Warn("tracking look failed", "kind", why.Kind, "err", err)
		if why.Kind == graph.KindSignInAgain {
			b.sessions.forget(r.DecidedBy, r.ID, claimsOf(err))
			return b.pauseTracking(ctx, r)
		}
	} else {
		seen := device.Status
		// A first look that still reads the starting status says nothing
		// new: no thread reply for it.
		unchanged := t.LastStatus == "" && endStatus(seen)
		if result := b.trackResult(ctx, client, r, t, seen); result != "" {
			t.Result = result
		} else if seen != t.LastStatus && !unchanged {
			b.threadReply(ctx, r, fmt.Sprintf("%s: status *%s*%s.", r.ID, escapeText(orDash(seen)), statusDetailSuffix(device)))
		}
		t.LastStatus = seen
	}
	if t.Result == "" && !now.Before(t.Until) {
		return b.stopTracking(ctx, r, t)
	}
	if err == nil {
		r.Device = &device
	}
	if t.Result != "" {
		return b.stopTracking(ctx, r, t)
	}
	updated, uerr := b.cfg.Store.Update(ctx, r.ID, func(u *approvals.Request) {
		u.Tracking, u.Device = t, r.Device
	})
	if uerr != nil {
		log.Error("tracking state not stored", "err", uerr)
		return nil
	}
	b.audit(ctx, r.ID, approvals.EventTracked, "", map[string]string{"status": t.LastStatus})
	return updated
}

// stopTracking records how following r ended (t.Result; timed out when
// empty), frees its Cloud PC, and tells everyone.
func (b *Bot) stopTracking(ctx context.Context, r *approvals.Request, t approvals.Tracking) *approvals.Request {
	if t.Result == "" {
		t.Result = approvals.TrackTimedOut
	}
	t.Paused = false
	updated, err := b.cfg.Store.Update(ctx, r.ID, func(u *approvals.Request) {
		u.Tracking, u.Device = t, r.Device
	})
	if err != nil {
		b.log.Error("tracking result not stored", "ref", r.ID, "err", err)
		return nil
	}
	b.sessions.release(r.ID)
	b.log.Info("tracking finished", "ref", r.ID, "result", t.Result)
	b.audit(ctx, r.ID, approvals.EventTracked, "", map[string]string{"status": t.LastStatus, "result": t.Result})
	b.updatePrompts(ctx, updated)
	b.threadReply(ctx, updated, statusLine(updated))
	b.dm(ctx, updated.RequesterID, requesterUpdate(updated))
	return updated
}

func statusDetailSuffix(d approvals.CloudPC) string {
	if d.StatusDetails == "" {
		return ""
	}
	return " (" + escapeText(d.StatusDetails) + ")"
}

// trackResult decides from the status seen now whether this reprovision has
// ended. "provisioned" or "failed" alone is not enough: a Cloud PC reads so
// before the reprovision starts too (failed is an allowed starting status).
// It has ended when a working status (provisioning, …) was seen before, or
// when the reprovision action that began with this request says so.
func (b *Bot) trackResult(ctx context.Context, client *graph.Client, r *approvals.Request, t approvals.Tracking, seen string) string {
	var want, actionState string
	switch {
	case seen == "failed":
		want, actionState = approvals.TrackFailed, "failed"
	case endStatus(seen):
		want, actionState = approvals.TrackProvisioned, "done"
	default:
		return ""
	}
	if t.LastStatus != "" && !endStatus(t.LastStatus) {
		return want
	}
	if b.reprovisionActionState(ctx, client, r, t.Since) == actionState {
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

// actionClockSkew: Graph stamps the reprovision action when it accepts the
// call, a little before the bot records Since.
const actionClockSkew = 5 * time.Minute

// reprovisionActionState is the state of the reprovision remote action that
// began with this request (one GET), or "" when there is none yet.
func (b *Bot) reprovisionActionState(ctx context.Context, client *graph.Client, r *approvals.Request, since time.Time) string {
	actions, call, err := client.RemoteActionResults(ctx, r.CloudPCID)
	b.auditGraphCall(r.ID, r.DecidedBy, call)
	if err != nil {
		return ""
	}
	var latest *graph.RemoteAction
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
// Resume tracking on the prompt.
func (b *Bot) pauseTracking(ctx context.Context, r *approvals.Request) *approvals.Request {
	updated, err := b.cfg.Store.Update(ctx, r.ID, func(r *approvals.Request) { r.Tracking.Paused = true })
	if err != nil {
		b.log.Error("could not pause tracking", "ref", r.ID, "err", err)
		return nil
	}
	b.log.Info("tracking paused: no valid sign-in", "ref", r.ID)
	b.updatePrompts(ctx, updated)
	b.threadReply(ctx, updated, fmt.Sprintf("%s: tracking paused, there is no valid sign-in to look with. Click *Resume tracking* on the prompt to sign in.", r.ID))
	return updated
}

// resumeTracking signs an approver in again (unless they are signed in) and
// restarts the follow-through.
func (b *Bot) resumeTracking(ctx context.Context, c click) {
	r := c.request
	if !r.IsApprover(c.user) {
		b.tell(ctx, c, fmt.Sprintf("Only an approver of %s (%s) can resume tracking.", r.ID, mentions(r.Approvers)))
		return
	}
	if r.State != approvals.StateSucceeded || !r.Tracking.Active() || !r.Tracking.Paused {
		b.tell(ctx, c, fmt.Sprintf("%s is not paused: %s", r.ID, statusLine(r)))
		return
	}
	if !b.inFlight.claim(r.ID) {
		b.tell(ctx, c, fmt.Sprintf("Tracking of %s is already being resumed.", r.ID))
		return
	}
	b.spawn(func() {
		defer b.inFlight.remove(r.ID)
		s := b.sessions.valid(c.user)
		if s == nil {
			var err error
			if s, err = b.signIn(r, c.user, "resume tracking "+r.ID); err != nil {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(b.execCtx), cleanupTimeout)
				defer cancel()
				b.dm(cctx, c.user, fmt.Sprintf("%s Tracking of %s stays paused.", b.signInProblem(err), r.ID))
				return
			}
		}
		b.sessions.pin(r.ID, s)
		ctx, cancel := context.WithTimeout(b.execCtx, interactionTimeout)
		defer cancel()
		updated, err := b.cfg.Store.Update(ctx, r.ID, func(r *approvals.Request) {
			r.Tracking.Paused = false
			r.Tracking.NextCheck = time.Now().UTC()
		})
		if err != nil {
			b.log.Error("could not resume tracking", "ref", r.ID, "err", err)
			return
		}
		b.log.Info("tracking resumed", "ref", r.ID, "by", c.user)
		b.updatePrompts(ctx, updated)
		b.nudge()
	})
}
