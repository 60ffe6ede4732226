package pgtest

import (
	"net/url"
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

func TestMain(m *testing.M) { Main(m) }

// Reused hands a database to the next test once its reset has run; one
// whose reset fails is dropped, and the next test gets a new one.
func TestReusedAfterReset(t *testing.T) {
	const reset = `DELETE FROM marks`
	exec := func(t *testing.T, url, stmt string) {
		t.Helper()
		db, err := Open(url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	query := func(t *testing.T, url, stmt string) (n int) {
		t.Helper()
		db, err := Open(url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.QueryRow(stmt).Scan(&n); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
		return n
	}
	var first string
	t.Run("first", func(t *testing.T) {
		first = Reused(t, reset)
		exec(t, first, `CREATE TABLE marks (n int); INSERT INTO marks VALUES (1)`)
	})
	t.Run("second", func(t *testing.T) {
		url := Reused(t, reset)
		if url != first {
			t.Errorf("got %s, want the database the first test gave back", url)
		}
		if n := query(t, url, `SELECT count(*) FROM marks`); n != 0 {
			t.Errorf("%d rows the first test left, want the reset to have deleted them", n)
		}
		exec(t, url, `DROP TABLE marks`) // its reset fails
	})
	t.Run("third", func(t *testing.T) {
		if url := Reused(t, reset); url == first {
			t.Errorf("a database whose reset failed was handed out again")
		}
		u, err := url.Parse(first)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(u.Path, "/")
		if n := query(t, get(t).admin, `SELECT count(*) FROM pg_database WHERE datname = '`+name+`'`); n != 0 {
			t.Errorf("database %s, whose reset failed, still exists", name)
		}
	})
}
