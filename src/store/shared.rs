//! What both SQL backends do alike: the [`Store`](super::Store) implementation, written once
//! over the statements of [`super::sql`] and stamped for each backend by [`sql_store!`].
//!
//! A macro rather than functions generic over `sqlx::Database`: sqlx's executor bounds are
//! higher-ranked (`for<'c> &'c mut DB::Connection: Executor<'c>`), and futures holding them fail
//! rustc's `Send` check for the `Store` trait's futures ("not general enough"), the problem
//! `postgres.rs` meets with `Migrator::run`. Stamped for one concrete database, the same code
//! needs no bounds.
//!
//! # The write protocol
//!
//! Every write runs in a transaction of its own ([`Write`]) that begins (`Statements::begin`)
//! and at once bumps the store-wide change version (`Statements::bump_version`), so the version
//! and the write commit together, and writers are serialised (SQLite: the write lock taken at
//! `BEGIN IMMEDIATE`; PostgreSQL: the version row's lock). A write is acknowledged only once its
//! `COMMIT` succeeded (SQLite left to autocommit ignores a failed commit once a `RETURNING`
//! statement has given its row: a full disk would be answered with a row it did not store).
//! Then the version it bumped to is published on the feed.

use sqlx::pool::PoolConnection;

/// A write in progress: a transaction of its own on a pooled connection, which bumped the
/// change version to `version`. Only the store's `finish` acknowledges it. Dropped otherwise (a
/// failed `COMMIT`, or a `ROLLBACK` that failed), it closes its connection, which rolls back
/// whatever is left: after a failed `COMMIT` SQLite may or may not have rolled back already,
/// and a connection whose transaction state is unknown never serves another call (it could hold
/// the write lock, or wrap the next write in a transaction that never commits).
pub(super) struct Write<DB: sqlx::Database> {
    pub(super) conn: PoolConnection<DB>,
    pub(super) version: u64,
    /// Committed or rolled back: the connection may go back to the pool.
    pub(super) done: bool,
}

impl<DB: sqlx::Database> Write<DB> {
    pub(super) fn conn(&mut self) -> &mut DB::Connection {
        &mut self.conn
    }
}

/// What a write that may find nothing to change did.
pub(super) enum Outcome<T> {
    /// It wrote `T`.
    Changed(T),
    /// What it would have written is what is stored (`T`): rolled back, no version moves.
    Unchanged(T),
}

impl<DB: sqlx::Database> Drop for Write<DB> {
    fn drop(&mut self) {
        if !self.done {
            self.conn.close_on_drop();
        }
    }
}

/// `sql_store!(Store, Database, statements, classify)` implements [`Store`](super::Store) for
/// `Store`, a struct with fields `pool: Pool<Database>`, `keys: Arc<KeyRing>` and
/// `feed: Arc<Feed>` and a method `notify(&self, &mut Connection, version) -> Result<()>` run
/// last in each write's transaction. Adds the inherent helpers `error` (sqlx errors as
/// `classify` reads them), `current_version`, `stored_keys` and `begin`/`finish` (a write).
macro_rules! sql_store {
    ($store:ident, $db:ty, $statements:expr, $classify:path $(,)?) => {
        impl $store {
            const SQL: &'static $crate::store::sql::Statements = &$statements;

            fn error(e: sqlx::Error) -> $crate::store::StoreError {
                $classify(&e).error(e)
            }

            /// The error for `e` from a write of the name `name` of `kind`.
            fn name_error(
                e: sqlx::Error,
                kind: $crate::store::Kind,
                name: &str,
                scope: Option<&str>,
            ) -> $crate::store::StoreError {
                $classify(&e).name_error(e, kind, name, scope)
            }

            /// The store-wide change version.
            async fn current_version(
                db: impl sqlx::Executor<'_, Database = $db>,
            ) -> $crate::store::Result<u64> {
                let (v,): (i64,) = sqlx::query_as(Self::SQL.catalog_version)
                    .fetch_one(db)
                    .await
                    .map_err(Self::error)?;
                Ok(v as u64)
            }

            /// The version of the row `sql` selects by `id`, `None` when there is none.
            async fn row_version(
                db: impl sqlx::Executor<'_, Database = $db>,
                sql: &'static str,
                id: &str,
            ) -> $crate::store::Result<Option<u64>> {
                let v: Option<(i64,)> = sqlx::query_as(sql)
                    .bind(id)
                    .fetch_optional(db)
                    .await
                    .map_err(Self::error)?;
                Ok(v.map(|(v,)| v as u64))
            }

            /// The sealed write key of the destination `id` (`NotFound` when there is none).
            async fn sealed_write_key(
                db: impl sqlx::Executor<'_, Database = $db>,
                id: &str,
            ) -> $crate::store::Result<$crate::store::crypto::Sealed> {
                let row: Option<(String, Vec<u8>, Vec<u8>)> =
                    sqlx::query_as(Self::SQL.destination_write_key)
                        .bind(id)
                        .fetch_optional(db)
                        .await
                        .map_err(Self::error)?;
                let (key_id, nonce, ciphertext) = row.ok_or_else(|| {
                    $crate::store::StoreError::not_found($crate::store::Kind::Destination, id)
                })?;
                Ok($crate::store::crypto::Sealed {
                    key_id,
                    nonce,
                    ciphertext,
                })
            }

            /// The stored write key of `id`, decrypted; `None` when it does not open.
            async fn stored_write_key(
                &self,
                db: impl sqlx::Executor<'_, Database = $db>,
                id: &str,
            ) -> $crate::store::Result<Option<$crate::sender::WriteKey>> {
                let sealed = Self::sealed_write_key(db, id).await?;
                Ok($crate::store::open_write_key(&self.keys, &sealed, id).ok())
            }

            /// The stored write keys; with `stale_only`, those not sealed with the current key.
            async fn stored_keys(
                &self,
                stale_only: bool,
            ) -> $crate::store::Result<Vec<$crate::store::StoredKey>> {
                let rows: Vec<(String, String, Vec<u8>, Vec<u8>)> =
                    sqlx::query_as(Self::SQL.stored_keys)
                        .bind(stale_only)
                        .bind(self.keys.current_key_id())
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::error)?;
                Ok(rows
                    .into_iter()
                    .map(
                        |(destination_id, key_id, nonce, ciphertext)| $crate::store::StoredKey {
                            destination_id,
                            sealed: $crate::store::crypto::Sealed {
                                key_id,
                                nonce,
                                ciphertext,
                            },
                        },
                    )
                    .collect())
            }

            /// Begins a write (see the write protocol in `shared.rs`).
            async fn begin(&self) -> $crate::store::Result<$crate::store::shared::Write<$db>> {
                let mut conn = self.pool.acquire().await.map_err(Self::error)?;
                sqlx::raw_sql(Self::SQL.begin)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::error)?;
                let mut tx = $crate::store::shared::Write {
                    conn,
                    version: 0,
                    done: false,
                };
                let (version,): (i64,) = sqlx::query_as(Self::SQL.bump_version)
                    .fetch_one(tx.conn())
                    .await
                    .map_err(Self::error)?;
                tx.version = version as u64;
                Ok(tx)
            }

            /// Ends a write: with `Ok`, commits it (failing as the commit does: a full disk is
            /// `Full`) and publishes its version; with `Err` (including a conditional statement
            /// that matched nothing), rolls it back and returns the error.
            async fn finish<T>(
                &self,
                mut tx: $crate::store::shared::Write<$db>,
                result: $crate::store::Result<T>,
            ) -> $crate::store::Result<T> {
                let value = match result {
                    Ok(value) => value,
                    Err(e) => {
                        Self::rollback(tx).await;
                        return Err(e);
                    }
                };
                let version = tx.version;
                self.notify(tx.conn(), version).await?;
                sqlx::raw_sql($crate::store::sql::COMMIT)
                    .execute(tx.conn())
                    .await
                    .map_err(Self::error)?;
                tx.done = true;
                drop(tx);
                self.feed.publish(version, "write");
                Ok(value)
            }

            /// Ends a write whose result says whether it changed anything: one that did not
            /// is rolled back, so neither the change version nor any row moves and nothing is
            /// announced.
            async fn finish_unless_unchanged<T>(
                &self,
                tx: $crate::store::shared::Write<$db>,
                result: $crate::store::Result<$crate::store::shared::Outcome<T>>,
            ) -> $crate::store::Result<T> {
                match result {
                    Ok($crate::store::shared::Outcome::Unchanged(value)) => {
                        Self::rollback(tx).await;
                        Ok(value)
                    }
                    Ok($crate::store::shared::Outcome::Changed(value)) => {
                        self.finish(tx, Ok(value)).await
                    }
                    Err(e) => self.finish(tx, Err(e)).await,
                }
            }

            /// Ends a write that is to change nothing.
            async fn rollback(mut tx: $crate::store::shared::Write<$db>) {
                tx.done = sqlx::raw_sql($crate::store::sql::ROLLBACK)
                    .execute(tx.conn())
                    .await
                    .is_ok();
            }

            /// Deletes the row `sql` deletes by `id` (`NotFound` when there is none).
            async fn delete(
                &self,
                sql: &'static str,
                kind: $crate::store::Kind,
                id: &str,
            ) -> $crate::store::Result<()> {
                let mut tx = self.begin().await?;
                let result = async {
                    let done = sqlx::query(sql)
                        .bind(id)
                        .execute(tx.conn())
                        .await
                        .map_err(Self::error)?;
                    match done.rows_affected() {
                        0 => Err($crate::store::StoreError::not_found(kind, id)),
                        _ => Ok(()),
                    }
                }
                .await;
                self.finish(tx, result).await
            }

            /// A stored sketch, read; one that cannot be read counts as empty (and is
            /// replaced at the next flush), with a warning.
            fn stored_sketch(
                destination_id: &str,
                month: $crate::usage::Month,
                bytes: Option<Vec<u8>>,
            ) -> $crate::usage::Sketch {
                match bytes.as_deref().map($crate::usage::Sketch::from_bytes) {
                    None => $crate::usage::Sketch::new(),
                    Some(Ok(s)) => s,
                    Some(Err(e)) => {
                        tracing::warn!(
                            destination_id,
                            %month,
                            error = %e,
                            "stored users sketch unreadable: counting the month's users afresh"
                        );
                        $crate::usage::Sketch::new()
                    }
                }
            }

            /// One delta, in the usage transaction `conn` is in.
            async fn add_one_usage(
                conn: &mut <$db as sqlx::Database>::Connection,
                d: &$crate::usage::Delta,
            ) -> $crate::store::Result<()> {
                let month = d.month.to_string();
                sqlx::query(Self::SQL.usage_ensure)
                    .bind(&d.destination_id)
                    .bind(&month)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::error)?;
                let row: Option<(Option<Vec<u8>>,)> = sqlx::query_as(Self::SQL.usage_lock)
                    .bind(&d.destination_id)
                    .bind(&month)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(Self::error)?;
                // No row: the destination is gone.
                let Some((stored,)) = row else {
                    return Ok(());
                };
                let sketch = match &d.users {
                    Some(users) => {
                        let mut s = Self::stored_sketch(&d.destination_id, d.month, stored);
                        s.merge(users);
                        Some(s.to_bytes())
                    }
                    None => stored,
                };
                let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                sqlx::query(Self::SQL.usage_update)
                    .bind(&d.destination_id)
                    .bind(&month)
                    .bind(n(d.counts.calls))
                    .bind(n(d.counts.batches))
                    .bind(n(d.counts.bytes))
                    .bind(sketch)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::error)?;
                Ok(())
            }
        }

        impl $crate::store::Store for $store {
            async fn create_destination(
                &self,
                new: $crate::store::NewDestination,
            ) -> $crate::store::Result<$crate::store::Destination> {
                let $crate::store::NewDestination {
                    name,
                    region,
                    write_key,
                    enabled,
                    rate_limit,
                } = new;
                let id = $crate::store::new_id("dst_")?;
                let sealed = self
                    .keys
                    .seal(write_key.expose().as_bytes(), id.as_bytes())?;
                let mut tx = self.begin().await?;
                let result = async {
                    let row: $crate::store::rows::DestinationRow =
                        sqlx::query_as(Self::SQL.create_destination)
                            .bind(&id)
                            .bind(name.as_str())
                            .bind(region.as_str())
                            .bind(&sealed.key_id)
                            .bind(&sealed.nonce)
                            .bind(&sealed.ciphertext)
                            .bind(write_key.fingerprint())
                            .bind(enabled)
                            .bind(i64::from(rate_limit.get()))
                            .fetch_one(tx.conn())
                            .await
                            .map_err(|e| {
                                Self::name_error(
                                    e,
                                    $crate::store::Kind::Destination,
                                    name.as_str(),
                                    None,
                                )
                            })?;
                    row.into_destination()
                }
                .await;
                self.finish(tx, result).await
            }

            async fn get_destination(
                &self,
                id: &str,
            ) -> $crate::store::Result<$crate::store::Destination> {
                let row: Option<$crate::store::rows::DestinationRow> =
                    sqlx::query_as(Self::SQL.get_destination)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(Self::error)?;
                row.ok_or_else(|| {
                    $crate::store::StoreError::not_found($crate::store::Kind::Destination, id)
                })?
                .into_destination()
            }

            async fn list_destinations(
                &self,
            ) -> $crate::store::Result<Vec<$crate::store::Destination>> {
                let rows: Vec<$crate::store::rows::DestinationRow> =
                    sqlx::query_as(Self::SQL.list_destinations)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::error)?;
                rows.into_iter()
                    .map($crate::store::rows::DestinationRow::into_destination)
                    .collect()
            }

            async fn update_destination(
                &self,
                id: &str,
                version: u64,
                patch: $crate::store::DestinationPatch,
            ) -> $crate::store::Result<$crate::store::Destination> {
                let sealed = patch
                    .write_key
                    .as_ref()
                    .map(|k| self.keys.seal(k.expose().as_bytes(), id.as_bytes()))
                    .transpose()?;
                let (key_id, nonce, ciphertext) = $crate::store::crypto::Sealed::columns(sealed);
                let taken = patch.name.as_ref().map(|n| n.as_str()).unwrap_or_default();
                let mut tx = self.begin().await?;
                let result = async {
                    // In the write's transaction (writers are serialised): the state it changes.
                    let current: Option<$crate::store::rows::DestinationRow> =
                        sqlx::query_as(Self::SQL.get_destination)
                            .bind(id)
                            .fetch_optional(tx.conn())
                            .await
                            .map_err(Self::error)?;
                    let current = current
                        .ok_or_else(|| {
                            $crate::store::StoreError::not_found(
                                $crate::store::Kind::Destination,
                                id,
                            )
                        })?
                        .into_destination()?;
                    if current.version != version {
                        return Err($crate::store::StoreError::stale_or_missing(
                            $crate::store::Kind::Destination,
                            id,
                            version,
                            Some(current.version),
                        ));
                    }
                    let stored_key = match &patch.write_key {
                        None => None,
                        Some(_) => self.stored_write_key(tx.conn(), id).await?,
                    };
                    if patch.unchanged(&current, stored_key.as_ref()) {
                        return Ok($crate::store::shared::Outcome::Unchanged(current));
                    }
                    let row: Option<$crate::store::rows::DestinationRow> =
                        sqlx::query_as(Self::SQL.update_destination)
                            .bind(patch.name.as_ref().map(|n| n.as_str()))
                            .bind(patch.region.as_ref().map(|r| r.as_str()))
                            .bind(key_id)
                            .bind(nonce)
                            .bind(ciphertext)
                            .bind(
                                patch
                                    .write_key
                                    .as_ref()
                                    .map($crate::sender::WriteKey::fingerprint),
                            )
                            .bind(patch.enabled)
                            .bind(patch.rate_limit.map(|l| i64::from(l.get())))
                            .bind(id)
                            .bind(version as i64)
                            .fetch_optional(tx.conn())
                            .await
                            .map_err(|e| {
                                Self::name_error(e, $crate::store::Kind::Destination, taken, None)
                            })?;
                    match row {
                        Some(row) => row
                            .into_destination()
                            .map($crate::store::shared::Outcome::Changed),
                        // In the write's transaction: the state that made it miss.
                        None => Err($crate::store::StoreError::stale_or_missing(
                            $crate::store::Kind::Destination,
                            id,
                            version,
                            Self::row_version(tx.conn(), Self::SQL.destination_version, id).await?,
                        )),
                    }
                }
                .await;
                self.finish_unless_unchanged(tx, result).await
            }

            async fn delete_destination(&self, id: &str) -> $crate::store::Result<()> {
                self.delete(
                    Self::SQL.delete_destination,
                    $crate::store::Kind::Destination,
                    id,
                )
                .await
            }

            async fn destination_write_key(
                &self,
                id: &str,
            ) -> $crate::store::Result<$crate::sender::WriteKey> {
                let sealed = Self::sealed_write_key(&self.pool, id).await?;
                $crate::store::open_write_key(&self.keys, &sealed, id)
            }

            async fn create_mapping(
                &self,
                destination_id: &str,
                content: $crate::store::MappingContent,
            ) -> $crate::store::Result<$crate::store::MappingRecord> {
                let $crate::store::MappingContent {
                    name,
                    model,
                    enabled,
                    document,
                } = content;
                let id = $crate::store::new_id("map_")?;
                let mut tx = self.begin().await?;
                let result = async {
                    // Writers are serialised, so the count holds until the commit.
                    let count: Option<(i64,)> = sqlx::query_as(Self::SQL.count_mappings)
                        .bind(destination_id)
                        .fetch_optional(tx.conn())
                        .await
                        .map_err(Self::error)?;
                    $crate::store::check_mapping_count(destination_id, count.map(|(n,)| n))?;
                    let row: $crate::store::rows::MappingRow =
                        sqlx::query_as(Self::SQL.create_mapping)
                            .bind(&id)
                            .bind(destination_id)
                            .bind(name.as_str())
                            .bind(&model)
                            .bind(enabled)
                            .bind(&document)
                            .fetch_one(tx.conn())
                            .await
                            .map_err(|e| {
                                Self::name_error(
                                    e,
                                    $crate::store::Kind::Mapping,
                                    name.as_str(),
                                    Some(destination_id),
                                )
                            })?;
                    Ok(row.into())
                }
                .await;
                self.finish(tx, result).await
            }

            async fn get_mapping(
                &self,
                id: &str,
            ) -> $crate::store::Result<$crate::store::MappingRecord> {
                let row: Option<$crate::store::rows::MappingRow> =
                    sqlx::query_as(Self::SQL.get_mapping)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(Self::error)?;
                row.map(Into::into).ok_or_else(|| {
                    $crate::store::StoreError::not_found($crate::store::Kind::Mapping, id)
                })
            }

            async fn list_mappings(
                &self,
                destination_id: &str,
            ) -> $crate::store::Result<Vec<$crate::store::MappingRecord>> {
                if Self::row_version(&self.pool, Self::SQL.destination_version, destination_id)
                    .await?
                    .is_none()
                {
                    return Err($crate::store::StoreError::not_found(
                        $crate::store::Kind::Destination,
                        destination_id,
                    ));
                }
                let rows: Vec<$crate::store::rows::MappingRow> =
                    sqlx::query_as(Self::SQL.list_mappings)
                        .bind(destination_id)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::error)?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn update_mapping(
                &self,
                id: &str,
                version: u64,
                content: $crate::store::MappingContent,
            ) -> $crate::store::Result<$crate::store::MappingRecord> {
                let $crate::store::MappingContent {
                    name,
                    model,
                    enabled,
                    document,
                } = content;
                let mut tx = self.begin().await?;
                let result = async {
                    // In the write's transaction (writers are serialised): the state it changes.
                    let current: Option<$crate::store::rows::MappingRow> =
                        sqlx::query_as(Self::SQL.get_mapping)
                            .bind(id)
                            .fetch_optional(tx.conn())
                            .await
                            .map_err(Self::error)?;
                    let current: $crate::store::MappingRecord = current
                        .ok_or_else(|| {
                            $crate::store::StoreError::not_found($crate::store::Kind::Mapping, id)
                        })?
                        .into();
                    // A stale version is ABORTED even when the content is unchanged.
                    if current.version != version {
                        return Err($crate::store::StoreError::stale_or_missing(
                            $crate::store::Kind::Mapping,
                            id,
                            version,
                            Some(current.version),
                        ));
                    }
                    let content = $crate::store::MappingContent {
                        name,
                        model,
                        enabled,
                        document,
                    };
                    if content.unchanged(&current) {
                        return Ok($crate::store::shared::Outcome::Unchanged(current));
                    }
                    let $crate::store::MappingContent {
                        name,
                        model,
                        enabled,
                        document,
                    } = content;
                    let row: Option<$crate::store::rows::MappingRow> =
                        sqlx::query_as(Self::SQL.update_mapping)
                            .bind(name.as_str())
                            .bind(&model)
                            .bind(enabled)
                            .bind(&document)
                            .bind(id)
                            .bind(version as i64)
                            .fetch_optional(tx.conn())
                            .await
                            .map_err(|e| {
                                Self::name_error(
                                    e,
                                    $crate::store::Kind::Mapping,
                                    name.as_str(),
                                    None,
                                )
                            })?;
                    let Some(row) = row else {
                        return Err($crate::store::StoreError::stale_or_missing(
                            $crate::store::Kind::Mapping,
                            id,
                            version,
                            Self::row_version(tx.conn(), Self::SQL.mapping_version, id).await?,
                        ));
                    };
                    // What the ledger holds are the old model's records: kept, the first FULL
                    // sync of the new model would delete them all at the destination.
                    if model != current.model {
                        sqlx::query(Self::LEDGER.forget_mapping)
                            .bind(id)
                            .execute(tx.conn())
                            .await
                            .map_err(Self::error)?;
                    }
                    Ok($crate::store::shared::Outcome::Changed(row.into()))
                }
                .await;
                self.finish_unless_unchanged(tx, result).await
            }

            async fn delete_mapping(&self, id: &str) -> $crate::store::Result<()> {
                self.delete(Self::SQL.delete_mapping, $crate::store::Kind::Mapping, id)
                    .await
            }

            async fn catalog_version(&self) -> $crate::store::Result<u64> {
                Self::current_version(&self.pool).await
            }

            fn subscribe_changes(&self) -> Option<tokio::sync::broadcast::Receiver<u64>> {
                Some(self.feed.subscribe())
            }

            async fn reencrypt_write_keys(&self) -> $crate::store::Result<u64> {
                let stale = self.stored_keys(true).await?;
                let mut tx = self.begin().await?;
                let result = async {
                    let mut done = 0;
                    for $crate::store::StoredKey {
                        destination_id,
                        sealed,
                    } in stale
                    {
                        let plain = self.keys.open(&sealed, destination_id.as_bytes())?;
                        let fresh = self.keys.seal(&plain, destination_id.as_bytes())?;
                        // Only if nobody replaced the write key since it was read (nonces never
                        // repeat).
                        let updated = sqlx::query(Self::SQL.reseal_write_key)
                            .bind(&fresh.key_id)
                            .bind(&fresh.nonce)
                            .bind(&fresh.ciphertext)
                            .bind(&destination_id)
                            .bind(&sealed.nonce)
                            .execute(tx.conn())
                            .await
                            .map_err(Self::error)?;
                        done += updated.rows_affected();
                    }
                    Ok(done)
                }
                .await;
                if let Ok(0) = result {
                    // Nothing changed: no new version.
                    Self::rollback(tx).await;
                    return Ok(0);
                }
                self.finish(tx, result).await
            }

            async fn add_usage(
                &self,
                deltas: &[$crate::usage::Delta],
            ) -> $crate::store::Result<()> {
                if deltas.is_empty() {
                    return Ok(());
                }
                // A transaction of its own, outside the write protocol: usage is no catalog
                // change, so no version moves and no cache reloads.
                let mut conn = self.pool.acquire().await.map_err(Self::error)?;
                sqlx::raw_sql(Self::SQL.begin)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::error)?;
                let mut tx = $crate::store::shared::Write {
                    conn,
                    version: 0,
                    done: false,
                };
                let mut result = Ok(());
                for d in deltas {
                    result = Self::add_one_usage(tx.conn(), d).await;
                    if result.is_err() {
                        break;
                    }
                }
                if let Err(e) = result {
                    Self::rollback(tx).await;
                    return Err(e);
                }
                sqlx::raw_sql($crate::store::sql::COMMIT)
                    .execute(tx.conn())
                    .await
                    .map_err(Self::error)?;
                tx.done = true;
                Ok(())
            }

            async fn usage(
                &self,
                destination_id: &str,
                month: $crate::usage::Month,
            ) -> $crate::store::Result<$crate::usage::Usage> {
                if Self::row_version(&self.pool, Self::SQL.destination_version, destination_id)
                    .await?
                    .is_none()
                {
                    return Err($crate::store::StoreError::not_found(
                        $crate::store::Kind::Destination,
                        destination_id,
                    ));
                }
                let row: Option<(i64, i64, i64, Option<Vec<u8>>)> =
                    sqlx::query_as(Self::SQL.usage_get)
                        .bind(destination_id)
                        .bind(month.to_string())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(Self::error)?;
                let Some((calls, batches, bytes, sketch)) = row else {
                    return Ok($crate::usage::Usage::default());
                };
                let n = |v: i64| u64::try_from(v).unwrap_or(0);
                Ok($crate::usage::Usage {
                    counts: $crate::usage::Counts {
                        calls: n(calls),
                        batches: n(batches),
                        bytes: n(bytes),
                    },
                    users: Self::stored_sketch(destination_id, month, sketch),
                })
            }
        }
    };
}

pub(super) use sql_store;
