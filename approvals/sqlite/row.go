package sqlite

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// requestColumns are the columns of the requests table in the order that
// encodeRequest produces and (all but the last, which is derived) scanRequest
// reads.
var requestColumns = []string{
	"id", "target", "cloud_pc_id", "reason", "requester_id", "request_channel_id", "approvers",
	"state", "decided_by", "decision_reason", "signed_in_as",
	"prompts", "device", "candidates", "outcome", "graph_request_id",
	"tracking_since", "tracking_until", "tracking_next_check", "tracking_checks", "tracking_last_status",
	"tracking_paused", "tracking_result",
	"created_at", "updated_at", "expires_at", "decide_by",
	"os_version", "user_account_type", "approvals_required", "approvals",
	"heads_up_user_id", "heads_up_result", "send_at", "more_time_asked", "postponed", "sign_in_lost",
	"batch",
	"holds_cloud_pc",
}

var (
	selectColumns = strings.Join(requestColumns[:len(requestColumns)-1], ", ")
	insertRequest = `INSERT INTO requests (` + strings.Join(requestColumns, ", ") + `) VALUES (` +
		strings.TrimSuffix(strings.Repeat("?, ", len(requestColumns)), ", ") + `)`
	// updateRequest rewrites every column but id, which is the last argument.
	updateRequest = `UPDATE requests SET ` + strings.Join(requestColumns[1:], " = ?, ") + ` = ? WHERE id = ?`
	selectRequest = `SELECT ` + selectColumns + ` FROM requests WHERE id = ?`
)

// encodeRequest returns r's column values in requestColumns order, with
// holds_cloud_pc computed from r.Open().
func encodeRequest(r *approvals.Request) ([]any, error) {
	var e encoder
	values := []any{
		r.ID, r.Target, r.CloudPCID, r.Reason, r.RequesterID, r.RequestChannelID, e.json("approvers", r.Approvers),
		string(r.State), r.DecidedBy, r.DecisionReason, r.SignedInAs,
		e.json("prompts", mapSlice(r.Prompts, promptToJSON)), e.json("device", e.device(r.Device)),
		e.json("candidates", mapSlice(r.Candidates, e.cloudPC)), e.outcome(r.Outcome), r.GraphRequestID,
		e.optTime("tracking since", r.Tracking.Since), e.optTime("tracking until", r.Tracking.Until), e.optTime("tracking next check", r.Tracking.NextCheck),
		r.Tracking.Checks, r.Tracking.LastStatus, r.Tracking.Paused, r.Tracking.Result,
		e.time("created at", r.CreatedAt), e.time("updated at", r.UpdatedAt), e.optTime("expires at", r.ExpiresAt),
		e.optTime("decide by", r.DecideBy),
		r.Options.OSVersion, r.Options.UserAccountType, r.ApprovalsRequired,
		e.json("approvals", mapSlice(r.Approvals, e.approval)),
		r.HeadsUp.UserID, r.HeadsUp.Result, e.optTime("send at", r.HeadsUp.SendAt),
		r.HeadsUp.MoreTimeAsked, r.HeadsUp.Postponed, r.HeadsUp.SignInLost,
		e.batch(r.Batch),
		r.Open(),
	}
	return values, e.err
}

// scanRequest reads one row selected with selectColumns.
func scanRequest(row interface{ Scan(...any) error }) (*approvals.Request, error) {
	var (
		r                                      approvals.Request
		state, approvers, prompts, device, cds string
		since, until, next, created, updated   string
		expires, decideBy, outcome, approved   string
		sendAt                                 string
		batch                                  sql.NullString
	)
	err := row.Scan(&r.ID, &r.Target, &r.CloudPCID, &r.Reason, &r.RequesterID, &r.RequestChannelID, &approvers,
		&state, &r.DecidedBy, &r.DecisionReason, &r.SignedInAs,
		&prompts, &device, &cds, &outcome, &r.GraphRequestID,
		&since, &until, &next, &r.Tracking.Checks, &r.Tracking.LastStatus, &r.Tracking.Paused, &r.Tracking.Result,
		&created, &updated, &expires, &decideBy,
		&r.Options.OSVersion, &r.Options.UserAccountType, &r.ApprovalsRequired, &approved,
		&r.HeadsUp.UserID, &r.HeadsUp.Result, &sendAt, &r.HeadsUp.MoreTimeAsked, &r.HeadsUp.Postponed, &r.HeadsUp.SignInLost,
		&batch)
	if err != nil {
		return nil, err
	}
	r.State = approvals.State(state)
	r.Outcome = approvals.DecodeOutcome(outcome)

	d := decoder{id: r.ID}
	d.json("approvers", approvers, &r.Approvers)
	var ps []promptJSON
	d.json("prompts", prompts, &ps)
	r.Prompts = mapSlice(ps, promptFromJSON)
	var dev *cloudPCJSON
	d.json("device", device, &dev)
	if dev != nil {
		pc := d.cloudPC(*dev)
		r.Device = &pc
	}
	var cs []cloudPCJSON
	d.json("candidates", cds, &cs)
	r.Candidates = mapSlice(cs, d.cloudPC)
	var as []approvalJSON
	d.json("approvals", approved, &as)
	r.Approvals = mapSlice(as, d.approval)
	r.Tracking.Since = d.optTime("tracking_since", since)
	r.Tracking.Until = d.optTime("tracking_until", until)
	r.Tracking.NextCheck = d.optTime("tracking_next_check", next)
	r.CreatedAt = d.time("created_at", created)
	r.UpdatedAt = d.time("updated_at", updated)
	r.ExpiresAt = d.optTime("expires_at", expires)
	r.DecideBy = d.optTime("decide_by", decideBy)
	r.HeadsUp.SendAt = d.optTime("send_at", sendAt)
	if batch.Valid {
		var b batchJSON
		d.json("batch", batch.String, &b)
		r.Batch = d.batch(b)
	}
	if d.err != nil {
		return nil, d.err
	}
	return &r, nil
}

// promptJSON and cloudPCJSON are how MessageRef and CloudPC are stored. They
// are separate from the domain types so that renaming a Go field does not
// silently orphan what is already on disk.
type promptJSON struct {
	ChannelID string `json:"channel_id"`
	TS        string `json:"ts"`
	UserID    string `json:"user_id"`
}

func promptToJSON(m approvals.MessageRef) promptJSON {
	return promptJSON{ChannelID: m.ChannelID, TS: m.TS, UserID: m.UserID}
}

func promptFromJSON(p promptJSON) approvals.MessageRef {
	return approvals.MessageRef{ChannelID: p.ChannelID, TS: p.TS, UserID: p.UserID}
}

type cloudPCJSON struct {
	ID                     string `json:"id"`
	DisplayName            string `json:"display_name"`
	UserPrincipalName      string `json:"user_principal_name"`
	ManagedDeviceName      string `json:"managed_device_name"`
	ServicePlanName        string `json:"service_plan_name"`
	ProvisioningPolicyName string `json:"provisioning_policy_name"`
	ProvisioningPolicyID   string `json:"provisioning_policy_id"`
	Status                 string `json:"status"`
	StatusDetails          string `json:"status_details"`
	// LastModified is in the column time format; "" is the zero time.
	LastModified string `json:"last_modified"`
}

// approvalJSON is how an Approval is stored; At in the column time format.
type approvalJSON struct {
	By         string `json:"by"`
	SignedInAs string `json:"signed_in_as"`
	At         string `json:"at"`
}

func (e *encoder) approval(a approvals.Approval) approvalJSON {
	return approvalJSON{By: a.By, SignedInAs: a.SignedInAs, At: e.time("approval time", a.At)}
}

func (d *decoder) approval(j approvalJSON) approvals.Approval {
	return approvals.Approval{By: j.By, SignedInAs: j.SignedInAs, At: d.time("approval at", j.At)}
}

// mapSlice converts each element, keeping nil apart from empty: a request
// with no candidates looked up differs from one whose lookup found none.
func mapSlice[T, U any](in []T, f func(T) U) []U {
	if in == nil {
		return nil
	}
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

// encoder collects the first error of a row's conversions, so that
// encodeRequest reads as a plain list of columns.
type encoder struct{ err error }

func (e *encoder) fail(field string, err error) {
	if e.err == nil {
		e.err = fmt.Errorf("%s: %w", field, err)
	}
}

func (e *encoder) time(field string, t time.Time) string {
	s, err := formatTime(t)
	if err != nil {
		e.fail(field, err)
	}
	return s
}

// optTime stores the zero time as "", so that SQL can tell "not set" apart
// without knowing Go's zero time.
func (e *encoder) optTime(field string, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return e.time(field, t)
}

func (e *encoder) json(field string, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		e.fail(field, err)
	}
	return string(b)
}

func (e *encoder) cloudPC(pc approvals.CloudPC) cloudPCJSON {
	return cloudPCJSON{
		ID: pc.ID, DisplayName: pc.DisplayName, UserPrincipalName: pc.UserPrincipalName,
		ManagedDeviceName: pc.ManagedDeviceName, ServicePlanName: pc.ServicePlanName,
		ProvisioningPolicyName: pc.ProvisioningPolicyName, ProvisioningPolicyID: pc.ProvisioningPolicyID,
		Status: pc.Status, StatusDetails: pc.StatusDetails,
		LastModified: e.optTime("cloud PC last modified", pc.LastModified),
	}
}

func (e *encoder) device(pc *approvals.CloudPC) *cloudPCJSON {
	if pc == nil {
		return nil
	}
	j := e.cloudPC(*pc)
	return &j
}

// decoder is encoder's counterpart for scanRequest.
type decoder struct {
	id  string
	err error
}

func (d *decoder) fail(field string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("request %s: %s: %w", d.id, field, err)
	}
}

func (d *decoder) time(field, s string) time.Time {
	t, err := parseTime(s)
	if err != nil {
		d.fail(field, err)
	}
	return t
}

func (d *decoder) optTime(field, s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	return d.time(field, s)
}

func (d *decoder) json(field, s string, v any) {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		d.fail(field, err)
	}
}

func (d *decoder) cloudPC(j cloudPCJSON) approvals.CloudPC {
	return approvals.CloudPC{
		ID: j.ID, DisplayName: j.DisplayName, UserPrincipalName: j.UserPrincipalName,
		ManagedDeviceName: j.ManagedDeviceName, ServicePlanName: j.ServicePlanName,
		ProvisioningPolicyName: j.ProvisioningPolicyName, ProvisioningPolicyID: j.ProvisioningPolicyID,
		Status: j.Status, StatusDetails: j.StatusDetails,
		LastModified: d.optTime("cloud PC last_modified", j.LastModified),
	}
}

// clone copies r deeply enough that changing the copy's slices or Device
// leaves r alone: Transition and Update compare the two afterwards.
func clone(r *approvals.Request) *approvals.Request {
	c := *r
	c.Approvers = slices.Clone(r.Approvers)
	c.Prompts = slices.Clone(r.Prompts)
	c.Candidates = slices.Clone(r.Candidates)
	c.Approvals = slices.Clone(r.Approvals)
	if r.Device != nil {
		d := *r.Device
		c.Device = &d
	}
	if r.Batch != nil {
		b := *r.Batch
		b.Targets = slices.Clone(r.Batch.Targets)
		b.Members = slices.Clone(r.Batch.Members)
		c.Batch = &b
	}
	return &c
}

// normalized returns a copy of r as Get will return it: times in UTC without
// monotonic readings, and CloudPCID, its batch members' too, in lower case
// (Graph ids are case-insensitive; one spelling keeps the one-open-request
// index and cloud_pc_holds effective).
func normalized(r *approvals.Request) *approvals.Request {
	c := clone(r)
	c.CloudPCID = strings.ToLower(c.CloudPCID)
	c.CreatedAt, c.UpdatedAt, c.ExpiresAt, c.DecideBy = c.CreatedAt.UTC(), c.UpdatedAt.UTC(), c.ExpiresAt.UTC(), c.DecideBy.UTC()
	c.Tracking.Since, c.Tracking.Until, c.Tracking.NextCheck = c.Tracking.Since.UTC(), c.Tracking.Until.UTC(), c.Tracking.NextCheck.UTC()
	c.HeadsUp.SendAt = c.HeadsUp.SendAt.UTC()
	if c.Device != nil {
		c.Device.LastModified = c.Device.LastModified.UTC()
	}
	for i := range c.Candidates {
		c.Candidates[i].LastModified = c.Candidates[i].LastModified.UTC()
	}
	for i := range c.Approvals {
		c.Approvals[i].At = c.Approvals[i].At.UTC()
	}
	if c.Batch != nil {
		for i := range c.Batch.Members {
			m := &c.Batch.Members[i]
			m.CloudPCID = strings.ToLower(m.CloudPCID)
			m.Device.LastModified = m.Device.LastModified.UTC()
			m.HeadsUp.SendAt = m.HeadsUp.SendAt.UTC()
		}
	}
	return c
}

// outcome keeps the outcome's facts as JSON in the outcome column (older
// rows hold a sentence there, which DecodeOutcome keeps as text).
func (e *encoder) outcome(o *approvals.Outcome) string {
	s, err := approvals.EncodeOutcome(o)
	if err != nil {
		e.fail("outcome", err)
	}
	return s
}

// batchJSON, memberJSON and headsUpJSON are how a Batch is stored, in the
// batch column (NULL for a single request), apart from the domain types
// like cloudPCJSON. Times are in the column time format, "" being the zero
// time; Targets and Members keep nil apart from empty.
type batchJSON struct {
	Targets    []string     `json:"targets"`
	Policy     string       `json:"policy"`
	PolicyID   string       `json:"policy_id"`
	PolicyName string       `json:"policy_name"`
	Members    []memberJSON `json:"members"`
	Stopped    bool         `json:"stopped"`
	StoppedBy  string       `json:"stopped_by"`
	Halted     bool         `json:"halted"`
}

type memberJSON struct {
	Target         string      `json:"target"`
	CloudPCID      string      `json:"cloud_pc_id"`
	Device         cloudPCJSON `json:"device"`
	Result         string      `json:"result"`
	Detail         string      `json:"detail"`
	Other          string      `json:"other"`
	GraphCode      string      `json:"graph_code"`
	GraphStatus    int         `json:"graph_status"`
	GraphRequestID string      `json:"graph_request_id"`
	HeadsUp        headsUpJSON `json:"heads_up"`
	Tracked        string      `json:"tracked"`
}

type headsUpJSON struct {
	UserID        string `json:"user_id"`
	Result        string `json:"result"`
	SendAt        string `json:"send_at"`
	MoreTimeAsked bool   `json:"more_time_asked"`
	Postponed     bool   `json:"postponed"`
	SignInLost    bool   `json:"sign_in_lost"`
}

// batch returns the batch column's value: nil (NULL) for a single request.
func (e *encoder) batch(b *approvals.Batch) any {
	if b == nil {
		return nil
	}
	return e.json("batch", batchJSON{
		Targets: b.Targets, Policy: b.Policy, PolicyID: b.PolicyID, PolicyName: b.PolicyName,
		Members: mapSlice(b.Members, e.member),
		Stopped: b.Stopped, StoppedBy: b.StoppedBy, Halted: b.Halted,
	})
}

func (e *encoder) member(m approvals.Member) memberJSON {
	return memberJSON{
		Target: m.Target, CloudPCID: m.CloudPCID, Device: e.cloudPC(m.Device), Result: string(m.Result),
		Detail: m.Detail, Other: m.Other,
		GraphCode: m.GraphCode, GraphStatus: m.GraphStatus, GraphRequestID: m.GraphRequestID,
		HeadsUp: headsUpJSON{
			UserID: m.HeadsUp.UserID, Result: m.HeadsUp.Result, SendAt: e.optTime("member send at", m.HeadsUp.SendAt),
			MoreTimeAsked: m.HeadsUp.MoreTimeAsked, Postponed: m.HeadsUp.Postponed, SignInLost: m.HeadsUp.SignInLost,
		},
		Tracked: m.Tracked,
	}
}

func (d *decoder) batch(j batchJSON) *approvals.Batch {
	return &approvals.Batch{
		Targets: j.Targets, Policy: j.Policy, PolicyID: j.PolicyID, PolicyName: j.PolicyName,
		Members: mapSlice(j.Members, d.member),
		Stopped: j.Stopped, StoppedBy: j.StoppedBy, Halted: j.Halted,
	}
}

func (d *decoder) member(j memberJSON) approvals.Member {
	return approvals.Member{
		Target: j.Target, CloudPCID: j.CloudPCID, Device: d.cloudPC(j.Device), Result: approvals.MemberResult(j.Result),
		Detail: j.Detail, Other: j.Other,
		GraphCode: j.GraphCode, GraphStatus: j.GraphStatus, GraphRequestID: j.GraphRequestID,
		HeadsUp: approvals.HeadsUp{
			UserID: j.HeadsUp.UserID, Result: j.HeadsUp.Result, SendAt: d.optTime("member send_at", j.HeadsUp.SendAt),
			MoreTimeAsked: j.HeadsUp.MoreTimeAsked, Postponed: j.HeadsUp.Postponed, SignInLost: j.HeadsUp.SignInLost,
		},
		Tracked: j.Tracked,
	}
}
