//! PostgreSQL for tests: a fresh database per test, on the cluster `TEST_DATABASE_URL` names or,
//! when it is unset, on a throwaway cluster this test binary starts from the PostgreSQL binaries
//! (`PG_BIN`, `pg_config --bindir` or the newest `/usr/lib/postgresql/*/bin`) and removes when it
//! exits. With neither, the PostgreSQL tests skip with a notice on the terminal; with `CI=true`
//! they fail instead.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use sqlx::{Connection as _, Executor as _, PgConnection};

/// The variable naming a cluster to use instead of a throwaway one:
/// `postgres://USER@HOST:PORT/DB`. Tests create and drop their own databases there and never
/// touch `DB` itself.
pub const URL_VAR: &str = "TEST_DATABASE_URL";

/// The cluster URL, or `None` (after a one-time notice) when there is neither `TEST_DATABASE_URL`
/// nor PostgreSQL binaries on a developer's machine. Panics in CI instead of skipping.
pub fn cluster_url() -> Option<String> {
    if let Ok(url) = std::env::var(URL_VAR)
        && !url.is_empty()
    {
        return Some(url);
    }
    static SHARED: OnceLock<Option<String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            if !have_pg_bin() {
                return None;
            }
            let cluster = Cluster::start();
            let url = cluster.url();
            cluster.stop_when_this_process_exits();
            Some(url)
        })
        .clone()
}

/// Whether a test needing the PostgreSQL binaries can run: they are found, or else (after a
/// notice) `false` on a developer's machine and a failure in CI.
pub fn have_pg_bin() -> bool {
    if find_pg_bin().is_some() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "PostgreSQL binaries (initdb, pg_ctl, pg_dump) not found and CI=true: the \
             PostgreSQL tests must run in CI (install postgresql, or set PG_BIN or {URL_VAR})"
        );
    }
    static NOTICE: std::sync::Once = std::sync::Once::new();
    NOTICE.call_once(|| {
        // Straight to the terminal: the test harness captures eprintln!.
        let _ = writeln!(
            std::io::stderr(),
            "\nNOTICE: no PostgreSQL binaries (initdb, pg_ctl) and no {URL_VAR}: the PostgreSQL \
             tests in this binary are SKIPPED (they pass without running). Install \
             postgresql, or set PG_BIN or {URL_VAR} (README: Running with PostgreSQL).\n"
        );
    });
    false
}

/// The directory of initdb, pg_ctl and pg_dump.
pub fn pg_bin() -> PathBuf {
    find_pg_bin().expect("PostgreSQL binaries (initdb, pg_ctl, pg_dump): set PG_BIN")
}

fn find_pg_bin() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Some(dir.into());
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(text(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|d| d.join("initdb").exists())
        .collect();
    // By major version, numerically.
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| text(&o.stdout).trim() == "0")
}

/// `command`, run as the `postgres` user when we are root (the server refuses root).
fn as_server_user(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Runs a PostgreSQL binary, asserting that it succeeds.
fn pg(tool: &str, args: &[&str]) -> Output {
    let out = as_server_user(pg_bin().join(tool))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A PostgreSQL cluster of the test's own, in a fresh temporary directory (data, socket, log) on
/// a free port, that the test may stop and start. Stopped when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let data = dir.path().join("data");
        pg(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster { dir, port };
        cluster.resume();
        cluster
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) server again, waiting until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            path(self.dir.path())
        );
        let log = self.dir.path().join("server.log");
        let out = as_server_user(pg_bin().join("pg_ctl"))
            .args(["-D", path(&self.dir.path().join("data")), "-l", path(&log)])
            .args(["-o", &options, "-w", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}\nserver.log:\n{}",
            text(&out.stdout),
            text(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast: open connections are closed).
    pub fn pause(&self) {
        pg(
            "pg_ctl",
            &[
                "-D",
                path(&self.dir.path().join("data")),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        );
    }

    /// Hands the cluster to a watchdog that stops it and removes its directory once this process
    /// has exited, however it exits: the watchdog waits for the end of a pipe only this process
    /// holds. (A static is never dropped, and the test harness exits without unwinding.)
    fn stop_when_this_process_exits(self) {
        static WATCHDOG: Mutex<Option<Child>> = Mutex::new(None);
        let this = std::mem::ManuallyDrop::new(self);
        let dir = path(this.dir.path()).to_owned();
        let script = format!(
            "read _; {pg_ctl} -D {dir}/data -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            pg_ctl = path(&pg_bin().join("pg_ctl")),
        );
        let child = as_server_user("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Never waited for: it outlives this process on purpose, holding the pipe's other end.
        *WATCHDOG.lock().unwrap() = Some(child);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = std::panic::catch_unwind(|| {
            pg("pg_ctl", &["-D", path(&data), "-m", "immediate", "stop"])
        });
    }
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
