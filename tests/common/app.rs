//! `TestApp::spawn()`: a real server on 127.0.0.1:0 over a temporary SQLite file, and a client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use segment_connections::app::App;
use segment_connections::config::{KeySource, LogFormat, Settings, StoreLocation};
use segment_connections::delivery::DeliverySettings;
use segment_connections::grpc::proto::{self, ConnectionsClient};
use segment_connections::limits::{RequestLimits, RowLimits};
use segment_connections::sender::RetrySettings;
use segment_connections::store::AllowedUpstreams;
use segment_connections::sync::SyncSettings;

/// The most rows a TestMapping request may carry in tests.
pub const MAX_TEST_ROWS: usize = 5;
/// The largest request in tests.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

pub struct TestApp {
    #[allow(dead_code, reason = "not by tests/otlp")]
    pub addr: SocketAddr,
    /// `/metrics`, when the settings asked for it (read by tests/metrics.rs).
    #[allow(dead_code, reason = "tests/metrics only")]
    pub metrics_addr: Option<SocketAddr>,
    /// The plaintext health port, when the settings asked for it.
    #[allow(dead_code, reason = "tests/api only")]
    pub health_addr: Option<SocketAddr>,
    pub client: ConnectionsClient<Channel>,
    #[allow(dead_code, reason = "tests/api only")]
    pub dir: Arc<TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestApp {
    /// A server over a fresh temporary directory.
    #[allow(dead_code, reason = "tests/api only")]
    pub async fn spawn() -> TestApp {
        TestApp::spawn_in(Arc::new(tempfile::tempdir().unwrap())).await
    }

    /// A server over `dir` (its store and key file), e.g. after a restart.
    #[allow(dead_code, reason = "tests/api only")]
    pub async fn spawn_in(dir: Arc<TempDir>) -> TestApp {
        TestApp::spawn_with(dir, |_| {}).await
    }

    /// A server over `dir` with settings changed by `change` (auth, TLS, limits, metrics). The
    /// client is plaintext and carries no token: with TLS or auth on, make your own.
    pub async fn spawn_with(dir: Arc<TempDir>, change: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = settings(dir.path().into());
        change(&mut settings);
        TestApp::spawn_settings(dir, settings).await
    }

    async fn spawn_settings(dir: Arc<TempDir>, settings: Settings) -> TestApp {
        let app = App::build(settings).await.unwrap();
        let addr = app.local_addr();
        let metrics_addr = app.metrics_addr();
        let health_addr = app.health_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run(async {
                stopped.await.ok();
            })
            .await
            .unwrap()
        });
        // Lazy, so that a TLS server (a plaintext client cannot talk to it) still gets one.
        let client = ConnectionsClient::new(
            Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_lazy(),
        );
        TestApp {
            addr,
            metrics_addr,
            health_addr,
            client,
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    #[allow(dead_code, reason = "not by tests/metrics or tests/otlp")]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    #[allow(dead_code, reason = "not by tests/otlp")]
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    #[allow(dead_code, reason = "tests/api only")]
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("connections.db")
    }

    /// Stops the server gracefully and waits for it; returns its directory.
    #[allow(dead_code, reason = "not by tests/metrics")]
    pub async fn stop(mut self) -> Arc<TempDir> {
        self.stop.take().unwrap().send(()).ok();
        tokio::time::timeout(Duration::from_secs(20), self.task.take().unwrap())
            .await
            .expect("server stops")
            .unwrap();
        self.dir.clone()
    }

    /// Stops the server and starts a new one over the same store.
    #[allow(dead_code, reason = "tests/api only")]
    pub async fn restart(self) -> TestApp {
        let dir = self.stop().await;
        TestApp::spawn_in(dir).await
    }

    #[allow(dead_code, reason = "tests/api only")]
    pub async fn create_destination(&self, name: &str) -> proto::Destination {
        self.client
            .clone()
            .create_destination(proto::CreateDestinationRequest {
                name: name.into(),
                region: "us".into(),
                write_key: format!("wk-{name}-0123456789"),
                enabled: None,
                rate_limit: None,
            })
            .await
            .unwrap()
            .into_inner()
            .destination
            .unwrap()
    }

    /// An enabled destination whose Tracking API is `base` (a fake), with this write key.
    pub async fn create_destination_at(
        &self,
        name: &str,
        base: &str,
        write_key: &str,
    ) -> proto::Destination {
        self.client
            .clone()
            .create_destination(proto::CreateDestinationRequest {
                name: name.into(),
                region: base.into(),
                write_key: write_key.into(),
                enabled: None,
                rate_limit: None,
            })
            .await
            .unwrap()
            .into_inner()
            .destination
            .unwrap()
    }

    pub async fn create_mapping(&self, destination_id: &str, json: &str) -> proto::Mapping {
        self.client
            .clone()
            .create_mapping(proto::CreateMappingRequest {
                destination_id: destination_id.into(),
                mapping_json: json.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .mapping
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub fn settings(dir: PathBuf) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        store: StoreLocation::Sqlite(dir.join("connections.db")),
        encryption_key: KeySource::CreateIfMissing(dir.join("master.key")),
        max_request_bytes: MAX_REQUEST_BYTES,
        limits: RequestLimits {
            max_rows: 10_000,
            max_test_rows: MAX_TEST_ROWS,
            rows: RowLimits::default(),
        },
        shutdown_grace: Duration::from_secs(5),
        log_format: LogFormat::Plain,
        metrics_listen: None,
        health_listen: None,
        auth_tokens: Vec::new(),
        tls: None,
        max_concurrent_streams: 100,
        max_concurrent_calls: 1000,
        max_row_streams: 100,
        otlp_endpoint: None,
        delivery: test_delivery(),
        sync: SyncSettings {
            lease: Duration::from_secs(1),
            ..SyncSettings::default()
        },
    }
}

/// Delivery with millisecond backoffs, so retry tests take no time.
pub fn test_delivery() -> DeliverySettings {
    DeliverySettings {
        retry: RetrySettings {
            max_attempts: 4,
            backoff_base: Duration::from_millis(5),
            backoff_cap: Duration::from_millis(40),
            retry_after_cap: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            max_in_flight: 16,
            gzip: true,
        },
        // The fake Tracking APIs listen here.
        allowed_upstreams: AllowedUpstreams::parse(&["127.0.0.1"]).unwrap(),
        ..DeliverySettings::default()
    }
}

/// A valid track mapping named `name`.
pub fn track_mapping(name: &str) -> String {
    serde_json::json!({
        "name": name,
        "model": "orders",
        "action": "track",
        "trigger": "added_or_updated",
        "fields": {
            "event_name": {"@literal": "Order Completed"},
            "user_id": {"@path": "$.properties.user_id"},
            "properties": {
                "order_id": {"@path": "$.properties.order_id"},
                "revenue": {"@path": "$.properties.revenue"}
            }
        }
    })
    .to_string()
}

/// A row of the `orders` model.
pub fn order_row(id: &str, user: &str) -> proto::Row {
    proto::Row {
        id: id.into(),
        op: proto::Op::Added.into(),
        columns_json: serde_json::to_vec(&serde_json::json!({
            "user_id": user, "order_id": id, "revenue": 19.99
        }))
        .unwrap(),
        message_id: None,
    }
}

/// The bad-request violations of a status, as (field, description).
#[allow(dead_code, reason = "tests/api only")]
pub fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt as _;
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}
