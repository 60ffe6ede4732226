package bot

import (
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// Action IDs of the buttons on the approval prompt. The button value is the
// request reference; both are checked before use.
const (
	actionApprove = "approve"
	actionDeny    = "deny"
)

// wipeWarning is on every prompt: the approver must know what Approve does.
const wipeWarning = ":warning: Reprovisioning *signs the user out and deletes all their data and apps* on this Cloud PC. It cannot be undone."

// promptText is the notification/fallback text of the approval prompt.
func promptText(r *approvals.Request) string {
	return fmt.Sprintf("Reprovision request %s for Cloud PC %s from <@%s>", r.ID, r.CloudPCID, r.RequesterID)
}

// promptBlocks renders the approval prompt for r in its current state. The
// buttons are shown only while the request is pending; status is the line
// that says what is happening now.
func promptBlocks(r *approvals.Request, status string) []slack.Block {
	header := slack.NewSectionBlock(mrkdwn(fmt.Sprintf("*Reprovision request %s*", r.ID)), nil, nil)
	facts := slack.NewSectionBlock(nil, []*slack.TextBlockObject{
		mrkdwn(fmt.Sprintf("*Cloud PC*\n`%s`", r.CloudPCID)),
		mrkdwn(fmt.Sprintf("*Requested by*\n<@%s>", r.RequesterID)),
		mrkdwn(fmt.Sprintf("*When*\n%s", slackDate(r))),
		mrkdwn(fmt.Sprintf("*Approver*\n<@%s>", r.ApproverID)),
	}, nil)
	warning := slack.NewSectionBlock(mrkdwn(wipeWarning), nil, nil)
	blocks := []slack.Block{header, facts, warning}
	if r.State == approvals.StatePending {
		approve := slack.NewButtonBlockElement(actionApprove, r.ID, plain("Approve")).
			WithStyle(slack.StyleDanger).
			WithConfirm(slack.NewConfirmationBlockObject(
				plain("Reprovision this Cloud PC?"),
				mrkdwn(fmt.Sprintf("`%s` will be wiped: the user is signed out and all data and apps are deleted. You will be asked to sign in.", r.CloudPCID)),
				plain("Approve"), plain("Go back")))
		deny := slack.NewButtonBlockElement(actionDeny, r.ID, plain("Deny"))
		blocks = append(blocks, slack.NewActionBlock("decision:"+r.ID, approve, deny))
	}
	if status != "" {
		blocks = append(blocks, slack.NewContextBlock("status:"+r.ID, mrkdwn(status)))
	}
	return blocks
}

// slackDate shows the request time in each reader's own time zone.
func slackDate(r *approvals.Request) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time}|%s>", r.CreatedAt.Unix(), r.CreatedAt.UTC().Format("2006-01-02 15:04 UTC"))
}

// statusLine says in one line where the request is, for the prompt and for
// late clickers.
func statusLine(r *approvals.Request) string {
	switch r.State {
	case approvals.StatePending:
		if r.Outcome != "" {
			return fmt.Sprintf(":hourglass: Awaiting a decision. %s", r.Outcome)
		}
		return ":hourglass: Awaiting a decision."
	case approvals.StateApproved:
		return fmt.Sprintf(":key: Approved by <@%s>. Waiting for <@%s> to sign in (see the sign-in message).", r.DecidedBy, r.DecidedBy)
	case approvals.StateExecuting:
		return fmt.Sprintf(":gear: Approved by <@%s>. Reprovisioning…", r.DecidedBy)
	case approvals.StateSucceeded:
		return fmt.Sprintf(":white_check_mark: Approved by <@%s>. Reprovision started: Microsoft Graph accepted the request.%s", r.DecidedBy, requestIDSuffix(r))
	case approvals.StateFailed:
		return fmt.Sprintf(":x: Approved by <@%s>. Reprovision failed: %s", r.DecidedBy, r.Outcome)
	case approvals.StateOutcomeUnknown:
		return fmt.Sprintf(":grey_question: Approved by <@%s>. Outcome unknown — check the Cloud PC. %s", r.DecidedBy, r.Outcome)
	case approvals.StateDenied:
		return fmt.Sprintf(":no_entry_sign: Denied by <@%s>.", r.DecidedBy)
	case approvals.StateExpired:
		return ":clock3: Expired: nobody decided in time."
	case approvals.StateCanceled:
		return ":leftwards_arrow_with_hook: Canceled by the requester."
	}
	return string(r.State)
}

func requestIDSuffix(r *approvals.Request) string {
	if r.GraphRequestID == "" {
		return ""
	}
	return fmt.Sprintf(" (request-id `%s`)", r.GraphRequestID)
}

// requesterUpdate is what the requester is told when their request reaches a
// decision or an outcome.
func requesterUpdate(r *approvals.Request) string {
	return fmt.Sprintf("Your request %s to reprovision Cloud PC `%s`: %s", r.ID, r.CloudPCID, statusLine(r))
}

// requestSummary is the same news for someone other than the requester.
func requestSummary(r *approvals.Request) string {
	return fmt.Sprintf("Request %s to reprovision Cloud PC `%s` from <@%s>: %s", r.ID, r.CloudPCID, r.RequesterID, statusLine(r))
}

// signInBlocks is the DM with the device code. The verification URL comes
// from Entra and is checked to be https before it becomes a link button.
func signInBlocks(ref, verificationURL, userCode string) []slack.Block {
	text := fmt.Sprintf("*Sign in to approve %s.* Open the Microsoft sign-in page and enter the code `%s`. "+
		"Sign in as yourself: the reprovision runs with your account.", ref, userCode)
	button := slack.NewButtonBlockElement("signin_link", ref, plain("Open Microsoft sign-in")).WithURL(verificationURL)
	return []slack.Block{
		slack.NewSectionBlock(mrkdwn(text), nil, slack.NewAccessory(button)),
		slack.NewContextBlock("", mrkdwn(fmt.Sprintf("Code: `%s` · expires in about 15 minutes · never share it", userCode))),
	}
}

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}
func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
}

// escapeText makes s safe inside Slack mrkdwn: Graph messages and other
// outside text must not turn into mentions or links.
func escapeText(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
