package main

import (
	"strings"
	"sync"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// Issue 11, part 3: two-person approval. REPROVISION_APPROVALS_REQUIRED
// distinct approvers approve, each signing in as themselves; none of them is
// the requester; any Deny ends it; the call goes once, with the last
// approver's token.

const (
	thirdApproverID  = "U0THIRD"
	thirdApproverUPN = "third@contoso.example"
)

// threeApproversTwoRequired: U0APPROVER, U0SECOND and U0THIRD approve, two
// of them per request.
func threeApproversTwoRequired(h *harness) {
	h.env["REPROVISION_APPROVER"] = approverID + "," + secondApproverID + "," + thirdApproverID
	h.env["REPROVISION_APPROVER_UPNS"] = approverID + ":" + approverUPN + "," + secondApproverID + ":" + secondApproverUPN +
		"," + thirdApproverID + ":" + thirdApproverUPN
	h.env["REPROVISION_APPROVALS_REQUIRED"] = "2"
}

// firstApproval has approverID give the first approval of r and waits until
// every prompt shows it.
func (h *harness) firstApproval(r string) {
	h.t.Helper()
	h.click(approverID, "approve", h.promptOf(approverID, r))
	h.signInAs(approverID, approverUPN)
	for _, a := range []string{approverID, secondApproverID, thirdApproverID} {
		h.waitMessage(h.promptOf(a, r), "1 of 2 approvals (<@"+approverID+">)")
	}
	h.waitAudit(r, "approval_recorded", func(a auditLine) bool {
		return a.Actor == approverID && a.Details["upn"] == approverUPN && a.Details["approvals"] == "1 of 2"
	})
}

func TestTwoApprovalsThenOneCallWithTheLastApproversToken(t *testing.T) {
	onBothStores(t, func(t *testing.T, h *harness) {
		threeApproversTwoRequired(h)
		h.start()
		r := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
		if p := blocks(h.promptOf(secondApproverID, r)); !strings.Contains(p, "0 of 2 approvals") {
			t.Errorf("the new prompt does not say two approvals are needed: %s", p)
		}
		h.firstApproval(r)
		h.waitDM(approverID, "Your approval of "+r+" is recorded (1 of 2 approvals, signed in as "+approverUPN+")")
		h.waitDM(requesterID, "<@"+approverID+"> approved your request "+r+" (1 of 2 approvals)")
		if n := len(h.graph.Requests()); n != 0 {
			t.Fatalf("Graph saw %d requests after the first approval, want none", n)
		}

		// Not twice by the same person.
		h.click(approverID, "approve", h.promptOf(approverID, r))
		h.waitEphemeral(approverID, "Your approval of "+r+" is recorded already")
		if n := len(h.entra.DeviceCodes()); n != 1 {
			t.Errorf("%d sign-ins, want 1: a second click started another", n)
		}

		h.click(secondApproverID, "approve", h.promptOf(secondApproverID, r))
		h.signInAs(secondApproverID, secondApproverUPN)
		h.confirmAs(secondApproverID, r, "confirm")
		h.waitMessage(h.promptOf(thirdApproverID, r), "Reprovision started")
		posts := h.reprovisionPOSTs()
		if len(posts) != 1 {
			t.Fatalf("%d reprovision calls, want 1", len(posts))
		}
		if user, ok := h.entra.TokenUser(strings.TrimPrefix(posts[0].Authorization, "Bearer ")); !ok || user != secondApproverUPN {
			t.Errorf("the call was made with %q's token (%v), want the last approver's, %s", user, ok, secondApproverUPN)
		}
		if p := blocks(h.promptOf(approverID, r)); !strings.Contains(p, "Approved by <@"+approverID+"> and <@"+secondApproverID+">") {
			t.Errorf("the final prompt does not name both approvers: %s", p)
		}
		h.waitAudit(r, "signed_in", func(a auditLine) bool { return a.Actor == secondApproverID && a.Details["upn"] == secondApproverUPN })
		h.waitAudit(r, "succeeded", nil)
	})
}

func TestTwoApprovalsDenyAfterTheFirstEndsIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	threeApproversTwoRequired(h)
	h.start()
	r := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
	h.firstApproval(r)
	h.deny(thirdApproverID, h.promptOf(thirdApproverID, r), "wrong machine")
	h.waitDM(requesterID, "Denied by <@"+thirdApproverID+">")
	for _, a := range []string{approverID, secondApproverID, thirdApproverID} {
		p := h.waitMessage(h.promptOf(a, r), "Denied by <@"+thirdApproverID+">")
		if strings.Contains(blocks(p), `"action_id":"approve"`) {
			t.Errorf("%s's prompt still offers Approve after the denial", a)
		}
	}
	h.click(secondApproverID, "approve", h.promptOf(secondApproverID, r))
	h.ephemeralWith(secondApproverID, r)
	if n := len(h.reprovisionPOSTs()); n != 0 {
		t.Errorf("%d reprovision calls after a denial, want none", n)
	}
	if n := len(h.entra.DeviceCodes()); n != 1 {
		t.Errorf("%d sign-ins, want 1 (the first approver's)", n)
	}
}

// The requester may be an approver, but never one of the two, even with
// self-approval allowed.
func TestTwoApprovalsNotByTheRequester(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	threeApproversTwoRequired(h)
	h.env["REPROVISION_ALLOW_SELF_APPROVAL"] = "true"
	h.start()
	r := refIn(t, ackText(t, h.request(approverID, cloudPCID+" "+reason)))
	h.click(approverID, "approve", h.promptOf(approverID, r))
	h.waitEphemeral(approverID, "approving your own request is not allowed")
	if n := len(h.entra.DeviceCodes()); n != 0 {
		t.Fatalf("a self-approval started %d sign-ins", n)
	}
	h.waitAudit(r, "refused_click", func(a auditLine) bool { return a.Actor == approverID })

	// With only one other approver, an approver cannot ask at all.
	h2 := newHarness(t)
	twoApprovers(h2)
	h2.env["REPROVISION_APPROVALS_REQUIRED"] = "2"
	h2.start()
	got := ackText(t, h2.request(approverID, cloudPCID+" "+reason))
	if !strings.Contains(got, "needs 2 approvals from approvers other than the person asking") || strings.Contains(got, "R-") {
		t.Errorf("an approver asking with one other approver for two approvals: %q", got)
	}
	if n := len(h2.slack.Messages(h2.slack.DMChannel(secondApproverID))); n != 0 {
		t.Errorf("the refused request prompted the other approver (%d messages)", n)
	}
}

// Two approvers race for the second approval: one takes it, the other is
// told; exactly one call.
func TestTwoApprovalsRaceForTheSecond(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	threeApproversTwoRequired(h)
	h.start()
	r := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
	h.firstApproval(r)
	second, third := h.promptOf(secondApproverID, r), h.promptOf(thirdApproverID, r)
	var wg sync.WaitGroup
	for _, c := range []struct {
		user   string
		prompt fakes.Message
	}{{secondApproverID, second}, {thirdApproverID, third}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := h.slack.SendBlockAction(t, fakes.BlockAction{
				UserID: c.user, ActionID: "approve", BlockID: "decision:" + r, Value: r, ChannelID: c.prompt.Channel, MessageTS: c.prompt.TS,
			})
			h.slack.WaitAck(t, env, wait)
		}()
	}
	wg.Wait()
	var dc fakes.DeviceCodeRequest
	h.slack.WaitFor(t, wait, "the second approval's device code", func() bool {
		codes := h.entra.DeviceCodes()
		if len(codes) < 2 {
			return false
		}
		dc = codes[1]
		return true
	})
	winner, winnerUPN := "", ""
	h.slack.WaitFor(t, wait, "the code reaches one of the racers", func() bool {
		for _, c := range [][2]string{{secondApproverID, secondApproverUPN}, {thirdApproverID, thirdApproverUPN}} {
			if strings.Contains(strings.Join(h.dmsTo(c[0]), "\n"), dc.UserCode) {
				winner, winnerUPN = c[0], c[1]
				return true
			}
		}
		return false
	})
	h.waitDM(winner, dc.UserCode)
	h.entra.SignIn(dc.UserCode, winnerUPN)
	h.confirmAs(winner, r, "confirm")
	h.waitMessage(second, "Reprovision started")
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want exactly 1", n)
	}
	if n := len(h.entra.DeviceCodes()); n != 2 {
		t.Errorf("%d sign-ins, want 2 (the first approval's and the winner's)", n)
	}
}

// While the first approver signs in, another approver's Deny (the prompt
// keeps the button) ends the request; the sign-in ends with it.
func TestTwoApprovalsDenyDuringTheFirstSignIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	threeApproversTwoRequired(h)
	h.start()
	r := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
	h.click(approverID, "approve", h.promptOf(approverID, r))
	dc := h.entra.WaitDeviceCode(t, wait)
	h.waitDM(approverID, dc.UserCode)
	third := h.waitMessage(h.promptOf(thirdApproverID, r), "Waiting for <@"+approverID+"> to sign in")
	if !strings.Contains(blocks(third), `"action_id":"deny"`) || strings.Contains(blocks(third), `"action_id":"approve"`) {
		t.Fatalf("during the first sign-in the prompt should offer Deny only: %s", blocks(third))
	}
	h.deny(thirdApproverID, third, "wrong machine")
	h.waitDM(requesterID, "Denied by <@"+thirdApproverID+">")
	h.waitDM(approverID, "Denied by <@"+thirdApproverID+">")
	h.entra.SignIn(dc.UserCode, approverUPN) // too late: the sign-in was abandoned
	h.waitAudit(r, "denied", nil)
	if p := blocks(h.waitMessage(h.promptOf(approverID, r), "Denied by")); strings.Contains(p, "1 of 2 approvals (") {
		t.Errorf("the denied prompt counts an approval: %s", p)
	}
	if n := len(h.graph.Requests()); n != 0 {
		t.Errorf("Graph saw %d requests, want none", n)
	}
}
