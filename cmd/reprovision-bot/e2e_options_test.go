package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// Issue 11, part 1: the reprovision options (--os, --account, or the reason
// form's selects) reach Graph's POST exactly, are shown wherever people see
// what will be done, and are audited with the request; bad options are
// refused before anything is recorded.

// optionsPOST waits for the one reprovision call and returns it.
func (h *harness) optionsPOST() fakes.GraphRequest {
	h.t.Helper()
	h.waitDM(requesterID, "Reprovision started")
	posts := h.reprovisionPOSTs()
	if len(posts) != 1 {
		h.t.Fatalf("Graph saw %d reprovision calls, want exactly 1\n%s", len(posts), h.graph.Dump())
	}
	if posts[0].Status != 204 {
		h.t.Errorf("the reprovision call was answered %d, want 204", posts[0].Status)
	}
	return posts[0]
}

// checkOptionsBody checks that post carried exactly want as a JSON body,
// byte for byte, as application/json.
func checkOptionsBody(t *testing.T, post fakes.GraphRequest, want string) {
	t.Helper()
	if post.Body != want {
		t.Errorf("POST body %q, want exactly %q", post.Body, want)
	}
	if post.ContentType != "application/json" {
		t.Errorf("POST Content-Type %q, want application/json", post.ContentType)
	}
	var params map[string]any
	if err := json.Unmarshal([]byte(post.Body), &params); err != nil {
		t.Errorf("POST body is not JSON: %v", err)
	}
}

// checkRequestedAudit checks the options on the audit record of request r
// ("" for an option not given).
func (h *harness) checkRequestedAudit(r, os, account string) {
	h.t.Helper()
	a := h.waitAudit(r, "requested", nil)
	if got, ok := a.Details["os_version"]; got != os || ok != (os != "") {
		h.t.Errorf("requested record os_version %q (present %v), want %q: %+v", got, ok, os, a.Details)
	}
	if got, ok := a.Details["user_account_type"]; got != account || ok != (account != "") {
		h.t.Errorf("requested record user_account_type %q (present %v), want %q: %+v", got, ok, account, a.Details)
	}
}

func TestOptionsReachThePOSTExactlyAndAreShown(t *testing.T) {
	onBothStores(t, func(t *testing.T, h *harness) {
		const shown = "Windows 11, standard user"
		h.start()
		ack := ackText(t, h.request(requesterID, cloudPCID+" --os windows11 --account standard "+reason))
		if !strings.Contains(ack, "R-") || !strings.Contains(ack, shown) {
			t.Errorf("the ack %q does not say the request with %q", ack, shown)
		}
		prompt := h.prompt()
		r := ref(t, prompt)
		pb := blocks(prompt)
		for _, want := range []string{"*Reprovision with*\\n" + shown, "will be wiped and reprovisioned with " + shown, reason} {
			if !strings.Contains(pb, want) {
				t.Errorf("the prompt lacks %q: %s", want, pb)
			}
		}
		if strings.Contains(pb, "--os") || strings.Contains(pb, "windows11") {
			t.Errorf("the options reached the reason or show raw: %s", pb)
		}
		h.checkRequestedAudit(r, "windows11", "standardUser")

		h.click(approverID, "approve", prompt)
		h.signIn(approverUPN)
		confirmation := h.confirm(prompt, "confirm")
		if want := "Reprovision " + deviceName + " of " + userUPN + " now with " + shown + "?"; !strings.Contains(confirmation.Text, want) {
			t.Errorf("the final confirmation %q lacks %q", confirmation.Text, want)
		}
		post := h.optionsPOST()
		checkOptionsBody(t, post, `{"osVersion":"windows11","userAccountType":"standardUser"}`)

		// The outcome, for the requester and on the prompt, still says it.
		h.waitDM(requesterID, "with "+shown)
		h.waitDM(approverID, "Confirmed: reprovisioning "+deviceName+" of "+userUPN+" with "+shown)
		h.waitPrompt(prompt.TS, "Reprovision started")
		if !strings.Contains(blocks(h.promptNow(prompt.TS)), shown) {
			t.Error("the final prompt no longer shows the options")
		}
		h.waitAudit(r, "succeeded", nil)
	})
}

func TestNoOptionsNoBody(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	ack := ackText(t, h.request(requesterID, cloudPCID+" "+reason))
	prompt := h.prompt()
	h.checkRequestedAudit(ref(t, prompt), "", "")
	h.approveWithSignIn(prompt)
	post := h.optionsPOST()
	if post.Body != "" || post.ContentType != "" {
		t.Errorf("a request without options sent body %q with Content-Type %q; want none", post.Body, post.ContentType)
	}
	for where, text := range map[string]string{
		"ack": ack, "prompt": blocks(h.promptNow(prompt.TS)),
		"requester's DMs": strings.Join(h.dmsTo(requesterID), "\n"), "approver's DMs": strings.Join(h.dmsTo(approverID), "\n"),
	} {
		for _, bad := range []string{"Windows 1", "standard user", "administrator", "Reprovision with"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s mentions %q without options: %s", where, bad, text)
			}
		}
	}
}

func TestBadOptionsAreRefusedAndNothingHappens(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	bad := map[string]string{
		cloudPCID + " --os windows95 " + reason:                  "`--os` takes `windows10` or `windows11`",
		cloudPCID + " --color red " + reason:                     "Unknown option",
		cloudPCID + " --os windows11 --os windows10 " + reason:   "`--os` is given twice",
		cloudPCID + " --os":                                      "`--os` needs a value",
		cloudPCID + " --os --account standard " + reason:         "`--os` needs a value",
		cloudPCID + " --account=root " + reason:                  "`--account` takes",
		cloudPCID + " " + reason + " --os windows11":             "before the reason",
		"--os windows11 " + cloudPCID + " " + reason:             "Name the Cloud PC first",
		cloudPCID + " --account admin --account=admin " + reason: "`--account` is given twice",
	}
	for text, want := range bad {
		got := ackText(t, h.request(requesterID, text))
		if !strings.Contains(got, want) || !strings.Contains(got, "*Usage:*") || !strings.Contains(got, "[--os windows10|windows11]") || strings.Contains(got, "R-") {
			t.Errorf("%q: ack %q is not a refusal saying %q with the usage", text, got, want)
		}
		for _, typed := range []string{"windows95", "color", "red", "root"} {
			if strings.Contains(text, typed) && strings.Contains(got, typed) {
				t.Errorf("%q: the refusal %q repeats %q", text, got, typed)
			}
		}
	}
	h.slack.WaitFor(t, wait, "every refusal is audited", func() bool {
		return len(eventsOf(h.auditTrail(), "", "refused_request")) == len(bad)
	})
	if n := len(eventsOf(h.auditTrail(), "", "requested")); n != 0 {
		t.Errorf("%d requests recorded", n)
	}
	for _, a := range h.auditTrail() {
		if a.Kind == "requested" {
			t.Errorf("a request was recorded: %+v", a)
		}
	}
	if calls := h.slack.Calls("chat.postMessage"); len(calls) != 0 {
		t.Errorf("bad options led to %d messages, e.g. %v", len(calls), calls[0].Params)
	}
	if n := len(h.slack.Calls("views.open")); n != 0 {
		t.Errorf("bad options opened %d forms", n)
	}
	if len(h.graph.Requests()) != 0 || len(h.entra.DeviceCodes()) != 0 {
		t.Error("bad options reached Entra or Graph")
	}
	// Nothing is open for the Cloud PC: a good request for it is taken.
	prompt := h.ask(cloudPCID + " --os windows10 " + reason)
	if !strings.Contains(blocks(prompt), "*Reprovision with*\\nWindows 10") {
		t.Errorf("the prompt lacks Windows 10: %s", blocks(prompt))
	}
}

// The reason form (opened when the command has no reason) offers the
// options as selects, preselected from the command; what is chosen there
// is what is sent.
func TestOptionsThroughTheReasonForm(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	env := h.slack.SendSlashCommand(t, fakes.SlashCommand{UserID: requesterID, ChannelID: channelID, Command: "/reprovision",
		Text: cloudPCID + " --os windows11"})
	h.slack.WaitAck(t, env, wait)
	view := h.slack.WaitView(t, requesterID, "reprovision_reason", wait)
	vb := viewBlocks(view)
	for _, want := range []string{`"block_id":"os"`, `"block_id":"account"`, `"type":"static_select"`, `"initial_option":{"text":{"emoji":false,"text":"Windows 11","type":"plain_text"},"value":"windows11"}`} {
		if !strings.Contains(vb, want) {
			t.Errorf("the reason form lacks %s: %s", want, vb)
		}
	}
	if strings.Count(vb, `"initial_option"`) != 1 {
		t.Errorf("the reason form preselects more than the typed --os: %s", vb)
	}

	// A bad reason keeps the form open; the choices are not lost with it.
	empty := h.slack.SendViewSubmission(t, fakes.ViewSubmission{UserID: requesterID, ViewID: view.ID,
		Values:   map[string]map[string]string{"reason": {"reason_input": "  "}},
		Selected: map[string]map[string]string{"account": {"account_select": "administrator"}}})
	if a := h.slack.WaitAck(t, empty, wait); !strings.Contains(string(a.Payload), `"response_action":"errors"`) {
		t.Fatalf("ack to an empty reason %s, want errors", a.Payload)
	}

	ok := h.slack.SendViewSubmission(t, fakes.ViewSubmission{UserID: requesterID, ViewID: view.ID,
		Values:   map[string]map[string]string{"reason": {"reason_input": reason}},
		Selected: map[string]map[string]string{"account": {"account_select": "administrator"}}})
	if a := h.slack.WaitAck(t, ok, wait); a.Payload != nil {
		t.Fatalf("ack to a good form %s, want an empty ack", a.Payload)
	}
	const shown = "Windows 11, local administrator"
	receipt := h.ephemeralWith(requesterID, "Request R-")
	if !strings.Contains(receipt.Text, shown) {
		t.Errorf("the receipt %q lacks %q", receipt.Text, shown)
	}
	prompt := h.prompt()
	if !strings.Contains(blocks(prompt), "*Reprovision with*\\n"+shown) {
		t.Errorf("the prompt lacks %q: %s", shown, blocks(prompt))
	}
	h.checkRequestedAudit(ref(t, prompt), "windows11", "administrator")
	h.approveWithSignIn(prompt)
	checkOptionsBody(t, h.optionsPOST(), `{"osVersion":"windows11","userAccountType":"administrator"}`)
}

// "As provisioned" in the form takes back an option typed with the command.
func TestReasonFormCanTakeAnOptionBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	env := h.slack.SendSlashCommand(t, fakes.SlashCommand{UserID: requesterID, ChannelID: channelID, Command: "/reprovision",
		Text: cloudPCID + " --account=admin"})
	h.slack.WaitAck(t, env, wait)
	view := h.slack.WaitView(t, requesterID, "reprovision_reason", wait)
	sub := h.slack.SendViewSubmission(t, fakes.ViewSubmission{UserID: requesterID, ViewID: view.ID,
		Values:   map[string]map[string]string{"reason": {"reason_input": reason}},
		Selected: map[string]map[string]string{"account": {"account_select": "as_provisioned"}, "os": {"os_select": "windows10"}}})
	h.slack.WaitAck(t, sub, wait)
	prompt := h.prompt()
	if pb := blocks(prompt); !strings.Contains(pb, "*Reprovision with*\\nWindows 10") || strings.Contains(pb, "administrator") {
		t.Errorf("the prompt does not show Windows 10 alone: %s", pb)
	}
	h.checkRequestedAudit(ref(t, prompt), "windows10", "")
	h.approveWithSignIn(prompt)
	checkOptionsBody(t, h.optionsPOST(), `{"osVersion":"windows10"}`)
}

// The options are stored with the request: approved after a restart, the
// call still carries them.
func TestOptionsSurviveARestart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	prompt := h.ask(cloudPCID + " --os=windows10 " + reason)
	if _, err := h.stop(); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.approveWithSignIn(prompt)
	checkOptionsBody(t, h.optionsPOST(), `{"osVersion":"windows10"}`)
}
