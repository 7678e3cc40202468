//! What the load benches share: a minimal fake Tracking API on loopback, the service process,
//! and its peak RSS and CPU time from /proc.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::transport::Channel;

use segment_connections::grpc::proto::{self, ConnectionsClient};

const BIN: &str = env!("CARGO_BIN_EXE_segment-connections");

/// `serve` on a free loopback port over `store` (default: a SQLite file in `dir`) with
/// `extra` flags, and a destination "bench" whose Tracking API is `upstream`. Returns the
/// process, a client taking messages up to 64 MiB, and the destination's id.
pub async fn start_service(
    dir: &Path,
    store: Option<&str>,
    extra: &[&str],
    upstream: SocketAddr,
) -> (Server, ConnectionsClient<Channel>, String) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let sqlite = format!("sqlite://{}", dir.join("db.sqlite").display());
    let key = dir.join("key");
    std::fs::write(&key, "00".repeat(32)).unwrap();
    let server = Server(
        Command::new(BIN)
            .args(["serve", "--listen", &listen, "--metrics-listen", "off"])
            .args(["--allowed-upstreams", "127.0.0.1"])
            .args(["--store", store.unwrap_or(&sqlite)])
            .arg("--encryption-key-file")
            .arg(&key)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://{listen}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        match ConnectionsClient::connect(url.clone()).await {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("serve did not start: {e}"),
        }
    };
    let mut client = client
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let d = client
        .create_destination(proto::CreateDestinationRequest {
            name: "bench".into(),
            region: format!("http://{upstream}"),
            write_key: "wk-bench-0123456789".into(),
            enabled: None,
            rate_limit: None,
        })
        .await
        .unwrap()
        .into_inner()
        .destination
        .unwrap();
    (server, client, d.id)
}

/// The fake Tracking API: HTTP/1.1 keep-alive, reads each request by Content-Length and
/// answers 200; counts requests and body bytes. No JSON parsing, so it costs little CPU.
pub async fn fake_upstream(requests: Arc<AtomicU64>, bytes: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            sock.set_nodelay(true).ok();
            let (requests, bytes) = (requests.clone(), bytes.clone());
            tokio::spawn(async move {
                let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
                let mut tmp = vec![0u8; 256 * 1024];
                loop {
                    // Headers.
                    let head_end = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match sock.read(&mut tmp).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&tmp[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    requests.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(len as u64, Ordering::Relaxed);
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{\"success\":true}";
                    if sock.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The process's user + system CPU time in seconds (`/proc/<pid>/stat` fields 14 and 15, in
/// USER_HZ = 100 ticks per second on Linux).
#[allow(dead_code, reason = "not by syncload")]
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}

pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}
