// Command reprovision-bot runs the Slack bot that reprovisions Windows 365
// Cloud PCs after a named approver approves and signs in. This package only
// wires the others together; see README.md.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
	"github.com/reprovision-bot/reprovision-bot/bot"
	"github.com/reprovision-bot/reprovision-bot/graph"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	args := os.Args[1:]
	var err error
	switch {
	case len(args) > 0 && args[0] == "audit":
		err = runAudit(ctx, args[1:], os.Getenv, os.Stdout)
	case len(args) > 0 && slices.Contains([]string{"-h", "-help", "--help", "help"}, args[0]):
		err = printUsage(os.Stdout)
	case len(args) > 0:
		fmt.Fprintf(os.Stderr, "reprovision-bot: unknown argument %q (try --help)\n", args[0])
		os.Exit(2)
	default:
		err = run(ctx, os.Getenv, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "reprovision-bot:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done (nil) or something fatal happens (error).
// Logs go to stderr as JSON lines.
func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))

	auth, err := graph.NewAuthenticator(graph.SignInConfig{
		TenantID: cfg.TenantID, ClientID: cfg.ClientID, AuthorityHost: cfg.AuthorityHost,
	})
	if err != nil {
		return err
	}
	store, err := sqlite.Open(cfg.DBPath)
	if err != nil {
		return fmt.Errorf("opening REPROVISION_DB %q: %w", cfg.DBPath, err)
	}
	defer store.Close()

	signIns, err := graph.NewSignIns(auth, graph.ClientOptions{BaseURL: cfg.GraphURL})
	if err != nil {
		return err
	}
	b, err := bot.New(bot.Config{
		BotToken: cfg.SlackBotToken, AppToken: cfg.SlackAppToken, SlackAPIURL: cfg.SlackAPIURL,
		Logger: log,
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
		Logger:             log,
	})
	if err != nil {
		return err
	}
	log.Info("starting", "approvers", cfg.Approvers, "graph", cfg.GraphURL, "db", cfg.DBPath)
	return b.Run(ctx, wf)
}
