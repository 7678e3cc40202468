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
