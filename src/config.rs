//! `serve` settings: the raw flags (each also an environment variable
//! `SEGMENT_CONNECTIONS_<FLAG>`) and the validated [`Settings`] built from them at start-up.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::delivery::DeliverySettings;
use crate::segment::RetrySettings;

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
    /// Where destinations and mappings live: sqlite://PATH (postgres:// is planned).
    #[arg(long, env = "SEGMENT_CONNECTIONS_STORE", default_value = DEFAULT_STORE)]
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
    /// The deadline of a SubmitRows call whose caller sets none (grpc-timeout).
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_DEADLINE_SECONDS",
        default_value_t = 30
    )]
    pub deadline_seconds: u64,
    /// The most rows one SubmitRows request or StreamRows chunk may carry.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_MAX_SUBMIT_ROWS",
        default_value_t = 10_000
    )]
    pub max_submit_rows: usize,
    /// Attempts per batch sent to the Tracking API, the first included.
    #[arg(long, env = "SEGMENT_CONNECTIONS_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    /// The timeout of one attempt to the Tracking API.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_ATTEMPT_TIMEOUT_SECONDS",
        default_value_t = 10
    )]
    pub attempt_timeout_seconds: u64,
    /// Batches in flight per destination (backoff sleeps included).
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_MAX_IN_FLIGHT_BATCHES",
        default_value_t = 32
    )]
    pub max_in_flight_batches: usize,
    /// StreamRows: rows in flight per stream; reading pauses while full.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_STREAM_ROWS_IN_FLIGHT",
        default_value_t = 10_000
    )]
    pub stream_rows_in_flight: usize,
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
    /// Sending rows to the Tracking API.
    pub delivery: DeliverySettings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
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
    #[error("--store postgres://...: PostgreSQL is not supported yet; use sqlite://PATH")]
    PostgresUnsupported,
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
            deadline_seconds,
            max_submit_rows,
            max_attempts,
            attempt_timeout_seconds,
            max_in_flight_batches,
            stream_rows_in_flight,
            log_format,
        } = args;
        let listen = listen
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::Listen(listen.clone()))?;
        let given_key = match (encryption_key, encryption_key_file) {
            (Some(k), _) => Some(KeySource::Inline(KeyText(k))),
            (None, Some(f)) => Some(KeySource::File(f)),
            (None, None) => None,
        };
        let (store, encryption_key) = if let Some(path) = store
            .strip_prefix("sqlite://")
            .or_else(|| store.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(ConfigError::Store(store));
            }
            let key = given_key
                .unwrap_or_else(|| KeySource::CreateIfMissing(PathBuf::from(DEFAULT_KEY_FILE)));
            (StoreLocation::Sqlite(PathBuf::from(path)), key)
        } else if store.starts_with("postgres://") || store.starts_with("postgresql://") {
            return Err(match given_key {
                None => ConfigError::PostgresNeedsKey,
                Some(_) => ConfigError::PostgresUnsupported,
            });
        } else {
            return Err(ConfigError::Store(store));
        };
        if max_request_bytes == 0 {
            return Err(ConfigError::Zero("max-request-bytes"));
        }
        for (flag, value) in [
            ("max-test-rows", max_test_rows as u64),
            ("deadline-seconds", deadline_seconds),
            ("max-submit-rows", max_submit_rows as u64),
            ("max-attempts", u64::from(max_attempts)),
            ("attempt-timeout-seconds", attempt_timeout_seconds),
            ("max-in-flight-batches", max_in_flight_batches as u64),
            ("stream-rows-in-flight", stream_rows_in_flight as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(flag));
            }
        }
        let defaults = DeliverySettings::default();
        let delivery = DeliverySettings {
            retry: RetrySettings {
                max_attempts,
                attempt_timeout: Duration::from_secs(attempt_timeout_seconds),
                max_in_flight: max_in_flight_batches,
                ..defaults.retry.clone()
            },
            default_deadline: Duration::from_secs(deadline_seconds),
            max_rows: max_submit_rows,
            stream_rows_in_flight,
            ..defaults
        };
        Ok(Settings {
            listen,
            store,
            encryption_key,
            max_request_bytes,
            max_test_rows,
            shutdown_grace: Duration::from_secs(shutdown_grace_seconds),
            log_format,
            delivery,
        })
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
        assert_eq!(
            settings(&["--store", "postgres://db/app", "--encryption-key", "00"]).unwrap_err(),
            ConfigError::PostgresUnsupported
        );
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
