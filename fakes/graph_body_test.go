package fakes_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// postReprovision sends a reprovision with body (nil: none) and
// contentType ("" : no header) and returns the status and error code.
func postReprovision(t *testing.T, g *fakes.Graph, body *string, contentType string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = strings.NewReader(*body)
	}
	req, _ := http.NewRequest(http.MethodPost, g.URL()+"/deviceManagement/virtualEndpoint/cloudPCs/"+pcID+"/reprovision", r)
	req.Header.Set("Authorization", "Bearer tok")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := fakes.TLSClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.Error.Code
}

const pcID = "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"

func ptr(s string) *string { return &s }

// The reprovision action's parameters reach the fake as sent (body and
// Content-Type are recorded) and are read as Graph reads them.
func TestGraphReprovisionBody(t *testing.T) {
	t.Parallel()
	const jsonType = "application/json"
	for _, c := range []struct {
		name        string
		body        *string
		contentType string
		status      int
		code        string
	}{
		{"no body", nil, "", 204, ""},
		{"no body, JSON type", nil, jsonType, 204, ""},
		{"both options", ptr(`{"osVersion":"windows11","userAccountType":"standardUser"}`), jsonType, 204, ""},
		{"one option, charset", ptr(`{"osVersion":"windows10"}`), "application/json; charset=utf-8", 204, ""},
		{"empty object", ptr(`{}`), jsonType, 204, ""},
		{"administrator", ptr(` {"userAccountType":"administrator"} `), jsonType, 204, ""},
		{"no Content-Type", ptr(`{"osVersion":"windows11"}`), "", 415, "RequestBodyRead"},
		{"text/plain", ptr(`{"osVersion":"windows11"}`), "text/plain", 415, "RequestBodyRead"},
		{"form", ptr(`osVersion=windows11`), "application/x-www-form-urlencoded", 415, "RequestBodyRead"},
		{"not JSON", ptr(`{"osVersion":`), jsonType, 400, "BadRequest"},
		{"not an object", ptr(`["windows11"]`), jsonType, 400, "BadRequest"},
		{"null", ptr(`null`), jsonType, 400, "BadRequest"},
		{"two objects", ptr(`{} {}`), jsonType, 400, "BadRequest"},
		{"unknown property", ptr(`{"osVersion":"windows11","color":"red"}`), jsonType, 400, "BadRequest"},
		{"name in another case", ptr(`{"OSVersion":"windows11"}`), jsonType, 400, "BadRequest"},
		{"unknown value", ptr(`{"osVersion":"windows95"}`), jsonType, 400, "BadRequest"},
		{"PowerShell spelling", ptr(`{"userAccountType":"standard"}`), jsonType, 400, "BadRequest"},
		{"not a string", ptr(`{"osVersion":11}`), jsonType, 400, "BadRequest"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := fakes.NewGraph(t)
			g.AddCloudPC(fakes.CloudPC{ID: pcID, ManagedDeviceName: "CPC-a", Status: "provisioned"})
			g.QueueReprovision(pcID, fakes.GraphError(http.StatusConflict, "Conflict", "queued"))
			status, code := postReprovision(t, g, c.body, c.contentType)
			if c.status == 204 {
				// A readable body reaches the action: the queued answer.
				c.status, c.code = http.StatusConflict, "Conflict"
			}
			if status != c.status || code != c.code {
				t.Fatalf("%d %s, want %d %s", status, code, c.status, c.code)
			}
			reqs := g.Requests()
			want := ""
			if c.body != nil {
				want = *c.body
			}
			if len(reqs) != 1 || reqs[0].Body != want || reqs[0].ContentType != c.contentType {
				t.Errorf("recorded %+v, want body %q Content-Type %q", reqs, want, c.contentType)
			}
			if status == http.StatusConflict {
				return
			}
			// A refused body never reached the action: the Cloud PC is
			// untouched and the queued answer is still there.
			if pc, _ := g.CloudPC(pcID); pc.Status != "provisioned" {
				t.Errorf("status %q after a refused body", pc.Status)
			}
			if status, code := postReprovision(t, g, nil, ""); status != http.StatusConflict || code != "Conflict" {
				t.Errorf("next call: %d %s, want the queued 409", status, code)
			}
		})
	}
}
