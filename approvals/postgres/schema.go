package postgres

// schemaVersion is the version of the schema this code reads and writes,
// kept in the one-row table schema_version. Bump it and add a step to
// migrations when the schema changes.
const schemaVersion = 3

// MigrationLockKey is the transaction-level advisory lock
// (pg_advisory_xact_lock) under which Open migrates the schema, so that
// replicas starting together migrate it once. Advisory locks are per
// database; no other lock of reprovision-bot (its leadership one included)
// may use this key. ("rpmigr" in ASCII.)
const MigrationLockKey int64 = 0x7270_6d69_6772

// migrations[i] takes the schema from version i to i+1. Each runs in the
// migration transaction, with the advisory lock held.
//
// The tables and their columns mirror the SQLite store's (approvals/sqlite),
// with PostgreSQL's types: times are timestamptz (microseconds; NULL for a
// zero time), flags boolean, and lists and nested structs json. References
// and ids collate as "C": byte order, as in SQLite, whatever the
// database's locale, for the ties the listings break by reference. json, not
// jsonb: it keeps the text as written, so a "\u0000" in a Graph status
// detail (which jsonb refuses) is stored like anything else, and nothing
// queries inside these columns. holds_cloud_pc is Request.Open() as of the
// last save, written by the store on every save rather than restated in
// SQL, so that the unique index follows the domain's one definition of
// "open". Likewise cloud_pc_holds (version 3) is Request.HeldCloudPCs() as
// of each request's last save.
var migrations = []string{
	// 0 → 1
	`
CREATE TABLE schema_version (
	version integer NOT NULL CHECK (version >= 0)
);
-- One row only.
CREATE UNIQUE INDEX schema_version_one_row ON schema_version ((true));
INSERT INTO schema_version (version) VALUES (0);

CREATE TABLE requests (
	id                   text COLLATE "C" PRIMARY KEY,
	target               text NOT NULL,
	cloud_pc_id          text COLLATE "C" NOT NULL,
	reason               text NOT NULL,
	requester_id         text COLLATE "C" NOT NULL,
	request_channel_id   text NOT NULL,
	approvers            json NOT NULL CHECK (json_typeof(approvers) = 'array' AND json_array_length(approvers) > 0),
	state                text NOT NULL,
	decided_by           text NOT NULL,
	decision_reason      text NOT NULL,
	signed_in_as         text NOT NULL,
	prompts              json NOT NULL CHECK (json_typeof(prompts) IN ('array', 'null')),
	device               json NOT NULL CHECK (json_typeof(device) IN ('object', 'null')),
	candidates           json NOT NULL CHECK (json_typeof(candidates) IN ('array', 'null')),
	outcome              text NOT NULL,
	graph_request_id     text NOT NULL,
	tracking_since       timestamptz,
	tracking_until       timestamptz,
	tracking_next_check  timestamptz,
	tracking_checks      integer NOT NULL CHECK (tracking_checks >= 0),
	tracking_last_status text NOT NULL,
	tracking_paused      boolean NOT NULL,
	tracking_result      text NOT NULL,
	created_at           timestamptz NOT NULL,
	updated_at           timestamptz NOT NULL,
	expires_at           timestamptz,
	decide_by            timestamptz,
	holds_cloud_pc       boolean NOT NULL
);

-- One open request per Cloud PC, enforced by the database so that two
-- requests racing through Create, on one replica or two (or a target being
-- resolved to a Cloud PC that meanwhile got a request), cannot both get in.
-- Unresolved requests have no Cloud PC yet and hold nothing.
CREATE UNIQUE INDEX requests_one_open_per_cloud_pc
	ON requests (cloud_pc_id) WHERE holds_cloud_pc AND cloud_pc_id <> '';

CREATE INDEX requests_by_state ON requests (state, created_at, id);
CREATE INDEX requests_by_requester ON requests (requester_id, created_at, id);
CREATE INDEX requests_by_update ON requests (updated_at, id);
-- Tracking.Active: the WHERE matches the one in ListTracking.
CREATE INDEX requests_tracking ON requests (tracking_next_check NULLS FIRST, id)
	WHERE tracking_until IS NOT NULL AND tracking_result = '';

CREATE TABLE audit_events (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	"time"     timestamptz NOT NULL,
	request_id text COLLATE "C" NOT NULL,
	kind       text NOT NULL,
	actor      text NOT NULL,
	details    json NOT NULL CHECK (json_typeof(details) = 'object')
);
CREATE INDEX audit_events_by_time ON audit_events ("time", id);

-- The audit trail is append-only: nobody, the bot and the table's owner
-- included, edits history. Statement-level, so that even a statement that
-- matches no row is refused, and TRUNCATE (which fires no row trigger) too.
-- (Only a superuser can get past a trigger, with session_replication_role
-- or by altering the table; the bot's role needs only SELECT and INSERT
-- here: see Grants.)
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
		USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER audit_events_append_only
	BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
	FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- The outbox of notices (approvals.Outbox).
CREATE TABLE outbox (
	id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	request_id   text COLLATE "C" NOT NULL,
	kind         text NOT NULL,
	coalesce_key text COLLATE "C" NOT NULL,
	payload      json NOT NULL CHECK (json_typeof(payload) = 'object'),
	generation   bigint NOT NULL CHECK (generation >= 0),
	attempts     integer NOT NULL CHECK (attempts >= 0),
	last_error   text NOT NULL,
	created_at   timestamptz NOT NULL,
	next_at      timestamptz NOT NULL
);
-- One undelivered entry per request and coalesce key (the latest state wins).
CREATE UNIQUE INDEX outbox_coalesced ON outbox (request_id, coalesce_key) WHERE coalesce_key <> '';
CREATE INDEX outbox_due ON outbox (next_at, id);
CREATE INDEX outbox_by_request ON outbox (request_id, id);
`,
	// 1 → 2: the reprovision options, two-person approval (how many
	// approvals a request needs, and those given; older requests needed
	// one), and the heads-up to the Cloud PC's user.
	`
ALTER TABLE requests
	ADD COLUMN os_version text NOT NULL DEFAULT '',
	ADD COLUMN user_account_type text NOT NULL DEFAULT '',
	ADD COLUMN approvals_required integer NOT NULL DEFAULT 1,
	ADD COLUMN approvals json NOT NULL DEFAULT '[]' CHECK (json_typeof(approvals) IN ('array', 'null')),
	ADD COLUMN heads_up_user_id text NOT NULL DEFAULT '',
	ADD COLUMN heads_up_result text NOT NULL DEFAULT '',
	ADD COLUMN send_at timestamptz,
	ADD COLUMN more_time_asked boolean NOT NULL DEFAULT false,
	ADD COLUMN postponed boolean NOT NULL DEFAULT false,
	ADD COLUMN sign_in_lost boolean NOT NULL DEFAULT false;
`,
	// 2 → 3: batches (approvals.Batch, as json; NULL for a single
	// request), and the Cloud PCs each open request holds, batch members
	// included (Request.HeldCloudPCs): one row per Cloud PC, so one holder
	// per Cloud PC, whatever kind of request holds it; of two transactions
	// inserting the same Cloud PC, on one replica or two, the second waits
	// for the first and fails on the primary key if it committed. The
	// store writes a request's rows in the transaction that saves it.
	// Requests open at the upgrade are single ones, holding their own Cloud
	// PC (ALTER TABLE holds requests locked until the migration commits, so
	// none is missed). The partial unique index on requests stays: it says
	// the same of single requests (cloud_pc_holds holds their rows too), at
	// no cost worth saving. The roles that may change requests (the bot's,
	// given Grants) may keep cloud_pc_holds, so that an upgrade needs no
	// new GRANT to keep the bot running.
	`
ALTER TABLE requests ADD COLUMN batch json CHECK (batch IS NULL OR json_typeof(batch) = 'object');

CREATE TABLE cloud_pc_holds (
	cloud_pc_id text COLLATE "C" PRIMARY KEY CHECK (cloud_pc_id <> ''),
	request_id  text COLLATE "C" NOT NULL REFERENCES requests (id)
);
CREATE INDEX cloud_pc_holds_by_request ON cloud_pc_holds (request_id);

INSERT INTO cloud_pc_holds (cloud_pc_id, request_id)
	SELECT cloud_pc_id, id FROM requests WHERE holds_cloud_pc AND cloud_pc_id <> '';

DO $$
DECLARE
	grantee regrole;
BEGIN
	FOR grantee IN
		SELECT DISTINCT a.grantee::regrole
		FROM pg_catalog.pg_class c, aclexplode(c.relacl) a
		WHERE c.oid = 'requests'::regclass AND a.privilege_type = 'UPDATE'
			AND a.grantee <> 0 AND a.grantee <> c.relowner
	LOOP
		EXECUTE format('GRANT SELECT, INSERT, DELETE ON cloud_pc_holds TO %s', grantee);
	END LOOP;
END
$$;
`,
}
