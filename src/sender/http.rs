//! The bottom of the tower stack: [`SegmentHttp`], one `POST /v1/batch` per attempt.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use super::WriteKey;
use super::attempt::{SegmentRequest, SegmentResponse};
use super::retry::parse_retry_after;
use super::{BoxError, RetrySettings};
use crate::metrics::{self, DestinationMetrics, StatusClass};

/// `User-Agent` of every request: the service's name and version.
pub(super) const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// The bottom of the stack: one `POST {base}/v1/batch` per call, Basic auth with the write key
/// and an empty password, JSON content type, our User-Agent. Any status is `Ok`.
#[derive(Clone)]
pub(crate) struct SegmentHttp {
    client: reqwest::Client,
    url: Arc<str>,
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
        SegmentHttp {
            client,
            url: format!("{}/v1/batch", base.trim_end_matches('/')).into(),
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
        // The caller's trace continues into the upstream request (`traceparent`, when exported).
        let mut headers = http::HeaderMap::new();
        crate::telemetry::inject_current(&mut headers);
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
        let m = self.metrics.clone();
        Box::pin(async move {
            let _in_flight = metrics::upstream_in_flight();
            let started = std::time::Instant::now();
            let resp = match send.await {
                Ok(resp) => resp,
                Err(e) => {
                    m.record_upstream_request(StatusClass::Error, started.elapsed());
                    return Err(e.into());
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
            } else {
                // Read the (small) body so the connection goes back to the pool.
                resp.bytes().await?;
            }
            Ok(SegmentResponse {
                status,
                retry_after,
            })
        })
    }
}
