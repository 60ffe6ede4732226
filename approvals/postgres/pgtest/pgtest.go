// Package pgtest gives tests a fresh, empty PostgreSQL database each, with
// no container and no service set up beforehand.
//
// The server is the one $REPROVISION_TEST_POSTGRES names (a postgres://
// URL whose role may CREATE DATABASE, and CREATE ROLE for NewRole), when
// that is set. Otherwise pgtest starts a throwaway cluster, once per test
// binary, from the PostgreSQL binaries of Debian's packages
// (/usr/lib/postgresql/*/bin, the newest; else initdb and postgres on
// PATH): initdb in a temporary directory, postgres listening on 127.0.0.1
// on a free port and on a Unix socket in that directory, with a random
// password, and without fsync (a test cluster: nothing in it must survive
// a crash). PostgreSQL refuses to run as root, so when the tests run as
// root the cluster runs as the postgres user. It is stopped, and its
// directory removed, when the test binary ends: a package that uses URL
// has
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// (and should the binary be killed, the kernel stops the cluster with it,
// and the next run removes what it left).
//
// With neither the variable nor the binaries, URL fails the test, saying
// what to install: the tests are not skipped.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/internal/pqconn"
)

// EnvURL names the variable that points the tests at a server of one's
// own.
const EnvURL = "REPROVISION_TEST_POSTGRES"

var (
	mainCalled atomic.Bool
	once       sync.Once
	srv        *server
	srvErr     error
)

// server is where the databases are made.
type server struct {
	admin   string   // URL of a role that may create databases
	pool    *sql.DB  // connected as that role
	cluster *cluster // the one pgtest started, or nil

	mu    sync.Mutex
	roles map[string][]string // database → roles NewRole made for it
	// reusable: databases Reused got back, by reset statement; Main drops
	// them (when the tests have ended, every one Reused made and did not
	// drop is here).
	reusable map[string][]string
}

// Main runs the tests (m.Run), then stops the cluster that URL started, if
// any, and exits with the tests' code. Call it from TestMain.
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	if srv != nil {
		srv.dropReusable()
		srv.pool.Close()
		if srv.cluster != nil {
			srv.cluster.stop()
		}
	}
	os.Exit(code)
}

// URL returns the URL of a new, empty database that only this test uses,
// dropped when the test ends (after the test's own cleanups, which should
// close what is connected to it).
func URL(t testing.TB) string {
	t.Helper()
	s := get(t)
	name := s.create(t)
	t.Cleanup(func() { s.drop(t, name) })
	return withDatabase(s.admin, name)
}

// create makes a new, empty database and returns its name.
func (s *server) create(t testing.TB) string {
	t.Helper()
	name := "pgtest_" + randomHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.pool.ExecContext(ctx, `CREATE DATABASE `+pq.QuoteIdentifier(name)); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	return name
}

// Reused returns the URL of a database that only this test uses while it
// runs: one an earlier test of this binary gave back, or a new, empty one.
// When the test ends (after its own cleanups, which should close what is
// connected to it) reset runs on it, as the role of EnvURL's URL (the
// owner of what the test made), and the database goes back for the next
// test that asks with the same reset; if reset fails it is dropped. Main
// drops them all. reset must leave the database as a later test may find
// it: for a store, its schema made and no rows. For suites of many tests
// whose databases differ only in rows: CREATE DATABASE costs the server
// ~170 ms of CPU (it copies template1's catalogs), a reset a few.
func Reused(t testing.TB, reset string) string {
	t.Helper()
	s := get(t)
	s.mu.Lock()
	var name string
	if free := s.reusable[reset]; len(free) > 0 {
		name, s.reusable[reset] = free[len(free)-1], free[:len(free)-1]
	}
	s.mu.Unlock()
	if name == "" {
		name = s.create(t)
	}
	url := withDatabase(s.admin, name)
	t.Cleanup(func() {
		if err := s.reset(url, reset); err != nil {
			t.Logf("pgtest: reset of database %s failed, dropped instead: %v", name, err)
			s.drop(t, name)
			return
		}
		s.mu.Lock()
		if s.reusable == nil {
			s.reusable = map[string][]string{}
		}
		s.reusable[reset] = append(s.reusable[reset], name)
		s.mu.Unlock()
	})
	return url
}

// reset runs stmt on the database at url, on a connection of its own that
// waits for no lock longer than 5 s (a session a failed test left behind).
func (s *server) reset(url, stmt string) error {
	db, err := Open(url)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SET lock_timeout = '5s'`); err != nil {
		return err
	}
	_, err = conn.ExecContext(ctx, stmt)
	return err
}

// dropReusable drops the databases Reused got back (at the end of the
// binary, when no test uses them).
func (s *server) dropReusable() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.mu.Lock()
	reusable := s.reusable
	s.reusable = nil
	s.mu.Unlock()
	for _, names := range reusable {
		for _, name := range names {
			if _, err := s.pool.ExecContext(ctx, `DROP DATABASE IF EXISTS `+pq.QuoteIdentifier(name)+` WITH (FORCE)`); err != nil {
				fmt.Fprintf(os.Stderr, "pgtest: drop database %s: %v\n", name, err)
			}
		}
	}
}

// NewRole creates a login role with no privileges at all and returns the
// URL of the database at dbURL (from URL) as that role, for tests of what
// a role may do. The role is dropped after the database.
func NewRole(t testing.TB, dbURL string) (role, roleURL string) {
	t.Helper()
	s := get(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	role, password := "pgtest_role_"+randomHex(6), randomHex(16)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// CREATE ROLE takes no parameters; both are made of hex digits here.
	if _, err := s.pool.ExecContext(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN NOINHERIT PASSWORD '%s'`, role, password)); err != nil {
		t.Fatalf("pgtest: create role (the role of %s needs CREATEROLE): %v", EnvURL, err)
	}
	s.mu.Lock()
	s.roles[db] = append(s.roles[db], role)
	s.mu.Unlock()
	u.User = url.UserPassword(role, password)
	return role, u.String()
}

// drop drops database name, then the roles made for it.
func (s *server) drop(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// FORCE: a test that failed half way may have left a connection. A
	// role that is not a superuser may end only its own roles' sessions,
	// and those of NewRole's roles may still be closing: then DROP waits
	// for them (up to 5 s a try).
	drop := `DROP DATABASE IF EXISTS ` + pq.QuoteIdentifier(name)
	_, err := s.pool.ExecContext(ctx, drop+` WITH (FORCE)`)
	for try := 0; try < 5 && (errorCode(err) == "42501" || errorCode(err) == "55006"); try++ {
		_, err = s.pool.ExecContext(ctx, drop)
	}
	if err != nil {
		t.Errorf("pgtest: drop database %s: %v", name, err)
		return
	}
	s.mu.Lock()
	roles := s.roles[name]
	delete(s.roles, name)
	s.mu.Unlock()
	for _, role := range roles {
		if _, err := s.pool.ExecContext(ctx, `DROP ROLE IF EXISTS `+pq.QuoteIdentifier(role)); err != nil {
			t.Errorf("pgtest: drop role %s: %v", role, err)
		}
	}
}

// errorCode is the SQLSTATE of err, or "".
func errorCode(err error) string {
	var pe *pq.Error
	if errors.As(err, &pe) {
		return string(pe.Code)
	}
	return ""
}

// Open returns a pool of connections to the database at url, read as the
// store reads its URL (approvals/postgres.Open), for tests that query a
// database beside the store. Close it.
func Open(url string) (*sql.DB, error) {
	settings, err := pqconn.Parse(url)
	if err != nil {
		return nil, err
	}
	db, _, err := pqconn.Open(settings)
	return db, err
}

// get returns the server, finding or starting it on first use.
func get(t testing.TB) *server {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("pgtest: the package's TestMain must call pgtest.Main(m), which stops the test cluster at the end")
	}
	once.Do(func() { srv, srvErr = start() })
	if srvErr != nil {
		t.Fatal(srvErr)
	}
	return srv
}

func start() (*server, error) {
	s := &server{roles: map[string][]string{}}
	if admin := os.Getenv(EnvURL); admin != "" {
		if _, err := url.Parse(admin); err != nil || !strings.Contains(admin, "://") {
			return nil, fmt.Errorf("pgtest: %s must be a postgres:// URL", EnvURL)
		}
		s.admin = admin
	} else {
		c, err := startCluster()
		if err != nil {
			return nil, err
		}
		s.cluster, s.admin = c, c.url
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := Open(s.admin)
	if err == nil {
		if err = pool.PingContext(ctx); err != nil {
			pool.Close()
		}
	}
	if err != nil {
		if s.cluster != nil {
			s.cluster.stop()
		}
		return nil, fmt.Errorf("pgtest: connect to the test server: %w", err)
	}
	s.pool = pool
	return s, nil
}

// withDatabase returns admin with its database replaced by name.
func withDatabase(admin, name string) string {
	u, _ := url.Parse(admin) // parsed in start
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// cluster is a PostgreSQL cluster pgtest started.
type cluster struct {
	dir  string // temporary; holds data/, the socket, the log
	url  string // superuser, over TCP on 127.0.0.1
	proc *os.Process
	exit chan struct{} // closed when postgres has exited
}

const installHint = "pgtest: no PostgreSQL server binaries (initdb, postgres) found in /usr/lib/postgresql/*/bin or on PATH, and " +
	EnvURL + " is not set. Install them (Debian: apt-get install postgresql), or set " + EnvURL +
	" to a postgres:// URL whose role may CREATE DATABASE (and CREATE ROLE): .ci/postgres prints one"

// binDir finds the directory holding initdb and postgres: the newest
// version of Debian's layout, else PATH.
func binDir() (string, error) { return binDirIn(debianBins) }

// debianBins is where Debian's packages put each version's binaries.
const debianBins = "/usr/lib/postgresql/*/bin"

func binDirIn(pattern string) (string, error) {
	dirs, _ := filepath.Glob(pattern)
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if executable(filepath.Join(d, "initdb")) && executable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	if initdb, err := exec.LookPath("initdb"); err == nil {
		d := filepath.Dir(initdb)
		if executable(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errors.New(installHint)
}

// version is the major version in a /usr/lib/postgresql/N/bin path.
func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func executable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// tempPrefix names pgtest's temporary directories; ownerFile in each holds
// the pid of the test binary that made it.
const (
	tempPrefix = "pgtest-"
	ownerFile  = "owner.pid"
)

// startCluster makes and starts a cluster.
func startCluster() (*cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: PostgreSQL refuses to run as root, and there is no postgres user to run it as (%v); set %s instead", err, EnvURL)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	removeStale()
	dir, err := os.MkdirTemp(tempBase(cred != nil), tempPrefix)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c := &cluster{dir: dir, exit: make(chan struct{})}
	fail := func(err error) (*cluster, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fail(fmt.Errorf("pgtest: %w", err))
	}
	password := randomHex(16)
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(password+"\n"), 0o600); err != nil {
		return fail(fmt.Errorf("pgtest: %w", err))
	}
	if cred != nil {
		for _, p := range []string{dir, pwfile} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return fail(fmt.Errorf("pgtest: %w", err))
			}
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "pgtest", "--pwfile", pwfile,
		"--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C", "--no-sync")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("pgtest: %s: %v\n%s", initdb, err, out))
	}
	os.Remove(pwfile)

	var lastErr error
	for range 3 { // the free port may be taken before postgres binds it
		port, err := freePort()
		if err != nil {
			return fail(fmt.Errorf("pgtest: %w", err))
		}
		if lastErr = c.run(bin, data, port, cred); lastErr != nil {
			continue
		}
		c.url = fmt.Sprintf("postgres://pgtest:%s@127.0.0.1:%d/postgres?sslmode=disable", password, port)
		if lastErr = c.waitReady(); lastErr == nil {
			return c, nil
		}
		c.kill()
		if !strings.Contains(c.log(), "could not bind") {
			break
		}
		c.exit = make(chan struct{})
	}
	return fail(fmt.Errorf("pgtest: start PostgreSQL: %v\n%s", lastErr, c.log()))
}

// tempBase is where the cluster's directory goes: the usual temporary
// directory, unless the postgres user could not reach into it.
func tempBase(asPostgres bool) string {
	base := os.TempDir()
	if !asPostgres {
		return base
	}
	for d := base; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if d == filepath.Dir(d) {
			return base
		}
	}
}

// removeStale removes the directories of clusters whose test binary died
// without stopping them (the kernel stopped their postgres: Pdeathsig).
func removeStale() {
	for _, base := range []string{os.TempDir(), "/tmp"} {
		dirs, _ := filepath.Glob(filepath.Join(base, tempPrefix+"*"))
		for _, d := range dirs {
			b, err := os.ReadFile(filepath.Join(d, ownerFile))
			if err != nil {
				continue
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil || alive(pid) {
				continue
			}
			if pm, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid")); err == nil {
				if p, err := strconv.Atoi(strings.SplitN(string(pm), "\n", 2)[0]); err == nil && alive(p) {
					continue // its postgres still runs
				}
			}
			os.RemoveAll(d)
		}
	}
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	if pid <= 0 {
		return true // not a pid to judge by
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run starts postgres. It runs from a goroutine locked to its OS thread
// for the life of the process: the kernel sends Pdeathsig when the thread
// that started the child ends, which must then mean the test binary ended.
func (c *cluster) run(bin, data string, port int, cred *syscall.Credential) error {
	logf, err := os.OpenFile(filepath.Join(c.dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses=127.0.0.1", "-p", strconv.Itoa(port), "-c", "unix_socket_directories="+c.dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=64MB", "-c", "log_min_messages=warning")
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
	started := make(chan error, 1)
	exit := c.exit
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the process
		defer logf.Close()
		if err := cmd.Start(); err != nil {
			started <- err
			close(exit)
			return
		}
		started <- nil
		cmd.Wait()
		close(exit)
	}()
	if err := <-started; err != nil {
		return err
	}
	c.proc = cmd.Process
	return nil
}

// waitReady waits until the server accepts connections.
func (c *cluster) waitReady() error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		db, err := Open(c.url)
		if err == nil {
			err = db.PingContext(ctx)
			db.Close()
		}
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-c.exit:
			return errors.New("postgres exited")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections after 60 s: %w", err)
		}
	}
}

// log returns what postgres wrote.
func (c *cluster) log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "postgres.log"))
	return string(bytes.TrimSpace(b))
}

// stop shuts postgres down and removes the cluster's directory.
func (c *cluster) stop() {
	c.kill()
	os.RemoveAll(c.dir)
}

// kill shuts postgres down: a fast shutdown, or a kill after 10 s.
func (c *cluster) kill() {
	if c.proc == nil {
		return
	}
	c.proc.Signal(syscall.SIGINT)
	select {
	case <-c.exit:
	case <-time.After(10 * time.Second):
		c.proc.Kill()
		<-c.exit
	}
	c.proc = nil
}

// Proxy returns dbURL through a TCP proxy on 127.0.0.1 that forwards to
// its server, and freeze, which makes the proxy stop forwarding, in both
// directions, without closing anything: the client then sees what a cut
// network or a frozen server looks like (no answer, no reset). Everything
// is closed when the test ends.
func Proxy(t testing.TB, dbURL string) (proxyURL string, freeze func()) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	target := u.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	frozen := make(chan struct{})
	ended := make(chan struct{})
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-frozen:
				<-ended // hold what was read: nothing more goes through
				return
			default:
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				dst.Close()
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			track(c)
			track(s)
			go pipe(s, c)
			go pipe(c, s)
		}
	}()
	var once sync.Once
	t.Cleanup(func() {
		ln.Close()
		once.Do(func() { close(frozen) })
		close(ended)
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	u.Host = ln.Addr().String()
	return u.String(), func() { once.Do(func() { close(frozen) }) }
}
