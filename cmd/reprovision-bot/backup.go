package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
)

// runBackup writes a consistent copy of the store REPROVISION_DB to the new
// file named by -o, while the bot may be serving and writing the store. It
// takes no lock (the bot holds it) and never writes the store: the copy is
// SQLite's VACUUM INTO, made in one read transaction, which a WAL store's
// writer does not wait for (see sqlite.Backup). It refuses to overwrite an
// existing file, creates the copy 0600, and prints one line: where the copy
// is, its size, and how many requests and audit records it holds.
//
// The copy is a self-contained store (no -wal or -shm file): the audit
// command reads it where it lies, even read-only, and the bot serves it
// once it is put in place of the store.
func runBackup(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	flags := flag.NewFlagSet("backup", flag.ContinueOnError)
	flags.SetOutput(stdout)
	out := flags.String("o", "", "write the copy to `FILE`, which must not exist (required)")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "Usage: reprovision-bot backup -o FILE")
		fmt.Fprintln(flags.Output(), "Copies the store REPROVISION_DB (default reprovision.db) to FILE, consistently, while the bot runs.")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil // the flag package printed the usage
		}
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("backup: unexpected argument %q (the copy is named with -o FILE)", flags.Arg(0))
	}
	if strings.TrimSpace(*out) == "" {
		return errors.New("backup: -o FILE is required: the file to write the copy to (it must not exist)")
	}
	path := strings.TrimSpace(getenv("REPROVISION_DB"))
	if path == "" {
		path = "reprovision.db"
	}
	if isPostgres(path) {
		return fmt.Errorf("backup: REPROVISION_DB is a PostgreSQL database (%s): back it up with pg_dump (deploy/README.md)", shownDB(path))
	}
	info, err := sqlite.Backup(ctx, path, *out)
	if err != nil {
		return fmt.Errorf("backup of REPROVISION_DB %q: %w", path, err)
	}
	_, err = fmt.Fprintf(stdout, "backed up %s to %s: %d bytes, %s, %s (schema version %d)\n",
		path, info.Path, info.Size, count(info.Requests, "request"), count(info.Events, "audit record"), info.SchemaVersion)
	return err
}

// count is "1 thing" or "n things".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
