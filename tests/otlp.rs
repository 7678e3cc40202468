//! OTLP traces from a real `serve` process (SQLite, `--otlp-endpoint` at a fake collector on
//! 127.0.0.1): its spans follow OpenTelemetry's RPC and HTTP client conventions, join the
//! caller's trace, have one client span per Tracking API attempt, mark server errors, and never
//! hold the write key; its log lines carry the trace and span ids, in both log formats.

mod common {
    #[allow(dead_code, reason = "serve.rs needs it")]
    pub mod bin;
    pub mod fake_segment;
    // serve.rs needs it (its own `allow(dead_code)`); nothing here starts PostgreSQL.
    pub mod pg;
    #[allow(dead_code, reason = "a few of the shared serve helpers")]
    pub mod serve;
}

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use tokio_stream::StreamExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

use common::fake_segment::{FakeSegment, Fault};
use common::serve::{Server, create_destination, order_row, track_mapping};
use segment_connections::grpc::proto;
use segment_connections::store::KeyRing;

const SERVICE: &str = "segment_connections.v1.Connections";
/// The caller's trace and span.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
/// Distinctive enough that finding it anywhere means it leaked.
const WRITE_KEY: &str = "wk-otlp-Zq7xK2mP9vR4";

/// A fake OTLP/gRPC collector on 127.0.0.1: keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Listens on 127.0.0.1:0; returns the collector and its endpoint URL.
    async fn start() -> (Collector, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let collector = Collector::default();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(collector.clone()))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (collector, endpoint)
    }

    /// The spans received, once `ready` holds for them (waits up to 20 s: a stopped server
    /// flushes its spans as it exits).
    async fn spans_when(&self, ready: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans = self.0.lock().unwrap().clone();
            if ready(&spans) {
                return spans;
            }
            let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
            assert!(
                Instant::now() < deadline,
                "spans missing; received {names:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn named<'a>(spans: &'a [Span], name: &str) -> Option<&'a Span> {
    spans.iter().find(|s| s.name == name)
}

fn rpc<'a>(spans: &'a [Span], method: &str) -> &'a Span {
    named(spans, &format!("{SERVICE}/{method}")).unwrap()
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn string(span: &Span, key: &str) -> Option<String> {
    match attribute(span, key)? {
        Value::StringValue(s) => Some(s.clone()),
        other => panic!("{key} is {other:?}, not a string"),
    }
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attribute(span, key)? {
        Value::IntValue(i) => Some(*i),
        other => panic!("{key} is {other:?}, not an integer"),
    }
}

fn status(span: &Span) -> (StatusCode, String) {
    let s = span.status.clone().unwrap_or_default();
    (s.code(), s.message)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn traced<T>(message: T, trace_id: &str, parent_id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{parent_id}-01").parse().unwrap(),
    );
    request
}

/// `serve` on a fresh SQLite store exporting to `endpoint`, logs in `log_format`.
async fn serve(dir: &tempfile::TempDir, endpoint: &str, log_format: &str) -> Server {
    let store = format!("sqlite://{}", dir.path().join("connections.db").display());
    let key = KeyRing::generate_hex().unwrap();
    let args = ["--otlp-endpoint", endpoint, "--stream-idle-seconds", "1"];
    Server::start_with(
        &store,
        &key,
        "info,segment_connections=debug",
        log_format,
        &args,
    )
    .await
}

/// SubmitRows whose first Tracking API attempt gets a 503, an unknown destination (a caller's
/// error), and a StreamRows left idle (a server error at the end of a stream), all in the
/// caller's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_follow_the_conventions_and_logs_carry_their_ids() {
    let (collector, endpoint) = Collector::start().await;
    let fake = FakeSegment::start(WRITE_KEY).await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir, &endpoint, "json").await;
    let mut client = server.client();
    let d = create_destination(&mut client, "traced", &fake.url(), WRITE_KEY).await;
    client
        .create_mapping(proto::CreateMappingRequest {
            destination_id: d.id.clone(),
            mapping_json: track_mapping("orders", "Order Completed"),
        })
        .await
        .unwrap();

    // SubmitRows: the first attempt fails, the retry delivers.
    fake.script([Fault::Status(503)]);
    let submit = proto::SubmitRowsRequest {
        destination_id: d.id.clone(),
        model: "orders".into(),
        rows: vec![order_row("o-1")],
        ..Default::default()
    };
    let answer = client
        .submit_rows(traced(submit, TRACE_ID, PARENT_ID))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.counts.unwrap().delivered, 1);

    // The caller's error: NOT_FOUND.
    let get = proto::GetDestinationRequest {
        id: "dst_0000000000000000".into(),
    };
    let missing = client
        .get_destination(traced(get, TRACE_ID, PARENT_ID))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // A stream closed for idleness: DEADLINE_EXCEEDED in its trailers.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(proto::StreamRowsRequest {
        message: Some(proto::stream_rows_request::Message::Header(
            proto::StreamHeader {
                destination_id: d.id.clone(),
                model: "orders".into(),
                ..Default::default()
            },
        )),
    })
    .await
    .unwrap();
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut answers = client
        .stream_rows(traced(stream, TRACE_ID, PARENT_ID))
        .await
        .unwrap()
        .into_inner();
    let idle = answers.next().await.unwrap().unwrap_err();
    assert_eq!(idle.code(), tonic::Code::DeadlineExceeded);
    drop(tx);

    let log = server.stop().await;
    let spans = collector
        .spans_when(|spans| {
            ["SubmitRows", "GetDestination", "StreamRows"]
                .iter()
                .all(|m| named(spans, &format!("{SERVICE}/{m}")).is_some())
                && spans.iter().filter(|s| s.name == "POST").count() >= 2
        })
        .await;

    // The server spans: in the caller's trace, the RPC attributes, the code as a number.
    for (method, code) in [("SubmitRows", 0), ("GetDestination", 5), ("StreamRows", 4)] {
        let span = rpc(&spans, method);
        assert_eq!(span.kind(), SpanKind::Server, "{method}");
        assert_eq!(hex(&span.trace_id), TRACE_ID, "{method}");
        assert_eq!(hex(&span.parent_span_id), PARENT_ID, "{method}");
        assert_eq!(string(span, "rpc.system").as_deref(), Some("grpc"));
        assert_eq!(string(span, "rpc.service").as_deref(), Some(SERVICE));
        assert_eq!(string(span, "rpc.method").as_deref(), Some(method));
        assert_eq!(int(span, "rpc.grpc.status_code"), Some(code), "{method}");
    }
    // OK and NOT_FOUND (the caller's error) leave the status unset; DEADLINE_EXCEEDED is the
    // server's: an error, with the status message.
    assert_eq!(status(rpc(&spans, "SubmitRows")).0, StatusCode::Unset);
    assert_eq!(status(rpc(&spans, "GetDestination")).0, StatusCode::Unset);
    assert_eq!(string(rpc(&spans, "GetDestination"), "error.type"), None);
    let stream_rows = rpc(&spans, "StreamRows");
    let (code, message) = status(stream_rows);
    assert_eq!(code, StatusCode::Error);
    assert!(message.contains("--stream-idle-seconds"), "{message:?}");
    assert_eq!(
        string(stream_rows, "error.type").as_deref(),
        Some("DEADLINE_EXCEEDED")
    );

    // One client span per attempt, children of the SubmitRows span.
    let submit = rpc(&spans, "SubmitRows");
    let mut attempts: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind() == SpanKind::Client)
        .collect();
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    let url = format!("{}/v1/batch", fake.url());
    for (i, span) in attempts.iter().enumerate() {
        assert_eq!(span.name, "POST");
        assert_eq!(span.trace_id, submit.trace_id);
        assert_eq!(span.parent_span_id, submit.span_id);
        assert_eq!(string(span, "http.request.method").as_deref(), Some("POST"));
        assert_eq!(string(span, "server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(int(span, "server.port"), Some(i64::from(fake.addr.port())));
        assert_eq!(string(span, "url.full").as_deref(), Some(url.as_str()));
        let resend = (i > 0).then_some(i as i64);
        assert_eq!(int(span, "http.request.resend_count"), resend);
    }
    assert_eq!(int(attempts[0], "http.response.status_code"), Some(503));
    assert_eq!(string(attempts[0], "error.type").as_deref(), Some("503"));
    assert_eq!(status(attempts[0]).0, StatusCode::Error);
    assert_eq!(int(attempts[1], "http.response.status_code"), Some(200));
    assert_eq!(string(attempts[1], "error.type"), None);
    assert_eq!(status(attempts[1]).0, StatusCode::Unset);

    // Each upstream request names its own attempt's span as its parent.
    let upstream: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r.traceparent.clone().unwrap_or_default())
        .collect();
    let expected: Vec<String> = attempts
        .iter()
        .map(|s| format!("00-{TRACE_ID}-{}-01", hex(&s.span_id)))
        .collect();
    assert_eq!(upstream, expected);

    // Log lines: the call's line carries its span's ids, the upstream's error line its attempt's.
    let lines: Vec<serde_json::Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let line = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        lines
            .iter()
            .find(|v| pred(v))
            .unwrap_or_else(|| panic!("no such line in {log:#?}"))
    };
    let call = line(&|v| v["fields"]["method"] == "SubmitRows");
    assert_eq!(call["trace_id"], TRACE_ID);
    assert_eq!(call["span_id"], hex(&submit.span_id));
    let answered = line(&|v| v["fields"]["message"] == "tracking api answered an error");
    assert_eq!(answered["trace_id"], TRACE_ID);
    assert_eq!(answered["span_id"], hex(&attempts[0].span_id));
    // A line outside any call has none.
    let serving = line(&|v| v["fields"]["message"] == "serving");
    assert!(serving.get("trace_id").is_none(), "{serving}");

    // The write key (nor its Basic form) is in no span and no log line.
    let basic = fake.authorization().trim_start_matches("Basic ");
    let exported = format!("{spans:?}");
    for secret in [WRITE_KEY, basic] {
        assert!(!exported.contains(secret), "a span holds the write key");
        assert!(
            !log.iter().any(|l| l.contains(secret)),
            "a log line holds the write key"
        );
    }
}

/// The plain log format carries the ids too, at the end of the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_log_lines_carry_the_trace_id() {
    let (collector, endpoint) = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir, &endpoint, "plain").await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let test = proto::TestMappingRequest {
        mapping: Some(proto::test_mapping_request::Mapping::MappingJson(
            track_mapping("orders", "Order Completed"),
        )),
        destination_id: None,
        rows: vec![order_row("o-1")],
    };
    server
        .client()
        .test_mapping(traced(test, trace_id, "b7ad6b7169203331"))
        .await
        .unwrap();
    let log = server.stop().await;
    let spans = collector
        .spans_when(|spans| named(spans, &format!("{SERVICE}/TestMapping")).is_some())
        .await;
    let span = rpc(&spans, "TestMapping");
    assert_eq!(int(span, "rpc.grpc.status_code"), Some(0));
    let line = log
        .iter()
        .find(|l| l.contains(" method=\"TestMapping\"") || l.contains(" method=TestMapping"))
        .unwrap_or_else(|| panic!("no TestMapping line in {log:#?}"));
    let ids = format!(" trace_id={trace_id} span_id={}", hex(&span.span_id));
    assert!(line.ends_with(&ids), "{line}");
}

/// What the delivery path does on each Tracking API attempt: the attempt's client span, child of
/// the call's, goes into the request's `traceparent`.
#[test]
fn the_trace_context_is_injected_into_outgoing_headers() {
    use segment_connections::telemetry::{self, HttpTarget};
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
    let (layer, _traces) = telemetry::otlp_layer(Some("http://127.0.0.1:1")).unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let call = telemetry::server_span("s", "m", &incoming);
        let _in = call.enter();
        let target = HttpTarget::new("https://user:secret@api.segment.io/v1/batch?k=v");
        assert_eq!(
            target.url_full(),
            "https://REDACTED:REDACTED@api.segment.io/v1/batch?REDACTED"
        );
        let attempt = telemetry::client_span("POST", &target, 0);
        let mut outgoing = http::HeaderMap::new();
        telemetry::inject(&attempt, &mut outgoing);
        let traceparent = outgoing["traceparent"].to_str().unwrap();
        assert!(
            traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
            "{traceparent}"
        );
        // A new span id: the attempt's span, not the caller's.
        assert!(!traceparent.contains("b7ad6b7169203331"), "{traceparent}");
    });
}
