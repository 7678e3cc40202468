//! Row limits through TestMapping: a row or a column value over its limit is that row's
//! ROW_TOO_LARGE issue, naming the limit; the other rows are unaffected.

use std::sync::Arc;

use crate::helpers::{TestApp, order_row, track_mapping};
use segment_connections::grpc::proto;
use segment_connections::limits::RowLimits;

#[tokio::test]
async fn rows_and_values_over_their_limits_are_row_too_large() {
    let app = TestApp::spawn_with(Arc::new(tempfile::tempdir().unwrap()), |s| {
        s.row_limits = RowLimits {
            max_row_bytes: 2048,
            max_value_bytes: 512,
        };
    })
    .await;
    let row_with = |column: serde_json::Value| proto::Row {
        id: "r".into(),
        op: proto::Op::Added.into(),
        columns_json: serde_json::to_vec(&serde_json::json!({
            "user_id": "u-1", "order_id": "o-1", "note": column
        }))
        .unwrap(),
        message_id: None,
    };
    let response = app
        .client
        .clone()
        .test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingJson(
                track_mapping("orders"),
            )),
            destination_id: None,
            rows: vec![
                order_row("o-1", "u-1"),
                row_with("x".repeat(600).into()),
                row_with("x".repeat(3000).into()),
                // Many small values: within the value limit, over the row limit.
                row_with(serde_json::json!(vec!["abc"; 400])),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let r = &response.results;
    assert!(r[0].accepted, "{:?}", r[0]);
    let issue = |i: usize| {
        assert!(!r[i].accepted);
        assert_eq!(r[i].issues.len(), 1, "{:?}", r[i]);
        let issue = &r[i].issues[0];
        assert_eq!(issue.code, proto::IssueCode::RowTooLarge as i32);
        (issue.pointer.clone(), issue.message.clone())
    };
    let (pointer, message) = issue(1);
    assert_eq!(pointer, "/columns/note");
    assert!(
        message.contains("--max-value-bytes") && message.contains("512"),
        "{message}"
    );
    let (pointer, message) = issue(2);
    assert_eq!(pointer, "/columns_json");
    assert!(
        message.contains("--max-row-bytes") && message.contains("2048"),
        "{message}"
    );
    assert_eq!(issue(3).0, "/columns_json");
}

/// Beyond `--max-concurrent-calls`, a call gets RESOURCE_EXHAUSTED naming the limit; health still
/// answers; once a call ends the next one is taken.
#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_resource_exhausted() {
    use proto::stream_rows_request::Message;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let app = TestApp::spawn_with(Arc::new(tempfile::tempdir().unwrap()), |s| {
        s.max_concurrent_calls = 2;
    })
    .await;
    let d = app.create_destination("prod").await;
    app.create_mapping(&d.id, &track_mapping("orders")).await;
    let list = || {
        let mut client = app.client.clone();
        async move {
            client
                .list_destinations(proto::ListDestinationsRequest {})
                .await
        }
    };
    // Two StreamRows calls held open: each has sent its header and been answered (so it is in
    // flight on the server), then sends nothing more.
    let mut open = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = tokio::sync::mpsc::channel::<proto::StreamRowsRequest>(1);
        tx.send(proto::StreamRowsRequest {
            message: Some(Message::Header(proto::StreamHeader {
                destination_id: d.id.clone(),
                model: "orders".into(),
            })),
        })
        .await
        .unwrap();
        let answers = app
            .client
            .clone()
            .stream_rows(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("admitted below the limit")
            .into_inner();
        open.push((tx, answers));
    }

    let refused = list().await.expect_err("a third call is over the limit");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("--max-concurrent-calls") && refused.message().contains('2'),
        "{refused:?}"
    );
    let mut health = HealthClient::new(app.channel().await);
    let serving = health
        .check(HealthCheckRequest {
            service: proto::SERVICE_NAME.into(),
        })
        .await
        .expect("health is not counted against the limit")
        .into_inner();
    assert_eq!(serving.status, ServingStatus::Serving as i32);

    // One stream ends (its sender closes; the answer stream then ends): the next call is taken.
    let (tx, mut answers) = open.pop().unwrap();
    drop(tx);
    while let Some(answer) = answers.message().await.unwrap() {
        assert!(answer.results.is_empty(), "{answer:?}");
    }
    // The server records the call's end as its trailers go out: allow it that instant.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match list().await {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                assert!(
                    std::time::Instant::now() < deadline,
                    "the freed slot was never reused"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
