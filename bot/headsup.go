package bot

import (
	"fmt"
	"time"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// The words and buttons of the Cloud PC user's heads-up (issue 11, part 2):
// the DMs to the user, to the approver during a scheduled call's wait, and
// the scheduled prompt's line and buttons.

// slackTime shows a time of day ("14:32") in each reader's own time zone.
func slackTime(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{time}|%s>", t.Unix(), t.UTC().Format("15:04 UTC"))
}

// deviceName names the user's Cloud PC for them: its device name and id.
func deviceName(r *approvals.Request) string {
	name, id := "", targetOf(r)
	if r.Device != nil {
		name = r.Device.ManagedDeviceName
		if r.Device.ID != "" {
			id = r.Device.ID
		}
	}
	if name == "" {
		return fmt.Sprintf("`%s`", escapeText(id))
	}
	return fmt.Sprintf("*%s* (`%s`)", escapeText(name), escapeText(id))
}

// cloudPCUser is the Cloud PC's user: their mention once found, else their
// user principal name.
func cloudPCUser(r *approvals.Request) string {
	if r.HeadsUp.UserID != "" {
		return "<@" + r.HeadsUp.UserID + ">"
	}
	if r.Device != nil && r.Device.UserPrincipalName != "" {
		return escapeText(r.Device.UserPrincipalName)
	}
	return "the Cloud PC's user"
}

// scheduledLine is the status of a call waiting for its time.
func scheduledLine(r *approvals.Request) string {
	h := r.HeadsUp
	told := ""
	if h.UserID != "" {
		told = fmt.Sprintf(" (<@%s> was told)", h.UserID)
	}
	line := fmt.Sprintf(":alarm_clock: Approved by %s. Sending at %s%s.", approvedBy(r), slackTime(h.SendAt), told)
	switch {
	case h.Postponed:
		line += " Postponed once, at the user's request or the approver's."
	case h.MoreTimeAsked:
		line += fmt.Sprintf(" %s asked for more time; <@%s> may postpone it once.", cloudPCUser(r), r.DecidedBy)
	}
	if h.SignInLost {
		line += fmt.Sprintf(" :warning: The bot restarted; <@%s> must sign in again before it can be sent (Sign in, or Send now).", r.DecidedBy)
	} else {
		line += fmt.Sprintf(" <@%s> may send it now or cancel it.", r.DecidedBy)
	}
	return line
}

// scheduledActions are the prompt's buttons while a call waits: for its
// approver (the workflow refuses anyone else).
func scheduledActions(r *approvals.Request) *slack.ActionBlock {
	var buttons []slack.BlockElement
	if r.HeadsUp.SignInLost {
		buttons = append(buttons, slack.NewButtonBlockElement(actionSignInSend, r.ID, plain("Sign in")).WithStyle(slack.StylePrimary))
	}
	buttons = append(buttons, sendNowButton(r), slack.NewButtonBlockElement(actionAbort, r.ID, plain("Cancel")))
	return slack.NewActionBlock(blockScheduled+r.ID, buttons...)
}

// blockScheduled prefixes the block_id of the scheduled prompt's buttons:
// a click there is answered privately, the prompt itself shows the news.
const blockScheduled = "scheduled:"

func sendNowButton(r *approvals.Request) *slack.ButtonBlockElement {
	return slack.NewButtonBlockElement(actionSendNow, r.ID, plain("Send now")).
		WithStyle(slack.StyleDanger).
		WithConfirm(slack.NewConfirmationBlockObject(
			plain("Reprovision now?"),
			mrkdwn(fmt.Sprintf("%s is reprovisioned at once, not at %s: its user is signed out and all data and apps are deleted.", deviceName(r), slackTime(r.HeadsUp.SendAt))),
			plain("Send now"), plain("Go back")))
}

// whoAskedAndApproved: "<@UREQ> asked for it and <@UA1> approved it", or
// "You asked for it …" to a user who asked for their own.
func whoAskedAndApproved(user string, r *approvals.Request) string {
	asked := fmt.Sprintf("<@%s> asked for it", r.RequesterID)
	if user == r.RequesterID {
		asked = "You asked for it"
	}
	return fmt.Sprintf("%s and %s approved it", asked, approvedBy(r))
}

// moreTimeOffered: the heads-up offers "I need more time".
func moreTimeOffered(r *approvals.Request) bool {
	h := r.HeadsUp
	return r.State == approvals.StateScheduled && !h.SendAt.IsZero() && !h.MoreTimeAsked && !h.Postponed
}

// headsUpText tells the Cloud PC's user what will happen to it.
func headsUpText(user string, r *approvals.Request) string {
	when := "now"
	if r.State == approvals.StateScheduled && !r.HeadsUp.SendAt.IsZero() {
		when = "at " + slackTime(r.HeadsUp.SendAt)
	}
	text := fmt.Sprintf(":warning: *Heads-up: your Cloud PC %s will be reprovisioned %s* (request %s). %s.",
		deviceName(r), when, r.ID, whoAskedAndApproved(user, r))
	if r.Reason != "" {
		text += " Reason: " + reasonText(r.Reason) + "."
	}
	if opts := optionsText(r.Options); opts != "" {
		text += " It will be reprovisioned with " + opts + "."
	}
	text += "\nYou will be *signed out*, and *all data and apps* on this Cloud PC will be *deleted*. Save what you need elsewhere first. I'll tell you when it is done."
	switch {
	case moreTimeOffered(r):
		text += fmt.Sprintf("\nIf you need more time, click *I need more time*: <@%s> may postpone it once.", r.DecidedBy)
	case r.HeadsUp.Postponed:
		text += " It was postponed once already."
	case r.HeadsUp.MoreTimeAsked:
		text += fmt.Sprintf(" You asked for more time; <@%s> decides.", r.DecidedBy)
	}
	return text
}

// headsUpBlocks is the heads-up with the "I need more time" button while
// it is on offer.
func headsUpBlocks(user string, r *approvals.Request) []slack.Block {
	blocks := []slack.Block{section(headsUpText(user, r))}
	if moreTimeOffered(r) {
		more := slack.NewButtonBlockElement(actionMoreTime, r.ID, plain("I need more time"))
		blocks = append(blocks, slack.NewActionBlock("heads_up:"+r.ID, more))
	}
	return blocks
}

// userUpdateText tells the Cloud PC's user, after their heads-up, that
// the time moved, or what happened instead.
func userUpdateText(r *approvals.Request) string {
	switch r.State {
	case approvals.StateScheduled:
		return fmt.Sprintf(":alarm_clock: The reprovision of your Cloud PC %s (request %s) was postponed: it now goes at %s. You will still be signed out and all data and apps on it deleted then.",
			deviceName(r), r.ID, slackTime(r.HeadsUp.SendAt))
	case approvals.StateOutcomeUnknown:
		return fmt.Sprintf(":grey_question: The reprovision of your Cloud PC %s (request %s) may have started: the bot could not tell whether Microsoft took it. IT is checking; you will hear from them.",
			deviceName(r), r.ID)
	case approvals.StateSucceeded:
		return fmt.Sprintf(":gear: The reprovision of your Cloud PC %s (request %s) has started: Microsoft accepted it. It is unavailable until it is provisioned again.",
			deviceName(r), r.ID)
	case approvals.StatePending:
		return fmt.Sprintf(":information_source: The reprovision of your Cloud PC %s (request %s) will not happen now: nothing was changed on your Cloud PC. It is waiting for an approver again; if it goes ahead, you will get a new heads-up first.",
			deviceName(r), r.ID)
	}
	// Canceled, denied, expired, failed: it ended without the call (or
	// Microsoft refused it).
	return fmt.Sprintf(":information_source: The reprovision of your Cloud PC %s (request %s) will not happen now: nothing was changed on your Cloud PC. (%s)",
		deviceName(r), r.ID, statusLine(r))
}

// userReadyText tells the Cloud PC's user how the reprovision ended.
func userReadyText(r *approvals.Request) string {
	switch r.Tracking.Result {
	case approvals.TrackProvisioned:
		return fmt.Sprintf(":tada: Your Cloud PC %s is ready: it was reprovisioned (request %s). Sign in to it again; your earlier data and apps are gone.", deviceName(r), r.ID)
	case approvals.TrackFailed:
		return fmt.Sprintf(":x: The reprovision of your Cloud PC %s failed (request %s); IT has been told.", deviceName(r), r.ID)
	}
	return fmt.Sprintf("The bot stopped following the reprovision of your Cloud PC %s (request %s); IT has been told.", deviceName(r), r.ID)
}

// userNotNotifiedText tells the approver and the requester that the Cloud
// PC's user was not told.
func userNotNotifiedText(r *approvals.Request) string {
	upn := "The Cloud PC's user"
	if r.Device != nil && r.Device.UserPrincipalName != "" {
		upn = escapeText(r.Device.UserPrincipalName)
	}
	why := "Slack could not be asked who they are"
	switch r.HeadsUp.Result {
	case approvals.HeadsUpNoAccount:
		why = "no Slack account has that email address"
	case approvals.HeadsUpNoUser:
		why = "the Cloud PC has no user principal name"
	}
	return fmt.Sprintf(":warning: %s could not be told that %s will be reprovisioned (request %s): %s; the reprovision goes on. Please tell them yourself if you can.",
		upn, deviceName(r), r.ID, why)
}

// moreTimeAskedText asks the approver to postpone a scheduled call.
func moreTimeAskedText(r *approvals.Request) string {
	text := fmt.Sprintf(":raised_hand: %s asks for more time before %s is reprovisioned (request %s, sending at %s).",
		cloudPCUser(r), deviceName(r), r.ID, slackTime(r.HeadsUp.SendAt))
	if r.HeadsUp.Postponed {
		return text + " It was postponed once already: *Send now* or *Cancel*, or let it go at its time."
	}
	return text + " *Postpone* moves it later by the same wait (once); or *Send now* or *Cancel*. Doing nothing sends it at its time."
}

func moreTimeAskedBlocks(r *approvals.Request) []slack.Block {
	var buttons []slack.BlockElement
	if !r.HeadsUp.Postponed {
		buttons = append(buttons, slack.NewButtonBlockElement(actionPostpone, r.ID, plain("Postpone")).WithStyle(slack.StylePrimary))
	}
	buttons = append(buttons, sendNowButton(r), slack.NewButtonBlockElement(actionAbort, r.ID, plain("Cancel")))
	return []slack.Block{section(moreTimeAskedText(r)), slack.NewActionBlock("more_time:"+r.ID, buttons...)}
}

// signInToSendText asks the approver of a scheduled call to sign in again.
func signInToSendText(n approvals.Notice) string {
	r := n.Request
	what := fmt.Sprintf("%s (request %s, scheduled for %s)", deviceName(r), r.ID, slackTime(r.HeadsUp.SendAt))
	var text string
	if n.Why == nil {
		text = fmt.Sprintf(":warning: The bot restarted while the reprovision of %s was waiting, and your sign-in was lost with it.", what)
	} else {
		text = fmt.Sprintf(":warning: %s Your new sign-in for %s did not complete.", outcomeText(n.Why), what)
	}
	text += " Click *Sign in* so that it can be sent at its time; *Send now* also works (you sign in first)."
	if !r.ExpiresAt.IsZero() {
		text += fmt.Sprintf(" If nobody signs in by %s, it expires and nothing is sent.", slackTime(r.ExpiresAt))
	}
	return text
}

func signInToSendBlocks(n approvals.Notice) []slack.Block {
	r := n.Request
	signIn := slack.NewButtonBlockElement(actionSignInSend, r.ID, plain("Sign in")).WithStyle(slack.StylePrimary)
	return []slack.Block{
		section(signInToSendText(n)),
		slack.NewActionBlock("sign_in_to_send:"+r.ID, signIn, sendNowButton(r), slack.NewButtonBlockElement(actionAbort, r.ID, plain("Cancel"))),
	}
}

// headsUpRefusalText words the refusals of the heads-up's buttons.
func headsUpRefusalText(f *approvals.Refusal) (string, bool) {
	ref := f.Ref
	switch f.Kind {
	case approvals.RefusedNotTheUser:
		return fmt.Sprintf("Only the person whose Cloud PC %s reprovisions can ask for more time. Nothing was changed.", ref), true
	case approvals.RefusedAskedAlready:
		if f.Request != nil && f.Request.HeadsUp.Postponed {
			return fmt.Sprintf("%s was postponed once already, so it cannot be asked for again. Nothing was changed.", ref), true
		}
		return fmt.Sprintf("You asked for more time for %s already; the approver decides. Nothing was changed.", ref), true
	case approvals.RefusedPostponed:
		return fmt.Sprintf("%s was postponed once already and cannot be postponed again. Nothing was changed; you may still Send now or Cancel.", ref), true
	case approvals.RefusedNotScheduled:
		if f.Request == nil {
			return fmt.Sprintf("%s is not waiting to be sent. Nothing was changed.", ref), true
		}
		return fmt.Sprintf("%s is not waiting to be sent: %s", ref, statusLine(f.Request)), true
	}
	return "", false
}

// notConfirmerText: only the approver who confirmed may act on a
// confirmation or a scheduled call.
func notConfirmerText(f *approvals.Refusal) string {
	ref := f.Ref
	switch f.Action {
	case approvals.ActionAbort:
		if f.Request != nil && f.Request.State == approvals.StateScheduled {
			return fmt.Sprintf("Only %s can cancel %s while it waits to be sent. Nothing was changed.", orMentions(f.Users), ref)
		}
		return fmt.Sprintf("Only %s can cancel %s at the confirmation.", orMentions(f.Users), ref)
	case approvals.ActionSendNow, approvals.ActionPostpone, approvals.ActionSignInToSend:
		return fmt.Sprintf("Only %s, who approved and confirmed, can send, postpone or sign in for %s. Nothing was changed.", orMentions(f.Users), ref)
	}
	return fmt.Sprintf("Only %s, who approved and signed in, can confirm %s.", orMentions(f.Users), ref)
}

// scheduledDoneText is what the approver or the user is told when a click
// on a scheduled call did what they asked.
func scheduledDoneText(action string, r *approvals.Request) string {
	switch action {
	case actionSendNow:
		if r.HeadsUp.SignInLost {
			return fmt.Sprintf("Sending %s now: sign in first (see the sign-in message).", r.ID)
		}
		return fmt.Sprintf("Sending %s now…", r.ID)
	case actionPostpone:
		return fmt.Sprintf("Postponed %s: it now goes at %s; %s was told.", r.ID, slackTime(r.HeadsUp.SendAt), cloudPCUser(r))
	case actionMoreTime:
		return fmt.Sprintf("Asked <@%s> for more time before %s is reprovisioned. You will hear if it is postponed.", r.DecidedBy, r.ID)
	case actionSignInSend:
		return fmt.Sprintf("Signing in for %s: see the sign-in message.", r.ID)
	}
	return ""
}
