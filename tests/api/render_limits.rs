//! Bounded rendering over the API: registration bounds documents (size, directive depth), and a
//! mapping that would compute too much gets `RENDER_LIMIT` for that row in TestMapping and
//! SubmitRows, while the rest of the request goes on.

use serde_json::{Value, json};
use tonic::Code;

use crate::common::app::{TestApp, order_row, track_mapping, violations};
use crate::submit_rows::{request, setup, setup_with, submit};
use segment_connections::grpc::proto::{self, ResultStatus};

/// A track mapping of the `orders` model with `x` mapped in its properties.
fn mapping_with(name: &str, x: Value) -> String {
    json!({
        "name": name,
        "model": "orders",
        "action": "track",
        "fields": {
            "event_name": {"@literal": "Order Completed"},
            "user_id": {"@path": "$.properties.user_id"},
            "properties": {"order_id": {"@path": "$.properties.order_id"}, "x": x},
        }
    })
    .to_string()
}

/// `@json` encode nested `levels` deep around the `q` column.
fn json_bomb(levels: usize) -> Value {
    let mut v = json!({"@path": "$.properties.q"});
    for _ in 0..levels {
        v = json!({"@json": {"mode": "encode", "value": v}});
    }
    v
}

/// An order row whose `q` column is `"`: every level of encoding doubles its escapes.
fn quote_row(id: &str) -> proto::Row {
    proto::Row {
        id: id.into(),
        op: proto::Op::Added.into(),
        columns_json: serde_json::to_vec(&json!({"user_id": "u-1", "order_id": id, "q": "\""}))
            .unwrap(),
        message_id: None,
    }
}

fn code(issue: &proto::Issue) -> proto::IssueCode {
    proto::IssueCode::try_from(issue.code).unwrap()
}

#[tokio::test]
async fn registration_bounds_document_size_and_directive_depth() {
    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    let mut c = app.client.clone();
    let create = |json: String| proto::CreateMappingRequest {
        destination_id: d.id.clone(),
        mapping_json: json,
    };

    // 33 directives deep: the innermost is named, with the limit.
    let mut deep = json!({"@path": "$.properties.q"});
    for _ in 0..32 {
        deep = json!({"@case": {"operator": "upper", "value": deep}});
    }
    let err = c
        .create_mapping(create(mapping_with("deep", deep)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let pointer = "/fields/properties/x".to_owned() + &"/@case/value".repeat(32);
    assert_eq!(
        violations(&err),
        [(
            pointer,
            "nests directives more than 32 deep (the limit)".to_owned()
        )]
    );

    // Over 64 KiB: refused as a whole, naming the size and the limit.
    let big = mapping_with("big", json!({"@literal": "x".repeat(70_000)}));
    let err = c.create_mapping(create(big.clone())).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let v = violations(&err);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].0, "");
    assert!(
        v[0].1.contains(&format!("is {} bytes", big.len())) && v[0].1.contains("at most 65536"),
        "{v:?}"
    );

    // UpdateMapping takes the same documents; TestMapping reports the limit as INVALID_MAPPING.
    let m = app.create_mapping(&d.id, &track_mapping("orders")).await;
    let err = c
        .update_mapping(proto::UpdateMappingRequest {
            id: m.id.clone(),
            version: m.version,
            mapping_json: big.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let resp = c
        .test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingJson(big)),
            destination_id: None,
            rows: vec![order_row("o-1", "u-1")],
        })
        .await
        .unwrap()
        .into_inner();
    let issues = &resp.results[0].issues;
    assert_eq!(code(&issues[0]), proto::IssueCode::InvalidMapping);
    assert!(issues[0].message.contains("at most 65536"), "{issues:?}");

    // At the limits themselves a mapping registers.
    let mut deepest = json!({"@path": "$.properties.q"});
    for _ in 0..31 {
        deepest = json!({"@case": {"operator": "upper", "value": deepest}});
    }
    app.create_mapping(&d.id, &mapping_with("deepest", deepest))
        .await;
}

/// The 28-deep `@json` bomb registers (it is within the limits), and rendering it stops at the
/// budget: TestMapping (registered and inline) and SubmitRows report `RENDER_LIMIT` for that
/// row, naming the field and the limit; other rows of the call are delivered, nothing of the
/// bomb is sent.
#[tokio::test]
async fn a_render_past_the_budget_is_render_limit_for_that_row() {
    let (app, fake, destination) = setup().await;
    let bomb = mapping_with("bomb", json_bomb(28));
    let m = app.create_mapping(&destination, &bomb).await;
    let check = |issues: &[proto::Issue]| {
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(code(&issues[0]), proto::IssueCode::RenderLimit);
        assert_eq!(issues[0].pointer, "/properties");
        assert!(
            issues[0].message.contains("@json encode")
                && issues[0].message.contains("4194304 bytes")
                && issues[0].message.contains("--max-render-bytes-per-row"),
            "{issues:?}"
        );
    };
    for subject in [
        proto::test_mapping_request::Mapping::MappingId(m.id.clone()),
        proto::test_mapping_request::Mapping::MappingJson(bomb.clone()),
    ] {
        let resp = app
            .client
            .clone()
            .test_mapping(proto::TestMappingRequest {
                mapping: Some(subject),
                destination_id: None,
                rows: vec![quote_row("o-1"), order_row("o-2", "u-2")],
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!resp.results[0].accepted);
        assert_eq!(resp.results[0].event_json, None);
        check(&resp.results[0].issues);
        // Without the quote the column is missing: nothing to encode, accepted.
        assert!(resp.results[1].accepted, "{:?}", resp.results[1]);
    }

    let resp = submit(
        &app,
        request(
            &destination,
            vec![quote_row("o-1"), order_row("o-2", "u-2"), quote_row("o-3")],
        ),
    )
    .await;
    let statuses: Vec<_> = resp
        .results
        .iter()
        .map(|r| ResultStatus::try_from(r.status).unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            ResultStatus::Rejected,
            ResultStatus::Delivered,
            ResultStatus::Rejected
        ]
    );
    check(&resp.results[0].issues);
    check(&resp.results[2].issues);
    // Only the row within the budget is sent.
    assert_eq!(
        fake.accepted(),
        [resp.results[1].message_id.clone().unwrap()]
    );
}

/// `--max-render-bytes-per-row` sets the budget: a mapping well within the default is over a
/// small one.
#[tokio::test]
async fn the_budget_is_a_setting() {
    let (app, _fake, destination) =
        setup_with(|s| s.delivery.max_render_bytes_per_row = 2000).await;
    let m = app
        .create_mapping(&destination, &mapping_with("enc", json_bomb(3)))
        .await;
    let row = |q: &str| proto::Row {
        columns_json: serde_json::to_vec(&json!({"user_id": "u-1", "q": q})).unwrap(),
        ..quote_row("o-1")
    };
    let resp = app
        .client
        .clone()
        .test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingId(m.id)),
            destination_id: None,
            rows: vec![row("short"), row(&"x".repeat(1000))],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.results[0].accepted, "{:?}", resp.results[0]);
    let issues = &resp.results[1].issues;
    assert_eq!(
        code(&issues[0]),
        proto::IssueCode::RenderLimit,
        "{issues:?}"
    );
    assert!(issues[0].message.contains("2000 bytes"), "{issues:?}");
}
