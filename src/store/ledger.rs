//! What syncs keep (docs/DESIGN.md, "Syncs"): each sync's history, the record ids a running sync
//! has received, and per mapping a ledger of each record's last settled checksum. The
//! [`Ledger`] trait, its statements for both dialects, and [`ledger_store!`], which implements it
//! for a backend as `shared.rs` does the catalog. No ledger write bumps the change version: a
//! sync changes no destination or mapping.
//!
//! Every read takes ids by the chunk, never the whole ledger: a ledger of millions of records
//! costs disk, not memory.

use std::future::Future;

use super::Result;

/// FULL: the stream holds every record of the model (what is missing was deleted);
/// INCREMENTAL: only some (nothing is deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncMode {
    Full,
    Incremental,
}

impl SyncMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SyncMode::Full => "FULL",
            SyncMode::Incremental => "INCREMENTAL",
        }
    }

    fn parse(s: &str) -> SyncMode {
        match s {
            "INCREMENTAL" => SyncMode::Incremental,
            _ => SyncMode::Full,
        }
    }
}

/// Where a sync is, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncStatus {
    Running,
    /// Committed; every event delivered or skipped.
    Completed,
    /// Committed; some were rejected or failed.
    CompletedWithFailures,
    /// Ended without `commit`: nothing deleted, what was delivered recorded.
    Incomplete,
    /// Its replica stopped renewing its lease.
    Abandoned,
    /// Ended by an error of the service (the store, the destination gone).
    Failed,
}

impl SyncStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Running => "RUNNING",
            SyncStatus::Completed => "COMPLETED",
            SyncStatus::CompletedWithFailures => "COMPLETED_WITH_FAILURES",
            SyncStatus::Incomplete => "INCOMPLETE",
            SyncStatus::Abandoned => "ABANDONED",
            SyncStatus::Failed => "FAILED",
        }
    }

    fn parse(s: &str) -> SyncStatus {
        match s {
            "RUNNING" => SyncStatus::Running,
            "COMPLETED" => SyncStatus::Completed,
            "COMPLETED_WITH_FAILURES" => SyncStatus::CompletedWithFailures,
            "INCOMPLETE" => SyncStatus::Incomplete,
            "ABANDONED" => SyncStatus::Abandoned,
            _ => SyncStatus::Failed,
        }
    }
}

/// How a record's last event for a mapping settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Delivered, or skipped by the trigger: the checksum is what the destination has.
    Synced = 0,
    /// Failed and retryable: retried on later syncs.
    Pending = 1,
    /// Rejected: not retried until the row changes.
    Rejected = 2,
    /// Failed past the retry limits: as rejected.
    GaveUp = 3,
}

impl Settled {
    fn from_i64(v: i64) -> Settled {
        match v {
            0 => Settled::Synced,
            1 => Settled::Pending,
            2 => Settled::Rejected,
            _ => Settled::GaveUp,
        }
    }
}

/// The change an event reported (the row path's `Op`, as the ledger keeps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added = 1,
    Updated = 2,
    Deleted = 3,
}

fn op_code(op: Change) -> i64 {
    op as i64
}

fn op_of(v: i64) -> Change {
    match v {
        1 => Change::Added,
        3 => Change::Deleted,
        _ => Change::Updated,
    }
}

/// One record's ledger entry for one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordState {
    pub record_id: String,
    pub checksum: Vec<u8>,
    pub status: Settled,
    /// The change the unsettled event reports (for `Pending`, `Rejected`, `GaveUp`).
    pub op: Change,
    /// How many syncs have tried the pending event.
    pub tries: u32,
    /// When the pending event first failed (ms since the epoch).
    pub since: i64,
    /// For `Pending`: the row's columns as last received (JSON), to retry from.
    pub columns: Option<Vec<u8>>,
}

/// A change to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateWrite {
    Put {
        mapping_id: String,
        state: RecordState,
    },
    Remove {
        mapping_id: String,
        record_id: String,
    },
}

/// A result of a sync that was not delivered, as its history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailureRecord {
    pub record_id: String,
    pub mapping_id: String,
    pub status: String,
    pub code: String,
    pub pointer: String,
    pub message: String,
    pub message_id: Option<String>,
    pub event_json: Option<String>,
}

/// A sync as its history keeps it. `counts` and `columns` are JSON (the sync engine's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRun {
    pub id: String,
    pub destination_id: String,
    pub model: String,
    pub mode: SyncMode,
    pub dry_run: bool,
    pub status: SyncStatus,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub received: u64,
    pub counts: String,
    pub columns: String,
    pub message: String,
}

/// A sync to start.
#[derive(Debug, Clone)]
pub struct NewSync {
    pub destination_id: String,
    pub model: String,
    pub mode: SyncMode,
    pub dry_run: bool,
    pub now: i64,
    /// A running sync not renewed for this long is abandoned (ms).
    pub lease: i64,
}

/// Where a sync's progress stands, written with each batch of results.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub received: u64,
    pub counts: &'a str,
    /// The sequence number of the first failure written with it.
    pub first_failure: u64,
}

/// The sync state behind the `Sync` RPCs.
pub trait Ledger: Send + Sync + 'static {
    /// Starts a sync, abandoning a running one of the same (destination, model) whose lease
    /// ran out. `Err(id)`: the running sync `id` holds it (dry runs hold nothing).
    fn start_sync(
        &self,
        new: &NewSync,
    ) -> impl Future<Output = Result<std::result::Result<SyncRun, String>>> + Send;
    /// Renews the lease; `false` when the sync is no longer running (it was abandoned).
    fn renew_sync(&self, sync_id: &str, now: i64) -> impl Future<Output = Result<bool>> + Send;
    /// Those of `ids` the sync has received before (written by [`Ledger::record`]).
    fn seen_among(
        &self,
        sync_id: &str,
        ids: &[&str],
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Of `records` (id, checksum), those the ledger of `mapping_id` does not hold as synced
    /// with that checksum: with no entry (`None`), or with the entry it has (columns left
    /// out). The rest are unchanged; the diff runs in the database, so they cost no row.
    fn changed(
        &self,
        mapping_id: &str,
        records: &[(&str, &[u8])],
    ) -> impl Future<Output = Result<Vec<(String, Option<RecordState>)>>> + Send;
    /// Up to `limit` entries of `mapping_id` after `after` (by record id, byte order) that the
    /// sync has not received; with `pending_only`, only pending ones (with their columns).
    fn unseen(
        &self,
        sync_id: &str,
        mapping_id: &str,
        pending_only: bool,
        after: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<RecordState>>> + Send;
    /// Writes results in one transaction: the record ids received, the ledger changes, the
    /// failures, the progress.
    fn record(
        &self,
        sync_id: &str,
        seen: &[&str],
        writes: &[StateWrite],
        failures: &[FailureRecord],
        progress: Progress<'_>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Ends a running sync with `status` (and forgets the ids it received).
    fn finish_sync(
        &self,
        run: &SyncRun,
        failures: &[FailureRecord],
        first_failure: u64,
    ) -> impl Future<Output = Result<()>> + Send;
    fn get_sync(&self, id: &str) -> impl Future<Output = Result<SyncRun>> + Send;
    /// Newest first, before `(started_at, id)` when given.
    fn list_syncs(
        &self,
        destination_id: &str,
        model: Option<&str>,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<SyncRun>>> + Send;
    /// The sync's failures after sequence number `after`, in order, with their numbers.
    fn list_sync_failures(
        &self,
        sync_id: &str,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(i64, FailureRecord)>>> + Send;
    /// Forgets the ledger of the destination's mappings of `model` (or of `mapping_id` only);
    /// returns how many entries went. In one transaction with the check: `Err(id)` while the
    /// sync `id` of (destination, model) runs (not a dry run, its lease not run out at `now`;
    /// one whose lease ran out is abandoned on the way, as [`Ledger::start_sync`] does).
    fn reset_sync(
        &self,
        destination_id: &str,
        model: &str,
        mapping_id: Option<&str>,
        now: i64,
        lease: i64,
    ) -> impl Future<Output = Result<std::result::Result<u64, String>>> + Send;
    /// The columns the last committed sync of (destination, model) received (JSON), `[]` if none.
    fn last_columns(
        &self,
        destination_id: &str,
        model: &str,
    ) -> impl Future<Output = Result<String>> + Send;
    /// Deletes syncs that started before `before` (not running ones); returns how many.
    fn prune_syncs(&self, before: i64) -> impl Future<Output = Result<u64>> + Send;
}

/// The ledger's statements of one dialect.
pub(super) struct LedgerSql {
    /// Serialises the syncs' starts and resets of one (destination, model), `$1` and `$2`,
    /// until the transaction ends (PostgreSQL; SQLite's `BEGIN IMMEDIATE` serialises writers).
    pub lock_model: Option<&'static str>,
    pub begin: &'static str,
    pub abandon_expired: &'static str,
    pub insert_run: &'static str,
    pub running: &'static str,
    pub renew: &'static str,
    pub seen_among: &'static str,
    pub insert_seen: &'static str,
    /// `$2`: a JSON array of `[id, checksum as upper-case hex]`.
    pub changed: &'static str,
    pub unseen: &'static str,
    pub unseen_pending: &'static str,
    /// `$1`: a JSON array of `[mapping_id, record_id, checksum hex, status, op, tries, since,
    /// columns hex or null]`, at most one per key.
    pub put_states: &'static str,
    /// `$1`: a JSON array of `[mapping_id, record_id]`.
    pub remove_states: &'static str,
    pub insert_failure: &'static str,
    pub progress: &'static str,
    pub finish: &'static str,
    pub forget_seen: &'static str,
    pub get_run: &'static str,
    pub list_runs: &'static str,
    pub list_runs_model: &'static str,
    pub list_failures: &'static str,
    pub reset_model: &'static str,
    pub reset_mapping: &'static str,
    /// A mapping's whole ledger (`$1`), when its model changes (in the update's transaction).
    pub forget_mapping: &'static str,
    pub last_columns: &'static str,
    pub prune: &'static str,
}

macro_rules! run_columns {
    () => {
        "id, destination_id, model, mode, dry_run, status, started_at, ended_at, received, \
         counts, columns, message"
    };
}

/// The statements, with the dialect's fragments: `lock_model` (PostgreSQL only), `begin` (as in
/// `sql.rs`) and `ids`, a list of ids bound as `$2` (SQLite: a JSON array read by `json_each`;
/// PostgreSQL: a `text[]`).
macro_rules! ledger_stamp {
    (
        lock_model: $lock:expr,
        begin: $begin:literal,
        ids: $ids:literal,
        among: $among:literal,
        changed: $changed:literal,
        put_rows: $put_rows:literal,
        remove_states: $remove_states:literal $(,)?
    ) => {
        LedgerSql {
            lock_model: $lock,
            begin: $begin,
            abandon_expired: "UPDATE sync_runs SET status = 'ABANDONED', ended_at = $3, \
                 message = 'its replica stopped renewing the lease' \
                 WHERE destination_id = $1 AND model = $2 AND status = 'RUNNING' \
                 AND heartbeat_at < $4 RETURNING id",
            insert_run: concat!(
                "INSERT INTO sync_runs (id, destination_id, model, mode, dry_run, status, \
                 started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, 'RUNNING', $6, $6) \
                 RETURNING ",
                run_columns!()
            ),
            running: "SELECT id FROM sync_runs WHERE destination_id = $1 AND model = $2 \
                 AND status = 'RUNNING' AND NOT dry_run",
            renew: "UPDATE sync_runs SET heartbeat_at = $2 WHERE id = $1 AND status = 'RUNNING'",
            seen_among: concat!(
                "SELECT record_id FROM sync_seen WHERE sync_id = $1 AND record_id ",
                $among
            ),
            insert_seen: concat!(
                "INSERT INTO sync_seen (sync_id, record_id) SELECT $1, r FROM ",
                $ids,
                " WHERE true ON CONFLICT DO NOTHING"
            ),
            changed: $changed,
            unseen: "SELECT record_id, checksum, status, op, tries, since, columns \
                 FROM sync_state s WHERE mapping_id = $2 AND record_id > $3 AND NOT EXISTS \
                 (SELECT 1 FROM sync_seen WHERE sync_id = $1 AND record_id = s.record_id) \
                 ORDER BY record_id LIMIT $4",
            unseen_pending: "SELECT record_id, checksum, status, op, tries, since, columns \
                 FROM sync_state s WHERE mapping_id = $2 AND record_id > $3 AND status = 1 \
                 AND NOT EXISTS \
                 (SELECT 1 FROM sync_seen WHERE sync_id = $1 AND record_id = s.record_id) \
                 ORDER BY record_id LIMIT $4",
            put_states: concat!(
                "INSERT INTO sync_state (mapping_id, record_id, checksum, status, op, tries, \
                 since, columns) ",
                $put_rows,
                " ON CONFLICT (mapping_id, record_id) DO UPDATE SET checksum = excluded.checksum, \
                 status = excluded.status, op = excluded.op, tries = excluded.tries, \
                 since = excluded.since, columns = excluded.columns"
            ),
            remove_states: $remove_states,
            insert_failure: "INSERT INTO sync_failures (sync_id, seq, record_id, mapping_id, \
                 status, code, pointer, message, message_id, event_json) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            progress: "UPDATE sync_runs SET received = $2, counts = $3 WHERE id = $1",
            finish: "UPDATE sync_runs SET status = $2, ended_at = $3, received = $4, \
                 counts = $5, columns = $6, message = $7 WHERE id = $1 AND status = 'RUNNING'",
            forget_seen: "DELETE FROM sync_seen WHERE sync_id = $1",
            get_run: concat!("SELECT ", run_columns!(), " FROM sync_runs WHERE id = $1"),
            list_runs: concat!(
                "SELECT ",
                run_columns!(),
                " FROM sync_runs WHERE destination_id = $1 AND (started_at, id) < ($2, $3) \
                 ORDER BY started_at DESC, id DESC LIMIT $4"
            ),
            list_runs_model: concat!(
                "SELECT ",
                run_columns!(),
                " FROM sync_runs WHERE destination_id = $1 AND (started_at, id) < ($2, $3) \
                 AND model = $5 ORDER BY started_at DESC, id DESC LIMIT $4"
            ),
            list_failures: "SELECT seq, record_id, mapping_id, status, code, pointer, message, \
                 message_id, event_json FROM sync_failures WHERE sync_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
            reset_model: "DELETE FROM sync_state WHERE mapping_id IN \
                 (SELECT id FROM mappings WHERE destination_id = $1 AND model = $2)",
            reset_mapping: "DELETE FROM sync_state WHERE mapping_id IN \
                 (SELECT id FROM mappings WHERE destination_id = $1 AND model = $2 AND id = $3)",
            forget_mapping: "DELETE FROM sync_state WHERE mapping_id = $1",
            last_columns: "SELECT columns FROM sync_runs WHERE destination_id = $1 \
                 AND model = $2 AND NOT dry_run AND status IN ('COMPLETED', \
                 'COMPLETED_WITH_FAILURES') ORDER BY started_at DESC, id DESC LIMIT 1",
            prune: "DELETE FROM sync_runs WHERE started_at < $1 AND status <> 'RUNNING'",
        }
    };
}

pub(super) const SQLITE: LedgerSql = ledger_stamp!(
    lock_model: None,
    begin: "BEGIN IMMEDIATE",
    ids: "(SELECT value AS r FROM json_each($2)) AS ids",
    among: "IN (SELECT value FROM json_each($2))",
    changed: "SELECT json_extract(j.value, '$[0]'), s.record_id, s.checksum, s.status, s.op, \
        s.tries, s.since FROM json_each($2) AS j LEFT JOIN sync_state s \
        ON s.mapping_id = $1 AND s.record_id = json_extract(j.value, '$[0]') \
        WHERE s.record_id IS NULL OR s.status <> 0 \
        OR hex(s.checksum) <> json_extract(j.value, '$[1]')",
    put_rows: "SELECT j.value ->> 0, j.value ->> 1, unhex(j.value ->> 2), j.value ->> 3, \
        j.value ->> 4, j.value ->> 5, j.value ->> 6, unhex(j.value ->> 7) \
        FROM json_each($1) AS j WHERE true",
    remove_states: "DELETE FROM sync_state WHERE (mapping_id, record_id) IN \
        (SELECT j.value ->> 0, j.value ->> 1 FROM json_each($1) AS j)",
);

pub(super) const POSTGRES: LedgerSql = ledger_stamp!(
    lock_model: Some("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))"),
    begin: "BEGIN",
    ids: "unnest($2::text[]) AS ids (r)",
    // An index probe per id: the planner cannot tell that one sync's ids are few of the table's.
    among: "= ANY($2::text[])",
    changed: "SELECT j->>0, s.record_id, s.checksum, s.status, s.op, s.tries, s.since \
        FROM jsonb_array_elements($2::text::jsonb) AS j LEFT JOIN sync_state s \
        ON s.mapping_id = $1 AND s.record_id = j->>0 \
        WHERE s.record_id IS NULL OR s.status <> 0 OR s.checksum <> decode(j->>1, 'hex')",
    put_rows: "SELECT j->>0, j->>1, decode(j->>2, 'hex'), (j->>3)::bigint, (j->>4)::bigint, \
        (j->>5)::bigint, (j->>6)::bigint, decode(j->>7, 'hex') \
        FROM json_array_elements($1::text::json) AS j",
    remove_states: "DELETE FROM sync_state s USING json_array_elements($1::text::json) AS j \
        WHERE s.mapping_id = j->>0 AND s.record_id = j->>1",
);

/// `changed`'s `$2`: `[[id, "HEX"], ...]`.
pub(super) fn changed_param(records: &[(&str, &[u8])]) -> String {
    let mut out = Json::with_capacity(records.len() * 64);
    out.open();
    for (id, sum) in records {
        out.open();
        out.str(id);
        out.hex(Some(sum));
        out.close();
    }
    out.close();
    out.finish()
}

/// The JSON array parameters of the batched statements, written straight into one buffer.
pub(super) struct Json {
    out: Vec<u8>,
    /// Whether the next value opens its array (needs no comma).
    first: bool,
}

impl Json {
    pub(super) fn with_capacity(bytes: usize) -> Json {
        Json {
            out: Vec::with_capacity(bytes + 2),
            first: true,
        }
    }

    fn comma(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    pub(super) fn open(&mut self) {
        self.comma();
        self.out.push(b'[');
        self.first = true;
    }

    pub(super) fn close(&mut self) {
        self.out.push(b']');
        self.first = false;
    }

    pub(super) fn str(&mut self, s: &str) {
        self.comma();
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.out, s);
    }

    pub(super) fn int(&mut self, v: i64) {
        self.comma();
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    /// Bytes as upper-case hex in a string, or null.
    pub(super) fn hex(&mut self, bytes: Option<&[u8]>) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        self.comma();
        let Some(bytes) = bytes else {
            self.out.extend_from_slice(b"null");
            return;
        };
        self.out.reserve(bytes.len() * 2 + 2);
        self.out.push(b'"');
        for &b in bytes {
            self.out.push(HEX[usize::from(b >> 4)]);
            self.out.push(HEX[usize::from(b & 15)]);
        }
        self.out.push(b'"');
    }

    pub(super) fn finish(self) -> String {
        // Only whole UTF-8 strings and ASCII were written.
        String::from_utf8(self.out).unwrap_or_default()
    }
}

/// Most rows one batched ledger statement writes.
const WRITES_PER_STATEMENT: usize = 5_000;

/// The parameters of [`LedgerSql::put_states`] and [`LedgerSql::remove_states`] for `writes`:
/// the last write of each key only (a statement may not touch a row twice), in parts of at most
/// [`WRITES_PER_STATEMENT`].
pub(super) fn write_params(writes: &[StateWrite]) -> (Vec<String>, Vec<String>) {
    fn key(w: &StateWrite) -> (&str, &str) {
        match w {
            StateWrite::Put { mapping_id, state } => (mapping_id, &state.record_id),
            StateWrite::Remove {
                mapping_id,
                record_id,
            } => (mapping_id, record_id),
        }
    }
    let mut last: std::collections::HashMap<(&str, &str), usize, foldhash::fast::RandomState> =
        std::collections::HashMap::with_capacity_and_hasher(writes.len(), Default::default());
    for (i, w) in writes.iter().enumerate() {
        last.insert(key(w), i);
    }
    let kept = writes
        .iter()
        .enumerate()
        .filter(|(i, w)| last.get(&key(w)) == Some(i))
        .map(|(_, w)| w);
    let (mut puts, mut removes) = (Vec::new(), Vec::new());
    let (mut put, mut remove) = (Vec::new(), Vec::new());
    for w in kept {
        match w {
            StateWrite::Put { .. } => put.push(w),
            StateWrite::Remove { .. } => remove.push(w),
        }
    }
    for part in put.chunks(WRITES_PER_STATEMENT) {
        let mut j = Json::with_capacity(part.len() * 96);
        j.open();
        for w in part {
            if let StateWrite::Put { mapping_id, state } = w {
                let (status, op, tries) = put_params(state);
                j.open();
                j.str(mapping_id);
                j.str(&state.record_id);
                j.hex(Some(&state.checksum));
                j.int(status);
                j.int(op);
                j.int(tries);
                j.int(state.since);
                j.hex(state.columns.as_deref());
                j.close();
            }
        }
        j.close();
        puts.push(j.finish());
    }
    for part in remove.chunks(WRITES_PER_STATEMENT) {
        let mut j = Json::with_capacity(part.len() * 48);
        j.open();
        for w in part {
            let (mapping_id, record_id) = key(w);
            j.open();
            j.str(mapping_id);
            j.str(record_id);
            j.close();
        }
        j.close();
        removes.push(j.finish());
    }
    (puts, removes)
}

/// A row of `changed`: the id asked, and the entry's columns when there is one.
pub(super) type ChangedRow = (
    String,
    Option<String>,
    Option<Vec<u8>>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

pub(super) fn changed_of(row: ChangedRow) -> (String, Option<RecordState>) {
    let (id, record_id, checksum, status, op, tries, since) = row;
    let state = match (record_id, checksum, status, op, tries, since) {
        (Some(r), Some(c), Some(st), Some(op), Some(t), Some(since)) => {
            Some(state_of((r, c, st, op, t, since), None))
        }
        _ => None,
    };
    (id, state)
}

/// A row of `sync_state` as selected.
pub(super) type StateRow = (String, Vec<u8>, i64, i64, i64, i64);

pub(super) fn state_of(row: StateRow, columns: Option<Vec<u8>>) -> RecordState {
    let (record_id, checksum, status, op, tries, since) = row;
    RecordState {
        record_id,
        checksum,
        status: Settled::from_i64(status),
        op: op_of(op),
        tries: u32::try_from(tries).unwrap_or(u32::MAX),
        since,
        columns,
    }
}

/// A row of `sync_runs` as selected.
pub(super) type RunRow = (
    String,
    String,
    String,
    String,
    bool,
    String,
    i64,
    Option<i64>,
    i64,
    String,
    String,
    String,
);

pub(super) fn run_of(row: RunRow) -> SyncRun {
    let (
        id,
        destination_id,
        model,
        mode,
        dry_run,
        status,
        started_at,
        ended_at,
        received,
        counts,
        columns,
        message,
    ) = row;
    SyncRun {
        id,
        destination_id,
        model,
        mode: SyncMode::parse(&mode),
        dry_run,
        status: SyncStatus::parse(&status),
        started_at,
        ended_at,
        received: received as u64,
        counts,
        columns,
        message,
    }
}

pub(super) fn put_params(state: &RecordState) -> (i64, i64, i64) {
    (
        state.status as i64,
        op_code(state.op),
        i64::from(state.tries),
    )
}

/// `ledger_store!(Store, Database, statements, ids)` implements [`Ledger`] for `Store` (as
/// `sql_store!` does [`super::Store`]); `ids` turns `&[&str]` into the dialect's id list.
macro_rules! ledger_store {
    ($store:ident, $db:ty, $statements:expr, $ids:path $(,)?) => {
        impl $store {
            const LEDGER: &'static $crate::store::ledger::LedgerSql = &$statements;

            /// A ledger write: a transaction of its own, without a version bump.
            async fn begin_ledger(
                &self,
            ) -> $crate::store::Result<$crate::store::shared::Write<$db>> {
                let mut conn = self.pool.acquire().await.map_err(Self::error)?;
                sqlx::raw_sql(Self::LEDGER.begin)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::error)?;
                Ok($crate::store::shared::Write {
                    conn,
                    version: 0,
                    done: false,
                })
            }

            async fn end_ledger<T>(
                mut tx: $crate::store::shared::Write<$db>,
                result: $crate::store::Result<T>,
            ) -> $crate::store::Result<T> {
                let end = match result {
                    Ok(_) => $crate::store::sql::COMMIT,
                    Err(_) => $crate::store::sql::ROLLBACK,
                };
                let ended = sqlx::raw_sql(end).execute(tx.conn()).await;
                match (result, ended) {
                    (Ok(v), Ok(_)) => {
                        tx.done = true;
                        Ok(v)
                    }
                    (Ok(_), Err(e)) => Err(Self::error(e)),
                    (Err(e), ended) => {
                        tx.done = ended.is_ok();
                        Err(e)
                    }
                }
            }

            async fn insert_failures(
                conn: &mut <$db as sqlx::Database>::Connection,
                sync_id: &str,
                failures: &[$crate::store::ledger::FailureRecord],
                first: u64,
            ) -> $crate::store::Result<()> {
                for (k, f) in failures.iter().enumerate() {
                    sqlx::query(Self::LEDGER.insert_failure)
                        .bind(sync_id)
                        .bind((first + k as u64) as i64)
                        .bind(&f.record_id)
                        .bind(&f.mapping_id)
                        .bind(&f.status)
                        .bind(&f.code)
                        .bind(&f.pointer)
                        .bind(&f.message)
                        .bind(&f.message_id)
                        .bind(&f.event_json)
                        .execute(&mut *conn)
                        .await
                        .map_err(Self::error)?;
                }
                Ok(())
            }

            /// In a ledger write: takes (destination, model) for the rest of the transaction
            /// (`lock_model`), records ABANDONED the running syncs of it whose lease ran out at
            /// `now` (the ids they received go with them), and returns the running one left
            /// that is not a dry run, if any.
            async fn running_sync(
                conn: &mut <$db as sqlx::Database>::Connection,
                destination_id: &str,
                model: &str,
                now: i64,
                lease: i64,
            ) -> $crate::store::Result<Option<String>> {
                if let Some(lock) = Self::LEDGER.lock_model {
                    sqlx::query(lock)
                        .bind(destination_id)
                        .bind(model)
                        .execute(&mut *conn)
                        .await
                        .map_err(Self::error)?;
                }
                let abandoned: Vec<(String,)> = sqlx::query_as(Self::LEDGER.abandon_expired)
                    .bind(destination_id)
                    .bind(model)
                    .bind(now)
                    .bind(now - lease)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(Self::error)?;
                // An abandoned sync never reached its end, where the ids it received go.
                for (id,) in &abandoned {
                    sqlx::query(Self::LEDGER.forget_seen)
                        .bind(id)
                        .execute(&mut *conn)
                        .await
                        .map_err(Self::error)?;
                }
                let running: Option<(String,)> = sqlx::query_as(Self::LEDGER.running)
                    .bind(destination_id)
                    .bind(model)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(Self::error)?;
                Ok(running.map(|(id,)| id))
            }
        }

        impl $crate::store::ledger::Ledger for $store {
            async fn start_sync(
                &self,
                new: &$crate::store::ledger::NewSync,
            ) -> $crate::store::Result<std::result::Result<$crate::store::ledger::SyncRun, String>>
            {
                let id = $crate::store::new_id("sy_")?;
                let tx = self.begin_ledger().await?;
                let mut tx = tx;
                let result = async {
                    let running = Self::running_sync(
                        tx.conn(),
                        &new.destination_id,
                        &new.model,
                        new.now,
                        new.lease,
                    )
                    .await?;
                    if let Some(running) = running.filter(|_| !new.dry_run) {
                        return Ok(Err(running));
                    }
                    let row: $crate::store::ledger::RunRow =
                        sqlx::query_as(Self::LEDGER.insert_run)
                            .bind(&id)
                            .bind(&new.destination_id)
                            .bind(&new.model)
                            .bind(new.mode.as_str())
                            .bind(new.dry_run)
                            .bind(new.now)
                            .fetch_one(tx.conn())
                            .await
                            .map_err(|e| {
                                // Another replica's insert won the race for the lock.
                                if e.as_database_error()
                                    .is_some_and(|d| d.is_unique_violation())
                                {
                                    $crate::store::StoreError::Unavailable(
                                        "another sync of this model started at the same time"
                                            .into(),
                                    )
                                } else {
                                    Self::error(e)
                                }
                            })?;
                    Ok(Ok($crate::store::ledger::run_of(row)))
                }
                .await;
                Self::end_ledger(tx, result).await
            }

            async fn renew_sync(&self, sync_id: &str, now: i64) -> $crate::store::Result<bool> {
                let done = sqlx::query(Self::LEDGER.renew)
                    .bind(sync_id)
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(Self::error)?;
                Ok(done.rows_affected() > 0)
            }

            async fn seen_among(
                &self,
                sync_id: &str,
                ids: &[&str],
            ) -> $crate::store::Result<Vec<String>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let rows: Vec<(String,)> = sqlx::query_as(Self::LEDGER.seen_among)
                    .bind(sync_id)
                    .bind($ids(ids))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(Self::error)?;
                Ok(rows.into_iter().map(|(r,)| r).collect())
            }

            async fn changed(
                &self,
                mapping_id: &str,
                records: &[(&str, &[u8])],
            ) -> $crate::store::Result<Vec<(String, Option<$crate::store::ledger::RecordState>)>>
            {
                if records.is_empty() {
                    return Ok(Vec::new());
                }
                let rows: Vec<$crate::store::ledger::ChangedRow> =
                    sqlx::query_as(Self::LEDGER.changed)
                        .bind(mapping_id)
                        .bind($crate::store::ledger::changed_param(records))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::error)?;
                Ok(rows
                    .into_iter()
                    .map($crate::store::ledger::changed_of)
                    .collect())
            }

            async fn unseen(
                &self,
                sync_id: &str,
                mapping_id: &str,
                pending_only: bool,
                after: &str,
                limit: u32,
            ) -> $crate::store::Result<Vec<$crate::store::ledger::RecordState>> {
                let sql = match pending_only {
                    true => Self::LEDGER.unseen_pending,
                    false => Self::LEDGER.unseen,
                };
                let rows: Vec<(String, Vec<u8>, i64, i64, i64, i64, Option<Vec<u8>>)> =
                    sqlx::query_as(sql)
                        .bind(sync_id)
                        .bind(mapping_id)
                        .bind(after)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::error)?;
                Ok(rows
                    .into_iter()
                    .map(|(a, b, c, d, e, f, columns)| {
                        $crate::store::ledger::state_of((a, b, c, d, e, f), columns)
                    })
                    .collect())
            }

            async fn record(
                &self,
                sync_id: &str,
                seen: &[&str],
                writes: &[$crate::store::ledger::StateWrite],
                failures: &[$crate::store::ledger::FailureRecord],
                progress: $crate::store::ledger::Progress<'_>,
            ) -> $crate::store::Result<()> {
                let mut tx = self.begin_ledger().await?;
                let result = async {
                    for part in seen.chunks(10_000) {
                        sqlx::query(Self::LEDGER.insert_seen)
                            .bind(sync_id)
                            .bind($ids(part))
                            .execute(tx.conn())
                            .await
                            .map_err(Self::error)?;
                    }
                    let (puts, removes) = $crate::store::ledger::write_params(writes);
                    for (sql, params) in [
                        (Self::LEDGER.remove_states, removes),
                        (Self::LEDGER.put_states, puts),
                    ] {
                        for p in params {
                            sqlx::query(sql)
                                .bind(p)
                                .execute(tx.conn())
                                .await
                                .map_err(Self::error)?;
                        }
                    }
                    Self::insert_failures(tx.conn(), sync_id, failures, progress.first_failure)
                        .await?;
                    sqlx::query(Self::LEDGER.progress)
                        .bind(sync_id)
                        .bind(progress.received as i64)
                        .bind(progress.counts)
                        .execute(tx.conn())
                        .await
                        .map_err(Self::error)?;
                    Ok(())
                }
                .await;
                Self::end_ledger(tx, result).await
            }

            async fn finish_sync(
                &self,
                run: &$crate::store::ledger::SyncRun,
                failures: &[$crate::store::ledger::FailureRecord],
                first_failure: u64,
            ) -> $crate::store::Result<()> {
                let mut tx = self.begin_ledger().await?;
                let result = async {
                    Self::insert_failures(tx.conn(), &run.id, failures, first_failure).await?;
                    sqlx::query(Self::LEDGER.finish)
                        .bind(&run.id)
                        .bind(run.status.as_str())
                        .bind(run.ended_at)
                        .bind(run.received as i64)
                        .bind(&run.counts)
                        .bind(&run.columns)
                        .bind(&run.message)
                        .execute(tx.conn())
                        .await
                        .map_err(Self::error)?;
                    sqlx::query(Self::LEDGER.forget_seen)
                        .bind(&run.id)
                        .execute(tx.conn())
                        .await
                        .map_err(Self::error)?;
                    Ok(())
                }
                .await;
                Self::end_ledger(tx, result).await
            }

            async fn get_sync(
                &self,
                id: &str,
            ) -> $crate::store::Result<$crate::store::ledger::SyncRun> {
                let row: Option<$crate::store::ledger::RunRow> =
                    sqlx::query_as(Self::LEDGER.get_run)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(Self::error)?;
                row.map($crate::store::ledger::run_of).ok_or_else(|| {
                    $crate::store::StoreError::not_found($crate::store::Kind::Sync, id)
                })
            }

            async fn list_syncs(
                &self,
                destination_id: &str,
                model: Option<&str>,
                before: Option<(i64, String)>,
                limit: u32,
            ) -> $crate::store::Result<Vec<$crate::store::ledger::SyncRun>> {
                let (at, id) = before.unwrap_or((i64::MAX, String::new()));
                let sql = match model {
                    Some(_) => Self::LEDGER.list_runs_model,
                    None => Self::LEDGER.list_runs,
                };
                let mut q = sqlx::query_as(sql)
                    .bind(destination_id)
                    .bind(at)
                    .bind(id)
                    .bind(i64::from(limit));
                if let Some(m) = model {
                    q = q.bind(m);
                }
                let rows: Vec<$crate::store::ledger::RunRow> =
                    q.fetch_all(&self.pool).await.map_err(Self::error)?;
                Ok(rows
                    .into_iter()
                    .map($crate::store::ledger::run_of)
                    .collect())
            }

            async fn list_sync_failures(
                &self,
                sync_id: &str,
                after: i64,
                limit: u32,
            ) -> $crate::store::Result<Vec<(i64, $crate::store::ledger::FailureRecord)>> {
                #[allow(clippy::type_complexity)]
                let rows: Vec<(
                    i64,
                    String,
                    String,
                    String,
                    String,
                    String,
                    String,
                    Option<String>,
                    Option<String>,
                )> = sqlx::query_as(Self::LEDGER.list_failures)
                    .bind(sync_id)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(Self::error)?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(
                            seq,
                            record_id,
                            mapping_id,
                            status,
                            code,
                            pointer,
                            message,
                            message_id,
                            event_json,
                        )| {
                            (
                                seq,
                                $crate::store::ledger::FailureRecord {
                                    record_id,
                                    mapping_id,
                                    status,
                                    code,
                                    pointer,
                                    message,
                                    message_id,
                                    event_json,
                                },
                            )
                        },
                    )
                    .collect())
            }

            async fn reset_sync(
                &self,
                destination_id: &str,
                model: &str,
                mapping_id: Option<&str>,
                now: i64,
                lease: i64,
            ) -> $crate::store::Result<std::result::Result<u64, String>> {
                let mut tx = self.begin_ledger().await?;
                let result = async {
                    let running =
                        Self::running_sync(tx.conn(), destination_id, model, now, lease).await?;
                    if let Some(running) = running {
                        return Ok(Err(running));
                    }
                    let q = match mapping_id {
                        Some(m) => sqlx::query(Self::LEDGER.reset_mapping)
                            .bind(destination_id)
                            .bind(model)
                            .bind(m),
                        None => sqlx::query(Self::LEDGER.reset_model)
                            .bind(destination_id)
                            .bind(model),
                    };
                    let done = q.execute(tx.conn()).await.map_err(Self::error)?;
                    Ok(Ok(done.rows_affected()))
                }
                .await;
                Self::end_ledger(tx, result).await
            }

            async fn last_columns(
                &self,
                destination_id: &str,
                model: &str,
            ) -> $crate::store::Result<String> {
                let row: Option<(String,)> = sqlx::query_as(Self::LEDGER.last_columns)
                    .bind(destination_id)
                    .bind(model)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(Self::error)?;
                Ok(row.map(|(c,)| c).unwrap_or_else(|| "[]".into()))
            }

            async fn prune_syncs(&self, before: i64) -> $crate::store::Result<u64> {
                let done = sqlx::query(Self::LEDGER.prune)
                    .bind(before)
                    .execute(&self.pool)
                    .await
                    .map_err(Self::error)?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(super) use ledger_store;

#[cfg(test)]
mod tests {
    use super::*;

    fn put(mapping: &str, record: &str, since: i64) -> StateWrite {
        StateWrite::Put {
            mapping_id: mapping.into(),
            state: RecordState {
                record_id: record.into(),
                checksum: vec![0, 0xab, 0xff],
                status: Settled::Pending,
                op: Change::Added,
                tries: 2,
                since,
                columns: Some(b"{\"a\":1}".to_vec()),
            },
        }
    }

    /// The last write of a key wins, puts and removals go apart, and no statement carries more
    /// than its share.
    #[test]
    fn writes_are_deduplicated_and_split_into_parts() {
        let mut writes: Vec<StateWrite> =
            (0..12_000).map(|i| put("m", &format!("r{i}"), i)).collect();
        writes.push(put("m", "r5", -1));
        writes.push(StateWrite::Remove {
            mapping_id: "m".into(),
            record_id: "r7".into(),
        });
        writes.push(StateWrite::Remove {
            mapping_id: "n".into(),
            record_id: "r\"8".into(),
        });
        let (puts, removes) = write_params(&writes);
        let rows = |params: &[String]| -> Vec<serde_json::Value> {
            params
                .iter()
                .flat_map(|p| {
                    let v: Vec<serde_json::Value> = serde_json::from_str(p).unwrap();
                    assert!(v.len() <= WRITES_PER_STATEMENT);
                    v
                })
                .collect()
        };
        let puts = rows(&puts);
        assert_eq!(puts.len(), 11_999, "r7 is removed, r5 written once");
        let r5: Vec<_> = puts.iter().filter(|r| r[1] == "r5").collect();
        assert_eq!(
            r5,
            [&serde_json::json!([
                "m",
                "r5",
                "00ABFF",
                1,
                1,
                2,
                -1,
                "7B2261223A317D"
            ])]
        );
        assert_eq!(
            rows(&removes),
            [
                serde_json::json!(["m", "r7"]),
                serde_json::json!(["n", "r\"8"])
            ]
        );
    }

    #[test]
    fn the_changed_parameter_is_json_with_hex_checksums() {
        let p = changed_param(&[("a\"é", &[1, 0xfe]), ("b", &[])]);
        assert_eq!(p, r#"[["a\"é","01FE"],["b",""]]"#);
    }
}
