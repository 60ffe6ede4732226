package fakes

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Tokens and identities of the fake workspace.
const (
	BotToken = "xoxb-fake-bot-token"
	AppToken = "xapp-fake-app-token"

	TeamID     = "T0FAKETEAM"
	TeamDomain = "fake-workspace"
	AppID      = "A0FAKEAPP"
	BotID      = "B0FAKEBOT"
	BotUserID  = "U0FAKEBOT"
	// VerificationToken is the legacy "token" field Slack puts in payloads.
	VerificationToken = "fake-verification-token"

	// DefaultBotScopes are the scopes the bot token is granted unless
	// SetBotScopes or RemoveBotScope say otherwise: what
	// deploy/slack-app-manifest.yaml grants (a test in package bot keeps them
	// equal), in the form of Slack's x-oauth-scopes header.
	DefaultBotScopes = "commands,chat:write,users:read,users:read.email"
	// DefaultAppTokenScopes are the app-level token's scopes: connections:write,
	// as the manifest's instructions create it.
	DefaultAppTokenScopes = "connections:write"
)

// Call is one Web API call received by the fake.
type Call struct {
	Method string
	// Params holds the form fields (body and query) or the top-level JSON
	// fields; non-string JSON values are kept as raw JSON text.
	Params map[string]string
	At     time.Time
	// Error is the "error" the fake answered with; "" when it answered ok
	// (and for an outage, whose answer is not JSON).
	Error string
	// Status is the HTTP status answered: 200, or 429 for a rate limit
	// (RateLimit, FailNext "ratelimited"), 503 during an Outage.
	Status int
	// Fault is FaultRateLimited or FaultOutage when a fault knob (RateLimit,
	// Outage) refused the call before the method ran: no side effect. ""
	// when the method was dispatched (FailNext errors included).
	Fault string
	// OverPace: the call went over a limit given to ObservePace (Slack
	// would have refused it with 429); the fake served it all the same.
	OverPace bool
}

// Message is the current state of a posted message.
type Message struct {
	Channel, TS, Text string
	Blocks            json.RawMessage
	Updates           int
	ThreadTS          string
	// User is, for an ephemeral message, the only user who sees it.
	User string
	// Via says how it was posted: "chat.postMessage", "chat.postEphemeral",
	// "response_url" or "ack" (a slash command's ack payload).
	Via string
}

// HookPost is one POST received on a response_url.
type HookPost struct {
	URL, UserID, ChannelID string
	Body                   json.RawMessage
	At                     time.Time
	// Error is the error text answered (HTTP != 200); "" for "ok".
	Error string
	// Status is the HTTP status answered.
	Status int
	// Fault is FaultRateLimited or FaultOutage when a fault knob
	// (RateLimitHooks, Outage) refused the post: it was not delivered, had no
	// side effect and did not count as a use of the response_url.
	Fault string
}

type msgRec struct {
	Message
	ephemeral bool
	deleted   bool
	editedTS  string
}

type userRec struct {
	name, email string
	// deleted: the account is deactivated (users.* still find it).
	deleted bool
}

type triggerRec struct {
	issued time.Time
	used   bool
	// user is who caused the interaction; viewID the view it happened in
	// ("" for a message or slash command).
	user, viewID string
}

type hook struct {
	url, user, channel string
	// source message of a block action, for replace_original/delete_original
	sourceTS        string
	sourceEphemeral bool
	uses            int
}

// Slack is a fake Slack: Web API under /api/, response_url hooks under
// /hooks/ and the Socket Mode WebSocket under /link/.
type Slack struct {
	tb  testing.TB
	srv *httptest.Server
	log safeLog

	guarded

	calls      []Call
	msgs       []*msgRec
	users      map[string]*userRec
	lastTS     int64
	seq        int
	triggers   map[string]*triggerRec
	triggerTTL time.Duration
	failNext   map[string][]string
	hooks      map[string]*hook
	hookPosts  []HookPost
	views      map[string]*viewRec
	viewOrder  []*viewRec

	// botScopes and appScopes are the scopes granted to BotToken and
	// AppToken: sent in x-oauth-scopes, and required by the methods that
	// need one (missing_scope otherwise).
	botScopes, appScopes []string

	// pace: Slack's published limits, observed (burst.go)
	pace paceWatch

	// fault knobs (faults.go)
	rateLimits  map[string]rateLimit // by Web API method; "" = every method
	hookLimit   rateLimit
	outageUntil time.Time

	sm smState
}

// NewSlack starts a fake Slack on 127.0.0.1; t.Cleanup closes it.
func NewSlack(t testing.TB) *Slack {
	t.Helper()
	s := &Slack{
		tb:         t,
		log:        safeLog{tb: t},
		users:      map[string]*userRec{},
		triggers:   map[string]*triggerRec{},
		triggerTTL: 3 * time.Second,
		failNext:   map[string][]string{},
		hooks:      map[string]*hook{},
		views:      map[string]*viewRec{},
		rateLimits: map[string]rateLimit{},
		botScopes:  splitScopes(DefaultBotScopes),
		appScopes:  splitScopes(DefaultAppTokenScopes),
	}
	s.sm.init()
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.serveAPI)
	mux.HandleFunc("/hooks/", s.serveHook)
	mux.HandleFunc("/link/", s.serveLink)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.close)
	return s
}

func (s *Slack) close() {
	s.mu.Lock()
	s.closed = true
	conns := append([]*wsConn(nil), s.sm.conns...)
	s.changed.broadcast()
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
	s.srv.Close()
	done := make(chan struct{})
	go func() { s.sm.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// APIURL is the Web API base for slack.OptionAPIURL, with a trailing slash.
func (s *Slack) APIURL() string { return s.srv.URL + "/api/" }

// URL is the server's base URL (http://127.0.0.1:PORT).
func (s *Slack) URL() string { return s.srv.URL }

// DMChannel is the id of the app's direct-message channel with userID.
func DMChannel(userID string) string { return "D" + userID }

// DMChannel is the id of the app's direct-message channel with userID.
func (s *Slack) DMChannel(userID string) string { return DMChannel(userID) }

// SetUserEmail sets the profile email users.info reports for userID.
func (s *Slack) SetUserEmail(userID, email string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user(userID).email = email
}

// SetUserDeleted marks userID's account deactivated: users.info and
// users.lookupByEmail still answer, with "deleted": true, as Slack does.
func (s *Slack) SetUserDeleted(userID string, deleted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user(userID).deleted = deleted
}

// SetUserName sets the user name (users.info name, payload user_name).
func (s *Slack) SetUserName(userID, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user(userID).name = name
}

// SetTriggerTTL sets how long a trigger_id stays usable by views.open
// (Slack: 3s). Zero disables expiry.
func (s *Slack) SetTriggerTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.triggerTTL = d
}

// FailNext makes the next call of method answer {"ok":false,"error":errCode}.
// errCode "ratelimited" answers HTTP 429 with Retry-After: 1, as Slack does.
// Calls queue up: FailNext twice fails the next two calls.
func (s *Slack) FailNext(method, errCode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext[method] = append(s.failNext[method], errCode)
}

// SetBotScopes sets the scopes granted to BotToken (default
// DefaultBotScopes): every Web API answer to a bot-token call carries them in
// the x-oauth-scopes header, as Slack's does, and a method needing a scope
// not granted answers {"ok":false,"error":"missing_scope","needed",
// "provided"}. users.info leaves out the profile email without
// users:read.email.
func (s *Slack) SetBotScopes(scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.botScopes = append([]string(nil), scopes...)
}

// RemoveBotScope takes scope away from BotToken's granted scopes (as
// removing it from the app's OAuth settings and reinstalling does).
func (s *Slack) RemoveBotScope(scope string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.botScopes = slices.DeleteFunc(s.botScopes, func(x string) bool { return x == scope })
}

// BotScopes returns the scopes granted to BotToken, as x-oauth-scopes says.
func (s *Slack) BotScopes() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.botScopes, ",")
}

// SetAppTokenScopes sets the scopes of AppToken (default
// DefaultAppTokenScopes). Without connections:write, apps.connections.open
// answers missing_scope, as Slack does for an app-level token generated
// without it.
func (s *Slack) SetAppTokenScopes(scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appScopes = append([]string(nil), scopes...)
}

func splitScopes(list string) []string {
	var out []string
	for _, sc := range strings.Split(list, ",") {
		if sc = strings.TrimSpace(sc); sc != "" {
			out = append(out, sc)
		}
	}
	return out
}

// Calls returns the Web API calls of method ("" for all), in order.
func (s *Slack) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			p := make(map[string]string, len(c.Params))
			for k, v := range c.Params {
				p[k] = v
			}
			c.Params = p
			out = append(out, c)
		}
	}
	return out
}

// Messages returns the current (non-deleted) messages of a channel in post
// order. A user id is mapped to the app's DM channel with that user.
func (s *Slack) Messages(channel string) []Message {
	if isUserID(channel) {
		channel = DMChannel(channel)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.msgs {
		if !m.ephemeral && !m.deleted && m.Channel == channel {
			out = append(out, m.copy())
		}
	}
	return out
}

// Message returns the current state of the message channel/ts.
func (s *Slack) Message(channel, ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.findMsg(channel, ts); m != nil {
		return m.copy(), true
	}
	return Message{}, false
}

// Ephemerals returns the ephemeral messages shown to user: chat.postEphemeral,
// ephemeral response_url posts and slash-command ack payloads.
func (s *Slack) Ephemerals(user string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.msgs {
		if m.ephemeral && !m.deleted && m.User == user {
			out = append(out, m.copy())
		}
	}
	return out
}

// HookPosts returns every POST received on a response_url, in order.
func (s *Slack) HookPosts() []HookPost {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]HookPost(nil), s.hookPosts...)
}

// ResponseURL returns a new response_url on this server addressed to userID
// (no channel or source message). Posts are recorded like Slack shows them.
func (s *Slack) ResponseURL(userID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newHook("commands", userID, "", "", false).url
}

// WaitFor polls cond until it returns true; after timeout it fails the test
// with msg and a dump of everything the fake recorded.
func (s *Slack) WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	if !waitUntil(timeout, s.changedC, cond) {
		t.Fatalf("fakes: Slack: timed out after %v waiting for %s\n%s", timeout, msg, s.Dump())
	}
}

// Dump describes the recorded calls, messages, hook posts, envelopes and acks.
func (s *Slack) Dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "--- Slack fake: %d Web API calls%s\n", len(s.calls), s.describeFaults(time.Now()))
	for _, c := range s.calls {
		keys := make([]string, 0, len(c.Params))
		for k := range c.Params {
			if k != "token" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		fmt.Fprintf(&b, "  %s %s", c.At.Format("15:04:05.000"), c.Method)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%s", k, clip(c.Params[k], 200))
		}
		if c.Error != "" {
			fmt.Fprintf(&b, " -> error %s", c.Error)
		}
		if c.Fault != "" {
			fmt.Fprintf(&b, " (fault %s, HTTP %d)", c.Fault, c.Status)
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "--- messages\n")
	for _, m := range s.msgs {
		kind := "msg"
		if m.ephemeral {
			kind = "ephemeral to " + m.User
		}
		if m.deleted {
			kind += " (deleted)"
		}
		fmt.Fprintf(&b, "  [%s] %s ts=%s via=%s updates=%d text=%q blocks=%s\n", kind, m.Channel, m.TS, m.Via, m.Updates, clip(m.Text, 200), clip(string(m.Blocks), 300))
	}
	fmt.Fprintf(&b, "--- response_url posts\n")
	for _, h := range s.hookPosts {
		fmt.Fprintf(&b, "  %s user=%s %s status=%d err=%s", h.At.Format("15:04:05.000"), h.UserID, clip(string(h.Body), 300), h.Status, h.Error)
		if h.Fault != "" {
			fmt.Fprintf(&b, " (fault %s, not delivered)", h.Fault)
		}
		b.WriteByte('\n')
	}
	s.dumpViews(&b)
	fmt.Fprintf(&b, "--- socket mode: %d connections accepted, %d live\n", s.sm.total, len(s.sm.conns))
	for _, e := range s.sm.order {
		fmt.Fprintf(&b, "  envelope %s type=%s deliveries=%d payload=%s\n", e.id, e.typ, len(e.sentAt), clip(string(e.payload), 200))
	}
	for _, a := range s.sm.acks {
		fmt.Fprintf(&b, "  ack %s at %s payload=%s\n", a.EnvelopeID, a.AckedAt.Format("15:04:05.000"), clip(string(a.Payload), 200))
	}
	return b.String()
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (m *msgRec) copy() Message {
	c := m.Message
	c.Blocks = append(json.RawMessage(nil), m.Blocks...)
	return c
}

func (s *Slack) user(id string) *userRec {
	u := s.users[id]
	if u == nil {
		u = &userRec{name: strings.ToLower(id)}
		s.users[id] = u
	}
	return u
}

func (s *Slack) findMsg(channel, ts string) *msgRec {
	for _, m := range s.msgs {
		if !m.deleted && m.Channel == channel && m.TS == ts {
			return m
		}
	}
	return nil
}

// nextTS returns a unique, increasing Slack timestamp near the current time.
// Call with s.mu held.
func (s *Slack) nextTS() string {
	now := time.Now().UnixMicro()
	if now <= s.lastTS {
		now = s.lastTS + 1
	}
	s.lastTS = now
	return fmt.Sprintf("%d.%06d", now/1e6, now%1e6)
}

// newTrigger issues a trigger_id for an interaction of user, in view viewID
// if any. Call with s.mu held.
func (s *Slack) newTrigger(user, viewID string) string {
	s.seq++
	id := fmt.Sprintf("%d.%d.%s", 1000000000000+time.Now().UnixMilli()%1000000000, 7000000000+s.seq, randHex(32))
	s.triggers[id] = &triggerRec{issued: time.Now(), user: user, viewID: viewID}
	return id
}

// newHook creates a response_url. Call with s.mu held.
func (s *Slack) newHook(kind, user, channel, sourceTS string, sourceEphemeral bool) *hook {
	s.seq++
	path := fmt.Sprintf("/hooks/%s/%s/%d/%s", kind, TeamID, 4000000000000+int64(s.seq), randHex(24))
	h := &hook{url: s.srv.URL + path, user: user, channel: channel, sourceTS: sourceTS, sourceEphemeral: sourceEphemeral}
	s.hooks[path] = h
	return h
}

func isUserID(id string) bool {
	return len(id) > 1 && (id[0] == 'U' || id[0] == 'W')
}

// resolveChannel maps a channel argument to a conversation id as Slack does
// for chat.postMessage: a user id posts into the app's DM with that user.
func resolveChannel(ch string) (string, bool) {
	switch {
	case len(ch) < 2:
		return "", false
	case isUserID(ch):
		return DMChannel(ch), true
	case ch[0] == 'C' || ch[0] == 'G' || ch[0] == 'D':
		return ch, true
	}
	return "", false
}

func channelName(ch string) string {
	switch {
	case strings.HasPrefix(ch, "D"):
		return "directmessage"
	case strings.HasPrefix(ch, "G"):
		return "privategroup"
	}
	return strings.ToLower(ch)
}

// ---- Web API ----

type apiErr struct {
	code  string
	extra map[string]any
}

func errOf(code string) *apiErr { return &apiErr{code: code} }

type apiMethod struct {
	appToken bool
	// scope is the scope the token needs for the method ("" none, or not
	// modelled: conversations.open would need im:write, which the manifest
	// does not grant, so the fake does not ask for it).
	scope string
	fn    func(s *Slack, p map[string]string, r *http.Request) (map[string]any, *apiErr)
}

var apiMethods = map[string]apiMethod{
	"apps.connections.open": {appToken: true, scope: "connections:write", fn: (*Slack).appsConnectionsOpen},
	"auth.test":             {fn: (*Slack).authTest},
	"chat.postMessage":      {scope: "chat:write", fn: (*Slack).chatPostMessage},
	"chat.update":           {scope: "chat:write", fn: (*Slack).chatUpdate},
	"chat.delete":           {scope: "chat:write", fn: (*Slack).chatDelete},
	"chat.postEphemeral":    {scope: "chat:write", fn: (*Slack).chatPostEphemeral},
	"conversations.open":    {fn: (*Slack).conversationsOpen},
	"users.info":            {scope: "users:read", fn: (*Slack).usersInfo},
	"users.lookupByEmail":   {scope: "users:read.email", fn: (*Slack).usersLookupByEmail},
	"views.open":            {fn: (*Slack).viewsOpen},
	"views.publish":         {fn: (*Slack).viewsPublish},
	"views.update":          {fn: (*Slack).viewsUpdate},
	"views.push":            {fn: (*Slack).viewsPush},
}

// parseParams reads form fields (query and body) or a JSON object body.
func parseParams(r *http.Request) (map[string]string, bool, error) {
	p := map[string]string{}
	for k, v := range r.URL.Query() {
		if len(v) > 0 {
			p[k] = v[0]
		}
	}
	ct := r.Header.Get("Content-Type")
	isJSON := strings.HasPrefix(strings.ToLower(ct), "application/json")
	if r.Method != http.MethodPost {
		return p, false, nil
	}
	if isJSON {
		body, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
		if err != nil {
			return nil, true, err
		}
		if len(strings.TrimSpace(string(body))) == 0 || strings.TrimSpace(string(body)) == "null" {
			return p, true, nil
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil {
			return nil, true, err
		}
		for k, raw := range obj {
			var str string
			if err := json.Unmarshal(raw, &str); err == nil {
				p[k] = str
			} else {
				p[k] = string(compactJSON(raw))
			}
		}
		return p, true, nil
	}
	if strings.HasPrefix(ct, "multipart/form-data") {
		if err := r.ParseMultipartForm(10 << 20); err != nil {
			return nil, false, err
		}
	} else if err := r.ParseForm(); err != nil {
		return nil, false, err
	}
	for k, v := range r.PostForm {
		if len(v) > 0 {
			p[k] = v[0]
		}
	}
	return p, false, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(mustJSON(v))
}

func (s *Slack) serveAPI(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	params, isJSON, perr := parseParams(r)
	token := params["token"]
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		token = strings.TrimPrefix(h, "Bearer ")
	}
	if params == nil {
		params = map[string]string{}
	}

	s.mu.Lock()
	idx := len(s.calls)
	now := time.Now()
	s.calls = append(s.calls, Call{Method: method, Params: params, At: now, OverPace: s.pace.over(method, params["channel"], now)})
	if f := s.apiFault(method, now); f.kind != "" {
		c := &s.calls[idx]
		c.Fault, c.Status = f.kind, f.status()
		if f.kind == FaultRateLimited {
			c.Error = "ratelimited"
		}
		s.changed.broadcast()
		s.mu.Unlock()
		f.write(w, true)
		return
	}
	resp, status, aerr := s.dispatch(method, params, token, perr, r)
	// Slack reports a token's granted scopes on every answer to a call made
	// with it.
	switch token {
	case BotToken:
		w.Header().Set("X-Oauth-Scopes", strings.Join(s.botScopes, ","))
	case AppToken:
		w.Header().Set("X-Oauth-Scopes", strings.Join(s.appScopes, ","))
	}
	s.calls[idx].Status = status
	if aerr != nil {
		s.calls[idx].Error = aerr.code
		if _, known := apiMethods[method]; !known {
			s.log.logf(s.closed, "fakes: Slack: unknown Web API method %q", method)
		}
	}
	s.changed.broadcast()
	s.mu.Unlock()

	if aerr != nil {
		resp = map[string]any{"ok": false, "error": aerr.code}
		for k, v := range aerr.extra {
			resp[k] = v
		}
	}
	// Slack warns about JSON bodies posted without a charset.
	if isJSON && !strings.Contains(strings.ToLower(r.Header.Get("Content-Type")), "charset") {
		resp["warning"] = "missing_charset"
		resp["response_metadata"] = map[string]any{"warnings": []string{"missing_charset"}}
	}
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, resp)
}

// dispatch runs a Web API method. Call with s.mu held.
func (s *Slack) dispatch(method string, p map[string]string, token string, perr error, r *http.Request) (map[string]any, int, *apiErr) {
	m, ok := apiMethods[method]
	if !ok {
		return nil, http.StatusOK, errOf("unknown_method")
	}
	if perr != nil {
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			return nil, http.StatusOK, errOf("invalid_json")
		}
		return nil, http.StatusOK, errOf("invalid_form_data")
	}
	want, other := BotToken, AppToken
	if m.appToken {
		want, other = AppToken, BotToken
	}
	switch token {
	case "":
		return nil, http.StatusOK, errOf("not_authed")
	case want:
	case other:
		return nil, http.StatusOK, errOf("not_allowed_token_type")
	default:
		return nil, http.StatusOK, errOf("invalid_auth")
	}
	if m.scope != "" {
		granted := s.botScopes
		if m.appToken {
			granted = s.appScopes
		}
		if !slices.Contains(granted, m.scope) {
			return nil, http.StatusOK, &apiErr{code: "missing_scope", extra: map[string]any{
				"needed": m.scope, "provided": strings.Join(granted, ","),
			}}
		}
	}
	if q := s.failNext[method]; len(q) > 0 {
		code := q[0]
		s.failNext[method] = q[1:]
		if code == "ratelimited" {
			return nil, http.StatusTooManyRequests, errOf(code)
		}
		return nil, http.StatusOK, errOf(code)
	}
	resp, aerr := m.fn(s, p, r)
	if aerr != nil {
		return nil, http.StatusOK, aerr
	}
	resp["ok"] = true
	return resp, http.StatusOK, nil
}

func (s *Slack) authTest(_ map[string]string, _ *http.Request) (map[string]any, *apiErr) {
	return map[string]any{
		"url":                   "https://" + TeamDomain + ".slack.com/",
		"team":                  "Fake Workspace",
		"user":                  "reprovision-bot",
		"team_id":               TeamID,
		"user_id":               BotUserID,
		"bot_id":                BotID,
		"is_enterprise_install": false,
	}, nil
}

// wire is the message object Slack returns and puts in payloads.
func (m *msgRec) wire() map[string]any {
	out := map[string]any{
		"type":   "message",
		"user":   BotUserID,
		"bot_id": BotID,
		"app_id": AppID,
		"text":   m.Text,
		"ts":     m.TS,
		"team":   TeamID,
		"bot_profile": map[string]any{
			"id": BotID, "app_id": AppID, "name": "reprovision-bot", "deleted": false, "team_id": TeamID,
		},
	}
	if len(m.Blocks) > 0 {
		out["blocks"] = m.Blocks
	}
	if m.ThreadTS != "" {
		out["thread_ts"] = m.ThreadTS
	}
	if m.Updates > 0 {
		out["edited"] = map[string]any{"user": BotUserID, "ts": m.editedTS}
	}
	return out
}

func hasContent(p map[string]string) bool {
	if p["text"] != "" {
		return true
	}
	if b := strings.TrimSpace(p["blocks"]); b != "" && b != "[]" && b != "null" {
		return true
	}
	if a := strings.TrimSpace(p["attachments"]); a != "" && a != "[]" && a != "null" {
		return true
	}
	return false
}

func (s *Slack) chatPostMessage(p map[string]string, _ *http.Request) (map[string]any, *apiErr) {
	ch, ok := resolveChannel(p["channel"])
	if !ok {
		return nil, errOf("channel_not_found")
	}
	if !hasContent(p) {
		return nil, errOf("no_text")
	}
	if utf8.RuneCountInString(p["text"]) > 40000 {
		return nil, errOf("msg_too_long")
	}
	blocks, aerr := messageBlocks(p)
	if aerr != nil {
		return nil, aerr
	}
	m := &msgRec{Message: Message{Channel: ch, TS: s.nextTS(), Text: p["text"], Blocks: blocks, ThreadTS: p["thread_ts"], Via: "chat.postMessage"}}
	s.msgs = append(s.msgs, m)
	return map[string]any{"channel": ch, "ts": m.TS, "message": m.wire()}, nil
}

func (s *Slack) chatUpdate(p map[string]string, _ *http.Request) (map[string]any, *apiErr) {
	ch := p["channel"]
	if ch == "" || isUserID(ch) {
		return nil, errOf("channel_not_found")
	}
	if p["ts"] == "" {
		return nil, errOf("message_not_found")
	}
	m := s.findMsg(ch, p["ts"])
	if m == nil || m.ephemeral {
		return nil, errOf("message_not_found")
	}
	if !hasContent(p) {
		return nil, errOf("no_text")
	}
	_, hasBlocks := p["blocks"]
	blocks, aerr := messageBlocks(p)
	if aerr != nil {
		return nil, aerr
	}
	if _, ok := p["text"]; ok {
		m.Text = p["text"]
	}
	if hasBlocks {
		m.Blocks = blocks
	}
	m.Updates++
	m.editedTS = s.nextTS()
	return map[string]any{"channel": ch, "ts": m.TS, "text": m.Text, "message": m.wire()}, nil
}

func (s *Slack) chatDelete(p map[string]string, _ *http.Request) (map[string]any, *apiErr) {
	ch := p["channel"]
	if ch == "" || isUserID(ch) {
		return nil, errOf("channel_not_found")
	}
	m := s.findMsg(ch, p["ts"])
	if m == nil || m.ephemeral {
		return nil, errOf("message_not_found")
	}
	m.deleted = true
	return map[string]any{"channel": ch, "ts": m.TS}, nil
}

func (s *Slack) chatPostEphemeral(p map[string]string, _ *http.Request) (map[string]any, *apiErr) {
	ch, ok := resolveChannel(p["channel"])
	if !ok {
		return nil, errOf("channel_not_found")
	}
	if !isUserID(p["user"]) {
		return nil, errOf("user_not_found")
	}
	if !hasContent(p) {
		return nil, errOf("no_text")
	}
	blocks, aerr := messageBlocks(p)
	if aerr != nil {
		return nil, aerr
	}
	m := &msgRec{ephemeral: true, Message: Message{Channel: ch, TS: s.nextTS(), Text: p["text"], Blocks: blocks, ThreadTS: p["thread_ts"], User: p["user"], Via: "chat.postEphemeral"}}
	s.msgs = append(s.msgs, m)
	return map[string]any{"message_ts": m.TS}, nil
}

func (s *Slack) conversationsOpen(p map[string]string, _ *http.Request) (map[string]any, *apiErr) {
	var users []string
	for _, u := range strings.Split(p["users"], ",") {
		if u = strings.TrimSpace(u); u != "" {
			users = append(users, u)
		}
	}
	var id string
	switch {
	case len(users) == 0 && p["channel"] != "":
		id = p["channel"]
	case len(users) == 0:
		return nil, errOf("users_list_not_supplied")
	case len(users) > 8:
		return nil, errOf("too_many_users")
	default:
		for _, u := range users {
			if !isUserID(u) {
				return nil, errOf("user_not_found")
			}
		}
		if len(users) == 1 {
			id = DMChannel(users[0])
		} else {
			sort.Strings(users)
			id = "G" + strings.Join(users, "")
		}
	}
	channel := map[string]any{"id": id}
	if p["return_im"] == "true" || p["return_im"] == "1" {
		channel["created"] = 1700000000
		if len(users) == 1 {
			channel["is_im"] = true
			channel["user"] = users[0]
			channel["is_open"] = true
		}
	}
	return map[string]any{"no_op": true, "already_open": true, "channel": channel}, nil
}

func (s *Slack) userWire(id string) map[string]any {
	u := s.user(id)
	profile := map[string]any{
		"real_name":               u.name,
		"real_name_normalized":    u.name,
		"display_name":            u.name,
		"display_name_normalized": u.name,
		"team":                    TeamID,
	}
	// Slack shows the email only to tokens granted users:read.email.
	if u.email != "" && slices.Contains(s.botScopes, "users:read.email") {
		profile["email"] = u.email
	}
	return map[string]any{
		"id":                  id,
		"team_id":             TeamID,
		"name":                u.name,
		"deleted":             u.deleted,
		"real_name":           u.name,
		"tz":                  "Europe/Amsterdam",
		"tz_label":            "Central European Time",
		"tz_offset":           3600,
		"profile":             profile,
		"is_admin":            false,
		"is_owner":            false,
		"is_bot":              id == BotUserID,
		"is_app_user":         false,
		"is_restricted":       false,
		"is_ultra_restricted": false,
		"updated":             1700000000,
		"is_email_confirmed":  u.email != "",
	}
}

func (s *Slack) usersInfo(p map[string]string, _ *http.Request) (map[string]any, *apiErr) {
	id := p["user"]
	if !isUserID(id) {
		return nil, errOf("user_not_found")
	}
	return map[string]any{"user": s.userWire(id)}, nil
}

func (s *Slack) usersLookupByEmail(p map[string]string, _ *http.Request) (map[string]any, *apiErr) {
	email := strings.ToLower(strings.TrimSpace(p["email"]))
	if email == "" {
		return nil, errOf("invalid_email")
	}
	ids := make([]string, 0, len(s.users))
	for id := range s.users {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if strings.ToLower(s.users[id].email) == email {
			return map[string]any{"user": s.userWire(id)}, nil
		}
	}
	return nil, errOf("users_not_found")
}

// ---- Block Kit validation (the subset of Slack's rules a bot can trip) ----

func textOf(obj any) string {
	m, _ := obj.(map[string]any)
	if m == nil {
		return ""
	}
	t, _ := m["text"].(string)
	return t
}

// messageBlocks validates the optional blocks parameter of a chat.* call
// (messages hold 50 blocks at most).
func messageBlocks(p map[string]string) (json.RawMessage, *apiErr) {
	raw, ok := p["blocks"]
	if !ok {
		return nil, nil
	}
	return normalizeBlocks(raw, 50)
}

func invalidBlocks(errs []string) *apiErr {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = "[ERROR] " + e
	}
	return &apiErr{code: "invalid_blocks", extra: map[string]any{
		"errors":            errs,
		"response_metadata": map[string]any{"messages": msgs},
	}}
}

// normalizeBlocks validates a blocks array and assigns a block_id to every
// block that lacks one, as Slack does.
func normalizeBlocks(raw string, max int) (json.RawMessage, *apiErr) {
	raw = strings.TrimSpace(raw)
	if raw == "" || raw == "null" {
		return nil, nil
	}
	var blocks []map[string]any
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&blocks); err != nil {
		return nil, errOf("invalid_blocks_format")
	}
	var errs []string
	if len(blocks) > max {
		errs = append(errs, fmt.Sprintf("no more than %d items allowed [json-pointer:/blocks]", max))
	}
	blockIDs := map[string]bool{}
	actionIDs := map[string]bool{}
	for i, b := range blocks {
		ptr := fmt.Sprintf("/blocks/%d", i)
		if b == nil {
			errs = append(errs, "must be an object [json-pointer:"+ptr+"]")
			continue
		}
		typ, _ := b["type"].(string)
		if typ == "" {
			errs = append(errs, "missing required field: type [json-pointer:"+ptr+"]")
			continue
		}
		if id, ok := b["block_id"].(string); ok {
			if utf8.RuneCountInString(id) > 255 {
				errs = append(errs, "must be less than 256 characters [json-pointer:"+ptr+"/block_id]")
			}
			if blockIDs[id] {
				errs = append(errs, "block_id must be unique across the message [json-pointer:"+ptr+"/block_id]")
			}
			blockIDs[id] = true
		}
		// action_id must be unique within its block (Block Kit's rule);
		// only block_id is unique across the message.
		errs = append(errs, validateBlock(typ, b, ptr, map[string]bool{})...)
	}
	if len(errs) > 0 {
		return nil, invalidBlocks(errs)
	}
	for _, b := range blocks {
		if b == nil {
			continue
		}
		if _, ok := b["block_id"].(string); !ok {
			for {
				id := randB64(3)[:4]
				if !blockIDs[id] {
					blockIDs[id] = true
					b["block_id"] = id
					break
				}
			}
		}
		// Slack names an input element that has no action_id.
		if el, ok := b["element"].(map[string]any); ok && b["type"] == "input" {
			if _, ok := el["action_id"].(string); !ok {
				for {
					id := randB64(3)[:4]
					if !actionIDs[id] {
						actionIDs[id] = true
						el["action_id"] = id
						break
					}
				}
			}
		}
	}
	return json.RawMessage(mustJSON(blocks)), nil
}

func checkText(obj any, ptr string, max int, required bool) []string {
	if obj == nil {
		if required {
			return []string{"missing required field: text [json-pointer:" + ptr + "]"}
		}
		return nil
	}
	t := textOf(obj)
	n := utf8.RuneCountInString(t)
	switch {
	case n == 0:
		return []string{"must be more than 0 characters [json-pointer:" + ptr + "/text]"}
	case n > max:
		return []string{fmt.Sprintf("must be less than %d characters [json-pointer:%s/text]", max+1, ptr)}
	}
	return nil
}

func validateBlock(typ string, b map[string]any, ptr string, actionIDs map[string]bool) []string {
	var errs []string
	switch typ {
	case "section":
		fields, _ := b["fields"].([]any)
		if b["text"] == nil && len(fields) == 0 {
			errs = append(errs, "must provide either text or fields [json-pointer:"+ptr+"]")
		}
		errs = append(errs, checkText(b["text"], ptr+"/text", 3000, false)...)
		if len(fields) > 10 {
			errs = append(errs, "no more than 10 items allowed [json-pointer:"+ptr+"/fields]")
		}
		for i, f := range fields {
			errs = append(errs, checkText(f, fmt.Sprintf("%s/fields/%d", ptr, i), 2000, true)...)
		}
		if acc, ok := b["accessory"].(map[string]any); ok {
			errs = append(errs, validateElement(acc, ptr+"/accessory", actionIDs)...)
		}
	case "header":
		errs = append(errs, checkText(b["text"], ptr+"/text", 150, true)...)
	case "actions":
		els, _ := b["elements"].([]any)
		switch {
		case len(els) == 0:
			errs = append(errs, "must provide at least 1 items [json-pointer:"+ptr+"/elements]")
		case len(els) > 25:
			errs = append(errs, "no more than 25 items allowed [json-pointer:"+ptr+"/elements]")
		}
		for i, e := range els {
			el, _ := e.(map[string]any)
			errs = append(errs, validateElement(el, fmt.Sprintf("%s/elements/%d", ptr, i), actionIDs)...)
		}
	case "input":
		errs = append(errs, checkText(b["label"], ptr+"/label", 2000, true)...)
		errs = append(errs, checkText(b["hint"], ptr+"/hint", 2000, false)...)
		if el, ok := b["element"].(map[string]any); !ok {
			errs = append(errs, "missing required field: element [json-pointer:"+ptr+"]")
		} else {
			errs = append(errs, validateElement(el, ptr+"/element", actionIDs)...)
		}
	case "context":
		els, _ := b["elements"].([]any)
		if len(els) == 0 || len(els) > 10 {
			errs = append(errs, "must provide between 1 and 10 items [json-pointer:"+ptr+"/elements]")
		}
	}
	return errs
}

func validateElement(el map[string]any, ptr string, actionIDs map[string]bool) []string {
	if el == nil {
		return []string{"must be an object [json-pointer:" + ptr + "]"}
	}
	var errs []string
	if id, ok := el["action_id"].(string); ok {
		if utf8.RuneCountInString(id) > 255 {
			errs = append(errs, "must be less than 256 characters [json-pointer:"+ptr+"/action_id]")
		}
		if actionIDs[id] {
			errs = append(errs, "action_id must be unique within the block [json-pointer:"+ptr+"/action_id]")
		}
		actionIDs[id] = true
	}
	switch typ, _ := el["type"].(string); typ {
	case "button":
		errs = append(errs, checkText(el["text"], ptr+"/text", 75, true)...)
		if v, ok := el["value"].(string); ok && utf8.RuneCountInString(v) > 2000 {
			errs = append(errs, "must be less than 2001 characters [json-pointer:"+ptr+"/value]")
		}
		if u, ok := el["url"].(string); ok && utf8.RuneCountInString(u) > 3000 {
			errs = append(errs, "must be less than 3001 characters [json-pointer:"+ptr+"/url]")
		}
		if st, ok := el["style"].(string); ok && st != "primary" && st != "danger" {
			errs = append(errs, "must be one of primary, danger [json-pointer:"+ptr+"/style]")
		}
	case "plain_text_input":
		errs = append(errs, checkText(el["placeholder"], ptr+"/placeholder", 150, false)...)
		maxLen, hasMax := intOf(el["max_length"])
		if hasMax && (maxLen < 1 || maxLen > 3000) {
			errs = append(errs, "must be between 1 and 3000 [json-pointer:"+ptr+"/max_length]")
		}
		if minLen, ok := intOf(el["min_length"]); ok && (minLen < 0 || minLen > 3000 || (hasMax && minLen > maxLen)) {
			errs = append(errs, "must be between 0 and 3000 and not more than max_length [json-pointer:"+ptr+"/min_length]")
		}
		if iv, ok := el["initial_value"].(string); ok && hasMax && utf8.RuneCountInString(iv) > maxLen {
			errs = append(errs, "must be no longer than max_length [json-pointer:"+ptr+"/initial_value]")
		}
	case "static_select":
		errs = append(errs, checkText(el["placeholder"], ptr+"/placeholder", 150, false)...)
		errs = append(errs, validateSelectOptions(el, ptr)...)
	}
	return errs
}

// validateSelectOptions checks a static_select's options (1 to 100, each
// with a plain_text text of at most 75 characters and a value of 1 to 150)
// and that its initial_option, if any, is one of them.
func validateSelectOptions(el map[string]any, ptr string) []string {
	var errs []string
	options, _ := el["options"].([]any)
	if len(options) == 0 || len(options) > 100 {
		return append(errs, "must provide between 1 and 100 items [json-pointer:"+ptr+"/options]")
	}
	for i, o := range options {
		op, _ := o.(map[string]any)
		optr := fmt.Sprintf("%s/options/%d", ptr, i)
		if op == nil {
			errs = append(errs, "must be an object [json-pointer:"+optr+"]")
			continue
		}
		if t, _ := op["text"].(map[string]any); t != nil && t["type"] != "plain_text" {
			errs = append(errs, "must be a plain_text text object [json-pointer:"+optr+"/text]")
		}
		errs = append(errs, checkText(op["text"], optr+"/text", 75, true)...)
		if v, _ := op["value"].(string); v == "" || utf8.RuneCountInString(v) > 150 {
			errs = append(errs, "must be between 1 and 150 characters [json-pointer:"+optr+"/value]")
		}
	}
	if initial, ok := el["initial_option"]; ok && selectOption(el, initial) == nil {
		errs = append(errs, "must match one of the options [json-pointer:"+ptr+"/initial_option]")
	}
	return errs
}

// selectOption finds option among a static_select's options: the same
// value and text (as Slack matches an initial_option), or, when option is
// a string, the same value. It returns nil if there is none.
func selectOption(el map[string]any, option any) map[string]any {
	options, _ := el["options"].([]any)
	for _, o := range options {
		op, _ := o.(map[string]any)
		if op == nil {
			continue
		}
		switch want := option.(type) {
		case string:
			if op["value"] == want {
				return op
			}
		case map[string]any:
			if op["value"] == want["value"] && textOf(op["text"]) == textOf(want["text"]) {
				return op
			}
		}
	}
	return nil
}

// intOf reads a JSON number (json.Number or float64).
func intOf(v any) (int, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err == nil
	case float64:
		return int(n), true
	}
	return 0, false
}

// findButton finds an interactive element by action_id (and block_id if
// set) in a blocks array; it returns its block_id and the element.
func findButton(blocks json.RawMessage, actionID, blockID string) (string, map[string]any) {
	var bs []map[string]any
	if json.Unmarshal(blocks, &bs) != nil {
		return "", nil
	}
	for _, b := range bs {
		bid, _ := b["block_id"].(string)
		if blockID != "" && bid != blockID {
			continue
		}
		var els []any
		if e, ok := b["elements"].([]any); ok {
			els = e
		}
		if acc, ok := b["accessory"]; ok {
			els = append(els, acc)
		}
		for _, e := range els {
			el, _ := e.(map[string]any)
			if id, _ := el["action_id"].(string); el != nil && id == actionID {
				return bid, el
			}
		}
	}
	return "", nil
}

// ---- response_url ----

type hookBody struct {
	Text            string          `json:"text"`
	Blocks          json.RawMessage `json:"blocks"`
	Attachments     json.RawMessage `json:"attachments"`
	ResponseType    string          `json:"response_type"`
	ReplaceOriginal any             `json:"replace_original"`
	DeleteOriginal  any             `json:"delete_original"`
	ThreadTS        string          `json:"thread_ts"`
}

func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return x == "true" || x == "1"
	}
	return false
}

func (s *Slack) serveHook(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 10<<20))
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if v, err := url.ParseQuery(string(body)); err == nil && v.Get("payload") != "" {
			body = []byte(v.Get("payload"))
		}
	}
	s.mu.Lock()
	h := s.hooks[r.URL.Path]
	post := HookPost{URL: s.srv.URL + r.URL.Path, Body: compactJSON(body), At: time.Now()}
	if f := s.hookFault(post.At); f.kind != "" {
		if h != nil {
			post.UserID, post.ChannelID = h.user, h.channel
		}
		post.Fault, post.Status = f.kind, f.status()
		post.Error = "rate_limited"
		if f.kind == FaultOutage {
			post.Error = "service_unavailable"
		}
		s.hookPosts = append(s.hookPosts, post)
		s.changed.broadcast()
		s.mu.Unlock()
		f.write(w, false)
		return
	}
	status, text := http.StatusOK, "ok"
	switch {
	case r.Method != http.MethodPost:
		status, text = http.StatusMethodNotAllowed, "invalid_method"
	case h == nil:
		status, text = http.StatusNotFound, "no_service"
	default:
		post.UserID, post.ChannelID = h.user, h.channel
		h.uses++
		if errText := s.applyResponse(h, body, "response_url"); errText != "" {
			status, text = http.StatusBadRequest, errText
		}
	}
	if status != http.StatusOK {
		post.Error = text
	}
	post.Status = status
	s.hookPosts = append(s.hookPosts, post)
	s.changed.broadcast()
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text)
}

// applyResponse applies a response_url post or a slash-command ack payload.
// It returns an error text, "" on success. Call with s.mu held.
func (s *Slack) applyResponse(h *hook, body []byte, via string) string {
	var hb hookBody
	if err := json.Unmarshal(body, &hb); err != nil {
		return "invalid_payload"
	}
	var source *msgRec
	if h.sourceTS != "" {
		source = s.findMsg(h.channel, h.sourceTS)
		if source != nil && source.ephemeral && source.User != h.user {
			source = nil
		}
	}
	if truthy(hb.DeleteOriginal) {
		if source == nil {
			return "message_not_found"
		}
		source.deleted = true
		return ""
	}
	content := map[string]string{"text": hb.Text}
	if len(hb.Blocks) > 0 {
		content["blocks"] = string(hb.Blocks)
	}
	if len(hb.Attachments) > 0 {
		content["attachments"] = string(hb.Attachments)
	}
	if !hasContent(content) {
		return "no_text"
	}
	blocks, aerr := normalizeBlocks(string(hb.Blocks), 50)
	if aerr != nil {
		return aerr.code
	}
	if truthy(hb.ReplaceOriginal) && source != nil {
		source.Text = hb.Text
		source.Blocks = blocks
		source.Updates++
		source.editedTS = s.nextTS()
		return ""
	}
	m := &msgRec{Message: Message{Channel: h.channel, TS: s.nextTS(), Text: hb.Text, Blocks: blocks, ThreadTS: hb.ThreadTS, Via: via}}
	if hb.ResponseType != "in_channel" || h.channel == "" {
		m.ephemeral = true
		m.User = h.user
	}
	s.msgs = append(s.msgs, m)
	return ""
}
