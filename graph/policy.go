package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// Provisioning policy errors (FindPolicy, PolicyCloudPCs). The port reports
// ErrInvalidPolicy and ErrAmbiguousPolicy as approvals.GraphInvalid and
// ErrPolicyNotFound as approvals.GraphNotFound.
var (
	// ErrInvalidPolicy: the policy is neither a GUID nor a display name ValidPolicyName
	// accepts (for PolicyCloudPCs: not a GUID). Nothing is sent.
	ErrInvalidPolicy = errors.New("graph: invalid provisioning policy id or name")
	// ErrPolicyNotFound: no provisioning policy has that display name.
	ErrPolicyNotFound = errors.New("graph: no provisioning policy has that name")
	// ErrAmbiguousPolicy: several provisioning policies have that display name; name
	// the one meant by its id.
	ErrAmbiguousPolicy = errors.New("graph: several provisioning policies have that name")
)

// MaxPolicyNameLength bounds a provisioning policy display name to look up (runes).
const MaxPolicyNameLength = approvals.MaxPolicyNameLength

// ValidPolicyName is approvals.ValidPolicyName: the one rule the chat adapter
// checks at asking and this client before anything is sent.
func ValidPolicyName(s string) bool { return approvals.ValidPolicyName(s) }

// policySelect is the $select of the provisioning policy reads.
const policySelect = "id,displayName"

func (c *Client) policiesURL() string {
	return c.base + "/deviceManagement/virtualEndpoint/provisioningPolicies"
}

// FindPolicy finds a provisioning policy by id or display name. policy (trimmed) is:
//
//   - a GUID: GET {BaseURL}/deviceManagement/virtualEndpoint/provisioningPolicies/{id}?$select=id,displayName
//     (1 request, plus retries). Graph's 404 comes back as an *Error with StatusCode 404.
//   - a display name (ValidPolicyName): GET …/provisioningPolicies?$filter=displayName eq '<name>'&$select=id,displayName,
//     following @odata.nextLink (1 request per page, all in the one Call). The names
//     are compared case-insensitively, as Graph's filter does: none is an error
//     wrapping ErrPolicyNotFound, more than one ErrAmbiguousPolicy.
//   - anything else: an error wrapping ErrInvalidPolicy; nothing is sent.
//
// The returned ID is lower case. The Call is returned even on error.
func (c *Client) FindPolicy(ctx context.Context, policy string) (approvals.ProvisioningPolicy, Call, error) {
	policy = strings.TrimSpace(policy)
	listURL := c.policiesURL()
	call := Call{Method: http.MethodGet, Path: escapedPath(listURL)}
	if IsGUID(policy) {
		rawURL := listURL + "/" + url.PathEscape(policy)
		call.Path = escapedPath(rawURL)
		if err := ctx.Err(); err != nil {
			return approvals.ProvisioningPolicy{}, call, err
		}
		body, last, err := c.send(ctx, http.MethodGet, rawURL+"?$select="+policySelect, nil, &call)
		if err != nil {
			return approvals.ProvisioningPolicy{}, call, err
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
			return approvals.ProvisioningPolicy{}, call, badAnswer(last, len(call.Attempts), "the provisioning policy is not a JSON object")
		}
		p := approvals.ProvisioningPolicy{ID: strings.ToLower(jsonText(obj["id"])), DisplayName: jsonText(obj["displayName"])}
		switch {
		case p.ID == "":
			p.ID = strings.ToLower(policy)
		case !strings.EqualFold(p.ID, policy):
			return approvals.ProvisioningPolicy{}, call, badAnswer(last, len(call.Attempts), "Graph answered with another provisioning policy")
		}
		return p, call, nil
	}
	if !ValidPolicyName(policy) {
		return approvals.ProvisioningPolicy{}, call, fmt.Errorf("%w: %q", ErrInvalidPolicy, policy)
	}
	if err := ctx.Err(); err != nil {
		return approvals.ProvisioningPolicy{}, call, err
	}
	first := listURL + "?$filter=" + queryEscape("displayName eq "+odataString(policy)) + "&$select=" + policySelect
	var found []approvals.ProvisioningPolicy
	err := c.list(ctx, first, &call, func(item json.RawMessage, last *attemptResult) error {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(item, &obj); err != nil || obj == nil {
			return badAnswer(last, len(call.Attempts), "a list item is not a JSON object")
		}
		p := approvals.ProvisioningPolicy{ID: strings.ToLower(jsonText(obj["id"])), DisplayName: jsonText(obj["displayName"])}
		if !IsGUID(p.ID) {
			// Dropping it could make a shared name look unique.
			return badAnswer(last, len(call.Attempts), "a provisioning policy in the list has no valid id")
		}
		if strings.EqualFold(p.DisplayName, policy) { // Graph filtered; this only guards
			found = append(found, p)
		}
		return nil
	})
	switch {
	case err != nil:
		return approvals.ProvisioningPolicy{}, call, err
	case len(found) == 0:
		return approvals.ProvisioningPolicy{}, call, fmt.Errorf("%w: %q", ErrPolicyNotFound, policy)
	case len(found) > 1:
		return approvals.ProvisioningPolicy{}, call, fmt.Errorf("%w: %d have %q", ErrAmbiguousPolicy, len(found), policy)
	}
	return found[0], call, nil
}

// PolicyCloudPCs lists every Cloud PC of the provisioning policy with id policyID:
// GET {BaseURL}/deviceManagement/virtualEndpoint/cloudPCs?$filter=provisioningPolicyId eq '<id>'&$select=…
// (the $select of every Cloud PC read), following @odata.nextLink like FindCloudPCs
// (same-collection links only, at most MaxPages pages, never a partial list). It
// returns one Call per page that was sent (also on error). policyID must be a GUID
// (otherwise an error wrapping ErrInvalidPolicy, nothing sent).
//
// Each Cloud PC must have a GUID id and the policy's provisioningPolicyId (Graph
// filtered on it; a Cloud PC of another policy, or with none, fails the whole list as
// a bad answer rather than reach a batch). A Cloud PC listed twice (pages shifting
// while read) is kept once. No Cloud PC is an empty, non-nil slice.
func (c *Client) PolicyCloudPCs(ctx context.Context, policyID string) ([]approvals.CloudPC, []Call, error) {
	policyID = strings.TrimSpace(policyID)
	if !IsGUID(policyID) {
		return nil, nil, fmt.Errorf("%w: policy id %q is not a GUID", ErrInvalidPolicy, policyID)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	policyID = strings.ToLower(policyID)
	listURL := c.cloudPCsURL()
	first := listURL + "?$filter=" + queryEscape("provisioningPolicyId eq "+odataString(policyID)) + "&$select=" + cloudPCSelect
	var pages []*Call
	pcs := []approvals.CloudPC{}
	seen := map[string]bool{}
	err := c.listPages(ctx, first, func() *Call {
		call := &Call{Method: http.MethodGet, Path: escapedPath(listURL)}
		pages = append(pages, call)
		return call
	}, func(item json.RawMessage, last *attemptResult, call *Call) error {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(item, &obj); err != nil || obj == nil {
			return badAnswer(last, len(call.Attempts), "a list item is not a JSON object")
		}
		pc := decodeCloudPC(obj)
		if !IsGUID(pc.ID) {
			return badAnswer(last, len(call.Attempts), "a Cloud PC in the list has no valid id")
		}
		if pc.ProvisioningPolicyID != policyID {
			return badAnswer(last, len(call.Attempts), "a Cloud PC in the list is not of that provisioning policy")
		}
		if !seen[pc.ID] {
			seen[pc.ID] = true
			pcs = append(pcs, pc)
		}
		return nil
	})
	var calls []Call
	for _, p := range pages {
		if len(p.Attempts) > 0 {
			calls = append(calls, *p)
		}
	}
	if err != nil {
		return nil, calls, err
	}
	return pcs, calls, nil
}
