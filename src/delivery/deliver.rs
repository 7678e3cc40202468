//! One call's rows through the row path: render (on the render pool) → reject repeated
//! messageIds → pack into batches → send each through the destination's [`Sender`], bisecting
//! a batch answered 400 or 413 → settle every result. [`deliver`] is generic over the
//! [`Sender`], so the row path is tested without HTTP.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use super::DeliverySettings;
use super::render_pool;
use super::results::{Input, RowResult, RowStatus};
use super::seen::SeenIds;
use crate::issue::{Issue, IssueCode};
use crate::mapping::Mapping;
use crate::metrics::{self, DestinationMetrics, EventResult};
use crate::sender::batch::{self, Span};
use crate::sender::{Attempt, SegmentClient, SendError, Sent};
use crate::spec::Action;
use crate::usage::{Meter, Month, Tally, user_hash};

/// Sends one batch body of `events` events (the real one is [`SegmentClient`]).
pub(crate) trait Sender: Send + Sync {
    fn send(
        &self,
        body: Bytes,
        events: usize,
        deadline: Instant,
    ) -> impl Future<Output = Result<Sent, SendError>> + Send;

    /// The most events one batch should hold, when less than the API's (a rate limit's burst).
    fn max_batch_events(&self) -> Option<usize> {
        None
    }

    /// Where the destination's figures are counted (the default: only in the totals).
    fn metrics(&self) -> DestinationMetrics {
        DestinationMetrics::default()
    }
}

impl Sender for SegmentClient {
    fn send(
        &self,
        body: Bytes,
        events: usize,
        deadline: Instant,
    ) -> impl Future<Output = Result<Sent, SendError>> + Send {
        SegmentClient::send(self, body, events, deadline)
    }

    fn max_batch_events(&self) -> Option<usize> {
        SegmentClient::max_batch_events(self)
    }

    fn metrics(&self) -> DestinationMetrics {
        SegmentClient::metrics(self).clone()
    }
}

/// Where a destination's batches go: its client, or nowhere when its custom host is not in
/// `--allowed-upstreams` (no client then holds its write key; every event is refused unsent).
#[derive(Debug, Clone)]
pub(crate) enum Upstream {
    Client(SegmentClient),
    Refused,
}

impl Sender for Upstream {
    async fn send(&self, body: Bytes, events: usize, deadline: Instant) -> Result<Sent, SendError> {
        match self {
            Upstream::Client(c) => c.send(body, events, deadline).await,
            Upstream::Refused => Err(SendError::NotAllowed),
        }
    }

    fn max_batch_events(&self) -> Option<usize> {
        match self {
            Upstream::Client(c) => c.max_batch_events(),
            Upstream::Refused => None,
        }
    }

    fn metrics(&self) -> DestinationMetrics {
        match self {
            Upstream::Client(c) => c.metrics().clone(),
            Upstream::Refused => DestinationMetrics::default(),
        }
    }
}

/// Where a call's delivered events are counted: the process's meter, for one destination.
#[derive(Clone, Copy)]
pub(crate) struct UsageSink<'a> {
    pub(crate) meter: &'a Meter,
    pub(crate) destination_id: &'a str,
}

impl UsageSink<'_> {
    /// What a slice delivered: each event one Tracking API call, each batch that delivered
    /// them, its bytes, and each event's user (read from its rendered bytes). One lock.
    fn record(self, plan: &Slice, outcomes: &[(Range<usize>, Settlement)]) {
        let mut tally = Tally::default();
        for (range, outcome) in outcomes {
            let Settlement::Delivered { bytes, .. } = *outcome else {
                continue;
            };
            tally.counts.calls += range.len() as u64;
            tally.counts.batches += 1;
            tally.counts.bytes += u64::from(bytes);
            for span in &plan.spans[range.clone()] {
                let event = &plan.arena[span.start as usize..(span.start + span.len) as usize];
                tally.users.extend(user_hash(event));
            }
        }
        if tally.counts.calls == 0 {
            return;
        }
        metrics::record_usage(self.destination_id, tally.counts.calls, tally.counts.bytes);
        self.meter.record(self.destination_id, Month::now(), &tally);
    }
}

/// Renders every row through every mapping, sends what was accepted in packed batches, and
/// reports one result per (row, matching mapping) — or one per row no mapping matched — in
/// order. Sending stops at `stop`. What is delivered is counted in `usage`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn deliver<S: Sender>(
    mappings: &Arc<[Arc<Mapping>]>,
    rows: Vec<Input>,
    sender: &S,
    seen: &SeenIds,
    stop: Instant,
    shutdown: Shutdown,
    settings: &DeliverySettings,
    usage: Option<UsageSink<'_>>,
) -> Vec<RowResult> {
    let total = rows.len();
    let shutdown = shutdown.reached();
    tokio::pin!(shutdown);
    let mut shut_down = false;
    let mut results = Vec::with_capacity(total);
    let mut rows = rows.into_iter().enumerate().peekable();
    // Rendered off the async workers (see `render_pool`), unless small and flat.
    let inline = render_pool::cheap(total * mappings.len(), mappings.iter().all(|m| m.is_flat()));
    let destination_metrics = sender.metrics();
    // A rate-limited destination's batches hold at most its burst, so each goes whole.
    let limits = batch::BatchLimits {
        max_events: sender
            .max_batch_events()
            .map_or(settings.batch.max_events, |m| {
                m.min(settings.batch.max_events)
            }),
        ..settings.batch
    };
    // Rows are rendered in slices of at most `max_render_bytes` of events, each sent before the
    // next is rendered, so a request's memory stays bounded however many rows and mappings.
    while rows.peek().is_some() {
        let plan = Slice::with_capacity(total.min(settings.max_render_bytes / 256 + 1));
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
            plan.render_row(&m, i as u32, input, budget);
            true
        })
        .await;
        rows = rest;
        plan.reject_duplicates(seen);
        let groups = batch::pack(&plan.spans, limits);
        let mut outcomes: Vec<(Range<usize>, Settlement)> = Vec::new();
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
                outcomes.push((i..i + 1, Settlement::ShuttingDown));
            }
        }
        if let Some(usage) = usage {
            usage.record(&plan, &outcomes);
        }
        for (range, outcome) in outcomes {
            for i in range {
                let r = &mut plan.results[plan.span_result[i] as usize];
                outcome.apply(r);
            }
        }
        debug_assert!(
            plan.results.iter().all(|r| r.status != RowStatus::Pending),
            "every accepted event is settled"
        );
        plan.record_metrics(&destination_metrics);
        results.append(&mut plan.results);
    }
    results
}

/// When the server's shutdown grace period ends: set once, when the server starts shutting down.
/// Sending stops then, and events not yet delivered are `FAILED` with `SHUTTING_DOWN`, so every
/// call still answers before the server drops it.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown(pub(super) tokio::sync::watch::Receiver<Option<Instant>>);

impl Shutdown {
    /// A shutdown that never comes.
    #[cfg(test)]
    pub(crate) fn never() -> Shutdown {
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
struct Slice {
    arena: Vec<u8>,
    spans: Vec<Span>,
    /// For each span, the index of its result.
    span_result: Vec<u32>,
    results: Vec<RowResult>,
    /// For each result, its mapping's action (`None`: no mapping matched, or unreadable).
    actions: Vec<Option<Action>>,
}

impl Slice {
    fn with_capacity(rows: usize) -> Slice {
        Slice {
            arena: Vec::with_capacity(rows * 384),
            spans: Vec::with_capacity(rows),
            span_result: Vec::with_capacity(rows),
            results: Vec::with_capacity(rows),
            actions: Vec::with_capacity(rows),
        }
    }

    /// Events by action and result (and by destination), and rows no mapping matched (the
    /// results are settled).
    fn record_metrics(&self, destination: &DestinationMetrics) {
        for (r, action) in self.results.iter().zip(&self.actions) {
            let result = match r.status {
                RowStatus::Delivered => EventResult::Delivered,
                RowStatus::Rejected => EventResult::Rejected,
                RowStatus::Failed | RowStatus::Pending => EventResult::Failed,
                RowStatus::Skipped => EventResult::Skipped,
            };
            match (action, r.status) {
                (Some(a), _) => destination.record_events(a.as_str(), result, 1),
                (None, RowStatus::Skipped) => destination.record_skipped_rows(1),
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
            retry_after: None,
        };
        let row = match row {
            Ok(row) => row,
            Err(issue) => {
                plan.results.push(result(
                    String::new(),
                    RowStatus::Rejected,
                    None,
                    vec![issue],
                ));
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
                plan.results.push(result(
                    mapping_id,
                    RowStatus::Pending,
                    r.built.message_id,
                    Vec::new(),
                ));
            } else {
                plan.arena.truncate(start);
                plan.results.push(result(
                    mapping_id,
                    RowStatus::Rejected,
                    r.built.message_id,
                    r.built.issues,
                ));
            }
        }
        if !matched {
            plan.results
                .push(result(String::new(), RowStatus::Skipped, None, Vec::new()));
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
            r.status = RowStatus::Rejected;
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
enum Settlement {
    Delivered {
        attempts: u32,
        /// The body's size (one batch request).
        bytes: u32,
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

impl Settlement {
    fn apply(self, r: &mut RowResult) {
        match self {
            Settlement::Delivered { attempts, .. } => {
                r.status = RowStatus::Delivered;
                r.attempts = attempts;
            }
            Settlement::Unresolved { attempts, status } => {
                r.status = RowStatus::Failed;
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
            Settlement::ShuttingDown => {
                r.status = RowStatus::Failed;
                r.retryable = true;
                r.issues.push(Issue::new(
                    IssueCode::ShuttingDown,
                    "",
                    "the server shut down before the event was delivered; submitting it again \
                     is safe (the same messageId)",
                ));
            }
            Settlement::Failed(e) => {
                // Refused before sending: never sent, so rejected.
                r.status = match e {
                    SendError::NotAllowed => RowStatus::Rejected,
                    _ => RowStatus::Failed,
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
                    SendError::RateLimited { wait, .. } => {
                        r.retry_after = Some(wait);
                        (
                            IssueCode::Deadline,
                            format!(
                                "the deadline came before the destination's rate limit let the \
                                 event go (it needed {:.1} s more); it was not sent this time: \
                                 submit it again after that wait (the same messageId)",
                                wait.as_secs_f64()
                            ),
                        )
                    }
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
    plan: &Slice,
    group: Range<usize>,
    sender: &S,
    stop: Instant,
    floor: u32,
) -> Vec<(Range<usize>, Settlement)> {
    let mut budget = bisect_budget(floor, group.len());
    let mut done = Vec::new();
    let send = |range: Range<usize>| async move {
        if Instant::now() >= stop {
            let e = SendError::Deadline {
                last: None,
                attempts: 0,
                in_flight: false,
            };
            return (range, 0, Err(e));
        }
        let body = batch::body(&plan.arena, &plan.spans[range.clone()]);
        let bytes = u32::try_from(body.len()).unwrap_or(u32::MAX);
        metrics::record_batch(range.len(), body.len());
        let result = sender.send(body, range.len(), stop).await;
        (range, bytes, result)
    };
    let mut sends = FuturesUnordered::new();
    sends.push(send(group));
    while let Some((range, bytes, result)) = sends.next().await {
        let outcome = match result {
            Ok(Sent { attempts }) => Settlement::Delivered { attempts, bytes },
            Err(e) => match splits(&e) {
                Some(_) if range.len() > 1 && budget >= 2 => {
                    budget -= 2;
                    let mid = range.start + range.len() / 2;
                    sends.push(send(range.start..mid));
                    sends.push(send(mid..range.end));
                    continue;
                }
                Some(attempts) if range.len() > 1 => Settlement::Unresolved {
                    attempts,
                    status: e.last_status().unwrap_or(400),
                },
                _ => Settlement::Failed(e),
            },
        };
        done.push((range, outcome));
    }
    done
}
