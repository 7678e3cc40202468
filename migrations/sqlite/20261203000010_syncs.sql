-- Syncs (docs/DESIGN.md, "Syncs"). Times are milliseconds since the Unix epoch, from the
-- service's clock. Nothing here bumps the catalog's change version: a sync changes no
-- destination or mapping.

-- Each sync's history: what it was asked, how far it got, its counts per mapping (JSON).
-- At most one non-dry-run sync RUNNING per (destination, model): the partial unique index is
-- the lock, across replicas; `heartbeat_at` is its lease.
CREATE TABLE sync_runs (
    id             TEXT PRIMARY KEY NOT NULL,
    destination_id TEXT NOT NULL REFERENCES destinations (id) ON DELETE CASCADE,
    model          TEXT NOT NULL,
    mode           TEXT NOT NULL,
    dry_run        INTEGER NOT NULL,
    status         TEXT NOT NULL,
    started_at     INTEGER NOT NULL,
    ended_at       INTEGER,
    heartbeat_at   INTEGER NOT NULL,
    received       INTEGER NOT NULL DEFAULT 0,
    counts         TEXT NOT NULL DEFAULT '[]',
    columns        TEXT NOT NULL DEFAULT '[]',
    message        TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX sync_runs_one_running ON sync_runs (destination_id, model)
    WHERE status = 'RUNNING' AND dry_run = 0;
CREATE INDEX sync_runs_newest ON sync_runs (destination_id, model, started_at, id);
CREATE INDEX sync_runs_by_age ON sync_runs (started_at);

-- The record ids a running sync has received: repeated ids, and (FULL) what disappeared.
-- Emptied when the sync ends.
CREATE TABLE sync_seen (
    sync_id   TEXT NOT NULL,
    record_id TEXT NOT NULL,
    PRIMARY KEY (sync_id, record_id)
) WITHOUT ROWID;

-- Per mapping and record: the checksum of the row last settled, and whether its event was
-- delivered (0), is pending a retry (1: `op`, `tries`, `since` and the row's `columns` kept
-- for it), was rejected (2) or given up (3).
CREATE TABLE sync_state (
    mapping_id TEXT NOT NULL REFERENCES mappings (id) ON DELETE CASCADE,
    record_id  TEXT NOT NULL,
    checksum   BLOB NOT NULL,
    status     INTEGER NOT NULL,
    op         INTEGER NOT NULL,
    tries      INTEGER NOT NULL,
    since      INTEGER NOT NULL,
    columns    BLOB,
    PRIMARY KEY (mapping_id, record_id)
) WITHOUT ROWID;
CREATE INDEX sync_state_pending ON sync_state (mapping_id, record_id) WHERE status = 1;

-- A sample of each sync's results that were not delivered.
CREATE TABLE sync_failures (
    sync_id    TEXT NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    record_id  TEXT NOT NULL,
    mapping_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    code       TEXT NOT NULL,
    pointer    TEXT NOT NULL,
    message    TEXT NOT NULL,
    message_id TEXT,
    event_json TEXT,
    PRIMARY KEY (sync_id, seq)
) WITHOUT ROWID;
