package bot

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// The Cloud PC user's heads-up: what the user, the approver and the
// requester read, and the buttons they get.

func TestHeadsUpNoticeTexts(t *testing.T) {
	t.Parallel()
	scheduled := txScheduled()
	scheduled.Options = approvals.Options{OSVersion: approvals.OSWindows11}
	now := txWith(txRequest(approvals.StateExecuting), func(r *approvals.Request) {
		r.HeadsUp = approvals.HeadsUp{UserID: "UANNA", Result: approvals.HeadsUpSent}
	})
	twoApprovals := txWith(txTwoApprovals(approvals.StateExecuting, 1), func(r *approvals.Request) { r.HeadsUp = now.HeadsUp })
	asked := txWith(txScheduled(), func(r *approvals.Request) { r.HeadsUp.MoreTimeAsked = true })
	postponed := txWith(txScheduled(), func(r *approvals.Request) { r.HeadsUp.MoreTimeAsked, r.HeadsUp.Postponed = true, true })
	gone := func(state approvals.State) *approvals.Request {
		return txWith(txRequest(state), func(r *approvals.Request) { r.HeadsUp = now.HeadsUp })
	}
	tracked := func(result string) *approvals.Request {
		return txWith(txTracked(approvals.Tracking{Result: result}), func(r *approvals.Request) { r.HeadsUp = now.HeadsUp })
	}
	notTold := func(result string) *approvals.Request {
		return txWith(txRequest(approvals.StateExecuting), func(r *approvals.Request) { r.HeadsUp = approvals.HeadsUp{Result: result} })
	}
	const device = "*CPC-anna-01* (`" + txCloudPC + "`)"
	const nothingChanged = "will not happen now: nothing was changed on your Cloud PC."
	for _, tc := range []struct {
		name   string
		user   string
		notice approvals.Notice
		want   []string
		bad    []string
	}{
		{"heads-up, scheduled", "UANNA", approvals.Notice{Kind: approvals.NoticeHeadsUp, Request: scheduled},
			[]string{"your Cloud PC " + device + " will be reprovisioned at " + txAt, txRef, "<@UREQ> asked for it and <@UA1> approved it",
				"Reason: disk full.", "with Windows 11.", "*signed out*", "*all data and apps*", "*deleted*", "click *I need more time*"},
			[]string{"You asked"}},
		{"heads-up, now", "UANNA", approvals.Notice{Kind: approvals.NoticeHeadsUp, Request: now},
			[]string{"will be reprovisioned now*", "<@UREQ> asked for it and <@UA1> approved it", "*signed out*"}, []string{"more time", "<!date"}},
		{"heads-up, two approvers", "UANNA", approvals.Notice{Kind: approvals.NoticeHeadsUp, Request: twoApprovals},
			[]string{"<@UREQ> asked for it and <@UA2> and <@UA1> approved it"}, nil},
		{"heads-up to the requester, who is the user", "UREQ", approvals.Notice{Kind: approvals.NoticeHeadsUp, Request: now},
			[]string{"You asked for it and <@UA1> approved it", "your Cloud PC"}, []string{"<@UREQ>"}},
		{"heads-up, more time asked", "UANNA", approvals.Notice{Kind: approvals.NoticeHeadsUp, Request: asked},
			[]string{"You asked for more time; <@UA1> decides."}, []string{"click *I need more time*"}},
		{"heads-up, postponed", "UANNA", approvals.Notice{Kind: approvals.NoticeHeadsUp, Request: postponed},
			[]string{"It was postponed once already."}, []string{"click *I need more time*"}},

		{"user update, postponed", "UANNA", approvals.Notice{Kind: approvals.NoticeUserUpdate, Request: postponed},
			[]string{"your Cloud PC " + device, "was postponed: it now goes at " + txAt}, nil},
		{"user update, canceled", "UANNA", approvals.Notice{Kind: approvals.NoticeUserUpdate, Request: gone(approvals.StateCanceled)},
			[]string{device, nothingChanged}, nil},
		{"user update, denied", "UANNA", approvals.Notice{Kind: approvals.NoticeUserUpdate, Request: gone(approvals.StateDenied)},
			[]string{nothingChanged}, nil},
		{"user update, expired", "UANNA", approvals.Notice{Kind: approvals.NoticeUserUpdate, Request: gone(approvals.StateExpired)},
			[]string{nothingChanged}, nil},
		{"user update, failed", "UANNA", approvals.Notice{Kind: approvals.NoticeUserUpdate, Request: gone(approvals.StateFailed)},
			[]string{nothingChanged}, nil},
		{"user update, waiting again", "UANNA", approvals.Notice{Kind: approvals.NoticeUserUpdate, Request: gone(approvals.StatePending)},
			[]string{nothingChanged, "you will get a new heads-up first"}, nil},
		{"user update, outcome unknown", "UANNA", approvals.Notice{Kind: approvals.NoticeUserUpdate, Request: gone(approvals.StateOutcomeUnknown)},
			[]string{"may have started", "IT is checking"}, []string{"nothing was changed"}},
		{"user update, started, not tracked", "UANNA", approvals.Notice{Kind: approvals.NoticeUserUpdate, Request: gone(approvals.StateSucceeded)},
			[]string{"reprovision of your Cloud PC " + device, "has started"}, []string{"nothing was changed"}},

		{"user ready", "UANNA", approvals.Notice{Kind: approvals.NoticeUserReady, Request: tracked(approvals.TrackProvisioned)},
			[]string{":tada: Your Cloud PC " + device + " is ready"}, []string{"failed"}},
		{"user ready, failed", "UANNA", approvals.Notice{Kind: approvals.NoticeUserReady, Request: tracked(approvals.TrackFailed)},
			[]string{"reprovision of your Cloud PC " + device + " failed", "IT has been told"}, []string{"is ready"}},

		{"not notified, no account", "UA1", approvals.Notice{Kind: approvals.NoticeUserNotNotified, Request: notTold(approvals.HeadsUpNoAccount)},
			[]string{"anna@contoso.com could not be told", txRef, "no Slack account has that email address", "the reprovision goes on"}, nil},
		{"not notified, lookup failed", "UREQ", approvals.Notice{Kind: approvals.NoticeUserNotNotified, Request: notTold(approvals.HeadsUpLookupFailed)},
			[]string{"anna@contoso.com could not be told", "Slack could not be asked", "the reprovision goes on"}, nil},
		{"not notified, no user", "UA1", approvals.Notice{Kind: approvals.NoticeUserNotNotified,
			Request: txWith(notTold(approvals.HeadsUpNoUser), func(r *approvals.Request) { r.Device.UserPrincipalName = "" })},
			[]string{"The Cloud PC's user could not be told", "the Cloud PC has no user principal name", "the reprovision goes on"}, nil},

		{"more time asked", "UA1", approvals.Notice{Kind: approvals.NoticeMoreTimeAsked, Request: asked},
			[]string{"<@UANNA> asks for more time", device, txRef, "sending at " + txAt, "*Postpone*"}, nil},
		{"more time asked, postponed already", "UA1", approvals.Notice{Kind: approvals.NoticeMoreTimeAsked, Request: postponed},
			[]string{"postponed once already"}, []string{"*Postpone*"}},

		{"sign in to send, restart", "UA1", approvals.Notice{Kind: approvals.NoticeSignInToSend, Request: scheduled},
			[]string{"The bot restarted", "your sign-in was lost", txRef, "*Sign in*", "*Send now* also works", "it expires and nothing is sent"}, nil},
		{"sign in to send, sign-in failed", "UA1", approvals.Notice{Kind: approvals.NoticeSignInToSend, Request: scheduled,
			Why: &approvals.Outcome{Kind: approvals.OutcomeSignInDeclined}},
			[]string{"Sign-in was declined.", "did not complete", "*Sign in*"}, []string{"restarted"}},
	} {
		txCheck(t, tc.name, noticeText(tc.user, tc.notice), tc.want, tc.bad)
	}

	// Outside text is escaped: the reason, the device and user names.
	hostile := txScheduled()
	hostile.Reason, hostile.Device.ManagedDeviceName, hostile.Device.UserPrincipalName = txHostile, txHostile, txHostile
	hostile.HeadsUp.Result = approvals.HeadsUpNoAccount
	for _, kind := range []approvals.NoticeKind{approvals.NoticeHeadsUp, approvals.NoticeUserUpdate, approvals.NoticeUserNotNotified,
		approvals.NoticeMoreTimeAsked, approvals.NoticeSignInToSend} {
		txCheck(t, "escaped "+string(kind), noticeText("UANNA", approvals.Notice{Kind: kind, Request: hostile}), []string{txHostileEscaped}, txRaw)
	}
}

// buttons lists "action_id=value" of the buttons in blocks.
func buttons(t *testing.T, blocks []slack.Block) []string {
	t.Helper()
	raw, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	return buttonsIn(t, raw)
}

func buttonsIn(t *testing.T, raw []byte) []string {
	t.Helper()
	var generic []map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatalf("blocks: %v", err)
	}
	var out []string
	for _, b := range generic {
		elements, _ := b["elements"].([]any)
		for _, e := range elements {
			m, _ := e.(map[string]any)
			if m["type"] == "button" {
				out = append(out, m["action_id"].(string)+"="+m["value"].(string))
			}
		}
	}
	return out
}

func TestHeadsUpButtons(t *testing.T) {
	t.Parallel()
	same := func(name string, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: buttons %q, want %q", name, got, want)
		}
	}
	r := txScheduled()
	same("heads-up, scheduled", buttons(t, headsUpBlocks("UANNA", r)), "more_time="+txRef)
	same("heads-up, now", buttons(t, headsUpBlocks("UANNA", txWith(txRequest(approvals.StateExecuting), func(r *approvals.Request) {
		r.HeadsUp = approvals.HeadsUp{UserID: "UANNA", Result: approvals.HeadsUpSent}
	}))))
	same("heads-up, asked", buttons(t, headsUpBlocks("UANNA", txWith(txScheduled(), func(r *approvals.Request) { r.HeadsUp.MoreTimeAsked = true }))))
	same("heads-up, postponed", buttons(t, headsUpBlocks("UANNA", txWith(txScheduled(), func(r *approvals.Request) { r.HeadsUp.Postponed = true }))))

	same("more time asked", buttons(t, moreTimeAskedBlocks(r)), "postpone="+txRef, "send_now="+txRef, "abort="+txRef)
	same("more time asked, postponed", buttons(t, moreTimeAskedBlocks(txWith(txScheduled(), func(r *approvals.Request) { r.HeadsUp.Postponed = true }))),
		"send_now="+txRef, "abort="+txRef)
	same("sign in to send", buttons(t, signInToSendBlocks(approvals.Notice{Kind: approvals.NoticeSignInToSend, Request: r})),
		"sign_in_to_send="+txRef, "send_now="+txRef, "abort="+txRef)

	// The prompt: Send now and Cancel while it waits; Sign in first after
	// a restart. The status line shows the time.
	same("prompt, scheduled", buttons(t, promptBlocks(r)), "send_now="+txRef, "abort="+txRef)
	lost := txWith(txScheduled(), func(r *approvals.Request) { r.HeadsUp.SignInLost = true })
	same("prompt, sign-in lost", buttons(t, promptBlocks(lost)), "sign_in_to_send="+txRef, "send_now="+txRef, "abort="+txRef)
	raw, _ := json.Marshal(promptBlocks(lost))
	for _, want := range []string{"Sending at " + jsonText(txAt), "The bot restarted; \\u003c@UA1\\u003e must sign in again", "block_id\":\"scheduled:" + txRef} {
		if !strings.Contains(string(raw), want) && !strings.Contains(string(raw), strings.ReplaceAll(want, "\\u003c", "<")) {
			t.Errorf("scheduled prompt lacks %q:\n%s", want, raw)
		}
	}
	same("prompt, executing", buttons(t, promptBlocks(txRequest(approvals.StateExecuting))))

	// The sign-in DM says what for.
	if got := signInPurposeText(approvals.SignInToSend, r); !strings.HasPrefix(got, "send "+txRef) {
		t.Errorf("sign-in purpose: %q", got)
	}
}

// jsonText is s as json.Marshal writes it inside a string.
func jsonText(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

// Done clicks on the heads-up's buttons say what happened.
func TestScheduledDoneText(t *testing.T) {
	t.Parallel()
	r := txScheduled()
	for _, tc := range []struct{ action, want string }{
		{actionSendNow, "Sending " + txRef + " now…"},
		{actionPostpone, "Postponed " + txRef + ": it now goes at " + txAt + "; <@UANNA> was told."},
		{actionMoreTime, "Asked <@UA1> for more time before " + txRef + " is reprovisioned."},
		{actionSignInSend, "Signing in for " + txRef + ": see the sign-in message."},
		{actionAbort, "Canceled " + txRef + ": nothing was reprovisioned."},
	} {
		if got := doneText(tc.action, r); !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.action, got, tc.want)
		}
	}
	lost := txWith(txScheduled(), func(r *approvals.Request) { r.HeadsUp.SignInLost = true })
	if got := doneText(actionSendNow, lost); !strings.Contains(got, "sign in first") {
		t.Errorf("send now after a restart: %q", got)
	}
}

// Tell sends the notices with buttons as Block Kit that Slack accepts.
func TestTellHeadsUpNoticesWithButtons(t *testing.T) {
	t.Parallel()
	b, fs := newNoticesBot(t)
	r := txScheduled()
	for _, tc := range []struct {
		user string
		n    approvals.Notice
		want string
	}{
		{"UANNA", approvals.Notice{Kind: approvals.NoticeHeadsUp, Request: r}, "more_time=" + txRef},
		{"UA1", approvals.Notice{Kind: approvals.NoticeMoreTimeAsked, Request: r}, "postpone=" + txRef},
		{"UA1", approvals.Notice{Kind: approvals.NoticeSignInToSend, Request: r}, "sign_in_to_send=" + txRef},
	} {
		if err := b.Tell(context.Background(), tc.user, tc.n); err != nil {
			t.Fatalf("%s: %v", tc.n.Kind, err)
		}
		msgs := fs.Messages(fakes.DMChannel(tc.user))
		last := msgs[len(msgs)-1]
		if got := strings.Join(buttonsIn(t, last.Blocks), " "); !strings.Contains(got, tc.want) {
			t.Errorf("%s: buttons %q, want %q", tc.n.Kind, got, tc.want)
		}
		if last.Text != noticeText(tc.user, tc.n) {
			t.Errorf("%s: fallback text %q", tc.n.Kind, last.Text)
		}
	}
}

// ChatUserByEmail finds the Cloud PC's user in Slack; no account, a
// deactivated one or a bot is ErrNoChatAccount, anything else an error.
func TestChatUserByEmail(t *testing.T) {
	t.Parallel()
	b, fs := newNoticesBot(t)
	ctx := context.Background()
	fs.SetUserEmail("U0ANNA", "Anna@Contoso.example")
	fs.SetUserEmail("U0GONE", "gone@contoso.example")
	fs.SetUserDeleted("U0GONE", true)
	fs.SetUserEmail(fakes.BotUserID, "bot@contoso.example")

	if got, err := b.ChatUserByEmail(ctx, "anna@contoso.example"); err != nil || got != "U0ANNA" {
		t.Errorf("anna: %q, %v; want U0ANNA", got, err)
	}
	for _, email := range []string{"nobody@contoso.example", "gone@contoso.example", "bot@contoso.example"} {
		if got, err := b.ChatUserByEmail(ctx, email); !errors.Is(err, approvals.ErrNoChatAccount) || got != "" {
			t.Errorf("%s: %q, %v; want ErrNoChatAccount", email, got, err)
		}
	}
	fs.FailNext("users.lookupByEmail", "invalid_auth")
	if _, err := b.ChatUserByEmail(ctx, "anna@contoso.example"); err == nil || errors.Is(err, approvals.ErrNoChatAccount) {
		t.Errorf("invalid_auth: %v, want an error other than ErrNoChatAccount", err)
	}
	if n := len(fs.Calls("users.lookupByEmail")); n != 5 {
		t.Errorf("%d users.lookupByEmail calls, want 5", n)
	}
}
