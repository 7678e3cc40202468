//! What to do after one attempt: the pure [`classify`] table, jittered exponential
//! [`backoff`], `Retry-After` parsing, and the tower [`RetryPolicy`] that puts them together.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::attempt::{Attempt, SegmentRequest, SegmentResponse};
use super::{BoxError, RetrySettings};

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
    /// Attempts made so far for this request.
    attempts: u32,
    rng: u64,
}

impl RetryPolicy {
    pub(super) fn new(settings: Arc<RetrySettings>) -> RetryPolicy {
        RetryPolicy {
            settings,
            attempts: 0,
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
        self.attempts += 1;
        let attempt = attempt_of(result);
        req.progress.record(self.attempts, attempt);
        if attempt == Attempt::Timeout {
            // The HTTP layer never saw an answer: the attempt took its whole timeout.
            let class = crate::metrics::StatusClass::Timeout;
            crate::metrics::record_upstream_request(class, self.settings.attempt_timeout);
        }
        if classify(attempt) != Class::Retry
            || self.attempts >= self.settings.max_attempts
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
        let mut p = RetryPolicy::new(Arc::new(RetrySettings::default()));
        let units: Vec<f64> = (0..100).map(|_| p.unit()).collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(units.windows(2).any(|w| w[0] != w[1]));
    }
}
