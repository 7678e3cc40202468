//! The Tracking API sender, one per destination: batch bodies packed within the API's limits
//! (`batch`), sent by [`SegmentClient`] (`client`) through the tower stack built in one place
//! (`stack`): the concurrency limit, the retry policy (`retry`), the destination's rate limit
//! (`limit`), the per-attempt timeout, the dispatch record (`attempt`) and at the bottom the
//! HTTP POST with the destination's [`WriteKey`] (`http`, `write_key`).
//!
//! Inside the folder: client → stack → retry → limit → attempt, client → http → attempt,
//! write_key.

mod attempt;
pub(crate) mod batch;
mod client;
mod http;
mod limit;
mod retry;
mod stack;
mod write_key;

use std::time::Duration;

pub(crate) use attempt::Attempt;
pub use client::gzip;
pub(crate) use client::{Limit, SegmentClient, SendError, Sent};
pub(crate) use http::SegmentHttp;
pub use write_key::WriteKey;
pub(crate) use write_key::hex;

/// Errors inside the tower stack. Never leaves `sender/`: [`SegmentClient::send`] turns them
/// into [`SendError`].
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How batches are sent and retried.
#[derive(Debug, Clone)]
pub struct RetrySettings {
    /// Attempts per batch, the first included.
    pub max_attempts: u32,
    /// The first backoff (before jitter); it doubles per retry.
    pub backoff_base: Duration,
    /// The longest backoff.
    pub backoff_cap: Duration,
    /// The longest `Retry-After` honoured (longer ones are clamped).
    pub retry_after_cap: Duration,
    /// One attempt's timeout.
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
    /// Batches in flight per destination, backoff sleeps included.
    pub max_in_flight: usize,
    /// Bodies are gzip-compressed (`Content-Encoding: gzip`), once per batch.
    pub gzip: bool,
}

impl Default for RetrySettings {
    fn default() -> RetrySettings {
        RetrySettings {
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(10),
            retry_after_cap: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_in_flight: 32,
            gzip: true,
        }
    }
}
