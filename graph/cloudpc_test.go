package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/fakes"
)

const (
	pcsPath    = "/beta/deviceManagement/virtualEndpoint/cloudPCs"
	wantSelect = "id,displayName,userPrincipalName,managedDeviceName,servicePlanName,provisioningPolicyName,provisioningPolicyId,status,statusDetail,lastModifiedDateTime"
	otherPC    = "0d3c7a51-6d2b-4b8e-9f1a-2c4e5f607182"
)

func cloudPCJSON(id string, extra map[string]any) map[string]any {
	m := map[string]any{
		"@odata.context":         "https://graph.microsoft.com/beta/$metadata#deviceManagement/virtualEndpoint/cloudPCs/$entity",
		"id":                     id,
		"displayName":            "CPC-alice-01",
		"userPrincipalName":      "alice@contoso.example",
		"managedDeviceName":      "CPC-alice-X1",
		"servicePlanName":        "Cloud PC Enterprise 2vCPU/8GB/128GB",
		"provisioningPolicyName": "Default policy",
		"provisioningPolicyId":   strings.ToUpper(testPolicy),
		"status":                 "provisioned",
		"statusDetail":           nil,
		"lastModifiedDateTime":   "2024-05-06T07:08:09Z",
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func TestGetCloudPC(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, cloudPCJSON(strings.ToUpper(testCloudPC), map[string]any{
			"status":       "inGracePeriod",
			"statusDetail": map[string]any{"@odata.type": "#microsoft.graph.cloudPcStatusDetail", "code": "licenseRemoved", "message": "The license was removed.", "additionalInformation": []any{map[string]any{"name": "retriable", "value": "false"}}},
		}))
	})
	cred := &staticCred{token: testToken}
	c := g.client(t, cred, ClientOptions{})
	pc, call, err := c.GetCloudPC(context.Background(), testCloudPC)
	if err != nil {
		t.Fatal(err)
	}
	want := approvals.CloudPC{
		ID: testCloudPC, DisplayName: "CPC-alice-01", UserPrincipalName: "alice@contoso.example", ManagedDeviceName: "CPC-alice-X1",
		ServicePlanName: "Cloud PC Enterprise 2vCPU/8GB/128GB", ProvisioningPolicyName: "Default policy", ProvisioningPolicyID: testPolicy,
		Status: "inGracePeriod", StatusDetails: "The license was removed.", LastModified: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
	}
	if pc != want {
		t.Errorf("pc = %+v\nwant %+v", pc, want)
	}
	reqs := g.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	q, _ := url.ParseQuery(r.RawQuery)
	if r.Method != "GET" || r.Path != pcsPath+"/"+testCloudPC || q.Get("$select") != wantSelect || len(q) != 1 {
		t.Errorf("request %s %s ? %s", r.Method, r.Path, r.RawQuery)
	}
	if r.Prefer != "include-unknown-enum-members" || r.Accept != "application/json" || r.Authorization != "Bearer "+testToken {
		t.Errorf("headers: Prefer %q, Accept %q, Authorization %q", r.Prefer, r.Accept, r.Authorization)
	}
	if call.Method != "GET" || call.Path != pcsPath+"/"+testCloudPC || len(call.Attempts) != 1 || call.Attempts[0].Status != 200 ||
		call.Attempts[0].ClientRequestID != r.ClientRequestID || call.Attempts[0].RequestID != "server-request-1" {
		t.Errorf("call = %+v", call)
	}
}

func TestGetCloudPCStatusShapes(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 400)
	for _, tc := range []struct {
		name             string
		extra            map[string]any
		status, detail   string
		lastModifiedZero bool
	}{
		{"unknown enum value kept", map[string]any{"status": "someStatusFrom2030"}, "someStatusFrom2030", "", false},
		{"evolvable member", map[string]any{"status": "movingRegion"}, "movingRegion", "", false},
		{"status null", map[string]any{"status": nil}, "", "", false},
		{"status absent", map[string]any{"status": nil, "statusDetail": nil, "lastModifiedDateTime": nil}, "", "", true},
		{"status not a string", map[string]any{"status": 7}, "7", "", false},
		{"detail message", map[string]any{"statusDetail": map[string]any{"code": "c1", "message": "m1"}}, "provisioned", "m1", false},
		{"detail code only", map[string]any{"statusDetail": map[string]any{"code": "internalServerError", "message": nil}}, "provisioned", "internalServerError", false},
		{"detail empty message", map[string]any{"statusDetail": map[string]any{"code": "c2", "message": "  "}}, "provisioned", "c2", false},
		{"detail string", map[string]any{"statusDetail": "plain text"}, "provisioned", "plain text", false},
		{"detail array", map[string]any{"statusDetail": []any{map[string]any{"foo": 1}, map[string]any{"message": "second"}}}, "provisioned", "second", false},
		{"detail unknown object", map[string]any{"statusDetail": map[string]any{"foo": map[string]any{"bar": 1}}}, "provisioned", "", false},
		{"detail number", map[string]any{"statusDetail": 42}, "provisioned", "", false},
		{"deprecated statusDetails", map[string]any{"statusDetails": map[string]any{"code": "old", "message": "old message"}}, "provisioned", "old message", false},
		{"statusDetail wins", map[string]any{"statusDetail": map[string]any{"message": "new"}, "statusDetails": map[string]any{"message": "old"}}, "provisioned", "new", false},
		{"multi-line detail", map[string]any{"statusDetail": map[string]any{"message": " line one\n\tline\u0000two  "}}, "provisioned", "line one line two", false},
		{"long detail", map[string]any{"statusDetail": map[string]any{"message": long}}, "provisioned", strings.Repeat("x", 300) + "…", false},
		{"bad time", map[string]any{"lastModifiedDateTime": "yesterday"}, "provisioned", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				m := cloudPCJSON(testCloudPC, tc.extra)
				for k, v := range tc.extra {
					if v == nil && tc.name == "status absent" {
						delete(m, k)
					}
				}
				writeJSON(w, 200, m)
			})
			pc, _, err := g.client(t, &staticCred{token: testToken}, ClientOptions{}).GetCloudPC(context.Background(), testCloudPC)
			if err != nil {
				t.Fatal(err)
			}
			if pc.Status != tc.status || pc.StatusDetails != tc.detail || pc.LastModified.IsZero() != tc.lastModifiedZero {
				t.Errorf("status %q, details %q, lastModified %v; want %q, %q, zero=%v", pc.Status, pc.StatusDetails, pc.LastModified, tc.status, tc.detail, tc.lastModifiedZero)
			}
		})
	}
}

func TestGetCloudPCBadAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body string
	}{
		{"not JSON", "<html>oops</html>"},
		{"JSON array", "[]"},
		{"another Cloud PC", `{"id":"` + otherPC + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(tc.body))
			})
			_, call, err := g.client(t, &staticCred{token: testToken}, ClientOptions{}).GetCloudPC(context.Background(), testCloudPC)
			var ge *Error
			if !errors.As(err, &ge) || !errors.Is(err, ErrBadAnswer) || ge.StatusCode != 200 || ge.RequestID != "server-request-1" || ge.OutcomeUnknown() {
				t.Fatalf("err = %v", err)
			}
			if len(call.Attempts) != 1 {
				t.Errorf("attempts = %d, want 1 (a bad 200 is not retried)", len(call.Attempts))
			}
		})
	}
	// No id in the answer: the requested one is used.
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]any{"displayName": "x"})
	})
	pc, _, err := g.client(t, &staticCred{token: testToken}, ClientOptions{}).GetCloudPC(context.Background(), strings.ToUpper(testCloudPC))
	if err != nil || pc.ID != testCloudPC {
		t.Errorf("pc %+v, err %v", pc, err)
	}
}

func TestLookupsInvalidIDSendNothing(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, noContent)
	cred := &staticCred{token: testToken}
	c := g.client(t, cred, ClientOptions{})
	for _, id := range []string{"", "pc-1", "../cloudPCs", testCloudPC + "/reprovision", testCloudPC + "?$select=id", " " + testCloudPC} {
		if _, call, err := c.GetCloudPC(context.Background(), id); !errors.Is(err, ErrInvalidCloudPCID) || len(call.Attempts) != 0 {
			t.Errorf("GetCloudPC(%q): %v, %d attempts", id, err, len(call.Attempts))
		}
		if _, call, err := c.RemoteActionResults(context.Background(), id); !errors.Is(err, ErrInvalidCloudPCID) || len(call.Attempts) != 0 {
			t.Errorf("RemoteActionResults(%q): %v, %d attempts", id, err, len(call.Attempts))
		}
	}
	if n := len(g.requests()); n != 0 {
		t.Errorf("graph saw %d requests", n)
	}
	if n := len(cred.requests()); n != 0 {
		t.Errorf("credential asked %d times", n)
	}
}

func TestGetCloudPCRetries(t *testing.T) {
	t.Parallel()
	t.Run("5xx then OK", func(t *testing.T) {
		g := newFakeGraph(t, func(n int, w http.ResponseWriter, _ *http.Request) {
			switch n {
			case 0:
				writeJSON(w, 500, map[string]any{"error": map[string]any{"code": "InternalServerError", "message": "boom"}})
			case 1:
				w.WriteHeader(http.StatusBadGateway)
			default:
				writeJSON(w, 200, cloudPCJSON(testCloudPC, nil))
			}
		})
		c := g.client(t, &staticCred{token: testToken}, ClientOptions{RetryDelay: 10 * time.Millisecond})
		pc, call, err := c.GetCloudPC(context.Background(), testCloudPC)
		if err != nil || pc.ID != testCloudPC {
			t.Fatalf("pc %+v, err %v", pc, err)
		}
		if len(call.Attempts) != 3 || call.Attempts[0].Status != 500 || call.Attempts[1].Status != 502 || call.Attempts[2].Status != 200 {
			t.Errorf("attempts = %+v", call.Attempts)
		}
	})
	t.Run("try timeout then OK", func(t *testing.T) {
		hang := hanging(t)
		g := newFakeGraph(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 0 {
				hang(n, w, r)
				return
			}
			writeJSON(w, 200, cloudPCJSON(testCloudPC, nil))
		})
		// A second long enough for the second try's TLS handshake and answer
		// on a loaded machine (300 ms was not, with compiles running).
		c := g.client(t, &staticCred{token: testToken}, ClientOptions{TryTimeout: time.Second, RetryDelay: 10 * time.Millisecond})
		_, call, err := c.GetCloudPC(context.Background(), testCloudPC)
		if err != nil {
			t.Fatal(err)
		}
		if len(call.Attempts) != 2 || call.Attempts[0].Status != 0 || call.Attempts[0].Err == "" || call.Attempts[1].Status != 200 {
			t.Errorf("attempts = %+v", call.Attempts)
		}
	})
	t.Run("5xx until retries run out", func(t *testing.T) {
		g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, 504, map[string]any{"error": map[string]any{"code": "GatewayTimeout", "message": "slow"}})
		})
		c := g.client(t, &staticCred{token: testToken}, ClientOptions{MaxRetries: 2, RetryDelay: 10 * time.Millisecond})
		_, call, err := c.GetCloudPC(context.Background(), testCloudPC)
		var ge *Error
		if !errors.As(err, &ge) || ge.StatusCode != 504 || ge.Attempts != 3 || ge.Method != "GET" || ge.OutcomeUnknown() {
			t.Fatalf("err = %#v", err)
		}
		if len(call.Attempts) != 3 || len(g.requests()) != 3 {
			t.Errorf("attempts %d, requests %d; want 3", len(call.Attempts), len(g.requests()))
		}
		if strings.Contains(err.Error(), "outcome unknown") {
			t.Errorf("a GET reported as outcome unknown: %v", err)
		}
	})
	t.Run("4xx is not retried", func(t *testing.T) {
		g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, 404, map[string]any{"error": map[string]any{"code": "ResourceNotFound", "message": "no"}})
		})
		_, call, err := g.client(t, &staticCred{token: testToken}, ClientOptions{}).GetCloudPC(context.Background(), testCloudPC)
		var ge *Error
		if !errors.As(err, &ge) || ge.StatusCode != 404 || len(call.Attempts) != 1 {
			t.Fatalf("err = %v, attempts %d", err, len(call.Attempts))
		}
	})
}

// A caller's policy.WithRetryOptions cannot make the POST retry a 5xx or a timeout.
func TestReprovisionIgnoresCallerRetryOptions(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	c := g.client(t, &staticCred{token: testToken}, ClientOptions{})
	ctx := policy.WithRetryOptions(context.Background(), policy.RetryOptions{MaxRetries: 5, RetryDelay: time.Millisecond})
	call, err := c.Reprovision(ctx, testCloudPC, approvals.Options{})
	var ge *Error
	if !errors.As(err, &ge) || !ge.OutcomeUnknown() || ge.Method != "POST" || ge.Attempts != 1 {
		t.Fatalf("err = %#v", err)
	}
	if len(call.Attempts) != 1 || len(g.requests()) != 1 {
		t.Errorf("attempts %d, requests %d; want 1", len(call.Attempts), len(g.requests()))
	}
}

// listPage answers a list request with items and an optional nextLink.
func listPage(w http.ResponseWriter, next string, items ...map[string]any) {
	if items == nil {
		items = []map[string]any{}
	}
	body := map[string]any{"@odata.context": "https://graph.microsoft.com/beta/$metadata#deviceManagement/virtualEndpoint/cloudPCs", "value": items}
	if next != "" {
		body["@odata.nextLink"] = next
	}
	writeJSON(w, 200, body)
}

func guid(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

func TestFindCloudPCsQuery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		by     Field
		value  string
		filter string
	}{
		{ByUserPrincipalName, "o'brien+tag@contoso.example", "userPrincipalName eq 'o''brien+tag@contoso.example'"},
		{ByUserPrincipalName, "d'a'x@contoso.example", "userPrincipalName eq 'd''a''x@contoso.example'"},
		{ByManagedDeviceName, "CPC-alice-X1", "managedDeviceName eq 'CPC-alice-X1'"},
		{ByDisplayName, "CPC.alice_01", "displayName eq 'CPC.alice_01'"},
	} {
		t.Run(string(tc.by)+"/"+tc.value, func(t *testing.T) {
			g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				listPage(w, "", cloudPCJSON(strings.ToUpper(testCloudPC), nil))
			})
			pcs, call, err := g.client(t, &staticCred{token: testToken}, ClientOptions{}).FindCloudPCs(context.Background(), tc.by, tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if len(pcs) != 1 || pcs[0].ID != testCloudPC || pcs[0].ManagedDeviceName != "CPC-alice-X1" {
				t.Errorf("pcs = %+v", pcs)
			}
			r := g.requests()[0]
			q, err := url.ParseQuery(r.RawQuery)
			if err != nil || q.Get("$filter") != tc.filter || q.Get("$select") != wantSelect || len(q) != 2 {
				t.Errorf("query %q: %v", r.RawQuery, q)
			}
			if strings.ContainsAny(r.RawQuery, "+' ") && !strings.Contains(tc.value, "+") {
				t.Errorf("raw query %q: spaces must be %%20 and quotes escaped", r.RawQuery)
			}
			if strings.Contains(tc.value, "+") && !strings.Contains(r.RawQuery, "%2B") {
				t.Errorf("raw query %q: + must be %%2B", r.RawQuery)
			}
			if r.Path != pcsPath || call.Path != pcsPath || call.Method != "GET" || r.Prefer != "include-unknown-enum-members" {
				t.Errorf("path %q, call %+v, Prefer %q", r.Path, call, r.Prefer)
			}
		})
	}
}

func TestFindCloudPCsNoMatch(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) { listPage(w, "") })
	pcs, call, err := g.client(t, &staticCred{token: testToken}, ClientOptions{}).FindCloudPCs(context.Background(), ByDisplayName, "nothing")
	if err != nil || pcs == nil || len(pcs) != 0 || len(call.Attempts) != 1 {
		t.Errorf("pcs %#v, err %v, attempts %d", pcs, err, len(call.Attempts))
	}
}

func TestFindCloudPCsInvalidValueSendsNothing(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, noContent)
	cred := &staticCred{token: testToken}
	c := g.client(t, cred, ClientOptions{})
	bad := []struct {
		by    Field
		value string
	}{
		{ByManagedDeviceName, ""},
		{ByManagedDeviceName, "CPC alice"},
		{ByManagedDeviceName, "-CPC"},
		{ByManagedDeviceName, ".hidden"},
		{ByManagedDeviceName, "o'brien"},
		{ByManagedDeviceName, "a/b"},
		{ByManagedDeviceName, `a\b`},
		{ByManagedDeviceName, "a%27b"},
		{ByManagedDeviceName, "x' or displayName eq 'y"},
		{ByManagedDeviceName, strings.Repeat("a", 64)},
		{ByManagedDeviceName, "CPC\n"},
		{ByManagedDeviceName, "ÄPC"},
		{ByDisplayName, "Cloud PC - Alice"},
		{ByUserPrincipalName, "alice"},
		{ByUserPrincipalName, "alice@"},
		{ByUserPrincipalName, "@contoso.example"},
		{ByUserPrincipalName, "alice@localhost"},
		{ByUserPrincipalName, "al%ice@contoso.example"},
		{ByUserPrincipalName, "al/ice@contoso.example"},
		{ByUserPrincipalName, `al\ice@contoso.example`},
		{ByUserPrincipalName, `al"ice@contoso.example`},
		{ByUserPrincipalName, "al ice@contoso.example"},
		{ByUserPrincipalName, "'alice@contoso.example"},
		{ByUserPrincipalName, "alice@contoso.example'"},
		{ByUserPrincipalName, "alice@-contoso.example"},
		{ByUserPrincipalName, "alice@contoso..example"},
		{ByUserPrincipalName, "user_x.com#EXT#@contoso.onmicrosoft.com"},
		{ByUserPrincipalName, strings.Repeat("a", 65) + "@contoso.example"},
		{ByUserPrincipalName, strings.Repeat("a", 60) + "@" + strings.Repeat("b", 50) + ".example"},
		{ByUserPrincipalName, "CPC-alice"},
		{ByManagedDeviceName, "alice@contoso.example"},
		{Field("id"), "x"},
		{Field(""), "CPC"},
		{Field("displayname"), "CPC"},
	}
	for _, tc := range bad {
		_, call, err := c.FindCloudPCs(context.Background(), tc.by, tc.value)
		if !errors.Is(err, ErrInvalidTarget) || len(call.Attempts) != 0 {
			t.Errorf("FindCloudPCs(%q, %q): err %v, %d attempts", tc.by, tc.value, err, len(call.Attempts))
		}
		if g := classify(err, "GET"); g.Kind != approvals.GraphInvalid || g.Cause != approvals.CauseInvalidTarget {
			t.Errorf("classify(%v) = %+v", err, g)
		}
	}
	for _, target := range []string{"", "  ", "CPC alice", "al%ice@contoso.example", "x' or 1 eq 1", "a/b"} {
		if _, calls, err := c.Resolve(context.Background(), target); !errors.Is(err, ErrInvalidTarget) || calls != nil {
			t.Errorf("Resolve(%q): err %v, calls %+v", target, err, calls)
		}
	}
	if n := len(g.requests()); n != 0 {
		t.Errorf("graph saw %d requests", n)
	}
	if n := len(cred.requests()); n != 0 {
		t.Errorf("credential asked %d times", n)
	}
	for _, ok := range []string{"a", "CPC-alice-01", "a.b_c-d", strings.Repeat("a", 63)} {
		if !ValidDeviceName(ok) {
			t.Errorf("ValidDeviceName(%q) = false", ok)
		}
	}
	for _, ok := range []string{"a@b.c", "o'brien+tag@sub.contoso.example", "first.last_1-x@contoso.onmicrosoft.com", strings.Repeat("a", 64) + "@contoso.example"} {
		if !ValidUPN(ok) {
			t.Errorf("ValidUPN(%q) = false", ok)
		}
	}
}

func TestFindCloudPCsPaging(t *testing.T) {
	t.Parallel()
	var g *fakeGraph
	g = newFakeGraph(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 0:
			listPage(w, g.srv.URL+pcsPath+"?$filter=managedDeviceName%20eq%20%27CPC%27&$skiptoken=p2", cloudPCJSON(guid(1), nil), cloudPCJSON(guid(2), nil))
		case 1:
			if r.URL.Query().Get("$skiptoken") != "p2" {
				t.Errorf("page 2 query %q", r.URL.RawQuery)
			}
			// Host in another case, same collection path in another case: same place.
			next := "https://" + strings.ToUpper(strings.TrimPrefix(g.srv.URL, "https://")) + strings.ToUpper(pcsPath) + "?$skiptoken=p3"
			listPage(w, next, cloudPCJSON(guid(3), nil))
		case 2:
			listPage(w, "", cloudPCJSON(guid(4), nil))
		default:
			t.Errorf("unexpected request %d", n)
		}
	})
	pcs, call, err := g.client(t, &staticCred{token: testToken}, ClientOptions{}).FindCloudPCs(context.Background(), ByManagedDeviceName, "CPC")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, pc := range pcs {
		ids = append(ids, pc.ID)
	}
	if strings.Join(ids, ",") != strings.Join([]string{guid(1), guid(2), guid(3), guid(4)}, ",") {
		t.Errorf("ids = %v", ids)
	}
	if len(call.Attempts) != 3 || len(g.requests()) != 3 {
		t.Errorf("attempts %d, requests %d; want 3", len(call.Attempts), len(g.requests()))
	}
	for _, r := range g.requests() {
		if r.Authorization != "Bearer "+testToken {
			t.Errorf("page request without the token: %+v", r)
		}
	}
}

func TestFindCloudPCsNextLinkElsewhereIsNotFollowed(t *testing.T) {
	t.Parallel()
	other := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) { listPage(w, "") })
	otherURL, _ := url.Parse(other.srv.URL)
	for _, tc := range []struct {
		name string
		next func(self string) string
	}{
		{"other host", func(string) string { return other.srv.URL + pcsPath + "?$skiptoken=2" }},
		{"other host name same port", func(self string) string {
			u, _ := url.Parse(self)
			return "https://localhost:" + u.Port() + pcsPath + "?$skiptoken=2"
		}},
		{"other port", func(self string) string { return "https://127.0.0.1:" + otherURL.Port() + pcsPath + "?$skiptoken=2" }},
		{"http", func(self string) string {
			return "http://" + strings.TrimPrefix(self, "https://") + pcsPath + "?$skiptoken=2"
		}},
		{"other path", func(self string) string { return self + "/beta/users?$skiptoken=2" }},
		{"other version", func(self string) string { return self + "/v1.0/deviceManagement/virtualEndpoint/cloudPCs?$skiptoken=2" }},
		{"dot segments", func(self string) string { return self + pcsPath + "/../../../users?$skiptoken=2" }},
		{"user info", func(self string) string {
			return "https://user@" + strings.TrimPrefix(self, "https://") + pcsPath + "?$skiptoken=2"
		}},
		{"relative", func(string) string { return pcsPath + "?$skiptoken=2" }},
		{"protocol-relative", func(string) string { return "//" + otherURL.Host + pcsPath + "?$skiptoken=2" }},
		{"not a URL", func(string) string { return "%%%" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var g *fakeGraph
			g = newFakeGraph(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				listPage(w, tc.next(g.srv.URL), cloudPCJSON(guid(1), nil))
			})
			pcs, call, err := g.client(t, &staticCred{token: testToken}, ClientOptions{}).FindCloudPCs(context.Background(), ByManagedDeviceName, "CPC")
			if !errors.Is(err, ErrUntrustedNextLink) || pcs != nil {
				t.Fatalf("pcs %v, err %v; want ErrUntrustedNextLink and no list", pcs, err)
			}
			if len(g.requests()) != 1 || len(call.Attempts) != 1 {
				t.Errorf("requests %d, attempts %d; want 1", len(g.requests()), len(call.Attempts))
			}
			if g := classify(err, "GET"); g.Kind != approvals.GraphFailed || g.Cause != approvals.CauseUntrustedLink {
				t.Errorf("classify = %+v", g)
			}
		})
	}
	if n := len(other.requests()); n != 0 {
		t.Errorf("the other host got %d requests (with the approver's token)", n)
	}
}

func TestFindCloudPCsPageBound(t *testing.T) {
	t.Parallel()
	var g *fakeGraph
	g = newFakeGraph(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		listPage(w, fmt.Sprintf("%s%s?$skiptoken=%d", g.srv.URL, pcsPath, n+1), cloudPCJSON(guid(n), nil))
	})
	pcs, call, err := g.client(t, &staticCred{token: testToken}, ClientOptions{}).FindCloudPCs(context.Background(), ByDisplayName, "CPC")
	if !errors.Is(err, ErrTooManyPages) || pcs != nil {
		t.Fatalf("pcs %d, err %v", len(pcs), err)
	}
	if len(g.requests()) != MaxPages || len(call.Attempts) != MaxPages {
		t.Errorf("requests %d, attempts %d; want %d", len(g.requests()), len(call.Attempts), MaxPages)
	}
}

func TestFindCloudPCsBadAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		body any
	}{
		{"no value", map[string]any{"@odata.context": "x"}},
		{"value null", map[string]any{"value": nil}},
		{"value not an array", map[string]any{"value": "x"}},
		{"item not an object", map[string]any{"value": []any{"x"}}},
		{"item without id", map[string]any{"value": []any{map[string]any{"displayName": "x"}}}},
		{"item with a bad id", map[string]any{"value": []any{cloudPCJSON(guid(1), nil), cloudPCJSON("pc-2", nil)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, tc.body) })
			pcs, _, err := g.client(t, &staticCred{token: testToken}, ClientOptions{}).FindCloudPCs(context.Background(), ByDisplayName, "CPC")
			var ge *Error
			if !errors.Is(err, ErrBadAnswer) || !errors.As(err, &ge) || ge.RequestID != "server-request-1" || pcs != nil {
				t.Fatalf("pcs %v, err %v", pcs, err)
			}
			if g := classify(err, "GET"); g.Kind != approvals.GraphFailed || g.Cause != approvals.CauseBadAnswer || g.RequestID != "server-request-1" {
				t.Errorf("classify = %+v", g)
			}
		})
	}
}

func TestRemoteActionResults(t *testing.T) {
	t.Parallel()
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]any{
			"@odata.context": "https://graph.microsoft.com/beta/$metadata#Collection(microsoft.graph.cloudPcRemoteActionResult)",
			"value": []any{
				map[string]any{"actionName": "Reprovision", "actionState": "failed", "startDateTime": "2024-05-06T07:08:09Z",
					"lastUpdatedDateTime": "2024-05-06T07:38:09.1234567Z", "cloudPcId": testCloudPC, "managedDeviceId": "md",
					"statusDetail": map[string]any{"code": "internalServerError", "message": "There was an error during reprovision."}},
				map[string]any{"actionName": "Reboot", "actionState": "someFutureState", "startDateTime": nil, "statusDetails": map[string]any{"code": "old"}},
				map[string]any{},
			},
		})
	})
	actions, call, err := g.client(t, &staticCred{token: testToken}, ClientOptions{}).RemoteActionResults(context.Background(), testCloudPC)
	if err != nil {
		t.Fatal(err)
	}
	want := []RemoteAction{
		{Name: "Reprovision", State: "failed", Started: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
			Updated: time.Date(2024, 5, 6, 7, 38, 9, 123456700, time.UTC), Details: "There was an error during reprovision."},
		{Name: "Reboot", State: "someFutureState", Details: "old"},
		{},
	}
	if fmt.Sprint(actions) != fmt.Sprint(want) {
		t.Errorf("actions = %+v\nwant %+v", actions, want)
	}
	r := g.requests()[0]
	if r.Method != "GET" || r.Path != pcsPath+"/"+testCloudPC+"/retrieveCloudPcRemoteActionResults" || r.RawQuery != "" ||
		call.Path != r.Path || len(call.Attempts) != 1 {
		t.Errorf("request %+v, call %+v", r, call)
	}

	// Empty list.
	g2 := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) { listPage(w, "") })
	actions, _, err = g2.client(t, &staticCred{token: testToken}, ClientOptions{}).RemoteActionResults(context.Background(), testCloudPC)
	if err != nil || actions == nil || len(actions) != 0 {
		t.Errorf("empty: %#v, %v", actions, err)
	}
}

// sharedGraph is the project's protocol fake with GUID Cloud PCs.
func sharedGraph(t *testing.T) (*fakes.Graph, *Client) {
	t.Helper()
	g := fakes.NewGraph(t)
	c, err := NewClient(&staticCred{token: testToken}, ClientOptions{BaseURL: g.URL(), Transport: fakes.TLSClient(), RetryDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return g, c
}

func TestResolveAgainstSharedFake(t *testing.T) {
	t.Parallel()
	g, c := sharedGraph(t)
	g.AddCloudPC(fakes.CloudPC{ID: guid(1), DisplayName: "Alice-PC", UserPrincipalName: "o'brien@contoso.example", ManagedDeviceName: "CPC-obrien-1", Status: "movingRegion",
		StatusDetailCode: "regionMove", StatusDetailMessage: "Moving to <westeurope>."})
	g.AddCloudPC(fakes.CloudPC{ID: guid(2), DisplayName: "Shared-Name", UserPrincipalName: "o'brien@contoso.example", ManagedDeviceName: "CPC-obrien-2"})
	const upper3 = "ABCDEF00-0000-4000-8000-000000000003"
	lower3 := strings.ToLower(upper3)
	g.AddCloudPC(fakes.CloudPC{ID: upper3, DisplayName: "Shared-Name", UserPrincipalName: "bob@contoso.example", ManagedDeviceName: "CPC-bob-1"})
	g.AddCloudPC(fakes.CloudPC{ID: guid(4), DisplayName: "CPC-obrien-1", UserPrincipalName: "carol@contoso.example", ManagedDeviceName: "CPC-carol-1"})
	g.SetPageSize(1)

	ids := func(pcs []approvals.CloudPC) string {
		var s []string
		for _, pc := range pcs {
			s = append(s, pc.ID)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		target   string
		want     string
		requests int
		filters  []string
	}{
		{guid(1), guid(1), 1, nil},
		{lower3, lower3, 1, nil},
		{"99999999-9999-4999-8999-999999999999", "", 1, nil},
		{" o'brien@contoso.example ", guid(1) + "," + guid(2), 2, []string{"userPrincipalName eq 'o''brien@contoso.example'"}},
		{"nobody@contoso.example", "", 1, []string{"userPrincipalName eq 'nobody@contoso.example'"}},
		// managedDeviceName wins over a displayName match of the same text.
		{"CPC-obrien-1", guid(1), 1, []string{"managedDeviceName eq 'CPC-obrien-1'"}},
		{"Shared-Name", guid(2) + "," + lower3, 3, []string{"managedDeviceName eq 'Shared-Name'", "displayName eq 'Shared-Name'"}},
		{"nothing-here", "", 2, []string{"managedDeviceName eq 'nothing-here'", "displayName eq 'nothing-here'"}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			before := len(g.Requests())
			pcs, calls, err := c.Resolve(context.Background(), tc.target)
			if err != nil {
				t.Fatal(err)
			}
			if pcs == nil || ids(pcs) != tc.want {
				t.Errorf("Resolve = %q (%#v), want %q", ids(pcs), pcs, tc.want)
			}
			reqs := g.Requests()[before:]
			if len(reqs) != tc.requests {
				t.Errorf("%d requests, want %d:\n%s", len(reqs), tc.requests, g.Dump())
			}
			// Every request is in the calls, in order: one call per list (or GET).
			var attempts []Attempt
			for _, call := range calls {
				if call.Method != "GET" || !strings.HasPrefix(call.Path, pcsPath) || len(call.Attempts) == 0 {
					t.Errorf("call %+v", call)
				}
				attempts = append(attempts, call.Attempts...)
			}
			if wantCalls := max(len(tc.filters), 1); len(calls) != wantCalls {
				t.Errorf("%d calls, want %d", len(calls), wantCalls)
			}
			if len(attempts) != len(reqs) {
				t.Fatalf("%d attempts in the calls, %d requests", len(attempts), len(reqs))
			}
			for i, a := range attempts {
				if a.Status != 200 && a.Status != 404 || a.ClientRequestID == "" {
					t.Errorf("attempt %d: %+v", i, a)
				}
			}
			var filters []string
			for _, r := range reqs {
				q, _ := url.ParseQuery(r.RawQuery)
				if f := q.Get("$filter"); f != "" && q.Get("$skiptoken") == "" {
					filters = append(filters, f)
				}
				if q.Get("$select") != wantSelect {
					t.Errorf("request %s?%s lacks the $select", r.Path, r.RawQuery)
				}
			}
			if strings.Join(filters, "|") != strings.Join(tc.filters, "|") {
				t.Errorf("filters %q, want %q", filters, tc.filters)
			}
		})
	}

	// What the shared fake serves decodes fully.
	pcs, _, err := c.Resolve(context.Background(), guid(1))
	if err != nil || len(pcs) != 1 {
		t.Fatal(pcs, err)
	}
	pc := pcs[0]
	if pc.Status != "movingRegion" || pc.StatusDetails != "Moving to <westeurope>." || pc.UserPrincipalName != "o'brien@contoso.example" ||
		pc.DisplayName != "Alice-PC" || pc.ManagedDeviceName != "CPC-obrien-1" || pc.LastModified.IsZero() {
		t.Errorf("pc = %+v", pc)
	}

	// Reprovision, then the remote action results, through the shared fake.
	if _, err := c.Reprovision(context.Background(), guid(2), approvals.Options{}); err != nil {
		t.Fatal(err)
	}
	actions, _, err := c.RemoteActionResults(context.Background(), guid(2))
	if err != nil || len(actions) != 1 || actions[0].Name != "Reprovision" || actions[0].State != "active" || actions[0].Started.IsZero() {
		t.Fatalf("actions %+v, err %v", actions, err)
	}
	g.SetCloudPCStatusDetail(guid(2), "internalServerError", "Reprovision failed.")
	g.SetCloudPCStatus(guid(2), "failed")
	actions, _, err = c.RemoteActionResults(context.Background(), guid(2))
	if err != nil || len(actions) != 1 || actions[0].State != "failed" || actions[0].Details != "Reprovision failed." {
		t.Fatalf("actions %+v, err %v", actions, err)
	}
}

func TestResolveErrors(t *testing.T) {
	t.Parallel()
	t.Run("GUID 500 is an error", func(t *testing.T) {
		g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) })
		c := g.client(t, &staticCred{token: testToken}, ClientOptions{MaxRetries: -1})
		pcs, calls, err := c.Resolve(context.Background(), testCloudPC)
		var ge *Error
		if !errors.As(err, &ge) || ge.StatusCode != 500 || pcs != nil {
			t.Errorf("pcs %v, err %v", pcs, err)
		}
		if len(calls) != 1 || len(calls[0].Attempts) != 1 || calls[0].Attempts[0].Status != 500 {
			t.Errorf("calls %+v", calls)
		}
	})
	t.Run("GUID 404 is empty", func(t *testing.T) {
		g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, 404, map[string]any{"error": map[string]any{"code": "ResourceNotFound", "message": "no"}})
		})
		pcs, calls, err := g.client(t, &staticCred{token: testToken}, ClientOptions{}).Resolve(context.Background(), testCloudPC)
		if err != nil || pcs == nil || len(pcs) != 0 || len(g.requests()) != 1 {
			t.Errorf("pcs %#v, err %v, requests %d", pcs, err, len(g.requests()))
		}
		// The 404 is still audited.
		if len(calls) != 1 || len(calls[0].Attempts) != 1 || calls[0].Attempts[0].Status != 404 || calls[0].Attempts[0].RequestID != "server-request-1" {
			t.Errorf("calls %+v", calls)
		}
	})
	t.Run("name lookup error stops", func(t *testing.T) {
		g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, 403, map[string]any{"error": map[string]any{"code": "Forbidden", "message": "no role"}})
		})
		pcs, calls, err := g.client(t, &staticCred{token: testToken}, ClientOptions{}).Resolve(context.Background(), "CPC-x")
		if len(calls) != 1 || len(calls[0].Attempts) != 1 || calls[0].Attempts[0].Status != 403 {
			t.Errorf("calls %+v", calls)
		}
		if ge := classify(err, "GET"); ge.Kind != approvals.GraphSignInAgain || ge.Cause != approvals.CauseForbidden || pcs != nil || len(g.requests()) != 1 {
			t.Errorf("pcs %v, err %v, requests %d", pcs, err, len(g.requests()))
		}
	})
	t.Run("context done sends nothing", func(t *testing.T) {
		g := newFakeGraph(t, noContent)
		c := g.client(t, &staticCred{token: testToken}, ClientOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for _, target := range []string{testCloudPC, "a@contoso.example", "CPC-x"} {
			if _, calls, err := c.Resolve(ctx, target); !errors.Is(err, context.Canceled) || calls != nil {
				t.Errorf("%q: %v, calls %+v", target, err, calls)
			}
		}
		if _, _, err := c.RemoteActionResults(ctx, testCloudPC); !errors.Is(err, context.Canceled) {
			t.Errorf("RemoteActionResults: %v", err)
		}
		if n := len(g.requests()); n != 0 {
			t.Errorf("%d requests", n)
		}
	})
}
