package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/pgtest"
	"github.com/reprovision-bot/reprovision-bot/bot"
	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// BenchmarkBurst fires bursts of /reprovision commands at the real binary
// and, in the same run and against the same fake Slack (a fresh one each),
// at the floor: a minimal slack-go Socket Mode bot doing the same Slack
// work per command and nothing else (testdata/floor). Each runs as a
// process of its own, so the resident memory measured is its own. For each
// burst it prints bot, floor and bot/floor:
//
//   - ack latency p50/p99/max: from the envelope's frame written to the
//     socket to its ack read back, as the fake Slack sees it;
//   - how long until the burst's work was done: every approval prompt
//     posted (request bursts), every reason form opened or its requester
//     told (form bursts);
//   - resident memory (VmRSS of the process): idle (the bot after one full
//     reprovision, the floor after one command of each kind), when the
//     burst's work is done, and 60 s later (2000-command request bursts: the
//     bot then holds 2000 pending requests in its store); the high-water mark;
//   - CPU time the process used from the burst to the end of its work, and
//     Web API calls over Slack's published limits (observed by the fake,
//     which serves them all the same).
//
// Modes: "request" is `/reprovision <cloud PC> <reason>` (ack with the
// receipt, then the prompt to the approver's DM); "form" is
// `/reprovision <cloud PC>` (ack with no text, then views.open).
//
//	go test -run '^$' -bench Burst -benchtime 1x ./cmd/reprovision-bot/
//
// Environment knobs: BURST_SIZES (default "200,2000"), BURST_MODES
// (default "request,form"), BURST_PACE (default 20: the bot paces its Slack
// calls at 20× Slack's published limits, and the fake observes limits
// scaled alike, so that 2000 prompts to one approver take about 100 s rather
// than Slack's 33 minutes), BURST_PPROF_DIR (write CPU, heap, block, mutex
// and goroutine profiles of the bot during the largest request burst there),
// BURST_SMAPS_DIR (write both processes' /proc/PID/smaps, and the bot's
// /metrics with the Go runtime's memory classes, when idle there),
// BURST_DB=postgres (the bot on PostgreSQL: a database from pgtest, as the
// end-to-end tests get one; default a SQLite file), BURST_BOT_GOGC (the
// bot's GOGC; default the runtime's, 100).
// It builds both binaries as deploy/Dockerfile does (CGO_ENABLED=0,
// -trimpath -ldflags=-s -w), the bot's with -tags benchknobs
// (bot/benchknobs.go: the pace scale, nothing else) and, only when
// BURST_PPROF_DIR is set, benchpprof (bot/benchpprof.go: pprof, which turns
// on the runtime's memory profiling and so adds to the memory figures), and
// reports the size of a normal build. BURST_BOT_BIN runs a bot binary built
// elsewhere (with -tags benchknobs, and benchpprof for BURST_PPROF_DIR)
// instead, to compare builds.
func BenchmarkBurst(b *testing.B) {
	if testing.Short() {
		b.Skip("builds two binaries and runs for minutes")
	}
	sizes := envInts(b, "BURST_SIZES", []int{200, 2000})
	modes := strings.Split(envOr("BURST_MODES", "request,form"), ",")
	pace, err := strconv.ParseFloat(envOr("BURST_PACE", "20"), 64)
	if err != nil || pace <= 0 {
		b.Fatalf("BURST_PACE=%q: want a positive number", os.Getenv("BURST_PACE"))
	}
	var onPostgres bool
	switch db := os.Getenv("BURST_DB"); db {
	case "", "sqlite":
	case "postgres":
		onPostgres = true
	default:
		b.Fatalf("BURST_DB=%q: want sqlite (the default) or postgres", db)
	}
	// The knobs every burst shares, read once.
	smapsDir, botGOGC, pprofDir := os.Getenv("BURST_SMAPS_DIR"), os.Getenv("BURST_BOT_GOGC"), os.Getenv("BURST_PPROF_DIR")
	bins := buildBurstBinaries(b, pprofDir != "")
	fmt.Printf("binary (CGO_ENABLED=0 go build -trimpath -ldflags='-s -w'): %.2f MB; floor %.2f MB; GOMAXPROCS of the children: %s\n",
		mb(bins.prodSize), mb(bins.floorSize), envOr("GOMAXPROCS", "default (all CPUs)"))
	for _, mode := range modes {
		for _, n := range sizes {
			b.Run(fmt.Sprintf("%s/%d", mode, n), func(b *testing.B) {
				cfg := burstConfig{mode: mode, n: n, pace: pace, bins: bins,
					later:    mode == "request" && n >= 2000,
					smapsDir: smapsDir, postgres: onPostgres, botGOGC: botGOGC}
				if pprofDir != "" && mode == "request" && n == slices.Max(sizes) {
					cfg.pprofDir = pprofDir
				}
				for range b.N {
					runBurst(b, cfg)
				}
			})
		}
	}
}

type burstBinaries struct {
	bot, floor          string
	prodSize, floorSize int64
}

// buildBurstBinaries builds the bot (with the bench knobs), the floor, and
// a normal build of the bot to report its size; profiled: the bot also
// with benchpprof (BURST_PPROF_DIR).
func buildBurstBinaries(b *testing.B, profiled bool) burstBinaries {
	b.Helper()
	dir := b.TempDir()
	bins := burstBinaries{bot: filepath.Join(dir, "reprovision-bot"), floor: filepath.Join(dir, "floor")}
	prod := filepath.Join(dir, "reprovision-bot-prod")
	botTags := "benchknobs"
	if profiled {
		botTags += ",benchpprof"
	}
	builds := [][]string{
		{"-tags", botTags, "-o", bins.bot, "."},
		{"-o", bins.floor, "./testdata/floor"},
		{"-o", prod, "."},
	}
	if bin := os.Getenv("BURST_BOT_BIN"); bin != "" {
		// A bot built elsewhere (with -tags benchknobs), to compare builds.
		bins.bot, prod = bin, bin
		builds = builds[1:2]
	}
	for _, args := range builds {
		// As deploy/Dockerfile builds it: static, no cgo.
		cmd := exec.Command("go", append([]string{"build", "-trimpath", "-ldflags=-s -w"}, args...)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("go build %v: %v\n%s", args, err, out)
		}
	}
	bins.prodSize = fileSize(b, prod)
	bins.floorSize = fileSize(b, bins.floor)
	return bins
}

type burstConfig struct {
	mode     string // "request" or "form"
	n        int
	pace     float64
	bins     burstBinaries
	later    bool   // also measure memory 60 s after the work is done
	pprofDir string // profile the bot into this directory
	smapsDir string // BURST_SMAPS_DIR: idle smaps and /metrics into this directory
	postgres bool   // BURST_DB=postgres: the bot on PostgreSQL
	botGOGC  string // BURST_BOT_GOGC: the bot's GOGC ("": the runtime's)
}

// burstSide is what was measured of one process.
type burstSide struct {
	name                   string
	p50, p99, max          time.Duration
	late                   int // acks after 3 s
	done                   time.Duration
	idle, after, later     int // VmRSS, kB
	idleFile, idleAnon     int // RssFile (the binary's pages), RssAnon, kB
	hwm                    int // VmHWM, kB
	cpu                    time.Duration
	overPace               int
	opened, failed, told   int // form bursts: forms opened, views.open errors, requesters told
	hooks                  int // response_url posts during the burst
	pending                int // bot: pending requests in the store at the end
	doneAt                 time.Time
	proc                   *child
	stats, statsForm, acks string
}

// burstLater is how long after the work is done memory is measured again.
const burstLater = 60 * time.Second

func runBurst(b *testing.B, cfg burstConfig) {
	floor := runBurstSide(b, cfg, false)
	bot := runBurstSide(b, cfg, true)
	if cfg.later {
		floor.later = floor.proc.rssAt(b, floor.doneAt.Add(burstLater))
		bot.later = bot.proc.rssAt(b, bot.doneAt.Add(burstLater))
		bot.hwm = max(bot.hwm, bot.proc.status(b)["VmHWM"])
		floor.hwm = max(floor.hwm, floor.proc.status(b)["VmHWM"])
	}
	floor.proc.stop(b)
	bot.proc.stop(b)
	// Counted once the bot has stopped: opening the store takes SQLite's
	// lock and brings an older bot's schema (BURST_BOT_BIN) up to date.
	if bot.dbPath() != "" {
		bot.pending = countPending(b, bot.dbPath())
	}
	printBurst(cfg, bot, floor)
	b.ReportMetric(ratio(float64(bot.p99), float64(floor.p99)), "ack-p99-x-floor")
	b.ReportMetric(float64(bot.p99)/1e6, "bot-ack-p99-ms")
	b.ReportMetric(ratio(float64(bot.idle), float64(floor.idle)), "idle-rss-x-floor")
	b.ReportMetric(bot.done.Seconds(), "bot-done-s")
	if cfg.later {
		b.ReportMetric(ratio(float64(bot.later), float64(bot.idle)), "rss-60s-x-idle")
	}
}

func (s burstSide) dbPath() string {
	if s.proc == nil {
		return ""
	}
	return s.proc.db
}

func runBurstSide(b *testing.B, cfg burstConfig, isBot bool) burstSide {
	side := burstSide{name: "floor"}
	dir := b.TempDir()
	var (
		slack       *fakes.Slack
		h           *harness
		env         []string
		metricsAddr string // the bot's /metrics, with BURST_SMAPS_DIR
	)
	if isBot {
		side.name = "bot"
		h = newHarness(b)
		slack = h.slack
		h.env["REPROVISION_TRACK_FOR"] = "0"
		if cfg.postgres {
			h.env["REPROVISION_DB"] = pgtest.URL(b)
		}
		if cfg.smapsDir != "" {
			metricsAddr = freeAddr(b)
			h.env["REPROVISION_HTTP_ADDR"] = metricsAddr
		}
		h.env["REPROVISION_BENCH_PACE"] = strconv.FormatFloat(cfg.pace, 'f', -1, 64)
		// Graph's cap scaled like Slack's pace: with an approver signed in,
		// each prompt carries the Cloud PC's details, one Graph GET, and at
		// the unscaled 5 a second those (not Slack) set the burst's pace
		// (2000 prompts in 8 min 19 s instead of ~100 s). Unscaled, Slack's
		// one message a second per channel is the slower of the two.
		h.env["REPROVISION_GRAPH_RPS"] = strconv.Itoa(int(math.Ceil(5 * cfg.pace)))
		h.env["SSL_CERT_FILE"] = fakes.WriteCAFile(b, dir)
		h.env["PATH"] = os.Getenv("PATH")
		for k, v := range h.env {
			env = append(env, k+"="+v)
		}
	} else {
		slack = fakes.NewSlack(b)
		env = []string{
			"PATH=" + os.Getenv("PATH"),
			"SLACK_APP_TOKEN=" + fakes.AppToken,
			"SLACK_BOT_TOKEN=" + fakes.BotToken,
			"SLACK_API_URL=" + slack.APIURL(),
			"REPROVISION_APPROVER=" + approverID,
		}
	}
	if v, ok := os.LookupEnv("GOMAXPROCS"); ok {
		env = append(env, "GOMAXPROCS="+v)
	}
	if isBot && cfg.botGOGC != "" {
		env = append(env, "GOGC="+cfg.botGOGC)
	}
	slack.ObservePace(slackLimits(cfg.pace)...)
	var pprofAddr string
	if isBot && cfg.pprofDir != "" {
		pprofAddr = freeAddr(b)
		env = append(env, "REPROVISION_BENCH_PPROF="+pprofAddr)
	}
	bin := cfg.bins.floor
	if isBot {
		bin = cfg.bins.bot
	}
	proc := startChild(b, bin, dir, env)
	side.proc = proc
	if isBot {
		proc.db = h.env["REPROVISION_DB"]
	}
	slack.WaitConnected(b, wait)

	// Warm up: the bot through one full reprovision and one form, the floor
	// through one command of each kind.
	if isBot {
		prompt := h.ask(cloudPCID + " " + reason)
		h.approveWithSignIn(prompt)
		h.slack.WaitFor(b, wait, "the reprovision call", func() bool { return len(h.reprovisionPOSTs()) == 1 })
		h.waitPrompt(prompt.TS, "Reprovision started")
	} else {
		env := slack.SendSlashCommand(b, fakes.SlashCommand{UserID: requesterID, ChannelID: channelID, Text: cloudPCID + " " + reason})
		slack.WaitAck(b, env, wait)
		slack.WaitFor(b, wait, "the floor's prompt", func() bool { return slack.CallStats("chat.postMessage", approverID).OK == 1 })
	}
	formEnv := slack.SendSlashCommand(b, fakes.SlashCommand{UserID: requesterID, ChannelID: channelID, Text: "ffffffff-0000-4000-8000-000000000000"})
	slack.WaitAck(b, formEnv, wait)
	slack.WaitFor(b, wait, "the reason form", func() bool { return slack.CallStats("views.open", "").OK == 1 })
	time.Sleep(5 * time.Second)
	st := proc.status(b)
	side.idle, side.idleFile, side.idleAnon = st["VmRSS"], st["RssFile"], st["RssAnon"]
	if cfg.smapsDir != "" {
		prefix := filepath.Join(cfg.smapsDir, fmt.Sprintf("%s-%s-%d-idle-", side.name, cfg.mode, cfg.n))
		if raw, err := os.ReadFile(proc.procFile("smaps")); err == nil {
			_ = os.WriteFile(prefix+"smaps.txt", raw, 0o644)
		}
		if metricsAddr != "" {
			fetchTo(b, "http://"+metricsAddr+"/metrics", prefix+"metrics.txt")
		}
	}
	if pprofAddr != "" {
		fetchProfile(b, pprofAddr, "heap?debug=1&gc=1", filepath.Join(cfg.pprofDir, "bot-idle-heap.txt"))
		fetchProfile(b, pprofAddr, "goroutine?debug=1", filepath.Join(cfg.pprofDir, "bot-idle-goroutine.txt"))
		fetchProfile(b, pprofAddr, "heap", filepath.Join(cfg.pprofDir, "bot-idle-heap.pprof"))
	}

	baseAcks := slack.AckCount()
	basePrompts := slack.CallStats("chat.postMessage", approverID).OK
	baseHooks := len(slack.HookPosts())
	cmds := make([]fakes.SlashCommand, cfg.n)
	for i := range cmds {
		text := fmt.Sprintf("%08x-%04x-4000-8000-%012x", i, cfg.n, time.Now().UnixNano()&0xffffffffffff)
		if cfg.mode == "request" {
			text += " " + reason
		}
		cmds[i] = fakes.SlashCommand{UserID: requesterID, ChannelID: channelID, Text: text}
	}
	var profiles sync.WaitGroup
	if pprofAddr != "" {
		profiles.Go(func() { fetchProfile(b, pprofAddr, "profile?seconds=20", filepath.Join(cfg.pprofDir, "bot-cpu.pprof")) })
	}
	cpu0 := proc.cpu(b)
	begin := time.Now()
	ids := slack.SendSlashCommands(b, cmds)
	waitPoll(b, 2*time.Minute, "every ack of the burst", func() bool { return slack.AckCount() >= baseAcks+cfg.n })
	timeout := 3 * time.Minute
	if cfg.mode == "request" {
		timeout = 15 * time.Minute
	}
	waitPoll(b, timeout, "the burst's work", func() bool {
		if cfg.mode == "request" {
			// Each command ends in a prompt, or in its requester told of
			// a problem (through the response_url).
			return slack.CallStats("chat.postMessage", approverID).OK-basePrompts+len(slack.HookPosts())-baseHooks >= cfg.n
		}
		v := slack.CallStats("views.open", "")
		return v.OK-1+v.Errors+len(slack.HookPosts())-baseHooks >= cfg.n
	})
	side.doneAt = time.Now()
	side.done = side.doneAt.Sub(begin)
	side.cpu = proc.cpu(b) - cpu0
	st = proc.status(b)
	side.after, side.hwm = st["VmRSS"], st["VmHWM"]

	lat := make([]time.Duration, 0, cfg.n)
	wanted := make(map[string]bool, len(ids))
	for _, id := range ids {
		wanted[id] = true
	}
	for _, a := range slack.Acks() {
		if !wanted[a.EnvelopeID] {
			continue
		}
		from := a.WrittenAt
		if from.IsZero() {
			from = a.SentAt
		}
		d := a.AckedAt.Sub(from)
		if d > 3*time.Second {
			side.late++
		}
		lat = append(lat, d)
	}
	slices.Sort(lat)
	side.p50, side.p99, side.max = quantile(lat, 0.50), quantile(lat, 0.99), lat[len(lat)-1]
	for _, m := range []string{"chat.postMessage", "views.open", "chat.postEphemeral", "chat.update", "views.publish"} {
		side.overPace += slack.CallStats(m, "").OverPace
	}
	v := slack.CallStats("views.open", "")
	side.opened, side.failed = v.OK-1, v.Errors
	side.hooks = len(slack.HookPosts()) - baseHooks
	if cfg.mode == "form" {
		side.told = side.hooks
	}
	if pprofAddr != "" {
		profiles.Wait()
		for _, p := range []string{"heap", "block", "mutex", "goroutine", "allocs"} {
			fetchProfile(b, pprofAddr, p, filepath.Join(cfg.pprofDir, "bot-"+p+".pprof"))
		}
	}
	return side
}

// slackLimits are the limits the bot paces its calls to (Slack's
// published ones, bot.PaceLimits), scaled by pace, for the fake to observe.
func slackLimits(pace float64) []fakes.PaceRule {
	var rules []fakes.PaceRule
	for _, l := range bot.PaceLimits() {
		rules = append(rules, fakes.PaceRule{Method: l.Method, PerChannel: l.PerChannel,
			Every: time.Duration(float64(l.Every) / pace), Burst: l.Burst})
	}
	return rules
}

func printBurst(cfg burstConfig, bot, floor burstSide) {
	var w strings.Builder
	fmt.Fprintf(&w, "\n%s burst of %d (bot's Slack pace ×%g)        %12s %12s %10s\n", cfg.mode, cfg.n, cfg.pace, "bot", "floor", "bot/floor")
	dur := func(name string, a, b time.Duration) {
		fmt.Fprintf(&w, "  %-38s %12s %12s %10s\n", name, round(a), round(b), fmtRatio(float64(a), float64(b)))
	}
	mem := func(name string, a, b int) {
		fmt.Fprintf(&w, "  %-38s %9.1f MB %9.1f MB %10s\n", name, float64(a)/1024, float64(b)/1024, fmtRatio(float64(a), float64(b)))
	}
	num := func(name string, a, b int) {
		fmt.Fprintf(&w, "  %-38s %12d %12d\n", name, a, b)
	}
	dur("ack p50", bot.p50, floor.p50)
	dur("ack p99", bot.p99, floor.p99)
	dur("ack max", bot.max, floor.max)
	num("acks later than 3 s", bot.late, floor.late)
	if cfg.mode == "request" {
		dur("every prompt posted after", bot.done, floor.done)
	} else {
		dur("every form opened or refused after", bot.done, floor.done)
		num("forms opened", bot.opened, floor.opened)
		num("views.open failed", bot.failed, floor.failed)
		num("requesters told to type the reason", bot.told, floor.told)
	}
	dur("CPU time, burst to done", bot.cpu, floor.cpu)
	mem("RSS idle", bot.idle, floor.idle)
	mem("  of which file-backed (the binary)", bot.idleFile, floor.idleFile)
	mem("  of which anonymous (heap, stacks)", bot.idleAnon, floor.idleAnon)
	mem("RSS when the work is done", bot.after, floor.after)
	if cfg.later {
		mem(fmt.Sprintf("RSS %v after that", burstLater), bot.later, floor.later)
		fmt.Fprintf(&w, "  %-38s %12s\n", "bot: RSS then / RSS idle", fmtRatio(float64(bot.later), float64(bot.idle)))
	}
	mem("RSS high-water", bot.hwm, floor.hwm)
	num("calls over Slack's limits (scaled)", bot.overPace, floor.overPace)
	if cfg.mode == "request" {
		num("response_url posts (problems told)", bot.hooks, floor.hooks)
		fmt.Fprintf(&w, "  %-38s %12d\n", "bot: pending requests in the store", bot.pending)
	}
	fmt.Print(w.String())
}

// child is a bot or floor process.
type child struct {
	cmd  *exec.Cmd
	done chan error
	db   string
}

func startChild(b *testing.B, bin, dir string, env []string) *child {
	b.Helper()
	stderr, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait(); stderr.Close() }()
	b.Cleanup(func() { c.stop(b) })
	return c
}

func (c *child) stop(b *testing.B) {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		b.Errorf("%s: still running 15 s after SIGTERM", c.cmd.Path)
	}
}

// status reads the kB fields of /proc/PID/status (VmRSS, VmHWM, …).
// procFile is the path of the child's file name under /proc.
func (c *child) procFile(name string) string {
	return fmt.Sprintf("/proc/%d/%s", c.cmd.Process.Pid, name)
}

func (c *child) status(b *testing.B) map[string]int {
	b.Helper()
	raw, err := os.ReadFile(c.procFile("status"))
	if err != nil {
		b.Fatalf("reading the child's status: %v", err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(string(raw), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if f := strings.Fields(value); ok && len(f) == 2 && f[1] == "kB" {
			out[name], _ = strconv.Atoi(f[0])
		}
	}
	return out
}

// rssAt waits until t and reads VmRSS then.
func (c *child) rssAt(b *testing.B, t time.Time) int {
	time.Sleep(time.Until(t))
	return c.status(b)["VmRSS"]
}

// cpu is the user and system time the process has used.
func (c *child) cpu(b *testing.B) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(c.procFile("stat"))
	if err != nil {
		b.Fatalf("reading the child's stat: %v", err)
	}
	// Fields after the command name (which is in parentheses): utime and
	// stime are the 12th and 13th, in clock ticks (USER_HZ, 100 on Linux).
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func countPending(b *testing.B, db string) int {
	b.Helper()
	store, err := openStore(context.Background(), db) // either store, as the bot opens it
	if err != nil {
		b.Logf("counting pending requests: %v", err)
		return -1
	}
	defer store.Close()
	pending, err := store.ListByState(context.Background(), approvals.StatePending)
	if err != nil {
		b.Logf("counting pending requests: %v", err)
		return -1
	}
	return len(pending)
}

func fetchProfile(b *testing.B, addr, which, path string) {
	fetchTo(b, "http://"+addr+"/debug/pprof/"+which, path)
}

// fetchTo writes what url answers to the file at path; a failure is
// logged, not fatal (these are diagnostics). A minute bounds it: the CPU
// profile takes 20 s.
func fetchTo(b *testing.B, url, path string) {
	client := http.Client{Timeout: time.Minute}
	resp, err := client.Get(url)
	if err != nil {
		b.Logf("fetching %s: %v", url, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Logf("fetching %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		b.Logf("fetching %s: %v", url, err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}

func freeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitPoll polls cond every 20 ms (cheaper for the benchmark's own process
// than waking at every change of the fake).
func waitPoll(b *testing.B, timeout time.Duration, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func round(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return d.Round(time.Microsecond).String()
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func fmtRatio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func mb(n int64) float64 { return float64(n) / 1e6 }

func fileSize(b *testing.B, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInts(b *testing.B, name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q: want positive integers, comma-separated", name, v)
		}
		out = append(out, n)
	}
	return out
}
