package main

// The bot's Prometheus instrumentation: the metrics named in the README, the
// observers the other packages are given (approvals.Observer, bot.Observer,
// graph's Observe hook), and /metrics in the Prometheus text format (0.0.4).
//
// Written out here rather than with the Prometheus client library: the
// library (with its protobuf model) was 2.3 MB of the binary, and the bot
// exposes a handful of counters, one histogram and a few gauges. The output
// is what the library's registry printed — the same metric families (the
// Go and process collectors' included), HELP and TYPE lines, labels and
// value formatting, families sorted by name, series by label values — so
// dashboards and alerts see no difference.

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	rm "runtime/metrics"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// storeCounts are read from the store at each scrape: they are facts of the
// store, not of this process.
type storeCounts struct {
	// OpenRequests is the number of requests holding their Cloud PC.
	OpenRequests func(ctx context.Context) (int, error)
	// UndeliveredNotices is the outbox's length.
	UndeliveredNotices func(ctx context.Context) (int, error)
}

// metrics holds the bot's own series. Its methods are safe for concurrent
// use.
type metrics struct {
	counts storeCounts

	mu         sync.Mutex
	created    uint64
	settled    map[string]uint64 // by state
	graph      map[string]uint64 // by labels: {code="…",operation="…"}
	ack        histogram
	reconnects uint64
	leading    bool
}

// ackBuckets are reprovision_slack_ack_seconds's upper bounds.
var ackBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5}

// histogram is a Prometheus histogram: per-bucket counts (not cumulative;
// summed when written), the sum and the count.
type histogram struct {
	counts []uint64 // len(ackBuckets)+1, the last for +Inf
	sum    float64
	count  uint64
}

// scrapeTimeout bounds a store count during a scrape.
const scrapeTimeout = 2 * time.Second

// newMetrics starts every series the bot exposes.
func newMetrics(counts storeCounts) *metrics {
	m := &metrics{
		counts:  counts,
		settled: map[string]uint64{},
		graph:   map[string]uint64{},
		ack:     histogram{counts: make([]uint64, len(ackBuckets)+1)},
	}
	// Every state gets its series at 0 from the start, so rates and alerts
	// work before the first request of that kind.
	for _, s := range []approvals.State{approvals.StateSucceeded, approvals.StateFailed, approvals.StateOutcomeUnknown,
		approvals.StateDenied, approvals.StateCanceled, approvals.StateExpired} {
		m.settled[string(s)] = 0
	}
	return m
}

// scrapeCount turns a store count into a gauge value (NaN when the store does
// not answer: no number is better than a wrong one).
func scrapeCount(f func(ctx context.Context) (int, error)) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	n, err := f(ctx)
	if err != nil {
		return math.NaN()
	}
	return float64(n)
}

// RequestCreated implements approvals.Observer.
func (m *metrics) RequestCreated() {
	m.mu.Lock()
	m.created++
	m.mu.Unlock()
}

// RequestSettled implements approvals.Observer.
func (m *metrics) RequestSettled(s approvals.State) {
	m.mu.Lock()
	m.settled[string(s)]++
	m.mu.Unlock()
}

// GraphRequest counts one HTTP attempt to Graph (graph.ClientOptions.Observe).
func (m *metrics) GraphRequest(operation string, status int) {
	m.mu.Lock()
	m.graph[labels("code", strconv.Itoa(status), "operation", operation)]++
	m.mu.Unlock()
}

// Acked implements bot.Observer.
func (m *metrics) Acked(d time.Duration) {
	v := d.Seconds()
	i, _ := slices.BinarySearch(ackBuckets, v) // the first bound ≥ v (le is inclusive)
	m.mu.Lock()
	m.ack.counts[i]++
	m.ack.sum += v
	m.ack.count++
	m.mu.Unlock()
}

// Leading records whether this process serves now.
func (m *metrics) Leading(yes bool) {
	m.mu.Lock()
	m.leading = yes
	m.mu.Unlock()
}

// Reconnected implements bot.Observer.
func (m *metrics) Reconnected() {
	m.mu.Lock()
	m.reconnects++
	m.mu.Unlock()
}

// Handler serves the metrics in the Prometheus text format, gzipped when
// the scraper accepts it.
func (m *metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		m.write(&buf)
		h := w.Header()
		h.Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores")
		h.Add("Vary", "Accept")
		h.Add("Vary", "Accept-Encoding")
		if !acceptsGzip(r.Header.Get("Accept-Encoding")) {
			h.Set("Content-Length", strconv.Itoa(buf.Len()))
			_, _ = w.Write(buf.Bytes())
			return
		}
		h.Set("Content-Encoding", "gzip")
		gz := gzip.NewWriter(w)
		_, _ = gz.Write(buf.Bytes())
		_ = gz.Close()
	})
}

// acceptsGzip says whether an Accept-Encoding header allows gzip.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(coding) != "gzip" {
			continue
		}
		q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
		return !ok || q != "0" && q != "0.0" && q != "0.00" && q != "0.000"
	}
	return false
}

// family is one metric family as written: its samples are lines without
// the name's prefix ("{label=\"v\"} 1", "_sum 0.5", " 3").
type family struct {
	name, help, typ string
	samples         []sample
}

type sample struct {
	suffix string // "", "_bucket", "_sum", "_count"
	labels string // `{k="v",…}` or ""
	value  float64
}

func one(name, help, typ string, v float64) family {
	return family{name: name, help: help, typ: typ, samples: []sample{{value: v}}}
}

// write writes every family, sorted by name as Prometheus' registry does.
func (m *metrics) write(w io.Writer) {
	fams := append(m.own(), goFamilies()...)
	fams = append(fams, processFamilies()...)
	sort.Slice(fams, func(i, j int) bool { return fams[i].name < fams[j].name })
	var b []byte
	for _, f := range fams {
		b = append(b, "# HELP "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, escapeHelp(f.help)...)
		b = append(b, "\n# TYPE "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, f.typ...)
		b = append(b, '\n')
		for _, s := range f.samples {
			b = append(b, f.name...)
			b = append(b, s.suffix...)
			b = append(b, s.labels...)
			b = append(b, ' ')
			b = appendValue(b, s.value)
			b = append(b, '\n')
		}
	}
	_, _ = w.Write(b)
}

// own are the bot's families, read under the lock (the store counts after
// it: they may take a while).
func (m *metrics) own() []family {
	m.mu.Lock()
	states := make([]string, 0, len(m.settled))
	for s := range m.settled {
		states = append(states, s)
	}
	slices.Sort(states)
	settled := family{name: "reprovision_requests_settled_total", help: "Requests that reached a final state, by state.", typ: "counter"}
	for _, s := range states {
		settled.samples = append(settled.samples, sample{labels: labels("state", s), value: float64(m.settled[s])})
	}
	// Sorting the label strings sorts by code, then operation: '"' sorts
	// before any character of a code or an operation.
	keys := make([]string, 0, len(m.graph))
	for k := range m.graph {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	graph := family{name: "reprovision_graph_requests_total", typ: "counter",
		help: "HTTP attempts to Microsoft Graph, by operation (get, list, reprovision, action_results) and status code (0: no response)."}
	for _, k := range keys {
		graph.samples = append(graph.samples, sample{labels: k, value: float64(m.graph[k])})
	}
	ack := family{name: "reprovision_slack_ack_seconds", typ: "histogram",
		help: "Time from a Socket Mode envelope's arrival to its ack (Slack wants it within 3 s)."}
	var cumulative uint64
	for i, n := range m.ack.counts {
		cumulative += n
		le := math.Inf(1)
		if i < len(ackBuckets) {
			le = ackBuckets[i]
		}
		ack.samples = append(ack.samples, sample{suffix: "_bucket", labels: labels("le", string(appendValue(nil, le))), value: float64(cumulative)})
	}
	ack.samples = append(ack.samples, sample{suffix: "_sum", value: m.ack.sum}, sample{suffix: "_count", value: float64(m.ack.count)})
	leading := 0.0
	if m.leading {
		leading = 1
	}
	fams := []family{
		one("reprovision_requests_created_total", "Requests stored (asked for and accepted by the policy).", "counter", float64(m.created)),
		settled, graph, ack,
		one("reprovision_socket_reconnects_total", "Socket Mode connections opened after the first.", "counter", float64(m.reconnects)),
		one("reprovision_leader", "1 while this process serves (with PostgreSQL: holds leadership), 0 while it stands by.", "gauge", leading),
	}
	m.mu.Unlock()
	if m.counts.OpenRequests != nil {
		fams = append(fams, one("reprovision_open_requests", "Requests holding their Cloud PC (pending to executing, or being followed).",
			"gauge", scrapeCount(m.counts.OpenRequests)))
	}
	if m.counts.UndeliveredNotices != nil {
		fams = append(fams, one("reprovision_notices_pending", "Notices in the outbox, not delivered yet.",
			"gauge", scrapeCount(m.counts.UndeliveredNotices)))
	}
	return fams
}

// labels formats label pairs (names in order) as {k="v",…}.
func labels(kv ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i])
		b.WriteString(`="`)
		b.WriteString(labelEscaper.Replace(kv[i+1]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeHelp(s string) string { return helpEscaper.Replace(s) }

// appendValue formats a sample value as the text format does.
func appendValue(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// The Go collector's families, as client_golang's default Go collector
// exposes them (memstats from runtime/metrics, as it computes them).
var goMetricNames = []string{
	"/gc/heap/tiny/allocs:objects", "/gc/heap/allocs:objects", "/gc/heap/frees:objects", "/gc/heap/allocs:bytes",
	"/gc/heap/objects:objects", "/gc/heap/goal:bytes", "/memory/classes/total:bytes", "/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes", "/memory/classes/heap/released:bytes", "/memory/classes/heap/free:bytes",
	"/memory/classes/heap/stacks:bytes", "/memory/classes/os-stacks:bytes", "/memory/classes/metadata/mspan/inuse:bytes",
	"/memory/classes/metadata/mspan/free:bytes", "/memory/classes/metadata/mcache/inuse:bytes",
	"/memory/classes/metadata/mcache/free:bytes", "/memory/classes/profiling/buckets:bytes",
	"/memory/classes/metadata/other:bytes", "/memory/classes/other:bytes",
	"/gc/gogc:percent", "/gc/gomemlimit:bytes", "/sched/gomaxprocs:threads",
}

func goFamilies() []family {
	samples := make([]rm.Sample, len(goMetricNames))
	for i, n := range goMetricNames {
		samples[i].Name = n
	}
	rm.Read(samples)
	read := func(name string) float64 {
		for _, s := range samples {
			if s.Name == name && s.Value.Kind() == rm.KindUint64 {
				return float64(s.Value.Uint64())
			}
		}
		return 0
	}
	tiny := read("/gc/heap/tiny/allocs:objects")
	heapAlloc := read("/memory/classes/heap/objects:bytes")
	heapInuse := heapAlloc + read("/memory/classes/heap/unused:bytes")
	heapReleased := read("/memory/classes/heap/released:bytes")
	heapIdle := heapReleased + read("/memory/classes/heap/free:bytes")
	stackInuse := read("/memory/classes/heap/stacks:bytes")
	mspanInuse := read("/memory/classes/metadata/mspan/inuse:bytes")
	mcacheInuse := read("/memory/classes/metadata/mcache/inuse:bytes")

	var gc debug.GCStats
	gc.PauseQuantiles = make([]time.Duration, 5)
	debug.ReadGCStats(&gc)
	pauses := family{name: "go_gc_duration_seconds", typ: "summary",
		help: "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles."}
	for i, q := range []string{"0", "0.25", "0.5", "0.75", "1"} {
		pauses.samples = append(pauses.samples, sample{labels: labels("quantile", q), value: gc.PauseQuantiles[i].Seconds()})
	}
	pauses.samples = append(pauses.samples, sample{suffix: "_sum", value: gc.PauseTotal.Seconds()}, sample{suffix: "_count", value: float64(gc.NumGC)})
	threads, _ := runtime.ThreadCreateProfile(nil)
	lastGC := 0.0
	if !gc.LastGC.IsZero() {
		lastGC = float64(gc.LastGC.UnixNano()) / 1e9
	}

	return []family{
		pauses,
		one("go_gc_gogc_percent", "Heap size target percentage configured by the user, otherwise 100. This value is set by the GOGC environment variable, and the runtime/debug.SetGCPercent function. Sourced from /gc/gogc:percent.",
			"gauge", read("/gc/gogc:percent")),
		one("go_gc_gomemlimit_bytes", "Go runtime memory limit configured by the user, otherwise math.MaxInt64. This value is set by the GOMEMLIMIT environment variable, and the runtime/debug.SetMemoryLimit function. Sourced from /gc/gomemlimit:bytes.",
			"gauge", read("/gc/gomemlimit:bytes")),
		one("go_goroutines", "Number of goroutines that currently exist.", "gauge", float64(runtime.NumGoroutine())),
		{name: "go_info", help: "Information about the Go environment.", typ: "gauge",
			samples: []sample{{labels: labels("version", runtime.Version()), value: 1}}},
		one("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use. Equals to /memory/classes/heap/objects:bytes.", "gauge", heapAlloc),
		one("go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already. Equals to /gc/heap/allocs:bytes.", "counter", read("/gc/heap/allocs:bytes")),
		one("go_memstats_buck_hash_sys_bytes", "Number of bytes used by the profiling bucket hash table. Equals to /memory/classes/profiling/buckets:bytes.", "gauge", read("/memory/classes/profiling/buckets:bytes")),
		one("go_memstats_frees_total", "Total number of heap objects frees. Equals to /gc/heap/frees:objects + /gc/heap/tiny/allocs:objects.", "counter", read("/gc/heap/frees:objects")+tiny),
		one("go_memstats_gc_sys_bytes", "Number of bytes used for garbage collection system metadata. Equals to /memory/classes/metadata/other:bytes.", "gauge", read("/memory/classes/metadata/other:bytes")),
		one("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes. Equals to /memory/classes/heap/objects:bytes.", "gauge", heapAlloc),
		one("go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used. Equals to /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", "gauge", heapIdle),
		one("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes", "gauge", heapInuse),
		one("go_memstats_heap_objects", "Number of currently allocated objects. Equals to /gc/heap/objects:objects.", "gauge", read("/gc/heap/objects:objects")),
		one("go_memstats_heap_released_bytes", "Number of heap bytes released to OS. Equals to /memory/classes/heap/released:bytes.", "gauge", heapReleased),
		one("go_memstats_heap_sys_bytes", "Number of heap bytes obtained from system. Equals to /memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes + /memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes.", "gauge", heapInuse+heapIdle),
		one("go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", "gauge", lastGC),
		one("go_memstats_mallocs_total", "Total number of heap objects allocated, both live and gc-ed. Semantically a counter version for go_memstats_heap_objects gauge. Equals to /gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects.", "counter", read("/gc/heap/allocs:objects")+tiny),
		one("go_memstats_mcache_inuse_bytes", "Number of bytes in use by mcache structures. Equals to /memory/classes/metadata/mcache/inuse:bytes.", "gauge", mcacheInuse),
		one("go_memstats_mcache_sys_bytes", "Number of bytes used for mcache structures obtained from system. Equals to /memory/classes/metadata/mcache/inuse:bytes + /memory/classes/metadata/mcache/free:bytes.", "gauge", mcacheInuse+read("/memory/classes/metadata/mcache/free:bytes")),
		one("go_memstats_mspan_inuse_bytes", "Number of bytes in use by mspan structures. Equals to /memory/classes/metadata/mspan/inuse:bytes.", "gauge", mspanInuse),
		one("go_memstats_mspan_sys_bytes", "Number of bytes used for mspan structures obtained from system. Equals to /memory/classes/metadata/mspan/inuse:bytes + /memory/classes/metadata/mspan/free:bytes.", "gauge", mspanInuse+read("/memory/classes/metadata/mspan/free:bytes")),
		one("go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place. Equals to /gc/heap/goal:bytes.", "gauge", read("/gc/heap/goal:bytes")),
		one("go_memstats_other_sys_bytes", "Number of bytes used for other system allocations. Equals to /memory/classes/other:bytes.", "gauge", read("/memory/classes/other:bytes")),
		one("go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator in non-CGO environments. Equals to /memory/classes/heap/stacks:bytes.", "gauge", stackInuse),
		one("go_memstats_stack_sys_bytes", "Number of bytes obtained from system for stack allocator. Equals to /memory/classes/heap/stacks:bytes + /memory/classes/os-stacks:bytes.", "gauge", stackInuse+read("/memory/classes/os-stacks:bytes")),
		one("go_memstats_sys_bytes", "Number of bytes obtained from system. Equals to /memory/classes/total:byte.", "gauge", read("/memory/classes/total:bytes")),
		one("go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting, or the number of operating system threads that can execute user-level Go code simultaneously. Sourced from /sched/gomaxprocs:threads.",
			"gauge", read("/sched/gomaxprocs:threads")),
		one("go_threads", "Number of OS threads created.", "gauge", float64(threads)),
	}
}

// userHZ is the kernel's clock tick for /proc times (USER_HZ, 100 on Linux),
// as the process collector assumes.
const userHZ = 100

// processFamilies are the process collector's families, from /proc (Linux;
// elsewhere, or when /proc cannot be read, the families are left out).
func processFamilies() []family {
	var fams []family
	if stat, err := os.ReadFile("/proc/self/stat"); err == nil {
		// Fields after the command (which may hold spaces), from field 3 on.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 {
			f := strings.Fields(string(stat[i+1:]))
			num := func(n int) float64 { // n: the field's number in proc(5)
				if n-3 >= len(f) {
					return 0
				}
				v, _ := strconv.ParseFloat(f[n-3], 64)
				return v
			}
			fams = append(fams,
				one("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter", (num(14)+num(15))/userHZ),
				one("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", num(23)),
				one("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", num(24)*float64(os.Getpagesize())))
			if boot, ok := bootTime(); ok {
				fams = append(fams, one("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge", boot+num(22)/userHZ))
			}
		}
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		fams = append(fams, one("process_open_fds", "Number of open file descriptors.", "gauge", float64(len(fds))))
	}
	if limits, err := os.ReadFile("/proc/self/limits"); err == nil {
		for _, line := range strings.Split(string(limits), "\n") {
			for _, l := range []struct{ prefix, name, help string }{
				{"Max open files", "process_max_fds", "Maximum number of open file descriptors."},
				{"Max address space", "process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes."},
			} {
				if rest, ok := strings.CutPrefix(line, l.prefix); ok {
					if f := strings.Fields(rest); len(f) > 0 {
						v := float64(math.MaxUint64) // "unlimited"
						if f[0] != "unlimited" {
							v, _ = strconv.ParseFloat(f[0], 64)
						}
						fams = append(fams, one(l.name, l.help, "gauge", v))
					}
				}
			}
		}
	}
	if in, out, ok := netOctets(); ok {
		fams = append(fams,
			one("process_network_receive_bytes_total", "Number of bytes received by the process over the network.", "counter", in),
			one("process_network_transmit_bytes_total", "Number of bytes sent by the process over the network.", "counter", out))
	}
	return fams
}

// bootTime is the btime line of /proc/stat: the boot time in Unix seconds.
func bootTime() (float64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// netOctets are IpExt's InOctets and OutOctets from /proc/self/net/netstat
// (a header line of names, then a line of values).
func netOctets() (in, out float64, ok bool) {
	b, err := os.ReadFile("/proc/self/net/netstat")
	if err != nil {
		return 0, 0, false
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "IpExt:" || len(values) != len(names) || values[0] != "IpExt:" {
			continue
		}
		for j, n := range names {
			v, _ := strconv.ParseFloat(values[j], 64)
			switch n {
			case "InOctets":
				in = v
			case "OutOctets":
				out = v
			}
		}
		return in, out, true
	}
	return 0, 0, false
}
