//! `serve` settings: the raw flags (each also an environment variable
//! `SEGMENT_CONNECTIONS_<FLAG>`) and the validated [`Settings`] built from them at start-up.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The default store: an SQLite file, created on first run.
pub const DEFAULT_STORE: &str = "sqlite://./data/connections.db";
/// Where `serve` keeps the key it creates when SQLite is used and no key is given.
pub const DEFAULT_KEY_FILE: &str = "./data/master.key";

/// `serve`'s flags as given.
#[derive(Clone, clap::Args)]
pub struct ServeArgs {
    /// The gRPC address to listen on.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: String,
    /// Where destinations and mappings live: sqlite://PATH, or postgres://... for several
    /// replicas (an encryption key is then required).
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_STORE",
        default_value = DEFAULT_STORE,
        hide_env_values = true
    )]
    pub store: String,
    /// A file holding the write-key encryption key (64 hex digits; further lines are previous
    /// keys, kept to decrypt older write keys). Default with SQLite: ./data/master.key, created.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_ENCRYPTION_KEY_FILE",
        conflicts_with = "encryption_key"
    )]
    pub encryption_key_file: Option<PathBuf>,
    /// The write-key encryption key itself (64 hex digits).
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_ENCRYPTION_KEY",
        hide_env_values = true
    )]
    pub encryption_key: Option<String>,
    /// The largest request message accepted, in bytes (larger: OUT_OF_RANGE).
    #[arg(long, env = "SEGMENT_CONNECTIONS_MAX_REQUEST_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// The most rows one TestMapping request may carry.
    #[arg(long, env = "SEGMENT_CONNECTIONS_MAX_TEST_ROWS", default_value_t = 100)]
    pub max_test_rows: usize,
    /// How long in-flight calls may run on after SIGTERM/SIGINT.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 20
    )]
    pub shutdown_grace_seconds: u64,
    /// Log format.
    #[arg(long, env = "SEGMENT_CONNECTIONS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Validated settings for `serve`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub store: StoreLocation,
    pub encryption_key: KeySource,
    pub max_request_bytes: usize,
    pub max_test_rows: usize,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Postgres(DatabaseUrl),
}

/// A PostgreSQL URL; `Debug` hides its password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(pub String);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // postgres://user:password@host/db → postgres://user:[redacted]@host/db
        let url = &self.0;
        let redacted = url.split_once("://").and_then(|(scheme, rest)| {
            let (userinfo, host) = rest.split_once('@')?;
            let (user, _password) = userinfo.split_once(':')?;
            Some(format!("{scheme}://{user}:[redacted]@{host}"))
        });
        write!(f, "{:?}", redacted.as_deref().unwrap_or(url))
    }
}

/// Where the write-key encryption key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Given inline (`--encryption-key`).
    Inline(KeyText),
    /// A file that must exist.
    File(PathBuf),
    /// SQLite's default: this file, created (mode 0600) if missing, with a warning.
    CreateIfMissing(PathBuf),
}

/// Key text that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyText(pub String);

impl fmt::Debug for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A setting that does not make sense (start-up stops with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--listen {0:?}: not a socket address (e.g. 127.0.0.1:50051)")]
    Listen(String),
    #[error("--store {0:?}: expected sqlite://PATH or postgres://...")]
    Store(String),
    #[error(
        "--store postgres://...: an encryption key is required with PostgreSQL \
         (--encryption-key-file or --encryption-key)"
    )]
    PostgresNeedsKey,
    #[error("--{0}: must be at least 1")]
    Zero(&'static str),
}

impl TryFrom<ServeArgs> for Settings {
    type Error = ConfigError;

    fn try_from(args: ServeArgs) -> Result<Settings, ConfigError> {
        let ServeArgs {
            listen,
            store,
            encryption_key_file,
            encryption_key,
            max_request_bytes,
            max_test_rows,
            shutdown_grace_seconds,
            log_format,
        } = args;
        let listen = listen
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::Listen(listen.clone()))?;
        let (store, encryption_key) = store_and_key(store, encryption_key, encryption_key_file)?;
        if max_request_bytes == 0 {
            return Err(ConfigError::Zero("max-request-bytes"));
        }
        if max_test_rows == 0 {
            return Err(ConfigError::Zero("max-test-rows"));
        }
        Ok(Settings {
            listen,
            store,
            encryption_key,
            max_request_bytes,
            max_test_rows,
            shutdown_grace: Duration::from_secs(shutdown_grace_seconds),
            log_format,
        })
    }
}

/// The store and the key source from `--store`, `--encryption-key` and
/// `--encryption-key-file`: with SQLite and no key, the default key file (created); with
/// PostgreSQL a key is required.
pub fn store_and_key(
    store: String,
    encryption_key: Option<String>,
    encryption_key_file: Option<PathBuf>,
) -> Result<(StoreLocation, KeySource), ConfigError> {
    let given_key = match (encryption_key, encryption_key_file) {
        (Some(k), _) => Some(KeySource::Inline(KeyText(k))),
        (None, Some(f)) => Some(KeySource::File(f)),
        (None, None) => None,
    };
    if let Some(path) = store
        .strip_prefix("sqlite://")
        .or_else(|| store.strip_prefix("sqlite:"))
    {
        if path.is_empty() {
            return Err(ConfigError::Store(store));
        }
        let key = given_key
            .unwrap_or_else(|| KeySource::CreateIfMissing(PathBuf::from(DEFAULT_KEY_FILE)));
        Ok((StoreLocation::Sqlite(PathBuf::from(path)), key))
    } else if store.starts_with("postgres://") || store.starts_with("postgresql://") {
        let key = given_key.ok_or(ConfigError::PostgresNeedsKey)?;
        Ok((StoreLocation::Postgres(DatabaseUrl(store)), key))
    } else {
        Err(ConfigError::Store(store))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn settings(args: &[&str]) -> Result<Settings, ConfigError> {
        let cli =
            Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).unwrap();
        Settings::try_from(cli.serve)
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.listen, "127.0.0.1:50051".parse().unwrap());
        assert_eq!(
            s.store,
            StoreLocation::Sqlite("./data/connections.db".into())
        );
        assert_eq!(
            s.encryption_key,
            KeySource::CreateIfMissing(DEFAULT_KEY_FILE.into())
        );
    }

    #[test]
    fn key_rules() {
        let s = settings(&["--encryption-key-file", "/k"]).unwrap();
        assert_eq!(s.encryption_key, KeySource::File("/k".into()));
        assert_eq!(
            settings(&["--store", "postgres://db/app"]).unwrap_err(),
            ConfigError::PostgresNeedsKey
        );
        let s = settings(&[
            "--store",
            "postgres://app:hunter2@db/app",
            "--encryption-key-file",
            "/k",
        ])
        .unwrap();
        assert_eq!(
            s.store,
            StoreLocation::Postgres(DatabaseUrl("postgres://app:hunter2@db/app".into()))
        );
        assert!(!format!("{s:?}").contains("hunter2"), "{s:?}");
        assert!(format!("{s:?}").contains("postgres://app:[redacted]@db/app"));
        assert!(
            format!("{:?}", settings(&["--encryption-key", "abcdef"]).unwrap())
                .contains("[redacted]")
        );
    }

    #[test]
    fn rejects_nonsense() {
        assert!(matches!(
            settings(&["--listen", "nowhere"]),
            Err(ConfigError::Listen(_))
        ));
        assert!(matches!(
            settings(&["--store", "mysql://x"]),
            Err(ConfigError::Store(_))
        ));
        assert!(matches!(
            settings(&["--max-test-rows", "0"]),
            Err(ConfigError::Zero(_))
        ));
    }
}
