//! Wiring: the key ring, the store, the gRPC server with health and reflection, and graceful
//! shutdown (SIGTERM/SIGINT → health NOT_SERVING → stop accepting, drain in-flight calls →
//! bounded by the grace period).

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::config::{KeySource, Settings, StoreLocation};
use crate::grpc::proto::{self, ConnectionsServer};
use crate::grpc::{ConnectionsService, Limits};
use crate::store::{KeyRing, SqliteStore};

type Service = ConnectionsServer<ConnectionsService<SqliteStore>>;

/// A built server: store open and migrated, port bound, not yet serving.
pub struct App {
    listener: TcpListener,
    store: Arc<SqliteStore>,
    settings: Settings,
}

impl App {
    /// Loads the encryption key, opens the store (running its migrations), binds the port.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let keys = load_keys(&settings.encryption_key)?;
        tracing::info!(
            key_id = keys.current_key_id(),
            "write-key encryption key loaded"
        );
        let store = match &settings.store {
            StoreLocation::Sqlite(path) => SqliteStore::open(path, keys)
                .await
                .with_context(|| format!("opening the store at {}", path.display()))?,
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        Ok(App {
            listener,
            store: Arc::new(store),
            settings,
        })
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

        let limits = Limits {
            max_test_rows: settings.max_test_rows,
        };
        let connections = ConnectionsServer::new(
            ConnectionsService::new(store.clone(), limits).with_delivery(settings.delivery.clone()),
        )
        .max_decoding_message_size(settings.max_request_bytes);

        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let router = Server::builder()
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
        reporter.set_not_serving::<Service>().await;
        stop_tx.send(()).ok();
        match tokio::time::timeout(settings.shutdown_grace, &mut server).await {
            Ok(res) => res.context("server task")?.context("server")?,
            Err(_) => {
                tracing::warn!("grace period over: dropping calls still in flight");
                server.abort();
            }
        }
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Runs `serve` until SIGTERM or SIGINT.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    App::build(settings).await?.run(shutdown_signal()).await
}

/// Completes on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
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
fn load_keys(source: &KeySource) -> anyhow::Result<KeyRing> {
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

fn read_key_file(path: &Path) -> anyhow::Result<KeyRing> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the encryption key file {}", path.display()))?;
    KeyRing::from_hex_lines(&text).with_context(|| format!("{}", path.display()))
}

fn create_key_file(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let key = KeyRing::generate_hex()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating the encryption key file {}", path.display()))?;
    writeln!(file, "{key}")?;
    file.sync_all()?;
    Ok(())
}
