// Package leader makes one of several bot processes on one PostgreSQL
// database the one that serves: it holds a session advisory lock on a
// connection of its own. The others wait as standbys and take over within
// seconds when the holder dies or loses its database.
//
// An advisory lock belongs to the connection that took it, so leadership is
// exactly "this connection is alive": the holder checks it every second and
// gives up serving the moment the check fails (or takes longer than its
// timeout: the connection's deadline then ends it, see pqconn.Connector),
// and the server ends a dead holder's session (and frees the lock) within
// seconds because the connection asks for short TCP keepalives. The
// connection is one *sql.Conn, of a database/sql pool of its own that
// holds no other: every statement of the lease runs in that one session.
package leader

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/reprovision-bot/reprovision-bot/approvals/postgres/internal/pqconn"
)

// Key is the advisory lock of reprovision-bot's leadership (any int64 no
// other application on the database uses; "reprov" in ASCII).
const Key int64 = 0x7265_7072_6f76

// Timing of the lease. A standby asks every pollEvery; the holder checks
// its connection every checkEvery, each check bounded by checkTimeout; the
// server drops a silent peer after keepaliveIdle + keepaliveCount ×
// keepaliveInterval seconds. Together: a dead holder is replaced well within
// 10 s.
const (
	pollEvery         = time.Second
	checkEvery        = time.Second
	checkTimeout      = 2 * time.Second
	keepaliveIdle     = 2
	keepaliveInterval = 1
	keepaliveCount    = 3
)

// Lease is leadership held.
type Lease struct {
	db   *sql.DB   // holds conn only
	conn *sql.Conn // the session that holds the lock
	lost chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
	log  *slog.Logger
}

// Acquire returns once this process holds leadership of the database at
// url, or with ctx's error when ctx ends first. standby is called once when
// another process holds it (this one then waits).
func Acquire(ctx context.Context, url string, log *slog.Logger, standby func()) (*Lease, error) {
	told := false
	for {
		db, conn, err := connect(ctx, url)
		if err == nil {
			var got bool
			err = conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, Key).Scan(&got)
			if err == nil && got {
				l := &Lease{db: db, conn: conn, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}), log: log}
				go l.watch()
				log.Info("leadership acquired: serving")
				return l, nil
			}
			conn.Close() // back to db, whose Close ends the session (and a lock it took after all, its answer lost)
			db.Close()
			if err == nil && !told {
				told = true
				log.Info("another process serves this database: standing by")
				if standby != nil {
					standby()
				}
			}
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("leadership: database not reachable; trying again", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// connect opens the dedicated connection, asking the server to notice a
// dead peer within seconds (its default is two hours of silence): a pool
// of one connection, which it takes out of the pool for good.
func connect(ctx context.Context, url string) (*sql.DB, *sql.Conn, error) {
	settings, err := pqconn.Parse(url)
	if err != nil {
		return nil, nil, fmt.Errorf("leadership: the database URL: %w", err) // never the password
	}
	settings.Params["application_name"] = "reprovision-bot leader"
	settings.Params["tcp_keepalives_idle"] = fmt.Sprint(keepaliveIdle)
	settings.Params["tcp_keepalives_interval"] = fmt.Sprint(keepaliveInterval)
	settings.Params["tcp_keepalives_count"] = fmt.Sprint(keepaliveCount)
	settings.MaxConns = 1
	settings.MaxConnLifetime, settings.MaxConnIdleTime = 0, 0 // never recycled: it holds the lock
	db, _, err := pqconn.Open(settings)
	if err != nil {
		return nil, nil, fmt.Errorf("leadership: the database URL: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, checkTimeout+time.Second)
	defer cancel()
	conn, err := db.Conn(cctx)
	if err == nil {
		// db.Conn may hand out a connection without a round trip: make
		// sure this one is alive before taking the lock on it.
		if err = conn.PingContext(cctx); err != nil {
			conn.Close()
		}
	}
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, conn, nil
}

// watch checks the connection every second; the first failure ends the
// lease (Lost is closed).
func (l *Lease) watch() {
	defer close(l.done)
	tick := time.NewTicker(checkEvery)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
		var held bool
		// The lock is still ours if this session holds it (a server
		// restart or a killed session would have freed it).
		err := l.conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
			AND granted AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid)`, Key).Scan(&held)
		cancel()
		if err != nil || !held {
			l.log.Error("leadership lost: stopping at once", "err", err, "held", held)
			close(l.lost)
			return
		}
	}
}

// Lost is closed when leadership is gone: the holder must stop serving at
// once (a standby may already be taking over).
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release gives leadership up (at a clean stop), so a standby takes over at
// once rather than after the connection is noticed gone.
func (l *Lease) Release() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
		defer cancel()
		_, _ = l.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, Key)
		_ = l.conn.Close()
		_ = l.db.Close()
	})
}
