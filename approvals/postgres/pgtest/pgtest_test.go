package pgtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Without binaries (and without the variable) the tests fail, saying what
// to install or set: they are not skipped.
func TestNoServerSaysWhatToDo(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := binDirIn(filepath.Join(t.TempDir(), "*", "bin"))
	if err == nil {
		t.Fatal("found binaries in an empty directory")
	}
	for _, want := range []string{"apt-get install postgresql", EnvURL} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not mention %q", err, want)
		}
	}
}

// The newest version's binaries are chosen.
func TestNewestVersion(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"9", "13", "15"} {
		bin := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"initdb", "postgres"} {
			if v == "15" && name == "postgres" {
				continue // incomplete: not chosen
			}
			if err := os.WriteFile(filepath.Join(bin, name), nil, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := binDirIn(filepath.Join(root, "*", "bin"))
	if err != nil || got != filepath.Join(root, "13", "bin") {
		t.Errorf("binDirIn = %q, %v; want version 13's", got, err)
	}
}

func TestWithDatabase(t *testing.T) {
	got := withDatabase("postgres://u:p%40ss@127.0.0.1:5433/admin?sslmode=disable&x=1", "pgtest_ab")
	if want := "postgres://u:p%40ss@127.0.0.1:5433/pgtest_ab?sslmode=disable&x=1"; got != want {
		t.Errorf("withDatabase = %q, want %q", got, want)
	}
}
