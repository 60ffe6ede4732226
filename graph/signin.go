// Package graph signs an approver in with the device-code flow and makes the Microsoft
// Graph calls the bot needs with that approver's delegated token: the reprovision (the only
// POST) and the read-only lookups (GetCloudPC, FindCloudPCs, Resolve, RemoteActionResults).
//
// It implements two ports of package approvals: NewSignIns gives approvals.SignIns, and
// NewCloudPCs (also each sign-in's Session.CloudPCs) gives approvals.CloudPCs, whose
// errors are *approvals.GraphError: a kind, a cause and Graph's facts. The package
// returns data and typed errors only; the words people see are the adapters' to choose.
package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Scope is the delegated permission the bot needs, in the public cloud (other
// clouds: Cloud.Scope).
const Scope = "https://graph.microsoft.com/CloudPC.ReadWrite.All"

// PublicAuthorityHost is the Entra authority of the public cloud. With any other
// AuthorityHost, Entra instance discovery is disabled.
const PublicAuthorityHost = "https://login.microsoftonline.com/"

// SignInConfig configures device-code sign-in.
type SignInConfig struct {
	// TenantID is the approvers' tenant (GUID or domain). Required; the multi-tenant
	// aliases "common", "organizations" and "consumers" are refused.
	TenantID string
	// ClientID is the app registration ("Allow public client flows" on). Required.
	ClientID string
	// AuthorityHost, e.g. "https://login.microsoftonline.com/" (the default when empty).
	// Must be https. Any other value disables instance discovery: the authority is
	// trusted as configured.
	AuthorityHost string
	// Scope is the permission to sign in for (default Scope, the public
	// cloud's); it must name the Graph host the tokens are for
	// (Cloud.Scope), the same as ClientOptions.Scope.
	Scope string
	// Transport, if set, carries the requests to Entra (for tests, or a custom CA).
	// nil uses azcore's default HTTP client.
	Transport policy.Transporter
}

// DeviceCode is what the approver needs to sign in.
type DeviceCode struct {
	UserCode, VerificationURL, Message string
	// ExpiresAt is when Entra stops accepting the code (zero if unknown).
	ExpiresAt time.Time
}

// Authenticator runs device-code sign-ins. It is safe for concurrent use; every sign-in
// is independent.
type Authenticator struct {
	tenantID, clientID string
	host               string
	scope              string
	disableDiscovery   bool
	transport          policy.Transporter
}

// NewAuthenticator checks cfg and returns an Authenticator. It makes no request.
func NewAuthenticator(cfg SignInConfig) (*Authenticator, error) {
	tenant := strings.TrimSpace(cfg.TenantID)
	if tenant == "" {
		return nil, errors.New("graph: TenantID is required")
	}
	for _, r := range tenant {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-') {
			return nil, fmt.Errorf("graph: invalid TenantID %q", tenant)
		}
	}
	switch strings.ToLower(tenant) {
	case "common", "organizations", "consumers":
		return nil, fmt.Errorf("graph: TenantID must name one tenant, not %q", tenant)
	}
	clientID := strings.TrimSpace(cfg.ClientID)
	if clientID == "" {
		return nil, errors.New("graph: ClientID is required")
	}
	host := strings.TrimSpace(cfg.AuthorityHost)
	if host == "" {
		host = PublicAuthorityHost
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("graph: invalid AuthorityHost: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("graph: AuthorityHost must be an https URL with no query, got %q", host)
	}
	if !strings.HasSuffix(host, "/") {
		host += "/"
	}
	scope := strings.TrimSpace(cfg.Scope)
	if scope == "" {
		scope = Scope
	}
	return &Authenticator{
		tenantID:         tenant,
		clientID:         clientID,
		host:             host,
		scope:            scope,
		disableDiscovery: !strings.EqualFold(host, PublicAuthorityHost),
		transport:        cfg.Transport,
	}, nil
}

// Session is a completed sign-in. Its credential serves tokens for Scope from its own
// in-memory cache (refreshing them with the refresh token) and never starts another
// device-code sign-in: when the approver must sign in again, GetToken fails with
// *azidentity.AuthenticationRequiredError.
type Session struct {
	// Username is the signed-in user's preferred username (UPN), from the
	// AuthenticationRecord. Anyone holding the code can complete the sign-in: compare it
	// with the expected approver (see MatchesUser) before using the credential.
	Username string
	// TenantID is the tenant the user signed in to.
	TenantID string

	cred *azidentity.DeviceCodeCredential
}

// Credential returns the approver's delegated credential.
func (s *Session) Credential() azcore.TokenCredential { return s.cred }

// MatchesUser reports whether the session's user is upn (case-insensitive).
func (s *Session) MatchesUser(upn string) bool {
	return s.Username != "" && strings.EqualFold(strings.TrimSpace(upn), s.Username)
}

// SignIn runs one device-code sign-in. prompt is called with the code as soon as Entra
// issues it; it should deliver the code quickly (polling starts when it returns). If
// prompt returns an error the sign-in is abandoned and that error is returned. SignIn
// blocks until the approver signs in, declines (ErrSignInDeclined), the code expires
// (ErrSignInExpired) or ctx is done (ctx.Err() is returned).
func (a *Authenticator) SignIn(ctx context.Context, prompt func(context.Context, DeviceCode) error) (*Session, error) {
	return a.SignInWithClaims(ctx, "", prompt)
}

// SignInWithClaims is SignIn that also asks Entra for claims (the decoded JSON of a
// claims challenge, Error.Claims). Empty claims is plain SignIn.
func (a *Authenticator) SignInWithClaims(ctx context.Context, claims string, prompt func(context.Context, DeviceCode) error) (*Session, error) {
	if prompt == nil {
		return nil, errors.New("graph: SignIn needs a prompt function")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	obs := &entraObserver{}
	var (
		promptMu  sync.Mutex
		promptErr error
	)
	opts := azidentity.DeviceCodeCredentialOptions{
		ClientOptions: azcore.ClientOptions{
			Cloud:           cloud.Configuration{ActiveDirectoryAuthorityHost: a.host},
			Transport:       a.transport,
			PerCallPolicies: []policy.Policy{obs},
		},
		ClientID:                       a.clientID,
		TenantID:                       a.tenantID,
		DisableAutomaticAuthentication: true,
		DisableInstanceDiscovery:       a.disableDiscovery,
		UserPrompt: func(ctx context.Context, m azidentity.DeviceCodeMessage) error {
			err := prompt(ctx, DeviceCode{
				UserCode:        m.UserCode,
				VerificationURL: m.VerificationURL,
				Message:         m.Message,
				ExpiresAt:       obs.codeExpiresAt(),
			})
			if err != nil {
				promptMu.Lock()
				promptErr = err
				promptMu.Unlock()
			}
			return err
		},
	}
	// A new credential per sign-in: its token cache holds only this approver's tokens.
	cred, err := azidentity.NewDeviceCodeCredential(&opts)
	if err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	// EnableCAE must match what runtime.BearerTokenPolicy asks for: azidentity keeps CAE
	// and non-CAE tokens in separate caches, and with DisableAutomaticAuthentication a
	// miss in the CAE cache would fail with AuthenticationRequiredError.
	rec, err := cred.Authenticate(ctx, &policy.TokenRequestOptions{
		Scopes:    []string{a.scope},
		EnableCAE: true,
		Claims:    claims,
	})
	if err != nil {
		promptMu.Lock()
		perr := promptErr
		promptMu.Unlock()
		return nil, classifySignInError(ctx, err, perr, obs)
	}
	return &Session{Username: rec.Username, TenantID: rec.TenantID, cred: cred}, nil
}

// classifySignInError maps a failed Authenticate to the package's errors.
//
// azidentity's AuthenticationFailedError has no Unwrap, and by the time it is built MSAL
// has already drained the token endpoint's error body (isWaitDeviceCodeErr reads it to
// look for authorization_pending), so the OAuth error code cannot be read from the
// returned error. entraObserver reads it off the wire instead. Code expiry usually shows
// up not as "expired_token" but as MSAL's own deadline (it stops polling at the
// devicecode response's expires_in, giving context.DeadlineExceeded flattened into a
// message string), so that case is recognised from the time and the expiry observed.
func classifySignInError(ctx context.Context, err, promptErr error, obs *entraObserver) error {
	if promptErr != nil {
		return promptErr
	}
	switch obs.lastTokenError() {
	case "authorization_declined", "access_denied":
		return &signInError{kind: ErrSignInDeclined, err: err}
	case "expired_token", "code_expired":
		return &signInError{kind: ErrSignInExpired, err: err}
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if exp := obs.codeExpiresAt(); !exp.IsZero() && !time.Now().Before(exp) {
		return &signInError{kind: ErrSignInExpired, err: err}
	}
	return fmt.Errorf("graph: sign-in failed: %w", err)
}

// entraObserver is a per-call policy in a sign-in's azidentity pipeline. It records the
// device code's expiry and the OAuth "error" of the last failed token request. It sees
// only Entra's responses, never logs, and keeps no token.
type entraObserver struct {
	mu        sync.Mutex
	expiresAt time.Time
	tokenErr  string
}

func (o *entraObserver) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	if err != nil || resp == nil || req.Raw().Method != http.MethodPost {
		return resp, err
	}
	path := strings.TrimSuffix(req.Raw().URL.Path, "/")
	switch {
	case strings.HasSuffix(path, "/devicecode") && resp.StatusCode == http.StatusOK:
		var body struct {
			ExpiresIn json.Number `json:"expires_in"`
		}
		if payload, perr := runtime.Payload(resp); perr == nil && json.Unmarshal(payload, &body) == nil {
			if secs, nerr := body.ExpiresIn.Int64(); nerr == nil && secs > 0 {
				o.mu.Lock()
				o.expiresAt = time.Now().Add(time.Duration(secs) * time.Second)
				o.mu.Unlock()
			}
		}
	case strings.HasSuffix(path, "/token") && resp.StatusCode >= 400:
		var body struct {
			Error string `json:"error"`
		}
		if payload, perr := runtime.Payload(resp); perr == nil && json.Unmarshal(payload, &body) == nil {
			o.mu.Lock()
			o.tokenErr = body.Error
			o.mu.Unlock()
		}
	}
	return resp, err
}

func (o *entraObserver) codeExpiresAt() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.expiresAt
}

func (o *entraObserver) lastTokenError() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.tokenErr
}
