//! [`SegmentClient`]: sends one batch body through the destination's tower stack (`stack.rs`)
//! and turns the outcome into a [`Sent`] or a [`SendError`]. `BoxError` stops here.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tower::ServiceExt as _;
use tower::util::BoxCloneSyncService;

use super::WriteKey;
use super::attempt::{Attempt, Progress, SegmentRequest, SegmentResponse};
use super::http::SegmentHttp;
use super::limit::{OverDeadline, RateLimiter};
use super::retry::{self, Class, attempt_of_error};
use super::{BoxError, RetrySettings, stack};
use crate::metrics::DestinationMetrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    pub attempts: u32,
}

/// Why a batch was not delivered. Never carries the write key or an upstream body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SendError {
    /// A permanent answer (a 4xx other than the retryable ones).
    #[error("upstream rejected the batch with status {status}")]
    Rejected { status: u16, attempts: u32 },
    /// Every attempt allowed failed retryably.
    #[error("retries exhausted after {attempts} attempts")]
    RetriesExhausted { last: Attempt, attempts: u32 },
    /// The caller's deadline came first. `in_flight`: an attempt was on the wire then, so the
    /// API may have the events.
    #[error("deadline reached after {attempts} attempts")]
    Deadline {
        last: Option<Attempt>,
        attempts: u32,
        in_flight: bool,
    },
    /// Not sent (or not sent again): the destination's rate limit would have held it past the
    /// caller's deadline. `wait`: how long it would have had to wait.
    #[error("the destination's rate limit would hold the batch past the deadline")]
    RateLimited {
        wait: Duration,
        last: Option<Attempt>,
        attempts: u32,
    },
    /// Never sent: the destination's custom host is not in `--allowed-upstreams`.
    #[error("the destination's host is not in --allowed-upstreams")]
    NotAllowed,
}

impl SendError {
    /// Whether sending the same events again later may succeed.
    pub(crate) fn is_retryable(&self) -> bool {
        !matches!(self, SendError::Rejected { .. } | SendError::NotAllowed)
    }

    pub(crate) fn attempts(&self) -> u32 {
        match self {
            SendError::Rejected { attempts, .. }
            | SendError::RetriesExhausted { attempts, .. }
            | SendError::Deadline { attempts, .. }
            | SendError::RateLimited { attempts, .. } => *attempts,
            SendError::NotAllowed => 0,
        }
    }

    /// The last upstream HTTP status, if the last attempt got one.
    pub(crate) fn last_status(&self) -> Option<u16> {
        match self {
            SendError::Rejected { status, .. } => Some(*status),
            SendError::RetriesExhausted { last, .. }
            | SendError::Deadline {
                last: Some(last), ..
            }
            | SendError::RateLimited {
                last: Some(last), ..
            } => match last {
                Attempt::Status(s) => Some(*s),
                _ => None,
            },
            SendError::Deadline { last: None, .. }
            | SendError::RateLimited { last: None, .. }
            | SendError::NotAllowed => None,
        }
    }
}

/// Sends batch bodies to one destination through the stack built once in `stack.rs`. Cheap to
/// clone; clones share the concurrency limit.
#[derive(Clone)]
pub(crate) struct SegmentClient {
    svc: BoxCloneSyncService<SegmentRequest, SegmentResponse, BoxError>,
    gzip: bool,
    /// The destination's rate limit, shared by every clone (`None`: unlimited).
    limiter: Option<Arc<RateLimiter>>,
    metrics: DestinationMetrics,
}

impl std::fmt::Debug for SegmentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SegmentClient")
    }
}

impl SegmentClient {
    /// The stack over any inner service (tests inject mocks here), unlimited and unlabelled.
    #[cfg(test)]
    pub(crate) fn new<S>(inner: S, settings: &RetrySettings) -> SegmentClient
    where
        S: tower::Service<SegmentRequest, Response = SegmentResponse>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        SegmentClient::with(inner, settings, Limit::default())
    }

    /// The stack over `inner` with the destination's rate limit and metrics.
    pub(crate) fn with<S>(inner: S, settings: &RetrySettings, limit: Limit) -> SegmentClient
    where
        S: tower::Service<SegmentRequest, Response = SegmentResponse>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        let limiter = limit.per_second.map(|r| Arc::new(RateLimiter::new(r)));
        SegmentClient {
            svc: stack::build(inner, settings, limiter.clone(), limit.metrics.clone()),
            gzip: settings.gzip,
            limiter,
            metrics: limit.metrics,
        }
    }

    /// The real thing: HTTP to `base` with `write_key`.
    pub(crate) fn http(
        client: reqwest::Client,
        base: &str,
        write_key: WriteKey,
        settings: &RetrySettings,
        limit: Limit,
    ) -> SegmentClient {
        let http = SegmentHttp::new(client, base, write_key, limit.metrics.clone());
        SegmentClient::with(http, settings, limit)
    }

    /// The most events one batch to this destination should hold: its rate limit's burst,
    /// `None` when unlimited.
    pub(crate) fn max_batch_events(&self) -> Option<usize> {
        self.limiter.as_ref().map(|l| l.burst_events())
    }

    /// Where the destination's figures are counted.
    pub(crate) fn metrics(&self) -> &DestinationMetrics {
        &self.metrics
    }

    /// Sends one body, retrying per the policy, giving up at `deadline`.
    ///
    /// The batch runs in a task of its own that holds its place in the concurrency limit. When
    /// the caller gives up (the deadline, or its future is dropped) no further attempt starts;
    /// an attempt already on the wire runs to its end (its own timeout bounds it) still holding
    /// that place, so the limit is a hard cap on requests the API sees, and the report says the
    /// API may have the events rather than that they were never sent.
    pub(crate) async fn send(
        &self,
        body: Bytes,
        events: usize,
        deadline: Instant,
    ) -> Result<Sent, SendError> {
        let events = u32::try_from(events).unwrap_or(u32::MAX);
        let mut req = SegmentRequest::new(body, events, Some(deadline));
        if self.gzip {
            // Once per batch, not per attempt, and off the async workers (a full body takes
            // a few milliseconds at the fastest level).
            let body = req.body.clone();
            if let Ok(Ok(gz)) = tokio::task::spawn_blocking(move || gzip(&body)).await {
                (req.body, req.gzip) = (gz, true);
            }
        }
        let progress = req.progress.clone();
        let mut task = Batch {
            // In the caller's span, so its trace goes on into the upstream request.
            task: tokio::spawn(tracing::Instrument::in_current_span(
                self.svc.clone().oneshot(req),
            )),
            progress: progress.clone(),
        };
        let outcome = tokio::time::timeout_at(deadline, &mut task.task).await;
        let Ok(joined) = outcome else {
            let (attempts, in_flight) = task.give_up();
            return Err(SendError::Deadline {
                last: progress.last(),
                attempts,
                in_flight,
            });
        };
        if let Ok(Err(e)) = &joined
            && let Some(OverDeadline { wait }) = e.downcast_ref::<OverDeadline>()
        {
            return Err(SendError::RateLimited {
                wait: *wait,
                last: progress.last(),
                attempts: progress.attempts(),
            });
        }
        let attempts = progress.attempts().max(1);
        let attempt = match joined {
            Ok(Ok(r)) => Attempt::Status(r.status),
            Ok(Err(e)) => attempt_of_error(e.as_ref()),
            // The batch's task panicked: nothing is known of its attempt.
            Err(_) => Attempt::Transport,
        };
        match retry::classify(attempt) {
            Class::Success => Ok(Sent { attempts }),
            _ if progress.stopped_by_deadline() => Err(SendError::Deadline {
                last: Some(attempt),
                attempts,
                in_flight: false,
            }),
            Class::Permanent => match attempt {
                Attempt::Status(status) => Err(SendError::Rejected { status, attempts }),
                last => Err(SendError::RetriesExhausted { last, attempts }),
            },
            Class::Retry => Err(SendError::RetriesExhausted {
                last: attempt,
                attempts,
            }),
        }
    }
}

/// `body` gzip-compressed at the fastest level: JSON batches shrink several times over even so,
/// and the CPU a batch costs stays small beside rendering it.
pub fn gzip(body: &[u8]) -> std::io::Result<Bytes> {
    use std::io::Write as _;
    let mut out = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    out.write_all(body)?;
    Ok(out.finish()?.into())
}

/// What a destination's sender is built with beside the retry settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Limit {
    /// Its rate limit in events per second (`None`: unlimited).
    pub per_second: Option<std::num::NonZeroU32>,
    pub metrics: DestinationMetrics,
}

/// One batch's task. Dropped or given up: it dispatches no further attempt; unless an attempt is
/// on the wire it stops at once (waiting for a place or sleeping before a retry).
struct Batch<T> {
    task: tokio::task::JoinHandle<T>,
    progress: Arc<Progress>,
}

impl<T> Batch<T> {
    fn give_up(&self) -> (u32, bool) {
        let (started, in_flight) = self.progress.cancel();
        if !in_flight {
            self.task.abort();
        }
        (started, in_flight)
    }
}

impl<T> Drop for Batch<T> {
    fn drop(&mut self) {
        if !self.task.is_finished() {
            self.give_up();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use super::*;

    /// A scripted inner service: each call pops the next answer and records the (virtual) time.
    #[derive(Clone, Default)]
    struct Script {
        answers: Arc<Mutex<VecDeque<Answer>>>,
        calls: Arc<Mutex<Vec<Instant>>>,
    }

    #[derive(Clone)]
    enum Answer {
        Status(u16, Option<Duration>),
        Hang,
        Drop,
    }

    #[derive(Debug)]
    struct Dropped;
    impl std::fmt::Display for Dropped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection dropped")
        }
    }
    impl std::error::Error for Dropped {}

    impl Script {
        fn new(answers: impl IntoIterator<Item = Answer>) -> Script {
            Script {
                answers: Arc::new(Mutex::new(answers.into_iter().collect())),
                calls: Arc::default(),
            }
        }

        fn gaps(&self) -> Vec<Duration> {
            let calls = self.calls.lock().unwrap();
            calls.windows(2).map(|w| w[1] - w[0]).collect()
        }
    }

    impl tower::Service<SegmentRequest> for Script {
        type Response = SegmentResponse;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<SegmentResponse, BoxError>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _req: SegmentRequest) -> Self::Future {
            self.calls.lock().unwrap().push(Instant::now());
            let answer = self
                .answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Answer::Status(200, None));
            Box::pin(async move {
                match answer {
                    Answer::Status(status, retry_after) => Ok(SegmentResponse {
                        status,
                        retry_after,
                    }),
                    Answer::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(SegmentResponse {
                            status: 200,
                            retry_after: None,
                        })
                    }
                    Answer::Drop => Err(Box::new(Dropped) as BoxError),
                }
            })
        }
    }

    fn settings() -> RetrySettings {
        RetrySettings {
            max_attempts: 4,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_millis(1000),
            retry_after_cap: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            max_in_flight: 2,
            gzip: false,
        }
    }

    /// What `gzip` writes decodes to the body.
    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let body = br#"{"batch":[{"type":"track","event":"E"}]}"#.repeat(100);
        let gz = gzip(&body).unwrap();
        assert!(gz.len() * 10 < body.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }

    fn in_a_minute() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    async fn send(script: &Script, deadline: Instant) -> Result<Sent, SendError> {
        SegmentClient::new(script.clone(), &settings())
            .send(Bytes::from_static(b"{}"), 1, deadline)
            .await
    }

    #[tokio::test(start_paused = true)]
    async fn retries_5xx_with_growing_jittered_backoff() {
        let s = Script::new([
            Answer::Status(503, None),
            Answer::Status(500, None),
            Answer::Status(502, None),
        ]);
        assert_eq!(send(&s, in_a_minute()).await, Ok(Sent { attempts: 4 }));
        let gaps = s.gaps();
        assert_eq!(gaps.len(), 3);
        // Retry n waits within [base·2^(n-1)/2, base·2^(n-1)].
        for (n, gap) in gaps.iter().enumerate() {
            let full = Duration::from_millis(100 << n);
            assert!(*gap >= full / 2 && *gap <= full, "retry {}: {gap:?}", n + 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after() {
        let s = Script::new([Answer::Status(429, Some(Duration::from_secs(7)))]);
        assert_eq!(send(&s, in_a_minute()).await, Ok(Sent { attempts: 2 }));
        assert_eq!(s.gaps(), [Duration::from_secs(7)]);
    }

    /// A 429 with Retry-After pauses the whole destination: a batch sent meanwhile by another
    /// caller waits until the pause is over before its first attempt.
    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_every_batch_of_the_destination() {
        let s = Script::new([Answer::Status(429, Some(Duration::from_secs(7)))]);
        let client = SegmentClient::new(s.clone(), &settings());
        let started = Instant::now();
        let first = client.send(Bytes::from_static(b"{}"), 1, in_a_minute());
        let second = async {
            // Sent after the 429 was answered, while the pause is on.
            tokio::time::sleep(Duration::from_secs(1)).await;
            client
                .send(Bytes::from_static(b"{}"), 1, in_a_minute())
                .await
        };
        let (a, b) = tokio::join!(first, second);
        assert_eq!((a, b), (Ok(Sent { attempts: 2 }), Ok(Sent { attempts: 1 })));
        let calls = s.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 3);
        // Nothing reached the API between the 429 and the end of its pause.
        assert!(
            calls[1..]
                .iter()
                .all(|t| *t - started >= Duration::from_secs(7)),
            "{calls:?}"
        );
    }

    /// Waiting out rate limits costs no attempt: six 429s, then success, with four attempts
    /// allowed.
    #[tokio::test(start_paused = true)]
    async fn rate_limits_do_not_use_up_attempts() {
        let s = Script::new((0..6).map(|_| Answer::Status(429, Some(Duration::from_secs(1)))));
        assert_eq!(send(&s, in_a_minute()).await, Ok(Sent { attempts: 7 }));
    }

    /// A down upstream is not hammered: with every answer a 503, 50 batches make far fewer than
    /// the 200 attempts four each would; the retry budget lets one in five retry, plus a few.
    #[tokio::test(start_paused = true)]
    async fn the_retry_budget_bounds_retries_of_a_down_upstream() {
        let s = Script::new((0..1000).map(|_| Answer::Status(503, None)));
        let client = SegmentClient::new(s.clone(), &settings());
        for _ in 0..50 {
            let e = client
                .send(Bytes::from_static(b"{}"), 1, in_a_minute())
                .await;
            assert!(
                matches!(e, Err(SendError::RetriesExhausted { .. })),
                "{e:?}"
            );
        }
        let calls = s.calls.lock().unwrap().len();
        assert!((50..=50 + 10 + 10 + 5).contains(&calls), "{calls} calls");
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_a_permanent_4xx() {
        let s = Script::new([Answer::Status(400, None)]);
        let e = send(&s, in_a_minute()).await.unwrap_err();
        assert_eq!(
            e,
            SendError::Rejected {
                status: 400,
                attempts: 1
            }
        );
        assert!(!e.is_retryable());
        assert_eq!(s.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn exhaustion_reports_the_last_status() {
        let s = Script::new((0..10).map(|_| Answer::Status(503, None)));
        let e = send(&s, in_a_minute()).await.unwrap_err();
        assert_eq!(
            e,
            SendError::RetriesExhausted {
                last: Attempt::Status(503),
                attempts: 4
            }
        );
        assert_eq!(e.last_status(), Some(503));
        assert!(e.is_retryable());
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_and_dropped_connections_are_retried() {
        let s = Script::new([Answer::Hang, Answer::Drop]);
        assert_eq!(send(&s, in_a_minute()).await, Ok(Sent { attempts: 3 }));
        let s = Script::new([Answer::Drop, Answer::Drop, Answer::Hang, Answer::Drop]);
        let e = send(&s, in_a_minute()).await.unwrap_err();
        assert_eq!(
            e,
            SendError::RetriesExhausted {
                last: Attempt::Transport,
                attempts: 4
            }
        );
        assert_eq!(e.last_status(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn never_waits_past_the_deadline() {
        // Retry-After 20 s with 5 s left: stop now, as a deadline failure.
        let s = Script::new([Answer::Status(429, Some(Duration::from_secs(20)))]);
        let start = Instant::now();
        let e = send(&s, start + Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(
            e,
            SendError::Deadline {
                last: Some(Attempt::Status(429)),
                attempts: 1,
                in_flight: false,
            }
        );
        assert!(Instant::now() - start < Duration::from_secs(5));
        // A hanging attempt is cut at the deadline.
        let s = Script::new([Answer::Hang]);
        let start = Instant::now();
        let e = SegmentClient::new(
            s.clone(),
            &RetrySettings {
                attempt_timeout: Duration::from_secs(60),
                ..settings()
            },
        )
        .send(Bytes::new(), 1, start + Duration::from_secs(2))
        .await
        .unwrap_err();
        // The attempt was on the wire: the API may have the events.
        assert_eq!(
            e,
            SendError::Deadline {
                last: None,
                attempts: 1,
                in_flight: true,
            }
        );
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    fn one_at_a_time() -> RetrySettings {
        RetrySettings {
            max_in_flight: 1,
            attempt_timeout: Duration::from_secs(10),
            ..settings()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_not_started_by_its_deadline_is_never_sent() {
        let s = Script::new([Answer::Hang]);
        let client = SegmentClient::new(s.clone(), &one_at_a_time());
        let start = Instant::now();
        let first = tokio::spawn({
            let c = client.clone();
            async move {
                c.send(Bytes::new(), 1, start + Duration::from_secs(60))
                    .await
            }
        });
        tokio::task::yield_now().await;
        // Queued behind the first until its deadline: reported unsent, and never dispatched.
        let e = client
            .send(Bytes::new(), 1, start + Duration::from_secs(2))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            SendError::Deadline {
                last: None,
                attempts: 0,
                in_flight: false,
            }
        );
        first.await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_secs(120)).await;
        // The hanging attempt, its retry: the queued batch never went out.
        assert_eq!(s.calls.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_on_the_wire_at_the_deadline_keeps_its_place_in_the_limit() {
        let s = Script::new([Answer::Hang]);
        let client = SegmentClient::new(s.clone(), &one_at_a_time());
        let start = Instant::now();
        let e = client
            .send(Bytes::new(), 1, start + Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                SendError::Deadline {
                    in_flight: true,
                    ..
                }
            ),
            "{e:?}"
        );
        // The next batch waits until that attempt has ended (its 10 s timeout): the upstream
        // never has more than one request of this destination at once.
        client
            .send(Bytes::new(), 1, start + Duration::from_secs(60))
            .await
            .unwrap();
        let calls = s.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2, "the given-up batch was not retried");
        assert!(
            calls[1] - start >= Duration::from_secs(10),
            "{:?}",
            calls[1] - start
        );
    }

    fn limited(s: &Script, per_second: u32) -> SegmentClient {
        let limit = Limit {
            per_second: std::num::NonZeroU32::new(per_second),
            metrics: DestinationMetrics::default(),
        };
        SegmentClient::with(s.clone(), &settings(), limit)
    }

    /// The rate limit counts events across every caller of the destination: 10/s, batches of
    /// 5 from two callers at once; after the burst each batch goes 500 ms after the last.
    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_paces_every_caller_by_events() {
        let s = Script::new([]);
        let client = limited(&s, 10);
        assert_eq!(client.max_batch_events(), Some(10));
        let start = Instant::now();
        let callers = (0..2).map(|_| {
            let c = client.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    c.send(Bytes::new(), 5, in_a_minute()).await.unwrap();
                }
            })
        });
        for c in callers.collect::<Vec<_>>() {
            c.await.unwrap();
        }
        let mut at: Vec<Duration> = s.calls.lock().unwrap().iter().map(|t| *t - start).collect();
        at.sort();
        let ms = |m| Duration::from_millis(m);
        assert_eq!(at, [ms(0), ms(0), ms(500), ms(1000), ms(1500), ms(2000)]);
    }

    /// A retry waits for the rate limit too, and that wait is no attempt: three 503s, then
    /// success, with four attempts allowed.
    #[tokio::test(start_paused = true)]
    async fn waiting_for_the_rate_limit_uses_no_attempt() {
        let s = Script::new((0..3).map(|_| Answer::Status(503, None)));
        let client = limited(&s, 1);
        let sent = client.send(Bytes::new(), 1, in_a_minute()).await;
        assert_eq!(sent, Ok(Sent { attempts: 4 }));
        // Each retry waited for its token (1 s apart at least), beyond its backoff.
        assert!(
            s.gaps().iter().all(|g| *g >= Duration::from_secs(1)),
            "{:?}",
            s.gaps()
        );
    }

    /// A batch the limit would hold past the deadline is not sent, and the error says how long
    /// it would have waited.
    #[tokio::test(start_paused = true)]
    async fn a_deadline_too_short_for_the_limit_says_how_long_it_needed() {
        let s = Script::new([]);
        let client = limited(&s, 10);
        let start = Instant::now();
        client.send(Bytes::new(), 10, in_a_minute()).await.unwrap();
        let e = client
            .send(Bytes::new(), 10, start + Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(
            e,
            SendError::RateLimited {
                wait: Duration::from_secs(1),
                last: None,
                attempts: 0
            }
        );
        assert!(e.is_retryable());
        // At once, and nothing sent: only the first batch reached the API.
        assert_eq!(Instant::now(), start);
        assert_eq!(s.calls.lock().unwrap().len(), 1);
        // A retry after a 503 that the limit would hold too long ends the same way.
        let s = Script::new([Answer::Status(503, None)]);
        let client = limited(&s, 1);
        let e = client
            .send(Bytes::new(), 1, Instant::now() + Duration::from_millis(800))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                SendError::RateLimited {
                    last: Some(Attempt::Status(503)),
                    attempts: 1,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_is_shared_by_clones() {
        let s = Script::new((0..4).map(|_| Answer::Hang));
        let client = SegmentClient::new(s.clone(), &settings());
        let sends: Vec<_> = (0..4)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move { c.send(Bytes::new(), 1, in_a_minute()).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        // max_in_flight = 2: two calls started, two wait for a permit.
        assert_eq!(s.calls.lock().unwrap().len(), 2);
        for t in sends {
            t.abort();
        }
    }
}
