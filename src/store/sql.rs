//! Every statement the two SQL backends run, each written once with `$N` placeholders (sqlx's
//! SQLite binds `$N` as PostgreSQL does), stamped for each dialect by [`stamp!`]. Where the
//! dialects truly differ the difference is one fragment, named and explained here:
//!
//! - `begin`: SQLite takes the write lock at `BEGIN IMMEDIATE` (waiting up to the busy
//!   timeout), so a write never fails half-way for want of it; PostgreSQL's plain `BEGIN`
//!   suffices, as the version bump that follows locks the version row.
//! - `now`: the timestamp columns are text on SQLite (ISO 8601, as the schema's defaults write
//!   them) and `timestamptz` on PostgreSQL.
//! - `byte_order`: lists sort by name in byte order, ties by id. SQLite's default collation,
//!   `BINARY`, is byte order; PostgreSQL's default is the database's locale, and byte order is
//!   `COLLATE "C"`, a name SQLite does not know.
//! - `for_update`: a usage flush reads, merges and writes a month's sketch under the row's lock;
//!   PostgreSQL takes it with `FOR UPDATE` (so two replicas flushing at once never lose each
//!   other's registers), SQLite has no such clause and needs none (`BEGIN IMMEDIATE` already
//!   holds the database's write lock).
//!
//! The change-version protocol is the same in both: every write's transaction begins with
//! [`Statements::bump_version`], which returns the version the write will be announced as.

/// The statements of one dialect.
pub(super) struct Statements {
    pub begin: &'static str,
    /// Bumps the store-wide change version; first in every write's transaction (on PostgreSQL
    /// this also serialises writers, so versions follow commit order).
    pub bump_version: &'static str,
    pub catalog_version: &'static str,
    /// `$1`: only those not sealed with the key `$2`.
    pub stored_keys: &'static str,
    pub create_destination: &'static str,
    pub get_destination: &'static str,
    pub list_destinations: &'static str,
    /// Conditional on the version `$9`; `NULL` leaves a column as it is.
    pub update_destination: &'static str,
    pub delete_destination: &'static str,
    pub destination_version: &'static str,
    pub destination_write_key: &'static str,
    /// Replaces the write key of `$4` only if it is still the one with nonce `$5`.
    pub reseal_write_key: &'static str,
    /// No row: no destination `$1`; else how many mappings it has.
    pub count_mappings: &'static str,
    pub create_mapping: &'static str,
    pub get_mapping: &'static str,
    pub list_mappings: &'static str,
    /// Conditional on the version `$6`.
    pub update_mapping: &'static str,
    pub delete_mapping: &'static str,
    pub mapping_version: &'static str,
    /// Usage (outside the change-version protocol: it changes no destination or mapping).
    /// Creates the month's row of `$1` if the destination exists and the row does not.
    pub usage_ensure: &'static str,
    /// The month's row, locked until the transaction ends (PostgreSQL).
    pub usage_lock: &'static str,
    /// Adds `$3`..`$5` to the counters; `$6` is the merged sketch.
    pub usage_update: &'static str,
    pub usage_get: &'static str,
}

pub(super) const COMMIT: &str = "COMMIT";
pub(super) const ROLLBACK: &str = "ROLLBACK";

macro_rules! destination_columns {
    () => {
        "id, name, region, write_key_fingerprint, enabled, version, rate_limit"
    };
}

macro_rules! mapping_columns {
    () => {
        "id, destination_id, name, model, enabled, version, document"
    };
}

/// The statements, with the dialect's fragments (see the module's documentation).
macro_rules! stamp {
    (
        begin: $begin:literal,
        now: $now:literal,
        byte_order: $bytes:literal,
        for_update: $for_update:literal $(,)?
    ) => {
        Statements {
            begin: $begin,
            bump_version: "UPDATE catalog SET version = version + 1 RETURNING version",
            catalog_version: "SELECT version FROM catalog",
            stored_keys: concat!(
                "SELECT id, write_key_key_id, write_key_nonce, write_key_ciphertext \
                 FROM destinations WHERE NOT $1 OR write_key_key_id <> $2 ORDER BY id ",
                $bytes
            ),
            create_destination: concat!(
                "INSERT INTO destinations (id, name, region, write_key_key_id, write_key_nonce, \
                 write_key_ciphertext, write_key_fingerprint, enabled, rate_limit, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1) RETURNING ",
                destination_columns!()
            ),
            get_destination: concat!(
                "SELECT ",
                destination_columns!(),
                " FROM destinations WHERE id = $1"
            ),
            list_destinations: concat!(
                "SELECT ",
                destination_columns!(),
                " FROM destinations ORDER BY name ",
                $bytes,
                ", id ",
                $bytes
            ),
            update_destination: concat!(
                "UPDATE destinations SET \
                   name = COALESCE($1, name), \
                   region = COALESCE($2, region), \
                   write_key_key_id = COALESCE($3, write_key_key_id), \
                   write_key_nonce = COALESCE($4, write_key_nonce), \
                   write_key_ciphertext = COALESCE($5, write_key_ciphertext), \
                   write_key_fingerprint = COALESCE($6, write_key_fingerprint), \
                   enabled = COALESCE($7, enabled), \
                   rate_limit = COALESCE($8, rate_limit), \
                   version = version + 1, \
                   updated_at = ",
                $now,
                " WHERE id = $9 AND version = $10 RETURNING ",
                destination_columns!()
            ),
            delete_destination: "DELETE FROM destinations WHERE id = $1",
            destination_version: "SELECT version FROM destinations WHERE id = $1",
            destination_write_key: "SELECT write_key_key_id, write_key_nonce, write_key_ciphertext \
                                    FROM destinations WHERE id = $1",
            reseal_write_key: "UPDATE destinations \
                               SET write_key_key_id = $1, write_key_nonce = $2, \
                                   write_key_ciphertext = $3 \
                               WHERE id = $4 AND write_key_nonce = $5",
            count_mappings: "SELECT (SELECT COUNT(*) FROM mappings WHERE destination_id = $1) \
                             FROM destinations WHERE id = $1",
            create_mapping: concat!(
                "INSERT INTO mappings (id, destination_id, name, model, enabled, version, \
                 document) VALUES ($1, $2, $3, $4, $5, 1, $6) RETURNING ",
                mapping_columns!()
            ),
            get_mapping: concat!(
                "SELECT ",
                mapping_columns!(),
                " FROM mappings WHERE id = $1"
            ),
            list_mappings: concat!(
                "SELECT ",
                mapping_columns!(),
                " FROM mappings WHERE destination_id = $1 ORDER BY name ",
                $bytes,
                ", id ",
                $bytes
            ),
            update_mapping: concat!(
                "UPDATE mappings SET name = $1, model = $2, enabled = $3, document = $4, \
                   version = version + 1, updated_at = ",
                $now,
                " WHERE id = $5 AND version = $6 RETURNING ",
                mapping_columns!()
            ),
            delete_mapping: "DELETE FROM mappings WHERE id = $1",
            mapping_version: "SELECT version FROM mappings WHERE id = $1",
            usage_ensure: "INSERT INTO destination_usage (destination_id, month) \
                           SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM destinations WHERE id = $1) \
                           ON CONFLICT (destination_id, month) DO NOTHING",
            usage_lock: concat!(
                "SELECT users_sketch FROM destination_usage \
                 WHERE destination_id = $1 AND month = $2",
                $for_update
            ),
            usage_update: "UPDATE destination_usage SET calls = calls + $3, \
                           batches = batches + $4, bytes = bytes + $5, users_sketch = $6 \
                           WHERE destination_id = $1 AND month = $2",
            usage_get: "SELECT calls, batches, bytes, users_sketch FROM destination_usage \
                        WHERE destination_id = $1 AND month = $2",
        }
    };
}

pub(super) const SQLITE: Statements = stamp!(
    begin: "BEGIN IMMEDIATE",
    now: "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
    byte_order: "COLLATE BINARY",
    for_update: "",
);

pub(super) const POSTGRES: Statements = stamp!(
    begin: "BEGIN",
    now: "now()",
    byte_order: "COLLATE \"C\"",
    for_update: " FOR UPDATE",
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The dialects differ only where the module's documentation says.
    #[test]
    fn the_dialects_differ_only_in_their_fragments() {
        let same = |s: &str, pg: &str| {
            let s = s
                .replace("BEGIN IMMEDIATE", "BEGIN")
                .replace("strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", "now()")
                .replace("COLLATE BINARY", "COLLATE \"C\"");
            assert_eq!(s, pg);
        };
        let all = |s: &Statements| {
            [
                s.begin,
                s.bump_version,
                s.catalog_version,
                s.stored_keys,
                s.create_destination,
                s.get_destination,
                s.list_destinations,
                s.update_destination,
                s.delete_destination,
                s.destination_version,
                s.destination_write_key,
                s.reseal_write_key,
                s.count_mappings,
                s.create_mapping,
                s.get_mapping,
                s.list_mappings,
                s.update_mapping,
                s.delete_mapping,
                s.mapping_version,
                s.usage_ensure,
                s.usage_update,
                s.usage_get,
            ]
        };
        for (s, pg) in all(&SQLITE).into_iter().zip(all(&POSTGRES)) {
            same(s, pg);
            assert!(!s.contains('?'), "{s}");
        }
        assert_eq!(
            format!("{} FOR UPDATE", SQLITE.usage_lock),
            POSTGRES.usage_lock
        );
        assert!(
            POSTGRES
                .list_mappings
                .ends_with("ORDER BY name COLLATE \"C\", id COLLATE \"C\"")
        );
    }
}
