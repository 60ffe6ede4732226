package bot

import "testing"

func TestValidSlackIDs(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{"U0A1": true, "W0GRID": true, "u0a1": false, "C0OPS": false, "U": false, "": false, "U0A1 ": false} {
		if got := ValidUserID(s); got != want {
			t.Errorf("ValidUserID(%q) = %v", s, got)
		}
	}
	for s, want := range map[string]bool{"C0OPS": true, "G0PRIV": true, "D0DM": true, "U0A1": false, "#ops": false, "": false} {
		if got := ValidChannelID(s); got != want {
			t.Errorf("ValidChannelID(%q) = %v", s, got)
		}
	}
}
