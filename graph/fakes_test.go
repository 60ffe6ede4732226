package graph

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

const (
	testTenant   = "11111111-2222-3333-4444-555555555555"
	testClientID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
	testUPN      = "approver@contoso.example"
	testOID      = "99999999-8888-7777-6666-555555555555"
	testCloudPC  = "ac74ae8b-85f7-4272-88cc-5419267403ed"
)

// Device-code outcomes the fake Entra reports on the next token poll.
const (
	pending  = ""
	approve  = "approve"
	decline  = "decline"
	expireIt = "expire"
)

// fakeEntra is a minimal Entra ID: OpenID configuration, devicecode and token endpoints.
type fakeEntra struct {
	srv       *httptest.Server
	expiresIn int

	mu           sync.Mutex
	outcome      string
	issued       []string // access tokens issued, in order
	refreshFails bool
	claimsSeen   []string

	devicecodeReqs, deviceTokenReqs, refreshReqs atomic.Int32
}

func newFakeEntra(t *testing.T) *fakeEntra {
	t.Helper()
	f := &fakeEntra{expiresIn: 900}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /"+testTenant+"/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		base := f.srv.URL + "/" + testTenant
		writeJSON(w, 200, map[string]any{
			"token_endpoint":                base + "/oauth2/v2.0/token",
			"authorization_endpoint":        base + "/oauth2/v2.0/authorize",
			"device_authorization_endpoint": base + "/oauth2/v2.0/devicecode",
			"issuer":                        base + "/v2.0",
		})
	})
	mux.HandleFunc("POST /"+testTenant+"/oauth2/v2.0/devicecode", func(w http.ResponseWriter, r *http.Request) {
		f.devicecodeReqs.Add(1)
		if err := r.ParseForm(); err != nil || r.PostForm.Get("client_id") != testClientID {
			writeJSON(w, 400, map[string]any{"error": "invalid_client"})
			return
		}
		if !strings.Contains(r.PostForm.Get("scope"), Scope) {
			writeJSON(w, 400, map[string]any{"error": "invalid_scope"})
			return
		}
		f.mu.Lock()
		if c := r.PostForm.Get("claims"); c != "" {
			f.claimsSeen = append(f.claimsSeen, c)
		}
		f.mu.Unlock()
		writeJSON(w, 200, map[string]any{
			"user_code":        "ABCD-EFGH",
			"device_code":      "device-code-1",
			"verification_uri": "https://microsoft.com/devicelogin",
			"expires_in":       f.expiresIn,
			"interval":         5,
			"message":          "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCD-EFGH to authenticate.",
		})
	})
	mux.HandleFunc("POST /"+testTenant+"/oauth2/v2.0/token", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.PostForm.Get("client_id") != testClientID {
			writeJSON(w, 400, map[string]any{"error": "invalid_client"})
			return
		}
		switch gt := r.PostForm.Get("grant_type"); gt {
		case "device_code", "urn:ietf:params:oauth:grant-type:device_code":
			f.deviceTokenReqs.Add(1)
			if r.PostForm.Get("device_code") != "device-code-1" {
				writeJSON(w, 400, map[string]any{"error": "bad_verification_code"})
				return
			}
			f.mu.Lock()
			outcome := f.outcome
			f.mu.Unlock()
			switch outcome {
			case pending:
				writeJSON(w, 400, map[string]any{"error": "authorization_pending", "error_description": "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending."})
			case decline:
				writeJSON(w, 400, map[string]any{"error": "authorization_declined", "error_description": "AADSTS70000: The user declined the request.", "error_codes": []int{70000}})
			case expireIt:
				writeJSON(w, 400, map[string]any{"error": "expired_token", "error_description": "AADSTS70020: The provided value for the input parameter 'device_code' is not valid. This device code has expired.", "error_codes": []int{70020}})
			default:
				f.writeToken(w)
			}
		case "refresh_token":
			f.refreshReqs.Add(1)
			f.mu.Lock()
			fails := f.refreshFails
			f.mu.Unlock()
			if fails {
				writeJSON(w, 400, map[string]any{"error": "invalid_grant", "suberror": "interaction_required"})
				return
			}
			f.writeToken(w)
		default:
			writeJSON(w, 400, map[string]any{"error": "unsupported_grant_type", "error_description": gt})
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("fake Entra: unexpected %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
	})
	f.srv = httptest.NewTLSServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEntra) setOutcome(o string) {
	f.mu.Lock()
	f.outcome = o
	f.mu.Unlock()
}

func (f *fakeEntra) issuedTokens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.issued...)
}

func (f *fakeEntra) writeToken(w http.ResponseWriter) {
	f.mu.Lock()
	tok := fmt.Sprintf("access-token-%d", len(f.issued)+1)
	f.issued = append(f.issued, tok)
	f.mu.Unlock()
	now := time.Now().Unix()
	b64 := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	idToken := b64(map[string]any{"alg": "none", "typ": "JWT"}) + "." + b64(map[string]any{
		"aud":                testClientID,
		"iss":                f.srv.URL + "/" + testTenant + "/v2.0",
		"tid":                testTenant,
		"oid":                testOID,
		"sub":                "subject",
		"preferred_username": testUPN,
		"name":               "Approver",
		"ver":                "2.0",
		"iat":                now,
		"nbf":                now,
		"exp":                now + 3600,
	}) + ".unsigned"
	writeJSON(w, 200, map[string]any{
		"token_type":     "Bearer",
		"scope":          Scope,
		"expires_in":     3600,
		"ext_expires_in": 3600,
		"access_token":   tok,
		"refresh_token":  "refresh-token",
		"id_token":       idToken,
		"client_info":    b64(map[string]string{"uid": testOID, "utid": testTenant}),
	})
}

func (f *fakeEntra) authenticator(t *testing.T) *Authenticator {
	t.Helper()
	a, err := NewAuthenticator(SignInConfig{
		TenantID:      testTenant,
		ClientID:      testClientID,
		AuthorityHost: f.srv.URL,
		Transport:     f.srv.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// graphRequest is what the fake Graph saw.
type graphRequest struct {
	At                      time.Time
	Proto                   string // HTTP/1.1 or HTTP/2.0
	Method, Path, RawQuery  string
	Prefer, Accept          string
	Authorization           string
	ClientRequestID         string
	UserAgent               string
	ContentLength           int64
	TransferEncodingChunked bool
	ContentType             string
	Body                    string
}

// fakeGraph answers request n (0-based) with respond(n, w, r).
type fakeGraph struct {
	srv     *httptest.Server
	respond func(n int, w http.ResponseWriter, r *http.Request)

	mu   sync.Mutex
	reqs []graphRequest
}

func newFakeGraph(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *fakeGraph {
	t.Helper()
	return newFakeGraphServer(t, respond, false)
}

// newFakeGraphServer is newFakeGraph speaking HTTP/2 (as Graph does) when http2 is set;
// the fake's Client then negotiates it too.
func newFakeGraphServer(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request), http2 bool) *fakeGraph {
	t.Helper()
	g := &fakeGraph{respond: respond}
	g.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		g.mu.Lock()
		n := len(g.reqs)
		g.reqs = append(g.reqs, graphRequest{
			At:                      time.Now(),
			Proto:                   r.Proto,
			Method:                  r.Method,
			Path:                    r.URL.EscapedPath(),
			RawQuery:                r.URL.RawQuery,
			Prefer:                  r.Header.Get("Prefer"),
			Accept:                  r.Header.Get("Accept"),
			Authorization:           r.Header.Get("Authorization"),
			ClientRequestID:         r.Header.Get("client-request-id"),
			UserAgent:               r.Header.Get("User-Agent"),
			ContentLength:           r.ContentLength,
			TransferEncodingChunked: len(r.TransferEncoding) > 0,
			ContentType:             r.Header.Get("Content-Type"),
			Body:                    string(body),
		})
		g.mu.Unlock()
		w.Header().Set("request-id", fmt.Sprintf("server-request-%d", n+1))
		if crid := r.Header.Get("client-request-id"); crid != "" {
			w.Header().Set("client-request-id", crid)
		}
		g.respond(n, w, r)
	}))
	g.srv.EnableHTTP2 = http2
	g.srv.StartTLS()
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGraph) requests() []graphRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]graphRequest(nil), g.reqs...)
}

func (g *fakeGraph) client(t *testing.T, cred azcore.TokenCredential, opts ClientOptions) *Client {
	t.Helper()
	if opts.BaseURL == "" {
		opts.BaseURL = g.srv.URL + "/beta"
	}
	if opts.Transport == nil {
		opts.Transport = g.srv.Client()
	}
	c, err := NewClient(cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// staticCred is a TokenCredential handing out a fixed token.
type staticCred struct {
	token        string
	failOnClaims bool
	fail         error

	mu    sync.Mutex
	calls []policy.TokenRequestOptions
}

func (c *staticCred) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	c.calls = append(c.calls, opts)
	c.mu.Unlock()
	if c.fail != nil {
		return azcore.AccessToken{}, c.fail
	}
	if opts.Claims != "" && c.failOnClaims {
		return azcore.AccessToken{}, &azidentity.AuthenticationRequiredError{TokenRequestOptions: opts}
	}
	return azcore.AccessToken{Token: c.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func (c *staticCred) requests() []policy.TokenRequestOptions {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]policy.TokenRequestOptions(nil), c.calls...)
}
