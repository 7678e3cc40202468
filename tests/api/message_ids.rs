//! messageIds follow what a mapping does, not how often it was applied (docs/DESIGN.md,
//! "messageId"; "The store"): re-applying the same mapping file with `mappings apply` changes
//! nothing, and the same rows keep their messageIds, so Segment still de-duplicates retries after
//! a deploy; a real change gets new ones. Over the real binary and gRPC, against the fake
//! Tracking API.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::app::order_row;
use crate::common::bin::{cli, text};
use crate::submit_rows::{request, setup, submit};
use segment_connections::grpc::proto;
use segment_connections::grpc::proto::ResultStatus;

fn mapping(event: &str) -> Value {
    json!({
        "name": "orders",
        "model": "orders",
        "action": "track",
        "trigger": "added_or_updated",
        "fields": {
            "event_name": {"@literal": event},
            "user_id": {"@path": "$.properties.user_id"},
            "properties": {"order_id": {"@path": "$.properties.order_id"}}
        }
    })
}

fn rows() -> Vec<proto::Row> {
    vec![order_row("o-1", "u-1"), order_row("o-2", "u-2")]
}

/// `mappings apply` of `doc` written as `text`: the mapping's version and the printed line.
async fn apply(server: &str, destination: &str, dir: &Path, text_of_doc: &str) -> (u64, String) {
    let file = dir.join("orders.json");
    std::fs::write(&file, text_of_doc).unwrap();
    let file = file.to_string_lossy().into_owned();
    let args = [
        "mappings",
        "apply",
        "--server",
        server,
        "--destination",
        destination,
        "-f",
        &file,
    ];
    let out = cli(&args, &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = text(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut json_args = args.to_vec();
    json_args.push("--json");
    // Applying the same file once more for the JSON answer is itself a no-op.
    let out = cli(&json_args, &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v["version"].as_u64().unwrap(), first)
}

/// The messageIds SubmitRows sends for `rows()`, after checking every row was delivered, and
/// that TestMapping of the registered mapping gives the same ones.
async fn message_ids(
    app: &crate::common::app::TestApp,
    destination: &str,
    mapping_id: &str,
) -> Vec<String> {
    let resp = submit(app, request(destination, rows())).await;
    let sent: Vec<String> = resp
        .results
        .iter()
        .map(|r| {
            assert_eq!(r.status, ResultStatus::Delivered as i32, "{r:?}");
            r.message_id.clone().unwrap()
        })
        .collect();
    let tested = app
        .client
        .clone()
        .test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingId(
                mapping_id.into(),
            )),
            destination_id: None,
            rows: rows(),
        })
        .await
        .unwrap()
        .into_inner();
    let tested: Vec<String> = tested
        .results
        .iter()
        .map(|r| r.message_id.clone().unwrap())
        .collect();
    assert_eq!(tested, sent, "TestMapping derives what SubmitRows sends");
    sent
}

#[tokio::test]
async fn re_applying_an_unchanged_mapping_keeps_its_version_and_the_message_ids() {
    let (app, fake, d) = setup().await;
    let server = app.url();
    let dir = tempfile::tempdir().unwrap();
    let doc = mapping("Order Completed");

    let (v1, line) = apply(&server, &d, dir.path(), &doc.to_string()).await;
    assert_eq!(v1, 1);
    assert!(line.starts_with("created mapping map_"), "{line}");
    let m = app
        .client
        .clone()
        .list_mappings(proto::ListMappingsRequest {
            destination_id: d.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .mappings
        .remove(0);
    let first = message_ids(&app, &d, &m.id).await;
    assert!(first.iter().all(|id| id.starts_with("sc2-")), "{first:?}");
    assert_ne!(first[0], first[1]);

    // The same file again: nothing changes, the ids stay.
    let (v, line) = apply(&server, &d, dir.path(), &doc.to_string()).await;
    assert_eq!(v, 1);
    assert_eq!(line, format!("unchanged mapping {} (version 1)", m.id));
    assert_eq!(message_ids(&app, &d, &m.id).await, first);

    // Re-formatted (indented, keys in another order): the same document.
    let mut reordered = serde_json::Map::new();
    for key in ["fields", "trigger", "action", "model", "name"] {
        reordered.insert(key.into(), doc[key].clone());
    }
    let pretty = serde_json::to_string_pretty(&Value::Object(reordered)).unwrap();
    let (v, _) = apply(&server, &d, dir.path(), &pretty).await;
    assert_eq!(v, 1);
    assert_eq!(message_ids(&app, &d, &m.id).await, first);

    // Disabled and enabled again, and renamed: new versions, but the events are the same, so
    // are the ids.
    let mut c = app.client.clone();
    let mut update = async |version: u64, doc: &Value| {
        c.update_mapping(proto::UpdateMappingRequest {
            id: m.id.clone(),
            version,
            mapping_json: doc.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .mapping
        .unwrap()
        .version
    };
    let mut disabled = doc.clone();
    disabled["enabled"] = false.into();
    assert_eq!(update(1, &disabled).await, 2);
    assert_eq!(update(2, &doc).await, 3);
    assert_eq!(message_ids(&app, &d, &m.id).await, first);
    let mut renamed = doc.clone();
    renamed["name"] = "orders-renamed".into();
    assert_eq!(update(3, &renamed).await, 4);
    assert_eq!(message_ids(&app, &d, &m.id).await, first);
    // Renamed back, by UpdateMapping twice: the second is a no-op.
    assert_eq!(update(4, &doc).await, 5);
    assert_eq!(update(5, &doc).await, 5);
    assert_eq!(message_ids(&app, &d, &m.id).await, first);

    // A real change (a field): a new version, and new ids for the same rows.
    let mut changed = doc.clone();
    changed["fields"]["properties"]["channel"] = json!({"@literal": "web"});
    let (v, line) = apply(&server, &d, dir.path(), &changed.to_string()).await;
    assert_eq!(v, 6);
    assert_eq!(line, format!("updated mapping {} (version 6)", m.id));
    let after = message_ids(&app, &d, &m.id).await;
    assert!(after.iter().all(|id| !first.contains(id)), "{after:?}");
    // ...which are stable in turn.
    let (v, _) = apply(&server, &d, dir.path(), &changed.to_string()).await;
    assert_eq!(v, 6);
    assert_eq!(message_ids(&app, &d, &m.id).await, after);

    // What the fake received: each id, once per submission above.
    let accepted = fake.accepted();
    assert_eq!(accepted.iter().filter(|id| **id == first[0]).count(), 6);
    assert_eq!(accepted.iter().filter(|id| **id == after[0]).count(), 2);
}
