//! /metrics after real calls: the per-RPC counts, the rows received, the latency histogram and
//! the in-flight gauge match what happened. A test binary of its own, so that no other test's
//! calls land in the process-wide registry.

mod common {
    pub mod app;
    pub mod fake_segment;
}

use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use common::app::{TestApp, order_row, track_mapping};
use segment_connections::grpc::proto;

async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    ask(addr, "GET", path).await
}

/// `method path` over a connection of its own: the head and the body of the answer, read until
/// the server closes the connection (it answers one request per connection).
async fn ask(addr: std::net::SocketAddr, method: &str, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// The value of the sample `name{labels}` (labels as rendered, in order), if present.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// The registry is process-wide: the tests that record into it take turns.
static REGISTRY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn metrics_count_what_happened() {
    let _turn = REGISTRY.lock().await;
    let app = TestApp::spawn_with(Arc::new(tempfile::tempdir().unwrap()), |s| {
        s.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = app.metrics_addr.expect("metrics are served");
    // What an operator alerts on is there from the first scrape: the build, the process, and
    // the delivery series at zero.
    let (_, first) = get(metrics, "/metrics").await;
    let version = env!("CARGO_PKG_VERSION");
    let build = format!("segment_connections_build_info{{version=\"{version}\"}}");
    assert_eq!(sample(&first, &build), Some(1.0), "{first}");
    for series in [
        "segment_connections_process_resident_memory_bytes",
        "segment_connections_process_open_fds",
        "segment_connections_process_cpu_seconds",
    ] {
        assert!(
            sample(&first, series).is_some_and(|v| v > 0.0 || series.ends_with("seconds")),
            "{series}: {first}"
        );
    }
    assert!(
        sample(
            &first,
            r#"segment_connections_events_total{action="group",result="rejected"}"#
        )
        .is_some(),
        "{first}"
    );
    let mut client = app.client.clone();
    let request = |rows: Vec<proto::Row>| proto::TestMappingRequest {
        mapping: Some(proto::test_mapping_request::Mapping::MappingJson(
            track_mapping("orders"),
        )),
        destination_id: None,
        rows,
    };
    // Two good calls (3 + 2 rows), one refused (no rows), one NOT_FOUND, one health check.
    for n in [3, 2] {
        let rows = (0..n)
            .map(|i| order_row(&format!("o-{i}"), "u-1"))
            .collect();
        client.test_mapping(request(rows)).await.unwrap();
    }
    let err = client.test_mapping(request(vec![])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .get_mapping(proto::GetMappingRequest {
            id: "map_nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    HealthClient::new(app.channel().await)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();

    let (head, body) = get(metrics, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let svc = r#"service="segment_connections.v1.Connections""#;
    let requests = |method: &str, code: &str| {
        sample(
            &body,
            &format!(
                r#"segment_connections_rpc_requests_total{{{svc},method="{method}",code="{code}"}}"#
            ),
        )
    };
    assert_eq!(requests("TestMapping", "OK"), Some(2.0), "{body}");
    assert_eq!(
        requests("TestMapping", "INVALID_ARGUMENT"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(requests("GetMapping", "NOT_FOUND"), Some(1.0), "{body}");
    assert_eq!(
        sample(
            &body,
            r#"segment_connections_rpc_requests_total{service="grpc.health.v1.Health",method="Check",code="OK"}"#
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            r#"segment_connections_rows_received_total{method="TestMapping"}"#
        ),
        Some(5.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            &format!(
                r#"segment_connections_rpc_duration_seconds_count{{{svc},method="TestMapping"}}"#
            )
        ),
        Some(3.0),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            r#"segment_connections_rpc_duration_seconds_bucket{{{svc},method="TestMapping",le="+Inf"}} 3"#
        )),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            &format!(r#"segment_connections_rpc_in_flight{{{svc},method="TestMapping"}}"#)
        ),
        Some(0.0),
        "{body}"
    );
    // No label carries a row, user or destination id.
    for secret in ["o-0", "u-1", "map_nope"] {
        assert!(!body.contains(secret), "{secret} in {body}");
    }

    let (head, _) = get(metrics, "/other").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = ask(metrics, "POST", "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    let (head, _) = ask(metrics, "DELETE", "/other").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // The delivery path's recording functions land under their documented names and labels.
    use segment_connections::metrics::{self as m, EventResult, StatusClass};
    use segment_connections::spec::Action;
    // Compared as what this block adds: the delivery test may have recorded before.
    let (_, before) = get(metrics, "/metrics").await;
    m::record_events(Action::Track.as_str(), EventResult::Delivered, 3);
    m::record_events(Action::Identify.as_str(), EventResult::Failed, 1);
    m::record_skipped_rows(2);
    m::record_upstream_request(StatusClass::Http(200), std::time::Duration::from_millis(20));
    m::record_upstream_request(StatusClass::Http(503), std::time::Duration::from_millis(5));
    m::record_upstream_request(StatusClass::Http(429), std::time::Duration::from_millis(5));
    m::record_upstream_request(StatusClass::Timeout, std::time::Duration::from_secs(1));
    m::record_retry();
    m::record_batch(3, 1200);
    let in_flight = m::upstream_in_flight();
    let (_, body) = get(metrics, "/metrics").await;
    for (series, value) in [
        (
            r#"segment_connections_events_total{action="track",result="delivered"}"#,
            3.0,
        ),
        (
            r#"segment_connections_events_total{action="identify",result="failed"}"#,
            1.0,
        ),
        (
            r#"segment_connections_events_total{action="none",result="skipped"}"#,
            2.0,
        ),
        (
            r#"segment_connections_upstream_requests_total{status_class="2xx"}"#,
            1.0,
        ),
        (
            r#"segment_connections_upstream_requests_total{status_class="5xx"}"#,
            1.0,
        ),
        (
            r#"segment_connections_upstream_requests_total{status_class="429"}"#,
            1.0,
        ),
        (
            r#"segment_connections_upstream_requests_total{status_class="timeout"}"#,
            1.0,
        ),
        (
            r#"segment_connections_upstream_duration_seconds_count{status_class="2xx"}"#,
            1.0,
        ),
        ("segment_connections_upstream_retries_total", 1.0),
        ("segment_connections_batch_events_sum", 3.0),
        ("segment_connections_batch_bytes_sum", 1200.0),
        ("segment_connections_upstream_in_flight", 1.0),
    ] {
        let added = sample(&body, series).map(|v| v - sample(&before, series).unwrap_or(0.0));
        assert_eq!(added, Some(value), "{series} in {body}");
    }
    // A 429 is its own class: `4xx` does not count it.
    let other_4xx = r#"segment_connections_upstream_requests_total{status_class="4xx"}"#;
    assert_eq!(
        sample(&body, other_4xx),
        sample(&before, other_4xx),
        "{body}"
    );
    drop(in_flight);
    let (_, body) = get(metrics, "/metrics").await;
    assert_eq!(
        sample(&body, "segment_connections_upstream_in_flight"),
        Some(0.0)
    );
}

/// SubmitRows: rows received, events by action and result, upstream requests by status class,
/// retries and batch sizes match what the fake Tracking API saw.
#[tokio::test]
async fn delivery_metrics_count_what_happened() {
    let _turn = REGISTRY.lock().await;
    let app = TestApp::spawn_with(Arc::new(tempfile::tempdir().unwrap()), |s| {
        s.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = app.metrics_addr.expect("metrics are served");
    let fake = common::fake_segment::FakeSegment::start("wk-metrics-0123").await;
    let d = app
        .create_destination_at("m", &fake.url(), "wk-metrics-0123")
        .await;
    app.create_mapping(&d.id, &track_mapping("orders")).await;
    // The first attempt gets a 503, the second a 429, the third a 200.
    fake.script([
        common::fake_segment::Fault::Status(503),
        common::fake_segment::Fault::RetryAfter(0),
    ]);
    let (_, before) = get(metrics, "/metrics").await;
    let mut rows: Vec<proto::Row> = (0..3)
        .map(|i| order_row(&format!("o-{i}"), "u-1"))
        .collect();
    let mut deleted = order_row("o-9", "u-1");
    deleted.op = proto::Op::Deleted.into();
    rows.push(deleted);
    let response = app
        .client
        .clone()
        .submit_rows(proto::SubmitRowsRequest {
            destination_id: d.id.clone(),
            model: "orders".into(),
            rows,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let counts = response.counts.unwrap();
    assert_eq!((counts.delivered, counts.skipped), (3, 1));

    // What this call added (the other test may have recorded into the same series before).
    let (_, after) = get(metrics, "/metrics").await;
    let at = |series: &str| {
        sample(&after, series).unwrap_or_else(|| panic!("{series}:\n{after}"))
            - sample(&before, series).unwrap_or(0.0)
    };
    assert_eq!(
        at(r#"segment_connections_rows_received_total{method="SubmitRows"}"#),
        4.0
    );
    assert_eq!(
        at(r#"segment_connections_events_total{action="track",result="delivered"}"#),
        3.0
    );
    assert_eq!(
        at(r#"segment_connections_events_total{action="none",result="skipped"}"#),
        1.0
    );
    assert_eq!(
        at(r#"segment_connections_upstream_requests_total{status_class="5xx"}"#),
        1.0
    );
    assert_eq!(
        at(r#"segment_connections_upstream_requests_total{status_class="429"}"#),
        1.0
    );
    assert_eq!(
        at(r#"segment_connections_upstream_requests_total{status_class="2xx"}"#),
        1.0
    );
    assert_eq!(at("segment_connections_upstream_retries_total"), 2.0);
    assert_eq!(at("segment_connections_batch_events_count"), 1.0);
    assert_eq!(at("segment_connections_batch_events_sum"), 3.0);
    // Usage by destination: three API calls, the delivered batch's bytes.
    let calls = format!(
        r#"segment_connections_usage_calls_total{{destination_id="{}"}}"#,
        d.id
    );
    assert_eq!(at(&calls), 3.0);
    let bytes = format!(
        r#"segment_connections_usage_bytes_total{{destination_id="{}"}}"#,
        d.id
    );
    let sent: usize = fake
        .requests()
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.bytes)
        .sum();
    assert_eq!(at(&bytes), sent as f64);

    // By destination: its series were not there before its sender existed; now they count
    // this call alone, the ones that saw nothing at zero.
    let of = |name: &str, labels: &str| format!(r#"{name}{{destination_id="{}"{labels}}}"#, d.id);
    let events = |result: &str| {
        of(
            "segment_connections_destination_events_total",
            &format!(r#",result="{result}""#),
        )
    };
    let requests = |class: &str| {
        of(
            "segment_connections_destination_upstream_requests_total",
            &format!(r#",status_class="{class}""#),
        )
    };
    assert_eq!(sample(&before, &events("delivered")), None, "{before}");
    let value =
        |series: String| sample(&after, &series).unwrap_or_else(|| panic!("{series}:\n{after}"));
    assert_eq!(value(events("delivered")), 3.0);
    assert_eq!(value(events("skipped")), 1.0);
    assert_eq!(value(events("failed")), 0.0);
    assert_eq!(value(events("rejected")), 0.0);
    assert_eq!(value(requests("5xx")), 1.0);
    assert_eq!(value(requests("429")), 1.0);
    assert_eq!(value(requests("2xx")), 1.0);
    assert_eq!(value(requests("timeout")), 0.0);
    let latency = "segment_connections_destination_upstream_duration_seconds";
    assert_eq!(value(of(&format!("{latency}_count"), "")), 3.0);
    assert_eq!(
        value(of(&format!("{latency}_bucket"), r#",le="+Inf""#)),
        3.0
    );
    assert_eq!(
        value(of(
            "segment_connections_destination_rate_limit_wait_seconds_total",
            ""
        )),
        0.0
    );
    // No row data, no write key: the only new label value is the id.
    assert!(!after.contains("wk-metrics-0123") && !after.contains("u-1"));

    // Deleted: its series leave with its sender.
    app.client
        .clone()
        .delete_destination(proto::DeleteDestinationRequest { id: d.id.clone() })
        .await
        .unwrap();
    let (_, gone) = get(metrics, "/metrics").await;
    assert!(
        !gone.contains(&format!(
            "segment_connections_destination_events_total{{destination_id=\"{}\"",
            d.id
        )),
        "{gone}"
    );
}

/// A stream that ends with an error still counts what it delivered: the rows of its accepted
/// chunks are received rows, their events delivered events, and the call is counted once, with
/// the error's code.
#[tokio::test]
async fn a_stream_that_ends_badly_counts_what_was_sent() {
    use proto::stream_rows_request::Message;
    let _turn = REGISTRY.lock().await;
    let app = TestApp::spawn_with(Arc::new(tempfile::tempdir().unwrap()), |s| {
        s.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        s.limits.max_rows = 5;
    })
    .await;
    let metrics = app.metrics_addr.expect("metrics are served");
    let fake = common::fake_segment::FakeSegment::start("wk-metrics-0123").await;
    let d = app
        .create_destination_at("s", &fake.url(), "wk-metrics-0123")
        .await;
    app.create_mapping(&d.id, &track_mapping("orders")).await;
    fake.script([common::fake_segment::Fault::Slow(
        std::time::Duration::from_millis(200),
    )]);
    let (_, before) = get(metrics, "/metrics").await;
    let chunk = |id: u64, n: usize| proto::StreamRowsRequest {
        message: Some(Message::Chunk(proto::RowChunk {
            chunk_id: id,
            rows: (0..n)
                .map(|i| order_row(&format!("o-{id}-{i}"), "u-1"))
                .collect(),
        })),
    };
    let msgs = vec![
        proto::StreamRowsRequest {
            message: Some(Message::Header(proto::StreamHeader {
                destination_id: d.id.clone(),
                model: "orders".into(),
                ..Default::default()
            })),
        },
        chunk(0, 4),
        // Over --max-submit-rows: the stream ends with INVALID_ARGUMENT after chunk 0's answer.
        chunk(1, 6),
    ];
    let mut answers = app
        .client
        .clone()
        .stream_rows(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    let first = answers.message().await.unwrap().unwrap();
    assert_eq!(first.counts.unwrap().delivered, 4);
    let error = answers.message().await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    // The call is recorded once its status is out: wait for it.
    let series = r#"segment_connections_rpc_requests_total{service="segment_connections.v1.Connections",method="StreamRows",code="INVALID_ARGUMENT"}"#;
    let mut after = String::new();
    for _ in 0..100 {
        after = get(metrics, "/metrics").await.1;
        if sample(&after, series).is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let at = |series: &str| {
        sample(&after, series).unwrap_or_else(|| panic!("{series}:\n{after}"))
            - sample(&before, series).unwrap_or(0.0)
    };
    assert_eq!(at(series), 1.0);
    assert_eq!(
        at(r#"segment_connections_rows_received_total{method="StreamRows"}"#),
        4.0
    );
    assert_eq!(
        at(r#"segment_connections_events_total{action="track",result="delivered"}"#),
        4.0
    );
    assert_eq!(fake.accepted().len(), 4);
}
