//! OTLP traces: an in-process fake collector receives the span of a TestMapping call, in the
//! caller's trace (its `traceparent`), with the gRPC status. A test binary of its own: it
//! installs the process-wide subscriber and propagator.

mod common {
    pub mod app;
    pub mod fake_segment;
}

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::mpsc;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use common::app::{TestApp, order_row, track_mapping};
use segment_connections::grpc::proto;

struct Collector(mpsc::UnboundedSender<Span>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    self.0.send(span).ok();
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            Value::IntValue(i) => Some(i.to_string()),
            other => Some(format!("{other:?}")),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_exported_in_the_callers_trace() {
    // The fake collector.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    let (spans_tx, mut spans) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(spans_tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let endpoint = format!("http://{collector_addr}");
    let (layer, traces) = segment_connections::telemetry::otlp_layer(Some(&endpoint)).unwrap();
    tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(layer)
        .init();

    let app = TestApp::spawn_with(Arc::new(tempfile::tempdir().unwrap()), |_| {}).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let mut request = tonic::Request::new(proto::TestMappingRequest {
        mapping: Some(proto::test_mapping_request::Mapping::MappingJson(
            track_mapping("orders"),
        )),
        destination_id: None,
        rows: vec![order_row("o-1", "u-1")],
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    app.client.clone().test_mapping(request).await.unwrap();

    // A SubmitRows in the same trace: the Tracking API request carries it on.
    let fake = common::fake_segment::FakeSegment::start("wk-trace-0123").await;
    let d = app
        .create_destination_at("traced", &fake.url(), "wk-trace-0123")
        .await;
    app.create_mapping(&d.id, &track_mapping("orders")).await;
    let mut submit = tonic::Request::new(proto::SubmitRowsRequest {
        destination_id: d.id.clone(),
        model: "orders".into(),
        rows: vec![order_row("o-2", "u-1")],
        ..Default::default()
    });
    submit.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    let delivered = app
        .client
        .clone()
        .submit_rows(submit)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(delivered.counts.unwrap().delivered, 1);
    let upstream = fake.requests();
    let traceparent = upstream[0].traceparent.as_deref().unwrap_or_default();
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "{traceparent:?}"
    );
    app.stop().await;

    // Flush (blocking: off the runtime's workers).
    tokio::task::spawn_blocking(move || traces.shutdown())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let span = loop {
        let span = tokio::time::timeout(Duration::from_secs(10), spans.recv())
            .await
            .unwrap_or_else(|_| panic!("no TestMapping span; saw {seen:?}"))
            .unwrap();
        if span.name == "segment_connections.v1.Connections/TestMapping" {
            break span;
        }
        seen.push(span.name);
    };
    assert_eq!(hex(&span.trace_id), trace_id);
    assert_eq!(hex(&span.parent_span_id), parent_id);
    assert_eq!(attribute(&span, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attribute(&span, "rpc.method").as_deref(),
        Some("TestMapping")
    );
    assert_eq!(
        attribute(&span, "rpc.grpc.status_code").as_deref(),
        Some("OK")
    );
}

/// What the delivery path does on each Tracking API request: the call's trace continues.
#[test]
fn the_trace_context_is_injected_into_outgoing_headers() {
    let mut incoming = http::HeaderMap::new();
    incoming.insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            .parse()
            .unwrap(),
    );
    // The subscriber is process-wide and may not be installed yet in this test's order:
    // install a local one.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _enter = rt.enter();
    let (layer, _traces) =
        segment_connections::telemetry::otlp_layer(Some("http://127.0.0.1:1")).unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let span = segment_connections::telemetry::server_span("s", "m", &incoming);
        let _in = span.enter();
        let mut outgoing = http::HeaderMap::new();
        segment_connections::telemetry::inject_current(&mut outgoing);
        let traceparent = outgoing["traceparent"].to_str().unwrap();
        assert!(
            traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{traceparent}"
        );
        // A new span id: this service's span, not the caller's.
        assert!(!traceparent.contains("b7ad6b7169203331"), "{traceparent}");
    });
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
