package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// benchChain is the happy path of a request through the store: approve,
// sign in and confirm, send, succeed.
var benchChain = []approvals.State{approvals.StateApproved, approvals.StateConfirming, approvals.StateExecuting, approvals.StateSucceeded}

// Bench measures the store's transitions. One operation creates a request
// and carries it pending → approved → awaiting_confirmation → executing →
// succeeded: four compare-and-swap transitions (Transition), each its own
// transaction as in the workflow. It runs from one goroutine, and from 8
// at once on distinct requests, on a new database each, and reports
//
//   - transitions/s: transitions per second of wall-clock time (the
//     creates count in the time, not in the number);
//   - p50_ms, p99_ms: the latency of one transition, in milliseconds.
func Bench(b *testing.B, h Harness) {
	for _, workers := range []int{1, 8} {
		b.Run(fmt.Sprintf("goroutines=%d", workers), func(b *testing.B) {
			s := h.open(b)
			ctx := context.Background()
			latencies := make([][]time.Duration, workers)
			var next atomic.Int64
			b.ResetTimer()
			begin := time.Now()
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						r := newRequest()
						if err := s.Create(ctx, r); err != nil {
							b.Error(err)
							return
						}
						for _, to := range benchChain {
							t0 := time.Now()
							if _, err := s.Transition(ctx, r.ID, to, nil); err != nil {
								b.Error(err)
								return
							}
							latencies[w] = append(latencies[w], time.Since(t0))
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(begin)
			b.StopTimer()
			all := slices.Concat(latencies...)
			if len(all) == 0 {
				return
			}
			slices.Sort(all)
			quantile := func(q float64) float64 {
				return float64(all[int(q*float64(len(all)-1))]) / float64(time.Millisecond)
			}
			b.ReportMetric(float64(len(all))/elapsed.Seconds(), "transitions/s")
			b.ReportMetric(quantile(0.50), "p50_ms")
			b.ReportMetric(quantile(0.99), "p99_ms")
		})
	}
}
