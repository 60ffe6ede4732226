package approvals_test

import (
	"slices"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

const (
	carol     = "U0CAROL" // the user of pc2, with a chat account
	carolUPN  = "carol@contoso.com"
	nobodyUPN = "gone@contoso.com" // the user of pc3, without one
)

// withHeadsUp: the Cloud PC's user is told, and the call waits notice
// after it (0: none). pc2 is carol's, pc3 belongs to someone without a chat
// account; pc1 stays alice's (the requester's).
func withHeadsUp(notice time.Duration) option {
	return func(c *approvals.Config) {
		c.NotifyUser, c.UserNotice = true, notice
	}
}

func (h *harness) withUsers() {
	h.graph.set(func(g *fakeGraph) {
		for id, upn := range map[string]string{pc2: carolUPN, pc3: nobodyUPN} {
			pc := g.pcs[id]
			pc.UserPrincipalName = upn
			g.pcs[id] = pc
		}
	})
	h.notes.set(func(n *recorder) { n.chatUsers = map[string]string{carolUPN: carol, "alice@contoso.com": alice} })
}

// confirmScheduled has a1 confirm ref and waits for its call to be
// scheduled (after the heads-up).
func (h *harness) confirmScheduled(ref string) *approvals.Request {
	h.t.Helper()
	if _, err := h.w.Confirm(ctx, a1, ref, ""); err != nil {
		h.t.Fatalf("Confirm(%s): %v", ref, err)
	}
	return h.waitScheduled(ref)
}

// waitScheduled waits until ref is scheduled and the worker that scheduled
// it has let go of it: the state is stored a moment before the worker's
// claim ends (and its user-notified record is written after), and a click
// in between is rightly told "busy".
func (h *harness) waitScheduled(ref string) *approvals.Request {
	h.t.Helper()
	r := h.waitState(ref, approvals.StateScheduled)
	h.waitFor("the scheduling worker to finish", func() bool { return len(h.eventsOf(ref, approvals.EventUserNotified)) > 0 })
	return r
}

// toldKinds is who was told what about ref, as "user:kind", in order.
func (h *harness) toldKinds(ref string) []string {
	var out []string
	for _, t := range h.notes.tellsOf(ref) {
		out = append(out, t.User+":"+string(t.Kind))
	}
	return out
}

func (h *harness) waitTold(ref, user string, kind approvals.NoticeKind) {
	h.t.Helper()
	h.waitFor(user+" told "+string(kind), func() bool { return slices.Contains(h.toldKinds(ref), user+":"+string(kind)) })
}

// With no wait, the user hears as the call goes, and again when their Cloud
// PC is ready; the heads-up is in the audit trail.
func TestHeadsUpAsTheCallGoes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withHeadsUp(0), withTrackFor(time.Minute))
	h.withUsers()
	h.graph.set(func(g *fakeGraph) { g.afterPOST = []string{"provisioning", "provisioned"} })
	r := h.open(pc2)
	h.approve(a1, r.ID)
	done := h.confirm(a1, r.ID, approvals.StateSucceeded)
	if done.HeadsUp.UserID != carol || done.HeadsUp.Result != approvals.HeadsUpSent || !done.HeadsUp.SendAt.IsZero() {
		t.Errorf("heads-up %+v", done.HeadsUp)
	}
	h.waitTracked(r.ID)
	h.waitTold(r.ID, carol, approvals.NoticeUserReady)
	h.waitTold(r.ID, alice, approvals.NoticeStatus)
	h.stop()
	got := slices.DeleteFunc(h.toldKinds(r.ID), func(k string) bool { return k == alice+":status" })
	if !slices.Equal(got, []string{carol + ":heads_up", carol + ":user_ready"}) {
		t.Errorf("told %q, want carol's heads-up, then that it is ready", h.toldKinds(r.ID))
	}
	if e := h.eventsOf(r.ID, approvals.EventUserNotified); len(e) != 1 || e[0].Details["user"] != carol || e[0].Details["upn"] != carolUPN || e[0].Details["result"] != "sent" {
		t.Errorf("heads-up record: %+v", e)
	}
	if n := len(h.graph.reprovisioned()); n != 1 {
		t.Errorf("%d calls, want 1", n)
	}
}

// No chat account for the Cloud PC's user: the approver and the requester
// are told so, and the reprovision goes on.
func TestHeadsUpNoChatAccount(t *testing.T) {
	t.Parallel()
	for _, notice := range []time.Duration{0, 20 * time.Minute} {
		t.Run(notice.String(), func(t *testing.T) {
			h := newHarness(t, withHeadsUp(notice))
			h.withUsers()
			r := h.open(pc3)
			h.approve(a1, r.ID)
			done := h.confirm(a1, r.ID, approvals.StateSucceeded)
			h.waitTold(r.ID, a1, approvals.NoticeUserNotNotified)
			h.waitTold(r.ID, alice, approvals.NoticeUserNotNotified)
			h.stop()
			if done.HeadsUp.Result != approvals.HeadsUpNoAccount || done.HeadsUp.UserID != "" {
				t.Errorf("heads-up %+v", done.HeadsUp)
			}
			if n := len(h.graph.reprovisioned()); n != 1 {
				t.Errorf("%d calls, want 1 (without waiting: nobody to wait for)", n)
			}
			if e := h.eventsOf(r.ID, approvals.EventUserNotified); len(e) != 1 || e[0].Details["result"] != approvals.HeadsUpNoAccount {
				t.Errorf("heads-up record: %+v", e)
			}
		})
	}
}

// The requester whose own Cloud PC it is gets one message each time: the
// heads-up, then that it is ready (no separate status at the end).
func TestHeadsUpRequesterIsTheUser(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withHeadsUp(0), withTrackFor(time.Minute))
	h.withUsers()
	h.graph.set(func(g *fakeGraph) { g.afterPOST = []string{"provisioning", "provisioned"} })
	r := h.open(pc1) // alice's
	h.approve(a1, r.ID)
	h.confirm(a1, r.ID, approvals.StateSucceeded)
	h.waitTracked(r.ID)
	h.waitTold(r.ID, alice, approvals.NoticeUserReady)
	h.stop()
	want := []string{alice + ":heads_up", alice + ":status", alice + ":user_ready"} // status: Graph accepted it
	if got := h.toldKinds(r.ID); !slices.Equal(got, want) {
		t.Errorf("told %q, want %q", got, want)
	}
}

// The wait: the call goes at its time, not before; the requester hears
// when.
func TestUserNoticeSendsAtItsTime(t *testing.T) {
	t.Parallel()
	const notice = 400 * time.Millisecond
	h := newHarness(t, withHeadsUp(notice))
	h.withUsers()
	r := h.open(pc2)
	h.approve(a1, r.ID)
	if _, err := h.w.Confirm(ctx, a1, r.ID, ""); err != nil {
		t.Fatal(err)
	}
	confirmedAt := time.Now()
	scheduled := h.waitState(r.ID, approvals.StateScheduled)
	if d := scheduled.HeadsUp.SendAt.Sub(confirmedAt); d < notice-100*time.Millisecond || d > notice+time.Second {
		t.Errorf("send at %v after the confirmation, want %v", d, notice)
	}
	if n := len(h.graph.reprovisioned()); n != 0 {
		t.Fatalf("%d calls during the wait", n)
	}
	h.waitTold(r.ID, carol, approvals.NoticeHeadsUp)
	h.waitTold(r.ID, alice, approvals.NoticeStatus)
	h.waitState(r.ID, approvals.StateSucceeded)
	h.stop()
	posts := h.graph.reprovisioned()
	if len(posts) != 1 || posts[0] != pc2+" by "+upn1 {
		t.Errorf("calls %q", posts)
	}
	if calls := h.eventsOf(r.ID, approvals.EventGraphCall); len(calls) == 0 || calls[len(calls)-1].Time.Before(scheduled.HeadsUp.SendAt) {
		t.Errorf("the call went before its time: %+v", calls)
	}
}

// Send now and Cancel: only the approver who confirmed; the user hears of
// a cancel.
func TestUserNoticeSendNowAndCancel(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withHeadsUp(20*time.Minute))
	h.withUsers()
	scheduledOne := func() *approvals.Request {
		r := h.open(pc2)
		h.approve(a1, r.ID)
		return h.confirmScheduled(r.ID)
	}
	r := scheduledOne()
	_, err := h.w.SendNow(ctx, a2, r.ID)
	wantRefusal(t, err, approvals.RefusedNotConfirmer)
	_, err = h.w.Abort(ctx, carol, r.ID)
	wantRefusal(t, err, approvals.RefusedNotConfirmer)
	if _, err := h.w.SendNow(ctx, a1, r.ID); err != nil {
		t.Fatal(err)
	}
	h.waitState(r.ID, approvals.StateSucceeded)
	if e := h.eventsOf(r.ID, approvals.EventSentEarly); len(e) != 1 || e[0].Actor != a1 {
		t.Errorf("send-now record: %+v", e)
	}
	_, err = h.w.SendNow(ctx, a1, r.ID)
	wantRefusal(t, err, approvals.RefusedNotScheduled)

	r = scheduledOne()
	canceled, err := h.w.Abort(ctx, a1, r.ID)
	if err != nil || canceled.State != approvals.StateCanceled {
		t.Fatalf("Abort = %+v, %v", canceled, err)
	}
	h.waitTold(r.ID, carol, approvals.NoticeUserUpdate)

	// The requester may withdraw it during the wait too.
	r = scheduledOne()
	if _, err := h.w.Cancel(ctx, alice, r.ID); err != nil {
		t.Fatal(err)
	}
	h.waitTold(r.ID, carol, approvals.NoticeUserUpdate)
	h.waitTold(r.ID, a1, approvals.NoticeStatus)
	h.stop()
	if n := len(h.graph.reprovisioned()); n != 1 {
		t.Errorf("%d calls, want 1 (the one sent now)", n)
	}
}

// "I need more time": only the user, once; the approver is asked and may
// postpone once by the notice; the user hears the new time.
func TestUserNoticeMoreTime(t *testing.T) {
	t.Parallel()
	const notice = 20 * time.Minute
	h := newHarness(t, withHeadsUp(notice))
	h.withUsers()
	r := h.open(pc2)
	h.approve(a1, r.ID)
	scheduled := h.confirmScheduled(r.ID)

	_, err := h.w.AskMoreTime(ctx, bob, r.ID)
	wantRefusal(t, err, approvals.RefusedNotTheUser)
	asked, err := h.w.AskMoreTime(ctx, carol, r.ID)
	if err != nil || !asked.HeadsUp.MoreTimeAsked {
		t.Fatalf("AskMoreTime = %+v, %v", asked, err)
	}
	h.waitTold(r.ID, a1, approvals.NoticeMoreTimeAsked)
	_, err = h.w.AskMoreTime(ctx, carol, r.ID)
	wantRefusal(t, err, approvals.RefusedAskedAlready)

	_, err = h.w.Postpone(ctx, carol, r.ID)
	wantRefusal(t, err, approvals.RefusedNotConfirmer)
	later, err := h.w.Postpone(ctx, a1, r.ID)
	if err != nil || !later.HeadsUp.Postponed || !later.HeadsUp.SendAt.Equal(scheduled.HeadsUp.SendAt.Add(notice)) {
		t.Fatalf("Postpone = %+v, %v; want send at %v", later.HeadsUp, err, scheduled.HeadsUp.SendAt.Add(notice))
	}
	h.waitTold(r.ID, carol, approvals.NoticeUserUpdate)
	_, err = h.w.Postpone(ctx, a1, r.ID)
	wantRefusal(t, err, approvals.RefusedPostponed)
	h.stop()
	if e := h.eventsOf(r.ID, approvals.EventMoreTimeAsked); len(e) != 1 || e[0].Actor != carol {
		t.Errorf("more time record: %+v", e)
	}
	if e := h.eventsOf(r.ID, approvals.EventPostponed); len(e) != 1 || e[0].Actor != a1 {
		t.Errorf("postpone record: %+v", e)
	}
	if n := len(h.graph.reprovisioned()); n != 0 {
		t.Errorf("%d calls, want none yet", n)
	}
}

// A restart during the wait keeps the schedule but loses the sign-in: the
// approver is told to sign in again; the call waits for it, then goes (at
// once when its time has passed).
func TestUserNoticeRestart(t *testing.T) {
	t.Parallel()
	const notice = 300 * time.Millisecond
	h := newHarness(t, withHeadsUp(notice))
	h.withUsers()
	r := h.open(pc2)
	h.approve(a1, r.ID)
	h.store.pauseScheduler() // the call must not go before the restart
	scheduled := h.confirmScheduled(r.ID)
	h.restart()
	lost := h.get(r.ID)
	if lost.State != approvals.StateScheduled || !lost.HeadsUp.SignInLost || !lost.HeadsUp.SendAt.Equal(scheduled.HeadsUp.SendAt) {
		t.Fatalf("after the restart: %s, %+v", lost.State, lost.HeadsUp)
	}
	h.waitTold(r.ID, a1, approvals.NoticeSignInToSend)
	time.Sleep(time.Until(scheduled.HeadsUp.SendAt) + 200*time.Millisecond)
	if got := h.get(r.ID); got.State != approvals.StateScheduled || len(h.graph.reprovisioned()) != 0 {
		t.Fatalf("past its time without a sign-in: %s, %d calls; want it waiting", got.State, len(h.graph.reprovisioned()))
	}
	_, err := h.w.SignInToSend(ctx, carol, r.ID)
	wantRefusal(t, err, approvals.RefusedNotConfirmer)
	if _, err := h.w.SignInToSend(ctx, a1, r.ID); err != nil {
		t.Fatal(err)
	}
	done := h.waitState(r.ID, approvals.StateSucceeded)
	h.stop()
	if done.HeadsUp.SignInLost {
		t.Errorf("heads-up after the new sign-in: %+v", done.HeadsUp)
	}
	if posts := h.graph.reprovisioned(); len(posts) != 1 {
		t.Errorf("calls %q, want 1", posts)
	}
	// The heads-up went once, before the restart.
	if n := slices.Index(h.toldKinds(r.ID), carol+":heads_up"); n < 0 || slices.Contains(h.toldKinds(r.ID)[n+1:], carol+":heads_up") {
		t.Errorf("told %q, want one heads-up", h.toldKinds(r.ID))
	}
}

// A failure after the heads-up (the status re-check at the time of the
// call) is news for the user: it did not happen.
func TestHeadsUpThenStatusRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withHeadsUp(200*time.Millisecond))
	h.withUsers()
	r := h.open(pc2)
	h.approve(a1, r.ID)
	// Changed after the look-up the approver saw, before the wait: the
	// re-check at the time of the call finds it (set after scheduling,
	// a loaded machine could let the 200 ms wait pass first).
	h.graph.setStatus(pc2, "inGracePeriod")
	if _, err := h.w.Confirm(ctx, a1, r.ID, ""); err != nil {
		t.Fatal(err)
	}
	// Not a wait for the scheduled state: it lasts only the 200 ms.
	failed := h.waitState(r.ID, approvals.StateFailed)
	wantOutcome(t, failed, approvals.OutcomeStatusNotAllowed, "")
	h.waitTold(r.ID, carol, approvals.NoticeHeadsUp) // it was scheduled, after the heads-up
	h.waitTold(r.ID, carol, approvals.NoticeUserUpdate)
	h.stop()
	if n := len(h.graph.reprovisioned()); n != 0 {
		t.Errorf("%d calls, want none", n)
	}
}
