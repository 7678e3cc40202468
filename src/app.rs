//! Wiring: the key ring, the store, the gRPC server with health and reflection, and graceful
//! shutdown (SIGTERM/SIGINT → health NOT_SERVING and new calls UNAVAILABLE → calls in flight
//! finish, bounded by the grace period → connections close).
//! Operations: `/metrics` on `--metrics-listen`, the per-RPC metrics-and-log layer, bearer
//! authentication on everything but health, TLS/mTLS, and a plaintext health-only port for
//! kubelet probes when TLS is on.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::{Certificate, Identity as TlsIdentity, ServerTlsConfig};

use crate::config::{KeySource, Settings, StoreLocation};
use crate::grpc::proto::{self, ConnectionsServer};
use crate::grpc::{self, BearerAuth, ConnectionsService, Gate, RpcLayer};
use crate::metrics;
use crate::store::{AnyStore, KeyRing, PostgresStore, SqliteStore};

type Service = ConnectionsServer<ConnectionsService<AnyStore>>;

/// How often the store's change version is polled when it has no change feed of its own.
const CHANGE_POLL: Duration = Duration::from_millis(500);
/// After the drain, how long closing connections may take (answers still being written).
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);
/// How often the usage counted in memory is written to the store.
const USAGE_FLUSH: Duration = Duration::from_secs(5);
/// How long the last usage flush, at shutdown, may wait on the store.
const USAGE_FINAL_FLUSH: Duration = Duration::from_secs(5);

/// A built server: store open and migrated, port bound, not yet serving.
pub struct App {
    listener: TcpListener,
    store: Arc<AnyStore>,
    settings: Settings,
    /// `--metrics-listen`, bound.
    metrics_listener: Option<TcpListener>,
    /// `--health-listen`, bound.
    health_listener: Option<TcpListener>,
}

impl App {
    /// Loads the encryption key, opens the store (running its migrations), binds the port.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let keys = load_keys(&settings.encryption_key)?;
        tracing::info!(
            key_id = keys.current_key_id(),
            "write-key encryption key loaded"
        );
        let store = open_store(&settings.store, keys).await?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        let metrics_listener = bind_optional(settings.metrics_listen, "--metrics-listen").await?;
        let health_listener = bind_optional(settings.health_listen, "--health-listen").await?;
        Ok(App {
            listener,
            store: Arc::new(store),
            settings,
            metrics_listener,
            health_listener,
        })
    }

    /// The bound metrics address, if metrics are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref()?.local_addr().ok()
    }

    /// The bound plaintext health address, if any.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_listener.as_ref()?.local_addr().ok()
    }

    /// The bound address (the real port when `--listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.settings.listen)
    }

    /// Serves until `shutdown` completes, then drains in-flight calls for at most the grace
    /// period.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let App {
            listener,
            store,
            settings,
            metrics_listener,
            health_listener,
        } = self;
        let addr = listener.local_addr()?;
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_not_serving::<Service>().await;

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc.BadRequest and friends, so clients can decode error details.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
                .with_service_name(proto::SERVICE_NAME)
                .with_service_name("grpc.health.v1.Health")
                .include_reflection_service(false)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let service = ConnectionsService::new(store.clone(), settings.limits)
            .with_delivery(settings.delivery.clone(), settings.sync.clone());
        // Writes through any replica (PostgreSQL LISTEN/NOTIFY, else polling the store's change
        // version) make the row path re-read at once.
        let delivery = service.delivery();
        let cache = service.row_cache();
        let watcher =
            crate::store::watch_changes(store.clone(), CHANGE_POLL, move |_| cache.invalidate());
        let connections =
            ConnectionsServer::new(service).max_decoding_message_size(settings.max_request_bytes);
        // Usage is counted in memory and flushed to the store every few seconds (and once more
        // at shutdown, below), never a write per call.
        let usage_flusher = {
            let delivery = delivery.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(USAGE_FLUSH);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = delivery.flush_usage().await {
                        tracing::warn!(error = %e, "usage flush failed; kept for the next");
                    }
                }
            })
        };

        // Every service but health needs a token when tokens are configured.
        let auth = BearerAuth::new(settings.auth_tokens.iter().map(|t| t.0.as_str()));
        if auth.is_enabled() {
            tracing::info!(
                tokens = settings.auth_tokens.len(),
                "caller authentication on"
            );
        }
        let connections = InterceptedService::new(connections, auth.clone());
        let reflection_v1 = InterceptedService::new(reflection_v1, auth.clone());
        let reflection_v1alpha = InterceptedService::new(reflection_v1alpha, auth);

        // A bad certificate or key stops start-up here.
        let mut builder = Server::builder();
        if let Some(tls) = &settings.tls {
            builder = builder
                .tls_config(tls_config(tls)?)
                .context("configuring TLS")?;
            tracing::info!(
                client_certificates = tls.client_ca.is_some(),
                "TLS on the gRPC port"
            );
        }

        // Metrics and the plaintext health port run until the server has stopped.
        let (aux_stop_tx, aux_stop_rx) = tokio::sync::watch::channel(false);
        let aux_stopped = move || {
            let mut rx = aux_stop_rx.clone();
            async move {
                rx.wait_for(|stop| *stop).await.ok();
            }
        };
        let mut aux_tasks = Vec::new();
        if let Some(listener) = metrics_listener
            && let Some(handle) = metrics::install()
        {
            tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
            aux_tasks.push(tokio::spawn(metrics::serve(
                listener,
                handle,
                aux_stopped(),
            )));
        }
        if let Some(listener) = health_listener {
            tracing::info!(addr = %listener.local_addr()?, "serving plaintext health");
            let incoming = grpc::incoming(listener);
            let health_only = Server::builder()
                .add_service(health.clone())
                .serve_with_incoming_shutdown(incoming, aux_stopped());
            aux_tasks.push(tokio::spawn(async move {
                if let Err(e) = health_only.await {
                    tracing::error!(error = %e, "plaintext health server failed");
                }
            }));
        }

        let incoming = grpc::incoming(listener);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let gate = Gate::new(settings.max_concurrent_calls, settings.max_row_streams);
        let router = builder
            .layer(RpcLayer::new(gate.clone()))
            .max_concurrent_streams(Some(settings.max_concurrent_streams))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            // Long-lived HTTP/2 connections re-spread across replicas.
            .max_connection_age(Duration::from_secs(30 * 60))
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(connections);
        let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            stop_rx.await.ok();
        }));

        // The store is open and migrated: ready.
        reporter.set_serving::<Service>().await;
        tracing::info!(%addr, "serving");

        tokio::select! {
            res = &mut server => {
                res.context("server task")?.context("server")?;
                anyhow::bail!("server stopped on its own");
            }
            () = shutdown => {}
        }
        tracing::info!(grace = ?settings.shutdown_grace, "shutting down");
        let grace_end = tokio::time::Instant::now() + settings.shutdown_grace;
        // New calls are refused (UNAVAILABLE) while the ones in flight finish; the listener
        // stays open meanwhile, so a caller still routed here hears why.
        gate.begin_drain();
        reporter.set_not_serving::<Service>().await;
        // Calls in flight stop sending a little before the grace period ends, so each answers
        // (rows not delivered by then: FAILED, SHUTTING_DOWN) before the server drops it.
        let margin = (settings.shutdown_grace / 5).min(Duration::from_secs(2));
        delivery.shut_down_at(grace_end - margin);
        if tokio::time::timeout_at(grace_end, gate.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = gate.in_flight(),
                "grace period over: dropping calls still in flight"
            );
        }
        // Then the connections close (GOAWAY): what is left are answers being flushed and
        // health Watch streams, which get a second (the chart keeps the grace period at least
        // that far inside terminationGracePeriodSeconds).
        stop_tx.send(()).ok();
        match tokio::time::timeout(SHUTDOWN_FLUSH, &mut server).await {
            Ok(res) => res.context("server task")?.context("server")?,
            Err(_) => server.abort(),
        }
        aux_stop_tx.send(true).ok();
        for task in aux_tasks {
            task.await.ok();
        }
        watcher.abort();
        usage_flusher.abort();
        match tokio::time::timeout(USAGE_FINAL_FLUSH, delivery.flush_usage()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "usage not flushed at shutdown"),
            Err(_) => tracing::warn!("usage not flushed at shutdown: the store did not answer"),
        }
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Opens the store at `location` with `keys`: migrations run, stored write keys checked.
pub(crate) async fn open_store(
    location: &StoreLocation,
    keys: KeyRing,
) -> anyhow::Result<AnyStore> {
    Ok(match location {
        StoreLocation::Sqlite(path) => SqliteStore::open(path, keys)
            .await
            .with_context(|| format!("opening the store at {}", path.display()))?
            .into(),
        StoreLocation::Postgres(url) => PostgresStore::connect(&url.0, keys)
            .await
            .with_context(|| format!("opening the PostgreSQL store {url:?}"))?
            .into(),
    })
}

/// Binds an optional auxiliary listener.
async fn bind_optional(
    addr: Option<SocketAddr>,
    flag: &str,
) -> anyhow::Result<Option<TcpListener>> {
    match addr {
        None => Ok(None),
        Some(a) => Ok(Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("{flag}: binding {a}"))?,
        )),
    }
}

/// The server's TLS settings: its certificate and key, and the client CA for mTLS.
fn tls_config(tls: &crate::config::TlsFiles) -> anyhow::Result<ServerTlsConfig> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
    };
    let identity = TlsIdentity::from_pem(
        read(&tls.cert, "TLS certificate")?,
        read(&tls.key, "TLS key")?,
    );
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
    }
    Ok(config)
}

/// Runs `serve` until SIGTERM or SIGINT.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    App::build(settings).await?.run(shutdown_signal()).await
}

/// Completes on the first SIGTERM or SIGINT.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "signal received"),
        () = term => tracing::info!(signal = "SIGTERM", "signal received"),
    }
}

/// The key ring from the configured source; with SQLite's default, creates the key file.
pub(crate) fn load_keys(source: &KeySource) -> anyhow::Result<KeyRing> {
    match source {
        KeySource::Inline(text) => KeyRing::from_hex_lines(&text.0).context("--encryption-key"),
        KeySource::File(path) => read_key_file(path),
        KeySource::CreateIfMissing(path) => {
            if !path.exists() {
                create_key_file(path)?;
                tracing::warn!(
                    path = %path.display(),
                    "no encryption key given: created one; keep it safe and back it up \
                     (write keys cannot be read without it), or pass --encryption-key-file"
                );
            }
            read_key_file(path)
        }
    }
}

/// How to mend a key file that holds no usable key.
const KEY_FILE_FIX: &str = "it must hold the key (64 hex digits) on its first line, previous \
    keys on later lines: restore it from your backup; if no write key was ever stored with it \
    (say a first start failed while writing it), delete it and `serve` creates a new one (or \
    write one with `segment-connections keys generate`)";

fn read_key_file(path: &Path) -> anyhow::Result<KeyRing> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the encryption key file {}", path.display()))?;
    if text.trim().is_empty() {
        anyhow::bail!(
            "the encryption key file {} is empty: {KEY_FILE_FIX}",
            path.display()
        );
    }
    KeyRing::from_hex_lines(&text).map_err(|e| {
        anyhow::anyhow!(
            "the encryption key file {}: {e}; {KEY_FILE_FIX}",
            path.display()
        )
    })
}

/// Creates the key file atomically, so that a failed first start (a full disk) leaves either no
/// key file or a complete one: the key is written and synced to a temporary file in the same
/// directory (mode 0600), linked to `path` (which never replaces a key file that appeared
/// meanwhile), and the directory is synced. The temporary file is removed whatever happens.
fn create_key_file(path: &Path) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let key = KeyRing::generate_hex()?;
    let created = write_synced(&temporary, &key).and_then(|()| {
        match std::fs::hard_link(&temporary, path) {
            // Another start created it first: that one is used.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            // A filesystem without hard links.
            Err(_) => std::fs::rename(&temporary, path),
            Ok(()) => Ok(()),
        }
    });
    let _ = std::fs::remove_file(&temporary);
    created
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .with_context(|| format!("creating the encryption key file {}", path.display()))
}

/// Writes `key` and a newline to a new file at `path` (mode 0600) and syncs it.
fn write_synced(path: &Path, key: &str) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    writeln!(file, "{key}")?;
    file.sync_all()
}
