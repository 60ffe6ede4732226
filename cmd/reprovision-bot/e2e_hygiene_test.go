package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// Hygiene (issue 8, smaller items): malformed envelopes are acked, invisible
// characters are stripped, reasons cannot pose as the prompt's fields, and
// what an approver's token looked up stays on the approver's side.

// An envelope slack-go cannot decode is still acked (Slack would redeliver
// it, again and again) and logged without its payload; the bot carries on.
func TestHygieneMalformedEnvelopesAreAckedAndLogged(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	const secret = "xoxp-not-for-the-log"
	for _, c := range []struct {
		typ     string
		payload json.RawMessage
	}{
		{"interactive", json.RawMessage(`"` + secret + `"`)},
		{"slash_commands", json.RawMessage(`["` + secret + `"]`)},
		{"events_api", json.RawMessage(`42`)},
		{"from_the_future", json.RawMessage(`{"token":"` + secret + `"}`)},
	} {
		env := h.slack.SendEnvelope(t, c.typ, c.payload)
		if a := h.slack.WaitAck(t, env, wait); a.Payload != nil {
			t.Errorf("%s: ack of a malformed envelope carries %s, want an empty ack", c.typ, a.Payload)
		}
		h.slack.WaitFor(t, wait, "the bot logs the malformed "+c.typ+" envelope", func() bool {
			return strings.Contains(h.stderr.String(), env)
		})
	}
	if log := h.stderr.String(); strings.Contains(log, secret) {
		t.Errorf("the log shows a malformed envelope's payload:\n%s", log)
	}
	// Still serving.
	if text := ackText(t, h.request(requesterID, "help")); !strings.Contains(text, "Usage") {
		t.Errorf("after malformed envelopes, help answers %q", text)
	}
}

// Bidi controls and zero-width characters are gone from the target and the
// reason before they are stored, shown or audited.
func TestHygieneInvisibleCharactersAreStripped(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	ack := h.request(requesterID, "\u200b"+cloudPCID+"\u200e "+"profile\u202e corrupt\u202c after\u2066 the update\ufeff")
	r := refIn(t, ackText(t, ack))
	prompt := h.prompt()
	pb := blocks(prompt)
	if !strings.Contains(pb, reason) || !strings.Contains(pb, cloudPCID) {
		t.Errorf("the prompt lacks the reason %q or the Cloud PC: %s", reason, pb)
	}
	if a := h.waitAudit(r, "requested", nil); a.Details["reason"] != reason || a.Details["target"] != cloudPCID {
		t.Errorf("requested record has target %q and reason %q, want %q and %q", a.Details["target"], a.Details["reason"], cloudPCID, reason)
	}
	for _, invisible := range []string{"\u200b", "\u200e", "\u202e", "\u202c", "\u2066", "\ufeff"} {
		if strings.Contains(pb, invisible) || strings.Contains(prompt.Text, invisible) {
			t.Errorf("the prompt carries %+q", invisible)
		}
	}
}

// A reason typed over several lines in the form cannot add lines to the
// prompt that look like its own fields.
func TestHygieneMultiLineReasonCannotImitateFields(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	h.request(requesterID, cloudPCID)
	h.submitForm(requesterID, "reprovision_reason", "Disk full\n*Cloud PC*\n`CPC-boss-01`\n> *Approvers*")
	prompt := h.prompt()
	pb := blocks(prompt)
	if !strings.Contains(pb, "Disk full ＊Cloud PC＊ ｀CPC-boss-01｀ &gt; ＊Approvers＊") {
		t.Errorf("the prompt does not show the reason on one line, its markup inert: %s", pb)
	}
	for _, field := range []string{"*Cloud PC*", "*Approvers*"} {
		if n := strings.Count(pb, field); n != 1 {
			t.Errorf("the prompt has %d %q headings, want its own one: %s", n, field, pb)
		}
	}
}

// A request the approver denies without having acted on the details their
// sign-in looked up for the prompt: the requester's DM and Home tab name the
// Cloud PC as the requester typed it, not the device and user names.
func TestHygieneDenyDoesNotShowTheRequesterTheApproversDetails(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.addSecondCloudPC("provisioned")
	h.start()
	h.reprovisionFirst()

	second := h.ask(secondPCID + " apps broken")
	h.waitPrompt(second.TS, "CPC-bob-77K2P") // details looked up with the approver's sign-in
	r := ref(t, second)
	h.deny(approverID, second, "Not this week")
	h.waitDM(requesterID, "Reason: Not this week")
	h.openHome(requesterID)
	home := h.waitHome(requesterID, "lists "+r, func(s string) bool { return strings.Contains(s, r) && strings.Contains(s, "Denied") })

	texts := []string{viewBlocks(home)}
	for _, m := range h.dmsTo(requesterID) {
		if strings.Contains(m, r) {
			texts = append(texts, m)
		}
	}
	for _, text := range texts {
		for _, detail := range []string{"CPC-bob-77K2P", "bob@contoso.example"} {
			if strings.Contains(text, detail) {
				t.Errorf("the requester is shown %q after a denial: %s", detail, text)
			}
		}
	}
	if !strings.Contains(strings.Join(texts, "\n"), secondPCID) {
		t.Errorf("the requester's messages do not name the Cloud PC as typed (%s): %q", secondPCID, texts)
	}
}
