package bot

import (
	"slices"
	"strings"
)

// RequiredBotScopes are the OAuth scopes the bot token must carry, in the
// form of Slack's x-oauth-scopes response header (comma-separated). They are
// deploy/slack-app-manifest.yaml's oauth_config.scopes.bot, no more and no
// less (a test keeps the two equal):
//
//   - commands: the /reprovision slash command;
//   - chat:write: chat.postMessage (prompts, DMs, thread progress),
//     chat.update (prompt state), chat.postEphemeral (private replies);
//   - users:read: users.info, the approver's profile;
//   - users:read.email: the profile email in users.info, the Entra username
//     an approver must sign in as unless REPROVISION_APPROVER_UPNS names it;
//     and users.lookupByEmail, which finds the Cloud PC's user by its user
//     principal name for the heads-up (ChatUserByEmail).
//
// views.open, views.publish and auth.test need no scope; the app_home_opened
// event needs none either.
const RequiredBotScopes = "commands,chat:write,users:read,users:read.email"

// SplitScopes splits a scope list as Slack writes it in x-oauth-scopes
// ("a,b,c"; spaces tolerated) into its scopes, empty ones dropped.
func SplitScopes(list string) []string {
	var out []string
	for _, s := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// MissingBotScopes returns the scopes of RequiredBotScopes that granted (an
// x-oauth-scopes header value) lacks, in RequiredBotScopes order; nil when
// none is missing. Scopes are compared exactly: Slack's scope names are
// lower case, and users:read does not imply users:read.email.
func MissingBotScopes(granted string) []string {
	return missingScopes(RequiredBotScopes, granted)
}

func missingScopes(required, granted string) []string {
	have := SplitScopes(granted)
	var missing []string
	for _, s := range SplitScopes(required) {
		if !slices.Contains(have, s) {
			missing = append(missing, s)
		}
	}
	return missing
}
