//! The PostgreSQL backend (sqlx) for several replicas on one database: migrations under an
//! advisory lock at connect, writes serialised on the change-version row, and a feed of change
//! versions from LISTEN/NOTIFY with polling as the fallback.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use super::crypto::{KeyRing, Sealed};
use super::rows::{DestinationRow, MappingRow};
use super::{
    Destination, DestinationPatch, Feed, Kind, MAX_MAPPINGS_PER_DESTINATION, MappingContent,
    MappingRecord, NewDestination, Result, Store, StoreError, StoredKey, WriteKey,
    check_stored_keys, new_id,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The NOTIFY channel that carries new change versions.
const CHANGES_CHANNEL: &str = "segment_connections_changes";
/// `pg_advisory_lock` key held while migrating, so replicas starting together migrate one at a
/// time (the others wait, then find nothing to do). "segcon" in ASCII.
const MIGRATION_LOCK: i64 = 0x7365_6763_6f6e;

const DESTINATION_COLUMNS: &str = "id, name, region, write_key_fingerprint, enabled, version";
const MAPPING_COLUMNS: &str = "id, destination_id, name, model, enabled, version, document";

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
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(backend)?;
        migrate(&pool).await?;
        let version = catalog_version(&pool).await?;
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
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a write: the transaction holds the change-version row (so writes commit one at a
    /// time, in version order) and has bumped it. [`PostgresStore::commit`] announces it.
    async fn begin_write(&self) -> Result<(Transaction<'static, Postgres>, u64)> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let (version,): (i64,) =
            sqlx::query_as("UPDATE catalog SET version = version + 1 RETURNING version")
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
        Ok((tx, version as u64))
    }

    /// Notifies every replica (delivered at commit) and commits.
    async fn commit(&self, mut tx: Transaction<'static, Postgres>, version: u64) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(version.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        self.feed.publish(version, "write");
        Ok(())
    }

    /// The stored write keys; with `stale_only`, those not sealed with the current key.
    async fn stored_keys(&self, stale_only: bool) -> Result<Vec<StoredKey>> {
        let rows: Vec<(String, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT id, write_key_key_id, write_key_nonce, write_key_ciphertext \
             FROM destinations WHERE NOT $1 OR write_key_key_id <> $2 ORDER BY id",
        )
        .bind(stale_only)
        .bind(self.keys.current_key_id())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|(destination_id, key_id, nonce, ciphertext)| StoredKey {
                destination_id,
                sealed: Sealed {
                    key_id,
                    nonce,
                    ciphertext,
                },
            })
            .collect())
    }

    /// Deletes the row `id` of `kind` (`NotFound` when there is none).
    async fn delete(&self, kind: Kind, id: &str) -> Result<()> {
        let (mut tx, catalog) = self.begin_write().await?;
        let sql = format!("DELETE FROM {} WHERE id = $1", kind.table());
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(kind, id));
        }
        self.commit(tx, catalog).await
    }

    /// The version of the row `id` of `kind`, `None` when there is none.
    async fn version(&self, kind: Kind, id: &str) -> Result<Option<u64>> {
        let sql = format!("SELECT version FROM {} WHERE id = $1", kind.table());
        let v: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        Ok(v.map(|(v,)| v as u64))
    }
}

/// Runs the migrations while holding [`MIGRATION_LOCK`] on one connection.
async fn migrate(pool: &PgPool) -> Result<()> {
    let mut conn = pool.acquire().await.map_err(backend)?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    // `run_direct` rather than `run`: with `run(&mut conn)` the future fails rustc's `Send`
    // check ("Acquire is not general enough"), and `connect` could not be spawned. sqlx
    // provides it for exactly that; it takes sqlx's own migration lock too.
    let migrated = MIGRATOR.run_direct(None, &mut *conn, false).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    migrated.map_err(|e| StoreError::Backend(format!("migrating the database: {e}").into()))?;
    unlocked.map_err(backend)?;
    Ok(())
}

async fn catalog_version(pool: &PgPool) -> Result<u64> {
    let (v,): (i64,) = sqlx::query_as("SELECT version FROM catalog")
        .fetch_one(pool)
        .await
        .map_err(backend)?;
    Ok(v as u64)
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
                        if let Ok(version) = catalog_version(&pool).await {
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
        if let Ok(version) = catalog_version(&pool).await {
            feed.publish(version, "poll");
        }
    }
}

// === errors ===

fn backend(e: sqlx::Error) -> StoreError {
    // 53100: disk_full.
    if matches!(&e, sqlx::Error::Database(db) if db.code().as_deref() == Some("53100")) {
        StoreError::Full(Box::new(e))
    } else if is_unavailable(&e) {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Backend(Box::new(e))
    }
}

/// Whether `e` says the database cannot be reached now rather than that the call is wrong.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exception; 57P01-03: shutting down, crashed, starting up;
            // 53300: too many connections; 40001/40P01: serialisation failure, deadlock;
            // 55P03: lock_timeout.
            code.starts_with("08")
                || matches!(
                    &*code,
                    "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "55P03"
                )
        }),
        _ => false,
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn name_taken(
    kind: Kind,
    name: &str,
    scope: Option<&str>,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| {
        if is_unique_violation(&e) {
            StoreError::NameTaken {
                kind,
                name: name.to_owned(),
                scope: scope.map(str::to_owned),
            }
        } else {
            backend(e)
        }
    }
}

// === impl Store ===

impl Store for PostgresStore {
    async fn create_destination(&self, new: NewDestination) -> Result<Destination> {
        let NewDestination {
            name,
            region,
            write_key,
            enabled,
        } = new;
        let id = new_id("dst_")?;
        let sealed = self
            .keys
            .seal(write_key.expose().as_bytes(), id.as_bytes())?;
        let (mut tx, version) = self.begin_write().await?;
        let sql = format!(
            "INSERT INTO destinations (id, name, region, write_key_key_id, write_key_nonce, \
             write_key_ciphertext, write_key_fingerprint, enabled, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1) RETURNING {DESTINATION_COLUMNS}"
        );
        let row: DestinationRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&id)
            .bind(name.as_str())
            .bind(region.as_str())
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .bind(write_key.fingerprint())
            .bind(enabled)
            .fetch_one(&mut *tx)
            .await
            .map_err(name_taken(Kind::Destination, name.as_str(), None))?;
        self.commit(tx, version).await?;
        row.into_destination()
    }

    async fn get_destination(&self, id: &str) -> Result<Destination> {
        let sql = format!("SELECT {DESTINATION_COLUMNS} FROM destinations WHERE id = $1");
        let row: Option<DestinationRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.ok_or_else(|| StoreError::not_found(Kind::Destination, id))?
            .into_destination()
    }

    async fn list_destinations(&self) -> Result<Vec<Destination>> {
        // Byte order, as SQLite sorts, whatever the database's collation.
        let sql =
            format!("SELECT {DESTINATION_COLUMNS} FROM destinations ORDER BY name COLLATE \"C\"");
        let rows: Vec<DestinationRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.into_iter()
            .map(DestinationRow::into_destination)
            .collect()
    }

    async fn update_destination(
        &self,
        id: &str,
        version: u64,
        patch: DestinationPatch,
    ) -> Result<Destination> {
        let DestinationPatch {
            name,
            region,
            write_key,
            enabled,
        } = patch;
        let sealed = write_key
            .as_ref()
            .map(|k| self.keys.seal(k.expose().as_bytes(), id.as_bytes()))
            .transpose()?;
        let (key_id, nonce, ciphertext) = Sealed::columns(sealed);
        let (mut tx, catalog) = self.begin_write().await?;
        let sql = format!(
            "UPDATE destinations SET \
               name = COALESCE($1, name), \
               region = COALESCE($2, region), \
               write_key_key_id = COALESCE($3, write_key_key_id), \
               write_key_nonce = COALESCE($4, write_key_nonce), \
               write_key_ciphertext = COALESCE($5, write_key_ciphertext), \
               write_key_fingerprint = COALESCE($6, write_key_fingerprint), \
               enabled = COALESCE($7, enabled), \
               version = version + 1, \
               updated_at = now() \
             WHERE id = $8 AND version = $9 RETURNING {DESTINATION_COLUMNS}"
        );
        let taken_name = name
            .as_ref()
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        let row: Option<DestinationRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(name.as_ref().map(|n| n.as_str()))
            .bind(region.as_ref().map(|r| r.as_str()))
            .bind(key_id)
            .bind(nonce)
            .bind(ciphertext)
            .bind(write_key.as_ref().map(WriteKey::fingerprint))
            .bind(enabled)
            .bind(id)
            .bind(version as i64)
            .fetch_optional(&mut *tx)
            .await
            .map_err(name_taken(Kind::Destination, &taken_name, None))?;
        match row {
            Some(row) => {
                self.commit(tx, catalog).await?;
                row.into_destination()
            }
            None => {
                drop(tx);
                Err(StoreError::stale_or_missing(
                    Kind::Destination,
                    id,
                    version,
                    self.version(Kind::Destination, id).await?,
                ))
            }
        }
    }

    async fn delete_destination(&self, id: &str) -> Result<()> {
        self.delete(Kind::Destination, id).await
    }

    async fn destination_write_key(&self, id: &str) -> Result<WriteKey> {
        let row: Option<(String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT write_key_key_id, write_key_nonce, write_key_ciphertext \
             FROM destinations WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let (key_id, nonce, ciphertext) =
            row.ok_or_else(|| StoreError::not_found(Kind::Destination, id))?;
        let plain = self.keys.open(
            &Sealed {
                key_id,
                nonce,
                ciphertext,
            },
            id.as_bytes(),
        )?;
        let text = String::from_utf8(plain).map_err(|_| {
            StoreError::Backend(format!("destination {id}: stored write key is not UTF-8").into())
        })?;
        WriteKey::parse(text).map_err(|e| {
            StoreError::Backend(format!("destination {id}: stored write key {e}").into())
        })
    }

    async fn create_mapping(
        &self,
        destination_id: &str,
        content: MappingContent,
    ) -> Result<MappingRecord> {
        let MappingContent {
            name,
            model,
            enabled,
            document,
        } = content;
        let id = new_id("map_")?;
        // Writers are serialised on the change-version row, so the count holds until commit.
        let (mut tx, catalog) = self.begin_write().await?;
        let count: Option<(i64,)> = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM mappings WHERE destination_id = $1) \
             FROM destinations WHERE id = $1",
        )
        .bind(destination_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        match count {
            None => return Err(StoreError::not_found(Kind::Destination, destination_id)),
            Some((n,)) if n >= MAX_MAPPINGS_PER_DESTINATION as i64 => {
                return Err(StoreError::TooManyMappings {
                    destination_id: destination_id.to_owned(),
                    limit: MAX_MAPPINGS_PER_DESTINATION,
                });
            }
            Some(_) => {}
        }
        let sql = format!(
            "INSERT INTO mappings (id, destination_id, name, model, enabled, version, document) \
             VALUES ($1, $2, $3, $4, $5, 1, $6) RETURNING {MAPPING_COLUMNS}"
        );
        let row: MappingRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&id)
            .bind(destination_id)
            .bind(name.as_str())
            .bind(&model)
            .bind(enabled)
            .bind(&document)
            .fetch_one(&mut *tx)
            .await
            .map_err(name_taken(
                Kind::Mapping,
                name.as_str(),
                Some(destination_id),
            ))?;
        self.commit(tx, catalog).await?;
        Ok(row.into())
    }

    async fn get_mapping(&self, id: &str) -> Result<MappingRecord> {
        let sql = format!("SELECT {MAPPING_COLUMNS} FROM mappings WHERE id = $1");
        let row: Option<MappingRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(Into::into)
            .ok_or_else(|| StoreError::not_found(Kind::Mapping, id))
    }

    async fn list_mappings(&self, destination_id: &str) -> Result<Vec<MappingRecord>> {
        if self
            .version(Kind::Destination, destination_id)
            .await?
            .is_none()
        {
            return Err(StoreError::not_found(Kind::Destination, destination_id));
        }
        let sql = format!(
            "SELECT {MAPPING_COLUMNS} FROM mappings WHERE destination_id = $1 \
             ORDER BY name COLLATE \"C\""
        );
        let rows: Vec<MappingRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(destination_id)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn update_mapping(
        &self,
        id: &str,
        version: u64,
        content: MappingContent,
    ) -> Result<MappingRecord> {
        let MappingContent {
            name,
            model,
            enabled,
            document,
        } = content;
        let (mut tx, catalog) = self.begin_write().await?;
        let sql = format!(
            "UPDATE mappings SET name = $1, model = $2, enabled = $3, document = $4, \
               version = version + 1, updated_at = now() \
             WHERE id = $5 AND version = $6 RETURNING {MAPPING_COLUMNS}"
        );
        let row: Option<MappingRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(name.as_str())
            .bind(&model)
            .bind(enabled)
            .bind(&document)
            .bind(id)
            .bind(version as i64)
            .fetch_optional(&mut *tx)
            .await
            .map_err(name_taken(Kind::Mapping, name.as_str(), None))?;
        match row {
            Some(row) => {
                self.commit(tx, catalog).await?;
                Ok(row.into())
            }
            None => {
                drop(tx);
                Err(StoreError::stale_or_missing(
                    Kind::Mapping,
                    id,
                    version,
                    self.version(Kind::Mapping, id).await?,
                ))
            }
        }
    }

    async fn delete_mapping(&self, id: &str) -> Result<()> {
        self.delete(Kind::Mapping, id).await
    }

    async fn catalog_version(&self) -> Result<u64> {
        catalog_version(&self.pool).await
    }

    fn subscribe_changes(&self) -> Option<broadcast::Receiver<u64>> {
        Some(self.feed.subscribe())
    }

    async fn reencrypt_write_keys(&self) -> Result<u64> {
        let mut done = 0;
        for StoredKey {
            destination_id,
            sealed,
        } in self.stored_keys(true).await?
        {
            let plain = self.keys.open(&sealed, destination_id.as_bytes())?;
            let fresh = self.keys.seal(&plain, destination_id.as_bytes())?;
            let (mut tx, catalog) = self.begin_write().await?;
            // Only if nobody replaced the write key since it was read (nonces never repeat).
            let updated = sqlx::query(
                "UPDATE destinations \
                 SET write_key_key_id = $1, write_key_nonce = $2, write_key_ciphertext = $3 \
                 WHERE id = $4 AND write_key_nonce = $5",
            )
            .bind(&fresh.key_id)
            .bind(&fresh.nonce)
            .bind(&fresh.ciphertext)
            .bind(&destination_id)
            .bind(&sealed.nonce)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if updated.rows_affected() == 1 {
                self.commit(tx, catalog).await?;
                done += 1;
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_failures_are_unavailable() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_unavailable(&sqlx::Error::Io(refused)));
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(matches!(
            backend(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            backend(sqlx::Error::Protocol("x".into())),
            StoreError::Backend(_)
        ));
    }
}
