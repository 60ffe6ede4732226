package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// Details before destruction: what the approver sees, the status gate,
// finding a Cloud PC by name or user, and following the reprovision through.

const (
	secondPCID   = "7a2b3c4d-5e6f-4a1b-9c8d-0e1f2a3b4c5d"
	secondDevice = "CPC-alice-3Q9Z7"
)

// addSecondCloudPC adds Bob's Cloud PC (secondPCID) in status.
func (h *harness) addSecondCloudPC(status string) {
	h.graph.AddCloudPC(fakes.CloudPC{ID: secondPCID, UserPrincipalName: "bob@contoso.example", ManagedDeviceName: "CPC-bob-77K2P", Status: status})
}

// reprovisionFirst takes a request for the first Cloud PC through a fresh
// sign-in to the reprovision, leaving the approver signed in.
func (h *harness) reprovisionFirst() {
	h.t.Helper()
	h.approveWithSignIn(h.ask(cloudPCID + " " + reason))
	h.waitDM(requesterID, "Reprovision started")
}

// approveSignedOut approves the second request when the first approval's
// sign-in must not be reused: a second device-code sign-in is asked for.
func (h *harness) approveSignedOut(second fakes.Message) {
	h.t.Helper()
	h.approveWithSignIn(second)
	h.waitPrompt(second.TS, "Reprovision started")
	if n := len(h.entra.DeviceCodes()); n != 2 {
		h.t.Errorf("%d sign-ins for two approvals, want 2: the first sign-in was not to be reused", n)
	}
}

// graphCalls counts Graph requests by method and path suffix.
func (h *harness) graphCalls(method, suffix string) int {
	n := 0
	for _, r := range h.graph.Requests() {
		if r.Method == method && strings.HasSuffix(r.Path, suffix) {
			n++
		}
	}
	return n
}

func TestValidSignInPutsDetailsOnThePromptAndApproveIsFinal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.addSecondCloudPC("failed")
	h.start()

	// First approval: fresh sign-in, then the confirmation step.
	h.request(requesterID, cloudPCID+" "+reason)
	first := h.prompt()
	h.approveWithSignIn(first)
	h.waitDM(requesterID, "Reprovision started")

	// Second request while the approver's sign-in is still valid: the
	// prompt shows the details at once, and Approve is final.
	h.request(requesterID, secondPCID+" apps broken")
	second := h.prompt()
	h.waitPrompt(second.TS, "CPC-bob-77K2P")
	for _, want := range []string{"bob@contoso.example", "failed"} {
		if !strings.Contains(blocks(h.promptNow(second.TS)), want) {
			t.Errorf("prompt lacks %q", want)
		}
	}
	h.click(approverID, "approve", second)
	h.waitPrompt(second.TS, "Reprovision started")
	if n := len(h.entra.DeviceCodes()); n != 1 {
		t.Errorf("%d sign-ins, want 1: the second approval reuses the first", n)
	}
	if n := h.graphCalls("POST", secondPCID+"/reprovision"); n != 1 {
		t.Errorf("%d reprovision calls for the second Cloud PC, want 1", n)
	}
	// One GET for the prompt, one right before the POST.
	if n := h.graphCalls("GET", "cloudPCs/"+secondPCID); n != 2 {
		t.Errorf("%d GETs of the second Cloud PC, want 2 (prompt details, re-check before the POST)", n)
	}
}

func TestStatusGateRefusesAndTellsBothSides(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.SetCloudPCStatus(cloudPCID, "inGracePeriod")
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.click(approverID, "approve", prompt)
	h.signIn(approverUPN)
	h.waitDM(requesterID, "inGracePeriod")
	h.waitDM(approverID, "inGracePeriod")
	h.waitPrompt(prompt.TS, "inGracePeriod")
	if n := len(h.reprovisionPOSTs()); n != 0 {
		t.Errorf("%d reprovision calls for a Cloud PC in grace period", n)
	}
}

func TestStatusChangedBeforeConfirmationIsCaughtByTheRecheck(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.click(approverID, "approve", prompt)
	h.signIn(approverUPN)
	h.waitDMMessage(approverID, `"block_id":"confirm:`)
	h.graph.SetCloudPCStatus(cloudPCID, "deprovisioning") // changes while the approver reads
	h.confirm(prompt, "confirm")
	h.waitDM(requesterID, "deprovisioning")
	if n := len(h.reprovisionPOSTs()); n != 0 {
		t.Errorf("%d reprovision calls after the status changed", n)
	}
}

func TestAllowedStatusesAreConfigurable(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.env["REPROVISION_ALLOWED_STATUSES"] = "provisioned,failed,provisionedWithWarnings"
	h.graph.SetCloudPCStatus(cloudPCID, "provisionedWithWarnings")
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "Reprovision started")
}

func TestFindByDeviceNameOneMatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	prompt := h.ask(deviceName + " " + reason)
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "Reprovision started")
	posts := h.reprovisionPOSTs()
	if len(posts) != 1 || posts[0].Path != reprovisionPath {
		t.Fatalf("reprovision calls %+v, want one for %s", posts, cloudPCID)
	}
}

func TestFindByUPNSeveralMatchesApproverPicks(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.AddCloudPC(fakes.CloudPC{ID: secondPCID, UserPrincipalName: userUPN, ManagedDeviceName: secondDevice, Status: "provisioned"})
	h.start()
	prompt := h.ask(userUPN + " " + reason)
	h.click(approverID, "approve", prompt)
	h.signIn(approverUPN)
	picker := h.waitDMMessage(approverID, `"block_id":"pick:`+secondPCID+`"`)
	for _, want := range []string{deviceName, secondDevice, "2 Cloud PCs match"} {
		if !strings.Contains(picker.Text+blocks(picker), want) {
			t.Errorf("the choice lacks %q", want)
		}
	}
	r := ref(t, prompt)
	env := h.slack.SendBlockAction(t, fakes.BlockAction{UserID: approverID, ActionID: "pick:" + secondPCID, BlockID: "pick:" + secondPCID,
		Value: r + "|" + secondPCID, ChannelID: picker.Channel, MessageTS: picker.TS})
	h.slack.WaitAck(t, env, wait)
	h.waitDM(requesterID, "Reprovision started")
	if n := h.graphCalls("POST", secondPCID+"/reprovision"); n != 1 || h.graphCalls("POST", cloudPCID+"/reprovision") != 0 {
		t.Errorf("want exactly one call, for the picked Cloud PC")
	}
}

func TestFindWithNoMatchTellsBothSides(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	prompt := h.ask("CPC-nobody-0000 " + reason)
	h.click(approverID, "approve", prompt)
	h.signIn(approverUPN)
	h.waitDM(requesterID, "No Cloud PC matches")
	h.waitDM(approverID, "No Cloud PC matches")
	h.waitPrompt(prompt.TS, "No Cloud PC matches")
	if n := h.graphCalls("POST", "/reprovision"); n != 0 {
		t.Errorf("%d reprovision calls with no match", n)
	}
}

// trackingHarness follows reprovisions quickly.
func trackingHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.env["REPROVISION_TRACK_EVERY"] = "100ms"
	h.env["REPROVISION_TRACK_FOR"] = "1m"
	return h
}

// threadReplies are the replies under the approver's prompt.
func (h *harness) threadReplies(prompt fakes.Message) []string {
	var out []string
	for _, m := range h.slack.Messages(h.slack.DMChannel(approverID)) {
		if m.ThreadTS == prompt.TS && m.TS != prompt.TS {
			out = append(out, m.Text)
		}
	}
	return out
}

func (h *harness) waitThread(prompt fakes.Message, want string) {
	h.t.Helper()
	h.slack.WaitFor(h.t, wait, "a thread reply containing "+want, func() bool {
		for _, text := range h.threadReplies(prompt) {
			if strings.Contains(text, want) {
				return true
			}
		}
		return false
	})
}

func TestFollowThroughToProvisioned(t *testing.T) {
	t.Parallel()
	h := trackingHarness(t)
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	h.waitThread(prompt, "accepted")
	h.waitThread(prompt, "provisioning")
	h.graph.SetCloudPCStatus(cloudPCID, "provisioned")
	h.waitDM(requesterID, "provisioned again")
	h.waitPrompt(prompt.TS, "provisioned again")
	h.waitThread(prompt, "provisioned again")
}

func TestFollowThroughToFailed(t *testing.T) {
	t.Parallel()
	h := trackingHarness(t)
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	h.waitThread(prompt, "provisioning")
	h.graph.SetCloudPCStatus(cloudPCID, "failed")
	h.waitDM(requesterID, "reprovision failed")
	h.waitPrompt(prompt.TS, "reprovision failed")
}

func TestTrackingPausesOverRestartAndResumesAfterSignIn(t *testing.T) {
	t.Parallel()
	h := trackingHarness(t)
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	h.waitThread(prompt, "provisioning")
	h.stop()
	h.graph.SetCloudPCStatus(cloudPCID, "provisioned") // finishes while the bot is down

	h.start()
	h.waitPrompt(prompt.TS, "Tracking paused")
	h.waitPrompt(prompt.TS, `"action_id":"resume_tracking"`)
	r := ref(t, prompt)
	env := h.slack.SendBlockAction(t, fakes.BlockAction{UserID: approverID, ActionID: "resume_tracking", BlockID: "tracking:" + r,
		Value: r, ChannelID: prompt.Channel, MessageTS: prompt.TS})
	h.slack.WaitAck(t, env, wait)
	h.signIn(approverUPN)
	h.waitDM(requesterID, "provisioned again")
	if n := len(h.entra.DeviceCodes()); n != 2 {
		t.Errorf("%d sign-ins, want 2 (approval, resume)", n)
	}
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1: resuming tracking never resends", n)
	}
}

func TestGraphErrorsPeopleCanActOn(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		response   fakes.Response
		want       string // on the requester's DM
		approvable bool
	}{
		// A claims challenge the approver's refresh token can satisfy is met
		// without them (the call was refused, so resending it is safe).
		{"claims challenge met silently", fakes.ClaimsChallenge(http.StatusUnauthorized), "Reprovision started", false},
		{"forbidden", fakes.GraphError(http.StatusForbidden, "Forbidden", "Insufficient privileges"), "Forbidden", true},
		{"conflict", fakes.GraphError(http.StatusConflict, "Conflict", "The Cloud PC is busy"), "Conflict", false},
		{"bad request", fakes.GraphError(http.StatusBadRequest, "BadRequest", "Action not allowed now"), "BadRequest", false},
		{"gateway timeout", fakes.GraphError(http.StatusGatewayTimeout, "GatewayTimeout", "Upstream timed out"), "Outcome unknown", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.graph.QueueReprovision(cloudPCID, c.response)
			h.start()
			h.request(requesterID, cloudPCID+" "+reason)
			prompt := h.prompt()
			h.approveWithSignIn(prompt)
			h.waitDM(requesterID, c.want)
			posts := h.reprovisionPOSTs()
			if len(posts) == 0 {
				t.Fatal("no reprovision call")
			}
			if !strings.Contains(strings.Join(h.dmsTo(requesterID), "\n"), posts[len(posts)-1].RequestID) {
				t.Errorf("the requester is not shown Graph's request-id %s", posts[len(posts)-1].RequestID)
			}
			if c.approvable {
				h.waitPrompt(prompt.TS, `"action_id":"approve"`)
			} else if strings.Contains(blocks(h.promptNow(prompt.TS)), `"action_id":"approve"`) {
				t.Error("the request is approvable again after Graph acted or may have acted")
			}
		})
	}
}

func TestThrottledLookUpIsWaitedAndRetried(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.Queue(http.MethodGet, "/deviceManagement/virtualEndpoint/cloudPCs/"+cloudPCID, fakes.Throttled(http.StatusTooManyRequests, 1))
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	begin := time.Now()
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "Reprovision started")
	if took := time.Since(begin); took < time.Second {
		t.Errorf("finished %s after approval; the 429 asked for 1 s", took)
	}
}

// When the approver's session is revoked (Conditional Access, continuous
// access evaluation), Graph's claims challenge cannot be met silently: the
// approver must sign in again, and nothing is sent until they do.
func TestRevokedSignInAsksForAFreshOne(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.RequireTokensFrom(h.entra)
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.click(approverID, "approve", prompt)
	h.signIn(approverUPN)
	h.waitDMMessage(approverID, `"block_id":"confirm:`)
	h.entra.Revoke(approverUPN)
	h.confirm(prompt, "confirm")
	h.waitPrompt(prompt.TS, "sign in")
	h.waitPrompt(prompt.TS, `"action_id":"approve"`)
	if n := len(h.reprovisionPOSTs()); n != 0 {
		t.Fatalf("%d reprovision calls with a revoked sign-in", n)
	}
	// Approving again asks for a new sign-in, and then it goes through.
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "Reprovision started")
}

// Two requests name the same Cloud PC differently: the second, resolved
// only after sign-in, must end with a pointer to the first, and the bot
// must keep serving.
func TestNameResolvingToACloudPCWithAnOpenRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	h.request(requesterID, cloudPCID+" "+reason)
	first := h.prompt()
	h.request(requesterID, deviceName+" "+reason)
	second := h.prompt()
	h.click(approverID, "approve", second)
	h.signIn(approverUPN)
	h.waitPrompt(second.TS, "already has an open request: "+ref(t, first))
	h.waitDM(requesterID, "already has an open request")
	// Still alive: the first request goes through.
	h.click(approverID, "approve", first)
	h.confirm(first, "confirm") // the sign-in is reused; only the confirmation is asked
	h.waitDM(requesterID, "Reprovision started")
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}
}

// A double click on Reprovision now starts one call; the second click is
// told so, whatever the first is doing: "already being handled" while the
// first click's worker holds the request, or "was already handled" with its
// status (Reprovisioning…) once that worker has moved it on.
func TestDoubleConfirmCallsGraphOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// A slow answer keeps the first worker busy while the second click lands.
	h.graph.QueueReprovision(cloudPCID, fakes.Response{Status: http.StatusNoContent, Delay: 500 * time.Millisecond})
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.click(approverID, "approve", prompt)
	h.signIn(approverUPN)
	m := h.waitDMMessage(approverID, `"block_id":"confirm:`)
	r := ref(t, prompt)
	var envs []string
	for i := 0; i < 2; i++ {
		envs = append(envs, h.slack.SendBlockAction(t, fakes.BlockAction{
			UserID: approverID, ActionID: "confirm", BlockID: "confirm:" + r, Value: r, ChannelID: m.Channel, MessageTS: m.TS,
		}))
	}
	for _, env := range envs {
		h.slack.WaitAck(t, env, wait)
	}
	h.slack.WaitFor(t, wait, "an ephemeral reply to the second click", func() bool {
		for _, m := range h.slack.Ephemerals(approverID) {
			if strings.Contains(m.Text, r+" is already being handled") || strings.Contains(m.Text, r+" was already handled: :gear:") {
				return true
			}
		}
		return false
	})
	h.waitDM(requesterID, "Reprovision started")
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls after a double confirmation, want 1", n)
	}
	final := h.promptNow(prompt.TS)
	if strings.Contains(blocks(final), `"action_id":"approve"`) {
		t.Error("the prompt offers Approve again after the reprovision started")
	}
}

// Graph accepts a reprovision before the Cloud PC starts on it: its status
// still reads failed (an allowed starting status) and the reprovision action
// is pending. That is not the reprovision failing.
func TestFollowThroughFromFailedWaitsForTheReprovisionToStart(t *testing.T) {
	t.Parallel()
	h := trackingHarness(t)
	h.graph.SetCloudPCStatus(cloudPCID, "failed")
	h.graph.SetReprovisionStartDelay(time.Second)
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	h.waitThread(prompt, "accepted")
	h.waitThread(prompt, "provisioning") // only after the delay
	looks := h.graphCalls("GET", "retrieveCloudPcRemoteActionResults")
	if looks == 0 {
		t.Error("the remote action was never consulted while the status still read failed")
	}
	h.graph.SetCloudPCStatus(cloudPCID, "provisioned")
	h.waitDM(requesterID, "provisioned again")
	for _, m := range h.dmsTo(requesterID) {
		if strings.Contains(m, "reprovision failed") {
			t.Errorf("the requester was told it failed: %s", m)
		}
	}
}

// Tracking paused by a restart still ends at its deadline, freeing the
// Cloud PC for a new request.
func TestPausedTrackingEndsAtTheDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.env["REPROVISION_TRACK_EVERY"] = "1m"
	h.env["REPROVISION_TRACK_FOR"] = "2s"
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "Reprovision started")
	h.stop()
	h.start()
	h.waitPrompt(prompt.TS, "Tracking paused")
	h.waitPrompt(prompt.TS, "Stopped following it at the deadline")
	h.waitDM(requesterID, "Stopped following it at the deadline")
	h.ask(cloudPCID + " another go")
}

// With REPROVISION_SIGNIN_TTL=0 every approval asks for a fresh sign-in:
// nothing is reused, and no prompt shows details before a sign-in.
func TestSignInTTLZeroSignsInForEveryApproval(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.env["REPROVISION_SIGNIN_TTL"] = "0"
	h.addSecondCloudPC("provisioned")
	h.start()
	h.reprovisionFirst()
	second := h.ask(secondPCID + " apps broken")
	if strings.Contains(blocks(second), "CPC-bob-77K2P") {
		t.Error("the prompt shows details fetched with a sign-in that should not be reused")
	}
	h.approveSignedOut(second)
}

// A reused sign-in expires REPROVISION_SIGNIN_TTL after the sign-in itself,
// however often it was used meanwhile.
func TestSignInReuseEndsAfterTheTTL(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.env["REPROVISION_SIGNIN_TTL"] = "1s"
	h.addSecondCloudPC("provisioned")
	h.start()
	h.reprovisionFirst()
	time.Sleep(1100 * time.Millisecond) // let the TTL pass
	second := h.ask(secondPCID + " apps broken")
	h.approveSignedOut(second)
}

// On the Home tab, Approve is never final: even a signed-in approver sees
// the details and confirms.
func TestHomeTabApproveAlwaysConfirms(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.addSecondCloudPC("provisioned")
	h.start()
	h.reprovisionFirst()

	second := h.ask(secondPCID + " apps broken")
	h.waitPrompt(second.TS, "CPC-bob-77K2P") // signed in: details on the prompt
	h.slack.SendEvent(t, map[string]any{"type": "app_home_opened", "user": approverID, "channel": h.slack.DMChannel(approverID), "tab": "home", "event_ts": "1.2"})
	r := ref(t, second)
	var home fakes.View
	h.slack.WaitFor(t, wait, "the Home tab lists the request", func() bool {
		v, ok := h.slack.HomeView(approverID)
		home = v
		return ok && strings.Contains(string(v.Blocks), r)
	})
	env := h.slack.SendBlockAction(t, fakes.BlockAction{UserID: approverID, ActionID: "approve:" + r, BlockID: "home-decision:" + r, Value: r, ViewID: home.ID})
	h.slack.WaitAck(t, env, wait)
	h.confirm(second, "confirm")
	h.waitPrompt(second.TS, "Reprovision started")
	if n := len(h.entra.DeviceCodes()); n != 1 {
		t.Errorf("%d sign-ins, want 1 (reused)", n)
	}
}
