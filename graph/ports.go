package graph

import (
	"context"
	"errors"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

// The two ports of package approvals this package implements.
var (
	_ approvals.SignIns  = (*signIns)(nil)
	_ approvals.CloudPCs = (*cloudPCs)(nil)
)

// NewSignIns returns the approvals.SignIns port: device-code sign-ins through auth,
// each yielding a Session whose CloudPCs call Graph as configured by opts with the
// approver's token. opts is checked now (a bad BaseURL fails here, not at the first
// call). Every session's client gets opts.RateLimiter, so all sign-ins pace together.
func NewSignIns(auth *Authenticator, opts ClientOptions) (approvals.SignIns, error) {
	if auth == nil {
		return nil, errors.New("graph: NewSignIns needs an Authenticator")
	}
	if _, err := NewClient(noCredential{}, opts); err != nil {
		return nil, err
	}
	return &signIns{auth: auth, opts: opts}, nil
}

type signIns struct {
	auth *Authenticator
	opts ClientOptions
}

// SignIn runs Authenticator.SignInWithClaims. Its errors are those of
// SignInWithClaims: errors.Is reports approvals.ErrSignInDeclined or
// approvals.ErrSignInExpired for those outcomes; showCode's own error is returned as it
// is.
func (s *signIns) SignIn(ctx context.Context, claims string, showCode func(context.Context, approvals.DeviceCode) error) (*approvals.Session, error) {
	if showCode == nil {
		return nil, errors.New("graph: SignIn needs a showCode function")
	}
	session, err := s.auth.SignInWithClaims(ctx, claims, func(ctx context.Context, c DeviceCode) error {
		return showCode(ctx, approvals.DeviceCode{UserCode: c.UserCode, VerificationURL: c.VerificationURL, ExpiresAt: c.ExpiresAt})
	})
	if err != nil {
		return nil, err
	}
	pcs, err := NewCloudPCs(session.Credential(), s.opts)
	if err != nil {
		return nil, err
	}
	return &approvals.Session{Username: session.Username, CloudPCs: pcs}, nil
}

// noCredential lets NewSignIns check ClientOptions without a sign-in; it is never asked
// for a token.
type noCredential struct{}

func (noCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, errors.New("graph: no credential")
}

// NewCloudPCs returns the approvals.CloudPCs port over a Client with cred and opts.
// Every error its methods return is an *approvals.GraphError (Err holds this package's
// error), and every Graph call comes back with its HTTP attempts, also on error.
func NewCloudPCs(cred azcore.TokenCredential, opts ClientOptions) (approvals.CloudPCs, error) {
	c, err := NewClient(cred, opts)
	if err != nil {
		return nil, err
	}
	return &cloudPCs{c: c}, nil
}

type cloudPCs struct{ c *Client }

func (p *cloudPCs) Get(ctx context.Context, id string) (approvals.CloudPC, approvals.GraphCall, error) {
	pc, call, err := p.c.GetCloudPC(ctx, id)
	return pc, graphCall(call), graphError(err, http.MethodGet)
}

func (p *cloudPCs) Resolve(ctx context.Context, target string) ([]approvals.CloudPC, []approvals.GraphCall, error) {
	pcs, calls, err := p.c.Resolve(ctx, target)
	var out []approvals.GraphCall
	for _, c := range calls {
		out = append(out, graphCall(c))
	}
	return pcs, out, graphError(err, http.MethodGet)
}

func (p *cloudPCs) Reprovision(ctx context.Context, id string, opts approvals.Options) (approvals.GraphCall, error) {
	call, err := p.c.Reprovision(ctx, id, opts)
	return graphCall(call), graphError(err, http.MethodPost)
}

func (p *cloudPCs) RemoteActions(ctx context.Context, id string) ([]approvals.RemoteAction, approvals.GraphCall, error) {
	actions, call, err := p.c.RemoteActionResults(ctx, id)
	var out []approvals.RemoteAction
	if actions != nil {
		out = make([]approvals.RemoteAction, 0, len(actions))
	}
	for _, a := range actions {
		out = append(out, approvals.RemoteAction{Name: a.Name, State: a.State, Started: a.Started, Updated: a.Updated, Details: a.Details})
	}
	return out, graphCall(call), graphError(err, http.MethodGet)
}

func (p *cloudPCs) FindPolicy(ctx context.Context, policy string) (approvals.ProvisioningPolicy, approvals.GraphCall, error) {
	pol, call, err := p.c.FindPolicy(ctx, policy)
	return pol, graphCall(call), graphError(err, http.MethodGet)
}

func (p *cloudPCs) PolicyCloudPCs(ctx context.Context, policyID string) ([]approvals.CloudPC, []approvals.GraphCall, error) {
	pcs, calls, err := p.c.PolicyCloudPCs(ctx, policyID)
	var out []approvals.GraphCall
	for _, c := range calls {
		out = append(out, graphCall(c))
	}
	return pcs, out, graphError(err, http.MethodGet)
}

// graphError is classify as an error interface value: nil stays a nil error.
func graphError(err error, method string) error {
	if g := classify(err, method); g != nil {
		return g
	}
	return nil
}

func graphCall(c Call) approvals.GraphCall {
	out := approvals.GraphCall{Method: c.Method, Path: c.Path}
	for _, a := range c.Attempts {
		out.Attempts = append(out.Attempts, approvals.GraphAttempt{
			At: a.At, Status: a.Status, ClientRequestID: a.ClientRequestID, RequestID: a.RequestID, Err: a.Err,
		})
	}
	return out
}
