//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sqlite

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// holderReadTries: the holder writes its pid and host right after taking
// the lock, so an empty file is read again, 10 ms apart, this many times.
const holderReadTries = 10

// lockFile opens (creating, 0600) the lock file at path and takes an
// exclusive flock(2) on it without waiting: errLocked if another open file,
// in this or another process, holds it. flock locks belong to the open file
// and go away when it is closed, by Close or by the kernel when the process
// dies. They are advisory and need a local file system (as SQLite's WAL
// does).
func lockFile(path string) (*os.File, error) {
	if err := createPrivate(path); err != nil {
		return nil, err
	}
	// Not through a symbolic link (the holder's pid is written into the
	// file: a link could aim that at any file), and only a regular file,
	// kept private.
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (it must be a regular file, not a link)", path, err)
	}
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return f, nil
}
