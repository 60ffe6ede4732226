package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/pgtest"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite/sqlitetest"
	"github.com/reprovision-bot/reprovision-bot/fakes"
	"github.com/reprovision-bot/reprovision-bot/internal/testparallel"
)

// The end-to-end tests run the real run() in-process against the fakes.
// Entra and Graph are TLS servers; the bot trusts them the standard Go way,
// through SSL_CERT_FILE, which must be set before the first TLS handshake.
func TestMain(m *testing.M) {
	// pgtest.Main exits when the tests end, so the CA file is one per
	// process in the temporary directory, and those of earlier runs go.
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), "reprovision-e2e-ca-*.pem"))
	for _, f := range old {
		if info, err := os.Stat(f); err == nil && time.Since(info.ModTime()) > time.Hour {
			os.Remove(f)
		}
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("reprovision-e2e-ca-%d.pem", os.Getpid()))
	if err := os.WriteFile(path, fakes.CAPEM(), 0o600); err != nil {
		panic(err)
	}
	os.Setenv("SSL_CERT_FILE", path)
	// The end-to-end tests mostly wait on the fakes, timers and retries:
	// go test's default (GOMAXPROCS at once) left the CPUs idle. On 2 CPUs
	// the package took 66 s under -race, 33 s with 8 at once (4 per CPU;
	// more only tightens their deadlines); without -race 50 s with 8 at
	// once, 39 s with 16.
	testparallel.Raise(8, 4)
	// pgtest stops the PostgreSQL cluster it may start for the tests that
	// run on both stores, then exits with the tests' code.
	pgtest.Main(m)
}

const (
	approverID  = "U0APPROVER"
	requesterID = "U0REQUESTER"
	strangerID  = "U0STRANGER"
	channelID   = "C0HELPDESK"
	cloudPCID   = "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
	deviceName  = "CPC-alice-8X2K1"
	userUPN     = "alice@contoso.example"
	approverUPN = "approver@contoso.example"
	reason      = "profile corrupt after the update"
	// wait bounds every wait for the bot; generous for a loaded 2-core CI box.
	wait = 15 * time.Second
)

// harness is one bot process (run) wired to fresh fakes.
type harness struct {
	t      testing.TB
	slack  *fakes.Slack
	entra  *fakes.Entra
	graph  *fakes.Graph
	env    map[string]string
	stderr *syncBuffer
	// slackPace, when set, paces the bot's Slack calls that many times
	// faster than Slack's limits (slackPaceKey); 0 keeps Slack's.
	slackPace float64

	cancel context.CancelFunc
	done   chan error

	seenPrompts map[string]bool
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{
		t:      t,
		slack:  fakes.NewSlack(t),
		entra:  fakes.NewEntra(t),
		graph:  fakes.NewGraph(t),
		stderr: &syncBuffer{},

		seenPrompts: map[string]bool{},
	}
	h.env = map[string]string{
		"SLACK_APP_TOKEN":      fakes.AppToken,
		"SLACK_BOT_TOKEN":      fakes.BotToken,
		"SLACK_API_URL":        h.slack.APIURL(),
		"REPROVISION_APPROVER": approverID,
		"AZURE_TENANT_ID":      fakes.TenantID,
		"AZURE_CLIENT_ID":      fakes.ClientID,
		"AZURE_AUTHORITY_HOST": h.entra.AuthorityHost(),
		"GRAPH_URL":            h.graph.URL(),
		// A store file at the current schema (sqlitetest: no migrations per
		// test); a test of creating one sets its own path.
		"REPROVISION_DB":            sqlitetest.Path(t),
		"REPROVISION_APPROVER_UPNS": approverID + ":" + approverUPN,
		// Probes and metrics on a free loopback port (h.opsURL finds it).
		"REPROVISION_HTTP_ADDR": "127.0.0.1:0",
	}
	h.graph.AddCloudPC(fakes.CloudPC{
		ID: cloudPCID, DisplayName: "Alice's Cloud PC", UserPrincipalName: userUPN, ManagedDeviceName: deviceName,
		ServicePlanName: "Cloud PC Enterprise 2vCPU/8GB/128GB", ProvisioningPolicyName: "Standard", Status: "provisioned",
	})
	// start() registers the bot's stop; this runs after it.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bot log:\n%s", h.stderr.String())
		}
	})
	return h
}

// start runs the bot and waits until it is connected to Socket Mode.
func (h *harness) start() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if h.slackPace > 0 {
		ctx = context.WithValue(ctx, slackPaceKey{}, h.slackPace)
	}
	h.cancel = cancel
	h.done = make(chan error, 1)
	// Stopped by a cleanup of start's own, registered after whatever the
	// test set up before it (pgtest.URL's DROP DATABASE among them), so it
	// runs before those: a bot still running reconnects faster than DROP
	// DATABASE … WITH (FORCE) ends its sessions, and the DROP then waited
	// out its retries (25 s) and failed.
	h.t.Cleanup(func() {
		if h.cancel != nil {
			h.stop()
		}
	})
	connections := h.slack.Connections()
	go func() { h.done <- run(ctx, func(k string) string { return h.env[k] }, h.stderr) }()
	h.slack.WaitFor(h.t, wait, "the bot connects to Socket Mode", func() bool { return h.slack.Connections() > connections })
	h.slack.WaitConnected(h.t, wait)
}

// stop cancels run (as SIGTERM does) and returns how long it took to return.
func (h *harness) stop() (time.Duration, error) {
	h.t.Helper()
	begin := time.Now()
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		return time.Since(begin), err
	case <-time.After(30 * time.Second):
		h.t.Fatal("run did not return within 30 s of cancel")
		return 0, nil
	}
}

// request types /reprovision as the requester and returns the ack.
func (h *harness) request(user, text string) fakes.Ack {
	h.t.Helper()
	env := h.slack.SendSlashCommand(h.t, fakes.SlashCommand{UserID: user, ChannelID: channelID, Command: "/reprovision", Text: text})
	return h.slack.WaitAck(h.t, env, wait)
}

// ask makes a request as the requester and returns its approval prompt.
func (h *harness) ask(text string) fakes.Message {
	h.t.Helper()
	h.request(requesterID, text)
	return h.prompt()
}

// ackText is the ephemeral text the bot put in a slash-command ack.
func ackText(t testing.TB, a fakes.Ack) string {
	t.Helper()
	var p struct {
		ResponseType string `json:"response_type"`
		Text         string `json:"text"`
	}
	if err := json.Unmarshal(a.Payload, &p); err != nil {
		t.Fatalf("ack payload %s: %v", a.Payload, err)
	}
	if p.ResponseType != "ephemeral" {
		t.Errorf("ack response_type = %q, want ephemeral", p.ResponseType)
	}
	return p.Text
}

// prompt waits for the approval prompt in the approver's DM and returns it.
// Each call returns a prompt not returned before.
func (h *harness) prompt() fakes.Message {
	h.t.Helper()
	var m fakes.Message
	seen := h.seenPrompts
	h.slack.WaitFor(h.t, wait, "the approval prompt reaches the approver", func() bool {
		for _, msg := range h.slack.Messages(h.slack.DMChannel(approverID)) {
			if strings.Contains(msg.Text, "Reprovision request") && !seen[msg.TS] {
				m = msg
				return true
			}
		}
		return false
	})
	h.seenPrompts[m.TS] = true
	return m
}

// promptNow is the prompt message as it is now.
func (h *harness) promptNow(ts string) fakes.Message {
	h.t.Helper()
	for _, m := range h.slack.Messages(h.slack.DMChannel(approverID)) {
		if m.TS == ts {
			return m
		}
	}
	h.t.Fatalf("no message %s in the approver's DM", ts)
	return fakes.Message{}
}

// waitPrompt waits until the prompt's blocks contain want.
func (h *harness) waitPrompt(ts, want string) fakes.Message {
	h.t.Helper()
	h.slack.WaitFor(h.t, wait, "the prompt shows "+want, func() bool {
		return strings.Contains(blocks(h.promptNow(ts)), want)
	})
	return h.promptNow(ts)
}

// blocks is a message's Block Kit JSON with Slack's <, >, & unescaped, so
// tests can look for mentions such as <@U…>.
func blocks(m fakes.Message) string {
	return strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(m.Blocks))
}

// ref is the request reference on a prompt.
func ref(t testing.TB, m fakes.Message) string {
	t.Helper()
	i := strings.Index(m.Text, "R-")
	if i < 0 || len(m.Text) < i+8 {
		t.Fatalf("no reference in %q", m.Text)
	}
	return m.Text[i : i+8]
}

// click presses a prompt button as user.
func (h *harness) click(user, action string, prompt fakes.Message) string {
	h.t.Helper()
	r := ref(h.t, prompt)
	env := h.slack.SendBlockAction(h.t, fakes.BlockAction{
		UserID: user, ActionID: action, BlockID: "decision:" + r, Value: r,
		ChannelID: prompt.Channel, MessageTS: prompt.TS,
	})
	h.slack.WaitAck(h.t, env, wait)
	return env
}

// dmsTo is every text posted to user's DM with the app (post order).
func (h *harness) dmsTo(user string) []string {
	var out []string
	for _, m := range h.slack.Messages(h.slack.DMChannel(user)) {
		out = append(out, m.Text+" "+blocks(m))
	}
	return out
}

// waitDM waits for a DM to user containing want.
func (h *harness) waitDM(user, want string) {
	h.t.Helper()
	h.slack.WaitFor(h.t, wait, fmt.Sprintf("a DM to %s containing %q", user, want), func() bool {
		for _, m := range h.dmsTo(user) {
			if strings.Contains(m, want) {
				return true
			}
		}
		return false
	})
}

// waitEphemeral waits for a private reply to user containing want.
func (h *harness) waitEphemeral(user, want string) {
	h.t.Helper()
	h.slack.WaitFor(h.t, wait, fmt.Sprintf("an ephemeral reply to %s containing %q", user, want), func() bool {
		for _, m := range h.slack.Ephemerals(user) {
			if strings.Contains(m.Text, want) {
				return true
			}
		}
		return false
	})
}

// confirm waits for the final confirmation in the approver's DM (shown
// after a fresh sign-in) and clicks action on it (confirm or abort).
func (h *harness) confirm(prompt fakes.Message, action string) fakes.Message {
	h.t.Helper()
	r := ref(h.t, prompt)
	m := h.waitDMMessage(approverID, `"block_id":"confirm:`+r+`"`)
	env := h.slack.SendBlockAction(h.t, fakes.BlockAction{
		UserID: approverID, ActionID: action, BlockID: "confirm:" + r, Value: r, ChannelID: m.Channel, MessageTS: m.TS,
	})
	h.slack.WaitAck(h.t, env, wait)
	return m
}

// waitDMMessage waits for a message in user's DM whose text or blocks
// contain want, and returns it.
func (h *harness) waitDMMessage(user, want string) fakes.Message {
	h.t.Helper()
	var found fakes.Message
	h.slack.WaitFor(h.t, wait, fmt.Sprintf("a DM to %s containing %q", user, want), func() bool {
		for _, m := range h.slack.Messages(h.slack.DMChannel(user)) {
			if strings.Contains(m.Text+" "+blocks(m), want) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// submitForm fills the reason input of user's open modal callbackID and
// submits it, returning the ack.
func (h *harness) submitForm(user, callbackID, text string) fakes.Ack {
	h.t.Helper()
	view := h.slack.WaitView(h.t, user, callbackID, wait)
	env := h.slack.SendViewSubmission(h.t, fakes.ViewSubmission{
		UserID: user, ViewID: view.ID, Values: map[string]map[string]string{"reason": {"reason_input": text}},
	})
	return h.slack.WaitAck(h.t, env, wait)
}

// deny clicks Deny as user and gives why in the form.
func (h *harness) deny(user string, prompt fakes.Message, why string) {
	h.t.Helper()
	h.click(user, "deny", prompt)
	h.submitForm(user, "deny_reason", why)
}

// approveWithSignIn is the approver's whole path without a valid sign-in:
// Approve, sign in, confirm.
func (h *harness) approveWithSignIn(prompt fakes.Message) {
	h.t.Helper()
	h.click(approverID, "approve", prompt)
	h.signIn(approverUPN)
	h.confirm(prompt, "confirm")
}

// signIn waits for the device code, checks it reached the approver, and
// completes the sign-in as upn.
func (h *harness) signIn(upn string) fakes.DeviceCodeRequest {
	h.t.Helper()
	dc := h.entra.WaitDeviceCode(h.t, wait)
	h.waitDM(approverID, dc.UserCode)
	h.entra.SignIn(dc.UserCode, upn)
	return dc
}

// reprovisionPOSTs are the reprovision calls Graph has seen.
func (h *harness) reprovisionPOSTs() []fakes.GraphRequest {
	var out []fakes.GraphRequest
	for _, r := range h.graph.Requests() {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/reprovision") {
			out = append(out, r)
		}
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
