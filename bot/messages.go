package bot

import (
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// Action IDs of the bot's buttons. Every button value is a request
// reference (or reference|cloud PC id for a pick); both are checked before use.
const (
	actionApprove     = "approve"
	actionDeny        = "deny"
	actionCancel      = "cancel"          // requester withdraws a pending request
	actionConfirm     = "confirm"         // approver: Reprovision now
	actionAbort       = "abort"           // approver: Cancel at the confirmation
	actionPick        = "pick"            // approver picks one of several Cloud PCs
	actionResumeTrack = "resume_tracking" // approver signs in again to follow a reprovision
	actionRequestOver = "request_again"   // requester re-asks after expiry
	actionSignInLink  = "signin_link"     // URL button; Slack still sends a click
	actionSendNow     = "send_now"        // approver: send a scheduled call at once
	actionPostpone    = "postpone"        // approver: move a scheduled call later, once
	actionMoreTime    = "more_time"       // the Cloud PC's user: I need more time
	actionSignInSend  = "sign_in_to_send" // approver: sign in again for a scheduled call
)

// Modal callback IDs.
const (
	callbackReason = "reprovision_reason"
	callbackDeny   = "deny_reason"
	// blockReason/inputReason name the reason input in both modals.
	blockReason = "reason"
	inputReason = "reason_input"
	// The reason form's two optional selects of reprovision options.
	blockOS      = "os"
	inputOS      = "os_select"
	blockAccount = "account"
	inputAccount = "account_select"
)

// wipeWarning is on every prompt: the approver must know what Approve does.
const wipeWarning = ":warning: Reprovisioning *signs the user out and deletes all their data and apps* on this Cloud PC. It cannot be undone."

// targetLabel names the Cloud PC as well as we know it.
func targetLabel(r *approvals.Request) string {
	if r.Device != nil && r.Device.ManagedDeviceName != "" {
		return fmt.Sprintf("%s of %s", r.Device.ManagedDeviceName, r.Device.UserPrincipalName)
	}
	if r.CloudPCID != "" {
		return r.CloudPCID
	}
	return r.Target
}

// requesterTargetLabel names the Cloud PC in everything addressed to the
// requester. What Graph told an approver (device and user names, the id a
// name or UPN resolved to) was looked up with the approver's token for the
// approver's prompt; it stays on the approver's side until an approver has
// acted on it: approved and signed in (SignedInAs is set) and gone on past
// approval, to the confirmation, the call and its outcome, or a cancel at
// the confirmation. A denial, an expiry, the requester's own cancel or a
// request waiting again reveal nothing: the requester reads the Cloud PC as
// they named it.
func requesterTargetLabel(r *approvals.Request) string {
	if detailsShownToRequester(r) {
		return targetLabel(r)
	}
	if r.Target != "" {
		return r.Target
	}
	return r.CloudPCID
}

// detailsShownToRequester is requesterTargetLabel's rule.
func detailsShownToRequester(r *approvals.Request) bool {
	if r.SignedInAs == "" {
		return false
	}
	switch r.State {
	case approvals.StateConfirming, approvals.StateScheduled, approvals.StateExecuting, approvals.StateSucceeded, approvals.StateFailed, approvals.StateOutcomeUnknown:
		return true
	case approvals.StateCanceled:
		return r.DecidedBy != "" && r.DecidedBy != r.RequesterID
	}
	return false
}

// promptText is the notification/fallback text of the approval prompt.
func promptText(r *approvals.Request) string {
	if r.IsBatch() {
		return batchPromptText(r)
	}
	return fmt.Sprintf("Reprovision request %s for %s from <@%s>", r.ID, escapeText(targetLabel(r)), r.RequesterID)
}

// promptBlocks renders the approval prompt for r in its current state. The
// decision buttons show only while it is pending.
func promptBlocks(r *approvals.Request) []slack.Block {
	if r.IsBatch() {
		return batchPromptBlocks(r)
	}
	blocks := []slack.Block{
		section(fmt.Sprintf("*Reprovision request %s*", r.ID)),
		slack.NewSectionBlock(nil, []*slack.TextBlockObject{
			mrkdwn(fmt.Sprintf("*Cloud PC*\n`%s`", escapeText(targetOf(r)))),
			mrkdwn(fmt.Sprintf("*Requested by*\n<@%s>", r.RequesterID)),
			mrkdwn(fmt.Sprintf("*When*\n%s", slackDate(r.CreatedAt))),
			mrkdwn(fmt.Sprintf("*Approvers*\n%s", mentions(r.Approvers))),
		}, nil),
	}
	if opts := optionsText(r.Options); opts != "" {
		blocks = append(blocks, section("*Reprovision with*\n"+opts))
	}
	if r.Reason != "" {
		blocks = append(blocks, section("*Reason*\n"+reasonText(r.Reason)))
	}
	if r.Device != nil {
		blocks = append(blocks, slack.NewSectionBlock(nil, deviceFields(*r.Device), nil))
	}
	blocks = append(blocks, section(wipeWarning))
	switch {
	case r.State == approvals.StatePending:
		approve := slack.NewButtonBlockElement(actionApprove, r.ID, plain("Approve")).
			WithStyle(slack.StyleDanger).
			WithConfirm(slack.NewConfirmationBlockObject(
				plain("Reprovision this Cloud PC?"),
				mrkdwn(fmt.Sprintf("`%s` will be wiped%s: the user is signed out and all data and apps are deleted.", escapeText(targetOf(r)), andReprovisionedWith(r.Options))),
				plain("Approve"), plain("Go back")))
		deny := slack.NewButtonBlockElement(actionDeny, r.ID, plain("Deny"))
		blocks = append(blocks, slack.NewActionBlock("decision:"+r.ID, approve, deny))
	case (r.State == approvals.StateApproved || r.State == approvals.StateConfirming) && r.Required() > 1:
		// Any one approver's Deny ends a request that needs several
		// approvals, until it is confirmed.
		deny := slack.NewButtonBlockElement(actionDeny, r.ID, plain("Deny"))
		blocks = append(blocks, slack.NewActionBlock("decision:"+r.ID, deny))
	case r.State == approvals.StateScheduled:
		blocks = append(blocks, scheduledActions(r))
	case r.State == approvals.StateSucceeded && r.Tracking.Active() && r.Tracking.Paused:
		resume := slack.NewButtonBlockElement(actionResumeTrack, r.ID, plain("Resume tracking"))
		blocks = append(blocks, slack.NewActionBlock("tracking:"+r.ID, resume))
	}
	blocks = append(blocks, slack.NewContextBlock("status:"+r.ID, mrkdwn(statusLine(r))))
	return blocks
}

// denyWhat is what the deny form names: the Cloud PC id or what was
// typed, or the batch.
func denyWhat(r *approvals.Request) string {
	if r.IsBatch() {
		return batchWhat(r, false)
	}
	return "`" + escapeText(targetOf(r)) + "`"
}

// targetOf is the Cloud PC id once known, else what was typed.
func targetOf(r *approvals.Request) string {
	if r.CloudPCID != "" {
		return r.CloudPCID
	}
	return r.Target
}

// deviceFields are what will be wiped, as Graph described it.
func deviceFields(d approvals.CloudPC) []*slack.TextBlockObject {
	field := func(name, value string) *slack.TextBlockObject {
		if value == "" {
			value = "—"
		}
		return mrkdwn(fmt.Sprintf("*%s*\n%s", name, escapeText(value)))
	}
	status := d.Status
	if d.StatusDetails != "" {
		status += " (" + d.StatusDetails + ")"
	}
	modified := "—"
	if !d.LastModified.IsZero() {
		modified = slackDate(d.LastModified)
	}
	return []*slack.TextBlockObject{
		field("Device", d.ManagedDeviceName),
		field("User", d.UserPrincipalName),
		field("Name", d.DisplayName),
		field("Status", status),
		field("Plan", d.ServicePlanName),
		field("Provisioning policy", d.ProvisioningPolicyName),
		mrkdwn("*Last modified*\n" + modified),
		field("Cloud PC id", d.ID),
	}
}

// slackDate shows a time in each reader's own time zone.
func slackDate(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04 UTC"))
}

func mentions(users []string) string {
	var out []string
	for _, u := range users {
		out = append(out, "<@"+u+">")
	}
	return strings.Join(out, ", ")
}

// statusLine says in one line where the request is, for the prompt and for
// late clickers.
func statusLine(r *approvals.Request) string {
	if r.IsBatch() {
		if line, ok := batchStatusLine(r); ok {
			return line
		}
	}
	switch r.State {
	case approvals.StatePending:
		waiting := ":hourglass: Awaiting a decision."
		if r.Required() > 1 {
			waiting = fmt.Sprintf(":hourglass: Awaiting a decision: %s.", approvalsSoFar(r))
		}
		if note := waitingAgainText(r.Outcome); note != "" {
			return waiting + " " + note
		}
		return waiting
	case approvals.StateApproved:
		return fmt.Sprintf(":key: Approved by %s. Waiting for <@%s> to sign in (see the sign-in message).", approvedBy(r), r.DecidedBy)
	case approvals.StateConfirming:
		if len(r.Approvals) == 0 {
			return fmt.Sprintf(":eyes: Approved by <@%s>, signed in as %s. Waiting for their final confirmation.", r.DecidedBy, escapeText(r.SignedInAs))
		}
		return fmt.Sprintf(":eyes: Approved by %s; <@%s> signed in as %s. Waiting for their final confirmation.", approvedBy(r), r.DecidedBy, escapeText(r.SignedInAs))
	case approvals.StateScheduled:
		return scheduledLine(r)
	case approvals.StateExecuting:
		return fmt.Sprintf(":gear: Approved by %s. Reprovisioning…", approvedBy(r))
	case approvals.StateSucceeded:
		return fmt.Sprintf(":white_check_mark: Approved by %s. Reprovision started: Microsoft Graph accepted the request.%s%s",
			approvedBy(r), requestIDSuffix(r), trackingNote(r))
	case approvals.StateFailed:
		return fmt.Sprintf(":x: Reprovision failed: %s", outcomeText(r.Outcome))
	case approvals.StateOutcomeUnknown:
		note := outcomeText(r.Outcome)
		if note != "" {
			note = " " + note
		}
		return fmt.Sprintf(":grey_question: Approved by %s. Outcome unknown — check the Cloud PC.%s", approvedBy(r), note)
	case approvals.StateDenied:
		s := fmt.Sprintf(":no_entry_sign: Denied by <@%s>.", r.DecidedBy)
		if r.DecisionReason != "" {
			s += " Reason: " + reasonText(r.DecisionReason)
		}
		return s
	case approvals.StateExpired:
		if r.Outcome != nil && r.Outcome.Kind == approvals.OutcomeSignInStale {
			// Only a scheduled call expires so: its approver did not
			// sign in again after a restart.
			return fmt.Sprintf(":clock3: EXPIRED: it was scheduled, but <@%s> did not sign in again after the bot restarted, so nothing was sent.", r.DecidedBy)
		}
		return ":clock3: EXPIRED: nobody decided in time."
	case approvals.StateCanceled:
		if r.DecidedBy != "" && r.DecidedBy != r.RequesterID && !r.HeadsUp.SendAt.IsZero() {
			return fmt.Sprintf(":leftwards_arrow_with_hook: Canceled by <@%s> before it was sent (it was scheduled for %s); nothing was reprovisioned.", r.DecidedBy, slackTime(r.HeadsUp.SendAt))
		}
		if r.DecidedBy != "" && r.DecidedBy != r.RequesterID {
			return fmt.Sprintf(":leftwards_arrow_with_hook: Canceled by <@%s> at the final confirmation.", r.DecidedBy)
		}
		return ":leftwards_arrow_with_hook: Canceled by the requester."
	}
	return string(r.State)
}

// approvalsSoFar is "1 of 2 approvals (<@U1>)" for a request that needs
// more than one.
func approvalsSoFar(r *approvals.Request) string {
	text := fmt.Sprintf("%d of %d approvals", len(r.Approvals), r.Required())
	if len(r.Approvals) > 0 {
		var by []string
		for _, a := range r.Approvals {
			by = append(by, a.By)
		}
		text += " (" + mentions(by) + ")"
	}
	return text
}

// approvedBy names everyone who approved r: the earlier approvals, then
// the approver who decided last ("<@U1> and <@U2>").
func approvedBy(r *approvals.Request) string {
	var by []string
	for _, a := range r.Approvals {
		by = append(by, a.By)
	}
	return andMentions(append(by, r.DecidedBy))
}

// trackingNote is the follow-through part of a succeeded request's status.
func trackingNote(r *approvals.Request) string {
	t := r.Tracking
	switch {
	case t.Until.IsZero():
		return ""
	case t.Result == approvals.TrackProvisioned:
		return " :tada: Done: the Cloud PC is provisioned again."
	case t.Result == approvals.TrackFailed:
		return " :x: But the reprovision failed: the Cloud PC's status is failed." + detailsSuffix(r)
	case t.Result == approvals.TrackTimedOut:
		return fmt.Sprintf(" :clock3: Stopped following it at the deadline; last status %s. Check the Cloud PC.", escapeText(orDash(t.LastStatus)))
	case t.Paused:
		return " :pause_button: Tracking paused: no valid sign-in to look with. Click Resume tracking to sign in."
	}
	return fmt.Sprintf(" Following it: status %s.", escapeText(orDash(t.LastStatus)))
}

func detailsSuffix(r *approvals.Request) string {
	if r.Device != nil && r.Device.StatusDetails != "" {
		return " " + escapeText(r.Device.StatusDetails)
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func requestIDSuffix(r *approvals.Request) string {
	if r.GraphRequestID == "" {
		return ""
	}
	return fmt.Sprintf(" (request-id `%s`)", escapeText(r.GraphRequestID))
}

// requesterUpdate is what the requester is told when their request reaches a
// decision or an outcome.
func requesterUpdate(r *approvals.Request) string {
	return fmt.Sprintf("Your request %s to reprovision %s%s%s: %s", r.ID, requesterReprovisionWhat(r), withOptions(r.Options), reasonSuffix(r), statusLine(r))
}

// reasonSuffix repeats why it was asked, so an outcome reads on its own.
func reasonSuffix(r *approvals.Request) string {
	if r.Reason == "" {
		return ""
	}
	return " (reason: " + reasonText(r.Reason) + ")"
}

// requestSummary is the same news for someone other than the requester.
func requestSummary(r *approvals.Request) string {
	return fmt.Sprintf("Request %s to reprovision %s%s from <@%s>%s: %s", r.ID, reprovisionWhat(r), withOptions(r.Options), r.RequesterID, reasonSuffix(r), statusLine(r))
}

// requesterConfirmation is the requester's private receipt, with Cancel.
func requesterConfirmation(r *approvals.Request) (string, []slack.Block) {
	what := requesterReprovisionWhat(r)
	if r.IsBatch() {
		what = batchAskedText(r.Batch.Targets, r.Batch.Policy)
	}
	text := fmt.Sprintf("Request %s: asking %s to approve reprovisioning %s%s. I'll tell you when they decide.",
		r.ID, mentions(r.Approvers), what, withOptions(r.Options))
	cancel := slack.NewButtonBlockElement(actionCancel, r.ID, plain("Cancel request"))
	return text, []slack.Block{section(text), slack.NewActionBlock("request:"+r.ID, cancel)}
}

// expiredNotice tells the requester their request expired, with a one-click
// retry.
func expiredNotice(r *approvals.Request) (string, []slack.Block) {
	text := fmt.Sprintf(":clock3: Your request %s to reprovision %s%s EXPIRED: nobody decided in time.", r.ID, requesterReprovisionWhat(r), withOptions(r.Options))
	again := slack.NewButtonBlockElement(actionRequestOver, r.ID, plain("Request again"))
	return text, []slack.Block{section(text), slack.NewActionBlock("expired:"+r.ID, again)}
}

// confirmBlocks ask the approver, signed in, for the final word on one
// Cloud PC, or to pick one of several.
func confirmBlocks(r *approvals.Request) (string, []slack.Block) {
	if r.IsBatch() {
		return batchConfirmBlocks(r)
	}
	cancel := slack.NewButtonBlockElement(actionAbort, r.ID, plain("Cancel"))
	if len(r.Candidates) > 1 {
		text := fmt.Sprintf("%d Cloud PCs match `%s` (request %s). Pick the one to reprovision%s:", len(r.Candidates), escapeText(r.Target), r.ID, withOptions(r.Options))
		blocks := []slack.Block{section(text), section(wipeWarning)}
		for _, c := range r.Candidates {
			// action_ids stay unique within a message: one button per candidate.
			pick := slack.NewButtonBlockElement(actionPick+":"+c.ID, r.ID+"|"+c.ID, plain("Reprovision this one")).WithStyle(slack.StyleDanger)
			blocks = append(blocks,
				slack.NewDividerBlock(),
				slack.NewSectionBlock(nil, deviceFields(c), nil),
				slack.NewActionBlock("pick:"+c.ID, pick))
		}
		return text, append(blocks, slack.NewActionBlock("abort:"+r.ID, cancel))
	}
	d := r.Device
	text := fmt.Sprintf("Reprovision %s of %s now%s? This signs them out and deletes all their data and apps.",
		escapeText(d.ManagedDeviceName), escapeText(d.UserPrincipalName), withOptions(r.Options))
	now := slack.NewButtonBlockElement(actionConfirm, r.ID, plain("Reprovision now")).WithStyle(slack.StyleDanger)
	return text, []slack.Block{
		section(fmt.Sprintf("*Request %s:* %s", r.ID, text)),
		slack.NewSectionBlock(nil, deviceFields(*d), nil),
		slack.NewActionBlock("confirm:"+r.ID, now, cancel),
	}
}

// signInBlocks is the DM with the device code. The verification URL comes
// from Entra and is checked to be https before it becomes a link button.
func signInBlocks(why, verificationURL, userCode string) []slack.Block {
	text := fmt.Sprintf("*Sign in to %s.* Open the Microsoft sign-in page and enter the code `%s`. "+
		"Sign in as yourself: Microsoft Graph is called with your account.", why, userCode)
	button := slack.NewButtonBlockElement(actionSignInLink, "signin", plain("Open Microsoft sign-in")).WithURL(verificationURL)
	return []slack.Block{
		slack.NewSectionBlock(mrkdwn(text), nil, slack.NewAccessory(button)),
		slack.NewContextBlock("", mrkdwn(fmt.Sprintf("Code: `%s` · expires in about 15 minutes · never share it", userCode))),
	}
}

// reasonModal asks the requester why, when the command had no reason.
// The options typed with the command are preselected.
func reasonModal(privateMetadata, target string, opts approvals.Options) slack.ModalViewRequest {
	return reasonModalAsking(privateMetadata, fmt.Sprintf("Reprovision `%s`? %s", escapeText(target), wipeWarning), opts)
}

// batchReasonModal is reasonModal for a batch.
func batchReasonModal(privateMetadata string, c Command) slack.ModalViewRequest {
	return reasonModalAsking(privateMetadata, fmt.Sprintf("Reprovision %s? %s", batchAskedText(c.Targets, c.Policy), batchWipeWarning), c.Options)
}

// reasonModalAsking is the reason form, asking question (mrkdwn).
func reasonModalAsking(privateMetadata, question string, opts approvals.Options) slack.ModalViewRequest {
	return slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      callbackReason,
		PrivateMetadata: privateMetadata,
		Title:           plain("Reprovision"),
		Submit:          plain("Ask for approval"),
		Close:           plain("Cancel"),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			section(question),
			reasonInput("Why does it need reprovisioning?"),
			optionSelect(blockOS, inputOS, "Windows version", "Windows 11 moves a Windows 10 Cloud PC to Windows 11.", osChoices, opts.OSVersion),
			optionSelect(blockAccount, inputAccount, "User account", "Whether the user is a local administrator on the reprovisioned Cloud PC.", accountChoices, opts.UserAccountType),
		}},
	}
}

// formChoice is one choice of a reason form select: its value on the wire
// (asProvisioned, or Graph's value) and its label.
type formChoice struct{ value, label string }

// asProvisioned is the choice of no option: Graph keeps what the Cloud PC
// was provisioned with.
const asProvisioned = "as_provisioned"

// The reason form's choices; reasonSubmitted accepts only these values.
var (
	osChoices = []formChoice{
		{asProvisioned, "As provisioned"},
		{approvals.OSWindows11, "Windows 11"},
		{approvals.OSWindows10, "Windows 10"},
	}
	accountChoices = []formChoice{
		{asProvisioned, "As provisioned"},
		{approvals.AccountStandardUser, "Standard user"},
		{approvals.AccountAdministrator, "Local administrator"},
	}
)

// optionSelect is an optional static select of choices, with initial
// preselected if it is one of them.
func optionSelect(blockID, actionID, label, hint string, choices []formChoice, initial string) *slack.InputBlock {
	options := make([]*slack.OptionBlockObject, len(choices))
	var preselected *slack.OptionBlockObject
	for i, c := range choices {
		options[i] = slack.NewOptionBlockObject(c.value, plain(c.label), nil)
		if c.value == initial {
			preselected = options[i]
		}
	}
	sel := slack.NewOptionsSelectBlockElement(slack.OptTypeStatic, plain("As provisioned"), actionID, options...)
	sel.InitialOption = preselected
	input := slack.NewInputBlock(blockID, plain(label), plain(hint), sel)
	input.Optional = true
	return input
}

// denyModal asks the approver why they deny.
func denyModal(r *approvals.Request) slack.ModalViewRequest {
	return slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      callbackDeny,
		PrivateMetadata: r.ID,
		Title:           plain("Deny request"),
		Submit:          plain("Deny"),
		Close:           plain("Back"),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			section(fmt.Sprintf("Deny %s from <@%s> to reprovision %s?", r.ID, r.RequesterID, denyWhat(r))),
			reasonInput("Reason (the requester sees it)"),
		}},
	}
}

func reasonInput(label string) *slack.InputBlock {
	input := slack.NewPlainTextInputBlockElement(plain("e.g. profile corrupt, apps broken after update"), inputReason)
	input.Multiline = true
	input.MaxLength = MaxReason
	return slack.NewInputBlock(blockReason, plain(label), nil, input)
}

func section(text string) *slack.SectionBlock { return slack.NewSectionBlock(mrkdwn(text), nil, nil) }
func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}
func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
}

// reasonText is how a reason is shown in mrkdwn: the requester's on the
// prompt, the Home tab and in updates, an approver's in a denial. Everywhere,
// by one rule, a reason is one line of plain words:
//   - invisible characters (bidi controls, zero-width; see isInvisible) are
//     dropped;
//   - every run of white space, line breaks included, becomes one space, so
//     a reason never starts a line of its own inside a message and cannot
//     pass for the bot's own "*Field*" headings, a quote or a list;
//   - &, < and > are escaped (no mention, link or channel ping);
//   - Slack's formatting characters * _ ~ ` become their fullwidth forms
//     ＊ ＿ ～ ｀: still readable, but never bold, italics, strike-through or
//     code;
//   - a > at its very start, which Slack takes for a quote where the reason
//     follows a line break (as under the prompt's *Reason*), becomes ＞.
//
// Its words are kept; only how they can be shown changes.
func reasonText(reason string) string {
	out := escapeText(strings.Join(strings.Fields(stripInvisible(reason)), " "))
	out = reasonFormatting.Replace(out)
	if rest, ok := strings.CutPrefix(out, "&gt;"); ok {
		out = "＞" + rest
	}
	return out
}

// reasonFormatting replaces mrkdwn's formatting characters in a reason.
var reasonFormatting = strings.NewReplacer("*", "＊", "_", "＿", "~", "～", "`", "｀")

// escapeText makes s safe inside Slack mrkdwn: Graph messages, reasons and
// other outside text must not turn into mentions or links.
func escapeText(s string) string {
	return mrkdwnEscaper.Replace(s)
}

// mrkdwnEscaper is escapeText's replacer, built once (a Replacer is safe
// for concurrent use; building one per call cost kilobytes per message).
var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
