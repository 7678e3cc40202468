//! TestMapping: registered and inline mappings, one or many rows, exactly what `test-mapping`
//! prints, real ids in the messageId, and nothing sent or written.

use tonic::Code;

use crate::common::app::{MAX_TEST_ROWS, TestApp, order_row, track_mapping};
use segment_connections::grpc::convert::test_result_from_proto;
use segment_connections::grpc::proto;
use segment_connections::issue::IssueCode;
use segment_connections::mapping::{Identity, Mapping, MappingDoc, Row, TestResult, message_id};

const ROW: &str = r#"{"id": "o-1", "op": "added", "columns": {"user_id": "u-1", "order_id": "o-1", "revenue": 19.99}}"#;

fn results(resp: proto::TestMappingResponse) -> Vec<TestResult> {
    resp.results
        .into_iter()
        .map(test_result_from_proto)
        .collect()
}

#[tokio::test]
async fn a_registered_mapping_uses_the_real_ids_for_the_message_id() {
    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    let m = app.create_mapping(&d.id, &track_mapping("orders")).await;
    let resp = app
        .client
        .clone()
        .test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingId(
                m.id.clone(),
            )),
            destination_id: Some(d.id.clone()),
            rows: vec![order_row("o-1", "u-1")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.results[0].row_index, 0);
    let got = results(resp);
    let identity = Identity {
        destination_id: d.id.clone(),
        mapping_id: m.id.clone(),
    };
    let row = Row::from_json(ROW.as_bytes()).unwrap();
    let doc = MappingDoc::parse(track_mapping("orders").as_bytes()).unwrap();
    let compiled = Mapping::compile(&doc, identity.clone()).unwrap();
    let expected = compiled.test(&row);
    assert_eq!(got, vec![expected]);
    assert!(got[0].accepted, "{:?}", got[0]);
    assert_eq!(
        got[0].message_id.as_deref(),
        Some(message_id::derive(&identity, compiled.content(), &row).as_str())
    );
    assert_eq!(got[0].event.as_ref().unwrap()["event"], "Order Completed");
}

#[tokio::test]
async fn an_inline_mapping_gives_exactly_what_test_mapping_prints() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let (mapping_file, row_file) = (dir.path().join("m.json"), dir.path().join("r.json"));
    std::fs::write(&mapping_file, track_mapping("orders")).unwrap();
    std::fs::write(&row_file, ROW).unwrap();
    let offline = segment_connections::cli::test_mapping::run(&mapping_file, &row_file).unwrap();

    let resp = app
        .client
        .clone()
        .test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingJson(
                track_mapping("orders"),
            )),
            destination_id: None,
            rows: vec![order_row("o-1", "u-1"), order_row("o-2", "u-2")],
        })
        .await
        .unwrap()
        .into_inner();
    let got = results(resp);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], offline);
    assert_eq!(
        serde_json::to_string_pretty(&got[0]).unwrap(),
        serde_json::to_string_pretty(&offline).unwrap()
    );
    assert_ne!(got[0].message_id, got[1].message_id);
}

#[tokio::test]
async fn an_invalid_inline_mapping_is_ok_with_an_invalid_mapping_issue() {
    let app = TestApp::spawn().await;
    for bad in [r#"{"action": "fly", "fields": {}}"#, "not json"] {
        let got = results(
            app.client
                .clone()
                .test_mapping(proto::TestMappingRequest {
                    mapping: Some(proto::test_mapping_request::Mapping::MappingJson(
                        bad.into(),
                    )),
                    destination_id: None,
                    rows: vec![order_row("o-1", "u-1"), order_row("o-2", "u-2")],
                })
                .await
                .unwrap()
                .into_inner(),
        );
        assert_eq!(got.len(), 2);
        for r in &got {
            assert!(!r.accepted && !r.skipped);
            assert!(!r.issues.is_empty());
            assert!(
                r.issues.iter().all(|i| i.code == IssueCode::InvalidMapping),
                "{r:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_malformed_row_is_an_invalid_row_for_that_row_only() {
    let app = TestApp::spawn().await;
    let mut bad_columns = order_row("o-2", "u-2");
    bad_columns.columns_json = b"[1, 2]".to_vec();
    let mut no_op = order_row("o-3", "u-3");
    no_op.op = proto::Op::Unspecified.into();
    let mut deleted = order_row("o-4", "u-4");
    deleted.op = proto::Op::Deleted.into();
    let mut unknown_op = order_row("o-5", "u-5");
    unknown_op.op = 9;
    let got = results(
        app.client
            .clone()
            .test_mapping(proto::TestMappingRequest {
                mapping: Some(proto::test_mapping_request::Mapping::MappingJson(
                    track_mapping("orders"),
                )),
                destination_id: None,
                rows: vec![
                    order_row("o-1", "u-1"),
                    bad_columns,
                    no_op,
                    deleted,
                    unknown_op,
                ],
            })
            .await
            .unwrap()
            .into_inner(),
    );
    assert!(got[0].accepted);
    assert_eq!(got[1].issues[0].code, IssueCode::InvalidRow);
    assert_eq!(got[1].issues[0].pointer, "/columns_json");
    assert_eq!(got[2].issues[0].code, IssueCode::InvalidRow);
    assert_eq!(got[2].issues[0].pointer, "/op");
    assert!(
        got[2].issues[0].message.contains("is required"),
        "{:?}",
        got[2]
    );
    // The trigger is added_or_updated: a deleted row is skipped.
    assert!(got[3].skipped && !got[3].accepted);
    // An op the API does not know is named as such, not as missing.
    assert_eq!(got[4].issues[0].pointer, "/op");
    assert!(
        got[4].issues[0].message.contains("unknown op 9"),
        "{:?}",
        got[4]
    );
}

#[tokio::test]
async fn request_errors() {
    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    let other = app.create_destination("other").await;
    let m = app.create_mapping(&d.id, &track_mapping("orders")).await;
    let mut c = app.client.clone();
    let req = |mapping, destination_id: Option<&str>, rows| proto::TestMappingRequest {
        mapping,
        destination_id: destination_id.map(Into::into),
        rows,
    };
    let by_id = |id: &str| Some(proto::test_mapping_request::Mapping::MappingId(id.into()));
    let inline = || {
        Some(proto::test_mapping_request::Mapping::MappingJson(
            track_mapping("orders"),
        ))
    };
    let one = || vec![order_row("o-1", "u-1")];
    for (request, code) in [
        (req(by_id("map_nope"), None, one()), Code::NotFound),
        (req(inline(), Some("dst_nope"), one()), Code::NotFound),
        (
            req(by_id(&m.id), Some(&other.id), one()),
            Code::InvalidArgument,
        ),
        (req(None, None, one()), Code::InvalidArgument),
        (req(inline(), None, vec![]), Code::InvalidArgument),
        (
            req(inline(), None, vec![order_row("o", "u"); MAX_TEST_ROWS + 1]),
            Code::InvalidArgument,
        ),
    ] {
        let err = c.test_mapping(request.clone()).await.unwrap_err();
        assert_eq!(err.code(), code, "{request:?}: {err:?}");
    }
    // Exactly the limit is fine.
    let ok = c
        .test_mapping(req(
            by_id(&m.id),
            Some(&d.id),
            vec![order_row("o", "u"); MAX_TEST_ROWS],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.results.len(), MAX_TEST_ROWS);
}

#[tokio::test]
async fn test_mapping_writes_nothing() {
    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    let m = app.create_mapping(&d.id, &track_mapping("orders")).await;
    let mut c = app.client.clone();
    c.test_mapping(proto::TestMappingRequest {
        mapping: Some(proto::test_mapping_request::Mapping::MappingJson(
            track_mapping("inline"),
        )),
        destination_id: Some(d.id.clone()),
        rows: vec![order_row("o-1", "u-1")],
    })
    .await
    .unwrap();
    c.test_mapping(proto::TestMappingRequest {
        mapping: Some(proto::test_mapping_request::Mapping::MappingId(
            m.id.clone(),
        )),
        destination_id: None,
        rows: vec![order_row("o-1", "u-1")],
    })
    .await
    .unwrap();
    let list = c
        .list_mappings(proto::ListMappingsRequest {
            destination_id: d.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .mappings;
    assert_eq!(list, vec![m]);
    let got_d = c
        .get_destination(proto::GetDestinationRequest { id: d.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(got_d, d);
}

/// TestMapping returns warnings beside the issues, the row still accepted: a path that resolved
/// to nothing with the row's nearest column, a field dropped as empty, a value coerced.
#[tokio::test]
async fn warnings_beside_issues_with_the_nearest_column() {
    let app = TestApp::spawn().await;
    let doc = serde_json::json!({
        "name": "warn", "model": "orders", "action": "track",
        "fields": {
            "event_name": "Order Completed",
            "user_id": {"@path": "$.properties.user_id"},
            "anonymous_id": {"@path": "$.properties.coupon"},
            "properties": {
                "revenue": {"@path": "$.properties.revnue"},
                "order": {"@path": "$.properties.order_id"},
            },
        }
    });
    let mut row = order_row("o-1", "u-1");
    row.columns_json = serde_json::to_vec(&serde_json::json!({
        "user_id": 12345, "order_id": "o-1", "revenue": 19.99, "coupon": null
    }))
    .unwrap();
    let resp = app
        .client
        .clone()
        .test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingJson(
                doc.to_string(),
            )),
            destination_id: None,
            rows: vec![row],
        })
        .await
        .unwrap()
        .into_inner();
    let r = &resp.results[0];
    assert!(r.accepted && r.issues.is_empty(), "{r:?}");
    let got: Vec<(proto::WarningCode, &str, &str)> = r
        .warnings
        .iter()
        .map(|w| (w.code(), w.pointer.as_str(), w.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                proto::WarningCode::PathUnresolved,
                "/fields/properties/revenue/@path",
                "$.properties.revnue resolved to nothing in this row; did you mean \
                 $.properties.revenue?"
            ),
            (
                proto::WarningCode::Coerced,
                "/fields/user_id",
                "User ID is a string: the number 12345 was sent as \"12345\""
            ),
            (
                proto::WarningCode::DroppedEmpty,
                "/fields/anonymous_id",
                "anonymous_id resolved to null, so the event has no Anonymous ID"
            ),
        ]
    );
    // The CLI's conversion keeps them.
    let back = test_result_from_proto(r.clone());
    assert_eq!(back.warnings.len(), 3);
    assert!(back.accepted);
}
