package bot

import (
	"errors"
	"fmt"
	"strings"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// This file is where the workflow's results become words: doneText and
// replyText for what a person did (done, or refused or failed: a click, a
// command or a form),
// outcomeText for why a request ended or waits again, noticeText for the
// workflow's notices. Everything from outside (targets, reasons, Graph's
// messages) is escaped here.

// errFormNotOpened: Slack did not open a form the click needed.
var errFormNotOpened = errors.New("the form did not open")

// doneText is what replaces the message someone clicked on when the
// workflow did what they asked ("" when the prompt itself shows the news).
func doneText(action string, r *approvals.Request) string {
	if text := batchDoneText(action, r); text != "" {
		return text
	}
	switch action {
	case actionCancel:
		return fmt.Sprintf(":leftwards_arrow_with_hook: You canceled %s; the approvers' prompts say so.", r.ID)
	case actionConfirm, actionPick:
		if r.State != approvals.StateConfirming {
			return "" // the pick could not be recorded: both sides were told
		}
		if r.IsBatch() {
			return fmt.Sprintf("Confirmed: reprovisioning %s%s (%s)… The prompt shows the counts, its thread each Cloud PC's result.",
				batchWhat(r, false), withOptions(r.Options), r.ID)
		}
		return fmt.Sprintf("Confirmed: reprovisioning %s%s (%s)…", escapeText(targetLabel(r)), withOptions(r.Options), r.ID)
	case actionAbort:
		return fmt.Sprintf("Canceled %s: nothing was reprovisioned.", r.ID)
	}
	return scheduledDoneText(action, r)
}

// replyText is what the person who clicked, typed or submitted is told when
// the workflow did not do what they asked.
func replyText(err error) string {
	var refusal *approvals.Refusal
	var input inputError
	switch {
	case errors.As(err, &refusal):
		return refusalText(refusal)
	case errors.As(err, &input):
		return input.Error()
	case errors.Is(err, errFormNotOpened):
		return ":warning: The form for a reason did not open; please click Deny again."
	}
	return ":x: That could not be recorded, so nothing was done. Please try again."
}

// refusalText puts a refusal into words.
func refusalText(f *approvals.Refusal) string {
	if text, ok := policyRefusalText(f); ok {
		return text
	}
	if text, ok := headsUpRefusalText(f); ok {
		return text
	}
	if text := batchRefusalText(f); text != "" {
		return text
	}
	ref := f.Ref
	switch f.Kind {
	case approvals.RefusedNotRequester:
		if f.Action == approvals.ActionRequestAgain {
			return fmt.Sprintf("Only %s can ask again for %s.", orMentions(f.Users), ref)
		}
		return fmt.Sprintf("Only %s can cancel %s.", orMentions(f.Users), ref)
	case approvals.RefusedNotConfirmer:
		return notConfirmerText(f)
	case approvals.RefusedNotAnApprover:
		return fmt.Sprintf("Only an approver of %s (%s) can resume tracking.", ref, orMentions(f.Users))
	case approvals.RefusedNotPaused:
		return fmt.Sprintf("%s is not paused: %s", ref, statusLine(f.Request))
	case approvals.RefusedHandled:
		if f.Action == approvals.ActionSignInToSend {
			return fmt.Sprintf("You are signed in for %s already; it goes at its time. %s", ref, statusLine(f.Request))
		}
		return fmt.Sprintf("%s was already handled: %s", ref, statusLine(f.Request))
	case approvals.RefusedBusy:
		if f.Action == approvals.ActionResume {
			return fmt.Sprintf("Tracking of %s is already being resumed.", ref)
		}
		return fmt.Sprintf("%s is already being handled.", ref)
	case approvals.RefusedExpired:
		if f.Action == approvals.ActionConfirm || f.Action == approvals.ActionPick {
			return fmt.Sprintf("The confirmation of %s has expired; nothing was sent.", ref)
		}
		return fmt.Sprintf("%s has expired; nothing was changed.", ref)
	case approvals.RefusedChoiceGone:
		return "That choice is no longer on offer."
	case approvals.RefusedSignInStale:
		return fmt.Sprintf("Your sign-in for %s is no longer valid, so nothing was sent. Click Approve on the prompt to sign in again.", ref)
	case approvals.RefusedOpenElsewhere:
		return openElsewhereText(f)
	case approvals.RefusedNoSuchRequest:
		return fmt.Sprintf("There is no request %s.", ref)
	case approvals.RefusedNoApproverReachable:
		return fmt.Sprintf(":x: Request %s is recorded, but Slack cannot deliver the approval prompt to any approver (their accounts are deactivated or closed to the bot). Please tell an admin; cancel the request if it is no longer needed.", ref)
	case approvals.RefusedNoApprover:
		return fmt.Sprintf(":warning: Request %s is recorded, but Slack did not take the approval prompt yet. The bot keeps trying to reach the approvers; you will hear when one decides.", ref)
	}
	return fmt.Sprintf("That is not possible now (%s); nothing was changed.", f.Kind)
}

// policyRefusalText words the policy's refusals: who may ask, where, and
// who may decide. A refused decision changes nothing, and says so.
func policyRefusalText(f *approvals.Refusal) (string, bool) {
	ref := f.Ref
	var text string
	switch f.Kind {
	case approvals.RefusedNotARequester:
		text = fmt.Sprintf("You are not on the list of people who may request a reprovision. If you need one, ask %s.", orMentions(f.Users))
	case approvals.RefusedChannel:
		text = fmt.Sprintf("Reprovision requests are taken only in %s.", orList(f.Channels, "<#%s>"))
	case approvals.RefusedSoleApprover:
		text = "You are the only approver, and approving your own request is not allowed, so nobody could approve it. Ask for another approver to be added."
	case approvals.RefusedTooFewApprovers:
		others := "nobody else can approve"
		if len(f.Users) > 0 {
			others = "besides you only " + andMentions(f.Users) + " can approve"
		}
		text = fmt.Sprintf("Each reprovision needs %d approvals from approvers other than the person asking, and %s. Ask for another approver to be added.",
			f.Required, others)
	case approvals.RefusedAlreadyApproved:
		return fmt.Sprintf(":no_entry: Your approval of %s is recorded already; the next one must come from another approver: %s. Nothing was changed.",
			ref, orMentions(f.Users)), true
	case approvals.RefusedNoApprovers:
		return fmt.Sprintf(":no_entry: Nobody can approve or deny %s: it has no approvers. Nothing was changed.", ref), true
	case approvals.RefusedOwnRequestNoOther:
		return fmt.Sprintf(":no_entry: You asked for %s and are its only approver; approving your own request is not allowed, so it cannot be approved. Nothing was changed.", ref), true
	case approvals.RefusedOnlyApproverAsked:
		return fmt.Sprintf(":no_entry: Nobody can approve or deny %s: its only approver, %s, asked for it, and approving your own request is not allowed. Nothing was changed.",
			ref, orMentions(f.Users)), true
	case approvals.RefusedOwnRequest:
		return fmt.Sprintf(":no_entry: You asked for %s, and approving your own request is not allowed: %s can approve or deny it. Nothing was changed.",
			ref, orMentions(f.Users)), true
	case approvals.RefusedNotDecider:
		return fmt.Sprintf(":no_entry: Only %s can approve or deny %s. Nothing was changed.", orMentions(f.Users), ref), true
	default:
		return "", false
	}
	if f.Action == approvals.ActionRequestAgain {
		text = ":warning: " + text
	}
	return text, true
}

// openElsewhereText: the Cloud PC already has an open request.
func openElsewhereText(f *approvals.Refusal) string {
	if f.Request != nil && f.Request.IsBatch() {
		return fmt.Sprintf(":x: A Cloud PC of %s already has an open reprovision request, so %s was not sent.", batchWhat(f.Request, false), f.Ref)
	}
	if f.Other == nil {
		return fmt.Sprintf(":x: `%s` already has an open reprovision request, so %s was not sent.", escapeText(targetOf(f.Request)), f.Ref)
	}
	return fmt.Sprintf(":x: `%s` already has an open reprovision request: %s from <@%s> (%s). %s was not sent.",
		escapeText(targetOf(f.Request)), f.Other.ID, f.Other.RequesterID, f.Other.State, f.Ref)
}

// outcomeText is why a request ended or waits again, one or two sentences.
func outcomeText(o *approvals.Outcome) string {
	if o == nil {
		return ""
	}
	switch o.Kind {
	case approvals.OutcomeGraph:
		if o.Graph == nil {
			return "Microsoft Graph refused the request."
		}
		return graphErrorText(o.Graph)
	case approvals.OutcomeSignInDeclined:
		return "Sign-in was declined."
	case approvals.OutcomeSignInExpired:
		return "The sign-in code expired."
	case approvals.OutcomeIdentityMismatch:
		return fmt.Sprintf("The sign-in was as %s, not as the approver (%s), so nothing was done.", escapeText(o.SignedInAs), escapeText(o.Expected))
	case approvals.OutcomeSameIdentity:
		return fmt.Sprintf("The sign-in was as %s, who has approved this request already: each approval must come from a different person, so nothing was done.", escapeText(o.SignedInAs))
	case approvals.OutcomeSignInInterrupted:
		return "The bot restarted during sign-in."
	case approvals.OutcomeSignInFailed:
		return "Sign-in did not complete."
	case approvals.OutcomeSignInStale:
		return "The sign-in is no longer valid."
	case approvals.OutcomeSignInUnavailable:
		return "Microsoft sign-in could not be reached or did not answer in time, so no sign-in code was issued."
	case approvals.OutcomeNoMatch:
		return fmt.Sprintf("No Cloud PC matches `%s`.", escapeText(o.Target))
	case approvals.OutcomeTooManyMatches:
		return fmt.Sprintf("%d Cloud PCs match `%s`: too many to choose from. Ask again with the Cloud PC's id or device name.", o.Matches, escapeText(o.Target))
	case approvals.OutcomeStatusNotAllowed:
		return fmt.Sprintf("The Cloud PC's status is *%s*; reprovisioning is allowed only when it is %s. Nothing was sent.",
			escapeText(orDash(o.Status)), escapeText(orList(o.Allowed, "%s")))
	case approvals.OutcomeOpenElsewhere:
		if o.Other == "" {
			return fmt.Sprintf("Cloud PC `%s` already has an open request. Nothing was sent.", escapeText(o.CloudPCID))
		}
		return fmt.Sprintf("Cloud PC `%s` already has an open request: %s from <@%s>. Nothing was sent.", escapeText(o.CloudPCID), o.Other, o.OtherRequester)
	case approvals.OutcomeNotRecorded:
		return "The request could not be recorded, so nothing was sent."
	case approvals.OutcomeConfirmationNotSent:
		return "The final confirmation could not be sent on Slack."
	case approvals.OutcomeInFlightAtRestart:
		return "The bot stopped while the reprovision call may have been in flight; it was not sent again."
	case approvals.OutcomeBatchTooLarge:
		return fmt.Sprintf("The look-up found %s; a batch may have at most %d. Nothing was sent.", cloudPCCount(o.Matches), o.Max)
	case approvals.OutcomeNothingToSend:
		return "None of the Cloud PCs may be reprovisioned now: each was skipped for its status, left out for another open request, or not found. Nothing was sent."
	}
	// A sentence stored by an older version, which wrote it as mrkdwn
	// with everything from outside already escaped.
	return o.Text
}

// waitingAgainText is the outcome of a request sent back to pending, with
// what the approver can do about it.
func waitingAgainText(o *approvals.Outcome) string {
	text := outcomeText(o)
	switch {
	case o == nil || o.Kind == "":
		return text
	case o.Kind == approvals.OutcomeSignInStale:
		return text + " Approve again to sign in."
	case o.Kind == approvals.OutcomeGraph && o.Graph != nil && o.Graph.Kind == approvals.GraphSignInAgain && o.Graph.Method == "POST":
		return text + " Nothing was done; approve again to sign in afresh."
	case o.Kind == approvals.OutcomeGraph && !strings.Contains(text, "nothing was sent"):
		return text + " The reprovision was not sent. Approve again to retry."
	}
	return text + " Approve again to retry."
}

// signInFailedText tells the approver (and the requester) that a sign-in
// did not complete and the request waits again.
func signInFailedText(user string, n approvals.Notice) string {
	r := n.Request
	why := outcomeText(n.Why)
	if user == r.RequesterID && user != r.DecidedBy {
		return fmt.Sprintf("Your request %s was approved, but the approver's sign-in did not complete (%s). It is waiting for a decision again.", r.ID, why)
	}
	return fmt.Sprintf("%s %s is still waiting: click Approve on the prompt to try again.", why, r.ID)
}

// approvalRecordedText tells an approver that their approval is recorded,
// and the requester who approved, while another approval is needed.
func approvalRecordedText(user string, r *approvals.Request) string {
	if len(r.Approvals) == 0 { // cannot happen: the notice follows an approval
		return requesterUpdate(r)
	}
	count := fmt.Sprintf("%d of %d approvals", len(r.Approvals), r.Required())
	for _, a := range r.Approvals {
		if a.By == user {
			return fmt.Sprintf("Your approval of %s is recorded (%s, signed in as %s). It now needs another approver's approval; the prompt shows how it goes.",
				r.ID, count, escapeText(a.SignedInAs))
		}
	}
	last := r.Approvals[len(r.Approvals)-1]
	return fmt.Sprintf("<@%s> approved your request %s (%s). It is waiting for another approver.", last.By, r.ID, count)
}

// noticeText is the text of a plain notice (those without buttons).
func noticeText(user string, n approvals.Notice) string {
	n = memberNotice(n)
	r := n.Request
	switch n.Kind {
	case approvals.NoticeSignInFailed:
		return signInFailedText(user, n)
	case approvals.NoticeStillPaused:
		return fmt.Sprintf("%s Tracking of %s stays paused.", outcomeText(n.Why), r.ID)
	case approvals.NoticeApprovalRecorded:
		return approvalRecordedText(user, r)
	case approvals.NoticeHeadsUp:
		return headsUpText(user, r)
	case approvals.NoticeUserUpdate:
		if n.Member != nil {
			return memberUserUpdateText(r)
		}
		return userUpdateText(r)
	case approvals.NoticeUserReady:
		return userReadyText(r)
	case approvals.NoticeUserNotNotified:
		return userNotNotifiedText(r)
	case approvals.NoticeMoreTimeAsked:
		return moreTimeAskedText(r)
	case approvals.NoticeSignInToSend:
		return signInToSendText(n)
	case approvals.NoticeBatchHalted:
		return batchHaltedText(n)
	case approvals.NoticeNotRecorded:
		if n.Accepted {
			return fmt.Sprintf("Request %s: Microsoft Graph accepted the reprovision%s, but the bot was stopped before it could record it; it settles the request when it starts again.",
				r.ID, requestIDSuffix(r))
		}
		return fmt.Sprintf("Request %s: Microsoft Graph answered (%s) but the bot could not record it. Check the Cloud PC before trying again.",
			r.ID, orDash(outcomeText(n.Why)))
	}
	if user == r.RequesterID {
		return requesterUpdate(r)
	}
	return requestSummary(r)
}

// progressText is a follow-through update for the prompt's thread.
func progressText(r *approvals.Request, p approvals.Progress) string {
	if r.IsBatch() {
		if text := batchProgressText(r, p); text != "" {
			return text
		}
	}
	switch p.Kind {
	case approvals.ProgressAccepted:
		return fmt.Sprintf("Reprovision of %s%s accepted. I'll look at it in %s and post progress here.", escapeText(targetLabel(r)), withOptions(r.Options), p.Every)
	case approvals.ProgressStatus:
		detail := ""
		if p.Detail != "" {
			detail = " (" + escapeText(p.Detail) + ")"
		}
		return fmt.Sprintf("%s: status *%s*%s.", r.ID, escapeText(orDash(p.Status)), detail)
	case approvals.ProgressPaused:
		return fmt.Sprintf("%s: tracking paused, there is no valid sign-in to look with. Click *Resume tracking* on the prompt to sign in.", r.ID)
	}
	return statusLine(r)
}

// signInPurposeText completes "Sign in to …".
func signInPurposeText(why approvals.SignInPurpose, r *approvals.Request) string {
	switch why {
	case approvals.SignInToResumeTracking:
		return "resume tracking " + r.ID
	case approvals.SignInToSend:
		return "send " + r.ID + " (again, after the bot restarted)"
	case approvals.SignInToResumeBatch:
		return "resume batch " + r.ID
	}
	return "approve " + r.ID
}

// optionsText is how the reprovision options read for people, wherever
// they are shown: "Windows 11, standard user", "Windows 10", "local
// administrator"; "" when none was given.
func optionsText(o approvals.Options) string {
	var parts []string
	switch o.OSVersion {
	case "":
	case approvals.OSWindows10:
		parts = append(parts, "Windows 10")
	case approvals.OSWindows11:
		parts = append(parts, "Windows 11")
	default: // never stored (Options.Validate), but never shown raw either
		parts = append(parts, escapeText(o.OSVersion))
	}
	switch o.UserAccountType {
	case "":
	case approvals.AccountStandardUser:
		parts = append(parts, "standard user")
	case approvals.AccountAdministrator:
		parts = append(parts, "local administrator")
	default:
		parts = append(parts, escapeText(o.UserAccountType))
	}
	return strings.Join(parts, ", ")
}

// withOptions follows "reprovision <Cloud PC>" in a sentence: " with
// Windows 11, standard user", or "" without options.
func withOptions(o approvals.Options) string {
	if text := optionsText(o); text != "" {
		return " with " + text
	}
	return ""
}

// andReprovisionedWith follows "<Cloud PC> will be wiped": " and
// reprovisioned with Windows 11, standard user", or "".
func andReprovisionedWith(o approvals.Options) string {
	if text := optionsText(o); text != "" {
		return " and reprovisioned with " + text
	}
	return ""
}

// orMentions renders user IDs as mentions: "<@U1>", "<@U1> or <@U2>",
// "<@U1>, <@U2> or <@U3>".
func orMentions(users []string) string { return orList(users, "<@%s>") }

// orList is items formatted and joined as "a", "a or b", "a, b or c".
func orList(ids []string, format string) string { return joinList(ids, format, "or") }

// andMentions renders user IDs as "<@U1>, <@U2> and <@U3>".
func andMentions(users []string) string { return joinList(users, "<@%s>", "and") }

// joinList is items formatted and joined as "a", "a conj b", "a, b conj c".
func joinList(ids []string, format, conj string) string {
	items := make([]string, len(ids))
	for i, id := range ids {
		items[i] = fmt.Sprintf(format, id)
	}
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " " + conj + " " + items[len(items)-1]
}
