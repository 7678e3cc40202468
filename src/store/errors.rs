//! What a failed database call means, the same for both backends: one small function per backend
//! reads its own codes into a shared [`Class`], which becomes the [`StoreError`].
//!
//! | Class | SQLite (primary result code) | PostgreSQL (SQLSTATE) | both |
//! | --- | --- | --- | --- |
//! | `Unavailable` (retry may succeed) | `SQLITE_BUSY` 5, `SQLITE_LOCKED` 6, `SQLITE_IOERR` 10 | class 08, 57P01-03, 53300, 40001, 40P01, 55P03 | I/O, TLS, pool timed out or closed, worker crashed, `BEGIN` failed |
//! | `Full` | `SQLITE_FULL` 13 | 53100 `disk_full` | I/O error `StorageFull` |
//! | `UniqueViolation` | (sqlx: `SQLITE_CONSTRAINT_UNIQUE`, `_PRIMARYKEY`) | (sqlx: 23505) | |

use super::{Kind, StoreError};

/// A failure as the store reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// The database cannot take the call now (down, locked past the timeout, an I/O error).
    Unavailable,
    /// No room left for the write.
    Full,
    /// A unique constraint: a name taken.
    UniqueViolation,
    Other,
}

/// SQLite's primary result codes (the low byte of an extended code).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_IOERR: i32 = 10;
const SQLITE_FULL: i32 = 13;

pub(super) fn sqlite(e: &sqlx::Error) -> Class {
    database_code(e, |code| match code.parse::<i32>().map(|c| c & 0xff) {
        Ok(SQLITE_FULL) => Some(Class::Full),
        Ok(SQLITE_BUSY | SQLITE_LOCKED | SQLITE_IOERR) => Some(Class::Unavailable),
        _ => None,
    })
}

pub(super) fn postgres(e: &sqlx::Error) -> Class {
    database_code(e, |code| match code {
        "53100" => Some(Class::Full),
        // Class 08: connection exception; 57P01-03: shutting down, crashed, starting up;
        // 53300: too many connections; 40001/40P01: serialisation failure, deadlock;
        // 55P03: lock_timeout.
        "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01" | "55P03" => {
            Some(Class::Unavailable)
        }
        _ if code.starts_with("08") => Some(Class::Unavailable),
        _ => None,
    })
}

/// The classification of the backend's own database codes (`by_code`), and the rest, which is
/// the same for both.
fn database_code(e: &sqlx::Error, by_code: impl FnOnce(&str) -> Option<Class>) -> Class {
    match e {
        sqlx::Error::Database(db) => {
            db.code()
                .and_then(|code| by_code(&code))
                .unwrap_or(if db.is_unique_violation() {
                    Class::UniqueViolation
                } else {
                    Class::Other
                })
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => Class::Full,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => Class::Unavailable,
        _ => Class::Other,
    }
}

impl Class {
    /// The store error for `e` (a unique violation where no name was expected is a backend
    /// error).
    pub(super) fn error(self, e: sqlx::Error) -> StoreError {
        match self {
            Class::Unavailable => StoreError::Unavailable(Box::new(e)),
            Class::Full => StoreError::Full(Box::new(e)),
            Class::UniqueViolation | Class::Other => StoreError::Backend(Box::new(e)),
        }
    }

    /// The store error for `e` from a write of the name `name` of `kind`.
    pub(super) fn name_error(
        self,
        e: sqlx::Error,
        kind: Kind,
        name: &str,
        scope: Option<&str>,
    ) -> StoreError {
        match self {
            Class::UniqueViolation => StoreError::NameTaken {
                kind,
                name: name.to_owned(),
                scope: scope.map(str::to_owned),
            },
            class => class.error(e),
        }
    }
}

/// A failed file operation of ours (the SQLite store's directory).
pub(super) fn io(e: std::io::Error) -> StoreError {
    match e.kind() {
        std::io::ErrorKind::StorageFull => StoreError::Full(Box::new(e)),
        _ => StoreError::Backend(Box::new(e)),
    }
}

/// A failed migration: its statement's failure classified by `classify`, else a backend error.
pub(super) fn migration(
    e: sqlx::migrate::MigrateError,
    classify: fn(&sqlx::Error) -> Class,
) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => classify(&e).error(e),
        e => StoreError::Backend(format!("migrating the database: {e}").into()),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// A database error with the given code.
    #[derive(Debug)]
    struct Db {
        code: &'static str,
        unique: bool,
    }

    impl std::fmt::Display for Db {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "code {}", self.code)
        }
    }

    impl std::error::Error for Db {}

    impl sqlx::error::DatabaseError for Db {
        fn message(&self) -> &str {
            "test"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(self.code.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            if self.unique {
                sqlx::error::ErrorKind::UniqueViolation
            } else {
                sqlx::error::ErrorKind::Other
            }
        }
    }

    fn db(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Db {
            code,
            unique: false,
        }))
    }

    fn unique(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Db { code, unique: true }))
    }

    #[test]
    fn both_backends_classify_alike() {
        use Class::*;
        // SQLite: extended codes read by their primary code.
        for (code, class) in [
            ("5", Unavailable),   // SQLITE_BUSY
            ("517", Unavailable), // SQLITE_BUSY_SNAPSHOT
            ("6", Unavailable),   // SQLITE_LOCKED
            ("262", Unavailable), // SQLITE_LOCKED_SHAREDCACHE
            ("10", Unavailable),  // SQLITE_IOERR
            ("778", Unavailable), // SQLITE_IOERR_WRITE
            ("13", Full),         // SQLITE_FULL
            ("1", Other),         // SQLITE_ERROR
            ("11", Other),        // SQLITE_CORRUPT
        ] {
            assert_eq!(sqlite(&db(code)), class, "SQLite {code}");
        }
        assert_eq!(sqlite(&unique("2067")), UniqueViolation);
        for (code, class) in [
            ("08006", Unavailable),
            ("57P01", Unavailable),
            ("53300", Unavailable),
            ("40001", Unavailable),
            ("40P01", Unavailable),
            ("55P03", Unavailable),
            ("53100", Full),
            ("42601", Other),
        ] {
            assert_eq!(postgres(&db(code)), class, "PostgreSQL {code}");
        }
        assert_eq!(postgres(&unique("23505")), UniqueViolation);
        // What is not a database's code is read alike.
        let full = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        for classify in [sqlite, postgres] {
            assert_eq!(classify(&sqlx::Error::Io(full())), Full);
            assert_eq!(classify(&sqlx::Error::Io(refused())), Unavailable);
            assert_eq!(classify(&sqlx::Error::PoolTimedOut), Unavailable);
            assert_eq!(classify(&sqlx::Error::PoolClosed), Unavailable);
            assert_eq!(classify(&sqlx::Error::WorkerCrashed), Unavailable);
            assert_eq!(classify(&sqlx::Error::RowNotFound), Other);
            assert_eq!(classify(&sqlx::Error::Protocol("x".into())), Other);
        }
    }

    #[test]
    fn classes_become_store_errors() {
        assert!(matches!(
            Class::Unavailable.error(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(Class::Full.error(db("13")), StoreError::Full(_)));
        assert!(matches!(
            Class::UniqueViolation.error(unique("23505")),
            StoreError::Backend(_)
        ));
        match Class::UniqueViolation.name_error(unique("23505"), Kind::Mapping, "m", Some("dst_1"))
        {
            StoreError::NameTaken {
                kind: Kind::Mapping,
                name,
                scope: Some(scope),
            } => assert_eq!((name.as_str(), scope.as_str()), ("m", "dst_1")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Class::Unavailable.name_error(sqlx::Error::PoolClosed, Kind::Mapping, "m", None),
            StoreError::Unavailable(_)
        ));
    }
}
