package bot

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// A batch is asked for in two ways (ParseCommand reads both):
//
//	/reprovision <t1>,<t2>,… [--os …] [--account …] <reason…>
//	/reprovision --policy <policy id | "policy name"> [--os …] [--account …] <reason…>
//
// Each listed target is checked exactly like a single one (parseTarget);
// a bad one is named by its position, never repeated. Repeats are kept:
// the workflow collapses them, and refuses a list longer than its limit.

const (
	// maxBatchCommandText bounds a command that lists Cloud PCs: fifty user
	// principal names at their longest, options and a reason fit.
	maxBatchCommandText = 8000
	// maxPolicyName bounds a provisioning policy's name.
	maxPolicyName = approvals.MaxPolicyNameLength
)

// IsBatch reports whether c asks for several Cloud PCs or a policy's.
func (c Command) IsBatch() bool { return len(c.Targets) > 0 || c.Policy != "" }

// The refusals of a batch's text; like every inputError they never repeat
// what was typed.
var (
	errBatchTooLong = inputError("That is too long: list fewer Cloud PCs or give a shorter reason.")
	errListItem     = inputError("The list of Cloud PCs has an empty item: separate them by single commas, without spaces (`CPC-1,CPC-2`).")
	errListSpaces   = inputError("Separate the Cloud PCs by commas, without spaces (`CPC-1,CPC-2`).")
	errPolicyPlace  = inputError("`--policy` comes first, once, instead of Cloud PCs: `/reprovision --policy <policy id | \"policy name\"> [options] <reason>`.")
	errPolicyValue  = inputError("`--policy` needs a provisioning policy: its id, or its name in double quotes (`--policy \"Sales EMEA\"`).")
	errPolicyQuote  = inputError("The provisioning policy's name has no closing quote.")
	errPolicySpace  = inputError("Put a space after the provisioning policy's closing quote.")
	errPolicyQuotes = inputError("Put the whole provisioning policy name in double quotes: `--policy \"Sales EMEA\"`.")
	errPolicyID     = inputError("That is not a provisioning policy id: expected a GUID like `4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b`; put a name in double quotes.")
	errPolicyName   = inputError("A provisioning policy's name is 1 to 128 letters, digits, spaces and `. _ ( ) & ' + , : @ ! [ ] -`, starting with a letter or digit. Or give the policy's id.")
)

// parseTargetList reads a comma-separated list of Cloud PCs (one field, no
// spaces): each item as parseTarget reads one. An empty item (two commas,
// a comma at either end) is a mistake, most likely a space after a comma.
func parseTargetList(field string) ([]string, error) {
	items := strings.Split(field, ",")
	targets := make([]string, 0, len(items))
	for i, item := range items {
		if item == "" {
			return nil, errListItem
		}
		t, err := parseTarget(item)
		if err != nil {
			return nil, targetAt(i+1, err)
		}
		targets = append(targets, t.Target)
	}
	return targets, nil
}

// targetAt is parseTarget's refusal of the n-th item of a list: the
// position, then the same fixed words (which never repeat the item).
func targetAt(n int, err error) error {
	text := err.Error()
	first, size := utf8.DecodeRuneInString(text)
	return inputError(fmt.Sprintf("Target %d in the list: %c%s", n, unicode.ToLower(first), text[size:]))
}

// isPolicyOption: s is `--policy`, alone or with `=VALUE` (any case, or the
// dashes "smart punctuation" makes).
func isPolicyOption(s string) bool {
	rest, ok := cutOptionDashes(s)
	if !ok {
		return false
	}
	name, _, _ := strings.Cut(rest, "=")
	return strings.EqualFold(name, "policy")
}

// policyQuotes open and close a quoted policy name: the straight double
// quote and the curly ones Slack's clients may make of it.
const policyQuotes = "\"\u201c\u201d\u201e"

// parsePolicyCommand reads `--policy VALUE [options] [reason]`. text is the
// whole command (invisible characters stripped, no control characters),
// option its first field. VALUE is an id, a one-word name, or a name in
// double quotes, kept as typed inside them (only trimmed), so that it
// matches the policy's display name exactly.
func parsePolicyCommand(text, option string) (Command, error) {
	rest := strings.TrimLeftFunc(text, unicode.IsSpace) // starts with option
	if name, _, inline := strings.Cut(option, "="); inline {
		rest = rest[len(name)+1:]
	} else {
		rest = strings.TrimLeftFunc(rest[len(option):], unicode.IsSpace)
	}
	value, rest, err := cutPolicyValue(rest)
	if err != nil {
		return Command{}, err
	}
	policy, err := checkPolicy(value)
	if err != nil {
		return Command{}, err
	}
	return withOptionsAndReason(Command{Policy: policy}, strings.Fields(rest))
}

// cutPolicyValue takes the policy from the start of s: up to its closing
// quote when it starts with one, else up to the next space.
func cutPolicyValue(s string) (value, rest string, err error) {
	if s == "" || looksLikeOption(s) {
		return "", "", errPolicyValue
	}
	if open, size := utf8.DecodeRuneInString(s); strings.ContainsRune(policyQuotes, open) {
		inner := s[size:]
		end := strings.IndexAny(inner, policyQuotes)
		if end < 0 {
			return "", "", errPolicyQuote
		}
		_, closing := utf8.DecodeRuneInString(inner[end:])
		rest = inner[end+closing:]
		if next, _ := utf8.DecodeRuneInString(rest); rest != "" && !unicode.IsSpace(next) {
			return "", "", errPolicySpace
		}
		return inner[:end], rest, nil
	}
	value, rest = s, ""
	if end := strings.IndexFunc(s, unicode.IsSpace); end >= 0 {
		value, rest = s[:end], s[end:]
	}
	if strings.ContainsAny(value, policyQuotes) {
		return "", "", errPolicyQuotes
	}
	return value, rest, nil
}

// checkPolicy validates a provisioning policy as asked for: a GUID is its
// id (lower case); anything else its display name, as
// approvals.ValidPolicyName allows (the rule the Graph adapter checks too,
// so a name taken here is never refused after the sign-in).
func checkPolicy(value string) (string, error) {
	value = strings.TrimSpace(value)
	switch {
	case value == "":
		return "", errPolicyValue
	case approvals.ValidCloudPCID(value):
		return strings.ToLower(value), nil
	case looksLikeBrokenGUID(value):
		return "", errPolicyID
	case !approvals.ValidPolicyName(value):
		return "", errPolicyName
	}
	return value, nil
}
