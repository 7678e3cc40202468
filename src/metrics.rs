//! Prometheus metrics: a leaf module (it imports nothing of this crate).
//!
//! * The metric names below, with their labels.
//! * [`install`] sets the process-wide recorder (once) and [`serve`] answers `GET /metrics` on
//!   `--metrics-listen`.
//! * The `record_*` functions and in-flight guards the rest of the crate records through: the
//!   per-call layer (`grpc::layer`) for calls and rows received, the delivery path for events,
//!   Tracking API requests, retries and batches.
//!
//! * [`DestinationMetrics`]: the per-destination series (`destination_*`), kept in a registry of
//!   their own so they can leave with their destination.
//!
//! Every label value comes from a closed set (method names from the layer's static table, gRPC
//! codes, actions, results, status classes) or is a destination id (server-generated, and only
//! on the `destination_*` and `usage_*` series): never a row id, user id or write key. The
//! functions take labels as `&'static str` or as the enums below, so a label cannot be built
//! from request data at run time.

use std::future::{Future as _, IntoFuture as _};
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

// === Names ===

/// Calls by `service`, `method` and `code` (the gRPC code name, e.g. `OK`, `INVALID_ARGUMENT`).
pub(crate) const RPC_REQUESTS: &str = "segment_connections_rpc_requests_total";
/// Call duration in seconds by `service` and `method`, until the last response message.
pub(crate) const RPC_DURATION: &str = "segment_connections_rpc_duration_seconds";
/// Calls in progress by `service` and `method`.
pub(crate) const RPC_IN_FLIGHT: &str = "segment_connections_rpc_in_flight";
/// Rows received by `method` (`TestMapping`, `SubmitRows`, `StreamRows`).
pub(crate) const ROWS_RECEIVED: &str = "segment_connections_rows_received_total";
/// Events (one per row and matching mapping) by `action` and `result`.
pub(crate) const EVENTS: &str = "segment_connections_events_total";
/// Tracking API requests (each attempt) by `status_class`: `1xx`…`5xx`, `429` (rate limited;
/// `4xx` then counts the other 4xx), `other`, `timeout`, `error`.
pub(crate) const UPSTREAM_REQUESTS: &str = "segment_connections_upstream_requests_total";
/// Tracking API request duration in seconds by `status_class`.
pub(crate) const UPSTREAM_DURATION: &str = "segment_connections_upstream_duration_seconds";
/// Tracking API requests in progress.
pub(crate) const UPSTREAM_IN_FLIGHT: &str = "segment_connections_upstream_in_flight";
/// Retries of Tracking API requests (attempts after the first).
pub(crate) const UPSTREAM_RETRIES: &str = "segment_connections_upstream_retries_total";
/// Events per batch sent.
pub(crate) const BATCH_EVENTS: &str = "segment_connections_batch_events";
/// Syncs ended, by `status` (`COMPLETED`, `COMPLETED_WITH_FAILURES`, `INCOMPLETE`, `FAILED`).
pub(crate) const SYNCS: &str = "segment_connections_syncs_total";
/// Syncs in progress on this replica.
pub(crate) const SYNCS_RUNNING: &str = "segment_connections_syncs_running";
/// What syncs found and did per (record, mapping), by `outcome`: `added`, `updated`,
/// `deleted`, `unchanged`, `retried`, `gave_up`.
pub(crate) const SYNC_RECORDS: &str = "segment_connections_sync_records_total";
/// The statuses and outcomes the two sync counters are labelled with, present from the start.
const SYNC_STATUSES: [&str; 4] = [
    "COMPLETED",
    "COMPLETED_WITH_FAILURES",
    "INCOMPLETE",
    "FAILED",
];
const SYNC_OUTCOMES: [&str; 6] = [
    "added",
    "updated",
    "deleted",
    "unchanged",
    "retried",
    "gave_up",
];
/// Always 1, labelled with the service's `version`: which build runs where.
pub(crate) const BUILD_INFO: &str = "segment_connections_build_info";
/// The process's resident memory, open file descriptors and CPU time (user + system, seconds),
/// read from `/proc/self` at each scrape (Linux; absent elsewhere).
pub(crate) const PROCESS_RESIDENT_BYTES: &str = "segment_connections_process_resident_memory_bytes";
pub(crate) const PROCESS_OPEN_FDS: &str = "segment_connections_process_open_fds";
pub(crate) const PROCESS_CPU_SECONDS: &str = "segment_connections_process_cpu_seconds";

/// The actions and results `events_total` is labelled with, each series present from the start
/// at zero, so a rate or a ratio over them is defined before the first event (the action names
/// are `spec::Action::as_str`'s, which a test there holds to this list).
pub(crate) const ACTIONS: [&str; 5] = ["track", "identify", "page", "screen", "group"];
const EVENT_RESULTS: [EventResult; 4] = [
    EventResult::Delivered,
    EventResult::Rejected,
    EventResult::Failed,
    EventResult::Skipped,
];
/// The upstream status classes present from the start at zero.
const STATUS_CLASSES: [StatusClass; 6] = [
    StatusClass::Http(200),
    StatusClass::Http(429),
    StatusClass::Http(400),
    StatusClass::Http(500),
    StatusClass::Timeout,
    StatusClass::Error,
];

/// Bytes per batch body sent, before compression.
pub(crate) const BATCH_BYTES: &str = "segment_connections_batch_bytes";
/// Bytes of request bodies put on the wire to the Tracking API (each attempt; gzip-compressed
/// unless `--upstream-gzip false`).
pub(crate) const UPSTREAM_BYTES: &str = "segment_connections_upstream_bytes_total";

/// Tracking API calls (events delivered: Segment bills each as one API call) by
/// `destination_id` (a bounded label: destinations are few, each an id).
pub(crate) const USAGE_CALLS: &str = "segment_connections_usage_calls_total";
/// Bytes of the batch bodies that delivered them (before compression), by `destination_id`.
pub(crate) const USAGE_BYTES: &str = "segment_connections_usage_bytes_total";

/// Events by `destination_id` and `result` (`delivered`, `rejected`, `failed`, `skipped`).
pub(crate) const DESTINATION_EVENTS: &str = "segment_connections_destination_events_total";
/// Tracking API requests (each attempt) by `destination_id` and `status_class` (as
/// `upstream_requests_total`).
pub(crate) const DESTINATION_UPSTREAM_REQUESTS: &str =
    "segment_connections_destination_upstream_requests_total";
/// Tracking API request duration in seconds by `destination_id`.
pub(crate) const DESTINATION_UPSTREAM_DURATION: &str =
    "segment_connections_destination_upstream_duration_seconds";
/// Seconds batches waited for the destination's rate limit, by `destination_id`.
pub(crate) const DESTINATION_RATE_LIMIT_WAIT: &str =
    "segment_connections_destination_rate_limit_wait_seconds_total";
/// The most destinations labelled at once: past it, a destination's figures count only in the
/// unlabelled totals (a warning says so, once).
pub(crate) const MAX_LABELLED_DESTINATIONS: usize = 500;

const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH_EVENT_BUCKETS: &[f64] = &[1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0];
const BATCH_BYTE_BUCKETS: &[f64] = &[
    1024.0, 8192.0, 32768.0, 65536.0, 131072.0, 262144.0, 475000.0,
];

// === Recorder and /metrics ===

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder for the process (the first call does; later calls, e.g.
/// several servers in one test process, share it). `None` when another recorder was installed
/// first.
pub(crate) fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    DURATION_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(BATCH_EVENTS.into()),
                        BATCH_EVENT_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(BATCH_BYTES.into()), BATCH_BYTE_BUCKETS)
                });
            let recorder = match builder {
                Ok(b) => b.build_recorder(),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: bad buckets; metrics disabled");
                    return None;
                }
            };
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    start_at_zero();
                    Some(handle)
                }
                Err(_) => {
                    tracing::warn!("metrics: another recorder is installed; /metrics is empty");
                    None
                }
            }
        })
        .clone()
}

/// The build-info gauge, and every delivery series of a closed label set at zero.
fn start_at_zero() {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for action in ACTIONS {
        for result in EVENT_RESULTS {
            counter!(EVENTS, "action" => action, "result" => result.as_str()).increment(0);
        }
    }
    counter!(EVENTS, "action" => "none", "result" => EventResult::Skipped.as_str()).increment(0);
    for class in STATUS_CLASSES {
        counter!(UPSTREAM_REQUESTS, "status_class" => class.as_str()).increment(0);
    }
    counter!(UPSTREAM_RETRIES).increment(0);
    for status in SYNC_STATUSES {
        counter!(SYNCS, "status" => status).increment(0);
    }
    for outcome in SYNC_OUTCOMES {
        counter!(SYNC_RECORDS, "outcome" => outcome).increment(0);
    }
    gauge!(SYNCS_RUNNING).set(0.0);
    counter!(UPSTREAM_BYTES).increment(0);
    gauge!(UPSTREAM_IN_FLIGHT).set(0.0);
}

/// Reads the process's figures from `/proc/self` into their gauges (Linux; elsewhere, or when
/// a file cannot be read, the gauge is left as it was).
fn sample_process() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    if let Some(kib) = rss_kib {
        gauge!(PROCESS_RESIDENT_BYTES).set(kib * 1024.0);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge!(PROCESS_OPEN_FDS).set(fds.count() as f64);
    }
    if let Some(ticks) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .as_deref()
        .and_then(cpu_ticks)
    {
        // USER_HZ, the unit of /proc's times, is 100 on every Linux architecture.
        gauge!(PROCESS_CPU_SECONDS).set(ticks as f64 / 100.0);
    }
}

/// User plus system time, in clock ticks, from a `/proc/<pid>/stat` line: fields 14 and 15,
/// counted after the command name's closing parenthesis (the name may hold spaces).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(RPC_REQUESTS, "gRPC calls by service, method and code");
    describe_counter!(SYNCS, "syncs ended, by status");
    describe_gauge!(SYNCS_RUNNING, "syncs in progress on this replica");
    describe_counter!(
        SYNC_RECORDS,
        "records per mapping by what the sync found: added, updated, deleted, unchanged, retried, gave_up"
    );
    describe_gauge!(BUILD_INFO, "1, labelled with the running build's version");
    describe_gauge!(PROCESS_RESIDENT_BYTES, Unit::Bytes, "resident memory");
    describe_gauge!(PROCESS_OPEN_FDS, "open file descriptors");
    describe_gauge!(
        PROCESS_CPU_SECONDS,
        Unit::Seconds,
        "CPU time, user and system"
    );
    describe_histogram!(RPC_DURATION, Unit::Seconds, "gRPC call duration");
    describe_gauge!(RPC_IN_FLIGHT, "gRPC calls in progress");
    describe_counter!(ROWS_RECEIVED, "rows received by method");
    describe_counter!(
        EVENTS,
        "events (row x matching mapping) by action and result"
    );
    describe_counter!(UPSTREAM_REQUESTS, "Tracking API requests by status class");
    describe_histogram!(
        UPSTREAM_DURATION,
        Unit::Seconds,
        "Tracking API request duration"
    );
    describe_gauge!(UPSTREAM_IN_FLIGHT, "Tracking API requests in progress");
    describe_counter!(UPSTREAM_RETRIES, "Tracking API retries");
    describe_counter!(
        USAGE_CALLS,
        "Tracking API calls (events delivered) by destination"
    );
    describe_counter!(
        USAGE_BYTES,
        Unit::Bytes,
        "bytes of the batches that delivered them, by destination"
    );
    describe_histogram!(BATCH_EVENTS, "events per batch");
    describe_histogram!(
        BATCH_BYTES,
        Unit::Bytes,
        "bytes per batch body, uncompressed"
    );
    describe_counter!(
        UPSTREAM_BYTES,
        Unit::Bytes,
        "request body bytes sent to the Tracking API"
    );
}

// === GET /metrics ===

/// The Prometheus text format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How long one connection may last, from accept to the last byte of its answer: a scrape takes
/// milliseconds, a client that sends slowly or never reads is cut off.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The most one connection may send: a scrape is one small GET (one request per connection).
const REQUEST_LIMIT: usize = 16 * 1024;
/// After `shutdown`, how long `serve` waits for the connections still open (a scrape being
/// answered takes milliseconds) before it returns; short, as it adds to the process's shutdown.
/// Those it leaves go on until they end or reach their deadline.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(250);
/// How long accepting pauses after a failed accept that is not the peer's (out of file
/// descriptors, say), and how often such a failure is logged while it lasts.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
const ACCEPT_REPEAT: Duration = Duration::from_secs(10);

/// Answers `GET /metrics` (and `HEAD`) on `listener` with the Prometheus text until `shutdown`
/// completes; another method on `/metrics` gets 405, any other path 404. An axum server over
/// HTTP/1.1, one request per connection (every answer says `Connection: close`); a connection
/// may send at most 16 KiB and last at most 10 s.
pub(crate) async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let bounds = Bounds {
        timeout: CONNECTION_TIMEOUT,
        request_bytes: REQUEST_LIMIT,
    };
    serve_within(listener, handle, shutdown, bounds).await;
}

/// What one connection may take.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    timeout: Duration,
    request_bytes: usize,
}

async fn serve_within(
    listener: TcpListener,
    handle: PrometheusHandle,
    shutdown: impl std::future::Future<Output = ()>,
    bounds: Bounds,
) {
    let upkeep = {
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        })
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = Bounded {
        listener,
        bounds,
        failures: 0,
        warned: None,
    };
    let mut server = std::pin::pin!(
        axum::serve(listener, router(handle))
            .with_graceful_shutdown(async {
                stopped.await.ok();
            })
            .into_future()
    );
    tokio::pin!(shutdown);
    tokio::select! {
        served = &mut server => {
            if let Err(e) = served {
                tracing::warn!(error = %e, "metrics: the server stopped");
            }
        }
        () = &mut shutdown => {
            // The listener closes; the connections still open get a moment to end.
            stop.send(()).ok();
            if tokio::time::timeout(SHUTDOWN_FLUSH, &mut server).await.is_err() {
                tracing::debug!("metrics: connections still open at shutdown left to their deadline");
            }
        }
    }
    upkeep.abort();
}

/// `GET /metrics`, 405 for another method there, 404 elsewhere; every answer closes its
/// connection.
fn router(handle: PrometheusHandle) -> axum::Router {
    use axum::http::{HeaderValue, StatusCode, header};
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(
                |axum::extract::State(handle): axum::extract::State<PrometheusHandle>| async move {
                    sample_process();
                    let mut text = handle.render();
                    render_destinations(&mut text);
                    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
                },
            ),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found: GET /metrics\n") })
        .layer(tower::util::MapResponseLayer::new(
            |mut response: axum::response::Response| {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                response
            },
        ))
        .with_state(handle)
}

/// The metrics listener: accepted connections come bounded ([`BoundedIo`]); a failed accept
/// is logged (at most every [`ACCEPT_REPEAT`]) and paused on, not spun on.
struct Bounded {
    listener: TcpListener,
    bounds: Bounds,
    /// Failed accepts since the last warning, and when that was.
    failures: u64,
    warned: Option<tokio::time::Instant>,
}

impl axum::serve::Listener for Bounded {
    type Io = BoundedIo;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (BoundedIo, std::net::SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => return (BoundedIo::new(stream, self.bounds), addr),
                // The peer went away before its connection was accepted.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::Interrupted
                            | std::io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) => {
                    self.failures += 1;
                    let now = tokio::time::Instant::now();
                    if self.warned.is_none_or(|at| now - at >= ACCEPT_REPEAT) {
                        tracing::warn!(
                            error = %e,
                            failures = self.failures,
                            "metrics: accepting a connection failed; pausing"
                        );
                        self.failures = 0;
                        self.warned = Some(now);
                    }
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection that fails every read and write once its deadline has passed, and every read
/// once it has sent more than its request limit.
struct BoundedIo {
    stream: TcpStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    read_left: usize,
}

impl BoundedIo {
    fn new(stream: TcpStream, bounds: Bounds) -> BoundedIo {
        BoundedIo {
            stream,
            deadline: Box::pin(tokio::time::sleep(bounds.timeout)),
            read_left: bounds.request_bytes,
        }
    }

    fn check_deadline(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the connection's time is up",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for BoundedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.check_deadline(cx)?;
        if this.read_left == 0 {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the request is too large",
            )));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        this.read_left = this.read_left.saturating_sub(read);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for BoundedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.check_deadline(cx)?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.check_deadline(cx)?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.check_deadline(cx)?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.check_deadline(cx)?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

// === Call metrics (recorded by the per-call layer, `grpc::layer`) ===

/// Records one finished call: its `code` (a gRPC code name) and how long it took.
pub(crate) fn record_rpc(
    service: &'static str,
    method: &'static str,
    code: &'static str,
    elapsed: Duration,
) {
    counter!(RPC_REQUESTS, "service" => service, "method" => method, "code" => code).increment(1);
    histogram!(RPC_DURATION, "service" => service, "method" => method)
        .record(elapsed.as_secs_f64());
}

/// Marks one call in progress until the guard drops.
pub(crate) fn rpc_in_flight(service: &'static str, method: &'static str) -> InFlight {
    InFlight::new(gauge!(RPC_IN_FLIGHT, "service" => service, "method" => method))
}

/// Counts `n` rows received by `method`.
pub(crate) fn record_rows_received(method: &'static str, n: u64) {
    counter!(ROWS_RECEIVED, "method" => method).increment(n);
}

// === Delivery metrics (called by the delivery path) ===

/// What became of one event (one row through one matching mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventResult {
    Delivered,
    Rejected,
    Failed,
    Skipped,
}

impl EventResult {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventResult::Delivered => "delivered",
            EventResult::Rejected => "rejected",
            EventResult::Failed => "failed",
            EventResult::Skipped => "skipped",
        }
    }
}

/// Counts `n` events of `action` (the action's label, `Action::as_str`: `track`, `identify`…)
/// with `result`. A row no mapping matched has no action: count it with
/// [`record_skipped_rows`].
pub fn record_events(action: &'static str, result: EventResult, n: u64) {
    counter!(EVENTS, "action" => action, "result" => result.as_str()).increment(n);
}

/// A sync started on this replica.
pub(crate) fn record_sync_started() {
    gauge!(SYNCS_RUNNING).increment(1.0);
}

/// A sync ended with `status`, having found `outcomes` (label, count) over its mappings.
pub(crate) fn record_sync_ended(status: &'static str, outcomes: [(&'static str, u64); 6]) {
    gauge!(SYNCS_RUNNING).decrement(1.0);
    counter!(SYNCS, "status" => status).increment(1);
    for (outcome, n) in outcomes {
        counter!(SYNC_RECORDS, "outcome" => outcome).increment(n);
    }
}

/// Counts rows that no mapping matched (`action="none"`, `result="skipped"`).
pub fn record_skipped_rows(n: u64) {
    counter!(EVENTS, "action" => "none", "result" => EventResult::Skipped.as_str()).increment(n);
}

/// The outcome of one Tracking API request, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// An HTTP status, classed `1xx`…`5xx`, except 429 (Too Many Requests), which is its own
    /// class `429` so rate limiting can be counted: `4xx` excludes it.
    Http(u16),
    /// The per-attempt timeout elapsed.
    Timeout,
    /// No HTTP answer (connect, TLS or I/O error).
    Error,
}

impl StatusClass {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StatusClass::Http(s) => match s {
                100..=199 => "1xx",
                200..=299 => "2xx",
                300..=399 => "3xx",
                429 => "429",
                400..=499 => "4xx",
                500..=599 => "5xx",
                _ => "other",
            },
            StatusClass::Timeout => "timeout",
            StatusClass::Error => "error",
        }
    }
}

/// Records one Tracking API request (one attempt) and how long it took.
pub fn record_upstream_request(class: StatusClass, elapsed: Duration) {
    let class = class.as_str();
    counter!(UPSTREAM_REQUESTS, "status_class" => class).increment(1);
    histogram!(UPSTREAM_DURATION, "status_class" => class).record(elapsed.as_secs_f64());
}

/// Records one retry (an attempt after the first).
pub fn record_retry() {
    counter!(UPSTREAM_RETRIES).increment(1);
}

/// Records one batch body about to be sent: its events and bytes.
pub fn record_batch(events: usize, bytes: usize) {
    histogram!(BATCH_EVENTS).record(events as f64);
    histogram!(BATCH_BYTES).record(bytes as f64);
}

/// Events a destination was delivered (API calls) and the bytes of their batches.
pub fn record_usage(destination_id: &str, calls: u64, bytes: u64) {
    let d = destination_id.to_owned();
    counter!(USAGE_CALLS, "destination_id" => d.clone()).increment(calls);
    counter!(USAGE_BYTES, "destination_id" => d).increment(bytes);
}

/// One attempt's request body, as sent.
pub fn record_upstream_bytes(bytes: usize) {
    counter!(UPSTREAM_BYTES).increment(bytes as u64);
}

/// Marks one Tracking API request in progress until the guard drops.
pub fn upstream_in_flight() -> InFlight {
    InFlight::new(gauge!(UPSTREAM_IN_FLIGHT))
}

/// Decrements its gauge when dropped.
#[derive(Debug)]
pub struct InFlight(metrics::Gauge);

impl InFlight {
    fn new(gauge: metrics::Gauge) -> InFlight {
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

// === By destination ===

/// The status classes a destination's requests are counted by, each present from the start.
const DESTINATION_CLASSES: [&str; 9] = [
    "2xx", "429", "4xx", "5xx", "timeout", "error", "1xx", "3xx", "other",
];

/// One destination's series: counters and the latency histogram, rendered by
/// [`render_destinations`]. Registered while a sender of the destination exists; the last one
/// dropped (the destination deleted, changed, or evicted from the cache) takes them away.
#[derive(Debug)]
struct Series {
    id: String,
    events: [AtomicU64; 4],
    requests: [AtomicU64; DESTINATION_CLASSES.len()],
    /// Requests per duration bucket (the last: above every bound), and their total in
    /// nanoseconds.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    duration_nanos: AtomicU64,
    rate_limit_wait_nanos: AtomicU64,
}

type Registry = std::sync::Mutex<std::collections::BTreeMap<String, std::sync::Weak<Series>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

impl Drop for Series {
    fn drop(&mut self) {
        let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
        // Only its own entry: a new sender may have registered the id again meanwhile.
        if map
            .get(&self.id)
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), self))
        {
            map.remove(&self.id);
        }
    }
}

/// Where one destination's figures are counted: each `record_*` counts in the process-wide
/// series and, when the destination is labelled, in its own. Cheap to clone; the default is
/// unlabelled.
#[derive(Debug, Clone, Default)]
pub struct DestinationMetrics(Option<std::sync::Arc<Series>>);

impl DestinationMetrics {
    /// The series of `destination_id`, at zero if new (shared with its other senders); it
    /// stays while this or a clone lives. Unlabelled past [`MAX_LABELLED_DESTINATIONS`].
    pub fn of(destination_id: &str) -> DestinationMetrics {
        let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
        let series = register(&mut map, destination_id, MAX_LABELLED_DESTINATIONS);
        if series.is_none() {
            static WARNED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    limit = MAX_LABELLED_DESTINATIONS,
                    "metrics: more destinations in use than are labelled; the others count only in the totals"
                );
            }
        }
        DestinationMetrics(series)
    }

    /// `n` events of `action` with `result` (and in `events_total`).
    pub fn record_events(&self, action: &'static str, result: EventResult, n: u64) {
        record_events(action, result, n);
        if let Some(s) = &self.0 {
            s.events[result as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// `n` rows no mapping matched (and in `events_total`, `action="none"`).
    pub fn record_skipped_rows(&self, n: u64) {
        record_skipped_rows(n);
        if let Some(s) = &self.0 {
            s.events[EventResult::Skipped as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// One Tracking API request and how long it took (and in `upstream_requests_total`).
    pub fn record_upstream_request(&self, class: StatusClass, elapsed: Duration) {
        record_upstream_request(class, elapsed);
        let Some(s) = &self.0 else { return };
        let label = class.as_str();
        if let Some(i) = DESTINATION_CLASSES.iter().position(|c| *c == label) {
            s.requests[i].fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(DURATION_BUCKETS.len());
        s.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        s.duration_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// A batch waited `wait` for the destination's rate limit.
    pub fn record_rate_limit_wait(&self, wait: Duration) {
        if let Some(s) = &self.0 {
            let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
            s.rate_limit_wait_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
    }
}

/// The live series of `id` in `map`, or a new one at zero if fewer than `cap` are live.
fn register(
    map: &mut std::collections::BTreeMap<String, std::sync::Weak<Series>>,
    id: &str,
    cap: usize,
) -> Option<std::sync::Arc<Series>> {
    if let Some(series) = map.get(id).and_then(std::sync::Weak::upgrade) {
        return Some(series);
    }
    map.retain(|_, w| w.strong_count() > 0);
    if map.len() >= cap {
        return None;
    }
    let series = std::sync::Arc::new(Series {
        id: id.to_owned(),
        events: Default::default(),
        requests: Default::default(),
        buckets: Default::default(),
        duration_nanos: AtomicU64::new(0),
        rate_limit_wait_nanos: AtomicU64::new(0),
    });
    map.insert(id.to_owned(), std::sync::Arc::downgrade(&series));
    Some(series)
}

/// Appends every registered destination's series to `out`, in the Prometheus text format.
fn render_destinations(out: &mut String) {
    use std::fmt::Write as _;
    let live: Vec<std::sync::Arc<Series>> = {
        let map = registry().lock().unwrap_or_else(|p| p.into_inner());
        map.values().filter_map(std::sync::Weak::upgrade).collect()
    };
    if live.is_empty() {
        return;
    }
    let header = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let secs = |nanos: u64| nanos as f64 / 1e9;
    header(
        out,
        DESTINATION_EVENTS,
        "counter",
        "events (row x matching mapping) by destination and result",
    );
    for s in &live {
        for result in EVENT_RESULTS {
            let n = get(&s.events[result as usize]);
            let (id, result) = (label(&s.id), result.as_str());
            let _ = writeln!(
                out,
                "{DESTINATION_EVENTS}{{destination_id=\"{id}\",result=\"{result}\"}} {n}"
            );
        }
    }
    header(
        out,
        DESTINATION_UPSTREAM_REQUESTS,
        "counter",
        "Tracking API requests by destination and status class",
    );
    for s in &live {
        for (class, n) in DESTINATION_CLASSES.iter().zip(&s.requests) {
            let (id, n) = (label(&s.id), get(n));
            let _ = writeln!(
                out,
                "{DESTINATION_UPSTREAM_REQUESTS}{{destination_id=\"{id}\",status_class=\"{class}\"}} {n}"
            );
        }
    }
    header(
        out,
        DESTINATION_UPSTREAM_DURATION,
        "histogram",
        "Tracking API request duration by destination",
    );
    for s in &live {
        let id = label(&s.id);
        let mut count = 0;
        for (i, n) in s.buckets.iter().enumerate() {
            count += get(n);
            let le = DURATION_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), f64::to_string);
            let _ = writeln!(
                out,
                "{DESTINATION_UPSTREAM_DURATION}_bucket{{destination_id=\"{id}\",le=\"{le}\"}} {count}"
            );
        }
        let sum = secs(get(&s.duration_nanos));
        let _ = writeln!(
            out,
            "{DESTINATION_UPSTREAM_DURATION}_sum{{destination_id=\"{id}\"}} {sum}\n\
             {DESTINATION_UPSTREAM_DURATION}_count{{destination_id=\"{id}\"}} {count}"
        );
    }
    header(
        out,
        DESTINATION_RATE_LIMIT_WAIT,
        "counter",
        "seconds batches waited for the destination's rate limit",
    );
    for s in &live {
        let (id, wait) = (label(&s.id), secs(get(&s.rate_limit_wait_nanos)));
        let _ = writeln!(
            out,
            "{DESTINATION_RATE_LIMIT_WAIT}{{destination_id=\"{id}\"}} {wait}"
        );
    }
}

/// A label value escaped for the text format (ids are server-made, so this is belt and braces).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle_with_a_sample() -> PrometheusHandle {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, record_retry);
        handle
    }

    /// `method uri` answered by the router: status, headers, body.
    async fn ask(method: &str, uri: &str) -> (u16, axum::http::HeaderMap, String) {
        use tower::ServiceExt as _;
        let request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router(handle_with_a_sample())
            .oneshot(request)
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status.as_u16(),
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn get_metrics_is_the_prometheus_text_and_the_rest_is_refused() {
        let (status, headers, body) = ask("GET", "/metrics?x=1").await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], CONTENT_TYPE);
        assert_eq!(headers["connection"], "close");
        assert!(body.contains(&format!("{UPSTREAM_RETRIES} 1")), "{body}");
        let (status, _, body) = ask("HEAD", "/metrics").await;
        assert_eq!((status, body.as_str()), (200, ""));
        for method in ["POST", "PUT", "DELETE"] {
            let (status, headers, _) = ask(method, "/metrics").await;
            assert_eq!(status, 405, "{method}");
            assert_eq!(headers["connection"], "close");
        }
        for (method, uri) in [("GET", "/"), ("GET", "/metrics/x"), ("POST", "/other")] {
            let (status, headers, body) = ask(method, uri).await;
            assert_eq!(status, 404, "{method} {uri}");
            assert_eq!(headers["connection"], "close");
            assert_eq!(body, "not found: GET /metrics\n");
        }
    }

    /// A server with `bounds`, its address, and what stops it.
    async fn start(
        bounds: Bounds,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_within(
            listener,
            handle_with_a_sample(),
            async {
                stopped.await.ok();
            },
            bounds,
        ));
        (addr, stop, server)
    }

    /// Sends `request`, then reads until the server closes (or resets) the connection.
    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The server may already have cut the connection off.
        stream.write_all(request).await.ok();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok();
        String::from_utf8_lossy(&answer).into_owned()
    }

    const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test]
    async fn one_request_per_connection() {
        let (addr, stop, server) = start(Bounds {
            timeout: Duration::from_secs(30),
            request_bytes: 1024,
        })
        .await;
        // read_to_end returns: the server closes the connection after its answer.
        let answer = tokio::time::timeout(Duration::from_secs(10), exchange(addr, SCRAPE))
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("connection: close\r\n"), "{answer}");
        assert!(
            answer.contains(&format!("{UPSTREAM_RETRIES} 1")),
            "{answer}"
        );
        stop.send(()).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_client_that_stalls_is_cut_off_at_the_deadline() {
        let (addr, stop, server) = start(Bounds {
            timeout: Duration::from_millis(300),
            request_bytes: 1024,
        })
        .await;
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            exchange(addr, b"GET /metrics HTTP/1.1\r\nHo"),
        )
        .await
        .expect("the connection is closed at its deadline");
        assert!(!answer.contains("200 OK"), "{answer}");
        assert!(started.elapsed() >= Duration::from_millis(250));
        // The server goes on answering.
        let answer = exchange(addr, SCRAPE).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        stop.send(()).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_request_over_the_limit_is_cut_off() {
        let (addr, stop, server) = start(Bounds {
            timeout: Duration::from_secs(30),
            request_bytes: 1024,
        })
        .await;
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        request.resize(64 * 1024, b'a');
        let answer = tokio::time::timeout(Duration::from_secs(10), exchange(addr, &request))
            .await
            .expect("the connection is closed before its deadline");
        assert!(!answer.contains("200 OK"), "{answer}");
        stop.send(()).unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_does_not_wait_for_a_stalled_client() {
        use tokio::io::AsyncWriteExt as _;
        let (addr, stop, server) = start(Bounds {
            timeout: Duration::from_secs(60),
            request_bytes: 1024,
        })
        .await;
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled
            .write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returns soon after shutdown")
            .unwrap();
        assert!(started.elapsed() < SHUTDOWN_FLUSH + Duration::from_millis(500));
        // And the port is closed.
        assert!(TcpStream::connect(addr).await.is_err());
    }

    /// Before any event, a ratio over `events_total` is defined: every series of the closed
    /// label sets is there at zero, with the build's version.
    #[test]
    fn delivery_series_start_at_zero() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, start_at_zero);
        let text = handle.render();
        for action in ACTIONS {
            for result in ["delivered", "rejected", "failed", "skipped"] {
                let series = format!(
                    "segment_connections_events_total{{action=\"{action}\",result=\"{result}\"}} 0"
                );
                assert!(text.contains(&series), "{series} in\n{text}");
            }
        }
        assert!(
            text.contains(r#"segment_connections_upstream_requests_total{status_class="429"} 0"#)
        );
        let version = env!("CARGO_PKG_VERSION");
        assert!(text.contains(&format!(
            "segment_connections_build_info{{version=\"{version}\"}} 1"
        )));
    }

    /// A destination's series are there at zero once its metrics exist, count what is
    /// recorded (in the totals too), are shared by its senders, and leave with the last one.
    #[test]
    fn destination_series_start_at_zero_and_leave_with_their_destination() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let id = "dst_metrics_unit_test";
        let text = || {
            let mut t = String::new();
            render_destinations(&mut t);
            t
        };
        let series = |t: &str, name: &str, labels: &str| -> Option<f64> {
            let prefix = format!("{name}{{destination_id=\"{id}\"{labels}}} ");
            t.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .map(|v| v.parse().unwrap())
        };
        let m = DestinationMetrics::of(id);
        let t = text();
        for result in ["delivered", "rejected", "failed", "skipped"] {
            let labels = format!(",result=\"{result}\"");
            assert_eq!(series(&t, DESTINATION_EVENTS, &labels), Some(0.0), "{t}");
        }
        let class = |c: &str| format!(",status_class=\"{c}\"");
        assert_eq!(
            series(&t, DESTINATION_UPSTREAM_REQUESTS, &class("429")),
            Some(0.0)
        );
        let count = format!("{DESTINATION_UPSTREAM_DURATION}_count");
        assert_eq!(series(&t, &count, ""), Some(0.0));
        ::metrics::with_local_recorder(&recorder, || {
            m.record_events("track", EventResult::Delivered, 3);
            // Another sender of the destination shares the series.
            let again = DestinationMetrics::of(id);
            again.record_upstream_request(StatusClass::Http(200), Duration::from_millis(20));
            m.record_upstream_request(StatusClass::Http(429), Duration::from_millis(3));
            m.record_rate_limit_wait(Duration::from_millis(1500));
        });
        let t = text();
        let delivered = ",result=\"delivered\"";
        assert_eq!(series(&t, DESTINATION_EVENTS, delivered), Some(3.0));
        assert_eq!(
            series(&t, DESTINATION_UPSTREAM_REQUESTS, &class("2xx")),
            Some(1.0)
        );
        assert_eq!(
            series(&t, DESTINATION_UPSTREAM_REQUESTS, &class("429")),
            Some(1.0)
        );
        assert_eq!(series(&t, &count, ""), Some(2.0));
        let bucket = format!("{DESTINATION_UPSTREAM_DURATION}_bucket");
        assert_eq!(series(&t, &bucket, ",le=\"0.005\""), Some(1.0));
        assert_eq!(series(&t, &bucket, ",le=\"+Inf\""), Some(2.0));
        assert_eq!(series(&t, DESTINATION_RATE_LIMIT_WAIT, ""), Some(1.5));
        // The totals counted too, without the id.
        let totals = handle.render();
        assert!(
            totals.contains(
                "segment_connections_events_total{action=\"track\",result=\"delivered\"} 3"
            ),
            "{totals}"
        );
        assert!(!totals.contains(id));
        drop(m);
        assert!(!text().contains(id), "{}", text());
    }

    /// Only so many destinations are labelled at once: the next one counts only in the totals,
    /// until a labelled one leaves; one already labelled is still found. (Over a registry of
    /// the test's own, so other tests' destinations do not count.)
    #[test]
    fn labelled_destinations_are_capped() {
        let mut map = std::collections::BTreeMap::new();
        let held: Vec<_> = (0..3)
            .map(|i| register(&mut map, &format!("dst_cap_{i}"), 3))
            .collect();
        assert!(held.iter().all(Option::is_some));
        assert!(register(&mut map, "dst_cap_over", 3).is_none());
        let again = register(&mut map, "dst_cap_1", 3).unwrap();
        assert!(std::sync::Arc::ptr_eq(&again, held[1].as_ref().unwrap()));
        drop((held, again));
        assert!(register(&mut map, "dst_cap_over", 3).is_some());
        // The cap the README and DESIGN document.
        assert_eq!(MAX_LABELLED_DESTINATIONS, 500);
    }

    /// The process's memory, descriptors and CPU time come from /proc at each scrape.
    #[test]
    fn process_figures_are_read_from_proc() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, sample_process);
        let text = handle.render();
        let value = |name: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| {
                    panic!("{name} in\n{text}");
                });
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(value(PROCESS_RESIDENT_BYTES) > 1e6);
        assert!(value(PROCESS_OPEN_FDS) >= 3.0);
        assert!(value(PROCESS_CPU_SECONDS) >= 0.0);
    }

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn status_classes() {
        assert_eq!(StatusClass::Http(204).as_str(), "2xx");
        assert_eq!(StatusClass::Http(429).as_str(), "429");
        assert_eq!(StatusClass::Http(400).as_str(), "4xx");
        assert_eq!(StatusClass::Http(428).as_str(), "4xx");
        assert_eq!(StatusClass::Http(430).as_str(), "4xx");
        assert_eq!(StatusClass::Http(503).as_str(), "5xx");
        assert_eq!(StatusClass::Http(99).as_str(), "other");
        assert_eq!(StatusClass::Timeout.as_str(), "timeout");
        assert_eq!(StatusClass::Error.as_str(), "error");
    }
}
