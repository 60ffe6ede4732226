package fakes

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
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
	// Body is the request body as sent ("" if none), ContentType its
	// Content-Type header ("" if none).
	Body, ContentType string
	At                time.Time
	// Status is the status answered (0 while in flight or if canceled).
	Status   int
	Canceled bool
}

// CloudPC is a Cloud PC the fake knows. Ids are matched case-insensitively, as
// Graph does with GUIDs.
type CloudPC struct {
	ID, DisplayName, UserPrincipalName, ManagedDeviceName, ServicePlanName, ProvisioningPolicyName string
	// ProvisioningPolicyID is its provisioningPolicyId; "" (the usual): the id of
	// the policy named ProvisioningPolicyName, PolicyID(ProvisioningPolicyName).
	// Set it to tie the Cloud PC to one of two policies with one name (then an
	// empty ProvisioningPolicyName is served as that policy's name).
	ProvisioningPolicyID string
	// Status is the beta status (default "provisioned"). Members of the evolvable
	// enum added after unknownFutureValue (movingRegion, resizePendingLicense,
	// modifyingSingleSignOn, refreshPolicyConfiguration, preparing) are served as
	// "unknownFutureValue" unless the request has
	// "Prefer: include-unknown-enum-members", like Graph.
	Status       string
	LastModified time.Time
	// StatusDetailCode and StatusDetailMessage fill the beta statusDetail
	// (cloudPcStatusDetail {code, message, additionalInformation}); null when both
	// are empty. The deprecated statusDetails is always null (it stopped returning
	// data on 2024-08-31).
	StatusDetailCode, StatusDetailMessage string
}

// ProvisioningPolicy is a Windows 365 provisioning policy the fake serves
// (cloudPcProvisioningPolicy). Ids are matched case-insensitively.
type ProvisioningPolicy struct {
	// ID "" (in AddProvisioningPolicy): PolicyID(DisplayName).
	ID, DisplayName, Description string
}

// PolicyID is the id of the provisioning policy named name as the fake
// derives it: the provisioningPolicyId of every Cloud PC whose
// ProvisioningPolicyName is name (and no ProvisioningPolicyID of its own).
// A GUID, stable across runs.
func PolicyID(name string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("pp:"+name)).String()
}

type remoteAction struct {
	name           string
	start, updated time.Time
	// pending: accepted, but the Cloud PC has not started on it yet.
	pending bool
}

// Graph is a fake Microsoft Graph over TLS serving the Cloud PC endpoints
// under /beta and /v1.0.
type Graph struct {
	tb  testing.TB
	srv *httptest.Server
	log safeLog

	guarded

	queues  map[string][]Response
	reqs    []GraphRequest
	pcs     map[string]*CloudPC
	pcOrder []string
	actions map[string][]*remoteAction
	entra   *Entra
	// pageSize > 0: lists are served in pages of that many items, linked by
	// @odata.nextLink.
	pageSize int
	// startDelay is how long an accepted reprovision waits before the
	// Cloud PC's status moves to provisioning (SetReprovisionStartDelay).
	startDelay time.Duration

	// policies are those added with AddProvisioningPolicy, in order (the
	// Cloud PCs' own policy names add the others at serve time).
	policies []ProvisioningPolicy
	// reprovisions counts the reprovision POSTs that got past the token
	// and body checks; throttleAt (> 0) is the count whose POST is answered
	// 429 with Retry-After throttleRetryAfter (ThrottleReprovision).
	reprovisions, throttleAt, throttleRetryAfter int
	// failing answers every reprovision POST for a Cloud PC (key: lower-case
	// id) with its Response (FailReprovisions).
	failing map[string]Response
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
		failing: map[string]Response{},
	}
	g.srv = newTLSServer(http.HandlerFunc(g.serve))
	t.Cleanup(func() {
		g.markClosed()
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

// AddProvisioningPolicy adds (or replaces, by id) a provisioning policy. An
// empty ID is PolicyID(DisplayName), the policy Cloud PCs naming it belong
// to. A policy a Cloud PC names (ProvisioningPolicyName) is served without
// being added; adding it only sets its description. Add two with one
// DisplayName and distinct IDs for a name several policies share.
func (g *Graph) AddProvisioningPolicy(p ProvisioningPolicy) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p.ID == "" {
		p.ID = PolicyID(p.DisplayName)
	}
	for i, q := range g.policies {
		if strings.EqualFold(q.ID, p.ID) {
			g.policies[i] = p
			g.changed.broadcast()
			return
		}
	}
	g.policies = append(g.policies, p)
	g.changed.broadcast()
}

// ProvisioningPolicies returns the policies the fake serves, in its order:
// those added, then those only Cloud PCs name, by first Cloud PC.
func (g *Graph) ProvisioningPolicies() []ProvisioningPolicy {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.allPolicies()
}

// allPolicies: see ProvisioningPolicies. Call with g.mu held.
func (g *Graph) allPolicies() []ProvisioningPolicy {
	out := append([]ProvisioningPolicy(nil), g.policies...)
	known := map[string]bool{}
	for _, p := range out {
		known[strings.ToLower(p.ID)] = true
	}
	for _, id := range g.pcOrder {
		pc := g.pcs[id]
		if pc.ProvisioningPolicyID != "" || pc.ProvisioningPolicyName == "" {
			continue
		}
		if pid := PolicyID(pc.ProvisioningPolicyName); !known[pid] {
			known[pid] = true
			out = append(out, ProvisioningPolicy{ID: pid, DisplayName: pc.ProvisioningPolicyName})
		}
	}
	return out
}

// policyOf is the provisioningPolicyId and provisioningPolicyName pc is
// served with. Call with g.mu held.
func (g *Graph) policyOf(pc *CloudPC) (id, name string) {
	if pc.ProvisioningPolicyID == "" {
		return PolicyID(pc.ProvisioningPolicyName), pc.ProvisioningPolicyName
	}
	name = pc.ProvisioningPolicyName
	if name == "" {
		for _, p := range g.policies {
			if strings.EqualFold(p.ID, pc.ProvisioningPolicyID) {
				name = p.DisplayName
			}
		}
	}
	return pc.ProvisioningPolicyID, name
}

// ThrottleReprovision answers the nth reprovision POST from now (n >= 1;
// 1: the next one) with 429 TooManyRequests and "Retry-After:
// retryAfterSeconds", once, as Graph throttles: nothing happens to the Cloud
// PC, and answers queued for it stay queued. Counted are the POSTs that get
// past the token and body checks (for any Cloud PC, known or not); a retry
// counts as a POST. Calling it again replaces the earlier one; n <= 0
// cancels it.
func (g *Graph) ThrottleReprovision(n, retryAfterSeconds int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.throttleAt, g.throttleRetryAfter = 0, max(retryAfterSeconds, 0)
	if n > 0 {
		g.throttleAt = g.reprovisions + n
	}
}

// FailReprovisions answers every later reprovision POST for the Cloud PC
// (id matched case-insensitively) with rs instead of acting on it, e.g.
// GraphError(500, "InternalServerError", "An internal server error
// occurred.") for Graph's error shape with the request's ids. Answers queued
// with QueueReprovision and ThrottleReprovision come first. For a single
// answer, QueueReprovision does the same. Ended by StopFailingReprovisions.
func (g *Graph) FailReprovisions(cloudPCID string, rs Response) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failing[strings.ToLower(cloudPCID)] = rs
}

// StopFailingReprovisions ends FailReprovisions for the Cloud PC.
func (g *Graph) StopFailingReprovisions(cloudPCID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.failing, strings.ToLower(cloudPCID))
}

// PostCount is how many reprovision POSTs the fake received for one Cloud PC.
type PostCount struct {
	// Posts counts every POST received (refused, throttled and canceled ones
	// too, and each retry); Accepted those answered 2xx.
	Posts, Accepted int
}

// ReprovisionPosts counts the reprovision POSTs received per Cloud PC,
// keyed by the id as added (as in the URL, lower case, for an unknown one).
func (g *Graph) ReprovisionPosts() map[string]PostCount {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]PostCount{}
	for _, r := range g.reqs {
		segs := strings.Split(strings.Trim(r.Path, "/"), "/")
		if len(segs) == 0 || !isReprovision(r.Method, segs[1:]) {
			continue
		}
		key, pc := g.lookup(segs[4])
		if pc == nil {
			key = strings.ToLower(key)
		}
		c := out[key]
		c.Posts++
		if r.Status >= 200 && r.Status < 300 {
			c.Accepted++
		}
		out[key] = c
	}
	return out
}

// MaxRequestsPerSecond is MaxRequestsIn(time.Second): the most requests the
// fake received in any one-second sliding window.
func (g *Graph) MaxRequestsPerSecond() int { return g.MaxRequestsIn(time.Second) }

// MaxRequestsIn is the most requests (every method and path, refused ones
// too) the fake received within any window of length d: the largest count of
// arrival times (GraphRequest.At) in some [t, t+d). Arrival times include the
// network's and the scheduler's jitter on top of when the client wrote a
// request: a client that paces exactly N per second, with no margin, may
// show N+1 here now and then.
func (g *Graph) MaxRequestsIn(d time.Duration) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	most := 0
	for i, j := 0, 0; j < len(g.reqs); j++ { // At grows with the index
		for g.reqs[j].At.Sub(g.reqs[i].At) >= d {
			i++
		}
		most = max(most, j-i+1)
	}
	return most
}

// SetPageSize makes lists (GET .../cloudPCs, .../provisioningPolicies) answer
// at most n items per page, with an absolute @odata.nextLink (carrying
// $filter, $select and a $skiptoken) to the next page, as Graph does; n <= 0
// (the default) serves everything in one page.
func (g *Graph) SetPageSize(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pageSize = n
}

// SetCloudPCStatusDetail sets a Cloud PC's statusDetail code and message (both
// empty: null).
func (g *Graph) SetCloudPCStatusDetail(id, code, message string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, pc := g.lookup(id); pc != nil {
		pc.StatusDetailCode, pc.StatusDetailMessage = code, message
		pc.LastModified = time.Now().UTC()
	}
	g.changed.broadcast()
}

// lookup finds a Cloud PC by id, case-insensitively; key is its id as added
// (id itself if unknown). Call with g.mu held.
func (g *Graph) lookup(id string) (key string, pc *CloudPC) {
	if pc := g.pcs[id]; pc != nil {
		return id, pc
	}
	for _, k := range g.pcOrder {
		if strings.EqualFold(k, id) {
			return k, g.pcs[k]
		}
	}
	return id, nil
}

// CloudPC returns the current state of a Cloud PC.
func (g *Graph) CloudPC(id string) (CloudPC, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, pc := g.lookup(id)
	if pc == nil {
		return CloudPC{}, false
	}
	return *pc, true
}

// SetReprovisionStartDelay makes an accepted reprovision leave the Cloud
// PC's status alone for d (its remote action reads pending), as Graph does,
// before it moves to provisioning. Zero (the default): at once.
func (g *Graph) SetReprovisionStartDelay(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.startDelay = d
}

// SetCloudPCStatus sets a Cloud PC's status (e.g. "provisioned" when a
// reprovision finished, "failed").
func (g *Graph) SetCloudPCStatus(id, status string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if key, pc := g.lookup(id); pc != nil {
		pc.Status = status
		pc.LastModified = time.Now().UTC()
		for _, a := range g.actions[key] {
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

// Dump describes the recorded requests.
func (g *Graph) Dump() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "--- Graph fake: %d requests\n", len(g.reqs))
	for _, r := range g.reqs {
		fmt.Fprintf(&b, "  %s %s %s?%s status=%d canceled=%v client-request-id=%s content-type=%s body=%s\n",
			r.At.Format("15:04:05.000"), r.Method, r.Path, r.RawQuery, r.Status, r.Canceled, r.ClientRequestID, r.ContentType, clip(r.Body, 200))
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
			// Drop the connection without an answer, as a server that never
			// answered would; returning would make net/http write a 200.
			panic(http.ErrAbortHandler)
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
		ClientRequestID: c.clientRequestID, RequestID: c.requestID, Body: string(body), ContentType: r.Header.Get("Content-Type"), At: time.Now(),
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
			revoked := it != nil && entra.revokedAt(it.username, it.issued)
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

	// Like Graph, a reprovision whose body cannot be read as the action's
	// parameters is refused before it reaches the Cloud PC; answers queued
	// for it stay queued.
	if isReprovision(r.Method, segs[1:]) {
		if status, code, msg := checkReprovisionBody(r.Header.Get("Content-Type"), body); status != 0 {
			c.fail(status, code, msg)
			return
		}
	}

	g.mu.Lock()
	k := queueKey(r.Method, rel)
	var queued *Response
	reprovision := isReprovision(r.Method, segs[1:])
	if reprovision {
		g.reprovisions++
		if g.throttleAt > 0 && g.reprovisions == g.throttleAt {
			// Graph throttles before it looks at the Cloud PC: answers queued
			// for it stay queued.
			rs := Throttled(http.StatusTooManyRequests, g.throttleRetryAfter)
			queued, g.throttleAt = &rs, 0
		}
	}
	if q := g.queues[k]; len(q) > 0 && queued == nil {
		queued = &q[0]
		g.queues[k] = q[1:]
	}
	if reprovision && queued == nil {
		if rs, ok := g.failing[strings.ToLower(segs[4])]; ok {
			queued = &rs
		}
	}
	g.mu.Unlock()

	g.route(c, segs[1:], queued)
}

func segEq(a, b string) bool { return strings.EqualFold(a, b) }

// isReprovision: POST .../deviceManagement/virtualEndpoint/cloudPCs/{id}/reprovision
// (segs after the version).
func isReprovision(method string, segs []string) bool {
	return method == http.MethodPost && len(segs) == 5 && segEq(segs[0], "deviceManagement") &&
		segEq(segs[1], "virtualEndpoint") && segEq(segs[2], "cloudPCs") && segEq(segs[4], "reprovision")
}

// reprovisionParameters are the reprovision action's optional parameters
// and the values each takes (cloudPcOperatingSystem, cloudPcUserAccountType;
// the fake does not take their unknownFutureValue sentinel).
var reprovisionParameters = map[string][]string{
	"osVersion":       {"windows10", "windows11"},
	"userAccountType": {"standardUser", "administrator"},
}

// checkReprovisionBody checks a reprovision body as Graph reads an OData
// action's parameters: no body (or an empty one) is fine; a body must come
// as application/json (else 415 RequestBodyRead, as Graph answers a body of
// another media type), be one JSON object (else 400), and hold only the
// action's parameters (an unknown one is a 400) with values of their enums
// (else 400). It returns 0 when the body is fine.
func checkReprovisionBody(contentType string, body []byte) (status int, code, message string) {
	if len(body) == 0 {
		return 0, "", ""
	}
	if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/json" {
		return http.StatusUnsupportedMediaType, "RequestBodyRead",
			fmt.Sprintf("A supported MIME type could not be found that matches the content type of the request. The supported type is 'application/json'; the content type was '%s'.", contentType)
	}
	var params map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&params); err != nil || params == nil || dec.More() {
		return http.StatusBadRequest, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format."
	}
	if _, err := dec.Token(); err != io.EOF {
		return http.StatusBadRequest, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format."
	}
	for name, raw := range params {
		allowed, ok := reprovisionParameters[name]
		if !ok {
			return http.StatusBadRequest, "BadRequest", fmt.Sprintf("The parameter '%s' in the request payload is not a valid parameter for the operation 'reprovision'.", name)
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil || !slices.Contains(allowed, v) {
			return http.StatusBadRequest, "BadRequest", fmt.Sprintf("Invalid value for the parameter '%s' of the operation 'reprovision'.", name)
		}
	}
	return 0, "", ""
}

func (g *Graph) route(c *graphCall, segs []string, queued *Response) {
	r := c.r
	isPCs := len(segs) >= 3 && segEq(segs[0], "deviceManagement") && segEq(segs[1], "virtualEndpoint") && segEq(segs[2], "cloudPCs")
	isPolicies := len(segs) >= 3 && segEq(segs[0], "deviceManagement") && segEq(segs[1], "virtualEndpoint") && segEq(segs[2], "provisioningPolicies")
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
	case isPolicies && len(segs) == 3 && r.Method == http.MethodGet:
		g.listPolicies(c)
	case isPolicies && len(segs) == 4 && r.Method == http.MethodGet:
		g.getPolicy(c, segs[3])
	case isPolicies && len(segs) > 4:
		c.fail(http.StatusBadRequest, "BadRequest", fmt.Sprintf("Resource not found for the segment '%s'.", segs[4]))
	case isPolicies:
		c.fail(http.StatusMethodNotAllowed, "BadRequest", fmt.Sprintf("The HTTP method '%s' is not allowed for this resource.", r.Method))
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
	key, pc := g.lookup(id)
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
		action := &remoteAction{name: "Reprovision", start: now, updated: now, pending: g.startDelay > 0}
		g.actions[key] = append(g.actions[key], action)
		start := func() {
			if pc != nil {
				pc.Status = "provisioning"
				pc.LastModified = time.Now().UTC()
			}
			action.pending, action.updated = false, time.Now().UTC()
		}
		if g.startDelay == 0 {
			start()
		} else {
			// Like Graph: the Cloud PC keeps its old status for a while.
			time.AfterFunc(g.startDelay, func() {
				g.mu.Lock()
				defer g.mu.Unlock()
				start()
				g.changed.broadcast()
			})
		}
	}
	g.mu.Unlock()
	c.write(rs)
}

// evolvableStatuses are the cloudPcStatus members after unknownFutureValue:
// Graph sends them only to clients that ask with
// "Prefer: include-unknown-enum-members".
var evolvableStatuses = map[string]bool{
	"movingRegion": true, "resizePendingLicense": true, "modifyingSingleSignOn": true,
	"refreshPolicyConfiguration": true, "preparing": true,
}

func wantsUnknownEnumMembers(r *http.Request) bool {
	for _, v := range r.Header.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "include-unknown-enum-members") {
				return true
			}
		}
	}
	return false
}

func statusDetailWire(code, message string) any {
	if code == "" && message == "" {
		return nil
	}
	return map[string]any{
		"@odata.type":           "#microsoft.graph.cloudPcStatusDetail",
		"code":                  code,
		"message":               message,
		"additionalInformation": []any{},
	}
}

// pcWireFor is pcWire as served to request r (evolvable enum members hidden
// unless r asks for them).
func (g *Graph) pcWireFor(pc *CloudPC, r *http.Request) map[string]any {
	m := g.pcWire(pc)
	if evolvableStatuses[pc.Status] && !wantsUnknownEnumMembers(r) {
		m["status"] = "unknownFutureValue"
	}
	return m
}

func (g *Graph) pcWire(pc *CloudPC) map[string]any {
	policyID, policyName := g.policyOf(pc)
	return map[string]any{
		"id":                       pc.ID,
		"aadDeviceId":              uuid.NewSHA1(uuid.NameSpaceOID, []byte("aad:"+pc.ID)).String(),
		"displayName":              pc.DisplayName,
		"imageDisplayName":         "Windows 11 Enterprise + Microsoft 365 Apps 23H2",
		"managedDeviceId":          uuid.NewSHA1(uuid.NameSpaceOID, []byte("md:"+pc.ID)).String(),
		"managedDeviceName":        pc.ManagedDeviceName,
		"provisioningPolicyId":     policyID,
		"provisioningPolicyName":   policyName,
		"onPremisesConnectionName": "",
		"servicePlanId":            uuid.NewSHA1(uuid.NameSpaceOID, []byte("sp:"+pc.ServicePlanName)).String(),
		"servicePlanName":          pc.ServicePlanName,
		"servicePlanType":          "enterprise",
		"status":                   pc.Status,
		"statusDetail":             statusDetailWire(pc.StatusDetailCode, pc.StatusDetailMessage),
		"statusDetails":            nil,
		"userPrincipalName":        pc.UserPrincipalName,
		"lastModifiedDateTime":     pc.LastModified.UTC().Format(time.RFC3339),
		"gracePeriodEndDateTime":   nil,
		"provisioningType":         "dedicated",
		"productType":              "enterprise",
	}
}

// selectFields applies $select. Like Graph, a property the type does not
// have is an error (400), returned as its name.
func selectFields(m map[string]any, sel string) (map[string]any, string) {
	if strings.TrimSpace(sel) == "" {
		return m, ""
	}
	out := map[string]any{}
	for _, f := range strings.Split(sel, ",") {
		f = strings.TrimSpace(f)
		found := false
		for k, v := range m {
			if strings.EqualFold(k, f) {
				out[k], found = v, true
			}
		}
		if !found {
			return nil, f
		}
	}
	return out, ""
}

func (g *Graph) context(c *graphCall, suffix string) string {
	return "https://graph.microsoft.com/" + c.version + "/$metadata#" + suffix
}

func (g *Graph) getPC(c *graphCall, id string) {
	g.mu.Lock()
	_, pc := g.lookup(id)
	var m map[string]any
	if pc != nil {
		m = g.pcWireFor(pc, c.r)
	}
	g.mu.Unlock()
	if m == nil {
		c.fail(http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("Cloud PC '%s' was not found.", id))
		return
	}
	q := c.r.URL.Query()
	m, missing := selectFields(m, q.Get("$select"))
	if missing != "" {
		c.fail(http.StatusBadRequest, "BadRequest", fmt.Sprintf("Could not find a property named '%s' on type 'microsoft.graph.cloudPC'.", missing))
		return
	}
	m["@odata.context"] = g.context(c, "deviceManagement/virtualEndpoint/cloudPCs/$entity")
	c.json(http.StatusOK, m)
}

// parseFilter supports "field eq 'value'" clauses joined by "and" and "or"
// ("and" binds tighter; no parentheses, no other operators). The result is a
// disjunction of conjunctions: an item matches if every clause of any one
// group matches. A single quote inside a string literal is written twice.
func parseFilter(f string) ([][][2]string, bool) {
	if strings.TrimSpace(f) == "" {
		return nil, true
	}
	toks, ok := filterTokens(f)
	if !ok {
		return nil, false
	}
	var out [][][2]string
	var group [][2]string
	for i := 0; ; {
		if i+2 >= len(toks) || toks[i].lit || !strings.EqualFold(toks[i+1].s, "eq") || toks[i+1].lit || !toks[i+2].lit {
			return nil, false
		}
		group = append(group, [2]string{toks[i].s, toks[i+2].s})
		i += 3
		if i == len(toks) {
			return append(out, group), true
		}
		switch {
		case toks[i].lit || i+1 == len(toks):
			return nil, false
		case strings.EqualFold(toks[i].s, "and"):
		case strings.EqualFold(toks[i].s, "or"):
			out, group = append(out, group), nil
		default:
			return nil, false
		}
		i++
	}
}

type filterToken struct {
	s   string
	lit bool // a string literal (s unquoted)
}

// filterTokens splits a $filter into words and single-quoted string literals.
func filterTokens(f string) ([]filterToken, bool) {
	var toks []filterToken
	for i := 0; i < len(f); {
		switch c := f[i]; {
		case c == ' ':
			i++
		case c == '\'':
			var b strings.Builder
			i++
			for {
				if i >= len(f) {
					return nil, false // unterminated literal
				}
				if f[i] == '\'' {
					if i+1 < len(f) && f[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(f[i])
				i++
			}
			toks = append(toks, filterToken{s: b.String(), lit: true})
		default:
			j := i
			for j < len(f) && f[j] != ' ' && f[j] != '\'' {
				j++
			}
			toks = append(toks, filterToken{s: f[i:j]})
			i = j
		}
	}
	return toks, true
}

func (g *Graph) listPCs(c *graphCall) {
	g.list(c, "microsoft.graph.cloudPC", "deviceManagement/virtualEndpoint/cloudPCs", func() []map[string]any {
		var all []map[string]any
		for _, id := range g.pcOrder {
			all = append(all, g.pcWireFor(g.pcs[id], c.r))
		}
		return all
	})
}

// list serves a collection as Graph does: $filter (parseFilter), $select
// (an unknown property of typeName is a 400), and pages of SetPageSize items
// linked by an absolute @odata.nextLink carrying the query and a $skiptoken.
// items runs with g.mu held.
func (g *Graph) list(c *graphCall, typeName, contextPath string, items func() []map[string]any) {
	q := c.r.URL.Query()
	filter, ok := parseFilter(q.Get("$filter"))
	if !ok {
		c.fail(http.StatusBadRequest, "BadRequest", "Invalid filter clause: "+q.Get("$filter"))
		return
	}
	offset := 0
	if tok := q.Get("$skiptoken"); tok != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(tok, "fake-skip-"))
		if err != nil || n < 0 || !strings.HasPrefix(tok, "fake-skip-") {
			c.fail(http.StatusBadRequest, "BadRequest", "Invalid $skiptoken: "+tok)
			return
		}
		offset = n
	}
	g.mu.Lock()
	var all []any
	for _, m := range items() {
		if !filterMatches(filter, m) {
			continue
		}
		selected, missing := selectFields(m, q.Get("$select"))
		if missing != "" {
			g.mu.Unlock()
			c.fail(http.StatusBadRequest, "BadRequest", fmt.Sprintf("Could not find a property named '%s' on type '%s'.", missing, typeName))
			return
		}
		all = append(all, selected)
	}
	pageSize := g.pageSize
	g.mu.Unlock()
	value := []any{}
	if offset < len(all) {
		value = all[offset:]
	}
	body := map[string]any{"@odata.context": g.context(c, contextPath)}
	if pageSize > 0 && len(value) > pageSize {
		value = value[:pageSize]
		next := url.Values{}
		for k, vs := range q {
			if !strings.EqualFold(k, "$skiptoken") {
				next[k] = vs
			}
		}
		next.Set("$skiptoken", fmt.Sprintf("fake-skip-%d", offset+pageSize))
		body["@odata.nextLink"] = g.srv.URL + c.r.URL.EscapedPath() + "?" + odataQuery(next)
	}
	body["value"] = value
	c.json(http.StatusOK, body)
}

// odataQuery encodes v as Graph writes the query of an @odata.nextLink:
// system query options keep their '$' ($filter=…&$skiptoken=…), values are
// escaped with %20 for spaces.
func odataQuery(v url.Values) string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, val := range v[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(strings.ReplaceAll(url.QueryEscape(k), "%24", "$"))
			b.WriteByte('=')
			b.WriteString(strings.ReplaceAll(url.QueryEscape(val), "+", "%20"))
		}
	}
	return b.String()
}

// policyWire is a provisioning policy as beta serves it (cloudPcProvisioningPolicy).
func policyWire(p ProvisioningPolicy) map[string]any {
	return map[string]any{
		"@odata.type":             "#microsoft.graph.cloudPcProvisioningPolicy",
		"id":                      p.ID,
		"displayName":             p.DisplayName,
		"description":             p.Description,
		"alternateResourceUrl":    nil,
		"cloudPcGroupDisplayName": nil,
		"cloudPcNamingTemplate":   "CPC-%USERNAME:5%-%RAND:5%",
		"enableSingleSignOn":      true,
		"gracePeriodInHours":      2,
		"imageDisplayName":        "Windows 11 Enterprise + Microsoft 365 Apps 23H2",
		"imageId":                 "microsoftwindowsdesktop_windows-ent-cpc_win11-23h2-ent-cpc-m365",
		"imageType":               "gallery",
		"localAdminEnabled":       false,
		"managedBy":               "windows365",
		"provisioningType":        "dedicated",
		"scopeIds":                []any{"0"},
		"windowsSetting":          map[string]any{"locale": "en-US"},
		"microsoftManagedDesktop": map[string]any{"managedType": "notManaged", "profile": nil},
		"autopatch":               nil,
		"domainJoinConfigurations": []any{map[string]any{
			"domainJoinType": "azureADJoin", "type": "azureADJoin", "onPremisesConnectionId": nil,
			"regionName": "automatic", "regionGroup": "default",
		}},
	}
}

func (g *Graph) listPolicies(c *graphCall) {
	g.list(c, "microsoft.graph.cloudPcProvisioningPolicy", "deviceManagement/virtualEndpoint/provisioningPolicies", func() []map[string]any {
		var all []map[string]any
		for _, p := range g.allPolicies() {
			all = append(all, policyWire(p))
		}
		return all
	})
}

func (g *Graph) getPolicy(c *graphCall, id string) {
	g.mu.Lock()
	var m map[string]any
	for _, p := range g.allPolicies() {
		if strings.EqualFold(p.ID, id) {
			m = policyWire(p)
		}
	}
	g.mu.Unlock()
	if m == nil {
		c.fail(http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("Provisioning policy '%s' was not found.", id))
		return
	}
	m, missing := selectFields(m, c.r.URL.Query().Get("$select"))
	if missing != "" {
		c.fail(http.StatusBadRequest, "BadRequest", fmt.Sprintf("Could not find a property named '%s' on type 'microsoft.graph.cloudPcProvisioningPolicy'.", missing))
		return
	}
	m["@odata.context"] = g.context(c, "deviceManagement/virtualEndpoint/provisioningPolicies/$entity")
	c.json(http.StatusOK, m)
}

// filterMatches reports whether m matches any group of filter (case-insensitive
// string equality on every clause of the group); an empty filter matches all.
func filterMatches(filter [][][2]string, m map[string]any) bool {
	if len(filter) == 0 {
		return true
	}
	for _, group := range filter {
		match := true
		for _, cl := range group {
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
			return true
		}
	}
	return false
}

func (g *Graph) remoteActions(c *graphCall, id string) {
	g.mu.Lock()
	key, pc := g.lookup(id)
	if pc == nil && len(g.pcs) > 0 {
		g.mu.Unlock()
		c.fail(http.StatusNotFound, "ResourceNotFound", fmt.Sprintf("Cloud PC '%s' was not found.", id))
		return
	}
	value := []any{}
	for i, a := range g.actions[key] {
		state := "done"
		if a.pending {
			state = "pending"
		} else if i == len(g.actions[key])-1 && pc != nil {
			switch pc.Status {
			case "provisioning", "pendingProvision":
				state = "active"
			case "failed":
				state = "failed"
			}
		}
		managed, cloudPcID := "", id
		var detail any
		if pc != nil {
			managed, cloudPcID = g.pcWire(pc)["managedDeviceId"].(string), pc.ID
			if state == "failed" {
				detail = statusDetailWire(pc.StatusDetailCode, pc.StatusDetailMessage)
			}
		}
		value = append(value, map[string]any{
			"actionName":          a.name,
			"actionState":         state,
			"startDateTime":       a.start.Format(time.RFC3339),
			"lastUpdatedDateTime": a.updated.Format(time.RFC3339),
			"cloudPcId":           cloudPcID,
			"managedDeviceId":     managed,
			"statusDetail":        detail,
			"statusDetails":       nil,
		})
	}
	g.mu.Unlock()
	c.json(http.StatusOK, map[string]any{
		"@odata.context": g.context(c, "Collection(microsoft.graph.cloudPcRemoteActionResult)"),
		"value":          value,
	})
}
