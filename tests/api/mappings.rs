//! Mappings: CRUD, validation with pointers, uniqueness per destination, the limit, versions,
//! persistence across a restart.

use tonic::Code;

use crate::common::app::{TestApp, track_mapping, violations};
use segment_connections::grpc::proto;

#[tokio::test]
async fn create_get_list_update_delete() {
    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    let mut c = app.client.clone();
    let m = app.create_mapping(&d.id, &track_mapping("orders")).await;
    assert!(m.id.starts_with("map_"), "{m:?}");
    assert_eq!(
        (m.destination_id.as_str(), m.name.as_str(), m.model.as_str()),
        (d.id.as_str(), "orders", "orders")
    );
    assert!(m.enabled);
    assert_eq!(m.version, 1);
    assert_eq!(m.mapping_json, track_mapping("orders"));

    let got = c
        .get_mapping(proto::GetMappingRequest { id: m.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .mapping
        .unwrap();
    assert_eq!(got, m);

    app.create_mapping(&d.id, &track_mapping("a-first")).await;
    let list = c
        .list_mappings(proto::ListMappingsRequest {
            destination_id: d.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .mappings;
    assert_eq!(
        list.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["a-first", "orders"]
    );

    let mut doc: serde_json::Value = serde_json::from_str(&track_mapping("orders")).unwrap();
    doc["enabled"] = false.into();
    doc["model"] = "purchases".into();
    let updated = c
        .update_mapping(proto::UpdateMappingRequest {
            id: m.id.clone(),
            version: 1,
            mapping_json: doc.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .mapping
        .unwrap();
    assert_eq!(updated.version, 2);
    assert!(!updated.enabled);
    assert_eq!(updated.model, "purchases");

    c.delete_mapping(proto::DeleteMappingRequest { id: m.id.clone() })
        .await
        .unwrap();
    let err = c
        .get_mapping(proto::GetMappingRequest { id: m.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .delete_mapping(proto::DeleteMappingRequest { id: m.id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn an_invalid_mapping_lists_every_violation_with_its_pointer() {
    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    let bad = serde_json::json!({
        "action": "fly",
        "fields": {
            "user_id": {"@replace": {"pattern": "", "replacement": "x", "value": "y"}},
            "not_a_field": 1
        }
    });
    let err = app
        .client
        .clone()
        .create_mapping(proto::CreateMappingRequest {
            destination_id: d.id.clone(),
            mapping_json: bad.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let fields: Vec<String> = violations(&err).into_iter().map(|(f, _)| f).collect();
    for pointer in ["/action", "/fields/not_a_field", "/name", "/model"] {
        assert!(
            fields.iter().any(|f| f == pointer),
            "{pointer} in {fields:?}"
        );
    }
    assert!(
        fields
            .iter()
            .any(|f| f == "/fields/user_id/@replace/pattern"),
        "{fields:?}"
    );
    // The message lists them too.
    assert!(err.message().contains("/action:"), "{}", err.message());

    let err = app
        .client
        .clone()
        .create_mapping(proto::CreateMappingRequest {
            destination_id: d.id.clone(),
            mapping_json: "{not json".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Updates validate the same way.
    let m = app.create_mapping(&d.id, &track_mapping("orders")).await;
    let err = app
        .client
        .clone()
        .update_mapping(proto::UpdateMappingRequest {
            id: m.id,
            version: 1,
            mapping_json: bad.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

/// The common slips are caught at CreateMapping, each at its pointer with what was likely meant,
/// rather than as every row REJECTED later; nothing is stored.
#[tokio::test]
async fn registration_points_at_slips_with_a_suggestion() {
    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    let doc = serde_json::json!({
        "name": "slips", "model": "orders", "action": "track",
        "fields": {
            "event_name": "Order",
            "user_id": {"path": "$.properties.user"},
            "anonymous_id": {"@paht": "$.properties.anon"},
            "properties": "revenue",
            "timestamp": {"@path": "$properties.created_at"},
            "userId": "x",
        }
    });
    let err = app
        .client
        .clone()
        .create_mapping(proto::CreateMappingRequest {
            destination_id: d.id.clone(),
            mapping_json: doc.to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut got = violations(&err);
    got.sort();
    let want = [
        (
            "/fields/anonymous_id",
            "has an invalid directive: @paht; did you mean @path?",
        ),
        (
            "/fields/properties",
            "is a string, which Properties (an object) never takes: every row would be rejected \
             TYPE_MISMATCH; map an object of keys, or a directive giving one",
        ),
        (
            "/fields/timestamp/@path",
            "is not a usable path (a path starts with \"$.\"): \"$properties.created_at\"; did you \
             mean \"$.properties.created_at\"?",
        ),
        (
            "/fields/userId",
            "is not a field key; did you mean \"user_id\"?",
        ),
        (
            "/fields/user_id/path",
            "is a directive without its @, which would be sent as the object \
             {\"path\":\"$.properties.user\"}; did you mean {\"@path\": \"$.properties.user\"}?",
        ),
    ]
    .map(|(p, m)| (p.to_owned(), m.to_owned()));
    assert_eq!(got, want);
    let listed = app
        .client
        .clone()
        .list_mappings(proto::ListMappingsRequest {
            destination_id: d.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.mappings.is_empty(), "{listed:?}");
}

#[tokio::test]
async fn names_are_unique_per_destination() {
    let app = TestApp::spawn().await;
    let d1 = app.create_destination("one").await;
    let d2 = app.create_destination("two").await;
    app.create_mapping(&d1.id, &track_mapping("orders")).await;
    // The same name in another destination is fine.
    app.create_mapping(&d2.id, &track_mapping("orders")).await;
    let err = app
        .client
        .clone()
        .create_mapping(proto::CreateMappingRequest {
            destination_id: d1.id.clone(),
            mapping_json: track_mapping("orders"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    // Renaming onto a taken name too.
    let other = app.create_mapping(&d1.id, &track_mapping("other")).await;
    let err = app
        .client
        .clone()
        .update_mapping(proto::UpdateMappingRequest {
            id: other.id,
            version: 1,
            mapping_json: track_mapping("orders"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
}

#[tokio::test]
async fn the_51st_mapping_is_refused() {
    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    for i in 0..50 {
        app.create_mapping(&d.id, &track_mapping(&format!("m{i:02}")))
            .await;
    }
    let err = app
        .client
        .clone()
        .create_mapping(proto::CreateMappingRequest {
            destination_id: d.id.clone(),
            mapping_json: track_mapping("m50"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("50"), "{}", err.message());
    // Another destination is not affected.
    let other = app.create_destination("other").await;
    app.create_mapping(&other.id, &track_mapping("m50")).await;
}

#[tokio::test]
async fn a_stale_version_is_aborted() {
    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    let m = app.create_mapping(&d.id, &track_mapping("orders")).await;
    let mut c = app.client.clone();
    // A change: the same document again would change nothing.
    let mut changed: serde_json::Value = serde_json::from_str(&track_mapping("orders")).unwrap();
    changed["enabled"] = false.into();
    let update = |version| proto::UpdateMappingRequest {
        id: m.id.clone(),
        version,
        mapping_json: changed.to_string(),
    };
    assert_eq!(
        c.update_mapping(update(1))
            .await
            .unwrap()
            .into_inner()
            .mapping
            .unwrap()
            .version,
        2
    );
    // Stale, though what it gives is what version 2 holds: ABORTED, the rule has no exception.
    let err = c.update_mapping(update(1)).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    // Current and unchanged: OK, nothing moves.
    let same = c
        .update_mapping(update(2))
        .await
        .unwrap()
        .into_inner()
        .mapping
        .unwrap();
    assert_eq!(same.version, 2);
    let err = c.update_mapping(update(0)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = c
        .update_mapping(proto::UpdateMappingRequest {
            id: "map_nope".into(),
            version: 1,
            mapping_json: track_mapping("orders"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

#[tokio::test]
async fn a_mapping_of_an_unknown_destination_is_not_found() {
    let app = TestApp::spawn().await;
    let mut c = app.client.clone();
    let err = c
        .create_mapping(proto::CreateMappingRequest {
            destination_id: "dst_nope".into(),
            mapping_json: track_mapping("orders"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = c
        .list_mappings(proto::ListMappingsRequest {
            destination_id: "dst_nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

#[tokio::test]
async fn destinations_and_mappings_survive_a_restart() {
    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    let m = app.create_mapping(&d.id, &track_mapping("orders")).await;
    let app = app.restart().await;
    let mut c = app.client.clone();
    let got_d = c
        .get_destination(proto::GetDestinationRequest { id: d.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(got_d, d);
    let got_m = c
        .get_mapping(proto::GetMappingRequest { id: m.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .mapping
        .unwrap();
    assert_eq!(got_m, m);
    // And the versions go on from where they were.
    let updated = c
        .update_mapping(proto::UpdateMappingRequest {
            id: m.id,
            version: 1,
            mapping_json: track_mapping("orders").replace("Order Completed", "Order Placed"),
        })
        .await
        .unwrap()
        .into_inner()
        .mapping
        .unwrap();
    assert_eq!(updated.version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_never_pass_the_limit() {
    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    let calls = (0..60).map(|i| {
        let mut c = app.client.clone();
        let destination_id = d.id.clone();
        tokio::spawn(async move {
            c.create_mapping(proto::CreateMappingRequest {
                destination_id,
                mapping_json: track_mapping(&format!("m{i:02}")),
            })
            .await
            .map(|_| ())
            .map_err(|s| s.code())
        })
    });
    let mut created = 0;
    for call in calls.collect::<Vec<_>>() {
        match call.await.unwrap() {
            Ok(()) => created += 1,
            Err(code) => assert_eq!(code, Code::FailedPrecondition),
        }
    }
    assert_eq!(created, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_updates_from_one_version_exactly_one_wins() {
    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    let m = app.create_mapping(&d.id, &track_mapping("orders")).await;
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let mut c = app.client.clone();
            let id = m.id.clone();
            tokio::spawn(async move {
                // A change (the document as stored would change nothing, and all would win).
                c.update_mapping(proto::UpdateMappingRequest {
                    id,
                    version: 1,
                    mapping_json: track_mapping("orders").replace("Order Completed", "Placed"),
                })
                .await
                .map(|_| ())
                .map_err(|s| s.code())
            })
        })
        .collect();
    let mut won = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(()) => won += 1,
            Err(code) => assert_eq!(code, Code::Aborted),
        }
    }
    assert_eq!(won, 1);
}
