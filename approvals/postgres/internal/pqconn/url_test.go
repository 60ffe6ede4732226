package pqconn

import (
	"maps"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// URLs read as libpq (and pgx) read them.
func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want map[string]string
	}{
		{"postgres://u:p@db.example.com:5433/app?sslmode=verify-full",
			map[string]string{"user": "u", "password": "p", "host": "db.example.com", "port": "5433", "dbname": "app", "sslmode": "verify-full"}},
		{"PostgreSQL://db.example.com/app", map[string]string{"host": "db.example.com", "dbname": "app"}},
		{"postgres://u@h1:5432,h2:5433,h3/app", map[string]string{"user": "u", "host": "h1,h2,h3", "port": "5432,5433,5432", "dbname": "app"}},
		{"postgres://[::1]:5433,[fe80::1]/app", map[string]string{"host": "::1,fe80::1", "port": "5433,5432", "dbname": "app"}},
		{"postgres://%2Fvar%2Frun%2Fpostgresql/app", map[string]string{"host": "/var/run/postgresql", "dbname": "app"}},
		{"postgres://u:p%40ss%3Aw%2Fo+rd@h/d%20b", map[string]string{"user": "u", "password": "p@ss:w/o+rd", "host": "h", "dbname": "d b"}},
		{"postgres://h?database=x&application_name=a%26b", map[string]string{"host": "h", "dbname": "x", "application_name": "a&b"}},
		{"postgres:///app?host=/tmp&port=5499", map[string]string{"host": "/tmp", "port": "5499", "dbname": "app"}},
		{"postgres://h/app?ssl=true", map[string]string{"host": "h", "dbname": "app", "sslmode": "require"}},
		{"postgres://h/app?ssl=true&sslmode=disable", map[string]string{"host": "h", "dbname": "app", "sslmode": "disable"}},
		{"postgres://h/app?sslmode=disable&ssl=true", map[string]string{"host": "h", "dbname": "app", "sslmode": "require"}},
		{"postgres://h/app?", map[string]string{"host": "h", "dbname": "app"}},
		{"postgres://h?sslmode=disable", map[string]string{"host": "h", "sslmode": "disable"}},
	} {
		got, err := parseURL(tc.url)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if !maps.Equal(got, tc.want) {
			t.Errorf("%s:\n got %v\nwant %v", tc.url, got, tc.want)
		}
	}
	for _, bad := range []string{"mysql://h/db", "host=h dbname=x", "postgres://[::1/db", "postgres://h/db?novalue", "postgres://h/db%zz", "postgres://h/db\x00"} {
		if got, err := parseURL(bad); err == nil {
			t.Errorf("%q read as %v, want an error", bad, got)
		}
	}
}

// The errors never show the password.
func TestParseHidesThePassword(t *testing.T) {
	const secret = "s3cret-Pa55"
	for _, u := range []string{
		"postgres://u:" + secret + "%zz@h/db",
		"postgres://u:" + secret + "@h/db?sslmode=bogus",
		"postgres://u:" + secret + "@h/db?pool_max_conns=many",
		"postgres://u:" + secret + "@h/db?sslpassword=x",
		"postgres://u@h/db?password=" + secret + "%zz",
		"postgres://u:" + secret + "@h:notaport/db",
	} {
		s, err := Parse(u)
		if err == nil {
			_, err = s.Config()
		}
		if err == nil {
			t.Errorf("%s: no error", u)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

// pgxpool's parameters become database/sql's pool settings, pgx's other
// own parameters are ignored or refused, and the rest go to lib/pq.
func TestParsePoolAndPgxParameters(t *testing.T) {
	unsetenv(t, "PGSSLMODE")
	s, err := Parse("postgres://u@h/db")
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxConns != max(4, runtime.NumCPU()) || s.MaxConnLifetime != time.Hour || s.MaxConnIdleTime != 30*time.Minute {
		t.Errorf("defaults: %d conns, lifetime %v, idle %v; want pgxpool's", s.MaxConns, s.MaxConnLifetime, s.MaxConnIdleTime)
	}
	s, err = Parse("postgres://u@h/db?pool_max_conns=12&pool_max_conn_lifetime=90m&pool_max_conn_idle_time=1m&pool_min_conns=2" +
		"&pool_health_check_period=5s&statement_cache_capacity=0&default_query_exec_mode=simple_protocol&search_path=app")
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxConns != 12 || s.MaxConnLifetime != 90*time.Minute || s.MaxConnIdleTime != time.Minute {
		t.Errorf("pool: %d conns, lifetime %v, idle %v", s.MaxConns, s.MaxConnLifetime, s.MaxConnIdleTime)
	}
	want := map[string]string{"user": "u", "host": "h", "dbname": "db", "search_path": "app", "sslmode": "prefer"}
	if !maps.Equal(s.Params, want) {
		t.Errorf("params %v, want %v", s.Params, want)
	}
	cfg, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Runtime["search_path"] != "app" || len(cfg.Runtime) != 1 {
		t.Errorf("lib/pq's run-time settings %v, want search_path only", cfg.Runtime)
	}
	for _, bad := range []string{"pool_max_conns=0", "pool_max_conns=x", "pool_max_conn_lifetime=1", "pool_max_conn_idle_time=x",
		"sslpassword=x", "sslcertmode=allow", "servicefile=/x", "require_auth=md5", "channel_binding=require"} {
		if _, err := Parse("postgres://u@h/db?" + bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// sslmode is prefer, as pgx and libpq have it, unless the URL or
// $PGSSLMODE says otherwise, or sslrootcert=system asks for verify-full.
func TestParseSSLModeDefault(t *testing.T) {
	for _, tc := range []struct{ env, url, want string }{
		{"", "postgres://h/db", "prefer"},
		{"", "postgres://h/db?sslmode=require", "require"},
		{"", "postgres://h/db?sslmode=disable", "disable"},
		{"disable", "postgres://h/db", "disable"},
		{"", "postgres://h/db?sslrootcert=system", "verify-full"},
	} {
		if tc.env == "" {
			unsetenv(t, "PGSSLMODE")
		} else {
			t.Setenv("PGSSLMODE", tc.env)
		}
		s, err := Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := s.Config()
		if err != nil {
			t.Fatal(err)
		}
		if string(cfg.SSLMode) != tc.want {
			t.Errorf("PGSSLMODE=%q %s: sslmode %q, want %q", tc.env, tc.url, cfg.SSLMode, tc.want)
		}
	}
}

// Values reach lib/pq as they were, whatever quotes, backslashes or
// spaces they hold; the URL's settings win over SetDefault's.
func TestConfigKeepsValues(t *testing.T) {
	unsetenv(t, "PGAPPNAME")
	s, err := Parse(`postgres://us%27er:pa%5C%27ss%20word@h:5433/d%27b?options=-c%20x%3D1`)
	if err != nil {
		t.Fatal(err)
	}
	s.SetDefault("application_name", "reprovision-bot")
	s.SetDefault("options", "ignored")
	cfg, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "us'er" || cfg.Password != `pa\'ss word` || cfg.Database != "d'b" || cfg.Host != "h" || cfg.Port != 5433 ||
		cfg.Options != "-c x=1" || cfg.ApplicationName != "reprovision-bot" {
		t.Errorf("lib/pq read user %q password %q database %q host %q port %d options %q application_name %q",
			cfg.User, cfg.Password, cfg.Database, cfg.Host, cfg.Port, cfg.Options, cfg.ApplicationName)
	}
	if got := Where(cfg); got != `database "d'b" on h:5433` {
		t.Errorf("Where = %s", got)
	}
	t.Setenv("PGAPPNAME", "from-env")
	s, _ = Parse("postgres://h/db")
	s.SetDefault("application_name", "reprovision-bot")
	if cfg, err := s.Config(); err != nil || cfg.ApplicationName != "from-env" {
		t.Errorf("with $PGAPPNAME: application_name %q, %v", cfg.ApplicationName, err)
	}
}

// unsetenv unsets k for the test (lib/pq refuses some set but empty).
func unsetenv(t *testing.T, k string) {
	t.Setenv(k, "") // restored after the test
	os.Unsetenv(k)
}
