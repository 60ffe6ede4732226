package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// testVersion is stamped into the test binary (binary()).
const testVersion = "0.0.0-test"

var opsAddrLine = regexp.MustCompile(`"msg":"operations listener","addr":"([0-9.:]+)"`)

// opsURL is the base URL of the bot's operations listener, from its log.
func (h *harness) opsURL() string {
	h.t.Helper()
	var addr string
	h.slack.WaitFor(h.t, wait, "the operations listener's address in the log", func() bool {
		if m := opsAddrLine.FindStringSubmatch(h.stderr.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	return "http://" + addr
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// /healthz and /readyz answer, and /metrics counts a full reprovision as it
// happened: one request created, one reprovision POST answered 204, one
// request settled as succeeded (still open while it is followed), no notice
// left undelivered, every envelope's ack timed.
func TestOpsEndpointsAndMetrics(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	base := h.opsURL()
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	// Ready once the bot has seen its connection open (just after Slack did).
	h.slack.WaitFor(t, wait, "/readyz 200", func() bool {
		code, body := get(t, base+"/readyz")
		return code == 200 && body == "ready\n"
	})
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	h.waitDM(requesterID, "Reprovision started")
	h.slack.WaitFor(t, wait, "the outbox empty", func() bool {
		_, body := get(t, base+"/metrics")
		return strings.Contains(body, "\nreprovision_notices_pending 0\n")
	})
	_, body := get(t, base+"/metrics")
	for _, want := range []string{
		"\nreprovision_requests_created_total 1\n",
		"\nreprovision_requests_settled_total{state=\"succeeded\"} 1\n",
		"\nreprovision_requests_settled_total{state=\"failed\"} 0\n",
		"\nreprovision_graph_requests_total{code=\"204\",operation=\"reprovision\"} 1\n",
		"\nreprovision_graph_requests_total{code=\"200\",operation=\"get\"} ",
		"\nreprovision_open_requests 1\n", // followed after the call
		"\nreprovision_socket_reconnects_total 0\n",
		"\nreprovision_slack_ack_seconds_count ",
		"\ngo_goroutines ",
		"\nprocess_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}
	if m := regexp.MustCompile(`\nreprovision_slack_ack_seconds_count (\d+)\n`).FindStringSubmatch(body); m == nil || m[1] < "2" {
		t.Errorf("acks timed: %v, want at least the command's and the clicks'", m)
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// /readyz says 503 while the Socket Mode connection is down (Slack drops it
// and refuses a new one for a while) and 200 again once the bot has
// reconnected, which /metrics counts.
func TestReadyzFollowsTheSocket(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	base := h.opsURL()
	h.slack.WaitFor(t, wait, "/readyz 200 at first", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
	connections := h.slack.Connections()
	h.slack.Outage(2 * time.Second)
	h.slack.SendDisconnect(t)
	h.slack.WaitFor(t, wait, "/readyz 503", func() bool {
		code, body := get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable && body == "not connected to Slack (Socket Mode)\n"
	})
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz %d while disconnected, want 200 (the process is alive)", code)
	}
	h.slack.WaitFor(t, wait, "/readyz 200 after the reconnect", func() bool {
		code, _ := get(t, base+"/readyz")
		return code == 200 && h.slack.Connections() > connections
	})
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, "\nreprovision_socket_reconnects_total 1\n") {
		t.Errorf("reconnects not counted:\n%s", body)
	}
}

// REPROVISION_HTTP_ADDR=off: no listener; a port in use: the bot does not
// start, naming the variable.
func TestOpsListenerOffOrTaken(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.env["REPROVISION_HTTP_ADDR"] = "off"
	h.start()
	if strings.Contains(h.stderr.String(), "operations listener") {
		t.Error("a listener with REPROVISION_HTTP_ADDR=off")
	}
	h.stop()

	taken := newHarness(t)
	taken.start()
	addr := strings.TrimPrefix(taken.opsURL(), "http://")
	second := newHarness(t)
	second.env["REPROVISION_HTTP_ADDR"] = addr
	err := run(context.Background(), func(k string) string { return second.env[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "REPROVISION_HTTP_ADDR") {
		t.Errorf("run with the port taken: %v", err)
	}
}

// REPROVISION_LOG_LEVEL=warn keeps info lines out; debug lets debug lines in.
func TestLogLevel(t *testing.T) {
	t.Parallel()
	quiet := newHarness(t)
	quiet.env["REPROVISION_LOG_LEVEL"] = "warn"
	quiet.start()
	quiet.ask(cloudPCID + " " + reason)
	if strings.Contains(quiet.stderr.String(), `"level":"INFO"`) {
		t.Errorf("info lines at level warn:\n%s", quiet.stderr.String())
	}
	chatty := newHarness(t)
	chatty.env["REPROVISION_LOG_LEVEL"] = "debug"
	chatty.start()
	chatty.ask(cloudPCID + " " + reason)
	chatty.slack.WaitFor(t, wait, "a debug line", func() bool { return strings.Contains(chatty.stderr.String(), `"level":"DEBUG"`) })
}

// version (and --version) print the stamped version, the VCS revision and
// the Go version; the bot logs the same at start.
func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(binary(t), arg).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", arg, err, out)
		}
		line := string(out)
		if !strings.HasPrefix(line, "reprovision-bot "+testVersion+" ") || !strings.HasSuffix(line, runtime.Version()+"\n") {
			t.Errorf("%s: %q, want the version and %s", arg, line, runtime.Version())
		}
	}
	var stdout bytes.Buffer
	if code := dispatch(context.Background(), []string{"version", "extra"}, func(string) string { return "" }, &stdout, io.Discard); code != 1 {
		t.Errorf("version with an argument: exit %d", code)
	}
	h := newHarness(t)
	h.start()
	if !strings.Contains(h.stderr.String(), `"msg":"reprovision-bot","version":`) {
		t.Errorf("no version line at start:\n%s", h.stderr.String())
	}
}

// AZURE_CLOUD=usgov: approvers sign in for the US Government Graph's
// permission even with GRAPH_URL overridden (here: the fake), and the bot
// warns that GRAPH_URL is not that cloud's Graph.
func TestCloudScope(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.env["AZURE_CLOUD"] = "usgov"
	h.start()
	if !strings.Contains(h.stderr.String(), `"msg":"GRAPH_URL is not the cloud's Graph: approvers' tokens go there"`) ||
		!strings.Contains(h.stderr.String(), `"cloud_graph":"https://graph.microsoft.us/beta"`) {
		t.Errorf("no warning about GRAPH_URL:\n%s", h.stderr.String())
	}
	prompt := h.ask(cloudPCID + " " + reason)
	h.approveWithSignIn(prompt)
	codes := h.entra.DeviceCodes()
	if len(codes) == 0 || !strings.Contains(codes[0].Scope, "https://graph.microsoft.us/CloudPC.ReadWrite.All") {
		t.Errorf("device code scope: %+v, want the US Government Graph's", codes)
	}
}
