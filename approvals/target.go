package approvals

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// What may name a Cloud PC besides its id. Both patterns leave out every
// character that could change a URL path or an OData filter's meaning, so
// a checked name is safe to look up.
var (
	deviceNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	// A conservative user principal name: no %, /, \, quotes other than the
	// apostrophe, spaces or '#'; at most 64 characters before the @ and a
	// dotted DNS domain after it.
	upnPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.'+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$`)
)

// maxUPNLength is Entra's limit for a user principal name.
const maxUPNLength = 113

// ValidDeviceName reports whether s may be looked up as a Cloud PC's device
// or display name: ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$.
func ValidDeviceName(s string) bool { return deviceNamePattern.MatchString(s) }

// ValidUPN reports whether s may be looked up as a user principal name (a
// conservative e-mail-like pattern, apostrophe allowed, at most 113
// characters).
func ValidUPN(s string) bool { return len(s) <= maxUPNLength && upnPattern.MatchString(s) }

// MaxPolicyNameLength bounds a provisioning policy display name to look up (runes).
const MaxPolicyNameLength = 128

// policyNamePattern: letters (any script, with their combining marks), digits, spaces
// and a few punctuation marks display names use; a letter or digit first. It leaves
// out quotes other than the apostrophe, %, /, \, #, ?, *, $, =, ;, markup and control
// characters, so a checked name cannot change the URL or the OData filter (the value
// is query-escaped and the apostrophe doubled in the literal).
var policyNamePattern = regexp.MustCompile(`^[\p{L}\p{N}][\p{L}\p{M}\p{N} ._()&'+,:@!\[\]-]*$`)

// ValidPolicyName reports whether s may be looked up as a provisioning policy's
// display name: at most MaxPolicyNameLength characters, starting with a letter or
// digit, not ending with a space, with only letters, digits, spaces and
// . _ ( ) & ' + , : @ ! [ ] - after the first.
func ValidPolicyName(s string) bool {
	return utf8.ValidString(s) && utf8.RuneCountInString(s) <= MaxPolicyNameLength && strings.TrimSpace(s) == s &&
		policyNamePattern.MatchString(s)
}
