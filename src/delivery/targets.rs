//! The row path's one cache: each destination with its enabled mappings compiled once per
//! mapping version and its sender (which holds the write key) built once per destination
//! version, kept fresh from the store.
//!
//! Freshness: an entry is trusted for `max_age` (default 200 ms); after that the next lookup
//! re-reads the destination and its mapping list (two small queries) and recompiles only the
//! mappings whose version changed. [`Cache::invalidate`] makes every entry stale at once: this
//! process calls it after its own writes, and the store's change feed calls it when another
//! replica writes. Memory: a lookup that finds a destination gone drops its entry, and entries
//! unused for [`IDLE_EVICTION`] are dropped, so a deleted destination's write key does not stay
//! in memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::deliver::Upstream;
use crate::mapping::{Identity, Mapping};
use crate::metrics::DestinationMetrics;
use crate::sender::{Limit, RetrySettings, SegmentClient};
use crate::store::{AllowedUpstreams, Destination, Store, StoreError};

/// How long an entry is used without checking the store.
pub(super) const DEFAULT_MAX_AGE: Duration = Duration::from_millis(200);

/// Entries no call has used for this long are dropped (checked at most this often).
pub(super) const IDLE_EVICTION: Duration = Duration::from_secs(60);

/// How the cache builds each destination's sender.
#[derive(Debug, Clone)]
pub(crate) struct Senders {
    pub http: reqwest::Client,
    pub retry: RetrySettings,
    /// Tests and local runs: every destination is sent here instead of its region.
    pub endpoint_override: Option<String>,
    pub allowed_upstreams: AllowedUpstreams,
}

/// One destination as the row path needs it.
#[derive(Debug)]
pub(crate) struct Entry {
    pub destination: Destination,
    /// Its sender: the only holder of its write key.
    pub upstream: Upstream,
    /// Enabled mappings that compiled, by name.
    pub mappings: Vec<Arc<Mapping>>,
    /// The stored version each of `mappings` was compiled from, in the same order.
    versions: Vec<u64>,
    /// Every model its mappings read, enabled or not, sorted, with its enabled mappings: a
    /// call takes its list without copying it.
    by_model: Vec<(String, Arc<[Arc<Mapping>]>)>,
    checked: Instant,
    generation: u64,
}

impl Entry {
    /// The enabled mappings of `model`; `None` when no mapping (enabled or not) reads it.
    pub(crate) fn mappings_for(&self, model: &str) -> Option<&Arc<[Arc<Mapping>]>> {
        let i = self
            .by_model
            .binary_search_by(|(m, _)| m.as_str().cmp(model))
            .ok()?;
        Some(&self.by_model[i].1)
    }

    /// The models its mappings read, sorted.
    pub(crate) fn models(&self) -> impl Iterator<Item = &str> {
        self.by_model.iter().map(|(m, _)| m.as_str())
    }
}

/// Destinations and compiled mappings over a store.
pub(crate) struct Cache<S> {
    store: Arc<S>,
    senders: Senders,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    generation: AtomicU64,
    max_age: Duration,
    /// Entries unused this long are dropped ([`IDLE_EVICTION`]).
    idle: Duration,
    last_sweep: std::sync::Mutex<Instant>,
}

impl<S> std::fmt::Debug for Cache<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl<S: Store> Cache<S> {
    pub(crate) fn new(store: Arc<S>, senders: Senders, max_age: Duration) -> Cache<S> {
        Cache {
            store,
            senders,
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
            max_age,
            idle: IDLE_EVICTION.max(max_age),
            last_sweep: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// How many destinations are held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.entries.read().map_or(0, |e| e.len())
    }

    /// Makes every entry stale: the next lookup of each checks the store.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Drops `id`'s entry (it was deleted here): its sender, write key and metric series go
    /// once the calls still using them end.
    pub(crate) fn forget(&self, id: &str) {
        if let Ok(mut map) = self.entries.write() {
            map.remove(id);
        }
    }

    /// The destination with its enabled mappings; `NotFound` when it does not exist.
    pub(crate) async fn destination(&self, id: &str) -> Result<Arc<Entry>, StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        let old = self.entries.read().ok().and_then(|e| e.get(id).cloned());
        if let Some(e) = &old
            && e.generation == generation
            && e.checked.elapsed() < self.max_age
        {
            return Ok(e.clone());
        }
        match self.load(id, old.as_deref(), generation).await {
            Ok(mut entry) => {
                let Ok(mut map) = self.entries.write() else {
                    return Ok(Arc::new(entry));
                };
                // Concurrent first lookups each load: all of them share the sender of whichever
                // was stored first, so a destination has one concurrency limit.
                if let Some(current) = map.get(id)
                    && current.destination.version == entry.destination.version
                {
                    entry.upstream = current.upstream.clone();
                }
                let entry = Arc::new(entry);
                map.insert(id.to_owned(), entry.clone());
                self.sweep(&mut map, entry.checked);
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

    /// Drops the entries unused for [`IDLE_EVICTION`], at most once per that period. An entry in
    /// use is re-checked every `max_age`, so only idle ones (and deleted destinations no call
    /// names any more) are old.
    fn sweep(&self, map: &mut HashMap<String, Arc<Entry>>, now: Instant) {
        let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(*last) < self.idle {
            return;
        }
        *last = now;
        map.retain(|_, e| now.duration_since(e.checked) < self.idle);
    }

    /// The sender of `destination`: a client for its region (or the override), or `Refused`
    /// when its custom host is not in `--allowed-upstreams` (no client then holds its key).
    async fn upstream(&self, destination: &Destination) -> Result<Upstream, StoreError> {
        let s = &self.senders;
        let region = &destination.region;
        let base = match &s.endpoint_override {
            Some(base) => base.as_str(),
            // Checked again here: the list may have shrunk since the region was stored.
            None if s.allowed_upstreams.allows(region) => region.base_url(),
            None => {
                tracing::warn!(
                    destination_id = %destination.id,
                    region = %region,
                    "not sending: the destination's host is not in --allowed-upstreams"
                );
                return Ok(Upstream::Refused);
            }
        };
        let write_key = self.store.destination_write_key(&destination.id).await?;
        let limit = Limit {
            per_second: destination.rate_limit.per_second(),
            metrics: DestinationMetrics::of(&destination.id),
        };
        Ok(Upstream::Client(SegmentClient::http(
            s.http.clone(),
            base,
            write_key,
            &s.retry,
            limit,
        )))
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
        // A new destination version may carry a new key, region or rate limit: a new sender
        // (in-flight batches finish on the old one; the new limit starts with a full bucket).
        let upstream = match old {
            Some(o) if o.destination.version == destination.version => o.upstream.clone(),
            _ => self.upstream(&destination).await?,
        };
        let mut models: Vec<String> = records.iter().map(|r| r.model.clone()).collect();
        models.sort_unstable();
        models.dedup();
        let mut mappings = Vec::with_capacity(records.len());
        let mut versions = Vec::with_capacity(records.len());
        for r in records.into_iter().filter(|r| r.enabled) {
            let reuse = old.and_then(|o| {
                o.mappings
                    .iter()
                    .zip(&o.versions)
                    .find(|(m, v)| m.identity().mapping_id == r.id && **v == r.version)
            });
            if let Some((m, _)) = reuse {
                mappings.push(m.clone());
                versions.push(r.version);
                continue;
            }
            let identity = Identity {
                destination_id: r.destination_id.clone(),
                mapping_id: r.id.clone(),
            };
            match Mapping::from_json(r.document.as_bytes(), Some(identity)) {
                Ok(m) => {
                    mappings.push(Arc::new(m));
                    versions.push(r.version);
                }
                // Validated when it was stored: only a newer, stricter build gets here.
                Err(v) => {
                    tracing::error!(mapping_id = %r.id, violations = ?v, "stored mapping skipped")
                }
            }
        }
        let by_model = models
            .into_iter()
            .map(|model| {
                let of: Arc<[_]> = mappings
                    .iter()
                    .filter(|m| m.model == model)
                    .cloned()
                    .collect();
                (model, of)
            })
            .collect();
        Ok(Entry {
            destination,
            upstream,
            mappings,
            versions,
            by_model,
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
        WriteKey,
    };

    /// Senders to a loopback port nothing listens on (these tests send nothing).
    fn senders() -> Senders {
        Senders {
            http: reqwest::Client::new(),
            retry: RetrySettings::default(),
            endpoint_override: Some("http://127.0.0.1:9".into()),
            allowed_upstreams: AllowedUpstreams::default(),
        }
    }

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
                rate_limit: Default::default(),
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
        let cache = Cache::new(store.clone(), senders(), Duration::from_secs(3600));
        let e1 = cache.destination(&d.id).await.unwrap();
        assert_eq!(e1.mappings.len(), 1, "disabled mappings are left out");
        assert_eq!(
            e1.models().collect::<Vec<_>>(),
            ["orders"],
            "but their models are known"
        );
        assert_eq!(e1.mappings_for("orders").map(|m| m.len()), Some(1));
        assert!(e1.mappings_for("users").is_none());
        assert!(matches!(e1.upstream, Upstream::Client(_)));

        // Fresh: the same entry, no store read.
        let e2 = cache.destination(&d.id).await.unwrap();
        assert!(Arc::ptr_eq(&e1, &e2));

        // A change without invalidation is not seen before max_age...
        let a2 = store
            .update_mapping(&a.id, 1, content("a", "A2", true))
            .await
            .unwrap();
        assert_eq!(cache.destination(&d.id).await.unwrap().versions, [1]);
        // ...and is after.
        cache.invalidate();
        let e3 = cache.destination(&d.id).await.unwrap();
        assert_eq!(e3.versions, [a2.version]);

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

    /// A deleted destination's entry (and with it the write key its sender holds) is dropped
    /// by the lookup that finds it gone, and any entry no call uses is dropped after `idle`.
    #[tokio::test]
    async fn deleted_and_idle_destinations_leave_memory() {
        let (_dir, store, d) = store_with_destination().await;
        let other = store
            .create_destination(NewDestination {
                name: Name::parse("other".into()).unwrap(),
                region: Region::Us,
                write_key: WriteKey::parse("wk-other-0123".into()).unwrap(),
                enabled: true,
                rate_limit: Default::default(),
            })
            .await
            .unwrap();
        let mut cache = Cache::new(store.clone(), senders(), Duration::ZERO);
        cache.idle = Duration::from_millis(50);
        cache.destination(&d.id).await.unwrap();
        cache.destination(&other.id).await.unwrap();
        assert_eq!(cache.held(), 2);
        // `other` is not used again: past `idle` the next load sweeps it out.
        tokio::time::sleep(Duration::from_millis(60)).await;
        cache.destination(&d.id).await.unwrap();
        assert_eq!(cache.held(), 1);
        // `d` is deleted: the lookup that finds it gone drops it.
        store.delete_destination(&d.id).await.unwrap();
        assert!(cache.destination(&d.id).await.is_err());
        assert_eq!(cache.held(), 0);
    }

    #[tokio::test]
    async fn stale_entries_are_checked_after_max_age() {
        let (_dir, store, d) = store_with_destination().await;
        let cache = Cache::new(store.clone(), senders(), Duration::ZERO);
        assert!(cache.destination(&d.id).await.unwrap().mappings.is_empty());
        store
            .create_mapping(&d.id, content("a", "A", true))
            .await
            .unwrap();
        // max_age zero: every lookup checks the store.
        assert_eq!(cache.destination(&d.id).await.unwrap().mappings.len(), 1);
    }
}
