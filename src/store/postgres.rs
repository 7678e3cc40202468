//! The PostgreSQL backend (sqlx) for several replicas on one database: migrations under an
//! advisory lock at connect, writes serialised on the change-version row, and a feed of change
//! versions from LISTEN/NOTIFY with polling as the fallback. What it shares with SQLite (every
//! statement, the write protocol, the error classes) is in `sql.rs`, `shared.rs` and
//! `errors.rs`; this file is the pool, the migration lock and the change feed.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use tokio::task::AbortHandle;

use super::crypto::KeyRing;
use super::shared::sql_store;
use super::{Feed, Result, StoreError, check_stored_keys, errors};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The NOTIFY channel that carries new change versions.
const CHANGES_CHANNEL: &str = "segment_connections_changes";
/// `pg_advisory_lock` key held while migrating, so replicas starting together migrate one at a
/// time (the others wait, then find nothing to do). "segcon" in ASCII.
const MIGRATION_LOCK: i64 = 0x7365_6763_6f6e;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Pool size.
    pub max_connections: u32,
    /// How long a call waits for a connection before failing with `Unavailable` (what callers
    /// see while the database is down).
    pub acquire_timeout: Duration,
    /// How often the change version is polled, the fallback for lost notifications.
    pub poll_interval: Duration,
    /// How long a write waits behind another before failing with `Unavailable`.
    pub lock_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> PostgresOptions {
        PostgresOptions {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(3),
            poll_interval: Duration::from_millis(500),
            lock_timeout: Duration::from_secs(10),
        }
    }
}

/// Destinations and mappings in PostgreSQL, shared by every replica.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    keys: Arc<KeyRing>,
    feed: Arc<Feed>,
    _tasks: Arc<Tasks>,
}

sql_store!(
    PostgresStore,
    sqlx::Postgres,
    super::sql::POSTGRES,
    errors::postgres
);

super::ledger::ledger_store!(
    PostgresStore,
    sqlx::Postgres,
    super::ledger::POSTGRES,
    text_ids
);

/// An id list as a `text[]`.
fn text_ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

impl PostgresStore {
    /// Connects with the default options.
    pub async fn connect(url: &str, keys: KeyRing) -> Result<PostgresStore> {
        PostgresStore::connect_with(url, keys, PostgresOptions::default()).await
    }

    /// Connects, runs the migrations (under an advisory lock), checks that `keys` open every
    /// stored write key, and starts following changes.
    pub async fn connect_with(
        url: &str,
        keys: KeyRing,
        options: PostgresOptions,
    ) -> Result<PostgresStore> {
        let (url, dropped) = super::redact::without_unread_secrets(url);
        for name in dropped {
            tracing::warn!(parameter = %name, "--store: ignoring a connect parameter PostgreSQL connections here do not use (its value is not shown)");
        }
        let connect: PgConnectOptions = url.parse().map_err(|e| {
            StoreError::Backend(format!("--store: not a PostgreSQL URL: {e}").into())
        })?;
        // A writer never waits forever behind another (say one whose replica vanished
        // mid-transaction): it fails, retryably, and the stuck transaction is ended.
        let connect = connect.options([
            (
                "lock_timeout",
                format!("{}ms", options.lock_timeout.as_millis()),
            ),
            ("idle_in_transaction_session_timeout", "30s".to_owned()),
            // Plans made for the statement, not for one call's values: a sync's ids and its
            // ledger grow by the million between two ANALYZEs, and a plan fitted to the last
            // statistics (say, "this sync has no ids yet") scans what an index probe finds.
            ("plan_cache_mode", "force_generic_plan".to_owned()),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(PostgresStore::error)?;
        migrate(&pool).await?;
        let version = PostgresStore::current_version(&pool).await?;
        let feed = Arc::new(Feed::new(version));
        let store = PostgresStore {
            pool: pool.clone(),
            keys: Arc::new(keys),
            feed: feed.clone(),
            _tasks: Arc::new(Tasks(vec![
                tokio::spawn(listen(pool.clone(), feed.clone())).abort_handle(),
                tokio::spawn(poll(pool, feed, options.poll_interval)).abort_handle(),
            ])),
        };
        // Refuse to start with a key ring that cannot open the stored write keys.
        check_stored_keys(&store.keys, &store.stored_keys(false).await?)?;
        Ok(store)
    }

    /// Closes the pool; following changes stops.
    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    /// Tells every replica the write's version (delivered at commit, so only if it commits).
    async fn notify(&self, conn: &mut PgConnection, version: u64) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(version.to_string())
            .execute(conn)
            .await
            .map_err(PostgresStore::error)?;
        Ok(())
    }
}

/// Runs the migrations while holding [`MIGRATION_LOCK`] on one connection.
async fn migrate(pool: &PgPool) -> Result<()> {
    let mut conn = pool.acquire().await.map_err(PostgresStore::error)?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(PostgresStore::error)?;
    // `run_direct` rather than `run`: with `run(&mut conn)` the future fails rustc's `Send`
    // check ("Acquire is not general enough"), and `connect` could not be spawned. sqlx
    // provides it for exactly that; it takes sqlx's own migration lock too.
    let migrated = MIGRATOR.run_direct(None, &mut *conn, false).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    migrated.map_err(|e| errors::migration(e, errors::postgres))?;
    unlocked.map_err(PostgresStore::error)?;
    Ok(())
}

// === change feed ===

/// The background tasks following changes; aborted when the last store clone is dropped.
#[derive(Debug)]
struct Tasks(Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// LISTENs for change versions, reconnecting after a lost connection (the poller covers what
/// was missed meanwhile).
async fn listen(pool: PgPool, feed: Arc<Feed>) {
    let mut listener: Option<PgListener> = None;
    let mut failing = false;
    loop {
        let result = match listener.as_mut() {
            Some(l) => l.try_recv().await,
            None => match PgListener::connect_with(&pool).await {
                Ok(mut l) => match l.listen(CHANGES_CHANNEL).await {
                    Ok(()) => {
                        listener = Some(l);
                        if failing {
                            tracing::info!("listening for store changes again");
                            failing = false;
                        }
                        // Whatever was announced while not listening is lost: catch up.
                        if let Ok(version) = PostgresStore::current_version(&pool).await {
                            feed.publish(version, "resync");
                        }
                        continue;
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(Some(n)) => match n.payload().parse::<u64>() {
                Ok(version) => feed.publish(version, "notify"),
                Err(_) => tracing::warn!(payload = n.payload(), "ignoring a malformed change"),
            },
            // The connection was lost: listen anew (and catch up).
            Ok(None) => {
                tracing::debug!("store change listener reconnecting");
                listener = None;
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "store change listener lost; polling meanwhile");
                    failing = true;
                }
                listener = None;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Polls the change version: the fallback when notifications are lost.
async fn poll(pool: PgPool, feed: Arc<Feed>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        // Errors (the database is down) are the listener's to report.
        if let Ok(version) = PostgresStore::current_version(&pool).await {
            feed.publish(version, "poll");
        }
    }
}
