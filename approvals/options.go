package approvals

import (
	"fmt"
	"strings"
)

// Options are the reprovision call's optional parameters, as Graph (and
// PowerShell's -OSVersion and -UserAccountType) take them. The zero value
// sends none: Graph keeps the Cloud PC's current choices.
type Options struct {
	// OSVersion is "", OSWindows10 or OSWindows11. Reprovisioning with
	// OSWindows11 is how a Windows 10 Cloud PC is moved to Windows 11.
	OSVersion string
	// UserAccountType is "", AccountStandardUser or AccountAdministrator:
	// whether the user is a local administrator on the new Cloud PC.
	UserAccountType string
}

// Graph's values for Options.
const (
	OSWindows10          = "windows10"
	OSWindows11          = "windows11"
	AccountStandardUser  = "standardUser"
	AccountAdministrator = "administrator"
)

// IsZero reports whether no option is set.
func (o Options) IsZero() bool { return o == Options{} }

// Validate accepts only Graph's own values: anything else would be sent in
// the call's body.
func (o Options) Validate() error {
	var problems []string
	switch o.OSVersion {
	case "", OSWindows10, OSWindows11:
	default:
		problems = append(problems, fmt.Sprintf("OS version %q is not %s or %s", o.OSVersion, OSWindows10, OSWindows11))
	}
	switch o.UserAccountType {
	case "", AccountStandardUser, AccountAdministrator:
	default:
		problems = append(problems, fmt.Sprintf("user account type %q is not %s or %s", o.UserAccountType, AccountStandardUser, AccountAdministrator))
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid options: %s", strings.Join(problems, "; "))
	}
	return nil
}

// AuditDetails adds the options given to details (for the audit trail).
func (o Options) AuditDetails(details map[string]string) map[string]string {
	if o.IsZero() {
		return details
	}
	if details == nil {
		details = map[string]string{}
	}
	if o.OSVersion != "" {
		details["os_version"] = o.OSVersion
	}
	if o.UserAccountType != "" {
		details["user_account_type"] = o.UserAccountType
	}
	return details
}
