package graph

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// recordStarts makes l record every start it allows; the returned func reads them.
func recordStarts(l *RateLimiter) func() []time.Time {
	var starts []time.Time // appended with l.mu held
	l.onStart = func(t time.Time) { starts = append(starts, t) }
	return func() []time.Time {
		l.mu.Lock()
		defer l.mu.Unlock()
		return append([]time.Time(nil), starts...)
	}
}

// checkWindow asserts the limiter's guarantee on recorded start times (in the order
// allowed): at most rps of them in any one second, i.e. start k at least one second
// after start k−rps, and counted directly per window starting at each start.
func checkWindow(t *testing.T, starts []time.Time, rps int) {
	t.Helper()
	for i := 1; i < len(starts); i++ {
		if starts[i].Before(starts[i-1]) {
			t.Fatalf("start %d (%v) before start %d (%v)", i, starts[i], i-1, starts[i-1])
		}
	}
	for i := rps; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-rps]); gap < time.Second {
			t.Errorf("start %d came %v after start %d: more than %d in one second", i, gap, i-rps, rps)
		}
	}
	most := 0
	for i := range starts {
		n := 0
		for j := i; j < len(starts) && starts[j].Sub(starts[i]) < time.Second; j++ {
			n++
		}
		most = max(most, n)
	}
	if most > rps {
		t.Errorf("%d starts in one second, want at most %d", most, rps)
	}
}

func TestNewRateLimiterValidation(t *testing.T) {
	t.Parallel()
	for _, rps := range []int{0, -1} {
		if l, err := NewRateLimiter(rps); err == nil || l != nil {
			t.Errorf("NewRateLimiter(%d) = %v, %v; want an error", rps, l, err)
		}
	}
	if l, err := NewRateLimiter(1); err != nil || l.RPS() != 1 {
		t.Errorf("NewRateLimiter(1) = %v, %v", l, err)
	}
}

// Many goroutines at once: never more than rps starts in any one second (a token
// bucket of burst rps would allow 2×rps across a window boundary).
func TestRateLimiterWindowUnderConcurrency(t *testing.T) {
	t.Parallel()
	const rps, n = 20, 70
	l, err := NewRateLimiter(rps)
	if err != nil {
		t.Fatal(err)
	}
	starts := recordStarts(l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Wait(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got := starts()
	if len(got) != n {
		t.Fatalf("%d starts, want %d", len(got), n)
	}
	checkWindow(t, got, rps)
}

func TestRateLimiterWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	l, _ := NewRateLimiter(1)
	starts := recordStarts(l)
	if err := l.Wait(context.Background()); err != nil { // the one start of this second
		t.Fatal(err)
	}
	l.PauseUntil(time.Now().Add(time.Minute))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Wait(ctx) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Wait = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not end with its context")
	}
	if err := l.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a done context = %v", err)
	}
	if n := len(starts()); n != 1 {
		t.Errorf("%d starts counted, want 1 (a canceled wait is no start)", n)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queue) != 0 {
		t.Errorf("%d waiters left in line", len(l.queue))
	}
}

// A waiter that gives up while first in line does not hold up the next one.
func TestRateLimiterCanceledFirstWaiterLetsNextGo(t *testing.T) {
	t.Parallel()
	l, _ := NewRateLimiter(1)
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- l.Wait(ctx1) }()
	for { // until it is first in line
		l.mu.Lock()
		n := len(l.queue)
		l.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() { second <- l.Wait(context.Background()) }()
	cancel1()
	for name, ch := range map[string]chan error{"first": first, "second": second} {
		select {
		case err := <-ch:
			if (name == "first") != (err != nil) {
				t.Errorf("%s waiter: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s waiter still waiting", name)
		}
	}
}

func TestRetryAfterHeader(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	resp := func(status int, kv ...string) *http.Response {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return &http.Response{StatusCode: status, Header: h}
	}
	for _, tc := range []struct {
		name string
		resp *http.Response
		want time.Duration
	}{
		{"seconds", resp(429, "Retry-After", "7"), 7 * time.Second},
		{"503", resp(503, "Retry-After", "2"), 2 * time.Second},
		{"milliseconds first", resp(429, "retry-after-ms", "1500", "Retry-After", "9"), 1500 * time.Millisecond},
		{"x-ms milliseconds", resp(429, "x-ms-retry-after-ms", "250"), 250 * time.Millisecond},
		{"http date", resp(429, "Retry-After", now.Add(30*time.Second).Format(http.TimeFormat)), 30 * time.Second},
		{"date past", resp(429, "Retry-After", now.Add(-time.Minute).Format(http.TimeFormat)), 0},
		{"capped", resp(429, "Retry-After", "86400"), MaxPause},
		{"huge", resp(429, "Retry-After", "99999999999999999"), MaxPause},
		{"huge ms", resp(429, "retry-after-ms", "9999999999999999"), MaxPause},
		{"zero", resp(429, "Retry-After", "0"), 0},
		{"negative", resp(429, "Retry-After", "-5"), 0},
		{"garbage", resp(429, "Retry-After", "soon"), 0},
		{"none", resp(429), 0},
		{"other status", resp(500, "Retry-After", "5"), 0},
		{"no response", nil, 0},
	} {
		if got := retryAfter(tc.resp, now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRateLimiterPauseOnlyGrows(t *testing.T) {
	t.Parallel()
	l, _ := NewRateLimiter(5)
	until := time.Now().Add(time.Minute)
	l.PauseUntil(until)
	l.PauseUntil(until.Add(-30 * time.Second))
	if got := l.PausedUntil(); !got.Equal(until) {
		t.Errorf("PausedUntil = %v, want %v", got, until)
	}
	l.PauseUntil(time.Now().Add(time.Hour))
	if got := l.PausedUntil(); got.After(time.Now().Add(MaxPause)) {
		t.Errorf("PausedUntil = %v: more than MaxPause ahead", got)
	}
}

// Several Clients (several approvers' sign-ins) share one limiter: every HTTP attempt of
// every one of them, azcore's retries included, is one start of the limiter, and the
// starts keep the window.
func TestRateLimiterPacesEveryAttemptOfEveryClient(t *testing.T) {
	t.Parallel()
	const rps = 10
	var served atomic.Int32
	g := newFakeGraph(t, func(n int, w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if n%4 == 1 { // some attempts are retried (503 without Retry-After: no pause)
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]any{"code": "ServiceUnavailable", "message": "busy"}})
			return
		}
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeJSON(w, 200, cloudPCJSON(testCloudPC, nil))
	})
	l, _ := NewRateLimiter(rps)
	starts := recordStarts(l)
	var clients []*Client
	for _, tok := range []string{"token-a", "token-b", "token-c"} {
		clients = append(clients, g.client(t, &staticCred{token: tok}, ClientOptions{RateLimiter: l, RetryDelay: time.Millisecond, MaxRetries: 5}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var attempts atomic.Int32
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[i%len(clients)]
			var call Call
			var err error
			if i%2 == 0 {
				call, err = c.Reprovision(ctx, testCloudPC, approvals.Options{})
			} else {
				_, call, err = c.GetCloudPC(ctx, testCloudPC)
			}
			if err != nil {
				t.Error(err)
			}
			attempts.Add(int32(len(call.Attempts)))
		}()
	}
	wg.Wait()
	got := starts()
	if int(served.Load()) != len(got) || int(attempts.Load()) != len(got) || len(got) <= 24 {
		t.Fatalf("server saw %d requests, calls recorded %d attempts, limiter counted %d starts; want equal, above 24 (retries)",
			served.Load(), attempts.Load(), len(got))
	}
	checkWindow(t, got, rps)
}

// A 429 (or 503) with Retry-After to one Client pauses another Client sharing the
// limiter: its request reaches Graph no earlier than Retry-After after the answer.
func TestRetryAfterPausesOtherClients(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			var mu sync.Mutex
			var throttledAt time.Time
			g := newFakeGraph(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 0 {
					mu.Lock()
					throttledAt = time.Now()
					mu.Unlock()
					w.Header().Set("Retry-After", "1")
					writeJSON(w, status, map[string]any{"error": map[string]any{"code": "TooManyRequests", "message": "slow down"}})
					return
				}
				writeJSON(w, 200, cloudPCJSON(testCloudPC, nil))
			})
			l, _ := NewRateLimiter(100) // the window plays no part here
			a := g.client(t, &staticCred{token: "token-a"}, ClientOptions{RateLimiter: l, MaxRetries: -1})
			b := g.client(t, &staticCred{token: "token-b"}, ClientOptions{RateLimiter: l})
			ctx := context.Background()
			if _, call, err := a.GetCloudPC(ctx, testCloudPC); err == nil || len(call.Attempts) != 1 {
				t.Fatalf("a: %v, %+v; want the %d, not retried", err, call.Attempts, status)
			}
			if _, _, err := b.GetCloudPC(ctx, testCloudPC); err != nil {
				t.Fatal(err)
			}
			reqs := g.requests()
			if len(reqs) != 2 || reqs[1].Authorization != "Bearer token-b" {
				t.Fatalf("requests %+v", reqs)
			}
			mu.Lock()
			defer mu.Unlock()
			if gap := reqs[1].At.Sub(throttledAt); gap < time.Second {
				t.Errorf("b's request came %v after a's Retry-After: 1", gap)
			}
		})
	}
}

// The wait for the limiter is not part of TryTimeout: the attempt gets all of it.
func TestRateLimiterWaitIsNotPartOfTryTimeout(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, noContent)
	l, _ := NewRateLimiter(5)
	l.PauseUntil(time.Now().Add(1500 * time.Millisecond))
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{RateLimiter: l, TryTimeout: time.Second})
	call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	if err != nil || len(call.Attempts) != 1 || call.Attempts[0].Status != 204 {
		t.Fatalf("err %v, attempts %+v", err, call.Attempts)
	}
}

// A call whose context ends while it waits sends nothing and says so.
func TestRateLimiterCanceledWaitSendsNothing(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, noContent)
	l, _ := NewRateLimiter(5)
	l.PauseUntil(time.Now().Add(time.Minute))
	p := cloudPCsPort(t, g, ClientOptions{RateLimiter: l})
	// Long enough to reach the limiter's wait (dialing and the token come
	// first): with 100 ms, a loaded machine (go test -p 3 during compiles)
	// ended the context before the transport asked for a connection, which
	// the client rightly cannot tell from a request that may have been sent.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	call, err := p.Reprovision(ctx, testCloudPC, approvals.Options{})
	var ge *approvals.GraphError
	if !errors.As(err, &ge) || ge.Kind != approvals.GraphFailed || ge.Cause != approvals.CauseNotSent || len(call.Attempts) != 0 {
		t.Fatalf("err %v, call %+v", err, call)
	}
	if n := len(g.requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// hangingCred never hands out a token: it waits for its context.
type hangingCred struct{}

func (hangingCred) GetToken(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
	<-ctx.Done()
	return azcore.AccessToken{}, ctx.Err()
}

// Token acquisition is still bounded by TryTimeout (it was by azcore's per-try
// timeout, which pacePolicy replaced).
func TestTokenAcquisitionBoundedByTryTimeout(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, noContent)
	c := g.client(t, hangingCred{}, ClientOptions{TryTimeout: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.Reprovision(ctx, testCloudPC, approvals.Options{})
	if err == nil || ctx.Err() != nil {
		t.Fatalf("err %v, ctx %v: want the token's timeout, not the caller's", err, ctx.Err())
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v, want a deadline error", err)
	}
	if n := len(g.requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}
