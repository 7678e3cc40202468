//! Optional OTLP trace export, W3C trace context, and the trace ids in log lines.
//!
//! Spans follow OpenTelemetry's semantic conventions (the RPC/gRPC and HTTP client ones):
//!
//! * [`otlp_layer`] builds the `tracing` layer that exports spans over OTLP/gRPC (the tonic
//!   exporter) to `--otlp-endpoint`, and installs the W3C `traceparent` propagator.
//! * [`server_span`] is the SERVER span of one incoming call (`rpc.system`, `rpc.service`,
//!   `rpc.method`), its parent taken from the call's `traceparent` metadata; `grpc::RpcLayer`
//!   opens it around every call and ends it with [`record_grpc_status`] once the call's status
//!   is known (for a stream: its trailers).
//! * [`client_span`] is the CLIENT span of one HTTP request (one per attempt: each retry has its
//!   own), ended with [`record_http_status`] or [`record_http_failure`]; [`inject`] writes its
//!   context into the request's headers, so the upstream sees this attempt as its parent.
//! * [`TraceIds`] wraps the log formatters: a line logged inside a traced span carries its
//!   `trace_id` and `span_id`, so logs and traces join.
//!
//! Nothing here reads headers other than `traceparent`/`tracestate`, and no span records one:
//! the write key, which travels in `Authorization`, cannot reach a span.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Whether spans are exported: without an OTLP endpoint no call span is opened, so logs carry
/// no span context.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The tracer provider behind the layer; [`Tracing::shutdown`] flushes what is buffered.
#[derive(Debug, Default)]
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Exports the spans still buffered and stops the exporter. Blocks: call it outside async
    /// code (or in `spawn_blocking`).
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("warning: flushing traces: {e}");
        }
    }
}

/// The OTLP layer for `endpoint` (e.g. `http://otel-collector:4317`), or none without one.
/// Must be called within a Tokio runtime (the tonic client spawns onto it).
pub fn otlp_layer<S>(
    endpoint: Option<&str>,
) -> anyhow::Result<(
    Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>,
    Tracing,
)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let Some(endpoint) = endpoint else {
        return Ok((None, Tracing::default()));
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .with_context(|| format!("--otlp-endpoint {endpoint}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name("segment-connections")
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    EXPORTING.store(true, Ordering::Relaxed);
    let tracer = provider.tracer("segment-connections");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok((
        Some(layer),
        Tracing {
            provider: Some(provider),
        },
    ))
}

/// The span of one incoming call, child of the caller's `traceparent` when it sent one (a
/// disabled span when traces are not exported). `rpc.grpc.status_code` and the error fields
/// are filled in by [`record_grpc_status`].
pub fn server_span(service: &str, method: &str, headers: &http::HeaderMap) -> tracing::Span {
    if !EXPORTING.load(Ordering::Relaxed) {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "rpc",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    // Without the OTLP layer there is nothing to attach to: fine.
    let _ = span.set_parent(parent);
    remember_ids(&span);
    span
}

/// Whether a call that ended with gRPC `code` failed on the server's side, per OpenTelemetry's
/// gRPC conventions: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE and
/// DATA_LOSS. The other codes (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, ...) answer the
/// caller's request and leave the span's status unset.
pub fn is_server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// Ends a call's span with its status: `rpc.grpc.status_code` (the number), and for a server
/// error (see [`is_server_error`]) the span marked as an error with `error.type` the code's
/// name and the status message as its description. `message` is only asked for then.
pub fn record_grpc_status(
    span: &tracing::Span,
    code: i32,
    name: &'static str,
    message: impl FnOnce() -> String,
) {
    if span.is_disabled() {
        return;
    }
    span.record("rpc.grpc.status_code", i64::from(code));
    if is_server_error(code) {
        mark_error(span, name, &message());
    }
}

/// Where an HTTP client span goes: `url.full` with any credentials in it redacted, and
/// `server.address`/`server.port`. Built once per upstream.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    url_full: String,
    address: String,
    port: Option<u16>,
}

impl HttpTarget {
    /// The target of requests to `url`. A user name or password in the URL is replaced by
    /// `REDACTED` (as the conventions ask), and so is the query, which no request here has but
    /// which could carry a key.
    pub fn new(url: &str) -> HttpTarget {
        let Ok(mut parsed) = url::Url::parse(url) else {
            return HttpTarget {
                url_full: "REDACTED".into(),
                address: String::new(),
                port: None,
            };
        };
        if !parsed.username().is_empty() {
            let _ = parsed.set_username("REDACTED");
        }
        if parsed.password().is_some() {
            let _ = parsed.set_password(Some("REDACTED"));
        }
        if parsed.query().is_some() {
            parsed.set_query(Some("REDACTED"));
        }
        HttpTarget {
            address: parsed.host_str().unwrap_or_default().to_owned(),
            port: parsed.port_or_known_default(),
            url_full: parsed.into(),
        }
    }

    /// `url.full` as spans record it.
    pub fn url_full(&self) -> &str {
        &self.url_full
    }
}

/// The CLIENT span of one HTTP request (one attempt) to `target`, child of the current span; a
/// disabled span when traces are not exported. `resend_count` is the attempt's number less one
/// (`http.request.resend_count`, recorded from the first retry on).
pub fn client_span(method: &'static str, target: &HttpTarget, resend_count: u32) -> tracing::Span {
    if !EXPORTING.load(Ordering::Relaxed) {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "http",
        otel.name = method,
        otel.kind = "client",
        http.request.method = method,
        server.address = target.address.as_str(),
        server.port = target.port.map(i64::from),
        url.full = target.url_full.as_str(),
        http.request.resend_count = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    if resend_count > 0 {
        span.record("http.request.resend_count", i64::from(resend_count));
    }
    remember_ids(&span);
    span
}

/// Ends an HTTP client span with the answer's status: 4xx and 5xx mark it as an error
/// (`error.type` the status code), as the HTTP conventions ask of client spans.
pub fn record_http_status(span: &tracing::Span, status: u16) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", i64::from(status));
    if status >= 400 {
        mark_error(span, &status.to_string(), "");
    }
}

/// Ends an HTTP client span that got no (whole) answer: `error_type` is a low-cardinality
/// name (`timeout`, `transport`, ...), `message` says what happened.
pub fn record_http_failure(span: &tracing::Span, error_type: &str, message: &str) {
    if !span.is_disabled() {
        mark_error(span, error_type, message);
    }
}

/// Marks `span` as an error: `error.type`, and status Error with `message` (if any).
fn mark_error(span: &tracing::Span, error_type: &str, message: &str) {
    span.record("error.type", error_type);
    // One of the two: each sets the status, the description with its message.
    if message.is_empty() {
        span.record("otel.status_code", "ERROR");
    } else {
        span.record("otel.status_description", message);
    }
}

/// Writes `span`'s trace context (`traceparent`) into `headers`: the receiver sees `span` as
/// its parent. Nothing when `span` is disabled.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeadersMut(headers))
    });
}

// === Trace ids in log lines ===

/// The ids a log line inside a traced span carries.
#[derive(Debug, Clone, Copy)]
struct LogIds {
    trace_id: TraceId,
    span_id: SpanId,
}

/// Keeps `span`'s trace and span id with the span (in the registry's extensions), where
/// [`TraceIds`] finds them for each log line.
fn remember_ids(span: &tracing::Span) {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    if !sc.is_valid() {
        return;
    }
    let ids = LogIds {
        trace_id: sc.trace_id(),
        span_id: sc.span_id(),
    };
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>()
            && let Some(data) = registry.span(id)
        {
            data.extensions_mut().insert(ids);
        }
    });
}

/// A log formatter that adds `trace_id` and `span_id` (OpenTelemetry's names for them in log
/// records) to every line logged inside a traced span (the nearest one: a call's server span
/// or an upstream attempt's client span): in the JSON format as the line's first fields, in
/// the plain format at the end of the line. Lines outside any traced span are unchanged.
#[derive(Debug, Clone)]
pub struct TraceIds<F> {
    inner: F,
    json: bool,
}

impl<F> TraceIds<F> {
    /// Around the plain (text) formatter.
    pub fn text(inner: F) -> TraceIds<F> {
        TraceIds { inner, json: false }
    }

    /// Around the JSON formatter (one object a line).
    pub fn json(inner: F) -> TraceIds<F> {
        TraceIds { inner, json: true }
    }
}

impl<S, N, F> FormatEvent<S, N> for TraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let ids = ctx.event_scope().and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<LogIds>().copied())
        });
        let Some(LogIds { trace_id, span_id }) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        if self.json && line.starts_with('{') {
            let fields = format!(r#"{{"trace_id":"{trace_id}","span_id":"{span_id}","#);
            line.replace_range(..1, &fields);
        } else {
            let end = line.trim_end_matches('\n').len();
            line.insert_str(end, &format!(" trace_id={trace_id} span_id={span_id}"));
        }
        writer.write_str(&line)
    }
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeadersMut<'a>(&'a mut http::HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}
