package graph

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

const (
	discoTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	discoDomain = "contoso.example"
)

// entraLike serves discovery the way Entra does for discoTenant (by GUID or
// by discoDomain), common and organizations ({tenantid} issuer) and
// consumers, and answers 400 AADSTS90002 for any other tenant. It records
// the paths asked.
type entraLike struct {
	srv   *httptest.Server
	mu    sync.Mutex
	paths []string
}

func newEntraLike(t *testing.T) *entraLike {
	e := &entraLike{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.paths = append(e.paths, r.URL.Path)
		e.mu.Unlock()
		tenant, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		if rest != "v2.0/.well-known/openid-configuration" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			return
		}
		doc := func(id string) {
			base := e.srv.URL + "/" + id
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			json.NewEncoder(w).Encode(map[string]any{
				"issuer":                        base + "/v2.0",
				"token_endpoint":                base + "/oauth2/v2.0/token",
				"device_authorization_endpoint": base + "/oauth2/v2.0/devicecode",
				"authorization_endpoint":        base + "/oauth2/v2.0/authorize",
			})
		}
		switch strings.ToLower(tenant) {
		case discoTenant, discoDomain:
			doc(discoTenant)
		case "common", "organizations":
			doc("{tenantid}")
		case "consumers":
			doc(consumersTenant)
		default:
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]any{
				"error": "invalid_tenant",
				"error_description": "AADSTS90002: Tenant '" + tenant + "' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.\r\n" +
					"Trace ID: 2e35e78b-e885-4bdd-90e2-d7beb467df00\r\nCorrelation ID: 0774b819-134d-4815-9573-a31a98397420\r\nTimestamp: 2025-08-18 15:26:14Z",
				"error_codes":    []int{90002},
				"timestamp":      "2025-08-18 15:26:14Z",
				"trace_id":       "2e35e78b-e885-4bdd-90e2-d7beb467df00",
				"correlation_id": "0774b819-134d-4815-9573-a31a98397420",
				"error_uri":      "https://login.microsoftonline.com/error?code=90002",
			})
		}
	}))
	t.Cleanup(e.srv.Close)
	if !strings.HasPrefix(e.srv.URL, "http://127.0.0.1:") {
		t.Fatalf("test server at %s, want 127.0.0.1", e.srv.URL)
	}
	return e
}

func TestDiscoverTenantKnown(t *testing.T) {
	t.Parallel()
	e := newEntraLike(t)
	ctx := context.Background()
	for _, tenant := range []string{discoTenant, strings.ToUpper(discoTenant), discoDomain} {
		info, err := DiscoverTenant(ctx, e.srv.URL+"/", tenant, nil)
		if err != nil {
			t.Fatalf("%s: %v", tenant, err)
		}
		if info.ID != discoTenant || info.Issuer != e.srv.URL+"/"+discoTenant+"/v2.0" ||
			info.TokenEndpoint == "" || info.DeviceAuthorizationEndpoint == "" {
			t.Errorf("%s: info = %+v", tenant, info)
		}
	}
	// The authority without its trailing slash is the same authority.
	if err := CheckTenant(ctx, e.srv.URL, discoTenant, nil); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if want := "/" + discoTenant + "/v2.0/.well-known/openid-configuration"; e.paths[0] != want || e.paths[len(e.paths)-1] != want {
		t.Errorf("paths asked: %q, want %q", e.paths, want)
	}
}

func TestDiscoverTenantUnknown(t *testing.T) {
	t.Parallel()
	e := newEntraLike(t)
	const wrong = "11111111-2222-3333-4444-555555555555"
	err := CheckTenant(context.Background(), e.srv.URL+"/", wrong, nil)
	if !errors.Is(err, ErrUnknownTenant) || errors.Is(err, ErrEntraUnreachable) {
		t.Fatalf("err = %v, want ErrUnknownTenant only", err)
	}
	var te *TenantError
	if !errors.As(err, &te) || !te.Unknown || te.Code != "AADSTS90002" || te.Tenant != wrong ||
		te.CorrelationID != "0774b819-134d-4815-9573-a31a98397420" {
		t.Fatalf("TenantError = %+v", te)
	}
	// One line: Entra's trace lines are dropped.
	if msg := err.Error(); !strings.Contains(msg, wrong) || !strings.Contains(msg, "AADSTS90002: Tenant") || strings.ContainsAny(msg, "\r\n") || strings.Contains(msg, "Trace ID") {
		t.Errorf("message %q", msg)
	}
	// A domain Entra does not know.
	if err := CheckTenant(context.Background(), e.srv.URL+"/", "nope.example", nil); !errors.Is(err, ErrUnknownTenant) {
		t.Errorf("unknown domain: %v", err)
	}
}

// Entra refuses a tenant string that is neither a GUID nor a domain with
// AADSTS900023 and error invalid_request: unknown too.
func TestDiscoverTenantInvalidIdentifier(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"invalid_request","error_description":"AADSTS900023: Specified tenant identifier 'x_y' is neither a valid DNS name, nor a valid external domain.\r\nTrace ID: t\r\nCorrelation ID: c\r\nTimestamp: 2025-01-01 00:00:00Z","error_codes":[900023],"correlation_id":"c"}`))
	}))
	defer srv.Close()
	err := CheckTenant(context.Background(), srv.URL, "x_y", nil)
	var te *TenantError
	if !errors.Is(err, ErrUnknownTenant) || !errors.As(err, &te) || te.Code != "AADSTS900023" {
		t.Fatalf("err = %v (%+v)", err, te)
	}
}

// The document is found but names no single tenant, or another one: a
// TenantError, not an unknown tenant.
func TestDiscoverTenantNotOneTenant(t *testing.T) {
	t.Parallel()
	e := newEntraLike(t)
	for _, tenant := range []string{"common", "organizations", "consumers"} {
		err := CheckTenant(context.Background(), e.srv.URL, tenant, nil)
		var te *TenantError
		if !errors.As(err, &te) || te.Unknown || errors.Is(err, ErrUnknownTenant) || errors.Is(err, ErrEntraUnreachable) {
			t.Errorf("%s: err = %v", tenant, err)
		}
	}

	// An issuer naming another tenant than the GUID asked for.
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"issuer":"https://login.microsoftonline.com/` + discoTenant + `/v2.0","token_endpoint":"https://login.microsoftonline.com/` + discoTenant + `/oauth2/v2.0/token"}`))
	}))
	defer other.Close()
	err := CheckTenant(context.Background(), other.URL, "11111111-2222-3333-4444-555555555555", nil)
	var te *TenantError
	if !errors.As(err, &te) || te.Unknown || !strings.Contains(err.Error(), "names another tenant") {
		t.Errorf("mismatched issuer: %v", err)
	}
	// A domain resolves to whatever GUID the issuer names.
	if info, err := DiscoverTenant(context.Background(), other.URL, discoDomain, nil); err != nil || info.ID != discoTenant {
		t.Errorf("domain: %+v, %v", info, err)
	}
}

func TestDiscoverTenantUnreachable(t *testing.T) {
	t.Parallel()
	serve := func(status int, contentType, body string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if contentType != "" {
				w.Header().Set("Content-Type", contentType)
			}
			if status == http.StatusFound {
				w.Header().Set("Location", "https://elsewhere.example/")
			}
			w.WriteHeader(status)
			w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	cases := map[string]struct {
		authority string
		status    int
		temporary bool
	}{
		"connection refused": {closedURL, 0, true},
		"503 from Entra": {serve(503, "application/json; charset=utf-8",
			`{"error":"temporarily_unavailable","error_description":"AADSTS90006: The service is temporarily unavailable.","error_codes":[90006]}`).URL, 503, true},
		"429":                    {serve(429, "text/plain", "slow down").URL, 429, true},
		"404 html":               {serve(404, "text/html", "<html>not here</html>").URL, 404, false},
		"200 html":               {serve(200, "text/html", "<html>captive portal</html>").URL, 200, false},
		"200 json, no issuer":    {serve(200, "application/json", `{"hello":"world"}`).URL, 200, false},
		"redirect, not followed": {serve(http.StatusFound, "text/html", "").URL, http.StatusFound, false},
		"400 not Entra's":        {serve(400, "application/json", `{"message":"bad"}`).URL, 400, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := CheckTenant(context.Background(), c.authority, discoTenant, nil)
			var de *DiscoveryError
			if !errors.Is(err, ErrEntraUnreachable) || errors.Is(err, ErrUnknownTenant) || !errors.As(err, &de) {
				t.Fatalf("err = %v, want a DiscoveryError", err)
			}
			if de.StatusCode != c.status || de.Temporary() != c.temporary {
				t.Errorf("status %d temporary %v, want %d %v (%v)", de.StatusCode, de.Temporary(), c.status, c.temporary, err)
			}
			if !strings.Contains(err.Error(), "/"+discoTenant+"/v2.0/.well-known/openid-configuration") {
				t.Errorf("message %q does not say what was asked", err)
			}
		})
	}
}

func TestDiscoverTenantTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	begin := time.Now()
	err := CheckTenant(ctx, srv.URL, discoTenant, nil)
	if !errors.Is(err, ErrEntraUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestDiscoverTenantBadAuthority(t *testing.T) {
	t.Parallel()
	for _, a := range []string{"not a url", "ftp://login.example/", "/relative/"} {
		if err := CheckTenant(context.Background(), a, discoTenant, nil); !errors.Is(err, ErrEntraUnreachable) {
			t.Errorf("%q: %v", a, err)
		}
	}
	if err := CheckTenant(context.Background(), "https://127.0.0.1:1/", " ", nil); err == nil || errors.Is(err, ErrUnknownTenant) {
		t.Errorf("empty tenant: %v", err)
	}
}

// Against the fake Entra (TLS, the bot's view of it).
func TestDiscoverTenantFakeEntra(t *testing.T) {
	t.Parallel()
	e := fakes.NewEntra(t)
	info, err := DiscoverTenant(context.Background(), e.AuthorityHost(), fakes.TenantID, fakes.TLSClient())
	if err != nil || info.ID != fakes.TenantID || info.Issuer != e.Issuer() {
		t.Fatalf("known tenant: %+v, %v", info, err)
	}
	err = CheckTenant(context.Background(), e.AuthorityHost(), "11111111-1111-1111-1111-111111111111", fakes.TLSClient())
	var te *TenantError
	if !errors.Is(err, ErrUnknownTenant) || !errors.As(err, &te) || te.Code != "AADSTS90002" {
		t.Fatalf("unknown tenant: %v", err)
	}
	// Without trusting the fake's certificate, the client gets no answer.
	if err := CheckTenant(context.Background(), e.AuthorityHost(), fakes.TenantID, &http.Client{}); !errors.Is(err, ErrEntraUnreachable) {
		t.Fatalf("untrusted certificate: %v", err)
	}
}
