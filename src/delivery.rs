//! SubmitRows orchestration: render → batch → send → per-row report (docs/DESIGN.md hops 4–8).
//!
//! [`deliver`] is generic over a [`Sender`] so it can be tested without HTTP; [`Delivery`] adds
//! the cache lookup and one [`SegmentClient`] per destination.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::error::Error;
use crate::issue::{Issue, IssueCode};
use crate::mapping::{Mapping, Row};
use crate::metrics::{self, EventResult};
use crate::render_pool;
use crate::segment::Action;
use crate::segment::batch::{self, Span};
use crate::segment::retry::Attempt;
use crate::segment::{RetrySettings, SegmentClient, SegmentHttp, SendError, Sent};
use crate::store::cache::{self, Cache};
use crate::store::{AllowedUpstreams, Store, StoreError};

/// What happened to one (row, mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Delivered,
    Rejected,
    Failed,
    Skipped,
}

/// One result per (row, matching mapping), or one `Skipped` (or row-level `Rejected`) result with
/// no mapping for a row no mapping matched (or that could not be read).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowResult {
    pub row_index: u32,
    pub row_id: String,
    /// Empty for a row no mapping matched and for a row that could not be read.
    pub mapping_id: String,
    pub status: Status,
    pub message_id: Option<String>,
    pub issues: Vec<Issue>,
    /// For `Failed`: the last upstream HTTP status, if any.
    pub upstream_status: Option<u16>,
    /// For `Delivered` and `Failed`: the attempts made for the batch that settled it.
    pub attempts: u32,
    /// For `Failed`: whether submitting the row again may succeed.
    pub retryable: bool,
}

/// Counts of results by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub delivered: u32,
    pub rejected: u32,
    pub failed: u32,
    pub skipped: u32,
}

impl Counts {
    pub fn of(results: &[RowResult]) -> Counts {
        let mut c = Counts::default();
        for r in results {
            c.add(r.status);
        }
        c
    }

    pub fn add(&mut self, s: Status) {
        match s {
            Status::Delivered => self.delivered += 1,
            Status::Rejected => self.rejected += 1,
            Status::Failed => self.failed += 1,
            Status::Skipped => self.skipped += 1,
        }
    }
}

/// One input row: its id as given, and the row or why it could not be read.
#[derive(Debug)]
pub struct Input {
    pub id: String,
    pub row: Result<Row, Issue>,
}

/// Sends one batch body (the real one is [`SegmentClient`]).
pub trait Sender: Send + Sync {
    fn send(
        &self,
        body: Bytes,
        deadline: Instant,
    ) -> impl Future<Output = Result<Sent, SendError>> + Send;
}

impl Sender for SegmentClient {
    fn send(
        &self,
        body: Bytes,
        deadline: Instant,
    ) -> impl Future<Output = Result<Sent, SendError>> + Send {
        SegmentClient::send(self, body, deadline)
    }
}

/// Where a destination's batches go: its client, or nowhere when its custom host is not in
/// `--allowed-upstreams` (no client then holds its write key; every event is refused unsent).
#[derive(Clone)]
pub enum Upstream {
    Client(SegmentClient),
    Refused,
}

impl Sender for Upstream {
    async fn send(&self, body: Bytes, deadline: Instant) -> Result<Sent, SendError> {
        match self {
            Upstream::Client(c) => c.send(body, deadline).await,
            Upstream::Refused => Err(SendError::NotAllowed),
        }
    }
}

/// Delivery settings (`serve` flags).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub retry: RetrySettings,
    pub batch: batch::Limits,
    /// Extra requests allowed to bisect one batch answered 400.
    pub max_bisect_requests: u32,
    /// The deadline of a call whose caller sets none.
    pub default_deadline: Duration,
    /// Sending stops this long before the deadline, to answer in time.
    pub deadline_margin: Duration,
    /// The most rows one SubmitRows request (or one StreamRows chunk) may carry.
    pub max_rows: usize,
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
            batch: batch::Limits::default(),
            max_bisect_requests: 64,
            default_deadline: Duration::from_secs(30),
            deadline_margin: Duration::from_millis(500),
            max_rows: 10_000,
            stream_rows_in_flight: 10_000,
            stream_idle: Duration::from_secs(60),
            stream_dedup_window: 100_000,
            cache_max_age: cache::DEFAULT_MAX_AGE,
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
    pub fn stop_at(&self, now: Instant, timeout: Option<Duration>) -> Instant {
        let t = timeout.unwrap_or(self.default_deadline);
        let margin = self.deadline_margin.min(t / 2);
        now + (t - margin)
    }
}

/// The row path for a store: cache lookup, one client per destination, [`deliver`].
pub struct Delivery<S> {
    cache: Arc<Cache<S>>,
    clients: Mutex<HashMap<String, (u64, Upstream)>>,
    http: reqwest::Client,
    settings: DeliverySettings,
    shutdown: tokio::sync::watch::Sender<Option<Instant>>,
}

impl<S> std::fmt::Debug for Delivery<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("settings", &self.settings)
            .finish()
    }
}

impl<S: Store> Delivery<S> {
    pub fn new(store: Arc<S>, settings: DeliverySettings) -> Delivery<S> {
        Delivery {
            cache: Arc::new(Cache::new(store, settings.cache_max_age)),
            clients: Mutex::default(),
            http: SegmentHttp::client(&settings.retry),
            settings,
            shutdown: tokio::sync::watch::channel(None).0,
        }
    }

    /// The server is shutting down: calls in flight stop sending at `grace_end`.
    pub fn shut_down_at(&self, grace_end: Instant) {
        self.shutdown.send_replace(Some(grace_end));
    }

    pub fn settings(&self) -> &DeliverySettings {
        &self.settings
    }

    /// The cache, for invalidation after writes.
    pub fn cache(&self) -> &Arc<Cache<S>> {
        &self.cache
    }

    /// What a call delivers to: the destination's enabled mappings of `model` and its client,
    /// looked up once per call. `NotFound` for an unknown destination, `DestinationDisabled`
    /// for a disabled one, `UnknownModel` when none of its mappings (enabled or not) reads
    /// `model`; a store that does not answer by `stop` is `Unavailable`.
    pub async fn target(
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
        if !entry.models.iter().any(|m| m == model) {
            return Err(Error::UnknownModel {
                destination_id: destination_id.to_owned(),
                model: model.to_owned(),
                models: entry.models.clone(),
            });
        }
        let mappings = entry.mappings_for(model).cloned().collect();
        let version = entry.destination.version;
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| Error::Internal("clients lock poisoned".into()))?;
        let client = match clients.get(destination_id) {
            Some((v, c)) if *v == version => c.clone(),
            _ => {
                let region = &entry.destination.region;
                let base = match &self.settings.endpoint_override {
                    Some(base) => Some(base.as_str()),
                    // Checked again here: the list may have shrunk since the region was stored.
                    None if self.settings.allowed_upstreams.allows(region) => {
                        Some(region.base_url())
                    }
                    None => None,
                };
                let c = match base {
                    Some(base) => Upstream::Client(SegmentClient::http(
                        self.http.clone(),
                        base,
                        entry.write_key.clone(),
                        &self.settings.retry,
                    )),
                    None => {
                        tracing::warn!(
                            destination_id,
                            region = %region,
                            "not sending: the destination's host is not in --allowed-upstreams"
                        );
                        Upstream::Refused
                    }
                };
                clients.insert(destination_id.to_owned(), (version, c.clone()));
                c
            }
        };
        Ok(Target { mappings, client })
    }

    /// Every row through every matching mapping of `target`, delivered by `stop`; `seen` holds
    /// the messageIds already sent in this call (or stream).
    pub async fn submit(
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
            0,
            &target.client,
            seen,
            stop,
            shutdown,
            &self.settings,
        )
        .await
    }
}

/// A destination's mappings of one model and its sender, resolved once per call.
#[derive(Clone)]
pub struct Target {
    mappings: Vec<Arc<Mapping>>,
    client: Upstream,
}

/// The messageIds a call has already sent (or is about to), so a later event with the same id
/// is rejected instead of dropped silently by Segment. Each id is kept as a 128-bit keyed hash
/// (16 bytes, two independent random seeds: a false match needs a collision of both), at most
/// `window` of them: past that the oldest are forgotten, so a stream's memory stays bounded
/// while a call within the window is checked exactly.
#[derive(Debug)]
pub struct SeenIds {
    window: usize,
    keys: (foldhash::fast::RandomState, foldhash::fast::RandomState),
    inner: Mutex<SeenInner>,
}

#[derive(Debug, Default)]
struct SeenInner {
    set: std::collections::HashSet<u128, foldhash::fast::RandomState>,
    order: std::collections::VecDeque<u128>,
}

impl SeenIds {
    /// Remembers the latest `window` messageIds (at least one).
    pub fn window(window: usize) -> SeenIds {
        SeenIds {
            window: window.max(1),
            keys: Default::default(),
            inner: Mutex::default(),
        }
    }

    /// Remembers every messageId (one request: bounded by its size).
    pub fn all() -> SeenIds {
        SeenIds::window(usize::MAX)
    }

    fn key(&self, id: &str) -> u128 {
        use std::hash::BuildHasher as _;
        (u128::from(self.keys.0.hash_one(id)) << 64) | u128::from(self.keys.1.hash_one(id))
    }

    /// For each id in order: whether it is new (and now remembered).
    fn first_sightings<'a>(&self, ids: impl Iterator<Item = &'a str>) -> Vec<bool> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let SeenInner { set, order } = &mut *inner;
        ids.map(|id| {
            let k = self.key(id);
            if !set.insert(k) {
                return false;
            }
            if self.window != usize::MAX {
                order.push_back(k);
                if order.len() > self.window
                    && let Some(old) = order.pop_front()
                {
                    set.remove(&old);
                }
            }
            true
        })
        .collect()
    }
}

/// Renders every row through every mapping, sends what was accepted in packed batches, and
/// reports one result per (row, matching mapping) — or one per row no mapping matched — in
/// order. Sending stops at `stop`.
#[allow(clippy::too_many_arguments)]
pub async fn deliver<S: Sender>(
    mappings: &[Arc<Mapping>],
    rows: Vec<Input>,
    first_index: u32,
    sender: &S,
    seen: &SeenIds,
    stop: Instant,
    shutdown: Shutdown,
    settings: &DeliverySettings,
) -> Vec<RowResult> {
    let total = rows.len();
    let shutdown = shutdown.reached();
    tokio::pin!(shutdown);
    let mut shut_down = false;
    let mut results = Vec::with_capacity(total);
    let mut rows = rows.into_iter().enumerate().peekable();
    // Rendered off the async workers (see `render_pool`), unless small and flat.
    let inline = render_pool::cheap(total * mappings.len(), mappings.iter().all(|m| m.is_flat()));
    let mappings: Arc<[Arc<Mapping>]> = mappings.into();
    // Rows are rendered in slices of at most `max_render_bytes` of events, each sent before the
    // next is rendered, so a request's memory stays bounded however many rows and mappings.
    while rows.peek().is_some() {
        let plan = Plan::with_capacity(total.min(settings.max_render_bytes / 256 + 1));
        let (max, budget, m) = (
            settings.max_render_bytes,
            settings.max_render_bytes_per_row,
            mappings.clone(),
        );
        let (mut plan, rest) = render_pool::run((plan, rows), inline, move |(plan, rows)| {
            if plan.arena.len() >= max {
                return false;
            }
            let Some((i, input)) = rows.next() else {
                return false;
            };
            plan.render_row(&m, first_index + i as u32, input, budget);
            true
        })
        .await;
        rows = rest;
        plan.reject_duplicates(seen);
        let groups = batch::pack(&plan.spans, settings.batch);
        let mut outcomes: Vec<(Range<usize>, Outcome)> = Vec::new();
        if !shut_down {
            let plan = &plan;
            let mut sends: FuturesUnordered<_> = groups
                .into_iter()
                .map(|g| send_group(plan, g, sender, stop, settings.max_bisect_requests))
                .collect();
            loop {
                tokio::select! {
                    biased;
                    next = sends.next() => match next {
                        Some(mut done) => outcomes.append(&mut done),
                        None => break,
                    },
                    () = &mut shutdown => {
                        shut_down = true;
                        break;
                    }
                }
            }
        }
        if shut_down {
            // What the grace period left unsettled (sends in flight are dropped).
            let mut settled = vec![false; plan.spans.len()];
            for (range, _) in &outcomes {
                settled[range.clone()].fill(true);
            }
            for (i, _) in settled.iter().enumerate().filter(|(_, s)| !**s) {
                outcomes.push((i..i + 1, Outcome::ShuttingDown));
            }
        }
        for (range, outcome) in outcomes {
            for i in range {
                let r = &mut plan.results[plan.span_result[i] as usize];
                outcome.apply(r);
            }
        }
        plan.record_metrics();
        results.append(&mut plan.results);
    }
    results
}

/// When the server's shutdown grace period ends: set once, when the server starts shutting down.
/// Sending stops then, and events not yet delivered are `FAILED` with `SHUTTING_DOWN`, so every
/// call still answers before the server drops it.
#[derive(Debug, Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<Option<Instant>>);

impl Shutdown {
    /// A shutdown that never comes (tests, and calls made outside a server).
    pub fn never() -> Shutdown {
        Shutdown(tokio::sync::watch::channel(None).1)
    }

    /// Completes when the grace period has ended.
    async fn reached(mut self) {
        loop {
            let at = *self.0.borrow_and_update();
            if let Some(at) = at {
                tokio::time::sleep_until(at).await;
                return;
            }
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Rendered events in one arena, and the results they belong to.
struct Plan {
    arena: Vec<u8>,
    spans: Vec<Span>,
    /// For each span, the index of its result.
    span_result: Vec<u32>,
    results: Vec<RowResult>,
    /// For each result, its mapping's action (`None`: no mapping matched, or unreadable).
    actions: Vec<Option<Action>>,
}

impl Plan {
    fn with_capacity(rows: usize) -> Plan {
        Plan {
            arena: Vec::with_capacity(rows * 384),
            spans: Vec::with_capacity(rows),
            span_result: Vec::with_capacity(rows),
            results: Vec::with_capacity(rows),
            actions: Vec::with_capacity(rows),
        }
    }

    /// Events by action and result, and rows no mapping matched (the results are settled).
    fn record_metrics(&self) {
        for (r, action) in self.results.iter().zip(&self.actions) {
            let result = match r.status {
                Status::Delivered => EventResult::Delivered,
                Status::Rejected => EventResult::Rejected,
                Status::Failed => EventResult::Failed,
                Status::Skipped => EventResult::Skipped,
            };
            match (action, r.status) {
                (Some(a), _) => metrics::record_events(a.as_str(), result, 1),
                (None, Status::Skipped) => metrics::record_skipped_rows(1),
                // An unreadable row is no event.
                (None, _) => {}
            }
        }
    }

    /// Renders one row through every mapping: one result per matching mapping (accepted
    /// events are settled when their batch is), or one for a row none matched or that could
    /// not be read.
    fn render_row(
        &mut self,
        mappings: &[Arc<Mapping>],
        row_index: u32,
        input: Input,
        budget: usize,
    ) {
        let plan = self;
        let Input { id, row } = input;
        let result = |mapping_id: String, status, message_id, issues| RowResult {
            row_index,
            row_id: id.clone(),
            mapping_id,
            status,
            message_id,
            issues,
            upstream_status: None,
            attempts: 0,
            retryable: false,
        };
        let row = match row {
            Ok(row) => row,
            Err(issue) => {
                plan.results
                    .push(result(String::new(), Status::Rejected, None, vec![issue]));
                plan.actions.push(None);
                return;
            }
        };
        let mut matched = false;
        for m in mappings {
            let start = plan.arena.len();
            let r = m.render_within(&row, &mut plan.arena, budget);
            if r.skipped {
                continue;
            }
            matched = true;
            plan.actions.push(Some(m.action));
            let mapping_id = m.identity().mapping_id.clone();
            if r.accepted() {
                plan.spans.push(Span {
                    start: start as u32,
                    len: (plan.arena.len() - start) as u32,
                });
                plan.span_result.push(plan.results.len() as u32);
                // Settled when its batch is.
                plan.results.push(result(
                    mapping_id,
                    Status::Failed,
                    r.built.message_id,
                    Vec::new(),
                ));
            } else {
                plan.arena.truncate(start);
                plan.results.push(result(
                    mapping_id,
                    Status::Rejected,
                    r.built.message_id,
                    r.built.issues,
                ));
            }
        }
        if !matched {
            plan.results
                .push(result(String::new(), Status::Skipped, None, Vec::new()));
            plan.actions.push(None);
        }
    }

    /// A messageId already sent in this request: Segment would drop the later event silently,
    /// so it is rejected here and never sent.
    fn reject_duplicates(&mut self, seen: &SeenIds) {
        let ids = self.span_result.iter().map(|&ri| {
            let id = self.results[ri as usize].message_id.as_deref();
            id.unwrap_or("")
        });
        let dups: Vec<usize> = seen
            .first_sightings(ids)
            .into_iter()
            .enumerate()
            .filter(|&(_, first)| !first)
            .map(|(k, _)| k)
            .collect();
        if dups.is_empty() {
            return;
        }
        for &k in &dups {
            let r = &mut self.results[self.span_result[k] as usize];
            r.status = Status::Rejected;
            r.issues.push(Issue::new(
                IssueCode::DuplicateMessageId,
                "/messageId",
                "an earlier event of this request (or stream) has this messageId; Segment would drop it",
            ));
        }
        let mut dropped = vec![false; self.spans.len()];
        for k in dups {
            dropped[k] = true;
        }
        let mut k = 0;
        self.spans.retain(|_| {
            k += 1;
            !dropped[k - 1]
        });
        let mut k = 0;
        self.span_result.retain(|_| {
            k += 1;
            !dropped[k - 1]
        });
    }
}

/// How a group of events ended.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Delivered {
        attempts: u32,
    },
    Failed(SendError),
    /// A 400 or 413 to a batch whose culprits bisection did not isolate within its budget: the
    /// event may well be innocent.
    Unresolved {
        attempts: u32,
        status: u16,
    },
    /// The server's shutdown grace period ended first.
    ShuttingDown,
}

impl Outcome {
    fn apply(self, r: &mut RowResult) {
        match self {
            Outcome::Delivered { attempts } => {
                r.status = Status::Delivered;
                r.attempts = attempts;
            }
            Outcome::Unresolved { attempts, status } => {
                r.status = Status::Failed;
                r.attempts = attempts;
                r.upstream_status = Some(status);
                // Not isolated: the event may be innocent, and a resubmission may deliver it.
                r.retryable = true;
                r.issues.push(Issue::new(
                    IssueCode::UpstreamRejected,
                    "",
                    format!(
                        "upstream answered {status} to a batch holding this event, and bisection \
                         ran out of requests before isolating the bad events: this one may be \
                         innocent; submitting it again is safe (the same messageId)"
                    ),
                ));
            }
            Outcome::ShuttingDown => {
                r.status = Status::Failed;
                r.retryable = true;
                r.issues.push(Issue::new(
                    IssueCode::ShuttingDown,
                    "",
                    "the server shut down before the event was delivered; submitting it again \
                     is safe (the same messageId)",
                ));
            }
            Outcome::Failed(e) => {
                // Refused before sending: never sent, so rejected.
                r.status = match e {
                    SendError::NotAllowed => Status::Rejected,
                    _ => Status::Failed,
                };
                r.attempts = e.attempts();
                r.upstream_status = e.last_status();
                r.retryable = e.is_retryable();
                let (code, message) = match e {
                    SendError::Rejected { status, .. } => (
                        IssueCode::UpstreamRejected,
                        format!("upstream rejected the event with status {status}"),
                    ),
                    SendError::RetriesExhausted { last, attempts } => {
                        let code = match last {
                            Attempt::Status(_) => IssueCode::RetriesExhausted,
                            _ => IssueCode::UpstreamUnavailable,
                        };
                        (
                            code,
                            format!("{attempts} attempts failed; the last: {}", describe(last)),
                        )
                    }
                    SendError::Deadline {
                        last,
                        attempts,
                        in_flight,
                    } => (
                        IssueCode::Deadline,
                        match (in_flight, last) {
                            (true, _) => format!(
                                "the deadline came while attempt {attempts} was in flight: the \
                                 Tracking API may have the event; submitting it again is safe \
                                 (the same messageId)"
                            ),
                            (false, Some(l)) => format!(
                                "the deadline came first, after {attempts} attempts; the last: {}",
                                describe(l)
                            ),
                            (false, None) => {
                                "the deadline came before the event was sent (nothing was sent)"
                                    .into()
                            }
                        },
                    ),
                    SendError::NotAllowed => (
                        IssueCode::UpstreamNotAllowed,
                        "not sent: the destination's host is not in --allowed-upstreams; list \
                         it there or move the destination"
                            .into(),
                    ),
                };
                r.issues.push(Issue::new(code, "", message));
            }
        }
    }
}

fn describe(a: Attempt) -> String {
    match a {
        Attempt::Status(s) => format!("status {s}"),
        Attempt::Timeout => "timed out".into(),
        Attempt::Transport => "connection failed".into(),
        Attempt::Build => "request could not be built".into(),
    }
}

/// The extra requests bisection may make for a group of `events`: `floor` (the
/// `max_bisect_requests` setting), or one per two events of the group if that is more — enough to
/// isolate one bad event in a hundred, bounded for an upstream that refuses everything.
fn bisect_budget(floor: u32, events: usize) -> u32 {
    floor.max(u32::try_from(events / 2).unwrap_or(u32::MAX))
}

/// Whether an answer to a batch of several events is worth splitting: 400 (some event in it is
/// bad) and 413 (the body is over the upstream's limit, which may be below ours).
fn splits(e: &SendError) -> Option<u32> {
    match *e {
        SendError::Rejected {
            status: 400 | 413,
            attempts,
        } => Some(attempts),
        _ => None,
    }
}

/// Sends one packed group; a 400 or 413 is bisected, both halves at once, so one bad event fails
/// alone and the rest are delivered in the same call. Returns the outcome of every span range of
/// the group.
async fn send_group<S: Sender>(
    plan: &Plan,
    group: Range<usize>,
    sender: &S,
    stop: Instant,
    floor: u32,
) -> Vec<(Range<usize>, Outcome)> {
    let mut budget = bisect_budget(floor, group.len());
    let mut done = Vec::new();
    let send = |range: Range<usize>| async move {
        if Instant::now() >= stop {
            let e = SendError::Deadline {
                last: None,
                attempts: 0,
                in_flight: false,
            };
            return (range, Err(e));
        }
        let body = batch::body(&plan.arena, &plan.spans[range.clone()]);
        metrics::record_batch(range.len(), body.len());
        let result = sender.send(body, stop).await;
        (range, result)
    };
    let mut sends = FuturesUnordered::new();
    sends.push(send(group));
    while let Some((range, result)) = sends.next().await {
        let outcome = match result {
            Ok(Sent { attempts }) => Outcome::Delivered { attempts },
            Err(e) => match splits(&e) {
                Some(_) if range.len() > 1 && budget >= 2 => {
                    budget -= 2;
                    let mid = range.start + range.len() / 2;
                    sends.push(send(range.start..mid));
                    sends.push(send(mid..range.end));
                    continue;
                }
                Some(attempts) if range.len() > 1 => Outcome::Unresolved {
                    attempts,
                    status: e.last_status().unwrap_or(400),
                },
                _ => Outcome::Failed(e),
            },
        };
        done.push((range, outcome));
    }
    done
}

#[cfg(test)]
mod tests;
