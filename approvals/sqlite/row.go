package sqlite

import (
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
	"holds_cloud_pc",
}

var (
	selectColumns = strings.Join(requestColumns[:len(requestColumns)-1], ", ")
	insertRequest = `INSERT INTO requests (` + strings.Join(requestColumns, ", ") + `) VALUES (` +
		strings.TrimSuffix(strings.Repeat("?, ", len(requestColumns)), ", ") + `)`
	// updateRequest rewrites every column but id, which is the last argument.
	updateRequest = `UPDATE requests SET ` + strings.Join(requestColumns[1:], " = ?, ") + ` = ? WHERE id = ?`
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
	)
	err := row.Scan(&r.ID, &r.Target, &r.CloudPCID, &r.Reason, &r.RequesterID, &r.RequestChannelID, &approvers,
		&state, &r.DecidedBy, &r.DecisionReason, &r.SignedInAs,
		&prompts, &device, &cds, &outcome, &r.GraphRequestID,
		&since, &until, &next, &r.Tracking.Checks, &r.Tracking.LastStatus, &r.Tracking.Paused, &r.Tracking.Result,
		&created, &updated, &expires, &decideBy,
		&r.Options.OSVersion, &r.Options.UserAccountType, &r.ApprovalsRequired, &approved,
		&r.HeadsUp.UserID, &r.HeadsUp.Result, &sendAt, &r.HeadsUp.MoreTimeAsked, &r.HeadsUp.Postponed, &r.HeadsUp.SignInLost)
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
		ProvisioningPolicyName: pc.ProvisioningPolicyName, Status: pc.Status, StatusDetails: pc.StatusDetails,
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
		ProvisioningPolicyName: j.ProvisioningPolicyName, Status: j.Status, StatusDetails: j.StatusDetails,
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
	return &c
}

// normalized returns a copy of r as Get will return it: times in UTC without
// monotonic readings, and CloudPCID in lower case (Graph ids are
// case-insensitive; one spelling keeps the one-open-request index effective).
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
