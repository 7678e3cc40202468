//! Row limits through TestMapping: a row or a column value over its limit is that row's
//! ROW_TOO_LARGE issue, naming the limit; the other rows are unaffected.

use std::sync::Arc;

use crate::common::app::{TestApp, order_row, track_mapping};
use segment_connections::grpc::proto;
use segment_connections::limits::RowLimits;

#[tokio::test]
async fn rows_and_values_over_their_limits_are_row_too_large() {
    let app = TestApp::spawn_with(Arc::new(tempfile::tempdir().unwrap()), |s| {
        s.limits.rows = RowLimits {
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
                ..Default::default()
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
    // It says when to retry (google.rpc.RetryInfo), so a client's retry policy can wait.
    use tonic_types::StatusExt as _;
    let delay = refused.get_details_retry_info().and_then(|r| r.retry_delay);
    assert_eq!(
        delay,
        Some(std::time::Duration::from_secs(1)),
        "{refused:?}"
    );
    let pushback = refused.metadata().get("grpc-retry-pushback-ms");
    assert_eq!(
        pushback.and_then(|v| v.to_str().ok()),
        Some("1000"),
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

/// 10,000 rows through 5 mappings: the full list of results would pass the 4 MiB a default gRPC
/// client takes. The answer stays within `MAX_RESPONSE_BYTES`, says what it left out (delivered
/// results first), and keeps its counts exact; NOT_DELIVERED lists only what needs attention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_answer_fits_a_default_client_and_says_what_it_left_out() {
    use prost::Message as _;
    use proto::ResultStatus;
    use segment_connections::limits::MAX_RESPONSE_BYTES;

    let (app, fake, d) = crate::submit_rows::setup().await;
    for m in 0..5 {
        app.create_mapping(&d, &track_mapping(&format!("orders-{m}")))
            .await;
    }
    let rows: Vec<proto::Row> = (0..10_000)
        .map(|i| {
            let mut r = order_row(&format!("order-{i:06}"), &format!("u-{i}"));
            if i % 1_000 == 999 {
                // No identity: REJECTED by each mapping.
                r.columns_json = br#"{"order_id": "x"}"#.to_vec();
            }
            r
        })
        .collect();
    let request = |results: proto::ResultFilter| proto::SubmitRowsRequest {
        results: results.into(),
        ..crate::submit_rows::request(&d, rows.clone())
    };
    // The default client: at most 4 MiB per message.
    let mut c = app.client.clone();
    let all = c
        .submit_rows(request(proto::ResultFilter::All))
        .await
        .expect("the answer fits a default client")
        .into_inner();
    assert!(
        all.encoded_len() <= MAX_RESPONSE_BYTES,
        "{}",
        all.encoded_len()
    );
    let counts = all.counts.unwrap();
    assert_eq!((counts.delivered, counts.rejected), (49_950, 50));
    // Every delivered event reached the fake (a loaded machine may make the client resend a
    // batch whose answer came late: the same messageIds, which Segment de-duplicates).
    let distinct: std::collections::HashSet<String> = fake.accepted().into_iter().collect();
    assert_eq!(distinct.len(), 49_950);
    assert!(all.truncated);
    assert_eq!(all.omitted_results as usize, 50_000 - all.results.len());
    assert!(all.results.len() > 30_000, "{}", all.results.len());
    // Every rejected result is listed; only delivered ones were left out, the last rows' first.
    let listed = |s: ResultStatus| all.results.iter().filter(|r| r.status == s as i32).count();
    assert_eq!(listed(ResultStatus::Rejected), 50);
    let indexes: Vec<u32> = all.results.iter().map(|r| r.row_index).collect();
    assert!(indexes.is_sorted(), "results stay in row order");
    assert_eq!(indexes[0], 0);
    assert!(
        *indexes.last().unwrap() == 9_999,
        "the last row's rejections are listed"
    );
    let last_delivered = all
        .results
        .iter()
        .rfind(|r| r.status == ResultStatus::Delivered as i32)
        .unwrap();
    // The delivered results listed are all those of the first rows, none after.
    let cut = last_delivered.row_index;
    assert!(cut < 9_999, "{last_delivered:?}");
    let rejected_rows_before = (0..cut).filter(|i| i % 1_000 == 999).count() as u32;
    let listed_before = all
        .results
        .iter()
        .filter(|r| r.status == ResultStatus::Delivered as i32 && r.row_index < cut)
        .count() as u32;
    assert_eq!(listed_before, 5 * (cut - rejected_rows_before));

    let attention = c
        .submit_rows(request(proto::ResultFilter::NotDelivered))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(attention.counts, Some(counts), "the counts are the same");
    assert_eq!(attention.results.len(), 50);
    assert!(
        attention
            .results
            .iter()
            .all(|r| r.status == ResultStatus::Rejected as i32)
    );
    assert_eq!(attention.omitted_results, 49_950);
    assert!(!attention.truncated);

    let err = c
        .submit_rows(proto::SubmitRowsRequest {
            results: 7,
            ..crate::submit_rows::request(&d, rows[..1].to_vec())
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("unknown value 7"),
        "{}",
        err.message()
    );
}

/// StreamRows takes the filter in its header: every answer lists only what it asked for.
#[tokio::test]
async fn stream_answers_list_what_the_header_asked_for() {
    use proto::stream_rows_request::Message;
    use tokio_stream::StreamExt as _;

    let (app, _fake, d) = crate::submit_rows::setup().await;
    app.create_mapping(&d, &track_mapping("orders")).await;
    let mut rows = crate::submit_rows::rows(10);
    rows[3].columns_json = b"{}".to_vec();
    let msgs = vec![
        proto::StreamRowsRequest {
            message: Some(Message::Header(proto::StreamHeader {
                destination_id: d.clone(),
                model: "orders".into(),
                results: proto::ResultFilter::NotDelivered.into(),
            })),
        },
        proto::StreamRowsRequest {
            message: Some(Message::Chunk(proto::RowChunk { chunk_id: 7, rows })),
        },
    ];
    let mut answers = app
        .client
        .clone()
        .stream_rows(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    let a = answers.next().await.unwrap().unwrap();
    assert_eq!(a.chunk_id, 7);
    assert_eq!(a.results.len(), 1, "{a:?}");
    assert_eq!(a.results[0].row_index, 3);
    assert_eq!(a.omitted_results, 9);
    assert!(!a.truncated);
    assert_eq!(a.counts.unwrap().delivered, 9);
    assert!(answers.next().await.is_none());
}

fn padded_row(id: &str, pad: usize) -> proto::Row {
    proto::Row {
        columns_json: serde_json::to_vec(
            &serde_json::json!({"user_id": "u", "pad": "x".repeat(pad)}),
        )
        .unwrap(),
        ..order_row(id, "u")
    }
}

/// TestMapping echoes an event up to 64 KiB; a larger one is left out with `event_omitted`, its
/// size still exact. Row ids and mapping documents have limits named in their errors.
#[tokio::test]
async fn test_mapping_caps_what_it_echoes_and_ids_and_documents_are_bounded() {
    use segment_connections::limits::MAX_ECHOED_EVENT_BYTES;
    use segment_connections::limits::MAX_ROW_ID_BYTES;
    use segment_connections::mapping::MAX_DOCUMENT_BYTES;

    let app = TestApp::spawn().await;
    let mut c = app.client.clone();
    let inline = |json: String| Some(proto::test_mapping_request::Mapping::MappingJson(json));
    let mapping = crate::submit_rows::track_with_message_id("orders");
    let rows = vec![
        padded_row("near", 40_000),
        padded_row("far", 100_000),
        order_row(&"i".repeat(MAX_ROW_ID_BYTES), "u"),
        order_row(&"i".repeat(MAX_ROW_ID_BYTES + 1), "u"),
    ];
    let r = c
        .test_mapping(proto::TestMappingRequest {
            mapping: inline(mapping.clone()),
            destination_id: None,
            rows,
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let too_large = proto::IssueCode::EventTooLarge as i32;
    // Over the Tracking API's limit but under the echo cap: shown.
    assert!(
        !r[0].accepted && r[0].issues[0].code == too_large,
        "{:?}",
        r[0].issues
    );
    assert!(!r[0].event_omitted);
    assert_eq!(
        r[0].event_json.as_ref().unwrap().len() as u64,
        r[0].size_bytes.unwrap()
    );
    // Over the echo cap: left out, its size exact.
    assert!(r[1].event_omitted, "{:?}", r[1].size_bytes);
    assert!(r[1].event_json.is_none());
    assert!(r[1].size_bytes.unwrap() > MAX_ECHOED_EVENT_BYTES as u64);
    assert!(r[1].size_bytes.unwrap() > 100_000);
    assert_eq!(r[1].issues[0].code, too_large);
    // A row id at the limit is fine, one byte over is INVALID_ROW naming it.
    assert!(r[2].accepted, "{:?}", r[2].issues);
    assert_eq!(r[3].issues.len(), 1);
    assert_eq!(r[3].issues[0].code, proto::IssueCode::InvalidRow as i32);
    assert_eq!(r[3].issues[0].pointer, "/id");
    assert!(
        r[3].issues[0].message.contains("at most 256"),
        "{:?}",
        r[3].issues
    );

    // A mapping document over the limit: refused at registration and inline.
    let mut doc: serde_json::Value = serde_json::from_str(&mapping).unwrap();
    doc["fields"]["properties"]["note"] = serde_json::json!("n".repeat(MAX_DOCUMENT_BYTES));
    let d = app.create_destination("prod").await;
    let err = c
        .create_mapping(proto::CreateMappingRequest {
            destination_id: d.id.clone(),
            mapping_json: doc.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("at most 65536"), "{}", err.message());
    let r = c
        .test_mapping(proto::TestMappingRequest {
            mapping: inline(doc.to_string()),
            destination_id: None,
            rows: vec![order_row("o", "u")],
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(r[0].issues[0].code, proto::IssueCode::InvalidMapping as i32);
    assert!(r[0].issues[0].message.contains("at most 65536"));
}
