package fakes

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// viewAckDeadline is how long Slack waits for the answer to a view
// submission before it shows the user an error.
const viewAckDeadline = 3 * time.Second

// View is the current state of a modal or Home tab view.
type View struct {
	ID string
	// Type is "modal" or "home".
	Type string
	// UserID is the user who sees the view: the publish target of a Home
	// tab, the user whose interaction's trigger_id opened a modal ("" when
	// the trigger was not issued by the fake).
	UserID                      string
	CallbackID, PrivateMetadata string
	// Hash changes on every update, as in Slack (views.update/publish
	// "hash" argument).
	Hash   string
	Title  string
	Blocks json.RawMessage
	// OpenedVia is "views.open", "views.push" (also for a response_action
	// "push" ack) or "views.publish".
	OpenedVia string
	// Updates counts views.update calls, Home tab republishes and
	// response_action "update" acks.
	Updates int
	// Closed is set when the modal closed: empty ack or response_action
	// "clear" to a view submission.
	Closed bool
	// RootViewID is the first view of the modal's stack (its own id unless
	// pushed); PreviousViewID the view it was pushed on ("" if none).
	RootViewID, PreviousViewID string
}

type viewRec struct {
	id, user string
	view     map[string]any
	via      string
	updates  int
	closed   bool
	hash     string
	rootID   string
	prevID   string
	// errors is what the latest answer to a submission displays.
	errors map[string]string
	// notes are remarks for Dump (refused acks, late acks).
	notes []string
}

func (vr *viewRec) str(k string) string {
	v, _ := vr.view[k].(string)
	return v
}

func (vr *viewRec) public() View {
	v := View{
		ID: vr.id, Type: vr.str("type"), UserID: vr.user, CallbackID: vr.str("callback_id"),
		PrivateMetadata: vr.str("private_metadata"), Hash: vr.hash, Title: textOf(vr.view["title"]),
		OpenedVia: vr.via, Updates: vr.updates, Closed: vr.closed, RootViewID: vr.rootID, PreviousViewID: vr.prevID,
	}
	if b, ok := vr.view["blocks"].(json.RawMessage); ok && b != nil {
		v.Blocks = append(json.RawMessage(nil), b...)
	}
	return v
}

func newViewHash() string {
	return fmt.Sprintf("%d.%s", time.Now().Unix(), randHex(8))
}

// Views returns the current state of every view of userID (modals, open or
// closed, and the Home tab), in creation order.
func (s *Slack) Views(userID string) []View {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []View
	for _, vr := range s.viewOrder {
		if vr.user == userID {
			out = append(out, vr.public())
		}
	}
	return out
}

// View returns the current state of the view with id viewID.
func (s *Slack) View(viewID string) (View, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if vr := s.views[viewID]; vr != nil {
		return vr.public(), true
	}
	return View{}, false
}

// HomeView returns the Home tab published for userID.
func (s *Slack) HomeView(userID string) (View, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if vr := s.homeOf(userID); vr != nil {
		return vr.public(), true
	}
	return View{}, false
}

// WaitView waits until userID has an open modal with callbackID and returns
// it (the newest if several); after timeout it fails the test.
func (s *Slack) WaitView(t testing.TB, userID, callbackID string, timeout time.Duration) View {
	t.Helper()
	var got View
	ok := waitUntil(timeout, s.changedC, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i := len(s.viewOrder) - 1; i >= 0; i-- {
			vr := s.viewOrder[i]
			if vr.user == userID && !vr.closed && vr.str("type") == "modal" && vr.str("callback_id") == callbackID {
				got = vr.public()
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("fakes: Slack: timed out after %v waiting for an open modal %q of %s\n%s", timeout, callbackID, userID, s.Dump())
	}
	return got
}

// ViewErrors returns the field errors the modal viewID shows: those of the
// latest response_action "errors" ack to its submission, nil once a later
// ack answered otherwise (or when there was none).
func (s *Slack) ViewErrors(viewID string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	vr := s.views[viewID]
	if vr == nil || vr.errors == nil {
		return nil
	}
	out := make(map[string]string, len(vr.errors))
	for k, v := range vr.errors {
		out[k] = v
	}
	return out
}

// ViewSubmission is a user pressing a modal's submit button.
type ViewSubmission struct {
	UserID, ViewID string
	// Values holds what the user typed: block_id → action_id → value, for
	// plain_text_input elements of input blocks. An input left out keeps
	// its initial_value (null if none), as in Slack.
	Values map[string]map[string]string
	// Selected holds what the user chose: block_id → action_id → the value
	// of one of the options of a static_select of an input block. A select
	// left out keeps its initial_option (none if none), as in Slack.
	Selected map[string]map[string]string
}

// SendViewSubmission delivers the interactive view_submission envelope Slack
// sends when v.UserID submits the open modal v.ViewID, and returns its id.
// The payload carries the stored view with state.values for every input
// block and a fresh trigger_id. What the user could not do in Slack fails the
// test: an unknown, closed or foreign view, a value for something that is
// not a plain_text_input of an input block, an empty required input, a value
// outside min_length/max_length, a choice that is not an option of a
// static_select of an input block, a required select left without one.
//
// The first ack decides what happens, if it comes within 3 seconds as Slack
// requires: no payload closes the modal (Closed); response_action "errors"
// keeps it open and records the errors (ViewErrors); "update" replaces it;
// "push" pushes a new modal; "clear" closes the whole stack.
func (s *Slack) SendViewSubmission(t testing.TB, v ViewSubmission) (envelopeID string) {
	t.Helper()
	s.mu.Lock()
	payload, problem := s.viewSubmissionPayload(v)
	if problem != "" {
		s.mu.Unlock()
		t.Fatalf("fakes: Slack: SendViewSubmission: %s\n%s", problem, s.Dump())
	}
	env := s.register("interactive", payload, true, nil)
	env.viewID = v.ViewID
	s.mu.Unlock()
	s.deliver(t, env)
	return env.id
}

type inputBlock struct {
	blockID  string
	element  map[string]any
	optional bool
}

func inputBlocks(blocks json.RawMessage) []inputBlock {
	var bs []map[string]any
	dec := json.NewDecoder(strings.NewReader(string(blocks)))
	dec.UseNumber()
	if dec.Decode(&bs) != nil {
		return nil
	}
	var out []inputBlock
	for _, b := range bs {
		if b["type"] != "input" {
			continue
		}
		el, _ := b["element"].(map[string]any)
		if el == nil {
			continue
		}
		id, _ := b["block_id"].(string)
		opt, _ := b["optional"].(bool)
		out = append(out, inputBlock{blockID: id, element: el, optional: opt})
	}
	return out
}

// viewSubmissionPayload builds a view_submission payload, or says why the
// user could not submit. Call with s.mu held.
func (s *Slack) viewSubmissionPayload(v ViewSubmission) (json.RawMessage, string) {
	vr := s.views[v.ViewID]
	switch {
	case v.UserID == "":
		return nil, "no UserID"
	case vr == nil:
		return nil, fmt.Sprintf("no view %q", v.ViewID)
	case vr.str("type") != "modal":
		return nil, fmt.Sprintf("view %s is a %s view, not a modal", vr.id, vr.str("type"))
	case vr.closed:
		return nil, fmt.Sprintf("modal %s (%s) is closed", vr.id, vr.str("callback_id"))
	case vr.user != "" && vr.user != v.UserID:
		return nil, fmt.Sprintf("modal %s is open for %s, not %s", vr.id, vr.user, v.UserID)
	case vr.view["submit"] == nil:
		return nil, fmt.Sprintf("modal %s has no submit button", vr.id)
	}
	blocks, _ := vr.view["blocks"].(json.RawMessage)
	inputs := inputBlocks(blocks)
	byID := map[string]inputBlock{}
	for _, in := range inputs {
		byID[in.blockID] = in
	}
	onlyWhat := map[string]string{
		"plain_text_input": "only plain_text_input values can be submitted",
		"static_select":    "only a static_select's options can be chosen",
	}
	// submitted finds the input a value is submitted for: block bid, element
	// a, of type want; or says why Slack would not send it.
	submitted := func(bid, a, want string) (inputBlock, string) {
		in, ok := byID[bid]
		if !ok {
			return in, fmt.Sprintf("modal %s has no input block %q", vr.id, bid)
		}
		if aid, _ := in.element["action_id"].(string); a != aid {
			return in, fmt.Sprintf("input block %q of modal %s has no element with action_id %q (it has %q)", bid, vr.id, a, aid)
		}
		if typ, _ := in.element["type"].(string); typ != want {
			return in, fmt.Sprintf("input %s/%s of modal %s is a %s; %s", bid, a, vr.id, typ, onlyWhat[want])
		}
		return in, ""
	}
	blockIDs := make([]string, 0, len(v.Values))
	for bid := range v.Values {
		blockIDs = append(blockIDs, bid)
	}
	sort.Strings(blockIDs)
	for _, bid := range blockIDs {
		if _, ok := byID[bid]; !ok {
			return nil, fmt.Sprintf("modal %s has no input block %q", vr.id, bid)
		}
		for a := range v.Values[bid] {
			if _, problem := submitted(bid, a, "plain_text_input"); problem != "" {
				return nil, problem
			}
		}
	}
	selBlockIDs := make([]string, 0, len(v.Selected))
	for bid := range v.Selected {
		selBlockIDs = append(selBlockIDs, bid)
	}
	sort.Strings(selBlockIDs)
	for _, bid := range selBlockIDs {
		if _, ok := byID[bid]; !ok {
			return nil, fmt.Sprintf("modal %s has no input block %q", vr.id, bid)
		}
		for a, value := range v.Selected[bid] {
			in, problem := submitted(bid, a, "static_select")
			if problem != "" {
				return nil, problem
			}
			if selectOption(in.element, value) == nil {
				return nil, fmt.Sprintf("select %s/%s of modal %s has no option %q: Slack does not let the user choose it", bid, a, vr.id, value)
			}
		}
	}
	values := map[string]any{}
	for _, in := range inputs {
		typ, _ := in.element["type"].(string)
		aid, _ := in.element["action_id"].(string)
		state := map[string]any{"type": typ}
		if typ == "static_select" {
			// Slack sends the whole option chosen, or null.
			var chosen map[string]any // nil: JSON null
			if value, ok := v.Selected[in.blockID][aid]; ok {
				chosen = selectOption(in.element, value)
			} else if initial, ok := in.element["initial_option"]; ok {
				chosen = selectOption(in.element, initial)
			}
			if chosen == nil && !in.optional {
				return nil, fmt.Sprintf("required select %s/%s of modal %s has no choice: Slack does not let the user submit", in.blockID, aid, vr.id)
			}
			state["selected_option"] = chosen
			values[in.blockID] = map[string]any{aid: state}
			continue
		}
		if typ != "plain_text_input" {
			if !in.optional {
				return nil, fmt.Sprintf("required input block %q of modal %s is a %s, which SendViewSubmission cannot fill", in.blockID, vr.id, typ)
			}
			values[in.blockID] = map[string]any{aid: state}
			continue
		}
		val, given := v.Values[in.blockID][aid]
		if !given {
			if iv, ok := in.element["initial_value"].(string); ok {
				val, given = iv, true
			}
		}
		n := utf8.RuneCountInString(val)
		switch {
		case n == 0 && !in.optional:
			return nil, fmt.Sprintf("required input %s/%s of modal %s is empty: Slack does not let the user submit", in.blockID, aid, vr.id)
		case n > 0:
			if maxLen, ok := intOf(in.element["max_length"]); ok && n > maxLen {
				return nil, fmt.Sprintf("input %s/%s of modal %s: %d characters, max_length %d: Slack does not let the user submit", in.blockID, aid, vr.id, n, maxLen)
			}
			if minLen, ok := intOf(in.element["min_length"]); ok && n < minLen {
				return nil, fmt.Sprintf("input %s/%s of modal %s: %d characters, min_length %d: Slack does not let the user submit", in.blockID, aid, vr.id, n, minLen)
			}
		}
		if given {
			state["value"] = val
		} else {
			state["value"] = nil
		}
		values[in.blockID] = map[string]any{aid: state}
	}
	u := s.user(v.UserID)
	payload := map[string]any{
		"type":                  "view_submission",
		"team":                  map[string]any{"id": TeamID, "domain": TeamDomain},
		"user":                  map[string]any{"id": v.UserID, "username": u.name, "name": u.name, "team_id": TeamID},
		"api_app_id":            AppID,
		"token":                 VerificationToken,
		"trigger_id":            s.newTrigger(v.UserID, vr.id),
		"view":                  s.viewWire(vr, map[string]any{"values": values}),
		"response_urls":         []any{},
		"is_enterprise_install": false,
		"enterprise":            nil,
	}
	return mustJSON(payload), ""
}

// blockActionView finds the view a BlockAction with ViewID clicks in, or
// says why the user could not click there. Call with s.mu held.
func (s *Slack) blockActionView(a BlockAction) (*viewRec, string) {
	vr := s.views[a.ViewID]
	switch {
	case a.ChannelID != "" || a.MessageTS != "":
		return nil, "set either ViewID or ChannelID/MessageTS"
	case vr == nil:
		return nil, fmt.Sprintf("no view %q", a.ViewID)
	case vr.closed:
		return nil, fmt.Sprintf("view %s is closed", vr.id)
	case vr.user != "" && vr.user != a.UserID:
		return nil, fmt.Sprintf("view %s is shown to %s, not %s", vr.id, vr.user, a.UserID)
	}
	blocks, _ := vr.view["blocks"].(json.RawMessage)
	if _, el := findButton(blocks, a.ActionID, a.BlockID); el == nil {
		return nil, fmt.Sprintf("view %s has no element with action_id %q (block_id %q)", vr.id, a.ActionID, a.BlockID)
	}
	return vr, ""
}

// applyViewAck applies the ack payload of a view submission to the view, as
// Slack does. Call with s.mu held.
func (s *Slack) applyViewAck(viewID, envID string, payload json.RawMessage) {
	vr := s.views[viewID]
	if vr == nil {
		return
	}
	refuse := func(why string) {
		s.log.logf(s.closed, "fakes: Slack: ack of view_submission %s refused (%s): Slack shows the user an error and leaves view %s open", envID, why, vr.id)
		vr.notes = append(vr.notes, fmt.Sprintf("ack of %s refused: %s", envID, why))
	}
	var r struct {
		ResponseAction string            `json:"response_action"`
		Errors         map[string]string `json:"errors"`
		View           json.RawMessage   `json:"view"`
	}
	if len(payload) > 0 {
		if err := json.Unmarshal(payload, &r); err != nil {
			refuse("not a JSON object: " + clip(string(payload), 100))
			return
		}
	}
	switch r.ResponseAction {
	case "":
		if vr.closed {
			return
		}
		// Closes the submitted view; a pushed view returns to the one below.
		vr.closed = true
		vr.errors = nil
	case "errors":
		if len(r.Errors) == 0 {
			refuse("response_action errors without errors")
			return
		}
		inputs := map[string]bool{}
		blocks, _ := vr.view["blocks"].(json.RawMessage)
		for _, in := range inputBlocks(blocks) {
			inputs[in.blockID] = true
		}
		for bid := range r.Errors {
			if !inputs[bid] {
				refuse(fmt.Sprintf("errors names %q, which is not an input block of the view", bid))
				return
			}
		}
		vr.errors = make(map[string]string, len(r.Errors))
		for k, v := range r.Errors {
			vr.errors[k] = v
		}
	case "update":
		v, aerr := s.parseView(string(r.View), "modal")
		if aerr != nil {
			refuse("invalid view: " + describeErr(aerr))
			return
		}
		vr.view = v
		vr.updates++
		vr.hash = newViewHash()
		vr.errors = nil
	case "push":
		v, aerr := s.parseView(string(r.View), "modal")
		if aerr != nil {
			refuse("invalid view: " + describeErr(aerr))
			return
		}
		if s.stackSize(vr.rootID) >= 3 {
			refuse("push_limit_reached")
			return
		}
		vr.errors = nil
		nv := s.newView(vr.user, v, "views.push")
		nv.rootID, nv.prevID = vr.rootID, vr.id
	case "clear":
		for _, x := range s.viewOrder {
			if x.rootID == vr.rootID {
				x.closed = true
				x.errors = nil
			}
		}
	default:
		refuse(fmt.Sprintf("unknown response_action %q", r.ResponseAction))
	}
}

func describeErr(aerr *apiErr) string {
	if md, ok := aerr.extra["response_metadata"].(map[string]any); ok {
		if msgs, ok := md["messages"].([]string); ok && len(msgs) > 0 {
			return aerr.code + " " + strings.Join(msgs, "; ")
		}
	}
	return aerr.code
}

// stackSize counts the open modals of the stack rooted at rootID. Call with
// s.mu held.
func (s *Slack) stackSize(rootID string) int {
	n := 0
	for _, x := range s.viewOrder {
		if x.rootID == rootID && !x.closed {
			n++
		}
	}
	return n
}

// homeOf returns userID's Home tab. Call with s.mu held.
func (s *Slack) homeOf(userID string) *viewRec {
	for _, vr := range s.viewOrder {
		if vr.user == userID && vr.str("type") == "home" {
			return vr
		}
	}
	return nil
}

// dumpViews writes the views section of Dump. Call with s.mu held.
func (s *Slack) dumpViews(b *strings.Builder) {
	fmt.Fprintf(b, "--- views\n")
	for _, vr := range s.viewOrder {
		state := "open"
		if vr.closed {
			state = "closed"
		}
		fmt.Fprintf(b, "  %s %s user=%s callback_id=%q via=%s updates=%d %s root=%s", vr.id, vr.str("type"), vr.user, vr.str("callback_id"), vr.via, vr.updates, state, vr.rootID)
		if len(vr.errors) > 0 {
			fmt.Fprintf(b, " errors=%s", mustJSON(vr.errors))
		}
		for _, n := range vr.notes {
			fmt.Fprintf(b, " [%s]", n)
		}
		fmt.Fprintf(b, " private_metadata=%q blocks=%s\n", clip(vr.str("private_metadata"), 100), clip(string(mustJSON(vr.view["blocks"])), 300))
	}
}

// ---- views.* Web API methods ----

func (s *Slack) parseView(raw string, wantType string) (map[string]any, *apiErr) {
	if strings.TrimSpace(raw) == "" {
		return nil, errOf("invalid_arguments")
	}
	var v map[string]any
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil || v == nil {
		return nil, errOf("invalid_arguments")
	}
	typ, _ := v["type"].(string)
	if typ != wantType && !(wantType == "" && (typ == "modal" || typ == "home")) {
		return nil, errOf("invalid_arguments")
	}
	if b, ok := v["blocks"]; ok {
		blocks, aerr := normalizeBlocks(string(mustJSON(b)), 100)
		if aerr != nil {
			return nil, aerr
		}
		v["blocks"] = blocks
	}
	var msgs []string
	if typ == "modal" {
		if t, _ := v["title"].(map[string]any); t == nil || textOf(t) == "" {
			msgs = append(msgs, "[ERROR] missing required field: title")
		} else if utf8.RuneCountInString(textOf(t)) > 24 {
			msgs = append(msgs, "[ERROR] must be less than 25 characters [json-pointer:/view/title/text]")
		}
		for _, k := range []string{"close", "submit"} {
			if t, ok := v[k].(map[string]any); ok && utf8.RuneCountInString(textOf(t)) > 24 {
				msgs = append(msgs, "[ERROR] must be less than 25 characters [json-pointer:/view/"+k+"/text]")
			}
		}
	}
	if pm, ok := v["private_metadata"].(string); ok && utf8.RuneCountInString(pm) > 3000 {
		msgs = append(msgs, "[ERROR] must be less than 3001 characters [json-pointer:/view/private_metadata]")
	}
	if cb, ok := v["callback_id"].(string); ok && utf8.RuneCountInString(cb) > 255 {
		msgs = append(msgs, "[ERROR] must be less than 256 characters [json-pointer:/view/callback_id]")
	}
	if len(msgs) > 0 {
		return nil, &apiErr{code: "invalid_arguments", extra: map[string]any{
			"response_metadata": map[string]any{"messages": msgs},
		}}
	}
	return v, nil
}

// viewWire is the view object Slack returns and puts in payloads; state nil
// means no input values. Call with s.mu held.
func (s *Slack) viewWire(vr *viewRec, state map[string]any) map[string]any {
	out := map[string]any{
		"blocks":           []any{},
		"private_metadata": "",
		"callback_id":      "",
		"clear_on_close":   false,
		"notify_on_close":  false,
		"external_id":      "",
	}
	if vr.str("type") == "modal" {
		out["close"] = nil
		out["submit"] = nil
	}
	for k, v := range vr.view {
		out[k] = v
	}
	if state == nil {
		state = map[string]any{"values": map[string]any{}}
	}
	var prev any
	if vr.prevID != "" {
		prev = vr.prevID
	}
	out["id"] = vr.id
	out["team_id"] = TeamID
	out["state"] = state
	out["hash"] = vr.hash
	out["root_view_id"] = vr.rootID
	out["previous_view_id"] = prev
	out["app_id"] = AppID
	out["app_installed_team_id"] = TeamID
	out["bot_id"] = BotID
	return out
}

func (s *Slack) useTrigger(id string) (*triggerRec, *apiErr) {
	tr := s.triggers[id]
	switch {
	case id == "" || tr == nil:
		return nil, errOf("invalid_trigger_id")
	case tr.used:
		return nil, errOf("exchanged_trigger_id")
	case s.triggerTTL > 0 && time.Since(tr.issued) > s.triggerTTL:
		return nil, errOf("expired_trigger_id")
	}
	tr.used = true
	return tr, nil
}

// newView stores a new view. Call with s.mu held.
func (s *Slack) newView(user string, v map[string]any, via string) *viewRec {
	s.seq++
	vr := &viewRec{id: fmt.Sprintf("V%08d%s", s.seq, randUpper(3)), user: user, view: v, via: via, hash: newViewHash()}
	vr.rootID = vr.id
	s.views[vr.id] = vr
	s.viewOrder = append(s.viewOrder, vr)
	return vr
}

func (s *Slack) viewsOpen(p map[string]string, _ *http.Request) (map[string]any, *apiErr) {
	v, aerr := s.parseView(p["view"], "modal")
	if aerr != nil {
		return nil, aerr
	}
	tr, aerr := s.useTrigger(p["trigger_id"])
	if aerr != nil {
		return nil, aerr
	}
	return map[string]any{"view": s.viewWire(s.newView(tr.user, v, "views.open"), nil)}, nil
}

// viewsPush pushes onto the stack of the modal the trigger came from (at
// most 3 modals per stack). A trigger from outside a modal opens a new stack.
func (s *Slack) viewsPush(p map[string]string, _ *http.Request) (map[string]any, *apiErr) {
	v, aerr := s.parseView(p["view"], "modal")
	if aerr != nil {
		return nil, aerr
	}
	tr, aerr := s.useTrigger(p["trigger_id"])
	if aerr != nil {
		return nil, aerr
	}
	var under *viewRec
	if x := s.views[tr.viewID]; x != nil && !x.closed && x.str("type") == "modal" {
		under = x
		if s.stackSize(x.rootID) >= 3 {
			return nil, errOf("push_limit_reached")
		}
	}
	vr := s.newView(tr.user, v, "views.push")
	if under != nil {
		vr.rootID = under.rootID
		// previous is the top of the stack.
		for _, x := range s.viewOrder {
			if x != vr && x.rootID == under.rootID && !x.closed {
				vr.prevID = x.id
			}
		}
	}
	return map[string]any{"view": s.viewWire(vr, nil)}, nil
}

func (s *Slack) viewsPublish(p map[string]string, _ *http.Request) (map[string]any, *apiErr) {
	if !isUserID(p["user_id"]) {
		return nil, errOf("user_not_found")
	}
	v, aerr := s.parseView(p["view"], "home")
	if aerr != nil {
		return nil, aerr
	}
	if vr := s.homeOf(p["user_id"]); vr != nil {
		if h := p["hash"]; h != "" && h != vr.hash {
			return nil, errOf("hash_conflict")
		}
		vr.view = v
		vr.updates++
		vr.hash = newViewHash()
		return map[string]any{"view": s.viewWire(vr, nil)}, nil
	}
	return map[string]any{"view": s.viewWire(s.newView(p["user_id"], v, "views.publish"), nil)}, nil
}

func (s *Slack) viewsUpdate(p map[string]string, _ *http.Request) (map[string]any, *apiErr) {
	var vr *viewRec
	if id := p["view_id"]; id != "" {
		vr = s.views[id]
	} else if ext := p["external_id"]; ext != "" {
		for _, x := range s.viewOrder {
			if x.view["external_id"] == ext {
				vr = x
			}
		}
	} else {
		return nil, errOf("invalid_arguments")
	}
	if vr == nil || vr.closed {
		return nil, errOf("not_found")
	}
	v, aerr := s.parseView(p["view"], vr.str("type"))
	if aerr != nil {
		return nil, aerr
	}
	if h := p["hash"]; h != "" && h != vr.hash {
		return nil, errOf("hash_conflict")
	}
	vr.view = v
	vr.updates++
	vr.hash = newViewHash()
	return map[string]any{"view": s.viewWire(vr, nil)}, nil
}
