//! `rows sync --from-postgres`: a query's rows, every common column type, as the records a
//! server (itself on PostgreSQL) syncs to the fake Tracking API; errors that never show the
//! password.

use serde_json::Value;

use crate::common::bin::{cli, text};
use crate::common::fake_segment::FakeSegment;
use crate::common::pg::TestDb;
use crate::common::serve::{Server, create_destination};
use segment_connections::grpc::proto;
use segment_connections::store::KeyRing;

const WRITE_KEY: &str = "wk-sync-source-0123";

/// Every column of the record under `properties`, the user from `user`.
fn mapping() -> String {
    serde_json::json!({
        "name": "orders",
        "model": "orders",
        "action": "track",
        "trigger": "added_or_updated",
        "fields": {
            "event_name": {"@literal": "Order"},
            "user_id": {"@path": "$.properties.user"},
            "properties": {"@path": "$.properties"}
        }
    })
    .to_string()
}

const TABLE: &str = r#"
CREATE TABLE src_orders (
    id bigint PRIMARY KEY,
    "user" text NOT NULL,
    small int2, regular int4, big int8,
    exact numeric, real4 float4, real8 float8,
    flag bool, name varchar(20), note text,
    at_naive timestamp, at_zoned timestamptz, day date,
    uid uuid, doc json, docb jsonb,
    tags text[], counts int4[]
);
INSERT INTO src_orders VALUES
  (1, 'u1', 7, -42, 9007199254740993, 12345.678900, 1.5, 0.1, true, 'Ada', 'a "quoted" note',
   '2026-01-02 03:04:05.678', '2026-01-02 03:04:05+02', '2026-12-31',
   '0b5e0c3c-1b52-4a38-a3c6-6f0e4a4b1f35', '{"a": [1, 2], "b": null}', '{"k": {"n": 1}}',
   ARRAY['x', 'y'], ARRAY[1, NULL, 3]),
  (2, 'u2', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL);
"#;

async fn sync(
    server: &Server,
    dest: &str,
    url: &str,
    query: &str,
    id: &str,
) -> std::process::Output {
    cli(
        &[
            "rows",
            "sync",
            "--server",
            &server.addr,
            "--destination",
            dest,
            "--model",
            "orders",
            "--from-postgres",
            url,
            "--query",
            query,
            "--id-column",
            id,
            "--json",
        ],
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_common_column_type_as_a_user_expects() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let key = KeyRing::generate_hex().unwrap();
    let server = Server::start(&db.url, &key, "info").await;
    let mut c = server.client();
    let fake = FakeSegment::start(WRITE_KEY).await;
    let dest = create_destination(&mut c, "prod", &fake.url(), WRITE_KEY)
        .await
        .id;
    c.create_mapping(proto::CreateMappingRequest {
        destination_id: dest.clone(),
        mapping_json: mapping(),
    })
    .await
    .unwrap();
    let mut conn = db.connect().await;
    sqlx::raw_sql(TABLE).execute(&mut conn).await.unwrap();

    let out = sync(
        &server,
        &dest,
        &db.url,
        "SELECT * FROM src_orders ORDER BY id;",
        "id",
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v["received"], &v["added"], &v["delivered"]),
        (&2.into(), &2.into(), &2.into()),
        "{v}"
    );
    assert_eq!(fake.accepted().len(), 2);
    let body: Value = serde_json::from_str(&fake.last_body()).unwrap();
    let events = body["batch"].as_array().unwrap();
    let first = events.iter().find(|e| e["userId"] == "u1").unwrap();
    let p = &first["properties"];
    let expected = serde_json::json!({
        "id": 1, "user": "u1", "small": 7, "regular": -42, "big": 9007199254740993u64,
        "exact": 12345.6789, "real4": 1.5, "real8": 0.1, "flag": true, "name": "Ada",
        "note": "a \"quoted\" note",
        "at_naive": "2026-01-02T03:04:05.678Z", "at_zoned": "2026-01-02T01:04:05Z",
        "day": "2026-12-31", "uid": "0b5e0c3c-1b52-4a38-a3c6-6f0e4a4b1f35",
        "doc": {"a": [1, 2], "b": null}, "docb": {"k": {"n": 1}},
        "tags": ["x", "y"], "counts": [1, null, 3],
    });
    assert_eq!(p, &expected, "{}", fake.last_body());
    let second = events.iter().find(|e| e["userId"] == "u2").unwrap();
    assert_eq!(second["properties"]["exact"], Value::Null);
    assert_eq!(second["properties"]["at_zoned"], Value::Null);
    assert_eq!(second["properties"]["tags"], Value::Null);

    // Again with one row changed: only it is sent.
    sqlx::raw_sql("UPDATE src_orders SET note = 'changed' WHERE id = 2")
        .execute(&mut conn)
        .await
        .unwrap();
    let out = sync(&server, &dest, &db.url, "SELECT * FROM src_orders", "id").await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v["updated"], &v["unchanged"]),
        (&1.into(), &1.into()),
        "{v}"
    );
    assert_eq!(fake.accepted().len(), 3);

    // Mistakes are usage errors naming the flag; the password is never shown.
    let mut wrong = url::Url::parse(&db.url).unwrap();
    wrong.set_password(Some("S3cretPassw0rd")).unwrap();
    wrong.set_port(Some(1)).unwrap();
    for (url, query, id, code, says) in [
        (
            db.url.as_str(),
            "SELECT * FROM src_orders",
            "nope",
            2,
            "the query has no such column (it has id, user,",
        ),
        (db.url.as_str(), "SELEC oops", "id", 2, "--query: "),
        (
            db.url.as_str(),
            "SELECT 1 AS a, 2 AS a",
            "a",
            2,
            "appears twice",
        ),
        (
            db.url.as_str(),
            "SELECT NULL::text AS id",
            "id",
            2,
            "is NULL or empty",
        ),
        (wrong.as_str(), "SELECT 1 AS id", "id", 1, "[redacted]"),
    ] {
        let out = sync(&server, &dest, url, query, id).await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{query}: {err}");
        assert!(err.contains(says), "{query}: {err}");
        assert!(!err.contains("S3cretPassw0rd"), "{err}");
    }
    // None of them committed (a FULL sync of no records would have deleted both): the ledger
    // still holds both records.
    assert_eq!(fake.accepted().len(), 3);
    let out = sync(&server, &dest, &db.url, "SELECT * FROM src_orders", "id").await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&v["deleted"], &v["unchanged"]),
        (&0.into(), &2.into()),
        "{v}"
    );
    server.stop().await;
}
