package graph

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

func TestNewSignInsValidation(t *testing.T) {
	t.Parallel()
	f := newFakeEntra(t)
	a := f.authenticator(t)
	if _, err := NewSignIns(nil, ClientOptions{}); err == nil {
		t.Error("nil Authenticator accepted")
	}
	for _, base := range []string{"http://graph.example/beta", "https://graph.example/beta?x=1", "not a url", "https://user@graph.example"} {
		if _, err := NewSignIns(a, ClientOptions{BaseURL: base}); err == nil {
			t.Errorf("BaseURL %q accepted", base)
		}
	}
	if s, err := NewSignIns(a, ClientOptions{}); err != nil || s == nil {
		t.Errorf("default options: %v", err)
	}
	if _, err := NewCloudPCs(nil, ClientOptions{}); err == nil {
		t.Error("NewCloudPCs without a credential")
	}
}

// A sign-in through the port gives a session whose CloudPCs use the approver's token.
func TestSignInsPort(t *testing.T) {
	t.Parallel()
	f := newFakeEntra(t)
	g := newFakeGraph(t, noContent)
	signIns, err := NewSignIns(f.authenticator(t), ClientOptions{BaseURL: g.srv.URL + "/beta", Transport: g.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got approvals.DeviceCode
	start := time.Now()
	s, err := signIns.SignIn(ctx, "", func(_ context.Context, c approvals.DeviceCode) error {
		got = c
		f.setOutcome(approve)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.UserCode != "ABCD-EFGH" || got.VerificationURL != "https://microsoft.com/devicelogin" || got.ExpiresAt.Sub(start) < 890*time.Second {
		t.Errorf("showCode got %+v", got)
	}
	if s.Username != testUPN || s.CloudPCs == nil {
		t.Fatalf("session %+v", s)
	}
	call, err := s.CloudPCs.Reprovision(ctx, testCloudPC, approvals.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reqs := g.requests()
	if len(reqs) != 1 || reqs[0].Authorization != "Bearer "+f.issuedTokens()[0] || len(call.Attempts) != 1 || call.Method != "POST" || call.Path != wantPath {
		t.Errorf("requests %+v, call %+v", reqs, call)
	}
}

func TestSignInsPortErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		outcome string
		want    error
	}{{decline, approvals.ErrSignInDeclined}, {expireIt, approvals.ErrSignInExpired}} {
		t.Run(tc.outcome, func(t *testing.T) {
			f := newFakeEntra(t)
			signIns, err := NewSignIns(f.authenticator(t), ClientOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := signIns.SignIn(ctx, "", func(context.Context, approvals.DeviceCode) error {
				f.setOutcome(tc.outcome)
				return nil
			})
			if !errors.Is(err, tc.want) || s != nil {
				t.Errorf("session %v, err %v; want %v", s, err, tc.want)
			}
		})
	}
	t.Run("showCode fails", func(t *testing.T) {
		f := newFakeEntra(t)
		signIns, _ := NewSignIns(f.authenticator(t), ClientOptions{})
		errChat := errors.New("chat: not delivered")
		if _, err := signIns.SignIn(context.Background(), "", func(context.Context, approvals.DeviceCode) error { return errChat }); !errors.Is(err, errChat) {
			t.Errorf("err %v", err)
		}
	})
	t.Run("claims are asked for", func(t *testing.T) {
		f := newFakeEntra(t)
		signIns, _ := NewSignIns(f.authenticator(t), ClientOptions{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := signIns.SignIn(ctx, `{"access_token":{"nbf":{"essential":true,"value":"1"}}}`, func(context.Context, approvals.DeviceCode) error {
			f.setOutcome(approve)
			return nil
		})
		f.mu.Lock()
		seen := append([]string(nil), f.claimsSeen...)
		f.mu.Unlock()
		if err != nil || len(seen) == 0 || !strings.Contains(seen[0], "nbf") {
			t.Errorf("err %v, claims seen %q", err, seen)
		}
	})
}

// cloudPCsPort is the CloudPCs port over a fake Graph.
func cloudPCsPort(t *testing.T, g *fakeGraph, opts ClientOptions) approvals.CloudPCs {
	t.Helper()
	opts.BaseURL, opts.Transport = g.srv.URL+"/beta", g.srv.Client()
	p, err := NewCloudPCs(&staticCred{token: testToken}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCloudPCsPortConverts(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST":
			w.WriteHeader(http.StatusNoContent)
		case strings.HasSuffix(r.URL.Path, "/retrieveCloudPcRemoteActionResults"):
			listPage(w, "", map[string]any{"actionName": "Reprovision", "actionState": "active", "startDateTime": "2024-05-06T07:08:09Z",
				"lastUpdatedDateTime": "2024-05-06T07:09:09Z", "statusDetail": map[string]any{"message": "Working."}})
		case strings.HasSuffix(r.URL.Path, "/cloudPCs/"+testCloudPC):
			writeJSON(w, 200, cloudPCJSON(testCloudPC, nil))
		case strings.Contains(r.URL.Query().Get("$filter"), "managedDeviceName"):
			listPage(w, "")
		default:
			listPage(w, "", cloudPCJSON(testCloudPC, nil))
		}
	})
	p := cloudPCsPort(t, g, ClientOptions{})
	ctx := context.Background()
	oneAttempt := func(what string, call approvals.GraphCall, method, path string) {
		t.Helper()
		if call.Method != method || call.Path != path || len(call.Attempts) != 1 {
			t.Fatalf("%s: call %+v", what, call)
		}
		a := call.Attempts[0]
		if a.At.IsZero() || a.Status < 200 || a.Status > 299 || a.ClientRequestID == "" || !strings.HasPrefix(a.RequestID, "server-request-") || a.Err != "" {
			t.Errorf("%s: attempt %+v", what, a)
		}
		if call.LastRequestID() != a.RequestID {
			t.Errorf("%s: LastRequestID %q", what, call.LastRequestID())
		}
	}

	pc, call, err := p.Get(ctx, testCloudPC)
	if err != nil || pc.ID != testCloudPC || pc.Status != "provisioned" || pc.DisplayName != "CPC-alice-01" {
		t.Fatalf("Get: %+v, %v", pc, err)
	}
	oneAttempt("Get", call, "GET", pcsPath+"/"+testCloudPC)

	// A name found by displayName only: both lists are returned, in order.
	pcs, calls, err := p.Resolve(ctx, "CPC-alice-01")
	if err != nil || len(pcs) != 1 || pcs[0].ID != testCloudPC || len(calls) != 2 {
		t.Fatalf("Resolve: %+v, %+v, %v", pcs, calls, err)
	}
	oneAttempt("Resolve 1", calls[0], "GET", pcsPath)
	oneAttempt("Resolve 2", calls[1], "GET", pcsPath)
	if calls[0].Attempts[0].RequestID == calls[1].Attempts[0].RequestID {
		t.Errorf("the same attempt twice: %+v", calls)
	}

	call, err = p.Reprovision(ctx, testCloudPC, approvals.Options{})
	if err != nil {
		t.Fatal(err)
	}
	oneAttempt("Reprovision", call, "POST", wantPath)

	actions, call, err := p.RemoteActions(ctx, testCloudPC)
	want := []approvals.RemoteAction{{Name: "Reprovision", State: "active", Started: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		Updated: time.Date(2024, 5, 6, 7, 9, 9, 0, time.UTC), Details: "Working."}}
	if err != nil || !reflect.DeepEqual(actions, want) {
		t.Fatalf("RemoteActions: %+v, %v", actions, err)
	}
	oneAttempt("RemoteActions", call, "GET", pcsPath+"/"+testCloudPC+"/retrieveCloudPcRemoteActionResults")
	if len(g.requests()) != 5 {
		t.Errorf("%d requests, want 5", len(g.requests()))
	}
}

// Every error of the port is an *approvals.GraphError, classified for the method the
// port method uses, and the attempts come back with it.
func TestCloudPCsPortErrorsAreGraphErrors(t *testing.T) {
	t.Parallel()
	status := 0
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, status, map[string]any{"error": map[string]any{"code": "Code" + http.StatusText(status), "message": "said <no>"}})
	})
	p := cloudPCsPort(t, g, ClientOptions{MaxRetries: -1})
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	type result struct {
		err      error
		attempts int
	}
	calls := map[string]func(context.Context, string) result{
		"Get": func(ctx context.Context, id string) result {
			_, c, err := p.Get(ctx, id)
			return result{err, len(c.Attempts)}
		},
		"Resolve": func(ctx context.Context, id string) result {
			_, cs, err := p.Resolve(ctx, id)
			n := 0
			for _, c := range cs {
				n += len(c.Attempts)
			}
			return result{err, n}
		},
		"Reprovision": func(ctx context.Context, id string) result {
			c, err := p.Reprovision(ctx, id, approvals.Options{})
			return result{err, len(c.Attempts)}
		},
		"RemoteActions": func(ctx context.Context, id string) result {
			_, c, err := p.RemoteActions(ctx, id)
			return result{err, len(c.Attempts)}
		},
	}
	for _, tc := range []struct {
		name     string
		status   int
		ctx      context.Context
		id       string
		kind     map[string]approvals.GraphErrorKind // per method; "" for all
		cause    approvals.GraphCause
		attempts int
	}{
		{"403", 403, context.Background(), testCloudPC, map[string]approvals.GraphErrorKind{"": approvals.GraphSignInAgain}, approvals.CauseForbidden, 1},
		{"409", 409, context.Background(), testCloudPC, map[string]approvals.GraphErrorKind{"": approvals.GraphConflict}, approvals.CauseConflict, 1},
		{"502", 502, context.Background(), testCloudPC, map[string]approvals.GraphErrorKind{"": approvals.GraphFailed, "Reprovision": approvals.GraphOutcomeUnknown}, approvals.CauseServerError, 1},
		{"canceled", 204, canceled, testCloudPC, map[string]approvals.GraphErrorKind{"": approvals.GraphFailed}, approvals.CauseNotSent, 0},
		{"bad id", 204, context.Background(), "not a guid", map[string]approvals.GraphErrorKind{"": approvals.GraphInvalid, "Resolve": approvals.GraphInvalid}, "", 0},
	} {
		for name, call := range calls {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				status = tc.status
				before := len(g.requests())
				r := call(tc.ctx, tc.id)
				ge, ok := r.err.(*approvals.GraphError)
				if !ok {
					t.Fatalf("err %T %v, want *approvals.GraphError", r.err, r.err)
				}
				kind, ok := tc.kind[name]
				if !ok {
					kind = tc.kind[""]
				}
				if ge.Kind != kind || (tc.cause != "" && ge.Cause != tc.cause) || ge.Err == nil {
					t.Errorf("%+v, want %q %q", ge, kind, tc.cause)
				}
				wantMethod := "GET"
				if name == "Reprovision" {
					wantMethod = "POST"
				}
				if ge.Method != wantMethod {
					t.Errorf("Method %q, want %q", ge.Method, wantMethod)
				}
				if r.attempts != tc.attempts || len(g.requests())-before != tc.attempts {
					t.Errorf("%d attempts, %d requests; want %d", r.attempts, len(g.requests())-before, tc.attempts)
				}
				if tc.attempts > 0 && (ge.Status != tc.status || ge.Message != "said <no>" || !strings.HasPrefix(ge.RequestID, "server-request-")) {
					t.Errorf("facts %+v", ge)
				}
				var ours *Error
				if tc.attempts > 0 && !errors.As(r.err, &ours) {
					t.Errorf("the client's error is not kept: %v", r.err)
				}
			})
		}
	}
	// Resolve of a 404 GUID is no match, not an error, and its attempt is returned.
	status = 404
	pcs, cs, err := p.Resolve(context.Background(), testCloudPC)
	if err != nil || pcs == nil || len(pcs) != 0 || len(cs) != 1 || cs[0].Attempts[0].Status != 404 {
		t.Errorf("Resolve 404: %v, %+v, %v", pcs, cs, err)
	}
	// No error is a nil interface, not a typed nil.
	status = 204
	if _, err := p.Reprovision(context.Background(), testCloudPC, approvals.Options{}); err != nil {
		t.Errorf("Reprovision: %#v", err)
	}
}
