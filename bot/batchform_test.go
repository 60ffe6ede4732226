package bot

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// A batch command becomes a batch request (the workflow collapses repeats
// and refuses one that is too large); with no reason typed, the reason form
// asks for it and carries the list or the policy.

func TestBatchCommandBecomesABatchRequest(t *testing.T) {
	t.Parallel()
	b, _ := newNoticesBot(t)
	bxWorkflow(t, b)
	sc := slack.SlashCommand{UserID: "U0REQ", ChannelID: "C0REQ"}
	request := func(text string) (*approvals.Request, error) {
		t.Helper()
		parsed, err := ParseCommand(text)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if err := b.mayAsk(sc, parsed); err != nil {
			return nil, err
		}
		return b.newRequest(sc.UserID, sc.ChannelID, parsed, parsed.Reason)
	}

	r, err := request("CPC-1,bob@contoso.com,cpc-1 --os windows11 image upgrade")
	if err != nil {
		t.Fatal(err)
	}
	if !r.IsBatch() || strings.Join(r.Batch.Targets, ",") != "CPC-1,bob@contoso.com" || r.Batch.Policy != "" || r.CloudPCID != "" ||
		r.Reason != "image upgrade" || r.Options.OSVersion != approvals.OSWindows11 {
		t.Errorf("list: %+v (batch %+v)", r, r.Batch)
	}
	r, err = request(`--policy "Sales EMEA" why`)
	if err != nil || !r.IsBatch() || r.Batch.Policy != "Sales EMEA" || len(r.Batch.Targets) != 0 {
		t.Errorf("policy: %+v, %v", r, err)
	}
	r, err = request("CPC-1 why")
	if err != nil || r.IsBatch() || r.Target != "CPC-1" {
		t.Errorf("one Cloud PC: %+v, %v", r, err)
	}

	// More than the workflow's limit (50 by default), repeats collapsed
	// first: refused with the count, before the form or the receipt.
	var targets []string
	for i := range 51 {
		targets = append(targets, "CPC-"+strings.Repeat("X", i%3+1)+string(rune('A'+i%26))+string(rune('A'+i/26)))
	}
	for _, text := range []string{strings.Join(targets, ",") + " why", strings.Join(targets, ",")} {
		_, err = request(text)
		var refusal *approvals.Refusal
		if !errors.As(err, &refusal) || refusal.Kind != approvals.RefusedBatchTooLarge {
			t.Fatalf("51 Cloud PCs: %v", err)
		}
		txCheck(t, "too large", replyText(err), []string{"That is 51 Cloud PCs; a batch may have at most 50."}, nil)
	}
	if _, err = request(strings.Join(append(targets[:50], targets[0]), ",") + " why"); err != nil {
		t.Errorf("50 and a repeat: %v", err)
	}
}

// The reason form for a batch asks about the batch and keeps the options.
func TestBatchReasonForm(t *testing.T) {
	t.Parallel()
	parsed, err := ParseCommand(strings.Join(bxBatch(approvals.StatePending, 12).Batch.Targets, ",") + " --account admin")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(batchReasonModal("{}", parsed).Blocks)
	for _, want := range []string{"Reprovision 12 Cloud PCs (`CPC-USER-01`, `CPC-USER-02`,", "`CPC-USER-10` and 2 more)?", "every one of these Cloud PCs",
		`"initial_option":{"text":{"type":"plain_text","text":"Local administrator"`} {
		if !strings.Contains(string(raw), jsonText(want)) && !strings.Contains(string(raw), want) {
			t.Errorf("form lacks %q\n%s", want, raw)
		}
	}
	parsed, _ = ParseCommand(`--policy "Sales EMEA"`)
	raw, _ = json.Marshal(batchReasonModal("{}", parsed).Blocks)
	if !strings.Contains(string(raw), "Reprovision every Cloud PC of provisioning policy `Sales EMEA`?") {
		t.Errorf("policy form: %s", raw)
	}
}

// The reason form carries a batch's list or policy, and reads it back
// checked as the command was.
func TestReasonFormCarriesABatch(t *testing.T) {
	t.Parallel()
	sc := slack.SlashCommand{UserID: "U0ALICE", ChannelID: "C1", ResponseURL: "https://hooks.slack.com/commands/1"}
	for _, text := range []string{"CPC-1,bob@contoso.com,CPC-1 why", `--policy "Sales EMEA" --os windows11`, "CPC-1 why"} {
		parsed, err := ParseCommand(text)
		if err != nil {
			t.Fatal(err)
		}
		meta, ok := reasonFormMetadata(sc, parsed)
		if !ok {
			t.Fatalf("%q: does not fit", text)
		}
		var form reasonForm
		if err := json.Unmarshal([]byte(meta), &form); err != nil {
			t.Fatal(err)
		}
		back, err := formCommand(form)
		if err != nil || back.Target != parsed.Target || back.Policy != parsed.Policy || strings.Join(back.Targets, ",") != strings.Join(parsed.Targets, ",") {
			t.Errorf("%q: read back %+v, %v; want %+v", text, back, err, parsed)
		}
	}
	// What the form carries comes back from Slack: it is checked again.
	for _, form := range []reasonForm{
		{Targets: []string{"CPC-1", "<@U0BOSS>"}},
		{Targets: []string{"CPC-1"}},
		{Policy: "<!channel>"},
		{Policy: "Sales", Target: "CPC-1"},
		{Policy: "Sales", Targets: []string{"CPC-1", "CPC-2"}},
		{Target: "CPC-1", Targets: []string{"CPC-1", "CPC-2"}},
		{},
	} {
		if got, err := formCommand(form); err == nil {
			t.Errorf("form %+v read as %+v", form, got)
		}
	}
	// A list too long for private_metadata is said so instead.
	parsed, err := ParseCommand(strings.Repeat("someone.with.a.long.name@contoso.example,", 80) + "x@contoso.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := reasonFormMetadata(sc, parsed); ok {
		t.Error("a list of 81 long UPNs fits in private_metadata")
	}
}
