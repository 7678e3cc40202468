//! The embedded SQLite backend (sqlx): one file, WAL journal synced at every commit, migrations
//! at open.
//!
//! Every write runs in a transaction of its own ([`Write`]) and is acknowledged only once its
//! `COMMIT` succeeded. Left to autocommit, SQLite commits a statement when it is reset, and sqlx
//! ignores the result of that reset once a `RETURNING` statement has given its row: a commit
//! that failed (a full disk) would be answered with the row it did not store.

use std::path::Path;
use std::str::FromStr as _;

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::broadcast;

use super::crypto::{KeyRing, Sealed};
use super::rows::{DestinationRow, MappingRow};
use super::{
    Destination, DestinationPatch, Feed, Kind, MAX_MAPPINGS_PER_DESTINATION, MappingContent,
    MappingRecord, NewDestination, Result, Store, StoreError, StoredKey, WriteKey,
    check_stored_keys, new_id,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const DESTINATION_COLUMNS: &str = "id, name, region, write_key_fingerprint, enabled, version";
const MAPPING_COLUMNS: &str = "id, destination_id, name, model, enabled, version, document";

/// Destinations and mappings in one SQLite file. This process is its only writer, so the change
/// versions it announces are those of its own writes.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    keys: std::sync::Arc<KeyRing>,
    changes: std::sync::Arc<Feed>,
}

impl SqliteStore {
    /// Opens (creating it and its directory if missing) the database at `path` and runs the
    /// migrations.
    pub async fn open(path: &Path, keys: KeyRing) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(backend)?
            .filename(path)
            .create_if_missing(true);
        SqliteStore::open_with(options, keys).await
    }

    /// Opens the database `options` name with the settings every connection needs: the WAL
    /// journal, synced at each commit (`synchronous = FULL`: a write acknowledged survives a
    /// power loss, not only a crash of this process), and foreign keys on.
    async fn open_with(options: SqliteConnectOptions, keys: KeyRing) -> Result<SqliteStore> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(backend)?;
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => backend(e),
            e => other(e),
        })?;
        let (version,): (i64,) = sqlx::query_as("SELECT version FROM catalog WHERE id = 1")
            .fetch_one(&pool)
            .await
            .map_err(backend)?;
        let store = SqliteStore {
            pool,
            keys: std::sync::Arc::new(keys),
            changes: std::sync::Arc::new(Feed::new(version as u64)),
        };
        // Refuse to start with a key ring that cannot open the stored write keys.
        if let Err(e) = check_stored_keys(&store.keys, &store.stored_keys(false).await?) {
            store.pool.close().await;
            return Err(e);
        }
        Ok(store)
    }

    /// The stored write keys; with `stale_only`, those not sealed with the current key.
    async fn stored_keys(&self, stale_only: bool) -> Result<Vec<StoredKey>> {
        let rows: Vec<(String, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT id, write_key_key_id, write_key_nonce, write_key_ciphertext \
             FROM destinations WHERE NOT ? OR write_key_key_id <> ?",
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

    /// Begins a write.
    async fn begin(&self) -> Result<Write> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        Ok(Write { conn, done: false })
    }

    /// Commits a write, failing as the commit does (a full disk: [`StoreError::Full`]), and
    /// announces it.
    async fn commit(&self, mut tx: Write) -> Result<()> {
        sqlx::raw_sql("COMMIT")
            .execute(tx.conn())
            .await
            .map_err(backend)?;
        tx.done = true;
        // Its connection back first: announcing takes one.
        drop(tx);
        self.announce().await;
        Ok(())
    }

    /// Announces the version a write of ours committed.
    async fn announce(&self) {
        if let Ok(version) = self.catalog_version().await {
            self.changes.publish(version, "write");
        }
    }

    /// Closes the pool (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Deletes the row `id` of `kind` (`NotFound` when there is none).
    async fn delete(&self, kind: Kind, id: &str) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE id = ?", kind.table());
        let mut tx = self.begin().await?;
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            tx.rollback().await;
            return Err(StoreError::not_found(kind, id));
        }
        self.commit(tx).await
    }
}

/// A write in progress: a transaction of its own on a pooled connection, begun with `BEGIN
/// IMMEDIATE` (the write lock taken at once, waiting up to the busy timeout). Only
/// [`SqliteStore::commit`] acknowledges it, and [`Write::rollback`] ends one that changed
/// nothing. Dropped otherwise (a statement failed, a failed `COMMIT`), it closes its connection,
/// which rolls back whatever is left: after a failed `COMMIT` SQLite may or may not have rolled
/// back already, and a connection whose transaction state is unknown never serves another call
/// (it could hold the write lock, or wrap the next write in a transaction that never commits).
struct Write {
    conn: PoolConnection<Sqlite>,
    /// Committed or rolled back: the connection may go back to the pool.
    done: bool,
}

impl Write {
    fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// Ends a write that changed nothing (its conditional statement matched no row).
    async fn rollback(mut self) {
        self.done = sqlx::raw_sql("ROLLBACK").execute(self.conn()).await.is_ok();
    }
}

impl Drop for Write {
    fn drop(&mut self) {
        if !self.done {
            self.conn.close_on_drop();
        }
    }
}

/// The version of the row `id` of `kind` as `db` sees it (in a write's transaction: the state
/// that made its conditional statement miss), `None` when there is none.
async fn row_version<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    kind: Kind,
    id: &str,
) -> Result<Option<u64>> {
    let sql = format!("SELECT version FROM {} WHERE id = ?", kind.table());
    let v: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(db)
        .await
        .map_err(backend)?;
    Ok(v.map(|(v,)| v as u64))
}

/// SQLite's primary result codes that say the store cannot take the call now.
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_IOERR: i32 = 10;
const SQLITE_FULL: i32 = 13;

/// What a failed call means: the disk (or the database) is full; the file cannot be read or
/// written now (an I/O error, locked past the busy timeout); else a backend error.
fn backend(e: sqlx::Error) -> StoreError {
    let primary = match &e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .map(|code| code & 0xff),
        _ => None,
    };
    match (primary, &e) {
        (Some(SQLITE_FULL), _) => StoreError::Full(Box::new(e)),
        (_, sqlx::Error::Io(io)) if io.kind() == std::io::ErrorKind::StorageFull => {
            StoreError::Full(Box::new(e))
        }
        (Some(SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR), _)
        | (_, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) => {
            StoreError::Unavailable(Box::new(e))
        }
        _ => StoreError::Backend(Box::new(e)),
    }
}

/// A failed file operation of ours (the store's directory).
fn io(e: std::io::Error) -> StoreError {
    match e.kind() {
        std::io::ErrorKind::StorageFull => StoreError::Full(Box::new(e)),
        _ => StoreError::Backend(Box::new(e)),
    }
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

// === impl Store ===

impl Store for SqliteStore {
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
        let sql = format!(
            "INSERT INTO destinations (id, name, region, write_key_key_id, write_key_nonce, \
             write_key_ciphertext, write_key_fingerprint, enabled, version) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING {DESTINATION_COLUMNS}"
        );
        let mut tx = self.begin().await?;
        let row: DestinationRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&id)
            .bind(name.as_str())
            .bind(region.as_str())
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .bind(write_key.fingerprint())
            .bind(enabled)
            .fetch_one(tx.conn())
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::NameTaken {
                        kind: Kind::Destination,
                        name: name.as_str().to_owned(),
                        scope: None,
                    }
                } else {
                    backend(e)
                }
            })?;
        self.commit(tx).await?;
        row.into_destination()
    }

    async fn get_destination(&self, id: &str) -> Result<Destination> {
        let sql = format!("SELECT {DESTINATION_COLUMNS} FROM destinations WHERE id = ?");
        let row: Option<DestinationRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.ok_or_else(|| StoreError::not_found(Kind::Destination, id))?
            .into_destination()
    }

    async fn list_destinations(&self) -> Result<Vec<Destination>> {
        let sql = format!("SELECT {DESTINATION_COLUMNS} FROM destinations ORDER BY name");
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
        let sql = format!(
            "UPDATE destinations SET \
               name = COALESCE(?, name), \
               region = COALESCE(?, region), \
               write_key_key_id = COALESCE(?, write_key_key_id), \
               write_key_nonce = COALESCE(?, write_key_nonce), \
               write_key_ciphertext = COALESCE(?, write_key_ciphertext), \
               write_key_fingerprint = COALESCE(?, write_key_fingerprint), \
               enabled = COALESCE(?, enabled), \
               version = version + 1, \
               updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             WHERE id = ? AND version = ? RETURNING {DESTINATION_COLUMNS}"
        );
        let mut tx = self.begin().await?;
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
            .fetch_optional(tx.conn())
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::NameTaken {
                        kind: Kind::Destination,
                        name: name
                            .as_ref()
                            .map(|n| n.as_str().to_owned())
                            .unwrap_or_default(),
                        scope: None,
                    }
                } else {
                    backend(e)
                }
            })?;
        match row {
            Some(row) => {
                self.commit(tx).await?;
                row.into_destination()
            }
            None => {
                let actual = row_version(tx.conn(), Kind::Destination, id).await?;
                tx.rollback().await;
                Err(StoreError::stale_or_missing(
                    Kind::Destination,
                    id,
                    version,
                    actual,
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
             FROM destinations WHERE id = ?",
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
        let text = String::from_utf8(plain).map_err(other)?;
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
        // One statement, so the destination check and the count hold when the row goes in.
        let sql = format!(
            "INSERT INTO mappings (id, destination_id, name, model, enabled, version, document) \
             SELECT ?1, ?2, ?3, ?4, ?5, 1, ?6 \
             WHERE EXISTS (SELECT 1 FROM destinations WHERE id = ?2) \
               AND (SELECT COUNT(*) FROM mappings WHERE destination_id = ?2) < ?7 \
             RETURNING {MAPPING_COLUMNS}"
        );
        let mut tx = self.begin().await?;
        let row: Option<MappingRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&id)
            .bind(destination_id)
            .bind(name.as_str())
            .bind(&model)
            .bind(enabled)
            .bind(&document)
            .bind(MAX_MAPPINGS_PER_DESTINATION as i64)
            .fetch_optional(tx.conn())
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::NameTaken {
                        kind: Kind::Mapping,
                        name: name.as_str().to_owned(),
                        scope: Some(destination_id.to_owned()),
                    }
                } else {
                    backend(e)
                }
            })?;
        match row {
            Some(row) => {
                self.commit(tx).await?;
                Ok(row.into())
            }
            None => {
                let destination = row_version(tx.conn(), Kind::Destination, destination_id).await?;
                tx.rollback().await;
                Err(match destination {
                    None => StoreError::not_found(Kind::Destination, destination_id),
                    Some(_) => StoreError::TooManyMappings {
                        destination_id: destination_id.to_owned(),
                        limit: MAX_MAPPINGS_PER_DESTINATION,
                    },
                })
            }
        }
    }

    async fn get_mapping(&self, id: &str) -> Result<MappingRecord> {
        let sql = format!("SELECT {MAPPING_COLUMNS} FROM mappings WHERE id = ?");
        let row: Option<MappingRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(Into::into)
            .ok_or_else(|| StoreError::not_found(Kind::Mapping, id))
    }

    async fn list_mappings(&self, destination_id: &str) -> Result<Vec<MappingRecord>> {
        if row_version(&self.pool, Kind::Destination, destination_id)
            .await?
            .is_none()
        {
            return Err(StoreError::not_found(Kind::Destination, destination_id));
        }
        let sql = format!(
            "SELECT {MAPPING_COLUMNS} FROM mappings WHERE destination_id = ? ORDER BY name"
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
        let sql = format!(
            "UPDATE mappings SET name = ?, model = ?, enabled = ?, document = ?, \
               version = version + 1, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             WHERE id = ? AND version = ? RETURNING {MAPPING_COLUMNS}"
        );
        let mut tx = self.begin().await?;
        let row: Option<MappingRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(name.as_str())
            .bind(&model)
            .bind(enabled)
            .bind(&document)
            .bind(id)
            .bind(version as i64)
            .fetch_optional(tx.conn())
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::NameTaken {
                        kind: Kind::Mapping,
                        name: name.as_str().to_owned(),
                        scope: None,
                    }
                } else {
                    backend(e)
                }
            })?;
        match row {
            Some(row) => {
                self.commit(tx).await?;
                Ok(row.into())
            }
            None => {
                let actual = row_version(tx.conn(), Kind::Mapping, id).await?;
                tx.rollback().await;
                Err(StoreError::stale_or_missing(
                    Kind::Mapping,
                    id,
                    version,
                    actual,
                ))
            }
        }
    }

    async fn delete_mapping(&self, id: &str) -> Result<()> {
        self.delete(Kind::Mapping, id).await
    }

    async fn catalog_version(&self) -> Result<u64> {
        let (v,): (i64,) = sqlx::query_as("SELECT version FROM catalog WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(v as u64)
    }

    fn subscribe_changes(&self) -> Option<broadcast::Receiver<u64>> {
        Some(self.changes.subscribe())
    }

    async fn reencrypt_write_keys(&self) -> Result<u64> {
        let stale = self.stored_keys(true).await?;
        let mut done = 0;
        let mut tx = self.begin().await?;
        for StoredKey {
            destination_id,
            sealed,
        } in stale
        {
            let plain = self.keys.open(&sealed, destination_id.as_bytes())?;
            let fresh = self.keys.seal(&plain, destination_id.as_bytes())?;
            // Only if nobody replaced the write key since it was read (nonces never repeat).
            let updated = sqlx::query(
                "UPDATE destinations \
                 SET write_key_key_id = ?, write_key_nonce = ?, write_key_ciphertext = ? \
                 WHERE id = ? AND write_key_nonce = ?",
            )
            .bind(&fresh.key_id)
            .bind(&fresh.nonce)
            .bind(&fresh.ciphertext)
            .bind(&destination_id)
            .bind(&sealed.nonce)
            .execute(tx.conn())
            .await
            .map_err(backend)?;
            done += updated.rows_affected();
        }
        if done > 0 {
            self.commit(tx).await?;
        } else {
            tx.rollback().await;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Name, Region};

    fn mapping(name: &str, document: String) -> MappingContent {
        MappingContent {
            name: Name::parse(name.into()).unwrap(),
            model: "orders".into(),
            enabled: true,
            document,
        }
    }

    /// A database that may grow no further (`max_page_count`, as a full disk would stop it)
    /// fails the write as `Full`, stores nothing, and still answers reads and small writes.
    #[tokio::test]
    async fn a_write_the_database_has_no_room_for_fails_as_full() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let key = KeyRing::generate_hex().unwrap();
        let keys = || KeyRing::from_hex_lines(&key).unwrap();
        let store = SqliteStore::open(&path, keys()).await.unwrap();
        let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        store.close().await;

        let options = SqliteConnectOptions::from_str("sqlite:")
            .unwrap()
            .filename(&path)
            .pragma("max_page_count", pages.to_string());
        let store = SqliteStore::open_with(options, keys()).await.unwrap();
        let d = store
            .create_destination(NewDestination {
                name: Name::parse("prod".into()).unwrap(),
                region: Region::parse("us").unwrap(),
                write_key: WriteKey::parse("wk-0123456789".into()).unwrap(),
                enabled: true,
            })
            .await
            .unwrap();
        // Overflow pages the file may not add.
        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(64 * 1024));
        let err = store
            .create_mapping(&d.id, mapping("big", big))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Full(_)), "{err:?}");
        assert!(err.to_string().contains("full"), "{err}");
        assert!(store.list_mappings(&d.id).await.unwrap().is_empty());
        let small = store
            .create_mapping(&d.id, mapping("small", "{}".into()))
            .await
            .unwrap();
        assert_eq!(store.get_mapping(&small.id).await.unwrap().id, small.id);
        store.close().await;
    }
}
