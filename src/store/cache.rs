//! The row-path cache: each destination with its write key and its enabled mappings compiled
//! once per mapping version, kept fresh from the store.
//!
//! Freshness: an entry is trusted for `max_age` (default 200 ms); after that the next lookup
//! re-reads the destination and its mapping list (two small queries) and recompiles only the
//! mappings whose version changed. [`Cache::invalidate`] makes every entry stale at once: this
//! process calls it after its own writes, and a PostgreSQL LISTEN/NOTIFY listener can call it
//! when another replica writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::{Destination, Store, StoreError, WriteKey};
use crate::mapping::{Identity, Mapping, MappingDoc};

/// How long an entry is used without checking the store.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_millis(200);

/// One destination as the row path needs it.
#[derive(Debug)]
pub struct Entry {
    pub destination: Destination,
    pub write_key: WriteKey,
    /// Enabled mappings that compiled, by name.
    pub mappings: Vec<Arc<Mapping>>,
    checked: Instant,
    generation: u64,
}

impl Entry {
    /// The enabled mappings of `model`.
    pub fn mappings_for<'a>(&'a self, model: &'a str) -> impl Iterator<Item = &'a Arc<Mapping>> {
        self.mappings.iter().filter(move |m| m.model == model)
    }
}

/// Destinations and compiled mappings over a store.
pub struct Cache<S> {
    store: Arc<S>,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    generation: AtomicU64,
    max_age: Duration,
}

impl<S> std::fmt::Debug for Cache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl<S: Store> Cache<S> {
    pub fn new(store: Arc<S>, max_age: Duration) -> Cache<S> {
        Cache {
            store,
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
            max_age,
        }
    }

    /// Makes every entry stale: the next lookup of each checks the store.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The destination with its enabled mappings; `NotFound` when it does not exist.
    pub async fn destination(&self, id: &str) -> Result<Arc<Entry>, StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        let old = self.entries.read().ok().and_then(|e| e.get(id).cloned());
        if let Some(e) = &old
            && e.generation == generation
            && e.checked.elapsed() < self.max_age
        {
            return Ok(e.clone());
        }
        match self.load(id, old.as_deref(), generation).await {
            Ok(entry) => {
                let entry = Arc::new(entry);
                if let Ok(mut map) = self.entries.write() {
                    map.insert(id.to_owned(), entry.clone());
                }
                Ok(entry)
            }
            Err(e) => {
                if matches!(e, StoreError::NotFound { .. })
                    && let Ok(mut map) = self.entries.write()
                {
                    map.remove(id);
                }
                Err(e)
            }
        }
    }

    async fn load(
        &self,
        id: &str,
        old: Option<&Entry>,
        generation: u64,
    ) -> Result<Entry, StoreError> {
        let checked = Instant::now();
        let destination = self.store.get_destination(id).await?;
        let records = self.store.list_mappings(id).await?;
        let write_key = match old {
            Some(o) if o.destination.version == destination.version => o.write_key.clone(),
            _ => self.store.destination_write_key(id).await?,
        };
        let mut mappings = Vec::with_capacity(records.len());
        for r in records.into_iter().filter(|r| r.enabled) {
            let reuse = old.and_then(|o| {
                o.mappings.iter().find(|m| {
                    let i = m.identity();
                    i.mapping_id == r.id && i.version == r.version
                })
            });
            if let Some(m) = reuse {
                mappings.push(m.clone());
                continue;
            }
            let identity = Identity {
                destination_id: r.destination_id.clone(),
                mapping_id: r.id.clone(),
                version: r.version,
            };
            let compiled = MappingDoc::from_json(r.document.as_bytes())
                .map_err(|e| format!("does not parse: {e}"))
                .and_then(|doc| {
                    Mapping::compile(&doc, identity).map_err(|v| format!("does not compile: {v:?}"))
                });
            match compiled {
                Ok(m) => mappings.push(Arc::new(m)),
                // Validated when it was stored: only a newer, stricter build gets here.
                Err(e) => tracing::error!(mapping_id = %r.id, error = %e, "stored mapping skipped"),
            }
        }
        Ok(Entry {
            destination,
            write_key,
            mappings,
            checked,
            generation,
        })
    }
}
