package bot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/graph"
)

// finishTimeout bounds recording and announcing an outcome; with the shutdown
// grace it stays inside the 10 s stop budget.
const finishTimeout = 3 * time.Second

// graphTimeout bounds the look-ups before a reprovision.
const graphTimeout = 2 * time.Minute

// signInThenConfirm runs after Approve when the details were not on the
// prompt: the approver signs in (unless s is a valid sign-in already), the
// bot looks the Cloud PC up with their token, and asks them to confirm (or
// to pick, when a name matched several).
func (b *Bot) signInThenConfirm(r *approvals.Request, s *graph.Session) {
	if s == nil {
		var err error
		if s, err = b.signIn(r, r.DecidedBy, "approve "+r.ID); err != nil {
			b.signInFailed(r, err)
			return
		}
	} else {
		b.sessions.remember(r.DecidedBy, r.ID, s)
	}
	ctx, cancel := context.WithTimeout(b.execCtx, graphTimeout)
	defer cancel()
	client, err := graph.NewClient(s.Credential(), b.cfg.Graph)
	if err != nil {
		b.failBeforeCall(ctx, r, escapeText(err.Error()))
		return
	}

	var found []approvals.CloudPC
	if r.CloudPCID != "" {
		device, call, err := client.GetCloudPC(ctx, r.CloudPCID)
		b.auditGraphCall(r.ID, r.DecidedBy, call)
		if err != nil {
			b.lookUpFailed(ctx, r, err)
			return
		}
		found = []approvals.CloudPC{device}
	} else {
		found, err = client.Resolve(ctx, r.Target)
		if err != nil {
			b.lookUpFailed(ctx, r, err)
			return
		}
		b.audit(ctx, r.ID, approvals.EventResolved, r.DecidedBy, map[string]string{"target": r.Target, "matches": strconv.Itoa(len(found))})
	}

	switch {
	case len(found) == 0:
		b.failBeforeCall(ctx, r, fmt.Sprintf("No Cloud PC matches `%s`.", escapeText(r.Target)))
		return
	case len(found) == 1:
		device := found[0]
		if refusal := b.statusRefusal(device); refusal != "" {
			b.audit(ctx, r.ID, approvals.EventStatusRefused, "", map[string]string{"status": device.Status})
			r.Device = &device
			b.failBeforeCall(ctx, r, refusal)
			return
		}
		var err error
		r, err = b.cfg.Store.Transition(ctx, r.ID, approvals.StateConfirming, func(r *approvals.Request) {
			r.CloudPCID, r.Device, r.SignedInAs = device.ID, &device, s.Username
		})
		if err != nil {
			b.failBeforeCall(ctx, r, b.openRequestConflict(ctx, r, device.ID, err))
			return
		}
	default:
		r, err = b.cfg.Store.Transition(ctx, r.ID, approvals.StateConfirming, func(r *approvals.Request) {
			r.Candidates, r.SignedInAs = found, s.Username
		})
		if err != nil {
			b.log.Error("could not record the candidates", "ref", r.ID, "err", err)
			return
		}
	}
	text, blocks := confirmBlocks(r)
	b.dmBlocks(ctx, r.DecidedBy, msgText(text), msgBlocks(blocks))
	b.updatePrompts(ctx, r)
}

// execute sends the one reprovision call, after checking the Cloud PC's
// status once more right before it.
func (b *Bot) execute(r *approvals.Request, s *graph.Session) {
	log := b.log.With("ref", r.ID)
	ctx, cancel := context.WithTimeout(b.execCtx, graphTimeout)
	defer cancel()
	client, err := graph.NewClient(s.Credential(), b.cfg.Graph)
	if err != nil {
		b.failBeforeCall(ctx, r, escapeText(err.Error()))
		return
	}
	device, call, err := client.GetCloudPC(ctx, r.CloudPCID)
	b.auditGraphCall(r.ID, r.DecidedBy, call)
	if err != nil {
		b.lookUpFailed(ctx, r, err)
		return
	}
	if refusal := b.statusRefusal(device); refusal != "" {
		b.audit(ctx, r.ID, approvals.EventStatusRefused, "", map[string]string{"status": device.Status})
		r.Device = &device
		b.failBeforeCall(ctx, r, refusal)
		return
	}

	// Marked executing *before* the call: if the process dies mid-call, the
	// restart sees it and never resends.
	r, err = b.cfg.Store.Transition(ctx, r.ID, approvals.StateExecuting, func(r *approvals.Request) {
		r.Device, r.SignedInAs = &device, s.Username
	})
	if err != nil {
		log.Error("could not mark the request executing; not calling Graph", "err", err)
		return
	}
	b.updatePrompts(ctx, r)
	call, err = client.Reprovision(b.execCtx, r.CloudPCID)
	b.auditGraphCall(r.ID, r.DecidedBy, call)
	b.finish(r, call, err)
}

// statusRefusal says why the Cloud PC may not be reprovisioned in its
// current status, or "" when it may.
func (b *Bot) statusRefusal(d approvals.CloudPC) string {
	if slices.Contains(b.cfg.AllowedStatuses, d.Status) {
		return ""
	}
	return fmt.Sprintf("The Cloud PC's status is *%s*; reprovisioning is allowed only when it is %s. Nothing was sent.",
		escapeText(orDash(d.Status)), escapeText(joinOr(b.cfg.AllowedStatuses)))
}

func joinOr(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return fmt.Sprint(items[:len(items)-1]) + " or " + items[len(items)-1]
}

// lookUpFailed handles a failed look-up before any reprovision was sent:
// a missing Cloud PC ends the request; anything else leaves it approvable.
func (b *Bot) lookUpFailed(ctx context.Context, r *approvals.Request, err error) {
	why := graph.Explain(err, "GET")
	b.log.Warn("look-up failed", "ref", r.ID, "kind", why.Kind, "err", err)
	if why.Kind == graph.KindSignInAgain {
		b.sessions.forget(r.DecidedBy, r.ID)
	}
	if why.Kind == graph.KindNotFound || why.Kind == graph.KindInvalid {
		b.failBeforeCall(ctx, r, why.Text)
		return
	}
	note := why.Text
	if !strings.Contains(note, "nothing was sent") {
		note += " The reprovision was not sent."
	}
	if r = b.reopen(context.WithoutCancel(ctx), r, note+" Approve again to retry."); r != nil {
		b.dm(ctx, r.DecidedBy, requestSummary(r))
		b.dm(ctx, r.RequesterID, requesterUpdate(r))
	}
}

// failBeforeCall ends a request that never reached the reprovision call.
func (b *Bot) failBeforeCall(ctx context.Context, r *approvals.Request, why string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	b.sessions.release(r.ID)
	device := r.Device
	failed, err := b.cfg.Store.Transition(ctx, r.ID, approvals.StateFailed, func(r *approvals.Request) {
		r.Outcome = why
		if device != nil && r.Device == nil && r.CloudPCID == device.ID {
			r.Device = device
		}
	})
	if err != nil {
		b.log.Error("could not record the failure", "ref", r.ID, "err", err)
		return
	}
	b.log.Info("request failed before any reprovision", "ref", r.ID, "why", why)
	b.audit(ctx, r.ID, approvals.EventFailed, "", map[string]string{"outcome": why})
	b.updatePrompts(ctx, failed)
	b.dm(ctx, failed.RequesterID, requesterUpdate(failed))
	if failed.DecidedBy != "" {
		b.dm(ctx, failed.DecidedBy, requestSummary(failed))
	}
}

// openRequestConflict explains that the resolved Cloud PC has another open
// request.
func (b *Bot) openRequestConflict(ctx context.Context, r *approvals.Request, cloudPCID string, err error) string {
	if !errors.Is(err, approvals.ErrOpenRequestExists) {
		b.log.Error("could not record the Cloud PC", "ref", r.ID, "err", err)
		return "The Cloud PC could not be recorded; nothing was sent."
	}
	if other, oerr := b.cfg.Store.OpenFor(ctx, cloudPCID); oerr == nil {
		return fmt.Sprintf("Cloud PC `%s` already has an open request: %s from <@%s>. Nothing was sent.", cloudPCID, other.ID, other.RequesterID)
	}
	return fmt.Sprintf("Cloud PC `%s` already has an open request. Nothing was sent.", cloudPCID)
}

// finish records the outcome of the reprovision call and tells both sides.
func (b *Bot) finish(r *approvals.Request, call graph.Call, callErr error) {
	log := b.log.With("ref", r.ID)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(b.execCtx), finishTimeout)
	defer cancel()
	to, kind, outcome := approvals.StateSucceeded, approvals.EventSucceeded, ""
	requestID := lastRequestID(call)
	var gerr *graph.Error
	if errors.As(callErr, &gerr) && gerr.RequestID != "" {
		requestID = gerr.RequestID
	}
	now := time.Now().UTC()
	if callErr != nil {
		why := graph.Explain(callErr, "POST")
		outcome = why.Text
		switch why.Kind {
		case graph.KindOutcomeUnknown:
			to, kind = approvals.StateOutcomeUnknown, approvals.EventOutcomeUnknown
		case graph.KindSignInAgain:
			// Graph refused before acting: the request may be approved
			// again, with a fresh sign-in.
			b.sessions.forget(r.DecidedBy, r.ID)
			to, kind, outcome = approvals.StatePending, approvals.EventFailed, outcome+" Nothing was done; approve again to sign in afresh."
		default:
			to, kind = approvals.StateFailed, approvals.EventFailed
		}
	}
	r, err := b.cfg.Store.Transition(ctx, r.ID, to, func(r *approvals.Request) {
		r.Outcome = outcome
		r.GraphRequestID = requestID
		if to == approvals.StateSucceeded && b.cfg.TrackFor > 0 {
			r.Tracking = approvals.Tracking{Until: now.Add(b.cfg.TrackFor), NextCheck: now.Add(b.cfg.TrackEvery)}
		}
	})
	if err != nil {
		b.sessions.release(r.ID)
		log.Error("outcome not stored", "outcome", string(to), "err", err)
		return
	}
	if !r.Tracking.Active() {
		b.sessions.release(r.ID) // tracking keeps the sign-in it looks with
	}
	log.Info("reprovision call finished", "state", string(r.State), "graph_request_id", requestID)
	b.audit(ctx, r.ID, kind, "", map[string]string{"outcome": outcome, "request_id": requestID})
	b.updatePrompts(ctx, r)
	b.dm(ctx, r.RequesterID, requesterUpdate(r))
	if r.Tracking.Active() {
		b.threadReply(ctx, r, fmt.Sprintf("Reprovision of %s accepted. I'll look at it in %s and post progress here.", escapeText(targetLabel(r)), b.cfg.TrackEvery))
		b.nudge()
	}
}

// lastRequestID is Graph's request-id of the call's final attempt.
func lastRequestID(call graph.Call) string {
	if len(call.Attempts) == 0 {
		return ""
	}
	return call.Attempts[len(call.Attempts)-1].RequestID
}

// auditGraphCall records every HTTP attempt of a Graph call.
func (b *Bot) auditGraphCall(ref, approver string, call graph.Call) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(b.execCtx), cleanupTimeout)
	defer cancel()
	for i, a := range call.Attempts {
		details := map[string]string{
			"method": call.Method, "path": call.Path, "attempt": strconv.Itoa(i + 1),
			"status": strconv.Itoa(a.Status), "client_request_id": a.ClientRequestID, "request_id": a.RequestID,
		}
		if a.Err != "" {
			details["error"] = a.Err
		}
		b.audit(ctx, ref, approvals.EventGraphCall, approver, details)
	}
}

// lookUp fetches a Cloud PC's details with an existing sign-in, for the
// prompt. Failures only mean the prompt shows no details.
func (b *Bot) lookUp(ctx context.Context, r *approvals.Request, s *graph.Session) (approvals.CloudPC, bool) {
	client, err := graph.NewClient(s.Credential(), b.cfg.Graph)
	if err != nil {
		return approvals.CloudPC{}, false
	}
	device, call, err := client.GetCloudPC(ctx, r.CloudPCID)
	b.auditGraphCall(r.ID, "", call)
	if err != nil {
		b.log.Warn("details for the prompt not fetched", "ref", r.ID, "err", err)
		return approvals.CloudPC{}, false
	}
	return device, true
}
