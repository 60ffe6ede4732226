package bot

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/graph"
)

// sessions keeps approvers' sign-ins in memory only: tokens are never
// written to disk or the store, so after a restart approvers sign in again.
type sessions struct {
	ttl time.Duration

	mu sync.Mutex
	// byApprover: reusable sign-ins, valid for ttl after the sign-in itself
	// (reuse does not extend it).
	byApprover map[string]signedIn
	// byRequest: the sign-in a request in progress runs with, kept until
	// that request is done even when ttl is 0 (a fresh sign-in per approval).
	byRequest map[string]*graph.Session
	// claims: a Conditional Access claims challenge the approver's next
	// sign-in must satisfy.
	claims map[string]string
}

type signedIn struct {
	session *graph.Session
	at      time.Time
}

func (s *sessions) init() {
	if s.byApprover == nil {
		s.byApprover, s.byRequest = map[string]signedIn{}, map[string]*graph.Session{}
		s.claims = map[string]string{}
	}
}

// signedIn records a fresh sign-in of approver for request ref.
func (s *sessions) signedIn(approver, ref string, session *graph.Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	if s.ttl > 0 {
		s.byApprover[approver] = signedIn{session, time.Now()}
	}
	delete(s.claims, approver)
	s.byRequest[ref] = session
}

// pin makes request ref run with session (a reused sign-in).
func (s *sessions) pin(ref string, session *graph.Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	s.byRequest[ref] = session
}

// valid returns the approver's reusable sign-in, or nil.
func (s *sessions) valid(approver string) *graph.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	si, ok := s.byApprover[approver]
	if !ok {
		return nil
	}
	if s.ttl <= 0 || time.Since(si.at) >= s.ttl {
		delete(s.byApprover, approver)
		return nil
	}
	return si.session
}

// anyValid returns a reusable sign-in of any of the approvers, or nil.
func (s *sessions) anyValid(approvers []string) *graph.Session {
	for _, a := range approvers {
		if si := s.valid(a); si != nil {
			return si
		}
	}
	return nil
}

// forRequest is the sign-in pinned to ref, else the approver's reusable one.
func (s *sessions) forRequest(ref, approver string) *graph.Session {
	s.mu.Lock()
	pinned := s.byRequest[ref]
	s.mu.Unlock()
	if pinned != nil {
		return pinned
	}
	return s.valid(approver)
}

// release unpins ref's sign-in once the request needs it no more.
func (s *sessions) release(ref string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byRequest, ref)
}

// forget drops an approver's sign-in because Graph wants a fresh one, and
// keeps the claims the next sign-in must satisfy.
func (s *sessions) forget(approver, ref, claims string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	delete(s.byApprover, approver)
	delete(s.byRequest, ref)
	if claims != "" {
		s.claims[approver] = claims
	}
}

func (s *sessions) claimsFor(approver string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.claims[approver]
}

// signIn runs the device-code sign-in for approver, DMing them the code,
// and checks that they signed in as themselves. why completes "Sign in to …".
func (b *Bot) signIn(r *approvals.Request, approver, why string) (*graph.Session, error) {
	b.audit(b.execCtx, r.ID, approvals.EventSignInStarted, approver, nil)
	// A claims challenge from Graph (Conditional Access) must be met by
	// this sign-in, or Graph will refuse again.
	session, err := b.cfg.SignIn.SignInWithClaims(b.signInCtx, b.sessions.claimsFor(approver), func(ctx context.Context, code graph.DeviceCode) error {
		return b.sendSignInCode(ctx, approver, why, code)
	})
	if err != nil {
		return nil, err
	}
	b.log.Info("approver signed in", "ref", r.ID, "approver", approver, "upn", session.Username)
	b.audit(b.execCtx, r.ID, approvals.EventSignedIn, approver, map[string]string{"upn": session.Username})
	expected, err := b.expectedUPN(b.execCtx, approver)
	if err != nil {
		return nil, err
	}
	if !session.MatchesUser(expected) {
		b.audit(b.execCtx, r.ID, approvals.EventIdentityMismatch, approver, map[string]string{"upn": session.Username, "expected": expected})
		return nil, &identityMismatch{got: session.Username, want: expected}
	}
	b.sessions.signedIn(approver, r.ID, session)
	return session, nil
}

// identityMismatch: someone signed in, but not as the approver who clicked.
type identityMismatch struct{ got, want string }

func (e *identityMismatch) Error() string {
	return fmt.Sprintf("signed in as %s, but this approver must sign in as %s", e.got, e.want)
}

// expectedUPN is whom the approver must sign in as: configured, or their
// Slack profile email.
func (b *Bot) expectedUPN(ctx context.Context, approver string) (string, error) {
	if upn, ok := b.cfg.ApproverUPNs[approver]; ok {
		return upn, nil
	}
	var user *slack.User
	err := b.slackCall(ctx, "users.info", func(ctx context.Context) (err error) {
		user, err = b.api.GetUserInfoContext(ctx, approver)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("looking up the approver's Slack email: %w", err)
	}
	if user.Profile.Email == "" {
		return "", errors.New("the approver's Slack profile has no email (is users:read.email granted?) and REPROVISION_APPROVER_UPNS does not name them")
	}
	return user.Profile.Email, nil
}

// sendSignInCode DMs the device code to the approver. It is called by the
// sign-in flow as soon as Entra issues the code.
func (b *Bot) sendSignInCode(ctx context.Context, approver, why string, code graph.DeviceCode) error {
	link, err := url.Parse(code.VerificationURL)
	if err != nil || link.Scheme != "https" {
		return fmt.Errorf("sign-in: Entra sent a verification URL that is not https")
	}
	return b.slackCall(ctx, "chat.postMessage", func(ctx context.Context) error {
		_, _, err := b.api.PostMessageContext(ctx, approver,
			slack.MsgOptionText(fmt.Sprintf("Sign in to %s: open %s and enter the code %s", why, link, code.UserCode), false),
			slack.MsgOptionBlocks(signInBlocks(why, link.String(), code.UserCode)...))
		return err
	})
}

// signInProblem is the sentence people see when a sign-in did not work.
func (b *Bot) signInProblem(err error) string {
	var mismatch *identityMismatch
	switch {
	case errors.As(err, &mismatch):
		return fmt.Sprintf("The sign-in was as %s, not as the approver (%s), so nothing was done.", escapeText(mismatch.got), escapeText(mismatch.want))
	case errors.Is(err, graph.ErrSignInDeclined):
		return "Sign-in was declined."
	case errors.Is(err, graph.ErrSignInExpired):
		return "The sign-in code expired."
	case b.signInCtx.Err() != nil:
		return "The bot restarted during sign-in."
	}
	return "Sign-in did not complete."
}

// signInFailed puts the request back to pending: the approver may click
// Approve again. Both sides are told why.
func (b *Bot) signInFailed(r *approvals.Request, err error) {
	reason := b.signInProblem(err)
	b.log.Warn("sign-in failed", "ref", r.ID, "reason", reason, "err", err)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(b.execCtx), cleanupTimeout)
	defer cancel()
	b.audit(ctx, r.ID, approvals.EventSignInFailed, r.DecidedBy, map[string]string{"reason": reason})
	r = b.reopen(ctx, r, reason+" Approve again to retry.")
	if r == nil || b.signInCtx.Err() != nil {
		return // shutting down: the prompt says it; no time for more
	}
	b.dm(ctx, r.DecidedBy, fmt.Sprintf("%s %s is still waiting: click Approve on the prompt to try again.", reason, r.ID))
	b.dm(ctx, r.RequesterID, fmt.Sprintf("Your request %s was approved, but the approver's sign-in did not complete (%s). It is waiting for a decision again.",
		r.ID, reason))
}

// beforeCall are the states of an approved request before its reprovision
// call: the only ones a failure before the call may move it from. (A worker
// that lost the race to another must not undo the winner's executing.)
var beforeCall = []approvals.State{approvals.StateApproved, approvals.StateConfirming}

// reopen moves r back to pending with a note, and redraws the prompts.
func (b *Bot) reopen(ctx context.Context, r *approvals.Request, note string) *approvals.Request {
	reopened, err := b.cfg.Store.TransitionFrom(ctx, r.ID, beforeCall, approvals.StatePending, func(r *approvals.Request) { r.Outcome = note })
	if err != nil {
		b.log.Error("could not reopen the request", "ref", r.ID, "err", err)
		return nil
	}
	b.sessions.release(r.ID)
	b.updatePrompts(ctx, reopened)
	return reopened
}
