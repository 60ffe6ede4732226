package bot

import (
	"strings"
	"testing"
)

func TestParseCommandAcceptsACloudPCID(t *testing.T) {
	for _, text := range []string{
		"4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
		"  4E1F0B9A-2C3D-4E5F-8A9B-0C1D2E3F4A5B  ",
		"\t4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
	} {
		got, err := ParseCommand(text)
		if err != nil {
			t.Fatalf("ParseCommand(%q): %v", text, err)
		}
		if got.Help || got.CloudPCID != "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b" {
			t.Errorf("ParseCommand(%q) = %+v, want the lower-case id", text, got)
		}
	}
}

func TestParseCommandHelp(t *testing.T) {
	for _, text := range []string{"", "   ", "help", "HELP", " help "} {
		got, err := ParseCommand(text)
		if err != nil || !got.Help {
			t.Errorf("ParseCommand(%q) = %+v, %v; want help", text, got, err)
		}
	}
}

func TestParseCommandRefusesWhatIsNotAnID(t *testing.T) {
	const id = "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
	cases := map[string]struct{ text, wantMsg string }{
		"not a guid":         {"alice-laptop", "not a Cloud PC id"},
		"guid too short":     {"9e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5", "not a Cloud PC id"},
		"slash":              {id + "/../../users", "path characters"},
		"dot dot":            {"..", "path characters"},
		"encoded dot":        {"%2e%2e", "path characters"},
		"backslash":          {`4e1f0b9a\2c3d`, "path characters"},
		"mention markup":     {"<@U123>", "markup"},
		"link markup":        {"<https://evil.example|click>", "markup"},
		"newline":            {id + "\nrm -rf /", "control characters"},
		"nul":                {id + "\x00", "control characters"},
		"escape":             {"\x1b[31m" + id, "control characters"},
		"extra shell text":   {id + " ; rm -rf /", "nothing after it"},
		"two ids":            {id + " " + id, "nothing after it"},
		"over-long":          {strings.Repeat("a", 201), "too long"},
		"invalid utf8":       {"\xff\xfe", "UTF-8"},
		"braced guid":        {"{" + id + "}", "not a Cloud PC id"},
		"unicode look-alike": {"４e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b", "not a Cloud PC id"},
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
			if strings.Contains(err.Error(), c.text) && len(c.text) > 2 {
				t.Errorf("error %q echoes the input back", err)
			}
		})
	}
}
