package bot

// Fuzz targets for what reaches the bot from people and from Slack: the
// `/reprovision` text, reasons typed into forms, button clicks and raw
// Socket Mode frames. Seeds are below and in testdata/fuzz/<FuzzName>/;
// `go test` runs the seeds, `.ci/run` fuzzes each target for a few seconds:
//
//	go test -run '^$' -fuzz '^FuzzParseCommand$' -fuzztime 45s ./bot/

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

const fuzzGUID = "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"

// inputErrorTexts are the texts ParseCommand, parseTarget and CheckReason
// may answer with, collected by provoking each error once. An error text
// outside this set is a new message (add an example here) or one that
// depends on the input, which could echo it (with its Slack markup) back.
var inputErrorTexts = func() map[string]bool {
	texts := map[string]bool{}
	add := func(err error) {
		var ie inputError
		if !errors.As(err, &ie) {
			panic(fmt.Sprintf("inputErrorTexts: example gave %v, want an inputError", err))
		}
		texts[err.Error()] = true
	}
	for _, text := range []string{
		strings.Repeat("a", maxCommandText+1), // too long
		"CPC-1 \xff",                          // not UTF-8
		"CPC-1 why\x00",                       // control character
		"<@U123> why",                         // markup
		"CPC/1 why",                           // path
		"bob@ why",                            // not a UPN
		"4e1f0b9a-2c3d-4e5f-8a9b why",         // broken GUID
		"!!! why",                             // nothing
		"CPC-1 !why",                          // reason not in words
		"CPC-1 " + fuzzGUID,                   // two Cloud PCs
		"CPC-1 " + strings.Repeat("a", MaxReason+1),
		"--os windows11 CPC-1 why",            // options before the Cloud PC
		"CPC-1 --color red why",               // unknown option
		"CPC-1 why --os windows11",            // option among the reason's words
		"CPC-1 --os windows10 --os=windows11", // --os twice
		"CPC-1 --account admin --account=admin why",
		"CPC-1 --os", // no value
		"CPC-1 --account= why",
		"CPC-1 --os windows95 why", // unknown value
		"CPC-1 --account root why",
		strings.Repeat("a,", maxBatchCommandText/2+1), // too long for a batch
		"CPC-1,,CPC-2 why",                            // empty item
		"CPC-1,CPC-2 " + fuzzGUID + " why",            // a space in the list
		"--policy",                                    // no policy
		"--policy \"Sales why",                        // no closing quote
		"--policy \"Sales\"why",                       // no space after it
		"--policy Sales\"EMEA why",                    // half quoted
		"--policy 4e1f0b9a-2c3d-4e5f-8a9b why",        // broken id
		"--policy \"<!channel>\" why",                 // not a name
		"CPC-1 --policy Sales why",                    // --policy not first
	} {
		_, err := ParseCommand(text)
		add(err)
	}
	add(CheckReason("", true))
	add(CheckReason("a\x01", false))
	return texts
}()

// markupChars are Slack mrkdwn and mention characters a target never holds
// ('_' is left out: device names and UPNs may contain it).
const markupChars = "<>&*~`|\""

// checkTarget checks a parsed target: a Cloud PC id (lower case), device
// name or UPN (lower case), of the kind it claims, with nothing that could
// change a URL, markup, or how it reads.
func checkTarget(t *testing.T, input string, c Command) {
	t.Helper()
	switch c.Kind {
	case TargetID:
		if !approvals.ValidCloudPCID(c.Target) || c.Target != strings.ToLower(c.Target) || c.CloudPCID() != c.Target {
			t.Fatalf("%q: id target %q", input, c.Target)
		}
	case TargetDeviceName:
		if !approvals.ValidDeviceName(c.Target) || approvals.ValidCloudPCID(c.Target) || c.CloudPCID() != "" {
			t.Fatalf("%q: device name target %q", input, c.Target)
		}
	case TargetUPN:
		if !approvals.ValidUPN(c.Target) || c.Target != strings.ToLower(c.Target) || c.CloudPCID() != "" {
			t.Fatalf("%q: UPN target %q", input, c.Target)
		}
	default:
		t.Fatalf("%q: target %q of kind %d", input, c.Target, c.Kind)
	}
	if strings.ContainsAny(c.Target, `/\%?#`+markupChars) || strings.Contains(c.Target, "..") {
		t.Fatalf("%q: target %q has path or markup characters", input, c.Target)
	}
	for _, r := range c.Target {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.IsSpace(r) || isInvisible(r) || r > unicode.MaxASCII {
			t.Fatalf("%q: target %q has %U", input, c.Target, r)
		}
	}
}

// checkReason checks an accepted reason: trimmed, at most MaxReason runes,
// no control characters but newline and tab.
func checkReason(t *testing.T, input, reason string) {
	t.Helper()
	if reason != strings.TrimSpace(reason) {
		t.Fatalf("%q: reason %q is not trimmed", input, reason)
	}
	if n := utf8.RuneCountInString(reason); n > MaxReason {
		t.Fatalf("%q: reason has %d runes", input, n)
	}
	for _, r := range reason {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			t.Fatalf("%q: reason %q has %U", input, reason, r)
		}
	}
}

// listPosition is how a refused item of a list is named: by its position,
// then one of the fixed texts (its first letter in lower case).
var listPosition = regexp.MustCompile(`^Target [1-9][0-9]* in the list: (.)(.*)$`)

func checkInputError(t *testing.T, input string, err error) {
	t.Helper()
	var ie inputError
	text := err.Error()
	if m := listPosition.FindStringSubmatch(text); m != nil {
		text = strings.ToUpper(m[1]) + m[2]
	}
	if !errors.As(err, &ie) || !inputErrorTexts[text] {
		t.Fatalf("%q: error %q (%T) is not one of the fixed texts", input, err.Error(), err)
	}
}

// checkPolicyName checks an accepted provisioning policy: an id (lower
// case), or a trimmed printable name of at most maxPolicyName runes with
// nothing that could change markup, a quote or a URL's escaping.
func checkPolicyName(t *testing.T, input, policy string) {
	t.Helper()
	if approvals.ValidCloudPCID(policy) {
		if policy != strings.ToLower(policy) {
			t.Fatalf("%q: policy id %q", input, policy)
		}
		return
	}
	if policy == "" || policy != strings.TrimSpace(policy) || utf8.RuneCountInString(policy) > maxPolicyName || !approvals.ValidPolicyName(policy) {
		t.Fatalf("%q: policy name %q", input, policy)
	}
	for _, r := range policy {
		if !unicode.IsPrint(r) || isInvisible(r) || strings.ContainsRune("<>|\\%`\"\u201c\u201d\u201e", r) {
			t.Fatalf("%q: policy name %q has %U", input, policy, r)
		}
	}
}

// commandArgs writes c as the command takes it.
func commandArgs(c Command) string {
	first := c.Target
	switch {
	case c.Policy != "":
		first = `--policy "` + c.Policy + `"`
	case len(c.Targets) > 0:
		first = strings.Join(c.Targets, ",")
	}
	return first + " " + strings.Join(strings.Fields(optionArgs(c.Options)+" "+c.Reason), " ")
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"",
		"help",
		"  HELP ",
		"help me",
		fuzzGUID + " profile corrupt",
		"  4E1F0B9A-2C3D-4E5F-8A9B-0C1D2E3F4A5B  disk full ",
		"{" + fuzzGUID + "} braces",
		"CPC-alice-8X2K1 apps broken after update; please redo",
		"Alice.O'Brien@Contoso.com 2nd try",
		"o'brien+tag@sub.contoso.example",
		"john_doe@contoso.co.uk",
		"<@U123ABC> please",
		"<https://evil.example|CPC-1> click",
		"*CPC-1* bold",
		"../../deviceManagement x",
		"CPC-1/reprovision now",
		"CPC%2F1 now",
		"x' or displayName eq 'y why",
		"al ice@contoso.example",
		"CPC-1 " + fuzzGUID,
		"CPC-1 " + fuzzGUID + " too",
		"CPC-1 - dash first",
		"CPC-1 why\nsecond line",
		"CPC-1 why\r\n*Approver:* me",
		"CPC-\u200b1 zero width",
		"\u202eCPC-1 \u202dreason",
		"\ufeffCPC-1 bom",
		"CPC-1 \u2066isolated\u2069",
		"CPC-1 \u2028line separator",
		"CPC-1\u00a0nbsp",
		"CPC-1\u3000ideographic space",
		"ÄPC-1 umlaut",
		"CPC-1 " + strings.Repeat("é", MaxReason),
		"4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5bb long guid",
		"\xff\xfe",
		fuzzGUID + " --os windows11 --account standard disk full",
		"CPC-1 --OS=Windows10 --Account=StandardUser why",
		"CPC-1 \u2014os windows11 \u2013account admin why",
		"CPC-1 --os --account standard why",
		"CPC-1 --os= why",
		"CPC-1 -os windows11 why",
		"CPC-1 --os windows11 --os windows11 why",
		"CPC-1 -- why",
		"CPC-1 --account administrator",
		"CPC-1,CPC-2," + fuzzGUID + ",bob@contoso.com --os windows11 why",
		"CPC-1,CPC-1,cpc-1 repeats",
		"CPC-1,,CPC-2 why",
		"CPC-1, CPC-2 why",
		"CPC-1,<@U1> why",
		",CPC-1 why",
		"--policy \"Sales  EMEA\" --account admin why",
		"--policy=" + fuzzGUID + " why",
		"\u2014policy \u201cSales\u201d why",
		"--policy \"Sales\"why",
		"--policy Sales",
		"--policy \" \" why",
		"--POLICY=\"x y\" z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseCommand(text)
		if err != nil {
			checkInputError(t, text, err)
			if !reflect.DeepEqual(c, Command{}) {
				t.Fatalf("%q: error %v with command %+v", text, err, c)
			}
		} else if c.Help {
			if !reflect.DeepEqual(c, Command{Help: true}) {
				t.Fatalf("%q: help with %+v", text, c)
			}
		} else {
			switch {
			case c.Policy != "":
				if c.Target != "" || c.Kind != 0 || len(c.Targets) > 0 {
					t.Fatalf("%q: a policy batch with %+v", text, c)
				}
				checkPolicyName(t, text, c.Policy)
			case len(c.Targets) > 0:
				if c.Target != "" || c.Kind != 0 || len(c.Targets) < 2 {
					t.Fatalf("%q: a list with %+v", text, c)
				}
				for _, target := range c.Targets {
					one, err := parseTarget(target)
					if err != nil || one.Target != target {
						t.Fatalf("%q: listed target %q reads %+v, %v", text, target, one, err)
					}
					checkTarget(t, text, one)
				}
			default:
				checkTarget(t, text, c)
			}
			checkReason(t, text, c.Reason)
			for _, r := range c.Reason {
				if isInvisible(r) || r == '\n' {
					t.Fatalf("%q: reason %q has %U", text, c.Reason, r)
				}
			}
			if c.Reason != "" && CheckReason(c.Reason, true) != nil {
				t.Fatalf("%q: reason %q fails CheckReason", text, c.Reason)
			}
			if err := c.Options.Validate(); err != nil {
				t.Fatalf("%q: options %+v: %v", text, c.Options, err)
			}
			// What is stored reads back the same.
			again, err := ParseCommand(commandArgs(c))
			if err != nil || !reflect.DeepEqual(again, c) {
				t.Fatalf("%q: parsed %+v, reparsed %+v, %v", text, c, again, err)
			}
		}

		// parseTarget also reads the target kept in the reason form's
		// metadata; the same rules hold for it.
		tc, err := parseTarget(text)
		if err != nil {
			checkInputError(t, text, err)
			return
		}
		checkTarget(t, text, tc)
		if tc.Reason != "" || tc.Help {
			t.Fatalf("%q: parseTarget gave %+v", text, tc)
		}
	})
}

// optionArgs writes opts as the command takes them.
func optionArgs(opts approvals.Options) string {
	var args []string
	if opts.OSVersion != "" {
		args = append(args, "--os "+opts.OSVersion)
	}
	switch opts.UserAccountType {
	case approvals.AccountStandardUser:
		args = append(args, "--account standard")
	case approvals.AccountAdministrator:
		args = append(args, "--account administrator")
	}
	return strings.Join(args, " ")
}

func FuzzCheckReason(f *testing.F) {
	for _, s := range []string{
		"",
		"   ",
		"profile corrupt",
		"2nd try",
		"Ärger mit Outlook",
		"-- rm -rf /",
		"`whoami`",
		"> quoted",
		fuzzGUID,
		fuzzGUID + " and more",
		"why\nsecond line",
		"why\r\n*Approver:* <@U123>",
		"why\x1b[31m",
		"why\u0085next",
		"\u200bwhy",
		"why \u202eevil",
		"why\u2028line separator",
		strings.Repeat("a", MaxReason),
		strings.Repeat("é", MaxReason+1),
		"why \xff",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, reason string, required bool) {
		err := CheckReason(reason, required)
		if err != nil {
			checkInputError(t, reason, err)
		} else {
			trimmed := strings.TrimSpace(reason)
			if trimmed == "" && required {
				t.Fatalf("%q: empty reason accepted as required", reason)
			}
			checkReason(t, reason, trimmed)
			if trimmed != "" {
				first, _ := utf8.DecodeRuneInString(trimmed)
				if !unicode.IsLetter(first) && !unicode.IsDigit(first) {
					t.Fatalf("%q: reason starts with %U", reason, first)
				}
				if approvals.ValidCloudPCID(strings.Fields(trimmed)[0]) {
					t.Fatalf("%q: reason starts with a Cloud PC id", reason)
				}
			}
		}

		// The reason and deny forms strip invisible characters and trim,
		// then check: what they accept has none left.
		cb := slack.InteractionCallback{View: slack.View{State: &slack.ViewState{Values: map[string]map[string]slack.BlockAction{
			blockReason: {inputReason: {Value: reason}},
		}}}}
		form := formReason(cb)
		if err := CheckReason(form, required); err != nil {
			checkInputError(t, form, err)
			return
		}
		checkReason(t, reason, form)
		if strings.ContainsFunc(form, isInvisible) {
			t.Fatalf("%q: form reason %q keeps invisible characters", reason, form)
		}
	})
}

// clickPayload is an interaction as Slack sends it over Socket Mode, with
// the fuzzed parts filled in.
func clickPayload(typ, actionID, value, container string) []byte {
	p := map[string]any{
		"type":       typ,
		"user":       map[string]any{"id": "U123ABC"},
		"channel":    map[string]any{"id": "C123ABC"},
		"container":  map[string]any{"type": container},
		"trigger_id": "1.2.3",
		"actions": []any{map[string]any{
			"action_id": actionID,
			"block_id":  "b",
			"type":      "button",
			"value":     value,
		}},
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return b
}

func FuzzDecodeClick(f *testing.F) {
	ref := "R-7K3F9Q"
	for _, s := range []struct{ typ, actionID, value, container string }{
		{"block_actions", actionApprove, ref, "message"},
		{"block_actions", actionApprove + ":home:3", ref, "view"},
		{"block_actions", actionDeny, ref, "message"},
		{"block_actions", actionCancel, ref, "message"},
		{"block_actions", actionConfirm, ref, "message"},
		{"block_actions", actionAbort, ref, "message"},
		{"block_actions", actionResumeTrack, ref, "message"},
		{"block_actions", actionRequestOver, ref, "message"},
		{"block_actions", actionStopBatch, ref, "message"},
		{"block_actions", actionResumeBatch, ref, "message"},
		{"block_actions", actionStopBatch, ref + "|" + fuzzGUID, "message"},
		{"block_actions", actionPick, ref + "|" + fuzzGUID, "message"},
		{"block_actions", actionPick + ":2", ref + "|" + strings.ToUpper(fuzzGUID), "message"},
		{"block_actions", actionPick, ref + "|" + fuzzGUID + "|x", "message"},
		{"block_actions", actionPick, ref, "message"},
		{"block_actions", actionPick, "|" + fuzzGUID, "message"},
		{"block_actions", actionApprove, ref + "|" + fuzzGUID, "message"},
		{"block_actions", actionSignInLink, "", "message"},
		{"block_actions", actionSignInLink + ":x", ref, "message"},
		{"block_actions", "unknown", ref, "message"},
		{"block_actions", actionApprove, "r-7k3f9q", "message"},
		{"block_actions", actionApprove, "R-7K3F9Q\n", "message"},
		{"block_actions", actionApprove, "R-0O1I00", "message"},
		{"block_actions", actionApprove, "<@U1>", "message"},
		{"view_submission", actionApprove, ref, "view"},
		{"", "", "", ""},
	} {
		f.Add(s.typ, s.actionID, s.value, s.container, false)
		f.Add(s.typ, s.actionID, s.value, s.container, true)
	}
	b := &Bot{log: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError + 1}))}
	f.Fuzz(func(t *testing.T, typ, actionID, value, container string, viaJSON bool) {
		var cb slack.InteractionCallback
		if viaJSON {
			// As Socket Mode decodes it (invalid UTF-8 becomes U+FFFD).
			if err := json.Unmarshal(clickPayload(typ, actionID, value, container), &cb); err != nil {
				t.Fatalf("payload does not decode: %v", err)
			}
		} else {
			cb = slack.InteractionCallback{
				Type:      slack.InteractionType(typ),
				User:      slack.User{ID: "U123ABC"},
				Container: slack.Container{Type: container},
				ActionCallback: slack.ActionCallbacks{BlockActions: []*slack.BlockAction{
					{ActionID: actionID, Value: value},
				}},
			}
		}
		c, ok := b.decodeClick(cb)
		if !ok {
			if c.action != "" || c.ref != "" || c.pick != "" || c.user != "" {
				t.Fatalf("refused click carries %+v", c)
			}
			return
		}
		if cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) == 0 {
			t.Fatalf("type %q with %d actions accepted", cb.Type, len(cb.ActionCallback.BlockActions))
		}
		a := cb.ActionCallback.BlockActions[0]
		if a.ActionID == actionSignInLink {
			t.Fatalf("sign-in link click accepted")
		}
		if !approvals.ValidReference(c.ref) {
			t.Fatalf("action %q value %q: accepted ref %q", a.ActionID, a.Value, c.ref)
		}
		base, _, _ := strings.Cut(a.ActionID, ":")
		if c.action != base || c.user != cb.User.ID {
			t.Fatalf("action %q: click %+v", a.ActionID, c)
		}
		if c.action == actionPick {
			if !approvals.ValidCloudPCID(c.pick) || c.ref+"|"+c.pick != a.Value {
				t.Fatalf("pick value %q: ref %q pick %q", a.Value, c.ref, c.pick)
			}
		} else if c.pick != "" || c.ref != a.Value {
			t.Fatalf("action %q value %q: ref %q pick %q", a.ActionID, a.Value, c.ref, c.pick)
		}
	})
}

func FuzzEnvelopeOf(f *testing.F) {
	for _, s := range []string{
		``,
		`null`,
		`[]`,
		`"x"`,
		`{}`,
		`{"envelope_id":"3f2a-7c1e","type":"interactive","payload":{"type":"block_actions"}}`,
		`{"envelope_id":"3f2a-7c1e","type":"interactive","payload":"not an object"}`,
		`{"envelope_id":"3f2a-7c1e","type":"no_such_type"}`,
		`{"envelope_id":42,"type":["x"]}`,
		`{"envelope_id":null,"type":null}`,
		`{"envelope_id":"","type":""}`,
		`{"envelope_id":"a b","type":"x\ty"}`,
		`{"envelope_id":"a\u0000b","type":"x\u001by"}`,
		`{"envelope_id":"a\u202eb","type":"x\u200by"}`,
		`{"envelope_id":"\ud800","type":"\udfff"}`,
		`{"envelope_id":"` + strings.Repeat("e", maxEnvelopeID) + `","type":"events_api"}`,
		`{"envelope_id":"` + strings.Repeat("e", maxEnvelopeID+1) + `","type":"events_api"}`,
		`{"envelope_id":"first","envelope_id":"second"}`,
		`{"ENVELOPE_ID":"upper","Type":"x"}`,
		"{\"envelope_id\":\"\xff\"}",
		`{"envelope_id":"id"`,
	} {
		f.Add([]byte(s))
	}
	printable := func(s string) bool {
		return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
			return r <= ' ' || r == utf8.RuneError || unicode.IsControl(r) || isInvisible(r)
		})
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		id, typ := envelopeOf(raw)
		var fields map[string]any
		decoded := json.Unmarshal(raw, &fields) == nil
		for name, got := range map[string]string{"envelope_id": id, "type": typ} {
			if got == "" {
				continue
			}
			if len(got) > maxEnvelopeID || !printable(got) {
				t.Fatalf("%q: %s %q is not short and printable", raw, name, got)
			}
			if want, _ := fields[name].(string); !decoded || got != want {
				t.Fatalf("%q: %s %q, the frame says %q", raw, name, got, want)
			}
		}
	})
}
