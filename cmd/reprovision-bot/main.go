// Command reprovision-bot runs the Slack bot that reprovisions Windows 365
// Cloud PCs after a named approver approves and signs in. This package only
// wires the others together; see README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/bot"
	"github.com/reprovision-bot/reprovision-bot/graph"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(dispatch(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// subcommands are the verbs besides serving; each reads its configuration
// through getenv, writes its result to stdout and returns what went wrong.
var subcommands = map[string]func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error{
	"audit":   runAudit,
	"backup":  runBackup,
	"check":   runCheck,
	"version": runVersion,
}

// dispatch runs the subcommand args name (none: serve) and returns the exit
// status.
func dispatch(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var err error
	switch {
	case len(args) == 0:
		err = run(ctx, getenv, stderr)
	case args[0] == "--version" || args[0] == "-version":
		err = runVersion(ctx, args[1:], getenv, stdout)
	case slices.Contains([]string{"-h", "-help", "--help", "help"}, args[0]):
		err = printUsage(stdout)
	case subcommands[args[0]] != nil:
		err = subcommands[args[0]](ctx, args[1:], getenv, stdout)
	default:
		fmt.Fprintf(stderr, "reprovision-bot: unknown argument %q (try --help)\n", args[0])
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "reprovision-bot:", err)
		return 1
	}
	return 0
}

// slackPaceKey is the context key under which the end-to-end tests speed
// up the bot's Slack pace (bot.Config.PaceScale) for one run: a batch of 30
// Cloud PCs posts 30 thread lines, half a minute at Slack's one message a
// second. Nothing but those tests sets it; the configuration has no such
// setting, so a deployment always keeps Slack's published limits.
type slackPaceKey struct{}

// slackPaceScale is the scale the tests put in ctx, or 0 (Slack's pace).
func slackPaceScale(ctx context.Context) float64 {
	scale, _ := ctx.Value(slackPaceKey{}).(float64)
	return scale
}

// run serves until ctx is done (nil) or something fatal happens (error).
// Logs go to stderr as JSON lines.
func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	// An unknown tenant stops the bot here; an unreachable Entra only warns (check.go).
	if err := checkTenantAtStart(ctx, cfg, stderr); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel()}))
	build := currentBuild()
	log.Info("reprovision-bot", "version", build.Version, "revision", build.Revision, "go", build.GoVersion)
	if !cfg.cloud.ServesGraph(cfg.GraphURL) {
		log.Warn("GRAPH_URL is not the cloud's Graph: approvers' tokens go there", "graph", cfg.GraphURL,
			"cloud", cfg.cloud.Name, "cloud_graph", cfg.cloud.GraphURL())
	}

	auth, err := graph.NewAuthenticator(graph.SignInConfig{
		TenantID: cfg.TenantID, ClientID: cfg.ClientID, AuthorityHost: cfg.AuthorityHost, Scope: cfg.cloud.Scope(),
	})
	if err != nil {
		return err
	}
	store, err := openStore(ctx, cfg.DBPath)
	if err != nil {
		return err
	}
	defer store.Close()

	m := newMetrics(storeCounts{OpenRequests: store.CountOpen, UndeliveredNotices: store.Undelivered})
	// One limiter for the process: every approver's sign-in gets its own Graph
	// client, and they all pace (and pause after a Retry-After) together.
	graphLimit, err := graph.NewRateLimiter(cfg.GraphRPS)
	if err != nil {
		return err
	}
	signIns, err := graph.NewSignIns(auth, graph.ClientOptions{BaseURL: cfg.GraphURL, Scope: cfg.cloud.Scope(), Observe: m.GraphRequest, RateLimiter: graphLimit})
	if err != nil {
		return err
	}
	b, err := bot.New(bot.Config{
		BotToken: cfg.SlackBotToken, AppToken: cfg.SlackAppToken, SlackAPIURL: cfg.SlackAPIURL,
		Logger: log, Observer: m, PaceScale: slackPaceScale(ctx),
	})
	if err != nil {
		return err
	}
	wf, err := approvals.New(approvals.Config{
		Policy: approvals.Policy{
			Approvers:         cfg.Approvers,
			Requesters:        cfg.Requesters,
			Channels:          cfg.Channels,
			AllowSelfApproval: cfg.AllowSelfApproval,
			ApprovalTTL:       cfg.ApprovalTTL,
			ApprovalsRequired: cfg.ApprovalsRequired,
		},
		ApproverUPNs:       cfg.ApproverUPNs,
		Store:              store,
		SignIns:            signIns,
		Notices:            b,
		SignInTTL:          cfg.SignInTTL,
		SignInStartTimeout: cfg.SignInStart,
		SignInTimeout:      cfg.SignInTimeout,
		AllowedStatuses:    cfg.AllowedStatuses,
		TrackEvery:         cfg.TrackEvery,
		TrackFor:           cfg.TrackFor,
		NotifyUser:         cfg.NotifyUser,
		UserNotice:         cfg.UserNotice,
		BatchMax:           cfg.BatchMax,
		BatchTwoPerson:     cfg.BatchTwoPerson,
		BatchParallel:      cfg.BatchParallel,
		Logger:             log,
		Observer:           m,
	})
	if err != nil {
		return err
	}
	// serving: this process serves (with PostgreSQL only while it leads;
	// the others stand by).
	var serving atomic.Bool
	if cfg.HTTPAddr != "off" {
		ready := func(rctx context.Context) error {
			switch {
			case ctx.Err() != nil:
				return errors.New("stopping")
			case !serving.Load():
				return errors.New("standby")
			case !b.Connected():
				return errors.New("not connected to Slack (Socket Mode)")
			}
			return store.Ping(rctx)
		}
		addr, stop, err := serveOps(cfg.HTTPAddr, opsHandler(ready, m.Handler()), log)
		if err != nil {
			return err
		}
		defer stop()
		log.Info("operations listener", "addr", addr.String())
	}
	log.Info("starting", "approvers", cfg.Approvers, "cloud", cfg.cloud.Name, "graph", cfg.GraphURL, "db", shownDB(cfg.DBPath))
	if !isPostgres(cfg.DBPath) {
		serving.Store(true) // the store's file lock already made this process the one
		m.Leading(true)
		return b.Run(ctx, wf)
	}
	return lead(ctx, cfg.DBPath, log, m, &serving, func(ctx context.Context) error { return b.Run(ctx, wf) })
}
