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
	"syscall"

	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
	"github.com/reprovision-bot/reprovision-bot/bot"
	"github.com/reprovision-bot/reprovision-bot/graph"
)

func main() {
	for _, arg := range os.Args[1:] {
		switch arg {
		case "-h", "-help", "--help", "help":
			if err := printUsage(os.Stdout); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			return
		default:
			fmt.Fprintf(os.Stderr, "reprovision-bot: unknown argument %q (try --help)\n", arg)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stderr); err != nil {
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

	b, err := bot.New(bot.Config{
		BotToken: cfg.SlackBotToken, AppToken: cfg.SlackAppToken, SlackAPIURL: cfg.SlackAPIURL,
		Approver: cfg.Approver,
		Store:    store,
		SignIn:   auth,
		Graph:    graph.ClientOptions{BaseURL: cfg.GraphURL},
		Logger:   log,
	})
	if err != nil {
		return err
	}
	log.Info("starting", "approver", cfg.Approver, "graph", cfg.GraphURL, "db", cfg.DBPath)
	return b.Run(ctx)
}
