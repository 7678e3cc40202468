//! Sync benchmark: FULL syncs over gRPC on loopback against a real `segment-connections serve`
//! process (SQLite, or PostgreSQL with SYNCLOAD_PG_URL) and the minimal fake Tracking API, with
//! two mappings (the workload's track and identify). The first sync fills the ledger (every
//! record added); the timed second sync changes SYNCLOAD_CHANGED_PER_MILLE of the records (10:
//! 1 %). Prints records/s of each, the service's peak RSS, and the events sent.
//!
//! `cargo bench --bench syncload` (release). Knobs (environment): SYNCLOAD_RECORDS (default
//! 1,000,000), SYNCLOAD_CHUNK (records per chunk, default 1000), SYNCLOAD_CHANGED_PER_MILLE.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::Value;
use tokio_stream::StreamExt as _;

use segment_connections::grpc::proto::sync_request::Message as Req;
use segment_connections::grpc::proto::sync_response::Message as Ans;
use segment_connections::grpc::proto::{self, ConnectionsClient};

#[path = "support/workload.rs"]
mod workload;

#[path = "support/harness.rs"]
mod harness;
use harness::{fake_upstream, peak_rss_kib, start_service};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One FULL sync of `records` records in chunks of `chunk`, where record `i` is changed when
/// `changed(i)`; returns (seconds, summary).
async fn full_sync(
    client: &mut ConnectionsClient<tonic::transport::Channel>,
    destination_id: &str,
    records: usize,
    chunk: usize,
    changed: impl Fn(usize) -> bool + Send + 'static,
) -> (f64, proto::SyncInfo) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let header = proto::SyncHeader {
        destination_id: destination_id.into(),
        model: "bench".into(),
        mode: proto::SyncMode::Full.into(),
        dry_run: false,
    };
    let start = Instant::now();
    tx.send(proto::SyncRequest {
        message: Some(Req::Header(header)),
    })
    .await
    .unwrap();
    tokio::spawn(async move {
        for (c, first) in (0..records).step_by(chunk).enumerate() {
            let records = (first..(first + chunk).min(records))
                .map(|i| {
                    let mut columns_json = Vec::with_capacity(480);
                    workload::row_bytes(i, changed(i), &mut columns_json);
                    proto::SyncRecord {
                        id: format!("row-{i}"),
                        columns_json,
                    }
                })
                .collect();
            let chunk = proto::SyncChunk {
                chunk_id: c as u64 + 1,
                records,
            };
            if tx
                .send(proto::SyncRequest {
                    message: Some(Req::Chunk(chunk)),
                })
                .await
                .is_err()
            {
                return;
            }
        }
        tx.send(proto::SyncRequest {
            message: Some(Req::Commit(proto::SyncCommit {})),
        })
        .await
        .ok();
    });
    let mut answers = client
        .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut summary = None;
    while let Some(a) = answers.next().await {
        if let Ans::Summary(s) = a.unwrap().message.unwrap() {
            summary = Some(s);
        }
    }
    (start.elapsed().as_secs_f64(), summary.unwrap())
}

fn totals(s: &proto::SyncInfo) -> String {
    let sum = |f: fn(&proto::SyncMappingCounts) -> u64| s.mappings.iter().map(f).sum::<u64>();
    format!(
        "added {} updated {} deleted {} unchanged {} delivered {} failed {}",
        sum(|m| m.added),
        sum(|m| m.updated),
        sum(|m| m.deleted),
        sum(|m| m.unchanged),
        sum(|m| m.delivered),
        sum(|m| m.failed)
    )
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("syncload: run with `cargo bench --bench syncload`");
        return;
    }
    let records = env_usize("SYNCLOAD_RECORDS", 1_000_000);
    let chunk = env_usize("SYNCLOAD_CHUNK", 1_000);
    let per_mille = env_usize("SYNCLOAD_CHANGED_PER_MILLE", 10);
    // The fast row writer makes the rows the workload's template does.
    for i in 0..1000 {
        for changed in [false, true] {
            let mut expected = workload::row_json(i);
            if changed {
                expected["changed"] = Value::Bool(true);
            }
            let mut bytes = Vec::new();
            workload::row_bytes(i, changed, &mut bytes);
            assert_eq!(bytes, serde_json::to_vec(&expected).unwrap(), "row {i}");
        }
    }

    let upstream_requests = Arc::new(AtomicU64::new(0));
    let upstream_bytes = Arc::new(AtomicU64::new(0));
    let upstream = fake_upstream(upstream_requests.clone(), upstream_bytes.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = std::env::var("SYNCLOAD_PG_URL").ok();
    let backend = match &store {
        Some(_) => "PostgreSQL",
        None => "SQLite",
    };
    let (server, mut client, destination_id) = start_service(
        dir.path(),
        store.as_deref(),
        &["--max-request-bytes", "67108864"],
        upstream,
    )
    .await;
    let pid = server.0.id();
    let workload: Value =
        serde_json::from_str(include_str!("../tests/fixtures/workload.json")).unwrap();
    for action in ["track", "identify"] {
        client
            .create_mapping(proto::CreateMappingRequest {
                destination_id: destination_id.clone(),
                mapping_json: workload["mappings"][action].to_string(),
            })
            .await
            .unwrap();
    }

    println!("syncload: {records} records, chunks of {chunk}, two mappings, {backend}");
    let (secs, s) = full_sync(&mut client, &destination_id, records, chunk, |_| false).await;
    println!(
        "syncload: first sync (all added): {secs:.1} s, {:.0} records/s; {}",
        records as f64 / secs,
        totals(&s)
    );
    let (secs, s) = full_sync(&mut client, &destination_id, records, chunk, move |i| {
        i % 1000 < per_mille
    })
    .await;
    println!(
        "syncload: second sync ({per_mille} per mille changed): {secs:.1} s, {:.0} records/s; {}",
        records as f64 / secs,
        totals(&s)
    );
    match peak_rss_kib(pid) {
        Some(kib) => println!("syncload: service peak RSS {:.1} MB", kib as f64 / 1024.0),
        None => println!("syncload: service peak RSS unknown"),
    }
    println!(
        "syncload: upstream got {} batches, {:.1} MB",
        upstream_requests.load(Ordering::Relaxed),
        upstream_bytes.load(Ordering::Relaxed) as f64 / 1e6
    );
    drop(server);
}
