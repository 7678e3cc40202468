//! Destinations: CRUD, validation, uniqueness, versions, the write key at rest.

use sha2::{Digest, Sha256};
use tonic::Code;

use crate::common::app::{TestApp, track_mapping, violations};
use segment_connections::grpc::proto;

fn fingerprint(key: &str) -> String {
    Sha256::digest(key.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn create_get_list_update_delete() {
    let app = TestApp::spawn().await;
    let mut c = app.client.clone();
    let created = c
        .create_destination(proto::CreateDestinationRequest {
            name: "prod".into(),
            region: "http://127.0.0.1:9/v1/".into(),
            write_key: "wk_secret_ABC123".into(),
            enabled: None,
            rate_limit: None,
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert!(created.id.starts_with("dst_"), "{created:?}");
    assert_eq!(created.name, "prod");
    assert_eq!(created.region, "http://127.0.0.1:9");
    assert!(created.enabled);
    assert_eq!(created.version, 1);
    assert_eq!(
        created.write_key_fingerprint,
        fingerprint("wk_secret_ABC123")
    );

    let got = c
        .get_destination(proto::GetDestinationRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(got, created);

    app.create_destination("another").await;
    let list = c
        .list_destinations(proto::ListDestinationsRequest {})
        .await
        .unwrap()
        .into_inner()
        .destinations;
    assert_eq!(
        list.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["another", "prod"]
    );

    let updated = c
        .update_destination(proto::UpdateDestinationRequest {
            id: created.id.clone(),
            version: 1,
            name: Some("production".into()),
            region: Some("eu".into()),
            write_key: Some("wk_rotated_XYZ".into()),
            enabled: Some(false),
            rate_limit: None,
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(updated.name, "production");
    assert_eq!(updated.region, "eu");
    assert!(!updated.enabled);
    assert_eq!(updated.version, 2);
    assert_eq!(updated.write_key_fingerprint, fingerprint("wk_rotated_XYZ"));

    // Absent fields keep their value.
    let touched = c
        .update_destination(proto::UpdateDestinationRequest {
            id: created.id.clone(),
            version: 2,
            enabled: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(touched.name, "production");
    assert_eq!(touched.write_key_fingerprint, updated.write_key_fingerprint);
    assert_eq!(touched.version, 3);

    c.delete_destination(proto::DeleteDestinationRequest {
        id: created.id.clone(),
    })
    .await
    .unwrap();
    let err = c
        .get_destination(proto::GetDestinationRequest { id: created.id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn invalid_fields_are_all_reported() {
    let app = TestApp::spawn().await;
    let err = app
        .client
        .clone()
        .create_destination(proto::CreateDestinationRequest {
            name: String::new(),
            region: "mars".into(),
            write_key: "has a space".into(),
            enabled: None,
            rate_limit: Some(100_001),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<String> = violations(&err).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["name", "region", "write_key", "rate_limit"]);
    // The message never echoes a write key.
    assert!(!err.message().contains("has a space"), "{}", err.message());
    // An update's limit is bounded the same way, and nothing is changed.
    let d = app.create_destination("prod").await;
    let err = app
        .client
        .clone()
        .update_destination(proto::UpdateDestinationRequest {
            id: d.id.clone(),
            version: 1,
            rate_limit: Some(u32::MAX),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        violations(&err),
        [(
            "rate_limit".to_owned(),
            "is more than 100000 events per second (0 means unlimited); at most 100000".to_owned()
        )]
    );
    let got = app
        .client
        .clone()
        .get_destination(proto::GetDestinationRequest { id: d.id.clone() })
        .await;
    assert_eq!(got.unwrap().into_inner().destination.unwrap(), d);
}

#[tokio::test]
async fn names_are_unique() {
    let app = TestApp::spawn().await;
    app.create_destination("prod").await;
    let other = app.create_destination("staging").await;
    let err = app
        .client
        .clone()
        .create_destination(proto::CreateDestinationRequest {
            name: "prod".into(),
            region: "us".into(),
            write_key: "k1".into(),
            enabled: None,
            rate_limit: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let err = app
        .client
        .clone()
        .update_destination(proto::UpdateDestinationRequest {
            id: other.id,
            version: 1,
            name: Some("prod".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
}

#[tokio::test]
async fn stale_unknown_and_missing_versions() {
    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    let mut c = app.client.clone();
    let update = |id: &str, version| proto::UpdateDestinationRequest {
        id: id.into(),
        version,
        enabled: Some(false),
        ..Default::default()
    };
    c.update_destination(update(&d.id, 1)).await.unwrap();
    let err = c.update_destination(update(&d.id, 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(
        err.message().contains("current version is 2"),
        "{}",
        err.message()
    );
    let err = c
        .update_destination(update("dst_nope", 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = c.update_destination(update(&d.id, 0)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = c
        .delete_destination(proto::DeleteDestinationRequest {
            id: "dst_nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = c
        .get_destination(proto::GetDestinationRequest { id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

#[tokio::test]
async fn the_write_key_is_encrypted_at_rest() {
    let app = TestApp::spawn().await;
    let key = "wk_PLAINTEXT_never_stored_42";
    let d = app
        .client
        .clone()
        .create_destination(proto::CreateDestinationRequest {
            name: "prod".into(),
            region: "us".into(),
            write_key: key.into(),
            enabled: None,
            rate_limit: None,
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    let rotated = "wk_ROTATED_never_stored_43";
    app.client
        .clone()
        .update_destination(proto::UpdateDestinationRequest {
            id: d.id.clone(),
            version: 1,
            write_key: Some(rotated.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let db = app.db_path();
    let dir = app.stop().await;
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for secret in [key, rotated] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a write key",
                path.display()
            );
        }
        files += 1;
    }
    assert!(
        files >= 2 && db.exists(),
        "the store and the key file were checked"
    );
    // The key id is stored beside the ciphertext, and the ciphertext opens with the key file.
    let keys = segment_connections::store::KeyRing::from_hex_lines(
        &std::fs::read_to_string(dir.path().join("master.key")).unwrap(),
    )
    .unwrap();
    let store = segment_connections::store::SqliteStore::open(&db, keys)
        .await
        .unwrap();
    use segment_connections::store::Store as _;
    assert_eq!(
        store.destination_write_key(&d.id).await.unwrap().expose(),
        rotated
    );
    store.close().await;
}

#[tokio::test]
async fn the_generated_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let app = TestApp::spawn().await;
    let meta = std::fs::metadata(app.dir.path().join("master.key")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn deleting_a_destination_deletes_its_mappings() {
    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    let m = app.create_mapping(&d.id, &track_mapping("orders")).await;
    app.client
        .clone()
        .delete_destination(proto::DeleteDestinationRequest { id: d.id })
        .await
        .unwrap();
    let err = app
        .client
        .clone()
        .get_mapping(proto::GetMappingRequest { id: m.id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn start_up_refuses_a_key_that_cannot_open_the_stored_write_keys_and_rotation_works() {
    use segment_connections::store::KeyRing;

    let app = TestApp::spawn().await;
    let d = app.create_destination("prod").await;
    let dir = app.stop().await;
    let key_path = dir.path().join("master.key");
    let old_key = std::fs::read_to_string(&key_path).unwrap();
    let old_id = KeyRing::from_hex_lines(&old_key)
        .unwrap()
        .current_key_id()
        .to_owned();

    // Another key only: start-up fails and says which key is missing.
    let new_key = KeyRing::generate_hex().unwrap();
    std::fs::write(&key_path, format!("{new_key}\n")).unwrap();
    let err =
        match segment_connections::app::App::build(crate::common::app::settings(dir.path().into()))
            .await
        {
            Ok(_) => panic!("start-up with the wrong key succeeded"),
            Err(e) => format!("{e:#}"),
        };
    assert!(err.contains(&old_id), "{err}");
    assert!(
        !err.contains(old_key.trim()) && !err.contains(&new_key),
        "{err}"
    );

    // Rotated: the new key first, the old one kept. Old write keys still open; a new write
    // key is sealed with the new key.
    std::fs::write(&key_path, format!("{new_key}\n{old_key}")).unwrap();
    let app = TestApp::spawn_in(dir).await;
    let got = app
        .client
        .clone()
        .get_destination(proto::GetDestinationRequest { id: d.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    assert_eq!(got, d);
    let second = app.create_destination("second").await;
    let db = app.db_path();
    let dir = app.stop().await;
    let ring =
        KeyRing::from_hex_lines(&std::fs::read_to_string(dir.path().join("master.key")).unwrap())
            .unwrap();
    let store = segment_connections::store::SqliteStore::open(&db, ring)
        .await
        .unwrap();
    use segment_connections::store::Store as _;
    assert_eq!(
        store.destination_write_key(&d.id).await.unwrap().expose(),
        "wk-prod-0123456789"
    );
    store.delete_destination(&d.id).await.unwrap();
    store.close().await;
    // With the old destination gone, the new key alone opens everything left.
    let store = segment_connections::store::SqliteStore::open(
        &db,
        KeyRing::from_hex_lines(&new_key).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        store
            .destination_write_key(&second.id)
            .await
            .unwrap()
            .expose(),
        "wk-second-0123456789"
    );
    store.close().await;
}
