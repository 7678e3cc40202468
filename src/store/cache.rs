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
    /// The models its mappings read, enabled or not, sorted.
    pub models: Vec<String>,
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
                if let (StoreError::Unavailable(cause), Some(old)) = (&e, &old) {
                    // Rows keep flowing through an outage on what was last read.
                    tracing::warn!(destination_id = id, error = %cause, "store unavailable: using the cached destination");
                    return Ok(old.clone());
                }
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
        let mut models: Vec<String> = records.iter().map(|r| r.model.clone()).collect();
        models.sort_unstable();
        models.dedup();
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
            models,
            checked,
            generation,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{
        DestinationPatch, KeyRing, MappingContent, Name, NewDestination, Region, SqliteStore,
    };

    fn content(name: &str, event: &str, enabled: bool) -> MappingContent {
        let doc = serde_json::json!({
            "name": name, "model": "orders", "action": "track", "enabled": enabled,
            "fields": {"event_name": event, "user_id": {"@path": "$.properties.u"}}
        });
        MappingContent {
            name: Name::parse(name.into()).unwrap(),
            model: "orders".into(),
            enabled,
            document: doc.to_string(),
        }
    }

    /// A SQLite store in a temporary directory (kept alive by the first value) with one
    /// destination.
    async fn store_with_destination() -> (tempfile::TempDir, Arc<SqliteStore>, Destination) {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyRing::from_hex_lines(&"11".repeat(32)).unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("db"), keys)
                .await
                .unwrap(),
        );
        let d = store
            .create_destination(NewDestination {
                name: Name::parse("d".into()).unwrap(),
                region: Region::Us,
                write_key: WriteKey::parse("wk-0123456789".into()).unwrap(),
                enabled: true,
            })
            .await
            .unwrap();
        (dir, store, d)
    }

    #[tokio::test]
    async fn compiles_once_per_version_and_sees_changes() {
        let (_dir, store, d) = store_with_destination().await;
        let a = store
            .create_mapping(&d.id, content("a", "A", true))
            .await
            .unwrap();
        store
            .create_mapping(&d.id, content("b", "B", false))
            .await
            .unwrap();
        let cache = Cache::new(store.clone(), Duration::from_secs(3600));
        let e1 = cache.destination(&d.id).await.unwrap();
        assert_eq!(e1.mappings.len(), 1, "disabled mappings are left out");
        assert_eq!(e1.models, ["orders"], "but their models are known");
        assert_eq!(e1.mappings_for("orders").count(), 1);
        assert_eq!(e1.mappings_for("users").count(), 0);
        assert_eq!(e1.write_key.expose(), "wk-0123456789");

        // Fresh: the same entry, no store read.
        let e2 = cache.destination(&d.id).await.unwrap();
        assert!(Arc::ptr_eq(&e1, &e2));

        // A change without invalidation is not seen before max_age...
        let a2 = store
            .update_mapping(&a.id, 1, content("a", "A2", true))
            .await
            .unwrap();
        assert_eq!(
            cache.destination(&d.id).await.unwrap().mappings[0]
                .identity()
                .version,
            1
        );
        // ...and is after.
        cache.invalidate();
        let e3 = cache.destination(&d.id).await.unwrap();
        assert_eq!(e3.mappings[0].identity().version, a2.version);

        // Unchanged mappings are reused, not recompiled.
        cache.invalidate();
        let e4 = cache.destination(&d.id).await.unwrap();
        assert!(!Arc::ptr_eq(&e3, &e4));
        assert!(Arc::ptr_eq(&e3.mappings[0], &e4.mappings[0]));

        // Disabling the destination and deleting it.
        store
            .update_destination(
                &d.id,
                d.version,
                DestinationPatch {
                    enabled: Some(false),
                    ..DestinationPatch::default()
                },
            )
            .await
            .unwrap();
        cache.invalidate();
        assert!(!cache.destination(&d.id).await.unwrap().destination.enabled);
        store.delete_destination(&d.id).await.unwrap();
        cache.invalidate();
        assert!(matches!(
            cache.destination(&d.id).await,
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn stale_entries_are_checked_after_max_age() {
        let (_dir, store, d) = store_with_destination().await;
        let cache = Cache::new(store.clone(), Duration::ZERO);
        assert!(cache.destination(&d.id).await.unwrap().mappings.is_empty());
        store
            .create_mapping(&d.id, content("a", "A", true))
            .await
            .unwrap();
        // max_age zero: every lookup checks the store.
        assert_eq!(cache.destination(&d.id).await.unwrap().mappings.len(), 1);
    }
}
