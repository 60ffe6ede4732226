package approvals_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

func TestValidTargets(t *testing.T) {
	for s, want := range map[string]bool{
		"CPC-alice-8X2K1":        true,
		"cpc.alice_01":           true,
		"A":                      true,
		strings.Repeat("9", 63):  true,
		strings.Repeat("9", 64):  false,
		"-CPC":                   false,
		"CPC alice":              false,
		"CPC/../x":               false,
		"CPC'x":                  false,
		"CPC%2Fx":                false,
		"":                       false,
		"alice@contoso.com":      false,
		"CPC-alice\n":            false,
		"CPC-alice-8X2K1?$top=1": false,
	} {
		if got := approvals.ValidDeviceName(s); got != want {
			t.Errorf("ValidDeviceName(%q) = %v, want %v", s, got, want)
		}
	}
	for s, want := range map[string]bool{
		"alice@contoso.com":                      true,
		"Alice.O'Brien@Contoso.com":              true,
		"john_doe@contoso.co.uk":                 true,
		"a+b@x-y.example":                        true,
		"alice@":                                 false,
		"@contoso.com":                           false,
		"alice@contoso":                          false,
		"alice@contoso..com":                     false,
		"alice@-contoso.com":                     false,
		"al ice@contoso.com":                     false,
		"alice%40x@contoso.com":                  false,
		"alice/x@contoso.com":                    false,
		`al"ice@contoso.com`:                     false,
		"alice#@contoso.com":                     false,
		strings.Repeat("a", 65) + "@x.com":       false,
		"a@" + strings.Repeat("b", 106) + ".com": false, // 113+ characters
	} {
		if got := approvals.ValidUPN(s); got != want {
			t.Errorf("ValidUPN(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestGraphErrorFacts(t *testing.T) {
	inner := context.DeadlineExceeded
	ge := &approvals.GraphError{Kind: approvals.GraphOutcomeUnknown, Cause: approvals.CauseNoAnswer, Method: "POST",
		Status: 504, Code: "GatewayTimeout", RequestID: "rid-1", Claims: "secret-claims", Err: inner}
	msg := ge.Error()
	for _, want := range []string{"outcome_unknown", "no_answer", "HTTP 504", "GatewayTimeout", "request-id rid-1", inner.Error()} {
		if !strings.Contains(msg, want) {
			t.Errorf("Error() = %q, does not contain %q", msg, want)
		}
	}
	if strings.Contains(msg, "secret-claims") {
		t.Errorf("Error() = %q shows the claims", msg)
	}
	if !errors.Is(ge, context.DeadlineExceeded) {
		t.Error("GraphError does not unwrap to its cause")
	}
	if got := (&approvals.GraphError{Kind: approvals.GraphFailed}).Error(); got != "graph failed" {
		t.Errorf("bare Error() = %q", got)
	}
	// Claims never go to the store.
	enc, err := approvals.EncodeOutcome(&approvals.Outcome{Kind: approvals.OutcomeGraph, Graph: ge})
	if err != nil || strings.Contains(enc, "secret-claims") || !strings.Contains(enc, `"request_id":"rid-1"`) {
		t.Errorf("EncodeOutcome = %s, %v", enc, err)
	}
}

func TestOutcomeEncoding(t *testing.T) {
	if s, err := approvals.EncodeOutcome(nil); s != "" || err != nil {
		t.Errorf("EncodeOutcome(nil) = %q, %v", s, err)
	}
	if o := approvals.DecodeOutcome(""); o != nil {
		t.Errorf("DecodeOutcome(\"\") = %+v", o)
	}
	want := &approvals.Outcome{Kind: approvals.OutcomeStatusNotAllowed, Status: "inGracePeriod", Allowed: []string{"provisioned"}}
	s, _ := approvals.EncodeOutcome(want)
	if got := approvals.DecodeOutcome(s); got.Kind != want.Kind || got.Status != want.Status || len(got.Allowed) != 1 {
		t.Errorf("round trip: %+v", got)
	}
	// Older versions stored sentences: kept as text, and saved again as
	// they were.
	for _, old := range []string{"Graph said no.", "{not json", `{"kind":""}`} {
		got := approvals.DecodeOutcome(old)
		if got.Kind != "" || got.Text != old {
			t.Errorf("DecodeOutcome(%q) = %+v, want it kept as text", old, got)
		}
		if again, err := approvals.EncodeOutcome(got); again != old || err != nil {
			t.Errorf("EncodeOutcome(%+v) = %q, %v; want %q back", got, again, err, old)
		}
	}
}

func TestRefusalError(t *testing.T) {
	r := &approvals.Refusal{Kind: approvals.RefusedOpenElsewhere, Action: approvals.ActionRequest, Users: []string{"U0A1", "U0A2"},
		Channels: []string{"C0OPS"}, Request: &approvals.Request{ID: "R-222222", State: approvals.StatePending},
		Other: &approvals.Request{ID: "R-333333"}}
	msg := r.Error()
	for _, want := range []string{"open_elsewhere", "(request)", "U0A1, U0A2", "C0OPS", "R-222222 is pending", "held by R-333333"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Error() = %q, does not contain %q", msg, want)
		}
	}
}

func TestLastRequestID(t *testing.T) {
	if id := (approvals.GraphCall{}).LastRequestID(); id != "" {
		t.Errorf("no attempts: %q", id)
	}
	c := approvals.GraphCall{Attempts: []approvals.GraphAttempt{{RequestID: "a"}, {RequestID: "b"}}}
	if id := c.LastRequestID(); id != "b" {
		t.Errorf("LastRequestID = %q", id)
	}
}
