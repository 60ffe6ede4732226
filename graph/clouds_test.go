package graph

import (
	"net/http"
	"strings"
	"testing"
)

func TestClouds(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, authority, graphURL, scope string
	}{
		{"", "https://login.microsoftonline.com/", "https://graph.microsoft.com/beta", "https://graph.microsoft.com/CloudPC.ReadWrite.All"},
		{"public", "https://login.microsoftonline.com/", "https://graph.microsoft.com/beta", "https://graph.microsoft.com/CloudPC.ReadWrite.All"},
		{"USGov", "https://login.microsoftonline.us/", "https://graph.microsoft.us/beta", "https://graph.microsoft.us/CloudPC.ReadWrite.All"},
		{"usgovdod", "https://login.microsoftonline.us/", "https://dod-graph.microsoft.us/beta", "https://dod-graph.microsoft.us/CloudPC.ReadWrite.All"},
	} {
		cloud, err := CloudNamed(c.name)
		if err != nil {
			t.Errorf("%q: %v", c.name, err)
			continue
		}
		if cloud.AuthorityHost != c.authority || cloud.GraphURL() != c.graphURL || cloud.Scope() != c.scope {
			t.Errorf("%q: authority %s, Graph %s, scope %s", c.name, cloud.AuthorityHost, cloud.GraphURL(), cloud.Scope())
		}
		if !cloud.ServesGraph(c.graphURL) || cloud.ServesGraph("https://127.0.0.1:8443/beta") {
			t.Errorf("%q: ServesGraph wrong", c.name)
		}
		if public, _ := CloudNamed("public"); cloud.Name != "public" && cloud.ServesGraph(public.GraphURL()) {
			t.Errorf("%q serves the public Graph", c.name)
		}
	}
	if _, err := CloudNamed("china"); err == nil || !strings.Contains(err.Error(), "21Vianet") {
		t.Errorf("china: %v, want a refusal naming 21Vianet", err)
	}
	if _, err := CloudNamed("mars"); err == nil || !strings.Contains(err.Error(), "public, usgov, usgovdod") {
		t.Errorf("mars: %v, want the known clouds listed", err)
	}
}

func TestOperationOf(t *testing.T) {
	t.Parallel()
	base := "https://graph.microsoft.com/beta/deviceManagement/virtualEndpoint/cloudPCs"
	for url, want := range map[string]string{
		base + "/abc/reprovision":                        "reprovision",
		base + "?$filter=x&$top=1":                       "list",
		base + "/abc?$select=id":                         "get",
		base + "/abc/retrieveCloudPcRemoteActionResults": "action_results",
		"https://graph.microsoft.com/beta/deviceManagement/virtualEndpoint/provisioningPolicies?$filter=x": "list",
		"https://graph.microsoft.com/beta/deviceManagement/virtualEndpoint/provisioningPolicies/abc":       "get",
	} {
		method := http.MethodGet
		if want == "reprovision" {
			method = http.MethodPost
		}
		if got := operationOf(method, url); got != want {
			t.Errorf("%s %s: %s, want %s", method, url, got, want)
		}
	}
}
