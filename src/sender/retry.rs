//! What to do after one attempt: the pure [`classify`] table, jittered exponential
//! [`backoff`], `Retry-After` parsing, and the tower [`RetryPolicy`] that puts them together.
//! Politeness, per destination ([`Pacing`], shared by all its requests): a 429 with
//! `Retry-After` pauses every request to the destination, not only the one answered (the
//! [`Paused`] layer holds each attempt until then); waits for rate limits do not count as
//! attempts; and a retry budget bounds the retries of other failures to a share of the requests,
//! so a down upstream is not hammered by every batch retrying at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tower::ServiceExt as _;
use tower::retry::budget::{Budget as _, TpsBudget};

use super::attempt::{Attempt, SegmentRequest, SegmentResponse};
use super::limit::OverDeadline;
use super::{BoxError, RetrySettings};
use crate::metrics::DestinationMetrics;

/// Retries of failures other than 429 allowed per destination: one in five requests of the last
/// ten seconds, plus one a second whatever the traffic.
const RETRY_BUDGET_PERCENT: f32 = 0.2;
const RETRY_BUDGET_MIN_PER_SEC: u32 = 1;
const RETRY_BUDGET_TTL: Duration = Duration::from_secs(10);
/// 429s one request may wait out before it gives up (the deadline usually comes first).
const MAX_RATE_LIMITED: u32 = 64;

/// One destination's pacing: until when the API asked it to pause, and its retry budget.
#[derive(Debug)]
pub(super) struct Pacing {
    paused_until: Mutex<Option<Instant>>,
    budget: TpsBudget,
}

impl Pacing {
    pub(super) fn new() -> Pacing {
        Pacing {
            paused_until: Mutex::new(None),
            budget: TpsBudget::new(
                RETRY_BUDGET_TTL,
                RETRY_BUDGET_MIN_PER_SEC,
                RETRY_BUDGET_PERCENT,
            ),
        }
    }

    fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut p = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|at| at < until) {
            *p = Some(until);
        }
    }

    fn paused_until(&self) -> Option<Instant> {
        let p = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        p.filter(|at| *at > Instant::now())
    }
}

/// Holds each attempt until the destination's pause (after a 429 with `Retry-After`) is over,
/// before its timeout starts: a paused destination sends nothing, and the wait costs no attempt.
#[derive(Clone)]
pub(super) struct Paused<S> {
    pub(super) inner: S,
    pub(super) pacing: Arc<Pacing>,
}

impl<S> tower::Service<SegmentRequest> for Paused<S>
where
    S: tower::Service<SegmentRequest, Response = SegmentResponse> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = SegmentResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<SegmentResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is the inner service's, checked when the pause is over.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: SegmentRequest) -> Self::Future {
        let (inner, pacing) = (self.inner.clone(), self.pacing.clone());
        Box::pin(async move {
            // A caller that gives up meanwhile aborts this wait (nothing was sent).
            while let Some(until) = pacing.paused_until() {
                tokio::time::sleep_until(until).await;
            }
            inner.oneshot(req).await.map_err(Into::into)
        })
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Success,
    Retry,
    Permanent,
}

/// The retry table (docs/DESIGN.md): 2xx succeed; 408, 410, 429, 460 and 5xx except 501/505 are
/// retried, as are timeouts and transport errors; every other status is permanent.
pub(super) fn classify(attempt: Attempt) -> Class {
    match attempt {
        Attempt::Status(s) if (200..300).contains(&s) => Class::Success,
        Attempt::Status(408 | 410 | 429 | 460) => Class::Retry,
        Attempt::Status(501 | 505) => Class::Permanent,
        Attempt::Status(500..=599) => Class::Retry,
        Attempt::Status(_) => Class::Permanent,
        Attempt::Timeout | Attempt::Transport => Class::Retry,
        Attempt::Build => Class::Permanent,
    }
}

/// The wait before retry number `retry` (1 for the first retry): `base · 2^(retry-1)` capped at
/// `cap`, then "equal jitter": half of it fixed, the other half scaled by `unit` in `[0, 1)`.
pub(super) fn backoff(retry: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
    let d = exp.min(cap);
    let half = d / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

/// A `Retry-After` value: delay-seconds or an HTTP date (relative to `now`). `None` if it is
/// neither.
pub(super) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The attempt as the classifier sees it, from what the inner stack returned.
pub(super) fn attempt_of(result: &Result<SegmentResponse, BoxError>) -> Attempt {
    match result {
        Ok(r) => Attempt::Status(r.status),
        Err(e) => attempt_of_error(e.as_ref()),
    }
}

/// Walks the error's causes: a tower timeout, a transport failure, or a request that could not
/// be built.
pub(super) fn attempt_of_error(e: &(dyn std::error::Error + 'static)) -> Attempt {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<tower::timeout::error::Elapsed>() {
            return Attempt::Timeout;
        }
        if let Some(r) = err.downcast_ref::<reqwest::Error>() {
            return if r.is_builder() {
                Attempt::Build
            } else if r.is_timeout() {
                Attempt::Timeout
            } else {
                Attempt::Transport
            };
        }
        cur = err.source();
    }
    Attempt::Transport
}

/// The tower retry policy: classify each attempt, stop after `max_attempts` or when the next
/// wait would pass the request's deadline, wait `Retry-After` (clamped) or the backoff.
#[derive(Clone)]
pub(super) struct RetryPolicy {
    settings: Arc<RetrySettings>,
    pacing: Arc<Pacing>,
    metrics: DestinationMetrics,
    /// Attempts made so far for this request.
    attempts: u32,
    /// Of them, those answered 429: they do not count against `max_attempts`.
    rate_limited: u32,
    rng: u64,
}

impl RetryPolicy {
    pub(super) fn new(
        settings: Arc<RetrySettings>,
        pacing: Arc<Pacing>,
        metrics: DestinationMetrics,
    ) -> RetryPolicy {
        RetryPolicy {
            settings,
            pacing,
            metrics,
            attempts: 0,
            rate_limited: 0,
            rng: 0,
        }
    }

    /// A uniform number in `[0, 1)` (splitmix64 over a process-wide counter: enough to
    /// decorrelate concurrent retries, no global lock).
    fn unit(&mut self) -> f64 {
        static SEED: AtomicU64 = AtomicU64::new(0x853c_49e6_748f_ea9b);
        if self.rng == 0 {
            self.rng = SEED.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        }
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The wait before the next attempt.
    fn wait(&mut self, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.clamp(self.settings.backoff_base, self.settings.retry_after_cap),
            None => {
                let unit = self.unit();
                let s = &self.settings;
                backoff(self.attempts, s.backoff_base, s.backoff_cap, unit)
            }
        }
    }
}

impl tower::retry::Policy<SegmentRequest, SegmentResponse, BoxError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut SegmentRequest,
        result: &mut Result<SegmentResponse, BoxError>,
    ) -> Option<Self::Future> {
        if let Err(e) = result
            && e.is::<OverDeadline>()
        {
            // The rate limit would have held it past the deadline: nothing was sent, no attempt
            // made; the client reports the wait.
            return None;
        }
        self.attempts += 1;
        if self.attempts == 1 {
            // Each request earns the destination a share of a retry.
            self.pacing.budget.deposit();
        }
        let attempt = attempt_of(result);
        req.progress.record(self.attempts, attempt);
        let rate_limited = attempt == Attempt::Status(429);
        self.rate_limited += u32::from(rate_limited);
        if attempt == Attempt::Timeout {
            // The HTTP layer never saw an answer: the attempt took its whole timeout.
            let class = crate::metrics::StatusClass::Timeout;
            self.metrics
                .record_upstream_request(class, self.settings.attempt_timeout);
        }
        if classify(attempt) != Class::Retry
            || self.attempts - self.rate_limited >= self.settings.max_attempts
            || self.rate_limited > MAX_RATE_LIMITED
            || req.progress.is_cancelled()
        {
            return None;
        }
        let retry_after = result.as_ref().ok().and_then(|r| r.retry_after);
        let wait = self.wait(retry_after);
        if let Some(deadline) = req.deadline
            && Instant::now() + wait >= deadline
        {
            req.progress.stopped_for_deadline();
            return None;
        }
        if rate_limited {
            if retry_after.is_some() {
                // The whole destination waits, not just this batch.
                self.pacing.pause_for(wait);
            }
        } else if !self.pacing.budget.withdraw() {
            tracing::debug!("retry budget spent: not retrying");
            return None;
        }
        crate::metrics::record_retry();
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, req: &SegmentRequest) -> Option<SegmentRequest> {
        Some(req.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        use Attempt::*;
        use Class::*;
        let table = [
            (Status(200), Success),
            (Status(204), Success),
            (Status(299), Success),
            (Status(300), Permanent),
            (Status(400), Permanent),
            (Status(401), Permanent),
            (Status(403), Permanent),
            (Status(404), Permanent),
            (Status(408), Retry),
            (Status(410), Retry),
            (Status(413), Permanent),
            (Status(429), Retry),
            (Status(460), Retry),
            (Status(499), Permanent),
            (Status(500), Retry),
            (Status(501), Permanent),
            (Status(502), Retry),
            (Status(503), Retry),
            (Status(504), Retry),
            (Status(505), Permanent),
            (Status(511), Retry),
            (Status(599), Retry),
            (Timeout, Retry),
            (Transport, Retry),
            (Build, Permanent),
        ];
        for (attempt, want) in table {
            assert_eq!(classify(attempt), want, "{attempt:?}");
        }
    }

    #[test]
    fn backoff_doubles_jitters_and_caps() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        assert_eq!(backoff(1, base, cap, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(1, base, cap, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(2, base, cap, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(3, base, cap, 0.5), Duration::from_millis(300));
        for retry in 1..40 {
            for unit in [0.0, 0.3, 0.99] {
                let d = backoff(retry, base, cap, unit);
                assert!(
                    d <= cap && d >= Duration::from_millis(50),
                    "{retry} {unit} {d:?}"
                );
            }
        }
        assert_eq!(backoff(30, base, cap, 1.0), cap);
    }

    #[test]
    fn retry_after_seconds_or_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(12));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(12))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(12));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn jitter_is_in_range_and_varies() {
        let mut p = RetryPolicy::new(
            Arc::new(RetrySettings::default()),
            Arc::new(Pacing::new()),
            DestinationMetrics::default(),
        );
        let units: Vec<f64> = (0..100).map(|_| p.unit()).collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(units.windows(2).any(|w| w[0] != w[1]));
    }
}
