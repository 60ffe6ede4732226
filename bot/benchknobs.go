//go:build benchknobs

package bot

import (
	"net/http"
	_ "net/http/pprof" // the profiles, on http.DefaultServeMux
	"os"
	"runtime"
	"strconv"
)

// Knobs for BenchmarkBurst (cmd/reprovision-bot), compiled in only with
// -tags benchknobs, which the benchmark builds the binary with; a normal
// build has none of this.
//
//   - REPROVISION_BENCH_PACE=k paces Slack calls k times faster than
//     Slack's published limits (PaceLimits), so that a benchmark sees a
//     burst's paced work through in minutes rather than an hour;
//   - REPROVISION_BENCH_PPROF=host:port serves net/http/pprof there, with
//     block and mutex profiling on.
func init() {
	if v := os.Getenv("REPROVISION_BENCH_PACE"); v != "" {
		if k, err := strconv.ParseFloat(v, 64); err == nil && k > 0 {
			paceScale = k
		}
	}
	if addr := os.Getenv("REPROVISION_BENCH_PPROF"); addr != "" {
		runtime.SetBlockProfileRate(10_000) // a sample per 10 µs blocked
		runtime.SetMutexProfileFraction(10)
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
