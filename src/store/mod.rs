//! The store: destinations and mappings behind the [`Store`] trait, with an embedded SQLite
//! backend (`sqlite.rs`) and a PostgreSQL backend for several replicas (`postgres.rs`), either
//! chosen at start-up (`any.rs`). Both run the same statements (`sql.rs`) through the same
//! implementation (`shared.rs`) and read their errors alike (`errors.rs`); the backend files
//! hold only what is their own (pool setup, PRAGMAs, migrations, LISTEN/NOTIFY). Write keys are
//! encrypted at rest (`crypto.rs`). Every write bumps a store-wide change version, and each
//! backend announces new versions on a broadcast channel, so an in-process cache can stay
//! fresh. Knows nothing of rendering or gRPC.

mod any;
pub(crate) mod crypto;
mod errors;
pub(crate) mod ledger;
mod model;
mod postgres;
mod redact;
mod rows;
mod shared;
mod sql;
mod sqlite;
mod watch;

use std::fmt;
use std::future::Future;

pub use crate::sender::WriteKey;
pub use any::AnyStore;
pub use crypto::{CryptoError, KeyRing};
pub use ledger::{
    Change, FailureRecord, Ledger, NewSync, Progress, RecordState, Settled, StateWrite, SyncMode,
    SyncRun, SyncStatus,
};
pub use model::{
    AllowedUpstreams, Destination, DestinationPatch, MAX_MAPPINGS_PER_DESTINATION, MappingContent,
    MappingRecord, Name, NewDestination, RateLimit, Region, check_model,
};
pub use postgres::{PostgresOptions, PostgresStore};
pub(crate) use redact::redact_store_url;
pub use sqlite::SqliteStore;
pub use watch::watch_changes;

/// How many change versions a lagging subscriber may fall behind before it sees
/// `RecvError::Lagged` (it then reloads; only the newest version matters).
const CHANGE_CHANNEL_CAPACITY: usize = 64;

/// The newest change version known to this process, and its subscribers: each version is sent
/// once, in increasing order, whichever task learns of it first.
#[derive(Debug)]
struct Feed {
    last: std::sync::Mutex<u64>,
    tx: tokio::sync::broadcast::Sender<u64>,
}

impl Feed {
    fn new(version: u64) -> Feed {
        Feed {
            last: std::sync::Mutex::new(version),
            tx: tokio::sync::broadcast::channel(CHANGE_CHANNEL_CAPACITY).0,
        }
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<u64> {
        self.tx.subscribe()
    }

    /// Sends `version` if it is newer than any sent before.
    fn publish(&self, version: u64, source: &'static str) {
        // Held across the send, so versions go out in order.
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if version > *last {
            *last = version;
            tracing::debug!(version, source, "store change seen");
            // No subscriber is fine.
            let _ = self.tx.send(version);
        }
    }
}

/// What a store error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Destination,
    Mapping,
    Sync,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Destination => "destination",
            Kind::Mapping => "mapping",
            Kind::Sync => "sync",
        })
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {id} not found")]
    NotFound { kind: Kind, id: String },
    #[error("{kind} name {name:?} is taken{}", scope_suffix(.scope))]
    NameTaken {
        kind: Kind,
        name: String,
        /// The destination a mapping name is unique in.
        scope: Option<String>,
    },
    #[error("destination {destination_id} already has {limit} mappings, the most allowed")]
    TooManyMappings {
        destination_id: String,
        limit: usize,
    },
    #[error("{kind} {id}: version {expected} is stale, the current version is {actual}")]
    StaleVersion {
        kind: Kind,
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Start-up check: stored write keys the given key ring cannot open.
    #[error(
        "{count} stored write key(s) cannot be decrypted with the given encryption key(s); \
         first: destination {destination_id}: {cause}. Give the key that sealed them (previous \
         keys go on later lines of the key file, after the current one)"
    )]
    UndecryptableWriteKeys {
        count: usize,
        destination_id: String,
        cause: CryptoError,
    },
    /// The database cannot be reached (down, restarting, connections exhausted, a disk I/O
    /// error, locked for too long): the call may succeed when retried.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No space is left for the write (SQLite: its volume is full; PostgreSQL: `disk_full`);
    /// nothing was stored. Writes succeed again once space is freed; reads still work.
    #[error("store full: {0}")]
    Full(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("store backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub(crate) fn not_found(kind: Kind, id: &str) -> StoreError {
        StoreError::NotFound {
            kind,
            id: id.to_owned(),
        }
    }

    /// Why an update conditional on `expected` matched no row: the row is gone (`actual` is
    /// `None`), or it has moved on to version `actual`.
    pub(crate) fn stale_or_missing(
        kind: Kind,
        id: &str,
        expected: u64,
        actual: Option<u64>,
    ) -> StoreError {
        match actual {
            None => StoreError::not_found(kind, id),
            Some(actual) => StoreError::StaleVersion {
                kind,
                id: id.to_owned(),
                expected,
                actual,
            },
        }
    }
}

fn scope_suffix(scope: &Option<String>) -> String {
    scope
        .as_deref()
        .map(|d| format!(" in destination {d}"))
        .unwrap_or_default()
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Destinations and their mappings. Every write is atomic; `update_*` succeed only when the
/// caller's version is the current one.
pub trait Store: Send + Sync + 'static {
    fn create_destination(
        &self,
        new: NewDestination,
    ) -> impl Future<Output = Result<Destination>> + Send;
    fn get_destination(&self, id: &str) -> impl Future<Output = Result<Destination>> + Send;
    /// All destinations, by name.
    fn list_destinations(&self) -> impl Future<Output = Result<Vec<Destination>>> + Send;
    fn update_destination(
        &self,
        id: &str,
        version: u64,
        patch: DestinationPatch,
    ) -> impl Future<Output = Result<Destination>> + Send;
    /// Deletes the destination and its mappings.
    fn delete_destination(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// The write key, decrypted (for delivery; never returned to callers).
    fn destination_write_key(&self, id: &str) -> impl Future<Output = Result<WriteKey>> + Send;

    /// Fails with `TooManyMappings` past [`MAX_MAPPINGS_PER_DESTINATION`].
    fn create_mapping(
        &self,
        destination_id: &str,
        content: MappingContent,
    ) -> impl Future<Output = Result<MappingRecord>> + Send;
    fn get_mapping(&self, id: &str) -> impl Future<Output = Result<MappingRecord>> + Send;
    /// The destination's mappings, by name; `NotFound` for an unknown destination.
    fn list_mappings(
        &self,
        destination_id: &str,
    ) -> impl Future<Output = Result<Vec<MappingRecord>>> + Send;
    fn update_mapping(
        &self,
        id: &str,
        version: u64,
        content: MappingContent,
    ) -> impl Future<Output = Result<MappingRecord>> + Send;
    fn delete_mapping(&self, id: &str) -> impl Future<Output = Result<()>> + Send;

    /// The store-wide change version: bumped in the same transaction as every write (including
    /// the mapping deletes a destination's deletion cascades to), never decreasing. A cache
    /// compares it with the version it loaded to know whether to reload.
    fn catalog_version(&self) -> impl Future<Output = Result<u64>> + Send;

    /// New change versions as they become known: from this process's own writes, and with
    /// PostgreSQL from every replica (LISTEN/NOTIFY, and polling as the fallback when
    /// notifications are lost, e.g. across a reconnect). Versions arrive increasing, possibly
    /// skipping some; after `Lagged`, reload. `None` when the backend cannot tell (poll
    /// [`Store::catalog_version`] instead).
    fn subscribe_changes(&self) -> Option<tokio::sync::broadcast::Receiver<u64>>;

    /// Re-encrypts every stored write key not sealed with the key ring's current key under it;
    /// returns how many were re-encrypted. Safe beside running replicas: each write key is
    /// replaced only if it is still the ciphertext that was read. Changes no destination's
    /// version (the write key itself is unchanged).
    fn reencrypt_write_keys(&self) -> impl Future<Output = Result<u64>> + Send;

    /// Adds each delta's counts to its destination's month and merges its sketch in (a read,
    /// merge and write under the row's lock, so replicas flushing at once lose nothing).
    /// Deltas of destinations that are gone are dropped. Not a catalog write: no change
    /// version moves. A stored sketch that cannot be read is replaced by the delta's.
    fn add_usage(&self, deltas: &[crate::usage::Delta]) -> impl Future<Output = Result<()>> + Send;

    /// A destination's month as stored (every replica's flushes); zero for a month with none;
    /// `NotFound` for an unknown destination.
    fn usage(
        &self,
        destination_id: &str,
        month: crate::usage::Month,
    ) -> impl Future<Output = Result<crate::usage::Usage>> + Send;
}

/// A stored write key as read for the start-up check and re-encryption.
struct StoredKey {
    destination_id: String,
    sealed: crypto::Sealed,
}

/// Start-up check: fails, naming the first destination and key, when any stored write key does
/// not open with `keys`.
fn check_stored_keys(keys: &KeyRing, stored: &[StoredKey]) -> Result<()> {
    let mut failures = stored.iter().filter_map(|s| {
        keys.open(&s.sealed, s.destination_id.as_bytes())
            .err()
            .map(|e| (s, e))
    });
    let Some((first, cause)) = failures.next() else {
        return Ok(());
    };
    let destination_id = first.destination_id.clone();
    Err(StoreError::UndecryptableWriteKeys {
        count: 1 + failures.count(),
        destination_id,
        cause,
    })
}

/// Opens a stored write key (sealed with the destination `id` as associated data).
fn open_write_key(keys: &KeyRing, sealed: &crypto::Sealed, id: &str) -> Result<WriteKey> {
    let plain = keys.open(sealed, id.as_bytes())?;
    let text = String::from_utf8(plain).map_err(|_| {
        StoreError::Backend(format!("destination {id}: stored write key is not UTF-8").into())
    })?;
    WriteKey::parse(text)
        .map_err(|e| StoreError::Backend(format!("destination {id}: stored write key {e}").into()))
}

/// Whether one more mapping may go in: `count` is how many the destination has, `None` when
/// there is no such destination.
fn check_mapping_count(destination_id: &str, count: Option<i64>) -> Result<()> {
    match count {
        None => Err(StoreError::not_found(Kind::Destination, destination_id)),
        Some(n) if n >= MAX_MAPPINGS_PER_DESTINATION as i64 => Err(StoreError::TooManyMappings {
            destination_id: destination_id.to_owned(),
            limit: MAX_MAPPINGS_PER_DESTINATION,
        }),
        Some(_) => Ok(()),
    }
}

/// A new server-assigned id: `prefix` + 20 random hex digits.
fn new_id(prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Backend(Box::new(e)))?;
    Ok(format!("{prefix}{}", crate::sender::hex(&bytes)))
}
