package fakes

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The fake tenant and app registration.
const (
	TenantID = "00000000-0000-0000-0000-0000000000aa"
	ClientID = "00000000-0000-0000-0000-0000000000bb"
)

// VerificationURI is where the user is told to enter the code.
const VerificationURI = "https://microsoft.com/devicelogin"

// DeviceCodeRequest is one device-code request the fake answered.
type DeviceCodeRequest struct {
	UserCode, DeviceCode, Scope string
	At                          time.Time
}

// TokenRequest is one call of the token endpoint.
type TokenRequest struct {
	GrantType, ClientID, Scope, Claims string
	// UserCode is the user code of the device code redeemed (device-code
	// grant only).
	UserCode string
	At       time.Time
	Status   int
	// Error is the OAuth error answered ("" on success).
	Error string
}

type codeState int

const (
	codePending codeState = iota
	codeSignedIn
	codeDeclined
	codeExpired
	codeRedeemed
)

type deviceCode struct {
	DeviceCodeRequest
	state     codeState
	username  string
	expiresAt time.Time
}

type issuedToken struct {
	username string
	issued   time.Time
	expires  time.Time
}

type refreshGrant struct {
	username, scope string
	issued          time.Time
}

// revokedAt reports whether something issued to username at issued was
// revoked since: revoking sessions kills the grants issued before it, not a
// fresh sign-in after it. Call with e.mu held.
func (e *Entra) revokedAt(username string, issued time.Time) bool {
	at, ok := e.revoked[strings.ToLower(username)]
	return ok && !issued.After(at)
}

// Entra is a fake Microsoft Entra ID token service (v2.0 endpoints, device
// code flow and refresh tokens) over TLS.
type Entra struct {
	tb  testing.TB
	srv *httptest.Server
	log safeLog

	guarded

	codes         []*deviceCode
	byDevice      map[string]*deviceCode
	byUser        map[string]*deviceCode
	returned      int
	tokens        map[string]*issuedToken
	refresh       map[string]*refreshGrant
	revoked       map[string]time.Time
	tokenReqs     []TokenRequest
	unknown       []string
	codeLifetime  time.Duration
	tokenLifetime time.Duration
	seq           int

	// fault knobs (faults.go)
	hangUntil, downUntil time.Time
	faults               []EntraFault
	// release is closed at cleanup to let go of held requests.
	release chan struct{}
}

// NewEntra starts a fake Entra ID on https://127.0.0.1; t.Cleanup closes it.
func NewEntra(t testing.TB) *Entra {
	t.Helper()
	e := &Entra{
		tb:            t,
		log:           safeLog{tb: t},
		byDevice:      map[string]*deviceCode{},
		byUser:        map[string]*deviceCode{},
		tokens:        map[string]*issuedToken{},
		refresh:       map[string]*refreshGrant{},
		revoked:       map[string]time.Time{},
		codeLifetime:  15 * time.Minute,
		tokenLifetime: time.Hour,
		release:       make(chan struct{}),
	}
	e.srv = newTLSServer(http.HandlerFunc(e.serve))
	t.Cleanup(func() {
		e.markClosed()
		// Held requests (Hang) would make srv.Close wait for them.
		close(e.release)
		e.srv.Close()
	})
	return e
}

// AuthorityHost is the authority host for azidentity
// (cloud.Configuration.ActiveDirectoryAuthorityHost), with a trailing slash.
func (e *Entra) AuthorityHost() string { return e.srv.URL + "/" }

// Issuer is the v2.0 issuer of the fake tenant.
func (e *Entra) Issuer() string { return e.srv.URL + "/" + TenantID + "/v2.0" }

// SetDeviceCodeLifetime sets expires_in of new device codes (default 15m);
// a code past it answers expired_token.
func (e *Entra) SetDeviceCodeLifetime(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.codeLifetime = d
}

// SetTokenLifetime sets expires_in of new access tokens (default 1h).
func (e *Entra) SetTokenLifetime(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tokenLifetime = d
}

// WaitDeviceCode waits for the next device-code request not yet returned by
// WaitDeviceCode.
func (e *Entra) WaitDeviceCode(t testing.TB, timeout time.Duration) DeviceCodeRequest {
	t.Helper()
	var got DeviceCodeRequest
	ok := waitUntil(timeout, e.changedC, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.returned < len(e.codes) {
			got = e.codes[e.returned].DeviceCodeRequest
			e.returned++
			return true
		}
		return false
	})
	if !ok {
		t.Fatalf("fakes: Entra: no device-code request within %v\n%s", timeout, e.Dump())
	}
	return got
}

// DeviceCodes returns every device-code request, in order.
func (e *Entra) DeviceCodes() []DeviceCodeRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]DeviceCodeRequest, len(e.codes))
	for i, c := range e.codes {
		out[i] = c.DeviceCodeRequest
	}
	return out
}

// TokenRequests returns every token-endpoint call, in order.
func (e *Entra) TokenRequests() []TokenRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]TokenRequest(nil), e.tokenReqs...)
}

// UnknownPaths returns the requests the fake answered 404, as "METHOD path".
func (e *Entra) UnknownPaths() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.unknown...)
}

func (e *Entra) setState(userCode string, st codeState, username string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.byUser[userCode]
	if c == nil {
		e.log.logf(e.closed, "fakes: Entra: unknown user code %q", userCode)
		if !e.closed {
			e.tb.Errorf("fakes: Entra: unknown user code %q", userCode)
		}
		return
	}
	c.state = st
	c.username = username
	e.changed.broadcast()
}

// SignIn completes the sign-in of userCode as username (a UPN).
func (e *Entra) SignIn(userCode, username string) { e.setState(userCode, codeSignedIn, username) }

// Decline makes the user refuse the sign-in of userCode.
func (e *Entra) Decline(userCode string) { e.setState(userCode, codeDeclined, "") }

// Expire makes userCode expire now.
func (e *Entra) Expire(userCode string) { e.setState(userCode, codeExpired, "") }

// Revoke revokes the sessions of username (an admin "revoke sessions"): the
// refresh grants issued so far then answer invalid_grant and, for Graph
// fakes that check tokens with this Entra, the access tokens issued so far
// stop working too. A sign-in after it works again.
func (e *Entra) Revoke(username string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.revoked[strings.ToLower(username)] = time.Now()
	e.changed.broadcast()
}

// AccessTokens returns every access token issued, mapped to its username.
func (e *Entra) AccessTokens() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]string, len(e.tokens))
	for tok, it := range e.tokens {
		out[tok] = it.username
	}
	return out
}

// TokenUser reports whether token is a live (issued, unexpired, not revoked)
// access token and whose.
func (e *Entra) TokenUser(token string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	it := e.tokens[token]
	if it == nil || time.Now().After(it.expires) || e.revokedAt(it.username, it.issued) {
		return "", false
	}
	return it.username, true
}

// Dump describes the recorded requests.
func (e *Entra) Dump() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "--- Entra fake: %d device codes\n", len(e.codes))
	for _, c := range e.codes {
		fmt.Fprintf(&b, "  %s user_code=%s scope=%q state=%d user=%s\n", c.At.Format("15:04:05.000"), c.UserCode, c.Scope, c.state, c.username)
	}
	fmt.Fprintf(&b, "--- token requests\n")
	for _, r := range e.tokenReqs {
		fmt.Fprintf(&b, "  %s %s code=%s status=%d error=%s\n", r.At.Format("15:04:05.000"), r.GrantType, r.UserCode, r.Status, r.Error)
	}
	for _, u := range e.unknown {
		fmt.Fprintf(&b, "  unknown: %s\n", u)
	}
	for _, f := range e.faults {
		fmt.Fprintf(&b, "  refused (%s): %s %s status=%d", f.Fault, f.At.Format("15:04:05.000"), f.Endpoint, f.Status)
		switch {
		case f.Fault != FaultHang:
		case f.Released.IsZero():
			b.WriteString(" still held")
		case f.Canceled:
			fmt.Fprintf(&b, " client gave up at %s", f.Released.Format("15:04:05.000"))
		default:
			b.WriteString(" released at close")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// ---- HTTP ----

func entraHeaders(w http.ResponseWriter, r *http.Request) (correlationID string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store, no-cache")
	h.Set("Pragma", "no-cache")
	h.Set("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("x-ms-request-id", uuid.NewString())
	h.Set("x-ms-ests-server", "2.1.99999.9 - WEULR1 ProdSlices")
	correlationID = r.Header.Get("client-request-id")
	if correlationID != "" {
		h.Set("client-request-id", correlationID)
	} else {
		correlationID = uuid.NewString()
	}
	return correlationID
}

// oauthError writes Entra's error JSON.
func oauthError(w http.ResponseWriter, status int, correlationID, code string, aadsts int, desc string) {
	now := time.Now().UTC()
	ts := now.Format("2006-01-02 15:04:05Z")
	trace := uuid.NewString()
	writeJSON(w, status, map[string]any{
		"error": code,
		"error_description": fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
			aadsts, desc, trace, correlationID, ts),
		"error_codes":    []int{aadsts},
		"timestamp":      ts,
		"trace_id":       trace,
		"correlation_id": correlationID,
		"error_uri":      fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", aadsts),
	})
}

func (e *Entra) serve(w http.ResponseWriter, r *http.Request) {
	corr := entraHeaders(w, r)
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 2 {
		e.notFound(w, r)
		return
	}
	tenant, rest := parts[0], strings.Join(parts[1:], "/")
	known := map[string]bool{
		"v2.0/.well-known/openid-configuration": true,
		"oauth2/v2.0/devicecode":                true,
		"oauth2/v2.0/token":                     true,
	}
	if !known[rest] {
		e.notFound(w, r)
		return
	}
	if strings.HasPrefix(rest, "oauth2/") && e.refuse(w, r, corr, strings.TrimPrefix(rest, "oauth2/v2.0/")) {
		return
	}
	if !strings.EqualFold(tenant, TenantID) {
		// Entra's answer for a tenant it does not know, on every endpoint,
		// OpenID discovery included: 400, error invalid_tenant, AADSTS90002.
		oauthError(w, http.StatusBadRequest, corr, "invalid_tenant", 90002,
			fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.", tenant))
		return
	}
	switch rest {
	case "v2.0/.well-known/openid-configuration":
		if r.Method != http.MethodGet {
			e.notFound(w, r)
			return
		}
		e.openIDConfig(w)
	case "oauth2/v2.0/devicecode":
		if r.Method != http.MethodPost {
			oauthError(w, http.StatusMethodNotAllowed, corr, "invalid_request", 900561, "The endpoint only accepts POST requests. Received a GET request.")
			return
		}
		e.deviceCode(w, r, corr)
	case "oauth2/v2.0/token":
		if r.Method != http.MethodPost {
			oauthError(w, http.StatusMethodNotAllowed, corr, "invalid_request", 900561, "The endpoint only accepts POST requests. Received a GET request.")
			return
		}
		e.token(w, r, corr)
	}
}

func (e *Entra) notFound(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.unknown = append(e.unknown, r.Method+" "+r.URL.RequestURI())
	e.log.logf(e.closed, "fakes: Entra: unknown request %s %s", r.Method, r.URL.RequestURI())
	e.changed.broadcast()
	e.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
}

func (e *Entra) openIDConfig(w http.ResponseWriter) {
	base := e.srv.URL + "/" + TenantID
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                base + "/v2.0",
		"request_uri_parameter_supported":       false,
		"userinfo_endpoint":                     "https://graph.microsoft.com/oidc/userinfo",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"http_logout_supported":                 true,
		"frontchannel_logout_supported":         true,
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"claims_supported": []string{"sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
			"msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver",
			"at_hash", "c_hash", "email"},
		"kerberos_endpoint":     base + "/kerberos",
		"tenant_region_scope":   "EU",
		"cloud_instance_name":   "microsoftonline.com",
		"cloud_graph_host_name": "graph.windows.net",
		"msgraph_host":          "graph.microsoft.com",
		"rbac_url":              "https://pas.windows.net",
	})
}

func checkClient(w http.ResponseWriter, corr, clientID string) bool {
	switch {
	case clientID == "":
		oauthError(w, http.StatusBadRequest, corr, "invalid_request", 900144,
			"The request body must contain the following parameter: 'client_id'.")
		return false
	case !strings.EqualFold(clientID, ClientID):
		oauthError(w, http.StatusBadRequest, corr, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory 'Fake Tenant'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID))
		return false
	}
	return true
}

func (e *Entra) deviceCode(w http.ResponseWriter, r *http.Request, corr string) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, corr, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
		return
	}
	if !checkClient(w, corr, r.PostForm.Get("client_id")) {
		return
	}
	scope := r.PostForm.Get("scope")
	if strings.TrimSpace(scope) == "" {
		oauthError(w, http.StatusBadRequest, corr, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
		return
	}
	e.mu.Lock()
	var userCode string
	for userCode == "" || e.byUser[userCode] != nil {
		userCode = randUpper(9)
	}
	c := &deviceCode{
		DeviceCodeRequest: DeviceCodeRequest{
			UserCode:   userCode,
			DeviceCode: "DAQABIQEAAAB" + randB64(120),
			Scope:      scope,
			At:         time.Now(),
		},
		expiresAt: time.Now().Add(e.codeLifetime),
	}
	e.codes = append(e.codes, c)
	e.byUser[c.UserCode] = c
	e.byDevice[c.DeviceCode] = c
	lifetime := e.codeLifetime
	e.changed.broadcast()
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"user_code":        c.UserCode,
		"device_code":      c.DeviceCode,
		"verification_uri": VerificationURI,
		"expires_in":       int(lifetime / time.Second),
		"interval":         5,
		"message": fmt.Sprintf("To sign in, use a web browser to open the page %s and enter the code %s to authenticate.",
			VerificationURI, c.UserCode),
	})
}

// grantedScope is what Entra reports as granted: the requested scopes less
// offline_access.
func grantedScope(requested string) string {
	var out []string
	for _, s := range strings.Fields(requested) {
		if !strings.EqualFold(s, "offline_access") {
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}

// oid is the stable object id of a username.
func oid(username string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("fakes-entra-user:"+strings.ToLower(username))).String()
}

func b64json(v any) string { return base64.RawURLEncoding.EncodeToString(mustJSON(v)) }

func (e *Entra) idToken(username string, now time.Time) string {
	id := oid(username)
	name := username
	if i := strings.IndexByte(name, '@'); i > 0 {
		name = name[:i]
	}
	header := map[string]any{"typ": "JWT", "alg": "RS256", "kid": "fakes-entra-key"}
	claims := map[string]any{
		"aud":                ClientID,
		"iss":                e.Issuer(),
		"iat":                now.Unix(),
		"nbf":                now.Unix(),
		"exp":                now.Add(time.Hour).Unix(),
		"name":               name,
		"oid":                id,
		"preferred_username": username,
		"rh":                 "0.fake." + randB64(8),
		"sub":                randB64(32),
		"tid":                TenantID,
		"uti":                randB64(16),
		"ver":                "2.0",
	}
	return b64json(header) + "." + b64json(claims) + "." + randB64(256)
}

// issue mints tokens for username. Call with e.mu held.
func (e *Entra) issue(username, scope string) map[string]any {
	now := time.Now()
	e.seq++
	at := fmt.Sprintf("at-%d-%s", e.seq, randB64(24))
	rt := "rt-" + randB64(48)
	e.tokens[at] = &issuedToken{username: username, issued: now, expires: now.Add(e.tokenLifetime)}
	e.refresh[rt] = &refreshGrant{username: username, scope: scope, issued: now}
	secs := int(e.tokenLifetime / time.Second)
	return map[string]any{
		"token_type":     "Bearer",
		"scope":          grantedScope(scope),
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   at,
		"refresh_token":  rt,
		"id_token":       e.idToken(username, now),
		"client_info":    b64json(map[string]string{"uid": oid(username), "utid": TenantID}),
	}
}

func (e *Entra) token(w http.ResponseWriter, r *http.Request, corr string) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, corr, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	f := r.PostForm
	req := TokenRequest{GrantType: f.Get("grant_type"), ClientID: f.Get("client_id"), Scope: f.Get("scope"), Claims: f.Get("claims"), At: time.Now()}
	rec := &responseRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		e.mu.Lock()
		req.Status, req.Error = rec.status, rec.oauthErr
		e.tokenReqs = append(e.tokenReqs, req)
		e.changed.broadcast()
		e.mu.Unlock()
	}()
	w = rec
	if !checkClient(w, corr, req.ClientID) {
		rec.oauthErr = "invalid_client"
		return
	}
	fail := func(code string, aadsts int, desc string) {
		rec.oauthErr = code
		oauthError(w, http.StatusBadRequest, corr, code, aadsts, desc)
	}
	switch req.GrantType {
	case "device_code", "urn:ietf:params:oauth:grant-type:device_code":
		e.mu.Lock()
		c := e.byDevice[f.Get("device_code")]
		if c == nil {
			e.mu.Unlock()
			fail("bad_verification_code", 70000, "The provided value for the input parameter 'device_code' is not valid.")
			return
		}
		req.UserCode = c.UserCode
		if c.state == codePending && time.Now().After(c.expiresAt) {
			c.state = codeExpired
		}
		switch c.state {
		case codePending:
			e.mu.Unlock()
			fail("authorization_pending", 70016, "OAuth 2.0 device flow error. Authorization is pending. Continue polling.")
		case codeDeclined:
			e.mu.Unlock()
			fail("authorization_declined", 70000, "The user has declined to authorize the application.")
		case codeExpired:
			e.mu.Unlock()
			fail("expired_token", 70020, "The provided value for the input parameter 'device_code' is not valid. This device code has expired.")
		case codeRedeemed:
			e.mu.Unlock()
			fail("invalid_grant", 70000, "The provided value for the input parameter 'device_code' is not valid. This device code has already been used to retrieve a token.")
		case codeSignedIn:
			c.state = codeRedeemed
			scope := req.Scope
			if scope == "" {
				scope = c.Scope
			}
			body := e.issue(c.username, scope)
			e.changed.broadcast()
			e.mu.Unlock()
			writeJSON(w, http.StatusOK, body)
		}
	case "refresh_token":
		e.mu.Lock()
		g := e.refresh[f.Get("refresh_token")]
		switch {
		case g == nil:
			e.mu.Unlock()
			fail("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
		case e.revokedAt(g.username, g.issued):
			e.mu.Unlock()
			fail("invalid_grant", 50173, "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password.")
		default:
			scope := req.Scope
			if scope == "" {
				scope = g.scope
			}
			body := e.issue(g.username, scope)
			e.changed.broadcast()
			e.mu.Unlock()
			writeJSON(w, http.StatusOK, body)
		}
	case "":
		fail("invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
	default:
		rec.oauthErr = "unsupported_grant_type"
		oauthError(w, http.StatusBadRequest, corr, "unsupported_grant_type", 70003,
			"The app requested an unsupported grant type '"+req.GrantType+"'.")
	}
}

type responseRecorder struct {
	http.ResponseWriter
	status   int
	oauthErr string
}

func (r *responseRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}
