package approvals

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// confirmWindow is how long a signed-in approver has for the final
// confirmation: long enough to read the details, short enough that the
// sign-in behind "Reprovision now" is fresh even with no sign-in reuse.
const confirmWindow = 30 * time.Minute

// MaxCandidates: more Cloud PCs matching one name than this is a name too
// vague to wipe by (and more than one chat message can offer).
const MaxCandidates = 15

// beforeCall are the states of an approved request before its reprovision
// call: the only ones a failure before the call may move it from.
var beforeCall = []State{StateApproved, StateConfirming, StateScheduled}

// signInThenConfirm runs after Approve when the details were not on the
// prompt: the approver signs in (unless s is a valid sign-in already), the
// Cloud PC is looked up with their token, and they are asked to confirm (or
// to pick, when a name matched several).
func (w *Workflow) signInThenConfirm(r *Request, s *Session) {
	if s == nil {
		var err error
		if s, err = w.signIn(r, r.DecidedBy, SignInToApprove); err != nil {
			w.signInFailed(r, err)
			return
		}
	} else {
		w.sessions.pin(r.ID, s)
	}
	if r.ApprovedAs(s.Username) {
		w.audit(w.execCtx, r.ID, EventIdentityMismatch, r.DecidedBy, map[string]string{"upn": s.Username, "why": "approved already as this user"})
		ctx, cancel := detached(w.execCtx)
		defer cancel()
		w.reopen(ctx, r, &Outcome{Kind: OutcomeSameIdentity, SignedInAs: s.Username}, NoticeSignInFailed)
		return
	}
	if !r.LastApproval() {
		w.recordApproval(r, s)
		return
	}
	ctx, cancel := context.WithTimeout(w.execCtx, graphTimeout)
	defer cancel()
	var confirming *Request
	if r.IsBatch() {
		members, policy, err := w.lookUpBatch(ctx, r, s)
		if err != nil {
			w.lookUpFailed(ctx, r, err)
			return
		}
		confirming = w.offerBatch(ctx, r, s, members, policy)
	} else {
		found, err := w.lookUp(ctx, r, s)
		if err != nil {
			w.lookUpFailed(ctx, r, err)
			return
		}
		confirming = w.offer(ctx, r, s, found)
	}
	if confirming == nil {
		return
	}
	w.nudge() // its expiry moved
	if err := w.notices.AskToConfirm(ctx, confirming); err != nil {
		w.log.Warn("final confirmation not sent", "ref", r.ID, "err", err)
		rctx, cancel := detached(ctx)
		defer cancel()
		w.reopen(rctx, confirming, &Outcome{Kind: OutcomeConfirmationNotSent}, "")
		return
	}
	w.send(confirming.ID, redraw(confirming))
}

// recordApproval records the approval of r's approver, signed in as s, when
// another approval is still needed: r waits for it again (in StatePending,
// with its approval deadline), and the approver and requester are told.
// The sign-in is not kept: the next approver signs in for themselves, and
// the call is made with the last approver's sign-in.
func (w *Workflow) recordApproval(r *Request, s *Session) {
	ctx, cancel := detached(w.execCtx)
	defer cancel()
	approval := Approval{By: r.DecidedBy, SignedInAs: s.Username, At: time.Now().UTC()}
	count := approvalCount(len(r.Approvals)+1, r.Required())
	_, err := w.settle(ctx, r.ID, step{
		from: []State{StateApproved}, to: StatePending,
		update: func(r *Request) {
			r.Approvals = append(r.Approvals, approval)
			r.Outcome, r.ExpiresAt = nil, r.DecideBy
		},
		event: EventApprovalRecorded, actor: approval.By, details: map[string]string{"upn": s.Username, "approvals": count},
		also: func(r *Request) []Outgoing {
			return tellEach(Notice{Kind: NoticeApprovalRecorded, Request: r}, approval.By, r.RequesterID)
		},
	})
	var te *TransitionError
	switch {
	case errors.As(err, &te):
		// Withdrawn or denied meanwhile: whoever did that told those
		// concerned; the approval is moot.
		w.log.Info("approval not recorded: the request moved on", "ref", r.ID, "approver", approval.By, "state", string(te.Current.State))
		return
	case err != nil:
		// The store refused: the approval is not recorded, and the request
		// must not stay approved with nobody behind it.
		w.log.Error("approval not recorded", "ref", r.ID, "approver", approval.By, "err", err)
		w.reopen(ctx, r, &Outcome{Kind: OutcomeNotRecorded}, NoticeStatus)
		return
	}
	w.nudge() // waiting for a decision again: its deadline counts
}

// lookUp reads the Cloud PC (by id) or resolves the name or UPN r names.
func (w *Workflow) lookUp(ctx context.Context, r *Request, s *Session) ([]CloudPC, error) {
	if r.CloudPCID != "" {
		device, call, err := s.CloudPCs.Get(ctx, r.CloudPCID)
		w.auditGraphCalls(r.ID, r.DecidedBy, call)
		if err != nil {
			return nil, err
		}
		return []CloudPC{device}, nil
	}
	found, calls, err := s.CloudPCs.Resolve(ctx, r.Target)
	w.auditGraphCalls(r.ID, r.DecidedBy, calls...)
	if err != nil {
		return nil, err
	}
	found = uniqueCloudPCs(found)
	w.audit(ctx, r.ID, EventResolved, r.DecidedBy, map[string]string{"target": r.Target, "matches": strconv.Itoa(len(found))})
	return found, nil
}

// offer moves r to awaiting confirmation with what the look-up found, or
// ends it when there is nothing to confirm. It returns nil when r ended or
// moved on meanwhile.
func (w *Workflow) offer(ctx context.Context, r *Request, s *Session, found []CloudPC) *Request {
	// The final confirmation has a window of its own: the approver is
	// reading the details now, and the sign-in it runs with must be recent.
	expires := time.Now().UTC().Add(confirmWindow)
	var update func(*Request)
	switch {
	case len(found) == 0:
		w.failBeforeCall(ctx, r, &Outcome{Kind: OutcomeNoMatch, Target: r.Target}, nil)
		return nil
	case len(found) > MaxCandidates:
		w.failBeforeCall(ctx, r, &Outcome{Kind: OutcomeTooManyMatches, Target: r.Target, Matches: len(found)}, nil)
		return nil
	case len(found) == 1:
		device := found[0]
		if refused := w.statusGate(ctx, r, device); refused != nil {
			w.failBeforeCall(ctx, r, refused, &device)
			return nil
		}
		update = func(r *Request) {
			r.CloudPCID, r.Device, r.SignedInAs, r.ExpiresAt = device.ID, &device, s.Username, expires
		}
	default:
		update = func(r *Request) { r.Candidates, r.SignedInAs, r.ExpiresAt = found, s.Username, expires }
	}
	confirming, err := w.store.TransitionFrom(ctx, r.ID, beforeCall, StateConfirming, update)
	var te *TransitionError
	switch {
	case errors.As(err, &te): // the request moved on meanwhile (withdrawn, …): leave it
		w.log.Info("request moved on during look-up", "ref", r.ID, "state", string(te.Current.State))
		if !needsSignIn(te.Current) {
			w.sessions.release(r.ID)
		}
		return nil
	case err != nil && len(found) == 1:
		w.failBeforeCall(ctx, r, w.conflictOutcome(ctx, found[0].ID, err), &found[0])
		return nil
	case err != nil:
		w.failBeforeCall(ctx, r, &Outcome{Kind: OutcomeNotRecorded}, nil)
		return nil
	}
	return confirming
}

// uniqueCloudPCs drops repeats (a Cloud PC matching twice across pages).
func uniqueCloudPCs(pcs []CloudPC) []CloudPC {
	seen := map[string]bool{}
	var out []CloudPC
	for _, pc := range pcs {
		if !seen[pc.ID] {
			seen[pc.ID] = true
			out = append(out, pc)
		}
	}
	return out
}

// signIn runs the device-code sign-in for approver, sending them the code,
// and checks that they signed in as themselves. Entra must issue the code
// within SignInStartTimeout and the whole sign-in end within SignInTimeout;
// the requester withdrawing the request ends it too.
func (w *Workflow) signIn(r *Request, approver string, why SignInPurpose) (*Session, error) {
	withdrawable, withdraw := context.WithCancelCause(w.signInCtx)
	defer withdraw(nil)
	ctx, cancel := context.WithTimeout(withdrawable, w.cfg.SignInTimeout)
	defer cancel()
	w.signingIn.set(r.ID, func() { withdraw(errWithdrawn) })
	defer w.signingIn.clear(r.ID)
	// Withdrawn before the line above? Then nothing would end this sign-in.
	if now, err := w.store.Get(ctx, r.ID); err == nil && now.State == StateCanceled {
		return nil, errWithdrawn
	}
	w.audit(w.execCtx, r.ID, EventSignInStarted, approver, nil)
	var shown atomic.Bool
	noCode := time.AfterFunc(w.cfg.SignInStartTimeout, func() {
		if !shown.Load() {
			cancel()
		}
	})
	defer noCode.Stop()
	// A claims challenge from Graph (Conditional Access) must be met by
	// this sign-in, or Graph will refuse again.
	s, err := w.cfg.SignIns.SignIn(ctx, w.sessions.claimsFor(approver), func(ctx context.Context, code DeviceCode) error {
		shown.Store(true)
		return w.notices.SignInCode(ctx, approver, why, r, code)
	})
	if err != nil {
		switch {
		case errors.Is(context.Cause(withdrawable), errWithdrawn):
			return nil, errWithdrawn
		case ctx.Err() != nil && w.signInCtx.Err() == nil:
			return nil, &signInCutShort{codeShown: shown.Load(), err: err}
		case !shown.Load() && w.signInCtx.Err() == nil:
			// Entra refused or failed before issuing a code.
			return nil, &signInCutShort{err: err}
		}
		return nil, err
	}
	w.log.Info("approver signed in", "ref", r.ID, "approver", approver, "upn", s.Username)
	w.audit(w.execCtx, r.ID, EventSignedIn, approver, map[string]string{"upn": s.Username})
	expected, err := w.expectedUsername(w.execCtx, approver)
	if err != nil {
		return nil, err
	}
	if s.Username == "" || !strings.EqualFold(strings.TrimSpace(expected), s.Username) {
		w.audit(w.execCtx, r.ID, EventIdentityMismatch, approver, map[string]string{"upn": s.Username, "expected": expected})
		return nil, &identityMismatch{got: s.Username, want: expected}
	}
	w.sessions.signedIn(approver, r.ID, s)
	return s, nil
}

// errWithdrawn: the requester canceled the request while its approver was
// signing in.
var errWithdrawn = errors.New("the request was withdrawn during the sign-in")

// signInCutShort: the sign-in ran out of time (Entra issued no code, or the
// approver did not finish), or Entra failed before issuing a code.
type signInCutShort struct {
	codeShown bool
	err       error
}

func (e *signInCutShort) Error() string {
	return fmt.Sprintf("sign-in cut short (code shown: %v): %v", e.codeShown, e.err)
}

func (e *signInCutShort) Unwrap() error { return e.err }

// identityMismatch: someone signed in, but not as the approver who clicked.
type identityMismatch struct{ got, want string }

func (e *identityMismatch) Error() string {
	return fmt.Sprintf("signed in as %s, but this approver must sign in as %s", e.got, e.want)
}

// expectedUsername is whom the approver must sign in as: configured, or
// their chat profile email.
func (w *Workflow) expectedUsername(ctx context.Context, approver string) (string, error) {
	if upn, ok := w.cfg.ApproverUPNs[approver]; ok {
		return upn, nil
	}
	email, err := w.notices.ProfileEmail(ctx, approver)
	if err != nil {
		return "", fmt.Errorf("looking up the approver's profile email: %w", err)
	}
	if email == "" {
		return "", errors.New("the approver's profile has no email and no Entra username is configured for them")
	}
	return email, nil
}

// signInOutcome is why a sign-in did not work, for the people told.
func (w *Workflow) signInOutcome(err error) *Outcome {
	var mismatch *identityMismatch
	var cut *signInCutShort
	switch {
	case errors.As(err, &mismatch):
		return &Outcome{Kind: OutcomeIdentityMismatch, SignedInAs: mismatch.got, Expected: mismatch.want}
	case errors.As(err, &cut) && cut.codeShown:
		return &Outcome{Kind: OutcomeSignInExpired}
	case errors.As(err, &cut):
		return &Outcome{Kind: OutcomeSignInUnavailable}
	case errors.Is(err, ErrSignInDeclined):
		return &Outcome{Kind: OutcomeSignInDeclined}
	case errors.Is(err, ErrSignInExpired):
		return &Outcome{Kind: OutcomeSignInExpired}
	case w.signInCtx.Err() != nil:
		return &Outcome{Kind: OutcomeSignInInterrupted}
	}
	return &Outcome{Kind: OutcomeSignInFailed}
}

// signInFailed puts the request back to pending: the approver may click
// Approve again. Both sides are told why.
func (w *Workflow) signInFailed(r *Request, err error) {
	if errors.Is(err, errWithdrawn) {
		w.log.Info("sign-in ended: the request was withdrawn", "ref", r.ID)
		w.audit(w.execCtx, r.ID, EventSignInFailed, r.DecidedBy, map[string]string{"reason": "withdrawn"})
		return // the cancel told whom it concerns
	}
	why := w.signInOutcome(err)
	w.log.Warn("sign-in failed", "ref", r.ID, "why", string(why.Kind), "err", err)
	ctx, cancel := detached(w.execCtx)
	defer cancel()
	w.audit(ctx, r.ID, EventSignInFailed, r.DecidedBy, map[string]string{"reason": string(why.Kind)})
	w.reopen(ctx, r, why, NoticeSignInFailed)
}

// reopen moves r back to pending with why, redraws the prompts and, unless
// tell is "", tells its approver and requester that (with why).
func (w *Workflow) reopen(ctx context.Context, r *Request, why *Outcome, tell NoticeKind) *Request {
	reopened, err := w.settle(ctx, r.ID, step{
		from: beforeCall, to: StatePending,
		// The approval deadline again, not the confirmation window.
		update: func(r *Request) { r.Outcome, r.ExpiresAt = why, r.DecideBy },
		also: func(r *Request) []Outgoing {
			if tell == "" {
				return nil
			}
			n := Notice{Kind: tell, Request: r, Why: why}
			if tell == NoticeStatus {
				n.Why = nil // the status shows the outcome
			}
			return tellEach(n, r.DecidedBy, r.RequesterID)
		},
	})
	if err != nil {
		w.log.Error("could not reopen the request", "ref", r.ID, "err", err)
		return nil
	}
	return reopened
}

// lookUpFailed handles a failed look-up before any reprovision was sent: a
// missing Cloud PC ends the request; anything else leaves it approvable.
func (w *Workflow) lookUpFailed(ctx context.Context, r *Request, err error) {
	ge := asGraphError(err, "GET")
	w.log.Warn("look-up failed", "ref", r.ID, "kind", string(ge.Kind), "err", err)
	if ge.Kind == GraphSignInAgain {
		w.sessions.forget(r.DecidedBy, r.ID, ge.Claims)
	}
	why := &Outcome{Kind: OutcomeGraph, Graph: ge}
	if ge.Kind == GraphNotFound || ge.Kind == GraphInvalid {
		w.failBeforeCall(ctx, r, why, nil)
		return
	}
	ctx, cancel := detached(ctx)
	defer cancel()
	w.reopen(ctx, r, why, NoticeStatus)
}

// asGraphError is err as a *GraphError; an error of another shape (the
// port broke its contract) counts as a failure of the given method.
func asGraphError(err error, method string) *GraphError {
	var ge *GraphError
	if errors.As(err, &ge) {
		return ge
	}
	return &GraphError{Kind: GraphFailed, Cause: CauseUnexpected, Method: method, Err: err}
}

// failBeforeCall ends a request that never reached the reprovision call,
// keeping device (what was last seen of its Cloud PC; nil for r.Device) when
// it is the request's. It returns the failed request, or nil when the
// failure could not be recorded (the request moved on, or the store failed).
func (w *Workflow) failBeforeCall(ctx context.Context, r *Request, why *Outcome, device *CloudPC) *Request {
	ctx, cancel := detached(ctx)
	defer cancel()
	if device == nil {
		device = r.Device
	}
	failed, err := w.settle(ctx, r.ID, step{
		from: beforeCall, to: StateFailed,
		update: func(r *Request) {
			r.Outcome = why
			if device != nil && r.Device == nil && r.CloudPCID == device.ID {
				r.Device = device
			}
		},
		event:         EventFailed,
		tellRequester: true, tellApprover: true,
	})
	if err != nil {
		w.log.Error("could not record the failure", "ref", r.ID, "err", err)
		return nil
	}
	return failed
}

// conflictOutcome explains a store refusal to record the Cloud PC: another
// request holds it, or the store failed.
func (w *Workflow) conflictOutcome(ctx context.Context, cloudPCID string, err error) *Outcome {
	if !errors.Is(err, ErrOpenRequestExists) {
		w.log.Error("could not record the Cloud PC", "cloud_pc", cloudPCID, "err", err)
		return &Outcome{Kind: OutcomeNotRecorded}
	}
	why := &Outcome{Kind: OutcomeOpenElsewhere, CloudPCID: cloudPCID}
	if other, oerr := w.store.OpenFor(ctx, cloudPCID); oerr == nil {
		why.Other, why.OtherRequester = other.ID, other.RequesterID
	}
	return why
}
