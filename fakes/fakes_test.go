package fakes_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

const wait = 10 * time.Second

// smClient runs a real slack-go Socket Mode client against s and forwards
// its events.
type smClient struct {
	api    *slack.Client
	sm     *socketmode.Client
	events chan socketmode.Event
	done   chan error
}

func startClient(t *testing.T, s *fakes.Slack, opts ...socketmode.Option) *smClient {
	t.Helper()
	api := slack.New(fakes.BotToken, slack.OptionAppLevelToken(fakes.AppToken), slack.OptionAPIURL(s.APIURL()))
	c := &smClient{api: api, sm: socketmode.New(api, opts...), events: make(chan socketmode.Event, 100), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { c.done <- c.sm.RunContext(ctx) }()
	go func() {
		for {
			select {
			case ev := <-c.sm.Events:
				select {
				case c.events <- ev:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-c.done:
		case <-time.After(wait):
			t.Errorf("socketmode client did not stop")
		}
	})
	return c
}

// next returns the next event of type typ, skipping others.
func (c *smClient) next(t *testing.T, typ socketmode.EventType) socketmode.Event {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case ev := <-c.events:
			if ev.Type == typ {
				return ev
			}
			if ev.Type == socketmode.EventTypeErrorBadMessage || ev.Type == socketmode.EventTypeIncomingError {
				t.Fatalf("client error event %s: %+v", ev.Type, ev.Data)
			}
		case <-timeout:
			t.Fatalf("no %s event within %v", typ, wait)
		}
	}
}

// reconnected waits for the client's next connection after the fake closed
// the current one. slack-go may report the read on the closed socket as an
// incoming_error first, depending on which goroutine sees the close first:
// that is expected here, not a protocol error.
func (c *smClient) reconnected(t *testing.T) {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case ev := <-c.events:
			switch ev.Type {
			case socketmode.EventTypeConnected:
				return
			case socketmode.EventTypeErrorBadMessage:
				t.Fatalf("client error event %s: %+v", ev.Type, ev.Data)
			}
		case <-timeout:
			t.Fatalf("no reconnection within %v", wait)
		}
	}
}

func approvalBlocks() []slack.Block {
	return []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "*alice* asks to reprovision *CPC-alice-01*", false, false), nil, nil),
		slack.NewActionBlock("",
			slack.NewButtonBlockElement("approve", "req-1", slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false)).WithStyle(slack.StylePrimary),
			slack.NewButtonBlockElement("deny", "req-1", slack.NewTextBlockObject(slack.PlainTextType, "Deny", false, false)).WithStyle(slack.StyleDanger),
		),
	}
}

func TestSlackSocketModeRoundTrip(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	s.SetUserEmail("U0ALICE", "alice@example.com")
	s.SetUserName("U0ALICE", "alice")
	c := startClient(t, s)

	c.next(t, socketmode.EventTypeConnected)
	hello := c.next(t, socketmode.EventTypeHello)
	if hello.Request.NumConnections != 1 || hello.Request.ConnectionInfo.AppID != fakes.AppID || hello.Request.DebugInfo.Host == "" {
		t.Fatalf("hello = %+v", hello.Request)
	}
	s.WaitConnected(t, wait)

	// Slash command.
	envID := s.SendSlashCommand(t, fakes.SlashCommand{UserID: "U0ALICE", Text: "CPC-alice-01"})
	ev := c.next(t, socketmode.EventTypeSlashCommand)
	cmd, ok := ev.Data.(slack.SlashCommand)
	if !ok {
		t.Fatalf("data %T", ev.Data)
	}
	if ev.Request.EnvelopeID != envID || !ev.Request.AcceptsResponsePayload || ev.Request.RetryAttempt != 0 {
		t.Fatalf("request = %+v", ev.Request)
	}
	if cmd.Command != "/reprovision" || cmd.Text != "CPC-alice-01" || cmd.UserID != "U0ALICE" || cmd.UserName != "alice" ||
		cmd.ChannelID != s.DMChannel("U0ALICE") || cmd.TeamID != fakes.TeamID || cmd.APIAppID != fakes.AppID ||
		!strings.HasPrefix(cmd.ResponseURL, s.URL()+"/hooks/") || cmd.TriggerID == "" {
		t.Fatalf("slash command = %+v", cmd)
	}
	if err := c.sm.Ack(*ev.Request, map[string]any{"response_type": "ephemeral", "text": "Working on it"}); err != nil {
		t.Fatal(err)
	}
	ack := s.WaitAck(t, envID, wait)
	if !strings.Contains(string(ack.Payload), "Working on it") || ack.SentAt.IsZero() || ack.AckedAt.Before(ack.SentAt) {
		t.Fatalf("ack = %+v", ack)
	}
	s.WaitFor(t, wait, "ack payload shown as ephemeral", func() bool {
		e := s.Ephemerals("U0ALICE")
		return len(e) == 1 && e[0].Text == "Working on it" && e[0].Via == "ack"
	})

	// users.info, conversations.open.
	u, err := c.api.GetUserInfo("U0ALICE")
	if err != nil || u.Profile.Email != "alice@example.com" || u.Name != "alice" {
		t.Fatalf("users.info = %+v, %v", u, err)
	}
	ch, _, _, err := c.api.OpenConversation(&slack.OpenConversationParameters{Users: []string{"U0APPROVER"}})
	if err != nil || ch.ID != s.DMChannel("U0APPROVER") {
		t.Fatalf("conversations.open = %+v, %v", ch, err)
	}

	// chat.postMessage to a user id lands in the DM.
	chID, ts, err := c.api.PostMessage("U0APPROVER", slack.MsgOptionText("Approval needed", false), slack.MsgOptionBlocks(approvalBlocks()...))
	if err != nil || chID != s.DMChannel("U0APPROVER") || ts == "" {
		t.Fatalf("postMessage = %q %q %v", chID, ts, err)
	}
	msgs := s.Messages(chID)
	if len(msgs) != 1 || msgs[0].TS != ts || msgs[0].Text != "Approval needed" {
		t.Fatalf("messages = %+v", msgs)
	}
	var stored []map[string]any
	if err := json.Unmarshal(msgs[0].Blocks, &stored); err != nil || len(stored) != 2 || stored[1]["block_id"] == "" || stored[1]["block_id"] == nil {
		t.Fatalf("stored blocks %s (%v)", msgs[0].Blocks, err)
	}
	actionsBlockID := stored[1]["block_id"].(string)
	_, ts2, err := c.api.PostMessage(chID, slack.MsgOptionText("second", false))
	if err != nil || ts2 <= ts {
		t.Fatalf("second ts %q after %q (%v)", ts2, ts, err)
	}

	// Block action on that message.
	envID = s.SendBlockAction(t, fakes.BlockAction{UserID: "U0APPROVER", ActionID: "approve", ChannelID: chID, MessageTS: ts})
	ev = c.next(t, socketmode.EventTypeInteractive)
	cb, ok := ev.Data.(slack.InteractionCallback)
	if !ok {
		t.Fatalf("data %T", ev.Data)
	}
	if cb.Type != slack.InteractionTypeBlockActions || len(cb.ActionCallback.BlockActions) != 1 {
		t.Fatalf("callback = %+v", cb)
	}
	act := cb.ActionCallback.BlockActions[0]
	if act.ActionID != "approve" || act.Value != "req-1" || act.BlockID != actionsBlockID || act.Text.Text != "Approve" || act.Type != "button" || act.ActionTs == "" {
		t.Fatalf("action = %+v", act)
	}
	if cb.User.ID != "U0APPROVER" || cb.Container.MessageTs != ts || cb.Container.ChannelID != chID || cb.Container.IsEphemeral ||
		cb.Channel.ID != chID || cb.Message.Timestamp != ts || len(cb.Message.Blocks.BlockSet) != 2 || cb.TriggerID == "" ||
		cb.ResponseURL == "" || cb.Team.ID != fakes.TeamID {
		t.Fatalf("callback = %+v", cb)
	}
	if err := c.sm.Ack(*ev.Request); err != nil {
		t.Fatal(err)
	}
	if a := s.WaitAck(t, envID, wait); a.Payload != nil {
		t.Fatalf("ack payload %s", a.Payload)
	}

	// Redelivery.
	s.Redeliver(t, envID)
	ev = c.next(t, socketmode.EventTypeInteractive)
	if ev.Request.EnvelopeID != envID || ev.Request.RetryAttempt != 1 || ev.Request.RetryReason != "timeout" {
		t.Fatalf("redelivered request = %+v", ev.Request)
	}
	_ = c.sm.Ack(*ev.Request)
	s.WaitAck(t, envID, wait)

	// views.open with the block action's trigger (JSON body + Bearer).
	modal := slack.ModalViewRequest{Type: slack.VTModal, Title: slack.NewTextBlockObject(slack.PlainTextType, "Reprovision", false, false),
		Blocks: slack.Blocks{BlockSet: []slack.Block{slack.NewSectionBlock(slack.NewTextBlockObject(slack.PlainTextType, "hi", false, false), nil, nil)}}}
	if v, err := c.api.OpenView(cb.TriggerID, modal); err != nil || v.View.ID == "" {
		t.Fatalf("views.open = %+v, %v", v, err)
	}
	if _, err := c.api.OpenView(cb.TriggerID, modal); err == nil || err.Error() != "exchanged_trigger_id" {
		t.Fatalf("views.open reuse err = %v", err)
	}
	if _, err := c.api.OpenView("1.2.bogus", modal); err == nil || err.Error() != "invalid_trigger_id" {
		t.Fatalf("views.open bogus err = %v", err)
	}
	home := slack.HomeTabViewRequest{Type: slack.VTHomeTab, Blocks: slack.Blocks{BlockSet: approvalBlocks()}}
	if v, err := c.api.PublishView("U0APPROVER", home, ""); err != nil || v.View.ID == "" {
		t.Fatalf("views.publish = %+v, %v", v, err)
	}

	// chat.update clears the buttons.
	if _, _, _, err := c.api.UpdateMessage(chID, ts, slack.MsgOptionText("Approved by approver", false), slack.MsgOptionBlocks()); err != nil {
		t.Fatal(err)
	}
	m, _ := s.Message(chID, ts)
	if m.Text != "Approved by approver" || string(m.Blocks) != "[]" || m.Updates != 1 {
		t.Fatalf("updated = %+v", m)
	}
	if _, _, _, err := c.api.UpdateMessage(chID, "1.000001", slack.MsgOptionText("x", false)); err == nil || err.Error() != "message_not_found" {
		t.Fatalf("update missing err = %v", err)
	}
	if _, _, _, err := c.api.UpdateMessage("U0APPROVER", ts, slack.MsgOptionText("x", false)); err == nil || err.Error() != "channel_not_found" {
		t.Fatalf("update by user id err = %v", err)
	}

	// chat.postEphemeral.
	ets, err := c.api.PostEphemeral(chID, "U0APPROVER", slack.MsgOptionText("only you", false))
	if err != nil || ets == "" {
		t.Fatalf("postEphemeral = %q %v", ets, err)
	}
	if e := s.Ephemerals("U0APPROVER"); len(e) != 1 || e[0].Text != "only you" || e[0].TS != ets || e[0].Channel != chID {
		t.Fatalf("ephemerals = %+v", e)
	}

	// response_url: replace_original on the source message; a plain post is
	// ephemeral.
	if err := slack.PostWebhook(cb.ResponseURL, &slack.WebhookMessage{Text: "Denied", ReplaceOriginal: true}); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Message(chID, ts); m.Text != "Denied" || m.Updates != 2 || m.Blocks != nil {
		t.Fatalf("after replace_original = %+v", m)
	}
	if err := slack.PostWebhook(s.ResponseURL("U0BOB"), &slack.WebhookMessage{Text: "hello bob"}); err != nil {
		t.Fatal(err)
	}
	if e := s.Ephemerals("U0BOB"); len(e) != 1 || e[0].Text != "hello bob" || e[0].Via != "response_url" {
		t.Fatalf("bob ephemerals = %+v", e)
	}
	resp, err := http.Post(s.ResponseURL("U0BOB"), "application/json", strings.NewReader(`{"text":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("response_url answered %d %q", resp.StatusCode, body)
	}
	if len(s.HookPosts()) != 3 {
		t.Fatalf("hook posts = %+v", s.HookPosts())
	}

	// Calls are recorded with their params.
	posts := s.Calls("chat.postMessage")
	if len(posts) != 2 || posts[0].Params["channel"] != "U0APPROVER" || !strings.Contains(posts[0].Params["blocks"], `"approve"`) {
		t.Fatalf("calls = %+v", posts)
	}
	if opens := s.Calls("apps.connections.open"); len(opens) != 1 {
		t.Fatalf("apps.connections.open calls = %d", len(opens))
	}
	if vo := s.Calls("views.open"); len(vo) != 3 || !strings.HasPrefix(vo[0].Params["view"], "{") || vo[1].Error != "exchanged_trigger_id" {
		t.Fatalf("views.open calls = %+v", vo)
	}

	// Disconnect: the client reconnects and keeps working.
	s.SendDisconnect(t)
	c.reconnected(t)
	s.WaitFor(t, wait, "reconnect", func() bool { return s.Connections() == 2 && s.LiveConnections() == 1 })
	envID = s.SendSlashCommand(t, fakes.SlashCommand{UserID: "U0ALICE", Text: "again"})
	ev = c.next(t, socketmode.EventTypeSlashCommand)
	if ev.Data.(slack.SlashCommand).Text != "again" {
		t.Fatalf("after reconnect: %+v", ev.Data)
	}
	_ = c.sm.Ack(*ev.Request)
	s.WaitAck(t, envID, wait)
	if n := len(s.Acks()); n != 4 {
		t.Fatalf("acks = %d", n)
	}
}

func TestSlackPingsKeepConnection(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	s.SetPingInterval(100 * time.Millisecond)
	c := startClient(t, s, socketmode.OptionPingInterval(500*time.Millisecond))
	c.next(t, socketmode.EventTypeConnected)
	s.WaitConnected(t, wait)
	time.Sleep(2 * time.Second)
	if n := s.Connections(); n != 1 {
		t.Fatalf("connections = %d: client timed out waiting for pings", n)
	}
}

func TestSlackNoPingsMeansReconnect(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	s.SetPingInterval(time.Hour)
	c := startClient(t, s, socketmode.OptionPingInterval(300*time.Millisecond))
	c.next(t, socketmode.EventTypeConnected)
	s.WaitFor(t, wait, "reconnect after missing pings", func() bool { return s.Connections() >= 2 })
}

func TestSlackEphemeralBlockAction(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	c := startClient(t, s)
	c.next(t, socketmode.EventTypeConnected)
	ts, err := c.api.PostEphemeral("C0OPS", "U0BOB", slack.MsgOptionText("confirm?", false), slack.MsgOptionBlocks(approvalBlocks()...))
	if err != nil {
		t.Fatal(err)
	}
	s.SendBlockAction(t, fakes.BlockAction{UserID: "U0BOB", ActionID: "deny", MessageTS: ts})
	ev := c.next(t, socketmode.EventTypeInteractive)
	cb := ev.Data.(slack.InteractionCallback)
	if !cb.Container.IsEphemeral || cb.Container.ChannelID != "C0OPS" || cb.Message.Timestamp != "" || cb.ActionCallback.BlockActions[0].Value != "req-1" {
		t.Fatalf("callback = %+v", cb)
	}
	_ = c.sm.Ack(*ev.Request)
	// replace_original on an ephemeral source replaces that ephemeral.
	if err := slack.PostWebhook(cb.ResponseURL, &slack.WebhookMessage{Text: "denied", ReplaceOriginal: true}); err != nil {
		t.Fatal(err)
	}
	if e := s.Ephemerals("U0BOB"); len(e) != 1 || e[0].Text != "denied" || e[0].Updates != 1 {
		t.Fatalf("ephemerals = %+v", e)
	}
	// A button the message does not have still gets a block_id.
	s.SendBlockAction(t, fakes.BlockAction{UserID: "U0BOB", ActionID: "ghost", Value: "v"})
	cb = c.next(t, socketmode.EventTypeInteractive).Data.(slack.InteractionCallback)
	if a := cb.ActionCallback.BlockActions; len(a) != 1 || a[0].BlockID == "" || a[0].Value != "v" || cb.Container.ChannelID != s.DMChannel("U0BOB") {
		t.Fatalf("ghost callback = %+v", cb)
	}
	// A generic events_api envelope.
	env := s.SendEvent(t, map[string]any{"type": "app_home_opened", "user": "U0BOB", "channel": "D0BOB", "tab": "home", "event_ts": "1.2"})
	ev = c.next(t, socketmode.EventTypeEventsAPI)
	if ev.Request.EnvelopeID != env || ev.Request.AcceptsResponsePayload {
		t.Fatalf("events_api request = %+v", ev.Request)
	}
}

func TestSlackWebAPIErrors(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	bad := slack.New("xoxb-wrong", slack.OptionAPIURL(s.APIURL()))
	if _, err := bad.AuthTest(); err == nil || err.Error() != "invalid_auth" {
		t.Fatalf("bad token err = %v", err)
	}
	app := slack.New(fakes.AppToken, slack.OptionAPIURL(s.APIURL()))
	if _, _, err := app.PostMessage("C1", slack.MsgOptionText("x", false)); err == nil || err.Error() != "not_allowed_token_type" {
		t.Fatalf("app token err = %v", err)
	}
	api := slack.New(fakes.BotToken, slack.OptionAPIURL(s.APIURL()))
	if r, err := api.AuthTest(); err != nil || r.UserID != fakes.BotUserID || r.TeamID != fakes.TeamID {
		t.Fatalf("auth.test = %+v %v", r, err)
	}
	if _, _, err := api.PostMessage("C1"); err == nil || err.Error() != "no_text" {
		t.Fatalf("no text err = %v", err)
	}
	long := strings.Repeat("x", 3001)
	_, _, err := api.PostMessage("C1", slack.MsgOptionBlocks(slack.NewSectionBlock(slack.NewTextBlockObject(slack.PlainTextType, long, false, false), nil, nil)))
	if err == nil || err.Error() != "invalid_blocks" {
		t.Fatalf("long section err = %v", err)
	}
	s.FailNext("chat.postMessage", "ratelimited")
	_, _, err = api.PostMessage("C1", slack.MsgOptionText("x", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != time.Second {
		t.Fatalf("ratelimited err = %v", err)
	}
	s.FailNext("chat.postMessage", "channel_not_found")
	if _, _, err := api.PostMessage("C1", slack.MsgOptionText("x", false)); err == nil || err.Error() != "channel_not_found" {
		t.Fatalf("injected err = %v", err)
	}
	if _, _, err := api.PostMessage("C1", slack.MsgOptionText("x", false)); err != nil {
		t.Fatal(err)
	}

	// Unknown method: HTTP 200 with unknown_method; JSON bodies work.
	req, _ := http.NewRequest(http.MethodPost, s.APIURL()+"foo.bar", strings.NewReader(`{"x":1}`))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Authorization", "Bearer "+fakes.BotToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != 200 || out["ok"] != false || out["error"] != "unknown_method" {
		t.Fatalf("unknown method: %d %v", resp.StatusCode, out)
	}
	req, _ = http.NewRequest(http.MethodPost, s.APIURL()+"chat.postMessage", strings.NewReader(`{"channel":"C9","text":"json","blocks":[{"type":"divider"}]}`))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Authorization", "Bearer "+fakes.BotToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out = nil
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if out["ok"] != true || out["channel"] != "C9" {
		t.Fatalf("json post: %v", out)
	}
	calls := s.Calls("chat.postMessage")
	last := calls[len(calls)-1]
	if last.Params["text"] != "json" || !strings.HasPrefix(last.Params["blocks"], `[{"type":"divider"`) {
		t.Fatalf("json params = %+v", last.Params)
	}
	if len(s.Calls("")) != 10 {
		t.Fatalf("all calls = %d", len(s.Calls("")))
	}
}

// ---- Entra ----

func form(t *testing.T, c *http.Client, u string, v url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := c.PostForm(u, v)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: %v", u, err)
	}
	return resp.StatusCode, out
}

func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEntraDeviceCodeFlow(t *testing.T) {
	t.Parallel()
	e := fakes.NewEntra(t)
	// Trust only the PEM written for child processes.
	pemPath := fakes.WriteCAFile(t, t.TempDir())
	pemBytes, err := os.ReadFile(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("bad PEM")
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if !strings.HasPrefix(e.AuthorityHost(), "https://127.0.0.1:") || !strings.HasSuffix(e.AuthorityHost(), "/") {
		t.Fatalf("authority host %q", e.AuthorityHost())
	}
	base := e.AuthorityHost() + fakes.TenantID

	resp, err := c.Get(base + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&cfg)
	resp.Body.Close()
	if cfg["issuer"] != base+"/v2.0" || cfg["token_endpoint"] != base+"/oauth2/v2.0/token" ||
		cfg["device_authorization_endpoint"] != base+"/oauth2/v2.0/devicecode" || cfg["authorization_endpoint"] == nil {
		t.Fatalf("openid config %v", cfg)
	}

	const scope = "https://graph.microsoft.com/CloudPC.ReadWrite.All openid offline_access profile"
	st, out := form(t, c, base+"/oauth2/v2.0/devicecode", url.Values{"client_id": {"nope"}, "scope": {scope}})
	if st != 400 || out["error"] != "unauthorized_client" {
		t.Fatalf("bad client: %d %v", st, out)
	}
	st, out = form(t, c, e.AuthorityHost()+"11111111-1111-1111-1111-111111111111/oauth2/v2.0/devicecode", url.Values{"client_id": {fakes.ClientID}, "scope": {scope}})
	if st != 400 || out["error"] != "invalid_tenant" {
		t.Fatalf("bad tenant: %d %v", st, out)
	}

	devcode := func() map[string]any {
		st, out := form(t, c, base+"/oauth2/v2.0/devicecode", url.Values{"client_id": {fakes.ClientID}, "scope": {scope}})
		if st != 200 {
			t.Fatalf("devicecode: %d %v", st, out)
		}
		return out
	}
	dc := devcode()
	uc, _ := dc["user_code"].(string)
	if uc == "" || dc["device_code"] == "" || dc["verification_uri"] != "https://microsoft.com/devicelogin" || dc["expires_in"] != 900.0 || dc["interval"] != 5.0 ||
		dc["message"] != "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code "+uc+" to authenticate." {
		t.Fatalf("devicecode = %v", dc)
	}
	got := e.WaitDeviceCode(t, wait)
	if got.UserCode != uc || got.DeviceCode != dc["device_code"] || got.Scope != scope {
		t.Fatalf("WaitDeviceCode = %+v", got)
	}

	poll := func(dcode string) (int, map[string]any) {
		return form(t, c, base+"/oauth2/v2.0/token", url.Values{
			"client_id": {fakes.ClientID}, "grant_type": {"device_code"}, "device_code": {dcode},
			"scope": {scope}, "client_info": {"1"}, "claims": {`{"access_token":{"xms_cc":{"values":["CP1"]}}}`},
		})
	}
	st, out = poll(got.DeviceCode)
	if st != 400 || out["error"] != "authorization_pending" || !strings.HasPrefix(out["error_description"].(string), "AADSTS70016:") ||
		out["error_codes"].([]any)[0] != 70016.0 || out["trace_id"] == "" || out["correlation_id"] == "" || out["timestamp"] == "" {
		t.Fatalf("pending = %d %v", st, out)
	}

	e.SignIn(uc, "approver@example.com")
	st, out = poll(got.DeviceCode)
	if st != 200 || out["token_type"] != "Bearer" || out["expires_in"] != 3600.0 || out["refresh_token"] == "" ||
		out["scope"] != "https://graph.microsoft.com/CloudPC.ReadWrite.All openid profile" {
		t.Fatalf("token = %d %v", st, out)
	}
	at := out["access_token"].(string)
	rt := out["refresh_token"].(string)
	if e.AccessTokens()[at] != "approver@example.com" {
		t.Fatalf("AccessTokens = %v", e.AccessTokens())
	}
	claims := jwtClaims(t, out["id_token"].(string))
	if claims["aud"] != fakes.ClientID || claims["tid"] != fakes.TenantID || claims["preferred_username"] != "approver@example.com" ||
		claims["iss"] != base+"/v2.0" || claims["oid"] == "" || claims["ver"] != "2.0" {
		t.Fatalf("id_token claims = %v", claims)
	}
	ci, err := base64.RawURLEncoding.DecodeString(out["client_info"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]string
	_ = json.Unmarshal(ci, &info)
	if info["uid"] != claims["oid"] || info["utid"] != fakes.TenantID {
		t.Fatalf("client_info = %v", info)
	}
	if st, out = poll(got.DeviceCode); st != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("second redeem = %d %v", st, out)
	}

	// Refresh keeps the user and mints a new access token.
	st, out2 := form(t, c, base+"/oauth2/v2.0/token", url.Values{
		"client_id": {fakes.ClientID}, "grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {scope},
	})
	if st != 200 || out2["access_token"] == at || e.AccessTokens()[out2["access_token"].(string)] != "approver@example.com" {
		t.Fatalf("refresh = %d %v", st, out2)
	}
	if u, ok := e.TokenUser(at); !ok || u != "approver@example.com" {
		t.Fatalf("TokenUser = %q %v", u, ok)
	}

	// Decline and expire.
	dc2 := devcode()
	e.Decline(e.WaitDeviceCode(t, wait).UserCode)
	if st, out = poll(dc2["device_code"].(string)); st != 400 || out["error"] != "authorization_declined" {
		t.Fatalf("declined = %d %v", st, out)
	}
	dc3 := devcode()
	e.Expire(e.WaitDeviceCode(t, wait).UserCode)
	if st, out = poll(dc3["device_code"].(string)); st != 400 || out["error"] != "expired_token" {
		t.Fatalf("expired = %d %v", st, out)
	}
	if st, out = poll("garbage"); st != 400 || out["error"] != "bad_verification_code" {
		t.Fatalf("garbage = %d %v", st, out)
	}
	if n := len(e.DeviceCodes()); n != 3 {
		t.Fatalf("device codes = %d", n)
	}
	if n := len(e.TokenRequests()); n != 7 {
		t.Fatalf("token requests = %d", n)
	}

	// Unknown path: 404, recorded.
	resp, err = c.Get(e.AuthorityHost() + "common/discovery/instance?api-version=1.1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || len(e.UnknownPaths()) != 1 {
		t.Fatalf("unknown path: %d %v", resp.StatusCode, e.UnknownPaths())
	}
}

// ---- Graph ----

type graphResp struct {
	status int
	header http.Header
	body   map[string]any
}

func graphDo(t *testing.T, c *http.Client, method, u, token, clientReqID string) graphResp {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if clientReqID != "" {
		req.Header.Set("client-request-id", clientReqID)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := graphResp{status: resp.StatusCode, header: resp.Header}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("%s %s: body %q: %v", method, u, b, err)
		}
	}
	return r
}

func graphErr(t *testing.T, r graphResp) (code string, inner map[string]any) {
	t.Helper()
	e, _ := r.body["error"].(map[string]any)
	if e == nil {
		t.Fatalf("no error object: %v", r.body)
	}
	inner, _ = e["innerError"].(map[string]any)
	return e["code"].(string), inner
}

func TestGraphReprovision(t *testing.T) {
	t.Parallel()
	g := fakes.NewGraph(t)
	c := fakes.TLSClient()
	if !strings.HasPrefix(g.URL(), "https://127.0.0.1:") || !strings.HasSuffix(g.URL(), "/beta") {
		t.Fatalf("URL %q", g.URL())
	}
	rp := g.URL() + "/deviceManagement/virtualEndpoint/cloudPCs/pc-1/reprovision"

	r := graphDo(t, c, http.MethodPost, rp, "", "cr-1")
	code, inner := graphErr(t, r)
	if r.status != 401 || code != "InvalidAuthenticationToken" || r.header.Get("request-id") == "" ||
		inner["request-id"] != r.header.Get("request-id") || inner["client-request-id"] != "cr-1" ||
		r.header.Get("client-request-id") != "cr-1" || r.header.Get("WWW-Authenticate") == "" || inner["date"] == "" {
		t.Fatalf("no auth: %d %v %v", r.status, r.header, r.body)
	}

	r = graphDo(t, c, http.MethodPost, rp, "tok", "cr-2")
	if r.status != 204 || r.header.Get("request-id") == "" || r.header.Get("client-request-id") != "cr-2" ||
		r.header.Get("x-ms-ags-diagnostic") == "" || r.header.Get("Date") == "" {
		t.Fatalf("reprovision: %d %v", r.status, r.header)
	}
	// No client-request-id sent: Graph uses the request-id.
	r = graphDo(t, c, http.MethodPost, rp, "tok", "")
	if r.status != 204 || r.header.Get("client-request-id") != r.header.Get("request-id") {
		t.Fatalf("no client-request-id: %v", r.header)
	}

	g.QueueReprovision("pc-1",
		fakes.Throttled(429, 2),
		fakes.GraphError(409, "Conflict", "busy"),
		fakes.ClaimsChallenge(401),
		fakes.Response{Status: 204, Delay: 2 * time.Second},
	)
	r = graphDo(t, c, http.MethodPost, rp, "tok", "")
	if code, _ := graphErr(t, r); r.status != 429 || r.header.Get("Retry-After") != "2" || code != "TooManyRequests" {
		t.Fatalf("throttled: %d %v %v", r.status, r.header, r.body)
	}
	r = graphDo(t, c, http.MethodPost, rp, "tok", "")
	if code, inner := graphErr(t, r); r.status != 409 || code != "Conflict" || inner["request-id"] != r.header.Get("request-id") ||
		!strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("conflict: %d %v %v", r.status, r.header, r.body)
	}
	r = graphDo(t, c, http.MethodPost, rp, "tok", "")
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_claims"`) {
		t.Fatalf("claims challenge: %d %v", r.status, r.header)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, rp, nil)
	req.Header.Set("Authorization", "Bearer tok")
	if _, err := c.Do(req); err == nil {
		t.Fatal("delayed request did not time out")
	}
	cancel()
	g.WaitFor(t, wait, "canceled request recorded", func() bool {
		rs := g.Requests()
		return rs[len(rs)-1].Canceled
	})
	r = graphDo(t, c, http.MethodPost, rp, "tok", "")
	if r.status != 204 {
		t.Fatalf("after queue: %d", r.status)
	}

	r = graphDo(t, c, http.MethodGet, g.URL()+"/deviceManagement/nope", "tok", "")
	if code, _ := graphErr(t, r); r.status != 400 || code != "BadRequest" {
		t.Fatalf("unknown segment: %d %v", r.status, r.body)
	}

	reqs := g.Requests()
	if len(reqs) != 9 || reqs[1].Method != "POST" || reqs[1].Path != "/beta/deviceManagement/virtualEndpoint/cloudPCs/pc-1/reprovision" ||
		reqs[1].Authorization != "Bearer tok" || reqs[1].ClientRequestID != "cr-2" || reqs[1].Status != 204 || reqs[1].RequestID == "" {
		t.Fatalf("requests = %+v", reqs)
	}
}

func TestGraphCloudPCsAndTokens(t *testing.T) {
	t.Parallel()
	e := fakes.NewEntra(t)
	g := fakes.NewGraph(t)
	g.RequireTokensFrom(e)
	c := fakes.TLSClient()
	g.AddCloudPC(fakes.CloudPC{ID: "pc-1", DisplayName: "CPC-alice-01", UserPrincipalName: "alice@example.com", ManagedDeviceName: "CPC-alice-X1"})
	g.AddCloudPC(fakes.CloudPC{ID: "pc-2", DisplayName: "CPC-bob-01", UserPrincipalName: "bob@example.com"})

	// Get a real token from the Entra fake.
	base := e.AuthorityHost() + fakes.TenantID + "/oauth2/v2.0/"
	_, dc := form(t, c, base+"devicecode", url.Values{"client_id": {fakes.ClientID}, "scope": {"https://graph.microsoft.com/.default"}})
	e.SignIn(dc["user_code"].(string), "approver@example.com")
	_, tok := form(t, c, base+"token", url.Values{"client_id": {fakes.ClientID}, "grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {dc["device_code"].(string)}})
	at := tok["access_token"].(string)

	pcs := g.URL() + "/deviceManagement/virtualEndpoint/cloudPCs"
	if r := graphDo(t, c, http.MethodGet, pcs+"/pc-1", "forged", ""); r.status != 401 {
		t.Fatalf("forged token: %d", r.status)
	}
	r := graphDo(t, c, http.MethodGet, pcs+"/pc-1?$select=id,displayName,status", at, "")
	if r.status != 200 || r.body["displayName"] != "CPC-alice-01" || r.body["status"] != "provisioned" || r.body["userPrincipalName"] != nil ||
		!strings.HasPrefix(r.header.Get("Content-Type"), "application/json;odata.metadata=minimal") {
		t.Fatalf("get pc: %d %v", r.status, r.body)
	}
	r = graphDo(t, c, http.MethodGet, pcs+"?$filter="+url.QueryEscape("userPrincipalName eq 'bob@example.com'"), at, "")
	if v := r.body["value"].([]any); r.status != 200 || len(v) != 1 || v[0].(map[string]any)["id"] != "pc-2" {
		t.Fatalf("list: %d %v", r.status, r.body)
	}
	if r = graphDo(t, c, http.MethodPost, pcs+"/pc-9/reprovision", at, ""); r.status != 404 {
		t.Fatalf("unknown pc: %d", r.status)
	}
	if r = graphDo(t, c, http.MethodPost, pcs+"/pc-1/reprovision", at, ""); r.status != 204 {
		t.Fatalf("reprovision: %d", r.status)
	}
	if pc, _ := g.CloudPC("pc-1"); pc.Status != "provisioning" {
		t.Fatalf("status after reprovision = %q", pc.Status)
	}
	r = graphDo(t, c, http.MethodGet, pcs+"/pc-1/retrieveCloudPcRemoteActionResults", at, "")
	if v := r.body["value"].([]any); len(v) != 1 || v[0].(map[string]any)["actionState"] != "active" || v[0].(map[string]any)["actionName"] != "Reprovision" {
		t.Fatalf("remote actions: %v", r.body)
	}
	g.SetCloudPCStatus("pc-1", "provisioned")
	r = graphDo(t, c, http.MethodGet, pcs+"/pc-1/retrieveCloudPcRemoteActionResults", at, "")
	if v := r.body["value"].([]any); v[0].(map[string]any)["actionState"] != "done" {
		t.Fatalf("remote actions after done: %v", r.body)
	}

	// Revoking the user's sessions turns its tokens into a claims challenge.
	e.Revoke("approver@example.com")
	r = graphDo(t, c, http.MethodGet, pcs+"/pc-1", at, "")
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), "insufficient_claims") {
		t.Fatalf("revoked: %d %v", r.status, r.header)
	}
}

func TestCAPEM(t *testing.T) {
	t.Parallel()
	if !strings.HasPrefix(string(fakes.CAPEM()), "-----BEGIN CERTIFICATE-----") {
		t.Fatal("CAPEM")
	}
}

func TestGraphListPagingFilterAndStatusDetail(t *testing.T) {
	t.Parallel()
	g := fakes.NewGraph(t)
	c := fakes.TLSClient()
	pcs := g.URL() + "/deviceManagement/virtualEndpoint/cloudPCs"
	for i, upn := range []string{"a@x.example", "o'brien@x.example", "a@x.example", "b@x.example", "a@x.example"} {
		g.AddCloudPC(fakes.CloudPC{ID: "PC-" + string(rune('1'+i)), DisplayName: "CPC-" + string(rune('1'+i)), UserPrincipalName: upn})
	}
	filterURL := func(f string) string {
		return pcs + "?$filter=" + strings.ReplaceAll(url.QueryEscape(f), "+", "%20") + "&$select=id,userPrincipalName"
	}
	ids := func(r graphResp) (out []string) {
		t.Helper()
		v, ok := r.body["value"].([]any)
		if r.status != 200 || !ok {
			t.Fatalf("list: %d %v", r.status, r.body)
		}
		for _, it := range v {
			out = append(out, it.(map[string]any)["id"].(string))
		}
		return out
	}

	// Quote escaping, and "or"/"and" with a quoted " or " inside a literal.
	if got := ids(graphDo(t, c, http.MethodGet, filterURL("userPrincipalName eq 'o''brien@x.example'"), "tok", "")); strings.Join(got, ",") != "PC-2" {
		t.Errorf("quote filter: %v", got)
	}
	if got := ids(graphDo(t, c, http.MethodGet, filterURL("displayName eq 'CPC-4' or userPrincipalName eq 'o''brien@x.example'"), "tok", "")); strings.Join(got, ",") != "PC-2,PC-4" {
		t.Errorf("or filter: %v", got)
	}
	if got := ids(graphDo(t, c, http.MethodGet, filterURL("displayName eq 'CPC-1' and userPrincipalName eq 'a@x.example' or displayName eq 'x or y'"), "tok", "")); strings.Join(got, ",") != "PC-1" {
		t.Errorf("and/or filter: %v", got)
	}
	for _, bad := range []string{"displayName eq 'x", "displayName ne 'x'", "displayName eq 'x' or", "displayName eq 'x' xor displayName eq 'y'", "displayName eq x"} {
		if r := graphDo(t, c, http.MethodGet, filterURL(bad), "tok", ""); r.status != 400 {
			t.Errorf("filter %q: status %d, want 400", bad, r.status)
		}
	}

	// Paging: 3 matches, 2 per page.
	g.SetPageSize(2)
	r := graphDo(t, c, http.MethodGet, filterURL("userPrincipalName eq 'a@x.example'"), "tok", "")
	next, _ := r.body["@odata.nextLink"].(string)
	if got := ids(r); strings.Join(got, ",") != "PC-1,PC-3" || !strings.HasPrefix(next, pcs+"?") {
		t.Fatalf("page 1: %v, nextLink %q", got, next)
	}
	r = graphDo(t, c, http.MethodGet, next, "tok", "")
	if got := ids(r); strings.Join(got, ",") != "PC-5" || r.body["@odata.nextLink"] != nil {
		t.Fatalf("page 2: %v, nextLink %v", got, r.body["@odata.nextLink"])
	}
	if v := r.body["value"].([]any)[0].(map[string]any); v["userPrincipalName"] != "a@x.example" || v["displayName"] != nil {
		t.Errorf("page 2 lost $select: %v", v)
	}
	if r := graphDo(t, c, http.MethodGet, pcs+"?$skiptoken=bogus", "tok", ""); r.status != 400 {
		t.Errorf("bad skiptoken: %d", r.status)
	}
	g.SetPageSize(0)
	if got := ids(graphDo(t, c, http.MethodGet, pcs, "tok", "")); len(got) != 5 {
		t.Errorf("unpaged: %v", got)
	}

	// statusDetail, the deprecated statusDetails, evolvable enum members, case-insensitive ids.
	g.SetCloudPCStatus("pc-1", "movingRegion")
	g.SetCloudPCStatusDetail("pc-1", "internalServerError", "There was an error.")
	r = graphDo(t, c, http.MethodGet, pcs+"/pc-1", "tok", "")
	d, _ := r.body["statusDetail"].(map[string]any)
	if r.status != 200 || r.body["id"] != "PC-1" || r.body["status"] != "unknownFutureValue" || d["code"] != "internalServerError" ||
		d["message"] != "There was an error." || r.body["statusDetails"] != nil {
		t.Fatalf("get: %d %v", r.status, r.body)
	}
	req, _ := http.NewRequest(http.MethodGet, pcs+"/Pc-1?$select=id,status", nil)
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Prefer", "include-unknown-enum-members")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if body["status"] != "movingRegion" {
		t.Errorf("with Prefer: %v", body)
	}
	if pc, ok := g.CloudPC("pc-1"); !ok || pc.StatusDetailCode != "internalServerError" {
		t.Errorf("CloudPC(pc-1) = %+v, %v", pc, ok)
	}
	if r := graphDo(t, c, http.MethodGet, pcs+"/pc-2", "tok", ""); r.body["statusDetail"] != nil {
		t.Errorf("no detail: %v", r.body["statusDetail"])
	}
	// A failed reprovision's remote action carries the detail.
	if r := graphDo(t, c, http.MethodPost, pcs+"/pc-1/reprovision", "tok", ""); r.status != 204 {
		t.Fatalf("reprovision: %d", r.status)
	}
	g.SetCloudPCStatus("PC-1", "failed")
	r = graphDo(t, c, http.MethodGet, pcs+"/pc-1/retrieveCloudPcRemoteActionResults", "tok", "")
	a := r.body["value"].([]any)[0].(map[string]any)
	if a["actionState"] != "failed" || a["cloudPcId"] != "PC-1" || a["statusDetail"].(map[string]any)["code"] != "internalServerError" {
		t.Errorf("remote action: %v", a)
	}
}

// Like Graph, $select of a property cloudPC does not have is a 400, so a
// typo in the bot's $select cannot pass unnoticed.
func TestGraphSelectUnknownPropertyIsBadRequest(t *testing.T) {
	t.Parallel()
	g := fakes.NewGraph(t)
	g.AddCloudPC(fakes.CloudPC{ID: "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b", ManagedDeviceName: "CPC-a", Status: "provisioned"})
	c := fakes.TLSClient()
	base := g.URL() + "/deviceManagement/virtualEndpoint/cloudPCs"
	if r := graphDo(t, c, http.MethodGet, base+"/4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b?$select=id,managedDeviceName,status", "tok", ""); r.status != 200 {
		t.Fatalf("known properties: %d %s", r.status, r.body)
	}
	for _, u := range []string{
		base + "/4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b?$select=id,statusDetailz",
		base + "?$filter=managedDeviceName%20eq%20'CPC-a'&$select=id,nope",
	} {
		r := graphDo(t, c, http.MethodGet, u, "tok", "")
		if code, _ := graphErr(t, r); r.status != 400 || code != "BadRequest" {
			t.Errorf("%s: %d %s, want 400 BadRequest", u, r.status, code)
		}
	}
}
