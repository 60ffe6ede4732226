package graph

import (
	"fmt"
	"net/url"
	"strings"
)

// Cloud is a Microsoft cloud the bot can work in: where approvers sign in,
// where Graph is, and the permission to ask for (it must name that cloud's
// Graph host, or Entra issues a token Graph refuses).
type Cloud struct {
	Name          string
	AuthorityHost string // Entra, e.g. "https://login.microsoftonline.com/"
	GraphHost     string // e.g. "graph.microsoft.com"
}

// GraphURL is the cloud's Graph beta endpoint (the reprovision API and the
// Cloud PC status are beta only).
func (c Cloud) GraphURL() string { return "https://" + c.GraphHost + "/beta" }

// Scope is the delegated permission the bot needs, in this cloud.
func (c Cloud) Scope() string { return "https://" + c.GraphHost + "/CloudPC.ReadWrite.All" }

// The clouds the reprovision API is documented in (Microsoft Graph's
// national cloud table for cloudPC: reprovision): the global service, US
// Government L4 (GCC High) and L5 (DoD). Endpoints: Microsoft Graph's
// "National cloud deployments" page.
var clouds = []Cloud{
	{Name: "public", AuthorityHost: "https://login.microsoftonline.com/", GraphHost: "graph.microsoft.com"},
	{Name: "usgov", AuthorityHost: "https://login.microsoftonline.us/", GraphHost: "graph.microsoft.us"},
	{Name: "usgovdod", AuthorityHost: "https://login.microsoftonline.us/", GraphHost: "dod-graph.microsoft.us"},
}

// CloudNames lists the clouds CloudNamed knows.
func CloudNames() []string {
	names := make([]string, len(clouds))
	for i, c := range clouds {
		names[i] = c.Name
	}
	return names
}

// CloudNamed returns the cloud of that name (case-insensitive; "" is
// public). China (21Vianet) is refused with the reason: the reprovision
// API is not offered there.
func CloudNamed(name string) (Cloud, error) {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		name = "public"
	}
	for _, c := range clouds {
		if c.Name == name {
			return c, nil
		}
	}
	if name == "china" || name == "21vianet" {
		return Cloud{}, fmt.Errorf("the Cloud PC reprovision API is not available in the China cloud operated by 21Vianet (Microsoft Graph's national cloud table does not list it)")
	}
	return Cloud{}, fmt.Errorf("unknown cloud %q (known: %s)", name, strings.Join(CloudNames(), ", "))
}

// ServesGraph says whether a Graph base URL points at this cloud's Graph
// host. When it does not, the approvers' tokens for this cloud go to
// whatever the URL names.
func (c Cloud) ServesGraph(baseURL string) bool {
	u, err := url.Parse(baseURL)
	return err == nil && strings.EqualFold(u.Hostname(), c.GraphHost)
}
