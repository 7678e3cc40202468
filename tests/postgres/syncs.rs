//! Syncs on PostgreSQL with two real `serve` replicas: the ledger is shared (a sync through one
//! replica sees what a sync through the other delivered), one sync per model across replicas,
//! and a replica killed mid-sync (SIGKILL) loses nothing: its sync is ABANDONED after the lease
//! and the resync sends only what was not confirmed.

use std::time::Duration;

use tokio_stream::StreamExt as _;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::fake_segment::FakeSegment;
use crate::common::pg::TestDb;
use crate::common::serve::{Server, create_destination};
use crate::common::syncs::{chunk, commit, header, open_with_chunk};
use segment_connections::grpc::proto::sync_response::Message as Ans;
use segment_connections::grpc::proto::{self, ConnectionsClient};
use segment_connections::store::KeyRing;

const WRITE_KEY: &str = "wk-sync-0123456789";

fn mapping() -> String {
    serde_json::json!({
        "name": "orders", "model": "orders", "action": "track",
        "fields": {
            "event_name": {"@literal": "Order"},
            "anonymous_id": {"@path": "$.__segment_id"},
            "properties": {"total": {"@path": "$.properties.total"}}
        }
    })
    .to_string()
}

fn records(ids: std::ops::Range<usize>) -> Vec<proto::SyncRecord> {
    ids.map(|i| proto::SyncRecord {
        id: format!("r{i}"),
        columns_json: format!(r#"{{"total": {i}}}"#).into_bytes(),
    })
    .collect()
}

/// A whole FULL sync of `records` with commit: its summary, or the call's status.
async fn full_sync(
    c: &mut ConnectionsClient<Channel>,
    d: &str,
    records: Vec<proto::SyncRecord>,
) -> Result<proto::SyncInfo, tonic::Status> {
    let messages = vec![
        header(d, proto::SyncMode::Full, false),
        chunk(1, records),
        commit(),
    ];
    let mut answers = c.sync(tokio_stream::iter(messages)).await?.into_inner();
    let mut summary = None;
    while let Some(a) = answers.next().await {
        if let Ans::Summary(s) = a?.message.unwrap() {
            summary = Some(s);
        }
    }
    Ok(summary.expect("a summary"))
}

/// Two `serve` replicas on one fresh database, with a destination on the fake Tracking API and
/// its mapping, created through A; `None` without PostgreSQL.
struct Replicas {
    db: TestDb,
    fake: FakeSegment,
    a: Server,
    b: Server,
    d: proto::Destination,
    m: proto::Mapping,
}

async fn replicas() -> Option<Replicas> {
    let db = TestDb::create().await?;
    let fake = FakeSegment::start(WRITE_KEY).await;
    let key = KeyRing::generate_hex().unwrap();
    let a = Server::start(&db.url, &key, "info").await;
    let b = Server::start(&db.url, &key, "info").await;
    let mut ca = a.client();
    let d = create_destination(&mut ca, "fake", &fake.url(), WRITE_KEY).await;
    let m = ca
        .create_mapping(proto::CreateMappingRequest {
            destination_id: d.id.clone(),
            mapping_json: mapping(),
        })
        .await
        .unwrap()
        .into_inner()
        .mapping
        .unwrap();
    Some(Replicas {
        db,
        fake,
        a,
        b,
        d,
        m,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_ledger_and_a_killed_replicas_sync_is_abandoned() {
    let Some(Replicas {
        db,
        fake,
        a,
        b,
        d,
        m,
    }) = replicas().await
    else {
        return;
    };
    let (mut ca, mut cb) = (a.client(), b.client());

    // Through A, then through B: B's diff reads what A delivered.
    let first = full_sync(&mut ca, &d.id, records(0..10)).await.unwrap();
    assert_eq!(first.mappings[0].added, 10);
    let second = full_sync(&mut cb, &d.id, records(0..12)).await.unwrap();
    let c = &second.mappings[0];
    assert_eq!(
        (c.mapping_id.as_str(), c.unchanged, c.added),
        (m.id.as_str(), 10, 2)
    );
    assert_eq!(fake.accepted().len(), 12);

    // A sync through A that has delivered one chunk, then A is killed.
    let (tx, _answers, sync_id) = open_with_chunk(ca.clone(), &d.id, records(20..25)).await;
    let delivered = fake.accepted();
    assert_eq!(delivered.len(), 17);
    // Held across replicas while A lives.
    let busy = full_sync(&mut cb, &d.id, records(0..1)).await.unwrap_err();
    assert_eq!(busy.code(), Code::Aborted, "{busy:?}");
    assert!(busy.message().contains(&sync_id), "{busy:?}");
    drop(a); // SIGKILL
    drop(tx);

    // After the lease (1 s), B takes the model over; the killed sync is ABANDONED.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut all = records(0..12);
    all.extend(records(20..30));
    let resync = full_sync(&mut cb, &d.id, all).await.unwrap();
    let c = &resync.mappings[0];
    assert_eq!((c.unchanged, c.added, c.deleted), (17, 5, 0), "{c:?}");
    let sent = fake.accepted();
    assert_eq!(sent.len(), 22);
    assert!(sent[17..].iter().all(|id| !delivered.contains(id)));
    let old = cb
        .get_sync(proto::GetSyncRequest { sync_id })
        .await
        .unwrap()
        .into_inner()
        .sync
        .unwrap();
    assert_eq!(old.status, proto::SyncStatus::Abandoned as i32);
    assert_eq!(old.received, 5);
    // The ids the killed sync received went with it.
    let mut conn = db.connect().await;
    let (left,): (i64,) = sqlx::query_as("SELECT count(*) FROM sync_seen")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
    drop(b);
}

/// How many ledger entries `mapping_id` has.
async fn ledger_entries(conn: &mut sqlx::PgConnection, mapping_id: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM sync_state WHERE mapping_id = $1")
        .bind(mapping_id)
        .fetch_one(conn)
        .await
        .unwrap();
    n
}

/// ResetSync of `orders`.
async fn reset(c: &mut ConnectionsClient<Channel>, d: &str) -> Result<u64, tonic::Status> {
    c.reset_sync(proto::ResetSyncRequest {
        destination_id: d.into(),
        model: "orders".into(),
        mapping_id: String::new(),
    })
    .await
    .map(|r| r.into_inner().forgotten)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_waits_for_a_sync_running_on_another_replica_and_a_model_change_forgets() {
    // The fake Tracking API must outlive the replicas that deliver to it.
    let Some(Replicas {
        db,
        fake: _fake,
        a,
        b,
        d,
        m,
    }) = replicas().await
    else {
        return;
    };
    let (mut ca, mut cb) = (a.client(), b.client());
    full_sync(&mut ca, &d.id, records(0..10)).await.unwrap();

    // A sync running through A: a reset through B is refused, naming it.
    let (tx, _answers, sync_id) = open_with_chunk(ca.clone(), &d.id, records(10..15)).await;
    let busy = reset(&mut cb, &d.id).await.unwrap_err();
    assert_eq!(busy.code(), Code::Aborted, "{busy:?}");
    assert!(busy.message().contains(&sync_id), "{busy:?}");
    // A is killed: once the lease (1 s) has run out, the reset goes through and records the
    // sync ABANDONED, its received ids gone.
    drop(a); // SIGKILL
    drop(tx);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(reset(&mut cb, &d.id).await.unwrap(), 15);
    let old = cb
        .get_sync(proto::GetSyncRequest { sync_id })
        .await
        .unwrap()
        .into_inner()
        .sync
        .unwrap();
    assert_eq!(old.status, proto::SyncStatus::Abandoned as i32);
    let mut conn = db.connect().await;
    let (seen,): (i64,) = sqlx::query_as("SELECT count(*) FROM sync_seen")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(seen, 0);

    // The mapping moved to another model forgets its ledger with the update.
    full_sync(&mut cb, &d.id, records(0..3)).await.unwrap();
    assert_eq!(ledger_entries(&mut conn, &m.id).await, 3);
    let moved = cb
        .update_mapping(proto::UpdateMappingRequest {
            id: m.id.clone(),
            version: m.version,
            mapping_json: mapping().replace(r#""model":"orders""#, r#""model":"users""#),
        })
        .await
        .unwrap()
        .into_inner()
        .mapping
        .unwrap();
    assert_eq!(moved.model, "users");
    assert_eq!(ledger_entries(&mut conn, &m.id).await, 0);
    drop(b);
}
