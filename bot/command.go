package bot

import (
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// Command is a parsed `/reprovision` invocation.
type Command struct {
	// Help is set for `/reprovision` alone or `/reprovision help`.
	Help bool
	// CloudPCID is the validated Cloud PC id, lower case.
	CloudPCID string
}

// maxCommandText bounds what we even look at: a GUID is 36 characters, so
// anything much longer is not a Cloud PC id.
const maxCommandText = 200

// Usage is the reply to `/reprovision help`.
const Usage = "*Usage:* `/reprovision <cloud PC id>`\n" +
	"Asks the designated approver to reprovision that Windows 365 Cloud PC. " +
	"The id is a GUID, e.g. `4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b` (Intune › Devices › Windows 365 › the Cloud PC › Device ID).\n" +
	"Reprovisioning signs the user out and *deletes all their data and apps*."

// ParseCommand validates the text after `/reprovision`. The returned error is
// safe to show to the user as is: it never echoes their input back (which
// could carry Slack markup).
func ParseCommand(text string) (Command, error) {
	if len(text) > maxCommandText {
		return Command{}, errors.New("That is too long to be a Cloud PC id (a GUID has 36 characters).")
	}
	if !utf8.ValidString(text) {
		return Command{}, errors.New("The text is not valid UTF-8.")
	}
	for _, r := range text {
		// Slack turns newlines into spaces for slash commands, but a
		// payload could still carry them; no control character is ever
		// part of an id.
		if unicode.IsControl(r) && r != ' ' && r != '\t' {
			return Command{}, errors.New("The text contains control characters; expected a Cloud PC id.")
		}
	}
	fields := strings.Fields(text)
	switch {
	case len(fields) == 0:
		return Command{Help: true}, nil
	case len(fields) == 1 && strings.EqualFold(fields[0], "help"):
		return Command{Help: true}, nil
	case len(fields) > 1:
		return Command{}, errors.New("Expected exactly one Cloud PC id and nothing after it.")
	}
	id := fields[0]
	if strings.ContainsAny(id, "<>&*_~`|") {
		return Command{}, errors.New("A Cloud PC id contains no markup or mentions; expected a GUID.")
	}
	if strings.ContainsAny(id, `/\%`) || strings.Contains(id, "..") {
		return Command{}, errors.New("A Cloud PC id contains no path characters (`/`, `\\`, `%`, `..`).")
	}
	if !approvals.ValidCloudPCID(id) {
		return Command{}, errors.New("That is not a Cloud PC id: expected a GUID like `4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b`.")
	}
	return Command{CloudPCID: strings.ToLower(id)}, nil
}
