package bot

import "regexp"

// Slack IDs: upper-case letters and digits after a type letter (U or W for
// users, C, G or D for channels). Checked so that a name or a lower-case typo
// in the configuration is caught at start-up rather than locking everyone
// out, and so that mentions built from them render.
var (
	slackUserID    = regexp.MustCompile(`^[UW][A-Z0-9]{2,20}$`)
	slackChannelID = regexp.MustCompile(`^[CGD][A-Z0-9]{2,20}$`)
)

// ValidUserID reports whether s looks like a Slack user ID (U…, W…).
func ValidUserID(s string) bool { return slackUserID.MatchString(s) }

// ValidChannelID reports whether s looks like a Slack channel ID (C…, G…, D…).
func ValidChannelID(s string) bool { return slackChannelID.MatchString(s) }
