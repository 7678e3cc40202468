//! The per-call layer around the gRPC server.
//!
//! * [`RpcLayer`] wraps every service: for every call it counts requests by service, method and
//!   code, times it, keeps an in-flight gauge (through the `crate::metrics` helpers), opens the
//!   call's trace span (`crate::telemetry::server_span`), and when the call ends (for streams:
//!   when the response stream ends) writes one structured log line (method, code, row counts,
//!   duration) and records the status on the span (`crate::telemetry::record_grpc_status`). It also admits each call through the [`Gate`] (concurrency limit, shutdown's
//!   drain).
//! * Handlers add row counts to the call's [`RpcCounts`] (`RpcCounts::of(&request)`).
//!
//! The `service` and `method` labels come from a static table of this server's methods
//! (anything else is `unknown`), the code label from the gRPC code names.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use super::gate::{CallKind, Gate, Ticket};
use crate::metrics::{self, InFlight};

// === Per-call row counts ===

/// What happened to the rows of one call. [`RpcLayer`] puts one in each request's extensions;
/// handlers add to it, the layer logs it when the call ends.
#[derive(Debug, Clone)]
pub(crate) struct RpcCounts {
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
pub(crate) enum Outcome {
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
    pub(crate) fn of<T>(request: &tonic::Request<T>) -> RpcCounts {
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
    pub(crate) fn add_rows(&self, n: u64) {
        self.counts.rows.fetch_add(n, Ordering::Relaxed);
        metrics::record_rows_received(self.method, n);
    }

    /// `n` results with `outcome`.
    pub(crate) fn add(&self, outcome: Outcome, n: u64) {
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
            "Sync",
            "GetSync",
            "ListSyncs",
            "ListSyncFailures",
            "ResetSync",
            "GetUsage",
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

const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;

/// The code of a `grpc-status` header value (UNKNOWN when it is not a code).
fn code_of(value: Option<&http::HeaderValue>) -> i32 {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|c| (0..CODE_NAMES.len() as i32).contains(c))
        .unwrap_or(UNKNOWN)
}

/// The status message (`grpc-message`, percent-decoded) of the headers or trailers that end a
/// call; empty without one.
fn message_of(map: &http::HeaderMap) -> String {
    // Only the two headers: tonic's parser would also decode (and insist on) the details.
    let mut status = http::HeaderMap::new();
    for name in ["grpc-status", "grpc-message"] {
        if let Some(v) = map.get(name) {
            status.insert(name, v.clone());
        }
    }
    tonic::Status::from_header_map(&status)
        .map(|s| s.message().to_owned())
        .unwrap_or_default()
}

/// Measures and logs every call (see the module docs), and admits it through the [`Gate`]: a
/// call the gate refuses (too many at once, or shutting down) is answered with the gate's status
/// without reaching its handler. Add it with `Server::builder().layer`.
#[derive(Debug, Clone)]
pub(crate) struct RpcLayer {
    gate: Gate,
}

impl RpcLayer {
    pub(crate) fn new(gate: Gate) -> RpcLayer {
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
pub(crate) struct RpcService<S> {
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
                "StreamRows" | "Sync" => CallKind::RowStream,
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
    pub(crate) struct RpcFuture<F, ResB> {
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
                let headers = response.headers();
                if let Some(status) = headers.get("grpc-status")
                    && let Some(c) = call.take()
                {
                    c.finish(code_of(Some(status)), || message_of(headers));
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
                    c.finish(UNKNOWN, || "the service failed before answering".into());
                }
                Err(e)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// The response body, watched for the trailers that carry the call's status.
    pub(crate) struct RpcBody<B> {
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
                    c.finish(code_of(trailers.get("grpc-status")), || {
                        message_of(trailers)
                    });
                }
            }
            Some(Err(_)) => {
                if let Some(c) = this.call.take() {
                    c.finish(UNKNOWN, || "the response stream failed".into());
                }
            }
            None => {
                if let Some(c) = this.call.take() {
                    c.finish(UNKNOWN, || "the response ended without a status".into());
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
    /// The call in `rpc_in_flight` until it is recorded.
    in_flight: Option<InFlight>,
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
        Call {
            service,
            method,
            started: Instant::now(),
            counts,
            span,
            in_flight: Some(metrics::rpc_in_flight(service, method)),
            ticket,
            done: false,
        }
    }

    /// Records the call as ended with `code`; `message` (the status message) is asked for
    /// only when the span needs it.
    fn finish(mut self, code: i32, message: impl FnOnce() -> String) {
        self.record(code, message);
    }

    fn record(&mut self, number: i32, message: impl FnOnce() -> String) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        // The name in metrics and logs, the number on the span.
        let code = CODE_NAMES
            .get(number as usize)
            .copied()
            .unwrap_or("UNKNOWN");
        let (service, method) = (self.service, self.method);
        let elapsed = self.started.elapsed();
        self.in_flight = None;
        metrics::record_rpc(service, method, code, elapsed);
        let duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
        crate::telemetry::record_grpc_status(&self.span, number, code, message);
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
        self.record(CANCELLED, String::new);
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
    fn codes_and_their_names() {
        let v = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert_eq!(code_of(Some(&v("0"))), 0);
        assert_eq!(
            CODE_NAMES[code_of(Some(&v("16"))) as usize],
            "UNAUTHENTICATED"
        );
        assert_eq!(code_of(Some(&v("99"))), UNKNOWN);
        assert_eq!(code_of(Some(&v("-1"))), UNKNOWN);
        assert_eq!(code_of(None), UNKNOWN);
        assert_eq!(CODE_NAMES[CANCELLED as usize], "CANCELLED");
    }

    #[test]
    fn the_status_message_is_decoded() {
        let status = tonic::Status::unavailable("store unavailable: 100% busy");
        // As a trailers-only answer carries it.
        let response = status.into_http::<()>();
        let trailers = response.headers();
        assert_eq!(code_of(trailers.get("grpc-status")), 14);
        assert_eq!(message_of(trailers), "store unavailable: 100% busy");
        assert_eq!(message_of(&http::HeaderMap::new()), "");
    }
}
