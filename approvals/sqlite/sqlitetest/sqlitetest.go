// Package sqlitetest hands tests a fresh SQLite store file without running the
// schema migrations for each one.
//
// sqlite.Open on a new file runs every migration, and each ALTER TABLE makes
// SQLite parse the whole schema again: under -race (which turns on checkptr for
// the transpiled SQLite) that is about 60 ms of CPU per store, paid by hundreds
// of tests. Path writes a copy of one database migrated once per test process,
// byte for byte what sqlite.Open leaves in a new file. Tests of opening, creating
// or migrating a file keep calling sqlite.Open on their own paths.
package sqlitetest

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
)

var (
	once     sync.Once
	template []byte
	errMake  error
)

// Path returns the path of a new database file in t.TempDir(), already at the
// current schema and empty, as sqlite.Open would leave it.
func Path(t testing.TB) string {
	t.Helper()
	once.Do(func() { template, errMake = migrated() })
	if errMake != nil {
		t.Fatalf("sqlitetest: a migrated database: %v", errMake)
	}
	path := filepath.Join(t.TempDir(), "reprovision.db")
	if err := os.WriteFile(path, template, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// migrated opens a new file with sqlite.Open (which migrates it), closes it
// (which checkpoints the write-ahead log into the file) and returns its bytes.
func migrated() ([]byte, error) {
	dir, err := os.MkdirTemp("", "sqlitetest-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "template.db")
	s, err := sqlite.Open(path)
	if err != nil {
		return nil, err
	}
	if err := s.Close(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		return nil, os.ErrExist // a log left behind: the file alone would not be the database
	}
	return os.ReadFile(path)
}
