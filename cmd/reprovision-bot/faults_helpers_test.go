package main

import (
	"context"
	"database/sql"
	"net/url"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, as the store uses

	"github.com/reprovision-bot/reprovision-bot/approvals/sqlite"
	"github.com/reprovision-bot/reprovision-bot/fakes"
)

// Helpers for the fault tests (e2e_faults_test.go, issue 8).

// waitPOSTArrives waits until Graph has received the reprovision POST (it
// may still be unanswered: give it a Delay to act while it is in flight).
func (h *harness) waitPOSTArrives() fakes.GraphRequest {
	h.t.Helper()
	h.graph.WaitFor(h.t, wait, "the reprovision POST arrives", func() bool { return len(h.reprovisionPOSTs()) > 0 })
	return h.reprovisionPOSTs()[0]
}

// waitPOSTAnswered waits until Graph has answered the (first) reprovision
// POST and returns it.
func (h *harness) waitPOSTAnswered() fakes.GraphRequest {
	h.t.Helper()
	h.graph.WaitFor(h.t, wait, "Graph answers the reprovision POST", func() bool {
		p := h.reprovisionPOSTs()
		return len(p) > 0 && (p[0].Status != 0 || p[0].Canceled)
	})
	return h.reprovisionPOSTs()[0]
}

// callText is what a Web API call carried for people to read: its text and
// blocks, with Slack's <, >, & unescaped.
func callText(c fakes.Call) string {
	return strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(c.Params["text"] + " " + c.Params["blocks"])
}

// isDMTo reports whether a chat.postMessage call went to user's DM (the bot
// addresses a DM by the user ID; the fake maps it to D<user>).
func isDMTo(c fakes.Call, user string) bool {
	ch := c.Params["channel"]
	return c.Method == "chat.postMessage" && (ch == user || ch == fakes.DMChannel(user))
}

// slackCalls are the Web API calls of method ("" for all) that match.
func (h *harness) slackCalls(method string, match func(fakes.Call) bool) []fakes.Call {
	var out []fakes.Call
	for _, c := range h.slack.Calls(method) {
		if match(c) {
			out = append(out, c)
		}
	}
	return out
}

// dmsContaining are the DMs to user whose text or blocks contain want.
func (h *harness) dmsContaining(user, want string) []string {
	var out []string
	for _, m := range h.dmsTo(user) {
		if strings.Contains(m, want) {
			out = append(out, m)
		}
	}
	return out
}

// undelivered counts the store's outbox entries not delivered yet, read
// through a read-only store (works while the bot serves the store).
func (h *harness) undelivered() int {
	h.t.Helper()
	s, err := sqlite.OpenReader(h.env["REPROVISION_DB"])
	if err != nil {
		h.t.Fatalf("open the store read-only: %v", err)
	}
	defer s.Close()
	n, err := s.Undelivered(context.Background())
	if err != nil {
		h.t.Fatalf("count undelivered notices: %v", err)
	}
	return n
}

// waitOutboxEmpty waits until every notice in the store's outbox has been
// delivered (or dropped).
func (h *harness) waitOutboxEmpty() {
	h.t.Helper()
	h.slack.WaitFor(h.t, wait, "the outbox is empty", func() bool { return h.undelivered() == 0 })
}

// storeLock is a write lock on the bot's SQLite file held from outside, as
// a sqlite3 shell or a backup tool would: BEGIN IMMEDIATE on a connection
// of its own.
type storeLock struct {
	t    testing.TB
	db   *sql.DB
	conn *sql.Conn
}

// lockStore takes the write lock on the harness's store (waiting up to 5 s
// for a write of the bot's to end) and holds it until release.
func (h *harness) lockStore() *storeLock {
	h.t.Helper()
	dsn := "file:" + h.env["REPROVISION_DB"] + "?" + url.Values{"_pragma": {"busy_timeout(5000)"}}.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		h.t.Fatalf("open the store from outside: %v", err)
	}
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		h.t.Fatalf("connect to the store from outside: %v", err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		conn.Close()
		db.Close()
		h.t.Fatalf("BEGIN IMMEDIATE from outside: %v", err)
	}
	l := &storeLock{t: h.t, db: db, conn: conn}
	h.t.Cleanup(l.release) // idempotent: a failed test must not leave the lock held
	return l
}

// release ends the outside transaction (nothing was written) and closes
// the connection.
func (l *storeLock) release() {
	if l.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		l.t.Errorf("ROLLBACK of the outside lock: %v", err)
	}
	l.conn.Close()
	l.db.Close()
	l.conn, l.db = nil, nil
}
