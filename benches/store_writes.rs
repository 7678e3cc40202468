//! What the SQLite store's durability costs: writes through `SqliteStore` as `serve` runs it
//! (WAL, `synchronous = FULL`, one `BEGIN IMMEDIATE`, version bump, insert, `COMMIT` per write), and the same
//! transaction on bare pools at `synchronous = NORMAL` (the earlier setting: a commit is synced
//! only at checkpoints, so a power loss may undo the last ones) and `FULL`. One at a time and
//! 4 at once (the pool's size); prints per-write p50/p99 and writes/s. The database lives under
//! the target directory (a real disk: on tmpfs a sync costs nothing).
//!
//! `cargo bench --bench store_writes`. Knob: STORE_BENCH_WRITES (per run, default 400).

use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use segment_connections::store::{
    KeyRing, Name, NewDestination, Region, SqliteStore, Store, WriteKey,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// One write, by name.
type WriteFn = Arc<dyn Fn(String) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

/// Runs `n` writes `concurrency` at a time; the latency of each, and the whole run's time.
async fn run(write: WriteFn, tag: &str, n: usize, concurrency: usize) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|t| {
            let write = write.clone();
            let tag = tag.to_owned();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (t..n).step_by(concurrency) {
                    let one = Instant::now();
                    write(format!("{tag}-{i}")).await;
                    latencies.push(one.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    (latencies, started.elapsed())
}

fn report(what: &str, concurrency: usize, (mut latencies, total): (Vec<Duration>, Duration)) {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "| {what} | {concurrency} | {:.2} ms | {:.2} ms | {:.0} |",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies.len() as f64 / total.as_secs_f64()
    );
}

/// A bare pool over a migrated database at `synchronous`.
async fn bare_pool(path: &std::path::Path, synchronous: SqliteSynchronous) -> SqlitePool {
    let options = SqliteConnectOptions::from_str("sqlite:")
        .unwrap()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    pool
}

/// The store's write transaction for a destination, on a bare pool.
fn bare_write(pool: SqlitePool) -> WriteFn {
    Arc::new(move |name: String| {
        let pool = pool.clone();
        Box::pin(async move {
            let mut conn = pool.acquire().await.unwrap();
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut *conn)
                .await
                .unwrap();
            let _: (i64,) =
                sqlx::query_as("UPDATE catalog SET version = version + 1 RETURNING version")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
            let _: (String,) = sqlx::query_as(
                "INSERT INTO destinations (id, name, region, write_key_key_id, write_key_nonce, \
                 write_key_ciphertext, write_key_fingerprint, enabled, version) \
                 VALUES (?1, ?1, 'us', 'k', x'00', x'00', 'f', 1, 1) RETURNING id",
            )
            .bind(&name)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
            sqlx::raw_sql("COMMIT").execute(&mut *conn).await.unwrap();
        })
    })
}

fn main() {
    let n: usize = std::env::var("STORE_BENCH_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        println!("{n} writes per run, database in {}", dir.path().display());
        println!("| Writes | At once | p50 | p99 | Writes/s |");
        println!("| --- | --- | --- | --- | --- |");

        let keys = KeyRing::from_hex_lines(&KeyRing::generate_hex().unwrap()).unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("store.db"), keys)
                .await
                .unwrap(),
        );
        let through_store: WriteFn = Arc::new(move |name: String| {
            let store = store.clone();
            Box::pin(async move {
                store
                    .create_destination(NewDestination {
                        name: Name::parse(name).unwrap(),
                        region: Region::parse("us").unwrap(),
                        write_key: WriteKey::parse("wk-bench-0123456789".into()).unwrap(),
                        enabled: true,
                        rate_limit: Default::default(),
                    })
                    .await
                    .unwrap();
            })
        });
        for concurrency in [1, 4] {
            let tag = format!("store{concurrency}");
            report(
                "`SqliteStore::create_destination` (FULL)",
                concurrency,
                run(through_store.clone(), &tag, n, concurrency).await,
            );
        }
        for (what, synchronous, file) in [
            (
                "bare transaction, NORMAL",
                SqliteSynchronous::Normal,
                "normal.db",
            ),
            ("bare transaction, FULL", SqliteSynchronous::Full, "full.db"),
        ] {
            let write = bare_write(bare_pool(&dir.path().join(file), synchronous).await);
            for concurrency in [1, 4] {
                let tag = format!("bare{concurrency}");
                report(
                    what,
                    concurrency,
                    run(write.clone(), &tag, n, concurrency).await,
                );
            }
        }
    });
}
