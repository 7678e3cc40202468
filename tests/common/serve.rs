//! Real `serve` processes on one PostgreSQL database (or SQLite), their logs captured.

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::transport::Channel;

use segment_connections::grpc::proto::{self, ConnectionsClient};

use crate::common::bin::{BIN, clean_env, text};
use crate::common::pg::pg_bin;

/// A log line and when it was read.
pub type Line = (Instant, String);

/// A `serve` process.
pub struct Server {
    child: Child,
    pub addr: String,
    pub client: ConnectionsClient<Channel>,
    lines: Arc<Mutex<Vec<Line>>>,
}

impl Server {
    /// `serve` on 127.0.0.1:0 over `store_url` with `keys` (given through the environment, as
    /// a deployment would), JSON logs at `rust_log`.
    pub async fn start(store_url: &str, keys: &str, rust_log: &str) -> Server {
        match Server::try_start(store_url, keys, rust_log).await {
            Ok(s) => s,
            Err(log) => panic!("serve did not start:\n{}", log.join("\n")),
        }
    }

    /// As [`Server::start`]; `Err` holds the log when the process exits before serving.
    pub async fn try_start(
        store_url: &str,
        keys: &str,
        rust_log: &str,
    ) -> Result<Server, Vec<String>> {
        Server::try_start_with(store_url, keys, rust_log, "json", &[]).await
    }

    /// As [`Server::start`], logs in `log_format` (`json` or `plain`), `args` added to serve's.
    #[allow(dead_code, reason = "tests/otlp only")]
    pub async fn start_with(
        store_url: &str,
        keys: &str,
        rust_log: &str,
        log_format: &str,
        args: &[&str],
    ) -> Server {
        match Server::try_start_with(store_url, keys, rust_log, log_format, args).await {
            Ok(s) => s,
            Err(log) => panic!("serve did not start:\n{}", log.join("\n")),
        }
    }

    async fn try_start_with(
        store_url: &str,
        keys: &str,
        rust_log: &str,
        log_format: &str,
        args: &[&str],
    ) -> Result<Server, Vec<String>> {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store",
            store_url,
            "--log-format",
            log_format,
            "--shutdown-grace-seconds",
            "2",
            // The fake Tracking APIs listen here.
            "--allowed-upstreams",
            "127.0.0.1",
        ]);
        cmd.args(args);
        clean_env(&mut cmd);
        cmd.env("SEGMENT_CONNECTIONS_ENCRYPTION_KEY", keys)
            // A replica killed mid-sync releases its model quickly.
            .env("SEGMENT_CONNECTIONS_SYNC_LEASE_SECONDS", "1")
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<Line>::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let serving = lines
                .lock()
                .unwrap()
                .iter()
                .find_map(|(_, l)| serving_addr(l));
            if let Some(addr) = serving {
                break addr;
            }
            if let Some(status) = child.try_wait().unwrap() {
                // Let the reader drain.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let mut log: Vec<String> = lines
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(_, l)| l.clone())
                    .collect();
                log.push(format!("exit: {status}"));
                return Err(log);
            }
            assert!(Instant::now() < deadline, "serve not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let client = ConnectionsClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        Ok(Server {
            child,
            addr,
            client,
            lines,
        })
    }

    pub fn client(&self) -> ConnectionsClient<Channel> {
        self.client.clone()
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// When this replica first logged seeing change version `version` or a later one (from any
    /// source: its own write, a notification, a poll); waits up to `timeout`.
    pub async fn seen_version(&self, version: u64, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.lines.lock().unwrap().iter().find_map(|(at, l)| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["fields"]["message"] == "store change seen"
                    && v["fields"]["version"].as_u64()? >= version)
                    .then_some(*at)
            });
            if seen.is_some() || Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, and wait for it to exit; returns the whole log.
    pub async fn stop(mut self) -> Vec<String> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "serve did not stop");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.log()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of a `serving` log line, JSON or plain
/// (`... INFO segment_connections::app: serving addr=127.0.0.1:5000`).
fn serving_addr(line: &str) -> Option<String> {
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        return (v["fields"]["message"] == "serving")
            .then(|| v["fields"]["addr"].as_str().map(str::to_owned))?;
    }
    let (_, fields) = line.split_once(": serving ")?;
    fields
        .split_whitespace()
        .find_map(|f| f.strip_prefix("addr="))
        .map(str::to_owned)
}

/// The id `serve` logs and stores for a key (`k` + 8 hex digits).
pub fn key_id(key: &str) -> String {
    segment_connections::store::KeyRing::from_hex_lines(key)
        .unwrap()
        .current_key_id()
        .to_owned()
}

pub async fn create_destination(
    c: &mut ConnectionsClient<Channel>,
    name: &str,
    region: &str,
    write_key: &str,
) -> proto::Destination {
    c.create_destination(proto::CreateDestinationRequest {
        name: name.into(),
        region: region.into(),
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

/// A track mapping named `name` whose events are called `event`.
pub fn track_mapping(name: &str, event: &str) -> String {
    serde_json::json!({
        "name": name,
        "model": "orders",
        "action": "track",
        "fields": {
            "event_name": {"@literal": event},
            "user_id": {"@path": "$.properties.user_id"},
            "properties": {"order_id": {"@path": "$.properties.order_id"}}
        }
    })
    .to_string()
}

pub fn order_row(id: &str) -> proto::Row {
    proto::Row {
        id: id.into(),
        op: proto::Op::Added.into(),
        columns_json: serde_json::to_vec(&serde_json::json!({"user_id": "u-1", "order_id": id}))
            .unwrap(),
        message_id: None,
    }
}

/// The event name TestMapping renders for the registered mapping `mapping_id`, or the status.
pub async fn rendered_event(
    c: &mut ConnectionsClient<Channel>,
    mapping_id: &str,
) -> Result<String, tonic::Status> {
    let resp = c
        .test_mapping(proto::TestMappingRequest {
            mapping: Some(proto::test_mapping_request::Mapping::MappingId(
                mapping_id.into(),
            )),
            destination_id: None,
            rows: vec![order_row("o-1")],
        })
        .await?
        .into_inner();
    let event: Value =
        serde_json::from_str(resp.results[0].event_json.as_deref().unwrap_or("null")).unwrap();
    Ok(event["event"].as_str().unwrap_or_default().to_owned())
}

/// A plain-text dump of the database at `url`.
pub fn pg_dump(url: &str) -> String {
    let out = Command::new(pg_bin().join("pg_dump"))
        .args(["--dbname", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_dump: {}", text(&out.stderr));
    text(&out.stdout)
}
