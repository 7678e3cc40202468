//! Rendering one already-parsed row of the bench workload (../shared/conformance/bench, copied to
//! tests/fixtures/workload.json) into event bytes, per action: envelope, directives, cleaning,
//! coercion, checks, messageId and serialisation included. Plus the whole per-row cost the
//! service pays: from the row's JSON bytes to event bytes.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/workload.rs"]
mod workload;
use serde_json::Value;
use workload::row_json;

use segment_connections::json::Columns;
use segment_connections::mapping::{Identity, Mapping, MappingDoc, Op, Row};

/// The service's allocator (src/main.rs), so the figures are what the service pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROWS: usize = 1000;

fn workload() -> Value {
    serde_json::from_str(include_str!("../tests/fixtures/workload.json")).unwrap()
}

fn mapping(w: &Value, action: &str) -> Mapping {
    let doc: MappingDoc = serde_json::from_value(w["mappings"][action].clone()).unwrap();
    let identity = Identity {
        destination_id: "dest-1".into(),
        mapping_id: format!("map-{action}"),
    };
    Mapping::compile(&doc, identity).unwrap()
}

fn rows() -> Vec<Row> {
    (0..ROWS)
        .map(|i| {
            // Parsed as the service parses a row's `columns_json`.
            let json = serde_json::to_vec(&row_json(i)).unwrap();
            let columns: Columns = segment_connections::json::parse_columns(&json).unwrap();
            Row::new(
                Some(format!("row-{i}")),
                Op::Added,
                columns,
                Some(format!("retl-msg-{i}")),
            )
        })
        .collect()
}

fn render(c: &mut Criterion) {
    let w = workload();
    let rows = rows();
    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Elements(1));
    for action in ["track", "page", "screen", "identify", "group"] {
        let m = mapping(&w, action);
        let mut out = Vec::with_capacity(1024);
        let mut i = 0;
        // Every row must render to an accepted event, or the figure means nothing.
        for row in &rows {
            out.clear();
            assert!(m.render(row, &mut out).accepted(), "{action}");
        }
        group.bench_function(action, |b| {
            b.iter(|| {
                out.clear();
                let r = m.render(&rows[i % ROWS], &mut out);
                i += 1;
                std::hint::black_box((r, &out));
            })
        });
    }
    group.finish();
}

/// What the service pays per row: the row's `columns_json` bytes parsed, then rendered.
fn from_json(c: &mut Criterion) {
    let w = workload();
    let bytes: Vec<Vec<u8>> = (0..ROWS)
        .map(|i| serde_json::to_vec(&row_json(i)).unwrap())
        .collect();
    // The row's id and messageId arrive as strings of the request (decoding allocates them):
    // copied per row here, not formatted.
    let ids: Vec<(String, String)> = (0..ROWS)
        .map(|i| (format!("row-{i}"), format!("retl-msg-{i}")))
        .collect();
    let mut group = c.benchmark_group("from_json");
    group.throughput(Throughput::Elements(1));
    for action in ["track", "identify"] {
        let m = mapping(&w, action);
        let mut out = Vec::with_capacity(1024);
        let mut i = 0;
        group.bench_function(action, |b| {
            b.iter(|| {
                let k = i % ROWS;
                i += 1;
                let columns: Columns = segment_connections::json::parse_columns(&bytes[k]).unwrap();
                let (id, message_id) = &ids[k];
                let row = Row::new(
                    Some(id.clone()),
                    Op::Added,
                    columns,
                    Some(message_id.clone()),
                );
                out.clear();
                let r = m.render(&row, &mut out);
                std::hint::black_box((r, &out));
            })
        });
    }
    group.finish();
}

/// What `--upstream-gzip` costs and saves: one full batch body of rendered track events (as the
/// sender packs them, up to 475,000 bytes) gzip-compressed. Throughput in body bytes; the ratio
/// is printed once.
fn gzip(c: &mut Criterion) {
    let w = workload();
    let rows = rows();
    let m = mapping(&w, "track");
    let mut body = b"{\"batch\":[".to_vec();
    let mut event = Vec::with_capacity(1024);
    for row in rows.iter().cycle() {
        event.clear();
        assert!(m.render(row, &mut event).accepted());
        if body.len() + event.len() + 3 > 475_000 {
            break;
        }
        if body.len() > 10 {
            body.push(b',');
        }
        body.extend_from_slice(&event);
    }
    body.extend_from_slice(b"]}");
    let gz = segment_connections::sender::gzip(&body).unwrap();
    eprintln!(
        "gzip/batch: {} bytes -> {} bytes ({:.1}x)",
        body.len(),
        gz.len(),
        body.len() as f64 / gz.len() as f64
    );
    let mut group = c.benchmark_group("gzip");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("batch", |b| {
        b.iter(|| std::hint::black_box(segment_connections::sender::gzip(&body).unwrap()))
    });
    group.finish();
}

/// What counting usage adds per delivered event (issue #15): a 1,000-event slice of rendered
/// track events, each one's user read from its bytes and hashed, then recorded into the meter
/// under one lock (what `delivery::deliver` does once per slice). Throughput per event.
fn usage(c: &mut Criterion) {
    use segment_connections::usage::{Counts, Meter, Month, Tally, user_hash};
    let w = workload();
    let rows = rows();
    let m = mapping(&w, "track");
    let mut arena = Vec::new();
    let mut spans = Vec::new();
    for row in &rows {
        let start = arena.len();
        assert!(m.render(row, &mut arena).accepted());
        spans.push(start..arena.len());
    }
    assert!(spans.iter().all(|s| user_hash(&arena[s.clone()]).is_some()));
    let meter = Meter::new();
    let month = Month::now();
    let mut group = c.benchmark_group("usage");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("slice_of_1000", |b| {
        b.iter(|| {
            let mut tally = Tally {
                counts: Counts {
                    calls: ROWS as u64,
                    batches: 1,
                    bytes: arena.len() as u64,
                },
                users: Vec::with_capacity(ROWS),
            };
            for s in &spans {
                tally.users.extend(user_hash(&arena[s.clone()]));
            }
            meter.record("dst_1", month, &tally);
        })
    });
    group.finish();
}

criterion_group!(benches, render, from_json, gzip, usage);
criterion_main!(benches);
