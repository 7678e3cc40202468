//! One attempt at a batch: the request every attempt clones ([`SegmentRequest`], sharing its
//! [`Progress`]), what the API answered ([`SegmentResponse`]), the outcome as the retry policy
//! sees it ([`Attempt`]), and the innermost layer ([`Dispatched`]) that records each attempt as
//! on the wire and dispatches none once the caller has given up.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::BoxError;

/// The outcome of one attempt, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The API answered with this status.
    Status(u16),
    /// The per-attempt timeout fired.
    Timeout,
    /// Connecting, writing or reading failed (including a dropped connection).
    Transport,
    /// The request could not even be built: retrying cannot help.
    Build,
}

/// One `/v1/batch` body to send. Clones (one per attempt) share `progress`.
#[derive(Debug, Clone)]
pub(crate) struct SegmentRequest {
    pub body: Bytes,
    /// The body is gzip-compressed (sent with `Content-Encoding: gzip`).
    pub gzip: bool,
    /// The events it holds, as the destination's rate limit counts them.
    pub events: u32,
    /// Retries stop when the next wait would pass this instant.
    pub deadline: Option<Instant>,
    pub progress: Arc<Progress>,
}

impl SegmentRequest {
    pub(crate) fn new(body: Bytes, events: u32, deadline: Option<Instant>) -> SegmentRequest {
        SegmentRequest {
            body,
            gzip: false,
            events,
            deadline,
            progress: Arc::default(),
        }
    }
}

/// What the retry policy saw so far, for the report: attempts and the last outcome; and what was
/// dispatched, so a caller that gives up knows whether an attempt was on the wire.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    attempts: AtomicU32,
    /// 0: none yet; 1..=999: an HTTP status; TIMEOUT / TRANSPORT / BUILD otherwise.
    last: AtomicU32,
    deadline_stop: AtomicBool,
    dispatch: Mutex<Dispatch>,
}

/// Attempts dispatched and whether one is on the wire; once `cancelled`, none is dispatched.
/// One lock, so a caller that cancels sees exactly what was sent.
#[derive(Debug, Default, Clone, Copy)]
struct Dispatch {
    cancelled: bool,
    started: u32,
    in_flight: bool,
}

const LAST_TIMEOUT: u32 = 1001;
const LAST_TRANSPORT: u32 = 1002;
const LAST_BUILD: u32 = 1003;

impl Progress {
    pub(super) fn record(&self, attempts: u32, attempt: Attempt) {
        self.attempts.store(attempts, Ordering::Relaxed);
        let last = match attempt {
            Attempt::Status(s) => u32::from(s),
            Attempt::Timeout => LAST_TIMEOUT,
            Attempt::Transport => LAST_TRANSPORT,
            Attempt::Build => LAST_BUILD,
        };
        self.last.store(last, Ordering::Relaxed);
    }

    pub(super) fn stopped_for_deadline(&self) {
        self.deadline_stop.store(true, Ordering::Relaxed);
    }

    /// Whether the policy stopped retrying because the next wait would pass the deadline.
    pub(super) fn stopped_by_deadline(&self) -> bool {
        self.deadline_stop.load(Ordering::Relaxed)
    }

    pub(crate) fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Relaxed)
    }

    pub(crate) fn last(&self) -> Option<Attempt> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            LAST_TIMEOUT => Some(Attempt::Timeout),
            LAST_TRANSPORT => Some(Attempt::Transport),
            LAST_BUILD => Some(Attempt::Build),
            s => Some(Attempt::Status(s as u16)),
        }
    }

    fn dispatch(&self) -> std::sync::MutexGuard<'_, Dispatch> {
        // The lock guards plain data: a poisoned one is still consistent.
        self.dispatch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An attempt is about to go on the wire: `false` once the caller has given up.
    fn begin_attempt(&self) -> bool {
        let mut d = self.dispatch();
        if d.cancelled {
            return false;
        }
        d.started += 1;
        d.in_flight = true;
        true
    }

    /// Attempts dispatched so far, the one on the wire included (its number).
    pub(super) fn dispatched(&self) -> u32 {
        self.dispatch().started
    }

    fn end_attempt(&self) {
        self.dispatch().in_flight = false;
    }

    /// The caller gives up: no further attempt is dispatched. Returns the attempts dispatched
    /// and whether one is still on the wire.
    pub(super) fn cancel(&self) -> (u32, bool) {
        let mut d = self.dispatch();
        d.cancelled = true;
        (d.started, d.in_flight)
    }

    pub(super) fn is_cancelled(&self) -> bool {
        self.dispatch().cancelled
    }
}

/// The innermost layer: records each attempt as dispatched (and as over when its future ends,
/// answered or dropped by the timeout) and dispatches none once the caller has given up.
#[derive(Clone)]
pub(super) struct Dispatched<S>(pub(super) S);

/// The error of an attempt that was not dispatched because the caller had given up.
#[derive(Debug, thiserror::Error)]
#[error("not sent: the caller gave up first")]
pub(super) struct Cancelled;

struct AttemptOver(Arc<Progress>);

impl Drop for AttemptOver {
    fn drop(&mut self) {
        self.0.end_attempt();
    }
}

impl<S> tower::Service<SegmentRequest> for Dispatched<S>
where
    S: tower::Service<SegmentRequest, Response = SegmentResponse>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = SegmentResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<SegmentResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: SegmentRequest) -> Self::Future {
        let progress = req.progress.clone();
        if !progress.begin_attempt() {
            return Box::pin(async { Err(Box::new(Cancelled) as BoxError) });
        }
        let over = AttemptOver(progress);
        let attempt = self.0.call(req);
        Box::pin(async move {
            let _over = over;
            attempt.await.map_err(Into::into)
        })
    }
}

/// What the API answered to one attempt (any status: the policy classifies).
#[derive(Debug, Clone)]
pub(crate) struct SegmentResponse {
    pub status: u16,
    pub retry_after: Option<Duration>,
}
