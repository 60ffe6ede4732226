package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// Approval policy and accountability (issue 4): reasons, deny with a reason,
// cancel, expiry, one open request per Cloud PC, who may ask and decide, the
// identity check at sign-in, the audit export and the App Home.

const (
	secondApproverID  = "U0SECOND"
	secondApproverUPN = "second@contoso.example"
)

// twoApprovers makes U0APPROVER and U0SECOND the approvers, each with the
// Entra identity they must sign in as.
func twoApprovers(h *harness) {
	h.env["REPROVISION_APPROVER"] = approverID + "," + secondApproverID
	h.env["REPROVISION_APPROVER_UPNS"] = approverID + ":" + approverUPN + "," + secondApproverID + ":" + secondApproverUPN
}

// refIn is the request reference in a text (an ack, a DM).
func refIn(t testing.TB, text string) string {
	t.Helper()
	return ref(t, fakes.Message{Text: text})
}

// promptOf waits for the prompt of request r in user's DM and returns it.
func (h *harness) promptOf(user, r string) fakes.Message {
	h.t.Helper()
	var m fakes.Message
	h.slack.WaitFor(h.t, wait, fmt.Sprintf("the prompt for %s reaches %s", r, user), func() bool {
		for _, msg := range h.slack.Messages(h.slack.DMChannel(user)) {
			if strings.Contains(msg.Text, "Reprovision request "+r) {
				m = msg
				return true
			}
		}
		return false
	})
	return m
}

// messageNow is m as it is now.
func (h *harness) messageNow(m fakes.Message) fakes.Message {
	h.t.Helper()
	cur, ok := h.slack.Message(m.Channel, m.TS)
	if !ok {
		h.t.Fatalf("message %s/%s is gone", m.Channel, m.TS)
	}
	return cur
}

// waitMessage waits until m's text or blocks contain want.
func (h *harness) waitMessage(m fakes.Message, want string) fakes.Message {
	h.t.Helper()
	h.slack.WaitFor(h.t, wait, fmt.Sprintf("message %s shows %q", m.TS, want), func() bool {
		cur, ok := h.slack.Message(m.Channel, m.TS)
		return ok && strings.Contains(cur.Text+" "+blocks(cur), want)
	})
	return h.messageNow(m)
}

// ephemeralWith waits for an ephemeral message to user containing want
// (text or blocks) and returns it.
func (h *harness) ephemeralWith(user, want string) fakes.Message {
	h.t.Helper()
	var found fakes.Message
	h.slack.WaitFor(h.t, wait, fmt.Sprintf("an ephemeral message to %s containing %q", user, want), func() bool {
		for _, m := range h.slack.Ephemerals(user) {
			if strings.Contains(m.Text+" "+blocks(m), want) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// signInAs waits for the next device code, checks it reached approver, and
// completes the sign-in as upn.
func (h *harness) signInAs(approver, upn string) {
	h.t.Helper()
	dc := h.entra.WaitDeviceCode(h.t, wait)
	h.waitDM(approver, dc.UserCode)
	h.entra.SignIn(dc.UserCode, upn)
}

// confirmAs waits for the final confirmation of request r in approver's DM
// and clicks action (confirm or abort) on it.
func (h *harness) confirmAs(approver, r, action string) {
	h.t.Helper()
	m := h.waitDMMessage(approver, `"block_id":"confirm:`+r+`"`)
	env := h.slack.SendBlockAction(h.t, fakes.BlockAction{
		UserID: approver, ActionID: action, BlockID: "confirm:" + r, Value: r, ChannelID: m.Channel, MessageTS: m.TS,
	})
	h.slack.WaitAck(h.t, env, wait)
}

// auditLine is one record of `reprovision-bot audit -format jsonl`.
type auditLine struct {
	Time      string            `json:"time"`
	RequestID string            `json:"request_id"`
	Kind      string            `json:"kind"`
	Actor     string            `json:"actor"`
	Details   map[string]string `json:"details"`
}

// exportAudit runs the audit command on the harness's store and returns its
// output.
func (h *harness) exportAudit(args ...string) string {
	h.t.Helper()
	var buf bytes.Buffer
	if err := runAudit(context.Background(), args, func(k string) string { return h.env[k] }, &buf); err != nil {
		h.t.Fatalf("audit %v: %v", args, err)
	}
	return buf.String()
}

// auditTrail is the JSONL export, parsed.
func (h *harness) auditTrail(args ...string) []auditLine {
	h.t.Helper()
	return parseJSONL(h.t, h.exportAudit(append([]string{"-format", "jsonl"}, args...)...))
}

func parseJSONL(t testing.TB, out string) []auditLine {
	t.Helper()
	var lines []auditLine
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if l == "" {
			continue
		}
		var a auditLine
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		lines = append(lines, a)
	}
	return lines
}

// eventsOf are the records of request r of kind.
func eventsOf(trail []auditLine, r, kind string) []auditLine {
	var out []auditLine
	for _, a := range trail {
		if a.RequestID == r && a.Kind == kind {
			out = append(out, a)
		}
	}
	return out
}

// waitAudit waits until the audit trail has a record of request r of kind
// (matching match, if given) and returns it. Records are written right
// around what users see, so this polls briefly.
func (h *harness) waitAudit(r, kind string, match func(auditLine) bool) auditLine {
	h.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		trail := h.auditTrail()
		for _, a := range eventsOf(trail, r, kind) {
			if match == nil || match(a) {
				return a
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no audit record %q for %q within %v; trail:\n%s", kind, r, wait, h.exportAudit())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// viewBlocks is a view's Block Kit JSON with <, >, & unescaped.
func viewBlocks(v fakes.View) string {
	return strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(v.Blocks))
}

// openHome sends app_home_opened for user, as Slack does when they open
// the app's Home tab.
func (h *harness) openHome(user string) {
	h.t.Helper()
	env := h.slack.SendEvent(h.t, map[string]any{
		"type": "app_home_opened", "user": user, "channel": fakes.DMChannel(user), "tab": "home", "event_ts": "1.2",
	})
	h.slack.WaitAck(h.t, env, wait)
}

// waitHome waits until user's Home tab satisfies cond and returns it.
func (h *harness) waitHome(user, what string, cond func(string) bool) fakes.View {
	h.t.Helper()
	var v fakes.View
	h.slack.WaitFor(h.t, wait, fmt.Sprintf("the Home tab of %s %s", user, what), func() bool {
		var ok bool
		v, ok = h.slack.HomeView(user)
		return ok && cond(viewBlocks(v))
	})
	return v
}

// ---- 1. Reason ----

func TestPolicyReasonIsOnThePromptTheOutcomeAndTheAuditTrail(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	why := reason + " <!channel> & co"
	ack := h.request(requesterID, cloudPCID+" "+why)
	r := refIn(t, ackText(t, ack))

	prompt := h.prompt()
	if got := ref(t, prompt); got != r {
		t.Fatalf("prompt is for %s, the ack for %s", got, r)
	}
	pb := blocks(prompt)
	if !strings.Contains(pb, "*Reason*") || !strings.Contains(pb, reason) {
		t.Errorf("the prompt does not show the reason inline: %s", pb)
	}
	if strings.Contains(pb, "<!channel>") || !strings.Contains(pb, "&lt;!channel&gt;") {
		t.Errorf("the reason is not escaped on the prompt (a mention in it would ping): %s", pb)
	}

	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "Reprovision started")
	final := h.waitPrompt(prompt.TS, "Reprovision started")
	if !strings.Contains(blocks(final), reason) {
		t.Errorf("the final prompt lost the reason: %s", blocks(final))
	}
	var outcome string
	for _, m := range h.dmsTo(requesterID) {
		if strings.Contains(m, "Reprovision started") {
			outcome = m
		}
	}
	if !strings.Contains(outcome, reason) {
		t.Errorf("the requester's outcome DM does not carry the reason %q: %s", reason, outcome)
	}

	req := h.waitAudit(r, "requested", nil)
	if req.Actor != requesterID || req.Details["reason"] != why || req.Details["target"] != cloudPCID || req.Details["channel"] != channelID {
		t.Errorf("requested record %+v lacks who, where, target or reason", req)
	}
	h.waitAudit(r, "succeeded", nil)
}

func TestPolicyReasonModalWhenTheCommandHasNone(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	const trigger = "1234567890123.7000000001.0123456789abcdef0123456789abcdef"
	env := h.slack.SendSlashCommand(t, fakes.SlashCommand{UserID: requesterID, ChannelID: channelID, Command: "/reprovision", Text: cloudPCID, TriggerID: trigger})
	h.slack.WaitAck(t, env, wait)

	view := h.slack.WaitView(t, requesterID, "reprovision_reason", wait)
	opens := h.slack.Calls("views.open")
	if len(opens) != 1 || opens[0].Params["trigger_id"] != trigger {
		t.Fatalf("views.open calls %+v, want one with the command's trigger_id %s", opens, trigger)
	}
	if !strings.Contains(viewBlocks(view), cloudPCID) {
		t.Errorf("the reason form does not name the Cloud PC: %s", view.Blocks)
	}

	// An empty reason (Slack lets whitespace through) is refused in the ack:
	// the form stays open and shows the error on the reason input.
	empty := h.slack.SendViewSubmission(t, fakes.ViewSubmission{
		UserID: requesterID, ViewID: view.ID, Values: map[string]map[string]string{"reason": {"reason_input": "   "}},
	})
	a := h.slack.WaitAck(t, empty, wait)
	if !strings.Contains(string(a.Payload), `"response_action":"errors"`) {
		t.Errorf("ack to an empty reason %s, want response_action errors", a.Payload)
	}
	if errs := h.slack.ViewErrors(view.ID); errs["reason"] == "" {
		t.Errorf("the form shows errors %v, want one on block reason", errs)
	}
	if v, _ := h.slack.View(view.ID); v.Closed {
		t.Error("the form closed after an empty reason")
	}
	if n := len(h.slack.Calls("chat.postMessage")); n != 0 {
		t.Errorf("%d messages posted before a reason was given", n)
	}

	ok := h.slack.SendViewSubmission(t, fakes.ViewSubmission{
		UserID: requesterID, ViewID: view.ID, Values: map[string]map[string]string{"reason": {"reason_input": reason}},
	})
	if a := h.slack.WaitAck(t, ok, wait); a.Payload != nil {
		t.Errorf("ack to a good reason %s, want an empty ack (closes the form)", a.Payload)
	}
	if v, _ := h.slack.View(view.ID); !v.Closed {
		t.Error("the form is still open after a good reason")
	}
	confirmation := h.ephemeralWith(requesterID, "Request R-")
	r := refIn(t, confirmation.Text)
	prompt := h.prompt()
	if ref(t, prompt) != r {
		t.Errorf("prompt %s, confirmation %s", ref(t, prompt), r)
	}
	if pb := blocks(prompt); !strings.Contains(pb, reason) || !strings.Contains(pb, cloudPCID) {
		t.Errorf("the prompt lacks the reason or the Cloud PC: %s", pb)
	}
	if a := h.waitAudit(r, "requested", nil); a.Details["reason"] != reason {
		t.Errorf("requested record has reason %q, want %q", a.Details["reason"], reason)
	}
}

// ---- 2. Deny with a reason ----

func TestPolicyDenyNeedsAReasonAndTheRequesterSeesIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	r := ref(t, prompt)

	h.click(approverID, "deny", prompt)
	view := h.slack.WaitView(t, approverID, "deny_reason", wait)
	if !strings.Contains(viewBlocks(view), r) {
		t.Errorf("the deny form does not name %s: %s", r, view.Blocks)
	}
	empty := h.slack.SendViewSubmission(t, fakes.ViewSubmission{
		UserID: approverID, ViewID: view.ID, Values: map[string]map[string]string{"reason": {"reason_input": "  "}},
	})
	h.slack.WaitAck(t, empty, wait)
	if errs := h.slack.ViewErrors(view.ID); errs["reason"] == "" {
		t.Errorf("deny without a reason: the form shows errors %v, want one on block reason", errs)
	}
	if v, _ := h.slack.View(view.ID); v.Closed {
		t.Error("the deny form closed without a reason")
	}
	if !strings.Contains(blocks(h.promptNow(prompt.TS)), `"action_id":"approve"`) {
		t.Error("the request is no longer pending after a deny without a reason")
	}

	h.submitForm(approverID, "deny_reason", "Try a restart first")
	h.waitPrompt(prompt.TS, "Denied by <@"+approverID+">. Reason: Try a restart first")
	h.waitDM(requesterID, "Reason: Try a restart first")
	if strings.Contains(blocks(h.promptNow(prompt.TS)), `"action_id":"approve"`) {
		t.Error("buttons still on a denied prompt")
	}
	a := h.waitAudit(r, "denied", nil)
	if a.Actor != approverID || a.Details["reason"] != "Try a restart first" {
		t.Errorf("denied record %+v lacks who or why", a)
	}
	if len(h.entra.DeviceCodes()) != 0 || len(h.graph.Requests()) != 0 {
		t.Error("a denied request reached Entra or Graph")
	}
}

// ---- 3. Cancel ----

func TestPolicyRequesterCancelsFromTheirConfirmation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	r := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
	prompt := h.prompt()
	receipt := h.ephemeralWith(requesterID, `"action_id":"cancel"`)
	if !strings.Contains(receipt.Text, r) {
		t.Fatalf("the confirmation with Cancel is for another request: %q", receipt.Text)
	}

	// Someone else's cancel is refused and changes nothing.
	env := h.slack.SendBlockAction(t, fakes.BlockAction{UserID: strangerID, ActionID: "cancel", BlockID: "request:" + r, Value: r,
		ChannelID: receipt.Channel, MessageTS: receipt.TS})
	h.slack.WaitAck(t, env, wait)
	h.waitEphemeral(strangerID, "Only <@"+requesterID+"> can cancel "+r)
	h.waitAudit(r, "refused_click", func(a auditLine) bool { return a.Actor == strangerID })
	if !strings.Contains(blocks(h.promptNow(prompt.TS)), `"action_id":"approve"`) {
		t.Fatal("someone else's cancel changed the request")
	}

	// The requester's own click cancels it.
	env = h.slack.SendBlockAction(t, fakes.BlockAction{UserID: requesterID, ActionID: "cancel", ChannelID: receipt.Channel, MessageTS: receipt.TS})
	h.slack.WaitAck(t, env, wait)
	final := h.waitPrompt(prompt.TS, "Canceled by the requester")
	if strings.Contains(blocks(final), `"action_id":"approve"`) {
		t.Error("buttons still on a canceled prompt")
	}
	h.slack.WaitFor(t, wait, "the requester's confirmation says it was canceled", func() bool {
		for _, m := range h.slack.Ephemerals(requesterID) {
			if m.TS == receipt.TS {
				return strings.Contains(m.Text, "canceled") && !strings.Contains(blocks(m), `"action_id":"cancel"`)
			}
		}
		return false
	})
	if a := h.waitAudit(r, "canceled", nil); a.Actor != requesterID {
		t.Errorf("canceled record by %q, want the requester", a.Actor)
	}

	// The approver can no longer act on it.
	h.click(approverID, "approve", prompt)
	h.waitEphemeral(approverID, "already handled")
	if len(h.entra.DeviceCodes()) != 0 || len(h.graph.Requests()) != 0 {
		t.Error("a canceled request reached Entra or Graph")
	}
}

// ---- 4. Expiry ----

func TestPolicyExpiryEditsThePromptAndOffersRequestAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.env["REPROVISION_APPROVAL_TTL"] = "2s"
	h.start()
	r := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
	prompt := h.prompt()

	expired := h.waitPrompt(prompt.TS, "EXPIRED")
	if strings.Contains(blocks(expired), `"action_id":"approve"`) || strings.Contains(blocks(expired), `"action_id":"deny"`) {
		t.Errorf("buttons still on an expired prompt: %s", blocks(expired))
	}
	notice := h.waitDMMessage(requesterID, `"action_id":"request_again"`)
	if !strings.Contains(notice.Text, r) || !strings.Contains(notice.Text, "EXPIRED") {
		t.Errorf("expiry notice %q does not name %s as expired", notice.Text, r)
	}
	h.waitAudit(r, "expired", nil)

	// A click on the expired prompt does nothing.
	h.click(approverID, "approve", prompt)
	h.waitEphemeral(approverID, "already handled")
	if len(h.entra.DeviceCodes()) != 0 {
		t.Error("an expired request started a sign-in")
	}

	// One click asks again, with the same target and reason.
	env := h.slack.SendBlockAction(t, fakes.BlockAction{UserID: requesterID, ActionID: "request_again", ChannelID: notice.Channel, MessageTS: notice.TS})
	h.slack.WaitAck(t, env, wait)
	again := h.prompt()
	r2 := ref(t, again)
	if r2 == r {
		t.Fatalf("Request again reused the reference %s", r)
	}
	if pb := blocks(again); !strings.Contains(pb, cloudPCID) || !strings.Contains(pb, reason) || !strings.Contains(pb, "<@"+requesterID+">") {
		t.Errorf("the new prompt lacks the target, the reason or the requester: %s", pb)
	}
	if a := h.waitAudit(r2, "requested", nil); a.Details["reason"] != reason || a.Details["target"] != cloudPCID {
		t.Errorf("the new request's record %+v has another target or reason", a)
	}
}

// The requester can withdraw a request made with Request again like any
// other: its confirmation carries Cancel.
func TestPolicyRequestAgainConfirmationCanBeCanceled(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.env["REPROVISION_APPROVAL_TTL"] = "2s"
	h.start()
	h.request(requesterID, cloudPCID+" "+reason)
	h.prompt()
	notice := h.waitDMMessage(requesterID, `"action_id":"request_again"`)
	// Long enough for the new request to be canceled before it expires.
	h.stop()
	h.env["REPROVISION_APPROVAL_TTL"] = "1h"
	h.start()
	env := h.slack.SendBlockAction(t, fakes.BlockAction{UserID: requesterID, ActionID: "request_again", ChannelID: notice.Channel, MessageTS: notice.TS})
	h.slack.WaitAck(t, env, wait)
	again := h.prompt()
	r2 := ref(t, again)
	var receipt fakes.Message
	h.slack.WaitFor(t, wait, "a confirmation of "+r2+" with a Cancel button", func() bool {
		for _, m := range append(h.slack.Ephemerals(requesterID), h.slack.Messages(h.slack.DMChannel(requesterID))...) {
			if strings.Contains(m.Text, r2) && strings.Contains(blocks(m), `"action_id":"cancel"`) {
				receipt = m
				return true
			}
		}
		return false
	})
	env = h.slack.SendBlockAction(t, fakes.BlockAction{UserID: requesterID, ActionID: "cancel", ChannelID: receipt.Channel, MessageTS: receipt.TS})
	h.slack.WaitAck(t, env, wait)
	h.waitPrompt(again.TS, "Canceled by the requester")
}

func TestPolicyExpiryWhileTheBotIsDownIsHandledAtStart(t *testing.T) {
	t.Parallel()
	const ttl = 6 * time.Second
	h := newHarness(t)
	h.env["REPROVISION_APPROVAL_TTL"] = ttl.String()
	h.start()
	ack := h.request(requesterID, cloudPCID+" "+reason)
	r := refIn(t, ackText(t, ack))
	prompt := h.prompt()
	h.stop()
	if strings.Contains(blocks(h.promptNow(prompt.TS)), "EXPIRED") {
		t.Fatalf("%s expired before the bot stopped; this machine is too slow for a %v TTL", r, ttl)
	}
	// The request was made before its ack: its deadline is before this.
	time.Sleep(time.Until(ack.AckedAt.Add(ttl + 300*time.Millisecond)))
	if strings.Contains(blocks(h.promptNow(prompt.TS)), "EXPIRED") {
		t.Fatal("the prompt changed while the bot was down")
	}

	h.start()
	expired := h.waitPrompt(prompt.TS, "EXPIRED")
	if strings.Contains(blocks(expired), `"action_id":"approve"`) {
		t.Errorf("buttons still on the prompt expired while down: %s", blocks(expired))
	}
	h.waitDMMessage(requesterID, `"action_id":"request_again"`)
	h.waitAudit(r, "expired", nil)
}

// ---- 5. One open request per Cloud PC ----

func TestPolicyOneOpenRequestPerCloudPC(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	r1 := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
	prompt := h.prompt()

	// Pending: a second request for the same Cloud PC is refused, pointing
	// at the first.
	r2 := refIn(t, ackText(t, h.request(strangerID, strings.ToUpper(cloudPCID)+" apps broken")))
	refusal := h.ephemeralWith(strangerID, "already has an open")
	if !strings.Contains(refusal.Text, r1) || !strings.Contains(refusal.Text, "<@"+requesterID+">") {
		t.Errorf("refusal %q does not point at %s from the requester", refusal.Text, r1)
	}

	// In progress (approved, waiting for the sign-in): still refused.
	h.click(approverID, "approve", prompt)
	dc := h.entra.WaitDeviceCode(t, wait)
	r3 := refIn(t, ackText(t, h.request(strangerID, cloudPCID+" still broken")))
	h.slack.WaitFor(t, wait, "the third request is refused with a pointer to "+r1, func() bool {
		for _, m := range h.slack.Ephemerals(strangerID) {
			if strings.Contains(m.Text, r3) && strings.Contains(m.Text, r1) && strings.Contains(m.Text, "already has an open") {
				return true
			}
		}
		return false
	})
	for _, r := range []string{r2, r3} {
		for _, m := range h.dmsTo(approverID) {
			if strings.Contains(m, r) {
				t.Errorf("the approver heard of the refused request %s: %s", r, m)
			}
		}
	}

	// Once the first is decided, the Cloud PC is free again.
	h.entra.Decline(dc.UserCode)
	h.waitPrompt(prompt.TS, `"action_id":"approve"`)
	h.deny(approverID, prompt, "not needed")
	h.waitPrompt(prompt.TS, "Denied by")
	r4 := refIn(t, ackText(t, h.request(strangerID, cloudPCID+" really broken now")))
	h.promptOf(approverID, r4)
}

// ---- 6. Who may ask, who may decide ----

func TestPolicyEveryApproverGetsThePromptAndTheFirstDecisionWins(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	twoApprovers(h)
	h.start()
	ack := ackText(t, h.request(requesterID, cloudPCID+" "+reason))
	r := refIn(t, ack)
	if !strings.Contains(ack, "<@"+approverID+">") || !strings.Contains(ack, "<@"+secondApproverID+">") {
		t.Errorf("ack %q does not name both approvers", ack)
	}
	p1, p2 := h.promptOf(approverID, r), h.promptOf(secondApproverID, r)

	// Both click Approve at once.
	e1 := h.slack.SendBlockAction(t, fakes.BlockAction{UserID: approverID, ActionID: "approve", BlockID: "decision:" + r, Value: r, ChannelID: p1.Channel, MessageTS: p1.TS})
	e2 := h.slack.SendBlockAction(t, fakes.BlockAction{UserID: secondApproverID, ActionID: "approve", BlockID: "decision:" + r, Value: r, ChannelID: p2.Channel, MessageTS: p2.TS})
	h.slack.WaitAck(t, e1, wait)
	h.slack.WaitAck(t, e2, wait)

	var winner, loser, winnerUPN string
	h.slack.WaitFor(t, wait, "one approver gets the sign-in code", func() bool {
		for _, m := range h.dmsTo(approverID) {
			if strings.Contains(m, "enter the code") {
				winner, loser, winnerUPN = approverID, secondApproverID, approverUPN
				return true
			}
		}
		for _, m := range h.dmsTo(secondApproverID) {
			if strings.Contains(m, "enter the code") {
				winner, loser, winnerUPN = secondApproverID, approverID, secondApproverUPN
				return true
			}
		}
		return false
	})
	h.waitEphemeral(loser, "already handled")
	for _, p := range []fakes.Message{p1, p2} {
		m := h.waitMessage(p, "Approved by <@"+winner+">")
		if strings.Contains(blocks(m), `"action_id":"approve"`) {
			t.Errorf("buttons still on %s's prompt after the decision", m.Channel)
		}
	}

	h.signInAs(winner, winnerUPN)
	h.confirmAs(winner, r, "confirm")
	h.waitDM(requesterID, "Reprovision started")
	for _, p := range []fakes.Message{p1, p2} {
		h.waitMessage(p, "Reprovision started")
	}
	if n := len(h.entra.DeviceCodes()); n != 1 {
		t.Errorf("%d sign-ins, want exactly 1", n)
	}
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want exactly 1", n)
	}
	token := strings.TrimPrefix(h.reprovisionPOSTs()[0].Authorization, "Bearer ")
	if user := h.entra.AccessTokens()[token]; user != winnerUPN {
		t.Errorf("the call carried a token of %q, want the deciding approver's (%s)", user, winnerUPN)
	}
	h.waitAudit(r, "succeeded", nil)
	if approved := eventsOf(h.auditTrail(), r, "approved"); len(approved) != 1 || approved[0].Actor != winner {
		t.Errorf("approved records %+v, want exactly one, by %s", approved, winner)
	}
}

func TestPolicyRequestersAndChannelsAreRestricted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.env["REPROVISION_REQUESTERS"] = requesterID
	h.env["REPROVISION_CHANNELS"] = channelID
	h.start()

	notListed := ackText(t, h.request(strangerID, cloudPCID+" "+reason))
	if !strings.Contains(notListed, "not on the list") || !strings.Contains(notListed, "<@"+approverID+">") || strings.Contains(notListed, "R-") {
		t.Errorf("a non-allowed requester got %q, want a clear refusal naming whom to ask", notListed)
	}
	// Without a reason, too: refused at once, no form.
	env := h.slack.SendSlashCommand(t, fakes.SlashCommand{UserID: strangerID, ChannelID: channelID, Command: "/reprovision", Text: cloudPCID})
	if text := ackText(t, h.slack.WaitAck(t, env, wait)); !strings.Contains(text, "not on the list") {
		t.Errorf("a non-allowed requester without a reason got %q", text)
	}
	env = h.slack.SendSlashCommand(t, fakes.SlashCommand{UserID: requesterID, ChannelID: "C0RANDOM", Command: "/reprovision", Text: cloudPCID + " " + reason})
	wrongChannel := ackText(t, h.slack.WaitAck(t, env, wait))
	if !strings.Contains(wrongChannel, "<#"+channelID+">") || strings.Contains(wrongChannel, "R-") {
		t.Errorf("a request in another channel got %q, want a refusal naming %s", wrongChannel, channelID)
	}

	deadline := time.Now().Add(wait)
	for {
		if n := len(eventsOf(h.auditTrail(), "", "refused_request")); n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("want 3 refused_request records; trail:\n%s", h.exportAudit())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(h.slack.Calls("chat.postMessage")); n != 0 {
		t.Errorf("refused requests led to %d messages", n)
	}
	if n := len(h.slack.Calls("views.open")); n != 0 {
		t.Errorf("refused requests opened %d forms", n)
	}
	if len(h.graph.Requests()) != 0 || len(h.entra.DeviceCodes()) != 0 {
		t.Error("refused requests reached Entra or Graph")
	}

	// The allowed requester in the allowed channel is served.
	r := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
	h.promptOf(approverID, r)
}

func TestPolicySelfApprovalIsRefusedWhileAnotherApproverDecides(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	twoApprovers(h)
	h.start()
	r := refIn(t, ackText(t, h.request(approverID, cloudPCID+" "+reason)))
	own, other := h.promptOf(approverID, r), h.promptOf(secondApproverID, r)

	h.click(approverID, "approve", own)
	h.waitEphemeral(approverID, "approving your own request is not allowed")
	h.waitEphemeral(approverID, "<@"+secondApproverID+">")
	h.click(approverID, "deny", own)
	h.slack.WaitFor(t, wait, "both self-decisions are refused", func() bool {
		n := 0
		for _, m := range h.slack.Ephemerals(approverID) {
			if strings.Contains(m.Text, "approving your own request is not allowed") {
				n++
			}
		}
		return n == 2
	})
	if len(h.slack.Views(approverID)) != 0 {
		t.Error("the requester's own Deny opened a form")
	}
	if m := h.messageNow(own); m.Updates != 0 || !strings.Contains(blocks(m), `"action_id":"approve"`) {
		t.Errorf("the prompt changed after a refused self-decision (%d updates)", m.Updates)
	}
	if len(h.entra.DeviceCodes()) != 0 {
		t.Fatal("a self-approval started a sign-in")
	}
	h.waitAudit(r, "refused_click", func(a auditLine) bool { return a.Actor == approverID })

	// The other approver decides.
	h.click(secondApproverID, "approve", other)
	h.signInAs(secondApproverID, secondApproverUPN)
	h.confirmAs(secondApproverID, r, "confirm")
	h.waitDM(approverID, "Your request "+r)
	h.waitMessage(own, "Reprovision started")
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}
}

func TestPolicySelfApprovalAllowedWhenConfigured(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.env["REPROVISION_ALLOW_SELF_APPROVAL"] = "true"
	h.start()
	r := refIn(t, ackText(t, h.request(approverID, cloudPCID+" "+reason)))
	prompt := h.promptOf(approverID, r)
	h.seenPrompts[prompt.TS] = true
	h.approveWithSignIn(prompt)
	h.waitPrompt(prompt.TS, "Reprovision started")
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}
	if a := h.waitAudit(r, "approved", nil); a.Actor != approverID {
		t.Errorf("approved by %q, want the requester-approver", a.Actor)
	}
}

func TestPolicySoleApproverMayNotAskWithoutSelfApproval(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	text := ackText(t, h.request(approverID, cloudPCID+" "+reason))
	if !strings.Contains(text, "only approver") || strings.Contains(text, "R-") {
		t.Errorf("the sole approver asking got %q, want a refusal saying nobody could approve it", text)
	}
	h.request(approverID, "help") // the refusal is handled before this
	if n := len(h.slack.Calls("chat.postMessage")); n != 0 {
		t.Errorf("%d messages posted for a refused request", n)
	}
}

// ---- 7. Identity check at sign-in ----

func TestPolicyIdentityMismatchMakesNoCallAndLeavesTheRequestApprovable(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	r := ref(t, prompt)

	h.click(approverID, "approve", prompt)
	h.signInAs(approverID, "mallory@contoso.example")
	h.waitDM(approverID, "mallory@contoso.example")
	h.waitDM(approverID, "not as the approver")
	h.waitPrompt(prompt.TS, `"action_id":"approve"`)
	if n := len(h.graph.Requests()); n != 0 {
		t.Fatalf("%d Graph requests after signing in as someone else", n)
	}
	a := h.waitAudit(r, "identity_mismatch", nil)
	if a.Actor != approverID || a.Details["upn"] != "mallory@contoso.example" || a.Details["expected"] != approverUPN {
		t.Errorf("identity_mismatch record %+v lacks the approver, the UPN or the expected UPN", a)
	}

	// The right sign-in goes through.
	h.click(approverID, "approve", prompt)
	h.signInAs(approverID, approverUPN)
	h.confirm(prompt, "confirm")
	h.waitDM(requesterID, "Reprovision started")
	posts := h.reprovisionPOSTs()
	if len(posts) != 1 {
		t.Fatalf("%d reprovision calls, want 1", len(posts))
	}
	if user := h.entra.AccessTokens()[strings.TrimPrefix(posts[0].Authorization, "Bearer ")]; user != approverUPN {
		t.Errorf("the call carried a token of %q", user)
	}
	if s := h.waitAudit(r, "signed_in", func(a auditLine) bool { return a.Details["upn"] == approverUPN }); s.Actor != approverID {
		t.Errorf("signed_in record by %q, want %s", s.Actor, approverID)
	}
}

func TestPolicyIdentityFromSlackEmailMatches(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	delete(h.env, "REPROVISION_APPROVER_UPNS")
	h.slack.SetUserEmail(approverID, "Approver@Contoso.example") // compared case-insensitively
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "Reprovision started")
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}
	looked := false
	for _, c := range h.slack.Calls("users.info") {
		looked = looked || c.Params["user"] == approverID
	}
	if !looked {
		t.Error("the approver's Slack profile was not looked up (users.info)")
	}
}

func TestPolicyIdentityFromSlackEmailMismatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	delete(h.env, "REPROVISION_APPROVER_UPNS")
	h.slack.SetUserEmail(approverID, "someone.else@contoso.example")
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	r := ref(t, prompt)
	h.click(approverID, "approve", prompt)
	h.signInAs(approverID, approverUPN)
	h.waitDM(approverID, "someone.else@contoso.example")
	h.waitPrompt(prompt.TS, `"action_id":"approve"`)
	if n := len(h.graph.Requests()); n != 0 {
		t.Errorf("%d Graph requests after a sign-in that is not the approver's Slack identity", n)
	}
	a := h.waitAudit(r, "identity_mismatch", nil)
	if a.Details["upn"] != approverUPN || a.Details["expected"] != "someone.else@contoso.example" {
		t.Errorf("identity_mismatch record %+v", a)
	}
}

// ---- 8. Audit export ----

func TestPolicyAuditExportHasEveryEventWithGraphIDs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	throttled := fakes.GraphError(http.StatusTooManyRequests, "TooManyRequests", "Too many requests")
	throttled.Header = http.Header{"Retry-After": {"1"}}
	h.graph.QueueReprovision(cloudPCID, throttled) // then the default 204
	h.start()
	h.request(requesterID, "not/a-name") // a refused request
	r := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
	prompt := h.prompt()
	h.click(strangerID, "approve", prompt) // a refused click
	h.waitEphemeral(strangerID, "Only <@"+approverID+">")
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "Reprovision started")
	h.waitAudit(r, "succeeded", nil)

	// Exported while the bot runs on the same store.
	trail := h.auditTrail()
	for _, kind := range []string{"requested", "refused_click", "approved", "signin_started", "signed_in", "graph_call", "confirmed", "succeeded"} {
		if len(eventsOf(trail, r, kind)) == 0 {
			t.Errorf("the audit trail has no %q record for %s", kind, r)
		}
	}
	if len(eventsOf(trail, "", "refused_request")) == 0 {
		t.Error("the audit trail has no refused_request record")
	}
	if a := eventsOf(trail, r, "signed_in"); len(a) == 0 || a[0].Actor != approverID || a[0].Details["upn"] != approverUPN {
		t.Errorf("signed_in records %+v lack the approver's Slack ID and UPN", a)
	}
	var prev time.Time
	for _, a := range trail {
		at, err := time.Parse(time.RFC3339Nano, a.Time)
		if err != nil {
			t.Fatalf("record time %q: %v", a.Time, err)
		}
		if at.Before(prev) {
			t.Errorf("records out of order at %+v", a)
		}
		prev = at
	}

	// Every HTTP attempt Graph saw is in the trail with its ids and status.
	calls := eventsOf(trail, r, "graph_call")
	graphSaw := h.graph.Requests()
	posts := h.reprovisionPOSTs()
	if len(posts) != 2 {
		t.Fatalf("%d reprovision attempts, want 2 (429, 204)", len(posts))
	}
	for _, g := range graphSaw {
		found := false
		for _, c := range calls {
			if c.Details["client_request_id"] != g.ClientRequestID {
				continue
			}
			found = true
			if c.Details["request_id"] != g.RequestID || c.Details["status"] != fmt.Sprint(g.Status) || c.Details["method"] != g.Method ||
				c.Details["path"] == "" || !strings.HasSuffix(g.Path, c.Details["path"]) {
				t.Errorf("graph_call %+v does not match what Graph saw: %s %s status %d request-id %s", c.Details, g.Method, g.Path, g.Status, g.RequestID)
			}
		}
		if !found || g.ClientRequestID == "" {
			t.Errorf("no graph_call record with client-request-id %q (%s %s)", g.ClientRequestID, g.Method, g.Path)
		}
	}
	if len(calls) != len(graphSaw) {
		t.Errorf("%d graph_call records, Graph saw %d requests", len(calls), len(graphSaw))
	}
	if s := eventsOf(trail, r, "succeeded"); len(s) != 1 || s[0].Details["request_id"] != posts[1].RequestID {
		t.Errorf("succeeded records %+v, want one with Graph's request-id %s", s, posts[1].RequestID)
	}

	// CSV carries the same records.
	rows, err := csv.NewReader(strings.NewReader(h.exportAudit("-format", "csv"))).ReadAll()
	if err != nil {
		t.Fatalf("audit csv: %v", err)
	}
	if len(rows) == 0 || strings.Join(rows[0], ",") != "time,request_id,kind,actor,details" {
		t.Fatalf("csv header %v", rows)
	}
	if len(rows)-1 < len(trail) {
		t.Errorf("csv has %d records, jsonl %d", len(rows)-1, len(trail))
	}
	csvIDs := map[string]bool{}
	for _, row := range rows[1:] {
		var d map[string]string
		if err := json.Unmarshal([]byte(row[4]), &d); err != nil {
			t.Errorf("csv details %q: %v", row[4], err)
		}
		if row[2] == "graph_call" {
			csvIDs[d["request_id"]+"|"+d["client_request_id"]] = true
		}
	}
	for _, g := range graphSaw {
		if !csvIDs[g.RequestID+"|"+g.ClientRequestID] {
			t.Errorf("csv lacks the graph_call with request-id %s", g.RequestID)
		}
	}

	// An unknown format is an error, and writes nothing.
	var buf bytes.Buffer
	if err := runAudit(context.Background(), []string{"-format", "xml"}, func(k string) string { return h.env[k] }, &buf); err == nil {
		t.Error("audit -format xml: no error")
	} else if buf.Len() != 0 {
		t.Errorf("audit -format xml wrote %q", buf.String())
	}
}

func TestPolicyAuditExportSince(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	r1 := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
	prompt := h.prompt()
	h.deny(approverID, prompt, "not needed")
	h.waitAudit(r1, "denied", nil)

	mark := time.Now()
	time.Sleep(time.Second) // a clear gap between the two requests' records
	r2 := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
	h.waitAudit(r2, "requested", nil)

	since := time.Since(mark)
	recent := h.auditTrail("-since", since.String())
	if len(eventsOf(recent, r2, "requested")) != 1 {
		t.Errorf("-since %v lacks the newer request %s", since, r2)
	}
	for _, a := range recent {
		if a.RequestID == r1 {
			t.Errorf("-since %v includes %+v, recorded before", since, a)
		}
	}
	if all := h.auditTrail("-since", "1h"); len(eventsOf(all, r1, "requested")) != 1 || len(eventsOf(all, r2, "requested")) != 1 {
		t.Error("-since 1h lacks one of the requests")
	}
	rows, err := csv.NewReader(strings.NewReader(h.exportAudit("-format", "csv", "-since", time.Since(mark).String()))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows[1:] {
		if row[1] == r1 {
			t.Errorf("csv -since includes an older record %v", row)
		}
	}
}

// ---- 9. App Home ----

func TestPolicyAppHomeListsAndDecides(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	h.openHome(approverID)
	h.openHome(requesterID)
	h.waitHome(approverID, "says nothing is waiting", func(b string) bool {
		return strings.Contains(b, "Awaiting you") && strings.Contains(b, "Nothing is waiting for you")
	})
	if v := h.waitHome(requesterID, "lists no requests yet", func(b string) bool { return strings.Contains(b, "Your requests") }); strings.Contains(viewBlocks(v), "Awaiting you") {
		t.Errorf("a requester who is no approver sees Awaiting you: %s", viewBlocks(v))
	}

	// Kept current: a new request shows up on both tabs.
	r := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
	prompt := h.prompt()
	home := h.waitHome(approverID, "lists "+r, func(b string) bool { return strings.Contains(b, `"action_id":"approve:`+r+`"`) })
	hb := viewBlocks(home)
	for _, want := range []string{"Awaiting you", r, `"action_id":"deny:` + r + `"`, "<@" + requesterID + ">", reason} {
		if !strings.Contains(hb, want) {
			t.Errorf("the approver's Home lacks %q: %s", want, hb)
		}
	}
	h.waitHome(requesterID, "lists "+r+" as awaiting", func(b string) bool {
		return strings.Contains(b, "Your requests") && strings.Contains(b, r) && strings.Contains(b, "Awaiting a decision")
	})

	// Approve on the Home tab.
	env := h.slack.SendBlockAction(t, fakes.BlockAction{UserID: approverID, ActionID: "approve:" + r, ViewID: home.ID})
	h.slack.WaitAck(t, env, wait)
	h.waitHome(approverID, "no longer lists "+r, func(b string) bool {
		return !strings.Contains(b, "approve:"+r) && strings.Contains(b, "Nothing is waiting for you")
	})
	h.signIn(approverUPN)
	h.confirm(prompt, "confirm")
	h.waitDM(requesterID, "Reprovision started")
	h.waitPrompt(prompt.TS, "Reprovision started")
	h.waitHome(requesterID, "shows "+r+" started", func(b string) bool { return strings.Contains(b, r) && strings.Contains(b, "Reprovision started") })
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}
	if a := h.waitAudit(r, "approved", nil); a.Actor != approverID {
		t.Errorf("approved by %q", a.Actor)
	}
}
