//! One sync from its start to its end: each chunk is diffed per mapping against the ledger,
//! what changed goes through the row path (or, dry, through the renderer only), and every
//! result is written back with the chunk's progress in one transaction before the chunk is
//! answered. `commit` pages through what the sync did not receive: deletions (FULL) and pending
//! retries (INCREMENTAL). The lease is renewed in the background while the sync lives.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;

use super::received::{Received, Seen};
use super::{MappingCounts, Record, SyncCounts, SyncSettings, now_ms};
use crate::delivery::{Delivery, Input, RowStatus, SeenIds, Target};
use crate::error::Error;
use crate::issue::{Issue, IssueCode};
use crate::limits::MAX_ECHOED_EVENT_BYTES;
use crate::mapping::{Op, Row};
use crate::store::{
    Change, FailureRecord, Ledger, Progress, RecordState, Settled, StateWrite, Store, SyncMode,
    SyncRun, SyncStatus,
};

/// The most distinct column names a sync remembers for its deletions' null columns.
const MAX_COLUMNS: usize = 1024;
/// Ledger entries read per page at `commit`.
const PAGE: u32 = 1000;
/// Received ids held in memory before they are written without a result to go with them.
const MAX_UNFLUSHED_IDS: usize = 20_000;

/// How one (record, mapping) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum SyncResultStatus {
    Delivered,
    Rejected,
    Failed,
    Skipped,
    GaveUp,
    WouldSend,
}

impl SyncResultStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SyncResultStatus::Delivered => "DELIVERED",
            SyncResultStatus::Rejected => "REJECTED",
            SyncResultStatus::Failed => "FAILED",
            SyncResultStatus::Skipped => "SKIPPED",
            SyncResultStatus::GaveUp => "GAVE_UP",
            SyncResultStatus::WouldSend => "WOULD_SEND",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<SyncResultStatus> {
        Some(match s {
            "DELIVERED" => SyncResultStatus::Delivered,
            "REJECTED" => SyncResultStatus::Rejected,
            "FAILED" => SyncResultStatus::Failed,
            "SKIPPED" => SyncResultStatus::Skipped,
            "GAVE_UP" => SyncResultStatus::GaveUp,
            "WOULD_SEND" => SyncResultStatus::WouldSend,
            _ => return None,
        })
    }
}

/// One (record, mapping) that changed, or a record refused before any mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncResult {
    pub record_id: String,
    pub mapping_id: String,
    pub change: Option<Op>,
    pub status: SyncResultStatus,
    pub message_id: Option<String>,
    pub issues: Vec<Issue>,
    pub retried: bool,
    pub event_json: Option<String>,
}

/// What a chunk (or `commit`) did.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub counts: SyncCounts,
    /// Every result but the delivered ones.
    pub results: Vec<SyncResult>,
}

/// A record to send for one mapping.
struct Send {
    id: String,
    row: Row,
    checksum: Vec<u8>,
    prior: Option<RecordState>,
    retried: bool,
}

/// What one mapping's sends did: its results, its writes, and (dry) the users of its events.
#[derive(Default)]
struct Sent {
    answer: Answer,
    writes: Writes,
    users: Vec<u64>,
}

/// What a chunk's results write.
#[derive(Default)]
struct Writes {
    state: Vec<StateWrite>,
    failures: Vec<FailureRecord>,
}

/// A sync in progress. Dropped without [`RunningSync::finish`], it stays RUNNING until its
/// lease runs out, and the next sync of the model records it ABANDONED.
pub(crate) struct RunningSync<S> {
    delivery: Arc<Delivery<S>>,
    store: Arc<S>,
    settings: SyncSettings,
    run: SyncRun,
    target: Target,
    stream_stop: Option<Instant>,
    counts: SyncCounts,
    /// Failures written to the history so far (the next one's sequence number).
    failures: u64,
    /// Dry run: the failures, written when the sync ends.
    dry_failures: Vec<FailureRecord>,
    /// Dry run: the users of the events it would send.
    dry_users: crate::usage::Sketch,
    columns: BTreeSet<String>,
    /// Every record id received; those not yet written go with the next write, so a chunk of
    /// unchanged records costs no write at all.
    received: Received,
    seen: SeenIds,
    lost: Arc<AtomicBool>,
    lease: tokio::task::AbortHandle,
}

impl<S> Drop for RunningSync<S> {
    fn drop(&mut self) {
        self.lease.abort();
    }
}

impl<S: Store + Ledger> RunningSync<S> {
    pub(super) fn new(
        delivery: Arc<Delivery<S>>,
        store: Arc<S>,
        settings: SyncSettings,
        run: SyncRun,
        target: Target,
        stream_stop: Option<Instant>,
    ) -> RunningSync<S> {
        let lost = Arc::new(AtomicBool::new(false));
        let lease = {
            let (store, id, lost) = (store.clone(), run.id.clone(), lost.clone());
            let every = settings.lease / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    match store.renew_sync(&id, now_ms()).await {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.store(true, Ordering::Relaxed);
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(sync_id = %id, error = %e, "sync lease not renewed")
                        }
                    }
                }
            })
            .abort_handle()
        };
        let window = delivery.settings().stream_dedup_window;
        RunningSync {
            delivery,
            store,
            settings,
            run,
            target,
            stream_stop,
            counts: SyncCounts::default(),
            failures: 0,
            dry_failures: Vec::new(),
            dry_users: crate::usage::Sketch::new(),
            columns: BTreeSet::new(),
            received: Received::new(),
            seen: SeenIds::window(window),
            lost,
            lease,
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.run.id
    }

    fn stop(&self) -> Instant {
        self.stream_stop
            .unwrap_or_else(|| self.delivery.settings().stop_at(Instant::now(), None))
    }

    /// The target as it is now: a mapping changed mid-sync is seen by the next chunk.
    async fn refresh(&mut self) -> Result<(), Error> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(Error::SyncLost(self.run.id.clone()));
        }
        let stop = self.stop();
        self.target = self
            .delivery
            .target(&self.run.destination_id, &self.run.model, stop)
            .await?;
        Ok(())
    }

    /// Diffs and sends one chunk of records, and records the results.
    pub(crate) async fn chunk(&mut self, records: Vec<Record>) -> Result<Answer, Error> {
        self.refresh().await?;
        self.run.received += records.len() as u64;
        let mut answer = Answer::default();
        // Each readable record's id: repeated in the chunk (as certain as one received and not
        // yet written), or what the filter says of it.
        let mut in_chunk: HashSet<&str, foldhash::fast::RandomState> =
            HashSet::with_capacity_and_hasher(records.len(), Default::default());
        let seen: Vec<Seen> = records
            .iter()
            .map(|r| match &r.row {
                Err(_) => Seen::No,
                Ok(_) if !in_chunk.insert(r.id.as_str()) => Seen::Unflushed,
                Ok(_) => self.received.seen(&r.id),
            })
            .collect();
        drop(in_chunk);
        // Only an id the filter may have seen before is looked up in the store.
        let maybe: Vec<&str> = records
            .iter()
            .zip(&seen)
            .filter(|(_, s)| **s == Seen::Maybe)
            .map(|(r, _)| r.id.as_str())
            .collect();
        let before: HashSet<String, foldhash::fast::RandomState> = match maybe.is_empty() {
            true => HashSet::default(),
            false => self
                .store
                .seen_among(&self.run.id, &maybe)
                .await?
                .into_iter()
                .collect(),
        };
        drop(maybe);
        let mut fresh = Vec::with_capacity(records.len());
        for (Record { id, row }, seen) in records.into_iter().zip(seen) {
            let repeated = match seen {
                Seen::No => false,
                Seen::Unflushed => true,
                Seen::Maybe => before.contains(&id),
            };
            match row {
                Err(issue) => refuse(&mut answer, id, issue),
                Ok(_) if repeated => duplicate(&mut answer, id),
                Ok((row, sum)) => fresh.push((sum, id, row)),
            }
        }
        for (_, _, row) in &fresh {
            if self.columns.len() >= MAX_COLUMNS {
                break;
            }
            for k in row.columns.keys() {
                if self.columns.len() < MAX_COLUMNS && !self.columns.contains(k) {
                    self.columns.insert(k.to_owned());
                }
            }
        }
        let ids: Vec<&str> = fresh.iter().map(|(_, id, _)| id.as_str()).collect();
        let mut writes = Writes::default();
        // Every mapping's ledger entries at once, then every mapping's sends at once.
        let mapping_ids: Vec<String> = self
            .target
            .mappings()
            .iter()
            .map(|m| m.identity().mapping_id.clone())
            .collect();
        let asked: Vec<(&str, &[u8])> = fresh
            .iter()
            .map(|(sum, id, _)| (id.as_str(), sum.as_slice()))
            .collect();
        let all_changed = futures_util::future::try_join_all(
            mapping_ids.iter().map(|m| self.store.changed(m, &asked)),
        )
        .await?;
        drop(asked);
        let by_id: HashMap<&str, usize, foldhash::fast::RandomState> = fresh
            .iter()
            .enumerate()
            .map(|(i, (_, id, _))| (id.as_str(), i))
            .collect();
        let mut batches = Vec::with_capacity(mapping_ids.len());
        for (mi, (mapping_id, changed)) in mapping_ids.iter().zip(all_changed).enumerate() {
            let c = answer.counts.mapping(mapping_id);
            // What the database did not return is unchanged.
            c.unchanged += (fresh.len() - changed.len()) as u64;
            let mut sends = Vec::with_capacity(changed.len());
            for (id, prior) in changed {
                let Some(&i) = by_id.get(id.as_str()) else {
                    continue;
                };
                let (sum, _, row) = &fresh[i];
                let (op, retried) = match &prior {
                    None => (Op::Added, false),
                    // Deleted, not yet confirmed, and back.
                    Some(p) if p.op == Change::Deleted && p.status != Settled::Synced => {
                        (Op::Added, false)
                    }
                    Some(p) if p.checksum == *sum => match p.status {
                        Settled::Pending => (op(p.op), true),
                        _ => {
                            c.unchanged += 1;
                            continue;
                        }
                    },
                    // Never delivered, now changed: still new to the destination.
                    Some(p) if p.status != Settled::Synced && p.op == Change::Added => {
                        (Op::Added, false)
                    }
                    Some(_) => (Op::Updated, false),
                };
                if retried {
                    c.retried += 1;
                } else {
                    c.change(op);
                }
                let mut row = row.clone();
                row.op = op;
                let send = Send {
                    id,
                    row,
                    checksum: sum.clone(),
                    prior,
                    retried,
                };
                sends.push((i, send));
            }
            // In the chunk's order, whatever order the database answered in.
            sends.sort_unstable_by_key(|(i, _)| *i);
            let sends: Vec<Send> = sends.into_iter().map(|(_, s)| s).collect();
            batches.push((mi, sends));
        }
        let sent = futures_util::future::join_all(
            batches.into_iter().map(|(mi, sends)| self.send(mi, sends)),
        )
        .await;
        for part in sent {
            self.absorb(part, &mut answer, &mut writes);
        }
        drop(ids);
        for (_, id, _) in fresh {
            self.received.insert(id);
        }
        self.record(&answer, writes, false).await?;
        Ok(answer)
    }

    /// What the caller did not send again: (FULL) deletions, and pending retries. Then the
    /// sync is finished as committed.
    pub(crate) async fn commit(&mut self) -> Result<Answer, Error> {
        self.refresh().await?;
        // Every id received is written before the ledger is read for what was not.
        self.record(&Answer::default(), Writes::default(), true)
            .await?;
        let mut answer = Answer::default();
        let nulls = self.null_columns().await?;
        for mi in 0..self.target.mappings().len() {
            let mapping_id = self.target.mappings()[mi].identity().mapping_id.clone();
            let mut after = String::new();
            loop {
                let page = self
                    .store
                    .unseen(
                        &self.run.id,
                        &mapping_id,
                        self.run.mode == SyncMode::Incremental,
                        &after,
                        PAGE,
                    )
                    .await?;
                let Some(last) = page.last() else {
                    break;
                };
                after = last.record_id.clone();
                let mut part = Answer::default();
                let c = part.counts.mapping(&mapping_id);
                let mut sends = Vec::with_capacity(page.len());
                for st in page {
                    let send = match self.run.mode {
                        SyncMode::Full => {
                            let settled_delete = st.op == Change::Deleted
                                && matches!(st.status, Settled::Rejected | Settled::GaveUp);
                            if settled_delete {
                                continue;
                            }
                            let retried = st.op == Change::Deleted && st.status == Settled::Pending;
                            match retried {
                                true => c.retried += 1,
                                false => c.deleted += 1,
                            }
                            let row = Row::new(
                                Some(st.record_id.clone()),
                                Op::Deleted,
                                nulls.clone(),
                                None,
                            );
                            Send {
                                id: st.record_id.clone(),
                                row,
                                checksum: st.checksum.clone(),
                                prior: Some(st),
                                retried,
                            }
                        }
                        SyncMode::Incremental => {
                            let columns = st
                                .columns
                                .as_deref()
                                .and_then(|c| crate::json::parse_columns(c).ok());
                            let Some(columns) = columns else {
                                tracing::warn!(
                                    record_id = %st.record_id,
                                    "a pending record has no readable columns: not retried"
                                );
                                continue;
                            };
                            c.retried += 1;
                            let row =
                                Row::new(Some(st.record_id.clone()), op(st.op), columns, None);
                            Send {
                                id: st.record_id.clone(),
                                row,
                                checksum: st.checksum.clone(),
                                prior: Some(st),
                                retried: true,
                            }
                        }
                    };
                    sends.push(send);
                }
                let mut writes = Writes::default();
                let sent = self.send(mi, sends).await;
                self.absorb(sent, &mut part, &mut writes);
                self.record(&part, writes, false).await?;
                answer.counts.merge(&part.counts);
                answer.results.append(&mut part.results);
            }
        }
        Ok(answer)
    }

    /// Ends the sync: committed or not, or failed by `error`. Returns it as recorded.
    pub(crate) async fn finish(mut self, committed: bool, error: Option<&Error>) -> SyncRun {
        let total = self.counts.total();
        let (status, message) = match (error, committed) {
            (Some(e), _) => (SyncStatus::Failed, e.to_string()),
            (None, false) => (
                SyncStatus::Incomplete,
                "the stream ended without commit: nothing was deleted".to_owned(),
            ),
            (None, true) if total.rejected + total.failed + total.gave_up > 0 => {
                (SyncStatus::CompletedWithFailures, String::new())
            }
            (None, true) => (SyncStatus::Completed, String::new()),
        };
        let mut message = message;
        if total.gave_up > 0 {
            message = format!(
                "{}gave up on {} record(s) after {} syncs or {} days (--sync-retry-syncs, \
                 --sync-retry-days)",
                if message.is_empty() {
                    String::new()
                } else {
                    format!("{message}; ")
                },
                total.gave_up,
                self.settings.retry_syncs,
                self.settings.retry_for.as_secs() / 86_400
            );
        }
        if self.run.dry_run {
            self.counts.estimated_calls = Some(total.would_send);
            let month = self
                .delivery
                .usage(&self.run.destination_id, crate::usage::Month::now())
                .await;
            self.counts.estimated_new_users = month.ok().map(|m| {
                let mut union = m.users.clone();
                union.merge(&self.dry_users);
                union.estimate().saturating_sub(m.users.estimate())
            });
        }
        self.run.status = status;
        self.run.ended_at = Some(now_ms());
        self.run.counts = self.counts.json();
        self.run.message = message;
        if committed {
            self.run.columns = serde_json::to_string(&self.columns).unwrap_or_else(|_| "[]".into());
        }
        let failures = std::mem::take(&mut self.dry_failures);
        if let Err(e) = self
            .store
            .finish_sync(&self.run, &failures, self.failures)
            .await
        {
            tracing::warn!(sync_id = %self.run.id, error = %e, "sync end not recorded: tried again");
            let every = self.settings.lease / 3;
            let (store, run, first) = (self.store.clone(), self.run.clone(), self.failures);
            super::record_end_later(store, run, failures, first, every);
        }
        crate::metrics::record_sync_ended(
            status.as_str(),
            [
                ("added", total.added),
                ("updated", total.updated),
                ("deleted", total.deleted),
                ("unchanged", total.unchanged),
                ("retried", total.retried),
                ("gave_up", total.gave_up),
            ],
        );
        self.run.clone()
    }

    /// The columns a deletion carries, every one null: those this sync received, else those
    /// the last committed sync did.
    async fn null_columns(&self) -> Result<crate::json::Columns, Error> {
        let names: Vec<String> = match self.columns.is_empty() {
            false => self.columns.iter().cloned().collect(),
            true => {
                let json = self
                    .store
                    .last_columns(&self.run.destination_id, &self.run.model)
                    .await?;
                serde_json::from_str(&json).unwrap_or_default()
            }
        };
        let object: serde_json::Map<String, serde_json::Value> = names
            .into_iter()
            .map(|n| (n, serde_json::Value::Null))
            .collect();
        let bytes = serde_json::to_vec(&object).unwrap_or_else(|_| b"{}".to_vec());
        crate::json::parse_columns(&bytes)
            .map_err(|e| Error::Internal(format!("null columns of a deletion: {e}")))
    }

    /// Writes a chunk's results, the ids received and the sync's progress, in one transaction;
    /// nothing when there is no result to write (unless `flush`, or too many ids wait). A dry
    /// run writes only the ids and its progress (its failures go with its end).
    async fn record(&mut self, answer: &Answer, writes: Writes, flush: bool) -> Result<(), Error> {
        self.counts.merge(&answer.counts);
        let Writes {
            state,
            mut failures,
        } = writes;
        let room = self
            .settings
            .max_failures_kept
            .saturating_sub(self.failures + self.dry_failures.len() as u64);
        failures.truncate(usize::try_from(room).unwrap_or(usize::MAX));
        if self.run.dry_run {
            self.dry_failures.append(&mut failures);
        }
        let due = flush || self.received.unflushed() >= MAX_UNFLUSHED_IDS;
        if state.is_empty() && failures.is_empty() && !due {
            return Ok(());
        }
        let counts = self.counts.json();
        let progress = Progress {
            received: self.run.received,
            counts: &counts,
            first_failure: self.failures,
        };
        let seen = self.received.to_flush();
        self.store
            .record(&self.run.id, &seen, &state, &failures, progress)
            .await?;
        drop(seen);
        self.received.flushed();
        self.failures += failures.len() as u64;
        Ok(())
    }

    /// Sends (or, dry, renders) one mapping's records and settles each result.
    async fn send(&self, mi: usize, sends: Vec<Send>) -> Sent {
        let mut sent = Sent::default();
        if sends.is_empty() {
            return sent;
        }
        let (answer, writes) = (&mut sent.answer, &mut sent.writes);
        let mapping = self.target.mappings()[mi].clone();
        let mapping_id = mapping.identity().mapping_id.clone();
        if self.run.dry_run {
            let budget = self.delivery.settings().max_render_bytes_per_row;
            for s in sends {
                let t = mapping.test_within(&s.row, budget);
                let status = match (t.skipped, t.accepted) {
                    (true, _) => SyncResultStatus::Skipped,
                    (false, true) => SyncResultStatus::WouldSend,
                    (false, false) => SyncResultStatus::Rejected,
                };
                if status == SyncResultStatus::WouldSend
                    && let Some(h) = t
                        .event_json
                        .as_deref()
                        .and_then(|e| crate::usage::user_hash(e.as_bytes()))
                {
                    sent.users.push(h);
                }
                let event_json = t.event_json.filter(|e| {
                    e.len() <= MAX_ECHOED_EVENT_BYTES && status != SyncResultStatus::Skipped
                });
                let result = SyncResult {
                    record_id: s.id,
                    mapping_id: mapping_id.clone(),
                    change: Some(s.row.op),
                    status,
                    message_id: t.message_id,
                    issues: t.issues,
                    retried: s.retried,
                    event_json,
                };
                self.settle_result(answer, writes, result);
            }
            return sent;
        }
        let one = self.target.only(mi);
        let inputs = sends
            .iter()
            .map(|s| Input {
                id: s.id.clone(),
                row: Ok(s.row.clone()),
            })
            .collect();
        let results = self
            .delivery
            .submit(&one, inputs, &self.seen, self.stop())
            .await;
        let now = now_ms();
        for r in results {
            let Some(s) = sends.get(r.row_index as usize) else {
                continue;
            };
            let op = s.row.op;
            let mut issues = r.issues;
            let (status, state) = match r.status {
                RowStatus::Delivered | RowStatus::Skipped => {
                    let status = match r.status {
                        RowStatus::Delivered => SyncResultStatus::Delivered,
                        _ => SyncResultStatus::Skipped,
                    };
                    (
                        status,
                        (op != Op::Deleted).then_some((Settled::Synced, 0, 0)),
                    )
                }
                RowStatus::Failed | RowStatus::Pending if r.retryable => {
                    let (tries, since) = match (&s.prior, s.retried) {
                        (Some(p), true) => (p.tries + 1, p.since),
                        _ => (1, now),
                    };
                    let out_of_time = now - since >= self.settings.retry_for.as_millis() as i64;
                    if tries >= self.settings.retry_syncs || out_of_time {
                        issues.push(Issue::new(
                            IssueCode::RetriesExhausted,
                            "",
                            format!(
                                "gave up: {tries} syncs have tried this event since it first \
                                 failed (--sync-retry-syncs {}, --sync-retry-days {}); it is \
                                 sent again when the row changes or the model is reset",
                                self.settings.retry_syncs,
                                self.settings.retry_for.as_secs() / 86_400
                            ),
                        ));
                        (
                            SyncResultStatus::GaveUp,
                            Some((Settled::GaveUp, tries, since)),
                        )
                    } else {
                        (
                            SyncResultStatus::Failed,
                            Some((Settled::Pending, tries, since)),
                        )
                    }
                }
                RowStatus::Failed | RowStatus::Pending => {
                    (SyncResultStatus::Failed, Some((Settled::Rejected, 0, now)))
                }
                RowStatus::Rejected => (
                    SyncResultStatus::Rejected,
                    Some((Settled::Rejected, 0, now)),
                ),
            };
            match state {
                None => writes.state.push(StateWrite::Remove {
                    mapping_id: mapping_id.clone(),
                    record_id: s.id.clone(),
                }),
                Some((settled, tries, since)) => writes.state.push(StateWrite::Put {
                    mapping_id: mapping_id.clone(),
                    state: RecordState {
                        record_id: s.id.clone(),
                        checksum: s.checksum.clone(),
                        status: settled,
                        op: change(op),
                        tries,
                        since,
                        columns: (settled == Settled::Pending)
                            .then(|| s.row.canonical_columns().to_vec()),
                    },
                }),
            }
            let result = SyncResult {
                record_id: s.id.clone(),
                mapping_id: mapping_id.clone(),
                change: Some(op),
                status,
                message_id: r.message_id,
                issues,
                retried: s.retried,
                event_json: None,
            };
            self.settle_result(answer, writes, result);
        }
        sent
    }

    /// Adds what one mapping's sends did to a chunk's answer and writes.
    fn absorb(&mut self, part: Sent, answer: &mut Answer, writes: &mut Writes) {
        let Sent {
            answer: mut a,
            writes: mut w,
            users,
        } = part;
        answer.counts.merge(&a.counts);
        answer.results.append(&mut a.results);
        writes.state.append(&mut w.state);
        writes.failures.append(&mut w.failures);
        for h in users {
            self.dry_users.insert_hash(h);
        }
    }

    /// Counts a result, and lists and keeps it unless it was delivered.
    fn settle_result(&self, answer: &mut Answer, writes: &mut Writes, result: SyncResult) {
        let c: &mut MappingCounts = answer.counts.mapping(&result.mapping_id);
        match result.status {
            SyncResultStatus::Delivered => c.delivered += 1,
            SyncResultStatus::Rejected => c.rejected += 1,
            SyncResultStatus::Failed => c.failed += 1,
            SyncResultStatus::Skipped => c.skipped += 1,
            SyncResultStatus::GaveUp => c.gave_up += 1,
            SyncResultStatus::WouldSend => c.would_send += 1,
        }
        if matches!(
            result.status,
            SyncResultStatus::Rejected | SyncResultStatus::Failed | SyncResultStatus::GaveUp
        ) {
            writes.failures.push(failure_of(&result));
        }
        if result.status != SyncResultStatus::Delivered {
            answer.results.push(result);
        }
    }
}

fn failure_of(r: &SyncResult) -> FailureRecord {
    let issue = r.issues.last();
    FailureRecord {
        record_id: r.record_id.clone(),
        mapping_id: r.mapping_id.clone(),
        status: r.status.as_str().to_owned(),
        code: issue.map(|i| i.code.as_str()).unwrap_or("").to_owned(),
        pointer: issue.map(|i| i.pointer.clone()).unwrap_or_default(),
        message: issue.map(|i| i.message.clone()).unwrap_or_default(),
        message_id: r.message_id.clone(),
        event_json: r.event_json.clone(),
    }
}

/// A record refused before any mapping (not counted per mapping).
fn refuse(answer: &mut Answer, id: String, issue: Issue) {
    answer.counts.rejected_records += 1;
    answer.results.push(SyncResult {
        record_id: id,
        mapping_id: String::new(),
        change: None,
        status: SyncResultStatus::Rejected,
        message_id: None,
        issues: vec![issue],
        retried: false,
        event_json: None,
    });
}

fn duplicate(answer: &mut Answer, id: String) {
    refuse(
        answer,
        id,
        Issue::new(
            IssueCode::DuplicateRecordId,
            "/id",
            "this sync already received a record with this id; the first one counts",
        ),
    );
}

fn change(op: Op) -> Change {
    match op {
        Op::Added => Change::Added,
        Op::Updated => Change::Updated,
        Op::Deleted => Change::Deleted,
    }
}

fn op(c: Change) -> Op {
    match c {
        Change::Added => Op::Added,
        Change::Updated => Op::Updated,
        Change::Deleted => Op::Deleted,
    }
}
