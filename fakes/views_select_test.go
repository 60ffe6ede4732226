package fakes_test

import (
	"strings"
	"testing"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// selectModal has a required reason and two optional static selects, the
// second with an initial option.
func selectModal(initial *slack.OptionBlockObject, options ...*slack.OptionBlockObject) slack.ModalViewRequest {
	reason := slack.NewPlainTextInputBlockElement(nil, "reason_input")
	os := slack.NewOptionsSelectBlockElement(slack.OptTypeStatic, plainText("As provisioned"), "os_select",
		slack.NewOptionBlockObject("windows10", plainText("Windows 10"), nil),
		slack.NewOptionBlockObject("windows11", plainText("Windows 11"), nil))
	account := slack.NewOptionsSelectBlockElement(slack.OptTypeStatic, nil, "account_select", options...)
	account.InitialOption = initial
	return slack.ModalViewRequest{
		Type: slack.VTModal, CallbackID: "reprovision_reason", Title: plainText("Reprovision"), Submit: plainText("Ask"),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewInputBlock("reason", plainText("Reason"), nil, reason),
			slack.NewInputBlock("os", plainText("Windows version"), nil, os).WithOptional(true),
			slack.NewInputBlock("account", plainText("User account"), nil, account).WithOptional(true),
		}},
	}
}

var (
	optStandard = slack.NewOptionBlockObject("standardUser", plainText("Standard user"), nil)
	optAdmin    = slack.NewOptionBlockObject("administrator", plainText("Local administrator"), nil)
)

// A static select in a modal: Slack checks its options when the view is
// opened, lets the user choose only one of them, and sends the whole option
// chosen (the initial one if untouched, null if none) in state.values.
func TestSlackViewStaticSelect(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	c := startClient(t, s)
	c.next(t, socketmode.EventTypeConnected)

	opened := openModal(t, s, c, "U0ALICE", selectModal(optAdmin, optStandard, optAdmin))

	// Untouched: os has no choice, account its initial option.
	s.SendViewSubmission(t, fakes.ViewSubmission{UserID: "U0ALICE", ViewID: opened.View.ID,
		Values: map[string]map[string]string{"reason": {"reason_input": "why"}}})
	ev, cb := nextSubmission(t, c)
	if got := cb.View.State.Values["os"]["os_select"]; got.Type != "static_select" || got.SelectedOption.Value != "" {
		t.Errorf("untouched os = %+v", got)
	}
	if got := cb.View.State.Values["account"]["account_select"]; got.SelectedOption.Value != "administrator" || got.SelectedOption.Text.Text != "Local administrator" {
		t.Errorf("untouched account = %+v, want its initial option", got)
	}
	if !strings.Contains(string(ev.Request.Payload), `"os_select":{"selected_option":null,"type":"static_select"}`) {
		t.Errorf("untouched select not null in %s", ev.Request.Payload)
	}
	if err := c.sm.Ack(*ev.Request, slack.NewErrorsViewSubmissionResponse(map[string]string{"reason": "again"})); err != nil {
		t.Fatal(err)
	}

	// Chosen.
	s.SendViewSubmission(t, fakes.ViewSubmission{UserID: "U0ALICE", ViewID: opened.View.ID,
		Values:   map[string]map[string]string{"reason": {"reason_input": "why"}},
		Selected: map[string]map[string]string{"os": {"os_select": "windows11"}, "account": {"account_select": "standardUser"}}})
	ev, cb = nextSubmission(t, c)
	if got := cb.View.State.Values["os"]["os_select"].SelectedOption; got.Value != "windows11" || got.Text.Text != "Windows 11" {
		t.Errorf("os = %+v", got)
	}
	if got := cb.View.State.Values["account"]["account_select"].SelectedOption; got.Value != "standardUser" {
		t.Errorf("account = %+v", got)
	}
	if err := c.sm.Ack(*ev.Request); err != nil {
		t.Fatal(err)
	}

	// What Slack would not let the user do fails the test.
	second := openModal(t, s, c, "U0ALICE", selectModal(nil, optStandard, optAdmin))
	for want, sel := range map[string]map[string]map[string]string{
		`has no option "windows95"`:      {"os": {"os_select": "windows95"}},
		`no element with action_id "x"`:  {"os": {"x": "windows11"}},
		`only a static_select's options`: {"reason": {"reason_input": "why"}},
		`has no input block "nope"`:      {"nope": {"os_select": "windows11"}},
	} {
		expectFatal(t, want, func(tb testing.TB) {
			s.SendViewSubmission(tb, fakes.ViewSubmission{UserID: "U0ALICE", ViewID: second.View.ID,
				Values: map[string]map[string]string{"reason": {"reason_input": "why"}}, Selected: sel})
		})
	}
}

// views.open refuses a select Slack would refuse: no options, an
// initial_option that is not one of them, an option without a value.
func TestSlackViewStaticSelectValidation(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	c := startClient(t, s)
	c.next(t, socketmode.EventTypeConnected)
	for name, modal := range map[string]slack.ModalViewRequest{
		"no options":         selectModal(nil),
		"foreign initial":    selectModal(slack.NewOptionBlockObject("root", plainText("Root"), nil), optStandard, optAdmin),
		"initial text other": selectModal(slack.NewOptionBlockObject("administrator", plainText("Admin"), nil), optStandard, optAdmin),
		"empty value":        selectModal(nil, slack.NewOptionBlockObject("", plainText("None"), nil)),
		"long text":          selectModal(nil, slack.NewOptionBlockObject("x", plainText(strings.Repeat("x", 76)), nil)),
	} {
		envID := s.SendSlashCommand(t, fakes.SlashCommand{UserID: "U0ALICE", Text: "CPC-alice-01"})
		ev := c.next(t, socketmode.EventTypeSlashCommand)
		if err := c.sm.Ack(*ev.Request); err != nil {
			t.Fatal(err)
		}
		s.WaitAck(t, envID, wait)
		if _, err := c.api.OpenView(ev.Data.(slack.SlashCommand).TriggerID, modal); err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("%s: views.open = %v, want invalid_arguments or invalid_blocks", name, err)
		}
	}
}
