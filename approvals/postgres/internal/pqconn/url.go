// Package pqconn connects to PostgreSQL through github.com/lib/pq and
// database/sql from the postgres:// URLs the bot is given. Those URLs were
// read by pgx (pgxpool) before; this package keeps what they meant:
//
//   - The URL is read as libpq reads it (and pgx did): user and password,
//     a comma-separated list of hosts each with an optional port (an IPv6
//     address in brackets, a Unix socket directory percent-encoded), the
//     database, and query parameters, each given once ("ssl=true" meaning
//     sslmode=require). It is handed to lib/pq as a keyword/value string.
//   - pgxpool's pool_max_conns, pool_max_conn_lifetime and
//     pool_max_conn_idle_time become database/sql's pool settings, with
//     pgxpool's defaults (max(4, CPUs) connections, recycled after an hour,
//     closed after 30 minutes idle). pgx's other pool and statement cache
//     knobs (Ignored) have no database/sql counterpart: they are accepted
//     and have no effect. Parameters lib/pq cannot honour (Refused) are
//     refused, where lib/pq would send them to the server as settings.
//   - sslmode defaults to prefer, as in pgx and libpq (lib/pq's own default
//     is require), unless $PGSSLMODE sets it or sslrootcert=system asks for
//     verify-full.
//   - With no host in the URL nor $PGHOST, the host is pgx's: the first
//     of /var/run/postgresql, /private/tmp and /tmp that exists (a Unix
//     socket directory), else localhost.
//
// Connector wraps lib/pq's so that a context's end is honoured as pgx did:
// at once, even when the server does not answer (see Connector).
package pqconn

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
)

// Settings is a URL read for lib/pq and database/sql.
type Settings struct {
	// Params are the connection parameters for lib/pq, the password
	// included, pgx's own taken out.
	Params map[string]string
	// The pool: database/sql's SetMaxOpenConns (and SetMaxIdleConns),
	// SetConnMaxLifetime and SetConnMaxIdleTime.
	MaxConns        int
	MaxConnLifetime time.Duration
	MaxConnIdleTime time.Duration
}

// The pool's defaults, pgxpool's.
const (
	defaultMinMaxConns     = 4
	defaultMaxConnLifetime = time.Hour
	defaultMaxConnIdleTime = 30 * time.Minute
)

// Ignored are pgx's URL parameters that database/sql and lib/pq have no
// counterpart for: pgxpool's minimum connections, health checks, jitter
// and ping timeout, and pgx's statement and description caches and query
// mode. They are accepted (a URL written for pgx keeps working) and do
// nothing.
var Ignored = []string{
	"pool_min_conns", "pool_min_idle_conns", "pool_health_check_period",
	"pool_max_conn_lifetime_jitter", "pool_ping_timeout",
	"statement_cache_capacity", "description_cache_capacity", "default_query_exec_mode",
}

// Refused are parameters pgx understood that lib/pq does not: lib/pq would
// send them to the server as settings, which it refuses with a less
// helpful error.
var Refused = []string{"sslpassword", "sslcertmode", "servicefile", "require_auth", "channel_binding"}

// Parse reads url (postgres:// or postgresql://, any case). Errors never
// repeat the password.
func Parse(url string) (*Settings, error) {
	params, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	s := &Settings{
		Params:          params,
		MaxConns:        max(defaultMinMaxConns, runtime.NumCPU()),
		MaxConnLifetime: defaultMaxConnLifetime,
		MaxConnIdleTime: defaultMaxConnIdleTime,
	}
	if v, ok := params["pool_max_conns"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("pool_max_conns %q: want a number of connections, at least 1", v)
		}
		s.MaxConns = n
	}
	for k, d := range map[string]*time.Duration{"pool_max_conn_lifetime": &s.MaxConnLifetime, "pool_max_conn_idle_time": &s.MaxConnIdleTime} {
		if v, ok := params[k]; ok {
			if *d, err = time.ParseDuration(v); err != nil {
				return nil, fmt.Errorf("%s %q: want a duration such as 30m", k, v)
			}
		}
	}
	delete(params, "pool_max_conns")
	delete(params, "pool_max_conn_lifetime")
	delete(params, "pool_max_conn_idle_time")
	for _, k := range Ignored {
		delete(params, k)
	}
	for _, k := range Refused {
		if _, ok := params[k]; ok {
			return nil, fmt.Errorf("the URL parameter %s is not supported (lib/pq)", k)
		}
	}
	if _, ok := params["host"]; !ok && os.Getenv("PGHOST") == "" && os.Getenv("PGHOSTADDR") == "" {
		params["host"] = defaultHost()
	}
	if _, ok := params["sslmode"]; !ok && os.Getenv("PGSSLMODE") == "" && params["sslrootcert"] != "system" {
		params["sslmode"] = "prefer"
	}
	return s, nil
}

// SetDefault sets parameter k to v unless the URL set it (or, for
// application_name, $PGAPPNAME does).
func (s *Settings) SetDefault(k, v string) {
	if _, ok := s.Params[k]; ok {
		return
	}
	if k == "application_name" && os.Getenv("PGAPPNAME") != "" {
		return
	}
	s.Params[k] = v
}

// Config is the parameters as lib/pq reads them, with the environment.
// Its errors name a parameter, never the password.
func (s *Settings) Config() (pq.Config, error) {
	return pq.NewConfig(dsn(s.Params))
}

// Where says which database cfg connects to, for messages: database "name"
// on host:port.
func Where(cfg pq.Config) string {
	return fmt.Sprintf("database %q on %s:%d", cfg.Database, cfg.Host, cfg.Port)
}

// defaultHost is pgx's default host.
func defaultHost() string {
	for _, dir := range []string{"/var/run/postgresql", "/private/tmp", "/tmp"} {
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
	}
	return "localhost"
}

// dsn writes settings as a keyword/value string, each value quoted.
func dsn(settings map[string]string) string {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	quote := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s='%s'", k, quote.Replace(settings[k]))
	}
	return b.String()
}

// parseURL reads a postgres:// URL as libpq does, into keyword settings
// (host and port lists comma-separated; dbname for the database).
func parseURL(s string) (map[string]string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, errors.New("the URL holds a NUL byte")
	}
	scheme, p, ok := strings.Cut(s, "://")
	if !ok || !strings.EqualFold(scheme, "postgres") && !strings.EqualFold(scheme, "postgresql") {
		return nil, errors.New("the database must be a postgres:// or postgresql:// URL")
	}
	settings := map[string]string{}
	// User and password: up to an '@' before any '/'.
	if i := strings.IndexAny(p, "@/"); i >= 0 && p[i] == '@' {
		user, password, hasPassword := strings.Cut(p[:i], ":")
		p = p[i+1:]
		if user != "" {
			v, err := decode(user)
			if err != nil {
				return nil, fmt.Errorf("the URL's user name: %w", err)
			}
			settings["user"] = v
		}
		if hasPassword && password != "" {
			v, err := decode(password)
			if err != nil {
				return nil, errors.New("the URL's password has an invalid %-escape") // not echoed
			}
			settings["password"] = v
		}
	}
	// Hosts, each with an optional port, up to the path or the query.
	end := strings.IndexAny(p, "/?")
	if end < 0 {
		end = len(p)
	}
	netlocs, p := p[:end], p[end:]
	if netlocs != "" {
		var hosts, ports []string
		anyPort := false
		for _, hp := range strings.Split(netlocs, ",") {
			host, port := hp, ""
			if strings.HasPrefix(hp, "[") {
				j := strings.IndexByte(hp, ']')
				if j < 0 {
					return nil, errors.New(`the URL's IPv6 host has no closing "]"`)
				}
				host, port = hp[1:j], hp[j+1:]
				if port != "" && port[0] != ':' {
					return nil, fmt.Errorf("unexpected %q after the IPv6 host [%s] in the URL", port, host)
				}
				port = strings.TrimPrefix(port, ":")
			} else if j := strings.IndexByte(hp, ':'); j >= 0 {
				host, port = hp[:j], hp[j+1:]
			}
			h, err := decode(host)
			if err != nil {
				return nil, fmt.Errorf("the URL's host: %w", err)
			}
			if port, err = decode(port); err != nil {
				return nil, fmt.Errorf("the URL's port: %w", err)
			}
			if port != "" {
				anyPort = true
			}
			hosts, ports = append(hosts, h), append(ports, port)
		}
		if strings.Join(hosts, "") != "" {
			settings["host"] = strings.Join(hosts, ",")
		}
		if anyPort {
			for i, port := range ports {
				if port == "" {
					ports[i] = "5432"
				}
			}
			settings["port"] = strings.Join(ports, ",")
		}
	}
	if rest, ok := strings.CutPrefix(p, "/"); ok {
		db, query, hasQuery := strings.Cut(rest, "?")
		if db != "" {
			v, err := decode(db)
			if err != nil {
				return nil, fmt.Errorf("the URL's database: %w", err)
			}
			settings["dbname"] = v
		}
		p = ""
		if hasQuery {
			p = "?" + query
		}
	}
	if query, ok := strings.CutPrefix(p, "?"); ok && query != "" {
		sslTrue := false
		for _, pair := range strings.Split(query, "&") {
			rawKey, rawValue, ok := strings.Cut(pair, "=")
			if !ok {
				return nil, fmt.Errorf("the URL's query parameter %q has no value", rawKey)
			}
			key, err := decode(rawKey)
			if err != nil {
				return nil, fmt.Errorf("the URL's query parameter %q: %w", rawKey, err)
			}
			value, err := decode(rawValue)
			if err != nil {
				if key == "password" || key == "sslpassword" {
					return nil, fmt.Errorf("the URL's %s has an invalid %%-escape", key)
				}
				return nil, fmt.Errorf("the URL's query parameter %s: %w", key, err)
			}
			switch key {
			case "database":
				key = "dbname"
			case "ssl":
				// JDBC's ssl=true, which pgx read as sslmode=require.
				sslTrue = value == "true"
				if sslTrue {
					continue
				}
			case "sslmode":
				sslTrue = false
			}
			settings[key] = value
		}
		if sslTrue {
			settings["sslmode"] = "require"
		}
	}
	return settings, nil
}

// decode undoes %-escapes (a '+' stays a '+', as in libpq).
func decode(s string) (string, error) {
	v, err := url.PathUnescape(strings.TrimSpace(s))
	if err != nil {
		return "", errors.New("invalid %-escape")
	}
	return v, nil
}
