package main

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// /metrics is the Prometheus text format as the client library wrote it:
// each family once, HELP then TYPE then its samples, families sorted by
// name; a histogram's buckets cumulative; a store count that fails is NaN;
// gzip when the scraper asks for it.
func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	m := newMetrics(storeCounts{
		OpenRequests:       func(context.Context) (int, error) { return 3, nil },
		UndeliveredNotices: func(context.Context) (int, error) { return 0, errors.New("store down") },
	})
	m.RequestCreated()
	m.RequestSettled(approvals.StateSucceeded)
	m.GraphRequest("reprovision", 204)
	m.GraphRequest("get", 200)
	m.GraphRequest("get", 0)
	m.GraphRequest("get", 200)
	m.Acked(time.Millisecond) // le is inclusive
	m.Acked(700 * time.Millisecond)
	m.Acked(10 * time.Second)
	m.Leading(true)
	m.Reconnected()

	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	body := w.Body.String()
	for _, want := range []string{
		"reprovision_requests_created_total 1\n",
		`reprovision_requests_settled_total{state="succeeded"} 1` + "\n",
		`reprovision_requests_settled_total{state="expired"} 0` + "\n",
		`reprovision_graph_requests_total{code="0",operation="get"} 1` + "\n" +
			`reprovision_graph_requests_total{code="200",operation="get"} 2` + "\n" +
			`reprovision_graph_requests_total{code="204",operation="reprovision"} 1` + "\n",
		`reprovision_slack_ack_seconds_bucket{le="0.001"} 1` + "\n",
		`reprovision_slack_ack_seconds_bucket{le="0.5"} 1` + "\n",
		`reprovision_slack_ack_seconds_bucket{le="1"} 2` + "\n",
		`reprovision_slack_ack_seconds_bucket{le="5"} 2` + "\n",
		`reprovision_slack_ack_seconds_bucket{le="+Inf"} 3` + "\n",
		"reprovision_slack_ack_seconds_sum 10.701\n",
		"reprovision_slack_ack_seconds_count 3\n",
		"reprovision_socket_reconnects_total 1\n",
		"reprovision_leader 1\n",
		"reprovision_open_requests 3\n",
		"reprovision_notices_pending NaN\n",
		"# TYPE reprovision_slack_ack_seconds histogram\n",
		"# TYPE go_gc_duration_seconds summary\n",
		`go_gc_duration_seconds{quantile="0.5"} `,
		`go_info{version="go`,
		"\ngo_goroutines ",
		"\ngo_memstats_heap_alloc_bytes ",
		"\nprocess_resident_memory_bytes ",
		"\nprocess_start_time_seconds 1.",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	var names []string
	sampleLine := regexp.MustCompile(`^([a-z_]+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (NaN|[+-]Inf|-?[0-9.e+-]+)$`)
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		help, ok := strings.CutPrefix(lines[i], "# HELP ")
		if !ok {
			t.Fatalf("line %d: %q, want a HELP line", i+1, lines[i])
		}
		name, _, _ := strings.Cut(help, " ")
		names = append(names, name)
		if i++; i >= len(lines) || !strings.HasPrefix(lines[i], "# TYPE "+name+" ") {
			t.Fatalf("no TYPE line after HELP %s", name)
		}
		for i+1 < len(lines) && !strings.HasPrefix(lines[i+1], "#") {
			i++
			m := sampleLine.FindStringSubmatch(lines[i])
			if m == nil || !strings.HasPrefix(m[1], name) {
				t.Errorf("sample %q in family %s", lines[i], name)
			}
		}
	}
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("families not sorted or repeated: %v", names)
	}

	r := httptest.NewRequest("GET", "/metrics", nil)
	r.Header.Set("Accept-Encoding", "gzip, deflate")
	w = httptest.NewRecorder()
	m.Handler().ServeHTTP(w, r)
	zr, err := gzip.NewReader(w.Body)
	if err != nil || w.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("gzip asked for: %v %v", w.Header(), err)
	}
	if unzipped, _ := io.ReadAll(zr); !strings.Contains(string(unzipped), "reprovision_leader 1\n") {
		t.Errorf("gzipped /metrics:\n%s", unzipped)
	}
}
