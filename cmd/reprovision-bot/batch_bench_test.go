package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// BenchmarkBatch50 runs the real run() against the fakes with a batch of
// 50 Cloud PCs under one approval (REPROVISION_BATCH_TWO_PERSON=50), Graph
// answering at once, and reports, for REPROVISION_GRAPH_RPS 5 (the
// default) and 50:
//
//   - lookup_s: from the approver's sign-in to the confirmation listing the
//     Cloud PCs (one GET per Cloud PC);
//   - run_s: from the confirm click to the batch stored as succeeded (a
//     status re-check GET and a reprovision POST per Cloud PC), and
//     posts_s to the last POST answered;
//   - run_req: Graph requests the fake received during run_s, run_req/s
//     their average rate, and max_req/1s the most it received in any
//     one-second window over the whole batch (look-ups included).
//
// Heads-ups to the users (REPROVISION_NOTIFY_USER) are off: their Slack
// look-ups are paced to Slack's limits, not Graph's; tracking is off too.
// REPROVISION_BATCH_PARALLEL is the default (4).
//
//	go test -run '^$' -bench Batch50 -benchtime 1x ./cmd/reprovision-bot/
func BenchmarkBatch50(b *testing.B) {
	for _, rps := range []int{5, 50} {
		b.Run(fmt.Sprintf("rps=%d", rps), func(b *testing.B) {
			var lookup, run, posts time.Duration
			var reqs, most int
			for range b.N {
				r := benchBatchRun(b, rps)
				lookup += r.lookup
				run += r.run
				posts += r.posts
				reqs += r.requests
				most = max(most, r.maxPerSecond)
			}
			n := float64(b.N)
			b.ReportMetric(lookup.Seconds()/n, "lookup_s")
			b.ReportMetric(run.Seconds()/n, "run_s")
			b.ReportMetric(posts.Seconds()/n, "posts_s")
			b.ReportMetric(float64(reqs)/n, "run_req")
			b.ReportMetric(float64(reqs)/run.Seconds(), "run_req/s")
			b.ReportMetric(float64(most), "max_req/1s")
			b.ReportMetric(0, "ns/op") // the figures above say it
		})
	}
}

// benchBatchSize is the batch: REPROVISION_BATCH_MAX's default.
const benchBatchSize = 50

type benchBatchResult struct {
	lookup, run, posts     time.Duration
	requests, maxPerSecond int
}

// benchBatchCloudPCID is the i-th Cloud PC of the batch.
func benchBatchCloudPCID(i int) string {
	return fmt.Sprintf("%08x-5a5a-4b4b-8c8c-0d0d0e0e0f0f", 0xba7c0000+i)
}

// benchBatchRun makes one 50-Cloud-PC batch on a fresh bot and fakes and
// measures it (the setup, the request and the approval are not timed).
func benchBatchRun(b *testing.B, rps int) benchBatchResult {
	b.StopTimer()
	defer b.StartTimer()
	const long = 3 * time.Minute
	h := newHarness(b)
	h.env["REPROVISION_BATCH_TWO_PERSON"] = strconv.Itoa(benchBatchSize)
	h.env["REPROVISION_GRAPH_RPS"] = strconv.Itoa(rps)
	h.env["REPROVISION_NOTIFY_USER"] = "false"
	h.env["REPROVISION_TRACK_FOR"] = "0"
	ids := make([]string, benchBatchSize)
	for i := range ids {
		ids[i] = benchBatchCloudPCID(i)
		h.graph.AddCloudPC(fakes.CloudPC{ID: ids[i], DisplayName: fmt.Sprintf("Cloud PC %d", i+1),
			UserPrincipalName: fmt.Sprintf("user%d@contoso.example", i+1), ManagedDeviceName: fmt.Sprintf("CPC-BENCH-%02d", i+1)})
	}
	h.start()
	defer h.stop()

	prompt := h.ask(strings.Join(ids, ",") + " " + reason)
	r := ref(b, prompt)
	h.click(approverID, "approve", prompt)
	h.signIn(approverUPN)
	signedIn := time.Now()
	var confirm fakes.Message
	h.slack.WaitFor(b, long, "the batch's confirmation", func() bool {
		for _, m := range h.slack.Messages(h.slack.DMChannel(approverID)) {
			if strings.Contains(blocks(m), `"block_id":"confirm:`+r+`"`) {
				confirm = m
				return true
			}
		}
		return false
	})
	lookup := time.Since(signedIn)

	b.StartTimer()
	begin := time.Now()
	env := h.slack.SendBlockAction(b, fakes.BlockAction{
		UserID: approverID, ActionID: "confirm", BlockID: "confirm:" + r, Value: r, ChannelID: confirm.Channel, MessageTS: confirm.TS,
	})
	h.graph.WaitFor(b, long, "every reprovision POST answered", func() bool {
		posts := h.reprovisionPOSTs()
		return len(posts) == benchBatchSize && benchBatchAllAnswered(posts)
	})
	posts := time.Since(begin)
	end := benchBatchWaitEnd(b, h, r, long)
	run := end.Sub(begin)
	b.StopTimer()
	h.slack.WaitAck(b, env, wait)

	counts := h.graph.ReprovisionPosts()
	for _, id := range ids {
		if c := counts[id]; c != (fakes.PostCount{Posts: 1, Accepted: 1}) {
			b.Fatalf("%s: %+v reprovision POSTs, want one accepted", id, c)
		}
	}
	requests := 0
	for _, q := range h.graph.Requests() {
		if !q.At.Before(begin) && !q.At.After(end) {
			requests++
		}
	}
	return benchBatchResult{lookup: lookup, run: run, posts: posts, requests: requests, maxPerSecond: h.graph.MaxRequestsPerSecond()}
}

// benchBatchAllAnswered reports whether Graph answered every one of posts.
func benchBatchAllAnswered(posts []fakes.GraphRequest) bool {
	for _, p := range posts {
		if p.Status == 0 {
			return false
		}
	}
	return true
}

// benchBatchWaitEnd waits until the audit trail says batch r succeeded and
// returns when it saw it.
func benchBatchWaitEnd(b *testing.B, h *harness, r string, timeout time.Duration) time.Time {
	deadline := time.Now().Add(timeout)
	for {
		for _, a := range eventsOf(h.auditTrail(), r, "succeeded") {
			if a.Details["sent"] != strconv.Itoa(benchBatchSize) {
				b.Fatalf("the batch ended with %v, want all %d sent", a.Details, benchBatchSize)
			}
			return time.Now()
		}
		if time.Now().After(deadline) {
			b.Fatalf("batch %s did not succeed within %v:\n%s", r, timeout, h.exportAudit())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
