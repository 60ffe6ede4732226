package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// batchTests: requests for many Cloud PCs (approvals.Batch), and one
// holder per Cloud PC across single requests and batch members
// (Request.HeldCloudPCs).
var batchTests = []test{
	{"BatchRoundTripsEveryField", testBatchRoundTripsEveryField},
	{"BatchKeepsNilApartFromEmpty", testBatchKeepsNilApartFromEmpty},
	{"BatchMembersBlockSingleRequests", testBatchMembersBlockSingleRequests},
	{"SingleRequestBlocksBatchMember", testSingleRequestBlocksBatchMember},
	{"BatchMemberLetsGo", testBatchMemberLetsGo},
	{"BatchStateLetsGo", testBatchStateLetsGo},
	{"BatchAskIsFixed", testBatchAskIsFixed},
	{"BatchSwapRefused", testBatchSwapRefused},
}

// newBatch returns a pending batch of the Cloud PCs, each a member
// waiting (so holding it), named by its id.
func newBatch(pcs ...string) *approvals.Request {
	r := newRequest()
	r.Target, r.CloudPCID = fmt.Sprintf("%d Cloud PCs", len(pcs)), ""
	r.Batch = &approvals.Batch{Targets: pcs}
	for _, pc := range pcs {
		r.Batch.Members = append(r.Batch.Members, approvals.Member{Target: pc, CloudPCID: pc, Result: approvals.MemberWaiting})
	}
	return r
}

// singleFor returns a pending single request for the Cloud PC.
func singleFor(pc string) *approvals.Request {
	r := newRequest()
	r.Target, r.CloudPCID = pc, pc
	return r
}

// fullBatch sets every field of a batch request (but CloudPCID, which a
// batch has not, and Policy, as it names Cloud PCs), to values that tempt a
// careless encoder, in several time zones. Not a real combination: every
// field set, so that each is shown to survive the store.
func fullBatch() *approvals.Request {
	east := time.FixedZone("UTC+5", 5*3600)
	r := fullRequest()
	r.Target, r.CloudPCID = "3 Cloud PCs", ""
	member := func(n int, result approvals.MemberResult) approvals.Member {
		pc := fullCloudPC(n)
		return approvals.Member{
			Target:         pc.ManagedDeviceName,
			CloudPCID:      strings.ToUpper(pc.ID), // stored in lower case
			Device:         pc,
			Result:         result,
			Detail:         tricky,
			Other:          "R-ABCDEF",
			GraphCode:      "Conflict",
			GraphStatus:    409,
			GraphRequestID: fmt.Sprintf("g-%d", n),
			HeadsUp: approvals.HeadsUp{UserID: fmt.Sprintf("U%d", n), Result: approvals.HeadsUpSent,
				SendAt:        time.Date(2024, 3, 1, 0, 10, 0, 123456789, east),
				MoreTimeAsked: true, Postponed: true, SignInLost: true},
			Tracked: approvals.TrackProvisioned,
		}
	}
	members := []approvals.Member{member(1, approvals.MemberWaiting), member(2, approvals.MemberSent), member(3, approvals.MemberFailed)}
	r.Batch = &approvals.Batch{
		Targets:    []string{members[0].Target, members[1].Target, tricky},
		PolicyID:   "9b3c7f0e-1d2a-4c5b-8e6f-0a1b2c3d4e5f",
		PolicyName: tricky,
		Members:    members,
		Stopped:    true,
		StoppedBy:  "U2",
		Halted:     true,
	}
	return r
}

// testBatchRoundTripsEveryField: a batch comes back as it went in, every
// member's every field included, through Create and through Update; times
// in UTC to the store's precision, member ids in lower case, text inside
// the batch exactly.
func testBatchRoundTripsEveryField(t *testing.T, h *Harness) {
	s := h.open(t)
	r := fullBatch()
	checkEveryFieldSet(t, "Request", reflect.ValueOf(r), "Request.CloudPCID", "Request.Batch.Policy")
	callers := r.Batch
	mustCreate(t, s, r)
	if callers.Members[0].CloudPCID != strings.ToUpper(callers.Members[0].CloudPCID) {
		t.Error("Create changed the caller's Batch in place")
	}
	got := mustGet(t, s, r.ID)
	if !reflect.DeepEqual(got, r) {
		t.Errorf("Get = %+v\nwant  %+v", got.Batch, r.Batch)
	}
	for i, m := range got.Batch.Members {
		if m.CloudPCID != strings.ToLower(m.CloudPCID) {
			t.Errorf("member %d's CloudPCID stored as %q, want lower case", i, m.CloudPCID)
		}
		for name, pair := range map[string][2]time.Time{
			"Device.LastModified": {m.Device.LastModified, time.Date(2025, 3, 9, 9, 30, 0, 999999999, time.UTC)},
			"HeadsUp.SendAt":      {m.HeadsUp.SendAt, time.Date(2024, 2, 29, 19, 10, 0, 123456789, time.UTC)},
		} {
			if want := h.at(pair[1]); !pair[0].Equal(want) || pair[0].Location() != time.UTC {
				t.Errorf("member %d's %s = %v, want %v: lost precision or zone", i, name, pair[0], want)
			}
		}
		if m.Detail != tricky || m.Device.StatusDetails != tricky {
			t.Errorf("member %d's text = %q, %q; want %q", i, m.Detail, m.Device.StatusDetails, tricky)
		}
	}
	if got.Batch.Targets[2] != tricky || got.Batch.PolicyName != tricky {
		t.Errorf("batch text = %q, %q; want %q", got.Batch.Targets[2], got.Batch.PolicyName, tricky)
	}

	// Through Update: every member's result and facts change.
	west := time.FixedZone("UTC-7", -7*3600)
	updated := mustUpdate(t, s, r.ID, func(c *approvals.Request) {
		for i := range c.Batch.Members {
			m := &c.Batch.Members[i]
			m.Result, m.Detail, m.Tracked = approvals.MemberUnknown, "no answer", approvals.TrackTimedOut
			m.GraphCode, m.GraphStatus, m.GraphRequestID = "", 0, ""
			m.Device.Status, m.Device.LastModified = "provisioning", time.Date(2026, 1, 2, 3, 4, 5, 6, west)
			m.HeadsUp.SendAt = time.Date(2026, 1, 2, 3, 4, 5, 999, west)
		}
		c.Batch.Stopped, c.Batch.StoppedBy, c.Batch.Halted = false, "", false
		c.Batch.PolicyID, c.Batch.PolicyName = "", ""
	})
	if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, updated) {
		t.Errorf("Get = %+v\nUpdate returned %+v", stored.Batch, updated.Batch)
	}
	if m := updated.Batch.Members[1]; m.Result != approvals.MemberUnknown || m.GraphStatus != 0 ||
		!m.HeadsUp.SendAt.Equal(h.at(time.Date(2026, 1, 2, 10, 4, 5, 999, time.UTC))) {
		t.Errorf("member after Update: %+v", m)
	}

	// A batch by policy, looked up.
	p := newRequest()
	p.Target, p.CloudPCID = "Default", ""
	pc := fullCloudPC(4)
	p.Batch = &approvals.Batch{Policy: "Default", PolicyID: pc.ProvisioningPolicyID, PolicyName: "Default",
		Members: []approvals.Member{{CloudPCID: pc.ID, Device: pc, Result: approvals.MemberWaiting}}}
	mustCreate(t, s, p)
	if got := mustGet(t, s, p.ID); !reflect.DeepEqual(got, p) {
		t.Errorf("policy batch: Get = %+v\nwant  %+v", got.Batch, p.Batch)
	}
	// A single request stays one.
	if got := mustGet(t, s, mustCreate(t, s, newRequest()).ID); got.Batch != nil {
		t.Errorf("single request read with a batch: %+v", got.Batch)
	}
}

// testBatchKeepsNilApartFromEmpty: a policy batch not looked up yet (no
// members, nil) and one whose look-up found none (empty) stay apart, as do
// nil and empty targets.
func testBatchKeepsNilApartFromEmpty(t *testing.T, h *Harness) {
	s := h.open(t)
	for name, b := range map[string]*approvals.Batch{
		"nil":           {Policy: "Default"},
		"empty":         {Policy: "Default", Targets: []string{}, Members: []approvals.Member{}},
		"zero elements": {Targets: []string{"CPC-alice-01"}, Members: []approvals.Member{{}}},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRequest()
			r.Target, r.CloudPCID, r.Batch = "batch", "", b
			mustCreate(t, s, r)
			got := mustGet(t, s, r.ID)
			if !reflect.DeepEqual(got, r) {
				t.Errorf("Get = %#v\nwant  %#v", got.Batch, r.Batch)
			}
			if (got.Batch.Targets == nil) != (b.Targets == nil) || (got.Batch.Members == nil) != (b.Members == nil) {
				t.Errorf("nil and empty mixed up: targets %#v, members %#v", got.Batch.Targets, got.Batch.Members)
			}
		})
	}
}

// refusedHold checks that err is ErrOpenRequestExists, and that the
// request is as before and has nothing (more) in the outbox (optionally:
// how many entries it had).
func refusedHold(t *testing.T, s approvals.Store, what string, err error, before *approvals.Request, due ...int) {
	t.Helper()
	if !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("%s: %v, want ErrOpenRequestExists", what, err)
	}
	if stored := mustGet(t, s, before.ID); !reflect.DeepEqual(stored, before) {
		t.Errorf("%s: refused change stored: %+v", what, stored)
	}
	if got := dueNow(t, s, before.ID); len(got) != append(due, 0)[0] {
		t.Errorf("%s: refused change enqueued: %+v", what, got)
	}
}

// notifyRedraw asks for a redraw of the saved request.
func notifyRedraw(c *approvals.Request) []approvals.Outgoing {
	return []approvals.Outgoing{redrawOf(c.ID)}
}

// testBatchMembersBlockSingleRequests: a batch's members that hold their
// Cloud PC (waiting, sending, sent and followed) keep any other request
// from it: Create, and a target resolved to it by Update, Transition or
// Apply, are refused with ErrOpenRequestExists and save nothing, and
// OpenFor returns the batch. Members that hold nothing block nothing.
func testBatchMembersBlockSingleRequests(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	pcs := []string{uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString(), uuid.NewString()}
	b := newBatch(pcs...)
	b.Batch.Members[1].Result = approvals.MemberSending
	b.Batch.Members[2].Result = approvals.MemberSent // Tracked "": followed
	b.Batch.Members[3].Result = approvals.MemberSkipped
	b.Batch.Members[4].Result, b.Batch.Members[4].Other = approvals.MemberExcluded, "R-ABCDEF"
	mustCreate(t, s, b)
	openBefore := countOpen(t, s)

	for i, pc := range pcs[:3] {
		t.Run(fmt.Sprintf("held member %d", i), func(t *testing.T) {
			open, err := s.OpenFor(ctx, strings.ToUpper(pc))
			if err != nil || !reflect.DeepEqual(open, b) {
				t.Errorf("OpenFor(member %d) = %s, %v; want the batch %s", i, describe(open), err, b.ID)
			}
			single := singleFor(strings.ToUpper(pc))
			if err := s.Create(ctx, single); !errors.Is(err, approvals.ErrOpenRequestExists) {
				t.Errorf("Create for a member's Cloud PC: %v, want ErrOpenRequestExists", err)
			}
			if _, err := s.Get(ctx, single.ID); !errors.Is(err, approvals.ErrNotFound) {
				t.Errorf("refused Create stored the request: %v", err)
			}
			other := newBatch(uuid.NewString(), pc)
			if err := s.Create(ctx, other); !errors.Is(err, approvals.ErrOpenRequestExists) {
				t.Errorf("Create of another batch with a member's Cloud PC: %v, want ErrOpenRequestExists", err)
			}
			if _, err := s.OpenFor(ctx, other.Batch.Members[0].CloudPCID); !errors.Is(err, approvals.ErrNotFound) {
				t.Errorf("the refused batch's other Cloud PC is held: %v", err)
			}

			r := createIn(t, s, unresolved(), approvals.StateApproved)
			resolve := func(c *approvals.Request) {
				c.CloudPCID = strings.ToUpper(pc)
				c.Outcome = &approvals.Outcome{Kind: approvals.OutcomeNotRecorded}
			}
			_, err = s.Update(ctx, r.ID, resolve)
			refusedHold(t, s, "Update resolving to a member's Cloud PC", err, r)
			_, err = s.Transition(ctx, r.ID, approvals.StateConfirming, resolve)
			refusedHold(t, s, "Transition resolving to a member's Cloud PC", err, r)
			_, err = s.Apply(ctx, r.ID, approvals.Change{To: approvals.StateConfirming, Update: resolve, Notify: notifyRedraw})
			refusedHold(t, s, "Apply (move) resolving to a member's Cloud PC", err, r)
			_, err = s.Apply(ctx, r.ID, approvals.Change{Update: resolve, Notify: notifyRedraw})
			refusedHold(t, s, "Apply (update) resolving to a member's Cloud PC", err, r)
		})
	}
	if got := countOpen(t, s) - openBefore; got != 3 {
		t.Errorf("CountOpen went up by %d, want 3 (the unresolved requests)", got)
	}
	for i, pc := range pcs[3:] {
		if _, err := s.OpenFor(ctx, pc); !errors.Is(err, approvals.ErrNotFound) {
			t.Errorf("OpenFor(member %d, holding nothing): %v, want ErrNotFound", i+3, err)
		}
		single := mustCreate(t, s, singleFor(pc))
		if open, err := s.OpenFor(ctx, pc); err != nil || open.ID != single.ID {
			t.Errorf("OpenFor after a single request took member %d's Cloud PC: %s, %v", i+3, describe(open), err)
		}
	}
	if stored := mustGet(t, s, b.ID); !reflect.DeepEqual(stored, b) {
		t.Errorf("the batch changed: %+v", stored.Batch)
	}
}

// testSingleRequestBlocksBatchMember: a Cloud PC a single request holds
// cannot become a holding member of a batch, by Create, Update,
// Transition or Apply: ErrOpenRequestExists, nothing saved (the batch's
// other new members hold nothing either) and nothing enqueued. It may be a
// member that holds nothing (excluded, naming the holder).
func testSingleRequestBlocksBatchMember(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	held, free := uuid.NewString(), uuid.NewString()
	single := mustCreate(t, s, singleFor(held))
	undelivered := func() int {
		n, err := s.Undelivered(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := undelivered()

	if err := s.Create(ctx, newBatch(free, strings.ToUpper(held))); !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("Create of a batch with a held Cloud PC: %v, want ErrOpenRequestExists", err)
	}
	b := newBatch(free, held)
	b.Batch.Members = nil // not looked up yet
	b = createIn(t, s, b, approvals.StateApproved)
	lookedUp := func(result approvals.MemberResult) func(*approvals.Request) {
		return func(c *approvals.Request) {
			c.Batch.Members = []approvals.Member{
				{Target: free, CloudPCID: free, Result: approvals.MemberWaiting},
				{Target: held, CloudPCID: strings.ToUpper(held), Result: result, Other: single.ID},
			}
			c.Batch.PolicyName = "looked up"
		}
	}
	_, err := s.Update(ctx, b.ID, lookedUp(approvals.MemberWaiting))
	refusedHold(t, s, "Update", err, b)
	_, err = s.Transition(ctx, b.ID, approvals.StateConfirming, lookedUp(approvals.MemberWaiting))
	refusedHold(t, s, "Transition", err, b)
	_, err = s.TransitionFrom(ctx, b.ID, []approvals.State{approvals.StateApproved}, approvals.StateConfirming, lookedUp(approvals.MemberSending))
	refusedHold(t, s, "TransitionFrom", err, b)
	_, err = s.Apply(ctx, b.ID, approvals.Change{To: approvals.StateConfirming, Update: lookedUp(approvals.MemberWaiting), Notify: notifyRedraw})
	refusedHold(t, s, "Apply (move)", err, b)
	_, err = s.Apply(ctx, b.ID, approvals.Change{Update: lookedUp(approvals.MemberWaiting), Notify: notifyRedraw})
	refusedHold(t, s, "Apply (update)", err, b)
	if n := undelivered(); n != before {
		t.Errorf("refused changes left %d undelivered entries, want %d", n, before)
	}
	if _, err := s.OpenFor(ctx, free); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("OpenFor(the refused batch's free Cloud PC): %v, want ErrNotFound", err)
	}

	// Excluded, it holds nothing: the batch takes the free one only.
	got, err := s.Apply(ctx, b.ID, approvals.Change{To: approvals.StateConfirming, Update: lookedUp(approvals.MemberExcluded), Notify: notifyRedraw})
	if err != nil {
		t.Fatalf("Apply with the held Cloud PC excluded: %v", err)
	}
	if due := dueNow(t, s, b.ID); len(due) != 1 {
		t.Errorf("due after the change: %+v, want its redraw", due)
	}
	if open, err := s.OpenFor(ctx, held); err != nil || open.ID != single.ID {
		t.Errorf("OpenFor(held) = %s, %v; want the single request %s", describe(open), err, single.ID)
	}
	if open, err := s.OpenFor(ctx, free); err != nil || !reflect.DeepEqual(open, got) {
		t.Errorf("OpenFor(free) = %s, %v; want the batch %s", describe(open), err, b.ID)
	}
	// Nor may the excluded member hold it later.
	_, err = s.Update(ctx, b.ID, func(c *approvals.Request) { c.Batch.Members[1].Result = approvals.MemberWaiting })
	refusedHold(t, s, "Update of the excluded member to waiting", err, got, 1)
}

// testBatchMemberLetsGo: a member lets its Cloud PC go when it stops
// holding it (approvals.Member.Holds): another request may then have it,
// and OpenFor finds that one; the batch keeps its other members' Cloud
// PCs, and may not take the Cloud PC back while the other holds it.
func testBatchMemberLetsGo(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	for name, tc := range map[string]struct {
		result  approvals.MemberResult
		tracked string
		holds   bool
	}{
		"skipped":               {approvals.MemberSkipped, "", false},
		"excluded":              {approvals.MemberExcluded, "", false},
		"not_sent":              {approvals.MemberNotSent, "", false},
		"failed":                {approvals.MemberFailed, "", false},
		"outcome_unknown":       {approvals.MemberUnknown, "", false},
		"succeeded":             {approvals.MemberSucceeded, approvals.TrackProvisioned, false},
		"sent, provisioned":     {approvals.MemberSent, approvals.TrackProvisioned, false},
		"sent, tracking failed": {approvals.MemberSent, approvals.TrackFailed, false},
		"sent, timed out":       {approvals.MemberSent, approvals.TrackTimedOut, false},
		"sent, followed":        {approvals.MemberSent, "", true},
		"sending":               {approvals.MemberSending, "", true},
	} {
		t.Run(name, func(t *testing.T) {
			pc, kept := uuid.NewString(), uuid.NewString()
			b := createIn(t, s, newBatch(pc, kept), approvals.StateExecuting)
			b = mustUpdate(t, s, b.ID, func(c *approvals.Request) {
				c.Batch.Members[0].Result, c.Batch.Members[0].Tracked = tc.result, tc.tracked
			})
			if open, err := s.OpenFor(ctx, kept); err != nil || open.ID != b.ID {
				t.Errorf("OpenFor(the other member) = %s, %v; want the batch", describe(open), err)
			}
			open, err := s.OpenFor(ctx, pc)
			single := singleFor(pc)
			createErr := s.Create(ctx, single)
			if tc.holds {
				if err != nil || !reflect.DeepEqual(open, b) {
					t.Errorf("OpenFor = %s, %v; want the batch", describe(open), err)
				}
				if !errors.Is(createErr, approvals.ErrOpenRequestExists) {
					t.Errorf("Create for the member's Cloud PC: %v, want ErrOpenRequestExists", createErr)
				}
				return
			}
			if !errors.Is(err, approvals.ErrNotFound) {
				t.Errorf("OpenFor = %s, %v; want ErrNotFound", describe(open), err)
			}
			if createErr != nil {
				t.Fatalf("Create for the member's Cloud PC: %v, want success", createErr)
			}
			if open, err := s.OpenFor(ctx, pc); err != nil || open.ID != single.ID {
				t.Errorf("OpenFor after Create = %s, %v; want %s", describe(open), err, single.ID)
			}
			_, err = s.Update(ctx, b.ID, func(c *approvals.Request) {
				c.Batch.Members[0].Result, c.Batch.Members[0].Tracked = approvals.MemberWaiting, ""
			})
			refusedHold(t, s, "taking the Cloud PC back", err, b)
		})
	}
}

// testBatchStateLetsGo: a batch holds its members' Cloud PCs while it is
// open (Request.Open: its state, or its reprovision followed), and lets
// them all go when it ends.
func testBatchStateLetsGo(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	for name, tc := range holdCases() {
		t.Run(name, func(t *testing.T) {
			pcs := []string{uuid.NewString(), uuid.NewString()}
			b := createIn(t, s, newBatch(pcs...), tc.state)
			if tc.tracking != (approvals.Tracking{}) {
				b = mustUpdate(t, s, b.ID, func(r *approvals.Request) { r.Tracking = tc.tracking })
			}
			for _, pc := range pcs {
				open, err := s.OpenFor(ctx, pc)
				createErr := s.Create(ctx, singleFor(pc))
				if tc.holds {
					if err != nil || !reflect.DeepEqual(open, b) {
						t.Errorf("OpenFor = %s, %v; want the batch", describe(open), err)
					}
					if !errors.Is(createErr, approvals.ErrOpenRequestExists) {
						t.Errorf("Create for a member's Cloud PC: %v, want ErrOpenRequestExists", createErr)
					}
					continue
				}
				if !errors.Is(err, approvals.ErrNotFound) {
					t.Errorf("OpenFor = %s, %v; want ErrNotFound", describe(open), err)
				}
				if createErr != nil {
					t.Errorf("Create for a member's Cloud PC: %v, want success", createErr)
				}
			}
		})
	}
}

// testBatchAskIsFixed: what a batch asks for (its targets, its policy) is
// fixed when it is made, like a single request's target: an update that
// changes it, makes a batch a single request or a single request a batch,
// is refused with a plain error and saves nothing.
func testBatchAskIsFixed(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	list := mustCreate(t, s, newBatch(uuid.NewString(), uuid.NewString()))
	policy := newRequest()
	policy.Target, policy.CloudPCID, policy.Batch = "Default", "", &approvals.Batch{Policy: "Default"}
	mustCreate(t, s, policy)
	single := mustCreate(t, s, unresolved())
	for name, tc := range map[string]struct {
		r      *approvals.Request
		change func(*approvals.Request)
	}{
		"targets appended": {list, func(c *approvals.Request) { c.Batch.Targets = append(c.Batch.Targets, uuid.NewString()) }},
		"target in place":  {list, func(c *approvals.Request) { c.Batch.Targets[0] = uuid.NewString() }},
		"targets reordered": {list, func(c *approvals.Request) {
			c.Batch.Targets[0], c.Batch.Targets[1] = c.Batch.Targets[1], c.Batch.Targets[0]
		}},
		"targets dropped":     {list, func(c *approvals.Request) { c.Batch.Targets = c.Batch.Targets[:1] }},
		"list to policy":      {list, func(c *approvals.Request) { c.Batch.Targets, c.Batch.Policy = nil, "Default" }},
		"batch removed":       {list, func(c *approvals.Request) { c.Batch = nil }},
		"policy changed":      {policy, func(c *approvals.Request) { c.Batch.Policy = "Other" }},
		"policy to list":      {policy, func(c *approvals.Request) { c.Batch.Policy, c.Batch.Targets = "", []string{"CPC-alice-01"} }},
		"batch replaced":      {policy, func(c *approvals.Request) { c.Batch = &approvals.Batch{Policy: "Other"} }},
		"single made a batch": {single, func(c *approvals.Request) { c.Batch = &approvals.Batch{Policy: "Default"} }},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.Update(ctx, tc.r.ID, tc.change)
			if err == nil {
				t.Error("Update succeeded, want an error")
			} else if errors.Is(err, approvals.ErrOpenRequestExists) || errors.Is(err, approvals.ErrNotFound) {
				t.Errorf("Update: %v, want a plain error", err)
			}
			_, err = s.Transition(ctx, tc.r.ID, approvals.StateApproved, tc.change)
			var te *approvals.TransitionError
			if err == nil {
				t.Error("Transition succeeded, want an error")
			} else if errors.As(err, &te) || errors.Is(err, approvals.ErrOpenRequestExists) {
				t.Errorf("Transition: %v, want a plain error", err)
			}
			if stored := mustGet(t, s, tc.r.ID); !reflect.DeepEqual(stored, tc.r) {
				t.Errorf("refused change stored: %+v", stored.Batch)
			}
		})
	}
	// What the look-up finds may change.
	got := mustUpdate(t, s, policy.ID, func(c *approvals.Request) {
		c.Batch.PolicyID, c.Batch.PolicyName = "9b3c7f0e-1d2a-4c5b-8e6f-0a1b2c3d4e5f", "Default"
		c.Batch.Members = []approvals.Member{{CloudPCID: uuid.NewString(), Result: approvals.MemberWaiting}}
	})
	if got.Batch.Policy != "Default" || len(got.Batch.Members) != 1 {
		t.Errorf("looked-up batch: %+v", got.Batch)
	}
}

// testBatchSwapRefused: two batches each trying, at the same moment, to
// take the other's Cloud PC while letting their own go: neither may (each
// Cloud PC is held when the other asks), and neither waits for the other
// for ever; repeated, on fresh Cloud PCs each time.
func testBatchSwapRefused(t *testing.T, h *Harness) {
	raceSwap(t, 20, h.open(t))
}

func raceSwap(t *testing.T, rounds int, stores ...approvals.Store) {
	ctx := context.Background()
	for range rounds {
		p, q := uuid.NewString(), uuid.NewString()
		a, b := newBatch(p, q), newBatch(q, p)
		a.Batch.Members[1].Result, b.Batch.Members[1].Result = approvals.MemberExcluded, approvals.MemberExcluded
		mustCreate(t, stores[0], a)
		mustCreate(t, stores[0], b)
		// a holds p, b holds q; each now swaps.
		swapped := func(c *approvals.Request) {
			c.Batch.Members[0].Result, c.Batch.Members[1].Result = approvals.MemberNotSent, approvals.MemberWaiting
		}
		errs := make([]error, 2)
		together(2, func(i int) {
			_, errs[i] = stores[i%len(stores)].Update(ctx, []string{a.ID, b.ID}[i], swapped)
		})
		for i, err := range errs {
			if !errors.Is(err, approvals.ErrOpenRequestExists) {
				t.Fatalf("swap #%d: %v, want ErrOpenRequestExists", i, err)
			}
		}
		for pc, holder := range map[string]string{p: a.ID, q: b.ID} {
			if open, err := stores[len(stores)-1].OpenFor(ctx, pc); err != nil || open.ID != holder {
				t.Fatalf("after the refused swap OpenFor = %s, %v; want %s", describe(open), err, holder)
			}
		}
	}
}

// raceHold: n goroutines each try to make a different request hold one
// Cloud PC at the same moment, the i-th through stores[i%len(stores)], in
// every way there is: Create of a single request or of a batch with it
// (and a Cloud PC of its own), a target resolved to it, a batch's members
// looked up to include it. Exactly one gets it; the others are refused
// with ErrOpenRequestExists and hold nothing; OpenFor names the winner.
func raceHold(t *testing.T, n int, stores ...approvals.Store) {
	ctx := context.Background()
	pc := uuid.NewString()
	ids := make([]string, n)
	own := make([]string, n)
	prepared := make([]*approvals.Request, n)
	for i := range n {
		own[i] = uuid.NewString()
		switch i % 4 {
		case 1:
			prepared[i] = mustCreate(t, stores[0], unresolved())
		case 2:
			b := newBatch(own[i], pc)
			b.Batch.Members = nil
			prepared[i] = createIn(t, stores[0], b, approvals.StateApproved)
		}
	}
	errs := make([]error, n)
	together(n, func(i int) {
		s := stores[i%len(stores)]
		switch i % 4 {
		case 0:
			r := singleFor(pc)
			ids[i], errs[i] = r.ID, s.Create(ctx, r)
		case 1:
			ids[i] = prepared[i].ID
			_, errs[i] = s.Update(ctx, ids[i], func(c *approvals.Request) { c.CloudPCID = pc })
		case 2:
			ids[i] = prepared[i].ID
			_, errs[i] = s.Apply(ctx, ids[i], approvals.Change{To: approvals.StateConfirming, Notify: notifyRedraw,
				Update: func(c *approvals.Request) { c.Batch.Members = newBatch(own[i], pc).Batch.Members }})
		case 3:
			r := newBatch(own[i], pc)
			ids[i], errs[i] = r.ID, s.Create(ctx, r)
		}
	})
	winner := ""
	for i, err := range errs {
		switch {
		case err == nil:
			if winner != "" {
				t.Errorf("both %s and %s hold the Cloud PC", winner, ids[i])
			}
			winner = ids[i]
		case !errors.Is(err, approvals.ErrOpenRequestExists):
			t.Errorf("#%d (way %d): %v, want nil or ErrOpenRequestExists", i, i%4, err)
		default:
			if _, err := stores[0].OpenFor(ctx, own[i]); !errors.Is(err, approvals.ErrNotFound) {
				t.Errorf("#%d (way %d) lost but holds its own Cloud PC: %v", i, i%4, err)
			}
			if i%4 == 2 {
				if due := dueNow(t, stores[0], ids[i]); len(due) != 0 {
					t.Errorf("#%d lost but enqueued %+v", i, due)
				}
			}
		}
	}
	if winner == "" {
		t.Fatalf("nobody holds the Cloud PC: %v", errs)
	}
	if open, err := stores[len(stores)-1].OpenFor(ctx, pc); err != nil || open.ID != winner {
		t.Errorf("OpenFor = %s, %v; want the winner %s", describe(open), err, winner)
	}
}

// raceOverlappingBatches: n batches of the same k Cloud PCs, each listing
// them in another order, made at once, and then n batches looking up the
// same k other Cloud PCs at once: one of each gets them all, the others
// none, and none fails otherwise (two waiting for each other, say).
func raceOverlappingBatches(t *testing.T, n int, stores ...approvals.Store) {
	const k = 6
	ctx := context.Background()
	rotated := func(pcs []string, i int) []string {
		out := append(append([]string(nil), pcs[i%k:]...), pcs[:i%k]...)
		if i%2 == 1 {
			for l, r := 0, len(out)-1; l < r; l, r = l+1, r-1 {
				out[l], out[r] = out[r], out[l]
			}
		}
		return out
	}
	fresh := func() []string {
		pcs := make([]string, k)
		for i := range pcs {
			pcs[i] = uuid.NewString()
		}
		return pcs
	}
	check := func(what string, pcs []string, ids []string, errs []error) {
		t.Helper()
		winner := ""
		for i, err := range errs {
			switch {
			case err == nil:
				if winner != "" {
					t.Errorf("%s: both %s and %s won", what, winner, ids[i])
				}
				winner = ids[i]
			case !errors.Is(err, approvals.ErrOpenRequestExists):
				t.Errorf("%s #%d: %v, want nil or ErrOpenRequestExists", what, i, err)
			}
		}
		for _, pc := range pcs {
			if open, err := stores[0].OpenFor(ctx, pc); err != nil || open.ID != winner {
				t.Errorf("%s: OpenFor = %s, %v; want the winner %q", what, describe(open), err, winner)
			}
		}
	}

	pcs := fresh()
	ids := make([]string, n)
	errs := make([]error, n)
	together(n, func(i int) {
		r := newBatch(rotated(pcs, i)...)
		ids[i], errs[i] = r.ID, stores[i%len(stores)].Create(ctx, r)
	})
	check("Create", pcs, ids, errs)

	pcs = fresh()
	for i := range ids {
		b := newBatch(rotated(pcs, i)...)
		b.Batch.Members = nil
		ids[i] = mustCreate(t, stores[0], b).ID
	}
	together(n, func(i int) {
		_, errs[i] = stores[i%len(stores)].Update(ctx, ids[i], func(c *approvals.Request) {
			c.Batch.Members = newBatch(rotated(pcs, i)...).Batch.Members
		})
	})
	check("Update", pcs, ids, errs)
}
