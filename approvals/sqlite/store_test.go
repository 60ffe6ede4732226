package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
)

func dbPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "approvals.db")
}

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// openReader opens path with OpenReader, closing it when the test ends.
func openReader(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.OpenReader(path)
	if err != nil {
		t.Fatalf("OpenReader(%q): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close reader: %v", err)
		}
	})
	return s
}

// rawDB opens the file with plain database/sql, as another tool (or an
// intruder with file access) would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newRequest() *approvals.Request {
	pc := uuid.NewString()
	return &approvals.Request{
		ID:               approvals.NewReference(),
		Target:           pc,
		CloudPCID:        pc,
		RequesterID:      "U_REQUESTER",
		RequestChannelID: "C_REQUESTS",
		Approvers:        []string{"U_APPROVER", "U_OTHER"},
	}
}

// unresolved returns a request for a device name whose Cloud PC is not known
// yet.
func unresolved() *approvals.Request {
	r := newRequest()
	r.Target, r.CloudPCID = "CPC-alice-01", ""
	return r
}

func mustCreate(t *testing.T, s *sqlite.Store, r *approvals.Request) *approvals.Request {
	t.Helper()
	if err := s.Create(context.Background(), r); err != nil {
		t.Fatalf("Create(%s): %v", r.ID, err)
	}
	return r
}

func mustGet(t *testing.T, s *sqlite.Store, id string) *approvals.Request {
	t.Helper()
	r, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return r
}

func mustMove(t *testing.T, s *sqlite.Store, id string, to approvals.State) *approvals.Request {
	t.Helper()
	r, err := s.Transition(context.Background(), id, to, nil)
	if err != nil {
		t.Fatalf("Transition(%s, %s): %v", id, to, err)
	}
	return r
}

func mustUpdate(t *testing.T, s *sqlite.Store, id string, update func(*approvals.Request)) *approvals.Request {
	t.Helper()
	r, err := s.Update(context.Background(), id, update)
	if err != nil {
		t.Fatalf("Update(%s): %v", id, err)
	}
	return r
}

// ids lists the references of rs, in order.
func ids(rs []*approvals.Request) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func TestOpenConfiguresConnections(t *testing.T) {
	s := openStore(t, dbPath(t))
	db := sqlite.DB(s)
	for pragma, want := range map[string]string{
		"journal_mode": "wal",
		"synchronous":  "2", // FULL
		"foreign_keys": "1",
		"busy_timeout": "5000",
		"user_version": "3",
	} {
		var got string
		if err := db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", pragma, err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
}

func TestOpenTwiceKeepsSchema(t *testing.T) {
	path := dbPath(t)
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r := mustCreate(t, s, newRequest())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Opening an existing, current database must not re-migrate.
	s = openStore(t, path)
	mustGet(t, s, r.ID)
	// Nor does a reader alongside.
	mustGet(t, openReader(t, path), r.ID)
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := dbPath(t)
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := rawDB(t, path).Exec("PRAGMA user_version = 4"); err != nil {
		t.Fatal(err)
	}
	s, err = sqlite.Open(path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a version 4 database succeeded, want an error")
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Errorf("error %q does not say the schema is newer", err)
	}
}

func TestOpenRefusesMemory(t *testing.T) {
	for _, path := range []string{"", ":memory:"} {
		if s, err := sqlite.Open(path); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded, want an error", path)
		}
	}
}

func TestOpenPathIsTakenLiterally(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "odd name?x=1#frag%41.db")
	openStore(t, path)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not created at %q: %v", path, err)
	}

	t.Chdir(dir)
	openStore(t, "relative.db")
	if _, err := os.Stat(filepath.Join(dir, "relative.db")); err != nil {
		t.Errorf("relative path not created in the working directory: %v", err)
	}
}

func TestCreateAndGet(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := newRequest()
	before := time.Now()
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

// fullRequest sets every field of a request, in several time zones, to
// values that tempt a careless encoder.
func fullRequest() *approvals.Request {
	east := time.FixedZone("UTC+5", 5*3600)
	west := time.FixedZone("UTC-7", -7*3600)
	tricky := "ünïcode ✓ 'quotes' \"and\" ; DROP TABLE requests; -- \n\t\x00 {\"json\": [1]}"
	pc := func(n int) approvals.CloudPC {
		return approvals.CloudPC{
			ID:                     uuid.NewString(),
			DisplayName:            fmt.Sprintf("Alice's PC %d", n),
			UserPrincipalName:      "alice@example.com",
			ManagedDeviceName:      fmt.Sprintf("CPC-alice-%02d", n),
			ServicePlanName:        "Cloud PC Enterprise 2vCPU/8GB/128GB",
			ProvisioningPolicyName: "Default",
			Status:                 "provisioned",
			StatusDetails:          tricky,
			LastModified:           time.Date(2025, 3, 9, 2, 30, 0, 999999999, west),
		}
	}
	device := pc(1)
	return &approvals.Request{
		ID:               approvals.NewReference(),
		Target:           "alice@example.com",
		CloudPCID:        device.ID,
		Reason:           tricky,
		RequesterID:      "U1",
		RequestChannelID: "C1",
		Approvers:        []string{"U2", "U3"},
		State:            approvals.StatePending,
		DecidedBy:        "U2",
		DecisionReason:   tricky,
		SignedInAs:       "bob@example.com",
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
			Matches: 3, Status: "inGracePeriod", CloudPCID: "4e1f0b9a-2c3d-4e5f-8a9b-0c1d2e3f4a5b", Other: "R-ABCDEF",
			OtherRequester: "U3", SignedInAs: "bob@example.com", Expected: "alice@example.com", Text: tricky},
		GraphRequestID: "g-1",
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

// checkEveryFieldSet fails when v (a struct, or a pointer or slice of them)
// has a zero field, so that a field added to Request later cannot slip past
// the round-trip test unstored.
func checkEveryFieldSet(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		checkEveryFieldSet(t, path, v.Elem())
	case reflect.Slice:
		for i := range v.Len() {
			checkEveryFieldSet(t, fmt.Sprintf("%s[%d]", path, i), v.Index(i))
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
				t.Errorf("fixture leaves %s zero", name)
				continue
			}
			checkEveryFieldSet(t, name, v.Field(i))
		}
	}
}

func TestCreateRoundTripsEveryField(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := fullRequest()
	checkEveryFieldSet(t, "Request", reflect.ValueOf(r))
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
	for name, pair := range map[string][2]time.Time{
		"CreatedAt":      {got.CreatedAt, time.Date(2024, 2, 29, 18, 59, 59, 123456789, time.UTC)},
		"ExpiresAt":      {got.ExpiresAt, time.Date(2024, 3, 2, 6, 59, 59, 999999999, time.UTC)},
		"Tracking.Until": {got.Tracking.Until, time.Date(2025, 3, 9, 19, 0, 0, 1, time.UTC)},
		"Device":         {got.Device.LastModified, time.Date(2025, 3, 9, 9, 30, 0, 999999999, time.UTC)},
	} {
		if !pair[0].Equal(pair[1]) {
			t.Errorf("%s = %v, want %v: lost precision or zone", name, pair[0], pair[1])
		}
	}
}

// TestCreateKeepsNilApartFromEmpty: "not looked up" (nil) and "looked up,
// nothing found" (empty) are different facts and must stay so, as must zero
// times inside the JSON columns.
func TestCreateKeepsNilApartFromEmpty(t *testing.T) {
	s := openStore(t, dbPath(t))
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

func TestCreateLowerCasesCloudPCID(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := newRequest()
	r.CloudPCID = strings.ToUpper(r.CloudPCID)
	mustCreate(t, s, r)
	if got := mustGet(t, s, r.ID).CloudPCID; got != strings.ToLower(got) {
		t.Errorf("CloudPCID stored as %q, want lower case", got)
	}
}

func TestCreateRefusesInvalid(t *testing.T) {
	tests := map[string]func(*approvals.Request){
		"malformed reference":    func(r *approvals.Request) { r.ID = "R-0000" },
		"cloud PC not a GUID":    func(r *approvals.Request) { r.CloudPCID = "../../deviceManagement" },
		"no target, no cloud PC": func(r *approvals.Request) { r.Target, r.CloudPCID = "", "" },
		"no requester":           func(r *approvals.Request) { r.RequesterID = "" },
		"no approvers":           func(r *approvals.Request) { r.Approvers = nil },
		"empty approvers":        func(r *approvals.Request) { r.Approvers = []string{} },
		"not pending":            func(r *approvals.Request) { r.State = approvals.StateApproved },
		"unknown state":          func(r *approvals.Request) { r.State = "bogus" },
		"year out of range":      func(r *approvals.Request) { r.CreatedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"expiry out of range":    func(r *approvals.Request) { r.ExpiresAt = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) },
		"device time out of range": func(r *approvals.Request) {
			r.Device = &approvals.CloudPC{LastModified: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
		},
	}
	s := openStore(t, dbPath(t))
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

func TestCreateDuplicateReference(t *testing.T) {
	s := openStore(t, dbPath(t))
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

// TestCreateUnresolvedTargets: requests whose Cloud PC is not known yet hold
// no Cloud PC, so any number of them may wait, even for the same name.
func TestCreateUnresolvedTargets(t *testing.T) {
	s := openStore(t, dbPath(t))
	a, b := mustCreate(t, s, unresolved()), mustCreate(t, s, unresolved())
	if a.CloudPCID != "" || mustGet(t, s, b.ID).Target != "CPC-alice-01" {
		t.Errorf("unresolved requests stored as %+v, %+v", a, mustGet(t, s, b.ID))
	}
	if _, err := s.OpenFor(context.Background(), ""); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("OpenFor(\"\"): %v, want ErrNotFound", err)
	}
}

// pathTo lists the moves from pending to reach each state.
var pathTo = map[approvals.State][]approvals.State{
	approvals.StatePending:        nil,
	approvals.StateApproved:       {approvals.StateApproved},
	approvals.StateConfirming:     {approvals.StateApproved, approvals.StateConfirming},
	approvals.StateExecuting:      {approvals.StateApproved, approvals.StateExecuting},
	approvals.StateSucceeded:      {approvals.StateApproved, approvals.StateExecuting, approvals.StateSucceeded},
	approvals.StateFailed:         {approvals.StateApproved, approvals.StateFailed},
	approvals.StateOutcomeUnknown: {approvals.StateApproved, approvals.StateExecuting, approvals.StateOutcomeUnknown},
	approvals.StateDenied:         {approvals.StateDenied},
	approvals.StateExpired:        {approvals.StateExpired},
	approvals.StateCanceled:       {approvals.StateCanceled},
}

func createIn(t *testing.T, s *sqlite.Store, r *approvals.Request, state approvals.State) *approvals.Request {
	t.Helper()
	mustCreate(t, s, r)
	for _, to := range pathTo[state] {
		r = mustMove(t, s, r.ID, to)
	}
	return r
}

// trackingActive and trackingDone are a followed and a finished reprovision.
var (
	trackingActive = approvals.Tracking{Until: time.Now().Add(time.Hour), LastStatus: "provisioning"}
	trackingDone   = approvals.Tracking{Until: time.Now().Add(time.Hour), Result: approvals.TrackProvisioned}
)

// holdCases are requests in every state, and succeeded or failed ones with
// tracking running or done, each with whether it holds its Cloud PC.
func holdCases() map[string]struct {
	state    approvals.State
	tracking approvals.Tracking
	holds    bool
} {
	cases := map[string]struct {
		state    approvals.State
		tracking approvals.Tracking
		holds    bool
	}{}
	for state := range pathTo {
		cases[string(state)] = struct {
			state    approvals.State
			tracking approvals.Tracking
			holds    bool
		}{state, approvals.Tracking{}, state.Open()}
	}
	cases["succeeded, tracking"] = struct {
		state    approvals.State
		tracking approvals.Tracking
		holds    bool
	}{approvals.StateSucceeded, trackingActive, true}
	cases["succeeded, tracking done"] = struct {
		state    approvals.State
		tracking approvals.Tracking
		holds    bool
	}{approvals.StateSucceeded, trackingDone, false}
	cases["failed, tracking"] = struct {
		state    approvals.State
		tracking approvals.Tracking
		holds    bool
	}{approvals.StateFailed, trackingActive, false}
	return cases
}

// TestOneOpenRequestPerCloudPC: while a request is Open (Request.Open) no
// other may be created for its Cloud PC, OpenFor finds it, and the stored
// holds_cloud_pc column agrees.
func TestOneOpenRequestPerCloudPC(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path)
	raw := rawDB(t, path)
	ctx := context.Background()
	for name, tc := range holdCases() {
		t.Run(name, func(t *testing.T) {
			first := createIn(t, s, newRequest(), tc.state)
			if tc.tracking != (approvals.Tracking{}) {
				first = mustUpdate(t, s, first.ID, func(r *approvals.Request) { r.Tracking = tc.tracking })
			}
			if first.Open() != tc.holds {
				t.Fatalf("Request.Open() = %v, want %v", first.Open(), tc.holds)
			}
			var holds bool
			if err := raw.QueryRow(`SELECT holds_cloud_pc FROM requests WHERE id = ?`, first.ID).Scan(&holds); err != nil {
				t.Fatal(err)
			}
			if holds != tc.holds {
				t.Errorf("holds_cloud_pc = %v, want %v", holds, tc.holds)
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

func TestCreateRaceOnSameCloudPC(t *testing.T) {
	s := openStore(t, dbPath(t))
	pc := uuid.NewString()
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			r := newRequest()
			r.CloudPCID = pc
			<-start
			errs[i] = s.Create(context.Background(), r)
		})
	}
	close(start)
	wg.Wait()
	created := 0
	for _, err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, approvals.ErrOpenRequestExists):
			t.Errorf("Create: %v, want nil or ErrOpenRequestExists", err)
		}
	}
	if created != 1 {
		t.Errorf("%d requests created for one Cloud PC, want 1", created)
	}
}

func TestGetNotFound(t *testing.T) {
	s := openStore(t, dbPath(t))
	if _, err := s.Get(context.Background(), "R-ZZZZZZ"); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("Get of unknown reference: %v, want ErrNotFound", err)
	}
}

func TestGetHonoursContext(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := mustCreate(t, s, newRequest())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Get(ctx, r.ID); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with canceled context: %v, want context.Canceled", err)
	}
}

// TestTransitionFollowsStateMachine tries every move from every state and
// checks the store agrees with State.CanMoveTo.
func TestTransitionFollowsStateMachine(t *testing.T) {
	s := openStore(t, dbPath(t))
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

func TestTransitionAppliesUpdate(t *testing.T) {
	s := openStore(t, dbPath(t))
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
	"several, all refused": func(c *approvals.Request) { c.ID, c.RequesterID = approvals.NewReference(), "U_MALLORY" },
}

func TestTransitionRefusesIdentityChange(t *testing.T) {
	s := openStore(t, dbPath(t))
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

// TestTransitionResolvesCloudPCOnce: a name target is resolved while moving
// (approved → confirming); after that the Cloud PC is fixed.
func TestTransitionResolvesCloudPCOnce(t *testing.T) {
	s := openStore(t, dbPath(t))
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
		t.Errorf("OpenFor after resolving = %v, %v; want %s", open, err, r.ID)
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

// TestResolveToHeldCloudPC: resolving a target to a Cloud PC that another
// open request holds fails with ErrOpenRequestExists and saves nothing, by
// Transition and by Update alike.
func TestResolveToHeldCloudPC(t *testing.T) {
	s := openStore(t, dbPath(t))
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

func TestTransitionNotFound(t *testing.T) {
	s := openStore(t, dbPath(t))
	_, err := s.Transition(context.Background(), "R-ZZZZZZ", approvals.StateApproved, func(*approvals.Request) {
		t.Error("update called for a missing request")
	})
	if !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("Transition of unknown reference: %v, want ErrNotFound", err)
	}
}

func TestTransitionSkipsUpdateWhenRefused(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := createIn(t, s, newRequest(), approvals.StateDenied)
	_, err := s.Transition(context.Background(), r.ID, approvals.StateApproved, func(*approvals.Request) {
		t.Error("update called for a refused move")
	})
	var te *approvals.TransitionError
	if !errors.As(err, &te) {
		t.Errorf("got %v, want *TransitionError", err)
	}
}

// race runs n concurrent pending→approved moves of one request, the i-th
// through stores[i%len(stores)], and checks exactly one wins.
func race(t *testing.T, n int, stores ...*sqlite.Store) {
	t.Helper()
	r := mustCreate(t, stores[0], newRequest())
	var (
		wg      sync.WaitGroup
		updates atomic.Int32
		start   = make(chan struct{})
		results = make([]*approvals.Request, n)
		errs    = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = stores[i%len(stores)].Transition(context.Background(), r.ID, approvals.StateApproved,
				func(c *approvals.Request) {
					updates.Add(1)
					c.DecidedBy = "U_APPROVER"
				})
		})
	}
	close(start)
	wg.Wait()

	winners := 0
	for i, err := range errs {
		var te *approvals.TransitionError
		switch {
		case err == nil:
			winners++
			if results[i].State != approvals.StateApproved {
				t.Errorf("winner returned state %s", results[i].State)
			}
		case errors.As(err, &te):
			if te.Current.State != approvals.StateApproved || te.Current.DecidedBy != "U_APPROVER" {
				t.Errorf("loser saw %+v, want the approved request", te.Current)
			}
		default:
			t.Errorf("Transition: %v, want success or *TransitionError", err)
		}
	}
	if winners != 1 {
		t.Errorf("%d of %d racing transitions succeeded, want exactly 1", winners, n)
	}
	if got := updates.Load(); got != 1 {
		t.Errorf("update ran %d times, want 1", got)
	}
}

// TestTransitionRace: the racing transitions run on several of the store's
// pooled SQLite connections, serialised by BEGIN IMMEDIATE. (Two processes
// cannot serve one file any more: see TestSecondOpenIsRefused.)
func TestTransitionRace(t *testing.T) {
	race(t, 20, openStore(t, dbPath(t)))
}

func TestUpdate(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := createIn(t, s, newRequest(), approvals.StateSucceeded)
	time.Sleep(time.Millisecond)
	next := time.Now().Add(time.Minute)
	got := mustUpdate(t, s, r.ID, func(c *approvals.Request) {
		c.Prompts = append(c.Prompts, approvals.MessageRef{ChannelID: "D1", TS: "1.1"}, approvals.MessageRef{ChannelID: "D2", TS: "2.2"})
		c.Candidates = []approvals.CloudPC{{ID: c.CloudPCID}}
		c.DecisionReason = "why not"
		c.Tracking = approvals.Tracking{Until: next.Add(time.Hour), NextCheck: next, Checks: 1, LastStatus: "provisioning"}
		c.UpdatedAt = time.Unix(0, 0) // overridden
	})
	if got.State != approvals.StateSucceeded || len(got.Prompts) != 2 || got.DecisionReason != "why not" ||
		got.Tracking.Checks != 1 || len(got.Candidates) != 1 {
		t.Errorf("update not applied: %+v", got)
	}
	if !got.Tracking.NextCheck.Equal(next) || got.Tracking.NextCheck.Location() != time.UTC {
		t.Errorf("NextCheck = %v, want %v in UTC", got.Tracking.NextCheck, next)
	}
	if !got.UpdatedAt.After(r.UpdatedAt) {
		t.Errorf("UpdatedAt = %v, want later than %v", got.UpdatedAt, r.UpdatedAt)
	}
	if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, got) {
		t.Errorf("Get = %+v\nUpdate returned %+v", stored, got)
	}

	// A nil update only touches UpdatedAt.
	touched := mustUpdate(t, s, r.ID, nil)
	touched.UpdatedAt = got.UpdatedAt
	if !reflect.DeepEqual(touched, got) {
		t.Errorf("nil update changed %+v", touched)
	}
}

func TestUpdateRefusesFixedFields(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := mustCreate(t, s, newRequest())
	changes := map[string]func(*approvals.Request){
		"State":                func(c *approvals.Request) { c.State = approvals.StateApproved },
		"CloudPCID not a GUID": func(c *approvals.Request) { c.CloudPCID = "../../users" },
		"time out of range":    func(c *approvals.Request) { c.ExpiresAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"approvers emptied":    func(c *approvals.Request) { c.Approvers = nil },
		"change plus other work": func(c *approvals.Request) {
			c.Outcome, c.Target = &approvals.Outcome{Kind: approvals.OutcomeNoMatch}, "y"
		},
	}
	for name, change := range fixedFieldChanges {
		changes[name] = change
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			_, err := s.Update(context.Background(), r.ID, change)
			if err == nil {
				t.Fatal("Update succeeded, want an error")
			}
			if errors.Is(err, approvals.ErrOpenRequestExists) || errors.Is(err, approvals.ErrNotFound) {
				t.Errorf("got %v, want a plain error", err)
			}
			if stored := mustGet(t, s, r.ID); !reflect.DeepEqual(stored, r) {
				t.Errorf("refused update changed the request: %+v", stored)
			}
		})
	}
}

func TestUpdateResolvesCloudPCOnce(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := mustCreate(t, s, unresolved())
	pc := uuid.NewString()
	got := mustUpdate(t, s, r.ID, func(c *approvals.Request) { c.CloudPCID = strings.ToUpper(pc) })
	if got.CloudPCID != pc {
		t.Errorf("CloudPCID = %q, want %q", got.CloudPCID, pc)
	}
	// The same id in another spelling is no change.
	mustUpdate(t, s, r.ID, func(c *approvals.Request) { c.CloudPCID = strings.ToUpper(pc) })
	if _, err := s.Update(context.Background(), r.ID, func(c *approvals.Request) { c.CloudPCID = uuid.NewString() }); err == nil {
		t.Error("second resolve succeeded, want an error")
	}
	dup := newRequest()
	dup.CloudPCID = pc
	if err := s.Create(context.Background(), dup); !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("Create for the resolved Cloud PC: %v, want ErrOpenRequestExists", err)
	}
}

func TestUpdateNotFound(t *testing.T) {
	s := openStore(t, dbPath(t))
	_, err := s.Update(context.Background(), "R-ZZZZZZ", func(*approvals.Request) {
		t.Error("update called for a missing request")
	})
	if !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("Update of unknown reference: %v, want ErrNotFound", err)
	}
}

// TestUpdateRaceLosesNothing: concurrent read-modify-writes, on several of
// the store's pooled SQLite connections, each add a prompt; none may be
// lost.
func TestUpdateRaceLosesNothing(t *testing.T) {
	s := openStore(t, dbPath(t))
	r := mustCreate(t, s, newRequest())
	const n = 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, err := s.Update(context.Background(), r.ID, func(c *approvals.Request) {
				c.Prompts = append(c.Prompts, approvals.MessageRef{ChannelID: fmt.Sprintf("D%d", i), TS: "1.0"})
			})
			if err != nil {
				t.Errorf("Update #%d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	got := mustGet(t, s, r.ID)
	seen := map[string]bool{}
	for _, p := range got.Prompts {
		seen[p.ChannelID] = true
	}
	if len(got.Prompts) != n || len(seen) != n {
		t.Errorf("%d prompts (%d distinct) after %d concurrent updates, want %d", len(got.Prompts), len(seen), n, n)
	}
}

// TestTrackingHoldsCloudPC: a succeeded request keeps its Cloud PC while its
// reprovision is followed and lets go when tracking ends.
func TestTrackingHoldsCloudPC(t *testing.T) {
	s := openStore(t, dbPath(t))
	ctx := context.Background()
	r := createIn(t, s, newRequest(), approvals.StateExecuting)
	r, err := s.Transition(ctx, r.ID, approvals.StateSucceeded, func(c *approvals.Request) { c.Tracking = trackingActive })
	if err != nil {
		t.Fatal(err)
	}
	dup := newRequest()
	dup.CloudPCID = r.CloudPCID
	if err := s.Create(ctx, dup); !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("Create while tracking: %v, want ErrOpenRequestExists", err)
	}
	mustUpdate(t, s, r.ID, func(c *approvals.Request) { c.Tracking.Result = approvals.TrackProvisioned })
	if _, err := s.OpenFor(ctx, r.CloudPCID); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("OpenFor after tracking ended: %v, want ErrNotFound", err)
	}
	if err := s.Create(ctx, dup); err != nil {
		t.Errorf("Create after tracking ended: %v", err)
	}
	// Tracking may not start again while another request holds the PC.
	_, err = s.Update(ctx, r.ID, func(c *approvals.Request) { c.Tracking.Result = "" })
	if !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("restarting tracking on a taken Cloud PC: %v, want ErrOpenRequestExists", err)
	}
}

func TestOpenFor(t *testing.T) {
	s := openStore(t, dbPath(t))
	ctx := context.Background()
	if _, err := s.OpenFor(ctx, uuid.NewString()); !errors.Is(err, approvals.ErrNotFound) {
		t.Errorf("OpenFor of an unknown Cloud PC: %v, want ErrNotFound", err)
	}
	old := createIn(t, s, newRequest(), approvals.StateDenied)
	r := newRequest()
	r.CloudPCID = old.CloudPCID
	mustCreate(t, s, r)
	got, err := s.OpenFor(ctx, old.CloudPCID)
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Errorf("OpenFor = %+v, %v; want the open one %+v", got, err, r)
	}
}

func TestListTracking(t *testing.T) {
	s := openStore(t, dbPath(t))
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	track := func(state approvals.State, tr approvals.Tracking) *approvals.Request {
		r := createIn(t, s, newRequest(), state)
		return mustUpdate(t, s, r.ID, func(c *approvals.Request) { c.Tracking = tr })
	}
	until := base.Add(time.Hour)
	later := track(approvals.StateSucceeded, approvals.Tracking{Until: until, NextCheck: base.Add(2 * time.Minute)})
	paused := track(approvals.StateSucceeded, approvals.Tracking{Until: until, NextCheck: base.Add(time.Minute), Paused: true})
	now := track(approvals.StateSucceeded, approvals.Tracking{Until: until}) // zero NextCheck: at once
	track(approvals.StateSucceeded, approvals.Tracking{Until: until, NextCheck: base, Result: approvals.TrackFailed})
	track(approvals.StateSucceeded, approvals.Tracking{NextCheck: base}) // never tracked
	mustCreate(t, s, newRequest())

	got, err := s.ListTracking(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{now.ID, paused.ID, later.ID}; !reflect.DeepEqual(ids(got), want) {
		t.Errorf("ListTracking = %v, want %v", ids(got), want)
	}
	if len(got) == 3 && !reflect.DeepEqual(got[1], paused) {
		t.Errorf("listed %+v\nwant   %+v", got[1], paused)
	}
}

func TestListByRequester(t *testing.T) {
	s := openStore(t, dbPath(t))
	ctx := context.Background()
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	mk := func(requester string, minutes int) *approvals.Request {
		r := newRequest()
		r.RequesterID = requester
		r.CreatedAt = base.Add(time.Duration(minutes) * time.Minute)
		return mustCreate(t, s, r)
	}
	second, first, third := mk("U_ALICE", 20), mk("U_ALICE", 10), mk("U_ALICE", 30)
	mk("U_BOB", 40)
	mustMove(t, s, second.ID, approvals.StateCanceled)

	for _, tc := range []struct {
		limit int
		want  []string
	}{
		{10, []string{third.ID, second.ID, first.ID}},
		{2, []string{third.ID, second.ID}},
		{0, nil},
		{-1, nil},
	} {
		got, err := s.ListByRequester(ctx, "U_ALICE", tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ids(got), tc.want) {
			t.Errorf("ListByRequester(limit %d) = %v, want %v", tc.limit, ids(got), tc.want)
		}
	}
	if got, err := s.ListByRequester(ctx, "U_NOBODY", 5); err != nil || len(got) != 0 {
		t.Errorf("ListByRequester(U_NOBODY) = %v, %v; want none", got, err)
	}
}

// TestSchemaChecksJSON: the JSON columns refuse what the store would never
// write, should another tool write to the file.
func TestSchemaChecksJSON(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path)
	r := mustCreate(t, s, newRequest())
	raw := rawDB(t, path)
	for _, set := range []string{
		`approvers = 'U1'`, `approvers = '[]'`, `approvers = 'null'`, `approvers = '{"a":1}'`,
		`prompts = '{'`, `prompts = '"x"'`, `device = '[]'`, `candidates = '{}'`,
		`tracking_paused = 2`, `holds_cloud_pc = 2`, `tracking_checks = -1`,
	} {
		if _, err := raw.Exec(`UPDATE requests SET `+set+` WHERE id = ?`, r.ID); err == nil {
			t.Errorf("SET %s accepted, want a refusal", set)
		}
	}
	if got := mustGet(t, s, r.ID); !reflect.DeepEqual(got, r) {
		t.Errorf("request changed: %+v", got)
	}
}

// TestReadersDoNotWaitForWriter: while the serving store holds the write
// lock, a reader (the audit command) still reads (WAL), sees only committed
// data, and sees the new data once committed.
func TestReadersDoNotWaitForWriter(t *testing.T) {
	path := dbPath(t)
	writer := openStore(t, path)
	reader := openReader(t, path)
	ctx := context.Background()
	r := mustCreate(t, writer, newRequest())
	if err := writer.Record(ctx, approvals.Event{Kind: approvals.EventRequested, RequestID: r.ID}); err != nil {
		t.Fatal(err)
	}

	tx, err := sqlite.DB(writer).BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO audit_events (time, request_id, kind, actor, details)
		VALUES ('2030-01-01T00:00:00.000000000Z', 'R-BBBBBB', 'approved', '', '{}')`); err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	events, err := reader.Events(short, time.Time{})
	if err != nil {
		t.Fatalf("Events while another handle writes: %v", err)
	}
	if len(events) != 1 {
		t.Errorf("reader saw %d events before commit, want 1", len(events))
	}
	if _, err := reader.Get(short, r.ID); err != nil {
		t.Errorf("Get while another handle writes: %v", err)
	}
	if _, err := reader.ListByState(short, approvals.StatePending); err != nil {
		t.Errorf("ListByState while another handle writes: %v", err)
	}
	if _, err := reader.OpenFor(short, r.CloudPCID); err != nil {
		t.Errorf("OpenFor while another handle writes: %v", err)
	}
	if _, err := reader.ListTracking(short); err != nil {
		t.Errorf("ListTracking while another handle writes: %v", err)
	}
	if _, err := reader.ListByRequester(short, r.RequesterID, 10); err != nil {
		t.Errorf("ListByRequester while another handle writes: %v", err)
	}

	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	events, err = reader.Events(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 {
		t.Errorf("reader saw %d events after commit, want 2", len(events))
	}
}

func TestConcurrentRecordAndEvents(t *testing.T) {
	path := dbPath(t)
	writer := openStore(t, path)
	reader := openReader(t, path)
	const n = 50
	ctx := context.Background()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(done)
		for i := range n {
			if err := writer.Record(ctx, approvals.Event{Kind: approvals.EventGraphCall, Details: map[string]string{"i": string(rune('a' + i%26))}}); err != nil {
				t.Errorf("Record: %v", err)
				return
			}
		}
	})
	wg.Go(func() {
		seen := 0
		for {
			select {
			case <-done:
				return
			default:
			}
			events, err := reader.Events(ctx, time.Time{})
			if err != nil {
				t.Errorf("Events during writes: %v", err)
				return
			}
			if len(events) < seen {
				t.Errorf("event count went from %d to %d", seen, len(events))
			}
			seen = len(events)
		}
	})
	wg.Wait()
	events, err := reader.Events(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != n {
		t.Errorf("%d events, want %d", len(events), n)
	}
}

func TestListByState(t *testing.T) {
	s := openStore(t, dbPath(t))
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	// Created out of time order, to show the order comes from CreatedAt.
	mk := func(minutes int) *approvals.Request {
		r := newRequest()
		r.CreatedAt = base.Add(time.Duration(minutes) * time.Minute)
		return mustCreate(t, s, r)
	}
	third, first, second, fourth := mk(30), mk(10), mk(20), mk(40)
	mustMove(t, s, second.ID, approvals.StateApproved)
	mustMove(t, s, fourth.ID, approvals.StateDenied)

	ids := func(states ...approvals.State) []string {
		t.Helper()
		rs, err := s.ListByState(context.Background(), states...)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	if got, want := ids(approvals.StatePending), []string{first.ID, third.ID}; !reflect.DeepEqual(got, want) {
		t.Errorf("pending = %v, want %v", got, want)
	}
	if got, want := ids(approvals.StateApproved, approvals.StatePending), []string{first.ID, second.ID, third.ID}; !reflect.DeepEqual(got, want) {
		t.Errorf("pending+approved = %v, want %v", got, want)
	}
	if got := ids(approvals.StateExecuting); len(got) != 0 {
		t.Errorf("executing = %v, want none", got)
	}
	if got := ids(); len(got) != 0 {
		t.Errorf("no states = %v, want none", got)
	}
	rs, err := s.ListByState(context.Background(), approvals.StatePending)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rs[0], first) {
		t.Errorf("listed %+v\nwant    %+v", rs[0], first)
	}
}

func TestRecordAndEvents(t *testing.T) {
	s := openStore(t, dbPath(t))
	ctx := context.Background()
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 500, time.UTC)
	recorded := []approvals.Event{
		{Time: t0.Add(2 * time.Second), RequestID: "R-CCCCCC", Kind: approvals.EventSucceeded},
		{Time: t0, RequestID: "R-AAAAAA", Kind: approvals.EventRequested, Actor: "U1",
			Details: map[string]string{"target": "pc-1", "quote": `"x"`, "utf8": "✓"}},
		{Time: t0.Add(time.Second).In(time.FixedZone("X", -7200)), RequestID: "R-AAAAAA", Kind: approvals.EventApproved, Actor: "U2"},
		{Time: t0.Add(time.Second), RequestID: "R-AAAAAA", Kind: approvals.EventGraphCall, Details: map[string]string{}},
	}
	for _, e := range recorded {
		if err := s.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}

	all, err := s.Events(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// Oldest first; equal times in recording order; UTC; empty details nil.
	want := []approvals.Event{recorded[1], recorded[2], recorded[3], recorded[0]}
	want[1].Time = want[1].Time.UTC()
	want[2].Details = nil
	if !reflect.DeepEqual(all, want) {
		t.Errorf("Events(zero) =\n%+v\nwant\n%+v", all, want)
	}

	since, err := s.Events(ctx, t0.Add(time.Second)) // inclusive
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(since, want[1:]) {
		t.Errorf("Events(since) =\n%+v\nwant\n%+v", since, want[1:])
	}
	none, err := s.Events(ctx, t0.Add(time.Hour))
	if err != nil || len(none) != 0 {
		t.Errorf("Events(future) = %v, %v; want none", none, err)
	}
}

func TestRecordDefaultsAndRefusals(t *testing.T) {
	s := openStore(t, dbPath(t))
	ctx := context.Background()
	before := time.Now()
	if err := s.Record(ctx, approvals.Event{Kind: approvals.EventRefusedClick, RequestID: "R-AAAAAA"}); err != nil {
		t.Fatal(err)
	}
	events, err := s.Events(ctx, time.Time{})
	if err != nil || len(events) != 1 {
		t.Fatalf("Events = %v, %v", events, err)
	}
	if at := events[0].Time; at.Before(before) || at.After(time.Now()) {
		t.Errorf("zero Time recorded as %v, want now", at)
	}
	if err := s.Record(ctx, approvals.Event{RequestID: "R-AAAAAA"}); err == nil {
		t.Error("Record without a kind succeeded, want an error")
	}
}

func TestAuditTrailIsAppendOnly(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path)
	ctx := context.Background()
	e := approvals.Event{Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), RequestID: "R-AAAAAA",
		Kind: approvals.EventApproved, Actor: "U2", Details: map[string]string{"k": "v"}}
	if err := s.Record(ctx, e); err != nil {
		t.Fatal(err)
	}

	raw := rawDB(t, path)
	for stmt, why := range map[string]string{
		`UPDATE audit_events SET actor = 'U_MALLORY'`: "append-only",
		`DELETE FROM audit_events`:                    "append-only",
		`INSERT OR REPLACE INTO audit_events (id, time, request_id, kind, actor, details)
			SELECT id, time, request_id, kind, 'U_MALLORY', details FROM audit_events`: "append-only",
		// A non-positive id would defeat the no-replace trigger.
		`INSERT INTO audit_events (id, time, request_id, kind, actor, details)
			VALUES (-1, '2025-01-01T00:00:00.000000000Z', 'R-AAAAAA', 'x', '', '{}')`: "CHECK constraint",
	} {
		_, err := raw.Exec(stmt)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("%s: got %v, want refusal mentioning %q", stmt, err, why)
		}
	}
	// Still appendable, through the store and directly.
	if err := s.Record(ctx, approvals.Event{Time: e.Time.Add(time.Second), Kind: approvals.EventSucceeded}); err != nil {
		t.Fatalf("Record after refused edits: %v", err)
	}

	events, err := s.Events(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 || !reflect.DeepEqual(events[0], e) {
		t.Errorf("audit trail changed: %+v", events)
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	path := dbPath(t)
	ctx := context.Background()
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r := mustCreate(t, s, newRequest())
	prompts := []approvals.MessageRef{{ChannelID: "D_APPROVER", TS: "1712345678.000300"}}
	mustUpdate(t, s, r.ID, func(c *approvals.Request) { c.Prompts = prompts })
	if err := s.Record(ctx, approvals.Event{RequestID: r.ID, Kind: approvals.EventRequested}); err != nil {
		t.Fatal(err)
	}
	want := mustGet(t, s, r.ID)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, path)
	got := mustGet(t, s, r.ID)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after reopen Get = %+v\nwant %+v", got, want)
	}
	if got.State != approvals.StatePending || !reflect.DeepEqual(got.Prompts, prompts) {
		t.Errorf("after reopen: %+v", got)
	}
	pending, err := s.ListByState(ctx, approvals.StatePending)
	if err != nil || len(pending) != 1 {
		t.Errorf("pending after reopen = %v, %v", pending, err)
	}
	events, err := s.Events(ctx, time.Time{})
	if err != nil || len(events) != 1 || events[0].RequestID != r.ID {
		t.Errorf("events after reopen = %v, %v", events, err)
	}
	// The open request still blocks another for the same Cloud PC.
	dup := newRequest()
	dup.CloudPCID = r.CloudPCID
	if err := s.Create(ctx, dup); !errors.Is(err, approvals.ErrOpenRequestExists) {
		t.Errorf("Create after reopen: %v, want ErrOpenRequestExists", err)
	}
}

// TestConcurrentOpenOfNewFile: the bot (several tries to start it at once)
// and the audit command, starting at the same moment on a new file. Exactly
// one Open serves it, the others are refused with ErrInUse, and no one fails
// with SQLITE_BUSY: a reader either finds no store yet, a store without
// its schema yet, or the whole schema. (Before the lock several Opens could
// all serve the file; about 1 in 30 runs one failed with SQLITE_BUSY.)
func TestConcurrentOpenOfNewFile(t *testing.T) {
	path := dbPath(t)
	const writers, readers = 3, 4
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		stores  = make([]*sqlite.Store, writers)
		errs    = make([]error, writers)
		created = make(chan string, writers)
	)
	for i := range writers {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = sqlite.Open(path)
			if errs[i] == nil {
				created <- mustCreate(t, stores[i], newRequest()).ID
			}
		})
	}
	for i := range readers {
		wg.Go(func() {
			<-start
			deadline := time.Now().Add(10 * time.Second)
			for {
				r, err := sqlite.OpenReader(path)
				if err == nil {
					if _, err := r.Events(context.Background(), time.Time{}); err != nil {
						t.Errorf("reader #%d: Events: %v", i, err)
					}
					r.Close()
					return
				}
				if !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "no schema") || time.Now().After(deadline) {
					t.Errorf("reader #%d: %v", i, err)
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	close(start)
	wg.Wait()

	var served *sqlite.Store
	for i, err := range errs {
		switch {
		case err == nil && served == nil:
			served = stores[i]
			defer served.Close()
		case err == nil:
			defer stores[i].Close()
			t.Errorf("Open #%d also serves the file", i)
		case !errors.Is(err, sqlite.ErrInUse):
			t.Errorf("Open #%d: %v, want success or ErrInUse", i, err)
		}
	}
	if served == nil {
		t.Fatal("no Open serves the file")
	}
	id := <-created
	mustGet(t, served, id)
	mustGet(t, openReader(t, path), id)
}

// TestWritersTakeTurnsOnNewFile: processes retrying to serve a new file,
// each writing once and closing, take turns: every Open either serves it or
// is refused with ErrInUse, never SQLITE_BUSY, and nothing is lost.
func TestWritersTakeTurnsOnNewFile(t *testing.T) {
	path := dbPath(t)
	const n = 4
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		ids   = make([]string, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			deadline := time.Now().Add(20 * time.Second)
			for {
				s, err := sqlite.Open(path)
				if errors.Is(err, sqlite.ErrInUse) && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
					continue
				}
				if err != nil {
					t.Errorf("writer #%d: %v", i, err)
					return
				}
				r := newRequest()
				if err := s.Create(context.Background(), r); err != nil {
					t.Errorf("writer #%d: Create: %v", i, err)
				}
				ids[i] = r.ID
				if err := s.Close(); err != nil {
					t.Errorf("writer #%d: Close: %v", i, err)
				}
				return
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	s := openStore(t, path)
	for _, id := range ids {
		mustGet(t, s, id)
	}
}

// TestOpenOfNewFileWaitsForAnOutsideWriteLock: another SQLite client (a
// sqlite3 shell, say) holding the write lock on a new file makes Open wait
// for it, as any write waits (busy_timeout), rather than fail at once with
// SQLITE_BUSY: switching the file to WAL mode upgrades a read lock, where
// SQLite does not wait by itself.
func TestOpenOfNewFileWaitsForAnOutsideWriteLock(t *testing.T) {
	path := dbPath(t)
	ctx := context.Background()
	conn, err := rawDB(t, path).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	const hold = 300 * time.Millisecond
	released := make(chan error, 1)
	time.AfterFunc(hold, func() {
		_, err := conn.ExecContext(ctx, "ROLLBACK")
		released <- err
	})

	begin := time.Now()
	s, err := sqlite.Open(path)
	took := time.Since(begin)
	if err != nil {
		t.Fatalf("Open while another client held the write lock for %s: %v (after %s)", hold, err, took)
	}
	defer s.Close()
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	if took < hold/2 {
		t.Errorf("Open took %s, less than the lock was held (%s)", took, hold)
	}
	var mode string
	var version int
	if err := sqlite.DB(s).QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	if err := sqlite.DB(s).QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != 3 {
		t.Errorf("user_version = %d, %v; want 3", version, err)
	}
	mustCreate(t, s, newRequest())
}

// TransitionFrom is the claim a worker makes: of two workers moving from the
// same state, one wins; a worker whose step was taken over cannot undo it,
// even where the state machine would allow the move from the new state.
func TestTransitionFromClaimsOnce(t *testing.T) {
	s := openStore(t, dbPath(t))
	ctx := context.Background()
	r := mustCreate(t, s, newRequest())
	if _, err := s.Transition(ctx, r.ID, approvals.StateApproved, nil); err != nil {
		t.Fatal(err)
	}
	before := []approvals.State{approvals.StateApproved, approvals.StateConfirming}
	var wg sync.WaitGroup
	wins := make(chan bool, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.TransitionFrom(ctx, r.ID, before, approvals.StateExecuting, nil)
			var te *approvals.TransitionError
			if err != nil && !errors.As(err, &te) {
				t.Errorf("TransitionFrom: %v", err)
			}
			wins <- err == nil
		}()
	}
	wg.Wait()
	close(wins)
	n := 0
	for w := range wins {
		if w {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d workers claimed the step, want 1", n)
	}
	// executing → pending is a legal move, but not for a worker that expected
	// the request still to be approved.
	_, err := s.TransitionFrom(ctx, r.ID, before, approvals.StatePending, nil)
	var te *approvals.TransitionError
	if !errors.As(err, &te) || te.Current.State != approvals.StateExecuting {
		t.Fatalf("a stale worker moved the request: %v", err)
	}
	got, _ := s.Get(ctx, r.ID)
	if got.State != approvals.StateExecuting {
		t.Errorf("state %s, want executing", got.State)
	}
}

// TestOutcomeOfAnOlderVersionStillReads: versions before the workflow moved
// into approvals stored the outcome as a sentence; such a row must still
// load, with the sentence kept as the outcome's text, and a row without an
// outcome has none.
func TestOutcomeOfAnOlderVersionStillReads(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path)
	old := mustCreate(t, s, newRequest())
	none := mustCreate(t, s, newRequest())
	sentence := "Microsoft Graph refused (HTTP 409): the Cloud PC's current state does not allow it."
	if _, err := rawDB(t, path).Exec("UPDATE requests SET outcome = ? WHERE id = ?", sentence, old.ID); err != nil {
		t.Fatal(err)
	}
	got := mustGet(t, s, old.ID)
	if got.Outcome == nil || got.Outcome.Text != sentence || got.Outcome.Kind != "" {
		t.Errorf("older outcome read as %+v, want its sentence as Text", got.Outcome)
	}
	if got := mustGet(t, s, none.ID); got.Outcome != nil {
		t.Errorf("request without an outcome read as %+v, want nil", got.Outcome)
	}
}

// A version 1 store (before the approval deadline had a column of its own)
// is migrated at Open: each request's approval deadline is its expiry.
func TestMigrationKeepsTheApprovalDeadline(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path)
	r := newRequest()
	r.ExpiresAt = time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	r.DecideBy = time.Time{}
	mustCreate(t, s, r)
	confirming := newRequest()
	confirming.ExpiresAt = time.Date(2030, 1, 1, 0, 30, 0, 0, time.UTC) // the confirmation window
	mustCreate(t, s, confirming)
	mustMove(t, s, confirming.ID, approvals.StateApproved)
	mustMove(t, s, confirming.ID, approvals.StateConfirming)
	s.Close()
	raw := rawDB(t, path)
	for _, stmt := range []string{"DROP TABLE outbox", "DROP INDEX requests_by_update", "ALTER TABLE requests DROP COLUMN decide_by", "PRAGMA user_version = 1"} {
		if _, err := raw.Exec(stmt); err != nil {
			t.Fatalf("making a version 1 store: %s: %v", stmt, err)
		}
	}
	raw.Close()
	s = openStore(t, path)
	got := mustGet(t, s, r.ID)
	if !got.DecideBy.Equal(r.ExpiresAt) || !got.ExpiresAt.Equal(r.ExpiresAt) {
		t.Errorf("after the migration: decide by %v, expires %v; want both %v", got.DecideBy, got.ExpiresAt, r.ExpiresAt)
	}
	// Awaiting confirmation, its expiry is the confirmation window, not an
	// approval deadline: it gets none rather than one that ends early.
	if got := mustGet(t, s, confirming.ID); !got.DecideBy.IsZero() || !got.ExpiresAt.Equal(confirming.ExpiresAt) {
		t.Errorf("confirming after the migration: decide by %v, expires %v", got.DecideBy, got.ExpiresAt)
	}
}
