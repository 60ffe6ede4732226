package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// The Cloud PC's user gets a heads-up (issue 11, part 2), end to end: the
// real run against the fakes, with the user found in Slack by the Cloud
// PC's user principal name (users.lookupByEmail).

// cloudPCUserID is the Slack user whose email is the Cloud PC's UPN.
const cloudPCUserID = "U0ALICE"

// headsUpHarness is a harness where the Cloud PC's user has a Slack
// account, with notice as REPROVISION_USER_NOTICE ("" for the default).
func headsUpHarness(t *testing.T, h *harness, notice string) *harness {
	h.slack.SetUserEmail(cloudPCUserID, userUPN)
	if notice != "" {
		h.env["REPROVISION_USER_NOTICE"] = notice
	}
	return h
}

// clickOn presses the button action in the block blockPrefix+ref of
// message m as user, and waits for the ack.
func (h *harness) clickOn(user, action, blockPrefix, ref string, m fakes.Message) {
	h.t.Helper()
	env := h.slack.SendBlockAction(h.t, fakes.BlockAction{
		UserID: user, ActionID: action, BlockID: blockPrefix + ref, Value: ref, ChannelID: m.Channel, MessageTS: m.TS,
	})
	h.slack.WaitAck(h.t, env, wait)
}

// dmsCount counts user's DMs containing want.
func (h *harness) dmsCount(user, want string) int { return len(h.dmsContaining(user, want)) }

// sendAt is the time a scheduled prompt (or DM) shows: the first Slack
// date in it.
func sendAt(t *testing.T, text string) time.Time {
	t.Helper()
	i := strings.Index(text, "Sending at <!date^")
	if i < 0 {
		t.Fatalf("no sending time in %s", text)
	}
	rest := text[i+len("Sending at <!date^"):]
	unix, err := strconv.ParseInt(rest[:strings.Index(rest, "^")], 10, 64)
	if err != nil {
		t.Fatalf("sending time in %s: %v", text, err)
	}
	return time.Unix(unix, 0)
}

// waitPOSTs waits until Graph has seen n reprovision calls.
func (h *harness) waitPOSTs(n int) []fakes.GraphRequest {
	h.t.Helper()
	h.slack.WaitFor(h.t, wait, "the reprovision call", func() bool { return len(h.reprovisionPOSTs()) >= n })
	return h.reprovisionPOSTs()
}

// scheduled asks, approves with a sign-in and confirms, and waits for the
// prompt to show the scheduled call; it returns the prompt and reference.
func (h *harness) scheduled() (fakes.Message, string) {
	h.t.Helper()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	return h.waitPrompt(prompt.TS, "Sending at"), ref(h.t, prompt)
}

// The user hears before the call (which Cloud PC, who asked and approved,
// why, what they lose) and again when tracking sees it provisioned.
func TestHeadsUpAndReadyDMs(t *testing.T) {
	t.Parallel()
	h := headsUpHarness(t, trackingHarness(t), "")
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)

	h.waitDM(cloudPCUserID, "will be reprovisioned now")
	headsUp := h.dmsTo(cloudPCUserID)[0]
	for _, want := range []string{deviceName, cloudPCID, ref(t, prompt), "<@" + requesterID + "> asked for it", "<@" + approverID + "> approved it",
		reason, "*signed out*", "*all data and apps*", "*deleted*"} {
		if !strings.Contains(headsUp, want) {
			t.Errorf("heads-up lacks %q: %s", want, headsUp)
		}
	}
	if strings.Contains(headsUp, "more_time") {
		t.Errorf("heads-up without a wait offers more time: %s", headsUp)
	}
	h.waitThread(prompt, "provisioning")
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}
	h.graph.SetCloudPCStatus(cloudPCID, "provisioned")
	h.waitDM(cloudPCUserID, "is ready")
	h.waitDM(requesterID, "provisioned again")
	if got := h.dmsTo(cloudPCUserID); len(got) != 2 {
		t.Errorf("the user got %d DMs, want 2 (heads-up, ready): %q", len(got), got)
	}
	for _, who := range []string{approverID, requesterID} {
		if n := h.dmsCount(who, "could not be told"); n != 0 {
			t.Errorf("%s was told the user could not be told, but they were", who)
		}
	}
}

// No Slack account for the Cloud PC's UPN: the approver and the requester
// hear it, and the call goes on, once.
func TestHeadsUpNoSlackAccount(t *testing.T) {
	onBothStores(t, func(t *testing.T, h *harness) {
		h.env["REPROVISION_USER_NOTICE"] = "1m" // no wait without someone to tell
		h.start()
		prompt := h.ask(cloudPCID + " " + reason)
		h.approveWithSignIn(prompt)
		for _, who := range []string{approverID, requesterID} {
			h.waitDM(who, userUPN+" could not be told")
			h.waitDM(who, "no Slack account has that email address; the reprovision goes on")
		}
		h.waitDM(requesterID, "Reprovision started")
		if n := len(h.reprovisionPOSTs()); n != 1 {
			t.Errorf("%d reprovision calls, want exactly 1", n)
		}
		if n := h.slack.Calls("users.lookupByEmail"); len(n) == 0 {
			t.Error("users.lookupByEmail was never asked")
		}
		for _, who := range []string{approverID, requesterID} {
			if n := h.dmsCount(who, "could not be told"); n != 1 {
				t.Errorf("%s was told %d times that the user could not be told, want once", who, n)
			}
		}
	})
}

// The requester whose own Cloud PC it is gets one message at a time: the
// heads-up, not also a status; "ready", not also "provisioned again".
func TestHeadsUpRequesterIsTheUser(t *testing.T) {
	t.Parallel()
	h := trackingHarness(t)
	h.slack.SetUserEmail(requesterID, userUPN)
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "You asked for it and <@"+approverID+"> approved it")
	h.waitThread(prompt, "provisioning")
	h.graph.SetCloudPCStatus(cloudPCID, "provisioned")
	h.waitDM(requesterID, "is ready")
	h.waitPrompt(prompt.TS, "provisioned again")
	time.Sleep(300 * time.Millisecond) // anything more would have come by now
	dms := h.dmsTo(requesterID)
	seen := map[string]bool{}
	for _, m := range dms {
		if seen[m] {
			t.Errorf("the requester got the same DM twice: %s", m)
		}
		seen[m] = true
	}
	for want, n := range map[string]int{"Heads-up": 1, "is ready": 1, "provisioned again": 0, "could not be told": 0} {
		if got := h.dmsCount(requesterID, want); got != n {
			t.Errorf("%d DMs to the requester contain %q, want %d: %q", got, want, n, dms)
		}
	}
}

// With REPROVISION_USER_NOTICE the call waits: the prompt shows the time
// and Send now / Cancel, the user may ask for more time, nothing is sent
// before the time and the call goes once after it.
func TestUserNoticeWaitsThenSends(t *testing.T) {
	onBothStores(t, func(t *testing.T, h *harness) {
		headsUpHarness(t, h, "3s")
		h.start()
		prompt, r := h.scheduled()
		at := sendAt(t, blocks(prompt))
		for _, want := range []string{"(<@" + cloudPCUserID + "> was told)", `"action_id":"send_now"`, `"action_id":"abort"`} {
			if !strings.Contains(blocks(prompt), want) {
				t.Errorf("scheduled prompt lacks %q: %s", want, blocks(prompt))
			}
		}
		if n := len(h.reprovisionPOSTs()); n != 0 && time.Now().Before(at) {
			t.Fatalf("%d reprovision calls before the time", n)
		}
		h.waitDM(cloudPCUserID, "will be reprovisioned at <!date^")
		h.waitDM(cloudPCUserID, `"action_id":"more_time"`)
		h.waitDM(requesterID, "Sending at")

		posts := h.waitPOSTs(1)
		if posts[0].At.Before(at) {
			t.Errorf("the call went at %s, before its time %s", posts[0].At, at)
		}
		h.waitPrompt(prompt.TS, "Reprovision started")
		h.waitDM(requesterID, "Reprovision started")
		if n := len(h.reprovisionPOSTs()); n != 1 {
			t.Errorf("%d reprovision calls, want 1 (%s)", n, r)
		}
		if n := h.dmsCount(cloudPCUserID, "Heads-up"); n != 1 {
			t.Errorf("the user got %d heads-ups, want 1", n)
		}
	})
}

// Send now sends at once; only the approver who confirmed may.
func TestUserNoticeSendNow(t *testing.T) {
	t.Parallel()
	h := headsUpHarness(t, newHarness(t), "30m")
	h.start()
	prompt, r := h.scheduled()
	h.clickOn(requesterID, "send_now", "scheduled:", r, prompt)
	h.waitEphemeral(requesterID, "Only <@"+approverID+">")
	if n := len(h.reprovisionPOSTs()); n != 0 {
		t.Fatalf("%d calls after the requester's Send now, want 0", n)
	}
	begin := time.Now()
	h.clickOn(approverID, "send_now", "scheduled:", r, prompt)
	h.waitPOSTs(1)
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("Send now took %s", took)
	}
	h.waitPrompt(prompt.TS, "Reprovision started")
	h.waitEphemeral(approverID, "Sending "+r+" now")
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}
}

// Cancel while it waits: nothing is sent and the user hears it will not
// happen.
func TestUserNoticeCancel(t *testing.T) {
	t.Parallel()
	h := headsUpHarness(t, newHarness(t), "30m")
	h.start()
	prompt, r := h.scheduled()
	h.waitDM(cloudPCUserID, "Heads-up")
	h.clickOn(approverID, "abort", "scheduled:", r, prompt)
	h.waitPrompt(prompt.TS, "Canceled by <@"+approverID+"> before it was sent")
	h.waitDM(cloudPCUserID, "will not happen now: nothing was changed on your Cloud PC")
	h.waitDM(requesterID, "Canceled by <@"+approverID+">")
	if strings.Contains(blocks(h.promptNow(prompt.TS)), `"action_id":"send_now"`) {
		t.Error("Send now still on the canceled prompt")
	}
	if n := len(h.reprovisionPOSTs()); n != 0 {
		t.Errorf("%d reprovision calls after Cancel, want 0", n)
	}
}

// I need more time: the approver is asked and postpones once; the call
// goes only after the later time.
func TestUserNoticeMoreTimePostpone(t *testing.T) {
	onBothStores(t, func(t *testing.T, h *harness) {
		headsUpHarness(t, h, "4s")
		h.start()
		prompt, r := h.scheduled()
		first := sendAt(t, blocks(prompt))
		headsUp := h.waitDMMessage(cloudPCUserID, `"action_id":"more_time"`)

		// Only the Cloud PC's user may ask.
		h.clickOn(approverID, "more_time", "heads_up:", r, headsUp)
		h.waitEphemeral(approverID, "Only the person whose Cloud PC")

		h.clickOn(cloudPCUserID, "more_time", "heads_up:", r, headsUp)
		h.waitEphemeral(cloudPCUserID, "Asked <@"+approverID+"> for more time")
		asked := h.waitDMMessage(approverID, "asks for more time")
		if !strings.Contains(blocks(asked), `"action_id":"postpone"`) {
			t.Fatalf("the approver's DM has no Postpone: %s", blocks(asked))
		}
		h.waitPrompt(prompt.TS, "asked for more time")
		h.clickOn(cloudPCUserID, "more_time", "heads_up:", r, headsUp)
		h.waitEphemeral(cloudPCUserID, "You asked for more time for "+r+" already")

		h.clickOn(approverID, "postpone", "more_time:", r, asked)
		h.waitDM(cloudPCUserID, "was postponed: it now goes at")
		later := sendAt(t, blocks(h.waitPrompt(prompt.TS, "Postponed once")))
		if !later.After(first) {
			t.Fatalf("postponed to %s, not after %s", later, first)
		}
		h.clickOn(approverID, "postpone", "more_time:", r, asked)
		h.waitEphemeral(approverID, "postponed once already")

		posts := h.waitPOSTs(1)
		if posts[0].At.Before(later) {
			t.Errorf("the call went at %s, before the postponed time %s (first %s)", posts[0].At, later, first)
		}
		h.waitDM(requesterID, "Reprovision started")
		if n := len(h.reprovisionPOSTs()); n != 1 {
			t.Errorf("%d reprovision calls, want 1", n)
		}
	})
}

// A restart during the wait keeps the schedule but loses the sign-in: the
// approver is asked to sign in again, the call waits for it, then goes
// once.
func TestUserNoticeRestartDuringTheWait(t *testing.T) {
	onBothStores(t, func(t *testing.T, h *harness) {
		headsUpHarness(t, h, "3s")
		h.start()
		prompt, r := h.scheduled()
		at := sendAt(t, blocks(prompt))
		if _, err := h.stop(); err != nil {
			t.Fatalf("run returned %v on stop", err)
		}
		if n := len(h.reprovisionPOSTs()); n != 0 {
			t.Fatalf("%d calls before the restart, want 0", n)
		}
		h.start()
		signInDM := h.waitDMMessage(approverID, "The bot restarted while the reprovision")
		if !strings.Contains(blocks(signInDM), `"action_id":"sign_in_to_send"`) {
			t.Errorf("the sign-in DM has no Sign in button: %s", blocks(signInDM))
		}
		h.waitPrompt(prompt.TS, "The bot restarted; <@"+approverID+"> must sign in again")

		// Past its time, nothing is sent without the sign-in.
		time.Sleep(time.Until(at) + time.Second)
		if n := len(h.reprovisionPOSTs()); n != 0 {
			t.Fatalf("%d calls without a sign-in after the restart, want 0", n)
		}
		h.clickOn(approverID, "sign_in_to_send", "sign_in_to_send:", r, signInDM)
		dc := h.entra.WaitDeviceCode(t, wait)
		h.waitDM(approverID, "Sign in to send "+r)
		h.entra.SignIn(dc.UserCode, approverUPN)

		h.waitPOSTs(1)
		h.waitDM(requesterID, "Reprovision started")
		time.Sleep(300 * time.Millisecond)
		if n := len(h.reprovisionPOSTs()); n != 1 {
			t.Errorf("%d reprovision calls, want exactly 1", n)
		}
		if n := h.dmsCount(cloudPCUserID, "Heads-up"); n != 1 {
			t.Errorf("the user got %d heads-ups across the restart, want 1", n)
		}
	})
}

// After a restart, a sign-in before the time keeps the time: the call goes
// then, not at the sign-in; Send now (not signed in) signs in first and
// sends at once.
func TestUserNoticeSignInAgainBeforeTheTime(t *testing.T) {
	t.Parallel()
	h := headsUpHarness(t, newHarness(t), "4s")
	h.start()
	prompt, r := h.scheduled()
	at := sendAt(t, blocks(prompt))
	if _, err := h.stop(); err != nil {
		t.Fatal(err)
	}
	h.start()
	signInDM := h.waitDMMessage(approverID, "The bot restarted while the reprovision")
	h.clickOn(approverID, "sign_in_to_send", "sign_in_to_send:", r, signInDM)
	h.signIn(approverUPN)
	h.slack.WaitFor(t, wait, "the prompt drops the restart note", func() bool {
		return !strings.Contains(blocks(h.promptNow(prompt.TS)), "must sign in again")
	})
	if time.Now().Before(at) {
		if n := len(h.reprovisionPOSTs()); n != 0 {
			t.Fatalf("%d calls right after the sign-in, before the time", n)
		}
	}
	posts := h.waitPOSTs(1)
	if posts[0].At.Before(at) {
		t.Errorf("the call went at %s, before its time %s", posts[0].At, at)
	}
}

func TestUserNoticeSendNowAfterARestart(t *testing.T) {
	t.Parallel()
	h := headsUpHarness(t, newHarness(t), "30m")
	h.start()
	prompt, r := h.scheduled()
	if _, err := h.stop(); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitPrompt(prompt.TS, "must sign in again")
	h.clickOn(approverID, "send_now", "scheduled:", r, h.promptNow(prompt.TS))
	h.waitEphemeral(approverID, "sign in first")
	if n := len(h.reprovisionPOSTs()); n != 0 {
		t.Fatalf("%d calls before the sign-in", n)
	}
	h.signIn(approverUPN)
	h.waitPOSTs(1)
	h.waitDM(requesterID, "Reprovision started")
	// The user's button no longer applies.
	headsUp := h.waitDMMessage(cloudPCUserID, `"action_id":"more_time"`)
	h.clickOn(cloudPCUserID, "more_time", "heads_up:", r, headsUp)
	h.waitEphemeral(cloudPCUserID, r+" is not waiting to be sent")
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}
}

// The requester may withdraw a scheduled call; the user hears it is off.
func TestUserNoticeRequesterCancels(t *testing.T) {
	t.Parallel()
	h := headsUpHarness(t, newHarness(t), "30m")
	h.start()
	prompt, r := h.scheduled()
	h.waitDM(cloudPCUserID, "Heads-up")
	env := h.slack.SendBlockAction(t, fakes.BlockAction{UserID: requesterID, ActionID: "cancel", BlockID: "request:" + r, Value: r, ChannelID: channelID})
	h.slack.WaitAck(t, env, wait)
	h.waitPrompt(prompt.TS, "Canceled by the requester")
	h.waitDM(cloudPCUserID, "will not happen now")
	h.waitDM(approverID, "Canceled by the requester")
	if n := len(h.reprovisionPOSTs()); n != 0 {
		t.Errorf("%d reprovision calls, want 0", n)
	}
}

// When Graph answers at once, the user still gets the heads-up before any
// news of how it went: an outcome unknown "may have started" to someone
// never told they would be signed out and lose their data misleads, and
// "will not happen now" about a heads-up never received puzzles. (The
// heads-up goes with the move to executing and is delivered by the outbox
// loop, usually after the call returned: the outbox once dropped it as
// outdated then.)
func TestHeadsUpReachesTheUserWhenGraphAnswersFast(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		resp fakes.Response
	}{
		{"outcome unknown", fakes.GraphError(http.StatusInternalServerError, "InternalServerError", "Something went wrong")},
		{"refused", fakes.GraphError(http.StatusConflict, "Conflict", "busy")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := headsUpHarness(t, newHarness(t), "")
			h.graph.QueueReprovision(cloudPCID, tc.resp)
			h.start()
			prompt := h.ask(cloudPCID + " " + reason)
			h.approveWithSignIn(prompt)
			h.waitDM(requesterID, "Microsoft Graph")
			h.waitDM(cloudPCUserID, "The reprovision of your Cloud PC")
			dms := h.dmsTo(cloudPCUserID)
			if len(dms) != 2 || !strings.Contains(dms[0], "Heads-up") || !strings.Contains(dms[0], "*signed out*") {
				t.Errorf("the user's DMs: %q; want the heads-up, then the news", dms)
			}
		})
	}
}
