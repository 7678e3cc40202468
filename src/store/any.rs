//! The store `serve` runs on, chosen by `--store`: SQLite or PostgreSQL behind one type.

use tokio::sync::broadcast;

use super::{
    Destination, DestinationPatch, FailureRecord, Ledger, MappingContent, MappingRecord,
    NewDestination, NewSync, PostgresStore, Progress, RecordState, Result, SqliteStore, StateWrite,
    Store, SyncRun, WriteKey,
};

/// Either backend; every call goes to the one chosen.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl AnyStore {
    /// Closes the backend's connections.
    pub(crate) async fn close(&self) {
        match self {
            AnyStore::Sqlite(s) => s.close().await,
            AnyStore::Postgres(s) => s.close().await,
        }
    }
}

impl From<SqliteStore> for AnyStore {
    fn from(s: SqliteStore) -> AnyStore {
        AnyStore::Sqlite(s)
    }
}

impl From<PostgresStore> for AnyStore {
    fn from(s: PostgresStore) -> AnyStore {
        AnyStore::Postgres(s)
    }
}

/// `dispatch!(self, s => s.call(..))` runs the call on whichever backend this is.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $call,
            AnyStore::Postgres($s) => $call,
        }
    };
}

impl Store for AnyStore {
    async fn create_destination(&self, new: NewDestination) -> Result<Destination> {
        dispatch!(self, s => s.create_destination(new).await)
    }

    async fn get_destination(&self, id: &str) -> Result<Destination> {
        dispatch!(self, s => s.get_destination(id).await)
    }

    async fn list_destinations(&self) -> Result<Vec<Destination>> {
        dispatch!(self, s => s.list_destinations().await)
    }

    async fn update_destination(
        &self,
        id: &str,
        version: u64,
        patch: DestinationPatch,
    ) -> Result<Destination> {
        dispatch!(self, s => s.update_destination(id, version, patch).await)
    }

    async fn delete_destination(&self, id: &str) -> Result<()> {
        dispatch!(self, s => s.delete_destination(id).await)
    }

    async fn destination_write_key(&self, id: &str) -> Result<WriteKey> {
        dispatch!(self, s => s.destination_write_key(id).await)
    }

    async fn create_mapping(
        &self,
        destination_id: &str,
        content: MappingContent,
    ) -> Result<MappingRecord> {
        dispatch!(self, s => s.create_mapping(destination_id, content).await)
    }

    async fn get_mapping(&self, id: &str) -> Result<MappingRecord> {
        dispatch!(self, s => s.get_mapping(id).await)
    }

    async fn list_mappings(&self, destination_id: &str) -> Result<Vec<MappingRecord>> {
        dispatch!(self, s => s.list_mappings(destination_id).await)
    }

    async fn update_mapping(
        &self,
        id: &str,
        version: u64,
        content: MappingContent,
    ) -> Result<MappingRecord> {
        dispatch!(self, s => s.update_mapping(id, version, content).await)
    }

    async fn delete_mapping(&self, id: &str) -> Result<()> {
        dispatch!(self, s => s.delete_mapping(id).await)
    }

    async fn catalog_version(&self) -> Result<u64> {
        dispatch!(self, s => s.catalog_version().await)
    }

    fn subscribe_changes(&self) -> Option<broadcast::Receiver<u64>> {
        dispatch!(self, s => s.subscribe_changes())
    }

    async fn reencrypt_write_keys(&self) -> Result<u64> {
        dispatch!(self, s => s.reencrypt_write_keys().await)
    }

    async fn add_usage(&self, deltas: &[crate::usage::Delta]) -> Result<()> {
        dispatch!(self, s => s.add_usage(deltas).await)
    }

    async fn usage(
        &self,
        destination_id: &str,
        month: crate::usage::Month,
    ) -> Result<crate::usage::Usage> {
        dispatch!(self, s => s.usage(destination_id, month).await)
    }
}

impl Ledger for AnyStore {
    async fn start_sync(&self, new: &NewSync) -> Result<std::result::Result<SyncRun, String>> {
        dispatch!(self, s => s.start_sync(new).await)
    }

    async fn renew_sync(&self, sync_id: &str, now: i64) -> Result<bool> {
        dispatch!(self, s => s.renew_sync(sync_id, now).await)
    }

    async fn seen_among(&self, sync_id: &str, ids: &[&str]) -> Result<Vec<String>> {
        dispatch!(self, s => s.seen_among(sync_id, ids).await)
    }

    async fn changed(
        &self,
        mapping_id: &str,
        records: &[(&str, &[u8])],
    ) -> Result<Vec<(String, Option<RecordState>)>> {
        dispatch!(self, s => s.changed(mapping_id, records).await)
    }

    async fn unseen(
        &self,
        sync_id: &str,
        mapping_id: &str,
        pending_only: bool,
        after: &str,
        limit: u32,
    ) -> Result<Vec<RecordState>> {
        dispatch!(self, s => s.unseen(sync_id, mapping_id, pending_only, after, limit).await)
    }

    async fn record(
        &self,
        sync_id: &str,
        seen: &[&str],
        writes: &[StateWrite],
        failures: &[FailureRecord],
        progress: Progress<'_>,
    ) -> Result<()> {
        dispatch!(self, s => s.record(sync_id, seen, writes, failures, progress).await)
    }

    async fn finish_sync(
        &self,
        run: &SyncRun,
        failures: &[FailureRecord],
        first_failure: u64,
    ) -> Result<()> {
        dispatch!(self, s => s.finish_sync(run, failures, first_failure).await)
    }

    async fn get_sync(&self, id: &str) -> Result<SyncRun> {
        dispatch!(self, s => s.get_sync(id).await)
    }

    async fn list_syncs(
        &self,
        destination_id: &str,
        model: Option<&str>,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<SyncRun>> {
        dispatch!(self, s => s.list_syncs(destination_id, model, before, limit).await)
    }

    async fn list_sync_failures(
        &self,
        sync_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, FailureRecord)>> {
        dispatch!(self, s => s.list_sync_failures(sync_id, after, limit).await)
    }

    async fn reset_sync(
        &self,
        destination_id: &str,
        model: &str,
        mapping_id: Option<&str>,
        now: i64,
        lease: i64,
    ) -> Result<std::result::Result<u64, String>> {
        dispatch!(self, s => s.reset_sync(destination_id, model, mapping_id, now, lease).await)
    }

    async fn last_columns(&self, destination_id: &str, model: &str) -> Result<String> {
        dispatch!(self, s => s.last_columns(destination_id, model).await)
    }

    async fn prune_syncs(&self, before: i64) -> Result<u64> {
        dispatch!(self, s => s.prune_syncs(before).await)
    }
}
