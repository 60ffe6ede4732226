package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/bot"
	"github.com/reprovision-bot/reprovision-bot/graph"
)

// config is the whole environment contract. The variable names are fixed:
// deployment docs and outside test harnesses rely on them.
type config struct {
	SlackAppToken string   `envconfig:"SLACK_APP_TOKEN" required:"true" desc:"app-level token (xapp-…) for Socket Mode"`
	SlackBotToken string   `envconfig:"SLACK_BOT_TOKEN" required:"true" desc:"bot token (xoxb-…)"`
	SlackAPIURL   string   `envconfig:"SLACK_API_URL" default:"https://slack.com/api/" desc:"Slack Web API base URL"`
	Approvers     []string `envconfig:"REPROVISION_APPROVER" required:"true" desc:"Slack user ID(s) of the approver(s), comma-separated; any one decides"`
	TenantID      string   `envconfig:"AZURE_TENANT_ID" required:"true" desc:"Entra tenant (ID or domain)"`
	ClientID      string   `envconfig:"AZURE_CLIENT_ID" required:"true" desc:"Entra app (public client) used for the approver's sign-in"`
	Cloud         string   `envconfig:"AZURE_CLOUD" default:"public" desc:"Microsoft cloud: public, usgov (GCC High) or usgovdod (DoD); sets the authority, Graph and the token scope"`
	AuthorityHost string   `envconfig:"AZURE_AUTHORITY_HOST" desc:"override of the cloud's Entra authority (tests, proxies); any but the public one disables instance discovery"`
	GraphURL      string   `envconfig:"GRAPH_URL" desc:"override of the cloud's Microsoft Graph base URL (tests, proxies); approvers' tokens go there"`
	DBPath        string   `envconfig:"REPROVISION_DB" default:"reprovision.db" desc:"embedded store path (SQLite)"`
	HTTPAddr      string   `envconfig:"REPROVISION_HTTP_ADDR" default:":8080" desc:"address of /healthz, /readyz and /metrics; off: no listener"`
	LogLevel      string   `envconfig:"REPROVISION_LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`

	Requesters        []string          `envconfig:"REPROVISION_REQUESTERS" desc:"Slack user IDs allowed to ask (comma-separated); empty: everyone"`
	Channels          []string          `envconfig:"REPROVISION_CHANNELS" desc:"channel IDs where /reprovision may be used (comma-separated); empty: anywhere"`
	AllowSelfApproval bool              `envconfig:"REPROVISION_ALLOW_SELF_APPROVAL" default:"false" desc:"may a requester approve their own request"`
	ApprovalTTL       time.Duration     `envconfig:"REPROVISION_APPROVAL_TTL" default:"24h" desc:"how long a request waits for a decision; 0: forever"`
	ApprovalsRequired int               `envconfig:"REPROVISION_APPROVALS_REQUIRED" default:"1" desc:"how many distinct approvers must approve (1 to 3), none of them the requester when more than 1; each signs in"`
	ApproverUPNs      map[string]string `envconfig:"REPROVISION_APPROVER_UPNS" desc:"expected Entra sign-in per approver (U0AAA:alice@contoso.com,…); unset: the approver's Slack profile email"`
	SignInTTL         time.Duration     `envconfig:"REPROVISION_SIGNIN_TTL" default:"1h" desc:"how long an approver's sign-in is reused; 0: a fresh sign-in for every approval"`
	SignInStart       time.Duration     `envconfig:"REPROVISION_SIGNIN_START_TIMEOUT" default:"30s" desc:"how long to wait for Entra to issue a device code before the request waits for a decision again"`
	SignInTimeout     time.Duration     `envconfig:"REPROVISION_SIGNIN_TIMEOUT" default:"20m" desc:"how long a whole sign-in may take, the approver's part included (device codes live 15 minutes)"`
	AllowedStatuses   []string          `envconfig:"REPROVISION_ALLOWED_STATUSES" default:"provisioned,failed" desc:"Cloud PC statuses in which reprovisioning is allowed"`
	TrackEvery        time.Duration     `envconfig:"REPROVISION_TRACK_EVERY" default:"1m" desc:"first look at a reprovisioning Cloud PC after this, then with backoff"`
	TrackFor          time.Duration     `envconfig:"REPROVISION_TRACK_FOR" default:"3h" desc:"how long to follow a reprovision before giving up; 0: do not follow"`
	NotifyUser        bool              `envconfig:"REPROVISION_NOTIFY_USER" default:"true" desc:"DM the Cloud PC's user (found by its UPN with users.lookupByEmail) before the reprovision and when it is ready"`
	UserNotice        time.Duration     `envconfig:"REPROVISION_USER_NOTICE" default:"0" desc:"wait between the user's heads-up and the reprovision call (at most 30m); the approver may send now or cancel, the user may ask for more time; 0: no wait"`
	GraphRPS          int               `envconfig:"REPROVISION_GRAPH_RPS" default:"5" desc:"most Microsoft Graph requests sent in any one second, all approvers' sign-ins and retries together (at least 1); a Retry-After from Graph pauses them all"`
	BatchMax          int               `envconfig:"REPROVISION_BATCH_MAX" default:"50" desc:"most Cloud PCs one batch request may have (2 to 500)"`
	BatchTwoPerson    int               `envconfig:"REPROVISION_BATCH_TWO_PERSON" default:"10" desc:"a batch of more Cloud PCs than this (or by provisioning policy) needs at least two approvals"`
	BatchParallel     int               `envconfig:"REPROVISION_BATCH_PARALLEL" default:"4" desc:"most reprovision calls of one batch in flight at once (1 to 50)"`

	// cloud is AZURE_CLOUD's entry, resolved by loadConfig.
	cloud graph.Cloud
}

// loadConfig reads the variables through getenv, applies defaults and checks
// every value, naming each offending variable.
//
// envconfig.Process reads only the process environment, and run must take
// its environment from getenv (tests run the bot in-process, in parallel), so
// the values are looked up here by the same struct tags envconfig uses
// (TestLoadConfigAgreesWithEnvconfig holds the two together); --help prints
// the same tags (printUsage).
func loadConfig(getenv func(string) string) (config, error) {
	var c config
	var problems []string
	v := reflect.ValueOf(&c).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		name := f.Tag.Get("envconfig")
		if name == "" {
			continue // resolved below, not read
		}
		value := strings.TrimSpace(getenv(name))
		if value == "" {
			value = f.Tag.Get("default")
		}
		if value == "" {
			if f.Tag.Get("required") == "true" {
				problems = append(problems, name+" is required but not set")
			}
			continue
		}
		if err := decodeValue(v.Field(i), value); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
		}
	}
	problems = append(problems, c.resolveCloud()...)
	problems = append(problems, c.check()...)
	if len(problems) > 0 {
		return c, errors.New("configuration: " + strings.Join(problems, "; "))
	}
	if !strings.HasSuffix(c.SlackAPIURL, "/") {
		c.SlackAPIURL += "/" // slack-go appends method names to it
	}
	return c, nil
}

// decodeValue parses value into field the way envconfig does for the kinds
// config uses: comma-separated slices, key:value,… maps, Go durations, bools,
// whole numbers.
func decodeValue(field reflect.Value, value string) error {
	switch field.Interface().(type) {
	case string:
		field.SetString(value)
	case int:
		n, err := strconv.Atoi(value)
		if err != nil {
			return fmt.Errorf("must be a whole number")
		}
		field.SetInt(int64(n))
	case bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("must be true or false")
		}
		field.SetBool(b)
	case time.Duration:
		d, err := time.ParseDuration(value)
		if err != nil || d < 0 {
			return fmt.Errorf("must be a duration such as 90s, 30m or 24h")
		}
		field.SetInt(int64(d))
	case []string:
		var items []string
		for _, item := range strings.Split(value, ",") {
			if item = strings.TrimSpace(item); item != "" {
				items = append(items, item)
			}
		}
		field.Set(reflect.ValueOf(items))
	case map[string]string:
		m := map[string]string{}
		for _, pair := range strings.Split(value, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(pair), ":")
			if !ok || strings.TrimSpace(k) == "" || strings.TrimSpace(val) == "" {
				return fmt.Errorf("must be key:value pairs separated by commas")
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		field.Set(reflect.ValueOf(m))
	default:
		return fmt.Errorf("unsupported type %s", field.Type())
	}
	return nil
}

var (
	// tenantName: a tenant may be given by domain; it becomes a URL path
	// segment, so only host-name characters.
	tenantName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,250}[A-Za-z0-9])?$`)
)

// check validates values that were set; each problem names its variable and
// never echoes a secret.
func (c config) check() []string {
	var p []string
	if c.SlackAppToken != "" && !strings.HasPrefix(c.SlackAppToken, "xapp-") {
		p = append(p, "SLACK_APP_TOKEN must be an app-level token starting with xapp-")
	}
	if c.SlackBotToken != "" && !strings.HasPrefix(c.SlackBotToken, "xoxb-") {
		p = append(p, "SLACK_BOT_TOKEN must be a bot token starting with xoxb-")
	}
	for i, id := range c.Approvers {
		if !bot.ValidUserID(id) {
			p = append(p, fmt.Sprintf("REPROVISION_APPROVER must list Slack user IDs like U0123ABCD, not %q", id))
		}
		if slices.Contains(c.Approvers[:i], id) {
			p = append(p, fmt.Sprintf("REPROVISION_APPROVER lists %s twice", id))
		}
	}
	for _, id := range c.Requesters {
		if !bot.ValidUserID(id) {
			p = append(p, fmt.Sprintf("REPROVISION_REQUESTERS must list Slack user IDs like U0123ABCD, not %q", id))
		}
	}
	for _, id := range c.Channels {
		if !bot.ValidChannelID(id) {
			p = append(p, fmt.Sprintf("REPROVISION_CHANNELS must list Slack channel IDs like C0123ABCD, not %q", id))
		}
	}
	for id, upn := range c.ApproverUPNs {
		if !bot.ValidUserID(id) || !strings.Contains(upn, "@") {
			p = append(p, fmt.Sprintf("REPROVISION_APPROVER_UPNS entries must be U…:user@domain, not %q", id+":"+upn))
		}
	}
	if len(c.AllowedStatuses) == 0 && c.GraphURL != "" {
		p = append(p, "REPROVISION_ALLOWED_STATUSES must name at least one status")
	}
	if l := strings.ToLower(c.LogLevel); !slices.Contains([]string{"debug", "info", "warn", "error"}, l) {
		p = append(p, "REPROVISION_LOG_LEVEL must be debug, info, warn or error")
	}
	if c.HTTPAddr != "off" {
		if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil || port == "" {
			p = append(p, fmt.Sprintf("REPROVISION_HTTP_ADDR must be host:port or :port (or off), not %q", c.HTTPAddr))
		}
	}
	switch {
	case c.ApprovalsRequired < 1 || c.ApprovalsRequired > approvals.MaxApprovalsRequired:
		p = append(p, fmt.Sprintf("REPROVISION_APPROVALS_REQUIRED must be 1 to %d, not %d", approvals.MaxApprovalsRequired, c.ApprovalsRequired))
	case c.ApprovalsRequired > len(c.Approvers) && len(c.Approvers) > 0:
		p = append(p, fmt.Sprintf("REPROVISION_APPROVALS_REQUIRED is %d but REPROVISION_APPROVER lists %d approver(s)", c.ApprovalsRequired, len(c.Approvers)))
	}
	if c.SignInStart <= 0 {
		p = append(p, "REPROVISION_SIGNIN_START_TIMEOUT must be positive")
	}
	if c.SignInTimeout < c.SignInStart {
		p = append(p, "REPROVISION_SIGNIN_TIMEOUT must be at least REPROVISION_SIGNIN_START_TIMEOUT")
	}
	if c.UserNotice > approvals.MaxUserNotice {
		p = append(p, fmt.Sprintf("REPROVISION_USER_NOTICE must be at most %s, not %s (the approver's sign-in must still be fresh when the call goes)", approvals.MaxUserNotice, c.UserNotice))
	}
	if c.BatchMax < 2 || c.BatchMax > approvals.MaxBatchTargets {
		p = append(p, fmt.Sprintf("REPROVISION_BATCH_MAX must be 2 to %d, not %d", approvals.MaxBatchTargets, c.BatchMax))
	}
	if c.BatchTwoPerson < 1 {
		p = append(p, fmt.Sprintf("REPROVISION_BATCH_TWO_PERSON must be at least 1, not %d", c.BatchTwoPerson))
	}
	if c.BatchParallel < 1 || c.BatchParallel > 50 {
		p = append(p, fmt.Sprintf("REPROVISION_BATCH_PARALLEL must be 1 to 50, not %d", c.BatchParallel))
	}
	if c.GraphRPS < 1 {
		p = append(p, fmt.Sprintf("REPROVISION_GRAPH_RPS must be at least 1 (requests per second), not %d", c.GraphRPS))
	}
	if c.TrackEvery <= 0 && c.GraphURL != "" {
		p = append(p, "REPROVISION_TRACK_EVERY must be positive")
	}
	if c.TenantID != "" && !graph.IsGUID(c.TenantID) && !tenantName.MatchString(c.TenantID) {
		p = append(p, "AZURE_TENANT_ID must be a tenant GUID or domain name")
	}
	if c.ClientID != "" && !graph.IsGUID(c.ClientID) {
		p = append(p, "AZURE_CLIENT_ID must be the app registration's client ID (a GUID)")
	}
	if msg := checkURL(c.SlackAPIURL, "http", "https"); msg != "" {
		p = append(p, "SLACK_API_URL "+msg)
	}
	if msg := checkURL(c.AuthorityHost, "https"); msg != "" {
		p = append(p, "AZURE_AUTHORITY_HOST "+msg)
	}
	if msg := checkURL(c.GraphURL, "https"); msg != "" {
		p = append(p, "GRAPH_URL "+msg)
	}
	return p
}

// resolveCloud fills the authority and Graph URL from AZURE_CLOUD unless
// they are overridden, and keeps the cloud's token scope: it must name the
// cloud's Graph host whatever GRAPH_URL says.
func (c *config) resolveCloud() []string {
	cloud, err := graph.CloudNamed(c.Cloud)
	if err != nil {
		return []string{"AZURE_CLOUD: " + err.Error()}
	}
	c.cloud = cloud
	if c.AuthorityHost == "" {
		c.AuthorityHost = cloud.AuthorityHost
	}
	if c.GraphURL == "" {
		c.GraphURL = cloud.GraphURL()
	}
	return nil
}

// logLevel is REPROVISION_LOG_LEVEL as a slog level.
func (c config) logLevel() slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.LogLevel)) // checked by check
	return l
}

func checkURL(raw string, schemes ...string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Sprintf("must be an absolute URL, not %q", raw)
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return ""
		}
	}
	return fmt.Sprintf("must use %s", strings.Join(schemes, " or "))
}

// usageHeader precedes the table of variables in --help.
const usageHeader = `reprovision-bot: approve-and-reprovision Windows 365 Cloud PCs from Slack.

Usage: reprovision-bot                                         run the bot (configured by the environment)
       reprovision-bot check                                   check the configuration against Slack, Entra, Graph and the store
       reprovision-bot audit [-since 24h] [-format jsonl|csv]  print the audit trail from REPROVISION_DB
       reprovision-bot backup -o FILE                          copy REPROVISION_DB consistently, also while the bot runs
       reprovision-bot version                                 the version, revision and Go version (also --version)
       reprovision-bot --help                                  this text

Environment:
`

// printUsage writes --help: the verbs, then a table of every variable from
// config's envconfig tags (name, required, default, meaning) — the table
// envconfig.Usage would print, written here without it: envconfig prints
// through text/template, whose reflection kept about 3.7 MB of otherwise
// dead code in the binary.
func printUsage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 1, 0, 2, ' ', 0)
	fmt.Fprint(tw, usageHeader)
	fmt.Fprintln(tw, "VARIABLE\tREQUIRED\tDEFAULT\tMEANING")
	t := reflect.TypeFor[config]()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("envconfig")
		if name == "" {
			continue
		}
		required := "no"
		if f.Tag.Get("required") == "true" {
			required = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, required, f.Tag.Get("default"), f.Tag.Get("desc"))
	}
	return tw.Flush()
}
