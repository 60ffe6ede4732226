package main

import (
	"bytes"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/reprovision-bot/reprovision-bot/graph"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func validEnv() map[string]string {
	return map[string]string{
		"SLACK_APP_TOKEN":      "xapp-1-abc",
		"SLACK_BOT_TOKEN":      "xoxb-123-abc",
		"REPROVISION_APPROVER": "U0APPROVER",
		"AZURE_TENANT_ID":      "00000000-0000-0000-0000-0000000000aa",
		"AZURE_CLIENT_ID":      "00000000-0000-0000-0000-0000000000bb",
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	c, err := loadConfig(env(validEnv()))
	if err != nil {
		t.Fatal(err)
	}
	want := config{
		SlackAppToken: "xapp-1-abc", SlackBotToken: "xoxb-123-abc",
		SlackAPIURL: "https://slack.com/api/", Approvers: []string{"U0APPROVER"},
		TenantID: "00000000-0000-0000-0000-0000000000aa", ClientID: "00000000-0000-0000-0000-0000000000bb",
		Cloud: "public", AuthorityHost: "https://login.microsoftonline.com/", GraphURL: "https://graph.microsoft.com/beta",
		cloud:    graph.Cloud{Name: "public", AuthorityHost: "https://login.microsoftonline.com/", GraphHost: "graph.microsoft.com"},
		HTTPAddr: ":8080", LogLevel: "info",
		DBPath: "reprovision.db", ApprovalTTL: 24 * time.Hour, ApprovalsRequired: 1, SignInTTL: time.Hour, SignInStart: 30 * time.Second, SignInTimeout: 20 * time.Minute,
		AllowedStatuses: []string{"provisioned", "failed"}, TrackEvery: time.Minute, TrackFor: 3 * time.Hour,
		NotifyUser: true, GraphRPS: 5, BatchMax: 50, BatchTwoPerson: 10, BatchParallel: 4,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
}

func TestLoadConfigAddsTheTrailingSlashSlackGoNeeds(t *testing.T) {
	e := validEnv()
	e["SLACK_API_URL"] = "http://127.0.0.1:9999/api"
	c, err := loadConfig(env(e))
	if err != nil {
		t.Fatal(err)
	}
	if c.SlackAPIURL != "http://127.0.0.1:9999/api/" {
		t.Errorf("SlackAPIURL = %q", c.SlackAPIURL)
	}
}

func TestLoadConfigNamesEveryMissingVariable(t *testing.T) {
	_, err := loadConfig(env(nil))
	if err == nil {
		t.Fatal("no error for an empty environment")
	}
	for _, name := range []string{"SLACK_APP_TOKEN", "SLACK_BOT_TOKEN", "REPROVISION_APPROVER", "AZURE_TENANT_ID", "AZURE_CLIENT_ID"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestLoadConfigNamesEveryMalformedVariableWithoutEchoingSecrets(t *testing.T) {
	e := validEnv()
	e["SLACK_APP_TOKEN"] = "xoxb-secret-in-the-wrong-place"
	e["SLACK_BOT_TOKEN"] = "not-a-token-secret"
	e["REPROVISION_APPROVER"] = "alice"
	e["AZURE_TENANT_ID"] = "../../evil"
	e["AZURE_CLIENT_ID"] = "my-app"
	e["AZURE_AUTHORITY_HOST"] = "http://login.example/"
	e["GRAPH_URL"] = "graph.microsoft.com"
	e["SLACK_API_URL"] = "ftp://slack.example/api/"
	_, err := loadConfig(env(e))
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{"SLACK_APP_TOKEN", "SLACK_BOT_TOKEN", "REPROVISION_APPROVER", "AZURE_TENANT_ID",
		"AZURE_CLIENT_ID", "AZURE_AUTHORITY_HOST", "GRAPH_URL", "SLACK_API_URL"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error echoes a token: %v", err)
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if err := printUsage(&out); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"SLACK_APP_TOKEN", "SLACK_BOT_TOKEN", "SLACK_API_URL", "REPROVISION_APPROVER",
		"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_AUTHORITY_HOST", "GRAPH_URL", "REPROVISION_DB",
		"AZURE_CLOUD", "REPROVISION_HTTP_ADDR", "REPROVISION_LOG_LEVEL", "REPROVISION_GRAPH_RPS", "REPROVISION_BATCH_MAX", "REPROVISION_BATCH_TWO_PERSON", "REPROVISION_BATCH_PARALLEL", "usgovdod", ":8080",
		"https://slack.com/api/", "reprovision.db"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("usage lacks %s:\n%s", name, out.String())
		}
	}
}

// --help prints the table envconfig's own usage printer makes of config's
// tags (the binary does not link envconfig's printer: see printUsage).
func TestUsageIsEnvconfigs(t *testing.T) {
	const envconfigFormat = usageHeader + `VARIABLE	REQUIRED	DEFAULT	MEANING
{{range .}}{{usage_key .}}	{{if usage_required .}}yes{{else}}no{{end}}	{{usage_default .}}	{{usage_description .}}
{{end}}`
	var want bytes.Buffer
	tw := tabwriter.NewWriter(&want, 1, 0, 2, ' ', 0)
	if err := envconfig.Usagef("", &config{}, tw, envconfigFormat); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	var got bytes.Buffer
	if err := printUsage(&got); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("--help:\n%s\nenvconfig's:\n%s", got.String(), want.String())
	}
}

// loadConfig reads config's envconfig tags through getenv; envconfig.Process
// reads the process environment by the same tags. Both agree on every
// variable set (not parallel: it sets the process environment).
func TestLoadConfigAgreesWithEnvconfig(t *testing.T) {
	e := validEnv()
	e["REPROVISION_APPROVER"] = "U0AAA,U0BBB"
	e["REPROVISION_REQUESTERS"] = "U0REQ"
	e["REPROVISION_CHANNELS"] = "C0HELP,C0OPS"
	e["REPROVISION_ALLOW_SELF_APPROVAL"] = "true"
	e["REPROVISION_APPROVAL_TTL"] = "2h30m"
	e["REPROVISION_APPROVER_UPNS"] = "U0AAA:alice@contoso.com,U0BBB:bob@contoso.com"
	e["REPROVISION_SIGNIN_TTL"] = "0s"
	e["REPROVISION_TRACK_FOR"] = "90m"
	e["SLACK_API_URL"] = "http://127.0.0.1:9/api/"
	e["AZURE_AUTHORITY_HOST"] = "https://login.example/"
	e["GRAPH_URL"] = "https://graph.example/beta"
	e["REPROVISION_DB"] = "/data/r.db"
	e["REPROVISION_LOG_LEVEL"] = "debug"
	for _, f := range reflect.VisibleFields(reflect.TypeFor[config]()) {
		if name := f.Tag.Get("envconfig"); name != "" {
			t.Setenv(name, e[name]) // unset ones empty: the defaults apply
			if e[name] == "" {
				os.Unsetenv(name)
			}
		}
	}
	var want config
	if err := envconfig.Process("", &want); err != nil {
		t.Fatal(err)
	}
	got, err := loadConfig(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	got.cloud = graph.Cloud{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("loadConfig:\n%+v\nenvconfig.Process:\n%+v", got, want)
	}
}

func TestLoadConfigPolicyVariables(t *testing.T) {
	e := validEnv()
	e["REPROVISION_APPROVER"] = "U0AAA, U0BBB"
	e["REPROVISION_REQUESTERS"] = "U0REQ"
	e["REPROVISION_CHANNELS"] = "C0HELP,C0OPS"
	e["REPROVISION_ALLOW_SELF_APPROVAL"] = "true"
	e["REPROVISION_APPROVAL_TTL"] = "2h30m"
	e["REPROVISION_APPROVER_UPNS"] = "U0AAA:alice@contoso.com,U0BBB:bob@contoso.com"
	e["REPROVISION_SIGNIN_TTL"] = "0"
	c, err := loadConfig(env(e))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Approvers, []string{"U0AAA", "U0BBB"}) || !reflect.DeepEqual(c.Channels, []string{"C0HELP", "C0OPS"}) ||
		!reflect.DeepEqual(c.Requesters, []string{"U0REQ"}) || !c.AllowSelfApproval || c.ApprovalTTL != 150*time.Minute ||
		c.ApproverUPNs["U0BBB"] != "bob@contoso.com" || len(c.ApproverUPNs) != 2 || c.SignInTTL != 0 {
		t.Errorf("got %+v", c)
	}
}

func TestLoadConfigRefusesMalformedPolicyVariables(t *testing.T) {
	e := validEnv()
	e["REPROVISION_APPROVER"] = "U0AAA,bob"
	e["REPROVISION_CHANNELS"] = "general"
	e["REPROVISION_ALLOW_SELF_APPROVAL"] = "maybe"
	e["REPROVISION_APPROVAL_TTL"] = "a day"
	e["REPROVISION_APPROVER_UPNS"] = "U0AAA=alice@contoso.com"
	e["REPROVISION_TRACK_EVERY"] = "-1m"
	_, err := loadConfig(env(e))
	if err == nil {
		t.Fatal("no error")
	}
	for _, name := range []string{"REPROVISION_APPROVER", "REPROVISION_CHANNELS", "REPROVISION_ALLOW_SELF_APPROVAL",
		"REPROVISION_APPROVAL_TTL", "REPROVISION_APPROVER_UPNS", "REPROVISION_TRACK_EVERY"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

// AZURE_CLOUD picks the authority, Graph and the scope; the overrides win
// for the first two only.
func TestLoadConfigClouds(t *testing.T) {
	e := validEnv()
	e["AZURE_CLOUD"] = "usgov"
	c, err := loadConfig(env(e))
	if err != nil || c.AuthorityHost != "https://login.microsoftonline.us/" || c.GraphURL != "https://graph.microsoft.us/beta" ||
		c.cloud.Scope() != "https://graph.microsoft.us/CloudPC.ReadWrite.All" {
		t.Errorf("usgov: %+v, %v", c, err)
	}
	e["GRAPH_URL"] = "https://127.0.0.1:8443/beta"
	c, err = loadConfig(env(e))
	if err != nil || c.GraphURL != "https://127.0.0.1:8443/beta" || c.cloud.Scope() != "https://graph.microsoft.us/CloudPC.ReadWrite.All" {
		t.Errorf("usgov with GRAPH_URL: %+v, %v", c, err)
	}
	e["AZURE_CLOUD"] = "china"
	if _, err := loadConfig(env(e)); err == nil || !strings.Contains(err.Error(), "AZURE_CLOUD") || !strings.Contains(err.Error(), "21Vianet") {
		t.Errorf("china: %v", err)
	}
}

func TestLoadConfigServiceVariables(t *testing.T) {
	e := validEnv()
	e["REPROVISION_LOG_LEVEL"] = "DEBUG"
	e["REPROVISION_HTTP_ADDR"] = "off"
	c, err := loadConfig(env(e))
	if err != nil || c.logLevel() != slog.LevelDebug || c.HTTPAddr != "off" {
		t.Errorf("debug, off: %v, %q, %v", c.logLevel(), c.HTTPAddr, err)
	}
	e["REPROVISION_LOG_LEVEL"] = "verbose"
	e["REPROVISION_HTTP_ADDR"] = "8080"
	_, err = loadConfig(env(e))
	for _, name := range []string{"REPROVISION_LOG_LEVEL", "REPROVISION_HTTP_ADDR"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestLoadConfigSignInTimeouts(t *testing.T) {
	c, err := loadConfig(env(validEnv()))
	if err != nil || c.SignInStart != 30*time.Second || c.SignInTimeout != 20*time.Minute {
		t.Fatalf("defaults: %v, %v, %v", c.SignInStart, c.SignInTimeout, err)
	}
	e := validEnv()
	e["REPROVISION_SIGNIN_START_TIMEOUT"] = "0s"
	if _, err := loadConfig(env(e)); err == nil || !strings.Contains(err.Error(), "REPROVISION_SIGNIN_START_TIMEOUT must be positive") {
		t.Errorf("start timeout 0: %v", err)
	}
	e["REPROVISION_SIGNIN_START_TIMEOUT"] = "1m"
	e["REPROVISION_SIGNIN_TIMEOUT"] = "30s"
	if _, err := loadConfig(env(e)); err == nil || !strings.Contains(err.Error(), "REPROVISION_SIGNIN_TIMEOUT must be at least") {
		t.Errorf("whole sign-in shorter than its start: %v", err)
	}
}

func TestLoadConfigApprovalsRequired(t *testing.T) {
	c, err := loadConfig(env(validEnv()))
	if err != nil || c.ApprovalsRequired != 1 {
		t.Fatalf("default: %d, %v; want 1", c.ApprovalsRequired, err)
	}
	for value, want := range map[string]string{
		"0":   "REPROVISION_APPROVALS_REQUIRED must be 1 to 3, not 0",
		"4":   "REPROVISION_APPROVALS_REQUIRED must be 1 to 3, not 4",
		"two": "REPROVISION_APPROVALS_REQUIRED",
		"3":   "REPROVISION_APPROVALS_REQUIRED is 3 but REPROVISION_APPROVER lists 2 approver(s)",
	} {
		e := validEnv()
		e["REPROVISION_APPROVER"] = "U0APPROVER,U0OTHER"
		e["REPROVISION_APPROVALS_REQUIRED"] = value
		if _, err := loadConfig(env(e)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("REPROVISION_APPROVALS_REQUIRED=%s: %v, want %q", value, err, want)
		}
	}
	e := validEnv()
	e["REPROVISION_APPROVER"] = "U0APPROVER,U0OTHER"
	e["REPROVISION_APPROVALS_REQUIRED"] = "2"
	if c, err := loadConfig(env(e)); err != nil || c.ApprovalsRequired != 2 {
		t.Errorf("2 of 2 approvers: %d, %v", c.ApprovalsRequired, err)
	}
}

// The workflow takes any opaque ID; Slack's own ID formats are checked here,
// at start, so that a lower-case typo or a channel given as a person is
// caught before it locks everyone out.
func TestLoadConfigChecksSlackIDFormats(t *testing.T) {
	e := validEnv()
	e["REPROVISION_APPROVER"] = "u0approver"
	e["REPROVISION_REQUESTERS"] = "C0HELPDESK"
	e["REPROVISION_CHANNELS"] = "U0ALICE"
	_, err := loadConfig(env(e))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`REPROVISION_APPROVER must list Slack user IDs like U0123ABCD, not "u0approver"`,
		`REPROVISION_REQUESTERS must list Slack user IDs like U0123ABCD, not "C0HELPDESK"`,
		`REPROVISION_CHANNELS must list Slack channel IDs like C0123ABCD, not "U0ALICE"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %s: %v", want, err)
		}
	}
}

// The Cloud PC's user is told by default, with no wait; the wait is at
// most approvals.MaxUserNotice, and more is refused by name.
func TestLoadConfigUserNotice(t *testing.T) {
	for _, tc := range []struct {
		notify, notice string
		wantNotify     bool
		wantNotice     time.Duration
	}{
		{"", "", true, 0},
		{"false", "", false, 0},
		{"true", "5m", true, 5 * time.Minute},
		{"", "30m", true, 30 * time.Minute},
		{"0", "0", false, 0},
	} {
		e := validEnv()
		e["REPROVISION_NOTIFY_USER"], e["REPROVISION_USER_NOTICE"] = tc.notify, tc.notice
		c, err := loadConfig(env(e))
		if err != nil {
			t.Errorf("notify %q, notice %q: %v", tc.notify, tc.notice, err)
			continue
		}
		if c.NotifyUser != tc.wantNotify || c.UserNotice != tc.wantNotice {
			t.Errorf("notify %q, notice %q: NotifyUser %v, UserNotice %v; want %v, %v", tc.notify, tc.notice, c.NotifyUser, c.UserNotice, tc.wantNotify, tc.wantNotice)
		}
	}
	for _, tc := range []struct{ name, value, want string }{
		{"REPROVISION_USER_NOTICE", "31m", "REPROVISION_USER_NOTICE must be at most 30m0s, not 31m0s"},
		{"REPROVISION_USER_NOTICE", "2h", "REPROVISION_USER_NOTICE must be at most"},
		{"REPROVISION_USER_NOTICE", "-1m", "REPROVISION_USER_NOTICE: must be a duration"},
		{"REPROVISION_USER_NOTICE", "soon", "REPROVISION_USER_NOTICE: must be a duration"},
		{"REPROVISION_NOTIFY_USER", "maybe", "REPROVISION_NOTIFY_USER: must be true or false"},
	} {
		e := validEnv()
		e[tc.name] = tc.value
		_, err := loadConfig(env(e))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: err = %v, want one saying %q", tc.name, tc.value, err, tc.want)
		}
	}
}

// REPROVISION_GRAPH_RPS: 5 by default, at least 1, refused by name otherwise.
func TestLoadConfigGraphRPS(t *testing.T) {
	for value, want := range map[string]int{"": 5, "1": 1, "12": 12, " 3 ": 3} {
		e := validEnv()
		e["REPROVISION_GRAPH_RPS"] = value
		c, err := loadConfig(env(e))
		if err != nil || c.GraphRPS != want {
			t.Errorf("REPROVISION_GRAPH_RPS=%q: %d, %v; want %d", value, c.GraphRPS, err, want)
		}
	}
	for value, want := range map[string]string{
		"0":    "REPROVISION_GRAPH_RPS must be at least 1 (requests per second), not 0",
		"-2":   "REPROVISION_GRAPH_RPS must be at least 1 (requests per second), not -2",
		"2.5":  "REPROVISION_GRAPH_RPS: must be a whole number",
		"fast": "REPROVISION_GRAPH_RPS: must be a whole number",
	} {
		e := validEnv()
		e["REPROVISION_GRAPH_RPS"] = value
		if _, err := loadConfig(env(e)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("REPROVISION_GRAPH_RPS=%q: err = %v, want one saying %q", value, err, want)
		}
	}
}

// The batch limits: defaults, and each refused by name out of range.
func TestLoadConfigBatchLimits(t *testing.T) {
	c, err := loadConfig(env(validEnv()))
	if err != nil || c.BatchMax != 50 || c.BatchTwoPerson != 10 || c.BatchParallel != 4 {
		t.Fatalf("defaults: max %d, two-person above %d, parallel %d, %v", c.BatchMax, c.BatchTwoPerson, c.BatchParallel, err)
	}
	for _, tc := range []struct{ name, value, want string }{
		{"REPROVISION_BATCH_MAX", "1", "REPROVISION_BATCH_MAX must be 2 to 500, not 1"},
		{"REPROVISION_BATCH_MAX", "501", "REPROVISION_BATCH_MAX must be 2 to 500, not 501"},
		{"REPROVISION_BATCH_TWO_PERSON", "0", "REPROVISION_BATCH_TWO_PERSON must be at least 1, not 0"},
		{"REPROVISION_BATCH_PARALLEL", "0", "REPROVISION_BATCH_PARALLEL must be 1 to 50, not 0"},
		{"REPROVISION_BATCH_PARALLEL", "many", "REPROVISION_BATCH_PARALLEL: must be a whole number"},
	} {
		e := validEnv()
		e[tc.name] = tc.value
		if _, err := loadConfig(env(e)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: err = %v, want one saying %q", tc.name, tc.value, err, tc.want)
		}
	}
	e := validEnv()
	e["REPROVISION_BATCH_MAX"], e["REPROVISION_BATCH_TWO_PERSON"], e["REPROVISION_BATCH_PARALLEL"] = "100", "20", "8"
	if c, err := loadConfig(env(e)); err != nil || c.BatchMax != 100 || c.BatchTwoPerson != 20 || c.BatchParallel != 8 {
		t.Errorf("set: %d %d %d, %v", c.BatchMax, c.BatchTwoPerson, c.BatchParallel, err)
	}
}
