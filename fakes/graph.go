package fakes

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Response is a canned Graph answer.
type Response struct {
	Status int // 0: the endpoint's success status (204 for reprovision, else 200)
	Header http.Header
	Body   string
	// Delay is waited before answering; if the client gives up first the
	// request is recorded as Canceled (its side effects still happen, as on
	// the real service).
	Delay time.Duration

	errCode, errMessage string // set by GraphError: body rendered at serve time
}

// GraphError is an answer in Graph's error shape
// {"error":{"code","message","innerError":{"date","request-id","client-request-id"}}},
// the ids filled in at serve time, Content-Type application/json.
func GraphError(status int, code, message string) Response {
	return Response{Status: status, errCode: code, errMessage: message,
		Body: string(graphErrorBody(code, message, "", ""))}
}

// Throttled is a 429 (or 503) answer with Retry-After: seconds.
func Throttled(status, retryAfterSeconds int) Response {
	code, msg := "TooManyRequests", "Too many requests."
	if status == http.StatusServiceUnavailable {
		code, msg = "ServiceUnavailable", "The service is temporarily unavailable."
	}
	r := GraphError(status, code, msg)
	r.Header = http.Header{"Retry-After": {strconv.Itoa(retryAfterSeconds)}}
	return r
}

// ClaimsChallenge is a continuous-access-evaluation challenge: status (401,
// in some reports 403) with WWW-Authenticate error="insufficient_claims" and
// a base64 claims value; the client must get a new token with those claims.
func ClaimsChallenge(status int) Response {
	claims := fmt.Sprintf(`{"access_token":{"nbf":{"essential":true,"value":"%d"}}}`, time.Now().Unix())
	r := GraphError(status, "InvalidAuthenticationToken",
		"Continuous access evaluation resulted in challenge with result: InteractionRequired and code: TokenIssuedBeforeRevocationTimestamp")
	r.Header = http.Header{"Www-Authenticate": {`Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000", error="insufficient_claims", claims="` +
		base64.StdEncoding.EncodeToString([]byte(claims)) + `"`}}
	return r
}

func graphErrorBody(code, message, requestID, clientRequestID string) []byte {
	type inner struct {
		Date            string `json:"date"`
		RequestID       string `json:"request-id"`
		ClientRequestID string `json:"client-request-id"`
	}
	type body struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError inner  `json:"innerError"`
	}
	return mustJSON(map[string]any{"error": body{Code: code, Message: message, InnerError: inner{
		Date: time.Now().UTC().Format("2006-01-02T15:04:05"), RequestID: requestID, ClientRequestID: clientRequestID,
	}}})
}

// GraphRequest is one request received by the Graph fake.
type GraphRequest struct {
	Method, Path, RawQuery, Authorization string
	// ClientRequestID is the client-request-id the client sent ("" if none).
	ClientRequestID, RequestID string
	Body                       string
	At                         time.Time
	// Status is the status answered (0 while in flight or if canceled).
	Status   int
	Canceled bool
}

// CloudPC is a Cloud PC the fake knows.
type CloudPC struct {
	ID, DisplayName, UserPrincipalName, ManagedDeviceName, ServicePlanName, ProvisioningPolicyName string
	// Status is the beta status (default "provisioned").
	Status       string
	LastModified time.Time
}

type remoteAction struct {
	name           string
	start, updated time.Time
}

// Graph is a fake Microsoft Graph over TLS serving the Cloud PC endpoints
// under /beta and /v1.0.
type Graph struct {
	tb  testing.TB
	srv *httptest.Server
	log safeLog

	mu      sync.Mutex
	changed notifier
	closed  bool

	queues  map[string][]Response
	reqs    []GraphRequest
	pcs     map[string]*CloudPC
	pcOrder []string
	actions map[string][]*remoteAction
	entra   *Entra
}

// NewGraph starts a fake Graph on https://127.0.0.1; t.Cleanup closes it.
func NewGraph(t testing.TB) *Graph {
	t.Helper()
	g := &Graph{
		tb:      t,
		log:     safeLog{tb: t},
		queues:  map[string][]Response{},
		pcs:     map[string]*CloudPC{},
		actions: map[string][]*remoteAction{},
	}
	g.srv = newTLSServer(http.HandlerFunc(g.serve))
	t.Cleanup(func() {
		g.mu.Lock()
		g.closed = true
		g.changed.broadcast()
		g.mu.Unlock()
		g.srv.Close()
	})
	return g
}

// URL is the Graph base URL, https://127.0.0.1:PORT/beta (no trailing slash).
func (g *Graph) URL() string { return g.srv.URL + "/beta" }

// Root is https://127.0.0.1:PORT (append /v1.0 or /beta).
func (g *Graph) Root() string { return g.srv.URL }

// RequireTokensFrom makes the fake accept only live access tokens issued by
// e: unknown or expired tokens get 401 InvalidAuthenticationToken, tokens of
// a revoked user get a claims challenge (401 insufficient_claims). Without
// it any "Bearer x" is accepted.
func (g *Graph) RequireTokensFrom(e *Entra) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.entra = e
}

func queueKey(method, rel string) string {
	return strings.ToUpper(method) + " " + strings.ToLower(strings.TrimSuffix(rel, "/"))
}

// Queue queues answers for method on path (relative to the version, e.g.
// "/deviceManagement/virtualEndpoint/cloudPCs/pc1"; case-insensitive), served
// in order before the built-in behaviour.
func (g *Graph) Queue(method, path string, rs ...Response) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := queueKey(method, path)
	g.queues[k] = append(g.queues[k], rs...)
}

// QueueReprovision queues answers for POST .../cloudPCs/{id}/reprovision;
// once they are used up the fake answers 204 No Content.
func (g *Graph) QueueReprovision(cloudPCID string, rs ...Response) {
	g.Queue(http.MethodPost, "/deviceManagement/virtualEndpoint/cloudPCs/"+cloudPCID+"/reprovision", rs...)
}

// AddCloudPC adds (or replaces) a Cloud PC. Once any Cloud PC is added,
// requests for unknown ids answer 404.
func (g *Graph) AddCloudPC(pc CloudPC) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if pc.Status == "" {
		pc.Status = "provisioned"
	}
	if pc.LastModified.IsZero() {
		pc.LastModified = time.Now().UTC()
	}
	if _, ok := g.pcs[pc.ID]; !ok {
		g.pcOrder = append(g.pcOrder, pc.ID)
	}
	g.pcs[pc.ID] = &pc
	g.changed.broadcast()
}

// CloudPC returns the current state of a Cloud PC.
func (g *Graph) CloudPC(id string) (CloudPC, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	pc := g.pcs[id]
	if pc == nil {
		return CloudPC{}, false
	}
	return *pc, true
}

// SetCloudPCStatus sets a Cloud PC's status (e.g. "provisioned" when a
// reprovision finished, "failed").
func (g *Graph) SetCloudPCStatus(id, status string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if pc := g.pcs[id]; pc != nil {
		pc.Status = status
		pc.LastModified = time.Now().UTC()
		for _, a := range g.actions[id] {
			a.updated = pc.LastModified
		}
	}
	g.changed.broadcast()
}

// Requests returns every request received, in order.
func (g *Graph) Requests() []GraphRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]GraphRequest(nil), g.reqs...)
}

// WaitFor polls cond until true or fails the test after timeout.
func (g *Graph) WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	if !waitUntil(timeout, g.changedC, cond) {
		t.Fatalf("fakes: Graph: timed out after %v waiting for %s\n%s", timeout, msg, g.Dump())
	}
}

func (g *Graph) changedC() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed.c()
}

// Dump describes the recorded requests.
func (g *Graph) Dump() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "--- Graph fake: %d requests\n", len(g.reqs))
	for _, r := range g.reqs {
		fmt.Fprintf(&b, "  %s %s %s?%s status=%d canceled=%v client-request-id=%s body=%s\n",
			r.At.Format("15:04:05.000"), r.Method, r.Path, r.RawQuery, r.Status, r.Canceled, r.ClientRequestID, clip(r.Body, 200))
	}
	return b.String()
}

const odataJSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"

type graphCall struct {
	g               *Graph
	w               http.ResponseWriter
	r               *http.Request
	idx             int
	requestID       string
	clientRequestID string
	version         string
}

func (c *graphCall) finish(status int, canceled bool) {
	c.g.mu.Lock()
	c.g.reqs[c.idx].Status = status
	c.g.reqs[c.idx].Canceled = canceled
	c.g.changed.broadcast()
	c.g.mu.Unlock()
}

func (c *graphCall) write(rs Response) {
	if rs.Delay > 0 {
		t := time.NewTimer(rs.Delay)
		select {
		case <-t.C:
		case <-c.r.Context().Done():
			t.Stop()
			c.finish(0, true)
			return
		}
	}
	status := rs.Status
	if status == 0 {
		status = http.StatusOK
	}
	h := c.w.Header()
	for k, vs := range rs.Header {
		h[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	body := []byte(rs.Body)
	if rs.errCode != "" {
		body = graphErrorBody(rs.errCode, rs.errMessage, c.requestID, c.clientRequestID)
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "application/json")
		}
	}
	if len(body) > 0 && h.Get("Content-Type") == "" {
		h.Set("Content-Type", odataJSON)
	}
	if status != http.StatusNoContent && h.Get("Content-Type") == odataJSON {
		h.Set("OData-Version", "4.0")
	}
	c.w.WriteHeader(status)
	if status != http.StatusNoContent && status != http.StatusNotModified {
		_, _ = c.w.Write(body)
	}
	c.finish(status, false)
}

func (c *graphCall) json(status int, v any) {
	c.write(Response{Status: status, Body: string(mustJSON(v))})
}

func (c *graphCall) fail(status int, code, message string) {
	c.write(GraphError(status, code, message))
}

func (g *Graph) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 10<<20))
	c := &graphCall{g: g, w: w, r: r, requestID: uuid.NewString(), clientRequestID: r.Header.Get("client-request-id")}
	g.mu.Lock()
	c.idx = len(g.reqs)
	g.reqs = append(g.reqs, GraphRequest{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Authorization: r.Header.Get("Authorization"),
		ClientRequestID: c.clientRequestID, RequestID: c.requestID, Body: string(body), At: time.Now(),
	})
	entra := g.entra
	g.changed.broadcast()
	g.mu.Unlock()
	if c.clientRequestID == "" {
		c.clientRequestID = c.requestID
	}

	h := w.Header()
	h.Set("request-id", c.requestID)
	h.Set("client-request-id", c.clientRequestID)
	h.Set("x-ms-ags-diagnostic", `{"ServerInfo":{"DataCenter":"West Europe","Slice":"E","Ring":"5","ScaleUnit":"003","RoleInstance":"AM2PEPF0000FAKE"}}`)
	h.Set("Strict-Transport-Security", "max-age=31536000")
	h.Set("Cache-Control", "no-cache")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))

	const wwwAuth = `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "Bearer ") || strings.TrimSpace(strings.TrimPrefix(auth, "Bearer ")) == "" {
		h.Set("WWW-Authenticate", wwwAuth)
		c.fail(http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty.")
		return
	}
	if entra != nil {
		tok := strings.TrimPrefix(auth, "Bearer ")
		if _, ok := entra.TokenUser(tok); !ok {
			entra.mu.Lock()
			it := entra.tokens[tok]
			revoked := it != nil && entra.revoked[strings.ToLower(it.username)]
			entra.mu.Unlock()
			switch {
			case revoked:
				c.write(ClaimsChallenge(http.StatusUnauthorized))
			case it != nil:
				h.Set("WWW-Authenticate", wwwAuth)
				c.fail(http.StatusUnauthorized, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
			default:
				h.Set("WWW-Authenticate", wwwAuth)
				c.fail(http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
			}
			return
		}
	}

	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(segs) == 0 || (segs[0] != "beta" && segs[0] != "v1.0") {
		c.fail(http.StatusBadRequest, "BadRequest", "Invalid version: "+segs[0])
		return
	}
	c.version = segs[0]
	rel := "/" + strings.Join(segs[1:], "/")

	g.mu.Lock()
	k := queueKey(r.Method, rel)
	var queued *Response
	if q := g.queues[k]; len(q) > 0 {
		queued = &q[0]
		g.queues[k] = q[1:]
	}
	g.mu.Unlock()

	g.route(c, segs[1:], queued)
}

func segEq(a, b string) bool { return strings.EqualFold(a, b) }

func (g *Graph) route(c *graphCall, segs []string, queued *Response) {
	r := c.r
	isPCs := len(segs) >= 3 && segEq(segs[0], "deviceManagement") && segEq(segs[1], "virtualEndpoint") && segEq(segs[2], "cloudPCs")
	if isPCs && len(segs) == 5 && segEq(segs[4], "reprovision") && r.Method == http.MethodPost {
		g.reprovision(c, segs[3], queued)
		return
	}
	if queued != nil {
		c.write(*queued)
		return
	}
	switch {
	case isPCs && len(segs) == 3 && r.Method == http.MethodGet:
		g.listPCs(c)
	case isPCs && len(segs) == 4 && r.Method == http.MethodGet:
		g.getPC(c, segs[3])
	case isPCs && len(segs) == 5 && segEq(segs[4], "retrieveCloudPcRemoteActionResults") && r.Method == http.MethodGet:
		g.remoteActions(c, segs[3])
	case isPCs && len(segs) >= 3 && len(segs) <= 5:
		if len(segs) == 5 && !segEq(segs[4], "reprovision") && !segEq(segs[4], "retrieveCloudPcRemoteActionResults") {
			c.fail(http.StatusBadRequest, "BadRequest", fmt.Sprintf("Resource not found for the segment '%s'.", segs[4]))
			return
		}
		c.fail(http.StatusMethodNotAllowed, "BadRequest", fmt.Sprintf("The HTTP method '%s' is not allowed for this resource.", r.Method))
	default:
		seg := ""
		known := []string{"deviceManagement", "virtualEndpoint", "cloudPCs"}
		for i, s := range segs {
			if i >= len(known) || !segEq(s, known[i]) {
				seg = s
				break
			}
		}
		if seg == "" {
			seg = segs[len(segs)-1]
		}
		c.fail(http.StatusBadRequest, "BadRequest", fmt.Sprintf("Resource not found for the segment '%s'.", seg))
	}
}

func (g *Graph) reprovision(c *graphCall, id string, queued *Response) {
	g.mu.Lock()
	pc := g.pcs[id]
	unknown := pc == nil && len(g.pcs) > 0
	rs := Response{Status: http.StatusNoContent}
	if queued != nil {
		rs = *queued
		if rs.Status == 0 {
			rs.Status = http.StatusNoContent
		}
	} else if unknown {
		rs = GraphError(http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("Cloud PC '%s' was not found.", id))
	}
	if status := rs.Status; status >= 200 && status < 300 {
		now := time.Now().UTC()
		if pc != nil {
			pc.Status = "provisioning"
			pc.LastModified = now
		}
		g.actions[id] = append(g.actions[id], &remoteAction{name: "Reprovision", start: now, updated: now})
	}
	g.mu.Unlock()
	c.write(rs)
}

func (g *Graph) pcWire(pc *CloudPC) map[string]any {
	return map[string]any{
		"id":                       pc.ID,
		"aadDeviceId":              uuid.NewSHA1(uuid.NameSpaceOID, []byte("aad:"+pc.ID)).String(),
		"displayName":              pc.DisplayName,
		"imageDisplayName":         "Windows 11 Enterprise + Microsoft 365 Apps 23H2",
		"managedDeviceId":          uuid.NewSHA1(uuid.NameSpaceOID, []byte("md:"+pc.ID)).String(),
		"managedDeviceName":        pc.ManagedDeviceName,
		"provisioningPolicyId":     uuid.NewSHA1(uuid.NameSpaceOID, []byte("pp:"+pc.ProvisioningPolicyName)).String(),
		"provisioningPolicyName":   pc.ProvisioningPolicyName,
		"onPremisesConnectionName": "",
		"servicePlanId":            uuid.NewSHA1(uuid.NameSpaceOID, []byte("sp:"+pc.ServicePlanName)).String(),
		"servicePlanName":          pc.ServicePlanName,
		"servicePlanType":          "enterprise",
		"status":                   pc.Status,
		"statusDetails":            nil,
		"userPrincipalName":        pc.UserPrincipalName,
		"lastModifiedDateTime":     pc.LastModified.UTC().Format(time.RFC3339),
		"gracePeriodEndDateTime":   nil,
		"provisioningType":         "dedicated",
		"productType":              "enterprise",
	}
}

func selectFields(m map[string]any, sel string) map[string]any {
	if strings.TrimSpace(sel) == "" {
		return m
	}
	out := map[string]any{}
	for _, f := range strings.Split(sel, ",") {
		f = strings.TrimSpace(f)
		for k, v := range m {
			if strings.EqualFold(k, f) {
				out[k] = v
			}
		}
	}
	return out
}

func (g *Graph) context(c *graphCall, suffix string) string {
	return "https://graph.microsoft.com/" + c.version + "/$metadata#" + suffix
}

func (g *Graph) getPC(c *graphCall, id string) {
	g.mu.Lock()
	pc := g.pcs[id]
	var m map[string]any
	if pc != nil {
		m = g.pcWire(pc)
	}
	g.mu.Unlock()
	if m == nil {
		c.fail(http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("Cloud PC '%s' was not found.", id))
		return
	}
	q := c.r.URL.Query()
	m = selectFields(m, q.Get("$select"))
	m["@odata.context"] = g.context(c, "deviceManagement/virtualEndpoint/cloudPCs/$entity")
	c.json(http.StatusOK, m)
}

// parseFilter supports "field eq 'value'" clauses joined by "and".
func parseFilter(f string) ([][2]string, bool) {
	if strings.TrimSpace(f) == "" {
		return nil, true
	}
	var out [][2]string
	for _, cl := range splitFold(f, " and ") {
		parts := strings.SplitN(strings.TrimSpace(cl), " ", 3)
		if len(parts) != 3 || !strings.EqualFold(parts[1], "eq") {
			return nil, false
		}
		v := parts[2]
		if len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
			return nil, false
		}
		out = append(out, [2]string{parts[0], strings.ReplaceAll(v[1:len(v)-1], "''", "'")})
	}
	return out, true
}

func splitFold(s, sep string) []string {
	var out []string
	lower := strings.ToLower(s)
	for {
		i := strings.Index(lower, sep)
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i])
		s, lower = s[i+len(sep):], lower[i+len(sep):]
	}
}

func (g *Graph) listPCs(c *graphCall) {
	q := c.r.URL.Query()
	filter, ok := parseFilter(q.Get("$filter"))
	if !ok {
		c.fail(http.StatusBadRequest, "BadRequest", "Invalid filter clause: "+q.Get("$filter"))
		return
	}
	g.mu.Lock()
	value := []any{}
	for _, id := range g.pcOrder {
		m := g.pcWire(g.pcs[id])
		match := true
		for _, cl := range filter {
			var got any
			for k, v := range m {
				if strings.EqualFold(k, cl[0]) {
					got = v
				}
			}
			if s, _ := got.(string); !strings.EqualFold(s, cl[1]) {
				match = false
			}
		}
		if match {
			value = append(value, selectFields(m, q.Get("$select")))
		}
	}
	g.mu.Unlock()
	c.json(http.StatusOK, map[string]any{
		"@odata.context": g.context(c, "deviceManagement/virtualEndpoint/cloudPCs"),
		"value":          value,
	})
}

func (g *Graph) remoteActions(c *graphCall, id string) {
	g.mu.Lock()
	pc := g.pcs[id]
	if pc == nil && len(g.pcs) > 0 {
		g.mu.Unlock()
		c.fail(http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("Cloud PC '%s' was not found.", id))
		return
	}
	value := []any{}
	for i, a := range g.actions[id] {
		state := "done"
		if i == len(g.actions[id])-1 && pc != nil {
			switch pc.Status {
			case "provisioning", "pendingProvision":
				state = "active"
			case "failed":
				state = "failed"
			}
		}
		managed := ""
		if pc != nil {
			managed = g.pcWire(pc)["managedDeviceId"].(string)
		}
		value = append(value, map[string]any{
			"actionName":          a.name,
			"actionState":         state,
			"startDateTime":       a.start.Format(time.RFC3339),
			"lastUpdatedDateTime": a.updated.Format(time.RFC3339),
			"cloudPcId":           id,
			"managedDeviceId":     managed,
			"statusDetails":       nil,
		})
	}
	g.mu.Unlock()
	c.json(http.StatusOK, map[string]any{
		"@odata.context": g.context(c, "Collection(microsoft.graph.cloudPcRemoteActionResult)"),
		"value":          value,
	})
}
