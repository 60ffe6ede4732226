package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// BackupInfo describes the copy Backup made.
type BackupInfo struct {
	Path          string // the copy, absolute
	Size          int64  // its size in bytes
	SchemaVersion int    // its schema version (PRAGMA user_version), the store's
	Requests      int    // requests in it
	Events        int    // audit records in it
}

// Backup writes a consistent copy of the store at src to the new file dst,
// while another process (the bot) may be serving and writing src.
//
// The copy is SQLite's VACUUM INTO, run in one read transaction on src: it
// holds exactly the transactions committed when it began, none half, and
// none of those committed while it runs. It takes no lock of the store
// (the bot holds that) and reads src through a read-only connection as
// OpenReader does, so it never writes src; in WAL mode a reader does not
// block the writer, so the bot goes on committing while the copy is made
// (its checkpoints just cannot pass the copy's snapshot until it ends).
//
// dst must not exist: Backup creates it with mode 0600, whatever the
// umask, and refuses with an error wrapping fs.ErrExist if it does (and
// refuses too when a -journal, -wal or -shm of that name lies there). The
// copy is a store of its own, in rollback journal mode (not WAL): it needs
// no -wal or -shm file, so it can be read where it lies even read-only
// (OpenReader), and Open serves it (switching it to WAL) once it is put in
// place of a store. Backup checks the copy (PRAGMA integrity_check, the
// schema version), counts its requests and audit records, and flushes it
// to disk before returning. On any error it removes what it wrote of dst.
//
// src may be older than this program's schema (a copy before an upgrade):
// the copy keeps that version, and Open migrates it when it is restored.
func Backup(ctx context.Context, src, dst string) (*BackupInfo, error) {
	srcAbs, err := absPath(src)
	if err != nil {
		return nil, err
	}
	dstAbs, err := absPath(dst)
	if err != nil {
		return nil, fmt.Errorf("backup to %s: %w", dst, err)
	}
	for _, suffix := range []string{"", "-wal", "-shm", "-journal", ".lock"} {
		if dstAbs == srcAbs+suffix {
			return nil, fmt.Errorf("backup to %s: that is the store %s or one of its files", dst, src)
		}
	}

	// SQLite would take a -journal or -wal lying beside the new copy for
	// its own, and roll it into the copy.
	for _, suffix := range []string{"-journal", "-wal", "-shm"} {
		if _, err := os.Lstat(dstAbs + suffix); !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("backup to %s: %s lies beside it (left from an earlier store?): remove it, or choose another name", dst, dstAbs+suffix)
		}
	}

	db, version, err := openReadOnly(srcAbs)
	if err != nil {
		return nil, fmt.Errorf("open %s read-only: %w", src, err)
	}
	defer db.Close()

	// An empty file made here, exclusively: that refuses an existing dst
	// without a window for another to appear, and sets the mode; VACUUM
	// INTO fills an empty file (it refuses a non-empty one) and keeps it.
	if err := createNew(dstAbs); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("backup to %s: the file exists; not overwriting it (choose another name, or remove it first): %w", dst, fs.ErrExist)
		}
		return nil, fmt.Errorf("backup to %s: %w", dst, err)
	}
	info, err := backupInto(ctx, db, version, dstAbs)
	if err != nil {
		// None of these was there before (see above).
		for _, suffix := range []string{"-journal", "-wal", "-shm", ""} {
			os.Remove(dstAbs + suffix)
		}
		return nil, fmt.Errorf("backup of %s to %s: %w", src, dst, err)
	}
	return info, nil
}

// backupInto copies the store open in db, of schema version, into the
// empty file dst, then checks, counts and syncs the copy.
func backupInto(ctx context.Context, db *sql.DB, version int, dst string) (*BackupInfo, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	// query_only forbids VACUUM INTO, which writes only dst; mode=ro still
	// keeps src read-only at the file level, for this connection too.
	// temp_store: rebuilding the indexes may sort more than fits the page
	// cache, and the temporary directory may be read-only (a container's
	// read-only root file system); a store is small. The connection is
	// thrown away afterwards, with db.
	for _, pragma := range []string{"PRAGMA query_only = 0", "PRAGMA temp_store = MEMORY"} {
		if _, err := conn.ExecContext(ctx, pragma); err != nil {
			conn.Close()
			return nil, err
		}
	}
	// dst is absolute, so never taken for a file: URI.
	_, err = conn.ExecContext(ctx, "VACUUM INTO ?", dst)
	conn.Close()
	if err != nil {
		return nil, fmt.Errorf("VACUUM INTO: %w", err)
	}
	db.Close()

	info, err := checkCopy(ctx, dst, version)
	if err != nil {
		return nil, err
	}
	// VACUUM INTO does not sync what it wrote. No connection to dst is
	// open any more (closing this descriptor would drop their locks).
	if err := syncFile(dst); err != nil {
		return nil, err
	}
	syncDir(filepath.Dir(dst))
	fi, err := os.Stat(dst)
	if err != nil {
		return nil, err
	}
	info.Path, info.Size = dst, fi.Size()
	return info, nil
}

// checkCopy makes sure the copy at dst is in rollback journal mode, sound,
// of schema version, and counts what it holds.
func checkCopy(ctx context.Context, dst string, version int) (*BackupInfo, error) {
	db, err := sql.Open("sqlite", dsn(dst, false))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	// VACUUM INTO writes a rollback journal database; say so in the file
	// whatever a future SQLite does, since a WAL one needs its -shm to be
	// read and could not be read where it may not be created.
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode = DELETE").Scan(&mode); err != nil {
		return nil, fmt.Errorf("copy: journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "delete") {
		return nil, fmt.Errorf("copy: journal mode is %q, want delete", mode)
	}
	var check string
	if err := db.QueryRowContext(ctx, "PRAGMA integrity_check(1)").Scan(&check); err != nil {
		return nil, fmt.Errorf("copy: integrity check: %w", err)
	}
	if check != "ok" {
		return nil, fmt.Errorf("copy: integrity check: %s", check)
	}
	info := &BackupInfo{}
	if info.SchemaVersion, err = userVersion(ctx, db); err != nil {
		return nil, fmt.Errorf("copy: %w", err)
	}
	if info.SchemaVersion != version {
		return nil, fmt.Errorf("copy: schema version %d, want the store's %d", info.SchemaVersion, version)
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM requests").Scan(&info.Requests); err != nil {
		return nil, fmt.Errorf("copy: count requests: %w", err)
	}
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM audit_events").Scan(&info.Events); err != nil {
		return nil, fmt.Errorf("copy: count audit records: %w", err)
	}
	return info, db.Close()
}

// createNew creates the empty file path, mode 0600 whatever the umask,
// failing with fs.ErrExist if anything is there already.
func createNew(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Chmod(0o600)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// syncFile flushes the file at path to stable storage.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir flushes the directory entry of a new file, where the system
// allows it (not on Windows): best effort, the file itself is synced.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
