package fakes_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// Knobs and measurements for batches: provisioning policies, Cloud PCs by policy,
// throttling the Nth reprovision, failing one Cloud PC's, and what the fake received.

func pcsURL(g *fakes.Graph) string { return g.URL() + "/deviceManagement/virtualEndpoint/cloudPCs" }

func policiesURL(g *fakes.Graph) string {
	return g.URL() + "/deviceManagement/virtualEndpoint/provisioningPolicies"
}

func filterQuery(f string) string {
	return "$filter=" + strings.ReplaceAll(url.QueryEscape(f), "+", "%20")
}

// values returns a list answer's items, failing unless it is one.
func values(t *testing.T, r graphResp) []map[string]any {
	t.Helper()
	v, ok := r.body["value"].([]any)
	if r.status != 200 || !ok {
		t.Fatalf("list: %d %v", r.status, r.body)
	}
	var out []map[string]any
	for _, it := range v {
		out = append(out, it.(map[string]any))
	}
	return out
}

// Policies come from the Cloud PCs' policy names (with the ids their
// provisioningPolicyId carries) and from AddProvisioningPolicy, e.g. a second
// policy with a name another already has.
func TestGraphProvisioningPolicies(t *testing.T) {
	t.Parallel()
	g := fakes.NewGraph(t)
	c := fakes.TLSClient()
	const other = "0b6c3f1e-5a2d-4c8e-9f10-2a3b4c5d6e7f"
	g.AddCloudPC(fakes.CloudPC{ID: "pc-1", ProvisioningPolicyName: "Engineering"})
	g.AddCloudPC(fakes.CloudPC{ID: "pc-2", ProvisioningPolicyName: "Sales"})
	g.AddCloudPC(fakes.CloudPC{ID: "pc-3", ProvisioningPolicyName: "Engineering"})
	g.AddProvisioningPolicy(fakes.ProvisioningPolicy{ID: other, DisplayName: "Engineering", Description: "the other one"})
	g.AddCloudPC(fakes.CloudPC{ID: "pc-4", ProvisioningPolicyID: other})

	eng := fakes.PolicyID("Engineering")
	if pols := g.ProvisioningPolicies(); len(pols) != 3 || pols[0].ID != other || pols[1].ID != eng || pols[2].ID != fakes.PolicyID("Sales") {
		t.Fatalf("ProvisioningPolicies = %+v", pols)
	}
	// The Cloud PCs carry their policy's id, and pc-4 the other policy's name.
	for id, want := range map[string][2]string{"pc-1": {eng, "Engineering"}, "pc-4": {other, "Engineering"}} {
		r := graphDo(t, c, http.MethodGet, pcsURL(g)+"/"+id+"?$select=id,provisioningPolicyId,provisioningPolicyName", "tok", "")
		if r.body["provisioningPolicyId"] != want[0] || r.body["provisioningPolicyName"] != want[1] {
			t.Errorf("%s: %v", id, r.body)
		}
	}

	// By name: two share "Engineering".
	r := graphDo(t, c, http.MethodGet, policiesURL(g)+"?"+filterQuery("displayName eq 'Engineering'")+"&$select=id,displayName", "tok", "")
	items := values(t, r)
	if len(items) != 2 || items[0]["id"] != other || items[1]["id"] != eng || len(items[0]) != 2 ||
		!strings.HasSuffix(r.body["@odata.context"].(string), "#deviceManagement/virtualEndpoint/provisioningPolicies") {
		t.Errorf("by name: %v", r.body)
	}
	if items := values(t, graphDo(t, c, http.MethodGet, policiesURL(g)+"?"+filterQuery("displayName eq 'sales'"), "tok", "")); len(items) != 1 ||
		items[0]["@odata.type"] != "#microsoft.graph.cloudPcProvisioningPolicy" || items[0]["provisioningType"] != "dedicated" {
		t.Errorf("case-insensitive name: %v", items)
	}
	if items := values(t, graphDo(t, c, http.MethodGet, policiesURL(g)+"?"+filterQuery("displayName eq 'Nobody'"), "tok", "")); len(items) != 0 {
		t.Errorf("no match: %v", items)
	}

	// By id, case-insensitively.
	r = graphDo(t, c, http.MethodGet, policiesURL(g)+"/"+strings.ToUpper(other)+"?$select=id,displayName,description", "tok", "")
	if r.status != 200 || r.body["id"] != other || r.body["description"] != "the other one" ||
		!strings.HasSuffix(r.body["@odata.context"].(string), "provisioningPolicies/$entity") {
		t.Errorf("by id: %d %v", r.status, r.body)
	}
	r = graphDo(t, c, http.MethodGet, policiesURL(g)+"/"+fakes.PolicyID("Nobody"), "tok", "cr-404")
	if code, inner := graphErr(t, r); r.status != 404 || code != "ResourceNotFound" || inner["client-request-id"] != "cr-404" ||
		inner["request-id"] != r.header.Get("request-id") || r.header.Get("request-id") == "" {
		t.Errorf("unknown id: %d %v %v", r.status, r.header, r.body)
	}
	r = graphDo(t, c, http.MethodGet, policiesURL(g)+"/"+eng+"?$select=id,nope", "tok", "")
	if code, _ := graphErr(t, r); r.status != 400 || code != "BadRequest" {
		t.Errorf("unknown property: %d %v", r.status, r.body)
	}
	if r = graphDo(t, c, http.MethodPost, policiesURL(g)+"/"+eng, "tok", ""); r.status != 405 {
		t.Errorf("POST policy: %d", r.status)
	}

	// Paged like every list.
	g.SetPageSize(2)
	r = graphDo(t, c, http.MethodGet, policiesURL(g)+"?$select=id", "tok", "")
	next, _ := r.body["@odata.nextLink"].(string)
	if len(values(t, r)) != 2 || !strings.HasPrefix(next, policiesURL(g)+"?") || !strings.Contains(next, "$skiptoken=") {
		t.Fatalf("page 1: %v", r.body)
	}
	r = graphDo(t, c, http.MethodGet, next, "tok", "")
	if items := values(t, r); len(items) != 1 || items[0]["id"] != fakes.PolicyID("Sales") || r.body["@odata.nextLink"] != nil {
		t.Errorf("page 2: %v", r.body)
	}
}

// cloudPCs?$filter=provisioningPolicyId eq '…' lists a policy's Cloud PCs in pages
// linked by absolute @odata.nextLink URLs with a $skiptoken, as Graph pages.
func TestGraphCloudPCsOfAPolicyPaged(t *testing.T) {
	t.Parallel()
	g := fakes.NewGraph(t)
	c := fakes.TLSClient()
	var want []string
	for i := range 7 {
		id := "pc-" + string(rune('a'+i))
		policy := "Engineering"
		if i%3 == 1 {
			policy = "Sales"
		} else {
			want = append(want, id)
		}
		g.AddCloudPC(fakes.CloudPC{ID: id, ProvisioningPolicyName: policy})
	}
	g.SetPageSize(2)
	next := pcsURL(g) + "?" + filterQuery("provisioningPolicyId eq '"+fakes.PolicyID("Engineering")+"'") + "&$select=id,provisioningPolicyId"
	var got []string
	pages := 0
	for next != "" {
		pages++
		r := graphDo(t, c, http.MethodGet, next, "tok", "")
		for _, it := range values(t, r) {
			if it["provisioningPolicyId"] != fakes.PolicyID("Engineering") || len(it) != 2 {
				t.Errorf("item %v", it)
			}
			got = append(got, it["id"].(string))
		}
		next, _ = r.body["@odata.nextLink"].(string)
		if next != "" {
			u, err := url.Parse(next)
			if err != nil || !strings.HasPrefix(next, g.Root()+"/beta/") || u.Query().Get("$skiptoken") == "" ||
				u.Query().Get("$filter") == "" || strings.Contains(u.RawQuery, "+") {
				t.Fatalf("nextLink %q", next)
			}
		}
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Errorf("got %v in %d pages, want %v in 3", got, pages, want)
	}
}

func postRP(t *testing.T, g *fakes.Graph, id, crid string) graphResp {
	t.Helper()
	return graphDo(t, fakes.TLSClient(), http.MethodPost, pcsURL(g)+"/"+id+"/reprovision", "tok", crid)
}

func TestGraphThrottleReprovision(t *testing.T) {
	t.Parallel()
	g := fakes.NewGraph(t)
	g.AddCloudPC(fakes.CloudPC{ID: "pc-1"})
	g.AddCloudPC(fakes.CloudPC{ID: "pc-2"})
	if r := postRP(t, g, "pc-1", ""); r.status != 204 { // before the knob: not counted
		t.Fatalf("first: %d", r.status)
	}
	g.SetCloudPCStatus("pc-1", "provisioned")

	g.ThrottleReprovision(2, 3)
	if r := postRP(t, g, "pc-2", ""); r.status != 204 {
		t.Fatalf("1st from now: %d", r.status)
	}
	r := postRP(t, g, "pc-1", "cr-2")
	code, inner := graphErr(t, r)
	if r.status != 429 || r.header.Get("Retry-After") != "3" || code != "TooManyRequests" || inner["client-request-id"] != "cr-2" ||
		inner["request-id"] != r.header.Get("request-id") {
		t.Fatalf("2nd from now: %d %v %v", r.status, r.header, r.body)
	}
	if pc, _ := g.CloudPC("pc-1"); pc.Status != "provisioned" {
		t.Errorf("throttled POST acted: status %q", pc.Status)
	}
	if r := postRP(t, g, "pc-1", ""); r.status != 204 {
		t.Errorf("once only: %d", r.status)
	}

	// Queued answers wait behind the throttle; n <= 0 cancels it.
	g.QueueReprovision("pc-2", fakes.GraphError(409, "Conflict", "busy"))
	g.ThrottleReprovision(1, 1)
	if r := postRP(t, g, "pc-2", ""); r.status != 429 || r.header.Get("Retry-After") != "1" {
		t.Errorf("throttled: %d %v", r.status, r.header)
	}
	if r := postRP(t, g, "pc-2", ""); r.status != 409 {
		t.Errorf("queued answer after the throttle: %d", r.status)
	}
	g.ThrottleReprovision(1, 1)
	g.ThrottleReprovision(0, 0)
	if r := postRP(t, g, "pc-2", ""); r.status != 204 {
		t.Errorf("canceled throttle: %d", r.status)
	}
}

func TestGraphFailReprovisions(t *testing.T) {
	t.Parallel()
	g := fakes.NewGraph(t)
	g.AddCloudPC(fakes.CloudPC{ID: "PC-1"})
	g.AddCloudPC(fakes.CloudPC{ID: "pc-2"})
	g.FailReprovisions("pc-1", fakes.GraphError(500, "InternalServerError", "An internal server error occurred."))
	for _, crid := range []string{"cr-a", "cr-b"} {
		r := postRP(t, g, "Pc-1", crid)
		code, inner := graphErr(t, r)
		if r.status != 500 || code != "InternalServerError" || inner["client-request-id"] != crid || inner["request-id"] != r.header.Get("request-id") ||
			!strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Errorf("failing: %d %v %v", r.status, r.header, r.body)
		}
	}
	if pc, _ := g.CloudPC("pc-1"); pc.Status != "provisioned" {
		t.Errorf("failed POST acted: %q", pc.Status)
	}
	if r := postRP(t, g, "pc-2", ""); r.status != 204 {
		t.Errorf("other Cloud PC: %d", r.status)
	}
	// A queued answer comes first.
	g.QueueReprovision("pc-1", fakes.GraphError(409, "Conflict", "busy"))
	if r := postRP(t, g, "pc-1", ""); r.status != 409 {
		t.Errorf("queued: %d", r.status)
	}
	g.StopFailingReprovisions("PC-1")
	if r := postRP(t, g, "pc-1", ""); r.status != 204 {
		t.Errorf("after StopFailingReprovisions: %d", r.status)
	}

	posts := g.ReprovisionPosts()
	want := map[string]fakes.PostCount{"PC-1": {Posts: 4, Accepted: 1}, "pc-2": {Posts: 1, Accepted: 1}}
	if len(posts) != len(want) || posts["PC-1"] != want["PC-1"] || posts["pc-2"] != want["pc-2"] {
		t.Errorf("ReprovisionPosts = %v, want %v", posts, want)
	}
}

func TestGraphReprovisionPostsCountsUnknownAndRefused(t *testing.T) {
	t.Parallel()
	g := fakes.NewGraph(t)
	c := fakes.TLSClient()
	if r := postRP(t, g, "Unknown-PC", ""); r.status != 204 { // no Cloud PC added: any id is accepted
		t.Fatalf("%d", r.status)
	}
	g.AddCloudPC(fakes.CloudPC{ID: "pc-1"})
	graphDo(t, c, http.MethodPost, pcsURL(g)+"/pc-1/reprovision", "", "")    // no token: 401
	graphDo(t, c, http.MethodPost, pcsURL(g)+"/pc-9/reprovision", "tok", "") // unknown now: 404
	graphDo(t, c, http.MethodGet, pcsURL(g)+"/pc-1", "tok", "")              // not a POST
	posts := g.ReprovisionPosts()
	if len(posts) != 3 || posts["unknown-pc"] != (fakes.PostCount{Posts: 1, Accepted: 1}) || posts["pc-1"] != (fakes.PostCount{Posts: 1}) ||
		posts["pc-9"] != (fakes.PostCount{Posts: 1}) {
		t.Errorf("ReprovisionPosts = %v", posts)
	}
}

// MaxRequestsIn counts arrivals in a sliding window: checked against a count by
// brute force over the recorded arrival times, and against two bursts more than a
// second apart.
func TestGraphMaxRequestsIn(t *testing.T) {
	t.Parallel()
	g := fakes.NewGraph(t)
	c := fakes.TLSClient()
	if n := g.MaxRequestsPerSecond(); n != 0 {
		t.Errorf("no requests: %d", n)
	}
	for range 3 {
		graphDo(t, c, http.MethodGet, pcsURL(g), "tok", "")
	}
	time.Sleep(1100 * time.Millisecond)
	graphDo(t, c, http.MethodPost, pcsURL(g)+"/pc-1/reprovision", "tok", "")
	graphDo(t, c, http.MethodGet, pcsURL(g)+"/pc-1", "", "") // refused ones count too
	if n := g.MaxRequestsPerSecond(); n < 2 || n > 3 {
		t.Errorf("MaxRequestsPerSecond = %d, want 2 or 3 (two bursts more than a second apart)", n)
	}
	reqs := g.Requests()
	for _, d := range []time.Duration{time.Nanosecond, time.Millisecond, 50 * time.Millisecond, time.Second, time.Hour} {
		want := 0
		for i := range reqs {
			n := 0
			for j := i; j < len(reqs) && reqs[j].At.Sub(reqs[i].At) < d; j++ {
				n++
			}
			want = max(want, n)
		}
		if got := g.MaxRequestsIn(d); got != want {
			t.Errorf("MaxRequestsIn(%v) = %d, want %d", d, got, want)
		}
	}
	if n := g.MaxRequestsIn(time.Hour); n != 5 {
		t.Errorf("MaxRequestsIn(1h) = %d, want all 5", n)
	}
}
