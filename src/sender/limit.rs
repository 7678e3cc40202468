//! A destination's rate limit, in events per second on this replica: [`RateLimiter`], a token
//! bucket kept as the time its next event is due (GCRA), and the [`Limited`] layer that makes
//! each attempt wait its turn. The bucket holds one second of events (the burst); a batch of `n`
//! events takes `n` tokens. A wait that would pass the request's deadline is not started: the
//! request fails at once with [`OverDeadline`] and the wait it would have needed, and takes no
//! tokens.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::ServiceExt as _;

use super::BoxError;
use super::attempt::{SegmentRequest, SegmentResponse};
use crate::metrics::DestinationMetrics;

/// One destination's bucket, shared by every request to it.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// The time one event takes: a second over the rate.
    per_event: Duration,
    /// How far ahead of now the bucket may be drawn: one second (the burst, `rate` events).
    burst: Duration,
    /// When the bucket is empty again (the "theoretical arrival time"): each event sent moves
    /// it `per_event` on from now or from where it was, whichever is later.
    due: Mutex<Instant>,
}

/// The limiter's wait would pass the request's deadline: nothing was sent, no token taken.
#[derive(Debug, thiserror::Error)]
#[error("the destination's rate limit would hold the batch past its deadline ({wait:?} more)")]
pub(crate) struct OverDeadline {
    /// How long the batch would have had to wait: when a retry may go through.
    pub(crate) wait: Duration,
}

impl RateLimiter {
    pub(crate) fn new(per_second: NonZeroU32) -> RateLimiter {
        RateLimiter {
            per_event: Duration::from_secs(1) / per_second.get(),
            burst: Duration::from_secs(1),
            due: Mutex::new(Instant::now()),
        }
    }

    /// The most events one batch should hold: the burst, so a full batch goes without waiting
    /// for more than the bucket holds.
    pub(crate) fn burst_events(&self) -> usize {
        (self.burst.as_nanos() / self.per_event.as_nanos().max(1)).max(1) as usize
    }

    /// Takes `events` tokens and says when they may be sent (now or later), unless that is
    /// past `deadline`: then nothing is taken and the error says how long it would have been.
    pub(crate) fn reserve(
        &self,
        events: u32,
        deadline: Option<Instant>,
    ) -> Result<Instant, OverDeadline> {
        let now = Instant::now();
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        let next = (*due).max(now) + self.per_event * events;
        let at = (next - self.burst).max(now);
        if let Some(deadline) = deadline
            && at > now
            && at >= deadline
        {
            return Err(OverDeadline { wait: at - now });
        }
        *due = next;
        Ok(at)
    }

    /// Gives back `events` a request reserved but will not send (its caller gave up first).
    fn refund(&self, events: u32) {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        *due = due
            .checked_sub(self.per_event * events)
            .unwrap_or(*due)
            .max(Instant::now());
    }
}

/// Holds each attempt until the destination's rate limit lets its events go; a wait past the
/// request's deadline fails it at once with [`OverDeadline`]. The wait is before the attempt's
/// timeout starts and is no attempt. Without a limit it passes every request straight on.
#[derive(Clone)]
pub(super) struct Limited<S> {
    pub(super) inner: S,
    pub(super) limiter: Option<Arc<RateLimiter>>,
    pub(super) metrics: DestinationMetrics,
}

impl<S> tower::Service<SegmentRequest> for Limited<S>
where
    S: tower::Service<SegmentRequest, Response = SegmentResponse> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = SegmentResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<SegmentResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Readiness is the inner service's, checked once the wait is over.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: SegmentRequest) -> Self::Future {
        let inner = self.inner.clone();
        let Some(limiter) = self.limiter.clone() else {
            return Box::pin(async move { inner.oneshot(req).await.map_err(Into::into) });
        };
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let events = req.events;
            let at = limiter
                .reserve(events, req.deadline)
                .map_err(|e| Box::new(e) as BoxError)?;
            let now = Instant::now();
            if at > now {
                metrics.record_rate_limit_wait(at - now);
                // A caller that gives up meanwhile aborts this wait: its tokens go back.
                let refund = Refund {
                    limiter: &limiter,
                    events,
                };
                tokio::time::sleep_until(at).await;
                std::mem::forget(refund);
            }
            inner.oneshot(req).await.map_err(Into::into)
        })
    }
}

/// Returns a waiting request's tokens if it is dropped before its turn.
struct Refund<'a> {
    limiter: &'a RateLimiter,
    events: u32,
}

impl Drop for Refund<'_> {
    fn drop(&mut self) {
        self.limiter.refund(self.events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: u32) -> RateLimiter {
        RateLimiter::new(NonZeroU32::new(per_second).unwrap())
    }

    /// Sends `batches` batches of `events` as fast as the limiter lets them, and returns when
    /// each went (from the start).
    async fn drain(l: &RateLimiter, batches: usize, events: u32) -> Vec<Duration> {
        let start = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..batches {
            let at = l.reserve(events, None).unwrap();
            tokio::time::sleep_until(at).await;
            sent.push(Instant::now() - start);
        }
        sent
    }

    /// A full bucket lets one second of events go at once (the burst); after that, events go
    /// at the rate, whatever the batch size.
    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate() {
        let l = limiter(100);
        assert_eq!(l.burst_events(), 100);
        // 10 batches of 10: the burst, all at once.
        let sent = drain(&l, 10, 10).await;
        assert!(sent.iter().all(|t| t.is_zero()), "{sent:?}");
        // The next 10 batches of 10: one each 100 ms.
        let sent = drain(&l, 10, 10).await;
        let want: Vec<Duration> = (1..=10).map(|i| Duration::from_millis(100 * i)).collect();
        assert_eq!(sent, want);
        // Idle for a second refills the bucket, and no more than that: 3 s idle still lets only
        // the burst go at once.
        tokio::time::advance(Duration::from_secs(3)).await;
        let sent = drain(&l, 12, 10).await;
        assert_eq!(sent.iter().filter(|t| t.is_zero()).count(), 10, "{sent:?}");
        assert_eq!(sent[10], Duration::from_millis(100));
        assert_eq!(sent[11], Duration::from_millis(200));
    }

    /// Over any window, no more events go than the burst plus the rate times its length.
    #[tokio::test(start_paused = true)]
    async fn the_rate_holds_over_a_long_run() {
        let l = limiter(50);
        let sent = drain(&l, 200, 7).await;
        let events = |until: Duration| sent.iter().filter(|t| **t <= until).count() as u64 * 7;
        for secs in [1u64, 5, 10, 20] {
            let window = Duration::from_secs(secs);
            assert!(
                events(window) <= 50 + 50 * secs,
                "{secs} s: {}",
                events(window)
            );
        }
        // 1400 events at 50/s after a burst of 50: 27 s.
        let last = *sent.last().unwrap();
        assert_eq!(
            last,
            Duration::from_nanos(1_400 * 20_000_000 - 1_000_000_000)
        );
    }

    /// A wait that would pass the deadline is refused with that wait, and takes nothing: the
    /// next request that fits goes as if the refused one had not been made.
    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_deadline_is_refused_with_its_length() {
        let l = limiter(10);
        let now = Instant::now();
        assert_eq!(l.reserve(10, None).unwrap(), now);
        let deadline = now + Duration::from_millis(500);
        // 10 more events would go in 1 s: past the deadline.
        let e = l.reserve(10, Some(deadline)).unwrap_err();
        assert_eq!(e.wait, Duration::from_secs(1));
        // 4 go at 400 ms, within it.
        assert_eq!(
            l.reserve(4, Some(deadline)).unwrap(),
            now + Duration::from_millis(400)
        );
    }

    /// A batch larger than the burst waits for the events beyond it.
    #[tokio::test(start_paused = true)]
    async fn a_batch_over_the_burst_waits_for_the_rest() {
        let l = limiter(10);
        let now = Instant::now();
        assert_eq!(
            l.reserve(25, None).unwrap(),
            now + Duration::from_millis(1500)
        );
    }

    /// A request given up while waiting gives its tokens back.
    #[tokio::test(start_paused = true)]
    async fn a_refund_frees_the_tokens() {
        let l = limiter(10);
        let now = Instant::now();
        l.reserve(10, None).unwrap();
        assert_eq!(l.reserve(10, None).unwrap(), now + Duration::from_secs(1));
        l.refund(10);
        assert_eq!(
            l.reserve(5, None).unwrap(),
            now + Duration::from_millis(500)
        );
    }
}
