package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// What a batch looks like to people: its prompt in every state with the
// counts and buttons, the final confirmation's list, one thread line per
// Cloud PC, the halted notice, the notices to each Cloud PC's user, and
// Slack's block limits for large batches.

// bxID is the Cloud PC id of a batch's i-th member.
func bxID(i int) string { return fmt.Sprintf("4e1f0b9a-2c3d-4e5f-8a9b-%012d", i) }

// bxMember is the i-th member of a batch, found, with result.
func bxMember(i int, result approvals.MemberResult) approvals.Member {
	return approvals.Member{
		Target:    fmt.Sprintf("CPC-USER-%02d", i),
		CloudPCID: bxID(i),
		Device: approvals.CloudPC{ID: bxID(i), ManagedDeviceName: fmt.Sprintf("CPC-USER-%02d", i),
			UserPrincipalName: fmt.Sprintf("user%02d@contoso.com", i), Status: "provisioned"},
		Result: result,
	}
}

// bxBatch is a batch of the listed CPC-USER-01…n from UREQ, decided by UA1
// (signed in), in state; members found (all waiting) unless pending or
// approved.
func bxBatch(state approvals.State, n int) *approvals.Request {
	r := txRequest(state)
	r.CloudPCID, r.Device = "", nil
	b := &approvals.Batch{}
	for i := 1; i <= n; i++ {
		b.Targets = append(b.Targets, fmt.Sprintf("CPC-USER-%02d", i))
	}
	r.Target = strings.Join(b.Targets, ",")
	if state != approvals.StatePending && state != approvals.StateApproved {
		r.SignedInAs = "alice@contoso.com"
		for i := 1; i <= n; i++ {
			b.Members = append(b.Members, bxMember(i, approvals.MemberWaiting))
		}
	}
	r.Batch = b
	return r
}

// bxResults sets the results of the first members, in order.
func bxResults(r *approvals.Request, results ...approvals.MemberResult) *approvals.Request {
	for i, result := range results {
		m := &r.Batch.Members[i]
		m.Result = result
		switch result {
		case approvals.MemberSkipped:
			m.Detail, m.Device.Status = "inGracePeriod", "inGracePeriod"
		case approvals.MemberFailed:
			m.GraphCode, m.GraphStatus, m.GraphRequestID, m.Detail = "Conflict", 409, "req-f", "Cloud PC is busy"
		case approvals.MemberSent, approvals.MemberSucceeded:
			m.GraphRequestID = "req-s"
		}
	}
	return r
}

// bxRunning is a batch of 30 while it runs: 12 sent, 1 failed, 2 skipped,
// 1 in flight, 14 waiting.
func bxRunning() *approvals.Request {
	r := bxBatch(approvals.StateExecuting, 30)
	var results []approvals.MemberResult
	for range 12 {
		results = append(results, approvals.MemberSent)
	}
	results = append(results, approvals.MemberFailed, approvals.MemberSkipped, approvals.MemberSkipped, approvals.MemberSending)
	return bxResults(r, results...)
}

// bxAll is every mrkdwn text and button of blocks, as one string.
func bxAll(t *testing.T, blocks []slack.Block) string {
	t.Helper()
	return strings.Join(txMrkdwn(t, blocks), "\n") + "\n" + strings.Join(buttons(t, blocks), " ")
}

func TestBatchCounts(t *testing.T) {
	t.Parallel()
	if got, want := batchCountsText(bxRunning().Batch), "12 of 30 sent · 1 in flight · 1 failed · 2 skipped"; got != want {
		t.Errorf("running: %q, want %q", got, want)
	}
	ended := bxResults(bxBatch(approvals.StateSucceeded, 6), approvals.MemberSucceeded, approvals.MemberSent, approvals.MemberFailed,
		approvals.MemberUnknown, approvals.MemberExcluded, approvals.MemberNotSent)
	ended.Batch.Members[1].Tracked = approvals.TrackTimedOut
	ended.Batch.Members = append(ended.Batch.Members, bxMember(7, approvals.MemberFailed))
	ended.Batch.Members[6].Tracked = approvals.TrackFailed // accepted, then the reprovision failed
	if got, want := batchCountsText(ended.Batch), "3 of 7 sent · 1 failed · 1 outcome unknown · 1 left out · 1 not sent"; got != want {
		t.Errorf("ended: %q, want %q", got, want)
	}
	if got, want := provisionedText(ended.Batch), "1 of 3 provisioned again · 1 reprovision failed · 1 no longer followed (check them in Intune)"; got != want {
		t.Errorf("provisioned: %q, want %q", got, want)
	}
}

// The prompt in every state: what is asked, the list, the counts in the
// status line, and the buttons of the state.
func TestBatchPrompt(t *testing.T) {
	t.Parallel()
	ref := txRef
	tracked := func(tr approvals.Tracking) *approvals.Request {
		r := bxResults(bxBatch(approvals.StateSucceeded, 4), approvals.MemberSucceeded, approvals.MemberSent, approvals.MemberSent, approvals.MemberSkipped)
		tr.Since = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
		tr.Until = tr.Since.Add(3 * time.Hour)
		r.Tracking = tr
		return r
	}
	stopped := bxRunning()
	stopped.Batch.Stopped, stopped.Batch.StoppedBy = true, "UA2"
	halted := bxRunning()
	halted.Batch.Halted, halted.Outcome = true, &approvals.Outcome{Kind: approvals.OutcomeInFlightAtRestart}
	haltedGraph := bxRunning()
	haltedGraph.Batch.Halted, haltedGraph.Outcome = true, &approvals.Outcome{Kind: approvals.OutcomeGraph,
		Graph: &approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: approvals.CauseClaimsChallenge, Method: "POST", Status: 401}}
	haltedStopped := bxRunning()
	haltedStopped.Batch.Halted, haltedStopped.Batch.Stopped, haltedStopped.Batch.StoppedBy = true, true, "UA1"
	policy := bxBatch(approvals.StatePending, 0)
	policy.Target, policy.Batch = "Sales EMEA", &approvals.Batch{Policy: "Sales EMEA"}
	policyFound := bxBatch(approvals.StateConfirming, 3)
	policyFound.Batch.Targets, policyFound.Batch.Policy = nil, "sales"
	policyFound.Batch.PolicyID, policyFound.Batch.PolicyName = txCloudPC, "Sales EMEA"
	for i := range policyFound.Batch.Members {
		policyFound.Batch.Members[i].Target = ""
	}

	for _, tc := range []struct {
		name    string
		r       *approvals.Request
		want    []string
		bad     []string
		buttons []string
	}{
		{"pending", bxBatch(approvals.StatePending, 30),
			[]string{"*Reprovision 30 Cloud PCs*", "*Cloud PCs asked for*\n`CPC-USER-01`\n`CPC-USER-02`", "`CPC-USER-30`", "*Reason*\ndisk full",
				":hourglass: Awaiting a decision.", "30 Cloud PCs: each is wiped", "every one of these Cloud PCs"},
			[]string{"sent", "Cloud PCs found"}, []string{"approve=" + ref, "deny=" + ref}},
		{"pending, by policy", policy,
			[]string{"*Reprovision every Cloud PC of provisioning policy `Sales EMEA`*", "*Provisioning policy*\n`Sales EMEA`", "Every Cloud PC of provisioning policy `Sales EMEA`: each is wiped"},
			[]string{"asked for", "Cloud PCs found"}, []string{"approve=" + ref, "deny=" + ref}},
		{"pending, two approvals needed", txWith(bxBatch(approvals.StatePending, 12), func(r *approvals.Request) { r.ApprovalsRequired = 2 }),
			[]string{":hourglass: Awaiting a decision: 0 of 2 approvals."}, nil, []string{"approve=" + ref, "deny=" + ref}},
		{"approved", bxBatch(approvals.StateApproved, 3),
			[]string{":key: Approved by <@UA1>. Waiting for <@UA1> to sign in"}, nil, nil},
		{"confirming, by policy", policyFound,
			[]string{"*Reprovision every Cloud PC of provisioning policy `Sales EMEA` (3 Cloud PCs)*", "*Cloud PCs found (3)*\n• `CPC-USER-01` (user01@contoso.com) — waiting",
				":eyes: Approved by <@UA1>, signed in as alice@contoso.com. Waiting for their final confirmation."}, []string{"`sales`"}, nil},
		{"running", bxRunning(),
			[]string{"*Reprovision 30 Cloud PCs*", "• `CPC-USER-01` (user01@contoso.com) — sent", "• `CPC-USER-13` (user13@contoso.com) — failed",
				"• `CPC-USER-14` (user14@contoso.com) — skipped: status inGracePeriod", "— sending…", "— waiting",
				":gear: Approved by <@UA1>. Reprovisioning: 12 of 30 sent · 1 in flight · 1 failed · 2 skipped.", "No more Cloud PCs of " + ref + " are sent"},
			nil, []string{"stop_batch=" + ref}},
		{"stopped while calls are in flight", stopped,
			[]string{":octagonal_sign: Stopped by <@UA2>: no more Cloud PCs are sent. 12 of 30 sent"}, []string{"Reprovisioning:"}, nil},
		{"halted after a restart", halted,
			[]string{":pause_button: Halted: the bot restarted while it ran. 14 Cloud PCs not sent yet, waiting for <@UA1> to *Resume* (signing in again) or an approver to *Stop*. 12 of 30 sent"},
			nil, []string{"resume_batch=" + ref, "stop_batch=" + ref}},
		{"halted for a fresh sign-in", haltedGraph,
			[]string{":pause_button: Halted: Microsoft Graph asks for a fresh sign-in", "14 Cloud PCs not sent yet"}, []string{"restarted"},
			[]string{"resume_batch=" + ref, "stop_batch=" + ref}},
		{"halted, then stopped", haltedStopped, []string{":octagonal_sign: Stopped by <@UA1>"}, []string{"Halted"}, nil},
		{"succeeded, not followed", bxResults(bxBatch(approvals.StateSucceeded, 3), approvals.MemberSent, approvals.MemberSent, approvals.MemberFailed),
			[]string{":white_check_mark: Approved by <@UA1>. Finished sending: 2 of 3 sent · 1 failed."}, []string{"Following", "provisioned again"}, nil},
		{"succeeded, stopped", txWith(bxResults(bxBatch(approvals.StateSucceeded, 3), approvals.MemberSent, approvals.MemberNotSent, approvals.MemberNotSent),
			func(r *approvals.Request) { r.Batch.Stopped, r.Batch.StoppedBy = true, "UA2" }),
			[]string{"Finished sending: 1 of 3 sent · 2 not sent. Stopped by <@UA2>."}, nil, nil},
		{"succeeded, following", tracked(approvals.Tracking{}),
			[]string{"Finished sending: 3 of 4 sent · 1 skipped. Following them: 1 of 3 provisioned again."}, nil, nil},
		{"succeeded, tracking paused", tracked(approvals.Tracking{Paused: true}),
			[]string{":pause_button: Tracking paused", "So far 1 of 3 provisioned again."}, nil, []string{"resume_tracking=" + ref}},
		{"succeeded, all provisioned again", txWith(tracked(approvals.Tracking{Result: approvals.TrackProvisioned}), func(r *approvals.Request) {
			r.Batch.Members[1].Result, r.Batch.Members[2].Result = approvals.MemberSucceeded, approvals.MemberSucceeded
		}), []string{":tada: Done: 3 of 3 provisioned again.", "— provisioned again"}, []string{"Following"}, nil},
		{"succeeded, following ended short", txWith(tracked(approvals.Tracking{Result: approvals.TrackTimedOut}), func(r *approvals.Request) {
			r.Batch.Members[1].Tracked, r.Batch.Members[2].Tracked = approvals.TrackTimedOut, approvals.TrackTimedOut
		}), []string{":warning: Following them ended: 1 of 3 provisioned again · 2 no longer followed (check them in Intune).", "sent; no longer followed"}, nil, nil},
		{"failed: too many found", txWith(bxBatch(approvals.StateFailed, 0), func(r *approvals.Request) {
			r.Batch.Policy, r.Batch.Targets = "Sales", nil
			r.Outcome = &approvals.Outcome{Kind: approvals.OutcomeBatchTooLarge, Matches: 73, Max: 50}
		}), []string{":x: Batch failed: The look-up found 73 Cloud PCs; a batch may have at most 50. Nothing was sent."}, nil, nil},
		{"failed: nothing to send", txWith(bxResults(bxBatch(approvals.StateFailed, 2), approvals.MemberSkipped, approvals.MemberExcluded),
			func(r *approvals.Request) { r.Outcome = &approvals.Outcome{Kind: approvals.OutcomeNothingToSend} }),
			[]string{":x: Batch failed: None of the Cloud PCs may be reprovisioned now", "— left out"}, nil, nil},
		{"failed: Graph refused every call", bxResults(bxBatch(approvals.StateFailed, 2), approvals.MemberFailed, approvals.MemberFailed),
			[]string{":x: Batch failed: no reprovision went through: 0 of 2 sent · 2 failed."}, nil, nil},
		{"outcome unknown", bxResults(bxBatch(approvals.StateOutcomeUnknown, 2), approvals.MemberUnknown, approvals.MemberFailed),
			[]string{":grey_question: Approved by <@UA1>. Outcome unknown — check the Cloud PCs in Intune: 0 of 2 sent · 1 failed · 1 outcome unknown."}, nil, nil},
		{"canceled: stopped before any call", txWith(bxResults(bxBatch(approvals.StateCanceled, 2), approvals.MemberNotSent, approvals.MemberNotSent),
			func(r *approvals.Request) { r.Batch.Stopped, r.Batch.StoppedBy = true, "UA2" }),
			[]string{":leftwards_arrow_with_hook: Stopped by <@UA2> before any call was sent; nothing was reprovisioned."}, nil, nil},
		{"canceled at the confirmation", bxBatch(approvals.StateCanceled, 2),
			[]string{":leftwards_arrow_with_hook: Canceled by <@UA1> at the final confirmation."}, nil, nil},
		{"denied", txWith(bxBatch(approvals.StateDenied, 2), func(r *approvals.Request) { r.DecisionReason = "not all at once" }),
			[]string{":no_entry_sign: Denied by <@UA1>. Reason: not all at once"}, nil, nil},
		{"expired", txWith(bxBatch(approvals.StatePending, 2), func(r *approvals.Request) { r.State, r.DecidedBy = approvals.StateExpired, "" }),
			[]string{":clock3: EXPIRED: nobody decided in time."}, nil, nil},
	} {
		blocks := promptBlocks(tc.r)
		txCheck(t, tc.name, bxAll(t, blocks), tc.want, tc.bad)
		if got := buttons(t, blocks); strings.Join(got, " ") != strings.Join(tc.buttons, " ") {
			t.Errorf("%s: buttons %q, want %q", tc.name, got, tc.buttons)
		}
		if !strings.HasPrefix(promptText(tc.r), "Reprovision request "+ref+" for ") {
			t.Errorf("%s: fallback text %q", tc.name, promptText(tc.r))
		}
	}

	// Stop asks before it acts; its block tells the click apart.
	raw, _ := json.Marshal(promptBlocks(halted))
	for _, want := range []string{`"block_id":"batch:` + ref + `"`, `"title":{"type":"plain_text","text":"Stop this batch?"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("halted prompt lacks %s", want)
		}
	}
}

// The final confirmation lists what will be reprovisioned (device, user,
// status) and what will not and why, with one button for all.
func TestBatchConfirmation(t *testing.T) {
	t.Parallel()
	r := bxBatch(approvals.StateConfirming, 5)
	r.Options.OSVersion = approvals.OSWindows11
	m := r.Batch.Members
	m[1].Result, m[1].Detail, m[1].Device.Status = approvals.MemberSkipped, "inGracePeriod", "inGracePeriod"
	m[2].Result, m[2].Other, m[2].Detail = approvals.MemberExcluded, txOtherRef, "open request "+txOtherRef
	m[3] = approvals.Member{Target: "cpc-typo-9", Result: approvals.MemberExcluded, Detail: "no Cloud PC matches"}
	text, blocks := confirmBlocks(r)
	txCheck(t, "confirmation", text+"\n"+bxAll(t, blocks), []string{
		"*Request " + txRef + ":* Reprovision 2 Cloud PCs now with Windows 11? This signs their users out and deletes all their data and apps. 3 of these 5 will not be sent (listed below).",
		"*To reprovision (2)*\n• `CPC-USER-01` (user01@contoso.com) · provisioned\n• `CPC-USER-05` (user05@contoso.com) · provisioned",
		"*Not sent (3)*\n• `CPC-USER-02` (user02@contoso.com) · inGracePeriod — skipped: status inGracePeriod",
		"• `CPC-USER-03` (user03@contoso.com) · provisioned — left out: open request " + txOtherRef,
		"• `cpc-typo-9` — left out: no Cloud PC matches",
		"every one of these Cloud PCs",
		"2 Cloud PCs will be wiped and reprovisioned with Windows 11: each user is signed out",
		"confirm=" + txRef + " abort=" + txRef,
	}, []string{"CPC-USER-04", "pick"})
	raw, _ := json.Marshal(blocks)
	for _, want := range []string{`"text":"Reprovision 2 Cloud PCs","emoji":false},"action_id":"confirm"`, `"style":"danger"`, `"title":{"type":"plain_text","text":"Reprovision 2 Cloud PCs?"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("confirmation lacks %s\n%s", want, raw)
		}
	}
	// By policy: the policy as found.
	r.Batch.Targets, r.Batch.Policy, r.Batch.PolicyName = nil, "sales", "Sales EMEA"
	text, _ = confirmBlocks(r)
	txCheck(t, "confirmation by policy", text, []string{"Provisioning policy `Sales EMEA`: reprovision 2 Cloud PCs now with Windows 11?"}, nil)
	// Nothing left out: no "not sent" list.
	text, blocks = confirmBlocks(bxBatch(approvals.StateConfirming, 3))
	txCheck(t, "confirmation, all sent", text+bxAll(t, blocks), []string{"Reprovision 3 Cloud PCs now?"}, []string{"Not sent", "will not be sent"})
	// Confirmed: the DM says so.
	if got := doneText(actionConfirm, bxBatch(approvals.StateConfirming, 3)); got != "Confirmed: reprovisioning 3 Cloud PCs ("+txRef+")… The prompt shows the counts, its thread each Cloud PC's result." {
		t.Errorf("done: %q", got)
	}
}

// One line per Cloud PC's new result under the prompt, and the batch's
// own words for accepted and ended.
func TestBatchProgress(t *testing.T) {
	t.Parallel()
	r := bxRunning()
	line := func(edit func(m *approvals.Member)) string {
		m := bxMember(1, approvals.MemberSent)
		edit(&m)
		return progressText(r, approvals.Progress{Kind: approvals.ProgressMember, Member: &m})
	}
	const name = "`CPC-USER-01` (user01@contoso.com)"
	for _, tc := range []struct {
		name string
		got  string
		want string
	}{
		{"sent", line(func(m *approvals.Member) { m.GraphRequestID = "req-1" }), txRef + ": ✓ " + name + " sent (request-id `req-1`)."},
		{"failed", line(func(m *approvals.Member) {
			m.Result, m.GraphCode, m.GraphStatus, m.GraphRequestID, m.Detail = approvals.MemberFailed, "Conflict", 409, "req-2", "Cloud PC is busy"
		}), txRef + ": ✗ " + name + " failed: `Conflict` (request-id `req-2`) “Cloud PC is busy”."},
		{"failed without a code", line(func(m *approvals.Member) { m.Result, m.GraphStatus = approvals.MemberFailed, 500 }),
			txRef + ": ✗ " + name + " failed: HTTP 500."},
		{"status check failed", line(func(m *approvals.Member) {
			m.Result, m.Detail = approvals.MemberFailed, "the status check before its call failed"
		}), txRef + ": ✗ " + name + " failed “the status check before its call failed”."},
		{"outcome unknown", line(func(m *approvals.Member) {
			m.Result, m.Detail = approvals.MemberUnknown, "the bot stopped during its call"
		}), txRef + ": ? " + name + " outcome unknown — check it in Intune (the bot stopped during its call)."},
		{"skipped", line(func(m *approvals.Member) { m.Result, m.Detail = approvals.MemberSkipped, "inGracePeriod" }),
			txRef + ": – " + name + " skipped: status inGracePeriod."},
		{"not sent", line(func(m *approvals.Member) { m.Result = approvals.MemberNotSent }), txRef + ": – " + name + " not sent."},
		{"not sent, gone", line(func(m *approvals.Member) {
			m.Result, m.Detail = approvals.MemberNotSent, "the Cloud PC no longer exists"
		}),
			txRef + ": – " + name + " not sent: the Cloud PC no longer exists."},
		{"provisioned again", line(func(m *approvals.Member) { m.Result, m.Tracked = approvals.MemberSucceeded, approvals.TrackProvisioned }),
			txRef + ": ✓ " + name + " provisioned again."},
		{"reprovision failed", line(func(m *approvals.Member) {
			m.Result, m.Tracked, m.Device.Status, m.Device.StatusDetails = approvals.MemberFailed, approvals.TrackFailed, "failed", "Image missing"
		}), txRef + ": ✗ " + name + " reprovision failed: its status is failed (Image missing)."},
		{"no longer followed", line(func(m *approvals.Member) { m.Tracked, m.Device.Status = approvals.TrackTimedOut, "provisioning" }),
			txRef + ": ? " + name + " no longer followed at the deadline (last status provisioning) — check it in Intune."},
	} {
		if tc.got != tc.want {
			t.Errorf("%s:\n  got  %q\n  want %q", tc.name, tc.got, tc.want)
		}
	}

	tracked := bxResults(bxBatch(approvals.StateSucceeded, 3), approvals.MemberSucceeded, approvals.MemberSent, approvals.MemberSkipped)
	txCheck(t, "accepted", progressText(tracked, approvals.Progress{Kind: approvals.ProgressAccepted, Every: 5 * time.Minute}),
		[]string{txRef + ": Microsoft Graph accepted 2 of 3 reprovisions. I'll look at them in 5m0s and post each one's end here."}, nil)
	txCheck(t, "ended", progressText(tracked, approvals.Progress{Kind: approvals.ProgressEnded}),
		[]string{txRef + ": following them ended: 1 of 2 provisioned again."}, nil)
	txCheck(t, "paused", progressText(tracked, approvals.Progress{Kind: approvals.ProgressPaused}),
		[]string{"tracking paused", "*Resume tracking*"}, nil)

	// Names and Graph's words come from outside: escaped.
	hostile := bxMember(1, approvals.MemberFailed)
	hostile.Device.ManagedDeviceName, hostile.Device.UserPrincipalName, hostile.Detail, hostile.GraphCode = txHostile, txHostile, txHostile, "<@U0BOSS>"
	txCheck(t, "escaped", progressText(r, approvals.Progress{Kind: approvals.ProgressMember, Member: &hostile}),
		[]string{"`" + txHostileEscaped + "` (" + txHostileEscaped + ")", "“" + txHostileEscaped + "”", "failed: `U0BOSS`"}, txRaw)
}

// A halted batch asks the approver who confirmed it to Resume or Stop.
func TestBatchHaltedNotice(t *testing.T) {
	t.Parallel()
	r := bxRunning()
	r.Batch.Halted = true
	r.Batch.Members[20].Result = approvals.MemberUnknown
	declined := &approvals.Outcome{Kind: approvals.OutcomeSignInDeclined}
	graph := &approvals.Outcome{Kind: approvals.OutcomeGraph, Graph: &approvals.GraphError{Kind: approvals.GraphSignInAgain, Cause: approvals.CauseClaimsChallenge, Method: "POST", Status: 401}}
	for _, tc := range []struct {
		name string
		why  *approvals.Outcome
		want []string
		bad  []string
	}{
		{"restart", nil, []string{":warning: The bot restarted while batch " + txRef + " was running: 13 Cloud PCs not sent yet, 1 outcome unknown (check them in Intune). *Resume* (you sign in again) or *Stop*."}, nil},
		{"restart, said so", &approvals.Outcome{Kind: approvals.OutcomeInFlightAtRestart}, []string{"The bot restarted while batch " + txRef + " was running"}, nil},
		{"fresh sign-in", graph, []string{"Batch " + txRef + " stopped sending: Microsoft Graph asks for a fresh sign-in", "13 Cloud PCs not sent yet", "*Resume* (you sign in again) or *Stop*."}, []string{"restarted"}},
		{"sign-in to resume failed", declined, []string{"Your sign-in to resume batch " + txRef + " did not complete: Sign-in was declined. Still 13 Cloud PCs not sent yet", "*Resume* to try again, or *Stop*."}, []string{"restarted"}},
	} {
		n := approvals.Notice{Kind: approvals.NoticeBatchHalted, Request: r, Why: tc.why}
		txCheck(t, tc.name, noticeText("UA1", n), tc.want, tc.bad)
		if got := strings.Join(buttons(t, batchHaltedBlocks(n)), " "); got != "resume_batch="+txRef+" stop_batch="+txRef {
			t.Errorf("%s: buttons %q", tc.name, got)
		}
	}
	r.Batch.Members[20].Result = approvals.MemberWaiting
	txCheck(t, "nothing unknown", noticeText("UA1", approvals.Notice{Kind: approvals.NoticeBatchHalted, Request: r}),
		[]string{"14 Cloud PCs not sent yet. *Resume*"}, []string{"outcome unknown"})

	// Tell sends it with its buttons, as Block Kit Slack accepts.
	b, fs := newNoticesBot(t)
	n := approvals.Notice{Kind: approvals.NoticeBatchHalted, Request: r}
	if err := b.Tell(context.Background(), "UA1", n); err != nil {
		t.Fatal(err)
	}
	msgs := fs.Messages(fakes.DMChannel("UA1"))
	if len(msgs) != 1 || msgs[0].Text != noticeText("UA1", n) || !strings.Contains(strings.Join(buttonsIn(t, msgs[0].Blocks), " "), "resume_batch="+txRef) {
		t.Errorf("halted notice sent as %+v", msgs)
	}
	// The sign-in DM says what for.
	if got := signInPurposeText(approvals.SignInToResumeBatch, r); got != "resume batch "+txRef {
		t.Errorf("sign-in purpose: %q", got)
	}
}

// A batch's summary to the requester and the approvers: the state, the
// counts, who stopped it, and how many are provisioned again.
func TestBatchStatusNotices(t *testing.T) {
	t.Parallel()
	r := bxResults(bxBatch(approvals.StateSucceeded, 4), approvals.MemberSucceeded, approvals.MemberSucceeded, approvals.MemberNotSent, approvals.MemberNotSent)
	r.Batch.Stopped, r.Batch.StoppedBy = true, "UA2"
	r.Tracking = approvals.Tracking{Since: time.Now(), Until: time.Now().Add(time.Hour), Result: approvals.TrackProvisioned}
	n := approvals.Notice{Kind: approvals.NoticeStatus, Request: r}
	txCheck(t, "to the requester", noticeText("UREQ", n), []string{
		"Your request " + txRef + " to reprovision 4 Cloud PCs (reason: disk full): :white_check_mark: Approved by <@UA1>. Finished sending: 2 of 4 sent · 2 not sent. Stopped by <@UA2>. :tada: Done: 2 of 2 provisioned again.",
	}, []string{"CPC-USER"})
	txCheck(t, "to the approver who stopped it", noticeText("UA2", n), []string{
		"Request " + txRef + " to reprovision 4 Cloud PCs from <@UREQ> (reason: disk full): ", "Stopped by <@UA2>.", "2 of 2 provisioned again",
	}, []string{"Your request"})

	// Before an approver acted, the requester reads what they asked for.
	policy := bxBatch(approvals.StateDenied, 0)
	policy.SignedInAs = ""
	policy.Batch = &approvals.Batch{Policy: "sales", PolicyName: "Sales EMEA (found)", Members: []approvals.Member{bxMember(1, approvals.MemberWaiting)}}
	txCheck(t, "denied, by policy, to the requester", noticeText("UREQ", approvals.Notice{Kind: approvals.NoticeStatus, Request: policy}),
		[]string{"Your request " + txRef + " to reprovision every Cloud PC of provisioning policy `sales` (reason: disk full): :no_entry_sign: Denied by <@UA1>."},
		[]string{"found", "1 Cloud PC"})

	// The receipt names the targets asked for, a few of them.
	receipt := txConfirmationText(bxBatch(approvals.StatePending, 12))
	txCheck(t, "receipt", receipt, []string{"approve reprovisioning 12 Cloud PCs (`CPC-USER-01`, `CPC-USER-02`,", "`CPC-USER-10` and 2 more)"}, []string{"CPC-USER-11"})
	// Expired: Request again asks for the same batch (approvals.RequestAgain).
	text, blocks := expiredNotice(bxBatch(approvals.StatePending, 3))
	txCheck(t, "expired", text, []string{"Your request " + txRef + " to reprovision 3 Cloud PCs EXPIRED"}, nil)
	if got := buttons(t, blocks); !slices.Equal(got, []string{"request_again=" + txRef}) {
		t.Errorf("expired batch offers %q, want Request again", got)
	}
}

// Each Cloud PC's user hears about their own Cloud PC, in the words of one
// Cloud PC.
func TestBatchMemberNotices(t *testing.T) {
	t.Parallel()
	r := bxRunning()
	m := r.Batch.Members[15]
	m.HeadsUp = approvals.HeadsUp{UserID: "UANNA", Result: approvals.HeadsUpSent}
	const device = "*CPC-USER-16* (`4e1f0b9a-2c3d-4e5f-8a9b-000000000016`)"
	notice := func(kind approvals.NoticeKind, r *approvals.Request, m approvals.Member) approvals.Notice {
		return approvals.Notice{Kind: kind, Request: r, Member: &m}
	}
	sent, unknown, failed, ready, failedLater := m, m, m, m, m
	sent.Result = approvals.MemberSent
	unknown.Result = approvals.MemberUnknown
	failed.Result, failed.GraphCode = approvals.MemberFailed, "Conflict"
	ready.Result, ready.Tracked = approvals.MemberSucceeded, approvals.TrackProvisioned
	failedLater.Result, failedLater.Tracked = approvals.MemberFailed, approvals.TrackFailed
	noAccount := m
	noAccount.HeadsUp = approvals.HeadsUp{Result: approvals.HeadsUpNoAccount}
	for _, tc := range []struct {
		name string
		user string
		n    approvals.Notice
		want []string
	}{
		{"heads-up", "UANNA", notice(approvals.NoticeHeadsUp, r, m),
			[]string{":warning: *Heads-up: your Cloud PC " + device + " will be reprovisioned now* (request " + txRef + "). <@UREQ> asked for it and <@UA1> approved it. Reason: disk full."}},
		{"outcome unknown", "UANNA", notice(approvals.NoticeUserUpdate, r, unknown), []string{"your Cloud PC " + device, "may have started", "IT is checking"}},
		{"failed", "UANNA", notice(approvals.NoticeUserUpdate, r, failed), []string{"your Cloud PC " + device + " (request " + txRef + ") will not happen now", "nothing was changed"}},
		{"ready", "UANNA", notice(approvals.NoticeUserReady, r, ready), []string{":tada: Your Cloud PC " + device + " is ready"}},
		{"reprovision failed", "UANNA", notice(approvals.NoticeUserReady, r, failedLater), []string{":x: The reprovision of your Cloud PC " + device + " failed"}},
		{"not notified", "UA1", notice(approvals.NoticeUserNotNotified, r, noAccount),
			[]string{"user16@contoso.com could not be told that " + device + " will be reprovisioned (request " + txRef + "): no Slack account has that email address"}},
	} {
		txCheck(t, tc.name, noticeText(tc.user, tc.n), tc.want, []string{"Cloud PCs", "CPC-USER-01"})
	}
	// A heads-up never offers more time in a batch (there is no wait).
	if got := buttons(t, headsUpBlocks("UANNA", memberNotice(notice(approvals.NoticeHeadsUp, r, m)).Request)); len(got) != 0 {
		t.Errorf("heads-up buttons %q", got)
	}
	// Names from Graph are escaped.
	hostile := m
	hostile.Device.ManagedDeviceName, hostile.Device.UserPrincipalName = txHostile, txHostile
	txCheck(t, "escaped heads-up", noticeText("UANNA", notice(approvals.NoticeHeadsUp, r, hostile)), []string{txHostileEscaped}, txRaw)
}

// The Home tab lists batches by what they ask for and their counts.
func TestBatchOnTheHomeTab(t *testing.T) {
	t.Parallel()
	pending := bxBatch(approvals.StatePending, 7)
	txCheck(t, "awaiting", bxAll(t, awaitingBlocks([]*approvals.Request{pending})),
		[]string{"*" + txRef + "* 7 Cloud PCs from <@UREQ>", "every one of these Cloud PCs", "approve:" + txRef + "=" + txRef}, []string{"`CPC-USER"})
	txCheck(t, "yours", bxAll(t, yourRequestsBlocks([]*approvals.Request{bxRunning()})),
		[]string{"*" + txRef + "* 30 Cloud PCs, ", "Reprovisioning: 12 of 30 sent · 1 in flight · 1 failed · 2 skipped."}, nil)
	raw, _ := json.Marshal(awaitingBlocks([]*approvals.Request{pending}))
	if !strings.Contains(string(raw), "Reprovision these Cloud PCs?") {
		t.Error("the Home tab's Approve does not ask about the batch")
	}
	// The deny form names the batch, not its list.
	raw, _ = json.Marshal(denyModal(bxBatch(approvals.StatePending, 50)).Blocks)
	if !strings.Contains(string(raw), "to reprovision 50 Cloud PCs?") || strings.Contains(string(raw), "CPC-USER-02") {
		t.Errorf("deny form: %s", raw)
	}
}

// Stop and Resume, done and refused, in the one mapping.
func TestBatchClickTexts(t *testing.T) {
	t.Parallel()
	running := bxRunning()
	halted := bxRunning()
	halted.Batch.Halted = true
	for _, tc := range []struct{ action, want string }{
		{actionStopBatch, "Stopping " + txRef + ": no more Cloud PCs are sent; the calls in flight finish."},
		{actionResumeBatch, "Resuming " + txRef + ": sign in first (see the sign-in message); then the 14 Cloud PCs not sent yet are sent."},
	} {
		if got := doneText(tc.action, running); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.action, got, tc.want)
		}
	}
	if got := doneText(actionStopBatch, halted); got != "Stopped "+txRef+": the Cloud PCs not sent yet will not be sent." {
		t.Errorf("stop a halted batch: %q", got)
	}
	ended := bxResults(bxBatch(approvals.StateSucceeded, 2), approvals.MemberSent, approvals.MemberSent)
	for _, tc := range []struct {
		name string
		f    approvals.Refusal
		want string
	}{
		{"too large", approvals.Refusal{Kind: approvals.RefusedBatchTooLarge, Action: approvals.ActionRequest, Count: 60, Max: 50},
			"That is 60 Cloud PCs; a batch may have at most 50."},
		{"stop, not an approver", approvals.Refusal{Kind: approvals.RefusedNotAnApprover, Action: approvals.ActionStopBatch, Ref: txRef, Users: []string{"UA1", "UA2"}},
			"Only an approver of " + txRef + " (<@UA1> or <@UA2>) can stop it. Nothing was changed."},
		{"stop, ended", approvals.Refusal{Kind: approvals.RefusedHandled, Action: approvals.ActionStopBatch, Ref: txRef, Request: ended},
			txRef + " is not running, or is being stopped already: :white_check_mark: Approved by <@UA1>. Finished sending: 2 of 2 sent."},
		{"resume, not the confirmer", approvals.Refusal{Kind: approvals.RefusedNotConfirmer, Action: approvals.ActionResumeBatch, Ref: txRef, Users: []string{"UA1"}},
			"Only <@UA1>, who confirmed " + txRef + ", can resume it (signing in again); any of its approvers can stop it. Nothing was changed."},
		{"resume, not halted", approvals.Refusal{Kind: approvals.RefusedHandled, Action: approvals.ActionResumeBatch, Ref: txRef, Request: running},
			txRef + " is not waiting to be resumed: :gear: Approved by <@UA1>. Reprovisioning: 12 of 30 sent"},
		{"resume, busy", approvals.Refusal{Kind: approvals.RefusedBusy, Action: approvals.ActionResumeBatch, Ref: txRef, Request: halted},
			txRef + " is already being resumed."},
		{"stop, no such request", approvals.Refusal{Kind: approvals.RefusedNoSuchRequest, Action: approvals.ActionStopBatch, Ref: txOtherRef},
			"There is no request " + txOtherRef + "."},
	} {
		f := tc.f
		txCheck(t, tc.name, replyText(&f), []string{tc.want}, []string{txFallback})
	}
}

// Everything a batch of the largest size shows fits Slack's limits: at
// most 50 blocks a message, 3000 characters a section text, 2000 a field,
// and Slack (the fake checks Block Kit as Slack does) takes it.
func TestBatchBlocksWithinSlackLimits(t *testing.T) {
	t.Parallel()
	b, fs := newNoticesBot(t)
	long := func(r *approvals.Request) *approvals.Request {
		for i := range r.Batch.Members {
			m := &r.Batch.Members[i]
			m.Device.ManagedDeviceName = fmt.Sprintf("CPC-%s-%03d", strings.Repeat("x", 50), i)
			m.Device.UserPrincipalName = fmt.Sprintf("%s.%03d@%s.contoso.example", strings.Repeat("u", 60), i, strings.Repeat("d", 30))
			if i%3 == 0 {
				m.Result, m.Detail = approvals.MemberExcluded, "open request "+txOtherRef
			}
		}
		for i := range r.Batch.Targets {
			r.Batch.Targets[i] = strings.Repeat("t", 50) + fmt.Sprintf("%03d@contoso.example", i)
		}
		return r
	}
	sent := 0
	for _, n := range []int{50, approvals.MaxBatchTargets} {
		halted := long(bxBatch(approvals.StateExecuting, n))
		halted.Batch.Halted = true
		messages := map[string][]slack.Block{
			"pending prompt":   promptBlocks(long(bxBatch(approvals.StatePending, n))),
			"running prompt":   promptBlocks(long(bxBatch(approvals.StateExecuting, n))),
			"halted prompt":    promptBlocks(halted),
			"succeeded prompt": promptBlocks(long(bxBatch(approvals.StateSucceeded, n))),
			"halted notice":    batchHaltedBlocks(approvals.Notice{Kind: approvals.NoticeBatchHalted, Request: halted}),
		}
		_, messages["confirmation"] = confirmBlocks(long(bxBatch(approvals.StateConfirming, n)))
		_, messages["receipt"] = requesterConfirmation(long(bxBatch(approvals.StatePending, n)))
		for name, blocks := range messages {
			name = fmt.Sprintf("%s of %d", name, n)
			if len(blocks) > 50 {
				t.Errorf("%s: %d blocks", name, len(blocks))
			}
			for _, text := range txMrkdwn(t, blocks) {
				if c := utf8.RuneCountInString(text); c > 3000 {
					t.Errorf("%s: a text of %d characters", name, c)
				}
			}
			// One DM each: Slack's pace is per channel.
			sent++
			err := b.dm(context.Background(), fmt.Sprintf("U0LIMIT%02d", sent), msgText(name), msgBlocks(blocks))
			if err != nil {
				t.Errorf("%s: Slack refused it: %v", name, err)
			}
		}
		// Fifty Cloud PCs are all listed; more are counted.
		all := strings.Join(txMrkdwn(t, messages["confirmation"]), "\n")
		if n == 50 && (strings.Count(all, "\n• ") != 50 || strings.Contains(all, "more")) {
			t.Errorf("confirmation of 50 lists %d", strings.Count(all, "\n• "))
		}
		if n > 50 && !strings.Contains(all, "…and ") {
			t.Errorf("confirmation of %d does not say how many more", n)
		}
	}
	for i := 1; i <= sent; i++ {
		if got := len(fs.Messages(fakes.DMChannel(fmt.Sprintf("U0LIMIT%02d", i)))); got != 1 {
			t.Errorf("message %d: %d taken, want 1", i, got)
		}
	}
	if sent != 14 {
		t.Errorf("%d messages sent, want 14", sent)
	}
}

// Outside text in a batch's prompt and confirmation is escaped: the typed
// targets and policy, and Graph's names.
func TestBatchEscapesOutsideText(t *testing.T) {
	t.Parallel()
	r := bxBatch(approvals.StatePending, 2)
	r.Batch.Targets[0] = txHostile
	txCheck(t, "targets", bxAll(t, promptBlocks(r)), []string{"`" + txHostileEscaped + "`"}, txRaw)
	r.Batch = &approvals.Batch{Policy: txHostile + "`x"}
	txCheck(t, "policy", bxAll(t, promptBlocks(r))+promptText(r), []string{"`" + txHostileEscaped + "｀x`"}, append([]string{"`x`"}, txRaw...))
	c := bxBatch(approvals.StateConfirming, 2)
	c.Batch.Members[0].Device.ManagedDeviceName, c.Batch.Members[0].Device.UserPrincipalName, c.Batch.Members[0].Device.Status = txHostile, txHostile, txHostile
	c.Batch.Members[1].Result, c.Batch.Members[1].Detail = approvals.MemberExcluded, txHostile
	text, blocks := confirmBlocks(c)
	txCheck(t, "confirmation", text+bxAll(t, blocks), []string{"`" + txHostileEscaped + "` (" + txHostileEscaped + ") · " + txHostileEscaped, "left out: " + txHostileEscaped}, txRaw)
}

// A member whose user could not be told: said on its line and in the counts.
func TestBatchMemberUserNotTold(t *testing.T) {
	t.Parallel()
	r := bxBatch(approvals.StateExecuting, 3)
	r.Batch.Members[0].Result = approvals.MemberSent
	r.Batch.Members[0].HeadsUp = approvals.HeadsUp{Result: approvals.HeadsUpNoAccount}
	r.Batch.Members[1].Result = approvals.MemberSent
	r.Batch.Members[1].HeadsUp = approvals.HeadsUp{Result: approvals.HeadsUpSent, UserID: "U0USER"}
	if line := memberProgressText(r, r.Batch.Members[0]); !strings.Contains(line, "its user could not be told in Slack") {
		t.Errorf("line %q", line)
	}
	if line := memberProgressText(r, r.Batch.Members[1]); strings.Contains(line, "could not be told") {
		t.Errorf("told user's line %q", line)
	}
	if counts := batchCountsText(r.Batch); !strings.Contains(counts, "1 user not told in Slack") {
		t.Errorf("counts %q", counts)
	}
}
