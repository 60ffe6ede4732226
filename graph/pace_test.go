package graph

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// The limiter counts a request when it has its connection, so what Graph sees keeps
// to RPS even when some requests spend longer dialing than others: here the first
// five connections take 400 ms to open and the next five none. Counted at dial time,
// the slow five would arrive at 0.4 s and the fast five at 1.0 s: ten in one second.
func TestRateLimiterPacesArrivalsAtGraph(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, cloudPCJSON(testCloudPC, nil))
	})
	tr := g.srv.Client().Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true // every request dials
	var dials atomic.Int32
	dial := tr.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) <= 5 {
			time.Sleep(400 * time.Millisecond)
		}
		return dial(ctx, network, addr)
	}
	l, _ := NewRateLimiter(5)
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{RateLimiter: l, Transport: &http.Client{Transport: tr}})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			if _, _, err := c.GetCloudPC(context.Background(), testCloudPC); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	reqs := g.requests()
	if len(reqs) != 10 {
		t.Fatalf("Graph saw %d requests, want 10", len(reqs))
	}
	arrivals := make([]time.Time, len(reqs))
	for i, r := range reqs {
		arrivals[i] = r.At
	}
	sort.Slice(arrivals, func(i, j int) bool { return arrivals[i].Before(arrivals[j]) })
	checkWindow(t, arrivals, 5)
}

// Over HTTP/2 (Graph's protocol) a call whose context ends while it waits for the
// limiter sends nothing, and the connection it shares with other requests stays up:
// the request in flight on it gets its answer.
func TestRateLimiterCanceledWaitOnHTTP2(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	g := newFakeGraphServer(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			<-release
		}
		writeJSON(w, 200, cloudPCJSON(testCloudPC, nil))
	}, true)
	l, _ := NewRateLimiter(5)
	p := cloudPCsPort(t, g, ClientOptions{RateLimiter: l})
	inFlight := make(chan error, 1)
	go func() {
		_, _, err := p.Get(context.Background(), testCloudPC)
		inFlight <- err
	}()
	for len(g.requests()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if proto := g.requests()[0].Proto; proto != "HTTP/2.0" {
		t.Fatalf("the fake spoke %s, want HTTP/2.0", proto)
	}
	l.PauseUntil(time.Now().Add(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	call, err := p.Reprovision(ctx, testCloudPC, approvals.Options{})
	var ge *approvals.GraphError
	if !errors.As(err, &ge) || ge.Kind != approvals.GraphFailed || ge.Cause != approvals.CauseNotSent || len(call.Attempts) != 0 {
		t.Fatalf("err %v, call %+v; want not sent, no attempt", err, call)
	}
	close(release)
	if err := <-inFlight; err != nil {
		t.Errorf("the request in flight on the shared connection: %v", err)
	}
	if n := len(g.requests()); n != 1 {
		t.Errorf("Graph saw %d requests, want only the first", n)
	}
}
