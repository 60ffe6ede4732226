package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// check runs `reprovision-bot check` with h's environment and returns its
// lines. It fails the test if a token shows up in the output.
func (h *harness) check(args ...string) ([]string, error) {
	h.t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := runCheck(ctx, args, func(k string) string { return h.env[k] }, &out)
	text := out.String()
	h.t.Logf("check %s:\n%s", strings.Join(args, " "), text)
	for _, secret := range []string{h.env["SLACK_BOT_TOKEN"], h.env["SLACK_APP_TOKEN"], "ticket="} {
		if secret != "" && strings.Contains(text, secret) {
			h.t.Errorf("check printed a secret (%q):\n%s", secret, text)
		}
	}
	return strings.Split(strings.TrimRight(text, "\n"), "\n"), err
}

// line is the one line about subject; it fails the test unless there is
// exactly one and it starts with mark.
func line(t *testing.T, lines []string, mark, subject string) string {
	t.Helper()
	var found []string
	for _, l := range lines {
		if strings.Contains(l, subject) {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d lines about %q in:\n%s", len(found), subject, strings.Join(lines, "\n"))
	}
	if !strings.HasPrefix(found[0], mark+" ") {
		t.Fatalf("line about %q is not %s:\n%s", subject, mark, strings.Join(lines, "\n"))
	}
	return found[0]
}

func wantFailed(t *testing.T, err error, n int) {
	t.Helper()
	want := []string{"", "1 of 5 checks failed", "2 of 5 checks failed", "3 of 5 checks failed", "4 of 5 checks failed", "5 of 5 checks failed"}[n]
	if err == nil || err.Error() != want {
		t.Fatalf("check returned %v, want %q", err, want)
	}
}

// closedAddr is a 127.0.0.1 port nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestCheckPassesAgainstTheFakes(t *testing.T) {
	h := newHarness(t)
	h.env["REPROVISION_DB"] = filepath.Join(t.TempDir(), "reprovision.db") // not created yet
	lines, err := h.check()
	if err != nil {
		t.Fatalf("check: %v\n%s", err, strings.Join(lines, "\n"))
	}
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "✓ ") {
			t.Errorf("not ✓: %s", l)
		}
	}
	l := line(t, lines, "✓", "SLACK_BOT_TOKEN")
	for _, want := range []string{fakes.TeamID, fakes.BotUserID, "commands, chat:write, users:read, users:read.email"} {
		if !strings.Contains(l, want) {
			t.Errorf("bot token line lacks %q: %s", want, l)
		}
	}
	line(t, lines, "✓", "apps.connections.open")
	if l := line(t, lines, "✓", "AZURE_TENANT_ID"); !strings.Contains(l, fakes.TenantID) {
		t.Errorf("tenant line: %s", l)
	}
	if l := line(t, lines, "✓", "GRAPH_URL"); !strings.Contains(l, "401 InvalidAuthenticationToken") {
		t.Errorf("graph line: %s", l)
	}
	if l := line(t, lines, "✓", "REPROVISION_DB"); !strings.Contains(l, "does not exist yet") {
		t.Errorf("store line: %s", l)
	}
	// check creates no store, nor any file next to it.
	if entries, _ := os.ReadDir(filepath.Dir(h.env["REPROVISION_DB"])); len(entries) != 0 {
		t.Errorf("check left files: %v", entries)
	}
	// It did not dial the Socket Mode URL, and asked Graph without a token.
	if n := h.slack.Connections(); n != 0 {
		t.Errorf("%d Socket Mode connections", n)
	}
	for _, r := range h.graph.Requests() {
		if r.Authorization != "" || r.Method != http.MethodGet {
			t.Errorf("Graph request %s %s with Authorization %q", r.Method, r.Path, r.Authorization)
		}
	}
}

// An existing store is opened for writing and a write rolled back; one a
// bot serves is left alone and passes.
func TestCheckStore(t *testing.T) {
	h := newHarness(t)
	path := h.env["REPROVISION_DB"]
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := h.check()
	if err != nil {
		t.Fatalf("store in use: %v\n%s", err, strings.Join(lines, "\n"))
	}
	if l := line(t, lines, "✓", "REPROVISION_DB"); !strings.Contains(l, "served by a running bot (this process, pid") {
		t.Errorf("store in use: %s", l)
	}
	s.Close()

	lines, err = h.check()
	if err != nil {
		t.Fatalf("store closed: %v\n%s", err, strings.Join(lines, "\n"))
	}
	if l := line(t, lines, "✓", "REPROVISION_DB"); !strings.Contains(l, "test write was rolled back") {
		t.Errorf("store closed: %s", l)
	}
	// Nothing of the probe stayed, and the lock was given back.
	s, err = sqlite.Open(path)
	if err != nil {
		t.Fatalf("reopen after check: %v", err)
	}
	s.Close()

	// A read-only file.
	if os.Geteuid() != 0 { // root writes anyway
		if err := os.Chmod(path, 0o400); err != nil {
			t.Fatal(err)
		}
		lines, err = h.check()
		wantFailed(t, err, 1)
		line(t, lines, "✗", "REPROVISION_DB")
		os.Chmod(path, 0o600)
	}

	// A directory that does not exist.
	h.env["REPROVISION_DB"] = filepath.Join(t.TempDir(), "missing", "dir", "reprovision.db")
	lines, err = h.check()
	wantFailed(t, err, 1)
	if l := line(t, lines, "✗", "REPROVISION_DB"); !strings.Contains(l, "no file can be created") || !strings.Contains(l, "→ ") {
		t.Errorf("missing directory: %s", l)
	}
}

func TestCheckNamesAWrongTenant(t *testing.T) {
	h := newHarness(t)
	h.env["REPROVISION_DB"] = filepath.Join(t.TempDir(), "reprovision.db") // not created yet
	const wrong = "11111111-2222-3333-4444-555555555555"
	h.env["AZURE_TENANT_ID"] = wrong
	lines, err := h.check()
	wantFailed(t, err, 1)
	l := line(t, lines, "✗", "AZURE_TENANT_ID")
	for _, want := range []string{wrong, "AADSTS90002", "→ set AZURE_TENANT_ID"} {
		if !strings.Contains(l, want) {
			t.Errorf("tenant line lacks %q: %s", want, l)
		}
	}
}

func TestCheckNamesAMissingBotScope(t *testing.T) {
	h := newHarness(t)
	h.slack.RemoveBotScope("users:read.email")
	lines, err := h.check()
	wantFailed(t, err, 1)
	l := line(t, lines, "✗", "SLACK_BOT_TOKEN")
	for _, want := range []string{"lacks the scope(s) users:read.email", "granted: commands,chat:write,users:read", "Bot Token Scopes", "reinstall"} {
		if !strings.Contains(l, want) {
			t.Errorf("bot token line lacks %q: %s", want, l)
		}
	}

	h.slack.SetBotScopes()
	lines, err = h.check()
	wantFailed(t, err, 1)
	if l := line(t, lines, "✗", "SLACK_BOT_TOKEN"); !strings.Contains(l, "commands, chat:write, users:read, users:read.email (granted: none)") {
		t.Errorf("no scopes: %s", l)
	}
}

func TestCheckNamesABadBotToken(t *testing.T) {
	h := newHarness(t)
	h.env["SLACK_BOT_TOKEN"] = "xoxb-revoked-or-mistyped"
	lines, err := h.check()
	wantFailed(t, err, 1)
	if l := line(t, lines, "✗", "SLACK_BOT_TOKEN"); !strings.Contains(l, "auth.test refused it: invalid_auth") {
		t.Errorf("bot token line: %s", l)
	}
}

func TestCheckNamesAnAppTokenThatCannotOpenSocketMode(t *testing.T) {
	h := newHarness(t)
	// Generated without connections:write.
	h.slack.SetAppTokenScopes("authorizations:read")
	lines, err := h.check()
	wantFailed(t, err, 1)
	l := line(t, lines, "✗", "SLACK_APP_TOKEN")
	for _, want := range []string{"apps.connections.open refused: missing_scope (needs connections:write; the token has authorizations:read)", "App-Level Tokens"} {
		if !strings.Contains(l, want) {
			t.Errorf("app token line lacks %q: %s", want, l)
		}
	}

	// A token Slack does not know (revoked, or mistyped).
	h.slack.SetAppTokenScopes(fakes.DefaultAppTokenScopes)
	h.env["SLACK_APP_TOKEN"] = "xapp-1-A0OTHER-0000-revoked"
	lines, err = h.check()
	wantFailed(t, err, 1)
	if l := line(t, lines, "✗", "SLACK_APP_TOKEN"); !strings.Contains(l, "apps.connections.open refused: invalid_auth") || !strings.Contains(l, "set SLACK_APP_TOKEN") {
		t.Errorf("unknown app token: %s", l)
	}

	// Slack refusing it by name.
	h.env["SLACK_APP_TOKEN"] = fakes.AppToken
	h.slack.FailNext("apps.connections.open", "not_allowed_token_type")
	lines, err = h.check()
	wantFailed(t, err, 1)
	if l := line(t, lines, "✗", "SLACK_APP_TOKEN"); !strings.Contains(l, "not_allowed_token_type") || !strings.Contains(l, "wrong kind of token") {
		t.Errorf("not_allowed_token_type: %s", l)
	}
	if n := h.slack.Connections(); n != 0 {
		t.Errorf("%d Socket Mode connections", n)
	}
}

func TestCheckGraphAnswers(t *testing.T) {
	h := newHarness(t)
	// Something that is not Graph answers there (TLS: the fakes' certificate,
	// trusted through SSL_CERT_FILE like the fakes).
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html>hello</html>"))
	}))
	defer other.Close()
	h.env["GRAPH_URL"] = other.URL + "/beta"
	lines, err := h.check()
	wantFailed(t, err, 1)
	if l := line(t, lines, "✗", "GRAPH_URL"); !strings.Contains(l, "answered HTTP 200, not in Graph's error shape") {
		t.Errorf("not Graph: %s", l)
	}

	h.env["GRAPH_URL"] = h.graph.URL() + "/../v1.0"
	lines, err = h.check()
	wantFailed(t, err, 1)
	if l := line(t, lines, "✗", "GRAPH_URL"); !strings.Contains(l, "the bot needs beta") {
		t.Errorf("v1.0: %s", l)
	}
}

// Everything unreachable: each check fails on its own, naming what to look at.
func TestCheckEverythingUnreachable(t *testing.T) {
	h := newHarness(t)
	h.env["SLACK_API_URL"] = "http://" + closedAddr(t) + "/api/"
	h.env["AZURE_AUTHORITY_HOST"] = "https://" + closedAddr(t) + "/"
	h.env["GRAPH_URL"] = "https://" + closedAddr(t) + "/beta"
	h.env["REPROVISION_DB"] = filepath.Join(t.TempDir(), "nope", "reprovision.db")
	lines, err := h.check()
	wantFailed(t, err, 5)
	line(t, lines, "✗", "SLACK_BOT_TOKEN")
	line(t, lines, "✗", "SLACK_APP_TOKEN")
	if l := line(t, lines, "✗", "AZURE_TENANT_ID"); !strings.Contains(l, "could not ask Entra") {
		t.Errorf("tenant line: %s", l)
	}
	line(t, lines, "✗", "GRAPH_URL")
	line(t, lines, "✗", "REPROVISION_DB")
	for _, l := range lines {
		if !strings.Contains(l, " → ") {
			t.Errorf("no advice: %s", l)
		}
	}
}

// Each check has a deadline; a hanging server fails its check only.
func TestCheckTimeout(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	hang := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	h.env["GRAPH_URL"] = hang.URL + "/beta"
	begin := time.Now()
	lines, err := h.check("-timeout", "500ms")
	wantFailed(t, err, 1)
	if l := line(t, lines, "✗", "GRAPH_URL"); !strings.Contains(l, "deadline exceeded") && !strings.Contains(l, "no answer within") {
		t.Errorf("graph line: %s", l)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("check took %v", d)
	}
}

func TestCheckArguments(t *testing.T) {
	h := newHarness(t)
	if _, err := h.check("extra"); err == nil || !strings.Contains(err.Error(), "unexpected argument") {
		t.Errorf("extra argument: %v", err)
	}
	if _, err := h.check("-timeout", "0s"); err == nil {
		t.Error("zero timeout accepted")
	}
	// A configuration error comes before any check, naming the variable.
	delete(h.env, "AZURE_CLIENT_ID")
	if _, err := h.check(); err == nil || !strings.Contains(err.Error(), "AZURE_CLIENT_ID") {
		t.Errorf("missing variable: %v", err)
	}
	// Through dispatch, as main runs it: exit status 1, the count on stderr.
	h.env["AZURE_CLIENT_ID"] = fakes.ClientID
	h.env["AZURE_TENANT_ID"] = "11111111-2222-3333-4444-555555555555"
	var stdout, stderr bytes.Buffer
	if code := dispatch(context.Background(), []string{"check"}, func(k string) string { return h.env[k] }, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "1 of 5 checks failed") || strings.Count(stdout.String(), "\n") != 5 {
		t.Errorf("dispatch: exit %d, stdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
}

// At start the bot asks Entra about AZURE_TENANT_ID and stops, naming it,
// when the tenant is unknown: before it opens the store or connects to
// Slack.
func TestRunStopsAtStartForAnUnknownTenant(t *testing.T) {
	h := newHarness(t)
	h.env["REPROVISION_DB"] = filepath.Join(t.TempDir(), "reprovision.db") // not created yet
	const wrong = "11111111-2222-3333-4444-555555555555"
	h.env["AZURE_TENANT_ID"] = wrong
	done := make(chan error, 1)
	go func() { done <- run(context.Background(), func(k string) string { return h.env[k] }, h.stderr) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(wait):
		t.Fatal("run did not stop for an unknown tenant")
	}
	if err == nil || !strings.Contains(err.Error(), "AZURE_TENANT_ID") || !strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), "AADSTS90002") {
		t.Fatalf("run returned %v", err)
	}
	if n := h.slack.Connections(); n != 0 {
		t.Errorf("%d Socket Mode connections", n)
	}
	if _, serr := os.Stat(h.env["REPROVISION_DB"]); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("the store was created: %v", serr)
	}

	// The same through dispatch: exit status 1, the reason on stderr.
	var stdout, stderr bytes.Buffer
	if code := dispatch(context.Background(), nil, func(k string) string { return h.env[k] }, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "AZURE_TENANT_ID") {
		t.Errorf("dispatch: exit %d, stderr %s", code, stderr.String())
	}
}

// An Entra that cannot be asked at start is a warning, not a stop: the bot
// serves Slack meanwhile.
func TestRunStartsWhenTenantDiscoveryIsUnreachable(t *testing.T) {
	h := newHarness(t)
	h.env["AZURE_AUTHORITY_HOST"] = "https://" + closedAddr(t) + "/"
	h.start()
	if log := h.stderr.String(); !strings.Contains(log, `"level":"WARN"`) || !strings.Contains(log, "could not check AZURE_TENANT_ID") {
		t.Errorf("no warning in the log:\n%s", log)
	}
	if _, err := h.stop(); err != nil {
		t.Errorf("run: %v", err)
	}
}
