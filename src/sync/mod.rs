//! Syncs (docs/DESIGN.md, "Syncs"): a caller streams a model's current records; per enabled
//! mapping the ledger (`store::ledger`) says which are added, updated or unchanged since what was
//! last settled, only those go out through the row path (`delivery`), and every result is
//! written back as it is known. `commit` then sends the deletions (FULL) and retries the pending
//! records the caller did not send again. `run.rs` is one sync; this file its settings, inputs
//! and counts.
//!
//! Inside the folder: mod → run → received.

mod received;
mod run;

use std::sync::Arc;
use std::time::Duration;

use sha2::Digest as _;

pub(crate) use run::{Answer, RunningSync, SyncResult, SyncResultStatus};

use crate::delivery::Delivery;
use crate::error::Error;
use crate::issue::Issue;
use crate::mapping::{Op, Row};
use crate::store::{Ledger, NewSync, Store, SyncMode};

/// Sync settings (`serve` flags).
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// A failed record is retried by at most this many syncs (`--sync-retry-syncs`).
    pub retry_syncs: u32,
    /// … and for at most this long after it first failed (`--sync-retry-days`).
    pub retry_for: Duration,
    /// Syncs older than this leave the history (`--sync-history-days`).
    pub history_for: Duration,
    /// A running sync not renewed for this long is abandoned (`--sync-lease-seconds`).
    pub lease: Duration,
    /// The most failures a sync's history keeps (its counts stay exact).
    pub max_failures_kept: u64,
}

impl Default for SyncSettings {
    fn default() -> SyncSettings {
        SyncSettings {
            retry_syncs: 5,
            retry_for: Duration::from_secs(14 * 86_400),
            history_for: Duration::from_secs(14 * 86_400),
            lease: Duration::from_secs(30),
            max_failures_kept: 10_000,
        }
    }
}

/// One record as the caller sent it: its id and its row (op not yet known) with the row's
/// checksum, or why it could not be read.
#[derive(Debug)]
pub(crate) struct Record {
    pub id: String,
    pub row: Result<(Row, Vec<u8>), Issue>,
}

impl Record {
    pub(crate) fn new(id: String, row: Result<Row, Issue>) -> Record {
        Record {
            id,
            row: row.map(|row| {
                let sum = checksum(&row);
                (row, sum)
            }),
        }
    }
}

/// What one mapping did in a chunk or a sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct MappingCounts {
    pub mapping_id: String,
    pub added: u64,
    pub updated: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub delivered: u64,
    pub rejected: u64,
    pub failed: u64,
    pub skipped: u64,
    pub retried: u64,
    pub gave_up: u64,
    pub would_send: u64,
}

impl MappingCounts {
    fn new(mapping_id: &str) -> MappingCounts {
        MappingCounts {
            mapping_id: mapping_id.to_owned(),
            ..MappingCounts::default()
        }
    }

    fn merge(&mut self, o: &MappingCounts) {
        self.added += o.added;
        self.updated += o.updated;
        self.deleted += o.deleted;
        self.unchanged += o.unchanged;
        self.delivered += o.delivered;
        self.rejected += o.rejected;
        self.failed += o.failed;
        self.skipped += o.skipped;
        self.retried += o.retried;
        self.gave_up += o.gave_up;
        self.would_send += o.would_send;
    }

    fn change(&mut self, op: Op) {
        match op {
            Op::Added => self.added += 1,
            Op::Updated => self.updated += 1,
            Op::Deleted => self.deleted += 1,
        }
    }
}

/// A sync's counts: per mapping, and the records rejected before any mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SyncCounts {
    pub mappings: Vec<MappingCounts>,
    pub rejected_records: u64,
    /// A dry run's cost: the Tracking API calls its events would make, and how many of their
    /// users would be new to the destination this month (the MTU estimate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_calls: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_new_users: Option<u64>,
}

impl SyncCounts {
    pub(crate) fn parse(json: &str) -> SyncCounts {
        serde_json::from_str(json).unwrap_or_default()
    }

    fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    fn mapping(&mut self, id: &str) -> &mut MappingCounts {
        let i = match self.mappings.iter().position(|m| m.mapping_id == id) {
            Some(i) => i,
            None => {
                self.mappings.push(MappingCounts::new(id));
                self.mappings.len() - 1
            }
        };
        &mut self.mappings[i]
    }

    fn merge(&mut self, o: &SyncCounts) {
        for m in &o.mappings {
            self.mapping(&m.mapping_id).merge(m);
        }
        self.rejected_records += o.rejected_records;
    }

    /// Every mapping's counts summed.
    pub(crate) fn total(&self) -> MappingCounts {
        let mut t = MappingCounts::default();
        for m in &self.mappings {
            t.merge(m);
        }
        t.rejected += self.rejected_records;
        t
    }
}

/// A row's checksum: the first 16 bytes of the SHA-256 of its canonical columns.
pub(crate) fn checksum(row: &Row) -> Vec<u8> {
    sha2::Sha256::digest(row.canonical_columns())[..16].to_vec()
}

/// How many times [`record_end_later`] tries.
const END_TRIES: u32 = 100;

/// Records the end of a sync that the store refused to record when it ended (full, or out of
/// reach): tried again every `every` (a third of the lease), up to [`END_TRIES`] times, so that
/// once the store takes writes again the sync shows how it ended and its model is free at once,
/// rather than RUNNING until its lease runs out (and ABANDONED by the next sync). A sync
/// abandoned meanwhile stays ABANDONED: the end is written only over RUNNING.
fn record_end_later<S: Ledger>(
    store: Arc<S>,
    run: crate::store::SyncRun,
    failures: Vec<crate::store::FailureRecord>,
    first_failure: u64,
    every: Duration,
) {
    tokio::spawn(async move {
        for _ in 0..END_TRIES {
            tokio::time::sleep(every).await;
            match store.finish_sync(&run, &failures, first_failure).await {
                Ok(()) => {
                    tracing::info!(sync_id = %run.id, status = run.status.as_str(), "sync end recorded");
                    return;
                }
                Err(e) => {
                    tracing::debug!(sync_id = %run.id, error = %e, "sync end not recorded yet")
                }
            }
        }
        tracing::warn!(
            sync_id = %run.id,
            "sync end never recorded: the next sync of its model records it ABANDONED after the lease"
        );
    });
}

/// The engine behind the `Sync` RPCs: the row path, the ledger, the settings.
pub(crate) struct Syncs<S> {
    delivery: Arc<Delivery<S>>,
    store: Arc<S>,
    settings: SyncSettings,
}

impl<S> std::fmt::Debug for Syncs<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncs")
            .field("settings", &self.settings)
            .finish()
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl<S: Store + Ledger> Syncs<S> {
    pub(crate) fn new(
        delivery: Arc<Delivery<S>>,
        store: Arc<S>,
        settings: SyncSettings,
    ) -> Syncs<S> {
        Syncs {
            delivery,
            store,
            settings,
        }
    }

    pub(crate) fn delivery_settings(&self) -> &crate::delivery::DeliverySettings {
        self.delivery.settings()
    }

    /// Starts a sync of `(destination_id, model)`: the target is checked first (an unknown
    /// destination or model fails the call), then the lock is taken (`SyncRunning` when another
    /// sync holds it). Old history is pruned on the way.
    pub(crate) async fn start(
        &self,
        destination_id: String,
        model: String,
        mode: SyncMode,
        dry_run: bool,
        stream_stop: Option<tokio::time::Instant>,
    ) -> Result<RunningSync<S>, Error> {
        let stop = stream_stop.unwrap_or_else(|| {
            self.delivery
                .settings()
                .stop_at(tokio::time::Instant::now(), None)
        });
        let target = self.delivery.target(&destination_id, &model, stop).await?;
        let now = now_ms();
        let pruned = self
            .store
            .prune_syncs(now - self.settings.history_for.as_millis() as i64)
            .await?;
        if pruned > 0 {
            tracing::info!(pruned, "syncs past --sync-history-days left the history");
        }
        let new = NewSync {
            destination_id,
            model,
            mode,
            dry_run,
            now,
            lease: self.settings.lease.as_millis() as i64,
        };
        let run = match self.store.start_sync(&new).await? {
            Ok(run) => run,
            Err(running) => {
                return Err(Error::SyncRunning {
                    destination_id: new.destination_id,
                    model: new.model,
                    sync_id: running,
                });
            }
        };
        crate::metrics::record_sync_started();
        Ok(RunningSync::new(
            self.delivery.clone(),
            self.store.clone(),
            self.settings.clone(),
            run,
            target,
            stream_stop,
        ))
    }

    /// Forgets the ledger of `(destination_id, model)` (or of one of its mappings); refused
    /// (`SyncRunning`) while a sync of the model runs, checked in the delete's transaction so
    /// that no sync can start or settle in between. Returns how many entries went.
    pub(crate) async fn reset(
        &self,
        destination_id: &str,
        model: &str,
        mapping_id: Option<&str>,
    ) -> Result<u64, Error> {
        let lease = self.settings.lease.as_millis() as i64;
        match self
            .store
            .reset_sync(destination_id, model, mapping_id, now_ms(), lease)
            .await?
        {
            Ok(forgotten) => Ok(forgotten),
            Err(running) => Err(Error::SyncRunning {
                destination_id: destination_id.to_owned(),
                model: model.to_owned(),
                sync_id: running,
            }),
        }
    }
}
