package bot

import (
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// The words and blocks of a batch (a request for many Cloud PCs under one
// approval; approvals/batch.go): its prompt in every state, the final
// confirmation with the list, a line per Cloud PC in the prompt's thread,
// the counts, and the notice that a halted batch waits for Resume or Stop.
// Everything from outside (targets, policy, device and user names, Graph's
// words) is escaped here, as in text.go.

// Action IDs of a batch's buttons (the value is the request reference).
const (
	actionStopBatch   = "stop_batch"   // any approver: send no more of the batch
	actionResumeBatch = "resume_batch" // the approver who confirmed: sign in again and go on
)

// blockBatch prefixes the block_id of the prompt's Stop / Resume buttons: a
// click there is answered privately, the prompt itself shows the news.
const blockBatch = "batch:"

// batchWipeWarning is on every batch prompt and confirmation.
const batchWipeWarning = ":warning: Reprovisioning *signs each user out and deletes all their data and apps* on every one of these Cloud PCs. It cannot be undone."

// Slack's limits, with room to spare: a message holds 50 blocks, a section
// text 3000 characters.
const (
	sectionTextLimit = 2800
	// promptListBlocks and confirmListBlocks bound the sections a list
	// takes in the prompt and in the confirmation (both stay far under 50
	// blocks with everything else).
	promptListBlocks  = 12
	confirmListBlocks = 36
	// receiptTargets is how many targets a receipt or form names.
	receiptTargets = 10
)

// cloudPCCount is "1 Cloud PC", "30 Cloud PCs".
func cloudPCCount(n int) string {
	if n == 1 {
		return "1 Cloud PC"
	}
	return fmt.Sprintf("%d Cloud PCs", n)
}

// code is s in a code span: escaped, and with no backtick to end it early.
func code(s string) string {
	return "`" + strings.ReplaceAll(escapeText(s), "`", "｀") + "`"
}

// batchWhat names what a batch reprovisions, in mrkdwn, after
// "reprovision": "30 Cloud PCs", "every Cloud PC of provisioning policy
// `Sales`". For the requester (forRequester) only what they asked for is
// named until an approver acted on what the look-up found (the rule of
// requesterTargetLabel).
func batchWhat(r *approvals.Request, forRequester bool) string {
	b := r.Batch
	shown := !forRequester || detailsShownToRequester(r)
	if b.Policy != "" {
		name := b.Policy
		if shown && b.PolicyName != "" {
			name = b.PolicyName
		}
		what := "every Cloud PC of provisioning policy " + code(name)
		if shown && len(b.Members) > 0 {
			what += " (" + cloudPCCount(len(b.Members)) + ")"
		}
		return what
	}
	if shown && len(b.Members) > 0 {
		return cloudPCCount(len(b.Members))
	}
	return cloudPCCount(len(b.Targets))
}

// reprovisionWhat is what r reprovisions, in mrkdwn, after "reprovision",
// as approvers see it: the Cloud PC in a code span, or the batch.
func reprovisionWhat(r *approvals.Request) string {
	if r.IsBatch() {
		return batchWhat(r, false)
	}
	return "`" + escapeText(targetLabel(r)) + "`"
}

// requesterReprovisionWhat is reprovisionWhat for the requester.
func requesterReprovisionWhat(r *approvals.Request) string {
	if r.IsBatch() {
		return batchWhat(r, true)
	}
	return "`" + escapeText(requesterTargetLabel(r)) + "`"
}

// targetsText lists at most max of a batch's targets as typed ("`a`, `b`
// and 3 more").
func targetsText(targets []string, max int) string {
	var shown []string
	for i, t := range targets {
		if i == max {
			shown = append(shown, fmt.Sprintf("%d more", len(targets)-max))
			break
		}
		shown = append(shown, code(t))
	}
	return joinList(shown, "%s", "and")
}

// batchAskedText is what a batch's requester asked for, for their receipt
// and the reason form: the count and the first targets, or the policy.
func batchAskedText(targets []string, policy string) string {
	if policy != "" {
		return "every Cloud PC of provisioning policy " + code(policy)
	}
	return cloudPCCount(len(targets)) + " (" + targetsText(targets, receiptTargets) + ")"
}

// memberName names one Cloud PC of a batch: its device name, else what
// names it best, in a code span, with its user when known.
func memberName(m approvals.Member) string {
	name := m.Device.ManagedDeviceName
	for _, other := range []string{m.Device.DisplayName, m.Target, m.CloudPCID} {
		if name == "" {
			name = other
		}
	}
	text := code(orDash(name))
	if upn := m.Device.UserPrincipalName; upn != "" {
		text += " (" + escapeText(upn) + ")"
	}
	return text
}

// memberResultText is where one Cloud PC of a batch stands, in a few
// words: "sent", "skipped: status inGracePeriod", "left out: open request
// R-…".
func memberResultText(m approvals.Member) string {
	detail := func(prefix string) string {
		if m.Detail == "" {
			return prefix
		}
		return prefix + ": " + escapeText(graphTextOneLine(m.Detail, 200))
	}
	switch m.Result {
	case approvals.MemberWaiting:
		return "waiting"
	case approvals.MemberSending:
		return "sending…"
	case approvals.MemberSent:
		if m.Tracked == approvals.TrackTimedOut {
			return "sent; no longer followed, check it in Intune"
		}
		return "sent"
	case approvals.MemberSucceeded:
		return "provisioned again"
	case approvals.MemberFailed:
		if m.Tracked == approvals.TrackFailed {
			return "reprovision failed"
		}
		return "failed"
	case approvals.MemberUnknown:
		return "outcome unknown"
	case approvals.MemberSkipped:
		return "skipped: status " + escapeText(orDash(m.Detail))
	case approvals.MemberExcluded:
		return detail("left out")
	case approvals.MemberNotSent:
		return detail("not sent")
	}
	return escapeText(string(m.Result))
}

// acceptedCount is how many of b's calls Graph accepted (those whose
// reprovision then failed included).
func acceptedCount(b *approvals.Batch) int {
	n := b.Counts().Sent()
	for _, m := range b.Members {
		if m.Tracked == approvals.TrackFailed {
			n++
		}
	}
	return n
}

// trackedCount is how many of b's members following ended as result.
func trackedCount(b *approvals.Batch, result string) int {
	n := 0
	for _, m := range b.Members {
		if m.Tracked == result {
			n++
		}
	}
	return n
}

// batchCountsText is a batch's counts: "12 of 30 sent · 1 failed · 2
// skipped" (only what there is).
func batchCountsText(b *approvals.Batch) string {
	c := b.Counts()
	accepted := acceptedCount(b)
	parts := []string{fmt.Sprintf("%d of %d sent", accepted, len(b.Members))}
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(c[approvals.MemberSending], "in flight")
	add(c[approvals.MemberFailed]-trackedCount(b, approvals.TrackFailed), "failed")
	add(c[approvals.MemberUnknown], "outcome unknown")
	add(c[approvals.MemberSkipped], "skipped")
	add(c[approvals.MemberExcluded], "left out")
	add(c[approvals.MemberNotSent], "not sent")
	if n := countNotTold(b); n == 1 {
		add(n, "user not told in Slack")
	} else {
		add(n, "users not told in Slack")
	}
	return strings.Join(parts, " · ")
}

// userNotTold is ", its user could not be told in Slack" for a member whose
// user had no heads-up although one was tried.
func userNotTold(m approvals.Member) string {
	if m.HeadsUp.Result == "" || m.HeadsUp.Told() {
		return ""
	}
	return "; its user could not be told in Slack"
}

// countNotTold counts the members whose user a heads-up was tried for and
// did not reach.
func countNotTold(b *approvals.Batch) int {
	n := 0
	for _, m := range b.Members {
		if userNotTold(m) != "" {
			n++
		}
	}
	return n
}

// provisionedText is how following a batch's reprovisions goes or went:
// "25 of 27 provisioned again · 1 reprovision failed · 1 no longer
// followed".
func provisionedText(b *approvals.Batch) string {
	text := fmt.Sprintf("%d of %d provisioned again", b.Counts()[approvals.MemberSucceeded], acceptedCount(b))
	if n := trackedCount(b, approvals.TrackFailed); n > 0 {
		text += fmt.Sprintf(" · %d reprovision failed", n)
	}
	if n := trackedCount(b, approvals.TrackTimedOut); n > 0 {
		text += fmt.Sprintf(" · %d no longer followed (check them in Intune)", n)
	}
	return text
}

// batchStatusLine is statusLine for the states in which a batch reads
// differently from one Cloud PC; false for the others (pending, approved,
// awaiting confirmation, denied, expired, canceled by a person).
func batchStatusLine(r *approvals.Request) (string, bool) {
	b := r.Batch
	switch r.State {
	case approvals.StateExecuting:
		counts := batchCountsText(b)
		switch {
		case b.Stopped:
			return fmt.Sprintf(":octagonal_sign: Stopped by <@%s>: no more Cloud PCs are sent. %s.", b.StoppedBy, counts), true
		case b.Halted:
			return fmt.Sprintf(":pause_button: Halted: %s %s not sent yet, waiting for <@%s> to *Resume* (signing in again) or an approver to *Stop*. %s.",
				haltedWhy(r.Outcome), cloudPCCount(b.Counts()[approvals.MemberWaiting]), r.DecidedBy, counts), true
		}
		return fmt.Sprintf(":gear: Approved by %s. Reprovisioning: %s.", approvedBy(r), counts), true
	case approvals.StateSucceeded:
		return fmt.Sprintf(":white_check_mark: Approved by %s. Finished sending: %s.%s%s",
			approvedBy(r), batchCountsText(b), stoppedNote(b), batchTrackingNote(r)), true
	case approvals.StateFailed:
		if r.Outcome != nil {
			return ":x: Batch failed: " + outcomeText(r.Outcome), true
		}
		return fmt.Sprintf(":x: Batch failed: no reprovision went through: %s.%s", batchCountsText(b), stoppedNote(b)), true
	case approvals.StateOutcomeUnknown:
		return fmt.Sprintf(":grey_question: Approved by %s. Outcome unknown — check the Cloud PCs in Intune: %s.%s", approvedBy(r), batchCountsText(b), stoppedNote(b)), true
	case approvals.StateCanceled:
		if b.Stopped {
			return fmt.Sprintf(":leftwards_arrow_with_hook: Stopped by <@%s> before any call was sent; nothing was reprovisioned.", b.StoppedBy), true
		}
	}
	return "", false
}

// haltedWhy says, in a sentence, why a batch halted (r.Outcome): a
// restart, or Graph wanting a fresh sign-in.
func haltedWhy(o *approvals.Outcome) string {
	if o != nil && o.Kind == approvals.OutcomeGraph {
		return outcomeText(o)
	}
	return "the bot restarted while it ran."
}

// stoppedNote names who stopped a batch that ended.
func stoppedNote(b *approvals.Batch) string {
	if !b.Stopped {
		return ""
	}
	return fmt.Sprintf(" Stopped by <@%s>.", b.StoppedBy)
}

// batchTrackingNote is the follow-through part of a succeeded batch's
// status.
func batchTrackingNote(r *approvals.Request) string {
	t := r.Tracking
	switch {
	case t.Until.IsZero():
		return ""
	case t.Result == approvals.TrackProvisioned:
		return " :tada: Done: " + provisionedText(r.Batch) + "."
	case t.Result != "":
		return " :warning: Following them ended: " + provisionedText(r.Batch) + "."
	case t.Paused:
		return " :pause_button: Tracking paused: no valid sign-in to look with. Click Resume tracking to sign in. So far " + provisionedText(r.Batch) + "."
	}
	return " Following them: " + provisionedText(r.Batch) + "."
}

// batchPromptText is the notification/fallback text of a batch's prompt.
func batchPromptText(r *approvals.Request) string {
	return fmt.Sprintf("Reprovision request %s for %s from <@%s>", r.ID, batchWhat(r, false), r.RequesterID)
}

// batchHeadline is the prompt's first words: "Reprovision 30 Cloud PCs".
func batchHeadline(r *approvals.Request) string {
	return "Reprovision " + batchWhat(r, false)
}

// batchPromptBlocks renders a batch's approval prompt for its current
// state: what was asked, the list (the targets, then what the look-up
// found with each one's result), the counts in the status line, and the
// buttons of the state.
func batchPromptBlocks(r *approvals.Request) []slack.Block {
	b := r.Batch
	what := mrkdwn(fmt.Sprintf("*Cloud PCs*\n%s listed", cloudPCCount(len(b.Targets))))
	if b.Policy != "" {
		what = mrkdwn("*Provisioning policy*\n" + policyText(b))
	}
	blocks := []slack.Block{
		section(fmt.Sprintf("*Reprovision request %s*\n*%s*", r.ID, batchHeadline(r))),
		slack.NewSectionBlock(nil, []*slack.TextBlockObject{
			what,
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
	switch {
	case len(b.Members) > 0:
		lines := make([]string, len(b.Members))
		for i, m := range b.Members {
			lines[i] = "• " + memberName(m) + " — " + memberResultText(m)
		}
		blocks = append(blocks, listSections(fmt.Sprintf("*Cloud PCs found (%d)*", len(b.Members)), lines, promptListBlocks,
			" (each one's result is in the thread)")...)
	case len(b.Targets) > 0:
		lines := make([]string, len(b.Targets))
		for i, t := range b.Targets {
			lines[i] = code(t)
		}
		blocks = append(blocks, listSections("*Cloud PCs asked for*", lines, promptListBlocks, "")...)
	}
	blocks = append(blocks, section(batchWipeWarning))
	if actions := batchPromptActions(r); actions != nil {
		blocks = append(blocks, actions)
	}
	return append(blocks, slack.NewContextBlock("status:"+r.ID, mrkdwn(statusLine(r))))
}

// policyText names a batch's provisioning policy: as the look-up found
// it, else as asked.
func policyText(b *approvals.Batch) string {
	if b.PolicyName != "" {
		return code(b.PolicyName)
	}
	return code(b.Policy)
}

// batchPromptActions are the prompt's buttons in r's state (nil: none).
func batchPromptActions(r *approvals.Request) *slack.ActionBlock {
	b := r.Batch
	switch {
	case r.State == approvals.StatePending:
		approve := slack.NewButtonBlockElement(actionApprove, r.ID, plain("Approve")).
			WithStyle(slack.StyleDanger).
			WithConfirm(slack.NewConfirmationBlockObject(
				plain("Reprovision these Cloud PCs?"),
				mrkdwn(fmt.Sprintf("%s: each is wiped%s, its user signed out and all data and apps deleted. You see the list and confirm after signing in.",
					capitalize(batchWhat(r, false)), andReprovisionedWith(r.Options))),
				plain("Approve"), plain("Go back")))
		deny := slack.NewButtonBlockElement(actionDeny, r.ID, plain("Deny"))
		return slack.NewActionBlock("decision:"+r.ID, approve, deny)
	case (r.State == approvals.StateApproved || r.State == approvals.StateConfirming) && r.Required() > 1:
		deny := slack.NewButtonBlockElement(actionDeny, r.ID, plain("Deny"))
		return slack.NewActionBlock("decision:"+r.ID, deny)
	case r.State == approvals.StateExecuting && b.Halted && !b.Stopped:
		return slack.NewActionBlock(blockBatch+r.ID, resumeBatchButton(r), stopBatchButton(r))
	case r.State == approvals.StateExecuting && !b.Stopped:
		return slack.NewActionBlock(blockBatch+r.ID, stopBatchButton(r))
	case r.State == approvals.StateSucceeded && r.Tracking.Active() && r.Tracking.Paused:
		resume := slack.NewButtonBlockElement(actionResumeTrack, r.ID, plain("Resume tracking"))
		return slack.NewActionBlock("tracking:"+r.ID, resume)
	}
	return nil
}

func stopBatchButton(r *approvals.Request) *slack.ButtonBlockElement {
	return slack.NewButtonBlockElement(actionStopBatch, r.ID, plain("Stop")).
		WithStyle(slack.StyleDanger).
		WithConfirm(slack.NewConfirmationBlockObject(
			plain("Stop this batch?"),
			mrkdwn(fmt.Sprintf("No more Cloud PCs of %s are sent. Those already sent go on being reprovisioned.", r.ID)),
			plain("Stop"), plain("Go back")))
}

func resumeBatchButton(r *approvals.Request) *slack.ButtonBlockElement {
	return slack.NewButtonBlockElement(actionResumeBatch, r.ID, plain("Resume")).WithStyle(slack.StylePrimary)
}

// capitalize is s with its first letter in upper case.
func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// listSections packs lines, under title, into sections of at most
// sectionTextLimit characters, at most maxBlocks of them; the lines that
// do not fit are counted in a last "…and N more" line (then more).
func listSections(title string, lines []string, maxBlocks int, more string) []slack.Block {
	var blocks []slack.Block
	var cur strings.Builder
	cur.WriteString(title)
	for i, line := range lines {
		if cur.Len()+1+len(line) > sectionTextLimit {
			if len(blocks)+1 == maxBlocks {
				fmt.Fprintf(&cur, "\n…and %d more%s", len(lines)-i, more)
				break
			}
			blocks = append(blocks, section(cur.String()))
			cur.Reset()
		} else if cur.Len() > 0 {
			cur.WriteString("\n")
		}
		cur.WriteString(line)
	}
	return append(blocks, section(cur.String()))
}

// batchConfirmBlocks ask the approver, signed in, for the final word on a
// batch: the Cloud PCs that will be reprovisioned (device, user, status),
// those that will not and why, and one button for all.
func batchConfirmBlocks(r *approvals.Request) (string, []slack.Block) {
	b := r.Batch
	var send, others []string
	for _, m := range b.Members {
		line := "• " + memberName(m) + " · " + escapeText(orDash(m.Device.Status))
		if m.Result == approvals.MemberWaiting {
			send = append(send, line)
			continue
		}
		if m.CloudPCID == "" {
			line = "• " + memberName(m)
		}
		others = append(others, line+" — "+memberResultText(m))
	}
	n := cloudPCCount(len(send))
	text := fmt.Sprintf("Reprovision %s now%s? This signs their users out and deletes all their data and apps.", n, withOptions(r.Options))
	if b.Policy != "" {
		text = fmt.Sprintf("Provisioning policy %s: reprovision %s now%s? This signs their users out and deletes all their data and apps.",
			policyText(b), n, withOptions(r.Options))
	}
	if len(others) > 0 {
		text += fmt.Sprintf(" %d of these %d will not be sent (listed below).", len(others), len(b.Members))
	}
	blocks := []slack.Block{section(fmt.Sprintf("*Request %s:* %s", r.ID, text))}
	blocks = append(blocks, listSections(fmt.Sprintf("*To reprovision (%d)*", len(send)), send, confirmListBlocks*2/3, "")...)
	if len(others) > 0 {
		blocks = append(blocks, listSections(fmt.Sprintf("*Not sent (%d)*", len(others)), others, confirmListBlocks/3, "")...)
	}
	now := slack.NewButtonBlockElement(actionConfirm, r.ID, plain("Reprovision "+n)).
		WithStyle(slack.StyleDanger).
		WithConfirm(slack.NewConfirmationBlockObject(
			plain("Reprovision "+n+"?"),
			mrkdwn(fmt.Sprintf("%s will be wiped%s: each user is signed out and all data and apps are deleted.", capitalize(n), andReprovisionedWith(r.Options))),
			plain("Reprovision"), plain("Go back")))
	cancel := slack.NewButtonBlockElement(actionAbort, r.ID, plain("Cancel"))
	blocks = append(blocks, section(batchWipeWarning), slack.NewActionBlock("confirm:"+r.ID, now, cancel))
	return text, blocks
}

// memberProgressText is one Cloud PC's new result, for the prompt's
// thread: "✓ `CPC-ALICE-01` (alice@…) sent", "✗ … failed: `Conflict`
// (request-id `…`)", "? … outcome unknown — check it in Intune".
func memberProgressText(r *approvals.Request, m approvals.Member) string {
	name := memberName(m)
	line := ""
	switch {
	case m.Result == approvals.MemberSucceeded:
		line = "✓ " + name + " provisioned again"
	case m.Result == approvals.MemberSent && m.Tracked == approvals.TrackTimedOut:
		line = fmt.Sprintf("? %s no longer followed at the deadline (last status %s) — check it in Intune", name, escapeText(orDash(m.Device.Status)))
	case m.Result == approvals.MemberSent:
		line = "✓ " + name + " sent" + memberRequestID(m) + userNotTold(m)
	case m.Result == approvals.MemberFailed && m.Tracked == approvals.TrackFailed:
		line = "✗ " + name + " reprovision failed: its status is failed"
		if d := m.Device.StatusDetails; d != "" {
			line += " (" + escapeText(graphTextOneLine(d, 200)) + ")"
		}
	case m.Result == approvals.MemberFailed:
		line = "✗ " + name + " failed" + memberGraphFacts(m)
	case m.Result == approvals.MemberUnknown:
		line = "? " + name + " outcome unknown — check it in Intune" + memberRequestID(m)
		if m.Detail != "" {
			line += " (" + escapeText(graphTextOneLine(m.Detail, 200)) + ")"
		}
	default:
		line = "– " + name + " " + memberResultText(m)
	}
	return r.ID + ": " + line + "."
}

// memberRequestID is " (request-id `…`)" for a member Graph answered.
func memberRequestID(m approvals.Member) string {
	if id := graphTextToken(m.GraphRequestID); id != "" {
		return " (request-id `" + id + "`)"
	}
	return ""
}

// memberGraphFacts is what Graph answered a failed member: ": `Code`
// (request-id `…`) “message”", or HTTP status when no code came.
func memberGraphFacts(m approvals.Member) string {
	text := ""
	switch code := graphTextToken(m.GraphCode); {
	case code != "":
		text = ": `" + code + "`"
	case m.GraphStatus != 0:
		text = fmt.Sprintf(": HTTP %d", m.GraphStatus)
	}
	text += memberRequestID(m)
	if msg := graphTextOneLine(m.Detail, 200); msg != "" && msg != m.GraphCode {
		text += " “" + escapeText(msg) + "”"
	}
	return text
}

// batchProgressText is the follow-through updates of a batch whose words
// differ from one Cloud PC's ("" for the others).
func batchProgressText(r *approvals.Request, p approvals.Progress) string {
	switch p.Kind {
	case approvals.ProgressMember:
		if p.Member == nil {
			return ""
		}
		return memberProgressText(r, *p.Member)
	case approvals.ProgressAccepted:
		return fmt.Sprintf("%s: Microsoft Graph accepted %d of %d reprovisions%s. I'll look at them in %s and post each one's end here.",
			r.ID, acceptedCount(r.Batch), len(r.Batch.Members), withOptions(r.Options), p.Every)
	case approvals.ProgressEnded:
		return fmt.Sprintf("%s: following them ended: %s.", r.ID, provisionedText(r.Batch))
	}
	return ""
}

// batchHaltedText asks the approver who confirmed a halted batch to
// Resume or Stop it, saying why it halted, or (n.Why of a sign-in) why
// their sign-in to resume it did not complete.
func batchHaltedText(n approvals.Notice) string {
	r := n.Request
	c := r.Batch.Counts()
	left := cloudPCCount(c[approvals.MemberWaiting]) + " not sent yet"
	if k := c[approvals.MemberUnknown]; k > 0 {
		left += fmt.Sprintf(", %d outcome unknown (check them in Intune)", k)
	}
	switch {
	case n.Why == nil || n.Why.Kind == approvals.OutcomeInFlightAtRestart:
		return fmt.Sprintf(":warning: The bot restarted while batch %s was running: %s. *Resume* (you sign in again) or *Stop*.", r.ID, left)
	case n.Why.Kind == approvals.OutcomeGraph:
		return fmt.Sprintf(":warning: Batch %s stopped sending: %s %s. *Resume* (you sign in again) or *Stop*.", r.ID, outcomeText(n.Why), left)
	}
	return fmt.Sprintf(":warning: Your sign-in to resume batch %s did not complete: %s Still %s: *Resume* to try again, or *Stop*.", r.ID, outcomeText(n.Why), left)
}

// batchHaltedBlocks is that notice with Resume and Stop.
func batchHaltedBlocks(n approvals.Notice) []slack.Block {
	r := n.Request
	return []slack.Block{
		section(batchHaltedText(n)),
		slack.NewActionBlock("batch_halted:"+r.ID, resumeBatchButton(r), stopBatchButton(r)),
	}
}

// memberNotice is n, about one Cloud PC of a batch (n.Member), as a notice
// about that Cloud PC alone: its user's heads-up, "ready" and updates, and
// "the user could not be told", read as for one Cloud PC.
func memberNotice(n approvals.Notice) approvals.Notice {
	if n.Member == nil || n.Request == nil || !n.Request.IsBatch() {
		return n
	}
	m := *n.Member
	v := *n.Request
	v.Batch = nil
	v.Target, v.CloudPCID = m.Target, m.CloudPCID
	if v.Target == "" {
		v.Target = m.Device.ManagedDeviceName
	}
	device := m.Device
	v.Device = &device
	v.HeadsUp, v.GraphRequestID, v.Outcome = m.HeadsUp, m.GraphRequestID, nil
	v.Tracking.Result = m.Tracked
	switch m.Result {
	case approvals.MemberUnknown:
		v.State = approvals.StateOutcomeUnknown
	case approvals.MemberSent, approvals.MemberSucceeded:
		v.State = approvals.StateSucceeded
	case approvals.MemberFailed:
		v.State = approvals.StateFailed
		if m.Tracked != "" {
			v.State = approvals.StateSucceeded // accepted; the reprovision itself failed
		}
	}
	n.Request = &v
	return n
}

// memberUserUpdateText tells one Cloud PC's user of a batch, after their
// heads-up, that its call did not go through (or might have).
func memberUserUpdateText(r *approvals.Request) string {
	switch r.State {
	case approvals.StateOutcomeUnknown, approvals.StateSucceeded:
		return userUpdateText(r)
	}
	return fmt.Sprintf(":information_source: The reprovision of your Cloud PC %s (request %s) will not happen now: it was not carried out, and nothing was changed on your Cloud PC. IT has been told.",
		deviceName(r), r.ID)
}

// batchDoneText is what the approver reads when Stop or Resume did what
// they asked.
func batchDoneText(action string, r *approvals.Request) string {
	switch action {
	case actionStopBatch:
		if r.Batch != nil && r.Batch.Halted {
			return fmt.Sprintf("Stopped %s: the Cloud PCs not sent yet will not be sent.", r.ID)
		}
		return fmt.Sprintf("Stopping %s: no more Cloud PCs are sent; the calls in flight finish. The prompt shows where it ended.", r.ID)
	case actionResumeBatch:
		waiting := 0
		if r.Batch != nil {
			waiting = r.Batch.Counts()[approvals.MemberWaiting]
		}
		return fmt.Sprintf("Resuming %s: sign in first (see the sign-in message); then the %s not sent yet are sent.", r.ID, cloudPCCount(waiting))
	}
	return ""
}

// batchRefusalText words the refusals of Stop and Resume, and of a batch
// that is too large ("" for the others).
func batchRefusalText(f *approvals.Refusal) string {
	ref := f.Ref
	switch {
	case f.Kind == approvals.RefusedBatchTooLarge:
		return fmt.Sprintf("That is %s; a batch may have at most %d. Nothing was recorded: split the list into several requests.", cloudPCCount(f.Count), f.Max)
	case f.Action != approvals.ActionStopBatch && f.Action != approvals.ActionResumeBatch:
		return ""
	case f.Kind == approvals.RefusedNotAnApprover:
		return fmt.Sprintf("Only an approver of %s (%s) can stop it. Nothing was changed.", ref, orMentions(f.Users))
	case f.Kind == approvals.RefusedNotConfirmer:
		return fmt.Sprintf("Only %s, who confirmed %s, can resume it (signing in again); any of its approvers can stop it. Nothing was changed.", orMentions(f.Users), ref)
	case f.Kind == approvals.RefusedBusy:
		return fmt.Sprintf("%s is already being resumed.", ref)
	case f.Kind == approvals.RefusedHandled && f.Request != nil:
		if f.Action == approvals.ActionStopBatch {
			return fmt.Sprintf("%s is not running, or is being stopped already: %s", ref, statusLine(f.Request))
		}
		return fmt.Sprintf("%s is not waiting to be resumed: %s", ref, statusLine(f.Request))
	}
	return ""
}
