package fakes

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

// connectWait bounds how long a Send* call waits for a Socket Mode client.
const connectWait = 10 * time.Second

// Ack is one acknowledgement received over Socket Mode.
type Ack struct {
	EnvelopeID string
	// Payload is the ack's "payload" (nil when the ack carried none).
	Payload json.RawMessage
	// SentAt is when the (re)delivery this ack answers was sent; zero for
	// an unknown envelope id.
	SentAt, AckedAt time.Time
	// WrittenAt is when the frame of the latest delivery of the envelope
	// was written to the connection (SentAt is when it was queued for the
	// connection's writer); zero if unknown. AckedAt − WrittenAt is the
	// time the client took, without the fake's own queueing.
	WrittenAt time.Time
}

// SlashCommand is a slash command typed by a user.
type SlashCommand struct {
	UserID, ChannelID, Command, Text, TriggerID string
}

// BlockAction is a click on a button.
type BlockAction struct {
	UserID, ActionID, BlockID, Value string
	// ChannelID and MessageTS name the message the button was on.
	ChannelID, MessageTS string
	// ViewID, when set, names the view (Home tab or modal) the button is on
	// instead of a message; ChannelID and MessageTS must then be empty.
	ViewID string
}

type envelope struct {
	id, typ     string
	payload     json.RawMessage
	accepts     bool
	retry       int
	retryReason string
	sentAt      []time.Time
	// for slash commands: where the ack payload is shown
	respond   *hook
	responded bool
	// viewID is the view a view_submission envelope submits; its ack
	// decides what happens to that view.
	viewID string
	// written is when the latest delivery's frame was written to the
	// connection (UnixNano; 0: not yet). Set by the writer without the lock.
	written atomic.Int64
}

type smState struct {
	tickets      map[string]time.Time
	conns        []*wsConn // live, oldest first
	total        int
	pingInterval time.Duration
	envs         map[string]*envelope
	order        []*envelope
	acks         []Ack
	ackTaken     []bool
	wg           sync.WaitGroup
}

func (sm *smState) init() {
	sm.tickets = map[string]time.Time{}
	sm.envs = map[string]*envelope{}
	sm.pingInterval = 5 * time.Second
}

type wsOut struct {
	data       []byte
	closeAfter bool
	// env, if set, is the envelope data delivers: the writer stamps it.
	env *envelope
}

type wsConn struct {
	id   int
	c    *websocket.Conn
	out  chan wsOut
	done chan struct{}
	once sync.Once
}

func (w *wsConn) shutdown() {
	w.once.Do(func() {
		close(w.done)
		_ = w.c.Close()
	})
}

var upgrader = websocket.Upgrader{
	CheckOrigin: func(*http.Request) bool { return true },
}

// SetPingInterval sets how often the server pings each connection (default
// 5s; slack-go reconnects after 30s without a ping). Applies to new
// connections.
func (s *Slack) SetPingInterval(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sm.pingInterval = d
}

func (s *Slack) appsConnectionsOpen(_ map[string]string, r *http.Request) (map[string]any, *apiErr) {
	ticket := uuid.NewString()
	s.sm.tickets[ticket] = time.Now()
	host := strings.TrimPrefix(s.srv.URL, "http://")
	return map[string]any{"url": "ws://" + host + "/link/?ticket=" + ticket + "&app_id=" + AppID}, nil
}

func (s *Slack) serveLink(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	_, ok := s.sm.tickets[ticket]
	delete(s.sm.tickets, ticket)
	closed := s.closed
	s.mu.Unlock()
	if !ok || closed {
		http.Error(w, "invalid or used ticket", http.StatusUnauthorized)
		return
	}
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c.SetReadLimit(1 << 20)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = c.Close()
		return
	}
	s.sm.total++
	conn := &wsConn{id: s.sm.total, c: c, out: make(chan wsOut, 256), done: make(chan struct{})}
	s.sm.conns = append(s.sm.conns, conn)
	hello := map[string]any{
		"type":            "hello",
		"num_connections": len(s.sm.conns),
		"debug_info": map[string]any{
			"host":                        fmt.Sprintf("applink-fake-%d", conn.id),
			"build_number":                118,
			"approximate_connection_time": 18060,
		},
		"connection_info": map[string]any{"app_id": AppID},
	}
	conn.out <- wsOut{data: mustJSON(hello)}
	interval := s.sm.pingInterval
	s.sm.wg.Add(2)
	s.changed.broadcast()
	s.mu.Unlock()

	go s.writeLoop(conn, interval)
	defer s.sm.wg.Done()
	defer s.dropConn(conn)
	for {
		typ, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		if typ == websocket.TextMessage {
			s.recordAck(data)
		}
	}
}

func (s *Slack) dropConn(conn *wsConn) {
	conn.shutdown()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.sm.conns {
		if c == conn {
			s.sm.conns = append(s.sm.conns[:i:i], s.sm.conns[i+1:]...)
			break
		}
	}
	s.changed.broadcast()
}

// writeLoop is the only writer of a connection.
func (s *Slack) writeLoop(conn *wsConn, interval time.Duration) {
	defer s.sm.wg.Done()
	if interval <= 0 {
		interval = 5 * time.Second
	}
	ping := time.NewTicker(interval)
	defer ping.Stop()
	n := 0
	for {
		select {
		case m := <-conn.out:
			_ = conn.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := conn.c.WriteMessage(websocket.TextMessage, m.data); err != nil {
				conn.shutdown()
				return
			}
			if m.env != nil {
				m.env.written.Store(time.Now().UnixNano())
			}
			if m.closeAfter {
				_ = conn.c.WriteControl(websocket.CloseMessage,
					websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				conn.shutdown()
				return
			}
		case <-ping.C:
			n++
			if err := conn.c.WriteControl(websocket.PingMessage, fmt.Appendf(nil, "ping-%d", n), time.Now().Add(10*time.Second)); err != nil {
				conn.shutdown()
				return
			}
		case <-conn.done:
			return
		}
	}
}

func (s *Slack) recordAck(data []byte) {
	var a struct {
		EnvelopeID string          `json:"envelope_id"`
		Payload    json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(data, &a); err != nil || a.EnvelopeID == "" {
		s.mu.Lock()
		s.log.logf(s.closed, "fakes: Slack: unexpected Socket Mode frame: %s", clip(string(data), 300))
		s.mu.Unlock()
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ack := Ack{EnvelopeID: a.EnvelopeID, AckedAt: now}
	if len(a.Payload) > 0 && string(a.Payload) != "null" {
		ack.Payload = compactJSON(a.Payload)
	}
	env := s.sm.envs[a.EnvelopeID]
	if env == nil {
		s.log.logf(s.closed, "fakes: Slack: ack for unknown envelope %q", a.EnvelopeID)
	} else if len(env.sentAt) > 0 {
		ack.SentAt = env.sentAt[len(env.sentAt)-1]
		if w := env.written.Load(); w != 0 {
			ack.WrittenAt = time.Unix(0, w)
		}
		// Slack shows a slash command's ack payload to the user, if it came
		// within 3 seconds.
		if env.accepts && env.respond != nil && !env.responded && ack.Payload != nil && now.Sub(ack.SentAt) <= 3*time.Second {
			env.responded = true
			if e := s.applyResponse(env.respond, ack.Payload, "ack"); e != "" {
				s.log.logf(s.closed, "fakes: Slack: ack payload of %s refused: %s", a.EnvelopeID, e)
			}
		}
		// Slack waits 3 seconds for the answer to a view submission; the
		// first ack decides.
		if env.viewID != "" && !env.responded {
			env.responded = true
			if d := now.Sub(ack.SentAt); d > viewAckDeadline {
				s.log.logf(s.closed, "fakes: Slack: view_submission %s acked after %v (> %v): Slack shows the user an error and leaves view %s open",
					a.EnvelopeID, d.Round(time.Millisecond), viewAckDeadline, env.viewID)
				if vr := s.views[env.viewID]; vr != nil {
					vr.notes = append(vr.notes, "late ack of "+a.EnvelopeID)
				}
			} else {
				s.applyViewAck(env.viewID, a.EnvelopeID, ack.Payload)
			}
		}
	}
	s.sm.acks = append(s.sm.acks, ack)
	s.sm.ackTaken = append(s.sm.ackTaken, false)
	s.changed.broadcast()
}

// WaitConnected waits until a Socket Mode connection is live.
func (s *Slack) WaitConnected(t testing.TB, timeout time.Duration) {
	t.Helper()
	if !waitUntil(timeout, s.changedC, func() bool { return s.LiveConnections() > 0 }) {
		t.Fatalf("fakes: Slack: no Socket Mode connection within %v\n%s", timeout, s.Dump())
	}
}

// Connections is the number of Socket Mode connections accepted so far.
func (s *Slack) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sm.total
}

// LiveConnections is the number of Socket Mode connections open now.
func (s *Slack) LiveConnections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sm.conns)
}

// Acks returns every ack received, in order.
func (s *Slack) Acks() []Ack {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Ack(nil), s.sm.acks...)
}

// WaitAck waits for the next ack of envelopeID that no earlier WaitAck
// returned (so after Redeliver, a second WaitAck waits for the second ack).
func (s *Slack) WaitAck(t testing.TB, envelopeID string, timeout time.Duration) Ack {
	t.Helper()
	var got Ack
	ok := waitUntil(timeout, s.changedC, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, a := range s.sm.acks {
			if a.EnvelopeID == envelopeID && !s.sm.ackTaken[i] {
				s.sm.ackTaken[i] = true
				got = a
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("fakes: Slack: no ack for envelope %s within %v\n%s", envelopeID, timeout, s.Dump())
	}
	return got
}

type envelopeFrame struct {
	EnvelopeID             string          `json:"envelope_id"`
	Payload                json.RawMessage `json:"payload"`
	Type                   string          `json:"type"`
	AcceptsResponsePayload bool            `json:"accepts_response_payload"`
	RetryAttempt           *int            `json:"retry_attempt,omitempty"`
	RetryReason            *string         `json:"retry_reason,omitempty"`
}

func (e *envelope) frame() []byte {
	f := envelopeFrame{EnvelopeID: e.id, Payload: e.payload, Type: e.typ, AcceptsResponsePayload: e.accepts}
	if e.retry > 0 || e.typ == "events_api" {
		r, reason := e.retry, e.retryReason
		f.RetryAttempt, f.RetryReason = &r, &reason
	}
	return mustJSON(f)
}

// deliver sends an envelope to the newest live connection, waiting up to
// connectWait for one.
func (s *Slack) deliver(t testing.TB, env *envelope) {
	t.Helper()
	deadline := time.NewTimer(connectWait)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			t.Fatalf("fakes: Slack: closed")
		}
		var conn *wsConn
		if n := len(s.sm.conns); n > 0 {
			conn = s.sm.conns[n-1]
		}
		var frame []byte
		if conn != nil {
			frame = env.frame()
			env.sentAt = append(env.sentAt, time.Now())
		}
		ch := s.changed.c()
		s.mu.Unlock()
		if conn != nil {
			select {
			case conn.out <- wsOut{data: frame, env: env}:
				return
			case <-conn.done:
				s.mu.Lock()
				env.sentAt = env.sentAt[:len(env.sentAt)-1]
				s.mu.Unlock()
				continue
			}
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("fakes: Slack: no Socket Mode connection within %v to deliver %s envelope\n%s", connectWait, env.typ, s.Dump())
		}
	}
}

func (s *Slack) register(typ string, payload json.RawMessage, accepts bool, respond *hook) *envelope {
	env := &envelope{id: uuid.NewString(), typ: typ, payload: payload, accepts: accepts, respond: respond}
	s.sm.envs[env.id] = env
	s.sm.order = append(s.sm.order, env)
	return env
}

// SendSlashCommand delivers a slash_commands envelope and returns its id.
// Command defaults to "/reprovision", ChannelID to the user's DM with the
// app, TriggerID to a fresh trigger id. The response_url is a fresh
// ResponseURL for the user and channel.
func (s *Slack) SendSlashCommand(t testing.TB, c SlashCommand) (envelopeID string) {
	t.Helper()
	if c.Command == "" {
		c.Command = "/reprovision"
	}
	if c.ChannelID == "" {
		c.ChannelID = DMChannel(c.UserID)
	}
	s.mu.Lock()
	if c.TriggerID == "" {
		c.TriggerID = s.newTrigger(c.UserID, "")
	} else if s.triggers[c.TriggerID] == nil {
		s.triggers[c.TriggerID] = &triggerRec{issued: time.Now(), user: c.UserID}
	}
	h := s.newHook("commands", c.UserID, c.ChannelID, "", false)
	// Socket Mode slash-command payloads are the form fields as strings.
	payload := map[string]string{
		"token":                 VerificationToken,
		"team_id":               TeamID,
		"team_domain":           TeamDomain,
		"channel_id":            c.ChannelID,
		"channel_name":          channelName(c.ChannelID),
		"user_id":               c.UserID,
		"user_name":             s.user(c.UserID).name,
		"command":               c.Command,
		"text":                  c.Text,
		"api_app_id":            AppID,
		"is_enterprise_install": "false",
		"response_url":          h.url,
		"trigger_id":            c.TriggerID,
	}
	env := s.register("slash_commands", mustJSON(payload), true, h)
	s.mu.Unlock()
	s.deliver(t, env)
	return env.id
}

// SendBlockAction delivers an interactive block_actions envelope for a
// button click and returns its id. When the message ChannelID/MessageTS is
// known, the payload carries it, and BlockID/Value default to those of the
// button with ActionID in it. A block_id is always present (slack-go needs
// it). ChannelID defaults to the channel of the message with MessageTS, else
// the user's DM with the app. A click on an ephemeral message has
// container.is_ephemeral true and no "message", as in Slack.
//
// With ViewID set, the click is on a view the fake stores (the user's Home
// tab or an open modal): the button must be in it, and the payload is what
// Slack sends for a view: container {"type":"view","view_id"}, the "view"
// object, and no "message", "channel" or "response_url".
func (s *Slack) SendBlockAction(t testing.TB, a BlockAction) (envelopeID string) {
	t.Helper()
	s.mu.Lock()
	var (
		src    *msgRec
		vr     *viewRec
		blocks json.RawMessage
	)
	if a.ViewID != "" {
		var problem string
		vr, problem = s.blockActionView(a)
		if problem != "" {
			s.mu.Unlock()
			t.Fatalf("fakes: Slack: SendBlockAction: %s\n%s", problem, s.Dump())
		}
		blocks, _ = vr.view["blocks"].(json.RawMessage)
	} else {
		if a.MessageTS != "" {
			for _, m := range s.msgs {
				if m.TS == a.MessageTS && !m.deleted && (a.ChannelID == "" || m.Channel == a.ChannelID) &&
					(!m.ephemeral || m.User == a.UserID) {
					src = m
				}
			}
		}
		if a.ChannelID == "" {
			if src != nil {
				a.ChannelID = src.Channel
			} else {
				a.ChannelID = DMChannel(a.UserID)
			}
		}
		if a.MessageTS == "" {
			a.MessageTS = s.nextTS()
		}
		if src != nil {
			blocks = src.Blocks
		}
	}
	action := map[string]any{"type": "button", "action_id": a.ActionID}
	if blocks != nil {
		if bid, el := findButton(blocks, a.ActionID, a.BlockID); el != nil {
			if a.BlockID == "" {
				a.BlockID = bid
			}
			if v, ok := el["value"].(string); ok && a.Value == "" {
				a.Value = v
			}
			if typ, ok := el["type"].(string); ok {
				action["type"] = typ
			}
			if txt, ok := el["text"]; ok {
				action["text"] = txt
			}
			if st, ok := el["style"]; ok {
				action["style"] = st
			}
		}
	}
	if a.BlockID == "" {
		a.BlockID = randB64(3)[:4]
	}
	if _, ok := action["text"]; !ok {
		action["text"] = map[string]any{"type": "plain_text", "text": a.ActionID, "emoji": true}
	}
	action["block_id"] = a.BlockID
	action["value"] = a.Value
	action["action_ts"] = fmt.Sprintf("%d.%06d", time.Now().Unix(), time.Now().Nanosecond()/1000)

	u := s.user(a.UserID)
	payload := map[string]any{
		"type":                  "block_actions",
		"user":                  map[string]any{"id": a.UserID, "username": u.name, "name": u.name, "team_id": TeamID},
		"api_app_id":            AppID,
		"token":                 VerificationToken,
		"team":                  map[string]any{"id": TeamID, "domain": TeamDomain},
		"enterprise":            nil,
		"is_enterprise_install": false,
		"state":                 map[string]any{"values": map[string]any{}},
		"actions":               []any{action},
	}
	if vr != nil {
		payload["container"] = map[string]any{"type": "view", "view_id": vr.id}
		payload["trigger_id"] = s.newTrigger(a.UserID, vr.id)
		payload["view"] = s.viewWire(vr, nil)
	} else {
		ephemeral := src != nil && src.ephemeral
		h := s.newHook("actions", a.UserID, a.ChannelID, a.MessageTS, ephemeral)
		payload["container"] = map[string]any{"type": "message", "message_ts": a.MessageTS, "channel_id": a.ChannelID, "is_ephemeral": ephemeral}
		payload["trigger_id"] = s.newTrigger(a.UserID, "")
		payload["channel"] = map[string]any{"id": a.ChannelID, "name": channelName(a.ChannelID)}
		payload["response_url"] = h.url
		if src != nil && !ephemeral {
			payload["message"] = src.wire()
		}
	}
	env := s.register("interactive", mustJSON(payload), false, nil)
	s.mu.Unlock()
	s.deliver(t, env)
	return env.id
}

// SendEnvelope delivers an envelope of any type with the given payload (a
// json.RawMessage, []byte or any value to marshal) and returns its id.
// accepts_response_payload is true for slash_commands and for view
// submissions, as in Slack.
func (s *Slack) SendEnvelope(t testing.TB, typ string, payload any) (envelopeID string) {
	t.Helper()
	var raw json.RawMessage
	switch p := payload.(type) {
	case json.RawMessage:
		raw = p
	case []byte:
		raw = p
	default:
		raw = mustJSON(p)
	}
	accepts := typ == "slash_commands"
	if typ == "interactive" {
		var probe struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(raw, &probe)
		accepts = probe.Type == "view_submission"
	}
	s.mu.Lock()
	env := s.register(typ, raw, accepts, nil)
	s.mu.Unlock()
	s.deliver(t, env)
	return env.id
}

// SendEvent delivers an events_api envelope wrapping event (the inner
// event, e.g. {"type":"app_home_opened",...}) in an event_callback.
func (s *Slack) SendEvent(t testing.TB, event any) (envelopeID string) {
	t.Helper()
	now := time.Now().Unix()
	return s.SendEnvelope(t, "events_api", map[string]any{
		"token":           VerificationToken,
		"team_id":         TeamID,
		"context_team_id": TeamID,
		"api_app_id":      AppID,
		"event":           event,
		"type":            "event_callback",
		"event_id":        "Ev" + randUpper(9),
		"event_time":      now,
		"authorizations": []any{map[string]any{
			"enterprise_id": nil, "team_id": TeamID, "user_id": BotUserID, "is_bot": true, "is_enterprise_install": false,
		}},
		"is_ext_shared_channel": false,
		"event_context":         "4-" + randB64(24),
	})
}

// Redeliver sends an envelope again with retry_attempt incremented and
// retry_reason "timeout", as Slack does for unacknowledged envelopes.
func (s *Slack) Redeliver(t testing.TB, envelopeID string) {
	t.Helper()
	s.mu.Lock()
	env := s.sm.envs[envelopeID]
	if env != nil {
		env.retry++
		env.retryReason = "timeout"
	}
	s.mu.Unlock()
	if env == nil {
		t.Fatalf("fakes: Slack: Redeliver: unknown envelope %q", envelopeID)
	}
	s.deliver(t, env)
}

// SendDisconnect sends {"type":"disconnect","reason":"refresh_requested"} on
// every live connection and closes them; slack-go then reconnects.
func (s *Slack) SendDisconnect(t testing.TB) {
	t.Helper()
	s.SendDisconnectReason(t, "refresh_requested")
}

// SendDisconnectReason is SendDisconnect with another reason (e.g.
// "link_disabled", "warning").
func (s *Slack) SendDisconnectReason(t testing.TB, reason string) {
	t.Helper()
	s.WaitConnected(t, connectWait)
	s.mu.Lock()
	conns := append([]*wsConn(nil), s.sm.conns...)
	s.mu.Unlock()
	for _, c := range conns {
		msg := mustJSON(map[string]any{
			"type":       "disconnect",
			"reason":     reason,
			"debug_info": map[string]any{"host": fmt.Sprintf("applink-fake-%d", c.id)},
		})
		select {
		case c.out <- wsOut{data: msg, closeAfter: reason != "warning"}:
		case <-c.done:
		}
	}
}
