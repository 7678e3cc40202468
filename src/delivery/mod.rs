//! The row path behind SubmitRows and StreamRows: resolve the call's [`Target`] once from the
//! one cache (`targets`: the destination, its compiled mappings of the model, its sender), then
//! [`deliver`] the rows (`deliver`: render on the render pool → batch → send → settle), answering
//! one [`RowResult`] per (row, matching mapping) (`results`). StreamRows' flow control is here
//! too (`stream`). `seen` keeps a call's messageIds so none is sent twice.
//!
//! Inside the folder: mod → stream, targets → deliver → render_pool, seen, results.

mod deliver;
pub(crate) mod render_pool;
mod results;
mod seen;
mod stream;
mod targets;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub(crate) use deliver::{Shutdown, Upstream, deliver};
pub(crate) use results::{Counts, Input, RowResult, RowStatus};
pub(crate) use seen::SeenIds;
pub(crate) use stream::{Chunk, ChunkAnswer, StreamEnd};
pub(crate) use targets::{Cache, Senders};

use crate::error::Error;
use crate::mapping::Mapping;
use crate::sender::batch;
use crate::sender::{RetrySettings, SegmentHttp};
use crate::store::{AllowedUpstreams, Store, StoreError};
use crate::usage::{Meter, Month, Usage};

/// Delivery settings (`serve` flags).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub retry: RetrySettings,
    pub batch: batch::BatchLimits,
    /// Extra requests allowed to bisect one batch answered 400.
    pub max_bisect_requests: u32,
    /// The deadline of a call whose caller sets none.
    pub default_deadline: Duration,
    /// Sending stops this long before the deadline, to answer in time.
    pub deadline_margin: Duration,
    /// StreamRows: the most rows in flight per stream; reading pauses while full.
    pub stream_rows_in_flight: usize,
    /// StreamRows: a stream with no message and nothing in flight for this long is closed.
    pub stream_idle: Duration,
    /// StreamRows: how many of a stream's latest messageIds a new event is checked against.
    pub stream_dedup_window: usize,
    /// How long the cache trusts an entry.
    pub cache_max_age: Duration,
    /// Rendered event bytes held at once per call: past it, what is rendered is sent before
    /// the rest of the rows are rendered.
    pub max_render_bytes: usize,
    /// What rendering one row through one mapping may compute ([`crate::mapping::budget`]).
    pub max_render_bytes_per_row: usize,
    /// Tests and local runs: send every destination here instead of its region.
    pub endpoint_override: Option<String>,
    /// The hosts a custom base URL may name (`--allowed-upstreams`).
    pub allowed_upstreams: AllowedUpstreams,
}

impl Default for DeliverySettings {
    fn default() -> DeliverySettings {
        DeliverySettings {
            retry: RetrySettings::default(),
            batch: batch::BatchLimits::default(),
            max_bisect_requests: 64,
            default_deadline: Duration::from_secs(30),
            deadline_margin: Duration::from_millis(500),
            stream_rows_in_flight: 10_000,
            stream_idle: Duration::from_secs(60),
            stream_dedup_window: 100_000,
            cache_max_age: targets::DEFAULT_MAX_AGE,
            max_render_bytes: 16 * 1024 * 1024,
            max_render_bytes_per_row: crate::mapping::budget::DEFAULT_RENDER_BYTES,
            endpoint_override: None,
            allowed_upstreams: AllowedUpstreams::default(),
        }
    }
}

impl DeliverySettings {
    /// When to stop sending for a call that must answer by `deadline` (the caller's, or the
    /// default): the margin before it, but never less than half the time given.
    pub(crate) fn stop_at(&self, now: Instant, timeout: Option<Duration>) -> Instant {
        let t = timeout.unwrap_or(self.default_deadline);
        let margin = self.deadline_margin.min(t / 2);
        now + (t - margin)
    }
}

/// The row path for a store: the one cache of targets, and [`deliver`].
pub(crate) struct Delivery<S> {
    cache: Arc<Cache<S>>,
    settings: DeliverySettings,
    shutdown: tokio::sync::watch::Sender<Option<Instant>>,
    /// Where usage is flushed and read.
    store: Arc<S>,
    /// What this process delivered and has not yet flushed to the store.
    meter: Meter,
    /// Held by a flush, and by a usage read, which so never sees a flush half-applied.
    flush: tokio::sync::Mutex<()>,
}

impl<S> std::fmt::Debug for Delivery<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("settings", &self.settings)
            .finish()
    }
}

impl<S: Store> Delivery<S> {
    pub(crate) fn new(store: Arc<S>, settings: DeliverySettings) -> Delivery<S> {
        let senders = Senders {
            http: SegmentHttp::client(&settings.retry),
            retry: settings.retry.clone(),
            endpoint_override: settings.endpoint_override.clone(),
            allowed_upstreams: settings.allowed_upstreams.clone(),
        };
        Delivery {
            cache: Arc::new(Cache::new(store.clone(), senders, settings.cache_max_age)),
            store,
            settings,
            shutdown: tokio::sync::watch::channel(None).0,
            meter: Meter::new(),
            flush: tokio::sync::Mutex::new(()),
        }
    }

    /// Writes what the meter holds to the store (counts added, sketches merged). On failure
    /// it stays pending, for the next flush.
    pub(crate) async fn flush_usage(&self) -> Result<(), StoreError> {
        let _flushing = self.flush.lock().await;
        let pending = self.meter.pending();
        if pending.is_empty() {
            return Ok(());
        }
        self.store.add_usage(&pending).await?;
        self.meter.flushed(&pending);
        Ok(())
    }

    /// A destination's month: every replica's flushes, and what this process has not flushed
    /// yet. `NotFound` for an unknown destination.
    pub(crate) async fn usage(&self, destination_id: &str, month: Month) -> Result<Usage, Error> {
        let _flushing = self.flush.lock().await;
        let mut usage = self.store.usage(destination_id, month).await?;
        if let Some(local) = self.meter.local(destination_id, month) {
            usage.merge(&local);
        }
        Ok(usage)
    }

    /// The server is shutting down: calls in flight stop sending at `grace_end`.
    pub(crate) fn shut_down_at(&self, grace_end: Instant) {
        self.shutdown.send_replace(Some(grace_end));
    }

    pub(crate) fn settings(&self) -> &DeliverySettings {
        &self.settings
    }

    /// The cache, for invalidation after writes.
    pub(crate) fn cache(&self) -> &Arc<Cache<S>> {
        &self.cache
    }

    /// What a call delivers to: the destination's enabled mappings of `model` and its sender,
    /// looked up once per call. `NotFound` for an unknown destination, `DestinationDisabled`
    /// for a disabled one, `UnknownModel` when none of its mappings (enabled or not) reads
    /// `model`; a store that does not answer by `stop` is `Unavailable`.
    pub(crate) async fn target(
        &self,
        destination_id: &str,
        model: &str,
        stop: Instant,
    ) -> Result<Target, Error> {
        let entry = tokio::time::timeout_at(stop, self.cache.destination(destination_id))
            .await
            .map_err(|_| {
                StoreError::Unavailable(
                    "no answer from the store before the call's deadline".into(),
                )
            })??;
        if !entry.destination.enabled {
            return Err(Error::DestinationDisabled(destination_id.to_owned()));
        }
        let Some(mappings) = entry.mappings_for(model) else {
            return Err(Error::UnknownModel {
                destination_id: destination_id.to_owned(),
                model: model.to_owned(),
                models: entry.models().map(str::to_owned).collect(),
            });
        };
        Ok(Target {
            destination_id: Arc::from(destination_id),
            mappings: mappings.clone(),
            upstream: entry.upstream.clone(),
        })
    }

    /// Every row through every matching mapping of `target`, delivered by `stop`; `seen` holds
    /// the messageIds already sent in this call (or stream).
    pub(crate) async fn submit(
        &self,
        target: &Target,
        rows: Vec<Input>,
        seen: &SeenIds,
        stop: Instant,
    ) -> Vec<RowResult> {
        let shutdown = Shutdown(self.shutdown.subscribe());
        deliver(
            &target.mappings,
            rows,
            &target.upstream,
            seen,
            stop,
            shutdown,
            &self.settings,
            Some(deliver::UsageSink {
                meter: &self.meter,
                destination_id: &target.destination_id,
            }),
        )
        .await
    }
}

/// A destination's mappings of one model and its sender, resolved once per call.
#[derive(Clone)]
pub(crate) struct Target {
    destination_id: Arc<str>,
    mappings: Arc<[Arc<Mapping>]>,
    upstream: Upstream,
}

impl Target {
    /// The enabled mappings, in the cache's order.
    pub(crate) fn mappings(&self) -> &[Arc<Mapping>] {
        &self.mappings
    }

    /// The same target with only the mapping `i`.
    pub(crate) fn only(&self, i: usize) -> Target {
        Target {
            destination_id: self.destination_id.clone(),
            mappings: Arc::from([self.mappings[i].clone()]),
            upstream: self.upstream.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
