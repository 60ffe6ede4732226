package graph

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/reprovision-bot/reprovision-bot/approvals"
)

func TestNewAuthenticatorValidation(t *testing.T) {
	t.Parallel()
	ok := SignInConfig{TenantID: testTenant, ClientID: testClientID}
	for name, mod := range map[string]func(*SignInConfig){
		"no tenant":        func(c *SignInConfig) { c.TenantID = "" },
		"bad tenant":       func(c *SignInConfig) { c.TenantID = "a/b" },
		"common tenant":    func(c *SignInConfig) { c.TenantID = "common" },
		"organizations":    func(c *SignInConfig) { c.TenantID = "Organizations" },
		"no client":        func(c *SignInConfig) { c.ClientID = " " },
		"http authority":   func(c *SignInConfig) { c.AuthorityHost = "http://login.microsoftonline.com/" },
		"relative":         func(c *SignInConfig) { c.AuthorityHost = "login.microsoftonline.com" },
		"query authority":  func(c *SignInConfig) { c.AuthorityHost = "https://login.example/?x=1" },
		"userinfo in host": func(c *SignInConfig) { c.AuthorityHost = "https://u:p@login.example/" },
	} {
		cfg := ok
		mod(&cfg)
		if _, err := NewAuthenticator(cfg); err == nil {
			t.Errorf("%s: NewAuthenticator accepted %+v", name, cfg)
		}
	}

	for host, wantDisable := range map[string]bool{
		"":                                   false,
		"https://login.microsoftonline.com/": false,
		"https://login.microsoftonline.com":  false,
		"https://login.microsoftonline.us/":  true,
		"https://127.0.0.1:8443":             true,
	} {
		cfg := ok
		cfg.AuthorityHost = host
		a, err := NewAuthenticator(cfg)
		if err != nil {
			t.Fatalf("%q: %v", host, err)
		}
		if a.disableDiscovery != wantDisable {
			t.Errorf("%q: disableDiscovery = %v, want %v", host, a.disableDiscovery, wantDisable)
		}
		if !strings.HasSuffix(a.host, "/") {
			t.Errorf("%q: host %q lacks trailing slash", host, a.host)
		}
	}
}

func TestSignInSuccessAndCAECache(t *testing.T) {
	t.Parallel()
	f := newFakeEntra(t)
	a := f.authenticator(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var got DeviceCode
	prompts := 0
	start := time.Now()
	s, err := a.SignIn(ctx, func(_ context.Context, dc DeviceCode) error {
		prompts++
		got = dc
		f.setOutcome(approve) // the approver completes the sign-in in the browser
		return nil
	})
	if err != nil {
		t.Fatalf("SignIn: %v", err)
	}
	if prompts != 1 || got.UserCode != "ABCD-EFGH" || got.VerificationURL != "https://microsoft.com/devicelogin" || !strings.Contains(got.Message, "ABCD-EFGH") {
		t.Errorf("prompt got %+v (%d calls)", got, prompts)
	}
	if d := got.ExpiresAt.Sub(start); d < 890*time.Second || d > 910*time.Second {
		t.Errorf("ExpiresAt %v is %v after start, want about 900s", got.ExpiresAt, d)
	}
	if s.Username != testUPN || s.TenantID != testTenant {
		t.Errorf("session = %q / %q, want %q / %q", s.Username, s.TenantID, testUPN, testTenant)
	}
	if !s.MatchesUser(strings.ToUpper(testUPN)) || s.MatchesUser("someone@contoso.example") {
		t.Error("MatchesUser wrong")
	}
	issued := f.issuedTokens()
	if len(issued) != 1 {
		t.Fatalf("issued %d tokens, want 1", len(issued))
	}

	// What runtime.BearerTokenPolicy asks for: the token from the sign-in, from the cache,
	// without a second device-code round and without another token request.
	tokenReqsBefore := f.deviceTokenReqs.Load()
	tk, err := s.Credential().GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Scope}, EnableCAE: true})
	if err != nil {
		t.Fatalf("GetToken(EnableCAE): %v", err)
	}
	if tk.Token != issued[0] {
		t.Errorf("GetToken = %q, want %q", tk.Token, issued[0])
	}
	if n := f.devicecodeReqs.Load(); n != 1 {
		t.Errorf("devicecode requests = %d, want 1", n)
	}
	if n := f.deviceTokenReqs.Load(); n != tokenReqsBefore {
		t.Errorf("token polls grew from %d to %d: GetToken missed the cache", tokenReqsBefore, n)
	}
	if n := f.refreshReqs.Load(); n != 0 {
		t.Errorf("refresh requests = %d, want 0", n)
	}

	// The trap the package avoids: the non-CAE cache is separate and empty, and the
	// credential never starts a device-code round by itself.
	_, err = s.Credential().GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Scope}})
	var are *azidentity.AuthenticationRequiredError
	if !errors.As(err, &are) {
		t.Errorf("GetToken without CAE: err = %v, want AuthenticationRequiredError", err)
	}
	if n := f.devicecodeReqs.Load(); n != 1 {
		t.Errorf("devicecode requests = %d after non-CAE GetToken, want 1", n)
	}
}

func TestSignInDeclined(t *testing.T) {
	t.Parallel()
	f := newFakeEntra(t)
	a := f.authenticator(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := a.SignIn(ctx, func(context.Context, DeviceCode) error {
		f.setOutcome(decline)
		return nil
	})
	if !errors.Is(err, ErrSignInDeclined) || errors.Is(err, ErrSignInExpired) {
		t.Fatalf("err = %v, want ErrSignInDeclined", err)
	}
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) {
		t.Errorf("err does not wrap the azidentity error: %v", err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("declined looks like a context error: %v", err)
	}
}

func TestSignInExpiredReportedByEntra(t *testing.T) {
	t.Parallel()
	f := newFakeEntra(t)
	a := f.authenticator(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := a.SignIn(ctx, func(context.Context, DeviceCode) error {
		f.setOutcome(expireIt)
		return nil
	})
	if !errors.Is(err, ErrSignInExpired) || errors.Is(err, ErrSignInDeclined) {
		t.Fatalf("err = %v, want ErrSignInExpired", err)
	}
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) {
		t.Errorf("err does not wrap the azidentity error: %v", err)
	}
}

// MSAL stops polling by itself at the code's expires_in (context.DeadlineExceeded inside
// MSAL); that must also come out as ErrSignInExpired, not as a context error.
func TestSignInCodeExpiresWhilePending(t *testing.T) {
	t.Parallel()
	f := newFakeEntra(t)
	f.expiresIn = 1
	a := f.authenticator(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := a.SignIn(ctx, func(context.Context, DeviceCode) error { return nil })
	elapsed := time.Since(start)
	if !errors.Is(err, ErrSignInExpired) {
		t.Fatalf("err = %v, want ErrSignInExpired", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("code expiry must not look like the caller's deadline: %v", err)
	}
	if elapsed < 900*time.Millisecond || elapsed > 10*time.Second {
		t.Errorf("SignIn returned after %v, want about 1s", elapsed)
	}
	if f.deviceTokenReqs.Load() == 0 {
		t.Error("no token polls before expiry")
	}
}

func TestSignInContextCancelReturnsPromptly(t *testing.T) {
	t.Parallel()
	f := newFakeEntra(t)
	a := f.authenticator(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cancelledAt := make(chan time.Time, 1)
	done := make(chan error, 1)
	go func() {
		_, err := a.SignIn(ctx, func(context.Context, DeviceCode) error {
			go func() {
				// let MSAL reach its longer poll intervals, then give up
				time.Sleep(2 * time.Second)
				cancelledAt <- time.Now()
				cancel()
			}()
			return nil
		})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if d := time.Since(<-cancelledAt); d > time.Second {
			t.Errorf("SignIn returned %v after cancel, want well under 1s", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("SignIn did not return after cancel")
	}
}

func TestSignInPromptErrorAbandons(t *testing.T) {
	t.Parallel()
	f := newFakeEntra(t)
	a := f.authenticator(t)
	errSlack := errors.New("slack: channel_not_found")
	_, err := a.SignIn(context.Background(), func(context.Context, DeviceCode) error { return errSlack })
	if !errors.Is(err, errSlack) {
		t.Fatalf("err = %v, want the prompt's error", err)
	}
	if n := f.deviceTokenReqs.Load(); n != 0 {
		t.Errorf("token polled %d times after the prompt failed", n)
	}
}

func TestSignInWithClaimsSendsClaims(t *testing.T) {
	t.Parallel()
	f := newFakeEntra(t)
	a := f.authenticator(t)
	claims := `{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}`
	s, err := a.SignInWithClaims(context.Background(), claims, func(context.Context, DeviceCode) error {
		f.setOutcome(approve)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	seen := append([]string(nil), f.claimsSeen...)
	f.mu.Unlock()
	// MSAL merges the challenge claims with the CAE client capability (xms_cc).
	if len(seen) != 1 || !strings.Contains(seen[0], `"nbf"`) || !strings.Contains(strings.ToLower(seen[0]), "cp1") {
		t.Errorf("claims sent to devicecode = %q", seen)
	}
	if _, err := s.Credential().GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{Scope}, EnableCAE: true}); err != nil {
		t.Errorf("GetToken after claims sign-in: %v", err)
	}
}

// The whole path: sign in, then the Graph client uses the approver's token with no second
// device-code round.
func TestSignInThenReprovision(t *testing.T) {
	t.Parallel()
	f := newFakeEntra(t)
	a := f.authenticator(t)
	s, err := a.SignIn(context.Background(), func(context.Context, DeviceCode) error {
		f.setOutcome(approve)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	g := newFakeGraph(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	c := g.client(t, s.Credential(), ClientOptions{})
	call, err := c.Reprovision(context.Background(), testCloudPC, approvals.Options{})
	if err != nil {
		t.Fatalf("Reprovision: %v", err)
	}
	reqs := g.requests()
	if len(reqs) != 1 || len(call.Attempts) != 1 {
		t.Fatalf("graph saw %d requests, call has %d attempts; want 1 and 1", len(reqs), len(call.Attempts))
	}
	if want := "Bearer " + f.issuedTokens()[0]; reqs[0].Authorization != want {
		t.Errorf("Authorization = %q, want %q", reqs[0].Authorization, want)
	}
	if n := f.devicecodeReqs.Load(); n != 1 {
		t.Errorf("devicecode requests = %d, want 1", n)
	}
}
