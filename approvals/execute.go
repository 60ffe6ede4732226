package approvals

import (
	"context"
	"errors"
	"slices"
	"time"
)

// execute sends the one reprovision call, after checking the Cloud PC's
// status once more right before it. The caller has claimed r (inFlight) so
// one process runs one execute per request; the store's compare-and-swap to
// executing decides between processes.
func (w *Workflow) execute(r *Request, s *Session) {
	defer w.inFlight.remove(r.ID)
	ctx, cancel := context.WithTimeout(w.execCtx, graphTimeout)
	defer cancel()
	device, call, err := s.CloudPCs.Get(ctx, r.CloudPCID)
	w.auditGraphCalls(r.ID, r.DecidedBy, call)
	if err != nil {
		w.lookUpFailed(ctx, r, err)
		return
	}
	if refused := w.statusGate(ctx, r, device); refused != nil {
		w.failBeforeCall(ctx, r, refused, &device)
		return
	}
	if r.ExpiredAt(time.Now()) {
		w.expire(ctx, r)
		return
	}
	// The heads-up goes with the move (unless it went when the call was
	// scheduled): the user hears of it as it happens.
	headsUp, tellUser := r.HeadsUp, r.State != StateScheduled
	if tellUser && headsUp.Result == "" && w.cfg.NotifyUser {
		seen := *r
		seen.Device = &device
		headsUp = w.lookUpUser(ctx, &seen)
	}
	// Marked executing *before* the call: if the process dies mid-call, the
	// restart sees it and never resends.
	executing, err := w.settle(ctx, r.ID, step{
		from: beforeCall, to: StateExecuting,
		update: func(r *Request) {
			r.Device, r.SignedInAs = &device, s.Username
			if tellUser {
				r.HeadsUp = headsUp
			}
		},
		also: func(r *Request) []Outgoing {
			if !tellUser {
				return nil
			}
			return headsUpNews(r)
		},
		byLoop: true,
	})
	var te *TransitionError
	switch {
	case errors.As(err, &te):
		w.log.Info("request moved on before the call; not calling Graph", "ref", r.ID, "state", string(te.Current.State))
		w.tell(r.DecidedBy, Notice{Kind: NoticeStatus, Request: te.Current})
		return
	case err != nil:
		w.log.Error("could not mark the request executing; not calling Graph", "ref", r.ID, "err", err)
		w.reopen(context.WithoutCancel(ctx), r, &Outcome{Kind: OutcomeNotRecorded}, "")
		return
	}
	if tellUser && headsUp.Result != "" {
		w.audit(ctx, executing.ID, EventUserNotified, executing.DecidedBy, headsUpDetails(executing))
	}
	call, err = s.CloudPCs.Reprovision(w.execCtx, executing.CloudPCID, executing.Options)
	w.auditGraphCalls(executing.ID, executing.DecidedBy, call)
	w.finish(executing, call, err)
}

// statusGate checks that the Cloud PC's status allows a reprovision; if it
// does not, it audits the refusal and returns why. It changes nothing else.
func (w *Workflow) statusGate(ctx context.Context, r *Request, device CloudPC) *Outcome {
	if slices.Contains(w.cfg.AllowedStatuses, device.Status) {
		return nil
	}
	w.audit(ctx, r.ID, EventStatusRefused, "", map[string]string{"status": device.Status})
	return &Outcome{Kind: OutcomeStatusNotAllowed, Status: device.Status, Allowed: slices.Clone(w.cfg.AllowedStatuses)}
}

// afterCall maps Graph's answer to the reprovision onto the request's next
// state: accepted → succeeded; may have been carried out → outcome unknown;
// the sign-in was refused before anything was done → pending again (with a
// fresh sign-in); anything else → failed.
func afterCall(callErr error) (State, EventKind, *Outcome) {
	if callErr == nil {
		return StateSucceeded, EventSucceeded, nil
	}
	ge := asGraphError(callErr, "POST")
	why := &Outcome{Kind: OutcomeGraph, Graph: ge}
	switch ge.Kind {
	case GraphOutcomeUnknown:
		return StateOutcomeUnknown, EventOutcomeUnknown, why
	case GraphSignInAgain:
		return StatePending, EventFailed, why
	default:
		return StateFailed, EventFailed, why
	}
}

// finish records the outcome of the reprovision call and tells both sides.
// What Graph answered is kept until the store takes it (durably: a busy or
// full store is tried again until the stop), and people are told with a
// context of their own once it is stored.
func (w *Workflow) finish(r *Request, call GraphCall, callErr error) {
	to, event, why := afterCall(callErr)
	if why != nil && why.Graph.Kind == GraphSignInAgain {
		w.sessions.forget(r.DecidedBy, r.ID, why.Graph.Claims)
	}
	requestID := call.LastRequestID()
	if why != nil && why.Graph.RequestID != "" {
		requestID = why.Graph.RequestID
	}
	now := time.Now().UTC()
	s := step{
		from: []State{StateExecuting}, to: to,
		update: func(r *Request) {
			r.Outcome, r.GraphRequestID = why, requestID
			if to == StatePending { // Graph wants a fresh sign-in: waiting for a decision again
				r.ExpiresAt = r.DecideBy
			}
			if to == StateSucceeded && w.cfg.TrackFor > 0 {
				r.Tracking = Tracking{Since: now, Until: now.Add(w.cfg.TrackFor), NextCheck: now.Add(w.cfg.TrackEvery)}
			}
		},
		event: event, details: map[string]string{"request_id": requestID},
		tellRequester: true,
		also: func(r *Request) []Outgoing {
			if r.Tracking.Active() {
				return []Outgoing{progress(r, Progress{Kind: ProgressAccepted, Every: w.cfg.TrackEvery})}
			}
			return nil
		},
	}
	var done *Request
	err := w.durably("outcome", func(ctx context.Context) (err error) {
		done, err = w.move(ctx, r.ID, s)
		return err
	})
	ctx, cancel := detached(w.execCtx)
	defer cancel()
	if err != nil {
		// Stopping with the store still refusing: the request stays
		// executing and the next start settles it from the call's audit
		// record, if that got in (else as outcome unknown). People must
		// not wait for news meanwhile.
		w.sessions.release(r.ID)
		w.log.Error("outcome not stored", "ref", r.ID, "outcome", string(to), "err", err)
		r.GraphRequestID = requestID
		n := Notice{Kind: NoticeNotRecorded, Request: r, Why: why, Accepted: to == StateSucceeded}
		w.tellDirect(ctx, r.RequesterID, n)
		w.tellDirect(ctx, r.DecidedBy, n)
		return
	}
	w.announce(ctx, done, s)
	w.log.Info("reprovision call finished", "ref", r.ID, "state", string(done.State), "graph_request_id", requestID)
	if done.Tracking.Active() {
		w.nudge()
	}
}
