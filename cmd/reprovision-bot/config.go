package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"text/tabwriter"

	"github.com/kelseyhightower/envconfig"
)

// config is the whole environment contract. The variable names are fixed:
// deployment docs and outside test harnesses rely on them.
type config struct {
	SlackAppToken string `envconfig:"SLACK_APP_TOKEN" required:"true" desc:"app-level token (xapp-…) for Socket Mode"`
	SlackBotToken string `envconfig:"SLACK_BOT_TOKEN" required:"true" desc:"bot token (xoxb-…)"`
	SlackAPIURL   string `envconfig:"SLACK_API_URL" default:"https://slack.com/api/" desc:"Slack Web API base URL"`
	Approver      string `envconfig:"REPROVISION_APPROVER" required:"true" desc:"Slack user ID of the designated approver"`
	TenantID      string `envconfig:"AZURE_TENANT_ID" required:"true" desc:"Entra tenant (ID or domain)"`
	ClientID      string `envconfig:"AZURE_CLIENT_ID" required:"true" desc:"Entra app (public client) used for the approver's sign-in"`
	AuthorityHost string `envconfig:"AZURE_AUTHORITY_HOST" default:"https://login.microsoftonline.com/" desc:"Entra authority; any other value disables instance discovery"`
	GraphURL      string `envconfig:"GRAPH_URL" default:"https://graph.microsoft.com/beta" desc:"Microsoft Graph base URL"`
	DBPath        string `envconfig:"REPROVISION_DB" default:"reprovision.db" desc:"embedded store path (SQLite)"`
}

// loadConfig reads the variables through getenv, applies defaults and checks
// every value, naming each offending variable.
//
// envconfig.Process reads only the process environment, and run must take
// its environment from getenv (tests run the bot in-process, in parallel), so
// the values are looked up here by the same struct tags envconfig uses; the
// --help text comes from envconfig itself.
func loadConfig(getenv func(string) string) (config, error) {
	var c config
	var problems []string
	v := reflect.ValueOf(&c).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		name := f.Tag.Get("envconfig")
		value := strings.TrimSpace(getenv(name))
		if value == "" {
			value = f.Tag.Get("default")
		}
		if value == "" && f.Tag.Get("required") == "true" {
			problems = append(problems, name+" is required but not set")
			continue
		}
		v.Field(i).SetString(value)
	}
	problems = append(problems, c.check()...)
	if len(problems) > 0 {
		return c, errors.New("configuration: " + strings.Join(problems, "; "))
	}
	if !strings.HasSuffix(c.SlackAPIURL, "/") {
		c.SlackAPIURL += "/" // slack-go appends method names to it
	}
	return c, nil
}

var (
	slackUserID = regexp.MustCompile(`^[UW][A-Z0-9]{2,20}$`)
	guid        = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
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
	if c.Approver != "" && !slackUserID.MatchString(c.Approver) {
		p = append(p, fmt.Sprintf("REPROVISION_APPROVER must be a Slack user ID like U0123ABCD, not %q", c.Approver))
	}
	if c.TenantID != "" && !guid.MatchString(c.TenantID) && !tenantName.MatchString(c.TenantID) {
		p = append(p, "AZURE_TENANT_ID must be a tenant GUID or domain name")
	}
	if c.ClientID != "" && !guid.MatchString(c.ClientID) {
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

// usageFormat is envconfig's table format with the requirement spelled out.
const usageFormat = `reprovision-bot: approve-and-reprovision Windows 365 Cloud PCs from Slack.

Usage: reprovision-bot            run the bot (configured by the environment)
       reprovision-bot --help     this text

Environment:
VARIABLE	REQUIRED	DEFAULT	MEANING
{{range .}}{{usage_key .}}	{{if usage_required .}}yes{{else}}no{{end}}	{{usage_default .}}	{{usage_description .}}
{{end}}`

func printUsage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 1, 0, 2, ' ', 0)
	if err := envconfig.Usagef("", &config{}, tw, usageFormat); err != nil {
		return err
	}
	return tw.Flush()
}
