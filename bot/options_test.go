package bot

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// The reprovision options (--os, --account, the reason form's selects) read
// the same wherever people see what will be done, and nothing is said of
// them when none was given.

var (
	optW11Standard = approvals.Options{OSVersion: approvals.OSWindows11, UserAccountType: approvals.AccountStandardUser}
	optW10         = approvals.Options{OSVersion: approvals.OSWindows10}
	optAdmin       = approvals.Options{UserAccountType: approvals.AccountAdministrator}
)

func TestOptionsText(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		opts approvals.Options
		want string
	}{
		{approvals.Options{}, ""},
		{optW11Standard, "Windows 11, standard user"},
		{optW10, "Windows 10"},
		{optAdmin, "local administrator"},
		{approvals.Options{OSVersion: approvals.OSWindows10, UserAccountType: approvals.AccountAdministrator}, "Windows 10, local administrator"},
		// Never stored (Options.Validate), but never shown raw either.
		{approvals.Options{OSVersion: "<!channel>"}, "&lt;!channel&gt;"},
	} {
		if got := optionsText(c.opts); got != c.want {
			t.Errorf("optionsText(%+v) = %q, want %q", c.opts, got, c.want)
		}
	}
	if withOptions(approvals.Options{}) != "" || andReprovisionedWith(approvals.Options{}) != "" {
		t.Error("words for no options")
	}
}

// optionTexts is every text shown for r that says what will be done: the
// prompt (with Approve's confirmation dialog), the receipt, the final
// confirmation, what the confirming click leaves, the acceptance, the
// outcome for requester and approvers, the expiry notice and the Home tab.
func optionTexts(t *testing.T, r *approvals.Request) map[string]string {
	pending := *r
	pending.State = approvals.StatePending
	confirming := *r
	confirming.State, confirming.SignedInAs = approvals.StateConfirming, "approver@contoso.com"
	succeeded := *r
	succeeded.State, succeeded.SignedInAs = approvals.StateSucceeded, "approver@contoso.com"
	expired := *r
	expired.State = approvals.StateExpired
	picking := confirming
	picking.Candidates = []approvals.CloudPC{*r.Device, {ID: "5e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b", ManagedDeviceName: "CPC-anna-02"}}

	receipt, receiptBlocks := requesterConfirmation(&pending)
	confirm, confirmBlocks2 := confirmBlocks(&confirming)
	pick, _ := confirmBlocks(&picking)
	expiredText, _ := expiredNotice(&expired)
	return map[string]string{
		"prompt":             strings.Join(txMrkdwn(t, promptBlocks(&pending)), "\n"),
		"receipt":            receipt + "\n" + strings.Join(txMrkdwn(t, receiptBlocks), "\n"),
		"final confirmation": confirm + "\n" + strings.Join(txMrkdwn(t, confirmBlocks2), "\n"),
		"pick":               pick,
		"confirmed":          doneText(actionConfirm, &confirming),
		"accepted":           progressText(&succeeded, approvals.Progress{Kind: approvals.ProgressAccepted}),
		"outcome, requester": noticeText("UREQ", approvals.Notice{Kind: approvals.NoticeStatus, Request: &succeeded}),
		"outcome, approver":  noticeText("UA2", approvals.Notice{Kind: approvals.NoticeStatus, Request: &succeeded}),
		"expired":            expiredText,
		"home, awaiting":     strings.Join(txMrkdwn(t, awaitingBlocks([]*approvals.Request{&pending})), "\n"),
		"home, yours":        strings.Join(txMrkdwn(t, yourRequestsBlocks([]*approvals.Request{&succeeded})), "\n"),
	}
}

func TestOptionsShownWhereverPeopleSeeWhatWillBeDone(t *testing.T) {
	t.Parallel()
	r := txRequest(approvals.StatePending)
	r.Options = optW11Standard
	for name, text := range optionTexts(t, r) {
		txCheck(t, name, text, []string{"Windows 11, standard user"}, []string{"windows11", "standardUser"})
	}
	prompt := strings.Join(txMrkdwn(t, promptBlocks(r)), "\n")
	txCheck(t, "prompt", prompt, []string{"*Reprovision with*\nWindows 11, standard user",
		"will be wiped and reprovisioned with Windows 11, standard user"}, nil)
	confirm, _ := confirmBlocks(txWith(txRequest(approvals.StateConfirming), func(r *approvals.Request) { r.Options = optAdmin }))
	txCheck(t, "final confirmation", confirm, []string{"Reprovision CPC-anna-01 of anna@contoso.com now with local administrator?"}, nil)
}

func TestNoOptionsNoWords(t *testing.T) {
	t.Parallel()
	for name, text := range optionTexts(t, txRequest(approvals.StatePending)) {
		txCheck(t, name, text, nil, []string{"Windows 1", "standard user", "administrator", "Reprovision with", "As provisioned", "now with", "reprovisioned with"})
	}
}

// txModalJSON is the reason form for opts, as sent to views.open.
func txModalJSON(t *testing.T, opts approvals.Options) []map[string]any {
	t.Helper()
	raw, err := json.Marshal(reasonModal(`{"target":"CPC-1"}`, "CPC-1", opts).Blocks)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []map[string]any
	if err := json.Unmarshal(raw, &blocks); err != nil {
		t.Fatal(err)
	}
	return blocks
}

// txSelect is the select of input block blockID.
func txSelect(t *testing.T, blocks []map[string]any, blockID string) map[string]any {
	t.Helper()
	for _, b := range blocks {
		if b["block_id"] == blockID {
			if b["type"] != "input" || b["optional"] != true {
				t.Errorf("block %s is not an optional input: %v", blockID, b)
			}
			el, _ := b["element"].(map[string]any)
			if el["type"] != "static_select" {
				t.Errorf("block %s holds a %v, want a static_select", blockID, el["type"])
			}
			return el
		}
	}
	t.Fatalf("no block %s in the reason form", blockID)
	return nil
}

func TestReasonFormOffersTheOptions(t *testing.T) {
	t.Parallel()
	blocks := txModalJSON(t, approvals.Options{})
	for blockID, want := range map[string][]string{
		blockOS:      {asProvisioned, approvals.OSWindows11, approvals.OSWindows10},
		blockAccount: {asProvisioned, approvals.AccountStandardUser, approvals.AccountAdministrator},
	} {
		el := txSelect(t, blocks, blockID)
		if _, ok := el["initial_option"]; ok {
			t.Errorf("%s: preselected %v without an option typed", blockID, el["initial_option"])
		}
		var got []string
		for _, o := range el["options"].([]any) {
			got = append(got, o.(map[string]any)["value"].(string))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s offers %v, want %v", blockID, got, want)
		}
	}

	// Options typed with the command are preselected.
	blocks = txModalJSON(t, approvals.Options{OSVersion: approvals.OSWindows11, UserAccountType: approvals.AccountAdministrator})
	for blockID, want := range map[string]string{blockOS: approvals.OSWindows11, blockAccount: approvals.AccountAdministrator} {
		initial, _ := txSelect(t, blocks, blockID)["initial_option"].(map[string]any)
		if initial["value"] != want {
			t.Errorf("%s: initial_option %v, want %s", blockID, initial, want)
		}
	}
}

// txFormSubmission is a reason form submission with os and account chosen
// ("" leaves a select untouched).
func txFormSubmission(os, account string) slack.InteractionCallback {
	var cb slack.InteractionCallback
	values := map[string]map[string]slack.BlockAction{
		blockReason:  {inputReason: {Value: "disk full"}},
		blockOS:      {inputOS: {Type: "static_select"}},
		blockAccount: {inputAccount: {Type: "static_select"}},
	}
	if os != "" {
		values[blockOS][inputOS] = slack.BlockAction{Type: "static_select", SelectedOption: slack.OptionBlockObject{Value: os}}
	}
	if account != "" {
		values[blockAccount][inputAccount] = slack.BlockAction{Type: "static_select", SelectedOption: slack.OptionBlockObject{Value: account}}
	}
	cb.View.State = &slack.ViewState{Values: values}
	return cb
}

func TestFormOptions(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		os, account string
		want        approvals.Options
	}{
		{"", "", approvals.Options{}},
		{asProvisioned, asProvisioned, approvals.Options{}},
		{approvals.OSWindows11, approvals.AccountStandardUser, optW11Standard},
		{approvals.OSWindows10, "", optW10},
		{asProvisioned, approvals.AccountAdministrator, optAdmin},
	} {
		got, problems := formOptions(txFormSubmission(c.os, c.account))
		if got != c.want || problems != nil {
			t.Errorf("form with %q, %q: %+v, %v; want %+v", c.os, c.account, got, problems, c.want)
		}
	}
	var none slack.InteractionCallback
	if got, problems := formOptions(none); !got.IsZero() || problems != nil {
		t.Errorf("a form without state: %+v, %v", got, problems)
	}
}

// A submission is not trusted: a value the form does not offer (a forged
// payload, or one of the command's spellings) is refused on its select.
func TestFormOptionsRefusesWhatTheFormDoesNotOffer(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ os, account, block string }{
		{"windows95", "", blockOS},
		{"Windows11", "", blockOS},
		{"unknownFutureValue", "", blockOS},
		{"", "standard", blockAccount},
		{"", "root", blockAccount},
		{approvals.OSWindows11, "<!channel>", blockAccount},
	} {
		got, problems := formOptions(txFormSubmission(c.os, c.account))
		if !got.IsZero() || problems[c.block] == "" || len(problems) != 1 {
			t.Errorf("form with %q, %q: %+v, %v; want a problem on %s only", c.os, c.account, got, problems, c.block)
		}
		for _, p := range problems {
			if strings.Contains(p, c.os+c.account) {
				t.Errorf("problem %q echoes the value", p)
			}
		}
	}
}
