//go:build benchpprof

package bot

import (
	"net/http"
	_ "net/http/pprof" // the profiles, on http.DefaultServeMux
	"os"
	"runtime"
)

// A knob for BenchmarkBurst's profiles (cmd/reprovision-bot), compiled in
// only with -tags benchpprof, which the benchmark adds when it is asked for
// profiles (BURST_PPROF_DIR). It is apart from benchknobs because linking
// net/http/pprof turns on the runtime's memory profiling, which costs the
// process 0.5-2 MB: the memory figures are measured without it.
//
//   - REPROVISION_BENCH_PPROF=host:port serves net/http/pprof there, with
//     block and mutex profiling on.
func init() {
	if addr := os.Getenv("REPROVISION_BENCH_PPROF"); addr != "" {
		runtime.SetBlockProfileRate(10_000) // a sample per 10 µs blocked
		runtime.SetMutexProfileFraction(10)
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
