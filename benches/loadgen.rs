//! Load generator: drives SubmitRows over gRPC on loopback with the bench workload (track
//! mapping, 1,000-row requests) against a real `segment-connections serve` process and a
//! minimal fake Tracking API, then prints rows/s, p50/p99 latency and the service's peak RSS.
//!
//! `cargo bench --bench loadgen` (release). Knobs (environment): LOADGEN_REQUESTS (default 300),
//! LOADGEN_CONCURRENCY (default 4), LOADGEN_ROWS (rows per request, default 1000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::Value;

use segment_connections::grpc::proto;

#[path = "support/workload.rs"]
mod workload;

#[path = "support/harness.rs"]
mod harness;
use harness::{cpu_seconds, fake_upstream, peak_rss_kib, start_service};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Row `i` of the workload's row template (tests/fixtures/workload.json).
fn row(i: usize) -> proto::Row {
    let columns = workload::row_json(i);
    proto::Row {
        id: format!("row-{i}"),
        op: proto::Op::Added.into(),
        columns_json: serde_json::to_vec(&columns).unwrap(),
        message_id: Some(format!("retl-msg-{i}")),
    }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run only
    // when asked as a bench.
    if !std::env::args().any(|a| a == "--bench") {
        println!("loadgen: run with `cargo bench --bench loadgen`");
        return;
    }
    let total_requests = env_usize("LOADGEN_REQUESTS", 300);
    let concurrency = env_usize("LOADGEN_CONCURRENCY", 4);
    let rows_per_request = env_usize("LOADGEN_ROWS", 1_000);

    let upstream_requests = Arc::new(AtomicU64::new(0));
    let upstream_bytes = Arc::new(AtomicU64::new(0));
    let upstream = fake_upstream(upstream_requests.clone(), upstream_bytes.clone()).await;

    let dir = tempfile::tempdir().unwrap();
    let (server, mut client, destination_id) = start_service(dir.path(), None, &[], upstream).await;
    let pid = server.0.id();
    let workload: Value =
        serde_json::from_str(include_str!("../tests/fixtures/workload.json")).unwrap();
    client
        .create_mapping(proto::CreateMappingRequest {
            destination_id: destination_id.clone(),
            mapping_json: workload["mappings"]["track"].to_string(),
        })
        .await
        .unwrap();

    // Requests built up front (rows differ per request), so the client measures the service.
    let requests: Vec<proto::SubmitRowsRequest> = (0..total_requests)
        .map(|r| proto::SubmitRowsRequest {
            destination_id: destination_id.clone(),
            model: "bench".into(),
            rows: (0..rows_per_request)
                .map(|i| row(r * rows_per_request + i))
                .collect(),
            ..Default::default()
        })
        .collect();

    // Warm-up: one request.
    let warm = client
        .submit_rows(requests[0].clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        warm.counts.unwrap().delivered as usize,
        rows_per_request,
        "warm-up delivered every row"
    );

    let queue = Arc::new(std::sync::Mutex::new(requests.into_iter()));
    let cpu_before = cpu_seconds(pid);
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (queue, mut client) = (queue.clone(), client.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut delivered = 0u64;
            loop {
                let Some(req) = queue.lock().unwrap().next() else {
                    break;
                };
                let t = Instant::now();
                let resp = client.submit_rows(req).await.unwrap().into_inner();
                latencies.push(t.elapsed());
                delivered += u64::from(resp.counts.unwrap().delivered);
            }
            (latencies, delivered)
        }));
    }
    let mut latencies = Vec::new();
    let mut delivered = 0;
    for w in workers {
        let (l, d) = w.await.unwrap();
        latencies.extend(l);
        delivered += d;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let rss = peak_rss_kib(pid);
    let cpu = cpu_seconds(pid)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let rows = (total_requests * rows_per_request) as f64;
    println!(
        "loadgen: {total_requests} requests x {rows_per_request} rows, concurrency {concurrency}"
    );
    println!(
        "loadgen: delivered {delivered} of {rows} rows in {:.2} s: {:.0} rows/s",
        elapsed.as_secs_f64(),
        rows / elapsed.as_secs_f64()
    );
    println!(
        "loadgen: request latency p50 {:.1} ms, p99 {:.1} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    println!(
        "loadgen: upstream got {} batches, {:.1} MB",
        upstream_requests.load(Ordering::Relaxed),
        upstream_bytes.load(Ordering::Relaxed) as f64 / 1e6
    );
    match rss {
        Some(kib) => println!("loadgen: service peak RSS {:.1} MB", kib as f64 / 1024.0),
        None => println!("loadgen: service peak RSS unknown (no /proc)"),
    }
    // CPU per row is steadier than rows/s on a machine shared with other work.
    if let Some(cpu) = cpu {
        println!(
            "loadgen: service CPU {cpu:.2} s: {:.2} us per row",
            cpu * 1e6 / rows
        );
    }
    drop(server);
}
