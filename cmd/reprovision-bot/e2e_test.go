package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/pgtest"
	"github.com/reprovision-bot/reprovision-bot/fakes"
)

const reprovisionPath = "/beta/deviceManagement/virtualEndpoint/cloudPCs/" + cloudPCID + "/reprovision"

func TestApproveSignInReprovision(t *testing.T) {
	onBothStores(t, func(t *testing.T, h *harness) {
		h.start()

		ack := h.request(requesterID, cloudPCID+" "+reason)
		t.Logf("slash-command ack latency: %s", ack.AckedAt.Sub(ack.SentAt))
		text := ackText(t, ack)
		if !strings.Contains(text, "R-") || !strings.Contains(text, "<@"+approverID+">") {
			t.Errorf("ack %q lacks the reference or the approver", text)
		}

		prompt := h.prompt()
		promptBlocks := blocks(prompt)
		for _, want := range []string{cloudPCID, "<@" + requesterID + ">", "<!date^", "deletes all their data and apps", `"action_id":"approve"`, `"action_id":"deny"`} {
			if !strings.Contains(promptBlocks, want) {
				t.Errorf("prompt lacks %q: %s", want, promptBlocks)
			}
		}
		if !strings.Contains(ackText(t, ack), ref(t, prompt)) {
			t.Errorf("ack and prompt carry different references")
		}

		h.click(approverID, "approve", prompt)
		h.waitPrompt(prompt.TS, "Waiting for <@"+approverID+"> to sign in")
		if strings.Contains(blocks(h.promptNow(prompt.TS)), `"action_id":"approve"`) {
			t.Error("buttons still on the prompt while waiting for sign-in")
		}
		if n := len(h.reprovisionPOSTs()); n != 0 {
			t.Fatalf("%d Graph calls before the approver signed in", n)
		}
		h.signIn(approverUPN)
		confirmation := h.confirm(prompt, "confirm")
		if want := "Reprovision " + deviceName + " of " + userUPN + " now? This signs them out and deletes all their data and apps."; !strings.Contains(confirmation.Text, want) {
			t.Errorf("confirmation %q lacks %q", confirmation.Text, want)
		}

		h.waitDM(requesterID, "Reprovision started")
		posts := h.reprovisionPOSTs()
		if len(posts) != 1 {
			t.Fatalf("Graph saw %d reprovision calls, want exactly 1", len(posts))
		}
		post := posts[0]
		if post.Path != reprovisionPath {
			t.Errorf("path %q, want %q", post.Path, reprovisionPath)
		}
		token := strings.TrimPrefix(post.Authorization, "Bearer ")
		if user := h.entra.AccessTokens()[token]; user != approverUPN {
			t.Errorf("Graph call carried a token of %q, want the approver's (%s)", user, approverUPN)
		}
		if post.ClientRequestID == "" {
			t.Error("no client-request-id on the Graph call")
		}
		final := h.waitPrompt(prompt.TS, "Reprovision started")
		if strings.Contains(blocks(final), `"action_id"`) && strings.Contains(blocks(final), `"approve"`) {
			t.Errorf("buttons still on the final prompt: %s", final.Blocks)
		}
		if strings.Contains(h.stderr.String(), token) {
			t.Error("the access token appears in the log")
		}
		if !strings.Contains(h.stderr.String(), ref(t, prompt)) {
			t.Error("the log does not carry the request reference")
		}
	})
}

func TestDeny(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.deny(approverID, prompt, "Try a restart first")
	h.waitPrompt(prompt.TS, "Denied by <@"+approverID+">. Reason: Try a restart first")
	h.waitDM(requesterID, "Denied by <@"+approverID+">. Reason: Try a restart first")
	if strings.Contains(blocks(h.promptNow(prompt.TS)), `"action_id":"approve"`) {
		t.Error("buttons still on a denied prompt")
	}
	if len(h.entra.DeviceCodes()) != 0 || len(h.graph.Requests()) != 0 {
		t.Error("a denied request reached Entra or Graph")
	}
}

func TestOnlyTheApproverDecides(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	before := h.promptNow(prompt.TS)

	h.click(strangerID, "approve", prompt)
	h.waitEphemeral(strangerID, "Only <@"+approverID+">")
	h.click(requesterID, "deny", prompt)
	h.waitEphemeral(requesterID, "Only <@"+approverID+">")

	if after := h.promptNow(prompt.TS); after.Updates != before.Updates {
		t.Errorf("prompt changed after clicks by non-approvers (%d updates)", after.Updates)
	}
	if len(h.entra.DeviceCodes()) != 0 || len(h.graph.Requests()) != 0 {
		t.Error("a non-approver's click reached Entra or Graph")
	}
	// The request is still decidable by the approver.
	h.deny(approverID, prompt, "not needed")
	h.waitPrompt(prompt.TS, "Denied by")
}

func TestBadInputIsRefusedAndNothingHappens(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	bad := []string{
		"4e1f0b9a-2c3d-4e5f-8a9b",
		"not/a-name",
		"名前",
		cloudPCID + "/../../users",
		"..",
		"%2e%2e",
		"<@U0BOSS>",
		cloudPCID + "\u0007",
		strings.Repeat("9", 500),
		cloudPCID + " && rm -rf /",
		cloudPCID + " " + cloudPCID,
	}
	for _, text := range bad {
		got := ackText(t, h.request(requesterID, text))
		if !strings.Contains(got, "Usage") || strings.Contains(got, "R-") {
			t.Errorf("%q: ack %q is not a clear refusal", text, got)
		}
	}
	for _, text := range []string{"", "   ", "help"} {
		if got := ackText(t, h.request(requesterID, text)); !strings.HasPrefix(got, "*Usage:*") {
			t.Errorf("%q: ack %q is not the usage text", text, got)
		}
	}
	// Each refusal is audited by a worker spawned where a request's work
	// would be: once all are recorded, wrongly spawned work would have
	// shown too.
	h.slack.WaitFor(t, wait, "every refusal is audited", func() bool {
		return len(eventsOf(h.auditTrail(), "", "refused_request")) == len(bad)
	})
	if calls := h.slack.Calls("chat.postMessage"); len(calls) != 0 {
		t.Errorf("bad input led to %d messages, e.g. %v", len(calls), calls[0].Params)
	}
	if len(h.graph.Requests()) != 0 || len(h.entra.DeviceCodes()) != 0 {
		t.Error("bad input reached Entra or Graph")
	}
}

func TestDoubleApproveAndRedeliveryCallGraphOnce(t *testing.T) {
	onBothStores(t, func(t *testing.T, h *harness) {
		h.start()
		requestEnvelope := h.slack.SendSlashCommand(t, fakes.SlashCommand{UserID: requesterID, ChannelID: channelID, Command: "/reprovision", Text: cloudPCID + " " + reason})
		h.slack.WaitAck(t, requestEnvelope, wait)
		h.slack.Redeliver(t, requestEnvelope)
		prompt := h.prompt()

		first := h.click(approverID, "approve", prompt)
		h.click(approverID, "approve", prompt) // double click
		h.slack.Redeliver(t, first)            // Slack redelivers the first
		h.waitEphemeral(approverID, "already handled")
		h.signIn(approverUPN)
		h.confirm(prompt, "confirm")
		h.waitDM(requesterID, "Reprovision started")
		h.click(approverID, "approve", prompt) // a late click after the outcome
		h.slack.WaitFor(t, wait, "the late clicker is told the outcome", func() bool {
			for _, m := range h.slack.Ephemerals(approverID) {
				if strings.Contains(m.Text, "already handled") && strings.Contains(m.Text, "Reprovision started") {
					return true
				}
			}
			return false
		})

		if n := len(h.reprovisionPOSTs()); n != 1 {
			t.Errorf("Graph saw %d reprovision calls, want 1", n)
		}
		if n := len(h.entra.DeviceCodes()); n != 1 {
			t.Errorf("%d sign-ins started, want 1", n)
		}
		prompts, codes, confirmations := 0, 0, 0
		for _, m := range h.dmsTo(approverID) {
			switch {
			case strings.Contains(m, "Reprovision request"):
				prompts++
			case strings.Contains(m, "enter the code"):
				codes++
			case strings.Contains(m, "Confirmed: reprovisioning"):
				confirmations++
			}
		}
		if prompts != 1 || codes != 1 || confirmations != 1 {
			t.Errorf("approver got %d prompts, %d sign-in codes, %d confirmations; want one each", prompts, codes, confirmations)
		}
	})
}

func TestGraphNotFoundIsShownWithItsCode(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.QueueReprovision(cloudPCID, fakes.GraphError(http.StatusNotFound, "ResourceNotFound", "Cloud PC not found"))
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "ResourceNotFound")
	final := h.waitPrompt(prompt.TS, "ResourceNotFound")
	posts := h.reprovisionPOSTs()
	if len(posts) != 1 {
		t.Fatalf("%d calls, want 1", len(posts))
	}
	for _, where := range []string{blocks(final), strings.Join(h.dmsTo(requesterID), "\n")} {
		if !strings.Contains(where, posts[0].RequestID) || !strings.Contains(where, "Cloud PC not found") {
			t.Errorf("failure lacks the request-id %s or Graph's message: %s", posts[0].RequestID, where)
		}
	}
}

func TestThrottledCallIsRetriedAfterRetryAfter(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	throttled := fakes.GraphError(http.StatusTooManyRequests, "TooManyRequests", "Too many requests")
	throttled.Header = http.Header{"Retry-After": {"1"}}
	h.graph.QueueReprovision(cloudPCID, throttled) // then the default 204
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "Reprovision started")
	posts := h.reprovisionPOSTs()
	if len(posts) != 2 {
		t.Fatalf("%d calls, want 2 (429 then 204)", len(posts))
	}
	if gap := posts[1].At.Sub(posts[0].At); gap < 900*time.Millisecond {
		t.Errorf("retry came %s after the 429; Retry-After said 1 s", gap)
	}
	if posts[0].ClientRequestID == posts[1].ClientRequestID {
		t.Error("the retry reused the client-request-id")
	}
}

func TestServerErrorIsNotResent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.QueueReprovision(cloudPCID, fakes.GraphError(http.StatusInternalServerError, "InternalServerError", "Something went wrong"))
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "InternalServerError")
	h.waitPrompt(prompt.TS, "InternalServerError")
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("Graph saw %d reprovision calls after a 500, want 1", n)
	}
}

// A sign-in that does not complete (declined, or its code expired) leaves
// the request approvable; both sides are told why, and approving again works.
func TestUnfinishedSignInLeavesTheRequestApprovable(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, why string
		end       func(e *fakes.Entra, userCode string)
	}{
		{"declined", "declined", (*fakes.Entra).Decline},
		{"code expired", "code expired", (*fakes.Entra).Expire},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.start()
			prompt := h.ask(cloudPCID + " " + reason)
			h.click(approverID, "approve", prompt)
			dc := h.entra.WaitDeviceCode(t, wait)
			c.end(h.entra, dc.UserCode)
			h.waitPrompt(prompt.TS, `"action_id":"approve"`)
			h.waitDM(approverID, c.why)
			h.waitDM(requesterID, c.why)
			if len(h.graph.Requests()) != 0 {
				t.Fatalf("Graph called after the sign-in was %s", c.name)
			}
			h.approveWithSignIn(prompt)
			h.waitDM(requesterID, "Reprovision started")
			if n := len(h.reprovisionPOSTs()); n != 1 {
				t.Errorf("%d calls, want 1", n)
			}
		})
	}
}

func TestPendingPromptWorksAfterRestart(t *testing.T) {
	onBothStores(t, func(t *testing.T, h *harness) {
		h.start()
		prompt := h.ask(cloudPCID + " " + reason)
		if _, err := h.stop(); err != nil {
			t.Fatalf("run returned %v on stop", err)
		}
		h.start()
		h.approveWithSignIn(prompt)
		h.waitDM(requesterID, "Reprovision started")
		if n := len(h.reprovisionPOSTs()); n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
	})
}

// A request left executing by a process that died mid-call is never resent:
// after restart both sides are told the outcome is unknown.
func TestInFlightCallBeforeCrashIsOutcomeUnknown(t *testing.T) {
	onBothStores(t, func(t *testing.T, h *harness) {
		h.start()
		prompt := h.ask(cloudPCID + " " + reason)
		h.stop()

		// What a crash between "executing" and Graph's answer leaves behind.
		store, err := openStore(context.Background(), h.env["REPROVISION_DB"])
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		r := ref(t, prompt)
		if _, err := store.Transition(ctx, r, approvals.StateApproved, func(r *approvals.Request) { r.DecidedBy = approverID }); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Transition(ctx, r, approvals.StateExecuting, nil); err != nil {
			t.Fatal(err)
		}
		store.Close()

		h.start()
		h.waitPrompt(prompt.TS, "Outcome unknown")
		h.waitDM(requesterID, "Outcome unknown")
		h.waitDM(approverID, "check the Cloud PC")
		h.click(approverID, "approve", prompt)
		h.waitEphemeral(approverID, "already handled")
		if len(h.graph.Requests()) != 0 || len(h.entra.DeviceCodes()) != 0 {
			t.Error("a request with an unknown outcome was sent again")
		}
	})
}

func TestShutdownDuringSignInExitsPromptlyAndReopensTheRequest(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.click(approverID, "approve", prompt)
	h.entra.WaitDeviceCode(t, wait)
	took, err := h.stop()
	t.Logf("shutdown with a sign-in waiting took %s", took)
	if err != nil {
		t.Errorf("run returned %v, want nil", err)
	}
	if took > 10*time.Second {
		t.Errorf("shutdown took %s, want under 10 s", took)
	}
	// The request is approvable again after the restart.
	h.start()
	h.waitPrompt(prompt.TS, `"action_id":"approve"`)
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "Reprovision started")
}

func TestShutdownLetsAnInFlightCallFinish(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.QueueReprovision(cloudPCID, fakes.Response{Status: http.StatusNoContent, Delay: 2 * time.Second})
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	h.slack.WaitFor(t, wait, "the Graph call is in flight", func() bool { return len(h.reprovisionPOSTs()) == 1 })
	took, err := h.stop()
	t.Logf("shutdown with a Graph call in flight took %s", took)
	if err != nil || took > 10*time.Second {
		t.Errorf("run returned %v after %s", err, took)
	}
	h.waitDM(requesterID, "Reprovision started")
	h.waitPrompt(prompt.TS, "Reprovision started")
}

// A Graph call still unanswered when the stop's grace runs out is cut off:
// the bot stops within 10 s and records that the outcome is unknown, never
// resending it.
func TestShutdownCutsOffAHangingCallWithinTheBudget(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.QueueReprovision(cloudPCID, fakes.Response{Status: http.StatusNoContent, Delay: time.Minute})
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	h.slack.WaitFor(t, wait, "the Graph call is in flight", func() bool { return len(h.reprovisionPOSTs()) == 1 })
	took, err := h.stop()
	t.Logf("shutdown with a hanging Graph call took %s", took)
	if err != nil || took > 10*time.Second {
		t.Errorf("run returned %v after %s, want nil within 10 s", err, took)
	}
	h.waitDM(requesterID, "Outcome unknown")
	h.start()
	h.waitPrompt(prompt.TS, "Outcome unknown")
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1: a cut-off call is never resent", n)
	}
}

// onBothStores runs test on a harness of its own with each store: SQLite
// (a file) and PostgreSQL (a fresh database from pgtest), in parallel.
func onBothStores(t *testing.T, test func(t *testing.T, h *harness)) {
	t.Parallel()
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			if kind == "postgres" {
				h.env["REPROVISION_DB"] = pgtest.URL(t)
			}
			test(t, h)
		})
	}
}
