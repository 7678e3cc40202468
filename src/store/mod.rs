//! The store: destinations and mappings behind the [`Store`] trait, with an embedded SQLite
//! backend (`sqlite.rs`). Write keys are encrypted at rest (`crypto.rs`). Knows nothing of
//! rendering or gRPC.

pub mod cache;
pub mod crypto;
mod model;
mod secret;
mod sqlite;

use std::fmt;
use std::future::Future;

pub use crypto::{CryptoError, KeyRing};
pub use model::{
    Destination, DestinationPatch, MAX_MAPPINGS_PER_DESTINATION, MappingContent, MappingRecord,
    Name, NewDestination, Region,
};
pub use secret::WriteKey;
pub use sqlite::SqliteStore;

/// What a store error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Destination,
    Mapping,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Destination => "destination",
            Kind::Mapping => "mapping",
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
    #[error("store backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn scope_suffix(scope: &Option<String>) -> String {
    scope
        .as_deref()
        .map(|d| format!(" in destination {d}"))
        .unwrap_or_default()
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

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
}

/// A new server-assigned id: `prefix` + 20 random hex digits.
fn new_id(prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Backend(Box::new(e)))?;
    Ok(format!("{prefix}{}", secret::hex(&bytes)))
}
