//! The bottom of the tower stack: [`SegmentHttp`], one `POST /v1/batch` per attempt, each in
//! a client span of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tracing::Instrument as _;

use super::WriteKey;
use super::attempt::{Attempt, SegmentRequest, SegmentResponse};
use super::retry::{attempt_of_error, parse_retry_after};
use super::{BoxError, RetrySettings};
use crate::metrics::{self, DestinationMetrics, StatusClass};
use crate::telemetry::{self, HttpTarget};

/// `User-Agent` of every request: the service's name and version.
pub(super) const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// The bottom of the stack: one `POST {base}/v1/batch` per call, Basic auth with the write key
/// and an empty password, JSON content type, our User-Agent. Any status is `Ok`.
#[derive(Clone)]
pub(crate) struct SegmentHttp {
    client: reqwest::Client,
    url: Arc<str>,
    /// The URL as spans record it (no credentials), with its host and port.
    target: Arc<HttpTarget>,
    write_key: WriteKey,
    metrics: DestinationMetrics,
}

impl SegmentHttp {
    /// `base` is the Tracking API base without `/v1` (`Region::base_url`).
    pub(crate) fn new(
        client: reqwest::Client,
        base: &str,
        write_key: WriteKey,
        metrics: DestinationMetrics,
    ) -> SegmentHttp {
        let url = format!("{}/v1/batch", base.trim_end_matches('/'));
        SegmentHttp {
            client,
            target: Arc::new(HttpTarget::new(&url)),
            url: url.into(),
            write_key,
            metrics,
        }
    }

    /// The shared HTTP client: built once, its own retries off (tower's policy is the only
    /// one), a connect timeout, a total timeout only as a backstop behind the per-attempt one.
    pub(crate) fn client(settings: &RetrySettings) -> reqwest::Client {
        reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .retry(reqwest::retry::never())
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.attempt_timeout + Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "building the HTTP client failed: using defaults");
                reqwest::Client::builder()
                    .user_agent(USER_AGENT)
                    .retry(reqwest::retry::never())
                    .build()
                    .unwrap_or_default()
            })
    }
}

impl tower::Service<SegmentRequest> for SegmentHttp {
    type Response = SegmentResponse;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<SegmentResponse, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: SegmentRequest) -> Self::Future {
        // This attempt's client span (each retry has its own), child of the caller's span; the
        // upstream request carries it on as its parent (`traceparent`, when exported).
        let resend_count = req.progress.dispatched().saturating_sub(1);
        let span = telemetry::client_span("POST", &self.target, resend_count);
        let mut headers = http::HeaderMap::new();
        telemetry::inject(&span, &mut headers);
        if req.gzip {
            headers.insert(
                reqwest::header::CONTENT_ENCODING,
                http::HeaderValue::from_static("gzip"),
            );
        }
        metrics::record_upstream_bytes(req.body.len());
        let send = self
            .client
            .post(&*self.url)
            .headers(headers)
            .basic_auth(self.write_key.expose(), Some(""))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(req.body)
            .send();
        let unanswered = Unanswered(Some(span.clone()));
        let m = self.metrics.clone();
        let attempt = async move {
            let _in_flight = metrics::upstream_in_flight();
            let started = std::time::Instant::now();
            let resp = match send.await {
                Ok(resp) => resp,
                Err(e) => {
                    m.record_upstream_request(StatusClass::Error, started.elapsed());
                    return Err(unanswered.failed(e));
                }
            };
            let status = resp.status().as_u16();
            m.record_upstream_request(StatusClass::Http(status), started.elapsed());
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            if !resp.status().is_success() {
                // Logged server-side only, cut short; never returned to callers.
                let body = resp.bytes().await.unwrap_or_default();
                let excerpt = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                tracing::debug!(status, body = %excerpt, "tracking api answered an error");
            } else if let Err(e) = resp.bytes().await {
                // Read the (small) body so the connection goes back to the pool.
                return Err(unanswered.failed(e));
            }
            unanswered.answered(status);
            Ok(SegmentResponse {
                status,
                retry_after,
            })
        };
        Box::pin(attempt.instrument(span))
    }
}

/// An attempt's client span until the attempt ends: answered (its status), failed (the error),
/// or dropped unanswered, which only the per-attempt timeout does (a caller that gives up lets
/// an attempt on the wire finish).
struct Unanswered(Option<tracing::Span>);

impl Unanswered {
    fn answered(mut self, status: u16) {
        if let Some(span) = self.0.take() {
            telemetry::record_http_status(&span, status);
        }
    }

    fn failed(mut self, e: reqwest::Error) -> BoxError {
        // The URL is in the span already, and an error's text is no place for it.
        let e = e.without_url();
        if let Some(span) = self.0.take() {
            let error_type = match attempt_of_error(&e) {
                Attempt::Timeout => "timeout",
                Attempt::Build => "build",
                Attempt::Status(_) | Attempt::Transport => "transport",
            };
            telemetry::record_http_failure(&span, error_type, &root_cause(&e));
        }
        e.into()
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(span) = self.0.take() {
            telemetry::record_http_failure(
                &span,
                "timeout",
                "no answer within the attempt timeout",
            );
        }
    }
}

/// The innermost source of `e`, the one that says what went wrong (e.g. "Connection refused").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut root = e;
    while let Some(next) = root.source() {
        root = next;
    }
    root.to_string()
}
