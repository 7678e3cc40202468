//! Heavy renders do not starve the server: a real `serve` process renders the heaviest mapping
//! the limits allow (`@json` encode nested 32 deep, each row stopping at the render budget) on
//! every core, through SubmitRows and TestMapping at once, while health checks and small calls
//! keep answering within 100 ms: all but one in twenty of them (a scheduler's hiccup on a
//! loaded 2-core machine is not starvation; starved probes are late all the time the heavy calls
//! run), and every one within 1 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::cli::{exit_status, serve, sigterm};
use crate::common::app::order_row;
use crate::common::fake_segment::FakeSegment;
use crate::submit_rows::WRITE_KEY;
use segment_connections::grpc::proto::{self, ConnectionsClient, ResultStatus};

/// The most a probe may take, but for one in twenty.
const MAX_LATENCY: Duration = Duration::from_millis(100);
/// The most any probe may take.
const MAX_OUTLIER: Duration = Duration::from_secs(1);
/// Probes at most (bounded however long the heavy calls take).
const MAX_PROBES: usize = 60;
/// Rows per heavy call.
const HEAVY_ROWS: usize = 4;

/// A mapping of `model`: `@json` encode nested 31 deep around the `q` column (32 directives:
/// as deep as registration allows), or a flat one.
fn mapping(name: &str, model: &str, heavy: bool) -> String {
    let mut x = json!({"@path": "$.properties.q"});
    if heavy {
        for _ in 0..31 {
            x = json!({"@json": {"mode": "encode", "value": x}});
        }
    }
    json!({
        "name": name,
        "model": model,
        "action": "track",
        "fields": {
            "event_name": {"@literal": "Heavy"},
            "user_id": {"@path": "$.properties.user_id"},
            "properties": {"x": x},
        }
    })
    .to_string()
}

/// A row whose `q` is `"`: each level of encoding doubles its escapes, up to the budget.
fn quote_row(i: usize) -> proto::Row {
    proto::Row {
        id: format!("q-{i}"),
        op: proto::Op::Added.into(),
        columns_json: serde_json::to_vec(&json!({"user_id": "u-1", "q": "\""})).unwrap(),
        message_id: None,
    }
}

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_small_calls_answer_while_heavy_renders_run_on_every_core() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(
        dir.path(),
        &[
            "--metrics-listen",
            "off",
            "--allowed-upstreams",
            "127.0.0.1",
        ],
    );
    let fake = FakeSegment::start(WRITE_KEY).await;
    let mut c = ConnectionsClient::new(channel(&server.addr).await);
    let d = c
        .create_destination(proto::CreateDestinationRequest {
            name: "fake".into(),
            region: fake.url(),
            write_key: WRITE_KEY.into(),
            enabled: None,
            rate_limit: None,
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    let register = |json: String| {
        let mut c = c.clone();
        let destination_id = d.id.clone();
        async move {
            c.create_mapping(proto::CreateMappingRequest {
                destination_id,
                mapping_json: json,
            })
            .await
            .unwrap()
            .into_inner()
            .mapping
            .unwrap()
        }
    };
    let heavy = register(mapping("heavy", "heavy", true)).await;
    let small = register(mapping("small", "orders", false)).await;

    // Two heavy calls per core, each on a connection of its own: half SubmitRows, half
    // TestMapping (the registered mapping, rendered the same way).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut calls = Vec::new();
    for k in 0..2 * cores {
        let mut c = ConnectionsClient::new(channel(&server.addr).await);
        let (destination_id, mapping_id) = (d.id.clone(), heavy.id.clone());
        let in_flight = in_flight.clone();
        in_flight.fetch_add(1, Ordering::SeqCst);
        let rows: Vec<_> = (0..HEAVY_ROWS).map(quote_row).collect();
        calls.push(tokio::spawn(async move {
            let issues: Vec<Vec<proto::Issue>> = if k % 2 == 0 {
                let resp = c
                    .submit_rows(proto::SubmitRowsRequest {
                        destination_id,
                        model: "heavy".into(),
                        rows,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                for r in &resp.results {
                    assert_eq!(r.status, ResultStatus::Rejected as i32);
                }
                resp.results.into_iter().map(|r| r.issues).collect()
            } else {
                let resp = c
                    .test_mapping(proto::TestMappingRequest {
                        mapping: Some(proto::test_mapping_request::Mapping::MappingId(mapping_id)),
                        destination_id: None,
                        rows,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                resp.results.into_iter().map(|r| r.issues).collect()
            };
            in_flight.fetch_sub(1, Ordering::SeqCst);
            issues
        }));
    }

    // Probes, one after another, while the heavy calls run: health, a read, and a TestMapping
    // of one row through the flat mapping.
    let probe_channel = channel(&server.addr).await;
    let mut health = HealthClient::new(probe_channel.clone());
    let mut c = ConnectionsClient::new(probe_channel);
    let mut latencies: Vec<(&str, Duration)> = Vec::new();
    let mut during = 0;
    while in_flight.load(Ordering::SeqCst) > 0 && latencies.len() < MAX_PROBES {
        let kind = ["health", "list", "test"][latencies.len() % 3];
        let started = Instant::now();
        match kind {
            "health" => {
                health
                    .check(HealthCheckRequest {
                        service: proto::SERVICE_NAME.into(),
                    })
                    .await
                    .unwrap();
            }
            "list" => {
                c.list_mappings(proto::ListMappingsRequest {
                    destination_id: d.id.clone(),
                })
                .await
                .unwrap();
            }
            _ => {
                let r = c
                    .test_mapping(proto::TestMappingRequest {
                        mapping: Some(proto::test_mapping_request::Mapping::MappingId(
                            small.id.clone(),
                        )),
                        destination_id: None,
                        rows: vec![order_row("o-1", "u-1")],
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert!(r.results[0].accepted, "{r:?}");
            }
        }
        latencies.push((kind, started.elapsed()));
        if in_flight.load(Ordering::SeqCst) > 0 {
            during += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The heavy calls did render: every row stopped at the budget.
    for call in calls {
        for issues in call.await.unwrap() {
            assert_eq!(issues.len(), 1, "{issues:?}");
            assert_eq!(issues[0].code, proto::IssueCode::RenderLimit as i32);
        }
    }
    sigterm(&server.child);
    assert!(exit_status(server.child).await.success());

    assert!(
        during >= 8,
        "only {during} probes ran while the heavy calls did"
    );
    let slow = latencies.iter().filter(|(_, l)| *l >= MAX_LATENCY).count();
    let slowest = latencies.iter().max_by_key(|(_, l)| *l).unwrap();
    assert!(
        slow * 20 <= latencies.len() && slowest.1 < MAX_OUTLIER,
        "{slow} probes took {MAX_LATENCY:?} or more, the slowest, a {} probe, {:?} (of {} probes, \
         {during} during the heavy calls): {latencies:?}",
        slowest.0,
        slowest.1,
        latencies.len()
    );
}
