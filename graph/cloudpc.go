package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// Lookup errors. The lookups return errors for which errors.Is reports one of these (or
// ErrInvalidCloudPCID) without sending anything, or, for the paging ones, after the
// pages read so far.
var (
	// ErrInvalidTarget: the device name, display name or user principal name to look up
	// does not match the strict pattern (see ValidDeviceName, ValidUPN), or the field
	// is not one of the Field constants. Nothing is sent.
	ErrInvalidTarget = errors.New("graph: invalid Cloud PC name or user principal name")
	// ErrUntrustedNextLink: Graph's @odata.nextLink points somewhere else than the list
	// that was asked for (another scheme, host or path). It is not followed: the
	// approver's token goes only to the configured Graph. The list is incomplete.
	ErrUntrustedNextLink = errors.New("graph: next page link is not on the Graph base URL")
	// ErrTooManyPages: the list has more than MaxPages pages. The list is incomplete.
	ErrTooManyPages = errors.New("graph: too many result pages")
	// ErrBadAnswer is wrapped (in *Error.Err) when a 2xx answer is not the expected JSON.
	ErrBadAnswer = errors.New("graph: unexpected answer")
)

// MaxPages bounds how many pages (requests) one list reads.
const MaxPages = 20

// cloudPCSelect is the $select of every Cloud PC read. status and statusDetail are beta
// only. statusDetails (cloudPcStatusDetails) is deprecated and stopped returning data on
// 2024-08-31 in favour of statusDetail (cloudPcStatusDetail, same code/message shape); it
// is not selected (a $select of a property removed from the schema fails the whole
// request with 400), but it is still read if Graph sends it.
// provisioningPolicyId (beta only, like status) lets a batch by policy check each Cloud
// PC's policy.
const cloudPCSelect = "id,displayName,userPrincipalName,managedDeviceName,servicePlanName,provisioningPolicyName,provisioningPolicyId,status,statusDetail,lastModifiedDateTime"

// Field is a Cloud PC property FindCloudPCs can filter on.
type Field string

// The fields FindCloudPCs accepts.
const (
	ByManagedDeviceName Field = "managedDeviceName"
	ByDisplayName       Field = "displayName"
	ByUserPrincipalName Field = "userPrincipalName"
)

// ValidDeviceName reports whether s may be looked up as a managedDeviceName or
// displayName (approvals.ValidDeviceName: the workflow checks targets by the same rule).
func ValidDeviceName(s string) bool { return approvals.ValidDeviceName(s) }

// ValidUPN reports whether s may be looked up as a userPrincipalName
// (approvals.ValidUPN).
func ValidUPN(s string) bool { return approvals.ValidUPN(s) }

func (f Field) valid(value string) bool {
	switch f {
	case ByManagedDeviceName, ByDisplayName:
		return ValidDeviceName(value)
	case ByUserPrincipalName:
		return ValidUPN(value)
	}
	return false
}

// odataString quotes s as an OData string literal, doubling every single quote.
func odataString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// queryEscape escapes a query value with %20 for spaces (OData services do not all read
// '+' as a space).
func queryEscape(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "+", "%20") }

// GetCloudPC sends GET {BaseURL}/deviceManagement/virtualEndpoint/cloudPCs/{id}?$select=…
// (one request, plus retries) and returns the Cloud PC. id must be a GUID (otherwise an
// error wrapping ErrInvalidCloudPCID, nothing sent). The returned ID is lower case; the
// status is Graph's own value, unknown values kept as they come; StatusDetails is Graph's
// status detail message (or its code), one line, at most 300 characters.
//
// Errors: ErrInvalidCloudPCID, ctx.Err() if ctx is already done, or *Error (a 404
// means there is no such Cloud PC). The Call is returned even on error.
func (c *Client) GetCloudPC(ctx context.Context, id string) (approvals.CloudPC, Call, error) {
	call := Call{Method: http.MethodGet}
	if !IsGUID(id) {
		return approvals.CloudPC{}, call, fmt.Errorf("%w: %q", ErrInvalidCloudPCID, id)
	}
	rawURL := c.cloudPCsURL() + "/" + url.PathEscape(id)
	call.Path = escapedPath(rawURL)
	if err := ctx.Err(); err != nil {
		return approvals.CloudPC{}, call, err
	}
	body, last, err := c.send(ctx, http.MethodGet, rawURL+"?$select="+cloudPCSelect, nil, &call)
	if err != nil {
		return approvals.CloudPC{}, call, err
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return approvals.CloudPC{}, call, badAnswer(last, len(call.Attempts), "the Cloud PC is not a JSON object")
	}
	pc := decodeCloudPC(obj)
	switch {
	case pc.ID == "":
		pc.ID = strings.ToLower(id)
	case !strings.EqualFold(pc.ID, id):
		return approvals.CloudPC{}, call, badAnswer(last, len(call.Attempts), "Graph answered with another Cloud PC")
	}
	return pc, call, nil
}

// FindCloudPCs lists the Cloud PCs whose field equals value:
// GET {BaseURL}/deviceManagement/virtualEndpoint/cloudPCs?$filter=<field> eq '<value>'&$select=…
// following @odata.nextLink, so one request per page (plus retries), at most MaxPages.
// value is checked first (ValidDeviceName for the name fields, ValidUPN for
// ByUserPrincipalName); if it fails, or field is unknown, the error wraps
// ErrInvalidTarget and nothing is sent. No match is an empty slice and no error.
//
// A next page is read only if its link has the base URL's scheme and host and the list's
// path; otherwise the error wraps ErrUntrustedNextLink. More than MaxPages pages: an
// error wrapping ErrTooManyPages. A partial list is never returned. The Call holds the
// attempts of every page in order. Every returned Cloud PC has a GUID ID (lower case).
func (c *Client) FindCloudPCs(ctx context.Context, by Field, value string) ([]approvals.CloudPC, Call, error) {
	listURL := c.cloudPCsURL()
	call := Call{Method: http.MethodGet, Path: escapedPath(listURL)}
	if !by.valid(value) {
		return nil, call, fmt.Errorf("%w: %s %q", ErrInvalidTarget, by, value)
	}
	if err := ctx.Err(); err != nil {
		return nil, call, err
	}
	filter := string(by) + " eq " + odataString(value)
	first := listURL + "?$filter=" + queryEscape(filter) + "&$select=" + cloudPCSelect
	pcs := []approvals.CloudPC{}
	err := c.list(ctx, first, &call, func(item json.RawMessage, last *attemptResult) error {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(item, &obj); err != nil || obj == nil {
			return badAnswer(last, len(call.Attempts), "a list item is not a JSON object")
		}
		pc := decodeCloudPC(obj)
		if !IsGUID(pc.ID) {
			// Dropping it could make an ambiguous name look unique.
			return badAnswer(last, len(call.Attempts), "a Cloud PC in the list has no valid id")
		}
		pcs = append(pcs, pc)
		return nil
	})
	if err != nil {
		return nil, call, err
	}
	return pcs, call, nil
}

// Resolve finds the Cloud PCs a requester's target names. target (trimmed) is:
//
//   - a GUID: GetCloudPC; 1 request (plus retries). A 404 gives an empty slice, no error.
//   - containing "@": FindCloudPCs(ByUserPrincipalName); 1 request per result page.
//   - anything else: FindCloudPCs(ByManagedDeviceName), and only if that finds nothing,
//     FindCloudPCs(ByDisplayName); 1 request per page of the first list, plus 1 per page
//     of the second when the first was empty (2 requests for a name that matches nothing).
//
// ("Plus retries": a GET is resent after 408/429/5xx, transport errors and timeouts, up to
// MaxRetries times per request.) A target that fails validation sends nothing and gives
// an error wrapping ErrInvalidTarget. No match is an empty, non-nil slice.
//
// calls holds, in order, every Call that made at least one HTTP attempt (also on error,
// and for a GUID that Graph answered with 404), for the audit trail.
func (c *Client) Resolve(ctx context.Context, target string) (pcs []approvals.CloudPC, calls []Call, err error) {
	keep := func(call Call) {
		if len(call.Attempts) > 0 {
			calls = append(calls, call)
		}
	}
	target = strings.TrimSpace(target)
	switch {
	case IsGUID(target):
		pc, call, err := c.GetCloudPC(ctx, target)
		keep(call)
		var ge *Error
		if errors.As(err, &ge) && ge.StatusCode == http.StatusNotFound {
			return []approvals.CloudPC{}, calls, nil
		}
		if err != nil {
			return nil, calls, err
		}
		return []approvals.CloudPC{pc}, calls, nil
	case strings.Contains(target, "@"):
		pcs, call, err := c.FindCloudPCs(ctx, ByUserPrincipalName, target)
		keep(call)
		return pcs, calls, err
	default:
		if !ValidDeviceName(target) {
			return nil, nil, fmt.Errorf("%w: %q", ErrInvalidTarget, target)
		}
		pcs, call, err := c.FindCloudPCs(ctx, ByManagedDeviceName, target)
		keep(call)
		if err != nil || len(pcs) > 0 {
			return pcs, calls, err
		}
		pcs, call, err = c.FindCloudPCs(ctx, ByDisplayName, target)
		keep(call)
		return pcs, calls, err
	}
}

// RemoteAction is one remote action (Reprovision, Reboot, …) run on a Cloud PC.
type RemoteAction struct {
	// Name is Graph's actionName, e.g. "Reprovision"; State its actionState (pending,
	// active, done, failed, canceled, notSupported; unknown values kept as they come).
	Name, State string
	// Started and Updated are startDateTime and lastUpdatedDateTime (UTC; zero if absent
	// or unreadable).
	Started, Updated time.Time
	// Details is the status detail message (or code), one line, at most 300 characters.
	Details string
}

// RemoteActionResults sends GET {BaseURL}/deviceManagement/virtualEndpoint/cloudPCs/{id}/retrieveCloudPcRemoteActionResults
// (beta; one request per page, plus retries) and returns the actions in Graph's order.
// id must be a GUID (otherwise ErrInvalidCloudPCID, nothing sent). Errors as for
// GetCloudPC and FindCloudPCs.
func (c *Client) RemoteActionResults(ctx context.Context, id string) ([]RemoteAction, Call, error) {
	call := Call{Method: http.MethodGet}
	if !IsGUID(id) {
		return nil, call, fmt.Errorf("%w: %q", ErrInvalidCloudPCID, id)
	}
	rawURL := c.cloudPCsURL() + "/" + url.PathEscape(id) + "/retrieveCloudPcRemoteActionResults"
	call.Path = escapedPath(rawURL)
	if err := ctx.Err(); err != nil {
		return nil, call, err
	}
	actions := []RemoteAction{}
	err := c.list(ctx, rawURL, &call, func(item json.RawMessage, last *attemptResult) error {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(item, &obj); err != nil || obj == nil {
			return badAnswer(last, len(call.Attempts), "a remote action result is not a JSON object")
		}
		actions = append(actions, RemoteAction{
			Name:    jsonText(obj["actionName"]),
			State:   jsonText(obj["actionState"]),
			Started: jsonTime(obj["startDateTime"]),
			Updated: jsonTime(obj["lastUpdatedDateTime"]),
			Details: statusDetail(obj),
		})
		return nil
	})
	if err != nil {
		return nil, call, err
	}
	return actions, call, nil
}

// list reads an OData collection from first, following @odata.nextLink within the same
// collection, and calls each for every item of "value". Every page's attempts go to call.
func (c *Client) list(ctx context.Context, first string, call *Call, each func(json.RawMessage, *attemptResult) error) error {
	return c.listPages(ctx, first, func() *Call { return call }, func(item json.RawMessage, last *attemptResult, _ *Call) error {
		return each(item, last)
	})
}

// listPages is list with a Call per page: pageCall gives the Call the next page's
// attempts go to (the same one every time, or a new one per page), and each gets it.
func (c *Client) listPages(ctx context.Context, first string, pageCall func() *Call, each func(json.RawMessage, *attemptResult, *Call) error) error {
	want, err := url.Parse(first)
	if err != nil {
		return &Error{Method: http.MethodGet, Err: err}
	}
	next := first
	for page := 1; ; page++ {
		call := pageCall()
		body, last, err := c.send(ctx, http.MethodGet, next, nil, call)
		if err != nil {
			return err
		}
		var p struct {
			Value    *[]json.RawMessage `json:"value"`
			NextLink *string            `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(body, &p); err != nil || p.Value == nil {
			return badAnswer(last, len(call.Attempts), "the list has no value array")
		}
		for _, item := range *p.Value {
			if err := each(item, last, call); err != nil {
				return err
			}
		}
		if p.NextLink == nil || *p.NextLink == "" {
			return nil
		}
		if !sameCollection(*p.NextLink, want) {
			return fmt.Errorf("%w (page %d)", ErrUntrustedNextLink, page)
		}
		if page >= MaxPages {
			return fmt.Errorf("%w: more than %d", ErrTooManyPages, MaxPages)
		}
		next = *p.NextLink
	}
}

// sameCollection reports whether link is an absolute URL with want's scheme, host (and
// port) and path, and no user info or fragment.
func sameCollection(link string, want *url.URL) bool {
	u, err := url.Parse(link)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Scheme, want.Scheme) && strings.EqualFold(u.Host, want.Host) &&
		strings.EqualFold(u.EscapedPath(), want.EscapedPath()) && u.User == nil && u.Fragment == "" && u.Opaque == ""
}

// badAnswer is the *Error for a 2xx answer that cannot be used.
func badAnswer(last *attemptResult, attempts int, why string) *Error {
	e := newError(fmt.Errorf("%w: %s", ErrBadAnswer, why), last)
	e.Method, e.Attempts = http.MethodGet, attempts
	return e
}

func decodeCloudPC(obj map[string]json.RawMessage) approvals.CloudPC {
	return approvals.CloudPC{
		ID:                     strings.ToLower(jsonText(obj["id"])),
		DisplayName:            jsonText(obj["displayName"]),
		UserPrincipalName:      jsonText(obj["userPrincipalName"]),
		ManagedDeviceName:      jsonText(obj["managedDeviceName"]),
		ServicePlanName:        jsonText(obj["servicePlanName"]),
		ProvisioningPolicyName: jsonText(obj["provisioningPolicyName"]),
		ProvisioningPolicyID:   strings.ToLower(jsonText(obj["provisioningPolicyId"])),
		Status:                 jsonText(obj["status"]),
		StatusDetails:          statusDetail(obj),
		LastModified:           jsonTime(obj["lastModifiedDateTime"]),
	}
}

// jsonText returns a JSON string's value, a number's or boolean's text, and "" for
// anything else (null, object, array, absent).
func jsonText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case 't', 'f', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if json.Valid(raw) {
			return string(raw)
		}
	}
	return ""
}

// jsonTime parses an ISO 8601 DateTimeOffset string (UTC); zero if absent or unreadable.
func jsonTime(raw json.RawMessage) time.Time {
	s := jsonText(raw)
	if s == "" {
		return time.Time{}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

const maxDetailRunes = 300

// statusDetail renders statusDetail (cloudPcStatusDetail) or, failing that, the
// deprecated statusDetails: the message, or the code if there is no message. Unknown
// shapes give "" (never an error).
func statusDetail(obj map[string]json.RawMessage) string {
	for _, k := range []string{"statusDetail", "statusDetails"} {
		if s := renderDetail(obj[k], 0); s != "" {
			return oneLine(s, maxDetailRunes)
		}
	}
	return ""
}

func renderDetail(raw json.RawMessage, depth int) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || depth > 2 {
		return ""
	}
	switch raw[0] {
	case '"':
		return jsonText(raw)
	case '{':
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return ""
		}
		if s := strings.TrimSpace(jsonText(m["message"])); s != "" {
			return s
		}
		return strings.TrimSpace(jsonText(m["code"]))
	case '[':
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return ""
		}
		for _, it := range items {
			if s := renderDetail(it, depth+1); s != "" {
				return s
			}
		}
	}
	return ""
}

// oneLine collapses whitespace and control characters to single spaces and cuts s to
// max runes (with "…").
func oneLine(s string, max int) string {
	var b strings.Builder
	space := false
	n := 0
	for _, r := range strings.TrimSpace(s) {
		if r == utf8.RuneError || unicode.IsSpace(r) || unicode.IsControl(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
			n++
		}
		space = false
		if n >= max {
			return strings.TrimSpace(b.String()) + "…"
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}
