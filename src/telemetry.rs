//! Optional OTLP trace export and W3C trace context.
//!
//! * [`otlp_layer`] builds the `tracing` layer that exports spans over OTLP/gRPC (the tonic
//!   exporter) to `--otlp-endpoint`, and installs the W3C `traceparent` propagator.
//! * [`server_span`] is the span of one incoming call, its parent taken from the call's
//!   `traceparent` metadata (`grpc::RpcLayer` opens it around every call).
//! * [`inject_current`] writes the current span's context into outgoing HTTP headers: the
//!   delivery path calls it on each Tracking API request so a trace runs from the caller through
//!   the upstream send.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

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
/// disabled span when traces are not exported).
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
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    // Without the OTLP layer there is nothing to attach to: fine.
    let _ = span.set_parent(parent);
    span
}

/// Writes the current span's trace context (`traceparent`) into `headers`.
pub fn inject_current(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeadersMut(headers))
    });
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
