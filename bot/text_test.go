package bot

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// What people read: every refusal, outcome, notice, progress update and
// status line, checked for the people, the reference and the facts it must
// name, and for outside text (targets, usernames, reasons, Graph's words)
// arriving escaped.

const (
	txRef      = "R-7K3F9Q"
	txOtherRef = "R-9XW2PL"
	txCloudPC  = "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
	// txHostile would become a channel ping, a mention and a link if it
	// reached Slack unescaped.
	txHostile = "<!channel> & <@U0BOSS|boss> <https://evil.example|click>"
	// txHostileEscaped is txHostile as it must appear.
	txHostileEscaped = "&lt;!channel&gt; &amp; &lt;@U0BOSS|boss&gt; &lt;https://evil.example|click&gt;"
	// txFallback is refusalText's words for a kind it does not know.
	txFallback = "That is not possible now"
)

// txRequest is a request from UREQ with three approvers, decided by UA1.
func txRequest(state approvals.State) *approvals.Request {
	return &approvals.Request{
		ID:          txRef,
		Target:      "CPC-anna-01",
		CloudPCID:   txCloudPC,
		Reason:      "disk full",
		RequesterID: "UREQ",
		Approvers:   []string{"UA1", "UA2", "UA3"},
		State:       state,
		DecidedBy:   "UA1",
		Device:      &approvals.CloudPC{ID: txCloudPC, ManagedDeviceName: "CPC-anna-01", UserPrincipalName: "anna@contoso.com", Status: "provisioned"},
	}
}

// txTwoApprovals is a request in state that needs n+1 approvals (at least
// 2) with n given before UA1's (by UA2, then UA3).
func txTwoApprovals(state approvals.State, n int) *approvals.Request {
	r := txRequest(state)
	r.ApprovalsRequired = max(2, n+1)
	for _, by := range []string{"UA2", "UA3"}[:n] {
		r.Approvals = append(r.Approvals, approvals.Approval{By: by, SignedInAs: strings.ToLower(by) + "@contoso.com", At: time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)})
	}
	return r
}

// txTracked is a succeeded request followed with t (Until is set).
func txTracked(t approvals.Tracking) *approvals.Request {
	r := txRequest(approvals.StateSucceeded)
	r.GraphRequestID = "g-req-1"
	t.Since = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	t.Until = t.Since.Add(3 * time.Hour)
	r.Tracking = t
	return r
}

func txWith(r *approvals.Request, edit func(*approvals.Request)) *approvals.Request {
	edit(r)
	return r
}

// txCheck reports which of want are missing from got and which of bad are in it.
func txCheck(t *testing.T, name, got string, want, bad []string) {
	t.Helper()
	if strings.TrimSpace(got) == "" {
		t.Errorf("%s: empty text", name)
		return
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s: text lacks %q\n  text: %q", name, w, got)
		}
	}
	for _, b := range bad {
		if strings.Contains(got, b) {
			t.Errorf("%s: text contains %q\n  text: %q", name, b, got)
		}
	}
}

// txSendAt is when txScheduled's call goes.
var txSendAt = time.Date(2024, 5, 1, 14, 32, 0, 0, time.UTC)

// txScheduled is a request confirmed by UA1 whose call waits until
// txSendAt; its Cloud PC's user, UANNA, was told.
func txScheduled() *approvals.Request {
	r := txRequest(approvals.StateScheduled)
	r.SignedInAs = "alice@contoso.com"
	r.HeadsUp = approvals.HeadsUp{UserID: "UANNA", Result: approvals.HeadsUpSent, SendAt: txSendAt}
	r.ExpiresAt = txSendAt.Add(15 * time.Minute)
	return r
}

// txAt is txSendAt as Slack shows it.
var txAt = fmt.Sprintf("<!date^%d^{time}|14:32 UTC>", txSendAt.Unix())

// txRaw are the pieces of txHostile that must never reach Slack as they are.
var txRaw = []string{"<!channel>", "<@U0BOSS", "<https://", "& <"}

type txRefusalCase struct {
	name    string
	refusal approvals.Refusal
	want    []string
	bad     []string
}

// txRefusalCases cover every RefusalKind (the guard test checks that) and
// the actions that change the words.
var txRefusalCases = []txRefusalCase{
	// Asking.
	{"not a requester",
		approvals.Refusal{Kind: approvals.RefusedNotARequester, Action: approvals.ActionRequest, Users: []string{"UA1", "UA2", "UA3"}},
		[]string{"You are not on the list of people who may request a reprovision", "ask <@UA1>, <@UA2> or <@UA3>."},
		[]string{":warning:"}},
	{"not a requester, asking again",
		approvals.Refusal{Kind: approvals.RefusedNotARequester, Action: approvals.ActionRequestAgain, Users: []string{"UA1"}},
		[]string{":warning: You are not on the list", "ask <@UA1>."},
		[]string{" or "}},
	{"wrong channel",
		approvals.Refusal{Kind: approvals.RefusedChannel, Action: approvals.ActionRequest, Channels: []string{"C1", "C2"}},
		[]string{"Reprovision requests are taken only in <#C1> or <#C2>."}, nil},
	{"sole approver",
		approvals.Refusal{Kind: approvals.RefusedSoleApprover, Action: approvals.ActionRequest},
		[]string{"You are the only approver", "approving your own request is not allowed", "Ask for another approver to be added."}, nil},

	{"too few approvers besides the asker",
		approvals.Refusal{Kind: approvals.RefusedTooFewApprovers, Action: approvals.ActionRequest, Users: []string{"UA2"}, Required: 2},
		[]string{"needs 2 approvals from approvers other than the person asking", "only <@UA2> can approve", "Ask for another approver to be added."}, nil},
	{"too few approvers, none besides the asker",
		approvals.Refusal{Kind: approvals.RefusedTooFewApprovers, Action: approvals.ActionRequest, Required: 2},
		[]string{"needs 2 approvals", "nobody else can approve"}, []string{"besides you"}},

	// Deciding: nothing was changed, and who may decide is named.
	{"already approved",
		approvals.Refusal{Kind: approvals.RefusedAlreadyApproved, Action: approvals.ActionApprove, Ref: txRef, Users: []string{"UA2", "UA3"}},
		[]string{"Your approval of " + txRef + " is recorded already", "another approver: <@UA2> or <@UA3>.", "Nothing was changed."}, nil},
	{"no approvers",
		approvals.Refusal{Kind: approvals.RefusedNoApprovers, Action: approvals.ActionApprove, Ref: txRef},
		[]string{"Nobody can approve or deny " + txRef + ": it has no approvers.", "Nothing was changed."}, nil},
	{"own request, no other approver",
		approvals.Refusal{Kind: approvals.RefusedOwnRequestNoOther, Action: approvals.ActionApprove, Ref: txRef},
		[]string{"You asked for " + txRef + " and are its only approver", "cannot be approved", "Nothing was changed."}, nil},
	{"only approver asked",
		approvals.Refusal{Kind: approvals.RefusedOnlyApproverAsked, Action: approvals.ActionDeny, Ref: txRef, Users: []string{"UREQ"}},
		[]string{"Nobody can approve or deny " + txRef, "its only approver, <@UREQ>, asked for it", "Nothing was changed."}, nil},
	{"own request",
		approvals.Refusal{Kind: approvals.RefusedOwnRequest, Action: approvals.ActionApprove, Ref: txRef, Users: []string{"UA2", "UA3"}},
		[]string{"You asked for " + txRef, "<@UA2> or <@UA3> can approve or deny it.", "Nothing was changed."}, []string{"<@UA1>"}},
	{"not a decider",
		approvals.Refusal{Kind: approvals.RefusedNotDecider, Action: approvals.ActionDeny, Ref: txRef, Users: []string{"UA1", "UA2", "UA3"}},
		[]string{"Only <@UA1>, <@UA2> or <@UA3> can approve or deny " + txRef + ".", "Nothing was changed."}, nil},

	// Acting on a request.
	{"not the requester, cancel",
		approvals.Refusal{Kind: approvals.RefusedNotRequester, Action: approvals.ActionCancel, Ref: txRef, Users: []string{"UREQ"}},
		[]string{"Only <@UREQ> can cancel " + txRef + "."}, []string{"ask again"}},
	{"not the requester, request again",
		approvals.Refusal{Kind: approvals.RefusedNotRequester, Action: approvals.ActionRequestAgain, Ref: txRef, Users: []string{"UREQ"}},
		[]string{"Only <@UREQ> can ask again for " + txRef + "."}, []string{"cancel"}},
	{"not the confirmer, confirm",
		approvals.Refusal{Kind: approvals.RefusedNotConfirmer, Action: approvals.ActionConfirm, Ref: txRef, Users: []string{"UA1"}},
		[]string{"Only <@UA1>, who approved and signed in, can confirm " + txRef + "."}, []string{"<@UA2>"}},
	{"not the confirmer, pick",
		approvals.Refusal{Kind: approvals.RefusedNotConfirmer, Action: approvals.ActionPick, Ref: txRef, Users: []string{"UA1"}},
		[]string{"Only <@UA1>, who approved and signed in, can confirm " + txRef + "."}, nil},
	{"not the confirmer, abort",
		approvals.Refusal{Kind: approvals.RefusedNotConfirmer, Action: approvals.ActionAbort, Ref: txRef, Users: []string{"UA1"}},
		[]string{"Only <@UA1> can cancel " + txRef + " at the confirmation."}, []string{"can confirm"}},
	{"not the confirmer, send now",
		approvals.Refusal{Kind: approvals.RefusedNotConfirmer, Action: approvals.ActionSendNow, Ref: txRef, Users: []string{"UA1"}},
		[]string{"Only <@UA1>, who approved and confirmed, can send, postpone or sign in for " + txRef + ".", "Nothing was changed."}, []string{"can confirm"}},
	{"not the confirmer, postpone",
		approvals.Refusal{Kind: approvals.RefusedNotConfirmer, Action: approvals.ActionPostpone, Ref: txRef, Users: []string{"UA1"}},
		[]string{"Only <@UA1>, who approved and confirmed, can send, postpone or sign in for " + txRef + "."}, nil},
	{"not the confirmer, cancel a scheduled call",
		approvals.Refusal{Kind: approvals.RefusedNotConfirmer, Action: approvals.ActionAbort, Ref: txRef, Users: []string{"UA1"}, Request: txScheduled()},
		[]string{"Only <@UA1> can cancel " + txRef + " while it waits to be sent."}, []string{"confirmation"}},
	{"not the user",
		approvals.Refusal{Kind: approvals.RefusedNotTheUser, Action: approvals.ActionMoreTime, Ref: txRef},
		[]string{"Only the person whose Cloud PC " + txRef + " reprovisions can ask for more time.", "Nothing was changed."}, nil},
	{"asked already",
		approvals.Refusal{Kind: approvals.RefusedAskedAlready, Action: approvals.ActionMoreTime, Ref: txRef,
			Request: txWith(txScheduled(), func(r *approvals.Request) { r.HeadsUp.MoreTimeAsked = true })},
		[]string{"You asked for more time for " + txRef + " already; the approver decides."}, []string{"postponed"}},
	{"asked already, postponed",
		approvals.Refusal{Kind: approvals.RefusedAskedAlready, Action: approvals.ActionMoreTime, Ref: txRef,
			Request: txWith(txScheduled(), func(r *approvals.Request) { r.HeadsUp.Postponed = true })},
		[]string{txRef + " was postponed once already"}, []string{"You asked"}},
	{"postponed already",
		approvals.Refusal{Kind: approvals.RefusedPostponed, Action: approvals.ActionPostpone, Ref: txRef},
		[]string{txRef + " was postponed once already and cannot be postponed again.", "Send now or Cancel"}, nil},
	{"not scheduled",
		approvals.Refusal{Kind: approvals.RefusedNotScheduled, Action: approvals.ActionSendNow, Ref: txRef, Request: txRequest(approvals.StateExecuting)},
		[]string{txRef + " is not waiting to be sent: :gear: Approved by <@UA1>. Reprovisioning…"}, nil},
	{"not scheduled, request unknown",
		approvals.Refusal{Kind: approvals.RefusedNotScheduled, Action: approvals.ActionMoreTime, Ref: txRef},
		[]string{txRef + " is not waiting to be sent. Nothing was changed."}, nil},
	{"already signed in to send",
		approvals.Refusal{Kind: approvals.RefusedHandled, Action: approvals.ActionSignInToSend, Ref: txRef, Request: txScheduled()},
		[]string{"You are signed in for " + txRef + " already; it goes at its time.", "Sending at " + txAt}, nil},
	{"not an approver",
		approvals.Refusal{Kind: approvals.RefusedNotAnApprover, Action: approvals.ActionResume, Ref: txRef, Users: []string{"UA1", "UA2", "UA3"}},
		[]string{"Only an approver of " + txRef + " (<@UA1>, <@UA2> or <@UA3>) can resume tracking."}, nil},
	{"not paused",
		approvals.Refusal{Kind: approvals.RefusedNotPaused, Action: approvals.ActionResume, Ref: txRef,
			Request: txTracked(approvals.Tracking{LastStatus: "provisioning"})},
		[]string{txRef + " is not paused: ", ":white_check_mark: Approved by <@UA1>.", "Following it: status provisioning."}, nil},
	{"already handled",
		approvals.Refusal{Kind: approvals.RefusedHandled, Action: approvals.ActionApprove, Ref: txRef,
			Request: txWith(txRequest(approvals.StateDenied), func(r *approvals.Request) { r.DecidedBy, r.DecisionReason = "UA2", "not now" })},
		[]string{txRef + " was already handled: ", ":no_entry_sign: Denied by <@UA2>. Reason: not now"}, nil},
	{"busy, resume",
		approvals.Refusal{Kind: approvals.RefusedBusy, Action: approvals.ActionResume, Ref: txRef},
		[]string{"Tracking of " + txRef + " is already being resumed."}, nil},
	{"busy, confirm",
		approvals.Refusal{Kind: approvals.RefusedBusy, Action: approvals.ActionConfirm, Ref: txRef},
		[]string{txRef + " is already being handled."}, []string{"resumed"}},
	{"busy, abort",
		approvals.Refusal{Kind: approvals.RefusedBusy, Action: approvals.ActionAbort, Ref: txRef},
		[]string{txRef + " is already being handled."}, []string{"resumed"}},
	{"expired, confirm",
		approvals.Refusal{Kind: approvals.RefusedExpired, Action: approvals.ActionConfirm, Ref: txRef},
		[]string{"The confirmation of " + txRef + " has expired; nothing was sent."}, nil},
	{"expired, pick",
		approvals.Refusal{Kind: approvals.RefusedExpired, Action: approvals.ActionPick, Ref: txRef},
		[]string{"The confirmation of " + txRef + " has expired; nothing was sent."}, nil},
	{"expired, approve",
		approvals.Refusal{Kind: approvals.RefusedExpired, Action: approvals.ActionApprove, Ref: txRef},
		[]string{txRef + " has expired; nothing was changed."}, []string{"confirmation"}},
	{"expired, deny",
		approvals.Refusal{Kind: approvals.RefusedExpired, Action: approvals.ActionDeny, Ref: txRef},
		[]string{txRef + " has expired; nothing was changed."}, []string{"confirmation"}},
	{"choice gone",
		approvals.Refusal{Kind: approvals.RefusedChoiceGone, Action: approvals.ActionPick, Ref: txRef},
		[]string{"That choice is no longer on offer."}, nil},
	{"sign-in stale",
		approvals.Refusal{Kind: approvals.RefusedSignInStale, Action: approvals.ActionConfirm, Ref: txRef},
		[]string{"Your sign-in for " + txRef + " is no longer valid, so nothing was sent.", "Click Approve on the prompt to sign in again."}, nil},
	{"open elsewhere, other known",
		approvals.Refusal{Kind: approvals.RefusedOpenElsewhere, Action: approvals.ActionRequest, Ref: txRef, Request: txRequest(approvals.StatePending),
			Other: &approvals.Request{ID: txOtherRef, RequesterID: "UOTHER", State: approvals.StatePending}},
		[]string{":x: `" + txCloudPC + "` already has an open reprovision request: " + txOtherRef + " from <@UOTHER> (pending).", txRef + " was not sent."}, nil},
	{"open elsewhere, other unknown",
		approvals.Refusal{Kind: approvals.RefusedOpenElsewhere, Action: approvals.ActionRequest, Ref: txRef,
			Request: txWith(txRequest(approvals.StatePending), func(r *approvals.Request) { r.CloudPCID = "" })},
		[]string{":x: `CPC-anna-01` already has an open reprovision request, so " + txRef + " was not sent."}, []string{"<@"}},
	{"no such request",
		approvals.Refusal{Kind: approvals.RefusedNoSuchRequest, Action: approvals.ActionApprove, Ref: txOtherRef},
		[]string{"There is no request " + txOtherRef + "."}, nil},
	{"no approver reached",
		approvals.Refusal{Kind: approvals.RefusedNoApprover, Action: approvals.ActionRequest, Ref: txRef},
		[]string{":warning: Request " + txRef + " is recorded, but Slack did not take the approval prompt yet. The bot keeps trying"}, nil},
	{"no approver reachable",
		approvals.Refusal{Kind: approvals.RefusedNoApproverReachable, Action: approvals.ActionRequest, Ref: txRef},
		[]string{":x: Request " + txRef + " is recorded, but Slack cannot deliver the approval prompt to any approver"}, nil},

	// Batches.
	{"batch too large",
		approvals.Refusal{Kind: approvals.RefusedBatchTooLarge, Action: approvals.ActionRequest, Count: 73, Max: 50},
		[]string{"That is 73 Cloud PCs; a batch may have at most 50.", "Nothing was recorded"}, nil},
	{"not an approver, stop",
		approvals.Refusal{Kind: approvals.RefusedNotAnApprover, Action: approvals.ActionStopBatch, Ref: txRef, Users: []string{"UA1", "UA2", "UA3"}},
		[]string{"Only an approver of " + txRef + " (<@UA1>, <@UA2> or <@UA3>) can stop it."}, []string{"tracking"}},
	{"not the confirmer, resume a batch",
		approvals.Refusal{Kind: approvals.RefusedNotConfirmer, Action: approvals.ActionResumeBatch, Ref: txRef, Users: []string{"UA1"}},
		[]string{"Only <@UA1>, who confirmed " + txRef + ", can resume it"}, []string{"can confirm"}},
	{"busy, resume a batch",
		approvals.Refusal{Kind: approvals.RefusedBusy, Action: approvals.ActionResumeBatch, Ref: txRef},
		[]string{txRef + " is already being resumed."}, []string{"Tracking"}},
	{"already handled, stop",
		approvals.Refusal{Kind: approvals.RefusedHandled, Action: approvals.ActionStopBatch, Ref: txRef, Request: txRequest(approvals.StateSucceeded)},
		[]string{txRef + " is not running, or is being stopped already: :white_check_mark:"}, nil},
}

func TestReplyTextRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range txRefusalCases {
		f := tc.refusal
		got := replyText(&f)
		txCheck(t, tc.name, got, tc.want, append([]string{txFallback}, tc.bad...))
		// A refusal wrapped on its way up reads the same.
		if wrapped := replyText(fmt.Errorf("clicking: %w", &f)); wrapped != got {
			t.Errorf("%s: wrapped refusal reads %q, want %q", tc.name, wrapped, got)
		}
	}
}

// A refusal names a Cloud PC only escaped: the target was typed by a person.
func TestReplyTextRefusalEscapesTarget(t *testing.T) {
	t.Parallel()
	r := txRequest(approvals.StatePending)
	r.CloudPCID, r.Target = "", txHostile
	for _, other := range []*approvals.Request{nil, {ID: txOtherRef, RequesterID: "UOTHER", State: approvals.StateApproved}} {
		got := replyText(&approvals.Refusal{Kind: approvals.RefusedOpenElsewhere, Ref: txRef, Request: r, Other: other})
		txCheck(t, "open elsewhere", got, []string{"`" + txHostileEscaped + "`"}, txRaw)
	}
	// Statuses quoted in a refusal are escaped too.
	denied := txRequest(approvals.StateDenied)
	denied.DecisionReason = txHostile
	got := replyText(&approvals.Refusal{Kind: approvals.RefusedHandled, Ref: txRef, Request: denied})
	txCheck(t, "handled", got, []string{"Reason: " + txHostileEscaped}, txRaw)
}

func TestReplyTextOtherErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"input error", inputError("Please give a reason."), "Please give a reason."},
		{"wrapped input error", fmt.Errorf("parsing: %w", inputError("The text is not valid UTF-8.")), "The text is not valid UTF-8."},
		{"form not opened", errFormNotOpened, ":warning: The form for a reason did not open; please click Deny again."},
		{"wrapped form not opened", fmt.Errorf("opening: %w", errFormNotOpened), ":warning: The form for a reason did not open; please click Deny again."},
		{"store error", errors.New("database is locked"), ":x: That could not be recorded, so nothing was done. Please try again."},
	} {
		if got := replyText(tc.err); got != tc.want {
			t.Errorf("%s: replyText = %q, want %q", tc.name, got, tc.want)
		}
	}
	// An unexpected error's own words (which may hold anything) are not shown.
	if got := replyText(errors.New("secret <@U0BOSS> detail")); strings.Contains(got, "secret") || strings.Contains(got, "<@") {
		t.Errorf("replyText shows the error itself: %q", got)
	}
}

func TestOrMentions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		users []string
		want  string
	}{
		{nil, ""},
		{[]string{"U1"}, "<@U1>"},
		{[]string{"U1", "U2"}, "<@U1> or <@U2>"},
		{[]string{"U1", "U2", "U3"}, "<@U1>, <@U2> or <@U3>"},
		{[]string{"U1", "U2", "U3", "U4"}, "<@U1>, <@U2>, <@U3> or <@U4>"},
	} {
		if got := orMentions(tc.users); got != tc.want {
			t.Errorf("orMentions(%q) = %q, want %q", tc.users, got, tc.want)
		}
	}
	if got := orList([]string{"C1", "C2"}, "<#%s>"); got != "<#C1> or <#C2>" {
		t.Errorf("orList channels = %q", got)
	}
}

type txOutcomeCase struct {
	name    string
	outcome approvals.Outcome
	want    []string
}

var txConflict = &approvals.GraphError{Kind: approvals.GraphConflict, Cause: approvals.CauseConflict, Method: "POST", Status: 409,
	Code: "Conflict", Message: "Cloud PC is busy", RequestID: "req-1"}

// txOutcomeCases cover every OutcomeKind (the guard test checks that).
var txOutcomeCases = []txOutcomeCase{
	{"graph", approvals.Outcome{Kind: approvals.OutcomeGraph, Graph: txConflict},
		[]string{"Microsoft Graph refused (HTTP 409)", "Graph code `Conflict`", "request-id `req-1`", "“Cloud PC is busy”"}},
	{"sign-in declined", approvals.Outcome{Kind: approvals.OutcomeSignInDeclined}, []string{"Sign-in was declined."}},
	{"sign-in expired", approvals.Outcome{Kind: approvals.OutcomeSignInExpired}, []string{"The sign-in code expired."}},
	{"identity mismatch", approvals.Outcome{Kind: approvals.OutcomeIdentityMismatch, SignedInAs: "mallory@contoso.com", Expected: "alice@contoso.com"},
		[]string{"The sign-in was as mallory@contoso.com, not as the approver (alice@contoso.com), so nothing was done."}},
	{"sign-in failed", approvals.Outcome{Kind: approvals.OutcomeSignInFailed}, []string{"Sign-in did not complete."}},
	{"sign-in interrupted", approvals.Outcome{Kind: approvals.OutcomeSignInInterrupted}, []string{"The bot restarted during sign-in."}},
	{"sign-in stale", approvals.Outcome{Kind: approvals.OutcomeSignInStale}, []string{"The sign-in is no longer valid."}},
	{"same identity twice", approvals.Outcome{Kind: approvals.OutcomeSameIdentity, SignedInAs: "bob@contoso.com"},
		[]string{"The sign-in was as bob@contoso.com, who has approved this request already", "each approval must come from a different person"}},
	{"sign-in unavailable", approvals.Outcome{Kind: approvals.OutcomeSignInUnavailable}, []string{"Microsoft sign-in could not be reached or did not answer in time, so no sign-in code was issued."}},
	{"no match", approvals.Outcome{Kind: approvals.OutcomeNoMatch, Target: "CPC-anna-01"}, []string{"No Cloud PC matches `CPC-anna-01`."}},
	{"too many matches", approvals.Outcome{Kind: approvals.OutcomeTooManyMatches, Target: "anna@contoso.com", Matches: 7},
		[]string{"7 Cloud PCs match `anna@contoso.com`", "too many to choose from", "Cloud PC's id or device name"}},
	{"status not allowed", approvals.Outcome{Kind: approvals.OutcomeStatusNotAllowed, Status: "inGracePeriod", Allowed: []string{"provisioned", "failed", "provisionedWithWarnings"}},
		[]string{"The Cloud PC's status is *inGracePeriod*", "allowed only when it is provisioned, failed or provisionedWithWarnings.", "Nothing was sent."}},
	{"status not allowed, status unknown", approvals.Outcome{Kind: approvals.OutcomeStatusNotAllowed, Allowed: []string{"provisioned"}},
		[]string{"The Cloud PC's status is *—*", "allowed only when it is provisioned.", "Nothing was sent."}},
	{"open elsewhere", approvals.Outcome{Kind: approvals.OutcomeOpenElsewhere, CloudPCID: txCloudPC, Other: txOtherRef, OtherRequester: "UOTHER"},
		[]string{"Cloud PC `" + txCloudPC + "` already has an open request: " + txOtherRef + " from <@UOTHER>.", "Nothing was sent."}},
	{"open elsewhere, other unknown", approvals.Outcome{Kind: approvals.OutcomeOpenElsewhere, CloudPCID: txCloudPC},
		[]string{"Cloud PC `" + txCloudPC + "` already has an open request.", "Nothing was sent."}},
	{"not recorded", approvals.Outcome{Kind: approvals.OutcomeNotRecorded}, []string{"could not be recorded, so nothing was sent."}},
	{"confirmation not sent", approvals.Outcome{Kind: approvals.OutcomeConfirmationNotSent}, []string{"The final confirmation could not be sent on Slack."}},
	{"in flight at restart", approvals.Outcome{Kind: approvals.OutcomeInFlightAtRestart}, []string{"may have been in flight", "it was not sent again."}},
	{"batch too large", approvals.Outcome{Kind: approvals.OutcomeBatchTooLarge, Matches: 73, Max: 50},
		[]string{"The look-up found 73 Cloud PCs; a batch may have at most 50. Nothing was sent."}},
	{"nothing to send", approvals.Outcome{Kind: approvals.OutcomeNothingToSend},
		[]string{"None of the Cloud PCs may be reprovisioned now", "Nothing was sent."}},
	{"legacy sentence", approvals.Outcome{Text: "Graph said no (HTTP 400)."}, []string{"Graph said no (HTTP 400)."}},
}

func TestOutcomeText(t *testing.T) {
	t.Parallel()
	for _, tc := range txOutcomeCases {
		o := tc.outcome
		txCheck(t, tc.name, outcomeText(&o), tc.want, nil)
	}
	if got := outcomeText(nil); got != "" {
		t.Errorf("outcomeText(nil) = %q, want \"\"", got)
	}
	// The Graph kind is graphErrorText's sentence, word for word.
	if got, want := outcomeText(&approvals.Outcome{Kind: approvals.OutcomeGraph, Graph: txConflict}), graphErrorText(txConflict); got != want {
		t.Errorf("graph outcome = %q, want graphErrorText's %q", got, want)
	}
}

// Everything an outcome quotes came from outside: a typed target, Entra
// usernames, Graph's statuses and messages, an older version's sentence.
func TestOutcomeTextEscapesOutsideText(t *testing.T) {
	t.Parallel()
	h, e := txHostile, txHostileEscaped
	for _, tc := range []struct {
		name    string
		outcome approvals.Outcome
		want    []string
	}{
		{"graph message", approvals.Outcome{Kind: approvals.OutcomeGraph, Graph: &approvals.GraphError{Kind: approvals.GraphConflict, Cause: approvals.CauseConflict,
			Method: "POST", Status: 409, Message: h}}, []string{"“" + e + "”"}},
		{"identity mismatch", approvals.Outcome{Kind: approvals.OutcomeIdentityMismatch, SignedInAs: h, Expected: h + "x"},
			[]string{"The sign-in was as " + e + ", not as the approver (" + e + "x)"}},
		{"no match", approvals.Outcome{Kind: approvals.OutcomeNoMatch, Target: h}, []string{"`" + e + "`"}},
		{"too many matches", approvals.Outcome{Kind: approvals.OutcomeTooManyMatches, Target: h, Matches: 2}, []string{"2 Cloud PCs match `" + e + "`"}},
		{"status", approvals.Outcome{Kind: approvals.OutcomeStatusNotAllowed, Status: h, Allowed: []string{"provisioned", h}},
			[]string{"*" + e + "*", "provisioned or " + e + "."}},
		{"open elsewhere", approvals.Outcome{Kind: approvals.OutcomeOpenElsewhere, CloudPCID: h}, []string{"`" + e + "`"}},
		{"open elsewhere with other", approvals.Outcome{Kind: approvals.OutcomeOpenElsewhere, CloudPCID: h, Other: txOtherRef, OtherRequester: "UOTHER"},
			[]string{"`" + e + "`", "<@UOTHER>"}},
	} {
		o := tc.outcome
		got := outcomeText(&o)
		txCheck(t, tc.name, got, tc.want, txRaw)
		// Also where the outcome is shown: a failed request's status line.
		r := txRequest(approvals.StateFailed)
		r.Outcome = &o
		txCheck(t, tc.name+" (status line)", statusLine(r), tc.want, txRaw)
	}
}

// A request sent back to pending says why and what the approver can do.
func TestWaitingAgainText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		outcome *approvals.Outcome
		want    string // the whole status line
	}{
		{"nothing to explain", nil, ":hourglass: Awaiting a decision."},
		{"declined", &approvals.Outcome{Kind: approvals.OutcomeSignInDeclined},
			":hourglass: Awaiting a decision. Sign-in was declined. Approve again to retry."},
		{"identity mismatch", &approvals.Outcome{Kind: approvals.OutcomeIdentityMismatch, SignedInAs: "mallory@contoso.com", Expected: "alice@contoso.com"},
			":hourglass: Awaiting a decision. The sign-in was as mallory@contoso.com, not as the approver (alice@contoso.com), so nothing was done. Approve again to retry."},
		{"sign-in stale", &approvals.Outcome{Kind: approvals.OutcomeSignInStale},
			":hourglass: Awaiting a decision. The sign-in is no longer valid. Approve again to sign in."},
		{"POST refused for a fresh sign-in", &approvals.Outcome{Kind: approvals.OutcomeGraph, Graph: &approvals.GraphError{
			Kind: approvals.GraphSignInAgain, Cause: approvals.CauseClaimsChallenge, Method: "POST", Status: 401}},
			":hourglass: Awaiting a decision. Microsoft Graph asks for a fresh sign-in (Conditional Access or a revoked session): the approver must sign in again. Nothing was done; approve again to sign in afresh."},
		{"GET refused for a fresh sign-in", &approvals.Outcome{Kind: approvals.OutcomeGraph, Graph: &approvals.GraphError{
			Kind: approvals.GraphSignInAgain, Cause: approvals.CauseUnauthorized, Method: "GET", Status: 401}},
			":hourglass: Awaiting a decision. Microsoft Graph did not accept the approver's sign-in (HTTP 401): they must sign in again. The reprovision was not sent. Approve again to retry."},
		{"graph throttled a look-up", &approvals.Outcome{Kind: approvals.OutcomeGraph, Graph: &approvals.GraphError{
			Kind: approvals.GraphThrottled, Cause: approvals.CauseThrottled, Method: "GET", Status: 429, Retries: 2}},
			":hourglass: Awaiting a decision. Microsoft Graph is busy (HTTP 429); waited and retried 2 times; try again in a few minutes. The reprovision was not sent. Approve again to retry."},
		{"graph never reached", &approvals.Outcome{Kind: approvals.OutcomeGraph, Graph: &approvals.GraphError{
			Kind: approvals.GraphFailed, Cause: approvals.CauseUnreachable, Method: "POST"}},
			":hourglass: Awaiting a decision. Could not reach Microsoft Graph; nothing was sent to Microsoft Graph. Approve again to retry."},
		{"status not allowed", &approvals.Outcome{Kind: approvals.OutcomeStatusNotAllowed, Status: "inGracePeriod", Allowed: []string{"provisioned"}},
			":hourglass: Awaiting a decision. The Cloud PC's status is *inGracePeriod*; reprovisioning is allowed only when it is provisioned. Nothing was sent. Approve again to retry."},
	} {
		r := txRequest(approvals.StatePending)
		r.Outcome = tc.outcome
		if got := statusLine(r); got != tc.want {
			t.Errorf("%s:\n  got  %q\n  want %q", tc.name, got, tc.want)
		}
	}
	if got := waitingAgainText(nil); got != "" {
		t.Errorf("waitingAgainText(nil) = %q", got)
	}

	// Whatever the outcome, a pending request says how to go on, once.
	for _, tc := range txOutcomeCases {
		if tc.outcome.Kind == "" {
			continue // an older version's sentence is shown as it was written
		}
		o := tc.outcome
		r := txRequest(approvals.StatePending)
		r.Outcome = &o
		got := statusLine(r)
		txCheck(t, "pending after "+tc.name, got, append([]string{":hourglass: Awaiting a decision. " + outcomeText(&o)}, tc.want...), []string{"  "})
		if n := strings.Count(strings.ToLower(got), "approve again"); n != 1 {
			t.Errorf("pending after %s: %d times \"approve again\" in %q", tc.name, n, got)
		}
	}

	// An older version's sentence is shown as it was stored: that version
	// wrote it as mrkdwn, outside text escaped and people as mentions, so
	// escaping it again would show "&amp;lt;" and broken mentions.
	r := txRequest(approvals.StatePending)
	stored := "Cloud PC `x` already has an open request: R-ABCDEF from <@U0BOB>. Nothing was sent. Graph said &lt;no&gt;. Approve again to retry."
	r.Outcome = &approvals.Outcome{Text: stored}
	if got := statusLine(r); got != ":hourglass: Awaiting a decision. "+stored {
		t.Errorf("legacy outcome shown as %q", got)
	}
}

func TestNoticeText(t *testing.T) {
	t.Parallel()
	declined := &approvals.Outcome{Kind: approvals.OutcomeSignInDeclined}
	conflict := &approvals.Outcome{Kind: approvals.OutcomeGraph, Graph: txConflict}
	denied := txWith(txRequest(approvals.StateDenied), func(r *approvals.Request) { r.DecisionReason = "not now" })
	succeeded := txWith(txRequest(approvals.StateExecuting), func(r *approvals.Request) { r.GraphRequestID = "g-req-1" })
	expired := txWith(txRequest(approvals.StateExpired), func(r *approvals.Request) { r.DecidedBy = "" })

	for _, tc := range []struct {
		name   string
		user   string
		notice approvals.Notice
		want   []string
		bad    []string
	}{
		{"sign-in failed, to the requester", "UREQ", approvals.Notice{Kind: approvals.NoticeSignInFailed, Request: txRequest(approvals.StatePending), Why: declined},
			[]string{"Your request " + txRef + " was approved, but the approver's sign-in did not complete", "Sign-in was declined.", "waiting for a decision again"},
			[]string{"click Approve"}},
		{"sign-in failed, to the approver", "UA1", approvals.Notice{Kind: approvals.NoticeSignInFailed, Request: txRequest(approvals.StatePending), Why: declined},
			[]string{"Sign-in was declined. " + txRef + " is still waiting: click Approve on the prompt to try again."},
			[]string{"Your request"}},
		{"tracking still paused", "UA2", approvals.Notice{Kind: approvals.NoticeStillPaused, Request: txTracked(approvals.Tracking{Paused: true}),
			Why: &approvals.Outcome{Kind: approvals.OutcomeSignInExpired}},
			[]string{"The sign-in code expired. Tracking of " + txRef + " stays paused."}, nil},
		{"not recorded, accepted", "UA1", approvals.Notice{Kind: approvals.NoticeNotRecorded, Request: succeeded, Accepted: true},
			[]string{"Request " + txRef + ": Microsoft Graph accepted the reprovision (request-id `g-req-1`), but the bot was stopped before it could record it; it settles the request when it starts again."}, nil},
		{"not recorded, refused", "UA1", approvals.Notice{Kind: approvals.NoticeNotRecorded, Request: txRequest(approvals.StateExecuting), Why: conflict},
			[]string{"Request " + txRef + ": Microsoft Graph answered (" + graphErrorText(txConflict) + ") but the bot could not record it.", "Check the Cloud PC before trying again."},
			[]string{"accepted"}},
		{"not recorded, no reason", "UA1", approvals.Notice{Kind: approvals.NoticeNotRecorded, Request: txRequest(approvals.StateExecuting)},
			[]string{"Microsoft Graph answered (—) but the bot could not record it."}, nil},
		{"status, to the requester", "UREQ", approvals.Notice{Kind: approvals.NoticeStatus, Request: denied},
			[]string{"Your request " + txRef + " to reprovision `CPC-anna-01` (reason: disk full): :no_entry_sign: Denied by <@UA1>. Reason: not now"},
			[]string{"from <@UREQ>", "anna@contoso.com"}},
		{"status, to an approver", "UA2", approvals.Notice{Kind: approvals.NoticeStatus, Request: denied},
			[]string{"Request " + txRef + " to reprovision `CPC-anna-01 of anna@contoso.com` from <@UREQ> (reason: disk full): :no_entry_sign: Denied by <@UA1>. Reason: not now"},
			[]string{"Your request"}},
		{"approval recorded, to its approver", "UA2", approvals.Notice{Kind: approvals.NoticeApprovalRecorded, Request: txTwoApprovals(approvals.StatePending, 1)},
			[]string{"Your approval of " + txRef + " is recorded (1 of 2 approvals, signed in as ua2@contoso.com).", "needs another approver's approval"}, []string{"<@UA2> approved"}},
		{"approval recorded, to the requester", "UREQ", approvals.Notice{Kind: approvals.NoticeApprovalRecorded, Request: txTwoApprovals(approvals.StatePending, 1)},
			[]string{"<@UA2> approved your request " + txRef + " (1 of 2 approvals). It is waiting for another approver."}, []string{"Your approval"}},
		{"expired, to the requester", "UREQ", approvals.Notice{Kind: approvals.NoticeExpired, Request: expired},
			[]string{"Your request " + txRef, ":clock3: EXPIRED: nobody decided in time."}, nil},
		{"expired, to an approver", "UA3", approvals.Notice{Kind: approvals.NoticeExpired, Request: expired},
			[]string{"Request " + txRef, "from <@UREQ>", ":clock3: EXPIRED"}, []string{"Your request"}},
	} {
		txCheck(t, tc.name, noticeText(tc.user, tc.notice), tc.want, tc.bad)
	}

	// The requester and an approver are told differently, whatever the kind.
	for _, kind := range []approvals.NoticeKind{approvals.NoticeStatus, approvals.NoticeExpired, approvals.NoticeSignInFailed} {
		n := approvals.Notice{Kind: kind, Request: txRequest(approvals.StatePending), Why: declined}
		if toRequester, toApprover := noticeText("UREQ", n), noticeText("UA1", n); toRequester == toApprover {
			t.Errorf("%s: the requester and the approver read the same %q", kind, toRequester)
		}
	}

	// Outside text in a notice is escaped.
	r := txRequest(approvals.StateDenied)
	r.Device, r.CloudPCID, r.Target, r.Reason, r.DecisionReason = nil, "", txHostile, txHostile, txHostile
	for _, user := range []string{"UREQ", "UA1"} {
		txCheck(t, "escaped status to "+user, noticeText(user, approvals.Notice{Kind: approvals.NoticeStatus, Request: r}),
			[]string{"`" + txHostileEscaped + "`", "(reason: " + txHostileEscaped + ")", "Reason: " + txHostileEscaped}, txRaw)
	}
	mismatch := &approvals.Outcome{Kind: approvals.OutcomeIdentityMismatch, SignedInAs: txHostile, Expected: "alice@contoso.com"}
	for _, user := range []string{"UREQ", "UA1"} {
		txCheck(t, "escaped sign-in failure to "+user,
			noticeText(user, approvals.Notice{Kind: approvals.NoticeSignInFailed, Request: txRequest(approvals.StatePending), Why: mismatch}),
			[]string{"as " + txHostileEscaped + ", not as the approver"}, txRaw)
	}
}

func TestProgressText(t *testing.T) {
	t.Parallel()
	active := txTracked(approvals.Tracking{LastStatus: "provisioning"})
	done := txTracked(approvals.Tracking{LastStatus: "provisioned", Result: approvals.TrackProvisioned})
	for _, tc := range []struct {
		name string
		r    *approvals.Request
		p    approvals.Progress
		want string
	}{
		{"accepted", active, approvals.Progress{Kind: approvals.ProgressAccepted, Every: 5 * time.Minute},
			"Reprovision of CPC-anna-01 of anna@contoso.com accepted. I'll look at it in 5m0s and post progress here."},
		{"status with detail", active, approvals.Progress{Kind: approvals.ProgressStatus, Status: "provisioning", Detail: "step 2 of 5"},
			txRef + ": status *provisioning* (step 2 of 5)."},
		{"status", active, approvals.Progress{Kind: approvals.ProgressStatus, Status: "provisioning"},
			txRef + ": status *provisioning*."},
		{"status unknown", active, approvals.Progress{Kind: approvals.ProgressStatus},
			txRef + ": status *—*."},
		{"paused", active, approvals.Progress{Kind: approvals.ProgressPaused},
			txRef + ": tracking paused, there is no valid sign-in to look with. Click *Resume tracking* on the prompt to sign in."},
		{"ended", done, approvals.Progress{Kind: approvals.ProgressEnded}, statusLine(done)},
	} {
		if got := progressText(tc.r, tc.p); got != tc.want {
			t.Errorf("%s:\n  got  %q\n  want %q", tc.name, got, tc.want)
		}
	}
	if got := progressText(done, approvals.Progress{Kind: approvals.ProgressEnded}); !strings.Contains(got, ":tada: Done: the Cloud PC is provisioned again.") {
		t.Errorf("ended: %q", got)
	}

	// Graph's statuses and the typed target are escaped.
	r := txTracked(approvals.Tracking{})
	r.Device, r.CloudPCID, r.Target = nil, "", txHostile
	txCheck(t, "escaped accepted", progressText(r, approvals.Progress{Kind: approvals.ProgressAccepted, Every: time.Minute}),
		[]string{"Reprovision of " + txHostileEscaped + " accepted."}, txRaw)
	txCheck(t, "escaped status", progressText(r, approvals.Progress{Kind: approvals.ProgressStatus, Status: txHostile, Detail: txHostile}),
		[]string{"*" + txHostileEscaped + "* (" + txHostileEscaped + ")."}, txRaw)
}

type txStatusCase struct {
	name string
	r    *approvals.Request
	want []string
	bad  []string
}

func txStatusCases() []txStatusCase {
	const started = ":white_check_mark: Approved by <@UA1>. Reprovision started: Microsoft Graph accepted the request. (request-id `g-req-1`)"
	untracked := txRequest(approvals.StateSucceeded)
	untracked.GraphRequestID = "g-req-1"
	return []txStatusCase{
		{"pending", txRequest(approvals.StatePending), []string{":hourglass: Awaiting a decision."}, []string{"Approve again"}},
		{"approved", txRequest(approvals.StateApproved),
			[]string{":key: Approved by <@UA1>. Waiting for <@UA1> to sign in (see the sign-in message)."}, []string{"<@UREQ>"}},
		{"confirming", txWith(txRequest(approvals.StateConfirming), func(r *approvals.Request) { r.SignedInAs = "alice@contoso.com" }),
			[]string{":eyes: Approved by <@UA1>, signed in as alice@contoso.com. Waiting for their final confirmation."}, nil},
		{"executing", txRequest(approvals.StateExecuting), []string{":gear: Approved by <@UA1>. Reprovisioning…"}, nil},
		{"pending, two approvals required, none yet", txWith(txRequest(approvals.StatePending), func(r *approvals.Request) { r.ApprovalsRequired = 2 }),
			[]string{":hourglass: Awaiting a decision: 0 of 2 approvals."}, []string{"("}},
		{"pending, one of two approvals", txTwoApprovals(approvals.StatePending, 1),
			[]string{":hourglass: Awaiting a decision: 1 of 2 approvals (<@UA2>)."}, nil},
		{"pending, two of three approvals", txTwoApprovals(approvals.StatePending, 2),
			[]string{":hourglass: Awaiting a decision: 2 of 3 approvals (<@UA2>, <@UA3>)."}, nil},
		{"confirming, second approval", txWith(txTwoApprovals(approvals.StateConfirming, 1), func(r *approvals.Request) { r.SignedInAs = "alice@contoso.com" }),
			[]string{":eyes: Approved by <@UA2> and <@UA1>; <@UA1> signed in as alice@contoso.com. Waiting for their final confirmation."}, nil},
		{"executing, three approvals", txTwoApprovals(approvals.StateExecuting, 2),
			[]string{":gear: Approved by <@UA2>, <@UA3> and <@UA1>. Reprovisioning…"}, nil},
		{"succeeded, not tracked", untracked, []string{started}, []string{"Following", "Tracking", "Done"}},
		{"succeeded, tracking", txTracked(approvals.Tracking{LastStatus: "provisioning"}),
			[]string{started + " Following it: status provisioning."}, []string{"paused"}},
		{"succeeded, tracking, no status yet", txTracked(approvals.Tracking{}),
			[]string{started + " Following it: status —."}, nil},
		{"succeeded, provisioned", txTracked(approvals.Tracking{LastStatus: "provisioned", Result: approvals.TrackProvisioned}),
			[]string{started + " :tada: Done: the Cloud PC is provisioned again."}, []string{"Following"}},
		{"succeeded, failed", txWith(txTracked(approvals.Tracking{LastStatus: "failed", Result: approvals.TrackFailed}),
			func(r *approvals.Request) { r.Device.StatusDetails = "Disk image missing" }),
			[]string{started + " :x: But the reprovision failed: the Cloud PC's status is failed. Disk image missing"}, []string{"Following"}},
		{"succeeded, timed out", txTracked(approvals.Tracking{LastStatus: "provisioning", Result: approvals.TrackTimedOut}),
			[]string{started + " :clock3: Stopped following it at the deadline; last status provisioning. Check the Cloud PC."}, []string{"Following it"}},
		{"succeeded, timed out while paused", txTracked(approvals.Tracking{Paused: true, Result: approvals.TrackTimedOut}),
			[]string{"Stopped following it at the deadline; last status —."}, []string{"Tracking paused", "Resume"}},
		{"succeeded, paused", txTracked(approvals.Tracking{LastStatus: "provisioning", Paused: true}),
			[]string{started + " :pause_button: Tracking paused: no valid sign-in to look with. Click Resume tracking to sign in."}, []string{"Following"}},
		{"failed", txWith(txRequest(approvals.StateFailed), func(r *approvals.Request) {
			r.Outcome = &approvals.Outcome{Kind: approvals.OutcomeGraph, Graph: txConflict}
		}),
			[]string{":x: Reprovision failed: " + graphErrorText(txConflict)}, nil},
		{"outcome unknown", txWith(txRequest(approvals.StateOutcomeUnknown), func(r *approvals.Request) {
			r.Outcome = &approvals.Outcome{Kind: approvals.OutcomeInFlightAtRestart}
		}),
			[]string{":grey_question: Approved by <@UA1>. Outcome unknown — check the Cloud PC. The bot stopped while the reprovision call may have been in flight"}, nil},
		{"outcome unknown, nothing to explain", txRequest(approvals.StateOutcomeUnknown),
			[]string{":grey_question: Approved by <@UA1>. Outcome unknown — check the Cloud PC."}, []string{"PC. "}},
		{"denied with a reason", txWith(txRequest(approvals.StateDenied), func(r *approvals.Request) { r.DecidedBy, r.DecisionReason = "UA3", "use the spare" }),
			[]string{":no_entry_sign: Denied by <@UA3>. Reason: use the spare"}, []string{"<@UA1>"}},
		{"denied", txRequest(approvals.StateDenied), []string{":no_entry_sign: Denied by <@UA1>."}, []string{"Reason"}},
		{"expired", txWith(txRequest(approvals.StateExpired), func(r *approvals.Request) { r.DecidedBy = "" }),
			[]string{":clock3: EXPIRED: nobody decided in time."}, nil},
		{"canceled by the requester", txWith(txRequest(approvals.StateCanceled), func(r *approvals.Request) { r.DecidedBy = "UREQ" }),
			[]string{":leftwards_arrow_with_hook: Canceled by the requester."}, []string{"<@"}},
		{"canceled, nobody recorded", txWith(txRequest(approvals.StateCanceled), func(r *approvals.Request) { r.DecidedBy = "" }),
			[]string{":leftwards_arrow_with_hook: Canceled by the requester."}, []string{"<@"}},
		{"canceled at the confirmation", txRequest(approvals.StateCanceled),
			[]string{":leftwards_arrow_with_hook: Canceled by <@UA1> at the final confirmation."}, []string{"requester"}},
		{"scheduled", txScheduled(),
			[]string{":alarm_clock: Approved by <@UA1>. Sending at " + txAt + " (<@UANNA> was told).", "<@UA1> may send it now or cancel it."},
			[]string{"restarted", "more time", "Postponed"}},
		{"scheduled, more time asked", txWith(txScheduled(), func(r *approvals.Request) { r.HeadsUp.MoreTimeAsked = true }),
			[]string{"Sending at " + txAt, "<@UANNA> asked for more time; <@UA1> may postpone it once."}, []string{"Postponed"}},
		{"scheduled, postponed", txWith(txScheduled(), func(r *approvals.Request) { r.HeadsUp.MoreTimeAsked, r.HeadsUp.Postponed = true, true }),
			[]string{"Sending at " + txAt, "Postponed once"}, []string{"asked for more time"}},
		{"scheduled, sign-in lost", txWith(txScheduled(), func(r *approvals.Request) { r.HeadsUp.SignInLost = true }),
			[]string{"Sending at " + txAt, "The bot restarted; <@UA1> must sign in again"}, []string{"may send it now"}},
		{"scheduled, two approvals", txWith(txTwoApprovals(approvals.StateScheduled, 1), func(r *approvals.Request) { r.HeadsUp = txScheduled().HeadsUp }),
			[]string{"Approved by <@UA2> and <@UA1>. Sending at " + txAt}, nil},
		{"expired while scheduled", txWith(txRequest(approvals.StateExpired), func(r *approvals.Request) {
			r.Outcome = &approvals.Outcome{Kind: approvals.OutcomeSignInStale}
			r.HeadsUp = txScheduled().HeadsUp
		}),
			[]string{":clock3: EXPIRED: it was scheduled, but <@UA1> did not sign in again after the bot restarted, so nothing was sent."},
			[]string{"nobody decided"}},
		{"canceled while scheduled", txWith(txRequest(approvals.StateCanceled), func(r *approvals.Request) { r.HeadsUp = txScheduled().HeadsUp }),
			[]string{":leftwards_arrow_with_hook: Canceled by <@UA1> before it was sent (it was scheduled for " + txAt + "); nothing was reprovisioned."},
			[]string{"final confirmation"}},
		{"canceled by the requester while scheduled", txWith(txRequest(approvals.StateCanceled), func(r *approvals.Request) {
			r.HeadsUp, r.DecidedBy = txScheduled().HeadsUp, "UREQ"
		}),
			[]string{":leftwards_arrow_with_hook: Canceled by the requester."}, nil},
	}
}

func TestStatusLine(t *testing.T) {
	t.Parallel()
	for _, tc := range txStatusCases() {
		txCheck(t, tc.name, statusLine(tc.r), tc.want, tc.bad)
	}
}

// Outside text in a status line is escaped: the approver's Entra username,
// the denial reason, Graph's status, details and request-id.
func TestStatusLineEscapes(t *testing.T) {
	t.Parallel()
	h, e := txHostile, txHostileEscaped
	confirming := txRequest(approvals.StateConfirming)
	confirming.SignedInAs = h
	denied := txRequest(approvals.StateDenied)
	denied.DecisionReason = h
	tracking := txTracked(approvals.Tracking{LastStatus: h})
	tracking.GraphRequestID = h
	failed := txTracked(approvals.Tracking{Result: approvals.TrackFailed})
	failed.Device.StatusDetails = h
	timedOut := txTracked(approvals.Tracking{LastStatus: h, Result: approvals.TrackTimedOut})
	for _, tc := range []struct {
		name string
		r    *approvals.Request
		want string
	}{
		{"signed in as", confirming, "signed in as " + e + "."},
		{"denial reason", denied, "Reason: " + e},
		{"tracking status and request-id", tracking, "(request-id `" + e + "`) Following it: status " + e + "."},
		{"failure details", failed, "status is failed. " + e},
		{"last status", timedOut, "last status " + e + "."},
	} {
		txCheck(t, tc.name, statusLine(tc.r), []string{tc.want}, txRaw)
	}
}

// TestEveryKindHasWords lists the kinds declared in package approvals (read
// from its source, so a kind added later is listed too) and fails for any
// without words of its own, or missing from the tables above.
func TestEveryKindHasWords(t *testing.T) {
	t.Parallel()
	declared := txDeclaredKinds(t)

	// Refusals: every kind, with every action, has a sentence of its own.
	covered := map[string]bool{}
	for _, tc := range txRefusalCases {
		covered[string(tc.refusal.Kind)] = true
	}
	actions := []approvals.Action{"", approvals.ActionRequest, approvals.ActionApprove, approvals.ActionDeny, approvals.ActionCancel,
		approvals.ActionConfirm, approvals.ActionPick, approvals.ActionAbort, approvals.ActionResume, approvals.ActionRequestAgain,
		approvals.ActionSendNow, approvals.ActionPostpone, approvals.ActionMoreTime, approvals.ActionSignInToSend,
		approvals.ActionStopBatch, approvals.ActionResumeBatch}
	for _, kind := range declared["RefusalKind"] {
		if !covered[kind] {
			t.Errorf("RefusalKind %q has no case in txRefusalCases", kind)
		}
		for _, action := range actions {
			f := &approvals.Refusal{Kind: approvals.RefusalKind(kind), Action: action, Ref: txRef,
				Request: txRequest(approvals.StatePending), Other: txRequest(approvals.StateApproved),
				Users: []string{"UA1", "UA2"}, Channels: []string{"C1"}}
			got := replyText(f)
			if got == "" || strings.Contains(got, txFallback) || strings.Contains(got, "("+kind+")") {
				t.Errorf("RefusalKind %q (action %q) has no words of its own: %q", kind, action, got)
			}
		}
	}
	// The guard can fail: a kind without words reads as the fallback.
	if got := replyText(&approvals.Refusal{Kind: "made_up_kind", Ref: txRef}); !strings.Contains(got, txFallback) {
		t.Errorf("an unknown refusal kind reads %q, want the fallback %q", got, txFallback)
	}

	// Outcomes: every kind says something, also as a failure and as a
	// reason to wait again.
	covered = map[string]bool{}
	for _, tc := range txOutcomeCases {
		covered[string(tc.outcome.Kind)] = true
	}
	for _, kind := range declared["OutcomeKind"] {
		if !covered[kind] {
			t.Errorf("OutcomeKind %q has no case in txOutcomeCases", kind)
		}
		o := &approvals.Outcome{Kind: approvals.OutcomeKind(kind), Graph: txConflict, Target: "CPC-anna-01", Matches: 2, Status: "inGracePeriod",
			Allowed: []string{"provisioned"}, CloudPCID: txCloudPC, Other: txOtherRef, OtherRequester: "UOTHER",
			SignedInAs: "mallory@contoso.com", Expected: "alice@contoso.com"}
		if got := outcomeText(o); strings.TrimSpace(got) == "" {
			t.Errorf("OutcomeKind %q renders no text", kind)
		}
		failed := txRequest(approvals.StateFailed)
		failed.Outcome = o
		if got := statusLine(failed); strings.HasSuffix(got, ": ") {
			t.Errorf("OutcomeKind %q: a failed request reads %q", kind, got)
		}
	}
	if got := outcomeText(&approvals.Outcome{Kind: "made_up_kind"}); got != "" {
		t.Errorf("an unknown outcome kind reads %q, want \"\" (what the guard looks for)", got)
	}

	// States: every state has a line of its own, not its bare name.
	covered = map[string]bool{}
	for _, tc := range txStatusCases() {
		covered[string(tc.r.State)] = true
	}
	for _, state := range declared["State"] {
		if !covered[state] {
			t.Errorf("State %q has no case in txStatusCases", state)
		}
		if got := statusLine(txRequest(approvals.State(state))); got == state || !strings.HasPrefix(got, ":") {
			t.Errorf("State %q has no status line of its own: %q", state, got)
		}
	}

	// Notices and progress: every kind is known to the tests above.
	for _, kind := range declared["NoticeKind"] {
		switch approvals.NoticeKind(kind) {
		case approvals.NoticeStatus, approvals.NoticeExpired, approvals.NoticeSignInFailed, approvals.NoticeStillPaused, approvals.NoticeNotRecorded,
			approvals.NoticeApprovalRecorded, approvals.NoticeHeadsUp, approvals.NoticeUserUpdate, approvals.NoticeUserReady,
			approvals.NoticeUserNotNotified, approvals.NoticeMoreTimeAsked, approvals.NoticeSignInToSend:
		case approvals.NoticeBatchHalted: // TestBatchHaltedNotice
		default:
			t.Errorf("NoticeKind %q is not covered by TestNoticeText", kind)
		}
	}
	for _, kind := range declared["ProgressKind"] {
		switch approvals.ProgressKind(kind) {
		case approvals.ProgressAccepted, approvals.ProgressStatus, approvals.ProgressEnded, approvals.ProgressPaused:
		case approvals.ProgressMember: // TestBatchProgress
		default:
			t.Errorf("ProgressKind %q is not covered by TestProgressText", kind)
		}
	}
}

// txDeclaredKinds reads package approvals' source for the string constants
// of its kind types, by type name.
func txDeclaredKinds(t *testing.T) map[string][]string {
	t.Helper()
	dir := filepath.Join("..", "approvals")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading package approvals: %v", err)
	}
	types := map[string]bool{"RefusalKind": true, "OutcomeKind": true, "NoticeKind": true, "ProgressKind": true, "State": true}
	found := map[string][]string{}
	fset := token.NewFileSet()
	for _, entry := range entries {
		name := entry.Name()
		if entry.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, 0)
		if err != nil {
			t.Fatalf("parsing %s: %v", name, err)
		}
		for _, decl := range file.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.CONST {
				continue
			}
			for _, spec := range gen.Specs {
				vs := spec.(*ast.ValueSpec)
				typ, ok := vs.Type.(*ast.Ident)
				if !ok || !types[typ.Name] {
					continue
				}
				for _, v := range vs.Values {
					lit, ok := v.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						t.Fatalf("%s: a %s constant is not a string literal", fset.Position(v.Pos()), typ.Name)
					}
					s, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatalf("%s: %v", fset.Position(lit.Pos()), err)
					}
					found[typ.Name] = append(found[typ.Name], s)
				}
			}
		}
	}
	for name := range types {
		sort.Strings(found[name])
	}
	// The reading works: some constants of every type are there.
	for name, min := range map[string]int{"RefusalKind": 20, "OutcomeKind": 14, "NoticeKind": 5, "ProgressKind": 4, "State": 10} {
		if len(found[name]) < min {
			t.Fatalf("found %d %s constants in package approvals (%q), want at least %d", len(found[name]), name, found[name], min)
		}
	}
	return found
}

// A click the workflow carried out rewrites the message clicked on, where
// that is how Slack shows it; the target as typed is escaped.
func TestDoneText(t *testing.T) {
	t.Parallel()
	r := &approvals.Request{ID: txRef, Target: "<!channel>", State: approvals.StateConfirming}
	for action, want := range map[string]string{
		actionCancel:  ":leftwards_arrow_with_hook: You canceled " + txRef + "; the approvers' prompts say so.",
		actionConfirm: "Confirmed: reprovisioning &lt;!channel&gt; (" + txRef + ")…",
		actionPick:    "Confirmed: reprovisioning &lt;!channel&gt; (" + txRef + ")…",
		actionAbort:   "Canceled " + txRef + ": nothing was reprovisioned.",
		actionApprove: "",
		actionDeny:    "",
	} {
		if got := doneText(action, r); got != want {
			t.Errorf("doneText(%s) = %q, want %q", action, got, want)
		}
	}
}

// txMrkdwn is every mrkdwn text in blocks, in order.
func txMrkdwn(t *testing.T, blocks []slack.Block) []string {
	t.Helper()
	raw, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["type"] == "mrkdwn" {
				if s, ok := v["text"].(string); ok {
					texts = append(texts, s)
				}
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	var decoded any
	if err := json.Unmarshal(raw, &decoded); err != nil {
		t.Fatal(err)
	}
	walk(decoded)
	return texts
}

// A reason (the requester's, or the approver's for a denial) is shown by one
// rule wherever it appears: one line, formatting characters shown but inert,
// invisible characters gone. So a multi-line reason cannot add lines that
// look like the prompt's own "*Field*" headings, a quote, a list or code.
func TestReasonsCannotImitateThePromptsFields(t *testing.T) {
	t.Parallel()
	forged := "disk full\n*Cloud PC*\n`CPC-boss-01`\n\n> *Approvers*\n• _urgent_ ~ignore~\r\n\u202eevil\u202c\u200b"
	// How forged must read: one line, inert, escaped.
	const shown = "disk full ＊Cloud PC＊ ｀CPC-boss-01｀ &gt; ＊Approvers＊ • ＿urgent＿ ～ignore～ evil"
	// What must not reach Slack: a line break inside a reason, its markup.
	bad := []string{"\n*Cloud PC*", "*Cloud PC*\n`CPC", "\n&gt;", "\n>", "&gt; *Approvers*", "_urgent_", "~ignore~", "`CPC-boss-01`", "\u202e", "\u200b"}

	pending := txRequest(approvals.StatePending)
	pending.Reason = forged
	denied := txRequest(approvals.StateDenied)
	denied.Reason, denied.DecisionReason = forged, forged

	var texts []struct{ name, text string }
	add := func(name string, ts ...string) {
		for _, s := range ts {
			texts = append(texts, struct{ name, text string }{name, s})
		}
	}
	add("prompt", txMrkdwn(t, promptBlocks(pending))...)
	add("denied prompt", txMrkdwn(t, promptBlocks(denied))...)
	add("home, awaiting", txMrkdwn(t, awaitingBlocks([]*approvals.Request{pending}))...)
	add("status line", statusLine(denied))
	add("requester update", noticeText("UREQ", approvals.Notice{Kind: approvals.NoticeStatus, Request: denied}))
	add("approver summary", noticeText("UA2", approvals.Notice{Kind: approvals.NoticeStatus, Request: denied}))
	add("handled refusal", replyText(&approvals.Refusal{Kind: approvals.RefusedHandled, Ref: txRef, Request: denied}))

	found := map[string]int{}
	for _, tx := range texts {
		found[tx.name] += strings.Count(tx.text, shown)
		for _, b := range bad {
			if strings.Contains(tx.text, b) {
				t.Errorf("%s: the reason's %q reaches Slack as markup or its own line\n  text: %q", tx.name, b, tx.text)
			}
		}
	}
	for name, want := range map[string]int{
		"prompt": 1, "denied prompt": 2, "home, awaiting": 1, "status line": 1,
		"requester update": 2, "approver summary": 2, "handled refusal": 1,
	} {
		if found[name] != want {
			t.Errorf("%s: the reason is shown %d times as %q, want %d", name, found[name], shown, want)
		}
	}

	// The prompt's own field headings are still its own, once each.
	all := strings.Join(txMrkdwn(t, promptBlocks(pending)), "\n")
	for _, field := range []string{"*Cloud PC*", "*Approvers*", "*Reason*"} {
		if n := strings.Count(all, field); n != 1 {
			t.Errorf("prompt: %q appears %d times, want once\n  blocks: %q", field, n, all)
		}
	}

	// A reason that would open with a quote, where it follows a line break.
	quoted := txRequest(approvals.StatePending)
	quoted.Reason = "> Approved by <@UA1>"
	for _, text := range append(txMrkdwn(t, promptBlocks(quoted)), txMrkdwn(t, awaitingBlocks([]*approvals.Request{quoted}))...) {
		if strings.Contains(text, "\n&gt;") || strings.Contains(text, "\n>") {
			t.Errorf("a reason starts a quote: %q", text)
		}
	}
}

// Reasons reach Slack only through reasonText: no other way of showing a
// Reason or DecisionReason is in the package's source.
func TestReasonsShownThroughOneHelper(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			fn, ok := call.Fun.(*ast.Ident)
			if !ok || fn.Name == "reasonText" {
				return true
			}
			for _, arg := range call.Args {
				if sel, ok := arg.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Reason" || sel.Sel.Name == "DecisionReason") && fn.Name == "escapeText" {
					t.Errorf("%s: %s(…%s) shows a reason without reasonText", fset.Position(call.Pos()), fn.Name, sel.Sel.Name)
				}
			}
			return true
		})
	}
}

// txLookedUp is a request for what the requester typed ("cpc-typed-7"),
// resolved by an approver's lookup to a Cloud PC whose names the requester
// never gave.
func txLookedUp(state approvals.State) *approvals.Request {
	r := txRequest(state)
	r.Target = "cpc-typed-7"
	r.Device = &approvals.CloudPC{ID: txCloudPC, ManagedDeviceName: "CPC-SECRET-01", UserPrincipalName: "secret.user@contoso.com", Status: "provisioned"}
	return r
}

// txLookedUpDetails are what the approver's lookup found.
var txLookedUpDetails = []string{"CPC-SECRET-01", "secret.user@contoso.com", txCloudPC}

// What the requester reads names the Cloud PC as they typed it until an
// approver has acted on the details (approved and signed in): a denial, an
// expiry or a wait shows them none of what the approver's token looked up.
func TestRequesterSeesOnlyWhatTheyTyped(t *testing.T) {
	t.Parallel()
	denied := txWith(txLookedUp(approvals.StateDenied), func(r *approvals.Request) { r.DecisionReason = "not now" })
	expired := txWith(txLookedUp(approvals.StateExpired), func(r *approvals.Request) { r.DecidedBy = "" })
	// Signed in once, then sent back to waiting (a stale sign-in): the
	// approver has not gone on, so nothing is revealed yet.
	waiting := txWith(txLookedUp(approvals.StatePending), func(r *approvals.Request) { r.SignedInAs, r.DecidedBy = "approver@contoso.com", "" })
	// An approver signed in, then the request was left to expire at the
	// confirmation.
	expiredAtConfirmation := txWith(txLookedUp(approvals.StateExpired), func(r *approvals.Request) { r.SignedInAs = "approver@contoso.com" })
	canceledByRequester := txWith(txLookedUp(approvals.StateCanceled), func(r *approvals.Request) { r.DecidedBy = "UREQ" })

	for _, tc := range []struct {
		name string
		text string
	}{
		{"deny DM", noticeText("UREQ", approvals.Notice{Kind: approvals.NoticeStatus, Request: denied})},
		{"expired DM", txExpiredText(expired)},
		{"expired at the confirmation DM", txExpiredText(expiredAtConfirmation)},
		{"status DM while waiting", noticeText("UREQ", approvals.Notice{Kind: approvals.NoticeStatus, Request: waiting})},
		{"canceled DM", noticeText("UREQ", approvals.Notice{Kind: approvals.NoticeStatus, Request: canceledByRequester})},
		{"receipt", txConfirmationText(waiting)},
		{"home, your requests", strings.Join(txMrkdwn(t, yourRequestsBlocks([]*approvals.Request{denied, expired, waiting, expiredAtConfirmation})), "\n")},
	} {
		txCheck(t, tc.name, tc.text, []string{"`cpc-typed-7`"}, txLookedUpDetails)
	}

	// The approvers still see what their lookup found.
	txCheck(t, "deny summary to an approver", noticeText("UA2", approvals.Notice{Kind: approvals.NoticeStatus, Request: denied}),
		[]string{"`CPC-SECRET-01 of secret.user@contoso.com`"}, nil)

	// Once an approver approved, signed in and went on, the requester is
	// told which Cloud PC it was.
	for _, state := range []approvals.State{approvals.StateExecuting, approvals.StateSucceeded, approvals.StateFailed, approvals.StateOutcomeUnknown, approvals.StateCanceled} {
		r := txWith(txLookedUp(state), func(r *approvals.Request) { r.SignedInAs = "approver@contoso.com" })
		txCheck(t, "requester update, "+string(state), noticeText("UREQ", approvals.Notice{Kind: approvals.NoticeStatus, Request: r}),
			[]string{"`CPC-SECRET-01 of secret.user@contoso.com`"}, nil)
	}
}

func txExpiredText(r *approvals.Request) string {
	text, blocks := expiredNotice(r)
	return text + "\n" + strings.Join(txMrkdwnNoT(blocks), "\n")
}

func txConfirmationText(r *approvals.Request) string {
	text, blocks := requesterConfirmation(r)
	return text + "\n" + strings.Join(txMrkdwnNoT(blocks), "\n")
}

// txMrkdwnNoT is txMrkdwn for helpers without a *testing.T.
func txMrkdwnNoT(blocks []slack.Block) []string {
	var out []string
	for _, b := range blocks {
		if s, ok := b.(*slack.SectionBlock); ok && s.Text != nil {
			out = append(out, s.Text.Text)
		}
	}
	return out
}
