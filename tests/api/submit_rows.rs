//! SubmitRows over real gRPC against the fake Tracking API: the five actions, batch limits,
//! retries, Retry-After, bisection, the deadline, fault injection, stable messageIds.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tonic::Code;

use crate::common::app::{TestApp, order_row, track_mapping};
use crate::common::fake_segment::{FakeSegment, Fault, Random};
use segment_connections::grpc::proto;
use segment_connections::grpc::proto::ResultStatus;

pub const WRITE_KEY: &str = "wk-fake-0123456789";

/// A server that takes large requests, a fake, and a destination pointing at it.
pub async fn setup_with(
    change: impl FnOnce(&mut segment_connections::config::Settings),
) -> (TestApp, FakeSegment, String) {
    let fake = FakeSegment::start(WRITE_KEY).await;
    let app = TestApp::spawn_with(Arc::new(tempfile::tempdir().unwrap()), |s| {
        s.max_request_bytes = 16 * 1024 * 1024;
        change(s)
    })
    .await;
    let d = app
        .create_destination_at("fake", &fake.url(), WRITE_KEY)
        .await;
    (app, fake, d.id)
}

pub async fn setup() -> (TestApp, FakeSegment, String) {
    setup_with(|_| {}).await
}

/// A track mapping that takes the caller's messageId (`$.messageId`).
pub fn track_with_message_id(name: &str) -> String {
    serde_json::json!({
        "name": name,
        "model": "orders",
        "action": "track",
        "trigger": "added_or_updated",
        "fields": {
            "event_name": {"@literal": "Order Completed"},
            "user_id": {"@path": "$.properties.user_id"},
            "message_id": {"@path": "$.messageId"},
            "properties": {"pad": {"@path": "$.properties.pad"}}
        }
    })
    .to_string()
}

pub fn rows(n: usize) -> Vec<proto::Row> {
    rows_from(0, n)
}

/// Rows `o-{first}`, `o-{first + 1}`, ...: distinct rows for each chunk of a stream.
pub fn rows_from(first: usize, n: usize) -> Vec<proto::Row> {
    (first..first + n)
        .map(|i| order_row(&format!("o-{i}"), &format!("u-{i}")))
        .collect()
}

pub fn request(destination_id: &str, rows: Vec<proto::Row>) -> proto::SubmitRowsRequest {
    proto::SubmitRowsRequest {
        destination_id: destination_id.into(),
        model: "orders".into(),
        rows,
        ..Default::default()
    }
}

pub async fn submit(app: &TestApp, req: proto::SubmitRowsRequest) -> proto::SubmitRowsResponse {
    app.client
        .clone()
        .submit_rows(req)
        .await
        .unwrap()
        .into_inner()
}

fn status(r: &proto::RowResult) -> ResultStatus {
    ResultStatus::try_from(r.status).unwrap()
}

fn delivered_ids(resp: &proto::SubmitRowsResponse) -> Vec<String> {
    resp.results
        .iter()
        .filter(|r| status(r) == ResultStatus::Delivered)
        .map(|r| r.message_id.clone().unwrap())
        .collect()
}

#[tokio::test]
async fn the_five_actions_are_delivered() {
    let (app, fake, d) = setup().await;
    let fields = |extra: serde_json::Value| {
        let mut f = serde_json::json!({"user_id": {"@path": "$.properties.user_id"}});
        f.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        f
    };
    for (action, extra) in [
        (
            "track",
            serde_json::json!({"event_name": {"@literal": "Order Completed"}}),
        ),
        (
            "page",
            serde_json::json!({"page_name": {"@literal": "Home"}}),
        ),
        (
            "screen",
            serde_json::json!({"screen_name": {"@literal": "Home"}}),
        ),
        (
            "identify",
            serde_json::json!({"traits": {"plan": {"@literal": "pro"}}}),
        ),
        (
            "group",
            serde_json::json!({"group_id": {"@literal": "g-1"}}),
        ),
    ] {
        let doc = serde_json::json!({
            "name": action, "model": "orders", "action": action, "fields": fields(extra)
        });
        app.create_mapping(&d, &doc.to_string()).await;
    }
    let resp = submit(&app, request(&d, rows(2))).await;
    assert_eq!(resp.results.len(), 10, "{resp:?}");
    assert!(
        resp.results
            .iter()
            .all(|r| status(r) == ResultStatus::Delivered && r.attempts == 1),
        "{resp:?}"
    );
    let counts = resp.counts.unwrap();
    assert_eq!(
        (counts.delivered, counts.rejected, counts.failed),
        (10, 0, 0)
    );
    let mut sent = fake.accepted();
    let mut ids = delivered_ids(&resp);
    sent.sort();
    ids.sort();
    assert_eq!(sent, ids);
    // One batch, with our User-Agent (the fake checked auth and content type).
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].user_agent.starts_with("segment-connections/"));
}

#[tokio::test]
async fn request_level_errors() {
    let (app, _fake, d) = setup_with(|s| s.limits.max_rows = 3).await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    let mut c = app.client.clone();
    let code = |r: Result<tonic::Response<proto::SubmitRowsResponse>, tonic::Status>| {
        r.unwrap_err().code()
    };
    assert_eq!(
        code(c.submit_rows(request("dst_nope", rows(1))).await),
        Code::NotFound
    );
    assert_eq!(
        code(c.submit_rows(request("", rows(1))).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(c.submit_rows(request(&d, rows(4))).await),
        Code::InvalidArgument
    );
    let current = c
        .get_destination(proto::GetDestinationRequest { id: d.clone() })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    c.update_destination(proto::UpdateDestinationRequest {
        id: d.clone(),
        version: current.version,
        enabled: Some(false),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        code(c.submit_rows(request(&d, rows(1))).await),
        Code::FailedPrecondition
    );
}

#[tokio::test]
async fn a_model_no_mapping_reads_is_not_found_naming_the_models() {
    let (app, fake, d) = setup().await;
    let mut c = app.client.clone();
    let model = |m: &str| proto::SubmitRowsRequest {
        model: m.into(),
        ..request(&d, rows(2))
    };
    // No mappings at all.
    let err = c.submit_rows(model("orders")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(
        err.message().contains("has no mappings"),
        "{}",
        err.message()
    );

    app.create_mapping(&d, &track_mapping("orders")).await;
    let users = serde_json::json!({
        "name": "users", "model": "users", "action": "identify", "enabled": false,
        "fields": {"user_id": {"@path": "$.properties.user_id"}}
    });
    app.create_mapping(&d, &users.to_string()).await;
    let err = c.submit_rows(model("order")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(
        err.message()
            .contains(r#"no mapping for model "order"; its mappings read: orders, users"#),
        "{}",
        err.message()
    );
    // StreamRows answers the same when it opens.
    let header = proto::StreamRowsRequest {
        message: Some(proto::stream_rows_request::Message::Header(
            proto::StreamHeader {
                destination_id: d.clone(),
                model: "order".into(),
                ..Default::default()
            },
        )),
    };
    let err = c
        .stream_rows(tokio_stream::iter([header]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // A model whose mappings are all disabled: every row SKIPPED, as before.
    let r = submit(&app, model("users")).await;
    assert_eq!(r.counts.unwrap().skipped, 2, "{r:?}");
    assert!(fake.requests().is_empty());
    // A model name longer than any mapping may read.
    let err = c.submit_rows(model(&"m".repeat(201))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

#[tokio::test]
async fn every_row_is_accounted_for() {
    let (app, fake, d) = setup_with(|s| s.limits.rows.max_row_bytes = 1_000).await;
    app.create_mapping(&d, &track_with_message_id("orders"))
        .await;
    let mut input = rows(2);
    input[0].message_id = Some("same".into());
    input[1].message_id = Some("same".into());
    // Not JSON.
    input.push(proto::Row {
        id: "bad".into(),
        op: proto::Op::Added.into(),
        columns_json: b"nope".to_vec(),
        message_id: None,
    });
    // Too large.
    let mut big = order_row("big", "u");
    big.columns_json =
        serde_json::to_vec(&serde_json::json!({"user_id": "u", "pad": "x".repeat(2_000)})).unwrap();
    input.push(big);
    // No identity: rejected by render.
    input.push(proto::Row {
        id: "anon".into(),
        op: proto::Op::Added.into(),
        columns_json: b"{}".to_vec(),
        message_id: None,
    });
    let resp = submit(&app, request(&d, input)).await;
    let got: Vec<(u32, ResultStatus, Vec<i32>)> = resp
        .results
        .iter()
        .map(|r| {
            (
                r.row_index,
                status(r),
                r.issues.iter().map(|i| i.code).collect(),
            )
        })
        .collect();
    use proto::IssueCode as C;
    assert_eq!(
        got,
        [
            (0, ResultStatus::Delivered, vec![]),
            (
                1,
                ResultStatus::Rejected,
                vec![C::DuplicateMessageId as i32]
            ),
            (2, ResultStatus::Rejected, vec![C::InvalidRow as i32]),
            (3, ResultStatus::Rejected, vec![C::RowTooLarge as i32]),
            (4, ResultStatus::Rejected, vec![C::MissingIdentity as i32]),
        ]
    );
    assert_eq!(fake.accepted(), ["same"]);
    // Deleted rows do not match the mapping's trigger: one SKIPPED result, no mapping.
    let mut del = order_row("d", "u");
    del.op = proto::Op::Deleted.into();
    let resp = submit(&app, request(&d, vec![del])).await;
    assert_eq!(resp.results.len(), 1);
    assert_eq!(status(&resp.results[0]), ResultStatus::Skipped);
    assert_eq!(resp.results[0].mapping_id, "");
    assert_eq!(resp.counts.unwrap().skipped, 1);
}

#[tokio::test]
async fn batches_hold_at_most_2500_events() {
    let (app, fake, d) = setup().await;
    // Small events (~130 bytes), so the count limit binds before the byte limit.
    let small = serde_json::json!({
        "name": "small", "model": "orders", "action": "track",
        "fields": {"event_name": "E", "user_id": {"@path": "$.properties.user_id"}}
    });
    app.create_mapping(&d, &small.to_string()).await;
    let resp = submit(&app, request(&d, rows(5_001))).await;
    assert_eq!(resp.counts.unwrap().delivered, 5_001);
    let mut sizes: Vec<usize> = fake.requests().iter().map(|r| r.events).collect();
    sizes.sort();
    assert_eq!(sizes, [1, 2_500, 2_500]);
    assert_eq!(fake.accepted().len(), 5_001);
}

#[tokio::test]
async fn batches_hold_at_most_475000_bytes() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &track_with_message_id("orders"))
        .await;
    // Events of about 20 KB: 60 of them need three bodies.
    let input: Vec<proto::Row> = (0..60)
        .map(|i| {
            let mut r = order_row(&format!("o-{i}"), "u");
            r.columns_json =
                serde_json::to_vec(&serde_json::json!({"user_id": "u", "pad": "y".repeat(20_000)}))
                    .unwrap();
            r
        })
        .collect();
    let resp = submit(&app, request(&d, input)).await;
    assert_eq!(resp.counts.unwrap().delivered, 60, "{:?}", resp.results[0]);
    let reqs = fake.requests();
    assert!(reqs.len() >= 3, "{}", reqs.len());
    assert!(reqs.iter().all(|r| r.bytes <= 475_000 && r.status == 200));
    // Packed, not one event per body.
    assert!(reqs.iter().any(|r| r.bytes > 400_000));
}

#[tokio::test]
async fn retries_then_succeeds() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    fake.script([Fault::Status(500), Fault::Status(503), Fault::Drop]);
    let resp = submit(&app, request(&d, rows(3))).await;
    assert!(
        resp.results
            .iter()
            .all(|r| status(r) == ResultStatus::Delivered && r.attempts == 4),
        "{resp:?}"
    );
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 503, 0, 200]);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    fake.script([Fault::RetryAfter(1)]);
    let resp = submit(&app, request(&d, rows(1))).await;
    assert_eq!(status(&resp.results[0]), ResultStatus::Delivered);
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    // A lower bound only: the retry waited at least the second asked for.
    let waited = reqs[1].at - reqs[0].at;
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
}

#[tokio::test]
async fn a_permanent_4xx_is_not_retried_and_the_write_key_never_shows() {
    let fake = FakeSegment::start(WRITE_KEY).await;
    let app = TestApp::spawn().await;
    let wrong = "wk-wrong-key-0000";
    let d = app.create_destination_at("fake", &fake.url(), wrong).await;
    app.create_mapping(&d.id, &track_mapping("orders")).await;
    let resp = submit(&app, request(&d.id, rows(2))).await;
    for r in &resp.results {
        assert_eq!(status(r), ResultStatus::Failed);
        assert_eq!(r.upstream_status, Some(401));
        assert_eq!(r.attempts, 1);
        assert!(!r.retryable);
        assert_eq!(r.issues[0].code, proto::IssueCode::UpstreamRejected as i32);
    }
    assert_eq!(fake.requests().len(), 1);
    assert!(!format!("{resp:?}").contains(wrong));
}

#[tokio::test]
async fn exhaustion_fails_with_the_last_status() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    fake.script([
        Fault::Status(503),
        Fault::Status(500),
        Fault::Status(502),
        Fault::Status(503),
    ]);
    let resp = submit(&app, request(&d, rows(2))).await;
    for r in &resp.results {
        assert_eq!(status(r), ResultStatus::Failed);
        assert_eq!(r.upstream_status, Some(503));
        assert_eq!(r.attempts, 4);
        assert!(r.retryable);
        assert_eq!(r.issues[0].code, proto::IssueCode::RetriesExhausted as i32);
    }
    assert!(fake.accepted().is_empty());
}

#[tokio::test]
async fn a_poisoned_event_is_isolated() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &track_with_message_id("orders"))
        .await;
    let input: Vec<proto::Row> = rows(100)
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r.message_id = Some(format!("m-{i}"));
            r
        })
        .collect();
    fake.poison("m-37");
    let resp = submit(&app, request(&d, input)).await;
    for r in &resp.results {
        if r.message_id.as_deref() == Some("m-37") {
            assert_eq!(status(r), ResultStatus::Failed);
            assert_eq!(r.upstream_status, Some(400));
            assert!(!r.retryable);
        } else {
            assert_eq!(status(r), ResultStatus::Delivered, "{r:?}");
        }
    }
    assert_eq!(fake.accepted().len(), 99);
    // 1 + 2 per level of a 100-event bisection (7 levels).
    assert!(fake.requests().len() <= 15, "{}", fake.requests().len());
}

#[tokio::test]
async fn the_deadline_is_kept() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    fake.script([Fault::Slow(Duration::from_secs(30))]);
    let mut req = tonic::Request::new(request(&d, rows(3)));
    req.set_timeout(Duration::from_millis(1_500));
    // Answered OK before the deadline, not CANCELLED or DEADLINE_EXCEEDED.
    let resp = app
        .client
        .clone()
        .submit_rows(req)
        .await
        .unwrap()
        .into_inner();
    for r in &resp.results {
        assert_eq!(status(r), ResultStatus::Failed);
        assert!(r.retryable);
        assert_eq!(r.issues[0].code, proto::IssueCode::Deadline as i32);
    }
    assert!(fake.accepted().is_empty());
}

#[tokio::test]
async fn resubmitting_gives_the_same_message_ids() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    let first = delivered_ids(&submit(&app, request(&d, rows(20))).await);
    let second = delivered_ids(&submit(&app, request(&d, rows(20))).await);
    assert_eq!(first.len(), 20);
    assert_eq!(first, second);
    assert_eq!(fake.accepted().len(), 40);
}

#[tokio::test]
async fn test_mapping_still_sends_nothing() {
    let (app, fake, d) = setup().await;
    let m = app.create_mapping(&d, &track_mapping("orders")).await;
    let resp = app
        .client
        .clone()
        .test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingId(m.id)),
            destination_id: Some(d.clone()),
            rows: rows(3),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.results.iter().all(|r| r.accepted));
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_mapping_change_is_seen_by_the_next_call() {
    let (app, fake, d) = setup().await;
    let mut c = app.client.clone();
    let err = c.submit_rows(request(&d, rows(1))).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    app.create_mapping(&d, &track_mapping("orders")).await;
    let resp = submit(&app, request(&d, rows(1))).await;
    assert_eq!(status(&resp.results[0]), ResultStatus::Delivered);
    assert_eq!(fake.accepted().len(), 1);
}

/// 10,000 rows through random 429s, 5xx and dropped connections (some after the events were
/// taken): every row is reported exactly once, and the fake holds exactly the DELIVERED
/// messageIds, a duplicate only ever under the same messageId.
#[tokio::test]
async fn fault_injection_10000_rows() {
    let (app, fake, d) = setup_with(|s| {
        s.delivery.retry.max_attempts = 12;
        s.delivery.batch.max_events = 50;
    })
    .await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    fake.random(Random {
        per_mille_429: 60,
        per_mille_500: 50,
        per_mille_503: 50,
        per_mille_drop: 40,
        per_mille_drop_after_accept: 40,
        seed: 0x5eed_1234,
    });
    let mut delivered = HashSet::new();
    let mut failed = 0;
    for chunk in 0..10 {
        let input: Vec<proto::Row> = (0..1_000)
            .map(|i| {
                let n = chunk * 1_000 + i;
                order_row(&format!("o-{n}"), &format!("u-{n}"))
            })
            .collect();
        let resp = submit(&app, request(&d, input)).await;
        let mut seen: Vec<u32> = resp.results.iter().map(|r| r.row_index).collect();
        seen.sort();
        assert_eq!(
            seen,
            (0..1_000).collect::<Vec<u32>>(),
            "each row exactly once"
        );
        for r in &resp.results {
            match status(r) {
                ResultStatus::Delivered => {
                    assert!(delivered.insert(r.message_id.clone().unwrap()));
                }
                ResultStatus::Failed => failed += 1,
                other => panic!("{other:?}: {r:?}"),
            }
        }
    }
    assert_eq!(failed, 0, "12 attempts should see every batch through");
    let accepted = fake.accepted();
    let distinct: HashSet<String> = accepted.iter().cloned().collect();
    assert_eq!(distinct, delivered);
    assert_eq!(delivered.len(), 10_000);
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for id in &accepted {
        *per_id.entry(id).or_default() += 1;
    }
    let dups = per_id.values().filter(|&&n| n > 1).count();
    let faults = fake.requests().iter().filter(|r| r.status != 200).count();
    eprintln!(
        "fault injection: {} requests, {faults} faulted, {dups} messageIds received twice",
        fake.requests().len()
    );
    assert!(faults > 0);
}

/// A 30-digit integer column keeps every digit on the wire: copied as a property, as a number
/// field (`revenue`), in a `@template` and a `@json` encoding (JavaScript would round it to a
/// double, 1.2345678901234568e+29, everywhere). TestMapping shows the same bytes.
#[tokio::test]
async fn integers_too_long_for_64_bits_keep_their_digits() {
    const BIG: &str = "123456789012345678901234567890";
    let (app, fake, d) = setup().await;
    let mapping = serde_json::json!({
        "name": "big",
        "model": "orders",
        "action": "track",
        "fields": {
            "event_name": {"@literal": "Order Completed"},
            "user_id": {"@path": "$.properties.user_id"},
            "properties": {
                "big": {"@path": "$.properties.big"},
                "revenue": {"@path": "$.properties.big"},
                "text": {"@template": "n={{properties.big}}"},
                "encoded": {"@json": {"mode": "encode", "value": {"@path": "$.properties.big"}}},
            },
        }
    })
    .to_string();
    app.create_mapping(&d, &mapping).await;
    let row = proto::Row {
        columns_json: format!(r#"{{"user_id": "u-1", "big": {BIG}}}"#).into_bytes(),
        ..order_row("o-1", "u-1")
    };
    let r = submit(&app, request(&d, vec![row.clone()])).await;
    assert_eq!(r.results[0].status, ResultStatus::Delivered as i32, "{r:?}");
    let body = fake.last_body();
    assert!(body.contains(&format!(r#""big":{BIG}"#)), "{body}");
    assert!(body.contains(&format!(r#""revenue":{BIG}"#)), "{body}");
    assert!(body.contains(&format!(r#""text":"n={BIG}""#)), "{body}");
    assert!(body.contains(&format!(r#""encoded":"{BIG}""#)), "{body}");

    let tested = app
        .client
        .clone()
        .test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingJson(mapping)),
            destination_id: None,
            rows: vec![row],
        })
        .await
        .unwrap()
        .into_inner();
    let event = tested.results[0].event_json.as_deref().unwrap();
    assert!(event.contains(&format!(r#""big":{BIG}"#)), "{event}");
}

/// Bodies go to the Tracking API gzip-compressed (`Content-Encoding: gzip`), each one a valid
/// batch once decoded and several times smaller on the wire; `--upstream-gzip false` sends plain
/// JSON. Either way every event arrives once.
#[tokio::test]
async fn bodies_are_gzip_compressed_unless_turned_off() {
    for gzip in [true, false] {
        let (app, fake, d) = setup_with(|s| s.delivery.retry.gzip = gzip).await;
        app.create_mapping(&d, &track_mapping("m")).await;
        let answer = submit(&app, request(&d, rows(200))).await;
        assert_eq!(answer.counts.unwrap().delivered, 200);
        let requests = fake.requests();
        assert!(!requests.is_empty());
        for r in &requests {
            assert_eq!(r.status, 200);
            assert_eq!(r.gzip, gzip);
            match gzip {
                true => assert!(
                    r.wire_bytes * 3 < r.bytes,
                    "{} of {}",
                    r.wire_bytes,
                    r.bytes
                ),
                false => assert_eq!(r.wire_bytes, r.bytes),
            }
        }
        assert_eq!(fake.accepted().len(), 200);
    }
}
