package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// requestTests: creating, reading and moving requests.
var requestTests = []test{
	{"CreateAndGet", testCreateAndGet},
	{"CreateRoundTripsEveryField", testCreateRoundTripsEveryField},
	{"CreateKeepsNilApartFromEmpty", testCreateKeepsNilApartFromEmpty},
	{"CreateLowerCasesCloudPCID", testCreateLowerCasesCloudPCID},
	{"CreateRefusesInvalid", testCreateRefusesInvalid},
	{"CreateDuplicateReference", testCreateDuplicateReference},
	{"CreateUnresolvedTargets", testCreateUnresolvedTargets},
	{"OneOpenRequestPerCloudPC", testOneOpenRequestPerCloudPC},
	{"GetNotFound", testGetNotFound},
	{"GetHonoursContext", testGetHonoursContext},
	{"TransitionFollowsStateMachine", testTransitionFollowsStateMachine},
	{"TransitionAppliesUpdate", testTransitionAppliesUpdate},
	{"TransitionRefusesIdentityChange", testTransitionRefusesIdentityChange},
	{"TransitionResolvesCloudPCOnce", testTransitionResolvesCloudPCOnce},
	{"ResolveToHeldCloudPC", testResolveToHeldCloudPC},
	{"TransitionNotFound", testTransitionNotFound},
	{"TransitionSkipsUpdateWhenRefused", testTransitionSkipsUpdateWhenRefused},
	{"DataSurvivesReopen", testDataSurvivesReopen},
	{"Health", testHealth},
}

func testCreateAndGet(t *testing.T, h *Harness) {
	s := h.open(t)
	r := newRequest()
	before := h.at(time.Now())
	mustCreate(t, s, r)

	if r.State != approvals.StatePending {
		t.Errorf("State = %q after Create, want pending", r.State)
	}
	if r.CreatedAt.Before(before) || r.CreatedAt.After(time.Now()) || r.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want now in UTC", r.CreatedAt)
	}
	if !r.UpdatedAt.Equal(r.CreatedAt) {
		t.Errorf("UpdatedAt = %v, want CreatedAt %v", r.UpdatedAt, r.CreatedAt)
	}
	if got := mustGet(t, s, r.ID); !reflect.DeepEqual(got, r) {
		t.Errorf("Get = %+v\nwant  %+v", got, r)
	}
}

// tricky is text that tempts a careless encoder.
const tricky = "ünïcode ✓ 'quotes' \"and\" ; DROP TABLE requests; -- \n\t\x00 {\"json\": [1]}"

// fullRequest sets every field of a request, in several time zones, to
// values that tempt a careless encoder.
func fullRequest() *approvals.Request {
	east := time.FixedZone("UTC+5", 5*3600)
	west := time.FixedZone("UTC-7", -7*3600)
	pc := fullCloudPC
	device := pc(1)
	return &approvals.Request{
		ID:                approvals.NewReference(),
		Target:            "alice@example.com",
		CloudPCID:         device.ID,
		Reason:            tricky,
		RequesterID:       "U1",
		RequestChannelID:  "C1",
		Approvers:         []string{"U2", "U3"},
		Options:           approvals.Options{OSVersion: approvals.OSWindows11, UserAccountType: approvals.AccountStandardUser},
		ApprovalsRequired: 3,
		Approvals: []approvals.Approval{
			{By: "U3", SignedInAs: "carol@example.com", At: time.Date(2024, 3, 1, 0, 0, 0, 999, west)},
			{By: "U4", SignedInAs: tricky, At: time.Date(2024, 3, 1, 0, 5, 0, 123456789, east)},
		},
		State:          approvals.StatePending,
		DecidedBy:      "U2",
		DecisionReason: tricky,
		SignedInAs:     "bob@example.com",
		Prompts: []approvals.MessageRef{
			{ChannelID: "D2", TS: "1712345678.000100", UserID: "U2"},
			{ChannelID: "D3", TS: "1712345678.000200", UserID: "U3"},
		},
		Device:     &device,
		Candidates: []approvals.CloudPC{pc(1), pc(2)},
		// Not a real combination: every field set, so that each is
		// shown to survive the store.
		Outcome: &approvals.Outcome{Kind: approvals.OutcomeGraph, Target: tricky, Allowed: []string{"provisioned", "failed"},
			Graph: &approvals.GraphError{Kind: approvals.GraphConflict, Cause: approvals.CauseConflict, Method: "POST", Status: 409,
				Code: "Conflict", Message: tricky, RequestID: "g-1", Retries: 1, Pages: 2},
			Matches: 3, Max: 50, Status: "inGracePeriod", CloudPCID: "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b", Other: "R-ABCDEF",
			OtherRequester: "U3", SignedInAs: "bob@example.com", Expected: "alice@example.com", Text: tricky},
		GraphRequestID: "g-1",
		HeadsUp: approvals.HeadsUp{UserID: "U5", Result: approvals.HeadsUpSent, SendAt: time.Date(2024, 3, 1, 0, 10, 0, 123456789, east),
			MoreTimeAsked: true, Postponed: true, SignInLost: true},
		Tracking: approvals.Tracking{
			Since:      time.Date(2025, 3, 9, 21, 0, 0, 3, west),
			Until:      time.Date(2025, 3, 10, 0, 0, 0, 1, east),
			NextCheck:  time.Date(2025, 3, 9, 23, 0, 0, 7, west),
			Checks:     3,
			LastStatus: "provisioning",
			Paused:     true,
			Result:     approvals.TrackTimedOut,
		},
		CreatedAt: time.Date(2024, 2, 29, 23, 59, 59, 123456789, east),
		UpdatedAt: time.Date(2024, 3, 1, 0, 0, 0, 1, time.UTC),
		ExpiresAt: time.Date(2024, 3, 1, 23, 59, 59, 999999999, west),
		DecideBy:  time.Date(2024, 3, 2, 23, 59, 59, 999999999, west),
	}
}

// fullCloudPC sets every field of a Cloud PC, the n-th of Alice's.
func fullCloudPC(n int) approvals.CloudPC {
	west := time.FixedZone("UTC-7", -7*3600)
	return approvals.CloudPC{
		ID:                     uuid.NewString(),
		DisplayName:            fmt.Sprintf("Alice's PC %d", n),
		UserPrincipalName:      "alice@example.com",
		ManagedDeviceName:      fmt.Sprintf("CPC-alice-%02d", n),
		ServicePlanName:        "Cloud PC Enterprise 2vCPU/8GB/128GB",
		ProvisioningPolicyName: "Default",
		ProvisioningPolicyID:   "9b3c7f0e-1d2a-4c5b-8e6f-0a1b2c3d4e5f",
		Status:                 "provisioned",
		StatusDetails:          tricky,
		LastModified:           time.Date(2025, 3, 9, 2, 30, 0, 999999999, west),
	}
}

// checkEveryFieldSet fails when v (a struct, or a pointer or slice of them)
// has a zero field, so that a field added to Request later cannot slip past
// the round-trip test unstored. except names fields that may stay zero
// ("Request.Batch" for a single request: a request cannot be both).
func checkEveryFieldSet(t *testing.T, path string, v reflect.Value, except ...string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		checkEveryFieldSet(t, path, v.Elem(), except...)
	case reflect.Slice:
		for i := range v.Len() {
			checkEveryFieldSet(t, fmt.Sprintf("%s[%d]", path, i), v.Index(i), except...)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			return
		}
		for i := range v.NumField() {
			name := path + "." + v.Type().Field(i).Name
			if v.Type().Field(i).Tag.Get("json") == "-" {
				continue // kept in memory only, by design
			}
			if v.Field(i).IsZero() {
				if !slices.Contains(except, name) {
					t.Errorf("fixture leaves %s zero", name)
				}
				continue
			}
			checkEveryFieldSet(t, name, v.Field(i), except...)
		}
	}
}

func testCreateRoundTripsEveryField(t *testing.T, h *Harness) {
	s := h.open(t)
	r := fullRequest()
	checkEveryFieldSet(t, "Request", reflect.ValueOf(r), "Request.Batch") // BatchRoundTripsEveryField
	callersDevice := r.Device
	mustCreate(t, s, r)

	for name, at := range map[string]time.Time{
		"CreatedAt": r.CreatedAt, "ExpiresAt": r.ExpiresAt, "Tracking.Until": r.Tracking.Until,
		"Device.LastModified": r.Device.LastModified, "Candidates[1].LastModified": r.Candidates[1].LastModified,
	} {
		if at.Location() != time.UTC {
			t.Errorf("Create left %s in %v, want UTC", name, at.Location())
		}
	}
	if callersDevice.LastModified.Location() == time.UTC {
		t.Error("Create changed the caller's Device in place")
	}
	got := mustGet(t, s, r.ID)
	if !reflect.DeepEqual(got, r) {
		t.Errorf("Get = %+v\nwant  %+v", got, r)
	}
	// Each time to the store's precision, rounded down, in UTC.
	for name, pair := range map[string][2]time.Time{
		"CreatedAt":           {got.CreatedAt, time.Date(2024, 2, 29, 18, 59, 59, 123456789, time.UTC)},
		"UpdatedAt":           {got.UpdatedAt, time.Date(2024, 3, 1, 0, 0, 0, 1, time.UTC)},
		"ExpiresAt":           {got.ExpiresAt, time.Date(2024, 3, 2, 6, 59, 59, 999999999, time.UTC)},
		"DecideBy":            {got.DecideBy, time.Date(2024, 3, 3, 6, 59, 59, 999999999, time.UTC)},
		"Tracking.Since":      {got.Tracking.Since, time.Date(2025, 3, 10, 4, 0, 0, 3, time.UTC)},
		"Tracking.Until":      {got.Tracking.Until, time.Date(2025, 3, 9, 19, 0, 0, 1, time.UTC)},
		"Tracking.NextCheck":  {got.Tracking.NextCheck, time.Date(2025, 3, 10, 6, 0, 0, 7, time.UTC)},
		"Device.LastModified": {got.Device.LastModified, time.Date(2025, 3, 9, 9, 30, 0, 999999999, time.UTC)},
	} {
		if want := h.at(pair[1]); !pair[0].Equal(want) || pair[0].Location() != time.UTC {
			t.Errorf("%s = %v, want %v: lost precision or zone", name, pair[0], want)
		}
	}
	// Text: the store's own columns as Text says, nested values exactly.
	for name, pair := range map[string][2]string{
		"Reason":                {got.Reason, h.text(tricky)},
		"DecisionReason":        {got.DecisionReason, h.text(tricky)},
		"Device.StatusDetails":  {got.Device.StatusDetails, tricky},
		"Candidates[1].Details": {got.Candidates[1].StatusDetails, tricky},
		"Outcome.Text":          {got.Outcome.Text, tricky},
		"Outcome.Graph.Message": {got.Outcome.Graph.Message, tricky},
	} {
		if pair[0] != pair[1] {
			t.Errorf("%s = %q, want %q", name, pair[0], pair[1])
		}
	}
}

// testCreateKeepsNilApartFromEmpty: "not looked up" (nil) and "looked up,
// nothing found" (empty) are different facts and must stay so, as must
// zero times inside the nested values.
func testCreateKeepsNilApartFromEmpty(t *testing.T, h *Harness) {
	s := h.open(t)
	for name, set := range map[string]func(*approvals.Request){
		"nil": func(r *approvals.Request) { r.Prompts, r.Device, r.Candidates = nil, nil, nil },
		"empty": func(r *approvals.Request) {
			r.Prompts, r.Device, r.Candidates = []approvals.MessageRef{}, &approvals.CloudPC{}, []approvals.CloudPC{}
		},
		"zero elements": func(r *approvals.Request) {
			r.Prompts, r.Candidates = []approvals.MessageRef{{}}, []approvals.CloudPC{{}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRequest()
			set(r)
			want := *r
			mustCreate(t, s, r)
			got := mustGet(t, s, r.ID)
			if !reflect.DeepEqual(got, r) {
				t.Errorf("Get = %+v\nwant  %+v", got, r)
			}
			if (got.Prompts == nil) != (want.Prompts == nil) || (got.Candidates == nil) != (want.Candidates == nil) ||
				(got.Device == nil) != (want.Device == nil) {
				t.Errorf("nil and empty mixed up: got prompts %#v, candidates %#v, device %#v", got.Prompts, got.Candidates, got.Device)
			}
			if !got.ExpiresAt.IsZero() || !got.Tracking.Until.IsZero() || !got.Tracking.NextCheck.IsZero() {
				t.Errorf("zero times came back as %v, %v, %v", got.ExpiresAt, got.Tracking.Until, got.Tracking.NextCheck)
			}
		})
	}
}

func testCreateLowerCasesCloudPCID(t *testing.T, h *Harness) {
	s := h.open(t)
	r := newRequest()
	r.CloudPCID = strings.ToUpper(r.CloudPCID)
	mustCreate(t, s, r)
	if got := mustGet(t, s, r.ID).CloudPCID; got != strings.ToLower(got) {
		t.Errorf("CloudPCID stored as %q, want lower case", got)
	}
}

func testCreateRefusesInvalid(t *testing.T, h *Harness) {
	tests := map[string]func(*approvals.Request){
		"malformed reference":     func(r *approvals.Request) { r.ID = "R-0000" },
		"cloud PC not a GUID":     func(r *approvals.Request) { r.CloudPCID = "../../deviceManagement" },
		"no target, no cloud PC":  func(r *approvals.Request) { r.Target, r.CloudPCID = "", "" },
		"no requester":            func(r *approvals.Request) { r.RequesterID = "" },
		"no approvers":            func(r *approvals.Request) { r.Approvers = nil },
		"empty approvers":         func(r *approvals.Request) { r.Approvers = []string{} },
		"not pending":             func(r *approvals.Request) { r.State = approvals.StateApproved },
		"unknown state":           func(r *approvals.Request) { r.State = "bogus" },
		"year out of range":       func(r *approvals.Request) { r.CreatedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"expiry out of range":     func(r *approvals.Request) { r.ExpiresAt = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) },
		"unknown OS version":      func(r *approvals.Request) { r.Options.OSVersion = "windows95" },
		"unknown account type":    func(r *approvals.Request) { r.Options.UserAccountType = "root" },
		"four approvals required": func(r *approvals.Request) { r.ApprovalsRequired = 4 },
		"approval by nobody":      func(r *approvals.Request) { r.Approvals = []approvals.Approval{{At: time.Now()}} },
		"device time out of range": func(r *approvals.Request) {
			r.Device = &approvals.CloudPC{LastModified: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
		},
	}
	s := h.open(t)
	for name, spoil := range tests {
		t.Run(name, func(t *testing.T) {
			r := newRequest()
			spoil(r)
			before := *r
			if err := s.Create(context.Background(), r); err == nil {
				t.Fatal("Create succeeded, want an error")
			}
			if !reflect.DeepEqual(*r, before) {
				t.Errorf("refused Create changed r: %+v", r)
			}
			if _, err := s.Get(context.Background(), r.ID); !errors.Is(err, approvals.ErrNotFound) {
				t.Errorf("Get after refused Create: %v, want ErrNotFound", err)
			}
		})
	}
}

func testCreateDuplicateReference(t *testing.T, h *Harness) {
	s := h.open(t)
	first := mustCreate(t, s, newRequest())
	second := newRequest()
	second.ID = first.ID
	err := s.Create(context.Background(), second)
	if !errors.Is(err, approvals.ErrDuplicateReference) {
		t.Fatalf("Create with a used reference: %v, want ErrDuplicateReference", err)
	}
	if errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("duplicate reference reported as ErrOpenRequestExists: %v", err)
	}
	if got := mustGet(t, s, first.ID); got.CloudPCID != first.CloudPCID {
		t.Errorf("first request overwritten: %+v", got)
	}
}

// testCreateUnresolvedTargets: requests whose Cloud PC is not known yet
// hold no Cloud PC, so any number of them may wait, even for the same
// name.
func testCreateUnresolvedTargets(t *testing.T, h *Harness) {
	s := h.open(t)
	a, b := mustCreate(t, s, unresolved()), mustCreate(t, s, unresolved())
	if a.CloudPCID != "" || mustGet(t, s, b.ID).Target != "CPC-alice-01" {
		t.Errorf("unresolved requests stored as %+v, %+v", a, mustGet(t, s, b.ID))
	}
	if _, err := s.OpenFor(context.Background(), ""); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("OpenFor(\"\"): %v, want ErrNotFound", err)
	}
	// They are open all the same (Request.Open): counted.
	if n := countOpen(t, s); n != 2 {
		t.Errorf("CountOpen = %d with two unresolved requests, want 2", n)
	}
}

// holdCase is a request in some state, with tracking, and whether it holds
// its Cloud PC.
type holdCase struct {
	state    approvals.State
	tracking approvals.Tracking
	holds    bool
}

// holdCases are requests in every state, and succeeded or failed ones with
// tracking running or done.
func holdCases() map[string]holdCase {
	cases := map[string]holdCase{}
	for state := range pathTo {
		cases[string(state)] = holdCase{state, approvals.Tracking{}, state.Open()}
	}
	cases["succeeded, tracking"] = holdCase{approvals.StateSucceeded, trackingActive(), true}
	cases["succeeded, tracking done"] = holdCase{approvals.StateSucceeded, trackingDone(), false}
	cases["failed, tracking"] = holdCase{approvals.StateFailed, trackingActive(), false}
	return cases
}

// testOneOpenRequestPerCloudPC: while a request is Open (Request.Open) no
// other may be created for its Cloud PC, OpenFor finds it, and CountOpen
// counts it.
func testOneOpenRequestPerCloudPC(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	for name, tc := range holdCases() {
		t.Run(name, func(t *testing.T) {
			openBefore := countOpen(t, s)
			first := createIn(t, s, newRequest(), tc.state)
			if tc.tracking != (approvals.Tracking{}) {
				first = mustUpdate(t, s, first.ID, func(r *approvals.Request) { r.Tracking = tc.tracking })
			}
			if first.Open() != tc.holds {
				t.Fatalf("Request.Open() = %v, want %v", first.Open(), tc.holds)
			}
			if got, want := countOpen(t, s)-openBefore, map[bool]int{true: 1, false: 0}[tc.holds]; got != want {
				t.Errorf("CountOpen went up by %d, want %d", got, want)
			}

			open, err := s.OpenFor(ctx, strings.ToUpper(first.CloudPCID))
			second := newRequest()
			second.CloudPCID = strings.ToUpper(first.CloudPCID) // same PC, other spelling
			createErr := s.Create(ctx, second)
			if tc.holds {
				if err != nil || !reflect.DeepEqual(open, first) {
					t.Errorf("OpenFor = %+v, %v; want %+v", open, err, first)
				}
				if !errors.Is(createErr, approvals.ErrOpenRequestExists) {
					t.Errorf("second request: %v, want ErrOpenRequestExists", createErr)
				}
				return
			}
			if !errors.Is(err, approvals.ErrNotFound) {
				t.Errorf("OpenFor = %+v, %v; want ErrNotFound", open, err)
			}
			if createErr != nil {
				t.Errorf("second request: %v, want success", createErr)
			}
		})
	}
}

func testGetNotFound(t *testing.T, h *Harness) {
	s := h.open(t)
	if _, err := s.Get(context.Background(), "R-ZZZZZZ"); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("Get of unknown reference: %v, want ErrNotFound", err)
	}
}

func testGetHonoursContext(t *testing.T, h *Harness) {
	s := h.open(t)
	r := mustCreate(t, s, newRequest())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, r.ID); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.Transition(ctx, r.ID, approvals.StateApproved, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Transition with canceled context: %v, want context.Canceled", err)
	}
	if got := mustGet(t, s, r.ID); got.State != approvals.StatePending {
		t.Errorf("state %s after a canceled transition, want pending", got.State)
	}
}

// testTransitionFollowsStateMachine tries every move from every state and
// checks the store agrees with State.CanMoveTo.
func testTransitionFollowsStateMachine(t *testing.T, h *Harness) {
	s := h.open(t)
	for from := range pathTo {
		for to := range pathTo {
			t.Run(string(from)+"→"+string(to), func(t *testing.T) {
				r := createIn(t, s, newRequest(), from)
				got, err := s.Transition(context.Background(), r.ID, to, nil)
				if from.CanMoveTo(to) {
					if err != nil {
						t.Fatalf("allowed move refused: %v", err)
					}
					if got.State != to {
						t.Errorf("State = %s, want %s", got.State, to)
					}
					if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, got) {
						t.Errorf("Get = %+v\nTransition returned %+v", stored, got)
					}
					return
				}
				var te *approvals.TransitionError
				if !errors.As(err, &te) {
					t.Fatalf("forbidden move: %v, want *TransitionError", err)
				}
				if te.To != to || !reflect.DeepEqual(te.Current, r) {
					t.Errorf("TransitionError{Current: %+v, To: %s}, want Current %+v", te.Current, te.To, r)
				}
				if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, r) {
					t.Errorf("refused move changed the request: %+v", stored)
				}
			})
		}
	}
}

func testTransitionAppliesUpdate(t *testing.T, h *Harness) {
	s := h.open(t)
	r := mustCreate(t, s, newRequest())
	time.Sleep(time.Millisecond) // let the clock move past CreatedAt

	west := time.FixedZone("UTC-7", -7*3600)
	got, err := s.Transition(context.Background(), r.ID, approvals.StateApproved, func(c *approvals.Request) {
		if c.State != approvals.StatePending {
			t.Errorf("update saw State %s, want the current state pending", c.State)
		}
		c.DecidedBy = "U_APPROVER"
		c.SignedInAs = "approver@example.com"
		c.Outcome = &approvals.Outcome{Kind: approvals.OutcomeSignInStale}
		c.GraphRequestID = "req-1"
		c.Prompts = []approvals.MessageRef{{ChannelID: "D1", TS: "1.2"}}
		c.Device = &approvals.CloudPC{ID: c.CloudPCID, Status: "provisioned", LastModified: time.Date(2025, 1, 1, 0, 0, 0, 5, west)}
		c.ExpiresAt = time.Date(2030, 1, 1, 0, 0, 0, 0, west)
		c.State = approvals.StateDenied // overridden by the transition
		c.UpdatedAt = time.Unix(0, 0)   // overridden too
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != approvals.StateApproved {
		t.Errorf("State = %s, want approved", got.State)
	}
	if got.DecidedBy != "U_APPROVER" || got.SignedInAs != "approver@example.com" || got.Outcome == nil || got.Outcome.Kind != approvals.OutcomeSignInStale ||
		got.GraphRequestID != "req-1" || len(got.Prompts) != 1 || got.Device == nil || got.Device.Status != "provisioned" {
		t.Errorf("update not applied: %+v", got)
	}
	if got.ExpiresAt.Location() != time.UTC || got.Device.LastModified.Location() != time.UTC {
		t.Errorf("times not normalised to UTC: %v, %v", got.ExpiresAt, got.Device.LastModified)
	}
	if !got.UpdatedAt.After(r.UpdatedAt) || !got.CreatedAt.Equal(r.CreatedAt) {
		t.Errorf("times = created %v, updated %v; want created %v, updated later than %v",
			got.CreatedAt, got.UpdatedAt, r.CreatedAt, r.UpdatedAt)
	}
	if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, got) {
		t.Errorf("Get = %+v\nTransition returned %+v", stored, got)
	}
}

// fixedFieldChanges are updates that Transition and Update must refuse.
var fixedFieldChanges = map[string]func(*approvals.Request){
	"ID":                   func(c *approvals.Request) { c.ID = approvals.NewReference() },
	"Target":               func(c *approvals.Request) { c.Target = "CPC-mallory-01" },
	"CloudPCID":            func(c *approvals.Request) { c.CloudPCID = uuid.NewString() },
	"CloudPCID cleared":    func(c *approvals.Request) { c.CloudPCID = "" },
	"RequesterID":          func(c *approvals.Request) { c.RequesterID = "U_MALLORY" },
	"RequestChannelID":     func(c *approvals.Request) { c.RequestChannelID = "C_ELSEWHERE" },
	"Approvers replaced":   func(c *approvals.Request) { c.Approvers = []string{"U_MALLORY"} },
	"Approvers appended":   func(c *approvals.Request) { c.Approvers = append(c.Approvers, "U_MALLORY") },
	"Approvers in place":   func(c *approvals.Request) { c.Approvers[0] = "U_MALLORY" },
	"Approvers reordered":  func(c *approvals.Request) { c.Approvers[0], c.Approvers[1] = c.Approvers[1], c.Approvers[0] },
	"CreatedAt":            func(c *approvals.Request) { c.CreatedAt = c.CreatedAt.Add(time.Second) },
	"Options":              func(c *approvals.Request) { c.Options.OSVersion = approvals.OSWindows11 },
	"ApprovalsRequired":    func(c *approvals.Request) { c.ApprovalsRequired = 1 },
	"several, all refused": func(c *approvals.Request) { c.ID, c.RequesterID = approvals.NewReference(), "U_MALLORY" },
}

func testTransitionRefusesIdentityChange(t *testing.T, h *Harness) {
	s := h.open(t)
	r := mustCreate(t, s, newRequest())
	for name, change := range fixedFieldChanges {
		t.Run(name, func(t *testing.T) {
			_, err := s.Transition(context.Background(), r.ID, approvals.StateApproved, change)
			if err == nil {
				t.Fatal("Transition succeeded, want an error")
			}
			var te *approvals.TransitionError
			if errors.As(err, &te) {
				t.Errorf("got *TransitionError %v, want a plain error", err)
			}
			if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, r) {
				t.Errorf("refused update changed the request: %+v", stored)
			}
		})
	}
}

// testTransitionResolvesCloudPCOnce: a name target is resolved while
// moving (approved → confirming); after that the Cloud PC is fixed.
func testTransitionResolvesCloudPCOnce(t *testing.T, h *Harness) {
	s := h.open(t)
	r := createIn(t, s, unresolved(), approvals.StateApproved)
	pc := uuid.NewString()
	got, err := s.Transition(context.Background(), r.ID, approvals.StateConfirming, func(c *approvals.Request) {
		c.CloudPCID = strings.ToUpper(pc)
	})
	if err != nil {
		t.Fatalf("resolving transition: %v", err)
	}
	if got.CloudPCID != pc || got.Target != r.Target {
		t.Errorf("CloudPCID, Target = %q, %q; want %q, %q", got.CloudPCID, got.Target, pc, r.Target)
	}
	if open, err := s.OpenFor(context.Background(), pc); err != nil || open.ID != r.ID {
		t.Errorf("OpenFor after resolving = %v, %v; want %s", describe(open), err, r.ID)
	}
	_, err = s.Transition(context.Background(), r.ID, approvals.StatePending, func(c *approvals.Request) {
		c.CloudPCID = uuid.NewString()
	})
	if err == nil || strings.Contains(err.Error(), "cannot become") {
		t.Errorf("re-resolving: %v, want a refusal of the CloudPCID change", err)
	}
	if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, got) {
		t.Errorf("refused re-resolve changed the request: %+v", stored)
	}
}

// testResolveToHeldCloudPC: resolving a target to a Cloud PC that another
// open request holds fails with ErrOpenRequestExists and saves nothing, by
// Transition and by Update alike.
func testResolveToHeldCloudPC(t *testing.T, h *Harness) {
	s := h.open(t)
	ctx := context.Background()
	holder := mustCreate(t, s, newRequest())
	for name, resolve := range map[string]func(id string, f func(*approvals.Request)) (*approvals.Request, error){
		"Transition": func(id string, f func(*approvals.Request)) (*approvals.Request, error) {
			return s.Transition(ctx, id, approvals.StateConfirming, f)
		},
		"Update": func(id string, f func(*approvals.Request)) (*approvals.Request, error) {
			return s.Update(ctx, id, f)
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := createIn(t, s, unresolved(), approvals.StateApproved)
			_, err := resolve(r.ID, func(c *approvals.Request) {
				c.CloudPCID = strings.ToUpper(holder.CloudPCID)
				c.Outcome = &approvals.Outcome{Kind: approvals.OutcomeNotRecorded}
			})
			if !errors.Is(err, approvals.ErrOpenRequestExists) {
				t.Fatalf("resolving to a held Cloud PC: %v, want ErrOpenRequestExists", err)
			}
			if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, r) {
				t.Errorf("refused resolve changed the request: %+v", stored)
			}
		})
	}
	// A Cloud PC that is free may be resolved to.
	mustMove(t, s, holder.ID, approvals.StateDenied)
	r := mustCreate(t, s, unresolved())
	if got := mustUpdate(t, s, r.ID, func(c *approvals.Request) { c.CloudPCID = holder.CloudPCID }); got.CloudPCID != holder.CloudPCID {
		t.Errorf("CloudPCID = %q after resolving to a free PC", got.CloudPCID)
	}
}

func testTransitionNotFound(t *testing.T, h *Harness) {
	s := h.open(t)
	_, err := s.Transition(context.Background(), "R-ZZZZZZ", approvals.StateApproved, func(*approvals.Request) {
		t.Error("update called for a missing request")
	})
	if !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("Transition of unknown reference: %v, want ErrNotFound", err)
	}
}

func testTransitionSkipsUpdateWhenRefused(t *testing.T, h *Harness) {
	s := h.open(t)
	r := createIn(t, s, newRequest(), approvals.StateDenied)
	_, err := s.Transition(context.Background(), r.ID, approvals.StateApproved, func(*approvals.Request) {
		t.Error("update called for a refused move")
	})
	var te *approvals.TransitionError
	if !errors.As(err, &te) {
		t.Errorf("got %v, want *TransitionError", err)
	}
	// TransitionFrom likewise, when the state is not one it expects.
	_, err = s.TransitionFrom(context.Background(), r.ID, []approvals.State{approvals.StatePending}, approvals.StateCanceled, func(*approvals.Request) {
		t.Error("update called for a refused claim")
	})
	if !errors.As(err, &te) || te.Current.State != approvals.StateDenied {
		t.Errorf("TransitionFrom: %v, want *TransitionError from denied", err)
	}
}

// testDataSurvivesReopen: what one store wrote, the next one opened on the
// database reads, the one-open-request rule included.
func testDataSurvivesReopen(t *testing.T, h *Harness) {
	db := h.NewDatabase(t)
	ctx := context.Background()
	s, err := h.Open(t, db)
	if err != nil {
		t.Fatal(err)
	}
	r := mustCreate(t, s, newRequest())
	prompts := []approvals.MessageRef{{ChannelID: "D_APPROVER", TS: "1712345678.000300"}}
	mustUpdate(t, s, r.ID, func(c *approvals.Request) { c.Prompts = prompts })
	mustRecord(t, s, approvals.Event{RequestID: r.ID, Kind: approvals.EventRequested})
	if err := s.Enqueue(ctx, approvals.Outgoing{RequestID: r.ID, Kind: approvals.OutgoingNotice, User: "U1", Notice: approvals.NoticeExpired}); err != nil {
		t.Fatal(err)
	}
	want := mustGet(t, s, r.ID)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = h.openDB(t, db)
	got := mustGet(t, s, r.ID)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after reopen Get = %+v\nwant %+v", got, want)
	}
	if got.State != approvals.StatePending || !reflect.DeepEqual(got.Prompts, prompts) {
		t.Errorf("after reopen: %+v", got)
	}
	pending, err := s.ListByState(ctx, approvals.StatePending)
	if err != nil || len(pending) != 1 {
		t.Errorf("pending after reopen = %v, %v", ids(pending), err)
	}
	events := mustEvents(t, s, time.Time{})
	if len(events) != 1 || events[0].RequestID != r.ID {
		t.Errorf("events after reopen = %v", events)
	}
	if due := dueNow(t, s, ""); len(due) != 1 || due[0].User != "U1" {
		t.Errorf("outbox after reopen: %+v", due)
	}
	// The open request still blocks another for the same Cloud PC.
	dup := newRequest()
	dup.CloudPCID = r.CloudPCID
	if err := s.Create(ctx, dup); !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("Create after reopen: %v, want ErrOpenRequestExists", err)
	}
}

// testHealth: Ping answers on a new store and CountOpen counts what holds
// a Cloud PC.
func testHealth(t *testing.T, h *Harness) {
	s := h.open(t)
	hs := health(t, s)
	if err := hs.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if n := countOpen(t, s); n != 0 {
		t.Errorf("CountOpen of a new store = %d", n)
	}
	a := mustCreate(t, s, newRequest())
	mustCreate(t, s, newRequest())
	mustMove(t, s, a.ID, approvals.StateDenied)
	if n := countOpen(t, s); n != 1 {
		t.Errorf("CountOpen = %d, want 1", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := hs.Ping(context.Background()); err == nil {
		t.Error("Ping of a closed store succeeded")
	}
}
