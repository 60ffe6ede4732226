package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, for the write probe

	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
	"github.com/reprovision-bot/reprovision-bot/bot"
	"github.com/reprovision-bot/reprovision-bot/graph"
)

// checkTimeout bounds each check of `reprovision-bot check`, and the tenant
// discovery at start.
const checkTimeout = 10 * time.Second

// maxCheckAnswer bounds the answer bodies the checks read.
const maxCheckAnswer = 1 << 20

// checkResult is one line of `reprovision-bot check`.
type checkResult struct {
	ok bool
	// what was checked and what was found; fix (for a failure) what to do.
	what, fix string
}

func (r checkResult) String() string {
	if r.ok {
		return "✓ " + r.what
	}
	if r.fix == "" {
		return "✗ " + r.what
	}
	return "✗ " + r.what + " → " + r.fix
}

func pass(format string, args ...any) checkResult {
	return checkResult{ok: true, what: fmt.Sprintf(format, args...)}
}

func fail(fix, format string, args ...any) checkResult {
	return checkResult{what: fmt.Sprintf(format, args...), fix: fix}
}

// runCheck checks the configuration live, one line per check on stdout
// with ✓ or ✗ (and for ✗, what to do): the Slack bot token and its scopes,
// Socket Mode with the app token, the Entra tenant, Graph, and the store.
// It returns nil only if every check passed. It never prints a token.
func runCheck(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	flags := flag.NewFlagSet("check", flag.ContinueOnError)
	flags.SetOutput(stdout)
	timeout := flags.Duration("timeout", checkTimeout, "how long each check may take")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // the flag package printed the usage
		}
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("check: unexpected argument %q", flags.Arg(0))
	}
	if *timeout <= 0 {
		return errors.New("check: -timeout must be positive")
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	client := checkHTTPClient()
	network := "retry; if it persists, look at the network path to it (proxy, firewall, DNS)"
	checks := []struct {
		name, fix string // for a check that does not answer in time
		run       func(context.Context) checkResult
	}{
		{"Slack bot token (SLACK_BOT_TOKEN)", network, func(ctx context.Context) checkResult { return checkBotToken(ctx, client, cfg) }},
		{"Slack Socket Mode (SLACK_APP_TOKEN)", network, func(ctx context.Context) checkResult { return checkSocketMode(ctx, client, cfg) }},
		{"Entra tenant (AZURE_TENANT_ID)", network, func(ctx context.Context) checkResult { return checkTenant(ctx, client, cfg) }},
		{"Microsoft Graph (GRAPH_URL)", network, func(ctx context.Context) checkResult { return checkGraph(ctx, client, cfg) }},
		{"store (REPROVISION_DB " + cfg.DBPath + ")", "another process may hold SQLite's write lock for long (a sqlite3 shell?); a slow or network file system does not suit SQLite",
			func(ctx context.Context) checkResult {
				if isPostgres(cfg.DBPath) {
					return checkPostgres(ctx, cfg.DBPath)
				}
				return checkStore(cfg.DBPath)
			}},
	}

	// The checks are independent: run them together, print them in order.
	results := make([]chan checkResult, len(checks))
	for i, c := range checks {
		results[i] = make(chan checkResult, 1)
		go func() {
			cctx, cancel := context.WithTimeout(ctx, *timeout)
			defer cancel()
			results[i] <- withTimeout(cctx, c.name, c.fix, *timeout, c.run)
		}()
	}
	failed := 0
	for _, ch := range results {
		r := <-ch
		if !r.ok {
			failed++
		}
		if _, err := fmt.Fprintln(stdout, r); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d checks failed", failed, len(checks))
	}
	return nil
}

// withTimeout runs check and gives up when ctx is done, for the checks
// whose work does not itself stop with ctx (opening SQLite). A check given
// up on finishes in the background and cleans up after itself.
func withTimeout(ctx context.Context, name, fix string, limit time.Duration, check func(context.Context) checkResult) checkResult {
	done := make(chan checkResult, 1)
	go func() { done <- check(ctx) }()
	select {
	case r := <-done:
		return r
	case <-ctx.Done():
		// The check may have finished at the same moment; prefer its answer.
		select {
		case r := <-done:
			return r
		default:
		}
		return fail(fix, "%s: no answer within %v", name, limit)
	}
}

// checkHTTPClient follows no redirect (Slack's, Entra's and Graph's APIs
// answer where they are asked; a redirect is someone else's answer) and
// takes its proxy from the environment.
func checkHTTPClient() *http.Client {
	return &http.Client{
		Transport:     http.DefaultTransport.(*http.Transport).Clone(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// slackAnswer is the part of a Slack Web API answer the checks read.
type slackAnswer struct {
	OK       bool   `json:"ok"`
	Error    string `json:"error"`
	Needed   string `json:"needed"`
	Provided string `json:"provided"`
	// auth.test
	Team   string `json:"team"`
	TeamID string `json:"team_id"`
	User   string `json:"user"`
	UserID string `json:"user_id"`
	BotID  string `json:"bot_id"`
	// apps.connections.open
	URL string `json:"url"`

	header http.Header
}

// slackCall POSTs an argument-less Web API method with token as a Bearer
// header. The error says why there is no Slack answer to read.
func slackCall(ctx context.Context, client *http.Client, apiURL, method, token string) (*slackAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiURL+method, strings.NewReader(""))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no answer: %w", err) // the *url.Error names the URL
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCheckAnswer))
	if err != nil {
		return nil, fmt.Errorf("%s: reading the answer: %w", apiURL+method, err)
	}
	var a slackAnswer
	if resp.StatusCode == http.StatusTooManyRequests {
		return nil, fmt.Errorf("%s: rate limited by Slack (HTTP 429, Retry-After %q)", method, resp.Header.Get("Retry-After"))
	}
	if json.Unmarshal(body, &a) != nil || (!a.OK && a.Error == "") {
		return nil, fmt.Errorf("%s answered HTTP %d, not a Slack Web API answer", apiURL+method, resp.StatusCode)
	}
	a.header = resp.Header
	return &a, nil
}

// slackTokenFix says what to do about a token Slack refused.
func slackTokenFix(code, variable, where string) string {
	switch code {
	case "invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive":
		return fmt.Sprintf("set %s to a current token: %s", variable, where)
	case "not_allowed_token_type":
		return fmt.Sprintf("%s holds the wrong kind of token: %s", variable, where)
	}
	return fmt.Sprintf("see Slack's documentation of the error; %s: %s", variable, where)
}

const (
	botTokenWhere = "the Bot User OAuth Token (xoxb-…) under OAuth & Permissions of the app at api.slack.com/apps (reinstall the app if it was revoked)"
	appTokenWhere = "an app-level token (xapp-…) with the connections:write scope, under Basic Information → App-Level Tokens of the app at api.slack.com/apps"
)

// checkBotToken: auth.test answers ok for the bot token, and the scopes
// Slack says it was granted (x-oauth-scopes) cover bot.RequiredBotScopes.
func checkBotToken(ctx context.Context, client *http.Client, cfg config) checkResult {
	a, err := slackCall(ctx, client, cfg.SlackAPIURL, "auth.test", cfg.SlackBotToken)
	if err != nil {
		return fail("check SLACK_API_URL and that this host can reach Slack over HTTPS (proxy, firewall)",
			"Slack bot token (SLACK_BOT_TOKEN): %v", err)
	}
	if !a.OK {
		return fail(slackTokenFix(a.Error, "SLACK_BOT_TOKEN", botTokenWhere),
			"Slack bot token (SLACK_BOT_TOKEN): auth.test refused it: %s", a.Error)
	}
	who := fmt.Sprintf("team %s (%s), bot user %s (%s)", a.Team, a.TeamID, a.User, a.UserID)
	if a.BotID == "" {
		return fail("SLACK_BOT_TOKEN must be the app's bot token: "+botTokenWhere,
			"Slack bot token (SLACK_BOT_TOKEN): auth.test ok for %s, but it is not a bot token (no bot_id)", who)
	}
	header, present := a.header[http.CanonicalHeaderKey("X-OAuth-Scopes")]
	if !present {
		return fail("compare the app's Bot Token Scopes under OAuth & Permissions with deploy/slack-app-manifest.yaml by hand (a proxy may strip the header)",
			"Slack bot token (SLACK_BOT_TOKEN): auth.test ok for %s, but Slack sent no x-oauth-scopes header, so the scopes cannot be checked", who)
	}
	granted := strings.Join(header, ",")
	if missing := bot.MissingBotScopes(granted); len(missing) > 0 {
		return fail("add them under OAuth & Permissions → Bot Token Scopes (deploy/slack-app-manifest.yaml lists them all), reinstall the app to the workspace, and update SLACK_BOT_TOKEN if it changed",
			"Slack bot token (SLACK_BOT_TOKEN): auth.test ok for %s, but the token lacks the scope(s) %s (granted: %s)",
			who, strings.Join(missing, ", "), orNone(granted))
	}
	return pass("Slack bot token (SLACK_BOT_TOKEN): auth.test ok for %s; the scopes the bot needs are granted (%s)",
		who, strings.Join(bot.SplitScopes(bot.RequiredBotScopes), ", "))
}

func orNone(s string) string {
	if strings.TrimSpace(s) == "" {
		return "none"
	}
	return s
}

// checkSocketMode: the app token opens a Socket Mode connection
// (apps.connections.open answers a WebSocket URL). auth.test is not how an
// app token is checked. The URL is not dialled (nor printed: its ticket
// lets one connection in); an unused ticket expires by itself.
func checkSocketMode(ctx context.Context, client *http.Client, cfg config) checkResult {
	a, err := slackCall(ctx, client, cfg.SlackAPIURL, "apps.connections.open", cfg.SlackAppToken)
	if err != nil {
		return fail("check SLACK_API_URL and that this host can reach Slack over HTTPS (proxy, firewall)",
			"Slack Socket Mode (SLACK_APP_TOKEN): %v", err)
	}
	if !a.OK {
		fix := slackTokenFix(a.Error, "SLACK_APP_TOKEN", appTokenWhere)
		detail := a.Error
		if a.Error == "missing_scope" {
			fix = "generate " + appTokenWhere + ", and set SLACK_APP_TOKEN to it"
			detail = fmt.Sprintf("missing_scope (needs %s; the token has %s)", orNone(a.Needed), orNone(a.Provided))
		}
		return fail(fix+"; Socket Mode must be on under Settings → Socket Mode",
			"Slack Socket Mode (SLACK_APP_TOKEN): apps.connections.open refused: %s", detail)
	}
	u, err := url.Parse(a.URL)
	if err != nil || (u.Scheme != "wss" && u.Scheme != "ws") || u.Host == "" {
		return fail("check SLACK_API_URL: it must be Slack's Web API",
			"Slack Socket Mode (SLACK_APP_TOKEN): apps.connections.open answered ok but no WebSocket URL")
	}
	return pass("Slack Socket Mode (SLACK_APP_TOKEN): apps.connections.open gave a WebSocket URL on %s (not dialled)", u.Host)
}

// checkTenant: Entra's OpenID discovery knows AZURE_TENANT_ID at the
// authority, and its issuer names that tenant.
func checkTenant(ctx context.Context, client *http.Client, cfg config) checkResult {
	info, err := graph.DiscoverTenant(ctx, cfg.AuthorityHost, cfg.TenantID, client)
	var te *graph.TenantError
	switch {
	case err == nil:
		id := ""
		if !strings.EqualFold(info.ID, cfg.TenantID) {
			id = ", id " + info.ID
		}
		return pass("Entra tenant (AZURE_TENANT_ID): %s%s is known at %s (issuer %s)", cfg.TenantID, id, cfg.AuthorityHost, info.Issuer)
	case errors.Is(err, graph.ErrUnknownTenant):
		return fail("set AZURE_TENANT_ID to your tenant's ID or primary domain (Entra admin center → Overview), and make sure AZURE_CLOUD (or AZURE_AUTHORITY_HOST) is the tenant's cloud",
			"Entra tenant (AZURE_TENANT_ID): %v", err)
	case errors.As(err, &te):
		return fail("set AZURE_TENANT_ID to your organization's tenant ID or primary domain (Entra admin center → Overview)",
			"Entra tenant (AZURE_TENANT_ID): %v", err)
	default:
		return fail("check AZURE_CLOUD / AZURE_AUTHORITY_HOST and that this host can reach it over HTTPS (proxy, firewall, DNS)",
			"Entra tenant (AZURE_TENANT_ID): could not ask Entra: %v", err)
	}
}

// checkGraph: Graph answers at GRAPH_URL. An unauthenticated GET answered in
// Graph's error shape (401 InvalidAuthenticationToken, normally) shows it is
// there; no answer, or one not in Graph's shape, does not.
func checkGraph(ctx context.Context, client *http.Client, cfg config) checkResult {
	const what = "Microsoft Graph (GRAPH_URL)"
	base := strings.TrimRight(cfg.GraphURL, "/")
	if u, err := url.Parse(base); err == nil && strings.EqualFold(pathBase(u.Path), "v1.0") {
		return fail("set GRAPH_URL to the beta endpoint (…/beta), or unset it to use the cloud's",
			"%s: %s is Graph v1.0; the bot needs beta (a Cloud PC's status is beta-only)", what, cfg.GraphURL)
	}
	target := base + "/deviceManagement/virtualEndpoint/cloudPCs?$top=1"
	fix := "check GRAPH_URL (unset, it follows AZURE_CLOUD) and that this host can reach it over HTTPS (proxy, firewall, DNS)"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fail(fix, "%s: %v", what, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fail(fix, "%s: no answer: %v", what, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxCheckAnswer))
	var ge struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode < 400 || mt != "application/json" || json.Unmarshal(body, &ge) != nil || ge.Error == nil || ge.Error.Code == "" {
		return fail(fix, "%s: GET %s without a token answered HTTP %d, not in Graph's error shape: something else answers there",
			what, target, resp.StatusCode)
	}
	note := ""
	if resp.StatusCode != http.StatusUnauthorized {
		note = " (a token-less request normally gets 401)"
	}
	return pass("%s: %s answers (HTTP %d %s without a token%s)", what, base, resp.StatusCode, ge.Error.Code, note)
}

func pathBase(p string) string {
	p = strings.TrimRight(p, "/")
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// checkStore: the bot can open REPROVISION_DB for writing.
//
//   - A file that does not exist yet is not created (check creates nothing
//     the bot did not ask for, in a directory that may be the wrong one):
//     its directory must let the bot create files.
//   - A store a running bot serves (it holds the store's lock) passes: the
//     bot opened it for writing, and check must not write under it. The
//     line names the holder; a second bot on the file would be refused.
//   - Otherwise check opens it as the bot does (sqlite.Open: the lock, WAL,
//     the schema, migrating an older one as the bot's next start would),
//     then tries a write in a transaction it rolls back.
//
// checkPostgres opens the PostgreSQL store as the bot does (which brings its
// schema up to date, under a lock, as the bot's start would) and asks it a
// query.
func checkPostgres(ctx context.Context, db string) checkResult {
	what := fmt.Sprintf("store (REPROVISION_DB PostgreSQL %s)", shownDB(db))
	store, err := openStore(ctx, db)
	if err != nil {
		return fail("check the URL, that the server is reachable from here, and that the role may connect and create the bot's tables",
			"%s: %v", what, err)
	}
	defer store.Close()
	if err := store.Ping(ctx); err != nil {
		return fail("check the role's rights on the bot's tables", "%s: opened, but a query failed: %v", what, err)
	}
	return pass("%s: reachable, schema up to date", what)
}

func checkStore(path string) checkResult {
	what := fmt.Sprintf("store (REPROVISION_DB %s)", path)
	abs, err := filepath.Abs(path)
	if err != nil {
		return fail("set REPROVISION_DB to a file path", "%s: %v", what, err)
	}
	fixAccess := "the bot's user needs to read and write the file and create files in its directory (SQLite keeps -wal, -shm and .lock files next to it); use a local, writable volume"
	info, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		dir := filepath.Dir(abs)
		f, err := os.CreateTemp(dir, ".reprovision-check-*")
		if err != nil {
			return fail("create the directory and make it writable for the bot's user, or set REPROVISION_DB to a file on a writable volume",
				"%s: does not exist, and no file can be created in %s: %v", what, dir, err)
		}
		name := f.Name()
		f.Close()
		os.Remove(name)
		return pass("%s: does not exist yet; the bot creates it at start (%s is writable)", what, dir)
	case err != nil:
		return fail(fixAccess, "%s: %v", what, err)
	case info.IsDir():
		return fail("set REPROVISION_DB to a file path, not a directory", "%s: is a directory", what)
	}

	store, err := sqlite.Open(abs)
	var inUse *sqlite.InUseError
	if errors.As(err, &inUse) {
		holder := "a running bot"
		switch {
		case inUse.ThisProcess:
			holder = fmt.Sprintf("a running bot (this process, pid %d)", os.Getpid())
		case inUse.PID > 0 && inUse.Host != "":
			holder = fmt.Sprintf("a running bot (pid %d on host %s)", inUse.PID, inUse.Host)
		case inUse.PID > 0:
			holder = fmt.Sprintf("a running bot (pid %d)", inUse.PID)
		}
		return pass("%s: served by %s, which opened it for writing; check left it alone (another bot on this file would be refused while that one runs)", what, holder)
	}
	if err != nil {
		return fail(fixAccess, "%s: cannot be opened for writing: %v", what, err)
	}
	defer store.Close()
	if err := writeProbe(abs); err != nil {
		return fail(fixAccess, "%s: opened, but a write failed: %v", what, err)
	}
	return pass("%s: opened for writing; a test write was rolled back", what)
}

// writeProbe takes SQLite's write lock on the database file abs and writes
// in a transaction it rolls back: it fails on a read-only file, directory
// or mount. The caller holds the store's lock.
func writeProbe(abs string) error {
	u := url.URL{Scheme: "file", Path: abs}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Set("_txlock", "immediate")
	u.RawQuery = q.Encode()
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "CREATE TABLE reprovision_check_probe (x INTEGER)"); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO reprovision_check_probe (x) VALUES (1)"); err != nil {
		return err
	}
	return tx.Rollback()
}

// checkTenantAtStart is run's tenant check, before anything else starts: an
// error naming AZURE_TENANT_ID when Entra says the tenant is wrong (unknown,
// or not one tenant). When Entra cannot be asked (no answer, 429 or 5xx,
// something else answering), it logs a warning and lets the bot start: that
// says nothing about the configuration, the Slack side (requests, notices
// owed) works without Entra, and sign-ins fail with their own message until
// Entra is back; failing would turn an Entra or network blip at start (a
// sidecar proxy not ready yet, say) into a Slack outage and a restart loop.
// `reprovision-bot check` tells the two apart on demand.
func checkTenantAtStart(ctx context.Context, cfg config, stderr io.Writer) error {
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	err := graph.CheckTenant(cctx, cfg.AuthorityHost, cfg.TenantID, nil)
	var te *graph.TenantError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return fmt.Errorf("AZURE_TENANT_ID %q: %w; set it to your organization's tenant ID or primary domain (and AZURE_CLOUD to its cloud)", cfg.TenantID, err)
	case ctx.Err() != nil:
		return nil // stopping already; run returns soon
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel()}))
	log.Warn("could not check AZURE_TENANT_ID with Entra; starting anyway (sign-ins fail until Entra answers; `reprovision-bot check` retries)",
		"tenant", cfg.TenantID, "authority", cfg.AuthorityHost, "err", err.Error())
	return nil
}
