//! The tower stack, built once per destination and shared by every call to it (a new stack per
//! call would mean a new semaphore each time). Outer → inner:

use std::sync::Arc;

use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;

use super::attempt::{Dispatched, SegmentRequest, SegmentResponse};
use super::limit::{Limited, RateLimiter};
use super::retry::{Pacing, Paused, RetryPolicy};
use super::{BoxError, RetrySettings};
use crate::metrics::DestinationMetrics;

pub(super) fn build<S>(
    inner: S,
    settings: &RetrySettings,
    limiter: Option<Arc<RateLimiter>>,
    metrics: DestinationMetrics,
) -> BoxCloneSyncService<SegmentRequest, SegmentResponse, BoxError>
where
    S: tower::Service<SegmentRequest, Response = SegmentResponse> + Clone + Send + Sync + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let pacing = Arc::new(Pacing::new());
    let stack = ServiceBuilder::new()
        // Bounds the batches in flight to this destination, those sleeping in backoff included,
        // which bounds memory and load on the API; shared by every clone.
        .concurrency_limit(settings.max_in_flight)
        // Retries what `classify` calls retryable, after Retry-After or a jittered exponential
        // backoff, up to `max_attempts` (429s not counted), never sleeping past the request's
        // deadline, within the destination's retry budget.
        .retry(RetryPolicy::new(
            Arc::new(settings.clone()),
            pacing.clone(),
            metrics.clone(),
        ))
        // Holds each attempt while the destination is paused by a 429's Retry-After.
        .layer_fn(move |inner| Paused {
            inner,
            pacing: pacing.clone(),
        })
        // Then until the destination's rate limit (events per second, this replica) lets its
        // events go, the pause over first so what waited for it goes out paced; a wait past
        // the deadline fails the request at once, unsent, with the wait it needed.
        .layer_fn(move |inner| Limited {
            inner,
            limiter: limiter.clone(),
            metrics: metrics.clone(),
        })
        // Each attempt gets its own deadline, so one slow answer costs one attempt.
        .timeout(settings.attempt_timeout)
        // Counts each attempt as on the wire until it ends, and dispatches none once the caller
        // has given up (so a batch not started by its deadline is never sent).
        .layer_fn(Dispatched)
        // reqwest (its own retries off): POST /v1/batch with Basic auth, any status is Ok.
        .service(inner);
    BoxCloneSyncService::new(stack)
}
