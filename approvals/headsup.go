package approvals

import (
	"context"
	"errors"
	"slices"
	"time"
)

// The person whose Cloud PC it is loses their session and their data. With
// Config.NotifyUser they hear of it when the approver confirms (a heads-up:
// which Cloud PC, who asked and approved, why), and again when their Cloud
// PC is ready. With Config.UserNotice the call waits that long after the
// heads-up (StateScheduled): the approver may send it at once or cancel,
// and the user may ask for more time, which the approver may give once.

// MaxUserNotice bounds the wait between the heads-up and the call: the
// approver's sign-in must still be fresh when it is sent.
const MaxUserNotice = 30 * time.Minute

// userLookupTimeout bounds finding the user in chat; past it the call goes
// on without a heads-up (and the approver and requester are told).
const userLookupTimeout = 10 * time.Second

// lookUpUser finds the chat user of r's Cloud PC (by its user principal
// name) for the heads-up.
func (w *Workflow) lookUpUser(ctx context.Context, r *Request) HeadsUp {
	var upn string
	if r.Device != nil {
		upn = r.Device.UserPrincipalName
	}
	if upn == "" {
		return HeadsUp{Result: HeadsUpNoUser}
	}
	ctx, cancel := context.WithTimeout(ctx, userLookupTimeout)
	defer cancel()
	user, err := w.notices.ChatUserByEmail(ctx, upn)
	switch {
	case errors.Is(err, ErrNoChatAccount) || (err == nil && user == ""):
		w.log.Info("the Cloud PC's user has no chat account", "ref", r.ID)
		return HeadsUp{Result: HeadsUpNoAccount}
	case err != nil:
		w.log.Warn("could not look the Cloud PC's user up in chat", "ref", r.ID, "err", err)
		return HeadsUp{Result: HeadsUpLookupFailed}
	}
	return HeadsUp{UserID: user, Result: HeadsUpSent}
}

// headsUpNews is what a request moving towards its call tells about the
// heads-up: the heads-up itself, or, when the user could not be found, the
// approver and requester that they were not told.
func headsUpNews(r *Request) []Outgoing {
	switch {
	case r.HeadsUp.Told():
		return []Outgoing{notice(r.HeadsUp.UserID, Notice{Kind: NoticeHeadsUp, Request: r})}
	case r.HeadsUp.Result != "":
		return tellEach(Notice{Kind: NoticeUserNotNotified, Request: r}, r.DecidedBy, r.RequesterID)
	}
	return nil
}

// headsUpDetails are the heads-up's facts for the audit trail.
func headsUpDetails(r *Request) map[string]string {
	d := map[string]string{"result": r.HeadsUp.Result, "user": r.HeadsUp.UserID}
	if r.Device != nil {
		d["upn"] = r.Device.UserPrincipalName
	}
	if !r.HeadsUp.SendAt.IsZero() {
		d["send_at"] = r.HeadsUp.SendAt.Format(time.RFC3339)
	}
	return d
}

// userNews tells the Cloud PC's user, after their heads-up, that what it
// said will not happen now (the request went back to waiting, or ended
// without the call), or how a call that went out without being followed
// ended. before is the request as it was before the move.
func userNews(before, after *Request, out []Outgoing) []Outgoing {
	if before == nil || !before.HeadsUp.Told() || before.State == after.State {
		return nil
	}
	user := before.HeadsUp.UserID
	switch after.State {
	case StateExecuting, StateScheduled:
		return nil
	case StateSucceeded:
		if after.Tracking.Active() {
			return nil // they hear when it is ready
		}
	}
	// One message per person: the requester who is the user has news of
	// their own in out already.
	if slices.ContainsFunc(out, func(o Outgoing) bool { return o.Kind == OutgoingNotice && o.User == user }) {
		return nil
	}
	return []Outgoing{notice(user, Notice{Kind: NoticeUserUpdate, Request: after})}
}

// confirmed runs a confirmed request: at once, or, with a wait configured
// and a user to tell, scheduled after the heads-up. The caller has claimed
// r (inFlight).
func (w *Workflow) confirmed(r *Request, session *Session) {
	if r.IsBatch() {
		// A batch's users each hear as their Cloud PC's call goes; there
		// is no wait before a batch.
		w.runBatch(r, session)
		return
	}
	if w.cfg.UserNotice <= 0 || !w.cfg.NotifyUser {
		w.execute(r, session)
		return
	}
	ctx, cancel := context.WithTimeout(w.execCtx, workTimeout)
	defer cancel()
	hu := w.lookUpUser(ctx, r)
	if !hu.Told() {
		// Nobody to give the time to: the call goes now, and the approver
		// and requester hear that the user was not told.
		r.HeadsUp = hu
		w.execute(r, session)
		return
	}
	hu.SendAt = time.Now().UTC().Add(w.cfg.UserNotice)
	s := step{
		from: beforeCall, to: StateScheduled,
		update: func(r *Request) {
			r.HeadsUp = hu
			// The approver's sign-in lives in memory: if it is lost in a
			// restart and not renewed by then, the request expires.
			r.ExpiresAt = hu.SendAt.Add(confirmWindow)
		},
		also: func(r *Request) []Outgoing {
			out := headsUpNews(r)
			if r.RequesterID != hu.UserID {
				out = append(out, notice(r.RequesterID, Notice{Kind: NoticeStatus, Request: r}))
			}
			return out
		},
	}
	scheduled, err := w.move(ctx, r.ID, s)
	// Free for Send now, Cancel and the scheduler as soon as it is stored.
	w.inFlight.remove(r.ID)
	if err != nil {
		w.log.Info("not scheduled", "ref", r.ID, "err", err)
		var te *TransitionError
		if errors.As(err, &te) {
			w.tell(r.DecidedBy, Notice{Kind: NoticeStatus, Request: te.Current})
			return
		}
		rctx, rcancel := detached(ctx)
		defer rcancel()
		w.reopen(rctx, r, &Outcome{Kind: OutcomeNotRecorded}, NoticeStatus)
		return
	}
	w.announce(ctx, scheduled, s)
	w.audit(ctx, scheduled.ID, EventUserNotified, scheduled.DecidedBy, headsUpDetails(scheduled))
	w.nudge()
}

// runScheduled sends the scheduled calls that are due, and returns when
// the next one is (or next).
func (w *Workflow) runScheduled(ctx context.Context, now, next time.Time) time.Time {
	scheduled, err := w.store.ListByState(ctx, StateScheduled)
	if err != nil {
		w.log.Error("could not list scheduled requests", "err", err)
		return next
	}
	for _, r := range scheduled {
		switch {
		case r.ExpiredAt(now):
			w.expire(ctx, r)
			continue
		case now.Before(r.HeadsUp.SendAt):
			next = minTime(next, r.HeadsUp.SendAt)
			continue
		}
		// Due. Without the approver's sign-in (lost in a restart) it waits
		// for them to sign in again, until it expires.
		if !r.ExpiresAt.IsZero() {
			next = minTime(next, r.ExpiresAt)
		}
		s := w.sendingSession(r)
		if s == nil || !w.inFlight.claim(r.ID) {
			continue
		}
		work := *r
		w.spawn(func() { w.execute(&work, s) })
	}
	return next
}

// sendingSession is the sign-in a scheduled call goes with: its approver's,
// pinned to it. Once lost in a restart only a sign-in for this request
// (SignInToSend) will do, not one the approver made for another: they were
// told to sign in to send this one.
func (w *Workflow) sendingSession(r *Request) *Session {
	if r.HeadsUp.SignInLost {
		return w.sessions.pinned(r.ID)
	}
	return w.sessions.forRequest(r.ID, r.DecidedBy)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// scheduledBy loads a scheduled request for an action of its approver (the
// one who confirmed, whose sign-in the call is made with).
func (w *Workflow) scheduledBy(ctx context.Context, user, ref string, action Action) (*Request, error) {
	r, err := w.load(ctx, ref, action)
	if err != nil {
		return nil, err
	}
	if r.State != StateScheduled {
		return nil, &Refusal{Kind: RefusedNotScheduled, Action: action, Ref: r.ID, Request: r}
	}
	if user != r.DecidedBy {
		return nil, w.refuse(ctx, user, &Refusal{Kind: RefusedNotConfirmer, Action: action, Request: r, Users: []string{r.DecidedBy}})
	}
	return r, nil
}

// SendNow sends a scheduled call at once, on its approver's word. When
// their sign-in was lost in a restart they sign in again first.
func (w *Workflow) SendNow(ctx context.Context, user, ref string) (*Request, error) {
	r, err := w.scheduledBy(ctx, user, ref, ActionSendNow)
	if err != nil {
		return nil, err
	}
	if !w.inFlight.claim(r.ID) {
		return nil, &Refusal{Kind: RefusedBusy, Action: ActionSendNow, Ref: r.ID, Request: r}
	}
	w.audit(ctx, r.ID, EventSentEarly, user, map[string]string{"send_at": r.HeadsUp.SendAt.Format(time.RFC3339)})
	work := *r
	if s := w.sendingSession(r); s != nil {
		w.spawn(func() { w.execute(&work, s) })
		return r, nil
	}
	w.spawn(func() { w.signInToSend(&work, true) })
	return r, nil
}

// SignInToSend has the approver of a scheduled request sign in again after
// a restart, so that the call can go at its time (or at once if that has
// passed).
func (w *Workflow) SignInToSend(ctx context.Context, user, ref string) (*Request, error) {
	r, err := w.scheduledBy(ctx, user, ref, ActionSignInToSend)
	if err != nil {
		return nil, err
	}
	if w.sendingSession(r) != nil {
		return nil, &Refusal{Kind: RefusedHandled, Action: ActionSignInToSend, Ref: r.ID, Request: r}
	}
	if !w.inFlight.claim(r.ID) {
		return nil, &Refusal{Kind: RefusedBusy, Action: ActionSignInToSend, Ref: r.ID, Request: r}
	}
	work := *r
	w.spawn(func() { w.signInToSend(&work, false) })
	return r, nil
}

// signInToSend signs r's approver in again; then the call goes now (now
// set), or at its time. The caller has claimed r (inFlight).
func (w *Workflow) signInToSend(r *Request, now bool) {
	s, err := w.signIn(r, r.DecidedBy, SignInToSend)
	if err != nil {
		w.inFlight.remove(r.ID)
		if errors.Is(err, errWithdrawn) {
			return
		}
		w.tell(r.DecidedBy, Notice{Kind: NoticeSignInToSend, Request: r, Why: w.signInOutcome(err)})
		return
	}
	ctx, cancel := context.WithTimeout(w.execCtx, workTimeout)
	defer cancel()
	updated, err := w.apply(ctx, r.ID, Change{
		From:   []State{StateScheduled},
		Update: func(r *Request) { r.HeadsUp.SignInLost = false },
		Notify: func(r *Request) []Outgoing { return []Outgoing{redraw(r)} },
	})
	if err != nil {
		w.inFlight.remove(r.ID)
		w.log.Info("signed in again, but the request moved on", "ref", r.ID, "err", err)
		return
	}
	if now || !time.Now().Before(updated.HeadsUp.SendAt) {
		w.execute(updated, s)
		return
	}
	w.inFlight.remove(r.ID)
	w.nudge()
}

// Postpone moves a scheduled call later by the user notice, once, on its
// approver's word (after the user asked for more time, or not); the user
// hears the new time.
func (w *Workflow) Postpone(ctx context.Context, user, ref string) (*Request, error) {
	r, err := w.scheduledBy(ctx, user, ref, ActionPostpone)
	if err != nil {
		return nil, err
	}
	if r.HeadsUp.Postponed {
		return nil, &Refusal{Kind: RefusedPostponed, Action: ActionPostpone, Ref: r.ID, Request: r}
	}
	// Not while a worker may be sending it: the new time would be a lie.
	if !w.inFlight.claim(r.ID) {
		return nil, &Refusal{Kind: RefusedBusy, Action: ActionPostpone, Ref: r.ID, Request: r}
	}
	defer w.inFlight.remove(r.ID)
	r, err = w.apply(ctx, ref, Change{
		From: []State{StateScheduled},
		Update: func(r *Request) {
			r.HeadsUp.SendAt = r.HeadsUp.SendAt.Add(w.cfg.UserNotice)
			r.ExpiresAt = r.ExpiresAt.Add(w.cfg.UserNotice)
			r.HeadsUp.Postponed = true
		},
		Notify: func(r *Request) []Outgoing {
			return []Outgoing{redraw(r), notice(r.HeadsUp.UserID, Notice{Kind: NoticeUserUpdate, Request: r})}
		},
	})
	if err != nil {
		return nil, late(err, ActionPostpone)
	}
	w.audit(ctx, r.ID, EventPostponed, user, map[string]string{"send_at": r.HeadsUp.SendAt.Format(time.RFC3339)})
	w.nudge()
	return r, nil
}

// AskMoreTime is the Cloud PC's user asking for more time before a
// scheduled call, once: its approver is asked to postpone it.
func (w *Workflow) AskMoreTime(ctx context.Context, user, ref string) (*Request, error) {
	r, err := w.load(ctx, ref, ActionMoreTime)
	if err != nil {
		return nil, err
	}
	if user != r.HeadsUp.UserID || r.HeadsUp.UserID == "" {
		return nil, w.refuse(ctx, user, &Refusal{Kind: RefusedNotTheUser, Action: ActionMoreTime, Request: r})
	}
	if r.State != StateScheduled {
		return nil, &Refusal{Kind: RefusedNotScheduled, Action: ActionMoreTime, Ref: r.ID, Request: r}
	}
	if r.HeadsUp.MoreTimeAsked || r.HeadsUp.Postponed {
		return nil, &Refusal{Kind: RefusedAskedAlready, Action: ActionMoreTime, Ref: r.ID, Request: r}
	}
	r, err = w.apply(ctx, ref, Change{
		From:   []State{StateScheduled},
		Update: func(r *Request) { r.HeadsUp.MoreTimeAsked = true },
		Notify: func(r *Request) []Outgoing {
			return []Outgoing{redraw(r), notice(r.DecidedBy, Notice{Kind: NoticeMoreTimeAsked, Request: r})}
		},
	})
	if err != nil {
		return nil, late(err, ActionMoreTime)
	}
	w.audit(ctx, r.ID, EventMoreTimeAsked, user, nil)
	return r, nil
}

// loseScheduledSignIns marks, at start, the scheduled requests whose
// approver's sign-in was lost with the last process: the call waits for
// them to sign in again (they are told), and expires if they do not.
func (w *Workflow) loseScheduledSignIns(ctx context.Context) {
	scheduled, err := w.store.ListByState(ctx, StateScheduled)
	if err != nil {
		w.log.Error("could not list scheduled requests", "err", err)
		return
	}
	for _, r := range scheduled {
		_, err := w.store.Apply(ctx, r.ID, Change{
			From:   []State{StateScheduled},
			Update: func(r *Request) { r.HeadsUp.SignInLost = true },
			Notify: func(r *Request) []Outgoing {
				return []Outgoing{redraw(r), notice(r.DecidedBy, Notice{Kind: NoticeSignInToSend, Request: r})}
			},
		})
		if err != nil {
			w.log.Error("could not mark a scheduled request's sign-in lost", "ref", r.ID, "err", err)
			continue
		}
		w.log.Warn("sign-in lost in restart; the scheduled call waits for its approver to sign in again", "ref", r.ID)
	}
}
