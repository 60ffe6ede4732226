package bot

import (
	"errors"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

const id = "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"

func TestParseCommandTargets(t *testing.T) {
	t.Parallel()
	cases := []struct {
		text   string
		target string
		kind   TargetKind
		reason string
	}{
		{id + " profile corrupt", id, TargetID, "profile corrupt"},
		{"  4E1F0B9A-2C3D-4E5F-8A9B-0C1D2E3F4A5B  disk full ", id, TargetID, "disk full"},
		{"\t" + id, id, TargetID, ""},
		{"CPC-alice-8X2K1 apps broken after update; please redo", "CPC-alice-8X2K1", TargetDeviceName, "apps broken after update; please redo"},
		{"Alice.O'Brien@Contoso.com 2nd try", "alice.o'brien@contoso.com", TargetUPN, "2nd try"},
		{"john_doe@contoso.co.uk", "john_doe@contoso.co.uk", TargetUPN, ""},
	}
	for _, c := range cases {
		got, err := ParseCommand(c.text)
		if err != nil {
			t.Errorf("ParseCommand(%q): %v", c.text, err)
			continue
		}
		if got.Help || got.Target != c.target || got.Kind != c.kind || got.Reason != c.reason {
			t.Errorf("ParseCommand(%q) = %+v, want target %q kind %d reason %q", c.text, got, c.target, c.kind, c.reason)
		}
		if (c.kind == TargetID) != (got.CloudPCID() == c.target) {
			t.Errorf("ParseCommand(%q).CloudPCID() = %q", c.text, got.CloudPCID())
		}
	}
}

func TestParseCommandHelp(t *testing.T) {
	t.Parallel()
	for _, text := range []string{"", "   ", "help", "HELP", " help "} {
		got, err := ParseCommand(text)
		if err != nil || !got.Help {
			t.Errorf("ParseCommand(%q) = %+v, %v; want help", text, got, err)
		}
	}
}

func TestParseCommandRefusesWhatIsNotACloudPC(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ text, wantMsg string }{
		"broken guid":        {"9e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5", "not a Cloud PC id"},
		"slash":              {id + "/../../users", "path characters"},
		"dot dot":            {"..", "path characters"},
		"encoded dot":        {"%2e%2e", "path characters"},
		"query":              {"CPC-a?x=1", "path characters"},
		"backslash":          {`CPC\alice`, "path characters"},
		"mention markup":     {"<@U123>", "markup"},
		"link markup":        {"<https://evil.example|click>", "markup"},
		"newline":            {id + "\nrm -rf /", "control characters"},
		"nul":                {id + "\x00", "control characters"},
		"escape":             {"\x1b[31m" + id, "control characters"},
		"shell after id":     {id + " ; rm -rf /", "start with a letter or digit"},
		"and-and after id":   {id + " && curl evil", "start with a letter or digit"},
		"subshell after id":  {id + " $(reboot)", "start with a letter or digit"},
		"two ids":            {id + " " + id, "exactly one Cloud PC"},
		"over-long":          {strings.Repeat("a", 601), "too long"},
		"long reason":        {id + " " + strings.Repeat("b", 501), "too long"},
		"invalid utf8":       {"\xff\xfe", "UTF-8"},
		"braced guid":        {"{" + id + "}", "not a Cloud PC id"},
		"unicode look-alike": {"４e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b", "not a Cloud PC id"},
		"bad upn":            {"alice@", "not a user sign-in name"},
		"quote in name":      {`CPC"x`, "markup"},
		"long device name":   {strings.Repeat("9", 70), "not a Cloud PC id"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ParseCommand(c.text)
			if err == nil {
				t.Fatalf("ParseCommand(%q) = %+v, want an error", c.text, got)
			}
			if !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("error %q does not mention %q", err, c.wantMsg)
			}
			if len(c.text) > 2 && strings.Contains(err.Error(), c.text) {
				t.Errorf("error %q echoes the input back", err)
			}
		})
	}
}

func TestCheckReasonRequiredInTheForm(t *testing.T) {
	t.Parallel()
	if err := CheckReason("  ", true); err == nil {
		t.Error("a blank reason passed where one is required")
	}
	if err := CheckReason("Laptop stolen,\nwipe it", true); err != nil {
		t.Errorf("a two-line reason from the form was refused: %v", err)
	}
}

// Bidi controls and zero-width characters (a paste accident in a target, a
// trick in a reason) are stripped before anything is checked or stored: the
// target is then validated as usual, the reason keeps its words.
func TestParseCommandStripsInvisibleCharacters(t *testing.T) {
	t.Parallel()
	cases := []struct {
		text   string
		target string
		kind   TargetKind
		reason string
	}{
		{"CPC-alice-8X2K1\u200b profile corrupt", "CPC-alice-8X2K1", TargetDeviceName, "profile corrupt"},
		{"\ufeff" + id + "\u200e disk full", id, TargetID, "disk full"},
		{"alice@\u200dcontoso.com apps \u202ebroken\u202c", "alice@contoso.com", TargetUPN, "apps broken"},
		{"CPC-\u2066alice\u2069-8X2K1 re\u200bimage\u2060 please\u061c\u200f", "CPC-alice-8X2K1", TargetDeviceName, "reimage please"},
		{"CPC-alice-8X2K1 \u202a\u202b\u202d\u2067\u2068", "CPC-alice-8X2K1", TargetDeviceName, ""},
	}
	for _, c := range cases {
		got, err := ParseCommand(c.text)
		if err != nil {
			t.Errorf("ParseCommand(%q): %v", c.text, err)
			continue
		}
		if got.Target != c.target || got.Kind != c.kind || got.Reason != c.reason {
			t.Errorf("ParseCommand(%q) = %+v, want target %q kind %d reason %q", c.text, got, c.target, c.kind, c.reason)
		}
	}
	// Stripping happens before the checks: what is left must pass them.
	for text, wantMsg := range map[string]string{
		id + " \u200b; rm -rf /": "start with a letter or digit",
		id + " \u202e" + id:      "exactly one Cloud PC",
	} {
		if got, err := ParseCommand(text); err == nil || !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("ParseCommand(%q) = %+v, %v; want an error about %q", text, got, err, wantMsg)
		}
	}
}

// The reason and deny forms strip the same characters from what is typed.
func TestFormReasonStripsInvisibleCharacters(t *testing.T) {
	t.Parallel()
	form := func(value string) slack.InteractionCallback {
		var cb slack.InteractionCallback
		cb.View.State = &slack.ViewState{Values: map[string]map[string]slack.BlockAction{
			blockReason: {inputReason: {Value: value}},
		}}
		return cb
	}
	for value, want := range map[string]string{
		"\u202eDisk full\u202c, \u200bapps\u200d broken": "Disk full, apps broken",
		"Line one\n\u2066line two\u2069":                 "Line one\nline two",
		"\ufeff\u200b\u200e":                             "",
	} {
		if got := formReason(form(value)); got != want {
			t.Errorf("formReason(%q) = %q, want %q", value, got, want)
		}
	}
	if err := CheckReason(formReason(form("\u200b\u200f")), true); err == nil {
		t.Error("a reason of invisible characters only passed where one is required")
	}
}

func TestOtherInvisibleFormatCharactersAreStrippedToo(t *testing.T) {
	t.Parallel()
	for _, r := range []rune{'\u00AD', '\u180E', '\u2061', '\u2064', '\u206A', '\u206F', '\U000E0041'} {
		got, err := ParseCommand("CPC-alice-8X2K1" + string(r) + " disk" + string(r) + " full")
		if err != nil || got.Target != "CPC-alice-8X2K1" || got.Reason != "disk full" {
			t.Errorf("U+%04X: got %+v, %v", r, got, err)
		}
	}
}

func TestParseCommandOptions(t *testing.T) {
	t.Parallel()
	w10, w11 := approvals.OSWindows10, approvals.OSWindows11
	std, admin := approvals.AccountStandardUser, approvals.AccountAdministrator
	cases := []struct {
		text   string
		opts   approvals.Options
		reason string
	}{
		{id + " --os windows11 --account standard disk full", approvals.Options{OSVersion: w11, UserAccountType: std}, "disk full"},
		{id + " --account administrator --os windows10 why", approvals.Options{OSVersion: w10, UserAccountType: admin}, "why"},
		{id + " --os=windows11 --account=standard why", approvals.Options{OSVersion: w11, UserAccountType: std}, "why"},
		{id + " --OS=Windows11 --Account=StandardUser why", approvals.Options{OSVersion: w11, UserAccountType: std}, "why"},
		{id + " --account admin why", approvals.Options{UserAccountType: admin}, "why"},
		{id + " --os windows10", approvals.Options{OSVersion: w10}, ""}, // the form asks why
		{id + " \u2014os windows11 \u2013account standard why", approvals.Options{OSVersion: w11, UserAccountType: std}, "why"},
		{id + " why -- os windows11 later", approvals.Options{}, "why -- os windows11 later"},
		{id + " upgrade to windows11 please", approvals.Options{}, "upgrade to windows11 please"},
	}
	for _, c := range cases {
		got, err := ParseCommand(c.text)
		if err != nil {
			t.Errorf("ParseCommand(%q): %v", c.text, err)
			continue
		}
		if got.Target != id || got.Options != c.opts || got.Reason != c.reason {
			t.Errorf("ParseCommand(%q) = %+v, want options %+v reason %q", c.text, got, c.opts, c.reason)
		}
	}
}

func TestParseCommandRefusesBadOptions(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ text, wantMsg string }{
		"unknown option":        {id + " --color red why", "Unknown option"},
		"unknown option alone":  {id + " --force", "Unknown option"},
		"single dash":           {id + " -os windows11 why", "Unknown option"},
		"bare dashes":           {id + " -- why", "Unknown option"},
		"unknown os":            {id + " --os windows95 why", "`--os` takes `windows10` or `windows11`"},
		"os value is a reason":  {id + " --os disk full", "`--os` takes"},
		"unknown account":       {id + " --account=root why", "`--account` takes `standard` or `administrator`"},
		"os twice":              {id + " --os windows11 --os windows10 why", "`--os` is given twice"},
		"os twice, same value":  {id + " --os=windows11 --os windows11 why", "`--os` is given twice"},
		"account twice":         {id + " --account standard --os windows11 --account admin why", "`--account` is given twice"},
		"os without value":      {id + " --os", "`--os` needs a value"},
		"os before an option":   {id + " --os --account standard why", "`--os` needs a value"},
		"empty inline value":    {id + " --account= why", "`--account` needs a value"},
		"option in the reason":  {id + " disk full --os windows11", "before the reason"},
		"inline in the reason":  {id + " disk full --account=admin", "before the reason"},
		"options before target": {"--os windows11 " + id + " why", "Name the Cloud PC first"},
		"markup as a value":     {id + " --os <!channel> why", "`--os` takes"},
		"markup as an option":   {id + " --<@U123> why", "Unknown option"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ParseCommand(c.text)
			if err == nil {
				t.Fatalf("ParseCommand(%q) = %+v, want an error", c.text, got)
			}
			var input inputError
			if !errors.As(err, &input) {
				t.Errorf("error %v is not an inputError (shown with usage)", err)
			}
			if !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("error %q does not mention %q", err, c.wantMsg)
			}
			for _, typed := range []string{"red", "windows95", "root", "color", "force", "<!channel>", "<@U123>", "disk"} {
				if strings.Contains(c.text, typed) && strings.Contains(err.Error(), typed) {
					t.Errorf("error %q echoes %q back", err, typed)
				}
			}
		})
	}
}

func TestUsageShowsTheOptions(t *testing.T) {
	t.Parallel()
	for _, want := range []string{"[--os windows10|windows11]", "[--account standard|administrator]", "local administrator"} {
		if !strings.Contains(Usage, want) {
			t.Errorf("Usage lacks %q", want)
		}
	}
}

// A list of Cloud PCs (commas, no spaces) is a batch: each item is read as
// one target is, repeats are kept (the workflow collapses them), and the
// options and the reason follow as for one Cloud PC.
func TestParseCommandLists(t *testing.T) {
	t.Parallel()
	cases := []struct {
		text    string
		targets []string
		opts    approvals.Options
		reason  string
	}{
		{"CPC-alice-01,CPC-bob-02 profile corrupt", []string{"CPC-alice-01", "CPC-bob-02"}, approvals.Options{}, "profile corrupt"},
		{"CPC-1," + strings.ToUpper(id) + ",Alice@Contoso.com why", []string{"CPC-1", id, "alice@contoso.com"}, approvals.Options{}, "why"},
		{"CPC-1,CPC-1,cpc-1 repeats", []string{"CPC-1", "CPC-1", "cpc-1"}, approvals.Options{}, "repeats"},
		{"CPC-1,CPC-2 --os windows11 --account=standard image upgrade", []string{"CPC-1", "CPC-2"},
			approvals.Options{OSVersion: approvals.OSWindows11, UserAccountType: approvals.AccountStandardUser}, "image upgrade"},
		{"CPC-1,CPC-2 --account admin", []string{"CPC-1", "CPC-2"}, approvals.Options{UserAccountType: approvals.AccountAdministrator}, ""},
		{"CPC-1,\u200bCPC-2 why", []string{"CPC-1", "CPC-2"}, approvals.Options{}, "why"},
	}
	for _, c := range cases {
		got, err := ParseCommand(c.text)
		if err != nil {
			t.Errorf("ParseCommand(%q): %v", c.text, err)
			continue
		}
		if !got.IsBatch() || got.Target != "" || got.Kind != 0 || got.Policy != "" || strings.Join(got.Targets, " ") != strings.Join(c.targets, " ") ||
			got.Options != c.opts || got.Reason != c.reason {
			t.Errorf("ParseCommand(%q) = %+v, want targets %q options %+v reason %q", c.text, got, c.targets, c.opts, c.reason)
		}
		if got.CloudPCID() != "" {
			t.Errorf("ParseCommand(%q).CloudPCID() = %q for a batch", c.text, got.CloudPCID())
		}
	}
	// One Cloud PC stays what it was.
	if got, err := ParseCommand("CPC-1 why"); err != nil || got.IsBatch() || got.Target != "CPC-1" || got.Targets != nil {
		t.Errorf("one Cloud PC: %+v, %v", got, err)
	}
}

// A bad item is named by its position, in the words a single bad target
// gets, never repeated; an empty item or a space in the list is said so.
func TestParseCommandRefusesBadLists(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ text, wantMsg string }{
		"third not a target":  {"CPC-1,CPC-2,!!! why", "Target 3 in the list: that is not a Cloud PC id (a GUID), a device name or a user sign-in name."},
		"second markup":       {"CPC-1,<@U0BOSS> why", "Target 2 in the list: a Cloud PC is named by its id"},
		"first path":          {"CPC/1,CPC-2 why", "Target 1 in the list: a Cloud PC name contains no path characters"},
		"bad upn":             {"CPC-1,bob@ why", "Target 2 in the list: that is not a user sign-in name"},
		"broken guid":         {"CPC-1,CPC-2,CPC-3,9e1f0b9a-2c3d-4e5f-8a9b why", "Target 4 in the list: that is not a Cloud PC id: expected a GUID"},
		"empty item":          {"CPC-1,,CPC-2 why", "empty item"},
		"trailing comma":      {"CPC-1,CPC-2, why", "empty item"},
		"leading comma":       {",CPC-1 why", "empty item"},
		"lone comma":          {", why", "empty item"},
		"space after a comma": {"CPC-1, CPC-2 why", "empty item"},
		"space in the list":   {"CPC-1,CPC-2 " + id + " why", "Separate the Cloud PCs by commas, without spaces"},
		"options first":       {"--os windows11 CPC-1,CPC-2 why", "Name the Cloud PC first"},
		"option in reason":    {"CPC-1,CPC-2 why --os windows11", "before the reason"},
		"policy after a list": {"CPC-1,CPC-2 --policy Sales why", "`--policy` comes first"},
		"too long":            {strings.Repeat("CPC-1,", maxBatchCommandText/6+1) + "CPC-2 why", "too long"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ParseCommand(c.text)
			if err == nil {
				t.Fatalf("ParseCommand(%q) = %+v, want an error", c.text, got)
			}
			var input inputError
			if !errors.As(err, &input) || !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("error %q (%T), want an inputError with %q", err, err, c.wantMsg)
			}
			for _, typed := range []string{"!!!", "<@U0BOSS>", "CPC/1", "bob@", "9e1f0b9a-2c3d-4e5f-8a9b"} {
				if strings.Contains(c.text, typed) && strings.Contains(err.Error(), typed) {
					t.Errorf("error %q echoes %q back", err, typed)
				}
			}
		})
	}
	// A list longer than one Cloud PC's limit is fine; one Cloud PC is not.
	long := strings.Repeat("CPC-alice-8X2K1,", 40) + "CPC-bob why"
	if got, err := ParseCommand(long); err != nil || len(got.Targets) != 41 {
		t.Errorf("a list of 41: %d targets, %v", len(got.Targets), err)
	}
	if _, err := ParseCommand("CPC-1 " + strings.Repeat("a", maxCommandText)); err == nil || !strings.Contains(err.Error(), "name one Cloud PC") {
		t.Errorf("one Cloud PC over its limit: %v", err)
	}
}

// --policy names a provisioning policy by id (a GUID) or by name, in
// double quotes when it has spaces (kept as typed inside them).
func TestParseCommandPolicy(t *testing.T) {
	t.Parallel()
	cases := []struct {
		text   string
		policy string
		opts   approvals.Options
		reason string
	}{
		{"--policy " + strings.ToUpper(id) + " image broken", id, approvals.Options{}, "image broken"},
		{"--policy=" + id + " why", id, approvals.Options{}, "why"},
		{`--policy "Sales EMEA" image broken`, "Sales EMEA", approvals.Options{}, "image broken"},
		{`--policy "  Sales  EMEA (W11) " why`, "Sales  EMEA (W11)", approvals.Options{}, "why"},
		{`--POLICY="Sales EMEA" why`, "Sales EMEA", approvals.Options{}, "why"},
		{"\u2014policy \u201cSales EMEA\u201d why", "Sales EMEA", approvals.Options{}, "why"},
		{"--policy Sales --os windows11 --account standard move to 11", "Sales",
			approvals.Options{OSVersion: approvals.OSWindows11, UserAccountType: approvals.AccountStandardUser}, "move to 11"},
		{`--policy "R&D Büro (2)"`, "R&D Büro (2)", approvals.Options{}, ""},
		{`--policy "Sales"`, "Sales", approvals.Options{}, ""},
	}
	for _, c := range cases {
		got, err := ParseCommand(c.text)
		if err != nil {
			t.Errorf("ParseCommand(%q): %v", c.text, err)
			continue
		}
		if !got.IsBatch() || got.Policy != c.policy || got.Targets != nil || got.Target != "" || got.Options != c.opts || got.Reason != c.reason {
			t.Errorf("ParseCommand(%q) = %+v, want policy %q options %+v reason %q", c.text, got, c.policy, c.opts, c.reason)
		}
	}
}

func TestParseCommandRefusesBadPolicies(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ text, wantMsg string }{
		"no value":              {"--policy", "`--policy` needs a provisioning policy"},
		"empty inline":          {"--policy= why", "`--policy` needs a provisioning policy"},
		"an option as value":    {"--policy --os windows11 why", "`--policy` needs a provisioning policy"},
		"empty quotes":          {`--policy "  " why`, "`--policy` needs a provisioning policy"},
		"no closing quote":      {`--policy "Sales EMEA why`, "no closing quote"},
		"no space after quote":  {`--policy "Sales"EMEA why`, "space after"},
		"half quoted":           {`--policy Sales"West" why`, "whole provisioning policy name in double quotes"},
		"broken id":             {"--policy 9e1f0b9a-2c3d-4e5f-8a9b why", "not a provisioning policy id"},
		"markup name":           {`--policy "<!channel>" why`, "starting with a letter or digit"},
		"starts with a symbol":  {`--policy "-x" why`, "starting with a letter or digit"},
		"backtick":              {"--policy \"Sales`EMEA\" why", "starting with a letter or digit"},
		"percent":               {`--policy "Sales%2F" why`, "starting with a letter or digit"},
		"too long":              {`--policy "` + strings.Repeat("a", maxPolicyName+1) + `" why`, "starting with a letter or digit"},
		"non-breaking space":    {"--policy \"Sales\u00a0EMEA\" why", "starting with a letter or digit"},
		"twice":                 {`--policy Sales --policy Other why`, "`--policy` comes first, once"},
		"policy in the reason":  {`--policy Sales why --policy Other`, "`--policy` comes first"},
		"options before policy": {"--os windows11 --policy Sales why", "Name the Cloud PC first"},
		"shell reason":          {`--policy "Sales" ; rm -rf /`, "start with a letter or digit"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ParseCommand(c.text)
			if err == nil {
				t.Fatalf("ParseCommand(%q) = %+v, want an error", c.text, got)
			}
			var input inputError
			if !errors.As(err, &input) || !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("error %q (%T), want an inputError with %q", err, err, c.wantMsg)
			}
			for _, typed := range []string{"<!channel>", "Sales%2F", "Sales`EMEA", "9e1f0b9a-2c3d-4e5f-8a9b", "West"} {
				if strings.Contains(c.text, typed) && strings.Contains(err.Error(), typed) {
					t.Errorf("error %q echoes %q back", err, typed)
				}
			}
		})
	}
}

func TestUsageShowsBatches(t *testing.T) {
	t.Parallel()
	for _, want := range []string{"<cloud PC>,<cloud PC>,…", "--policy <policy id | \"policy name\">"} {
		if !strings.Contains(Usage, want) {
			t.Errorf("Usage lacks %q", want)
		}
	}
}
