package approvals_test

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/mock"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite/sqlitetest"
)

// The people and Cloud PCs of the workflow tests.
const (
	a1    = "U0A1"    // approver whose Entra username is configured (upn1)
	a2    = "U0A2"    // approver checked against their profile email (email2)
	alice = "U0ALICE" // the requester
	bob   = "U0BOB"   // neither
	ops   = "C0OPS"

	upn1   = "a1@contoso.com"
	email2 = "a2@contoso.com"

	pc1 = "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a51"
	pc2 = "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a52"
	pc3 = "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a53"

	// waitLimit bounds every wait for background work.
	waitLimit = 10 * time.Second
)

// harness runs a Workflow over the real SQLite store (behind a spy that can
// inject failures and hold the scheduler) with the mock ports, and records
// everything the workflow did through them.
type harness struct {
	t      *testing.T
	cfg    approvals.Config
	store  *spyStore
	w      *approvals.Workflow
	graph  *fakeGraph
	notes  *recorder
	signIn *fakeSignIns
}

type option func(*approvals.Config)

func withTrackFor(d time.Duration) option { return func(c *approvals.Config) { c.TrackFor = d } }
func withSignInTTL(d time.Duration) option {
	return func(c *approvals.Config) { c.SignInTTL = d }
}
func withApprovalTTL(d time.Duration) option {
	return func(c *approvals.Config) { c.Policy.ApprovalTTL = d }
}

func newHarness(t *testing.T, opts ...option) *harness {
	t.Helper()
	db, err := sqlite.Open(sqlitetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h := &harness{t: t, store: &spyStore{Store: db}, graph: newFakeGraph(), notes: newRecorder()}
	h.signIn = &fakeSignIns{h: h}
	h.cfg = approvals.Config{
		Policy:          approvals.Policy{Approvers: []string{a1, a2}, ApprovalTTL: 24 * time.Hour},
		ApproverUPNs:    map[string]string{a1: upn1},
		Store:           h.store,
		SignIns:         h.signIn.port(),
		Notices:         h.notes.port(),
		AllowedStatuses: []string{"provisioned", "failed"},
		TrackEvery:      5 * time.Millisecond,
		ShutdownGrace:   time.Second,
		Logger:          testLogger(),
	}
	for _, o := range opts {
		o(&h.cfg)
	}
	h.start()
	return h
}

// testLogger formats every log line of the workflow (so that the values it
// logs are exercised) and discards them, unless REPROVISION_TEST_LOG is set.
func testLogger() *slog.Logger {
	var out io.Writer = io.Discard
	if os.Getenv("REPROVISION_TEST_LOG") != "" {
		out = os.Stderr
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start runs a new Workflow over the harness's store, as a process starting.
func (h *harness) start() *approvals.Workflow {
	h.t.Helper()
	w, err := approvals.New(h.cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() {
		h.store.resumeScheduler()
		w.Stop()
	})
	w.Start(context.Background())
	h.w = w
	h.drain()
	return w
}

// drain waits (a few seconds at most) until the outbox has nothing due now:
// what Start queued has been delivered or postponed by the outbox loop.
// Callers assert what was delivered.
func (h *harness) drain() {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		due, err := h.store.Store.Due(context.Background(), time.Now(), "", 1)
		if err == nil && len(due) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// restart stops the workflow and starts another over the same store: what
// it kept in memory (sign-ins) is gone.
func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.start()
}

// stop stops the workflow and waits for its background work, so that what
// the ports recorded is final.
func (h *harness) stop() {
	h.store.resumeScheduler()
	h.w.Stop()
}

// waitFor polls cond until it holds, failing the test after waitLimit.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s\n%s", what, h.dump())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitClosed waits for a fake to signal that it got where the test needs it.
func (h *harness) waitClosed(ch <-chan struct{}, what string) {
	h.t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		h.t.Fatalf("timed out waiting for %s\n%s", what, h.dump())
	}
}

// get reads a request from the store.
func (h *harness) get(ref string) *approvals.Request {
	h.t.Helper()
	r, err := h.store.Get(context.Background(), ref)
	if err != nil {
		h.t.Fatalf("get %s: %v", ref, err)
	}
	return r
}

// waitState waits until ref is in state and returns it.
func (h *harness) waitState(ref string, state approvals.State) *approvals.Request {
	h.t.Helper()
	var r *approvals.Request
	h.waitFor(fmt.Sprintf("%s to be %s", ref, state), func() bool {
		got, err := h.store.Get(context.Background(), ref)
		if err == nil && got.State == state {
			r = got
			return true
		}
		return false
	})
	return r
}

// open asks for a reprovision of target as alice and opens it.
func (h *harness) open(target string) *approvals.Request {
	h.t.Helper()
	return h.openBy(alice, target)
}

func (h *harness) openBy(user, target string) *approvals.Request {
	h.t.Helper()
	r, err := h.w.NewRequest(user, ops, target, "screen stays black")
	if err != nil {
		h.t.Fatalf("NewRequest(%s): %v", target, err)
	}
	if err := h.w.Open(context.Background(), r); err != nil {
		h.t.Fatalf("Open(%s): %v", target, err)
	}
	return h.get(r.ID)
}

// approve has approver approve ref (not final) and waits for the final
// confirmation to be asked, returning the request as asked.
func (h *harness) approve(approver, ref string) *approvals.Request {
	h.t.Helper()
	before := len(h.notes.askedFor(ref))
	if _, err := h.w.Approve(context.Background(), approver, ref, false); err != nil {
		h.t.Fatalf("Approve(%s, %s): %v", approver, ref, err)
	}
	return h.waitAsked(ref, before+1)
}

// waitAsked waits for the n-th final confirmation asked for ref.
func (h *harness) waitAsked(ref string, n int) *approvals.Request {
	h.t.Helper()
	var asked []approvals.Request
	h.waitFor(fmt.Sprintf("confirmation %d of %s", n, ref), func() bool {
		asked = h.notes.askedFor(ref)
		return len(asked) >= n
	})
	return &asked[n-1]
}

// confirm approves ref as approver, confirms, and waits for the request to
// reach state.
func (h *harness) confirm(approver, ref string, state approvals.State) *approvals.Request {
	h.t.Helper()
	if _, err := h.w.Confirm(context.Background(), approver, ref, ""); err != nil {
		h.t.Fatalf("Confirm(%s, %s): %v", approver, ref, err)
	}
	return h.waitState(ref, state)
}

// confirmWhenFree confirms ref, again while the workflow answers that the
// worker of an earlier confirmation of it has not let go yet.
func (h *harness) confirmWhenFree(approver, ref string) {
	h.t.Helper()
	h.waitFor("the confirmation to be taken", func() bool {
		_, err := h.w.Confirm(context.Background(), approver, ref, "")
		var refusal *approvals.Refusal
		if errors.As(err, &refusal) && refusal.Kind == approvals.RefusedBusy {
			return false
		}
		if err != nil {
			h.t.Fatalf("Confirm(%s, %s) = %v", approver, ref, err)
		}
		return true
	})
}

// events is the audit trail of ref, in order.
func (h *harness) events(ref string) []approvals.Event {
	h.t.Helper()
	all, err := h.store.Events(context.Background(), time.Time{})
	if err != nil {
		h.t.Fatal(err)
	}
	return slices.DeleteFunc(all, func(e approvals.Event) bool { return e.RequestID != ref })
}

// eventsOf is the audit records of ref of one kind.
func (h *harness) eventsOf(ref string, kind approvals.EventKind) []approvals.Event {
	h.t.Helper()
	return slices.DeleteFunc(h.events(ref), func(e approvals.Event) bool { return e.Kind != kind })
}

// kinds lists the event kinds of ref's trail, without the Graph calls.
func (h *harness) kinds(ref string) []approvals.EventKind {
	var out []approvals.EventKind
	for _, e := range h.events(ref) {
		if e.Kind != approvals.EventGraphCall {
			out = append(out, e.Kind)
		}
	}
	return out
}

// wantKinds checks that ref's trail (without Graph calls) is exactly want.
func (h *harness) wantKinds(ref string, want ...approvals.EventKind) {
	h.t.Helper()
	if got := h.kinds(ref); !slices.Equal(got, want) {
		h.t.Errorf("audit trail of %s:\n got %v\nwant %v", ref, got, want)
	}
}

// wantRefusal checks that err is a *Refusal of kind want and returns it.
func wantRefusal(t *testing.T, err error, want approvals.RefusalKind) *approvals.Refusal {
	t.Helper()
	var r *approvals.Refusal
	if !errors.As(err, &r) {
		t.Fatalf("got %v, want a %s refusal", err, want)
	}
	if r.Kind != want {
		t.Fatalf("refusal %s (%v), want %s", r.Kind, r, want)
	}
	return r
}

// wantRefusedClick checks that user's refused click on ref is in the audit
// trail with its action and kind.
func (h *harness) wantRefusedClick(ref, user string, action approvals.Action, why approvals.RefusalKind) {
	h.t.Helper()
	for _, e := range h.eventsOf(ref, approvals.EventRefusedClick) {
		if e.Actor == user && e.Details["action"] == string(action) && e.Details["why"] == string(why) {
			return
		}
	}
	h.t.Errorf("no refused_click of %s by %s (%s, %s) in %v", ref, user, action, why, h.eventsOf(ref, approvals.EventRefusedClick))
}

// wantOutcome checks the request's outcome kind (and Graph kind, if any).
func wantOutcome(t *testing.T, r *approvals.Request, kind approvals.OutcomeKind, graph approvals.GraphErrorKind) {
	t.Helper()
	if r.Outcome == nil {
		t.Fatalf("%s (%s) has no outcome, want %s", r.ID, r.State, kind)
	}
	if r.Outcome.Kind != kind {
		t.Errorf("%s outcome %s, want %s", r.ID, r.Outcome.Kind, kind)
	}
	switch {
	case graph == "" && r.Outcome.Graph != nil:
		t.Errorf("%s outcome carries a Graph error %v", r.ID, r.Outcome.Graph)
	case graph != "" && (r.Outcome.Graph == nil || r.Outcome.Graph.Kind != graph):
		t.Errorf("%s outcome Graph %v, want kind %s", r.ID, r.Outcome.Graph, graph)
	}
}

func (h *harness) dump() string {
	var b strings.Builder
	h.notes.mu.Lock()
	fmt.Fprintf(&b, "tells: %+v\n", h.notes.tells)
	var states []string
	for _, u := range h.notes.updates {
		states = append(states, u.ID+":"+string(u.State))
	}
	fmt.Fprintf(&b, "prompt updates: %v\n", states)
	fmt.Fprintf(&b, "progress: %+v\n", h.notes.progress)
	h.notes.mu.Unlock()
	fmt.Fprintf(&b, "sign-ins: %+v\n", h.signIn.calls())
	fmt.Fprintf(&b, "graph: gets %d, resolves %d, reprovisions %v\n", h.graph.getCount(), h.graph.resolveCount(), h.graph.reprovisioned())
	return b.String()
}

// ---- notices ----

// told is one Notices.Tell.
type told struct {
	User     string
	Kind     approvals.NoticeKind
	Ref      string
	State    approvals.State
	Why      *approvals.Outcome
	Accepted bool
	// Member is the batch member it is about (nil for none);
	// TrackingActive: the request was still followed.
	Member         *approvals.Member
	TrackingActive bool
}

// progressed is one Notices.Progress.
type progressed struct {
	Ref    string
	Kind   approvals.ProgressKind
	Status string
	Result string
	Every  time.Duration
	Member *approvals.Member
}

// codeShown is one Notices.SignInCode.
type codeShown struct {
	Approver string
	Why      approvals.SignInPurpose
	Ref      string
	Code     string
}

// recorder is the notices port: it records what people were shown.
type recorder struct {
	mu       sync.Mutex
	posted   []approvals.Request
	updates  []approvals.Request
	tells    []told
	progress []progressed
	codes    []codeShown
	asked    []approvals.Request

	// What the chat side does.
	noPrompts bool                       // PostPrompts reaches nobody
	onPost    func(r *approvals.Request) // runs inside PostPrompts
	askErr    error                      // AskToConfirm fails
	codeErr   error                      // SignInCode fails
	emails    map[string]string          // profile emails
	emailErr  error
	chatUsers map[string]string // chat user ID by email (the Cloud PC's user)
	chatErr   error             // ChatUserByEmail fails
	tellErr   error             // Tell fails (after recording what was to be told)
	tellHangs bool              // Tell waits for its context to end (after recording)
	postErr   error             // PostPrompts fails with this (after recording)
	updateErr error             // UpdatePrompts fails (after recording)
}

func newRecorder() *recorder {
	return &recorder{emails: map[string]string{a2: email2}}
}

func (n *recorder) port() *mock.Notices {
	return &mock.Notices{
		PostPromptsFn: func(ctx context.Context, r *approvals.Request, to []string) ([]approvals.MessageRef, error) {
			n.mu.Lock()
			sent := *r
			sent.Approvers = to // who it went to
			n.posted = append(n.posted, sent)
			hook, none := n.onPost, n.noPrompts
			n.mu.Unlock()
			if hook != nil {
				hook(r)
			}
			if none {
				return nil, errors.New("slack: 503 Service Unavailable")
			}
			n.mu.Lock()
			postErr := n.postErr
			n.mu.Unlock()
			if postErr != nil {
				return nil, postErr
			}
			var refs []approvals.MessageRef
			for i, a := range to {
				refs = append(refs, approvals.MessageRef{ChannelID: "D" + a, TS: fmt.Sprintf("1700000000.%06d", i), UserID: a})
			}
			return refs, nil
		},
		UpdatePromptsFn: func(ctx context.Context, r *approvals.Request) error {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.updates = append(n.updates, *r)
			return n.updateErr
		},
		TellFn: func(ctx context.Context, user string, notice approvals.Notice) error {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.tells = append(n.tells, told{User: user, Kind: notice.Kind, Ref: notice.Request.ID, State: notice.Request.State,
				Why: notice.Why, Accepted: notice.Accepted, Member: notice.Member, TrackingActive: notice.Request.Tracking.Active()})
			if n.tellHangs {
				n.mu.Unlock()
				<-ctx.Done()
				n.mu.Lock()
				return ctx.Err()
			}
			return n.tellErr
		},
		ProgressFn: func(ctx context.Context, r *approvals.Request, p approvals.Progress) error {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.progress = append(n.progress, progressed{Ref: r.ID, Kind: p.Kind, Status: p.Status, Result: r.Tracking.Result, Every: p.Every, Member: p.Member})
			return nil
		},
		SignInCodeFn: func(ctx context.Context, approver string, why approvals.SignInPurpose, r *approvals.Request, code approvals.DeviceCode) error {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.codeErr != nil {
				return n.codeErr
			}
			n.codes = append(n.codes, codeShown{Approver: approver, Why: why, Ref: r.ID, Code: code.UserCode})
			return nil
		},
		AskToConfirmFn: func(ctx context.Context, r *approvals.Request) error {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.asked = append(n.asked, *r)
			return n.askErr
		},
		ProfileEmailFn: func(ctx context.Context, user string) (string, error) {
			n.mu.Lock()
			defer n.mu.Unlock()
			return n.emails[user], n.emailErr
		},
		ChatUserByEmailFn: func(ctx context.Context, email string) (string, error) {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.chatErr != nil {
				return "", n.chatErr
			}
			if id, ok := n.chatUsers[email]; ok {
				return id, nil
			}
			return "", approvals.ErrNoChatAccount
		},
	}
}

func (n *recorder) set(f func(n *recorder)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f(n)
}

// approverFor is whom a device code was shown to.
func (n *recorder) approverFor(code string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.codes {
		if c.Code == code {
			return c.Approver
		}
	}
	return ""
}

func (n *recorder) codesFor(ref string) []codeShown {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(n.codes), func(c codeShown) bool { return c.Ref != ref })
}

func (n *recorder) postedFor(ref string) []approvals.Request {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(n.posted), func(r approvals.Request) bool { return r.ID != ref })
}

func (n *recorder) askedFor(ref string) []approvals.Request {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(n.asked), func(r approvals.Request) bool { return r.ID != ref })
}

func (n *recorder) updatesOf(ref string) []approvals.Request {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(n.updates), func(r approvals.Request) bool { return r.ID != ref })
}

// promptStates lists the states ref's prompts were redrawn with, in order.
func (n *recorder) promptStates(ref string) []approvals.State {
	var out []approvals.State
	for _, r := range n.updatesOf(ref) {
		out = append(out, r.State)
	}
	return out
}

// lastPrompt is ref's prompt as last redrawn.
func (n *recorder) lastPrompt(t *testing.T, ref string) approvals.Request {
	t.Helper()
	u := n.updatesOf(ref)
	if len(u) == 0 {
		t.Fatalf("prompts of %s never redrawn", ref)
	}
	return u[len(u)-1]
}

// tellsOf lists what was told about ref, in order.
func (n *recorder) tellsOf(ref string) []told {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(n.tells), func(x told) bool { return x.Ref != ref })
}

// toldWhom lists "user:kind:state" for each notice about ref, in order.
func (n *recorder) toldWhom(ref string) []string {
	var out []string
	for _, x := range n.tellsOf(ref) {
		out = append(out, fmt.Sprintf("%s:%s:%s", x.User, x.Kind, x.State))
	}
	return out
}

func (n *recorder) progressOf(ref string) []progressed {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(n.progress), func(p progressed) bool { return p.Ref != ref })
}

// wantTold checks exactly who was told what about ref ("user:kind:state").
func (h *harness) wantTold(ref string, want ...string) {
	h.t.Helper()
	if got := h.notes.toldWhom(ref); !slices.Equal(got, want) {
		h.t.Errorf("notices about %s:\n got %q\nwant %q", ref, got, want)
	}
}

func note(user string, kind approvals.NoticeKind, state approvals.State) string {
	return fmt.Sprintf("%s:%s:%s", user, kind, state)
}

// ---- sign-ins ----

// signInBehaviour is how one sign-in goes, for the approver shown the code.
type signInBehaviour func(ctx context.Context, approver string) (*approvals.Session, error)

type signInCall struct {
	Claims   string
	Approver string
}

// fakeSignIns is the sign-in port: it shows a code through the workflow's
// callback, then behaves as queued (default: the approver signs in as
// themselves).
type fakeSignIns struct {
	h     *harness
	mu    sync.Mutex
	log   []signInCall
	queue []signInBehaviour
}

func (s *fakeSignIns) port() *mock.SignIns {
	return &mock.SignIns{SignInFn: func(ctx context.Context, claims string, showCode func(context.Context, approvals.DeviceCode) error) (*approvals.Session, error) {
		s.mu.Lock()
		s.log = append(s.log, signInCall{Claims: claims})
		i := len(s.log) - 1
		s.mu.Unlock()
		code := fmt.Sprintf("CODE-%p-%d", s, i)
		if err := showCode(ctx, approvals.DeviceCode{UserCode: code, VerificationURL: "https://microsoft.com/devicelogin",
			ExpiresAt: time.Now().Add(15 * time.Minute)}); err != nil {
			return nil, err
		}
		approver := s.h.notes.approverFor(code)
		s.mu.Lock()
		s.log[i].Approver = approver
		var behave signInBehaviour
		if len(s.queue) > 0 {
			behave, s.queue = s.queue[0], s.queue[1:]
		}
		s.mu.Unlock()
		if behave == nil {
			return s.h.session(approver, s.h.upnOf(approver)), nil
		}
		return behave(ctx, approver)
	}}
}

// next queues how the next sign-ins go.
func (s *fakeSignIns) next(b ...signInBehaviour) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queue = append(s.queue, b...)
}

func (s *fakeSignIns) calls() []signInCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

func (s *fakeSignIns) count() int { return len(s.calls()) }

func (h *harness) upnOf(approver string) string {
	switch approver {
	case a1:
		return upn1
	case a2:
		return email2
	}
	return strings.ToLower(approver) + "@contoso.com"
}

// session is a sign-in as username; its Graph calls go to the fake Graph.
func (h *harness) session(approver, username string) *approvals.Session {
	return &approvals.Session{Username: username, CloudPCs: h.graph.port(username)}
}

// signInAs: the code is used by someone signing in as username.
func (h *harness) signInAs(username string) signInBehaviour {
	return func(ctx context.Context, approver string) (*approvals.Session, error) {
		return h.session(approver, username), nil
	}
}

// signInFails: the sign-in ends with err.
func signInFails(err error) signInBehaviour {
	return func(ctx context.Context, approver string) (*approvals.Session, error) { return nil, err }
}

// signInWaits: the approver signs in when release is closed; the sign-in
// is abandoned if ctx ends first. started is closed when it waits.
func (h *harness) signInWaits(started, release chan struct{}) signInBehaviour {
	return func(ctx context.Context, approver string) (*approvals.Session, error) {
		close(started)
		select {
		case <-release:
			return h.session(approver, h.upnOf(approver)), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ---- Graph ----

// holdGet makes the n-th Get (from 1) wait until release is closed (or its
// context ends); the returned channel is closed when it starts waiting.
func (h *harness) holdGet(n int, release <-chan struct{}) <-chan struct{} {
	waiting := make(chan struct{})
	h.graph.set(func(g *fakeGraph) {
		g.onGet = func(ctx context.Context, got int, _ string) (*approvals.CloudPC, error) {
			if got == n {
				close(waiting)
				select { // or the test gave up
				case <-release:
				case <-ctx.Done():
				}
			}
			return nil, nil
		}
	})
	return waiting
}

// getHook may answer a Get instead of the fake's Cloud PCs: n counts the
// Gets so far (from 1). A nil CloudPC and nil error: answer as usual.
type getHook func(ctx context.Context, n int, id string) (*approvals.CloudPC, error)

// fakeGraph is Microsoft Graph behind the Cloud PC port: a few Cloud PCs,
// name look-ups, and a record of every call.
type fakeGraph struct {
	mu  sync.Mutex
	pcs map[string]approvals.CloudPC
	// afterPOST are the statuses Gets read once a reprovision was sent,
	// one per Get; the last one stays.
	afterPOST []string
	resolve   map[string][]approvals.CloudPC
	actions   []approvals.RemoteAction

	onGet         getHook
	onResolve     func(target string) error
	onReprovision func(ctx context.Context, id string) error
	onActions     func(n int) ([]approvals.RemoteAction, error)

	// statusAfterPOST, when set, is the status policy lists read once a
	// reprovision was sent.
	statusAfterPOST func(id string) string

	gets, resolves, actionReads, policyLists int
	posts                                    []string // "id by username"
	postOptions                              []approvals.Options
	seq                                      int
}

func newFakeGraph() *fakeGraph {
	g := &fakeGraph{pcs: map[string]approvals.CloudPC{}, resolve: map[string][]approvals.CloudPC{}}
	for i, id := range []string{pc1, pc2, pc3} {
		g.pcs[id] = approvals.CloudPC{
			ID: id, DisplayName: fmt.Sprintf("Alice's PC %d", i+1), UserPrincipalName: "alice@contoso.com",
			ManagedDeviceName: fmt.Sprintf("CPC-alice-0%d", i+1), ServicePlanName: "Cloud PC Enterprise 2vCPU/8GB/128GB",
			ProvisioningPolicyName: "Engineering", Status: "provisioned",
		}
	}
	return g
}

func (g *fakeGraph) set(f func(g *fakeGraph)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f(g)
}

// pc is one of the fake's Cloud PCs.
func (g *fakeGraph) pc(id string) approvals.CloudPC {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pcs[id]
}

func (g *fakeGraph) setStatus(id, status string) {
	g.set(func(g *fakeGraph) {
		pc := g.pcs[id]
		pc.Status = status
		g.pcs[id] = pc
	})
}

func (g *fakeGraph) getCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gets
}

func (g *fakeGraph) resolveCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.resolves
}

func (g *fakeGraph) actionCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.actionReads
}

// reprovisioned lists the reprovision calls as "id by username".
func (g *fakeGraph) reprovisioned() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.posts)
}

// policyOf is the provisioning policy of a fake Cloud PC: named by its
// policy name, with an id made from it.
func policyOf(pc approvals.CloudPC) approvals.ProvisioningPolicy {
	return approvals.ProvisioningPolicy{ID: fmt.Sprintf("%08x-0000-4000-8000-000000000001", crc32.ChecksumIEEE([]byte(pc.ProvisioningPolicyName))), DisplayName: pc.ProvisioningPolicyName}
}

// call records one Graph call with one attempt, answered as err says.
func (g *fakeGraph) call(method, path string, err error) approvals.GraphCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.callLocked(method, path, err)
}

func (g *fakeGraph) callLocked(method, path string, err error) approvals.GraphCall {
	g.seq++
	n := g.seq
	a := approvals.GraphAttempt{At: time.Now(), Status: 200, ClientRequestID: fmt.Sprintf("crid-%d", n), RequestID: fmt.Sprintf("rid-%d", n)}
	if method == "POST" {
		a.Status = 204
	}
	var ge *approvals.GraphError
	if errors.As(err, &ge) {
		a.Status = ge.Status
		if ge.RequestID != "" {
			a.RequestID = ge.RequestID
		}
		if ge.Status == 0 {
			a.Err, a.RequestID = ge.Error(), ""
		}
	} else if err != nil {
		a.Status, a.Err, a.RequestID = 0, err.Error(), ""
	}
	return approvals.GraphCall{Method: method, Path: path, Attempts: []approvals.GraphAttempt{a}}
}

func (g *fakeGraph) port(username string) *mock.CloudPCs {
	return &mock.CloudPCs{
		GetFn: func(ctx context.Context, id string) (approvals.CloudPC, approvals.GraphCall, error) {
			g.mu.Lock()
			g.gets++
			n, hook := g.gets, g.onGet
			pc, ok := g.pcs[id]
			if len(g.posts) > 0 && len(g.afterPOST) > 0 {
				pc.Status = g.afterPOST[0]
				if len(g.afterPOST) > 1 {
					g.afterPOST = g.afterPOST[1:]
				}
			}
			g.mu.Unlock()
			path := "/deviceManagement/virtualEndpoint/cloudPCs/" + id
			if hook != nil {
				override, err := hook(ctx, n, id)
				if err != nil {
					return approvals.CloudPC{}, g.call("GET", path, err), err
				}
				if override != nil {
					return *override, g.call("GET", path, nil), nil
				}
			}
			if !ok {
				err := &approvals.GraphError{Kind: approvals.GraphNotFound, Cause: approvals.CauseNotFound, Method: "GET", Status: 404, Code: "ResourceNotFound"}
				return approvals.CloudPC{}, g.call("GET", path, err), err
			}
			return pc, g.call("GET", path, nil), nil
		},
		ResolveFn: func(ctx context.Context, target string) ([]approvals.CloudPC, []approvals.GraphCall, error) {
			g.mu.Lock()
			g.resolves++
			found, hook := slices.Clone(g.resolve[target]), g.onResolve
			g.mu.Unlock()
			path := "/deviceManagement/virtualEndpoint/cloudPCs"
			if hook != nil {
				if err := hook(target); err != nil {
					return nil, []approvals.GraphCall{g.call("GET", path, err)}, err
				}
			}
			return found, []approvals.GraphCall{g.call("GET", path, nil)}, nil
		},
		ReprovisionFn: func(ctx context.Context, id string, opts approvals.Options) (approvals.GraphCall, error) {
			g.mu.Lock()
			g.posts = append(g.posts, id+" by "+username)
			g.postOptions = append(g.postOptions, opts)
			hook := g.onReprovision
			g.mu.Unlock()
			var err error
			if hook != nil {
				err = hook(ctx, id)
			}
			return g.call("POST", "/deviceManagement/virtualEndpoint/cloudPCs/"+id+"/reprovision", err), err
		},
		FindPolicyFn: func(ctx context.Context, policy string) (approvals.ProvisioningPolicy, approvals.GraphCall, error) {
			path := "/deviceManagement/virtualEndpoint/provisioningPolicies"
			g.mu.Lock()
			defer g.mu.Unlock()
			for _, pc := range g.pcs {
				if p := policyOf(pc); p.ID == policy || p.DisplayName == policy {
					return p, g.callLocked("GET", path, nil), nil
				}
			}
			err := &approvals.GraphError{Kind: approvals.GraphNotFound, Cause: approvals.CauseNotFound, Method: "GET", Status: 404}
			return approvals.ProvisioningPolicy{}, g.callLocked("GET", path, err), err
		},
		PolicyCloudPCsFn: func(ctx context.Context, policyID string) ([]approvals.CloudPC, []approvals.GraphCall, error) {
			g.mu.Lock()
			g.policyLists++
			var found []approvals.CloudPC
			for _, pc := range g.pcs {
				if policyOf(pc).ID == policyID {
					if len(g.posts) > 0 && g.statusAfterPOST != nil {
						pc.Status = g.statusAfterPOST(pc.ID)
					}
					found = append(found, pc)
				}
			}
			g.mu.Unlock()
			return found, []approvals.GraphCall{g.call("GET", "/deviceManagement/virtualEndpoint/cloudPCs", nil)}, nil
		},
		RemoteActionsFn: func(ctx context.Context, id string) ([]approvals.RemoteAction, approvals.GraphCall, error) {
			g.mu.Lock()
			g.actionReads++
			n, hook, actions := g.actionReads, g.onActions, slices.Clone(g.actions)
			g.mu.Unlock()
			path := "/deviceManagement/virtualEndpoint/cloudPCs/" + id + "/retrieveCloudPcRemoteActionResults"
			if hook != nil {
				got, err := hook(n)
				return got, g.call("GET", path, err), err
			}
			return actions, g.call("GET", path, nil), nil
		},
	}
}

// ---- store ----

// spyStore is the real SQLite store with two test hooks: failures injected
// per operation, and a gate that holds the scheduler's next pass.
type spyStore struct {
	approvals.Store
	mu     sync.Mutex
	fail   func(op string, to approvals.State) error
	gate   chan struct{}
	failed map[string]int // failures injected, by op
}

func (s *spyStore) failing(op string, to approvals.State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail == nil {
		return nil
	}
	err := s.fail(op, to)
	if err != nil {
		if s.failed == nil {
			s.failed = map[string]int{}
		}
		s.failed[op]++
	}
	return err
}

// failures is how many times op was made to fail.
func (s *spyStore) failures(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed[op]
}

// failOps makes the given operations fail.
func (s *spyStore) failOps(ops ...string) {
	s.failWhen(func(op string, _ approvals.State) error {
		if slices.Contains(ops, op) {
			return errStoreDown
		}
		return nil
	})
}

// failWhen makes the store fail the operations f returns an error for
// (op: create, transition, update, enqueue, delivered, postpone, record,
// list, list_tracking, open_for).
func (s *spyStore) failWhen(f func(op string, to approvals.State) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = f
}

// pauseScheduler holds the scheduler's next pass (its list of undecided
// requests) until resumeScheduler: a pass that started before still
// finishes, with what it saw then.
func (s *spyStore) pauseScheduler() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate == nil {
		s.gate = make(chan struct{})
	}
}

func (s *spyStore) resumeScheduler() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
}

var errStoreDown = errors.New("disk I/O error")

func (s *spyStore) Create(ctx context.Context, r *approvals.Request) error {
	if err := s.failing("create", ""); err != nil {
		return err
	}
	return s.Store.Create(ctx, r)
}

func (s *spyStore) Transition(ctx context.Context, id string, to approvals.State, update func(*approvals.Request)) (*approvals.Request, error) {
	if err := s.failing("transition", to); err != nil {
		return nil, err
	}
	return s.Store.Transition(ctx, id, to, update)
}

func (s *spyStore) TransitionFrom(ctx context.Context, id string, from []approvals.State, to approvals.State, update func(*approvals.Request)) (*approvals.Request, error) {
	if err := s.failing("transition", to); err != nil {
		return nil, err
	}
	return s.Store.TransitionFrom(ctx, id, from, to, update)
}

func (s *spyStore) Update(ctx context.Context, id string, update func(*approvals.Request)) (*approvals.Request, error) {
	if err := s.failing("update", ""); err != nil {
		return nil, err
	}
	return s.Store.Update(ctx, id, update)
}

func (s *spyStore) Apply(ctx context.Context, id string, c approvals.Change) (*approvals.Request, error) {
	op := "transition"
	if c.To == "" {
		op = "update"
	}
	if err := s.failing(op, c.To); err != nil {
		return nil, err
	}
	return s.Store.Apply(ctx, id, c)
}

func (s *spyStore) Delivered(ctx context.Context, o approvals.Outgoing) error {
	if err := s.failing("delivered", ""); err != nil {
		return err
	}
	return s.Store.Delivered(ctx, o)
}

func (s *spyStore) Postpone(ctx context.Context, o approvals.Outgoing, at time.Time, why string) error {
	if err := s.failing("postpone", ""); err != nil {
		return err
	}
	return s.Store.Postpone(ctx, o, at, why)
}

func (s *spyStore) Enqueue(ctx context.Context, entries ...approvals.Outgoing) error {
	if err := s.failing("enqueue", ""); err != nil {
		return err
	}
	return s.Store.Enqueue(ctx, entries...)
}

func (s *spyStore) Record(ctx context.Context, e approvals.Event) error {
	if err := s.failing("record", ""); err != nil {
		return err
	}
	return s.Store.Record(ctx, e)
}

func (s *spyStore) OpenFor(ctx context.Context, cloudPCID string) (*approvals.Request, error) {
	if err := s.failing("open_for", ""); err != nil {
		return nil, err
	}
	return s.Store.OpenFor(ctx, cloudPCID)
}

func (s *spyStore) ListByState(ctx context.Context, states ...approvals.State) ([]*approvals.Request, error) {
	if err := s.failing("list", ""); err != nil {
		return nil, err
	}
	return s.Store.ListByState(ctx, states...)
}

// ListExpiringBefore is the scheduler's first call of a pass: the gate
// holds it here.
func (s *spyStore) ListExpiringBefore(ctx context.Context, before time.Time, states ...approvals.State) ([]*approvals.Request, error) {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err := s.failing("list", ""); err != nil {
		return nil, err
	}
	return s.Store.ListExpiringBefore(ctx, before, states...)
}

func (s *spyStore) ListTracking(ctx context.Context) ([]*approvals.Request, error) {
	if err := s.failing("list_tracking", ""); err != nil {
		return nil, err
	}
	return s.Store.ListTracking(ctx)
}

// seed stores a request as a previous process left it: created pending,
// then moved through the states given (each update applied on the way).
func (h *harness) seed(target string, update func(*approvals.Request), through ...approvals.State) *approvals.Request {
	h.t.Helper()
	ctx := context.Background()
	r := h.cfg.Policy.NewRequest(time.Now(), alice, ops, target, "seeded")
	if err := h.store.Store.Create(ctx, r); err != nil {
		h.t.Fatal(err)
	}
	for i, s := range through {
		var u func(*approvals.Request)
		if i == len(through)-1 {
			u = update
		}
		var err error
		if r, err = h.store.Store.Transition(ctx, r.ID, s, u); err != nil {
			h.t.Fatal(err)
		}
	}
	if len(through) == 0 && update != nil {
		var err error
		if r, err = h.store.Store.Update(ctx, r.ID, update); err != nil {
			h.t.Fatal(err)
		}
	}
	return r
}

// graphErr is a Graph error of kind with an HTTP status and request-id.
func graphErr(kind approvals.GraphErrorKind, cause approvals.GraphCause, status int) *approvals.GraphError {
	return &approvals.GraphError{Kind: kind, Cause: cause, Method: "POST", Status: status,
		Code: fmt.Sprintf("Code%d", status), RequestID: fmt.Sprintf("graph-rid-%d", status)}
}
