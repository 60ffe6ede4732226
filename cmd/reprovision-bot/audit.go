package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/postgres"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
)

// runAudit prints the audit trail from REPROVISION_DB. It only reads, and
// works while the bot runs on the same file: it opens the store with
// sqlite.OpenReader, which takes no lock (the bot holds it), never writes
// (no schema creation or migration; SQLite refuses any write) and fails on a
// missing file or one without the bot's schema. SQLite WAL readers never
// block the writer. Nothing here can edit or delete a record.
func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	flags := flag.NewFlagSet("audit", flag.ContinueOnError)
	flags.SetOutput(stdout)
	since := flags.Duration("since", 0, "only events from the last DURATION (e.g. 24h); 0: all")
	format := flags.String("format", "jsonl", "output format: jsonl or csv")
	ref := flags.String("ref", "", "only the events of the request with this reference (e.g. R-7K3F9Q)")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // the flag package printed the usage
		}
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("audit: unexpected argument %q", flags.Arg(0))
	}
	if *since < 0 {
		return fmt.Errorf("audit: -since must not be negative")
	}
	if *format != "jsonl" && *format != "csv" {
		return fmt.Errorf("audit: -format must be jsonl or csv")
	}
	if *ref != "" && !approvals.ValidReference(strings.ToUpper(*ref)) {
		return fmt.Errorf("audit: -ref must be a request reference such as R-7K3F9Q")
	}
	path := strings.TrimSpace(getenv("REPROVISION_DB"))
	if path == "" {
		path = "reprovision.db"
	}
	var store interface {
		Events(context.Context, time.Time) ([]approvals.Event, error)
		Close() error
	}
	var err error
	if isPostgres(path) {
		// The PostgreSQL store's readers are its replicas' own queries:
		// there is no file to open read-only. Open brings the schema up to
		// date, as any bot start would; audit then only selects.
		store, err = postgres.Open(ctx, path)
		if err != nil {
			return fmt.Errorf("opening REPROVISION_DB (PostgreSQL %s): %w", shownDB(path), err)
		}
	} else if store, err = sqlite.OpenReader(path); err != nil {
		return fmt.Errorf("opening REPROVISION_DB %q: %w", path, err)
	}
	defer store.Close()
	var from time.Time
	if *since > 0 {
		from = time.Now().Add(-*since)
	}
	events, err := store.Events(ctx, from)
	if err != nil {
		return err
	}
	if *ref != "" {
		events = slices.DeleteFunc(events, func(e approvals.Event) bool { return e.RequestID != strings.ToUpper(*ref) })
	}
	return approvals.WriteEvents(stdout, events, *format)
}
