package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

const mib = 1 << 20

// sized is v as JSON, padded with a "padding" member to exactly size bytes.
func sized(t *testing.T, v map[string]any, size int) []byte {
	t.Helper()
	v["padding"] = ""
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > size {
		t.Fatalf("%d bytes before padding, want at most %d", len(b), size)
	}
	v["padding"] = strings.Repeat("x", size-len(b))
	b, _ = json.Marshal(v)
	if len(b) != size || !json.Valid(b) {
		t.Fatalf("padded to %d bytes, want %d", len(b), size)
	}
	return b
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// countingTransport sends through next and counts the response body bytes the client
// reads and the bodies it closes.
type countingTransport struct {
	next interface {
		Do(*http.Request) (*http.Response, error)
	}
	read   atomic.Int64
	closed atomic.Int32
}

func (c *countingTransport) Do(r *http.Request) (*http.Response, error) {
	resp, err := c.next.Do(r)
	if resp != nil && resp.Body != nil {
		resp.Body = &countingBody{body: resp.Body, t: c}
	}
	return resp, err
}

type countingBody struct {
	body io.ReadCloser
	t    *countingTransport
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.t.read.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error {
	b.t.closed.Add(1)
	return b.body.Close()
}

// countedClient is a Client (and the port over the same options) on g whose response
// bodies are counted.
func countedClient(t *testing.T, g *fakeGraph, opts ClientOptions) (*Client, approvals.CloudPCs, *countingTransport) {
	t.Helper()
	ct := &countingTransport{next: g.srv.Client()}
	opts.BaseURL, opts.Transport = g.srv.URL+"/beta", ct
	c, err := NewClient(&staticCred{token: testToken}, opts)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewCloudPCs(&staticCred{token: testToken}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c, p, ct
}

// wantTooLarge checks err is the client's *Error for an over-long answer with status.
func wantTooLarge(t *testing.T, err error, status int) *Error {
	t.Helper()
	var ge *Error
	if !errors.As(err, &ge) {
		t.Fatalf("err = %v (%T), want *Error", err, err)
	}
	if !errors.Is(err, ErrAnswerTooLarge) || ge.StatusCode != status || ge.Code != "" || ge.Message != "" {
		t.Errorf("error = %+v, want status %d, ErrAnswerTooLarge, no code or message", ge, status)
	}
	if !strings.Contains(err.Error(), "larger than 1 MiB") {
		t.Errorf("Error() = %q", err.Error())
	}
	return ge
}

// wantBounded checks that the client read no more than the cap allows.
func wantBounded(t *testing.T, ct *countingTransport, answers int) {
	t.Helper()
	if n := ct.read.Load(); n > int64(answers)*(MaxAnswerBytes+1) {
		t.Errorf("read %d bytes of %d answers, want at most %d", n, answers, int64(answers)*(MaxAnswerBytes+1))
	}
}

// A Cloud PC answered with 5 MiB of valid JSON is refused after 1 MiB, without a retry;
// the port calls it a bad answer. An answer of exactly 1 MiB is still read.
func TestGetCloudPCAnswerTooLarge(t *testing.T) {
	t.Parallel()
	huge := sized(t, cloudPCJSON(testCloudPC, nil), 5*mib)
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeRaw(w, 200, huge) })
	c, p, ct := countedClient(t, g, ClientOptions{RetryDelay: time.Millisecond})

	_, call, err := c.GetCloudPC(context.Background(), testCloudPC)
	wantTooLarge(t, err, 200)
	wantBounded(t, ct, 1)
	if len(call.Attempts) != 1 || len(g.requests()) != 1 {
		t.Fatalf("%d attempts, %d requests; want 1 (an over-long answer is not retried)", len(call.Attempts), len(g.requests()))
	}
	if a := call.Attempts[0]; a.Status != 200 || a.RequestID != "server-request-1" || !strings.Contains(a.Err, "larger than 1 MiB") {
		t.Errorf("attempt %+v", a)
	}

	_, pcall, err := p.Get(context.Background(), testCloudPC)
	var gerr *approvals.GraphError
	if !errors.As(err, &gerr) {
		t.Fatalf("port: %T %v", err, err)
	}
	if gerr.Kind != approvals.GraphFailed || gerr.Cause != approvals.CauseBadAnswer || gerr.Method != "GET" || gerr.Status != 200 ||
		gerr.RequestID != "server-request-2" || gerr.Message != "" || !errors.Is(gerr, ErrAnswerTooLarge) {
		t.Errorf("port: %+v", gerr)
	}
	if len(pcall.Attempts) != 1 || !strings.Contains(pcall.Attempts[0].Err, "larger than 1 MiB") {
		t.Errorf("port call %+v", pcall)
	}
	wantBounded(t, ct, 2)

	// Exactly MaxAnswerBytes is an answer.
	exact := sized(t, cloudPCJSON(testCloudPC, nil), MaxAnswerBytes)
	g2 := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeRaw(w, 200, exact) })
	c2, _, _ := countedClient(t, g2, ClientOptions{})
	if pc, _, err := c2.GetCloudPC(context.Background(), testCloudPC); err != nil || pc.ID != testCloudPC {
		t.Errorf("1 MiB answer: %+v, %v", pc, err)
	}
}

// A list whose second page is over the cap fails; no partial list is returned.
func TestFindCloudPCsPageTooLarge(t *testing.T) {
	t.Parallel()
	var next string
	page2 := sized(t, map[string]any{"value": []any{cloudPCJSON(guid(2), nil)}}, MaxAnswerBytes+1)
	g := newFakeGraph(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n%2 == 0 {
			listPage(w, next, cloudPCJSON(guid(1), nil))
			return
		}
		writeRaw(w, 200, page2)
	})
	next = g.srv.URL + pcsPath + "?$skiptoken=2"
	c, p, ct := countedClient(t, g, ClientOptions{})

	pcs, call, err := c.FindCloudPCs(context.Background(), ByManagedDeviceName, "CPC-alice-X1")
	wantTooLarge(t, err, 200)
	if pcs != nil || len(call.Attempts) != 2 || !strings.Contains(call.Attempts[1].Err, "larger than 1 MiB") || call.Attempts[0].Err != "" {
		t.Errorf("pcs %+v, call %+v", pcs, call)
	}
	wantBounded(t, ct, 2)

	pcs2, calls, err := p.Resolve(context.Background(), "CPC-alice-X1")
	var gerr *approvals.GraphError
	if !errors.As(err, &gerr) || gerr.Kind != approvals.GraphFailed || gerr.Cause != approvals.CauseBadAnswer || gerr.Status != 200 {
		t.Errorf("port: %+v (%v)", gerr, err)
	}
	if pcs2 != nil || len(calls) != 1 || len(calls[0].Attempts) != 2 {
		t.Errorf("port: pcs %+v, calls %+v", pcs2, calls)
	}
}

// An error body over the cap keeps the status's classification, without Graph's
// message; a retriable status is still retried.
func TestErrorBodyTooLarge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		status   int
		post     bool
		kind     approvals.GraphErrorKind
		cause    approvals.GraphCause
		attempts int
	}{
		{"GET 404", 404, false, approvals.GraphNotFound, approvals.CauseNotFound, 1},
		{"GET 403", 403, false, approvals.GraphSignInAgain, approvals.CauseForbidden, 1},
		{"GET 502 retried", 502, false, approvals.GraphFailed, approvals.CauseServerError, 3},
		{"POST 409", 409, true, approvals.GraphConflict, approvals.CauseConflict, 1},
		{"POST 400", 400, true, approvals.GraphConflict, approvals.CauseConflict, 1},
		{"POST 503 retried", 503, true, approvals.GraphThrottled, approvals.CauseThrottled, 3},
		{"POST 500", 500, true, approvals.GraphOutcomeUnknown, approvals.CauseServerError, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := sized(t, map[string]any{"error": map[string]any{"code": "BigCode", "message": "a very long message"}}, 5*mib)
			g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeRaw(w, tc.status, body) })
			c, p, ct := countedClient(t, g, ClientOptions{MaxRetries: 2, RetryDelay: time.Millisecond})
			var (
				call approvals.GraphCall
				err  error
			)
			if tc.post {
				call, err = p.Reprovision(context.Background(), testCloudPC, approvals.Options{})
			} else {
				_, call, err = p.Get(context.Background(), testCloudPC)
			}
			var gerr *approvals.GraphError
			if !errors.As(err, &gerr) {
				t.Fatalf("%T %v", err, err)
			}
			if gerr.Kind != tc.kind || gerr.Cause != tc.cause || gerr.Status != tc.status || gerr.Code != "" || gerr.Message != "" ||
				!strings.HasPrefix(gerr.RequestID, "server-request-") || !errors.Is(gerr, ErrAnswerTooLarge) {
				t.Errorf("%+v, want %s/%s", gerr, tc.kind, tc.cause)
			}
			if len(call.Attempts) != tc.attempts || len(g.requests()) != tc.attempts {
				t.Errorf("%d attempts, %d requests; want %d", len(call.Attempts), len(g.requests()), tc.attempts)
			}
			for _, a := range call.Attempts {
				if a.Status != tc.status || !strings.Contains(a.Err, "larger than 1 MiB") {
					t.Errorf("attempt %+v", a)
				}
			}
			wantBounded(t, ct, tc.attempts)

			// The client's own error says the same.
			ct.read.Store(0)
			var cerr error
			if tc.post {
				_, cerr = c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
			} else {
				_, _, cerr = c.GetCloudPC(context.Background(), testCloudPC)
			}
			ge := wantTooLarge(t, cerr, tc.status)
			if ge.Attempts != tc.attempts {
				t.Errorf("Attempts %d, want %d", ge.Attempts, tc.attempts)
			}
			wantBounded(t, ct, tc.attempts)
		})
	}
}

// A 2xx to a retriable status's retry still succeeds after an over-long error body.
func TestGetRetriedAfterErrorBodyTooLarge(t *testing.T) {
	t.Parallel()
	huge := bytes.Repeat([]byte(" "), 3*mib)
	g := newFakeGraph(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 0 {
			writeRaw(w, 503, huge)
			return
		}
		writeJSON(w, 200, cloudPCJSON(testCloudPC, nil))
	})
	c, _, ct := countedClient(t, g, ClientOptions{RetryDelay: time.Millisecond})
	pc, call, err := c.GetCloudPC(context.Background(), testCloudPC)
	if err != nil || pc.ID != testCloudPC || len(call.Attempts) != 2 {
		t.Fatalf("%+v, %+v, %v", pc, call, err)
	}
	if !strings.Contains(call.Attempts[0].Err, "larger than 1 MiB") || call.Attempts[1].Err != "" {
		t.Errorf("attempts %+v", call.Attempts)
	}
	wantBounded(t, ct, 2)
}

// limitlessBody is an endless body (bounded only as a safety net) that counts what is
// read from it.
type limitlessBody struct {
	read   atomic.Int64
	closed atomic.Bool
}

func (b *limitlessBody) Read(p []byte) (int, error) {
	if b.read.Load() > 64*mib {
		return 0, io.EOF // a safety net, far beyond the cap
	}
	for i := range p {
		p[i] = ' '
	}
	b.read.Add(int64(len(p)))
	return len(p), nil
}

func (b *limitlessBody) Close() error { b.closed.Store(true); return nil }

// A 2xx to the POST means Graph accepted it: its body, however large, is not read.
// (A Go server cannot send a body with 204, so a transport hands it over.)
func TestReprovision2xxWithHugeBodySucceeds(t *testing.T) {
	t.Parallel()
	for _, status := range []int{204, 200, 202} {
		body := &limitlessBody{}
		tr := transporterFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: status, Header: http.Header{"Request-Id": {"rid"}}, Body: body, Request: r}, nil
		})
		for _, port := range []bool{false, true} {
			body.read.Store(0)
			body.closed.Store(false)
			opts := ClientOptions{BaseURL: "https://graph.test/beta", Transport: tr}
			var (
				attempts []Attempt
				err      error
			)
			if port {
				p, perr := NewCloudPCs(&staticCred{token: testToken}, opts)
				if perr != nil {
					t.Fatal(perr)
				}
				var call approvals.GraphCall
				call, err = p.Reprovision(context.Background(), testCloudPC, approvals.Options{})
				for _, a := range call.Attempts {
					attempts = append(attempts, Attempt{Status: a.Status, Err: a.Err})
				}
			} else {
				c, cerr := NewClient(&staticCred{token: testToken}, opts)
				if cerr != nil {
					t.Fatal(cerr)
				}
				var call Call
				call, err = c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
				attempts = call.Attempts
			}
			if err != nil {
				t.Errorf("%d (port %v): %v, want success", status, port, err)
			}
			if len(attempts) != 1 || attempts[0].Status != status || attempts[0].Err != "" {
				t.Errorf("%d (port %v): attempts %+v", status, port, attempts)
			}
			if n := body.read.Load(); n != 0 || !body.closed.Load() {
				t.Errorf("%d (port %v): %d bytes of the body read, closed %v; want none read, closed", status, port, n, body.closed.Load())
			}
		}
	}

	// The same from a real server: 5 MiB after a 202.
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeRaw(w, http.StatusAccepted, bytes.Repeat([]byte("x"), 5*mib))
	})
	c, _, ct := countedClient(t, g, ClientOptions{})
	if _, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{}); err != nil {
		t.Errorf("202 with 5 MiB: %v", err)
	}
	if n := ct.read.Load(); n != 0 || ct.closed.Load() != 1 {
		t.Errorf("202 with 5 MiB: read %d bytes, closed %d bodies; want 0 and 1", n, ct.closed.Load())
	}
}

// An endless answer ends the call promptly with ErrAnswerTooLarge, and the client never
// holds more than the cap: the server sees the connection go away.
func TestEndlessAnswerIsCutOff(t *testing.T) {
	t.Parallel()
	item, _ := json.Marshal(cloudPCJSON(guid(1), nil))
	chunk := bytes.Repeat(append(item, ','), 64)
	served := make(chan int64, 4)
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		var n int64
		defer func() { served <- n }()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		k, _ := w.Write([]byte(`{"value":[`))
		n += int64(k)
		for n < 256*mib { // a safety net, far beyond the cap
			k, err := w.Write(chunk)
			n += int64(k)
			if err != nil {
				return
			}
		}
	})
	c, p, ct := countedClient(t, g, ClientOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	pcs, call, err := c.FindCloudPCs(ctx, ByUserPrincipalName, "alice@contoso.example")
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)

	wantTooLarge(t, err, 200)
	if pcs != nil || len(call.Attempts) != 1 {
		t.Errorf("pcs %+v, call %+v", pcs, call)
	}
	wantBounded(t, ct, 1)
	if elapsed > 10*time.Second {
		t.Errorf("took %v", elapsed)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32*mib {
		t.Errorf("allocated %d MiB reading a capped answer", alloc/mib)
	}
	select {
	case n := <-served:
		if n >= 256*mib {
			t.Errorf("the server wrote all of its %d bytes: the client kept reading", n)
		}
	case <-time.After(10 * time.Second):
		t.Error("the server is still writing: the connection was not closed")
	}

	// Through the port: a bad answer, promptly.
	start = time.Now()
	_, _, err = p.Resolve(ctx, "alice@contoso.example")
	var gerr *approvals.GraphError
	if !errors.As(err, &gerr) || gerr.Kind != approvals.GraphFailed || gerr.Cause != approvals.CauseBadAnswer || !errors.Is(err, ErrAnswerTooLarge) {
		t.Errorf("port: %+v (%v)", gerr, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("port took %v", d)
	}
	wantBounded(t, ct, 2)
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Error("the server is still writing to the port's call")
	}
}
