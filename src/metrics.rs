//! Prometheus metrics and the per-RPC layer.
//!
//! * [`install`] sets the process-wide recorder (once) and [`serve`] answers `GET /metrics` on
//!   `--metrics-listen`.
//! * [`RpcLayer`] wraps the gRPC server: for every call it counts requests by method and code,
//!   times it, keeps an in-flight gauge, and writes one structured log line (method, code,
//!   row counts, duration) when the call ends (for streams: when the response stream ends).
//!   It also admits each call through the [`Gate`] (concurrency limit, shutdown's drain).
//! * Handlers add row counts to the call's [`RpcCounts`] (`RpcCounts::of(&request)`).
//! * The delivery path records its own metrics through the `record_*` functions below.
//!
//! Every label value comes from a closed set (method names from a static table, gRPC codes,
//! actions, results, status classes): never a row id, user id, destination id or write key.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::grpc::gate::{CallKind, Gate, Ticket};
use crate::spec::fields::Action;

// === Names ===

/// Calls by `service`, `method` and `code` (the gRPC code name, e.g. `OK`, `INVALID_ARGUMENT`).
pub const RPC_REQUESTS: &str = "segment_connections_rpc_requests_total";
/// Call duration in seconds by `service` and `method`, until the last response message.
pub const RPC_DURATION: &str = "segment_connections_rpc_duration_seconds";
/// Calls in progress by `service` and `method`.
pub const RPC_IN_FLIGHT: &str = "segment_connections_rpc_in_flight";
/// Rows received by `method` (`TestMapping`, `SubmitRows`, `StreamRows`).
pub const ROWS_RECEIVED: &str = "segment_connections_rows_received_total";
/// Events (one per row and matching mapping) by `action` and `result`.
pub const EVENTS: &str = "segment_connections_events_total";
/// Tracking API requests (each attempt) by `status_class` (`2xx`…`5xx`, `timeout`, `error`).
pub const UPSTREAM_REQUESTS: &str = "segment_connections_upstream_requests_total";
/// Tracking API request duration in seconds by `status_class`.
pub const UPSTREAM_DURATION: &str = "segment_connections_upstream_duration_seconds";
/// Tracking API requests in progress.
pub const UPSTREAM_IN_FLIGHT: &str = "segment_connections_upstream_in_flight";
/// Retries of Tracking API requests (attempts after the first).
pub const UPSTREAM_RETRIES: &str = "segment_connections_upstream_retries_total";
/// Events per batch sent.
pub const BATCH_EVENTS: &str = "segment_connections_batch_events";
/// Bytes per batch body sent.
pub const BATCH_BYTES: &str = "segment_connections_batch_bytes";

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
pub fn install() -> Option<PrometheusHandle> {
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

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(RPC_REQUESTS, "gRPC calls by service, method and code");
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
    describe_histogram!(BATCH_EVENTS, "events per batch");
    describe_histogram!(BATCH_BYTES, Unit::Bytes, "bytes per batch body");
}

/// Answers `GET /metrics` (HTTP/1.1, one request per connection) on `listener` until
/// `shutdown` completes. Anything else gets 404.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    shutdown: impl std::future::Future<Output = ()>,
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
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let handle = handle.clone();
                tokio::spawn(async move {
                    let answer = tokio::time::timeout(Duration::from_secs(10), answer(stream, &handle));
                    if let Ok(Err(e)) = answer.await {
                        tracing::debug!(error = %e, "metrics: request failed");
                    }
                });
            }
        }
    }
    upkeep.abort();
}

async fn answer(
    mut stream: tokio::net::TcpStream,
    handle: &PrometheusHandle,
) -> std::io::Result<()> {
    // Read the request head (a scrape is a small GET).
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let path = path.map(|p| p.split(|&b| b == b'?').next().unwrap_or_default());
    let (status, content_type, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            handle.render(),
        ),
        _ => (
            "404 Not Found",
            "text/plain",
            "not found: GET /metrics\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
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
    pub fn as_str(self) -> &'static str {
        match self {
            EventResult::Delivered => "delivered",
            EventResult::Rejected => "rejected",
            EventResult::Failed => "failed",
            EventResult::Skipped => "skipped",
        }
    }
}

/// Counts `n` events of `action` with `result`. A row no mapping matched has no action: count
/// it with [`record_skipped_rows`].
pub fn record_events(action: Action, result: EventResult, n: u64) {
    counter!(EVENTS, "action" => action.as_str(), "result" => result.as_str()).increment(n);
}

/// Counts rows that no mapping matched (`action="none"`, `result="skipped"`).
pub fn record_skipped_rows(n: u64) {
    counter!(EVENTS, "action" => "none", "result" => EventResult::Skipped.as_str()).increment(n);
}

/// The outcome of one Tracking API request, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// An HTTP status (classed `1xx`…`5xx`).
    Http(u16),
    /// The per-attempt timeout elapsed.
    Timeout,
    /// No HTTP answer (connect, TLS or I/O error).
    Error,
}

impl StatusClass {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Http(s) => match s {
                100..=199 => "1xx",
                200..=299 => "2xx",
                300..=399 => "3xx",
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

/// Marks one Tracking API request in progress until the guard drops.
pub fn upstream_in_flight() -> InFlight {
    InFlight::new(gauge!(UPSTREAM_IN_FLIGHT))
}

/// Decrements its gauge when dropped.
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

// === Per-call row counts ===

/// What happened to the rows of one call. [`RpcLayer`] puts one in each request's extensions;
/// handlers add to it, the layer logs it when the call ends.
#[derive(Debug, Clone)]
pub struct RpcCounts {
    method: &'static str,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    rows: AtomicU64,
    accepted: AtomicU64,
    delivered: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
}

/// A per-row (or per-event) outcome counted for the call's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// TestMapping: the event would be accepted.
    Accepted,
    Delivered,
    Rejected,
    Failed,
    Skipped,
}

impl RpcCounts {
    /// The counts of the call `request` belongs to (a detached set when the layer is absent,
    /// e.g. a handler called directly in a unit test).
    pub fn of<T>(request: &tonic::Request<T>) -> RpcCounts {
        request
            .extensions()
            .get::<RpcCounts>()
            .cloned()
            .unwrap_or_else(|| RpcCounts::new("unknown"))
    }

    fn new(method: &'static str) -> RpcCounts {
        RpcCounts {
            method,
            counts: Arc::default(),
        }
    }

    /// `n` rows received; also counts them in `rows_received_total`.
    pub fn add_rows(&self, n: u64) {
        self.counts.rows.fetch_add(n, Ordering::Relaxed);
        counter!(ROWS_RECEIVED, "method" => self.method).increment(n);
    }

    /// `n` results with `outcome`.
    pub fn add(&self, outcome: Outcome, n: u64) {
        let c = &self.counts;
        let field = match outcome {
            Outcome::Accepted => &c.accepted,
            Outcome::Delivered => &c.delivered,
            Outcome::Rejected => &c.rejected,
            Outcome::Failed => &c.failed,
            Outcome::Skipped => &c.skipped,
        };
        field.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self, f: impl Fn(&Counts) -> &AtomicU64) -> u64 {
        f(&self.counts).load(Ordering::Relaxed)
    }
}

// === The RPC layer ===

/// The services and methods this server answers: the only values the `service` and `method`
/// labels take (anything else is `unknown`).
const METHODS: &[(&str, &[&str])] = &[
    (
        "segment_connections.v1.Connections",
        &[
            "CreateDestination",
            "GetDestination",
            "ListDestinations",
            "UpdateDestination",
            "DeleteDestination",
            "CreateMapping",
            "GetMapping",
            "ListMappings",
            "UpdateMapping",
            "DeleteMapping",
            "TestMapping",
            "SubmitRows",
            "StreamRows",
        ],
    ),
    ("grpc.health.v1.Health", &["Check", "Watch"]),
    (
        "grpc.reflection.v1.ServerReflection",
        &["ServerReflectionInfo"],
    ),
    (
        "grpc.reflection.v1alpha.ServerReflection",
        &["ServerReflectionInfo"],
    ),
];

/// `(service, method)` labels of a request path `/pkg.Service/Method`.
fn labels(path: &str) -> (&'static str, &'static str) {
    let unknown = ("unknown", "unknown");
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return unknown;
    };
    for (s, methods) in METHODS {
        if *s == service {
            return match methods.iter().find(|m| **m == method) {
                Some(m) => (s, m),
                None => (s, "unknown"),
            };
        }
    }
    unknown
}

const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The code name of a `grpc-status` header value (`UNKNOWN` when it is not a code).
fn code_label(value: Option<&http::HeaderValue>) -> &'static str {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .and_then(|i| CODE_NAMES.get(i).copied())
        .unwrap_or("UNKNOWN")
}

/// Measures and logs every call (see the module docs), and admits it through the [`Gate`]: a
/// call the gate refuses (too many at once, or shutting down) is answered with the gate's status
/// without reaching its handler. Add it with `Server::builder().layer`.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    gate: Gate,
}

impl RpcLayer {
    pub fn new(gate: Gate) -> RpcLayer {
        RpcLayer { gate }
    }
}

impl<S> tower_layer::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> RpcService<S> {
        RpcService {
            inner,
            gate: self.gate.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
    gate: Gate,
}

const HEALTH: &str = "grpc.health.v1.Health";

impl<S, B, ResB> tower_service::Service<http::Request<B>> for RpcService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<ResB>>,
    ResB: Default,
{
    type Response = http::Response<RpcBody<ResB>>;
    type Error = S::Error;
    type Future = RpcFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let (service, method) = labels(request.uri().path());
        let counts = RpcCounts::new(method);
        // The call's trace span, child of the caller's `traceparent`, around the handler.
        let span = crate::telemetry::server_span(service, method, request.headers());
        // Health is never refused (probes hear NOT_SERVING during shutdown) nor waited for
        // (Watch streams last as long as the prober).
        let ticket = if service == HEALTH {
            None
        } else {
            let kind = match method {
                "StreamRows" => CallKind::RowStream,
                _ => CallKind::Unary,
            };
            match self.gate.admit(kind) {
                Ok(ticket) => Some(ticket),
                Err(refused) => {
                    let refusal = tonic::Status::from(refused);
                    return RpcFuture {
                        inner: None,
                        refusal: Some(refusal.into_http()),
                        call: Some(Call::start(service, method, counts, span.clone(), None)),
                        span,
                    };
                }
            }
        };
        request.extensions_mut().insert(counts.clone());
        let inner = span.in_scope(|| self.inner.call(request));
        RpcFuture {
            inner: Some(inner),
            refusal: None,
            call: Some(Call::start(service, method, counts, span.clone(), ticket)),
            span,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct RpcFuture<F, ResB> {
        // The handler's response, or else (a refused call) `refusal`.
        #[pin]
        inner: Option<F>,
        refusal: Option<http::Response<ResB>>,
        call: Option<Call>,
        span: tracing::Span,
    }
}

impl<F, ResB, E> std::future::Future for RpcFuture<F, ResB>
where
    F: std::future::Future<Output = Result<http::Response<ResB>, E>>,
{
    type Output = Result<http::Response<RpcBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.inner.as_pin_mut() {
            Some(inner) => {
                let _entered = this.span.enter();
                ready!(inner.poll(cx))
            }
            None => Ok(this
                .refusal
                .take()
                .expect("RpcFuture polled after completion")),
        };
        let mut call = this.call.take();
        Poll::Ready(match result {
            Ok(response) => {
                // A trailers-only response (an error) carries its status in the headers.
                if let Some(status) = response.headers().get("grpc-status")
                    && let Some(c) = call.take()
                {
                    c.finish(code_label(Some(status)));
                }
                let span = this.span.clone();
                Ok(response.map(|body| RpcBody {
                    inner: body,
                    call,
                    span,
                }))
            }
            Err(e) => {
                if let Some(c) = call {
                    c.finish("UNKNOWN");
                }
                Err(e)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// The response body, watched for the trailers that carry the call's status.
    pub struct RpcBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
        span: tracing::Span,
    }
}

impl<B: http_body::Body> http_body::Body for RpcBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = {
            let _entered = this.span.enter();
            ready!(this.inner.poll_frame(cx))
        };
        match &frame {
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref()
                    && let Some(c) = this.call.take()
                {
                    c.finish(code_label(trailers.get("grpc-status")));
                }
            }
            Some(Err(_)) => {
                if let Some(c) = this.call.take() {
                    c.finish("UNKNOWN");
                }
            }
            None => {
                if let Some(c) = this.call.take() {
                    c.finish("UNKNOWN");
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One call being measured; finishing (or dropping) it records it exactly once.
struct Call {
    service: &'static str,
    method: &'static str,
    started: Instant,
    counts: RpcCounts,
    span: tracing::Span,
    /// Held until the call ends: shutdown waits for it.
    ticket: Option<Ticket>,
    done: bool,
}

impl Call {
    fn start(
        service: &'static str,
        method: &'static str,
        counts: RpcCounts,
        span: tracing::Span,
        ticket: Option<Ticket>,
    ) -> Call {
        gauge!(RPC_IN_FLIGHT, "service" => service, "method" => method).increment(1.0);
        Call {
            service,
            method,
            started: Instant::now(),
            counts,
            span,
            ticket,
            done: false,
        }
    }

    fn finish(mut self, code: &'static str) {
        self.record(code);
    }

    fn record(&mut self, code: &'static str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let (service, method) = (self.service, self.method);
        let elapsed = self.started.elapsed();
        gauge!(RPC_IN_FLIGHT, "service" => service, "method" => method).decrement(1.0);
        counter!(RPC_REQUESTS, "service" => service, "method" => method, "code" => code)
            .increment(1);
        histogram!(RPC_DURATION, "service" => service, "method" => method)
            .record(elapsed.as_secs_f64());
        let duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
        self.span.record("rpc.grpc.status_code", code);
        let _entered = self.span.enter();
        let rows = self.counts.get(|c| &c.rows);
        if service == HEALTH {
            // Probes call every few seconds: keep them out of the info log.
            tracing::debug!(target: "segment_connections::rpc", service, method, code, duration_ms, "rpc");
        } else if rows == 0 {
            tracing::info!(target: "segment_connections::rpc", service, method, code, duration_ms, "rpc");
        } else {
            let c = &self.counts;
            tracing::info!(
                target: "segment_connections::rpc",
                service,
                method,
                code,
                duration_ms,
                rows,
                accepted = c.get(|c| &c.accepted),
                delivered = c.get(|c| &c.delivered),
                rejected = c.get(|c| &c.rejected),
                failed = c.get(|c| &c.failed),
                skipped = c.get(|c| &c.skipped),
                "rpc"
            );
        }
        // Last: shutdown may go on once the call has been recorded.
        self.ticket = None;
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // Dropped before its status was seen: the client went away (or the server stopped).
        self.record("CANCELLED");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_the_table() {
        assert_eq!(
            labels("/segment_connections.v1.Connections/TestMapping"),
            ("segment_connections.v1.Connections", "TestMapping")
        );
        assert_eq!(
            labels("/segment_connections.v1.Connections/user-42"),
            ("segment_connections.v1.Connections", "unknown")
        );
        assert_eq!(labels("/evil.Service/x"), ("unknown", "unknown"));
        assert_eq!(labels("nonsense"), ("unknown", "unknown"));
    }

    #[test]
    fn every_rpc_of_the_api_has_a_label() {
        use prost::Message as _;
        let fds = prost_types::FileDescriptorSet::decode(crate::grpc::proto::FILE_DESCRIPTOR_SET)
            .unwrap();
        let service = fds
            .file
            .iter()
            .flat_map(|f| f.service.iter())
            .find(|s| s.name() == "Connections")
            .unwrap();
        for m in &service.method {
            let path = format!("/segment_connections.v1.Connections/{}", m.name());
            assert_eq!(labels(&path).1, m.name(), "{path}");
        }
    }

    #[test]
    fn codes_and_status_classes() {
        let v = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert_eq!(code_label(Some(&v("0"))), "OK");
        assert_eq!(code_label(Some(&v("16"))), "UNAUTHENTICATED");
        assert_eq!(code_label(Some(&v("99"))), "UNKNOWN");
        assert_eq!(code_label(None), "UNKNOWN");
        assert_eq!(StatusClass::Http(204).as_str(), "2xx");
        assert_eq!(StatusClass::Http(429).as_str(), "4xx");
        assert_eq!(StatusClass::Http(503).as_str(), "5xx");
        assert_eq!(StatusClass::Timeout.as_str(), "timeout");
    }
}
