//! The embedded SQLite backend (sqlx): one file, WAL journal synced at every commit, migrations
//! at open. What it shares with PostgreSQL (every statement, the write protocol, the error
//! classes) is in `sql.rs`, `shared.rs` and `errors.rs`; this file is the pool and its PRAGMAs.

use std::path::Path;
use std::str::FromStr as _;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::crypto::KeyRing;
use super::shared::sql_store;
use super::{Feed, Result, check_stored_keys, errors};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Destinations and mappings in one SQLite file. This process is its only writer, so the change
/// versions it announces are those of its own writes.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    keys: std::sync::Arc<KeyRing>,
    feed: std::sync::Arc<Feed>,
}

sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    super::sql::SQLITE,
    errors::sqlite
);

super::ledger::ledger_store!(SqliteStore, sqlx::Sqlite, super::ledger::SQLITE, json_ids);

/// An id list as SQLite's `json_each` reads it.
fn json_ids(ids: &[&str]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

impl SqliteStore {
    /// Opens (creating it and its directory if missing) the database at `path` and runs the
    /// migrations.
    pub async fn open(path: &Path, keys: KeyRing) -> Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(errors::io)?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(SqliteStore::error)?
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
            .map_err(SqliteStore::error)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| errors::migration(e, errors::sqlite))?;
        let version = SqliteStore::current_version(&pool).await?;
        let store = SqliteStore {
            pool,
            keys: std::sync::Arc::new(keys),
            feed: std::sync::Arc::new(Feed::new(version)),
        };
        // Refuse to start with a key ring that cannot open the stored write keys.
        if let Err(e) = check_stored_keys(&store.keys, &store.stored_keys(false).await?) {
            store.pool.close().await;
            return Err(e);
        }
        Ok(store)
    }

    /// Closes the pool (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Nothing to tell other processes: this one is the only writer (its own feed is told once
    /// the write commits).
    async fn notify(&self, _: &mut sqlx::SqliteConnection, _version: u64) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::store::{MappingContent, Name, NewDestination, Region, Store, StoreError, WriteKey};

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
                rate_limit: Default::default(),
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

    /// Another connection holding the write lock past the busy timeout makes writes fail as
    /// `Unavailable` (retryable), as PostgreSQL's lock timeout does; reads go on meanwhile, and
    /// writes work again once the lock is released.
    #[tokio::test]
    async fn a_write_locked_out_past_the_busy_timeout_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let keys = KeyRing::from_hex_lines(&KeyRing::generate_hex().unwrap()).unwrap();
        let options = SqliteConnectOptions::from_str("sqlite:")
            .unwrap()
            .filename(&path)
            .create_if_missing(true)
            .busy_timeout(Duration::from_millis(200));
        let store = SqliteStore::open_with(options, keys).await.unwrap();
        let destination = |name: &str| NewDestination {
            name: Name::parse(name.into()).unwrap(),
            region: Region::Us,
            write_key: WriteKey::parse("wk-0123456789".into()).unwrap(),
            enabled: true,
            rate_limit: Default::default(),
        };
        let d = store.create_destination(destination("a")).await.unwrap();
        let version = store.catalog_version().await.unwrap();

        let mut other = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(
            &SqliteConnectOptions::from_str("sqlite:")
                .unwrap()
                .filename(&path),
        )
        .await
        .unwrap();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        let started = Instant::now();
        let err = store
            .create_destination(destination("b"))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(store.get_destination(&d.id).await.unwrap(), d);
        assert_eq!(store.catalog_version().await.unwrap(), version);

        sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
        store.create_destination(destination("b")).await.unwrap();
        assert_eq!(store.catalog_version().await.unwrap(), version + 1);
        store.close().await;
    }
}
