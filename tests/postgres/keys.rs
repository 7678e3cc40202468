//! The encryption key with PostgreSQL: required; a key that cannot open the stored write keys
//! stops start-up with a clear message; `keys rotate` re-encrypts under the newest key.

use segment_connections::grpc::proto;
use segment_connections::store::KeyRing;

use crate::common::bin::{cli, text};
use crate::common::pg::TestDb;
use crate::common::serve::{Server, create_destination, key_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_required_with_postgres() {
    let out = cli(
        &["serve", "--store", "postgres://nobody@127.0.0.1:1/none"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("an encryption key is required with PostgreSQL"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_reencrypts_and_start_up_names_a_missing_key() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let old = KeyRing::generate_hex().unwrap();
    let new = KeyRing::generate_hex().unwrap();
    let server = Server::start(&db.url, &old, "info").await;
    let mut c = server.client();
    let a = create_destination(&mut c, "a", "us", "wk-a-0123456789").await;
    let b = create_destination(&mut c, "b", "us", "wk-b-0123456789").await;
    server.stop().await;

    // The new key alone: start-up fails, naming the key it needs, showing no key material.
    let log = match Server::try_start(&db.url, &new, "info").await {
        Ok(_) => panic!("started with a key that opens no stored write key"),
        Err(log) => log.join("\n"),
    };
    assert!(log.contains("cannot be decrypted"), "{log}");
    assert!(log.contains(&key_id(&old)), "{log}");
    assert!(!log.contains(&old) && !log.contains(&new), "{log}");

    // Rotate: new key first, the old one after it.
    let both = format!("{new}\n{old}\n");
    let out = cli(
        &["keys", "rotate", "--store", &db.url],
        &[("SEGMENT_CONNECTIONS_ENCRYPTION_KEY", &both)],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("re-encrypted 2 write key(s) under key {}", key_id(&new))
    );
    let mut conn = db.connect().await;
    let ids: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT write_key_key_id FROM destinations")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(ids, [(key_id(&new),)]);

    // Now the new key alone is enough; nothing visible changed.
    let server = Server::start(&db.url, &new, "info").await;
    let mut c = server.client();
    for d in [a, b] {
        let got = c
            .get_destination(proto::GetDestinationRequest { id: d.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .destination
            .unwrap();
        assert_eq!(got, d);
    }
    server.stop().await;

    // The old key alone no longer opens them.
    let log = match Server::try_start(&db.url, &old, "info").await {
        Ok(_) => panic!("started with the retired key"),
        Err(log) => log.join("\n"),
    };
    assert!(log.contains(&key_id(&new)), "{log}");

    // `keys generate` prints a usable key.
    let out = cli(&["keys", "generate"], &[]).await;
    assert!(out.status.success());
    KeyRing::from_hex_lines(&text(&out.stdout)).unwrap();
}

/// The same command on SQLite (no PostgreSQL needed), with a key file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_works_on_sqlite_with_a_key_file() {
    use segment_connections::store::{Name, NewDestination, Region, SqliteStore, Store, WriteKey};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let old = KeyRing::generate_hex().unwrap();
    let new = KeyRing::generate_hex().unwrap();
    let store = SqliteStore::open(&db, KeyRing::from_hex_lines(&old).unwrap())
        .await
        .unwrap();
    let d = store
        .create_destination(NewDestination {
            name: Name::parse("prod".into()).unwrap(),
            region: Region::Us,
            write_key: WriteKey::parse("wk-sqlite-0123".into()).unwrap(),
            enabled: true,
            rate_limit: Default::default(),
        })
        .await
        .unwrap();
    store.close().await;
    let key_file = dir.path().join("master.key");
    std::fs::write(&key_file, format!("{new}\n{old}\n")).unwrap();
    let out = cli(
        &[
            "keys",
            "rotate",
            "--store",
            &format!("sqlite://{}", db.display()),
            "--encryption-key-file",
            key_file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("re-encrypted 1 write key(s) under key {}", key_id(&new))
    );
    let store = SqliteStore::open(&db, KeyRing::from_hex_lines(&new).unwrap())
        .await
        .unwrap();
    assert_eq!(
        store.destination_write_key(&d.id).await.unwrap().expose(),
        "wk-sqlite-0123"
    );
    store.close().await;

    // A missing key file is an error; rotate never creates one.
    let missing = dir.path().join("missing.key");
    let out = cli(
        &[
            "keys",
            "rotate",
            "--store",
            &format!("sqlite://{}", db.display()),
            "--encryption-key-file",
            missing.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("missing.key"),
        "{}",
        text(&out.stderr)
    );
    assert!(!missing.exists());
}
