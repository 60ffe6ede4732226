package main

import (
	"bytes"
	"strings"
	"testing"
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
		SlackAPIURL: "https://slack.com/api/", Approver: "U0APPROVER",
		TenantID: "00000000-0000-0000-0000-0000000000aa", ClientID: "00000000-0000-0000-0000-0000000000bb",
		AuthorityHost: "https://login.microsoftonline.com/", GraphURL: "https://graph.microsoft.com/beta",
		DBPath: "reprovision.db",
	}
	if c != want {
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
		"https://slack.com/api/", "https://graph.microsoft.com/beta", "reprovision.db"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("usage lacks %s:\n%s", name, out.String())
		}
	}
}
