package main

// The bot's Prometheus instrumentation: one registry, the metrics named in
// the README, and the observers the other packages are given
// (approvals.Observer, bot.Observer, graph's Observe hook). Only this file
// imports the Prometheus client.

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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

// metrics holds the registry. Its methods are safe for concurrent use.
type metrics struct {
	reg        *prometheus.Registry
	created    prometheus.Counter
	settled    *prometheus.CounterVec
	graph      *prometheus.CounterVec
	ack        prometheus.Histogram
	reconnects prometheus.Counter
	leading    prometheus.Gauge
}

// scrapeTimeout bounds a store count during a scrape.
const scrapeTimeout = 2 * time.Second

// newMetrics registers the metrics, the Go and process collectors, and gauges
// reading counts at each scrape.
func newMetrics(counts storeCounts) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reprovision_requests_created_total", Help: "Requests stored (asked for and accepted by the policy).",
		}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reprovision_requests_settled_total", Help: "Requests that reached a final state, by state.",
		}, []string{"state"}),
		graph: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reprovision_graph_requests_total",
			Help: "HTTP attempts to Microsoft Graph, by operation (get, list, reprovision, action_results) and status code (0: no response).",
		}, []string{"operation", "code"}),
		ack: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "reprovision_slack_ack_seconds",
			Help:    "Time from a Socket Mode envelope's arrival to its ack (Slack wants it within 3 s).",
			Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5},
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "reprovision_socket_reconnects_total", Help: "Socket Mode connections opened after the first.",
		}),
	}
	m.leading = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "reprovision_leader", Help: "1 while this process serves (with PostgreSQL: holds leadership), 0 while it stands by.",
	})
	m.reg.MustRegister(m.created, m.settled, m.graph, m.ack, m.reconnects, m.leading,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if counts.OpenRequests != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "reprovision_open_requests", Help: "Requests holding their Cloud PC (pending to executing, or being followed).",
		}, scrapeCount(counts.OpenRequests)))
	}
	if counts.UndeliveredNotices != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "reprovision_notices_pending", Help: "Notices in the outbox, not delivered yet.",
		}, scrapeCount(counts.UndeliveredNotices)))
	}
	// Every state gets its series at 0 from the start, so rates and alerts
	// work before the first request of that kind.
	for _, s := range []approvals.State{approvals.StateSucceeded, approvals.StateFailed, approvals.StateOutcomeUnknown,
		approvals.StateDenied, approvals.StateCanceled, approvals.StateExpired} {
		m.settled.WithLabelValues(string(s))
	}
	return m
}

// scrapeCount turns a store count into a gauge value (NaN when the store does
// not answer: no number is better than a wrong one).
func scrapeCount(f func(ctx context.Context) (int, error)) func() float64 {
	return func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
		defer cancel()
		n, err := f(ctx)
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	}
}

// Handler serves the metrics in the Prometheus text format.
func (m *metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// RequestCreated implements approvals.Observer.
func (m *metrics) RequestCreated() { m.created.Inc() }

// RequestSettled implements approvals.Observer.
func (m *metrics) RequestSettled(s approvals.State) { m.settled.WithLabelValues(string(s)).Inc() }

// GraphRequest counts one HTTP attempt to Graph (graph.ClientOptions.Observe).
func (m *metrics) GraphRequest(operation string, status int) {
	m.graph.WithLabelValues(operation, strconv.Itoa(status)).Inc()
}

// Acked implements bot.Observer.
func (m *metrics) Acked(d time.Duration) { m.ack.Observe(d.Seconds()) }

// Leading records whether this process serves now.
func (m *metrics) Leading(yes bool) {
	if yes {
		m.leading.Set(1)
	} else {
		m.leading.Set(0)
	}
}

// Reconnected implements bot.Observer.
func (m *metrics) Reconnected() { m.reconnects.Inc() }
