package bot

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// manifestBotScopes reads oauth_config.scopes.bot from the Slack app
// manifest. The module has no YAML library, and the manifest is plain block
// YAML, so keys are followed by indentation; it fails the test on anything
// it does not understand under that key (flow style, anchors, quoting).
func manifestBotScopes(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../deploy/slack-app-manifest.yaml")
	if err != nil {
		t.Fatalf("reading the manifest: %v", err)
	}
	var stack []yamlLevel
	var scopes []string
	found := false
	for n, line := range strings.Split(string(raw), "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		text := strings.TrimSpace(line)
		if strings.HasPrefix(text, "- ") {
			// A list item belongs to the innermost key with a smaller indent.
			for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
				stack = stack[:len(stack)-1]
			}
			if path(stack) == "oauth_config.scopes.bot" {
				item := strings.TrimSpace(strings.TrimPrefix(text, "- "))
				if !validScope(item) {
					t.Fatalf("manifest line %d: cannot read bot scope %q", n+1, item)
				}
				scopes = append(scopes, item)
			}
			continue
		}
		key, value, ok := strings.Cut(text, ":")
		if !ok {
			continue
		}
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		stack = append(stack, yamlLevel{indent, key})
		if path(stack) == "oauth_config.scopes.bot" {
			found = true
			if v := strings.TrimSpace(value); v != "" {
				t.Fatalf("manifest line %d: oauth_config.scopes.bot in flow style (%q); this test reads block lists only", n+1, v)
			}
		}
	}
	if !found || len(scopes) == 0 {
		t.Fatal("manifest: no oauth_config.scopes.bot list")
	}
	return scopes
}

// yamlLevel is one open mapping key and its indentation.
type yamlLevel struct {
	indent int
	key    string
}

func path(stack []yamlLevel) string {
	keys := make([]string, len(stack))
	for i, l := range stack {
		keys[i] = l.key
	}
	return strings.Join(keys, ".")
}

// validScope: Slack scope names are lower-case words joined by ':' and '.'.
func validScope(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r == ':' || r == '.' || r == '_') {
			return false
		}
	}
	return s != ""
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestRequiredBotScopesMatchManifest: the scopes check compares against and
// the scopes the manifest grants cannot drift apart.
func TestRequiredBotScopesMatchManifest(t *testing.T) {
	t.Parallel()
	manifest := manifestBotScopes(t)
	required := SplitScopes(RequiredBotScopes)
	if !slices.Equal(sorted(required), sorted(manifest)) {
		t.Errorf("RequiredBotScopes = %v, the manifest's bot scopes = %v: change both together", required, manifest)
	}
	for _, s := range required {
		if !validScope(s) {
			t.Errorf("RequiredBotScopes has %q, not a Slack scope name", s)
		}
	}
	// The fake Slack grants the bot token what the manifest grants, by default.
	if got := SplitScopes(fakes.DefaultBotScopes); !slices.Equal(sorted(got), sorted(manifest)) {
		t.Errorf("fakes.DefaultBotScopes = %v, the manifest's bot scopes = %v", got, manifest)
	}
}

func TestMissingBotScopes(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		granted string
		want    []string
	}{
		"exactly":          {"commands,chat:write,users:read,users:read.email", nil},
		"other order":      {"users:read.email,users:read,chat:write,commands", nil},
		"more than needed": {"commands,chat:write,users:read,users:read.email,im:write,channels:read", nil},
		"spaces":           {"commands, chat:write , users:read,users:read.email", nil},
		"none":             {"", []string{"commands", "chat:write", "users:read", "users:read.email"}},
		"email missing":    {"commands,chat:write,users:read", []string{"users:read.email"}},
		// users:read.email does not stand in for users:read, nor a prefix
		// for a scope.
		"read missing":   {"commands,chat:write,users:read.email", []string{"users:read"}},
		"prefix only":    {"commands,chat:write:bot,users:read,users:read.email", []string{"chat:write"}},
		"case matters":   {"COMMANDS,chat:write,users:read,users:read.email", []string{"commands"}},
		"two missing":    {"users:read", []string{"commands", "chat:write", "users:read.email"}},
		"empty elements": {",,commands,,chat:write,users:read,users:read.email,", nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := MissingBotScopes(c.granted); !slices.Equal(got, c.want) {
				t.Errorf("MissingBotScopes(%q) = %q, want %q", c.granted, got, c.want)
			}
		})
	}
}

func TestSplitScopes(t *testing.T) {
	t.Parallel()
	if got := SplitScopes(" a,b ,, c\t,"); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("SplitScopes = %q", got)
	}
	if got := SplitScopes(""); got != nil {
		t.Errorf("SplitScopes(\"\") = %q, want nil", got)
	}
}
