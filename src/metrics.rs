//! Prometheus metrics: a leaf module (it imports nothing of this crate).
//!
//! * The metric names below, with their labels.
//! * [`install`] sets the process-wide recorder (once) and [`serve`] answers `GET /metrics` on
//!   `--metrics-listen`.
//! * The `record_*` functions and in-flight guards the rest of the crate records through: the
//!   per-call layer (`grpc::layer`) for calls and rows received, the delivery path for events,
//!   Tracking API requests, retries and batches.
//!
//! Every label value comes from a closed set (method names from the layer's static table, gRPC
//! codes, actions, results, status classes): never a row id, user id, destination id or write
//! key. The functions take labels as `&'static str` or as the enums below, so a label cannot be
//! built from request data at run time.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

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

// === Call metrics (recorded by the per-call layer, `grpc::layer`) ===

/// Records one finished call: its `code` (a gRPC code name) and how long it took.
pub fn record_rpc(
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
pub fn rpc_in_flight(service: &'static str, method: &'static str) -> InFlight {
    InFlight::new(gauge!(RPC_IN_FLIGHT, "service" => service, "method" => method))
}

/// Counts `n` rows received by `method`.
pub fn record_rows_received(method: &'static str, n: u64) {
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
    pub fn as_str(self) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(StatusClass::Http(204).as_str(), "2xx");
        assert_eq!(StatusClass::Http(429).as_str(), "4xx");
        assert_eq!(StatusClass::Http(503).as_str(), "5xx");
        assert_eq!(StatusClass::Http(99).as_str(), "other");
        assert_eq!(StatusClass::Timeout.as_str(), "timeout");
        assert_eq!(StatusClass::Error.as_str(), "error");
    }
}
