//! The embedded SQLite backend (sqlx): one file, WAL journal, migrations at open.

use std::path::Path;
use std::str::FromStr as _;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
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
            std::fs::create_dir_all(dir).map_err(backend)?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(backend)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(backend)?;
        MIGRATOR.run(&pool).await.map_err(backend)?;
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
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found(kind, id));
        }
        self.announce().await;
        Ok(())
    }

    /// The version of the row `id` of `kind`, `None` when there is none.
    async fn version(&self, kind: Kind, id: &str) -> Result<Option<u64>> {
        let sql = format!("SELECT version FROM {} WHERE id = ?", kind.table());
        let v: Option<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        Ok(v.map(|(v,)| v as u64))
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
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
        let row: DestinationRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&id)
            .bind(name.as_str())
            .bind(region.as_str())
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .bind(write_key.fingerprint())
            .bind(enabled)
            .fetch_one(&self.pool)
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
        self.announce().await;
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
            .fetch_optional(&self.pool)
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
                self.announce().await;
                row.into_destination()
            }
            None => Err(StoreError::stale_or_missing(
                Kind::Destination,
                id,
                version,
                self.version(Kind::Destination, id).await?,
            )),
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
        let text = String::from_utf8(plain).map_err(backend)?;
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
        let row: Option<MappingRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&id)
            .bind(destination_id)
            .bind(name.as_str())
            .bind(&model)
            .bind(enabled)
            .bind(&document)
            .bind(MAX_MAPPINGS_PER_DESTINATION as i64)
            .fetch_optional(&self.pool)
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
                self.announce().await;
                Ok(row.into())
            }
            None => Err(
                match self.version(Kind::Destination, destination_id).await? {
                    None => StoreError::not_found(Kind::Destination, destination_id),
                    Some(_) => StoreError::TooManyMappings {
                        destination_id: destination_id.to_owned(),
                        limit: MAX_MAPPINGS_PER_DESTINATION,
                    },
                },
            ),
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
        if self
            .version(Kind::Destination, destination_id)
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
        let row: Option<MappingRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(name.as_str())
            .bind(&model)
            .bind(enabled)
            .bind(&document)
            .bind(id)
            .bind(version as i64)
            .fetch_optional(&self.pool)
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
                self.announce().await;
                Ok(row.into())
            }
            None => Err(StoreError::stale_or_missing(
                Kind::Mapping,
                id,
                version,
                self.version(Kind::Mapping, id).await?,
            )),
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
        let mut done = 0;
        for StoredKey {
            destination_id,
            sealed,
        } in self.stored_keys(true).await?
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
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            done += updated.rows_affected();
        }
        if done > 0 {
            self.announce().await;
        }
        Ok(done)
    }
}
