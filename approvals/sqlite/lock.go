package sqlite

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrInUse is wrapped by the error Open returns when the store is already
// being served, by another process or by another Store in this process.
var ErrInUse = errors.New("store is in use")

// InUseError is the error Open returns when another process, or another
// Store in this process, holds the store's lock. errors.Is(err, ErrInUse)
// reports it.
type InUseError struct {
	Path     string // the database file
	LockPath string // the lock file, Path + ".lock"
	// PID and Host identify the holder as it recorded itself in the lock
	// file: 0 and "" when unknown (not yet recorded, or unreadable).
	PID  int
	Host string
	// ThisProcess: the holder is another Store in this process, not closed.
	ThisProcess bool
}

func (e *InUseError) Error() string {
	const rule = "only one process may serve a store at a time"
	if e.ThisProcess {
		return fmt.Sprintf("store %s is in use: this process (pid %d) already has it open; %s", e.Path, os.Getpid(), rule)
	}
	holder := "another process"
	switch {
	case e.PID > 0 && e.Host != "":
		holder = fmt.Sprintf("another process (pid %d on host %s)", e.PID, e.Host)
	case e.PID > 0:
		holder = fmt.Sprintf("another process (pid %d)", e.PID)
	}
	return fmt.Sprintf("store %s is in use: %s is serving it (it holds %s); %s", e.Path, holder, e.LockPath, rule)
}

// Is makes errors.Is(err, ErrInUse) true.
func (e *InUseError) Is(target error) bool { return target == ErrInUse }

// errLocked is what the platform's lockFile returns when another open file
// holds the lock.
var errLocked = errors.New("locked")

// serving lists, by absolute path, the database files that Stores in this
// process hold the lock of: only to tell "this process" apart in
// InUseError (the lock itself would refuse a second Open anyway, since
// flock locks belong to the open file, not the process).
var (
	servingMu sync.Mutex
	serving   = map[string]bool{}
)

// storeLock is a held lock on a store; release gives it up.
type storeLock struct {
	path string // the database file
	f    *os.File
	once sync.Once
}

// acquire takes the lock of the database file abs, without waiting for
// it. When another process holds it, the error names that process.
func acquire(abs string) (*storeLock, error) {
	l, err := take(abs)
	var e *InUseError
	if errors.As(err, &e) && !e.ThisProcess {
		// The holder writes who it is just after it takes the lock: when
		// two processes start together, a moment's wait names it.
		for try := 1; ; try++ {
			if e.PID, e.Host = readHolder(e.LockPath); e.PID > 0 || try >= holderReadTries {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return l, err
}

// take is acquire without naming the holder.
func take(abs string) (*storeLock, error) {
	servingMu.Lock()
	defer servingMu.Unlock()
	lockPath := abs + ".lock"
	if serving[abs] {
		return nil, &InUseError{Path: abs, LockPath: lockPath, ThisProcess: true}
	}
	f, err := lockFile(lockPath)
	if errors.Is(err, errLocked) {
		return nil, &InUseError{Path: abs, LockPath: lockPath}
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: lock: %w", abs, err)
	}
	// Who holds it, for the error another process gets: best effort, the
	// lock is what counts.
	host, _ := os.Hostname()
	if f.Truncate(0) == nil {
		f.WriteAt([]byte(fmt.Sprintf("%d %s\n", os.Getpid(), host)), 0)
	}
	serving[abs] = true
	return &storeLock{path: abs, f: f}, nil
}

// release gives the lock up; later calls do nothing. Closing the file is
// what releases it; the kernel does the same when the process dies.
func (l *storeLock) release() error {
	var err error
	l.once.Do(func() {
		servingMu.Lock()
		defer servingMu.Unlock()
		l.f.Truncate(0)
		err = l.f.Close()
		delete(serving, l.path)
	})
	return err
}

// readHolder reads the pid and host the holder wrote in the lock file.
func readHolder(lockPath string) (pid int, host string) {
	b, err := os.ReadFile(lockPath)
	if err != nil {
		return 0, ""
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0, ""
	}
	if pid, err = strconv.Atoi(fields[0]); err != nil || pid <= 0 {
		return 0, ""
	}
	if len(fields) > 1 {
		host = fields[1]
	}
	return pid, host
}

// createPrivate creates the file path with mode 0600, whatever the umask,
// unless it exists already (an existing file keeps its mode).
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Chmod(0o600) // the umask may have taken bits away
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
