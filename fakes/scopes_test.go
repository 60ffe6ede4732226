package fakes_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// slackPost calls a Web API method with token as a Bearer header and form
// fields, returning the HTTP answer's headers and JSON body.
func slackPost(t *testing.T, s *fakes.Slack, method, token string, form url.Values) (http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.APIURL()+method, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return resp.Header, body
}

func TestSlackOAuthScopesHeader(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	h, body := slackPost(t, s, "auth.test", fakes.BotToken, nil)
	if body["ok"] != true || body["bot_id"] != fakes.BotID {
		t.Fatalf("auth.test = %v", body)
	}
	if got := h.Get("X-OAuth-Scopes"); got != fakes.DefaultBotScopes || s.BotScopes() != fakes.DefaultBotScopes {
		t.Errorf("x-oauth-scopes = %q (BotScopes %q), want %q", got, s.BotScopes(), fakes.DefaultBotScopes)
	}
	// Every bot-token answer carries it, errors too.
	h, body = slackPost(t, s, "chat.update", fakes.BotToken, url.Values{"channel": {"C0NOPE"}, "ts": {"1.2"}, "text": {"x"}})
	if body["ok"] != false || h.Get("X-OAuth-Scopes") != fakes.DefaultBotScopes {
		t.Errorf("chat.update: %v, header %q", body, h.Get("X-OAuth-Scopes"))
	}
	// The app token's own scopes.
	h, _ = slackPost(t, s, "apps.connections.open", fakes.AppToken, nil)
	if got := h.Get("X-OAuth-Scopes"); got != fakes.DefaultAppTokenScopes {
		t.Errorf("apps.connections.open x-oauth-scopes = %q", got)
	}
	// No token, no header.
	if h, _ = slackPost(t, s, "auth.test", "", nil); h.Get("X-OAuth-Scopes") != "" {
		t.Errorf("no token: x-oauth-scopes = %q", h.Get("X-OAuth-Scopes"))
	}

	s.SetBotScopes("commands", "chat:write")
	if h, _ = slackPost(t, s, "auth.test", fakes.BotToken, nil); h.Get("X-OAuth-Scopes") != "commands,chat:write" {
		t.Errorf("after SetBotScopes: %q", h.Get("X-OAuth-Scopes"))
	}
}

func TestSlackRemoveBotScope(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	const user = "U0ALICE"
	s.SetUserEmail(user, "alice@example.com")
	_, body := slackPost(t, s, "users.info", fakes.BotToken, url.Values{"user": {user}})
	if profile, _ := body["user"].(map[string]any)["profile"].(map[string]any); profile["email"] != "alice@example.com" {
		t.Fatalf("users.info with users:read.email = %v", body)
	}

	// Without users:read.email Slack leaves the email out.
	s.RemoveBotScope("users:read.email")
	h, body := slackPost(t, s, "auth.test", fakes.BotToken, nil)
	if got := h.Get("X-OAuth-Scopes"); got != "commands,chat:write,users:read" || body["ok"] != true {
		t.Errorf("x-oauth-scopes = %q, %v", got, body)
	}
	_, body = slackPost(t, s, "users.info", fakes.BotToken, url.Values{"user": {user}})
	if profile, _ := body["user"].(map[string]any)["profile"].(map[string]any); body["ok"] != true || profile == nil || profile["email"] != nil {
		t.Errorf("users.info without users:read.email = %v", body)
	}
	_, body = slackPost(t, s, "users.lookupByEmail", fakes.BotToken, url.Values{"email": {"alice@example.com"}})
	if body["error"] != "missing_scope" || body["needed"] != "users:read.email" || body["provided"] != "commands,chat:write,users:read" {
		t.Errorf("users.lookupByEmail without users:read.email = %v", body)
	}

	// A method needing a removed scope answers missing_scope and does nothing.
	s.RemoveBotScope("chat:write")
	_, body = slackPost(t, s, "chat.postMessage", fakes.BotToken, url.Values{"channel": {"C0HELP"}, "text": {"hi"}})
	if body["ok"] != false || body["error"] != "missing_scope" || body["needed"] != "chat:write" || body["provided"] != "commands,users:read" {
		t.Errorf("chat.postMessage without chat:write = %v", body)
	}
	if msgs := s.Messages("C0HELP"); len(msgs) != 0 {
		t.Errorf("posted anyway: %v", msgs)
	}
	if calls := s.Calls("chat.postMessage"); len(calls) != 1 || calls[0].Error != "missing_scope" {
		t.Errorf("calls = %+v", calls)
	}
}

func TestSlackConnectionsOpenRefusals(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	cases := []struct {
		name, token, want string
	}{
		{"bot token", fakes.BotToken, "not_allowed_token_type"},
		{"unknown token", "xapp-1-A0OTHER-123-abc", "invalid_auth"},
		{"no token", "", "not_authed"},
	}
	for _, c := range cases {
		if _, body := slackPost(t, s, "apps.connections.open", c.token, nil); body["ok"] != false || body["error"] != c.want {
			t.Errorf("%s: %v, want %s", c.name, body, c.want)
		}
	}
	// An app-level token generated without connections:write.
	s.SetAppTokenScopes("authorizations:read")
	_, body := slackPost(t, s, "apps.connections.open", fakes.AppToken, nil)
	if body["error"] != "missing_scope" || body["needed"] != "connections:write" || body["provided"] != "authorizations:read" {
		t.Errorf("without connections:write: %v", body)
	}
	s.SetAppTokenScopes(fakes.DefaultAppTokenScopes)
	if _, body = slackPost(t, s, "apps.connections.open", fakes.AppToken, nil); body["ok"] != true || !strings.HasPrefix(body["url"].(string), "ws://127.0.0.1:") {
		t.Errorf("with connections:write: %v", body)
	}
}

// Entra's discovery for a tenant it does not know: 400 invalid_tenant with
// AADSTS90002, in Entra's error shape.
func TestEntraDiscoveryUnknownTenant(t *testing.T) {
	t.Parallel()
	e := fakes.NewEntra(t)
	const tenant = "11111111-1111-1111-1111-111111111111"
	resp, err := fakes.TLSClient().Get(e.AuthorityHost() + tenant + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error         string `json:"error"`
		Description   string `json:"error_description"`
		Codes         []int  `json:"error_codes"`
		Timestamp     string `json:"timestamp"`
		TraceID       string `json:"trace_id"`
		CorrelationID string `json:"correlation_id"`
		ErrorURI      string `json:"error_uri"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if body.Error != "invalid_tenant" || len(body.Codes) != 1 || body.Codes[0] != 90002 ||
		!strings.HasPrefix(body.Description, "AADSTS90002: Tenant '"+tenant+"' not found.") ||
		!strings.Contains(body.Description, "\r\nTrace ID: "+body.TraceID+"\r\nCorrelation ID: "+body.CorrelationID+"\r\nTimestamp: "+body.Timestamp) ||
		body.ErrorURI != "https://login.microsoftonline.com/error?code=90002" {
		t.Errorf("answer %+v", body)
	}
}
