package postgres

import (
	"fmt"

	"github.com/lib/pq"
)

// Grants returns the SQL that gives role what the bot needs, and no more,
// on the schema this version of the store makes (tables in the public
// schema; if the owner put them elsewhere with search_path, replace
// "public"). Run it as the schema's owner after Open has migrated.
//
// Two roles keep the audit trail out of the bot's reach: an owner, who owns
// the database (or the schema) and whose URL Open is given once to create
// or migrate the schema (the first start, and each upgrade that brings a
// migration), and the bot's role, which runs the bot with only these
// privileges. With them the bot can read and append the audit trail but
// not change, delete or truncate it (no privilege, on top of the trigger
// that refuses those to everyone, the owner included), nor alter or drop
// the trigger or any table (that takes the owner). For example, as an
// administrator:
//
//	CREATE ROLE reprovision_owner LOGIN PASSWORD '…';
//	CREATE ROLE reprovision_bot LOGIN PASSWORD '…';
//	CREATE DATABASE reprovision OWNER reprovision_owner;
//
// then start the bot once with
// REPROVISION_DB=postgres://reprovision_owner:…@host/reprovision (or open
// the store with that URL), run Grants("reprovision_bot") as
// reprovision_owner, and run the bot with
// REPROVISION_DB=postgres://reprovision_bot:…@host/reprovision. A bot
// whose role cannot migrate fails at start, saying so, when the schema is
// older than the program. (The owner may run the bot itself: simpler, but
// then the bot's role could drop the trigger.)
//
// Back the database up with pg_dump (as the owner, or a role that may read
// every table), like any PostgreSQL database.
func Grants(role string) string {
	r := pq.QuoteIdentifier(role)
	return fmt.Sprintf(`GRANT USAGE ON SCHEMA public TO %[1]s;
GRANT SELECT ON schema_version TO %[1]s;
GRANT SELECT, INSERT, UPDATE ON requests TO %[1]s;
GRANT SELECT, INSERT, DELETE ON cloud_pc_holds TO %[1]s;
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO %[1]s;
GRANT SELECT, INSERT ON audit_events TO %[1]s;
`, r)
}
