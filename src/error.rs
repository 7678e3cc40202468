//! The conditions that fail an RPC. Per-row problems are never errors: they are issues in the
//! response (`crate::issue`). `grpc/status.rs` maps each variant to a gRPC status.

use crate::mapping::Violation;
use crate::store::StoreError;

/// One bad field of a request: the proto field path and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub(crate) fn new(field: impl Into<String>, description: impl Into<String>) -> FieldViolation {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Why an RPC failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed (missing field, bad value, too many rows).
    #[error("invalid request: {}", list(.0.iter().map(|v| (v.field.as_str(), v.description.as_str()))))]
    InvalidRequest(Vec<FieldViolation>),
    /// A mapping document fails validation: every violation, with its pointer.
    #[error("invalid mapping: {}", list(.0.iter().map(|v| (v.pointer.as_str(), v.message.as_str()))))]
    InvalidMapping(Vec<Violation>),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Rows were submitted for a model that no mapping of the destination reads.
    #[error(
        "destination {destination_id} has no mapping for model {model:?}; {}",
        match .models.is_empty() {
            true => "it has no mappings".to_owned(),
            false => format!("its mappings read: {}", .models.join(", ")),
        }
    )]
    UnknownModel {
        destination_id: String,
        model: String,
        models: Vec<String>,
    },
    /// Rows were submitted to a destination that is disabled.
    #[error("destination {0} is disabled")]
    DestinationDisabled(String),
    /// As many calls as `--max-concurrent-calls` allows are already in flight.
    #[error(
        "too many concurrent calls: this server takes at most {limit} at once (--max-concurrent-calls); retry with backoff"
    )]
    TooManyCalls { limit: usize },
    /// As many row streams as `--max-row-streams` allows are already open.
    #[error(
        "too many row streams: this server keeps at most {limit} open at once (--max-row-streams); retry with backoff, or send the rows with SubmitRows"
    )]
    TooManyStreams { limit: usize },
    /// A row stream had no message and nothing in flight for this long (`--stream-idle-seconds`).
    #[error(
        "the stream was idle for {} s with nothing in flight (--stream-idle-seconds): it is closed; open a new one to send more",
        .0.as_secs()
    )]
    StreamIdle(std::time::Duration),
    /// Another sync of the same destination and model is running (refusing a second sync, or
    /// a reset of the model's ledger).
    #[error(
        "sync {sync_id} of destination {destination_id}, model {model:?} is running: one sync per model at a time, and no reset while it runs; retry when it has ended (or its lease has run out)"
    )]
    SyncRunning {
        destination_id: String,
        model: String,
        sync_id: String,
    },
    /// The sync's lease ran out and another replica took it over.
    #[error("sync {0} lost its lease (it was recorded ABANDONED); start a new sync")]
    SyncLost(String),
    /// The server has begun shutting down and takes no new calls.
    #[error("the server is shutting down: retry the call, another replica will take it")]
    ShuttingDown,
    /// A broken invariant; details are logged, not returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, description: impl Into<String>) -> Error {
        Error::InvalidRequest(vec![FieldViolation::new(field, description)])
    }
}

fn list<'a>(items: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let parts: Vec<String> = items
        .map(|(at, what)| {
            if at.is_empty() {
                what.to_owned()
            } else {
                format!("{at}: {what}")
            }
        })
        .collect();
    parts.join("; ")
}
