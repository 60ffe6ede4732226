package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// These tests build the real binary and drive it as an outside harness
// would: through its environment, its exit code and signals.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "reprovision-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "reprovision-bot")
		// The version is stamped as the Dockerfile does. Built with the
		// test binary's -race (if any) and, through the environment, the
		// same GOFLAGS (the README's test command sets some): the packages
		// compiled for the tests are then reused from the build cache, and
		// only the bot's own package is compiled and the binary linked
		// (without -race, every package, the SQLite driver's included, was
		// compiled a second time: about 85 s on a fresh machine).
		args := []string{"build", "-ldflags", "-X main.version=" + testVersion, "-o", binPath, "."}
		if raceBuild {
			args = slices.Insert(args, 1, "-race")
		}
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building the binary: %v", buildErr)
	}
	return binPath
}

func TestBinaryHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary(t), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	for _, name := range []string{"SLACK_APP_TOKEN", "SLACK_BOT_TOKEN", "SLACK_API_URL", "REPROVISION_APPROVER",
		"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_AUTHORITY_HOST", "GRAPH_URL", "REPROVISION_DB"} {
		if !strings.Contains(string(out), name) {
			t.Errorf("--help lacks %s", name)
		}
	}
}

func TestBinaryRefusesABadEnvironmentQuickly(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binary(t))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SLACK_BOT_TOKEN=oops", "AZURE_CLIENT_ID=not-a-guid"}
	begin := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(begin)
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() == 0 {
		t.Fatalf("exit: %v, want non-zero\n%s", err, out)
	}
	if took > 5*time.Second {
		t.Errorf("took %s to refuse", took)
	}
	for _, name := range []string{"SLACK_APP_TOKEN", "SLACK_BOT_TOKEN", "REPROVISION_APPROVER", "AZURE_TENANT_ID", "AZURE_CLIENT_ID"} {
		if !strings.Contains(string(out), name) {
			t.Errorf("message does not name %s:\n%s", name, out)
		}
	}
}

// binaryEnv is the environment of a bot process wired to fresh fakes (the
// CA file goes in dir), and the fake Slack to watch it through.
func binaryEnv(t *testing.T, dir string) ([]string, *fakes.Slack) {
	t.Helper()
	s := fakes.NewSlack(t)
	e := fakes.NewEntra(t)
	g := fakes.NewGraph(t)
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"SSL_CERT_FILE=" + fakes.WriteCAFile(t, dir),
		"SLACK_APP_TOKEN=" + fakes.AppToken,
		"SLACK_BOT_TOKEN=" + fakes.BotToken,
		"SLACK_API_URL=" + s.APIURL(),
		"REPROVISION_APPROVER=" + approverID,
		"AZURE_TENANT_ID=" + fakes.TenantID,
		"AZURE_CLIENT_ID=" + fakes.ClientID,
		"AZURE_AUTHORITY_HOST=" + e.AuthorityHost(),
		"GRAPH_URL=" + g.URL(),
		"REPROVISION_HTTP_ADDR=127.0.0.1:0",
	}, s
}

func TestBinaryExitsZeroOnSIGTERM(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env, s := binaryEnv(t, dir)
	cmd := exec.Command(binary(t))
	cmd.Dir = dir
	cmd.Env = env
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.WaitConnected(t, wait)
	// The default store path is in the working directory.
	if _, err := os.Stat(filepath.Join(dir, "reprovision.db")); err != nil {
		t.Errorf("no reprovision.db in the working directory: %v", err)
	}
	begin := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
		t.Logf("exited %s after SIGTERM", time.Since(begin))
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("still running 10 s after SIGTERM\n%s", stderr.String())
	}
}
