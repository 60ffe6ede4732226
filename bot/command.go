package bot

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// TargetKind says how a Cloud PC was named.
type TargetKind int

const (
	TargetID         TargetKind = iota + 1 // a Cloud PC id (GUID)
	TargetDeviceName                       // a device name such as CPC-alice-8X2K1
	TargetUPN                              // the user's principal name, alice@contoso.com
)

// Command is a parsed `/reprovision` invocation: one Cloud PC (Target), or
// a batch (batchcommand.go): several Cloud PCs (Targets) or a provisioning
// policy's (Policy).
type Command struct {
	// Help is set for `/reprovision` alone or `/reprovision help`.
	Help bool
	// Target is the Cloud PC as named: id (lower case), device name or UPN.
	Target string
	Kind   TargetKind
	// Targets are a batch's Cloud PCs as listed, each checked and written
	// like Target (repeats kept: the workflow collapses them).
	Targets []string
	// Policy is a batch's provisioning policy: its id (lower case) or its
	// display name as typed.
	Policy string
	// Reason is why; empty means the bot must ask for it.
	Reason string
	// Options are the reprovision options given (--os, --account), in
	// Graph's values; zero when none was given.
	Options approvals.Options
}

// CloudPCID is the id when the target is one, else "".
func (c Command) CloudPCID() string {
	if c.Kind == TargetID {
		return c.Target
	}
	return ""
}

const (
	// maxCommandText bounds a command for one Cloud PC.
	maxCommandText = 600
	// MaxReason keeps a reason readable on a prompt (Slack sections hold 3000).
	MaxReason = 500
)

// Usage is the reply to `/reprovision help`.
const Usage = "*Usage:* `/reprovision <cloud PC id | device name | user@domain> [--os windows10|windows11] [--account standard|administrator] <reason>`\n" +
	"Several at once (a batch, one approval): `/reprovision <cloud PC>,<cloud PC>,… [options] <reason>` (commas, no spaces), " +
	"or every Cloud PC of a provisioning policy: `/reprovision --policy <policy id | \"policy name\"> [options] <reason>`.\n" +
	"Asks an approver to reprovision that Windows 365 Cloud PC. Name it by its id (a GUID such as " +
	"`4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b`), its device name (`CPC-alice-8X2K1`) or its user's sign-in name. " +
	"Say why after it; without a reason you are asked for one.\n" +
	"Options, each at most once, go right after the Cloud PC: `--os windows11` reprovisions with Windows 11 (how a Windows 10 Cloud PC " +
	"moves to Windows 11), `--os windows10` with Windows 10; `--account standard` makes the user a standard user, " +
	"`--account administrator` a local administrator. Without them it is reprovisioned as provisioned.\n" +
	"Reprovisioning signs the user out and *deletes all their data and apps*."

// ParseCommand validates the text after `/reprovision`. The returned error is
// safe to show to the user as is: it never echoes their input back (which
// could carry Slack markup).
func ParseCommand(text string) (Command, error) {
	if len(text) > maxBatchCommandText {
		return Command{}, errBatchTooLong
	}
	if !utf8.ValidString(text) {
		return Command{}, inputError("The text is not valid UTF-8.")
	}
	// Invisible characters are most likely pasted along with a name; they
	// go before anything is checked, so what is stored is what is seen.
	text = stripInvisible(text)
	for _, r := range text {
		// Slack turns newlines into spaces for slash commands, but a
		// payload could still carry them; no control character belongs in
		// a target or a reason.
		if unicode.IsControl(r) && r != ' ' && r != '\t' {
			return Command{}, inputError("The text contains control characters.")
		}
	}
	fields := strings.Fields(text)
	if len(fields) == 0 || (len(fields) == 1 && strings.EqualFold(fields[0], "help")) {
		return Command{Help: true}, nil
	}
	if isPolicyOption(fields[0]) {
		return parsePolicyCommand(text, fields[0])
	}
	list := strings.Contains(fields[0], ",")
	if len(text) > maxCommandText && !list {
		return Command{}, errTooLong
	}
	if looksLikeOption(fields[0]) {
		return Command{}, errOptionsFirst
	}
	var target Command
	var err error
	if list {
		target.Targets, err = parseTargetList(fields[0])
	} else {
		target, err = parseTarget(fields[0])
	}
	if err != nil {
		return Command{}, err
	}
	return withOptionsAndReason(target, fields[1:])
}

// withOptionsAndReason completes c with the options and the reason that
// follow its Cloud PC, its list or its policy.
func withOptionsAndReason(c Command, fields []string) (Command, error) {
	opts, n, err := parseOptions(fields)
	if err != nil {
		return Command{}, err
	}
	c.Options = opts
	rest := fields[n:]
	for _, f := range rest {
		// An option among the reason's words would not be sent: the
		// requester would believe they asked for it.
		switch {
		case isPolicyOption(f):
			return Command{}, errPolicyPlace
		case isKnownOption(f):
			return Command{}, errOptionInReason
		}
	}
	if len(c.Targets) > 0 && len(rest) > 0 && approvals.ValidCloudPCID(rest[0]) {
		return Command{}, errListSpaces // a list with a space in it
	}
	c.Reason = strings.Join(rest, " ")
	if err := CheckReason(c.Reason, false); err != nil {
		return Command{}, err
	}
	return c, nil
}

// The refusals of options; like every inputError they never repeat what
// was typed.
var (
	errTooLong        = inputError("That is too long: name one Cloud PC and give a short reason.")
	errOptionsFirst   = inputError("Name the Cloud PC first, then any options (`--os`, `--account`), then the reason.")
	errUnknownOption  = inputError("Unknown option: the options are `--os windows10|windows11` and `--account standard|administrator`.")
	errOptionInReason = inputError("Options go right after the Cloud PC, before the reason.")
	errOSTwice        = inputError("`--os` is given twice.")
	errAccountTwice   = inputError("`--account` is given twice.")
	errOSMissing      = inputError("`--os` needs a value: `windows10` or `windows11`.")
	errAccountMissing = inputError("`--account` needs a value: `standard` or `administrator`.")
	errOSValue        = inputError("`--os` takes `windows10` or `windows11`.")
	errAccountValue   = inputError("`--account` takes `standard` or `administrator`.")
)

// parseOptions reads the options at the start of fields: `--os VALUE`,
// `--os=VALUE`, `--account VALUE`, `--account=VALUE` (names and values in
// any case), each at most once. It returns them in Graph's values and how
// many fields they took. Every field that looks like an option there
// (looksLikeOption) must be one of them.
func parseOptions(fields []string) (approvals.Options, int, error) {
	var opts approvals.Options
	seenOS, seenAccount := false, false
	i := 0
	for i < len(fields) && looksLikeOption(fields[i]) {
		rest, _ := cutOptionDashes(fields[i])
		name, value, inline := strings.Cut(rest, "=")
		i++
		var isOS bool
		switch strings.ToLower(name) {
		case "os":
			if seenOS {
				return approvals.Options{}, 0, errOSTwice
			}
			seenOS, isOS = true, true
		case "account":
			if seenAccount {
				return approvals.Options{}, 0, errAccountTwice
			}
			seenAccount = true
		case "policy":
			return approvals.Options{}, 0, errPolicyPlace
		default:
			return approvals.Options{}, 0, errUnknownOption
		}
		if !inline && i < len(fields) && !looksLikeOption(fields[i]) {
			value = fields[i]
			i++
		}
		var ok bool
		switch {
		case value == "" && isOS:
			return approvals.Options{}, 0, errOSMissing
		case value == "":
			return approvals.Options{}, 0, errAccountMissing
		case isOS:
			if opts.OSVersion, ok = osVersionOf(value); !ok {
				return approvals.Options{}, 0, errOSValue
			}
		default:
			if opts.UserAccountType, ok = accountTypeOf(value); !ok {
				return approvals.Options{}, 0, errAccountValue
			}
		}
	}
	return opts, i, nil
}

// osVersionOf maps what `--os` takes (windows10, windows11, in any case)
// to Graph's value.
func osVersionOf(s string) (string, bool) {
	switch strings.ToLower(s) {
	case "windows10":
		return approvals.OSWindows10, true
	case "windows11":
		return approvals.OSWindows11, true
	}
	return "", false
}

// accountTypeOf maps what `--account` takes to Graph's value: standard (or
// Graph's own standardUser), administrator (or admin), in any case.
func accountTypeOf(s string) (string, bool) {
	switch strings.ToLower(s) {
	case "standard", "standarduser":
		return approvals.AccountStandardUser, true
	case "administrator", "admin":
		return approvals.AccountAdministrator, true
	}
	return "", false
}

// cutOptionDashes removes the "--" an option starts with, or the en or em
// dash that "smart punctuation" makes of it.
func cutOptionDashes(s string) (string, bool) {
	for _, dashes := range []string{"--", "\u2014", "\u2013"} {
		if rest, ok := strings.CutPrefix(s, dashes); ok {
			return rest, true
		}
	}
	return s, false
}

// looksLikeOption: a field meant as an option, well written or not: it
// starts with "--" (or a dash cutOptionDashes takes for it), or with one
// "-" and a letter.
func looksLikeOption(s string) bool {
	if _, ok := cutOptionDashes(s); ok {
		return true
	}
	return len(s) > 1 && s[0] == '-' && unicode.IsLetter(rune(s[1]))
}

// isKnownOption: s is `--os` or `--account`, alone or with `=VALUE`.
func isKnownOption(s string) bool {
	rest, ok := cutOptionDashes(s)
	if !ok {
		return false
	}
	name, _, _ := strings.Cut(rest, "=")
	return strings.EqualFold(name, "os") || strings.EqualFold(name, "account")
}

func parseTarget(s string) (Command, error) {
	s = stripInvisible(s)
	switch {
	case strings.ContainsAny(s, "<>&*_~`|\"") && !approvals.ValidUPN(s):
		return Command{}, inputError("A Cloud PC is named by its id, device name or user's sign-in name: no markup or mentions.")
	case strings.ContainsAny(s, `/\%?#`) || strings.Contains(s, ".."):
		return Command{}, inputError("A Cloud PC name contains no path characters (`/`, `\\`, `%`, `?`, `#`, `..`).")
	case approvals.ValidCloudPCID(s):
		return Command{Target: strings.ToLower(s), Kind: TargetID}, nil
	case strings.Contains(s, "@"):
		if !approvals.ValidUPN(s) {
			return Command{}, inputError("That is not a user sign-in name (user@domain).")
		}
		return Command{Target: strings.ToLower(s), Kind: TargetUPN}, nil
	case looksLikeBrokenGUID(s):
		return Command{}, inputError("That is not a Cloud PC id: expected a GUID like `4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b`.")
	case approvals.ValidDeviceName(s):
		return Command{Target: s, Kind: TargetDeviceName}, nil
	}
	return Command{}, inputError("That is not a Cloud PC id (a GUID), a device name or a user sign-in name.")
}

// looksLikeBrokenGUID catches a mistyped id, so it is not searched for as
// a device name.
func looksLikeBrokenGUID(s string) bool {
	return strings.Count(s, "-") >= 3 && strings.Trim(strings.ToLower(s), "0123456789abcdef-{}") == ""
}

// CheckReason validates a reason typed after the target or in the form.
// Reasons are free text, shown escaped, never part of a URL; but one that
// starts like a shell command or another id is a mistake, not a reason.
func CheckReason(reason string, required bool) error {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		if required {
			return inputError("Please give a reason.")
		}
		return nil
	}
	if utf8.RuneCountInString(reason) > MaxReason {
		return inputError("The reason is too long (500 characters at most).")
	}
	for _, r := range reason {
		if unicode.IsControl(r) && r != '\n' && r != ' ' && r != '\t' {
			return inputError("The reason contains control characters.")
		}
	}
	first, _ := utf8.DecodeRuneInString(reason)
	if !unicode.IsLetter(first) && !unicode.IsDigit(first) {
		return inputError("Name exactly one Cloud PC, then a reason in words (it must start with a letter or digit).")
	}
	if approvals.ValidCloudPCID(strings.Fields(reason)[0]) {
		return inputError("Name exactly one Cloud PC per request.")
	}
	return nil
}

// isInvisible reports whether r changes how text reads without being seen:
// the bidi controls (U+202A–U+202E embeddings and overrides, U+2066–U+2069
// isolates, U+200E/U+200F marks, U+061C the Arabic letter mark), which can
// make a target or reason show differently from what is stored, and the
// zero-width characters (U+200B–U+200D, U+2060 word joiner, U+FEFF byte
// order mark), which make two names that look the same differ.
func isInvisible(r rune) bool {
	switch {
	case r >= '\u202A' && r <= '\u202E', r >= '\u2066' && r <= '\u2069', r == '\u200E', r == '\u200F', r == '\u061C':
		return true
	case r >= '\u200B' && r <= '\u200D', r == '\u2060', r == '\uFEFF':
		return true
	}
	// Every other invisible format character too: soft hyphens, invisible
	// operators, deprecated format controls, tag characters.
	return unicode.Is(unicode.Cf, r)
}

// stripInvisible removes the characters isInvisible names from s. Targets
// and reasons (the command's text, the reason and deny forms) pass through
// it before they are checked and stored: a target with such characters is
// a paste accident, so it is stripped and then validated like any other;
// a reason keeps its words.
func stripInvisible(s string) string {
	if !strings.ContainsFunc(s, isInvisible) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isInvisible(r) {
			return -1
		}
		return r
	}, s)
}

// inputError is a mistake in what someone typed; its text is shown to them
// as it is (it never echoes their input, which could carry Slack markup).
type inputError string

func (e inputError) Error() string { return string(e) }
