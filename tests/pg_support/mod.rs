//! PostgreSQL for tests: a fresh database per test on the cluster `TEST_DATABASE_URL` names
//! (`.ci/run` starts a throwaway one and sets it). Without it the PostgreSQL tests skip with a
//! notice on the terminal; with `CI=true` they fail instead.

#![allow(dead_code)]

use std::io::Write as _;
use std::sync::Once;

use sqlx::{Connection as _, Executor as _, PgConnection};

/// The variable naming the test cluster: `postgres://USER@HOST:PORT/DB`. Tests create and drop
/// their own databases there and never touch `DB` itself.
pub const URL_VAR: &str = "TEST_DATABASE_URL";

/// The cluster URL, or `None` (after a one-time notice) when it is not set on a developer's
/// machine. Panics when it is not set in CI.
pub fn cluster_url() -> Option<String> {
    if let Ok(url) = std::env::var(URL_VAR)
        && !url.is_empty()
    {
        return Some(url);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{URL_VAR} is not set and CI=true: the PostgreSQL tests must run in CI \
             (.ci/run starts a throwaway PostgreSQL and exports it)"
        );
    }
    static NOTICE: Once = Once::new();
    NOTICE.call_once(|| {
        // Straight to the terminal: the test harness captures eprintln!.
        let _ = writeln!(
            std::io::stderr(),
            "\nNOTICE: {URL_VAR} is not set: the PostgreSQL tests in this binary are SKIPPED \
             (they pass without running). Set it to a throwaway cluster, e.g. \
             {URL_VAR}=postgres://postgres@127.0.0.1:55432/app (README: Running with \
             PostgreSQL).\n"
        );
    });
    None
}

/// A database of its own, dropped when this is dropped.
pub struct TestDb {
    pub url: String,
    pub name: String,
    cluster: String,
}

impl TestDb {
    /// A new empty database, or `None` when PostgreSQL tests are skipped.
    pub async fn create() -> Option<TestDb> {
        let cluster = cluster_url()?;
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes).unwrap();
        let name = format!(
            "sc_test_{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let mut conn = PgConnection::connect(&cluster)
            .await
            .unwrap_or_else(|e| panic!("connecting to {URL_VAR}: {e}"));
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap();
        conn.close().await.ok();
        Some(TestDb {
            url: with_database(&cluster, &name),
            name,
            cluster,
        })
    }

    /// A connection for checks made behind the service's back.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let cluster = self.cluster.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime: use a thread with its own.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&cluster).await {
                    let _ = conn
                        .execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                }
            })
        })
        .join()
        .ok();
    }
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[host_start..].find('/') {
        Some(slash) => &base[..host_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}
