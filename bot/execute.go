package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"time"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/graph"
)

// signInAndReprovision runs after Approve: the approver's device-code
// sign-in, then exactly one reprovision call with their token.
func (b *Bot) signInAndReprovision(r *approvals.Request) {
	log := b.log.With("ref", r.ID)
	approver := r.DecidedBy
	b.audit(b.execCtx, r.ID, approvals.EventSignInStarted, approver, nil)

	session, err := b.cfg.SignIn.SignIn(b.signInCtx, func(ctx context.Context, code graph.DeviceCode) error {
		return b.sendSignInCode(ctx, r, approver, code)
	})
	if err != nil {
		b.signInFailed(r, err, log)
		return
	}
	log.Info("approver signed in", "upn", session.Username)
	b.audit(b.execCtx, r.ID, approvals.EventSignedIn, approver, map[string]string{"upn": session.Username})

	// The request is marked executing *before* the call: if the process
	// dies mid-call, the restart sees it and never resends.
	r, err = b.cfg.Store.Transition(b.execCtx, r.ID, approvals.StateExecuting, nil)
	if err != nil {
		log.Error("could not mark the request executing; not calling Graph", "err", err)
		return
	}
	b.updatePrompt(b.execCtx, r)

	client, err := graph.NewClient(session.Credential(), b.cfg.Graph)
	if err == nil {
		var call graph.Call
		call, err = client.Reprovision(b.execCtx, r.CloudPCID)
		b.auditGraphCall(r.ID, approver, call)
	}
	b.finish(r, err, log)
}

// sendSignInCode DMs the device code to the approver. It is called by the
// sign-in flow as soon as Entra issues the code.
func (b *Bot) sendSignInCode(ctx context.Context, r *approvals.Request, approver string, code graph.DeviceCode) error {
	link, err := url.Parse(code.VerificationURL)
	if err != nil || link.Scheme != "https" {
		return fmt.Errorf("sign-in: Entra sent a verification URL that is not https")
	}
	return b.slackCall(ctx, "chat.postMessage", func(ctx context.Context) error {
		_, _, err := b.api.PostMessageContext(ctx, approver,
			slack.MsgOptionText(fmt.Sprintf("Sign in to approve %s: open %s and enter the code %s", r.ID, link, code.UserCode), false),
			slack.MsgOptionBlocks(signInBlocks(r.ID, link.String(), code.UserCode)...))
		return err
	})
}

// signInFailed puts the request back to pending: the approver may click
// Approve again. Both sides are told why.
func (b *Bot) signInFailed(r *approvals.Request, err error, log *slog.Logger) {
	reason := "Sign-in did not complete."
	switch {
	case errors.Is(err, graph.ErrSignInDeclined):
		reason = "Sign-in was declined."
	case errors.Is(err, graph.ErrSignInExpired):
		reason = "The sign-in code expired."
	case b.signInCtx.Err() != nil:
		reason = "The bot restarted during sign-in."
	}
	log.Warn("sign-in failed", "reason", reason, "err", err)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(b.execCtx), cleanupTimeout)
	defer cancel()
	b.audit(ctx, r.ID, approvals.EventSignInFailed, r.DecidedBy, map[string]string{"reason": reason})
	r, terr := b.cfg.Store.Transition(ctx, r.ID, approvals.StatePending, func(r *approvals.Request) {
		r.Outcome = reason + " Approve again to retry."
	})
	if terr != nil {
		log.Error("could not reopen the request after a failed sign-in", "err", terr)
		return
	}
	b.updatePrompt(ctx, r)
	if b.signInCtx.Err() != nil {
		return // shutting down: the prompt says it; no time for more
	}
	b.dm(ctx, r.ApproverID, fmt.Sprintf("%s %s is still waiting: click Approve on the prompt to try again.", reason, r.ID))
	b.dm(ctx, r.RequesterID, fmt.Sprintf("Your request %s was approved, but the approver's sign-in did not complete (%s). It is waiting for them again.",
		r.ID, reason))
}

// finishTimeout bounds recording and announcing an outcome; with the shutdown
// grace it stays inside the 10 s stop budget.
const finishTimeout = 3 * time.Second

// finish records the outcome of the reprovision call and tells both sides.
func (b *Bot) finish(r *approvals.Request, callErr error, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(b.execCtx), finishTimeout)
	defer cancel()
	to, kind, outcome, requestID := approvals.StateSucceeded, approvals.EventSucceeded, "", ""
	var gerr *graph.Error
	switch {
	case callErr == nil:
	case errors.As(callErr, &gerr):
		requestID = gerr.RequestID
		outcome = describeGraphError(gerr)
		to, kind = approvals.StateFailed, approvals.EventFailed
		if gerr.OutcomeUnknown() {
			to, kind = approvals.StateOutcomeUnknown, approvals.EventOutcomeUnknown
		}
	default:
		outcome = escapeText(callErr.Error())
		to, kind = approvals.StateFailed, approvals.EventFailed
	}
	r, err := b.cfg.Store.Transition(ctx, r.ID, to, func(r *approvals.Request) {
		r.Outcome = outcome
		r.GraphRequestID = requestID
	})
	if err != nil {
		log.Error("outcome not stored", "outcome", string(to), "err", err)
		return
	}
	log.Info("reprovision finished", "state", string(r.State), "graph_request_id", requestID)
	b.audit(ctx, r.ID, kind, "", map[string]string{"outcome": outcome, "request_id": requestID})
	b.updatePrompt(ctx, r)
	b.dm(ctx, r.RequesterID, requesterUpdate(r))
}

// describeGraphError is what people see of a Graph failure: its code,
// message and request-id, so support can find it.
func describeGraphError(e *graph.Error) string {
	var s string
	switch {
	case e.StatusCode == 0:
		s = "no answer from Microsoft Graph"
		if e.Err != nil {
			s += " (" + e.Err.Error() + ")"
		}
	case e.Code != "":
		s = fmt.Sprintf("Graph error `%s`: %s (HTTP %d)", e.Code, e.Message, e.StatusCode)
	default:
		s = "Graph answered HTTP " + strconv.Itoa(e.StatusCode)
	}
	if e.Claims != "" {
		s += ". Conditional Access asks for a fresh sign-in"
	}
	if e.RequestID != "" {
		s += fmt.Sprintf(", request-id `%s`", e.RequestID)
	}
	return escapeText(s)
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
