package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/google/uuid"
)

// Tenant discovery: Entra's OpenID Connect discovery document for a tenant,
// GET {authority}{tenant}/v2.0/.well-known/openid-configuration, answers 200
// with the tenant's endpoints and issuer when Entra knows the tenant, and 400
// {"error":"invalid_tenant","error_description":"AADSTS90002: Tenant '…' not
// found. …","error_codes":[90002],…} when it does not (in this cloud). It
// needs no credentials, so it tells a wrong AZURE_TENANT_ID apart before
// anyone tries to sign in.

// ErrUnknownTenant is matched (errors.Is) by the *TenantError DiscoverTenant
// returns when Entra answered that it does not know the tenant.
var ErrUnknownTenant = errors.New("unknown tenant")

// ErrEntraUnreachable is matched (errors.Is) by the *DiscoveryError
// DiscoverTenant returns when it got no usable answer from the authority:
// no answer at all, a temporary refusal (429, 5xx), or something that is not
// Entra's. It says nothing about the tenant.
var ErrEntraUnreachable = errors.New("Entra unreachable")

// consumersTenant is the tenant of personal Microsoft accounts, which
// "consumers" resolves to: no Cloud PCs there.
const consumersTenant = "9188040d-6c67-4c5b-b112-36a304b66dad"

// maxDiscoveryBytes bounds the discovery answer read (Entra's is about 2 KB).
const maxDiscoveryBytes = 1 << 20

// TenantInfo is what the discovery document says about the tenant.
type TenantInfo struct {
	// ID is the tenant's GUID, from the issuer: a tenant given by domain
	// name resolves to it.
	ID                          string
	Issuer                      string
	TokenEndpoint               string
	DeviceAuthorizationEndpoint string
}

// TenantError is Entra's answer that the tenant is wrong: it does not know
// it (Unknown, AADSTS90002), or the discovery document does not name one
// tenant (common, organizations, consumers) or names another one.
type TenantError struct {
	Tenant    string // as configured
	Authority string // the authority host asked
	// Unknown: Entra does not know the tenant in this cloud.
	Unknown bool
	// Code is Entra's error code ("AADSTS90002"); "" when the document was
	// found but names no single tenant or another one.
	Code string
	// Reason is Entra's error description (its first line) or what is wrong
	// with the document.
	Reason string
	// CorrelationID is Entra's correlation id of the answer, for support.
	CorrelationID string
}

func (e *TenantError) Error() string {
	if e.Unknown {
		return fmt.Sprintf("Entra at %s does not know tenant %q (%s)", e.Authority, e.Tenant, e.Reason)
	}
	return fmt.Sprintf("tenant %q at %s: %s", e.Tenant, e.Authority, e.Reason)
}

// Is makes errors.Is(err, ErrUnknownTenant) true for an unknown tenant.
func (e *TenantError) Is(target error) bool { return target == ErrUnknownTenant && e.Unknown }

// DiscoveryError is a discovery that got no usable answer: errors.Is(err,
// ErrEntraUnreachable) is true.
type DiscoveryError struct {
	URL string
	// StatusCode is the HTTP status answered; 0 when there was no answer
	// (Err says why).
	StatusCode int
	// Reason says what was wrong with the answer ("" when Err says it).
	Reason string
	Err    error
}

func (e *DiscoveryError) Error() string {
	msg := "Entra OpenID discovery " + e.URL
	if e.StatusCode != 0 {
		msg += fmt.Sprintf(": HTTP %d", e.StatusCode)
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.Err != nil {
		// A *url.Error would name the URL a second time.
		err := e.Err
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		msg += ": " + err.Error()
	}
	return msg
}

func (e *DiscoveryError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrEntraUnreachable) true.
func (e *DiscoveryError) Is(target error) bool { return target == ErrEntraUnreachable }

// Temporary reports whether the answer was a refusal that may pass: no
// answer, 429 or a 5xx.
func (e *DiscoveryError) Temporary() bool {
	return e.StatusCode == 0 || e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// CheckTenant asks Entra at authorityHost whether it knows tenantID (a GUID
// or a domain name): nil when it does and its discovery document names that
// one tenant; a *TenantError when Entra says the tenant is wrong
// (errors.Is(err, ErrUnknownTenant) when it does not know it); a
// *DiscoveryError (errors.Is(err, ErrEntraUnreachable)) when there was no
// usable answer. client nil: a client of its own (proxy from the
// environment, no redirects). ctx bounds the call.
func CheckTenant(ctx context.Context, authorityHost, tenantID string, client *http.Client) error {
	_, err := DiscoverTenant(ctx, authorityHost, tenantID, client)
	return err
}

// DiscoverTenant is CheckTenant returning what the document says.
func DiscoverTenant(ctx context.Context, authorityHost, tenantID string, client *http.Client) (TenantInfo, error) {
	tenant := strings.TrimSpace(tenantID)
	host := strings.TrimSpace(authorityHost)
	if host == "" {
		host = PublicAuthorityHost
	}
	if !strings.HasSuffix(host, "/") {
		host += "/"
	}
	if tenant == "" {
		return TenantInfo{}, &TenantError{Tenant: tenant, Authority: host, Reason: "no tenant given"}
	}
	u, err := url.Parse(host)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return TenantInfo{}, &DiscoveryError{URL: host, Reason: "the authority host is not an absolute http(s) URL"}
	}
	target := host + url.PathEscape(tenant) + "/v2.0/.well-known/openid-configuration"
	if client == nil {
		client = discoveryClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return TenantInfo{}, &DiscoveryError{URL: target, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("client-request-id", uuid.NewString())
	resp, err := client.Do(req)
	if err != nil {
		return TenantInfo{}, &DiscoveryError{URL: target, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDiscoveryBytes+1))
	if err != nil {
		return TenantInfo{}, &DiscoveryError{URL: target, StatusCode: resp.StatusCode, Err: err}
	}
	if len(body) > maxDiscoveryBytes {
		return TenantInfo{}, &DiscoveryError{URL: target, StatusCode: resp.StatusCode, Reason: "answer larger than 1 MiB: not Entra's"}
	}
	isJSON := false
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err == nil {
		isJSON = mt == "application/json"
	}

	if resp.StatusCode != http.StatusOK {
		var oe struct {
			Error         string `json:"error"`
			Description   string `json:"error_description"`
			Codes         []int  `json:"error_codes"`
			CorrelationID string `json:"correlation_id"`
		}
		if !isJSON || json.Unmarshal(body, &oe) != nil || oe.Error == "" {
			return TenantInfo{}, &DiscoveryError{URL: target, StatusCode: resp.StatusCode, Reason: "not an Entra answer"}
		}
		reason := entraFirstLine(oe.Description)
		if reason == "" {
			reason = oe.Error
		}
		// AADSTS90002: tenant not found; AADSTS900023: the tenant is neither a
		// GUID nor a domain name Entra accepts.
		unknown := oe.Error == "invalid_tenant" || slices.Contains(oe.Codes, 90002) || slices.Contains(oe.Codes, 900023)
		if unknown && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			code := oe.Error
			if len(oe.Codes) > 0 {
				code = fmt.Sprintf("AADSTS%d", oe.Codes[0])
			}
			return TenantInfo{}, &TenantError{Tenant: tenant, Authority: host, Unknown: true, Code: code,
				Reason: reason, CorrelationID: oe.CorrelationID}
		}
		return TenantInfo{}, &DiscoveryError{URL: target, StatusCode: resp.StatusCode, Reason: reason}
	}

	var doc struct {
		Issuer                      string `json:"issuer"`
		TokenEndpoint               string `json:"token_endpoint"`
		DeviceAuthorizationEndpoint string `json:"device_authorization_endpoint"`
	}
	if !isJSON || json.Unmarshal(body, &doc) != nil || doc.Issuer == "" || doc.TokenEndpoint == "" {
		return TenantInfo{}, &DiscoveryError{URL: target, StatusCode: resp.StatusCode,
			Reason: "not an OpenID discovery document (no issuer or token_endpoint)"}
	}
	info := TenantInfo{Issuer: doc.Issuer, TokenEndpoint: doc.TokenEndpoint, DeviceAuthorizationEndpoint: doc.DeviceAuthorizationEndpoint}
	wrong := func(reason string) (TenantInfo, error) {
		return info, &TenantError{Tenant: tenant, Authority: host, Reason: reason}
	}
	// The v2.0 issuer is {authority}{tenant GUID}/v2.0; for common and
	// organizations it holds the placeholder {tenantid} instead.
	iu, err := url.Parse(doc.Issuer)
	if err != nil {
		return TenantInfo{}, &DiscoveryError{URL: target, StatusCode: resp.StatusCode, Reason: fmt.Sprintf("issuer %q is not a URL", doc.Issuer)}
	}
	if strings.Contains(strings.ToLower(doc.Issuer), "{tenantid}") {
		return wrong("the authority answers for any tenant (issuer " + doc.Issuer + "): name one tenant, by GUID or domain, not common or organizations")
	}
	for _, seg := range strings.Split(iu.Path, "/") {
		if IsGUID(seg) {
			info.ID = strings.ToLower(seg)
			break
		}
	}
	switch {
	case info.ID == "":
		return wrong("the discovery document's issuer " + doc.Issuer + " names no tenant")
	case info.ID == consumersTenant:
		return wrong("this is the tenant of personal Microsoft accounts (consumers), which has no Cloud PCs: name your organization's tenant")
	case IsGUID(tenant) && !strings.EqualFold(tenant, info.ID):
		return wrong("the discovery document's issuer " + doc.Issuer + " names another tenant")
	}
	return info, nil
}

// discoveryClient follows no redirect (Entra's discovery never redirects; a
// redirect is someone else's answer) and takes its proxy from the
// environment, like http.DefaultTransport.
var discoveryClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// entraFirstLine is s up to its first line break (Entra's descriptions go on
// with Trace ID, Correlation ID and Timestamp lines), trimmed.
func entraFirstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}
