//! Syncs over real gRPC against the fake Tracking API: the diff per mapping (added, updated,
//! deleted, unchanged), FULL without commit, retries and giving up, a crash mid-sync, the lock,
//! dry runs, reset, repeated ids and the history RPCs.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tonic::Code;

use crate::common::app::TestApp;
use crate::common::fake_segment::{FakeSegment, Fault};
use crate::common::syncs::{self, chunk, header_of, open_with_chunk, open_with_chunk_as};
use crate::store_faults::{SmallVolume, refused_as_full};
use crate::submit_rows::{WRITE_KEY, setup_with};
use segment_connections::config::StoreLocation;
use segment_connections::grpc::proto;
use segment_connections::grpc::proto::sync_response::Message as Ans;

const FULL: proto::SyncMode = proto::SyncMode::Full;
const INCREMENTAL: proto::SyncMode = proto::SyncMode::Incremental;

/// A track mapping of `orders` with this trigger, carrying the change and the columns.
fn mapping(name: &str, trigger: &str) -> String {
    mapping_of(name, "orders", trigger)
}

/// [`mapping`], of `model`.
fn mapping_of(name: &str, model: &str, trigger: &str) -> String {
    serde_json::json!({
        "name": name,
        "model": model,
        "action": "track",
        "trigger": trigger,
        "fields": {
            "event_name": {"@literal": "Order"},
            "anonymous_id": {"@path": "$.__segment_id"},
            "properties": {
                "change": {"@path": "$.event"},
                "total": {"@path": "$.properties.total"}
            }
        }
    })
    .to_string()
}

fn record(id: usize, total: usize) -> proto::SyncRecord {
    proto::SyncRecord {
        id: format!("r{id}"),
        columns_json: serde_json::to_vec(&serde_json::json!({"total": total})).unwrap(),
    }
}

/// Records `ids`, each with `total` = its id plus `plus`.
fn records(ids: impl IntoIterator<Item = usize>, plus: usize) -> Vec<proto::SyncRecord> {
    ids.into_iter().map(|i| record(i, i + plus)).collect()
}

/// What one sync answered.
#[derive(Debug, Default)]
struct Outcome {
    sync_id: String,
    chunks: Vec<proto::SyncChunkAnswer>,
    committed: Option<proto::SyncChunkAnswer>,
    summary: Option<proto::SyncInfo>,
    error: Option<tonic::Status>,
}

impl Outcome {
    fn summary(&self) -> &proto::SyncInfo {
        self.summary.as_ref().expect("a summary")
    }

    /// The summary's counts of the mapping `id`.
    fn counts(&self, id: &str) -> proto::SyncMappingCounts {
        self.summary()
            .mappings
            .iter()
            .find(|m| m.mapping_id == id)
            .cloned()
            .unwrap_or_default()
    }

    fn results(&self) -> Vec<proto::SyncResult> {
        self.chunks
            .iter()
            .chain(&self.committed)
            .flat_map(|c| c.results.clone())
            .collect()
    }
}

/// Runs a sync of `orders`: the chunks, then `commit` if asked, then half-closes.
async fn sync(
    app: &TestApp,
    destination_id: &str,
    mode: proto::SyncMode,
    dry_run: bool,
    chunks: Vec<Vec<proto::SyncRecord>>,
    commit: bool,
) -> Outcome {
    sync_of(app, destination_id, "orders", mode, dry_run, chunks, commit).await
}

/// [`sync`], of `model`.
async fn sync_of(
    app: &TestApp,
    destination_id: &str,
    model: &str,
    mode: proto::SyncMode,
    dry_run: bool,
    chunks: Vec<Vec<proto::SyncRecord>>,
    commit: bool,
) -> Outcome {
    let (tx, rx) = mpsc::channel(16);
    tx.send(header_of(destination_id, model, mode, dry_run))
        .await
        .unwrap();
    for (i, records) in chunks.into_iter().enumerate() {
        tx.send(chunk(i as u64 + 1, records)).await.unwrap();
    }
    if commit {
        tx.send(syncs::commit()).await.unwrap();
    }
    drop(tx);
    let mut answers = match app
        .client
        .clone()
        .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(a) => a.into_inner(),
        Err(status) => {
            return Outcome {
                error: Some(status),
                ..Outcome::default()
            };
        }
    };
    let mut out = Outcome::default();
    while let Some(a) = answers.next().await {
        match a {
            Ok(proto::SyncResponse { message: Some(m) }) => match m {
                Ans::Started(s) => out.sync_id = s.sync_id,
                Ans::Chunk(c) => out.chunks.push(c),
                Ans::Committed(c) => out.committed = Some(c),
                Ans::Summary(s) => out.summary = Some(s),
            },
            Ok(_) => panic!("an empty answer"),
            Err(status) => out.error = Some(status),
        }
    }
    out
}

async fn setup() -> (TestApp, FakeSegment, String) {
    setup_with(|_| {}).await
}

fn status(s: proto::SyncStatus) -> i32 {
    s.into()
}

#[tokio::test]
async fn a_second_full_sync_sends_exactly_the_inserts_changes_and_removals() {
    let (app, fake, d) = setup().await;
    let upserts = app
        .create_mapping(&d, &mapping("upserts", "added_or_updated"))
        .await;
    let deletes = app.create_mapping(&d, &mapping("deletes", "deleted")).await;

    let first = sync(
        &app,
        &d,
        FULL,
        false,
        vec![records(0..60, 0), records(60..100, 0)],
        true,
    )
    .await;
    assert!(first.error.is_none(), "{:?}", first.error);
    assert_eq!(first.summary().status, status(proto::SyncStatus::Completed));
    assert_eq!(first.summary().received, 100);
    let u = first.counts(&upserts.id);
    assert_eq!(
        (u.added, u.delivered, u.updated, u.deleted),
        (100, 100, 0, 0)
    );
    // The deleted-only mapping records every record all the same, sending nothing.
    let g = first.counts(&deletes.id);
    assert_eq!((g.added, g.skipped, g.delivered), (100, 100, 0));
    let sent_first: Vec<String> = fake.accepted();
    assert_eq!(sent_first.len(), 100);

    // r0..r4 change, r95..r99 disappear, r100..r102 are new.
    let mut next = records(0..5, 1000);
    next.extend(records(5..95, 0));
    next.extend(records(100..103, 0));
    let second = sync(&app, &d, FULL, false, vec![next], true).await;
    assert!(second.error.is_none(), "{:?}", second.error);
    let u = second.counts(&upserts.id);
    assert_eq!(
        (u.added, u.updated, u.unchanged, u.deleted),
        (3, 5, 90, 5),
        "{u:?}"
    );
    assert_eq!((u.delivered, u.skipped), (8, 5));
    let g = second.counts(&deletes.id);
    assert_eq!((g.added, g.updated, g.deleted, g.delivered), (3, 5, 5, 5));
    let sent: Vec<String> = fake.accepted()[100..].to_vec();
    assert_eq!(sent.len(), 13, "{sent:?}");
    // New content, new messageIds: none of the first sync's is sent again.
    let before: HashSet<&String> = sent_first.iter().collect();
    assert!(sent.iter().all(|id| !before.contains(id)));
    // The deletions carry the columns, every one null.
    let deleted: Vec<_> = second
        .results()
        .into_iter()
        .filter(|r| r.change == i32::from(proto::SyncChange::Deleted))
        .collect();
    assert_eq!(
        deleted.len(),
        5,
        "the upserts mapping skipped its 5: {deleted:?}"
    );
    assert!(
        fake.last_body().contains(r#""change":"deleted""#),
        "{}",
        fake.last_body()
    );

    // The same records again: nothing to send.
    let mut same = records(0..5, 1000);
    same.extend(records(5..95, 0));
    same.extend(records(100..103, 0));
    let third = sync(&app, &d, FULL, false, vec![same], true).await;
    let u = third.counts(&upserts.id);
    assert_eq!((u.unchanged, u.added + u.updated + u.deleted), (98, 0));
    assert_eq!(fake.accepted().len(), 113);
    assert!(third.results().is_empty(), "{:?}", third.results());
}

#[tokio::test]
async fn a_full_sync_without_commit_deletes_nothing_and_is_incomplete() {
    let (app, fake, d) = setup().await;
    let m = app
        .create_mapping(&d, &mapping("all", "added_or_updated"))
        .await;
    app.create_mapping(&d, &mapping("gone", "deleted")).await;
    sync(&app, &d, FULL, false, vec![records(0..10, 0)], true).await;
    assert_eq!(fake.accepted().len(), 10);

    let partial = sync(&app, &d, FULL, false, vec![records(0..5, 0)], false).await;
    assert_eq!(
        partial.summary().status,
        status(proto::SyncStatus::Incomplete)
    );
    assert_eq!(partial.counts(&m.id).deleted, 0);
    assert!(partial.committed.is_none());
    assert_eq!(fake.accepted().len(), 10);

    let whole = sync(&app, &d, FULL, false, vec![records(0..5, 0)], true).await;
    assert_eq!(whole.counts(&m.id).deleted, 5);
    assert_eq!(fake.accepted().len(), 15, "the deleted-only mapping sent 5");
    // INCREMENTAL never deletes.
    let inc = sync(&app, &d, INCREMENTAL, false, vec![], true).await;
    assert_eq!(inc.counts(&m.id).deleted, 0);
    assert_eq!(inc.summary().status, status(proto::SyncStatus::Completed));
}

#[tokio::test]
async fn failed_records_are_retried_by_later_syncs_and_given_up_after_the_limit() {
    let (app, fake, d) = setup_with(|s| s.sync.retry_syncs = 3).await;
    let m = app
        .create_mapping(&d, &mapping("all", "added_or_updated"))
        .await;
    // Every attempt of the first sync fails (4 attempts per batch).
    fake.script(vec![Fault::Status(500); 4]);
    let first = sync(&app, &d, FULL, false, vec![records(0..5, 0)], true).await;
    let c = first.counts(&m.id);
    assert_eq!((c.added, c.failed), (5, 5), "{c:?}");
    assert_eq!(
        first.summary().status,
        status(proto::SyncStatus::CompletedWithFailures)
    );
    assert!(fake.accepted().is_empty());
    let failures = app
        .client
        .clone()
        .list_sync_failures(proto::ListSyncFailuresRequest {
            sync_id: first.sync_id.clone(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failures.failures.len(), 2);
    assert!(!failures.next_page_token.is_empty());
    assert_eq!(
        failures.failures[0].status,
        proto::SyncResultStatus::Failed as i32
    );

    // An INCREMENTAL sync that sends nothing retries them from their stored columns; fails again.
    fake.script(vec![Fault::Status(500); 4]);
    let second = sync(&app, &d, INCREMENTAL, false, vec![], true).await;
    let c = second.counts(&m.id);
    assert_eq!((c.retried, c.failed, c.gave_up), (5, 5, 0), "{c:?}");

    // The third try is the last: given up, and said so.
    fake.script(vec![Fault::Status(500); 4]);
    let third = sync(&app, &d, INCREMENTAL, false, vec![], true).await;
    let c = third.counts(&m.id);
    assert_eq!((c.retried, c.gave_up), (5, 5), "{c:?}");
    assert!(
        third.summary().message.contains("gave up on 5"),
        "{:?}",
        third.summary()
    );
    let gave_up = third.results();
    assert!(
        gave_up
            .iter()
            .all(|r| r.status == proto::SyncResultStatus::GaveUp as i32)
    );

    // Not retried again, until the row changes.
    let fourth = sync(&app, &d, FULL, false, vec![records(0..5, 0)], true).await;
    let c = fourth.counts(&m.id);
    assert_eq!((c.retried, c.unchanged), (0, 5), "{c:?}");
    let fifth = sync(&app, &d, FULL, false, vec![records(0..5, 1)], true).await;
    let c = fifth.counts(&m.id);
    // Never delivered, so still new to the destination.
    assert_eq!((c.added, c.delivered), (5, 5), "{c:?}");
    assert_eq!(fake.accepted().len(), 5);
}

#[tokio::test]
async fn a_retry_that_succeeds_uses_the_same_message_ids() {
    let (app, fake, d) = setup().await;
    let m = app
        .create_mapping(&d, &mapping("all", "added_or_updated"))
        .await;
    fake.script(vec![Fault::Status(500); 4]);
    let first = sync(&app, &d, FULL, false, vec![records(0..3, 0)], true).await;
    let ids: HashSet<String> = first
        .results()
        .into_iter()
        .filter_map(|r| r.message_id)
        .collect();
    assert_eq!(ids.len(), 3);
    // Sent again by the caller, unchanged: a retry, not an update.
    let second = sync(&app, &d, FULL, false, vec![records(0..3, 0)], true).await;
    let c = second.counts(&m.id);
    assert_eq!((c.retried, c.delivered, c.updated), (3, 3, 0), "{c:?}");
    let sent: HashSet<String> = fake.accepted().into_iter().collect();
    assert_eq!(sent, ids);
}

async fn get_sync(app: &TestApp, id: &str) -> proto::SyncInfo {
    app.client
        .clone()
        .get_sync(proto::GetSyncRequest { sync_id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .sync
        .unwrap()
}

#[tokio::test]
async fn a_caller_gone_mid_sync_loses_nothing_and_the_resync_sends_only_the_rest() {
    let (app, fake, d) = setup().await;
    let m = app
        .create_mapping(&d, &mapping("all", "added_or_updated"))
        .await;
    let (tx, answers, sync_id) = open_with_chunk(app.client.clone(), &d, records(0..4, 0)).await;
    let delivered = fake.accepted();
    assert_eq!(delivered.len(), 4);
    // The caller goes away without commit.
    drop((tx, answers));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let old = loop {
        let s = get_sync(&app, &sync_id).await;
        if s.status != status(proto::SyncStatus::Running) {
            break s;
        }
        assert!(tokio::time::Instant::now() < deadline, "still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(old.status, status(proto::SyncStatus::Incomplete));
    assert_eq!(old.received, 4);
    assert_eq!(old.mappings[0].delivered, 4);

    let again = sync(&app, &d, FULL, false, vec![records(0..8, 0)], true).await;
    let c = again.counts(&m.id);
    assert_eq!((c.unchanged, c.added, c.delivered), (4, 4, 4), "{c:?}");
    let sent = fake.accepted();
    assert_eq!(sent.len(), 8);
    assert!(sent[4..].iter().all(|id| !delivered.contains(id)));
}

#[tokio::test]
async fn a_second_sync_of_a_running_model_is_aborted_naming_the_first() {
    let (app, _fake, d) = setup().await;
    app.create_mapping(&d, &mapping("all", "added_or_updated"))
        .await;
    let (tx, mut first, first_id) = open_with_chunk(app.client.clone(), &d, records(0..1, 0)).await;
    let second = sync(&app, &d, FULL, false, vec![records(0..2, 0)], true).await;
    let err = second.error.expect("ABORTED");
    assert_eq!(err.code(), Code::Aborted);
    assert!(err.message().contains(&first_id), "{err:?}");
    // A dry run takes no lock.
    let dry = sync(&app, &d, FULL, true, vec![records(0..2, 0)], true).await;
    assert!(dry.error.is_none(), "{:?}", dry.error);
    // Once the first ends, the model is free.
    drop(tx);
    while first.next().await.is_some() {}
    let third = sync(&app, &d, FULL, false, vec![records(0..2, 0)], true).await;
    assert!(third.error.is_none(), "{:?}", third.error);
}

#[tokio::test]
async fn a_dry_run_reports_the_events_and_sends_and_changes_nothing() {
    let (app, fake, d) = setup().await;
    let m = app
        .create_mapping(&d, &mapping("all", "added_or_updated"))
        .await;
    sync(&app, &d, FULL, false, vec![records(0..5, 0)], true).await;
    let mut next = records(0..2, 7);
    next.extend(records(2..6, 0));
    let dry = sync(&app, &d, FULL, true, vec![next.clone()], true).await;
    assert!(dry.summary().dry_run);
    // Its cost: three calls, one user new this month (r0 and r1 were delivered already).
    let c = dry.counts(&m.id);
    assert_eq!(
        (c.added, c.updated, c.unchanged, c.would_send, c.delivered),
        (1, 2, 3, 3, 0),
        "{c:?}"
    );
    let events: Vec<_> = dry
        .results()
        .into_iter()
        .filter(|r| r.status == proto::SyncResultStatus::WouldSend as i32)
        .collect();
    assert_eq!(events.len(), 3);
    assert_eq!(dry.summary().estimated_calls, Some(3));
    assert_eq!(dry.summary().estimated_new_users, Some(1));
    assert!(
        events
            .iter()
            .all(|r| r.event_json.as_deref().is_some_and(|e| e.contains("Order")))
    );
    assert_eq!(fake.accepted().len(), 5);
    // Nothing was recorded: the real sync finds the same changes.
    let real = sync(&app, &d, FULL, false, vec![next], true).await;
    let c = real.counts(&m.id);
    assert_eq!((c.added, c.updated, c.delivered), (1, 2, 3), "{c:?}");
    let dry_ids: Vec<_> = events
        .iter()
        .map(|r| r.message_id.clone().unwrap())
        .collect();
    assert_eq!(
        fake.accepted()[5..].to_vec(),
        dry_ids,
        "the same events, the same ids"
    );
}

#[tokio::test]
async fn reset_makes_the_next_full_sync_send_everything_as_added() {
    let (app, fake, d) = setup().await;
    let m = app
        .create_mapping(&d, &mapping("all", "added_or_updated"))
        .await;
    sync(&app, &d, FULL, false, vec![records(0..6, 0)], true).await;
    let forgotten = app
        .client
        .clone()
        .reset_sync(proto::ResetSyncRequest {
            destination_id: d.clone(),
            model: "orders".into(),
            mapping_id: m.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .forgotten;
    assert_eq!(forgotten, 6);
    let again = sync(&app, &d, FULL, false, vec![records(0..6, 0)], true).await;
    assert_eq!(again.counts(&m.id).added, 6);
    // The same content as added: the same messageIds, which Segment de-duplicates.
    let sent = fake.accepted();
    assert_eq!(sent[..6], sent[6..]);
    // A mapping of another model is refused.
    let err = app
        .client
        .clone()
        .reset_sync(proto::ResetSyncRequest {
            destination_id: d.clone(),
            model: "users".into(),
            mapping_id: m.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// ResetSync of `orders` (of one mapping when `mapping_id` is given).
async fn reset(app: &TestApp, d: &str, mapping_id: &str) -> Result<u64, tonic::Status> {
    app.client
        .clone()
        .reset_sync(proto::ResetSyncRequest {
            destination_id: d.into(),
            model: "orders".into(),
            mapping_id: mapping_id.into(),
        })
        .await
        .map(|r| r.into_inner().forgotten)
}

#[tokio::test]
async fn a_reset_while_a_sync_of_the_model_runs_is_aborted_naming_it() {
    let (app, fake, d) = setup().await;
    let m = app
        .create_mapping(&d, &mapping("all", "added_or_updated"))
        .await;
    sync(&app, &d, FULL, false, vec![records(0..3, 0)], true).await;
    let (tx, mut running, running_id) =
        open_with_chunk(app.client.clone(), &d, records(0..5, 0)).await;
    // Of the model and of its mapping: refused as a second sync is, nothing forgotten.
    for mapping_id in ["", m.id.as_str()] {
        let err = reset(&app, &d, mapping_id).await.expect_err("ABORTED");
        assert_eq!(err.code(), Code::Aborted, "{err:?}");
        assert!(err.message().contains(&running_id), "{err:?}");
        assert!(err.message().contains("no reset while it runs"), "{err:?}");
    }
    // The running sync goes on and settles as if no reset had been asked.
    tx.send(syncs::commit()).await.unwrap();
    drop(tx);
    while running.next().await.is_some() {}
    assert_eq!(
        get_sync(&app, &running_id).await.status,
        status(proto::SyncStatus::Completed)
    );
    assert_eq!(fake.accepted().len(), 5);
    let again = sync(&app, &d, FULL, false, vec![records(0..5, 0)], true).await;
    assert_eq!(again.counts(&m.id).unchanged, 5);
    // Once it has ended, the reset goes through.
    assert_eq!(reset(&app, &d, "").await.unwrap(), 5);
    // A running dry run holds nothing: it does not stand in the way.
    sync(&app, &d, FULL, false, vec![records(0..2, 0)], true).await;
    let (dry_tx, _dry, _) =
        open_with_chunk_as(app.client.clone(), &d, true, records(0..4, 0)).await;
    assert_eq!(reset(&app, &d, &m.id).await.unwrap(), 2);
    drop(dry_tx);
}

/// How many ledger entries `mapping_id` has, read from the server's SQLite file.
async fn ledger_entries(app: &TestApp, mapping_id: &str) -> i64 {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}?mode=ro", app.db_path().display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM sync_state WHERE mapping_id = $1")
        .bind(mapping_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    n
}

/// UpdateMapping of `m` to `json`: the mapping as updated.
async fn update(app: &TestApp, m: &proto::Mapping, json: String) -> proto::Mapping {
    app.client
        .clone()
        .update_mapping(proto::UpdateMappingRequest {
            id: m.id.clone(),
            version: m.version,
            mapping_json: json,
        })
        .await
        .unwrap()
        .into_inner()
        .mapping
        .unwrap()
}

#[tokio::test]
async fn a_mapping_whose_model_changes_forgets_its_ledger_and_keeps_it_otherwise() {
    let (app, fake, d) = setup().await;
    let moved = app
        .create_mapping(&d, &mapping("moved", "added_or_updated"))
        .await;
    let stays = app
        .create_mapping(&d, &mapping("stays", "added_or_updated"))
        .await;
    sync(&app, &d, FULL, false, vec![records(0..5, 0)], true).await;
    assert_eq!(fake.accepted().len(), 10);
    assert_eq!(ledger_entries(&app, &moved.id).await, 5);

    // Now of `users`: the orders it recorded are forgotten with the update.
    let moved = update(
        &app,
        &moved,
        mapping_of("moved", "users", "added_or_updated"),
    )
    .await;
    assert_eq!(moved.model, "users");
    assert_eq!(ledger_entries(&app, &moved.id).await, 0);
    assert_eq!(ledger_entries(&app, &stays.id).await, 5);
    // So the first FULL sync of users sends its records as added, and no orders as deleted.
    let users = sync_of(
        &app,
        &d,
        "users",
        FULL,
        false,
        vec![records(100..103, 0)],
        true,
    )
    .await;
    assert!(users.error.is_none(), "{:?}", users.error);
    let c = users.counts(&moved.id);
    assert_eq!((c.added, c.deleted, c.delivered), (3, 0, 3), "{c:?}");
    assert_eq!(fake.accepted().len(), 13);

    // Disabled and enabled again, or its fields changed: its ledger is kept, so unchanged
    // records send nothing (the new fields apply to records that change).
    let stays = update(
        &app,
        &stays,
        mapping("stays", "added_or_updated")
            .replace(r#""name":"stays""#, r#""name":"stays","enabled":false"#),
    )
    .await;
    assert!(!stays.enabled);
    let stays = update(&app, &stays, mapping("stays", "added_or_updated")).await;
    let stays = update(
        &app,
        &stays,
        mapping("stays", "added_or_updated").replace(r#""Order""#, r#""Order Synced""#),
    )
    .await;
    assert_eq!(stays.version, 4);
    assert_eq!(ledger_entries(&app, &stays.id).await, 5);
    let orders = sync(&app, &d, FULL, false, vec![records(0..5, 0)], true).await;
    let c = orders.counts(&stays.id);
    assert_eq!((c.unchanged, c.added), (5, 0), "{c:?}");
    assert!(
        orders.counts(&moved.id).mapping_id.is_empty(),
        "not of orders any more"
    );
    assert_eq!(fake.accepted().len(), 13);
    // A changed record goes out with the new fields.
    let orders = sync(&app, &d, FULL, false, vec![records(0..5, 1)], true).await;
    assert_eq!(orders.counts(&stays.id).updated, 5);
    assert!(
        fake.last_body().contains("Order Synced"),
        "{}",
        fake.last_body()
    );
}

#[tokio::test]
async fn deleting_a_mapping_or_its_destination_deletes_its_ledger_and_history() {
    let (app, _fake, d) = setup().await;
    let gone = app
        .create_mapping(&d, &mapping("gone", "added_or_updated"))
        .await;
    let kept = app
        .create_mapping(&d, &mapping("kept", "added_or_updated"))
        .await;
    let run = sync(&app, &d, FULL, false, vec![records(0..4, 0)], true).await;
    assert_eq!(ledger_entries(&app, &gone.id).await, 4);
    let mut c = app.client.clone();
    c.delete_mapping(proto::DeleteMappingRequest {
        id: gone.id.clone(),
    })
    .await
    .unwrap();
    assert_eq!(ledger_entries(&app, &gone.id).await, 0);
    assert_eq!(ledger_entries(&app, &kept.id).await, 4);
    c.delete_destination(proto::DeleteDestinationRequest { id: d.clone() })
        .await
        .unwrap();
    assert_eq!(ledger_entries(&app, &kept.id).await, 0);
    let err = c
        .get_sync(proto::GetSyncRequest {
            sync_id: run.sync_id,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

/// Records `ids` with ids of 200 characters, so their ledger entries take room.
fn long_records(ids: std::ops::Range<usize>) -> Vec<proto::SyncRecord> {
    ids.map(|i| proto::SyncRecord {
        id: format!("r{i:0>199}"),
        columns_json: format!(r#"{{"total": {i}}}"#).into_bytes(),
    })
    .collect()
}

/// A sync whose chunk was delivered but whose results find the volume full: the call ends
/// RESOURCE_EXHAUSTED ("store full"), the sync is recorded FAILED, and once space is freed the
/// resync sends exactly the records not recorded, under the messageIds already tried, and none
/// of those recorded.
#[tokio::test]
async fn a_sync_whose_results_find_the_volume_full_fails_and_the_resync_loses_nothing() {
    let Some(volume) = SmallVolume::mount(2 << 20) else {
        return;
    };
    let store = volume.path().join("connections.db");
    let (app, fake, d) = setup_with(move |s| s.store = StoreLocation::Sqlite(store)).await;
    let m = app
        .create_mapping(&d, &mapping("all", "added_or_updated"))
        .await;
    let (tx, mut answers, sync_id) =
        open_with_chunk(app.client.clone(), &d, long_records(0..50)).await;
    let recorded: HashSet<String> = fake.accepted().into_iter().collect();
    assert_eq!(recorded.len(), 50);

    let filler = volume.fill();
    tx.send(chunk(2, long_records(50..2050))).await.unwrap();
    let mut summary = None;
    let err = loop {
        match answers.next().await.expect("the call's status") {
            Ok(proto::SyncResponse {
                message: Some(Ans::Summary(s)),
            }) => summary = Some(s),
            Ok(other) => panic!("the chunk is not answered: {other:?}"),
            Err(status) => break status,
        }
    };
    assert!(refused_as_full(&err), "{err:?}");
    let summary = summary.expect("a summary before the status");
    assert_eq!(summary.status, status(proto::SyncStatus::Failed));
    drop(tx);
    // Delivered before their results could be written.
    let attempted: Vec<String> = fake.accepted()[50..].to_vec();
    assert_eq!(attempted.len(), 2000);

    // Space freed: its end is recorded, FAILED, within a third of the lease (1 s), not left
    // RUNNING for the next sync to find ABANDONED.
    std::fs::remove_file(filler).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let failed = loop {
        let s = get_sync(&app, &sync_id).await;
        if s.status != status(proto::SyncStatus::Running) {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still running: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        failed.status,
        status(proto::SyncStatus::Failed),
        "{failed:?}"
    );
    assert!(failed.message.starts_with("store full"), "{failed:?}");
    assert_eq!(failed.received, 2050);

    // The resync sends the 2,000 again, under the same ids, and not the 50.
    let again = sync(&app, &d, FULL, false, vec![long_records(0..2050)], true).await;
    assert!(again.error.is_none(), "{:?}", again.error);
    let c = again.counts(&m.id);
    assert_eq!(
        (c.unchanged, c.added, c.delivered, c.deleted),
        (50, 2000, 2000, 0),
        "{c:?}"
    );
    let mut resent: Vec<String> = fake.accepted()[2050..].to_vec();
    resent.sort();
    let mut attempted = attempted;
    attempted.sort();
    assert_eq!(resent, attempted, "the same messageIds, each once");
    assert!(resent.iter().all(|id| !recorded.contains(id)));
    // And it is all recorded now.
    let last = sync(&app, &d, FULL, false, vec![long_records(0..2050)], true).await;
    assert_eq!(last.counts(&m.id).unchanged, 2050);
    assert_eq!(fake.accepted().len(), 4050);
}

#[tokio::test]
async fn repeated_and_unreadable_records_are_rejected_by_id() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &mapping("all", "added_or_updated"))
        .await;
    let mut chunk = records(0..3, 0);
    chunk.push(record(1, 99));
    chunk.push(proto::SyncRecord {
        id: "bad".into(),
        columns_json: b"[1]".to_vec(),
    });
    let out = sync(&app, &d, FULL, false, vec![chunk, records(2..4, 0)], true).await;
    let rejected: Vec<(String, i32)> = out
        .results()
        .into_iter()
        .map(|r| (r.record_id, r.issues[0].code))
        .collect();
    let dup = proto::IssueCode::DuplicateRecordId as i32;
    assert_eq!(
        rejected,
        [
            ("r1".to_owned(), dup),
            ("bad".to_owned(), proto::IssueCode::InvalidRow as i32),
            ("r2".to_owned(), dup),
        ]
    );
    assert_eq!(out.summary().rejected_records, 3);
    assert_eq!(fake.accepted().len(), 4);
    assert_eq!(
        out.summary().status,
        status(proto::SyncStatus::CompletedWithFailures)
    );
}

/// An id repeated after chunks that wrote nothing (all unchanged, so their ids wait in memory)
/// is caught as well as one repeated after a chunk whose results were written.
#[tokio::test]
async fn a_record_repeated_after_unchanged_chunks_is_rejected() {
    let (app, fake, d) = setup().await;
    app.create_mapping(&d, &mapping("all", "added_or_updated"))
        .await;
    let first = sync(&app, &d, FULL, false, vec![records(0..3, 0)], true).await;
    assert!(first.error.is_none(), "{:?}", first.error);
    let chunks = vec![records(0..3, 0), records(1..2, 0), records(2..3, 7)];
    let out = sync(&app, &d, FULL, false, chunks, true).await;
    let rejected: Vec<(String, i32)> = out
        .results()
        .into_iter()
        .map(|r| (r.record_id, r.issues[0].code))
        .collect();
    let dup = proto::IssueCode::DuplicateRecordId as i32;
    assert_eq!(rejected, [("r1".to_owned(), dup), ("r2".to_owned(), dup)]);
    // The repeated r2 carried other content: the first one counts, nothing more was sent.
    assert_eq!(
        out.counts(&out.summary().mappings[0].mapping_id).unchanged,
        3
    );
    assert_eq!(fake.accepted().len(), 3);
}

#[tokio::test]
async fn the_history_lists_syncs_newest_first_in_pages() {
    let (app, _fake, d) = setup().await;
    app.create_mapping(&d, &mapping("all", "added_or_updated"))
        .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let out = sync(&app, &d, FULL, false, vec![records(0..2, i)], true).await;
        ids.push(out.sync_id);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let list = |token: String| {
        let mut c = app.client.clone();
        let d = d.clone();
        async move {
            c.list_syncs(proto::ListSyncsRequest {
                destination_id: d,
                model: "orders".into(),
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let page1 = list(String::new()).await;
    let page2 = list(page1.next_page_token.clone()).await;
    let got: Vec<String> = page1
        .syncs
        .iter()
        .chain(&page2.syncs)
        .map(|s| s.id.clone())
        .collect();
    ids.reverse();
    assert_eq!(got, ids);
    assert!(page2.next_page_token.is_empty());
    let err = app
        .client
        .clone()
        .get_sync(proto::GetSyncRequest {
            sync_id: "sy_nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let bad = sync(&app, &d, proto::SyncMode::Unspecified, false, vec![], true).await;
    assert_eq!(bad.error.unwrap().code(), Code::InvalidArgument);
    let _ = WRITE_KEY;
}

#[tokio::test]
async fn syncs_older_than_the_history_days_leave_the_history() {
    let (app, _fake, d) = setup_with(|s| s.sync.history_for = Duration::from_millis(50)).await;
    app.create_mapping(&d, &mapping("all", "added_or_updated"))
        .await;
    let old = sync(&app, &d, FULL, false, vec![records(0..2, 0)], true).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let new = sync(&app, &d, FULL, false, vec![records(0..2, 0)], true).await;
    let listed = app
        .client
        .clone()
        .list_syncs(proto::ListSyncsRequest {
            destination_id: d.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<String> = listed.syncs.into_iter().map(|s| s.id).collect();
    assert_eq!(ids, std::slice::from_ref(&new.sync_id));
    let gone = app
        .client
        .clone()
        .get_sync(proto::GetSyncRequest {
            sync_id: old.sync_id,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    // The ledger is not history: the second sync found both records unchanged.
    assert_eq!(new.summary().mappings[0].unchanged, 2);
}
