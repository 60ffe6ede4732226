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

// confirmWindow is how long a signed-in approver has for the final
// confirmation: long enough to read the details, short enough that the
// sign-in behind "Reprovision now" is fresh even with REPROVISION_SIGNIN_TTL=0.
const confirmWindow = 30 * time.Minute

// maxCandidates: one message holds 50 blocks, three per Cloud PC to pick.
// More matches than this is a name too vague to wipe by.
const maxCandidates = 15

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
		b.sessions.pin(r.ID, s)
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
		found = uniqueCloudPCs(found)
		b.audit(ctx, r.ID, approvals.EventResolved, r.DecidedBy, map[string]string{"target": r.Target, "matches": strconv.Itoa(len(found))})
	}

	// The final confirmation has a window of its own: the approver is
	// reading the details now, and the sign-in it runs with must be recent.
	expires := time.Now().UTC().Add(confirmWindow)
	var confirming *approvals.Request
	switch {
	case len(found) == 0:
		b.failBeforeCall(ctx, r, fmt.Sprintf("No Cloud PC matches `%s`.", escapeText(r.Target)))
		return
	case len(found) > maxCandidates:
		b.failBeforeCall(ctx, r, fmt.Sprintf("%d Cloud PCs match `%s`: too many to choose from. Ask again with the Cloud PC's id or device name.",
			len(found), escapeText(r.Target)))
		return
	case len(found) == 1:
		device := found[0]
		if refusal := b.statusRefusal(device); refusal != "" {
			b.audit(ctx, r.ID, approvals.EventStatusRefused, "", map[string]string{"status": device.Status})
			r.Device = &device
			b.failBeforeCall(ctx, r, refusal)
			return
		}
		confirming, err = b.cfg.Store.TransitionFrom(ctx, r.ID, beforeCall, approvals.StateConfirming, func(r *approvals.Request) {
			r.CloudPCID, r.Device, r.SignedInAs, r.ExpiresAt = device.ID, &device, s.Username, expires
		})
		if err != nil && !isTransitionError(err) {
			b.failBeforeCall(ctx, r, b.openRequestConflict(ctx, r, device.ID, err))
			return
		}
	default:
		confirming, err = b.cfg.Store.TransitionFrom(ctx, r.ID, beforeCall, approvals.StateConfirming, func(r *approvals.Request) {
			r.Candidates, r.SignedInAs, r.ExpiresAt = found, s.Username, expires
		})
		if err != nil && !isTransitionError(err) {
			b.failBeforeCall(ctx, r, "The matching Cloud PCs could not be recorded; nothing was sent.")
			return
		}
	}
	if err != nil { // the request moved on meanwhile (e.g. a restart elsewhere): leave it
		b.log.Info("request moved on during look-up", "ref", r.ID, "err", err)
		return
	}
	b.nudge() // its expiry moved
	text, blocks := confirmBlocks(confirming)
	if err := b.dmBlocks(ctx, confirming.DecidedBy, msgText(text), msgBlocks(blocks)); err != nil {
		b.reopen(context.WithoutCancel(ctx), confirming, "The final confirmation could not be sent on Slack. Approve again to retry.")
		return
	}
	b.updatePrompts(ctx, confirming)
}

// uniqueCloudPCs drops repeats (a Cloud PC matching twice across pages).
func uniqueCloudPCs(pcs []approvals.CloudPC) []approvals.CloudPC {
	seen := map[string]bool{}
	var out []approvals.CloudPC
	for _, pc := range pcs {
		if !seen[pc.ID] {
			seen[pc.ID] = true
			out = append(out, pc)
		}
	}
	return out
}

func isTransitionError(err error) bool {
	var te *approvals.TransitionError
	return errors.As(err, &te)
}

// execute sends the one reprovision call, after checking the Cloud PC's
// status once more right before it. The caller has claimed r (inFlight.claim)
// so one process runs one execute per request; the store's compare-and-swap
// to executing decides between processes.
func (b *Bot) execute(r *approvals.Request, s *graph.Session) {
	defer b.inFlight.remove(r.ID)
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

	if r.ExpiredAt(time.Now()) {
		b.expire(ctx, r)
		return
	}
	// Marked executing *before* the call: if the process dies mid-call, the
	// restart sees it and never resends.
	executing, err := b.cfg.Store.TransitionFrom(ctx, r.ID, beforeCall, approvals.StateExecuting, func(r *approvals.Request) {
		r.Device, r.SignedInAs = &device, s.Username
	})
	var late *approvals.TransitionError
	switch {
	case errors.As(err, &late):
		log.Info("request moved on before the call; not calling Graph", "state", string(late.Current.State))
		b.dm(ctx, r.DecidedBy, requestSummary(late.Current))
		return
	case err != nil:
		log.Error("could not mark the request executing; not calling Graph", "err", err)
		b.reopen(context.WithoutCancel(ctx), r, "The request could not be recorded as running, so nothing was sent. Approve again to retry.")
		return
	}
	b.updatePrompts(ctx, executing)
	call, err = client.Reprovision(b.execCtx, executing.CloudPCID)
	b.auditGraphCall(executing.ID, executing.DecidedBy, call)
	b.finish(executing, call, err)
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

// joinOr is "a", "a or b", "a, b or c".
func joinOr(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// lookUpFailed handles a failed look-up before any reprovision was sent:
// a missing Cloud PC ends the request; anything else leaves it approvable.
func (b *Bot) lookUpFailed(ctx context.Context, r *approvals.Request, err error) {
	why := graph.Explain(err, "GET")
	b.log.Warn("look-up failed", "ref", r.ID, "kind", why.Kind, "err", err)
	if why.Kind == graph.KindSignInAgain {
		b.sessions.forget(r.DecidedBy, r.ID, claimsOf(err))
	}
	if why.Kind == graph.KindNotFound || why.Kind == graph.KindInvalid {
		b.failBeforeCall(ctx, r, why.Text)
		return
	}
	note := why.Text
	if !strings.Contains(note, "nothing was sent") {
		note += " The reprovision was not sent."
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	if r = b.reopen(ctx, r, note+" Approve again to retry."); r != nil {
		b.dm(ctx, r.DecidedBy, requestSummary(r))
		b.dm(ctx, r.RequesterID, requesterUpdate(r))
	}
}

// claimsOf is the Conditional Access claims challenge in a Graph error, if any.
func claimsOf(err error) string {
	var gerr *graph.Error
	if errors.As(err, &gerr) {
		return gerr.Claims
	}
	return ""
}

// failBeforeCall ends a request that never reached the reprovision call.
func (b *Bot) failBeforeCall(ctx context.Context, r *approvals.Request, why string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	device := r.Device
	failed, err := b.cfg.Store.TransitionFrom(ctx, r.ID, beforeCall, approvals.StateFailed, func(r *approvals.Request) {
		r.Outcome = why
		if device != nil && r.Device == nil && r.CloudPCID == device.ID {
			r.Device = device
		}
	})
	if err != nil {
		b.log.Error("could not record the failure", "ref", r.ID, "err", err)
		return
	}
	b.sessions.release(r.ID)
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
			b.sessions.forget(r.DecidedBy, r.ID, claimsOf(callErr))
			to, kind, outcome = approvals.StatePending, approvals.EventFailed, outcome+" Nothing was done; approve again to sign in afresh."
		default:
			to, kind = approvals.StateFailed, approvals.EventFailed
		}
	}
	var done *approvals.Request
	var err error
	for attempt := 1; attempt <= outcomeWriteAttempts; attempt++ {
		done, err = b.cfg.Store.TransitionFrom(ctx, r.ID, []approvals.State{approvals.StateExecuting}, to, func(r *approvals.Request) {
			r.Outcome = outcome
			r.GraphRequestID = requestID
			if to == approvals.StateSucceeded && b.cfg.TrackFor > 0 {
				r.Tracking = approvals.Tracking{Since: now, Until: now.Add(b.cfg.TrackFor), NextCheck: now.Add(b.cfg.TrackEvery)}
			}
		})
		if err == nil || isTransitionError(err) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond * time.Duration(attempt))
	}
	if err != nil {
		// The request stays executing (the next start settles it as
		// outcome unknown); people must not wait for news that never comes.
		b.sessions.release(r.ID)
		log.Error("outcome not stored", "outcome", string(to), "err", err)
		text := fmt.Sprintf("Request %s: Microsoft Graph answered (%s) but the bot could not record it. Check the Cloud PC before trying again.",
			r.ID, orDash(outcome))
		if to == approvals.StateSucceeded {
			text = fmt.Sprintf("Request %s: Microsoft Graph accepted the reprovision%s, but the bot could not record it and will not follow it.",
				r.ID, requestIDSuffix(&approvals.Request{GraphRequestID: requestID}))
		}
		b.dm(ctx, r.RequesterID, text)
		b.dm(ctx, r.DecidedBy, text)
		return
	}
	if !done.Tracking.Active() {
		b.sessions.release(done.ID) // tracking keeps the sign-in it looks with
	}
	log.Info("reprovision call finished", "state", string(done.State), "graph_request_id", requestID)
	b.audit(ctx, done.ID, kind, "", map[string]string{"outcome": outcome, "request_id": requestID})
	b.updatePrompts(ctx, done)
	b.dm(ctx, done.RequesterID, requesterUpdate(done))
	if done.Tracking.Active() {
		b.threadReply(ctx, done, fmt.Sprintf("Reprovision of %s accepted. I'll look at it in %s and post progress here.", escapeText(targetLabel(done)), b.cfg.TrackEvery))
		b.nudge()
	}
}

// outcomeWriteAttempts: recording what Graph answered is worth a retry or
// two (a busy database), inside finishTimeout.
const outcomeWriteAttempts = 3

// lastRequestID is Graph's request-id of the call's final attempt.
func lastRequestID(call graph.Call) string {
	if len(call.Attempts) == 0 {
		return ""
	}
	return call.Attempts[len(call.Attempts)-1].RequestID
}

// auditGraphCall records every HTTP attempt of a Graph call.
func (b *Bot) auditGraphCall(ref, approver string, call graph.Call) {
	for i, a := range call.Attempts {
		details := map[string]string{
			"method": call.Method, "path": call.Path, "attempt": strconv.Itoa(i + 1),
			"status": strconv.Itoa(a.Status), "client_request_id": a.ClientRequestID, "request_id": a.RequestID,
		}
		if a.Err != "" {
			details["error"] = a.Err
		}
		b.audit(b.execCtx, ref, approvals.EventGraphCall, approver, details)
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
