package graph

// Fuzz targets for the URLs and OData filters the client builds from a
// requester's target. Seeds are below and in testdata/fuzz/<FuzzName>/;
// `go test` runs the seeds, `.ci/run` fuzzes each target for a few seconds:
//
//	go test -run '^$' -fuzz '^FuzzFindCloudPCsURL$' -fuzztime 45s ./graph/
//
// The client under test is the real one (pipeline, bearer policy, retries
// off) with a Transporter that records each request and answers it without
// any network: what it sees is the URL that would go to Graph.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// fuzzBases are Graph base URLs as configured (a trailing slash is fine),
// with the host and collection path their requests must keep.
var fuzzBases = []struct{ base, host, collection string }{
	{"https://graph.microsoft.com/beta", "graph.microsoft.com", "/beta/deviceManagement/virtualEndpoint/cloudPCs"},
	{"https://graph.microsoft.com/v1.0/", "graph.microsoft.com", "/v1.0/deviceManagement/virtualEndpoint/cloudPCs"},
	{"https://graph.test:8443/beta", "graph.test:8443", "/beta/deviceManagement/virtualEndpoint/cloudPCs"},
}

// recordingClient is a Client on fuzzBases[pick] whose transport records
// every request and answers it: 204 to a POST, an empty list to a list, an
// empty object (the Cloud PC asked for) to anything else.
func recordingClient(t *testing.T, pick uint8) (c *Client, cred *staticCred, sent *[]*http.Request, host, collection string) {
	t.Helper()
	b := fuzzBases[int(pick)%len(fuzzBases)]
	var reqs []*http.Request
	tr := transporterFunc(func(r *http.Request) (*http.Response, error) {
		reqs = append(reqs, r)
		resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Request: r}
		switch {
		case r.Method == http.MethodPost:
			resp.StatusCode, resp.Body = http.StatusNoContent, http.NoBody
		case r.URL.Path == b.collection || strings.HasSuffix(r.URL.Path, "/retrieveCloudPcRemoteActionResults"):
			resp.Body = io.NopCloser(strings.NewReader(`{"value":[]}`))
		default:
			resp.Body = io.NopCloser(strings.NewReader(`{}`))
		}
		return resp, nil
	})
	cred = &staticCred{token: testToken}
	c, err := NewClient(cred, ClientOptions{BaseURL: b.base, Transport: tr, MaxRetries: -1, RetryDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	return c, cred, &reqs, b.host, b.collection
}

// checkURL checks what every request to Graph must be: an absolute https
// URL on the configured host, that prints and parses back to itself, with
// no user info or fragment, whose path is path exactly (nothing in it
// escaped: no value reaches the path but a GUID).
func checkURL(t *testing.T, input string, r *http.Request, host, path string) url.Values {
	t.Helper()
	u := r.URL
	if u.Scheme != "https" || u.Host != host || u.User != nil || u.Fragment != "" || u.Opaque != "" || u.RawFragment != "" {
		t.Fatalf("%q: request to %s", input, u)
	}
	if u.Path != path || u.EscapedPath() != path || (u.RawPath != "" && u.RawPath != path) {
		t.Fatalf("%q: path %q (escaped %q), want %q", input, u.Path, u.EscapedPath(), path)
	}
	again, err := url.Parse(u.String())
	if err != nil || again.String() != u.String() || again.Host != host || again.EscapedPath() != path || again.RawQuery != u.RawQuery {
		t.Fatalf("%q: URL %s does not parse back (%v, %v)", input, u, again, err)
	}
	if strings.ContainsAny(u.RawQuery, " +'\"#<>\\") {
		t.Fatalf("%q: raw query %q has characters that must be escaped", input, u.RawQuery)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		t.Fatalf("%q: query %q: %v", input, u.RawQuery, err)
	}
	return q
}

// checkFilterQuery checks a list query: exactly $filter and $select, the
// filter reading `field eq '<value, quotes doubled>'`.
func checkFilterQuery(t *testing.T, input string, q url.Values, field Field, value string) {
	t.Helper()
	want := string(field) + " eq '" + strings.ReplaceAll(value, "'", "''") + "'"
	if len(q) != 2 || len(q["$filter"]) != 1 || q.Get("$filter") != want || len(q["$select"]) != 1 || q.Get("$select") != cloudPCSelect {
		t.Fatalf("%q: query %v, want $filter %q", input, q, want)
	}
}

// validLookup is the rule FindCloudPCs must apply, restated from the
// approvals patterns.
func validLookup(by Field, value string) bool {
	switch by {
	case ByManagedDeviceName, ByDisplayName:
		return approvals.ValidDeviceName(value)
	case ByUserPrincipalName:
		return approvals.ValidUPN(value)
	}
	return false
}

func FuzzFindCloudPCsURL(f *testing.F) {
	for _, s := range []struct {
		by    Field
		value string
	}{
		{ByManagedDeviceName, "CPC-alice-X1"},
		{ByDisplayName, "CPC.alice_01"},
		{ByUserPrincipalName, "alice@contoso.example"},
		{ByUserPrincipalName, "o'brien+tag@contoso.example"},
		{ByUserPrincipalName, "d'a'x@contoso.example"},
		{ByUserPrincipalName, "a''b@contoso.example"},
		{ByUserPrincipalName, "'alice@contoso.example"},
		{ByManagedDeviceName, "x' or displayName eq 'y"},
		{ByManagedDeviceName, "CPC&$filter=id eq 'x'"},
		{ByManagedDeviceName, "a/../b"},
		{ByManagedDeviceName, "a%2Fb"},
		{ByManagedDeviceName, "a#frag"},
		{ByManagedDeviceName, "a?b=c"},
		{ByManagedDeviceName, "CPC\n"},
		{ByManagedDeviceName, "ÄPC"},
		{ByManagedDeviceName, strings.Repeat("a", 63)},
		{ByManagedDeviceName, strings.Repeat("a", 64)},
		{ByUserPrincipalName, strings.Repeat("a", 64) + "@contoso.example"},
		{ByManagedDeviceName, testCloudPC},
		{ByManagedDeviceName, " " + testCloudPC + " "},
		{Field("id"), "x"},
		{Field(""), "CPC"},
		{Field("displayname"), "CPC"},
		{Field("displayName eq 'x' or managedDeviceName"), "CPC"},
	} {
		f.Add(string(s.by), s.value, uint8(0))
	}
	f.Add(string(ByUserPrincipalName), "o'brien@contoso.example", uint8(1))
	f.Add(string(ByDisplayName), "CPC-1", uint8(2))
	f.Fuzz(func(t *testing.T, field, value string, base uint8) {
		by := Field(field)
		valid := validLookup(by, value)
		if by.valid(value) != valid {
			t.Fatalf("Field(%q).valid(%q) = %v", field, value, !valid)
		}
		c, cred, sent, host, collection := recordingClient(t, base)
		pcs, call, err := c.FindCloudPCs(context.Background(), by, value)
		if !valid {
			if !errors.Is(err, ErrInvalidTarget) || len(*sent) != 0 || len(cred.requests()) != 0 || len(call.Attempts) != 0 || pcs != nil {
				t.Fatalf("FindCloudPCs(%q, %q): err %v, %d requests, %d tokens", field, value, err, len(*sent), len(cred.requests()))
			}
		} else {
			if err != nil || len(*sent) != 1 || pcs == nil || len(pcs) != 0 || call.Path != collection {
				t.Fatalf("FindCloudPCs(%q, %q): err %v, %d requests, call %+v", field, value, err, len(*sent), call)
			}
			r := (*sent)[0]
			if r.Method != http.MethodGet {
				t.Fatalf("%q: method %s", value, r.Method)
			}
			checkFilterQuery(t, value, checkURL(t, value, r, host, collection), by, value)
		}

		// Resolve reaches the same URLs from a requester's target.
		c, cred, sent, host, collection = recordingClient(t, base)
		_, calls, err := c.Resolve(context.Background(), value)
		target := strings.TrimSpace(value)
		var wantFields []Field
		switch {
		case approvals.ValidCloudPCID(target):
		case strings.Contains(target, "@"):
			if approvals.ValidUPN(target) {
				wantFields = []Field{ByUserPrincipalName}
			}
		case approvals.ValidDeviceName(target):
			wantFields = []Field{ByManagedDeviceName, ByDisplayName} // the first list is empty
		}
		if approvals.ValidCloudPCID(target) {
			if err != nil || len(*sent) != 1 || len(calls) != 1 {
				t.Fatalf("Resolve(%q): err %v, %d requests", value, err, len(*sent))
			}
			q := checkURL(t, value, (*sent)[0], host, collection+"/"+target)
			if len(q) != 1 || q.Get("$select") != cloudPCSelect {
				t.Fatalf("Resolve(%q): query %v", value, q)
			}
			return
		}
		if wantFields == nil {
			if !errors.Is(err, ErrInvalidTarget) || len(*sent) != 0 || len(cred.requests()) != 0 || calls != nil {
				t.Fatalf("Resolve(%q): err %v, %d requests, %d tokens", value, err, len(*sent), len(cred.requests()))
			}
			return
		}
		if err != nil || len(*sent) != len(wantFields) || len(calls) != len(wantFields) {
			t.Fatalf("Resolve(%q): err %v, %d requests, want %d", value, err, len(*sent), len(wantFields))
		}
		for i, r := range *sent {
			checkFilterQuery(t, value, checkURL(t, value, r, host, collection), wantFields[i], target)
		}
	})
}

func FuzzCloudPCURL(f *testing.F) {
	for _, s := range []string{
		testCloudPC,
		strings.ToUpper(testCloudPC),
		"00000000-0000-0000-0000-000000000000",
		"{" + testCloudPC + "}",
		testCloudPC + "/reprovision",
		testCloudPC + "?x=1",
		testCloudPC + "#x",
		testCloudPC + "\n",
		" " + testCloudPC,
		"../" + testCloudPC[3:],
		"ac74ae8b%2D85f7-4272-88cc-5419267403ed",
		"ac74ae8b-85f7-4272-88cc-5419267403eg",
		"ac74ae8b85f7427288cc5419267403ed",
		"..",
		"",
	} {
		f.Add(s, uint8(0))
	}
	f.Add(testCloudPC, uint8(1))
	f.Add(testCloudPC, uint8(2))
	f.Fuzz(func(t *testing.T, id string, base uint8) {
		valid := approvals.ValidCloudPCID(id)
		if IsGUID(id) != valid {
			t.Fatalf("IsGUID(%q) = %v", id, !valid)
		}
		for _, op := range []struct {
			name, method, suffix string
			query                bool
			do                   func(*Client) (Call, error)
		}{
			{"GetCloudPC", http.MethodGet, "", true, func(c *Client) (Call, error) {
				_, call, err := c.GetCloudPC(context.Background(), id)
				return call, err
			}},
			{"Reprovision", http.MethodPost, "/reprovision", false, func(c *Client) (Call, error) {
				return c.Reprovision(context.Background(), id, approvals.Options{})
			}},
			{"RemoteActionResults", http.MethodGet, "/retrieveCloudPcRemoteActionResults", false, func(c *Client) (Call, error) {
				_, call, err := c.RemoteActionResults(context.Background(), id)
				return call, err
			}},
		} {
			c, cred, sent, host, collection := recordingClient(t, base)
			call, err := op.do(c)
			if !valid {
				if !errors.Is(err, ErrInvalidCloudPCID) || len(*sent) != 0 || len(cred.requests()) != 0 || len(call.Attempts) != 0 {
					t.Fatalf("%s(%q): err %v, %d requests, %d tokens", op.name, id, err, len(*sent), len(cred.requests()))
				}
				continue
			}
			path := collection + "/" + id + op.suffix
			if err != nil || len(*sent) != 1 || call.Path != path || call.Method != op.method {
				t.Fatalf("%s(%q): err %v, %d requests, call %+v", op.name, id, err, len(*sent), call)
			}
			r := (*sent)[0]
			if r.Method != op.method {
				t.Fatalf("%s(%q): method %s", op.name, id, r.Method)
			}
			q := checkURL(t, id, r, host, path)
			if op.query && (len(q) != 1 || q.Get("$select") != cloudPCSelect) || !op.query && len(q) != 0 {
				t.Fatalf("%s(%q): query %v", op.name, id, q)
			}
		}
	})
}

// readODataString reads one OData string literal ('…', a quote inside
// doubled) at the start of s: its value and the rest of s after it.
func readODataString(s string) (value, rest string, ok bool) {
	if !strings.HasPrefix(s, "'") {
		return "", "", false
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		if s[i] != '\'' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\'' {
			b.WriteByte('\'')
			i++
			continue
		}
		return b.String(), s[i+1:], true
	}
	return "", "", false
}

func FuzzODataFilter(f *testing.F) {
	for _, s := range []string{
		"CPC-1",
		"o'brien@contoso.example",
		"'",
		"''",
		"x' or displayName eq 'y",
		"a b+c&d=e;f#g?h/i\\j%41%zz",
		"ümlaut \u202e\u200b",
		"\x00\xff",
		"",
	} {
		f.Add(string(ByDisplayName), s)
	}
	f.Add(string(ByUserPrincipalName), "d'a'x@contoso.example")
	f.Add("displayName eq 'x' or id", "y")
	f.Fuzz(func(t *testing.T, field, value string) {
		// The literal is exactly one OData string holding value.
		lit := odataString(value)
		got, rest, ok := readODataString(lit)
		if !ok || rest != "" || got != value {
			t.Fatalf("odataString(%q) = %q reads as %q, rest %q", value, lit, got, rest)
		}
		// The escaped query value is plain (unreserved characters and %XX,
		// no '+') and decodes back.
		for _, s := range []string{value, field} {
			esc := queryEscape(s)
			if dec, err := url.QueryUnescape(esc); err != nil || dec != s {
				t.Fatalf("queryEscape(%q) = %q decodes to %q, %v", s, esc, dec, err)
			}
			if dec, err := url.PathUnescape(esc); err != nil || dec != s {
				t.Fatalf("queryEscape(%q) = %q path-decodes to %q, %v", s, esc, dec, err)
			}
			if strings.Trim(esc, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~%") != "" {
				t.Fatalf("queryEscape(%q) = %q", s, esc)
			}
		}
		// The query FindCloudPCs builds gives back the filter.
		filter := field + " eq " + lit
		raw := "$filter=" + queryEscape(filter) + "&$select=" + cloudPCSelect
		q, err := url.ParseQuery(raw)
		if err != nil || len(q) != 2 || len(q["$filter"]) != 1 || q.Get("$filter") != filter || q.Get("$select") != cloudPCSelect {
			t.Fatalf("query %q: %v, %v", raw, q, err)
		}
		u, err := url.Parse(fuzzBases[0].base + "/deviceManagement/virtualEndpoint/cloudPCs?" + raw)
		if err != nil || u.EscapedPath() != fuzzBases[0].collection || u.Query().Get("$filter") != filter {
			t.Fatalf("URL with %q: %v, %v", raw, u, err)
		}
		// For a value the Field accepts, the filter is field, eq, and the
		// value, nothing more.
		if Field(field).valid(value) {
			got, rest, ok := readODataString(strings.TrimPrefix(q.Get("$filter"), field+" eq "))
			if !ok || rest != "" || got != value {
				t.Fatalf("filter %q: value %q, rest %q", q.Get("$filter"), got, rest)
			}
		}
	})
}
