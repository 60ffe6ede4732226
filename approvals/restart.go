package approvals

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// recover settles what a previous process left half done:
//   - a request executing when it stopped may or may not have reached Graph:
//     outcome unknown, both sides told, never resent;
//   - a request waiting for a sign-in or a confirmation lost its sign-in
//     (sign-ins live in memory only): back to pending;
//   - a request none of whose approvers is configured any more is prompted
//     to the configured ones;
//   - a scheduled call lost its approver's sign-in: it waits for them to
//     sign in again (they are told), and expires if they do not;
//   - a reprovision being followed has nobody signed in to look with:
//     tracking pauses until an approver resumes it.
//
// Expiries missed while down are handled by the scheduler's first run.
func (w *Workflow) recover(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	stuck, err := w.store.ListByState(ctx, StateExecuting, StateApproved, StateConfirming)
	if err != nil {
		w.log.Error("could not list unfinished requests", "err", err)
		return
	}
	for _, r := range stuck {
		if r.State != StateExecuting {
			w.log.Warn("sign-in lost in restart; request reopened", "ref", r.ID)
			why := &Outcome{Kind: OutcomeSignInInterrupted}
			w.reopen(ctx, r, why, NoticeSignInFailed)
			continue
		}
		if r.IsBatch() {
			w.recoverBatch(ctx, r)
			continue
		}
		w.settleInterruptedCall(ctx, r)
	}
	w.promptMissing(ctx)
	w.loseScheduledSignIns(ctx)
	tracked, err := w.store.ListTracking(ctx)
	if err != nil {
		w.log.Error("could not list tracked requests", "err", err)
		return
	}
	for _, r := range tracked {
		if !r.Tracking.Paused {
			w.pauseTracking(ctx, r)
		}
	}
}

// promptMissing makes sure every pending request has a prompt with each
// approver who decides it now (Policy.ApproversOf): a process that died
// between storing a request and queueing its prompt left it without, and
// the configured approvers decide the requests none of whose own approvers
// is configured any more (they must be asked).
func (w *Workflow) promptMissing(ctx context.Context) {
	pending, err := w.store.ListByState(ctx, StatePending)
	if err != nil {
		w.log.Error("could not list pending requests", "err", err)
		return
	}
	for _, r := range pending {
		if prompted(r, w.cfg.Policy.ApproversOf(r)) {
			continue
		}
		if slices.ContainsFunc(r.Approvers, func(a string) bool { return slices.Contains(w.cfg.Policy.Approvers, a) }) {
			w.log.Warn("a pending request lacks prompts; posting them", "ref", r.ID)
			w.send(r.ID, post(r))
			continue
		}
		// The prompt shows who decides now; the request keeps the list it
		// was made with, for the record.
		now := w.cfg.Policy.ApproversOf(r)
		w.log.Warn("no approver of the request is configured any more; prompting the current ones", "ref", r.ID)
		w.audit(ctx, r.ID, EventReprompted, "", map[string]string{"approvers": fmt.Sprint(now), "was": fmt.Sprint(r.Approvers)})
		w.send(r.ID, post(r))
	}
}

// settleInterruptedCall settles a request found executing at start. If the
// reprovision call's answer got into the audit trail before the process
// stopped, that answer decides (a recorded answer is never turned into
// "unknown"); otherwise the call may or may not have reached Graph: outcome
// unknown, never sent again. Both sides are told.
func (w *Workflow) settleInterruptedCall(ctx context.Context, r *Request) {
	s := step{
		from: []State{StateExecuting}, to: StateOutcomeUnknown,
		update:        func(r *Request) { r.Outcome = &Outcome{Kind: OutcomeInFlightAtRestart} },
		event:         EventOutcomeUnknown,
		details:       map[string]string{"reason": "restart while executing"},
		tellRequester: true, tellApprover: true,
	}
	if status, requestID, at, ok := w.recordedAnswer(ctx, r); ok {
		var why *Outcome
		s.to, s.event, why = afterCall(answerError(status, requestID))
		s.details = map[string]string{"request_id": requestID, "reason": "restart after the answer was recorded"}
		s.update = func(r *Request) {
			r.Outcome, r.GraphRequestID = why, requestID
			if s.to == StatePending {
				r.ExpiresAt = r.DecideBy
			}
			if s.to == StateSucceeded && w.cfg.TrackFor > 0 {
				r.Tracking = Tracking{Since: at, Until: at.Add(w.cfg.TrackFor), NextCheck: time.Now().UTC()}
			}
		}
	}
	if _, err := w.settle(ctx, r.ID, s); err != nil {
		w.log.Error("could not settle request after restart", "ref", r.ID, "err", err)
		return
	}
	w.log.Warn("the last stop came during the reprovision call", "ref", r.ID, "settled_as", string(s.to))
}

// recordedAnswer finds the answer to r's reprovision call in the audit
// trail: the last POST attempt recorded since r started executing, if it
// got an HTTP status.
func (w *Workflow) recordedAnswer(ctx context.Context, r *Request) (status int, requestID string, at time.Time, ok bool) {
	events, err := w.store.Events(ctx, r.UpdatedAt)
	if err != nil {
		w.log.Error("could not read the audit trail", "ref", r.ID, "err", err)
		return 0, "", time.Time{}, false
	}
	for _, e := range events {
		if e.RequestID != r.ID || e.Kind != EventGraphCall || e.Details["method"] != "POST" {
			continue
		}
		status, _ = strconv.Atoi(e.Details["status"])
		requestID, at, ok = e.Details["request_id"], e.Time, status != 0
	}
	return status, requestID, at, ok
}

// answerError is what a recorded HTTP status of the reprovision call says,
// as the Graph error it was (nil for 2xx). Only the status is kept in the
// trail, so Graph's code and message are not.
func answerError(status int, requestID string) error {
	ge := &GraphError{Method: "POST", Status: status, RequestID: requestID}
	switch {
	case status >= 200 && status < 300:
		return nil
	case status == 401:
		ge.Kind, ge.Cause = GraphSignInAgain, CauseUnauthorized
	case status == 403:
		ge.Kind, ge.Cause = GraphSignInAgain, CauseForbidden
	case status == 404:
		ge.Kind, ge.Cause = GraphNotFound, CauseNotFound
	case status == 409 || status == 400:
		ge.Kind, ge.Cause = GraphConflict, CauseConflict
	case status == 429 || status == 503:
		ge.Kind, ge.Cause = GraphThrottled, CauseThrottled
	case status >= 500:
		ge.Kind, ge.Cause = GraphOutcomeUnknown, CauseServerError
	default:
		ge.Kind, ge.Cause = GraphFailed, CauseRefused
	}
	return ge
}

// prompted reports whether every one of approvers has a prompt of r.
func prompted(r *Request, approvers []string) bool {
	for _, a := range approvers {
		if !slices.ContainsFunc(r.Prompts, func(p MessageRef) bool { return p.UserID == a }) {
			return false
		}
	}
	return true
}
