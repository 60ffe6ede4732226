package sqlite_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
)

// seed fills the store with requests, n audit records each (one statement
// per request), and returns the requests.
func seed(t *testing.T, s *sqlite.Store, requests, n int) []*approvals.Request {
	t.Helper()
	var out []*approvals.Request
	for range requests {
		r := mustCreate(t, s, newRequest())
		if _, err := sqlite.DB(s).Exec(`WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < ?)
			INSERT INTO audit_events (time, request_id, kind, actor, details)
			SELECT ?, ?, 'requested', 'U_REQUESTER', json_object('reason', 'seed ' || i || ' ' || ?) FROM seq`,
			n, time.Now().UTC().Format("2006-01-02T15:04:05.000000000Z07:00"), r.ID, strings.Repeat("x", 200)); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// dirEntries lists the names in dir.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// mustBackup backs src up to dst.
func mustBackup(t *testing.T, src, dst string) *sqlite.BackupInfo {
	t.Helper()
	info, err := sqlite.Backup(context.Background(), src, dst)
	if err != nil {
		t.Fatalf("Backup(%s, %s): %v", src, dst, err)
	}
	return info
}

// TestBackupWhileWriting: a backup taken while the serving store commits
// transactions of two audit records each, as fast as it can, holds every
// transaction committed before it began, whole, and none half; the writer
// is not held up meanwhile.
func TestBackupWhileWriting(t *testing.T) {
	path := dbPath(t)
	s := openStore(t, path)
	seeded := seed(t, s, 10, 300) // about a MB, so that the copy takes a while
	ctx := context.Background()

	var (
		committed  atomic.Int64 // pairs committed: PAIR-000000 to committed-1
		slowest    atomic.Int64 // the longest commit, in ns
		stop       = make(chan struct{})
		writerDone = make(chan error, 1)
	)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			begin := time.Now()
			tx, err := sqlite.DB(s).BeginTx(ctx, nil)
			if err != nil {
				writerDone <- err
				return
			}
			for half := range 2 {
				if _, err := tx.Exec(`INSERT INTO audit_events (time, request_id, kind, actor, details) VALUES (?, ?, 'approved', ?, '{}')`,
					time.Now().UTC().Format("2006-01-02T15:04:05.000000000Z07:00"), fmt.Sprintf("PAIR-%06d", i), strconv.Itoa(half)); err != nil {
					tx.Rollback()
					writerDone <- err
					return
				}
			}
			if err := tx.Commit(); err != nil {
				writerDone <- err
				return
			}
			if took := time.Since(begin); took.Nanoseconds() > slowest.Load() {
				slowest.Store(took.Nanoseconds())
			}
			committed.Store(int64(i + 1))
		}
	}()
	for committed.Load() < 20 {
		time.Sleep(time.Millisecond)
	}

	dst := filepath.Join(t.TempDir(), "copy.db")
	before := committed.Load()
	begin := time.Now()
	info := mustBackup(t, path, dst)
	took := time.Since(begin)
	after := committed.Load()
	close(stop)
	if err := <-writerDone; err != nil {
		t.Fatalf("the writer failed: %v", err)
	}
	t.Logf("the backup took %s; %d transactions committed before it, %d while it ran; slowest commit %s",
		took, before, after-before, time.Duration(slowest.Load()))
	if took > 100*time.Millisecond && after == before {
		t.Errorf("no transaction committed during a backup of %s: the writer waited for it", took)
	}
	if slow := time.Duration(slowest.Load()); slow > 2*time.Second {
		t.Errorf("a commit took %s while the backup ran", slow)
	}

	copied := openReader(t, dst)
	events, err := copied.Events(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Events != len(events) || info.Requests != len(seeded) || info.SchemaVersion != 5 {
		t.Errorf("Backup reported %+v; the copy has %d requests, %d records, schema version 5", info, len(seeded), len(events))
	}
	halves := map[string][]string{}
	seededRecords := 0
	for _, e := range events {
		if strings.HasPrefix(e.RequestID, "PAIR-") {
			halves[e.RequestID] = append(halves[e.RequestID], e.Actor)
		} else {
			seededRecords++
		}
	}
	if seededRecords != 10*300 {
		t.Errorf("the copy has %d seeded records, want %d", seededRecords, 10*300)
	}
	pairs := int64(len(halves))
	if pairs < before || pairs > after {
		t.Errorf("the copy has %d transactions, want from %d (committed before the backup) to %d", pairs, before, after)
	}
	for i := range pairs {
		id := fmt.Sprintf("PAIR-%06d", i)
		if got := halves[id]; len(got) != 2 {
			t.Errorf("transaction %s is in the copy with records %v, want both halves", id, got)
		}
	}
	for _, r := range seeded {
		mustGet(t, copied, r.ID)
	}
}

// TestBackupIsAStoreOfItsOwn: the copy is created 0600 whatever the umask,
// stands alone (rollback journal mode, no -wal, -shm or -journal beside it),
// keeps the schema version and every request and record, reads with
// OpenReader and serves with Open. The store is not written.
func TestBackupIsAStoreOfItsOwn(t *testing.T) {
	for _, umask := range []int{0, 0o022, 0o077} {
		t.Run(fmt.Sprintf("umask %04o", umask), func(t *testing.T) {
			path := dbPath(t)
			s, err := sqlite.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			rs := seed(t, s, 3, 2)
			mustMove(t, s, rs[0].ID, approvals.StateApproved)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			before := fileSum(t, path)

			dir := t.TempDir()
			dst := filepath.Join(dir, "copy.db")
			old := syscall.Umask(umask)
			info := mustBackup(t, path, dst)
			syscall.Umask(old)

			if fileSum(t, path) != before {
				t.Error("Backup changed the store")
			}
			if info.Path != dst || info.Requests != 3 || info.Events != 6 || info.SchemaVersion != 5 {
				t.Errorf("Backup reported %+v, want %s, 3 requests, 6 records, schema version 5", info, dst)
			}
			fi, err := os.Stat(dst)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("the copy has mode %04o, want 0600", fi.Mode().Perm())
			}
			if fi.Size() != info.Size {
				t.Errorf("Backup reported %d bytes, the copy has %d", info.Size, fi.Size())
			}
			if got := dirEntries(t, dir); !slices.Equal(got, []string{"copy.db"}) {
				t.Errorf("beside the copy: %v, want the copy alone", got)
			}
			// Bytes 18 and 19 of the header: 1 is a rollback journal, 2 WAL.
			// (No connection to the copy is open: reading it drops none of
			// SQLite's locks.)
			head := make([]byte, 20)
			if f, err := os.Open(dst); err != nil {
				t.Fatal(err)
			} else {
				io.ReadFull(f, head)
				f.Close()
			}
			if head[18] != 1 || head[19] != 1 {
				t.Errorf("the copy's header says file format %d/%d, want 1/1 (rollback journal, not WAL)", head[18], head[19])
			}

			reader, err := sqlite.OpenReader(dst)
			if err != nil {
				t.Fatal(err)
			}
			events, err := reader.Events(context.Background(), time.Time{})
			if err != nil || len(events) != 6 {
				t.Errorf("the copy's records: %d, %v; want 6", len(events), err)
			}
			if got := mustGet(t, reader, rs[0].ID); got.State != approvals.StateApproved {
				t.Errorf("the copy has %s %s, want approved", got.ID, got.State)
			}
			reader.Close()
			if got := dirEntries(t, dir); !slices.Equal(got, []string{"copy.db"}) {
				t.Errorf("reading the copy left %v beside it", got)
			}

			served := openStore(t, dst)
			mustGet(t, served, rs[1].ID)
			mustCreate(t, served, newRequest())
			var mode string
			if err := sqlite.DB(served).QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
				t.Errorf("the copy served: journal mode %q, %v; want wal", mode, err)
			}
		})
	}
}

// TestBackupRefuses: an existing file (empty or not, left as it was), the
// store itself or one of its files, a missing store or a file that is not
// one (no copy made), a directory that does not exist, a cancelled context
// (what was written removed).
func TestBackupRefuses(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	s := openStore(t, path)
	mustCreate(t, s, newRequest())
	dir := t.TempDir()

	for name, content := range map[string]string{"full.db": "precious", "empty.db": ""} {
		dst := filepath.Join(dir, name)
		if err := os.WriteFile(dst, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		_, err := sqlite.Backup(ctx, path, dst)
		if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), dst) || !strings.Contains(err.Error(), "not overwriting") {
			t.Errorf("Backup to the existing %s: %v, want an error wrapping fs.ErrExist naming it", name, err)
		}
		if b, err := os.ReadFile(dst); err != nil || string(b) != content {
			t.Errorf("%s was changed: %q, %v", name, b, err)
		}
		if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("%s mode: %v, %v", name, fi.Mode().Perm(), err)
		}
	}

	for _, dst := range []string{path, path + "-wal", path + "-shm", path + ".lock", path + "-journal"} {
		if _, err := sqlite.Backup(ctx, path, dst); err == nil || !strings.Contains(err.Error(), "one of its files") {
			t.Errorf("Backup to %s: %v, want a refusal", filepath.Base(dst), err)
		}
	}
	stale := filepath.Join(dir, "stale.db")
	if err := os.WriteFile(stale+"-journal", []byte("an old hot journal"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Backup(ctx, path, stale); err == nil || !strings.Contains(err.Error(), stale+"-journal") {
		t.Errorf("Backup beside a stale -journal: %v, want an error naming it", err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Backup beside a stale -journal made the copy: %v", err)
	}
	os.Remove(stale + "-journal")
	if _, err := sqlite.Backup(ctx, path, ""); err == nil {
		t.Error("Backup to an empty path succeeded")
	}

	missing := filepath.Join(dir, "missing.db")
	dst := filepath.Join(dir, "copy.db")
	if _, err := sqlite.Backup(ctx, missing, dst); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "no store there") {
		t.Errorf("Backup of a missing store: %v, want an error wrapping fs.ErrNotExist saying so", err)
	}
	for _, p := range []string{missing, dst} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Backup of a missing store made %s: %v", filepath.Base(p), err)
		}
	}

	notAStore := filepath.Join(dir, "notes.db")
	if err := os.WriteFile(notAStore, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Backup(ctx, notAStore, dst); err == nil || !strings.Contains(err.Error(), "no schema") {
		t.Errorf("Backup of an empty file: %v, want a no-schema error", err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Backup of a file that is not a store made a copy: %v", err)
	}

	if _, err := sqlite.Backup(ctx, path, filepath.Join(dir, "no", "such", "dir", "copy.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Backup into a missing directory: %v, want fs.ErrNotExist", err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := sqlite.Backup(cancelled, path, dst); !errors.Is(err, context.Canceled) {
		t.Errorf("Backup with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := os.Stat(dst); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a cancelled Backup left its copy: %v", err)
	}
	if got := dirEntries(t, dir); !slices.Equal(got, []string{"empty.db", "full.db", "notes.db"}) {
		t.Errorf("left in the directory: %v", got)
	}
}

// TestBackupOfAnOlderSchema: a store of an older version (a copy taken
// before an upgrade) is copied as it is; the copy migrates when served.
func TestBackupOfAnOlderSchema(t *testing.T) {
	path := dbPath(t)
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r := mustCreate(t, s, newRequest())
	s.Close()
	raw := rawDB(t, path)
	for _, stmt := range []string{"DROP TABLE cloud_pc_holds", "ALTER TABLE requests DROP COLUMN batch", "ALTER TABLE requests DROP COLUMN heads_up_user_id", "ALTER TABLE requests DROP COLUMN heads_up_result", "ALTER TABLE requests DROP COLUMN send_at", "ALTER TABLE requests DROP COLUMN more_time_asked", "ALTER TABLE requests DROP COLUMN postponed", "ALTER TABLE requests DROP COLUMN sign_in_lost", "ALTER TABLE requests DROP COLUMN approvals", "ALTER TABLE requests DROP COLUMN approvals_required", "ALTER TABLE requests DROP COLUMN user_account_type", "ALTER TABLE requests DROP COLUMN os_version", "DROP TABLE outbox", "DROP INDEX requests_by_update", "PRAGMA user_version = 2"} {
		if _, err := raw.Exec(stmt); err != nil {
			t.Fatalf("making a version 2 store: %s: %v", stmt, err)
		}
	}
	raw.Close()

	dst := filepath.Join(t.TempDir(), "copy.db")
	if info := mustBackup(t, path, dst); info.SchemaVersion != 2 || info.Requests != 1 {
		t.Errorf("Backup reported %+v, want schema version 2, 1 request", info)
	}
	if reader, err := sqlite.OpenReader(dst); err == nil || !strings.Contains(err.Error(), "older") {
		if err == nil {
			reader.Close()
		}
		t.Errorf("OpenReader of the version 2 copy: %v, want an error saying it is older", err)
	}
	served := openStore(t, dst)
	mustGet(t, served, r.ID)
	var version int
	if err := sqlite.DB(served).QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != 5 {
		t.Errorf("the copy served: schema version %d, %v; want 5", version, err)
	}
}

// readOnlyCopies makes, in fresh directories, the read-only copies the
// audit command must read, each holding the requests and records of a
// served store:
//   - "backup": made by Backup (rollback journal mode);
//   - "wal file": the file of a store the bot served and closed, copied as
//     it is (WAL mode: SQLite would want to create its -wal and -shm).
//
// Each made read-only by file mode 0444, directory mode 0555, or both; the
// directories are made writable again when the test ends, for its clean-up.
type readOnlyCopy struct {
	name     string
	path     string
	requests []*approvals.Request
	events   int
}

func makeCopies(t *testing.T, parent string) []readOnlyCopy {
	t.Helper()
	src := filepath.Join(t.TempDir(), "approvals.db")
	s, err := sqlite.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	rs := seed(t, s, 2, 3)
	if err := s.Close(); err != nil { // checkpoints: the file holds everything
		t.Fatal(err)
	}
	walFile, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if walFile[18] != 2 {
		t.Fatalf("the served store's header says file format %d, want 2 (WAL)", walFile[18])
	}

	var out []readOnlyCopy
	for _, kind := range []string{"backup", "wal file"} {
		for _, ro := range []string{"file 0444", "directory 0555", "file 0444 in directory 0555"} {
			dir, err := os.MkdirTemp(parent, "copy")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "approvals.db")
			if kind == "backup" {
				mustBackup(t, src, path)
			} else if err := os.WriteFile(path, walFile, 0o600); err != nil {
				t.Fatal(err)
			}
			// Readable by all: TestOpenReaderAsAnotherUser reads them as
			// another user.
			mode := os.FileMode(0o644)
			if strings.Contains(ro, "file 0444") {
				mode = 0o444
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(ro, "directory 0555") {
				if err := os.Chmod(dir, 0o555); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.Chmod(dir, 0o755) })
			}
			out = append(out, readOnlyCopy{name: kind + ", " + ro, path: path, requests: rs, events: 6})
		}
	}
	return out
}

// readCopy reads c with OpenReader as the audit command does and checks
// that it holds what it should, refuses writes, and that nothing was
// written: the file is unchanged, and nothing was created beside it.
func readCopy(t *testing.T, c readOnlyCopy) {
	t.Helper()
	dir := filepath.Dir(c.path)
	sum := fileSum(t, c.path)
	s, err := sqlite.OpenReader(c.path)
	if err != nil {
		t.Fatalf("OpenReader: %v", err)
	}
	ctx := context.Background()
	if events, err := s.Events(ctx, time.Time{}); err != nil || len(events) != c.events {
		t.Errorf("Events: %d records, %v; want %d", len(events), err, c.events)
	}
	for _, r := range c.requests {
		if _, err := s.Get(ctx, r.ID); err != nil {
			t.Errorf("Get(%s): %v", r.ID, err)
		}
	}
	if err := s.Create(ctx, newRequest()); err == nil {
		t.Error("Create through the reader succeeded")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if got := dirEntries(t, dir); !slices.Equal(got, []string{filepath.Base(c.path)}) {
		t.Errorf("reading the copy left %v in its directory, want the copy alone", got)
	}
	if fileSum(t, c.path) != sum {
		t.Error("reading the copy changed it")
	}
}

// TestOpenReaderOnReadOnlyCopies: the audit command reads a copy made
// read-only (file 0444, directory 0555, or both), whether a backup or the
// file of a WAL store, and creates nothing beside it.
//
// Run as an ordinary user, the permissions hold: SQLite could not create
// the -wal and -shm of a WAL copy in a 0555 directory, so the ordinary
// open would fail, as the control shows. Run as root, permission bits do
// not stop SQLite, and what this proves is that OpenReader reads such a
// copy without writing (with immutable=1: had it opened the WAL copy the
// ordinary way, SQLite would have created its -wal and -shm, which the
// check of the directory would see); TestOpenReaderAsAnotherUser then
// reads the same copies as an unprivileged user.
func TestOpenReaderOnReadOnlyCopies(t *testing.T) {
	root := os.Geteuid() == 0
	for _, c := range makeCopies(t, t.TempDir()) {
		t.Run(c.name, func(t *testing.T) {
			readCopy(t, c)
			if root || !strings.HasPrefix(c.name, "wal file") || !strings.Contains(c.name, "directory 0555") {
				return
			}
			// The control: opened the ordinary way, it cannot be read.
			db, err := sql.Open("sqlite", "file:"+c.path+"?mode=ro")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var n int
			if err := db.QueryRow("SELECT count(*) FROM audit_events").Scan(&n); err == nil {
				t.Errorf("mode=ro read the WAL copy in a 0555 directory (%d records): the test proves nothing here", n)
			} else {
				t.Logf("control, mode=ro alone: %v", err)
			}
		})
	}
}

// TestOpenReaderWhereItMayNotWrite: a WAL store, alone, in a directory the
// reader may not write although it has write permission bits (another
// user's, or a read-only mount): SQLite cannot create the -wal and -shm,
// and OpenReader reads it with immutable=1 instead. An ordinary user can
// make one (mode 0575: others may write, the owner may not); root may write
// anywhere (TestOpenReaderAsAnotherUser covers that case for root).
func TestOpenReaderWhereItMayNotWrite(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may write any directory; TestOpenReaderAsAnotherUser reads such a store as another user")
	}
	copies := makeCopies(t, t.TempDir())
	i := slices.IndexFunc(copies, func(c readOnlyCopy) bool { return c.name == "wal file, directory 0555" })
	c := copies[i]
	if err := os.Chmod(filepath.Dir(c.path), 0o575); err != nil {
		t.Fatal(err)
	}
	readCopy(t, c)
}

// TestHelperReadAs is not a test: TestOpenReaderAsAnotherUser runs the
// test binary as an unprivileged user to read the stores named by
// SQLITE_TEST_READ (separated by newlines) with OpenReader, and, as a
// control, with a plain mode=ro connection; it prints one line per store.
func TestHelperReadAs(t *testing.T) {
	paths := os.Getenv("SQLITE_TEST_READ")
	if paths == "" {
		t.Skip("only run as a child process")
	}
	ctx := context.Background()
	for _, path := range strings.Split(paths, "\n") {
		reader, plain := "ok", "ok"
		if s, err := sqlite.OpenReader(path); err != nil {
			reader = "error: " + err.Error()
		} else {
			events, err := s.Events(ctx, time.Time{})
			if err != nil {
				reader = "error: " + err.Error()
			} else {
				reader = fmt.Sprintf("%d records", len(events))
			}
			s.Close()
		}
		if db, err := sql.Open("sqlite", "file:"+path+"?mode=ro"); err != nil {
			plain = "error: " + err.Error()
		} else {
			var n int
			if err := db.QueryRow("SELECT count(*) FROM audit_events").Scan(&n); err != nil {
				plain = "error: " + err.Error()
			} else {
				plain = fmt.Sprintf("%d records", n)
			}
			db.Close()
		}
		fmt.Printf("read\t%s\t%s\t%s\n", path, reader, plain)
	}
	os.Exit(0)
}

// TestOpenReaderAsAnotherUser, run as root only: the copies of
// TestOpenReaderOnReadOnlyCopies, plus a WAL store in a root-owned 0755
// directory (write bits set, but not for the reader), read by the test
// binary run as user nobody (65534), for whom the permissions hold. The
// plain mode=ro control must fail on the WAL copies in directories nobody
// may write, proving the permissions bit; OpenReader must read them all,
// creating nothing. Skipped when not root (TestOpenReaderOnReadOnlyCopies
// and TestOpenReaderWhereItMayNotWrite then ran under real permissions),
// and when this root may not switch users (a container without
// CAP_SETUID).
func TestOpenReaderAsAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the other tests ran under real permissions")
	}
	// Everything the child needs must be reachable by nobody: a 0755
	// directory under the system's temporary directory, not t.TempDir
	// (whose parent is 0700).
	base, err := os.MkdirTemp("", "sqlite-as-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		filepath.Walk(base, func(p string, fi fs.FileInfo, err error) error {
			if err == nil && fi.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
		os.RemoveAll(base)
	})
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "sqlite.test")
	if err := copyFile(self, bin, 0o755); err != nil {
		t.Fatal(err)
	}

	copies := makeCopies(t, base)
	// A WAL store in a directory with write bits that nobody may not write.
	i := slices.IndexFunc(copies, func(c readOnlyCopy) bool { return c.name == "wal file, directory 0555" })
	notHis := copies[i]
	notHisDir, err := os.MkdirTemp(base, "copy")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(notHisDir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(notHis.path)
	if err != nil {
		t.Fatal(err)
	}
	notHis.name, notHis.path = "wal file, 0644 in root's directory 0755", filepath.Join(notHisDir, "approvals.db")
	if err := os.WriteFile(notHis.path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	copies = append(copies, notHis)

	var paths []string
	sums := map[string][32]byte{}
	for _, c := range copies {
		paths = append(paths, c.path)
		sums[c.path] = fileSum(t, c.path)
	}
	cmd := exec.Command(bin, "-test.run=^TestHelperReadAs$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SQLITE_TEST_READ="+strings.Join(paths, "\n"), "GOCOVERDIR=")
	cmd.Dir = base
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Skipf("cannot run the test binary as nobody: %v", err)
		}
		t.Fatalf("the child run as nobody failed: %v\n%s", err, out)
	}
	results := map[string][2]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) == 4 && f[0] == "read" {
			results[f[1]] = [2]string{f[2], f[3]}
		}
	}
	for _, c := range copies {
		t.Run(c.name, func(t *testing.T) {
			got, ok := results[c.path]
			if !ok {
				t.Fatalf("the child did not read it; its output:\n%s", out)
			}
			t.Logf("as nobody: OpenReader: %s; plain mode=ro: %s", got[0], got[1])
			if want := fmt.Sprintf("%d records", c.events); got[0] != want {
				t.Errorf("OpenReader as nobody: %s, want %s", got[0], want)
			}
			// Every directory here is root's: nobody may create anything in
			// it, so the WAL copies cannot be read the plain way.
			if strings.HasPrefix(c.name, "wal file") && !strings.HasPrefix(got[1], "error") {
				t.Errorf("the plain mode=ro control read it as nobody (%s): the permissions did not bite", got[1])
			}
			if got := dirEntries(t, filepath.Dir(c.path)); !slices.Equal(got, []string{"approvals.db"}) {
				t.Errorf("reading it as nobody left %v in its directory", got)
			}
			if fileSum(t, c.path) != sums[c.path] {
				t.Error("reading it as nobody changed it")
			}
		})
	}
}

// copyFile copies the file src to a new file dst of mode perm.
func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, perm)
}

// TestBackupOfAReadOnlyCopy: a read-only copy can itself be backed up,
// without writing anything beside it.
func TestBackupOfAReadOnlyCopy(t *testing.T) {
	for _, c := range makeCopies(t, t.TempDir()) {
		t.Run(c.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "again.db")
			info := mustBackup(t, c.path, dst)
			if info.Events != c.events || info.Requests != len(c.requests) {
				t.Errorf("Backup reported %+v, want %d records, %d requests", info, c.events, len(c.requests))
			}
			if got := dirEntries(t, filepath.Dir(c.path)); !slices.Equal(got, []string{"approvals.db"}) {
				t.Errorf("backing it up left %v beside it", got)
			}
			readCopy(t, readOnlyCopy{name: "again", path: dst, requests: c.requests, events: c.events})
		})
	}
}
