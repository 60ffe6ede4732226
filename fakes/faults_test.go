package fakes_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// Fault windows the tests assert "during" are long (a minute) and ended with
// d=0, so a slow -race run cannot slip out of them; expiry is checked with
// short windows that are waited out.

func TestSlackRateLimit(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	api := slack.New(fakes.BotToken, slack.OptionAPIURL(s.APIURL()))

	s.RateLimit("chat.postMessage", time.Minute, 7)
	_, _, err := api.PostMessage("C1", slack.MsgOptionText("refused", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 7*time.Second {
		t.Fatalf("rate limited post err = %v", err)
	}
	if m := s.Messages("C1"); len(m) != 0 {
		t.Fatalf("refused post left messages %+v", m)
	}
	// Other methods are not limited.
	if _, err := api.AuthTest(); err != nil {
		t.Fatalf("auth.test during chat.postMessage limit: %v", err)
	}
	calls := s.Calls("chat.postMessage")
	if len(calls) != 1 || calls[0].Status != 429 || calls[0].Fault != fakes.FaultRateLimited ||
		calls[0].Error != "ratelimited" || calls[0].Params["text"] != "refused" {
		t.Fatalf("refused call = %+v", calls)
	}
	if c := s.Calls("auth.test"); len(c) != 1 || c[0].Status != 200 || c[0].Fault != "" {
		t.Fatalf("served call = %+v", c)
	}

	// The wire: 429, Retry-After, Slack's JSON.
	resp, err := http.PostForm(s.APIURL()+"chat.postMessage", url.Values{"token": {fakes.BotToken}, "channel": {"C1"}, "text": {"raw"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" || string(body) != `{"error":"ratelimited","ok":false}` ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("wire: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	// "" limits every method; it ends early with d=0.
	s.RateLimit("chat.postMessage", 0, 0)
	s.RateLimit("", time.Minute, 2)
	if _, err := api.AuthTest(); !errors.As(err, &rl) || rl.RetryAfter != 2*time.Second {
		t.Fatalf("auth.test under global limit: %v", err)
	}
	if _, err := api.PostEphemeral("C1", "U1", slack.MsgOptionText("x", false)); !errors.As(err, &rl) {
		t.Fatalf("postEphemeral under global limit: %v", err)
	}
	if e := s.Ephemerals("U1"); len(e) != 0 {
		t.Fatalf("refused ephemeral shown: %+v", e)
	}
	s.RateLimit("", 0, 0)
	if _, _, err := api.PostMessage("C1", slack.MsgOptionText("after", false)); err != nil {
		t.Fatalf("after ending the limit: %v", err)
	}

	// A short window runs out by itself.
	s.RateLimit("chat.postMessage", 50*time.Millisecond, 1)
	time.Sleep(60 * time.Millisecond)
	if _, _, err := api.PostMessage("C1", slack.MsgOptionText("expired", false)); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if m := s.Messages("C1"); len(m) != 2 || m[0].Text != "after" || m[1].Text != "expired" {
		t.Fatalf("messages = %+v", m)
	}
	served := 0
	for _, c := range s.Calls("chat.postMessage") {
		if c.Fault == "" {
			served++
		}
	}
	if all := len(s.Calls("")); all != 7 || served != 2 {
		t.Fatalf("calls: all %d, served posts %d\n%s", all, served, s.Dump())
	}
}

func TestSlackOutage(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	api := slack.New(fakes.BotToken, slack.OptionAPIURL(s.APIURL()))
	if _, _, err := api.PostMessage("C1", slack.MsgOptionText("before", false)); err != nil {
		t.Fatal(err)
	}
	ts := s.Messages("C1")[0].TS
	hook := s.ResponseURL("U1")

	s.Outage(time.Minute)
	// Outage wins over a rate limit.
	s.RateLimit("", time.Minute, 1)
	_, _, err := api.PostMessage("C1", slack.MsgOptionText("refused", false))
	var sce slack.StatusCodeError
	if !errors.As(err, &sce) || sce.Code != 503 {
		t.Fatalf("post during outage err = %#v", err)
	}
	if _, _, _, err := api.UpdateMessage("C1", ts, slack.MsgOptionText("edited", false)); !errors.As(err, &sce) || sce.Code != 503 {
		t.Fatalf("update during outage err = %v", err)
	}
	if m := s.Messages("C1"); len(m) != 1 || m[0].Text != "before" || m[0].Updates != 0 {
		t.Fatalf("messages after outage calls = %+v", m)
	}
	err = slack.PostWebhook(hook, &slack.WebhookMessage{Text: "refused"})
	if !errors.As(err, &sce) || sce.Code != 503 {
		t.Fatalf("hook during outage err = %v", err)
	}
	if e := s.Ephemerals("U1"); len(e) != 0 {
		t.Fatalf("refused hook post shown: %+v", e)
	}
	hp := s.HookPosts()
	if len(hp) != 1 || hp[0].Fault != fakes.FaultOutage || hp[0].Status != 503 || hp[0].UserID != "U1" || hp[0].Error == "" {
		t.Fatalf("hook posts = %+v", hp)
	}
	calls := s.Calls("")
	if len(calls) != 3 || calls[1].Fault != fakes.FaultOutage || calls[1].Status != 503 || calls[2].Fault != fakes.FaultOutage {
		t.Fatalf("calls = %+v", calls)
	}

	// The wire: 503 with a non-JSON body.
	resp, err := http.PostForm(s.APIURL()+"auth.test", url.Values{"token": {fakes.BotToken}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || len(body) == 0 || body[0] == '{' {
		t.Fatalf("wire: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	s.Outage(0)
	s.RateLimit("", 0, 0)
	if _, _, _, err := api.UpdateMessage("C1", ts, slack.MsgOptionText("edited", false)); err != nil {
		t.Fatalf("update after outage: %v", err)
	}
	if err := slack.PostWebhook(hook, &slack.WebhookMessage{Text: "delivered"}); err != nil {
		t.Fatalf("hook after outage: %v", err)
	}
	if e := s.Ephemerals("U1"); len(e) != 1 || e[0].Text != "delivered" {
		t.Fatalf("ephemerals = %+v", e)
	}
	if hp := s.HookPosts(); len(hp) != 2 || hp[1].Fault != "" || hp[1].Status != 200 || hp[1].Error != "" {
		t.Fatalf("hook posts = %+v", hp)
	}

	// A short outage runs out by itself.
	s.Outage(50 * time.Millisecond)
	time.Sleep(60 * time.Millisecond)
	if _, err := api.AuthTest(); err != nil {
		t.Fatalf("after the outage window: %v", err)
	}
}

func TestSlackHookRateLimit(t *testing.T) {
	t.Parallel()
	s := fakes.NewSlack(t)
	api := slack.New(fakes.BotToken, slack.OptionAPIURL(s.APIURL()))
	hook := s.ResponseURL("U1")

	s.RateLimitHooks(time.Minute, 3)
	err := slack.PostWebhook(hook, &slack.WebhookMessage{Text: "refused"})
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 3*time.Second {
		t.Fatalf("hook rate limit err = %v", err)
	}
	// An unknown response_url is refused the same way (the limit comes first).
	if err := slack.PostWebhook(s.URL()+"/hooks/nope", &slack.WebhookMessage{Text: "x"}); !errors.As(err, &rl) {
		t.Fatalf("unknown hook err = %v", err)
	}
	if e := s.Ephemerals("U1"); len(e) != 0 {
		t.Fatalf("refused hook post shown: %+v", e)
	}
	// The Web API is not limited.
	if _, _, err := api.PostMessage("C1", slack.MsgOptionText("x", false)); err != nil {
		t.Fatalf("web API during hook limit: %v", err)
	}
	hp := s.HookPosts()
	if len(hp) != 2 || hp[0].Fault != fakes.FaultRateLimited || hp[0].Status != 429 || hp[0].Error != "rate_limited" ||
		hp[0].UserID != "U1" || !strings.Contains(string(hp[0].Body), `"text":"refused"`) || hp[1].Fault != fakes.FaultRateLimited {
		t.Fatalf("hook posts = %+v", hp)
	}

	req, _ := http.NewRequest(http.MethodPost, hook, strings.NewReader(`{"text":"raw"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" || string(body) != "rate_limited" {
		t.Fatalf("wire: %d %v %q", resp.StatusCode, resp.Header, body)
	}

	s.RateLimitHooks(0, 0)
	if err := slack.PostWebhook(hook, &slack.WebhookMessage{Text: "delivered"}); err != nil {
		t.Fatalf("after ending the limit: %v", err)
	}
	s.RateLimitHooks(50*time.Millisecond, 1)
	time.Sleep(60 * time.Millisecond)
	if err := slack.PostWebhook(hook, &slack.WebhookMessage{Text: "expired"}); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if e := s.Ephemerals("U1"); len(e) != 2 || e[0].Text != "delivered" || e[1].Text != "expired" {
		t.Fatalf("ephemerals = %+v", e)
	}
}

// ---- Entra ----

func devicecodeForm() url.Values {
	return url.Values{"client_id": {fakes.ClientID}, "scope": {"https://graph.microsoft.com/.default openid offline_access"}}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestEntraHang(t *testing.T) {
	t.Parallel()
	e := fakes.NewEntra(t)
	base := e.AuthorityHost() + fakes.TenantID
	c := fakes.TLSClient()
	c.Timeout = 150 * time.Millisecond

	e.Hang(time.Minute)
	start := time.Now()
	resp, err := c.PostForm(base+"/oauth2/v2.0/devicecode", devicecodeForm())
	if err == nil {
		resp.Body.Close()
		t.Fatalf("held devicecode answered %d", resp.StatusCode)
	}
	if !isTimeout(err) || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("held devicecode: err %v after %v", err, time.Since(start))
	}
	resp, err = c.PostForm(base+"/oauth2/v2.0/token", url.Values{"client_id": {fakes.ClientID}, "grant_type": {"refresh_token"}, "refresh_token": {"x"}})
	if err == nil {
		resp.Body.Close()
		t.Fatalf("held token request answered %d", resp.StatusCode)
	}
	if !isTimeout(err) {
		t.Fatalf("held token request: %v", err)
	}
	e.WaitFor(t, wait, "both held requests released as given up", func() bool {
		f := e.Faults()
		return len(f) == 2 && f[0].Canceled && f[1].Canceled
	})
	f := e.Faults()
	if f[0].Endpoint != "devicecode" || f[0].Fault != fakes.FaultHang || f[0].Status != 0 || f[0].Released.Before(f[0].At) ||
		f[1].Endpoint != "token" || f[1].GrantType != "refresh_token" {
		t.Fatalf("faults = %+v", f)
	}
	if len(e.DeviceCodes()) != 0 || len(e.TokenRequests()) != 0 {
		t.Fatalf("held requests had side effects:\n%s", e.Dump())
	}
	// Discovery is not held.
	resp, err = c.Get(base + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatalf("discovery during hang: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("discovery during hang: %d", resp.StatusCode)
	}

	// A request held when the window ends is still never answered.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/oauth2/v2.0/devicecode", strings.NewReader(devicecodeForm().Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := fakes.TLSClient().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	e.WaitFor(t, wait, "third request held", func() bool { return len(e.Faults()) == 3 })
	e.Hang(0)
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request held across the window's end: %v", err)
	}
	st, out := form(t, c, base+"/oauth2/v2.0/devicecode", devicecodeForm())
	if st != 200 || out["user_code"] == nil || len(e.DeviceCodes()) != 1 {
		t.Fatalf("after the hang: %d %v", st, out)
	}
}

func TestEntraHangReleasedAtClose(t *testing.T) {
	t.Parallel()
	done := make(chan error, 1)
	start := time.Now()
	t.Run("held", func(t *testing.T) {
		e := fakes.NewEntra(t)
		e.Hang(time.Minute)
		go func() {
			// No client timeout: only the fake closing ends it.
			resp, err := fakes.TLSClient().PostForm(e.AuthorityHost()+fakes.TenantID+"/oauth2/v2.0/token", url.Values{"grant_type": {"device_code"}})
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		e.WaitFor(t, wait, "request held", func() bool { return len(e.Faults()) == 1 })
	})
	// The subtest's cleanup closed the fake; it must not wait for the held
	// request (httptest waits for active requests and complains after 5s).
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("cleanup took %v", d)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("held request was answered at close")
		}
	case <-time.After(wait):
		t.Fatal("held request not released at close")
	}
}

func TestEntraDown(t *testing.T) {
	t.Parallel()
	e := fakes.NewEntra(t)
	base := e.AuthorityHost() + fakes.TenantID
	c := fakes.TLSClient()

	e.Down(time.Minute)
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth2/v2.0/devicecode", strings.NewReader(devicecodeForm().Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("client-request-id", "corr-1")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || resp.Header.Get("client-request-id") != "corr-1" {
		t.Fatalf("devicecode while down: %d %v", resp.StatusCode, resp.Header)
	}
	st, out := form(t, c, base+"/oauth2/v2.0/devicecode", devicecodeForm())
	desc, _ := out["error_description"].(string)
	codes, _ := out["error_codes"].([]any)
	if st != 503 || out["error"] != "temporarily_unavailable" || !strings.HasPrefix(desc, "AADSTS90006: ") ||
		len(codes) != 1 || codes[0] != 90006.0 || out["correlation_id"] == "" || out["trace_id"] == "" {
		t.Fatalf("devicecode while down: %d %v", st, out)
	}
	st, out = form(t, c, base+"/oauth2/v2.0/token", url.Values{"client_id": {fakes.ClientID}, "grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {"x"}})
	if st != 503 || out["error"] != "temporarily_unavailable" {
		t.Fatalf("token while down: %d %v", st, out)
	}
	resp, err = c.Get(base + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("discovery while down: %d", resp.StatusCode)
	}
	f := e.Faults()
	if len(f) != 3 || f[0].Fault != fakes.FaultDown || f[0].Status != 503 || f[2].Endpoint != "token" ||
		f[2].GrantType != "urn:ietf:params:oauth:grant-type:device_code" || len(e.DeviceCodes()) != 0 || len(e.TokenRequests()) != 0 {
		t.Fatalf("faults = %+v\n%s", f, e.Dump())
	}

	e.Down(0)
	if st, out := form(t, c, base+"/oauth2/v2.0/devicecode", devicecodeForm()); st != 200 {
		t.Fatalf("after Down(0): %d %v", st, out)
	}
	e.Down(50 * time.Millisecond)
	time.Sleep(60 * time.Millisecond)
	if st, out := form(t, c, base+"/oauth2/v2.0/devicecode", devicecodeForm()); st != 200 {
		t.Fatalf("after the window: %d %v", st, out)
	}
	if len(e.DeviceCodes()) != 2 {
		t.Fatalf("device codes = %+v", e.DeviceCodes())
	}
}

// ---- Graph: huge and garbage bodies through the existing queue ----

func TestGraphHugeAndGarbageBodies(t *testing.T) {
	t.Parallel()
	g := fakes.NewGraph(t)
	c := fakes.TLSClient()
	const pc = "/deviceManagement/virtualEndpoint/cloudPCs/pc-1"
	huge := `{"id":"pc-1","displayName":"` + strings.Repeat("x", 2<<20) + `"}`
	const garbage = "<html>502 Bad Gateway</html>\x00\xff not json"
	g.Queue(http.MethodGet, pc, fakes.Response{Body: huge}, fakes.Response{Status: 200, Body: garbage})
	// Reprovision's default status is 204 (no body): a garbage 200 needs
	// Status set.
	g.QueueReprovision("pc-1", fakes.Response{Status: 200, Body: garbage})

	get := func(method, u string) (int, []byte) {
		req, _ := http.NewRequest(method, u, nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	if st, b := get(http.MethodGet, g.URL()+pc); st != 200 || string(b) != huge {
		t.Fatalf("huge: %d, %d bytes", st, len(b))
	}
	if st, b := get(http.MethodGet, g.URL()+pc); st != 200 || string(b) != garbage {
		t.Fatalf("garbage: %d %q", st, b)
	}
	if st, b := get(http.MethodPost, g.URL()+pc+"/reprovision"); st != 200 || string(b) != garbage {
		t.Fatalf("garbage reprovision: %d %q", st, b)
	}
}
