//go:build benchknobs

package bot

import (
	"os"
	"strconv"
)

// A knob for BenchmarkBurst (cmd/reprovision-bot), compiled in only with
// -tags benchknobs, which the benchmark builds the binary with; a normal
// build has none of this. (Its profiles are benchpprof.go's.)
//
//   - REPROVISION_BENCH_PACE=k paces Slack calls k times faster than
//     Slack's published limits (PaceLimits), so that a benchmark sees a
//     burst's paced work through in minutes rather than an hour.
func init() {
	if v := os.Getenv("REPROVISION_BENCH_PACE"); v != "" {
		if k, err := strconv.ParseFloat(v, 64); err == nil && k > 0 {
			paceScale = k
		}
	}
}
