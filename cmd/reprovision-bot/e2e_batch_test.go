package main

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/pgtest"
	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// Batches end to end (the proof): one request for many Cloud PCs,
// one prompt, two approvals above REPROVISION_BATCH_TWO_PERSON, one
// confirmation, then one reprovision POST per Cloud PC, paced by
// REPROVISION_GRAPH_RPS, with a thread line per Cloud PC, counts on the
// prompt, Stop, and a summary for the requester. Every helper here starts
// with "batch" (other files of the package are being written alongside).

// batchWait bounds a whole batch's run: 30 Cloud PCs are some 90 Graph
// requests (look-up GET, re-check GET, POST each), about 18 s at 5 a second
// (the tests run 12 at that rate, 30 at 20 a second), more on a loaded CI
// box under -race.
const batchWait = 90 * time.Second

// batchPC is the i-th Cloud PC of a test batch: a GUID, a device name and
// a user of its own.
func batchPC(i int) fakes.CloudPC {
	return fakes.CloudPC{
		ID:                fmt.Sprintf("b47c0000-2c3d-4e5f-8a9b-%012d", i),
		DisplayName:       fmt.Sprintf("Batch Cloud PC %02d", i),
		UserPrincipalName: fmt.Sprintf("user%02d@contoso.example", i),
		ManagedDeviceName: fmt.Sprintf("CPC-B%02d", i),
		ServicePlanName:   "Cloud PC Enterprise 2vCPU/8GB/128GB", ProvisioningPolicyName: "Standard", Status: "provisioned",
	}
}

// batchAddPCs adds n Cloud PCs (batchPC(0…n-1)) under policy ("" keeps
// "Standard") and returns them.
func batchAddPCs(h *harness, n int, policy string) []fakes.CloudPC {
	pcs := make([]fakes.CloudPC, n)
	for i := range pcs {
		pcs[i] = batchPC(i)
		if policy != "" {
			pcs[i].ProvisioningPolicyName = policy
		}
		h.graph.AddCloudPC(pcs[i])
	}
	return pcs
}

// batchIDs is the command's comma-separated list of the Cloud PCs' ids.
func batchIDs(pcs []fakes.CloudPC) string {
	ids := make([]string, len(pcs))
	for i, pc := range pcs {
		ids[i] = pc.ID
	}
	return strings.Join(ids, ",")
}

// batchHarness is a harness with two approvers (U0APPROVER, U0SECOND),
// REPROVISION_GRAPH_RPS rps (0: the default, 5), following switched off
// (nothing but the batch's own calls reach Graph) and no heads-up to the
// Cloud PCs' users (their users.lookupByEmail, paced by Slack's tier,
// would make a 30-Cloud-PC batch take half a minute more; the heads-up
// has tests of its own). The bot paces its Slack calls 10 times faster
// than Slack's limits: at Slack's one message a second, a batch's 30
// thread lines took 30 s, the longest wait of the package; what is tested
// here is Graph's pace, and the bot's package tests Slack's.
func batchHarness(t *testing.T, h *harness, rps int) *harness {
	twoApprovers(h)
	h.slackPace = 10
	if rps > 0 {
		h.env["REPROVISION_GRAPH_RPS"] = strconv.Itoa(rps)
	}
	h.env["REPROVISION_TRACK_FOR"] = "0"
	h.env["REPROVISION_NOTIFY_USER"] = "false"
	return h
}

// batchApproveTwice gives r its two approvals: U0APPROVER approves and
// signs in (the prompts then read 1 of 2), U0SECOND approves, signs in and
// gets the confirmation, which is returned unclicked.
func (h *harness) batchApproveTwice(r string) fakes.Message {
	h.t.Helper()
	h.click(approverID, "approve", h.promptOf(approverID, r))
	h.signInAs(approverID, approverUPN)
	h.waitMessage(h.promptOf(secondApproverID, r), "1 of 2 approvals (<@"+approverID+">)")
	if n := len(h.graph.Requests()); n != 0 {
		h.t.Fatalf("Graph saw %d requests after the first of two approvals, want none", n)
	}
	h.click(secondApproverID, "approve", h.promptOf(secondApproverID, r))
	h.signInAs(secondApproverID, secondApproverUPN)
	return h.waitDMMessage(secondApproverID, `"block_id":"confirm:`+r+`"`)
}

// batchClick clicks action with block_id block+":"+r on message m as user.
func (h *harness) batchClick(user, action, block, r string, m fakes.Message) {
	h.t.Helper()
	env := h.slack.SendBlockAction(h.t, fakes.BlockAction{
		UserID: user, ActionID: action, BlockID: block + ":" + r, Value: r, ChannelID: m.Channel, MessageTS: m.TS,
	})
	h.slack.WaitAck(h.t, env, wait)
}

// batchWaitMessage is waitMessage with batchWait.
func (h *harness) batchWaitMessage(m fakes.Message, want string) fakes.Message {
	h.t.Helper()
	h.slack.WaitFor(h.t, batchWait, fmt.Sprintf("message %s shows %q", m.TS, want), func() bool {
		cur, ok := h.slack.Message(m.Channel, m.TS)
		return ok && strings.Contains(cur.Text+" "+blocks(cur), want)
	})
	return h.messageNow(m)
}

// batchWaitDM waits (batchWait) for a DM to user containing want.
func (h *harness) batchWaitDM(user, want string) string {
	h.t.Helper()
	var found string
	h.slack.WaitFor(h.t, batchWait, fmt.Sprintf("a DM to %s containing %q", user, want), func() bool {
		for _, m := range h.dmsTo(user) {
			if strings.Contains(m, want) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// batchThread are the replies under prompt (in its DM).
func (h *harness) batchThread(prompt fakes.Message) []string {
	var out []string
	for _, m := range h.slack.Messages(prompt.Channel) {
		if m.ThreadTS == prompt.TS && m.TS != prompt.TS {
			out = append(out, m.Text)
		}
	}
	return out
}

// batchThreadLine is the one thread reply under prompt naming the device
// (want: exactly one).
func (h *harness) batchThreadLine(prompt fakes.Message, device string) string {
	h.t.Helper()
	var lines []string
	for _, l := range h.batchThread(prompt) {
		if strings.Contains(l, "`"+device+"`") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		h.t.Errorf("%d thread lines name %s, want 1: %q", len(lines), device, lines)
		return ""
	}
	return lines[0]
}

// batchAcceptedPOST is the accepted reprovision POST of a Cloud PC.
func (h *harness) batchAcceptedPOST(id string) fakes.GraphRequest {
	for _, p := range h.reprovisionPOSTs() {
		if strings.Contains(p.Path, "/cloudPCs/"+id+"/") && p.Status == http.StatusNoContent {
			return p
		}
	}
	return fakes.GraphRequest{}
}

// batchCheckEachSentOnce checks that every Cloud PC of pcs got exactly one
// POST, accepted, and that its thread line under prompt says so with that
// POST's request-id.
func (h *harness) batchCheckEachSentOnce(prompt fakes.Message, pcs []fakes.CloudPC) {
	h.t.Helper()
	posts := h.graph.ReprovisionPosts()
	if len(posts) != len(pcs) {
		h.t.Errorf("reprovision POSTs for %d Cloud PCs, want %d: %v", len(posts), len(pcs), posts)
	}
	throttled := h.batchThrottledPOSTs()
	for _, pc := range pcs {
		if c, want := posts[pc.ID], 1+throttled[pc.ID]; c.Posts != want || c.Accepted != 1 {
			h.t.Errorf("%s: %d POSTs, %d accepted; want %d (%d answered 429), one accepted", pc.ManagedDeviceName, c.Posts, c.Accepted, want, throttled[pc.ID])
		}
		line := h.batchThreadLine(prompt, pc.ManagedDeviceName)
		want := "✓ `" + pc.ManagedDeviceName + "` (" + pc.UserPrincipalName + ") sent (request-id `" + h.batchAcceptedPOST(pc.ID).RequestID + "`)"
		if line != "" && !strings.Contains(line, want) {
			h.t.Errorf("thread line %q lacks %q", line, want)
		}
	}
}

// batchThrottledPOSTs counts the reprovision POSTs Graph answered 429, by
// Cloud PC id.
func (h *harness) batchThrottledPOSTs() map[string]int {
	out := map[string]int{}
	for _, p := range h.reprovisionPOSTs() {
		if p.Status == http.StatusTooManyRequests {
			out[batchPathID(p.Path)]++
		}
	}
	return out
}

// batchPathID is the Cloud PC id in a reprovision path.
func batchPathID(path string) string {
	segs := strings.Split(strings.TrimSuffix(path, "/reprovision"), "/")
	return segs[len(segs)-1]
}

// batchCheckPace checks that Graph never saw more than rps requests in any
// one-second window (arrivals at the fake, as Graph would count them), and
// that the requests kept to that rate overall: n requests need at least
// (n-rps)/rps seconds from first to last. It logs the closest that request k
// came to request k-rps: how much of the limiter's WindowMargin was used.
func (h *harness) batchCheckPace(rps int) {
	h.t.Helper()
	if most := h.graph.MaxRequestsPerSecond(); most > rps {
		h.t.Errorf("Graph saw %d requests within one second, want at most REPROVISION_GRAPH_RPS=%d\n%s", most, rps, h.graph.Dump())
	}
	reqs := h.graph.Requests()
	closest := time.Duration(-1)
	for k := rps; k < len(reqs); k++ {
		if gap := reqs[k].At.Sub(reqs[k-rps].At); closest < 0 || gap < closest {
			closest = gap
		}
	}
	if n := len(reqs); n > rps {
		span := reqs[n-1].At.Sub(reqs[0].At)
		if least := time.Duration(float64(n-rps) / float64(rps) * float64(time.Second)); span < least {
			h.t.Errorf("%d Graph requests in %v, want at least %v at %d a second", n, span, least, rps)
		}
	}
	h.t.Logf("%d Graph requests; most arriving in any 1 s: %d; request k at least %v after request k-%d",
		len(reqs), h.graph.MaxRequestsPerSecond(), closest, rps)
}

// batchRun runs a batch of n Cloud PCs (30 is the proof; more
// than REPROVISION_BATCH_TWO_PERSON, 10), by list (policy "") or by
// provisioning policy: two approvals, one confirmation listing them all,
// one accepted POST each, counts on the prompt, a thread line each, the
// requester's summary, and Graph within the REPROVISION_GRAPH_RPS the bot
// was started with.
func batchRun(t *testing.T, h *harness, n int, policy string) string {
	cfg, err := loadConfig(func(k string) string { return h.env[k] })
	if err != nil {
		t.Fatalf("the harness's environment: %v", err)
	}
	pcs := batchAddPCs(h, n, policy)
	h.start()
	text := batchIDs(pcs) + " " + reason
	headline := fmt.Sprintf("Reprovision %d Cloud PCs", n)
	if policy != "" {
		text = `--policy "` + policy + `" ` + reason
		headline = "Reprovision every Cloud PC of provisioning policy `" + policy + "`"
	}
	ack := ackText(t, h.request(requesterID, text))
	r := refIn(t, ack)
	prompt := h.promptOf(approverID, r)
	if pb := blocks(prompt); !strings.Contains(pb, headline) || !strings.Contains(pb, "0 of 2 approvals") {
		t.Errorf("the prompt lacks %q or does not ask for two approvals: %s", headline, pb)
	}
	if got := len(h.slack.Messages(h.slack.DMChannel(approverID))); got != 1 {
		t.Errorf("the approver got %d messages for one batch, want one prompt", got)
	}

	confirmation := h.batchApproveTwice(r)
	cb := confirmation.Text + " " + blocks(confirmation)
	for _, want := range []string{fmt.Sprintf("eprovision %d Cloud PCs now?", n), fmt.Sprintf(`"text":"Reprovision %d Cloud PCs"`, n), fmt.Sprintf("*To reprovision (%d)*", n)} {
		if !strings.Contains(cb, want) {
			t.Errorf("the confirmation lacks %q: %s", want, cb)
		}
	}
	for _, pc := range pcs {
		if !strings.Contains(cb, "`"+pc.ManagedDeviceName+"` ("+pc.UserPrincipalName+") · provisioned") {
			t.Errorf("the confirmation does not list %s with its user and status", pc.ManagedDeviceName)
		}
	}
	if posts := h.reprovisionPOSTs(); len(posts) != 0 {
		t.Fatalf("%d reprovision POSTs before the confirmation", len(posts))
	}
	h.confirmAs(secondApproverID, r, "confirm")

	decided := h.promptOf(secondApproverID, r)
	finished := fmt.Sprintf("Finished sending: %d of %d sent.", n, n)
	final := h.batchWaitMessage(decided, finished)
	if pb := blocks(final); strings.Contains(pb, `"action_id":"stop_batch"`) {
		t.Errorf("the finished prompt still offers Stop: %s", pb)
	}
	h.batchWaitMessage(h.promptOf(approverID, r), finished)
	summary := h.batchWaitDM(requesterID, "Your request "+r+" to reprovision ")
	if !strings.Contains(summary, finished) {
		t.Errorf("the requester's summary lacks the counts: %s", summary)
	}
	// The thread lines trail the calls: chat.postMessage is paced at one a
	// second per channel (bot.PaceLimits; 10 a second here), and Slack's
	// own pace would take about 25 s after the first five.
	h.slack.WaitFor(t, wait+time.Duration(n)*time.Second, "a thread line per Cloud PC", func() bool { return len(h.batchThread(decided)) >= n })
	h.batchCheckEachSentOnce(decided, pcs)
	for _, p := range h.reprovisionPOSTs() {
		if user, ok := h.entra.TokenUser(strings.TrimPrefix(p.Authorization, "Bearer ")); ok && user != secondApproverUPN {
			t.Errorf("a POST went with %s's token, want the last approver's (%s)", user, secondApproverUPN)
		}
	}
	h.batchCheckPace(cfg.GraphRPS)
	h.waitAudit(r, "succeeded", func(a auditLine) bool { return a.Details["sent"] == strconv.Itoa(n) })
	return r
}

// 1. Thirty Cloud PCs by list on each store, at 20 Graph requests a second
// (the store is what differs). Two top-level tests rather than
// onBothStores' subtests: subtests queue for a parallel slot behind every
// other test of the package.
func TestBatchThirtyByListTwoApprovalsOnePOSTEachWithinRPSOnSQLite(t *testing.T) {
	t.Parallel()
	batchRun(t, batchHarness(t, newHarness(t), 20), 30, "")
}

func TestBatchThirtyByListTwoApprovalsOnePOSTEachWithinRPSOnPostgreSQL(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.env["REPROVISION_DB"] = pgtest.URL(t)
	batchRun(t, batchHarness(t, h, 20), 30, "")
}

// 1b. At the default REPROVISION_GRAPH_RPS (unset: 5 a second), twelve
// Cloud PCs: 36 Graph requests, at least 6.2 s of them at 5 a second.
// (Thirty at the default took 22 s, the longest test of the package that
// the README's test command runs last.)
func TestBatchTwelveWithinTheDefaultGraphRPS(t *testing.T) {
	t.Parallel()
	batchRun(t, batchHarness(t, newHarness(t), 0), 12, "")
}

// 2. Thirty Cloud PCs by provisioning policy, the policy's Cloud PCs
// listed by Graph in pages of 7 (five pages), alongside Cloud PCs of
// another policy that must not be touched; 20 requests a second.
func TestBatchThirtyByPolicyPagedTwoApprovalsOnePOSTEachWithinRPS(t *testing.T) {
	t.Parallel()
	h := batchHarness(t, newHarness(t), 20)
	h.graph.AddProvisioningPolicy(fakes.ProvisioningPolicy{DisplayName: "Sales EMEA", Description: "Sales in Europe"})
	h.graph.SetPageSize(7)
	r := batchRun(t, h, 30, "Sales EMEA")
	pages := 0
	for _, r := range h.graph.Requests() {
		if r.Method == "GET" && strings.HasSuffix(r.Path, "/cloudPCs") {
			pages++
		}
	}
	if pages < 5 {
		t.Errorf("the policy's Cloud PCs were listed in %d pages, want at least 5 (30 at 7 a page)", pages)
	}
	if c := h.graph.ReprovisionPosts()[cloudPCID]; c.Posts != 0 {
		t.Errorf("the Cloud PC of another policy got %d POSTs", c.Posts)
	}
	h.waitAudit(r, "batch_looked_up", func(a auditLine) bool {
		return a.Details["policy_id"] == fakes.PolicyID("Sales EMEA") && a.Details["members"] == "30"
	})
}

// 3. Graph throttles one POST midway (429, Retry-After: 2): every Graph
// request of the bot waits out the Retry-After, the throttled call is sent
// again once after it, and nothing else is resent. The cap itself is not
// what is tested: 20 a second keeps it quick.
func TestBatchThirtyPausesOnRetryAfterAndResendsNothing(t *testing.T) {
	t.Parallel()
	const retryAfter = 2 * time.Second
	h := batchHarness(t, newHarness(t), 20)
	h.graph.ThrottleReprovision(15, int(retryAfter/time.Second))
	begin := time.Now()
	r := batchRun(t, h, 30, "")
	took := time.Since(begin)

	reqs := h.graph.Requests()
	at := -1
	for i, q := range reqs {
		if q.Status == http.StatusTooManyRequests {
			if at >= 0 {
				t.Fatalf("more than one 429 answered:\n%s", h.graph.Dump())
			}
			at = i
		}
	}
	if at < 0 {
		t.Fatalf("no request was answered 429:\n%s", h.graph.Dump())
	}
	throttledAt, throttledID := reqs[at].At, batchPathID(reqs[at].Path)
	// Requests the bot had started before the 429 reached it may still
	// arrive just after it (grace); after that nothing may arrive until
	// Retry-After has passed (the pause runs from when the bot read the
	// 429, which is after the fake logged it).
	const grace = 250 * time.Millisecond
	var resent fakes.GraphRequest
	for _, q := range reqs[at+1:] {
		if d := q.At.Sub(throttledAt); d > grace && d < retryAfter {
			t.Errorf("%s %s reached Graph %v after the 429, within its Retry-After of %v\n%s", q.Method, q.Path, d, retryAfter, h.graph.Dump())
		}
		if resent.Path == "" && q.Method == "POST" && q.Path == reqs[at].Path {
			resent = q
		}
	}
	if resent.Path == "" || resent.Status != http.StatusNoContent || resent.At.Sub(throttledAt) < retryAfter {
		t.Errorf("the throttled POST was resent %v after the 429 with %d, want once, accepted, after %v", resent.At.Sub(throttledAt), resent.Status, retryAfter)
	}
	if took < retryAfter {
		t.Errorf("the batch took %v, less than the Retry-After %v", took, retryAfter)
	}
	if c := h.graph.ReprovisionPosts()[throttledID]; c.Posts != 2 || c.Accepted != 1 {
		t.Errorf("the throttled Cloud PC got %d POSTs, %d accepted; want 2 (429, then 204), 1 accepted", c.Posts, c.Accepted)
	}
	// The audit trail has both attempts of that call.
	var attempts []string
	for _, a := range eventsOf(h.auditTrail(), r, "graph_call") {
		if a.Details["method"] == "POST" && strings.Contains(a.Details["path"], throttledID) {
			attempts = append(attempts, a.Details["attempt"]+":"+a.Details["status"])
		}
	}
	if strings.Join(attempts, ",") != "1:429,2:204" {
		t.Errorf("graph_call records of the throttled POST %v, want attempt 1 answered 429, attempt 2 answered 204", attempts)
	}
}

// 4. Cloud PCs whose status does not allow a reprovision are skipped and
// get no POST: two seen at the look-up (shown on the confirmation and the
// prompt), one that changed between the look-up and its call (the re-check
// before each call catches it; its thread line says so).
func TestBatchSkipsCloudPCsWhoseStatusIsNotAllowed(t *testing.T) {
	t.Parallel()
	h := batchHarness(t, newHarness(t), 20)
	pcs := batchAddPCs(h, 5, "")
	for _, i := range []int{1, 2} {
		h.graph.SetCloudPCStatus(pcs[i].ID, "inGracePeriod")
	}
	h.start()
	r := refIn(t, ackText(t, h.request(requesterID, batchIDs(pcs)+" "+reason)))
	prompt := h.promptOf(approverID, r)
	h.click(approverID, "approve", prompt) // 5 Cloud PCs: one approval
	h.signInAs(approverID, approverUPN)
	confirmation := h.waitDMMessage(approverID, `"block_id":"confirm:`+r+`"`)
	cb := blocks(confirmation)
	for _, want := range []string{"Reprovision 3 Cloud PCs now?", "2 of these 5 will not be sent", "*Not sent (2)*",
		"`CPC-B01` (user01@contoso.example) · inGracePeriod — skipped: status inGracePeriod",
		"`CPC-B02` (user02@contoso.example) · inGracePeriod — skipped: status inGracePeriod", `"text":"Reprovision 3 Cloud PCs"`} {
		if !strings.Contains(cb, want) {
			t.Errorf("the confirmation lacks %q: %s", want, cb)
		}
	}
	h.graph.SetCloudPCStatus(pcs[3].ID, "inGracePeriod") // after the look-up, before its call
	h.batchClick(approverID, "confirm", "confirm", r, confirmation)

	final := h.batchWaitMessage(prompt, "Finished sending: 2 of 5 sent · 3 skipped.")
	for _, i := range []int{1, 2, 3} {
		if want := "`" + pcs[i].ManagedDeviceName + "` (" + pcs[i].UserPrincipalName + ") — skipped: status inGracePeriod"; !strings.Contains(blocks(final), want) {
			t.Errorf("the prompt lacks %q: %s", want, blocks(final))
		}
	}
	h.waitThread(prompt, "`CPC-B03` (user03@contoso.example) skipped: status inGracePeriod")
	summary := h.batchWaitDM(requesterID, "Your request "+r+" to reprovision ")
	if !strings.Contains(summary, "2 of 5 sent · 3 skipped") {
		t.Errorf("the requester's summary lacks the counts: %s", summary)
	}
	posts := h.graph.ReprovisionPosts()
	for i, pc := range pcs {
		want := 1
		if i >= 1 && i <= 3 {
			want = 0
		}
		if c := posts[pc.ID]; c.Posts != want || c.Accepted != want {
			t.Errorf("%s (%s): %d POSTs, %d accepted; want %d", pc.ManagedDeviceName, h.batchStatusOf(pc.ID), c.Posts, c.Accepted, want)
		}
	}
	h.waitAudit(r, "status_refused", func(a auditLine) bool {
		return a.Details["cloud_pc_id"] == pcs[3].ID && a.Details["status"] == "inGracePeriod"
	})
}

// batchStatusOf is a Cloud PC's status in the fake.
func (h *harness) batchStatusOf(id string) string {
	pc, _ := h.graph.CloudPC(id)
	return pc.Status
}

// 5. One Cloud PC's call fails, and the rest go on and are sent. Graph's
// 500 to a POST may hide an accepted reprovision: the bot calls that one
// "outcome unknown" (as for a single Cloud PC, and as the README's
// Batches section says), never resends it, and shows Graph's request-id;
// a 409 is a refusal: "failed" with Graph's code and request-id.
func TestBatchOneFailureTheRestAreSent(t *testing.T) {
	t.Parallel()
	h := batchHarness(t, newHarness(t), 20)
	pcs := batchAddPCs(h, 6, "")
	h.graph.FailReprovisions(pcs[2].ID, fakes.GraphError(http.StatusInternalServerError, "InternalServerError", "An internal server error occurred."))
	h.graph.FailReprovisions(pcs[4].ID, fakes.GraphError(http.StatusConflict, "Conflict", "Another action is in progress on this Cloud PC."))
	h.start()
	r := refIn(t, ackText(t, h.request(requesterID, batchIDs(pcs)+" "+reason)))
	prompt := h.promptOf(approverID, r)
	h.approveWithSignIn(prompt)

	h.batchWaitMessage(prompt, "Finished sending: 4 of 6 sent · 1 failed · 1 outcome unknown.")
	summary := h.batchWaitDM(requesterID, "Your request "+r+" to reprovision ")
	if !strings.Contains(summary, "4 of 6 sent · 1 failed · 1 outcome unknown") {
		t.Errorf("the requester's summary lacks the counts: %s", summary)
	}
	h.slack.WaitFor(t, wait, "a thread line per Cloud PC", func() bool { return len(h.batchThread(prompt)) >= len(pcs) })
	posts := h.graph.ReprovisionPosts()
	reqID := map[string]string{}
	for _, p := range h.reprovisionPOSTs() {
		reqID[batchPathID(p.Path)] = p.RequestID
	}
	for i, pc := range pcs {
		c := posts[pc.ID]
		line := h.batchThreadLine(prompt, pc.ManagedDeviceName)
		name := "`" + pc.ManagedDeviceName + "` (" + pc.UserPrincipalName + ")"
		var want string
		switch i {
		case 2:
			want = "? " + name + " outcome unknown — check it in Intune (request-id `" + reqID[pc.ID] + "`)"
			if c.Posts != 1 || c.Accepted != 0 {
				t.Errorf("the Cloud PC answered 500 got %d POSTs, want 1 (never resent)", c.Posts)
			}
		case 4:
			want = "✗ " + name + " failed: `Conflict` (request-id `" + reqID[pc.ID] + "`) “Another action is in progress on this Cloud PC.”"
			if c.Posts != 1 || c.Accepted != 0 {
				t.Errorf("the Cloud PC answered 409 got %d POSTs, want 1", c.Posts)
			}
		default:
			want = "✓ " + name + " sent (request-id `" + reqID[pc.ID] + "`)"
			if c.Posts != 1 || c.Accepted != 1 {
				t.Errorf("%s: %d POSTs, %d accepted; want one, accepted", pc.ManagedDeviceName, c.Posts, c.Accepted)
			}
		}
		if line != "" && !strings.Contains(line, want) {
			t.Errorf("thread line %q lacks %q", line, want)
		}
	}
	// The audit trail keeps Graph's code, status and request-id of both.
	for i, want := range map[int][3]string{2: {"outcome_unknown", "InternalServerError", "500"}, 4: {"failed", "Conflict", "409"}} {
		id := pcs[i].ID
		h.waitAudit(r, "batch_member", func(a auditLine) bool {
			return a.Details["cloud_pc_id"] == id && a.Details["result"] == want[0] && a.Details["graph_code"] == want[1] &&
				a.Details["graph_status"] == want[2] && a.Details["request_id"] == reqID[id]
		})
	}
}

// 6. Stop midway: the calls are slow (3 s each), four in flight; another
// approver (not the one who confirmed) clicks Stop. Nothing reaches Graph
// after the Stop (not even a status re-check), the four in flight finish,
// the other four are not sent, and the prompt says who stopped it.
func TestBatchStopMidwaySendsNothingMore(t *testing.T) {
	t.Parallel()
	h := batchHarness(t, newHarness(t), 20)
	pcs := batchAddPCs(h, 8, "")
	for _, pc := range pcs {
		h.graph.QueueReprovision(pc.ID, fakes.Response{Status: http.StatusNoContent, Delay: 3 * time.Second})
	}
	h.start()
	r := refIn(t, ackText(t, h.request(requesterID, batchIDs(pcs)+" "+reason)))
	prompt := h.promptOf(approverID, r) // 8 Cloud PCs: one approval
	h.approveWithSignIn(prompt)
	h.graph.WaitFor(t, wait, "four POSTs in flight", func() bool { return len(h.reprovisionPOSTs()) == 4 })
	other := h.waitMessage(h.promptOf(secondApproverID, r), `"action_id":"stop_batch"`)
	stopAt := time.Now()
	h.batchClick(secondApproverID, "stop_batch", "batch", r, other)
	h.ephemeralWith(secondApproverID, "Stopping "+r+": no more Cloud PCs are sent")
	h.waitMessage(prompt, "Stopped by <@"+secondApproverID+">: no more Cloud PCs are sent.")
	if n := len(h.reprovisionPOSTs()); n != 4 {
		t.Errorf("%d POSTs when the stop was shown, want the 4 in flight", n)
	}

	final := h.batchWaitMessage(prompt, "Finished sending: 4 of 8 sent · 4 not sent. Stopped by <@"+secondApproverID+">.")
	if strings.Contains(blocks(final), `"action_id":"stop_batch"`) {
		t.Errorf("the ended prompt still offers Stop: %s", blocks(final))
	}
	summary := h.batchWaitDM(requesterID, "Your request "+r+" to reprovision ")
	if !strings.Contains(summary, "4 of 8 sent · 4 not sent. Stopped by <@"+secondApproverID+">.") {
		t.Errorf("the requester's summary lacks the counts or who stopped it: %s", summary)
	}
	for _, q := range h.graph.Requests() {
		if q.At.After(stopAt) {
			t.Errorf("%s %s reached Graph after the Stop", q.Method, q.Path)
		}
	}
	posts := h.graph.ReprovisionPosts()
	sent := 0
	for _, pc := range pcs {
		switch c := posts[pc.ID]; {
		case c.Posts == 1 && c.Accepted == 1:
			sent++
			h.waitThread(prompt, "✓ `"+pc.ManagedDeviceName+"`")
		case c.Posts != 0:
			t.Errorf("%s: %d POSTs, %d accepted", pc.ManagedDeviceName, c.Posts, c.Accepted)
		default:
			if want := "`" + pc.ManagedDeviceName + "` (" + pc.UserPrincipalName + ") — not sent"; !strings.Contains(blocks(final), want) {
				t.Errorf("the prompt lacks %q: %s", want, blocks(final))
			}
		}
	}
	if sent != 4 {
		t.Errorf("%d Cloud PCs sent, want the 4 in flight at the Stop", sent)
	}
	h.waitAudit(r, "batch_stopped", func(a auditLine) bool { return a.Actor == secondApproverID && a.Details["waiting"] == "4" })
	h.waitDM(secondApproverID, "Stopped by <@"+secondApproverID+">")
}

// 7. `audit -ref R-…` lists that batch's records only: its request, the
// look-up, one batch_member record per Cloud PC found and per result, and
// one graph_call per Graph attempt (a throttled POST: two). Another batch
// and a single request, both pending, have records of their own that must
// not show.
func TestBatchAuditByRefListsOnlyThatBatch(t *testing.T) {
	t.Parallel()
	h := batchHarness(t, newHarness(t), 20)
	pcs := batchAddPCs(h, 5, "")
	batch, others := pcs[:3], pcs[3:]
	h.start()
	r := refIn(t, ackText(t, h.request(requesterID, batchIDs(batch)+" "+reason)))
	otherBatch := refIn(t, ackText(t, h.request(requesterID, batchIDs(others)+" "+reason)))
	single := refIn(t, ackText(t, h.request(requesterID, cloudPCID+" "+reason)))
	h.graph.ThrottleReprovision(2, 1)
	h.approveWithSignIn(h.promptOf(approverID, r))
	h.batchWaitMessage(h.promptOf(approverID, r), "Finished sending: 3 of 3 sent.")
	h.waitAudit(r, "succeeded", nil)

	trail := parseJSONL(t, h.exportAudit("-ref", r))
	kinds := map[string]int{}
	for _, a := range trail {
		if a.RequestID != r {
			t.Errorf("audit -ref %s lists a record of %s: %+v", r, a.RequestID, a)
		}
		kinds[a.Kind]++
	}
	for _, k := range []string{"requested", "approved", "signed_in", "batch_looked_up", "succeeded"} {
		if kinds[k] == 0 {
			t.Errorf("audit -ref %s has no %s record; kinds %v", r, k, kinds)
		}
	}
	// One graph_call per attempt Graph received for this batch's Cloud
	// PCs (the others were never looked at: nobody approved them).
	var fromGraph, fromAudit []string
	for _, q := range h.graph.Requests() {
		fromGraph = append(fromGraph, q.Method+" "+q.Path+" "+strconv.Itoa(q.Status)+" "+q.RequestID)
	}
	for _, a := range eventsOf(trail, r, "graph_call") {
		fromAudit = append(fromAudit, a.Details["method"]+" "+a.Details["path"]+" "+a.Details["status"]+" "+a.Details["request_id"])
	}
	sort.Strings(fromGraph)
	sort.Strings(fromAudit)
	if strings.Join(fromGraph, "\n") != strings.Join(fromAudit, "\n") {
		t.Errorf("graph_call records of %s:\n%s\nwant one per request Graph received:\n%s", r, strings.Join(fromAudit, "\n"), strings.Join(fromGraph, "\n"))
	}
	if got := h.graph.ReprovisionPosts(); len(got) != 3 {
		t.Errorf("POSTs for %d Cloud PCs, want the batch's 3: %v", len(got), got)
	}
	// batch_member: each Cloud PC as the look-up found it (waiting), then
	// its result (sent).
	for _, pc := range batch {
		var results []string
		for _, a := range eventsOf(trail, r, "batch_member") {
			if a.Details["cloud_pc_id"] == pc.ID {
				results = append(results, a.Details["result"])
			}
		}
		if strings.Join(results, ",") != "waiting,sent" {
			t.Errorf("batch_member records of %s: %v, want waiting then sent", pc.ManagedDeviceName, results)
		}
	}
	for _, a := range trail {
		for _, pc := range others {
			if strings.Contains(fmt.Sprint(a.Details), pc.ID) {
				t.Errorf("a record of %s names the other batch's %s: %+v", r, pc.ManagedDeviceName, a)
			}
		}
	}
	// The other requests' exports have their own records and none of r's.
	for _, ref := range []string{otherBatch, single} {
		other := parseJSONL(t, h.exportAudit("-ref", ref))
		if len(eventsOf(other, ref, "requested")) != 1 {
			t.Errorf("audit -ref %s has no requested record: %+v", ref, other)
		}
		for _, a := range other {
			if a.RequestID != ref {
				t.Errorf("audit -ref %s lists a record of %s", ref, a.RequestID)
			}
		}
	}
}
