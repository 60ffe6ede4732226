package fakes_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the goroutine, to check that a helper refuses a test bug.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func expectFatal(t *testing.T, want string, fn func(tb testing.TB)) {
	t.Helper()
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	if r.msg == "" {
		t.Fatalf("no Fatalf; want one containing %q", want)
	}
	if !strings.Contains(r.msg, want) {
		t.Fatalf("Fatalf %q; want it to contain %q", clipStr(r.msg, 300), want)
	}
}

func clipStr(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func plainText(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
}

// reasonModal is shaped like the bot's: a section, a required multiline
// reason input with max_length and an optional input with an initial value.
func reasonModal(callbackID, meta string) slack.ModalViewRequest {
	reason := slack.NewPlainTextInputBlockElement(plainText("why"), "reason_input")
	reason.Multiline = true
	reason.MaxLength = 20
	note := slack.NewPlainTextInputBlockElement(nil, "note_input").WithInitialValue("default note")
	return slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      callbackID,
		PrivateMetadata: meta,
		Title:           plainText("Reprovision"),
		Submit:          plainText("Ask for approval"),
		Close:           plainText("Cancel"),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewSectionBlock(plainText("Reprovision CPC-alice-01?"), nil, nil),
			slack.NewInputBlock("reason", plainText("Reason"), nil, reason),
			slack.NewInputBlock("note", plainText("Note"), nil, note).WithOptional(true),
		}},
	}
}

// openModal runs a slash command and opens modal with its trigger, as a bot
// does.
func openModal(t *testing.T, s *fakes.Slack, c *smClient, user string, modal slack.ModalViewRequest) *slack.ViewResponse {
	t.Helper()
	envID := s.SendSlashCommand(t, fakes.SlashCommand{UserID: user, Text: "CPC-alice-01"})
	ev := c.next(t, socketmode.EventTypeSlashCommand)
	if err := c.sm.Ack(*ev.Request); err != nil {
		t.Fatal(err)
	}
	s.WaitAck(t, envID, wait)
	resp, err := c.api.OpenView(ev.Data.(slack.SlashCommand).TriggerID, modal)
	if err != nil {
		t.Fatalf("views.open: %v", err)
	}
	return resp
}

// nextSubmission returns the next interactive event, which must be a
// view_submission.
func nextSubmission(t *testing.T, c *smClient) (socketmode.Event, slack.InteractionCallback) {
	t.Helper()
	ev := c.next(t, socketmode.EventTypeInteractive)
	cb, ok := ev.Data.(slack.InteractionCallback)
	if !ok || cb.Type != slack.InteractionTypeViewSubmission {
		t.Fatalf("event data %T %+v", ev.Data, ev.Data)
	}
	return ev, cb
}

func TestSlackViewSubmission(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	s.SetUserName("U0ALICE", "alice")
	c := startClient(t, s)
	c.next(t, socketmode.EventTypeConnected)

	opened := openModal(t, s, c, "U0ALICE", reasonModal("reprovision_reason", `{"target":"CPC-alice-01"}`))
	v := s.WaitView(t, "U0ALICE", "reprovision_reason", wait)
	if v.ID != opened.View.ID || v.Type != "modal" || v.UserID != "U0ALICE" || v.OpenedVia != "views.open" || v.Title != "Reprovision" ||
		v.PrivateMetadata != `{"target":"CPC-alice-01"}` || v.Closed || v.Updates != 0 || v.Hash == "" || v.Hash != opened.View.Hash ||
		v.RootViewID != v.ID || v.PreviousViewID != "" || !strings.Contains(string(v.Blocks), `"reason_input"`) {
		t.Fatalf("view = %+v (opened %+v)", v, opened.View)
	}
	if vs := s.Views("U0ALICE"); len(vs) != 1 || vs[0].ID != v.ID {
		t.Fatalf("views = %+v", vs)
	}
	if _, ok := s.HomeView("U0ALICE"); ok {
		t.Fatal("home view before any publish")
	}

	// A submission with an answer the bot refuses: the ack carries errors.
	envID := s.SendViewSubmission(t, fakes.ViewSubmission{UserID: "U0ALICE", ViewID: v.ID,
		Values: map[string]map[string]string{"reason": {"reason_input": "   "}}})
	ev, cb := nextSubmission(t, c)
	if ev.Request.EnvelopeID != envID || !ev.Request.AcceptsResponsePayload {
		t.Fatalf("request = %+v", ev.Request)
	}
	if cb.View.ID != v.ID || cb.View.CallbackID != "reprovision_reason" || cb.View.PrivateMetadata != `{"target":"CPC-alice-01"}` ||
		cb.View.Type != slack.VTModal || cb.View.Hash != v.Hash || cb.View.RootViewID != v.ID || cb.View.AppID != fakes.AppID ||
		cb.View.BotID != fakes.BotID || cb.View.TeamID != fakes.TeamID || cb.View.Title.Text != "Reprovision" ||
		cb.View.Submit.Text != "Ask for approval" || cb.View.Close.Text != "Cancel" || len(cb.View.Blocks.BlockSet) != 3 {
		t.Fatalf("view = %+v", cb.View)
	}
	if cb.View.State == nil {
		t.Fatal("no view state")
	}
	if got := cb.View.State.Values["reason"]["reason_input"]; got.Value != "   " || got.Type != "plain_text_input" {
		t.Fatalf("reason state = %+v", got)
	}
	if got := cb.View.State.Values["note"]["note_input"]; got.Value != "default note" {
		t.Fatalf("note state (initial_value) = %+v", got)
	}
	if cb.User.ID != "U0ALICE" || cb.User.Name != "alice" || cb.User.TeamID != fakes.TeamID || cb.Team.ID != fakes.TeamID ||
		cb.APIAppID != fakes.AppID || cb.TriggerID == "" || cb.ResponseURL != "" || cb.IsEnterpriseInstall {
		t.Fatalf("callback = %+v", cb)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(ev.Request.Payload, &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw["response_urls"]) != "[]" || string(raw["enterprise"]) != "null" || string(raw["is_enterprise_install"]) != "false" ||
		string(raw["token"]) != `"`+fakes.VerificationToken+`"` {
		t.Fatalf("payload = %s", ev.Request.Payload)
	}
	if err := c.sm.Ack(*ev.Request, slack.NewErrorsViewSubmissionResponse(map[string]string{"reason": "Please give a reason"})); err != nil {
		t.Fatal(err)
	}
	s.WaitAck(t, envID, wait)
	s.WaitFor(t, wait, "errors shown", func() bool { return s.ViewErrors(v.ID)["reason"] == "Please give a reason" })
	if got, _ := s.View(v.ID); got.Closed {
		t.Fatalf("modal closed by an errors ack: %+v", got)
	}

	// The submission's trigger_id is a real one: views.push accepts it and
	// puts the new modal on the submitted one's stack.
	envID = s.SendViewSubmission(t, fakes.ViewSubmission{UserID: "U0ALICE", ViewID: v.ID,
		Values: map[string]map[string]string{"reason": {"reason_input": "profile corrupt"}, "note": {"note_input": ""}}})
	ev, cb = nextSubmission(t, c)
	if got := cb.View.State.Values["reason"]["reason_input"].Value; got != "profile corrupt" {
		t.Fatalf("reason = %q", got)
	}
	if got, ok := cb.View.State.Values["note"]["note_input"]; !ok || got.Value != "" {
		t.Fatalf("note = %+v", got)
	}
	pushed, err := c.api.PushView(cb.TriggerID, reasonModal("confirm", "x"))
	if err != nil {
		t.Fatalf("views.push: %v", err)
	}
	// An empty ack closes the submitted modal, not the pushed one.
	if err := c.sm.Ack(*ev.Request); err != nil {
		t.Fatal(err)
	}
	s.WaitAck(t, envID, wait)
	s.WaitFor(t, wait, "modal closed", func() bool { got, _ := s.View(v.ID); return got.Closed })
	if errs := s.ViewErrors(v.ID); errs != nil {
		t.Fatalf("errors after a clean submission: %v", errs)
	}
	p := s.WaitView(t, "U0ALICE", "confirm", wait)
	if p.ID != pushed.View.ID || p.OpenedVia != "views.push" || p.RootViewID != v.ID || p.PreviousViewID != v.ID || p.Closed {
		t.Fatalf("pushed = %+v", p)
	}
	if vs := s.Views("U0ALICE"); len(vs) != 2 || vs[0].ID != v.ID || vs[1].ID != p.ID {
		t.Fatalf("views = %+v", vs)
	}
	// views.update on a closed modal fails.
	if _, err := c.api.UpdateView(reasonModal("x", ""), "", "", v.ID); err == nil || err.Error() != "not_found" {
		t.Fatalf("update of closed view err = %v", err)
	}

	// What the user cannot do in Slack is a test bug.
	for _, tc := range []struct {
		name, want string
		sub        fakes.ViewSubmission
	}{
		{"closed", "is closed", fakes.ViewSubmission{UserID: "U0ALICE", ViewID: v.ID}},
		{"unknown view", "no view", fakes.ViewSubmission{UserID: "U0ALICE", ViewID: "V0NOPE"}},
		{"other user", "not U0BOB", fakes.ViewSubmission{UserID: "U0BOB", ViewID: p.ID,
			Values: map[string]map[string]string{"reason": {"reason_input": "x"}}}},
		{"unknown block", `no input block "nope"`, fakes.ViewSubmission{UserID: "U0ALICE", ViewID: p.ID,
			Values: map[string]map[string]string{"reason": {"reason_input": "x"}, "nope": {"reason_input": "x"}}}},
		{"wrong action", `no element with action_id "other"`, fakes.ViewSubmission{UserID: "U0ALICE", ViewID: p.ID,
			Values: map[string]map[string]string{"reason": {"other": "x"}}}},
		{"required empty", "is empty", fakes.ViewSubmission{UserID: "U0ALICE", ViewID: p.ID,
			Values: map[string]map[string]string{"reason": {"reason_input": ""}}}},
		{"required missing", "is empty", fakes.ViewSubmission{UserID: "U0ALICE", ViewID: p.ID}},
		{"too long", "max_length 20", fakes.ViewSubmission{UserID: "U0ALICE", ViewID: p.ID,
			Values: map[string]map[string]string{"reason": {"reason_input": strings.Repeat("x", 21)}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectFatal(t, tc.want, func(tb testing.TB) { s.SendViewSubmission(tb, tc.sub) })
		})
	}
}

func TestSlackViewSubmissionResponseActions(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	c := startClient(t, s)
	c.next(t, socketmode.EventTypeConnected)
	a := openModal(t, s, c, "U0ALICE", reasonModal("a", "meta-a")).View
	values := map[string]map[string]string{"reason": {"reason_input": "because"}}
	submit := func(viewID string) (socketmode.Event, slack.InteractionCallback, string) {
		t.Helper()
		envID := s.SendViewSubmission(t, fakes.ViewSubmission{UserID: "U0ALICE", ViewID: viewID, Values: values})
		ev, cb := nextSubmission(t, c)
		if cb.View.ID != viewID {
			t.Fatalf("submitted %s, got %s", viewID, cb.View.ID)
		}
		return ev, cb, envID
	}

	// update replaces the modal.
	ev, _, envID := submit(a.ID)
	_ = c.sm.Ack(*ev.Request, slack.NewUpdateViewSubmissionResponse(&slack.ModalViewRequest{Type: slack.VTModal,
		Title: plainText("Updated"), CallbackID: "a2", Submit: plainText("Go"), PrivateMetadata: "meta-a2",
		Blocks: reasonModal("", "").Blocks}))
	s.WaitAck(t, envID, wait)
	s.WaitFor(t, wait, "modal updated", func() bool { v, _ := s.View(a.ID); return v.Updates == 1 })
	if v, _ := s.View(a.ID); v.CallbackID != "a2" || v.Title != "Updated" || v.PrivateMetadata != "meta-a2" || v.Closed || v.Hash == a.Hash {
		t.Fatalf("updated = %+v", v)
	}
	// The ack is refused (modal left as is) for an invalid view.
	ev, _, envID = submit(a.ID)
	_ = c.sm.Ack(*ev.Request, map[string]any{"response_action": "update", "view": map[string]any{"type": "modal", "blocks": []any{}}})
	s.WaitAck(t, envID, wait)
	if v, _ := s.View(a.ID); v.Updates != 1 || v.Closed {
		t.Fatalf("after an invalid update = %+v", v)
	}

	// push puts a modal on the stack.
	ev, _, envID = submit(a.ID)
	_ = c.sm.Ack(*ev.Request, slack.NewPushViewSubmissionResponse(&slack.ModalViewRequest{Type: slack.VTModal,
		Title: plainText("B"), CallbackID: "b", Submit: plainText("Go"), Blocks: reasonModal("", "").Blocks}))
	s.WaitAck(t, envID, wait)
	b := s.WaitView(t, "U0ALICE", "b", wait)
	if b.OpenedVia != "views.push" || b.RootViewID != a.ID || b.PreviousViewID != a.ID {
		t.Fatalf("b = %+v", b)
	}
	// views.push with a submission's trigger: third modal on the stack.
	ev, cb, envID := submit(b.ID)
	cv, err := c.api.PushView(cb.TriggerID, reasonModal("c", ""))
	if err != nil {
		t.Fatal(err)
	}
	if cv.View.RootViewID != a.ID || cv.View.PreviousViewID != b.ID {
		t.Fatalf("c = %+v", cv.View)
	}
	// errors for a block that is not an input: Slack refuses the answer.
	_ = c.sm.Ack(*ev.Request, slack.NewErrorsViewSubmissionResponse(map[string]string{"nope": "x"}))
	s.WaitAck(t, envID, wait)
	if v, _ := s.View(b.ID); v.Closed || s.ViewErrors(b.ID) != nil {
		t.Fatalf("b after refused errors = %+v %v", v, s.ViewErrors(b.ID))
	}
	if !strings.Contains(s.Dump(), "not an input block") {
		t.Fatalf("dump does not explain the refused ack:\n%s", s.Dump())
	}
	// A fourth modal is over Slack's limit of 3.
	ev, cb, envID = submit(cv.View.ID)
	if _, err := c.api.PushView(cb.TriggerID, reasonModal("d", "")); err == nil || err.Error() != "push_limit_reached" {
		t.Fatalf("4th push err = %v", err)
	}
	// clear closes the whole stack.
	_ = c.sm.Ack(*ev.Request, slack.NewClearViewSubmissionResponse())
	s.WaitAck(t, envID, wait)
	s.WaitFor(t, wait, "stack cleared", func() bool {
		for _, v := range s.Views("U0ALICE") {
			if !v.Closed {
				return false
			}
		}
		return true
	})
	if vs := s.Views("U0ALICE"); len(vs) != 3 {
		t.Fatalf("views = %+v", vs)
	}

	// views.update checks the hash.
	d := openModal(t, s, c, "U0ALICE", reasonModal("d", "")).View
	if _, err := c.api.UpdateView(reasonModal("d", "v2"), "", "stale.hash", d.ID); err == nil || err.Error() != "hash_conflict" {
		t.Fatalf("stale hash err = %v", err)
	}
	up, err := c.api.UpdateView(reasonModal("d", "v2"), "", d.Hash, d.ID)
	if err != nil || up.View.Hash == d.Hash || up.View.PrivateMetadata != "v2" {
		t.Fatalf("update = %+v, %v", up, err)
	}
	if v, _ := s.View(d.ID); v.Updates != 1 || v.OpenedVia != "views.open" || v.Hash != up.View.Hash {
		t.Fatalf("d = %+v", v)
	}

	// An ack after Slack's 3 seconds changes nothing.
	ev, _, envID = submit(d.ID)
	time.Sleep(3200 * time.Millisecond)
	_ = c.sm.Ack(*ev.Request)
	s.WaitAck(t, envID, wait)
	if v, _ := s.View(d.ID); v.Closed {
		t.Fatalf("closed by a late ack: %+v", v)
	}
}

func TestSlackHomeTabBlockAction(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	c := startClient(t, s)
	c.next(t, socketmode.EventTypeConnected)

	home := slack.HomeTabViewRequest{Type: slack.VTHomeTab, CallbackID: "home", Blocks: slack.Blocks{BlockSet: approvalBlocks()}}
	first, err := c.api.PublishView("U0BOB", home, "")
	if err != nil {
		t.Fatal(err)
	}
	h, ok := s.HomeView("U0BOB")
	if !ok || h.ID != first.View.ID || h.Type != "home" || h.UserID != "U0BOB" || h.OpenedVia != "views.publish" || h.Updates != 0 || h.CallbackID != "home" {
		t.Fatalf("home = %+v, %v", h, ok)
	}
	if _, err := c.api.PublishView("U0BOB", home, "stale"); err == nil || err.Error() != "hash_conflict" {
		t.Fatalf("stale hash err = %v", err)
	}
	if _, err := c.api.PublishView("U0BOB", home, h.Hash); err != nil {
		t.Fatal(err)
	}
	h, _ = s.HomeView("U0BOB")
	if h.ID != first.View.ID || h.Updates != 1 {
		t.Fatalf("republished home = %+v", h)
	}
	if vs := s.Views("U0BOB"); len(vs) != 1 {
		t.Fatalf("views = %+v", vs)
	}
	var stored []map[string]any
	if err := json.Unmarshal(h.Blocks, &stored); err != nil {
		t.Fatal(err)
	}
	actionsBlockID := stored[1]["block_id"].(string)

	envID := s.SendBlockAction(t, fakes.BlockAction{UserID: "U0BOB", ActionID: "approve", ViewID: h.ID})
	ev := c.next(t, socketmode.EventTypeInteractive)
	cb := ev.Data.(slack.InteractionCallback)
	if ev.Request.EnvelopeID != envID || ev.Request.AcceptsResponsePayload || cb.Type != slack.InteractionTypeBlockActions {
		t.Fatalf("request %+v callback %+v", ev.Request, cb)
	}
	act := cb.ActionCallback.BlockActions
	if len(act) != 1 || act[0].ActionID != "approve" || act[0].Value != "req-1" || act[0].BlockID != actionsBlockID || act[0].Text.Text != "Approve" {
		t.Fatalf("actions = %+v", act)
	}
	if cb.Container.Type != "view" || cb.Container.ViewID != h.ID || cb.Container.ChannelID != "" || cb.Container.MessageTs != "" {
		t.Fatalf("container = %+v", cb.Container)
	}
	if cb.View.ID != h.ID || cb.View.Type != slack.VTHomeTab || cb.View.Hash != h.Hash || len(cb.View.Blocks.BlockSet) != 2 || cb.View.CallbackID != "home" {
		t.Fatalf("view = %+v", cb.View)
	}
	if cb.User.ID != "U0BOB" || cb.TriggerID == "" || cb.ResponseURL != "" || cb.Channel.ID != "" || cb.Message.Timestamp != "" {
		t.Fatalf("callback = %+v", cb)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(ev.Request.Payload, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"message", "channel", "response_url"} {
		if _, ok := raw[k]; ok {
			t.Fatalf("home tab payload has %q: %s", k, ev.Request.Payload)
		}
	}
	if string(raw["container"]) != `{"type":"view","view_id":"`+h.ID+`"}` {
		t.Fatalf("container = %s", raw["container"])
	}
	_ = c.sm.Ack(*ev.Request)
	s.WaitAck(t, envID, wait)

	// The action's trigger opens a modal for that user.
	m, err := c.api.OpenView(cb.TriggerID, reasonModal("deny_reason", "req-1"))
	if err != nil {
		t.Fatal(err)
	}
	if v := s.WaitView(t, "U0BOB", "deny_reason", wait); v.ID != m.View.ID {
		t.Fatalf("modal = %+v", v)
	}

	expectFatal(t, "not U0ALICE", func(tb testing.TB) {
		s.SendBlockAction(tb, fakes.BlockAction{UserID: "U0ALICE", ActionID: "approve", ViewID: h.ID})
	})
	expectFatal(t, `no element with action_id "ghost"`, func(tb testing.TB) {
		s.SendBlockAction(tb, fakes.BlockAction{UserID: "U0BOB", ActionID: "ghost", ViewID: h.ID})
	})
	expectFatal(t, "either ViewID or", func(tb testing.TB) {
		s.SendBlockAction(tb, fakes.BlockAction{UserID: "U0BOB", ActionID: "approve", ViewID: h.ID, ChannelID: "C1"})
	})
}
