//! A fake Tracking API: a real HTTP server on 127.0.0.1:0 that checks what the real one
//! checks (Basic auth with the write key, JSON content type, 500,000-byte bodies, 32 KiB
//! events), records every accepted messageId, and injects faults on request.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// The API's limits as the fake enforces them.
pub const MAX_BODY_BYTES: usize = 500_000;
pub const MAX_EVENT_BYTES: usize = 32 * 1024;

/// What to do with one request.
#[derive(Debug, Clone)]
pub enum Fault {
    Status(u16),
    /// 429 with `Retry-After: secs`.
    RetryAfter(u64),
    /// Answer normally after this long.
    #[allow(dead_code, reason = "not by tests/postgres")]
    Slow(Duration),
    /// Close the connection without answering.
    Drop,
    /// Record the events, then close the connection (the client cannot know they landed).
    DropAfterAccept,
}

/// Random faults, each with a probability in thousandths.
#[derive(Debug, Clone, Copy, Default)]
pub struct Random {
    pub per_mille_429: u32,
    pub per_mille_500: u32,
    pub per_mille_503: u32,
    pub per_mille_drop: u32,
    pub per_mille_drop_after_accept: u32,
    #[allow(dead_code, reason = "tests/api only")]
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub struct Request {
    #[allow(dead_code, reason = "tests/api only")]
    pub at: Instant,
    #[allow(dead_code, reason = "tests/api only")]
    pub status: u16,
    #[allow(dead_code, reason = "tests/api only")]
    pub events: usize,
    #[allow(dead_code, reason = "tests/api only")]
    pub bytes: usize,
    #[allow(dead_code, reason = "tests/api only")]
    pub user_agent: String,
    /// The W3C trace context the request carried, if any (read by tests/otlp.rs).
    #[allow(dead_code, reason = "tests/otlp only")]
    pub traceparent: Option<String>,
    /// The body came gzip-compressed (`Content-Encoding: gzip`); `bytes` is its size decoded.
    #[allow(dead_code, reason = "tests/api only")]
    pub gzip: bool,
    /// The body's size on the wire.
    #[allow(dead_code, reason = "tests/api only")]
    pub wire_bytes: usize,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Fault>,
    random: Option<Random>,
    rng: u64,
    poison: HashSet<String>,
    accepted: Vec<String>,
    requests: Vec<Request>,
    /// The body of the last request answered 200, as sent.
    last_body: Bytes,
}

struct Shared {
    auth: String,
    /// Bodies larger than this get 413 (an upstream whose limit is below ours); 0: none.
    max_body_bytes: AtomicUsize,
    inner: Mutex<Inner>,
    in_progress: AtomicUsize,
    max_in_progress: AtomicUsize,
}

/// Counts a request in progress until dropped (also when the handler panics).
struct InProgress<'a>(&'a Shared);

impl<'a> InProgress<'a> {
    fn new(s: &'a Shared) -> InProgress<'a> {
        let n = s.in_progress.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_in_progress.fetch_max(n, Ordering::SeqCst);
        InProgress(s)
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct FakeSegment {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSegment {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The panic that drops a connection is expected: keep it out of the test output.
fn quiet_drops() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .unwrap_or_default();
            if msg != DROP {
                default(info);
            }
        }));
    });
}

const DROP: &str = "fake segment: dropping the connection";

impl FakeSegment {
    pub async fn start(write_key: &str) -> FakeSegment {
        quiet_drops();
        let auth = format!("Basic {}", base64(format!("{write_key}:").as_bytes()));
        let shared = Arc::new(Shared {
            auth,
            max_body_bytes: AtomicUsize::new(0),
            inner: Mutex::default(),
            in_progress: AtomicUsize::new(0),
            max_in_progress: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/v1/batch", post(batch))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        FakeSegment { addr, shared, task }
    }

    /// The `Authorization` value the fake expects: the write key in its Basic form.
    #[allow(dead_code, reason = "tests/otlp only")]
    pub fn authorization(&self) -> &str {
        &self.shared.auth
    }

    /// The base URL to register as a destination's region.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Faults for the next requests, in order.
    #[allow(dead_code, reason = "not by tests/otlp or tests/postgres")]
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.inner.lock().unwrap().script.extend(faults);
    }

    #[allow(dead_code, reason = "tests/api only")]
    pub fn random(&self, r: Random) {
        let mut i = self.shared.inner.lock().unwrap();
        i.rng = r.seed | 1;
        i.random = Some(r);
    }

    /// Bodies over `bytes` are answered 413, as an upstream with a smaller limit than ours.
    #[allow(dead_code, reason = "tests/api only")]
    pub fn max_body_bytes(&self, bytes: usize) {
        self.shared.max_body_bytes.store(bytes, Ordering::SeqCst);
    }

    /// A batch holding this messageId is answered 400.
    #[allow(dead_code, reason = "tests/api only")]
    pub fn poison(&self, message_id: &str) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .poison
            .insert(message_id.to_owned());
    }

    /// Every accepted messageId, in arrival order (a resend after a lost answer appears twice).
    #[allow(dead_code, reason = "not by tests/otlp")]
    pub fn accepted(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().accepted.clone()
    }

    /// The body of the last batch accepted, as the fake received it (text: the test's own JSON
    /// parser would round long integers).
    #[allow(dead_code, reason = "tests/api only")]
    pub fn last_body(&self) -> String {
        String::from_utf8_lossy(&self.shared.inner.lock().unwrap().last_body).into_owned()
    }

    /// The requests the fake is handling now (a slow one it holds, for one).
    #[allow(dead_code, reason = "tests/api only")]
    pub fn in_progress(&self) -> usize {
        self.shared.in_progress.load(Ordering::SeqCst)
    }

    /// The most requests the fake was ever handling at once.
    #[allow(dead_code, reason = "tests/api only")]
    pub fn max_in_progress(&self) -> usize {
        self.shared.max_in_progress.load(Ordering::SeqCst)
    }

    #[allow(dead_code, reason = "not by tests/metrics or tests/postgres")]
    pub fn requests(&self) -> Vec<Request> {
        self.shared.inner.lock().unwrap().requests.clone()
    }
}

/// Each request is handled in a task of its own, as a real server goes on with a request whose
/// client has hung up: a slow request the client gave up on is still counted in progress, and
/// its events still stored.
async fn batch(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    match tokio::spawn(handle(shared, headers, body)).await {
        Ok(response) => response,
        // A dropped connection: the panic drops it here too.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// The most a gzip body may decode to: far above the API's 500 KB, a bomb stops here.
const MAX_DECODED_BYTES: u64 = 8 * 1024 * 1024;

async fn handle(shared: Arc<Shared>, headers: HeaderMap, wire: Bytes) -> Response {
    let at = Instant::now();
    let wire_bytes = wire.len();
    let gzip = match headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()) {
        None => false,
        Some(b"gzip") => true,
        Some(_) => return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unknown encoding").into_response(),
    };
    let body = if gzip {
        use std::io::Read as _;
        let mut out = Vec::new();
        let decoded = flate2::read::GzDecoder::new(&wire[..])
            .take(MAX_DECODED_BYTES)
            .read_to_end(&mut out);
        match decoded {
            Ok(_) => Bytes::from(out),
            Err(_) => return (StatusCode::BAD_REQUEST, "bad gzip").into_response(),
        }
    } else {
        wire
    };
    let _counted = InProgress::new(&shared);
    let shared = &shared;
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let record = |status: u16, events: usize| {
        shared.inner.lock().unwrap().requests.push(Request {
            at,
            status,
            events,
            bytes: body.len(),
            user_agent: user_agent.clone(),
            traceparent: traceparent.clone(),
            gzip,
            wire_bytes,
        });
    };
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&shared.auth)
    {
        record(401, 0);
        return (StatusCode::UNAUTHORIZED, "bad write key").into_response();
    }
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some("application/json")
    {
        record(400, 0);
        return (
            StatusCode::BAD_REQUEST,
            "content type must be application/json",
        )
            .into_response();
    }
    let limit = shared.max_body_bytes.load(Ordering::SeqCst);
    if limit > 0 && body.len() > limit {
        record(413, 0);
        return (StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
    }
    if body.len() > MAX_BODY_BYTES {
        record(400, 0);
        return (StatusCode::BAD_REQUEST, "body over 500 KB").into_response();
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        record(400, 0);
        return (StatusCode::BAD_REQUEST, "invalid JSON").into_response();
    };
    let Some(events) = v.get("batch").and_then(|b| b.as_array()) else {
        record(400, 0);
        return (StatusCode::BAD_REQUEST, "no batch").into_response();
    };
    let mut ids = Vec::with_capacity(events.len());
    for e in events {
        if serde_json::to_vec(e).map(|b| b.len()).unwrap_or(0) > MAX_EVENT_BYTES {
            record(400, events.len());
            return (StatusCode::BAD_REQUEST, "event over 32 KB").into_response();
        }
        if e.get("type").and_then(|t| t.as_str()).is_none() {
            record(400, events.len());
            return (StatusCode::BAD_REQUEST, "event without type").into_response();
        }
        ids.push(
            e.get("messageId")
                .and_then(|m| m.as_str())
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let fault = {
        let mut i = shared.inner.lock().unwrap();
        if ids.iter().any(|id| i.poison.contains(id)) {
            Some(Fault::Status(400))
        } else if let Some(f) = i.script.pop_front() {
            Some(f)
        } else if let Some(r) = i.random {
            i.rng ^= i.rng << 13;
            i.rng ^= i.rng >> 7;
            i.rng ^= i.rng << 17;
            let roll = (i.rng % 1000) as u32;
            let mut edge = 0;
            let mut pick = |p: u32, f: Fault| {
                edge += p;
                (roll < edge).then_some(f)
            };
            pick(r.per_mille_429, Fault::RetryAfter(0))
                .or_else(|| pick(r.per_mille_500, Fault::Status(500)))
                .or_else(|| pick(r.per_mille_503, Fault::Status(503)))
                .or_else(|| pick(r.per_mille_drop, Fault::Drop))
                .or_else(|| pick(r.per_mille_drop_after_accept, Fault::DropAfterAccept))
        } else {
            None
        }
    };
    match fault {
        None => {}
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::Status(s)) => {
            record(s, ids.len());
            return StatusCode::from_u16(s).unwrap().into_response();
        }
        Some(Fault::RetryAfter(secs)) => {
            record(429, ids.len());
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
            )
                .into_response();
        }
        Some(Fault::Drop) => {
            record(0, ids.len());
            std::panic::panic_any(DROP);
        }
        Some(Fault::DropAfterAccept) => {
            record(0, ids.len());
            shared.inner.lock().unwrap().accepted.extend(ids);
            std::panic::panic_any(DROP);
        }
    }
    record(200, ids.len());
    let mut inner = shared.inner.lock().unwrap();
    inner.accepted.extend(ids);
    inner.last_body = body.clone();
    drop(inner);
    (StatusCode::OK, "{\"success\":true}").into_response()
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_rfc4648() {
    assert_eq!(base64(b"key:"), "a2V5Og==");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
}
