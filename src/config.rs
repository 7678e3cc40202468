//! `serve` settings: the raw flags (each also an environment variable
//! `SEGMENT_CONNECTIONS_<FLAG>`) and the validated [`Settings`] built from them at start-up.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::delivery::DeliverySettings;
use crate::limits::{DEFAULT_MAX_ROW_BYTES, DEFAULT_MAX_VALUE_BYTES, RequestLimits, RowLimits};
use crate::sender::RetrySettings;
use crate::store::AllowedUpstreams;
use crate::store::redact_store_url;
use crate::sync::SyncSettings;

/// The default store: an SQLite file, created on first run.
pub(crate) const DEFAULT_STORE: &str = "sqlite://./data/connections.db";
/// Where `serve` keeps the key it creates when SQLite is used and no key is given.
pub(crate) const DEFAULT_KEY_FILE: &str = "./data/master.key";

/// The store and its key (`serve` and `keys rotate` take the same flags and environment
/// variables).
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
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
    /// keys, kept to decrypt older write keys). Default with SQLite: ./data/master.key
    /// (`serve` creates it).
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
}

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
    #[command(flatten)]
    pub store: StoreArgs,
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
    /// Gzip-compress request bodies to the Tracking API (`Content-Encoding: gzip`); `false`
    /// sends them as plain JSON.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_UPSTREAM_GZIP",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub upstream_gzip: bool,
    /// StreamRows: rows in flight per stream; reading pauses while full.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_STREAM_ROWS_IN_FLIGHT",
        default_value_t = 10_000
    )]
    pub stream_rows_in_flight: usize,
    /// StreamRows: a stream with no message and nothing in flight for this long is closed
    /// (DEADLINE_EXCEEDED); the header must come within it too.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_STREAM_IDLE_SECONDS",
        default_value_t = 60
    )]
    pub stream_idle_seconds: u64,
    /// StreamRows: how many of a stream's latest messageIds each new event is checked against
    /// for DUPLICATE_MESSAGE_ID (16 bytes each, about 50 bytes with the index).
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_STREAM_DEDUP_WINDOW",
        default_value_t = 100_000
    )]
    pub stream_dedup_window: usize,
    /// Syncs: a record whose event failed (retryably) is retried by at most this many syncs of
    /// its model, then given up (GAVE_UP, until its row changes or the model is reset).
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_SYNC_RETRY_SYNCS",
        default_value_t = 5
    )]
    pub sync_retry_syncs: u32,
    /// Syncs: … and for at most this many days after it first failed.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_SYNC_RETRY_DAYS",
        default_value_t = 14
    )]
    pub sync_retry_days: u64,
    /// Syncs: how many days a sync stays in the history (GetSync, ListSyncs).
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_SYNC_HISTORY_DAYS",
        default_value_t = 14
    )]
    pub sync_history_days: u64,
    /// Syncs: a running sync whose replica has not renewed its lease for this long is released
    /// (recorded ABANDONED) when the next sync of its model starts.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_SYNC_LEASE_SECONDS",
        default_value_t = 30
    )]
    pub sync_lease_seconds: u64,
    /// Hosts a destination's custom base URL may name (comma-separated host names or IP
    /// addresses, any port); none by default: write keys go only to `us` and `eu`.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_ALLOWED_UPSTREAMS",
        value_delimiter = ','
    )]
    pub allowed_upstreams: Vec<String>,
    /// Log format (the level comes from RUST_LOG, default info).
    #[arg(long, env = "SEGMENT_CONNECTIONS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    // === Operations: metrics, health port, authentication, TLS, limits ===
    /// Where Prometheus metrics are served (GET /metrics); `off` disables them.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_METRICS_LISTEN",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: String,
    /// Also serve grpc.health.v1 alone, in plaintext, on this address (for kubelet gRPC probes,
    /// which cannot speak TLS).
    #[arg(long, env = "SEGMENT_CONNECTIONS_HEALTH_LISTEN")]
    pub health_listen: Option<String>,
    /// Bearer tokens callers must present (comma-separated; several allow rotation). Every RPC
    /// but health then needs `authorization: Bearer <token>`.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_AUTH_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub auth_tokens: Vec<String>,
    /// Serve TLS on the gRPC port with this certificate chain (PEM); needs --tls-key-file.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert-file.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_TLS_CLIENT_CA_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_client_ca_file: Option<PathBuf>,
    /// The largest row (its columns JSON), in bytes; larger rows get ROW_TOO_LARGE.
    #[arg(long, env = "SEGMENT_CONNECTIONS_MAX_ROW_BYTES", default_value_t = DEFAULT_MAX_ROW_BYTES)]
    pub max_row_bytes: usize,
    /// The largest column value (as JSON), in bytes; larger: the row gets ROW_TOO_LARGE.
    #[arg(long, env = "SEGMENT_CONNECTIONS_MAX_VALUE_BYTES", default_value_t = DEFAULT_MAX_VALUE_BYTES)]
    pub max_value_bytes: usize,
    /// Concurrent calls (HTTP/2 streams) per client connection; clients queue beyond it.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_MAX_CONCURRENT_STREAMS",
        default_value_t = 200
    )]
    pub max_concurrent_streams: u32,
    /// Calls in flight at once across all connections (health aside); beyond it a call gets
    /// RESOURCE_EXHAUSTED naming this limit.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_MAX_CONCURRENT_CALLS",
        default_value_t = 1000
    )]
    pub max_concurrent_calls: usize,
    /// Row streams (StreamRows) open at once; must be below --max-concurrent-calls, so streams
    /// never take the slots unary calls need. Beyond it a stream gets RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_MAX_ROW_STREAMS",
        default_value_t = 100
    )]
    pub max_row_streams: usize,
    /// Export trace spans over OTLP/gRPC to this collector (e.g. http://otel-collector:4317).
    #[arg(long, env = "SEGMENT_CONNECTIONS_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// What rendering one row through one mapping may compute, in bytes (every value a
    /// directive builds or copies, and the event); past it the row gets RENDER_LIMIT.
    #[arg(
        long,
        env = "SEGMENT_CONNECTIONS_MAX_RENDER_BYTES_PER_ROW",
        default_value_t = crate::mapping::budget::DEFAULT_RENDER_BYTES
    )]
    pub max_render_bytes_per_row: usize,
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
    /// What a request may carry: rows per call, row and value sizes.
    pub limits: RequestLimits,
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
    /// Sending rows to the Tracking API.
    pub delivery: DeliverySettings,
    /// Syncs' retries, history and lease.
    pub sync: SyncSettings,
    // === Operations ===
    /// Where /metrics is served; `None`: not served.
    pub metrics_listen: Option<SocketAddr>,
    /// A plaintext health-only port, if any.
    pub health_listen: Option<SocketAddr>,
    /// Accepted bearer tokens; empty: no authentication.
    pub auth_tokens: Vec<KeyText>,
    /// TLS on the gRPC port, if any.
    pub tls: Option<TlsFiles>,
    pub max_concurrent_streams: u32,
    pub max_concurrent_calls: usize,
    pub max_row_streams: usize,
    /// Where trace spans are exported (OTLP/gRPC), if anywhere.
    pub otlp_endpoint: Option<String>,
}

/// PEM files for TLS on the gRPC port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Require client certificates signed by this CA.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Postgres(DatabaseUrl),
}

/// A PostgreSQL URL; `Debug` and `Display` show it redacted ([`redact_store_url`]).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(pub String);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_store_url(&self.0))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_store_url(&self.0))
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
    /// The value is shown redacted ([`redact_store_url`]).
    #[error("--store {:?}: expected sqlite://PATH or postgres://...", redact_store_url(.0))]
    Store(String),
    #[error(
        "--store postgres://...: an encryption key is required with PostgreSQL \
         (--encryption-key-file or --encryption-key)"
    )]
    PostgresNeedsKey,
    #[error("--{0}: must be at least 1")]
    Zero(&'static str),
    #[error("--{0} {1:?}: not a socket address (e.g. 0.0.0.0:9464)")]
    Address(&'static str, String),
    #[error("--auth-tokens: a token is empty")]
    EmptyToken,
    #[error("--otlp-endpoint {0:?}: expected an http:// or https:// URL")]
    OtlpEndpoint(String),
    #[error(
        "--max-row-streams {streams}: must be below --max-concurrent-calls ({calls}), so that \
         streams leave room for unary calls"
    )]
    RowStreams { streams: usize, calls: usize },
    #[error("--allowed-upstreams: {0}")]
    AllowedUpstreams(String),
}

impl TryFrom<ServeArgs> for Settings {
    type Error = ConfigError;

    fn try_from(args: ServeArgs) -> Result<Settings, ConfigError> {
        let ServeArgs {
            listen,
            store,
            max_request_bytes,
            max_test_rows,
            shutdown_grace_seconds,
            deadline_seconds,
            max_submit_rows,
            max_attempts,
            attempt_timeout_seconds,
            max_in_flight_batches,
            upstream_gzip,
            stream_rows_in_flight,
            stream_idle_seconds,
            stream_dedup_window,
            sync_retry_syncs,
            sync_retry_days,
            sync_history_days,
            sync_lease_seconds,
            allowed_upstreams,
            log_format,
            metrics_listen,
            health_listen,
            auth_tokens,
            tls_cert_file,
            tls_key_file,
            tls_client_ca_file,
            max_row_bytes,
            max_value_bytes,
            max_concurrent_streams,
            max_concurrent_calls,
            max_row_streams,
            otlp_endpoint,
            max_render_bytes_per_row,
        } = args;
        let listen = listen
            .parse::<SocketAddr>()
            .map_err(|_| ConfigError::Listen(listen.clone()))?;
        let (store, encryption_key) = store.resolve()?;
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
            ("stream-idle-seconds", stream_idle_seconds),
            ("stream-dedup-window", stream_dedup_window as u64),
            ("max-row-streams", max_row_streams as u64),
            ("sync-retry-syncs", u64::from(sync_retry_syncs)),
            ("sync-retry-days", sync_retry_days),
            ("sync-history-days", sync_history_days),
            ("sync-lease-seconds", sync_lease_seconds),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(flag));
            }
        }
        let metrics_listen = match metrics_listen.as_str() {
            "off" | "" => None,
            a => Some(
                a.parse::<SocketAddr>()
                    .map_err(|_| ConfigError::Address("metrics-listen", metrics_listen.clone()))?,
            ),
        };
        let health_listen = health_listen
            .map(|a| {
                a.parse::<SocketAddr>()
                    .map_err(|_| ConfigError::Address("health-listen", a.clone()))
            })
            .transpose()?;
        let auth_tokens = auth_tokens
            .into_iter()
            .map(|t| t.trim().to_owned())
            .map(|t| match t.is_empty() {
                true => Err(ConfigError::EmptyToken),
                false => Ok(KeyText(t)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // clap makes the certificate and key go together.
        let tls = match (tls_cert_file, tls_key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca: tls_client_ca_file,
            }),
            _ => None,
        };
        for (flag, n) in [
            ("max-row-bytes", max_row_bytes),
            ("max-value-bytes", max_value_bytes),
            ("max-concurrent-streams", max_concurrent_streams as usize),
            ("max-concurrent-calls", max_concurrent_calls),
            ("max-render-bytes-per-row", max_render_bytes_per_row),
        ] {
            if n == 0 {
                return Err(ConfigError::Zero(flag));
            }
        }
        if max_row_streams >= max_concurrent_calls {
            return Err(ConfigError::RowStreams {
                streams: max_row_streams,
                calls: max_concurrent_calls,
            });
        }
        if let Some(e) = &otlp_endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(ConfigError::OtlpEndpoint(e.clone()));
        }
        let allowed_upstreams =
            AllowedUpstreams::parse(&allowed_upstreams).map_err(ConfigError::AllowedUpstreams)?;
        let defaults = DeliverySettings::default();
        let delivery = DeliverySettings {
            retry: RetrySettings {
                max_attempts,
                attempt_timeout: Duration::from_secs(attempt_timeout_seconds),
                max_in_flight: max_in_flight_batches,
                gzip: upstream_gzip,
                ..defaults.retry.clone()
            },
            default_deadline: Duration::from_secs(deadline_seconds),
            stream_rows_in_flight,
            stream_idle: Duration::from_secs(stream_idle_seconds),
            stream_dedup_window,
            allowed_upstreams,
            max_render_bytes_per_row,
            ..defaults
        };
        Ok(Settings {
            otlp_endpoint,
            metrics_listen,
            health_listen,
            auth_tokens,
            tls,
            limits: RequestLimits {
                max_rows: max_submit_rows,
                max_test_rows,
                rows: RowLimits {
                    max_row_bytes,
                    max_value_bytes,
                },
            },
            max_concurrent_streams,
            max_concurrent_calls,
            max_row_streams,
            listen,
            store,
            encryption_key,
            max_request_bytes,
            shutdown_grace: Duration::from_secs(shutdown_grace_seconds),
            log_format,
            delivery,
            sync: SyncSettings {
                retry_syncs: sync_retry_syncs,
                retry_for: Duration::from_secs(sync_retry_days.saturating_mul(86_400)),
                history_for: Duration::from_secs(sync_history_days.saturating_mul(86_400)),
                lease: Duration::from_secs(sync_lease_seconds),
                ..SyncSettings::default()
            },
        })
    }
}

impl StoreArgs {
    /// The store and the key source from `--store`, `--encryption-key` and
    /// `--encryption-key-file`: with SQLite and no key, the default key file (created); with
    /// PostgreSQL a key is required.
    pub(crate) fn resolve(self) -> Result<(StoreLocation, KeySource), ConfigError> {
        let StoreArgs {
            store,
            encryption_key_file,
            encryption_key,
        } = self;
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
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(s.health_listen, None);
        assert!(s.auth_tokens.is_empty());
        assert_eq!(s.tls, None);
        assert_eq!(s.limits.rows, RowLimits::default());
        assert_eq!(s.delivery.max_render_bytes_per_row, 4 * 1024 * 1024);
        let s = settings(&["--max-render-bytes-per-row", "65536"]).unwrap();
        assert_eq!(s.delivery.max_render_bytes_per_row, 65536);
        assert_eq!(
            settings(&["--max-render-bytes-per-row", "0"]).unwrap_err(),
            ConfigError::Zero("max-render-bytes-per-row")
        );
    }

    #[test]
    fn operations_flags() {
        let s = settings(&[
            "--metrics-listen",
            "off",
            "--health-listen",
            "0.0.0.0:50052",
            "--auth-tokens",
            "secret-a, secret-b",
            "--tls-cert-file",
            "/c.pem",
            "--tls-key-file",
            "/k.pem",
            "--tls-client-ca-file",
            "/ca.pem",
        ])
        .unwrap();
        assert_eq!(s.metrics_listen, None);
        assert_eq!(s.health_listen, Some("0.0.0.0:50052".parse().unwrap()));
        assert_eq!(s.auth_tokens.len(), 2);
        assert_eq!(s.auth_tokens[1].0, "secret-b");
        // Tokens never print.
        assert!(!format!("{s:?}").contains("secret-a"));
        assert_eq!(
            s.tls,
            Some(TlsFiles {
                cert: "/c.pem".into(),
                key: "/k.pem".into(),
                client_ca: Some("/ca.pem".into()),
            })
        );
        assert!(matches!(
            settings(&["--metrics-listen", "nowhere"]),
            Err(ConfigError::Address("metrics-listen", _))
        ));
        assert_eq!(
            settings(&["--auth-tokens", "a,,b"]).unwrap_err(),
            ConfigError::EmptyToken
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
    fn store_urls_are_shown_redacted() {
        let url = DatabaseUrl("postgres://app:p@ss@db/app".into());
        assert_eq!(format!("{url}"), "postgres://app:[redacted]@db/app");
        assert_eq!(format!("{url:?}"), "\"postgres://app:[redacted]@db/app\"");
        // Refused store URLs are shown redacted too.
        let err = settings(&["--store", "mysql://app:hunter2@db/app"])
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("hunter2") && err.contains("mysql://app:[redacted]@db/app"),
            "{err}"
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
        let e = settings(&["--allowed-upstreams", "127.0.0.1,http://x"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--allowed-upstreams: \"http://x\""),
            "{e}"
        );
    }

    #[test]
    fn allowed_upstreams_are_none_by_default() {
        let allows = |s: &Settings, r: &str| {
            s.delivery
                .allowed_upstreams
                .allows(&crate::store::Region::parse(r).unwrap())
        };
        let s = settings(&[]).unwrap();
        assert!(allows(&s, "us") && !allows(&s, "http://127.0.0.1:8089"));
        let s = settings(&["--allowed-upstreams", "127.0.0.1,proxy.internal"]).unwrap();
        assert!(allows(&s, "http://127.0.0.1:8089") && allows(&s, "https://proxy.internal"));
    }
}
