package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// Issue 8: nothing lost, nothing held forever. Each test fails one
// dependency at the worst moment, through the fakes' fault knobs, and
// checks what the people involved see.

const (
	// started is in the requester's outcome DM and on the final prompt.
	started = "Reprovision started"
	// reprovisioning is the prompt while the call is in flight.
	reprovisioning = "Reprovisioning…"
)

// Slack refuses everything (HTTP 429) from the moment Graph gets the
// reprovision POST until the announcement of its outcome has been refused
// (the burst is ended by the test once it has seen that, so it covers the
// announcement however slow the machine): the outcome is stored, and the
// outbox delivers the requester's DM, once, and the prompt's final state
// when Slack takes them again.
//
//   - "retries exhausted": Retry-After 1 s, the burst ended once the
//     outcome DM was refused 3 times: all of the bot's in-call tries, after
//     which the news used to be lost. The outbox tries again.
//   - "long Retry-After": Retry-After 3 s, longer than the bot waits in a
//     call; the outbox honours it.
func TestFaultsSlackRateLimitWhileAnnouncingTheOutcome(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name       string
		retryAfter int
		// refusedDMs: the burst ends once the outcome DM was refused this
		// many times.
		refusedDMs int
	}{
		{"retries exhausted", 1, 3},
		{"long Retry-After", 3, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			// No heads-up: the Cloud PC's user is not in this Slack, and
			// the warnings saying so go ahead of the outcome in the
			// outbox; on a loaded machine the burst caught them too, and
			// the outcome DM had not been refused 3 times within the wait.
			h.env["REPROVISION_NOTIFY_USER"] = "false"
			// A short delay on the answer: the burst starts while the
			// POST is in flight, so it covers the whole announcement.
			h.graph.QueueReprovision(cloudPCID, fakes.Response{Status: http.StatusNoContent, Delay: 300 * time.Millisecond})
			h.start()
			prompt := h.ask(cloudPCID + " " + reason)
			r := ref(t, prompt)
			h.approveWithSignIn(prompt)
			h.waitPOSTArrives()
			armed := time.Now()
			h.slack.RateLimit("", time.Minute, c.retryAfter)

			refusedDMs := func() []fakes.Call {
				return h.slackCalls("chat.postMessage", func(c fakes.Call) bool {
					return c.Fault == fakes.FaultRateLimited && isDMTo(c, requesterID) && strings.Contains(callText(c), started)
				})
			}
			refusedRedraws := func() []fakes.Call {
				return h.slackCalls("chat.update", func(c fakes.Call) bool {
					return c.Fault == fakes.FaultRateLimited && c.Params["ts"] == prompt.TS && strings.Contains(callText(c), started)
				})
			}
			h.slack.WaitFor(t, wait, fmt.Sprintf("the outcome DM refused %d times and the prompt's redraw once", c.refusedDMs), func() bool {
				return len(refusedDMs()) >= c.refusedDMs && len(refusedRedraws()) > 0
			})
			// Nobody has been told yet, although the outcome is stored.
			h.waitAudit(r, "succeeded", nil)
			if got := h.dmsContaining(requesterID, started); len(got) != 0 {
				t.Fatalf("the requester was told during the burst: %q", got)
			}
			ended := time.Now()
			h.slack.RateLimit("", 0, 0)
			t.Logf("burst of %s", ended.Sub(armed).Round(time.Millisecond))

			h.waitDM(requesterID, started)
			final := h.waitPrompt(prompt.TS, started)
			if strings.Contains(blocks(final), reprovisioning) {
				t.Errorf("the final prompt still says %q: %s", reprovisioning, blocks(final))
			}
			h.waitOutboxEmpty()

			dms := refusedDMs()
			delivered := h.slackCalls("chat.postMessage", func(c fakes.Call) bool {
				return c.Fault == "" && c.Error == "" && isDMTo(c, requesterID) && strings.Contains(callText(c), started)
			})
			t.Logf("refused: %d tries of the outcome DM, %d of the prompt's redraw; %d Web API calls in all",
				len(dms), len(refusedRedraws()), len(h.slackCalls("", func(c fakes.Call) bool { return c.Fault != "" })))
			if len(delivered) != 1 {
				t.Fatalf("the outcome DM was delivered %d times, want once", len(delivered))
			}
			// Retry-After is honoured: the try that got through came no
			// sooner than Slack said after the last refusal.
			if gap := delivered[0].At.Sub(dms[len(dms)-1].At); gap < time.Duration(c.retryAfter)*time.Second-100*time.Millisecond {
				t.Errorf("the outcome DM was tried again %s after a 429 with Retry-After: %d", gap, c.retryAfter)
			}
			if n := len(h.dmsContaining(requesterID, started)); n != 1 {
				t.Errorf("the requester has %d outcome DMs, want 1", n)
			}
			if n := len(h.reprovisionPOSTs()); n != 1 {
				t.Errorf("%d reprovision calls, want 1", n)
			}
		})
	}
}

// Slack is down (HTTP 503) from the moment Graph gets the POST until after
// the bot was stopped: the outcome is stored with its notices in the
// outbox, undelivered. The next process on the same store, with Slack back,
// delivers them: the requester's DM once, the prompt's final state.
func TestFaultsSlackOutageAcrossARestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.QueueReprovision(cloudPCID, fakes.Response{Status: http.StatusNoContent, Delay: 300 * time.Millisecond})
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	r := ref(t, prompt)
	h.approveWithSignIn(prompt)
	h.waitPOSTArrives()
	h.slack.Outage(time.Minute)

	h.waitAudit(r, "succeeded", nil)
	h.slack.WaitFor(t, wait, "the outcome DM is refused by the outage", func() bool {
		return len(h.slackCalls("chat.postMessage", func(c fakes.Call) bool {
			return c.Fault == fakes.FaultOutage && isDMTo(c, requesterID) && strings.Contains(callText(c), started)
		})) > 0
	})
	took, err := h.stop()
	t.Logf("stopped during the outage in %s", took)
	if err != nil || took > 10*time.Second {
		t.Errorf("run returned %v after %s, want nil within 10 s", err, took)
	}

	// Between the two processes: nobody was told, the news waits in the
	// store.
	if got := h.dmsContaining(requesterID, started); len(got) != 0 {
		t.Fatalf("the requester was told during the outage: %q", got)
	}
	if got := blocks(h.promptNow(prompt.TS)); strings.Contains(got, started) {
		t.Fatalf("the prompt was redrawn during the outage: %s", got)
	}
	if n := h.undelivered(); n == 0 {
		t.Fatal("the stopped bot left no undelivered notice in the store")
	} else {
		t.Logf("%d notices undelivered at the stop", n)
	}

	h.slack.Outage(0)
	h.start()
	h.waitDM(requesterID, started)
	final := h.waitPrompt(prompt.TS, started)
	if strings.Contains(blocks(final), reprovisioning) {
		t.Errorf("the final prompt still says %q", reprovisioning)
	}
	h.waitOutboxEmpty()
	if got := h.dmsContaining(requesterID, started); len(got) != 1 {
		t.Errorf("the requester got the outcome %d times, want once: %q", len(got), got)
	}
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}
	if got := eventsOf(h.auditTrail(), r, "outcome_unknown"); len(got) != 0 {
		t.Errorf("the restart relabelled the request: %+v", got)
	}
}

// Entra is down (HTTP 503) when the approver approves: the sign-in cannot
// start, both sides are told, nothing reaches Graph, and the request is
// approvable again; once Entra is back, approving works.
func TestFaultsEntraDownAtApproval(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	r := ref(t, prompt)
	h.entra.Down(time.Minute)
	h.click(approverID, "approve", prompt)

	h.entra.WaitFor(t, wait, "Entra refuses the device-code request", func() bool { return len(h.entra.Faults()) > 0 })
	// azidentity tries again on a 503 (azcore's backoff, ~10 s in all).
	h.waitAudit(r, "signin_failed", nil)
	h.waitDM(approverID, "Microsoft sign-in could not be reached or did not answer in time, so no sign-in code was issued. "+r+" is still waiting: click Approve on the prompt to try again")
	h.waitDM(requesterID, "Your request "+r+" was approved, but the approver's sign-in did not complete")
	h.waitPrompt(prompt.TS, "Awaiting a decision. Microsoft sign-in could not be reached")
	h.waitPrompt(prompt.TS, `"action_id":"approve"`)
	faults := h.entra.Faults()
	if len(faults) == 0 {
		t.Error("Entra refused nothing: the sign-in did not meet the outage")
	}
	for _, f := range faults {
		if f.Fault != fakes.FaultDown || f.Endpoint != "devicecode" {
			t.Errorf("Entra refused %+v, want only device-code requests, as down", f)
		}
	}
	if n := len(h.entra.DeviceCodes()); n != 0 {
		t.Errorf("%d device codes issued while Entra was down", n)
	}
	if n := len(h.graph.Requests()); n != 0 {
		t.Errorf("%d Graph requests although nobody signed in", n)
	}
	if f := h.entra.Faults(); len(f) > 0 {
		t.Logf("Entra refused %d device-code requests over %s", len(f), f[len(f)-1].At.Sub(f[0].At).Round(time.Millisecond))
	}

	h.entra.Down(0)
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, started)
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}
}

// Graph answers the reprovision POST slowly, with a body that is not JSON,
// or with one far over the 1 MiB the client reads. A 2xx is a success
// whatever its body (the body of a POST's 2xx is never read); an error
// status keeps its meaning, an over-long error body is dropped (its code
// and message are not shown, the request-id header is). Exactly one POST
// is sent each time.
func TestFaultsGraphSlowGarbageOrHugeAnswers(t *testing.T) {
	t.Parallel()
	huge := func(status int) fakes.Response {
		pad := strings.Repeat("x", 2<<20)
		return fakes.Response{Status: status, Header: http.Header{"Content-Type": {"application/json"}},
			Body: `{"error":{"code":"HugeCode","message":"` + pad + `"}}`}
	}
	for _, c := range []struct {
		name   string
		answer fakes.Response
		// state is the audit event of the outcome; want is in the
		// requester's DM and on the prompt; not is in neither.
		state, want, not string
		// attemptErr is in the POST's graph_call audit record ("" none).
		attemptErr string
	}{
		{name: "slow 204", answer: fakes.Response{Status: http.StatusNoContent, Delay: 2 * time.Second},
			state: "succeeded", want: started},
		{name: "200 with HTML", answer: fakes.Response{Status: http.StatusOK, Header: http.Header{"Content-Type": {"text/html"}},
			Body: "<html><body>Bad gateway?</body></html>"}, state: "succeeded", want: started},
		{name: "202 with 2 MiB", answer: huge(http.StatusAccepted), state: "succeeded", want: started, not: "HugeCode"},
		{name: "409 with 2 MiB", answer: huge(http.StatusConflict), state: "failed",
			want: "Microsoft Graph refused (HTTP 409): the Cloud PC's current state does not allow it", not: "HugeCode",
			attemptErr: "larger than 1 MiB"},
		{name: "500 with HTML", answer: fakes.Response{Status: http.StatusInternalServerError, Header: http.Header{"Content-Type": {"text/html"}},
			Body: "<html><body>oops</body></html>"}, state: "outcome_unknown",
			want: "Microsoft Graph failed (HTTP 500): it may have been accepted; check the Cloud PC before trying again"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.graph.QueueReprovision(cloudPCID, c.answer)
			h.start()
			prompt := h.ask(cloudPCID + " " + reason)
			r := ref(t, prompt)
			h.approveWithSignIn(prompt)
			h.waitDM(requesterID, c.want)
			final := h.waitPrompt(prompt.TS, c.want)
			h.waitAudit(r, c.state, nil)
			posts := h.reprovisionPOSTs()
			if len(posts) != 1 {
				t.Fatalf("%d reprovision calls, want exactly 1", len(posts))
			}
			post := posts[0]
			told := strings.Join(h.dmsContaining(requesterID, r), "\n")
			for _, where := range []string{blocks(final), told} {
				if c.not != "" && strings.Contains(where, c.not) {
					t.Errorf("%q shown from an answer over 1 MiB: %s", c.not, clipText(where))
				}
				if c.state != "succeeded" && !strings.Contains(where, post.RequestID) {
					t.Errorf("the failure lacks Graph's request-id %s: %s", post.RequestID, clipText(where))
				}
			}
			rec := h.waitAudit(r, "graph_call", func(a auditLine) bool { return a.Details["client_request_id"] == post.ClientRequestID })
			if rec.Details["status"] != fmt.Sprint(post.Status) || rec.Details["request_id"] != post.RequestID {
				t.Errorf("graph_call %+v, Graph answered %d with request-id %s", rec.Details, post.Status, post.RequestID)
			}
			if !strings.Contains(rec.Details["error"], c.attemptErr) || (c.attemptErr == "" && rec.Details["error"] != "") {
				t.Errorf("graph_call error %q, want %q", rec.Details["error"], c.attemptErr)
			}
			if n := len(h.dmsContaining(requesterID, c.want)); n != 1 {
				t.Errorf("the requester was told %d times, want once", n)
			}
		})
	}
}

// clipText keeps failure messages readable.
func clipText(s string) string {
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return s
}

// Another process holds the store's write lock (BEGIN IMMEDIATE, ~7 s,
// longer than SQLite's 5 s busy wait) from the moment Graph gets the POST,
// so Graph's 204 arrives while nothing can be written. The answer is kept
// and stored once the lock is gone: the request ends succeeded (never
// outcome unknown), the requester is told, and the POST's graph_call
// record is in the trail.
func TestFaultsStoreWriteLockedWhenGraphAnswers(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.graph.QueueReprovision(cloudPCID, fakes.Response{Status: http.StatusNoContent, Delay: time.Second})
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	r := ref(t, prompt)
	h.approveWithSignIn(prompt)
	h.waitPOSTArrives()
	lock := h.lockStore()
	locked := time.Now()
	post := h.waitPOSTAnswered()
	if post.Status != http.StatusNoContent {
		t.Fatalf("Graph answered %d, want 204", post.Status)
	}
	time.Sleep(time.Until(locked.Add(7 * time.Second)))
	// Read (WAL readers are not blocked): nothing could be recorded yet,
	// neither the outcome nor the POST's graph_call record.
	trail := h.auditTrail()
	if got := eventsOf(trail, r, "succeeded"); len(got) != 0 {
		t.Fatalf("the outcome was recorded while the store was locked: %+v (the lock did not hold?)", got)
	}
	for _, a := range eventsOf(trail, r, "graph_call") {
		if a.Details["client_request_id"] == post.ClientRequestID {
			t.Fatalf("the POST's graph_call was recorded while the store was locked: %+v (the lock did not hold?)", a)
		}
	}
	lock.release()

	h.waitDM(requesterID, started)
	h.waitPrompt(prompt.TS, started)
	h.waitAudit(r, "succeeded", func(a auditLine) bool { return a.Details["request_id"] == post.RequestID })
	rec := h.waitAudit(r, "graph_call", func(a auditLine) bool { return a.Details["client_request_id"] == post.ClientRequestID })
	if rec.Details["status"] != "204" || rec.Details["request_id"] != post.RequestID || rec.Details["method"] != http.MethodPost {
		t.Errorf("the POST's graph_call record %+v does not match Graph's 204 (request-id %s)", rec.Details, post.RequestID)
	}
	trail = h.auditTrail()
	for _, kind := range []string{"outcome_unknown", "failed"} {
		if got := eventsOf(trail, r, kind); len(got) != 0 {
			t.Errorf("%s records after a 204: %+v", kind, got)
		}
	}
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}

	// The next start does not turn the stored 204 into anything else.
	h.stop()
	h.start()
	h.waitPrompt(prompt.TS, started)
	if got := eventsOf(h.auditTrail(), r, "outcome_unknown"); len(got) != 0 {
		t.Errorf("the restart relabelled the request: %+v", got)
	}
}

// An approver removed from REPROVISION_APPROVER between two runs on the
// same store can no longer decide the requests prompted to them before:
// their Approve and Deny on the old prompt are refused and audited, and
// nothing reaches Entra or Graph. A request left with none of its approvers
// is prompted to the configured ones at start, who can decide it.
func TestFaultsRemovedApproverIsRefusedAfterARestart(t *testing.T) {
	t.Parallel()
	t.Run("one of two removed", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		twoApprovers(h)
		h.start()
		r := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
		old := h.promptOf(secondApproverID, r)
		mine := h.promptOf(approverID, r)
		h.stop()

		h.env["REPROVISION_APPROVER"] = approverID
		h.start()
		h.click(secondApproverID, "approve", old)
		h.waitEphemeral(secondApproverID, "Only <@"+approverID+"> can approve or deny "+r)
		h.click(secondApproverID, "deny", old)
		h.slack.WaitFor(t, wait, "both clicks of the removed approver are audited as refused", func() bool {
			n := 0
			for _, a := range eventsOf(h.auditTrail(), r, "refused_click") {
				if a.Actor == secondApproverID {
					n++
				}
			}
			return n == 2
		})
		if n := len(h.entra.DeviceCodes()); n != 0 {
			t.Fatalf("the removed approver's click started %d sign-ins", n)
		}
		if len(h.graph.Requests()) != 0 {
			t.Fatal("the removed approver's click reached Graph")
		}
		if got := eventsOf(h.auditTrail(), r, "approved"); len(got) != 0 {
			t.Errorf("approved by a removed approver: %+v", got)
		}
		for _, v := range h.slack.Views(secondApproverID) {
			if v.CallbackID == "deny_reason" {
				t.Error("the removed approver got the deny form")
			}
		}
		// (At start the bot redraws open prompts, so Updates may move.)
		if now := blocks(h.messageNow(old)); !strings.Contains(now, "Awaiting a decision") || strings.Contains(now, "Approved by") {
			t.Errorf("the old prompt moved on after the removed approver's clicks: %s", now)
		}

		// The remaining approver decides it.
		h.click(approverID, "approve", mine)
		h.signIn(approverUPN)
		h.confirm(mine, "confirm")
		h.waitDM(requesterID, started)
		if n := len(h.reprovisionPOSTs()); n != 1 {
			t.Errorf("%d reprovision calls, want 1", n)
		}
	})
	t.Run("all replaced", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		twoApprovers(h)
		h.env["REPROVISION_APPROVER"] = secondApproverID
		h.start()
		r := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
		old := h.promptOf(secondApproverID, r)
		if got := h.dmsContaining(approverID, r); len(got) != 0 {
			t.Fatalf("%s was prompted before being an approver: %q", approverID, got)
		}
		h.stop()

		h.env["REPROVISION_APPROVER"] = approverID
		h.start()
		fresh := h.promptOf(approverID, r) // prompted at start
		h.click(secondApproverID, "approve", old)
		h.waitEphemeral(secondApproverID, "Only <@"+approverID+"> can approve or deny "+r)
		h.waitAudit(r, "refused_click", func(a auditLine) bool { return a.Actor == secondApproverID })
		if n := len(h.entra.DeviceCodes()); n != 0 {
			t.Fatalf("the removed approver's click started %d sign-ins", n)
		}
		h.click(approverID, "approve", fresh)
		h.signIn(approverUPN)
		h.confirm(fresh, "confirm")
		h.waitDM(requesterID, started)
		if n := len(h.reprovisionPOSTs()); n != 1 {
			t.Errorf("%d reprovision calls, want 1", n)
		}
	})
}

// Entra takes the device-code request and never answers: after
// REPROVISION_SIGNIN_START_TIMEOUT the request waits for a decision again,
// both sides are told, and the approver can approve again once Entra
// answers. The request is never held.
func TestFaultsEntraHangsAtApproval(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.env["REPROVISION_SIGNIN_START_TIMEOUT"] = "2s"
	h.start()
	prompt := h.ask(cloudPCID + " " + reason)
	r := ref(t, prompt)
	h.entra.Hang(time.Minute)
	h.click(approverID, "approve", prompt)

	h.entra.WaitFor(t, wait, "Entra holds the device-code request", func() bool { return len(h.entra.Faults()) > 0 })
	h.waitAudit(r, "signin_failed", nil)
	h.waitPrompt(prompt.TS, `"action_id":"approve"`)
	h.waitPrompt(prompt.TS, "Awaiting a decision. Microsoft sign-in could not be reached or did not answer in time")
	h.waitDM(approverID, "no sign-in code was issued. "+r+" is still waiting")
	h.waitDM(requesterID, "Your request "+r+" was approved, but the approver's sign-in did not complete")
	for _, f := range h.entra.Faults() {
		if f.Fault != fakes.FaultHang || !f.Canceled {
			t.Errorf("Entra fault %+v, want a held request the bot gave up on", f)
		}
	}
	if n := len(h.graph.Requests()); n != 0 {
		t.Errorf("%d Graph requests although nobody signed in", n)
	}

	h.entra.Hang(0)
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, started)
	if n := len(h.reprovisionPOSTs()); n != 1 {
		t.Errorf("%d reprovision calls, want 1", n)
	}
}
