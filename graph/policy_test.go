package graph

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/fakes"
)

const (
	policiesPath = "/beta/deviceManagement/virtualEndpoint/provisioningPolicies"
	testPolicy   = "1d164206-bf41-4fd2-8424-a3192d39ffff"
)

func policyJSON(id, name string) map[string]any {
	return map[string]any{"id": id, "displayName": name}
}

func policyPage(w http.ResponseWriter, next string, items ...map[string]any) {
	if items == nil {
		items = []map[string]any{}
	}
	body := map[string]any{"@odata.context": "https://graph.microsoft.com/beta/$metadata#deviceManagement/virtualEndpoint/provisioningPolicies(id,displayName)", "value": items}
	if next != "" {
		body["@odata.nextLink"] = next
	}
	writeJSON(w, 200, body)
}

func TestFindPolicyByID(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		m := policyJSON(strings.ToUpper(testPolicy), "HR provisioning policy")
		m["@odata.context"] = "https://graph.microsoft.com/beta/$metadata#deviceManagement/virtualEndpoint/provisioningPolicies(id,displayName)/$entity"
		writeJSON(w, 200, m)
	})
	p := cloudPCsPort(t, g, ClientOptions{})
	pol, call, err := p.FindPolicy(context.Background(), " "+strings.ToUpper(testPolicy)+" ")
	if err != nil {
		t.Fatal(err)
	}
	if pol != (approvals.ProvisioningPolicy{ID: testPolicy, DisplayName: "HR provisioning policy"}) {
		t.Errorf("policy = %+v", pol)
	}
	r := g.requests()[0]
	q, _ := url.ParseQuery(r.RawQuery)
	if r.Method != "GET" || r.Path != policiesPath+"/"+strings.ToUpper(testPolicy) || q.Get("$select") != "id,displayName" || len(q) != 1 {
		t.Errorf("request %s %s ? %s", r.Method, r.Path, r.RawQuery)
	}
	if call.Method != "GET" || call.Path != policiesPath+"/"+strings.ToUpper(testPolicy) || len(call.Attempts) != 1 || call.Attempts[0].Status != 200 {
		t.Errorf("call = %+v", call)
	}
}

func TestFindPolicyByName(t *testing.T) {
	t.Parallel()
	var g *fakeGraph
	g = newFakeGraph(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 0:
			// Graph compares case-insensitively; a name that only starts alike is not returned,
			// but if it were it would not count.
			policyPage(w, g.srv.URL+policiesPath+"?$skiptoken=p2", policyJSON(guid(9), "O'Brien (HR) old"))
		case 1:
			if r.URL.Query().Get("$skiptoken") != "p2" {
				t.Errorf("page 2 query %q", r.URL.RawQuery)
			}
			policyPage(w, "", policyJSON(strings.ToUpper(guid(1)), "o'brien (hr)"))
		default:
			t.Errorf("unexpected request %d", n)
		}
	})
	p := cloudPCsPort(t, g, ClientOptions{})
	pol, call, err := p.FindPolicy(context.Background(), "O'Brien (HR)")
	if err != nil {
		t.Fatal(err)
	}
	if pol != (approvals.ProvisioningPolicy{ID: guid(1), DisplayName: "o'brien (hr)"}) {
		t.Errorf("policy = %+v", pol)
	}
	reqs := g.requests()
	if len(reqs) != 2 || len(call.Attempts) != 2 || call.Path != policiesPath || call.Method != "GET" {
		t.Fatalf("requests %d, call %+v", len(reqs), call)
	}
	q, err := url.ParseQuery(reqs[0].RawQuery)
	if err != nil || q.Get("$filter") != "displayName eq 'O''Brien (HR)'" || q.Get("$select") != "id,displayName" || len(q) != 2 {
		t.Errorf("query %q", reqs[0].RawQuery)
	}
	if strings.ContainsAny(reqs[0].RawQuery, "+' ()") {
		t.Errorf("raw query %q: the literal must be escaped, spaces as %%20", reqs[0].RawQuery)
	}
}

// A name with apostrophes that passes the check reaches Graph as one string literal.
func TestFindPolicyNameIsOneLiteral(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) { policyPage(w, "") })
	_, _, err := cloudPCsPort(t, g, ClientOptions{}).FindPolicy(context.Background(), "x' or displayName ne '")
	if !errors.Is(err, ErrPolicyNotFound) {
		t.Fatalf("err %v", err)
	}
	q, err := url.ParseQuery(g.requests()[0].RawQuery)
	if err != nil || q.Get("$filter") != "displayName eq 'x'' or displayName ne '''" || len(q) != 2 {
		t.Errorf("query %q", g.requests()[0].RawQuery)
	}
}

func TestFindPolicyNotFound(t *testing.T) {
	t.Parallel()
	t.Run("no such name", func(t *testing.T) {
		g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) { policyPage(w, "") })
		pol, call, err := cloudPCsPort(t, g, ClientOptions{}).FindPolicy(context.Background(), "Engineering")
		var ge *approvals.GraphError
		if !errors.As(err, &ge) || ge.Kind != approvals.GraphNotFound || !errors.Is(err, ErrPolicyNotFound) || pol != (approvals.ProvisioningPolicy{}) {
			t.Fatalf("policy %+v, err %v", pol, err)
		}
		if len(call.Attempts) != 1 || call.Attempts[0].Status != 200 {
			t.Errorf("call = %+v", call)
		}
	})
	t.Run("no such id", func(t *testing.T) {
		g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, 404, map[string]any{"error": map[string]any{"code": "ResourceNotFound", "message": "Not found"}})
		})
		_, call, err := cloudPCsPort(t, g, ClientOptions{}).FindPolicy(context.Background(), testPolicy)
		var ge *approvals.GraphError
		if !errors.As(err, &ge) || ge.Kind != approvals.GraphNotFound || ge.Status != 404 || ge.Code != "ResourceNotFound" {
			t.Fatalf("err %v", err)
		}
		if len(call.Attempts) != 1 || call.Attempts[0].Status != 404 {
			t.Errorf("call = %+v", call)
		}
	})
}

// Two policies with one name: which one is meant cannot be told, so nothing is picked.
func TestFindPolicyNameSharedIsInvalid(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		policyPage(w, "", policyJSON(guid(1), "Engineering"), policyJSON(guid(2), "engineering"))
	})
	pol, call, err := cloudPCsPort(t, g, ClientOptions{}).FindPolicy(context.Background(), "Engineering")
	var ge *approvals.GraphError
	if !errors.As(err, &ge) || ge.Kind != approvals.GraphInvalid || !errors.Is(err, ErrAmbiguousPolicy) || pol != (approvals.ProvisioningPolicy{}) {
		t.Fatalf("policy %+v, err %v", pol, err)
	}
	if len(call.Attempts) != 1 {
		t.Errorf("call = %+v", call)
	}
}

func TestFindPolicyBadAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		policy string
		answer func(w http.ResponseWriter)
	}{
		{"item without id", "Engineering", func(w http.ResponseWriter) { policyPage(w, "", map[string]any{"displayName": "Engineering"}) }},
		{"no value", "Engineering", func(w http.ResponseWriter) { writeJSON(w, 200, map[string]any{}) }},
		{"another policy", testPolicy, func(w http.ResponseWriter) { writeJSON(w, 200, policyJSON(guid(3), "x")) }},
		{"not an object", testPolicy, func(w http.ResponseWriter) { writeJSON(w, 200, []any{}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) { tc.answer(w) })
			_, _, err := cloudPCsPort(t, g, ClientOptions{}).FindPolicy(context.Background(), tc.policy)
			var ge *approvals.GraphError
			if !errors.As(err, &ge) || ge.Kind != approvals.GraphFailed || ge.Cause != approvals.CauseBadAnswer {
				t.Errorf("err %v", err)
			}
		})
	}
}

func TestValidPolicyName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"Engineering", "HR provisioning policy", "O'Brien (HR)", "Ventes & Marketing, Paris", "Équipe Zürich 2", "日本 ポリシー",
		"W365 [pilot] v1.2", "x", "a:b@c+d_e-f.", "Sales -", "R&D!", "Pilot  2", strings.Repeat("x", MaxPolicyNameLength)} {
		if !ValidPolicyName(ok) {
			t.Errorf("ValidPolicyName(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", " ", " Engineering", "Engineering ", "Engineering\u00a0", "-x", "'x", "(x)", "a/b", `a\b`, "a%2Fb", "a?b", "a#b", "a*b", `a"b`, "a$b",
		"a=b", "a\nb", "a\tb", "a\x00b", "a;b", "a<b>", "\xff\xfe", strings.Repeat("x", MaxPolicyNameLength+1)} {
		if ValidPolicyName(bad) {
			t.Errorf("ValidPolicyName(%q) = true", bad)
		}
	}
}

// A policy that is neither a GUID nor a sane name never reaches a URL.
func TestFindPolicyInvalidSendsNothing(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(n int, w http.ResponseWriter, r *http.Request) {
		t.Errorf("request sent: %s %s?%s", r.Method, r.URL.Path, r.URL.RawQuery)
		policyPage(w, "")
	})
	cred := &staticCred{token: testToken}
	c := g.client(t, cred, ClientOptions{})
	p := cloudPCsPort(t, g, ClientOptions{})
	for _, bad := range []string{"", "   ", "x' or displayName ne '' or id eq '$", "x'); $filter=(displayName ne 'y", "../cloudPCs/" + testCloudPC + "/reprovision", "a%27b", "a&$filter=x",
		"a#frag", "HR\u0000", "HR\r\nHost: evil", strings.Repeat("p", MaxPolicyNameLength+1), testPolicy + "/x", "{" + testPolicy + "}"} {
		_, call, err := c.FindPolicy(context.Background(), bad)
		if !errors.Is(err, ErrInvalidPolicy) || len(call.Attempts) != 0 {
			t.Errorf("FindPolicy(%q): err %v, attempts %d", bad, err, len(call.Attempts))
		}
		_, _, err = p.FindPolicy(context.Background(), bad)
		var ge *approvals.GraphError
		if !errors.As(err, &ge) || ge.Kind != approvals.GraphInvalid {
			t.Errorf("port FindPolicy(%q): %v", bad, err)
		}
	}
	for _, bad := range []string{"", "Engineering", "not-a-guid", testPolicy + "'", "' or 1 eq 1"} {
		pcs, calls, err := c.PolicyCloudPCs(context.Background(), bad)
		if !errors.Is(err, ErrInvalidPolicy) || pcs != nil || calls != nil {
			t.Errorf("PolicyCloudPCs(%q): %v, %v, %v", bad, pcs, calls, err)
		}
		_, _, err = p.PolicyCloudPCs(context.Background(), bad)
		var ge *approvals.GraphError
		if !errors.As(err, &ge) || ge.Kind != approvals.GraphInvalid {
			t.Errorf("port PolicyCloudPCs(%q): %v", bad, err)
		}
	}
	if len(cred.requests()) != 0 {
		t.Errorf("a token was asked for: %d", len(cred.requests()))
	}
	if n := len(g.requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// Every page of a policy's Cloud PCs is read, each with its own GraphCall (a retried
// page has both attempts), and provisioningPolicyId is decoded.
func TestPolicyCloudPCsPaging(t *testing.T) {
	t.Parallel()
	pc := func(n int) map[string]any {
		return cloudPCJSON(guid(n), map[string]any{"provisioningPolicyId": strings.ToUpper(testPolicy), "provisioningPolicyName": "Engineering"})
	}
	var g *fakeGraph
	g = newFakeGraph(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 0:
			listPage(w, g.srv.URL+pcsPath+"?$filter=x&$skiptoken=p2", pc(1), pc(2))
		case 1:
			w.Header().Set("Retry-After", "0")
			writeJSON(w, 429, map[string]any{"error": map[string]any{"code": "TooManyRequests", "message": "slow down"}})
		case 2:
			if r.URL.Query().Get("$skiptoken") != "p2" {
				t.Errorf("page 2 query %q", r.URL.RawQuery)
			}
			listPage(w, g.srv.URL+pcsPath+"?$skiptoken=p3", pc(3), pc(2)) // pc 2 again: kept once
		case 3:
			listPage(w, "", pc(4))
		default:
			t.Errorf("unexpected request %d", n)
		}
	})
	p := cloudPCsPort(t, g, ClientOptions{RetryDelay: time.Millisecond})
	pcs, calls, err := p.PolicyCloudPCs(context.Background(), strings.ToUpper(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, pc := range pcs {
		ids = append(ids, pc.ID)
		if pc.ProvisioningPolicyID != testPolicy || pc.ProvisioningPolicyName != "Engineering" || pc.Status != "provisioned" {
			t.Errorf("pc = %+v", pc)
		}
	}
	if strings.Join(ids, ",") != strings.Join([]string{guid(1), guid(2), guid(3), guid(4)}, ",") {
		t.Errorf("ids = %v", ids)
	}
	if len(calls) != 3 || len(calls[0].Attempts) != 1 || len(calls[1].Attempts) != 2 || len(calls[2].Attempts) != 1 ||
		calls[1].Attempts[0].Status != 429 || calls[1].Attempts[1].Status != 200 {
		t.Fatalf("calls = %+v", calls)
	}
	for _, c := range calls {
		if c.Method != "GET" || c.Path != pcsPath {
			t.Errorf("call %+v", c)
		}
	}
	q, err := url.ParseQuery(g.requests()[0].RawQuery)
	if err != nil || q.Get("$filter") != "provisioningPolicyId eq '"+testPolicy+"'" || q.Get("$select") != wantSelect || len(q) != 2 {
		t.Errorf("query %q", g.requests()[0].RawQuery)
	}
	if !strings.Contains(wantSelect, "provisioningPolicyId") {
		t.Errorf("$select %q lacks provisioningPolicyId", wantSelect)
	}
}

func TestPolicyCloudPCsEmptyAndErrors(t *testing.T) {
	t.Parallel()
	t.Run("none", func(t *testing.T) {
		g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) { listPage(w, "") })
		pcs, calls, err := cloudPCsPort(t, g, ClientOptions{}).PolicyCloudPCs(context.Background(), testPolicy)
		if err != nil || pcs == nil || len(pcs) != 0 || len(calls) != 1 {
			t.Errorf("pcs %#v, calls %d, err %v", pcs, len(calls), err)
		}
	})
	// Graph ignoring the filter must not put another policy's Cloud PCs in a batch.
	for name, extra := range map[string]map[string]any{
		"another policy": {"provisioningPolicyId": guid(7)},
		"no policy id":   {"provisioningPolicyId": nil},
	} {
		t.Run(name, func(t *testing.T) {
			var g *fakeGraph
			g = newFakeGraph(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 0 {
					listPage(w, g.srv.URL+pcsPath+"?$skiptoken=2", cloudPCJSON(guid(1), map[string]any{"provisioningPolicyId": testPolicy}))
					return
				}
				listPage(w, "", cloudPCJSON(guid(2), extra))
			})
			pcs, calls, err := cloudPCsPort(t, g, ClientOptions{}).PolicyCloudPCs(context.Background(), testPolicy)
			var ge *approvals.GraphError
			if !errors.As(err, &ge) || ge.Cause != approvals.CauseBadAnswer || pcs != nil {
				t.Fatalf("pcs %v, err %v", pcs, err)
			}
			if len(calls) != 2 {
				t.Errorf("calls %d, want both pages", len(calls))
			}
		})
	}
	t.Run("page fails", func(t *testing.T) {
		var g *fakeGraph
		g = newFakeGraph(t, func(n int, w http.ResponseWriter, _ *http.Request) {
			if n == 0 {
				listPage(w, g.srv.URL+pcsPath+"?$skiptoken=2", cloudPCJSON(guid(1), map[string]any{"provisioningPolicyId": testPolicy}))
				return
			}
			writeJSON(w, 403, map[string]any{"error": map[string]any{"code": "Forbidden", "message": "no"}})
		})
		pcs, calls, err := cloudPCsPort(t, g, ClientOptions{}).PolicyCloudPCs(context.Background(), testPolicy)
		var ge *approvals.GraphError
		if !errors.As(err, &ge) || ge.Kind != approvals.GraphSignInAgain || pcs != nil || len(calls) != 2 || calls[1].Attempts[0].Status != 403 {
			t.Fatalf("pcs %v, calls %+v, err %v", pcs, calls, err)
		}
	})
	t.Run("context done", func(t *testing.T) {
		g := newFakeGraph(t, noContent)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		pcs, calls, err := cloudPCsPort(t, g, ClientOptions{}).PolicyCloudPCs(ctx, testPolicy)
		if err == nil || pcs != nil || calls != nil || len(g.requests()) != 0 {
			t.Errorf("pcs %v, calls %v, err %v", pcs, calls, err)
		}
	})
}

// The port against the shared fake Graph (its wire shapes, paging and knobs): a policy
// by name and by id, its Cloud PCs over several pages, a name two policies share, and
// a batch's reprovisions through one shared RateLimiter while the fake throttles one.
func TestPoliciesAgainstSharedFake(t *testing.T) {
	t.Parallel()
	g, _ := sharedGraph(t)
	for i := 1; i <= 5; i++ {
		g.AddCloudPC(fakes.CloudPC{ID: guid(i), ManagedDeviceName: "CPC-eng-" + string(rune('0'+i)), ProvisioningPolicyName: "Engineering"})
	}
	g.AddCloudPC(fakes.CloudPC{ID: guid(6), ProvisioningPolicyName: "Sales"})
	g.SetPageSize(2)
	l, _ := NewRateLimiter(50)
	p, err := NewCloudPCs(&staticCred{token: testToken}, ClientOptions{BaseURL: g.URL(), Transport: fakes.TLSClient(), RateLimiter: l})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	eng := fakes.PolicyID("Engineering")
	pol, call, err := p.FindPolicy(ctx, "engineering")
	if err != nil || pol != (approvals.ProvisioningPolicy{ID: eng, DisplayName: "Engineering"}) || len(call.Attempts) != 1 {
		t.Fatalf("FindPolicy by name: %+v, %+v, %v", pol, call, err)
	}
	if pol, _, err := p.FindPolicy(ctx, strings.ToUpper(eng)); err != nil || pol.ID != eng || pol.DisplayName != "Engineering" {
		t.Errorf("FindPolicy by id: %+v, %v", pol, err)
	}
	var ge *approvals.GraphError
	if _, _, err := p.FindPolicy(ctx, "Marketing"); !errors.As(err, &ge) || ge.Kind != approvals.GraphNotFound {
		t.Errorf("unknown name: %v", err)
	}
	if _, _, err := p.FindPolicy(ctx, fakes.PolicyID("Marketing")); !errors.As(err, &ge) || ge.Kind != approvals.GraphNotFound || ge.Status != 404 {
		t.Errorf("unknown id: %v", err)
	}

	pcs, calls, err := p.PolicyCloudPCs(ctx, pol.ID)
	if err != nil || len(pcs) != 5 || len(calls) != 3 {
		t.Fatalf("PolicyCloudPCs: %d Cloud PCs, %d calls, %v", len(pcs), len(calls), err)
	}
	for i, pc := range pcs {
		if pc.ID != guid(i+1) || pc.ProvisioningPolicyID != eng || pc.ProvisioningPolicyName != "Engineering" || pc.Status != "provisioned" {
			t.Errorf("pc %d: %+v", i, pc)
		}
	}

	// The fake throttles the second reprovision: azcore retries it after Retry-After,
	// and the shared limiter holds the next Cloud PC's call until then too.
	g.ThrottleReprovision(2, 1)
	for _, pc := range pcs[:3] {
		if _, err := p.Reprovision(ctx, pc.ID, approvals.Options{}); err != nil {
			t.Fatalf("Reprovision %s: %v", pc.ID, err)
		}
	}
	posts := g.ReprovisionPosts()
	if posts[guid(1)] != (fakes.PostCount{Posts: 1, Accepted: 1}) || posts[guid(2)] != (fakes.PostCount{Posts: 2, Accepted: 1}) ||
		posts[guid(3)] != (fakes.PostCount{Posts: 1, Accepted: 1}) {
		t.Errorf("ReprovisionPosts = %v", posts)
	}
	var throttled, after time.Time
	for _, r := range g.Requests() {
		switch {
		case r.Status == 429:
			throttled = r.At
		case !throttled.IsZero() && after.IsZero():
			after = r.At
		}
	}
	if throttled.IsZero() || after.Sub(throttled) < time.Second {
		t.Errorf("the request after the 429 came %v later, want at least Retry-After: 1", after.Sub(throttled))
	}

	g.AddProvisioningPolicy(fakes.ProvisioningPolicy{ID: guid(99), DisplayName: "Engineering"})
	if _, _, err := p.FindPolicy(ctx, "Engineering"); !errors.As(err, &ge) || ge.Kind != approvals.GraphInvalid || !errors.Is(err, ErrAmbiguousPolicy) {
		t.Errorf("shared name: %v", err)
	}
}
