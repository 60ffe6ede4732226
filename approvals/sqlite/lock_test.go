package sqlite_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals"
	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
)

// TestSecondOpenIsRefused: a second Open of a served file fails at once with
// ErrInUse, naming the file, and touches nothing; once the first is closed
// the file can be served again.
func TestSecondOpenIsRefused(t *testing.T) {
	path := dbPath(t)
	first, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r := mustCreate(t, first, newRequest())
	mustMove(t, first, r.ID, approvals.StateApproved)
	mustMove(t, first, r.ID, approvals.StateExecuting)

	begin := time.Now()
	second, err := sqlite.Open(path)
	took := time.Since(begin)
	if err == nil {
		second.Close()
		t.Fatal("a second Open of a served store succeeded")
	}
	if !errors.Is(err, sqlite.ErrInUse) {
		t.Errorf("second Open: %v, want ErrInUse", err)
	}
	for _, want := range []string{path, "in use", fmt.Sprintf("pid %d", os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if took > time.Second {
		t.Errorf("the refusal took %s, want at once", took)
	}
	if got := mustGet(t, first, r.ID); got.State != approvals.StateExecuting {
		t.Errorf("request is %s after the refused Open, want executing", got.State)
	}

	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	again := openStore(t, path)
	mustGet(t, again, r.ID)
}

// TestHelperServe is not a test: TestOpenRefusedWhileAnotherProcessServes
// runs the test binary as a child process that serves the store named by
// SQLITE_TEST_SERVE, creates a request, prints its reference, and holds the
// store until its stdin closes or it is killed.
func TestHelperServe(t *testing.T) {
	path := os.Getenv("SQLITE_TEST_SERVE")
	if path == "" {
		t.Skip("only run as a child process")
	}
	s, err := sqlite.Open(path)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	r := newRequest()
	if err := s.Create(context.Background(), r); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("serving", r.ID)
	io.Copy(io.Discard, os.Stdin)
	s.Close()
	os.Exit(0)
}

// TestOpenRefusedWhileAnotherProcessServes: while another process serves the
// store, Open fails at once saying so, with its pid; the audit reader still
// reads; and when that process dies without closing (SIGKILL) no stale lock
// remains.
func TestOpenRefusedWhileAnotherProcessServes(t *testing.T) {
	path := dbPath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServe$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SQLITE_TEST_SERVE="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	defer func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "serving ") || strings.HasPrefix(sc.Text(), "error:") {
				lines <- sc.Text()
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	var id string
	select {
	case l := <-lines:
		var ok bool
		if id, ok = strings.CutPrefix(l, "serving "); !ok {
			t.Fatalf("child: %s", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the child process did not start serving within 30 s")
	}

	begin := time.Now()
	s, err := sqlite.Open(path)
	took := time.Since(begin)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded while another process serves the store")
	}
	if !errors.Is(err, sqlite.ErrInUse) {
		t.Errorf("Open: %v, want ErrInUse", err)
	}
	host, _ := os.Hostname()
	for _, want := range []string{path, "another process", fmt.Sprintf("pid %d on host %s", cmd.Process.Pid, host)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if took > time.Second {
		t.Errorf("the refusal took %s, want at once", took)
	}
	t.Logf("refused in %s: %v", took, err)

	// The audit command reads meanwhile.
	mustGet(t, openReader(t, path), id)

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	exited = true
	s = openStore(t, path)
	if got := mustGet(t, s, id); got.State != approvals.StatePending {
		t.Errorf("request is %s, want pending", got.State)
	}
}

// TestFilesArePrivate: the files Open creates, the database, its -wal and
// -shm and the lock file, are 0600 whatever the umask.
func TestFilesArePrivate(t *testing.T) {
	for _, umask := range []int{0, 0o022, 0o277} {
		t.Run(fmt.Sprintf("umask %04o", umask), func(t *testing.T) {
			path := dbPath(t) // its directory made under the usual umask
			old := syscall.Umask(umask)
			defer syscall.Umask(old)
			s := openStore(t, path)
			mustCreate(t, s, newRequest()) // the -wal and -shm exist while it is open
			for _, p := range []string{path, path + "-wal", path + "-shm", path + ".lock"} {
				fi, err := os.Stat(p)
				if err != nil {
					t.Errorf("%s: %v", filepath.Base(p), err)
					continue
				}
				if got := fi.Mode().Perm(); got != 0o600 {
					t.Errorf("%s has mode %04o, want 0600", filepath.Base(p), got)
				}
			}
		})
	}
}

// TestOpenKeepsAnExistingFilesMode: an existing database file keeps the mode
// its owner gave it.
func TestOpenKeepsAnExistingFilesMode(t *testing.T) {
	path := dbPath(t)
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	openStore(t, path)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after Open: %v, %v; want 0640", fi.Mode().Perm(), err)
	}
}

// fileSum is a digest of the file's bytes.
func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestOpenReaderNeverWrites: a reader takes no lock, and every write
// through it fails, leaving the database as it was.
func TestOpenReaderNeverWrites(t *testing.T) {
	path := dbPath(t)
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	r := mustCreate(t, s, newRequest())
	if err := s.Record(context.Background(), approvals.Event{Kind: approvals.EventRequested, RequestID: r.ID}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // checkpoints: everything is in the main file
		t.Fatal(err)
	}
	before := fileSum(t, path)

	reader := openReader(t, path)
	ctx := context.Background()
	if err := reader.Create(ctx, newRequest()); err == nil {
		t.Error("Create through a reader succeeded")
	}
	if _, err := reader.Transition(ctx, r.ID, approvals.StateApproved, nil); err == nil {
		t.Error("Transition through a reader succeeded")
	}
	if err := reader.Record(ctx, approvals.Event{Kind: approvals.EventApproved, RequestID: r.ID}); err == nil {
		t.Error("Record through a reader succeeded")
	}
	if _, err := sqlite.DB(reader).Exec("CREATE TABLE intruder (x)"); err == nil {
		t.Error("CREATE TABLE through a reader succeeded")
	}
	if events, err := reader.Events(ctx, time.Time{}); err != nil || len(events) != 1 {
		t.Errorf("Events through a reader = %v, %v; want the one record", events, err)
	}
	// A reader holds no lock: the bot can start meanwhile.
	served := openStore(t, path)
	if got := mustGet(t, served, r.ID); got.State != approvals.StatePending {
		t.Errorf("request is %s, want pending", got.State)
	}
	if err := served.Close(); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, path) != before {
		t.Error("the database file changed")
	}
}

// TestOpenReaderRefuses: no file, an empty file (no schema: never created by
// the reader) or a newer schema.
func TestOpenReaderRefuses(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	if s, err := sqlite.OpenReader(missing); err == nil || !errors.Is(err, fs.ErrNotExist) {
		if err == nil {
			s.Close()
		}
		t.Errorf("OpenReader of a missing file: %v, want ErrNotExist", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenReader created %s: %v", missing, err)
	}

	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := sqlite.OpenReader(empty); err == nil || !strings.Contains(err.Error(), "no schema") {
		if err == nil {
			s.Close()
		}
		t.Errorf("OpenReader of an empty file: %v, want a no-schema error", err)
	}
	if fi, err := os.Stat(empty); err != nil || fi.Size() != 0 {
		t.Errorf("the empty file was written: %v, %v", fi.Size(), err)
	}

	newer := filepath.Join(dir, "newer.db")
	s, err := sqlite.Open(newer)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := rawDB(t, newer).Exec("PRAGMA user_version = 6"); err != nil {
		t.Fatal(err)
	}
	if s, err := sqlite.OpenReader(newer); err == nil || !strings.Contains(err.Error(), "newer") {
		if err == nil {
			s.Close()
		}
		t.Errorf("OpenReader of a newer schema: %v, want an error saying so", err)
	}
}

// The lock file is never opened through a symbolic link: the holder's pid
// is written into it, and a link could aim that at any file.
func TestLockFileIsNotFollowedThroughALink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "precious.txt")
	if err := os.WriteFile(victim, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "r.db")
	if err := os.Symlink(victim, path+".lock"); err != nil {
		t.Fatal(err)
	}
	if s, err := sqlite.Open(path); err == nil {
		s.Close()
		t.Error("Open took a lock through a symbolic link")
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep me" {
		t.Errorf("the link's target now holds %q (%v)", b, err)
	}
}

// Two processes starting together: the one that lost the lock may read the
// lock file before the winner has written who it is. It waits a moment for
// the name instead of saying only "another process".
func TestInUseNamesAHolderStillWritingItsName(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	written := make(chan error, 1)
	go func() {
		time.Sleep(30 * time.Millisecond)
		_, err := f.WriteAt([]byte("4242 otherhost\n"), 0)
		written <- err
	}()
	_, err = sqlite.Open(path)
	if werr := <-written; werr != nil {
		t.Fatal(werr)
	}
	if !errors.Is(err, sqlite.ErrInUse) || !strings.Contains(fmt.Sprint(err), "another process (pid 4242 on host otherhost) is serving it") {
		t.Errorf("Open while another process takes the lock: %v", err)
	}
}
