//! The one mapping from [`Error`] to a gRPC [`Status`]: exhaustive, no catch-all arm, so a new
//! error variant has to be given its code here.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::Error;
use crate::store::StoreError;

/// How long a caller should wait before retrying a refused call (`google.rpc.RetryInfo`):
/// another replica takes a call refused for shutdown at once; a full server frees a place
/// within about a second; a store outage or a full disk takes longer to mend.
pub(crate) const RETRY_SHUTTING_DOWN: Duration = Duration::from_millis(100);
pub(crate) const RETRY_BUSY: Duration = Duration::from_secs(1);
pub(crate) const RETRY_STORE_UNAVAILABLE: Duration = Duration::from_secs(2);
pub(crate) const RETRY_STORE_FULL: Duration = Duration::from_secs(30);

/// What a caller hears when the store has no space left for a write.
pub(super) const STORE_FULL: &str =
    "store full: no space left to store the write, nothing was stored; retry once space is freed";

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let message = e.to_string();
        match e {
            Error::InvalidRequest(violations) => bad_request(
                message,
                violations
                    .into_iter()
                    .map(|v| tonic_types::FieldViolation::new(v.field, v.description)),
            ),
            // The field of a mapping violation is its JSON pointer into the document.
            Error::InvalidMapping(violations) => bad_request(
                message,
                violations
                    .into_iter()
                    .map(|v| tonic_types::FieldViolation::new(v.pointer, v.message)),
            ),
            Error::Store(StoreError::NotFound { .. }) | Error::UnknownModel { .. } => {
                Status::not_found(message)
            }
            Error::Store(StoreError::NameTaken { .. }) => Status::already_exists(message),
            Error::Store(StoreError::TooManyMappings { .. }) => {
                Status::failed_precondition(message)
            }
            Error::Store(StoreError::StaleVersion { .. }) => Status::aborted(message),
            Error::DestinationDisabled(_) => Status::failed_precondition(message),
            Error::ShuttingDown => retry_after(Code::Unavailable, message, RETRY_SHUTTING_DOWN),
            Error::StreamIdle(_) => Status::deadline_exceeded(message),
            Error::SyncRunning { .. } | Error::SyncLost(_) => Status::aborted(message),
            Error::TooManyCalls { .. } | Error::TooManyStreams { .. } => {
                retry_after(Code::ResourceExhausted, message, RETRY_BUSY)
            }
            // Retryable; the cause (host, port) stays in the logs.
            Error::Store(StoreError::Unavailable(_)) => {
                tracing::warn!(error = %message, "store unavailable");

                retry_after(
                    Code::Unavailable,
                    "store unavailable, retry later".into(),
                    RETRY_STORE_UNAVAILABLE,
                )
            }
            // Retryable once space is freed; the cause (the file, the volume) stays in the logs.
            Error::Store(StoreError::Full(_)) => {
                tracing::error!(error = %message, "store full: writes fail until space is freed");
                retry_after(Code::ResourceExhausted, STORE_FULL.into(), RETRY_STORE_FULL)
            }
            Error::Store(StoreError::Crypto(_))
            | Error::Store(StoreError::UndecryptableWriteKeys { .. })
            | Error::Store(StoreError::Backend(_))
            | Error::Internal(_) => {
                tracing::error!(error = %message, "request failed");
                Status::internal("internal error")
            }
        }
    }
}

/// A status that tells the caller when to retry: `google.rpc.RetryInfo` in the details, and
/// `grpc-retry-pushback-ms`, which gRPC clients' own retry policies honour.
fn retry_after(code: Code, message: String, delay: Duration) -> Status {
    let mut status =
        Status::with_error_details(code, message, ErrorDetails::with_retry_info(Some(delay)));
    if let Ok(ms) = delay.as_millis().to_string().parse() {
        status.metadata_mut().insert("grpc-retry-pushback-ms", ms);
    }
    status
}

fn bad_request(
    message: String,
    violations: impl Iterator<Item = tonic_types::FieldViolation>,
) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request(violations.collect::<Vec<_>>()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldViolation;
    use crate::mapping::Violation;
    use crate::store::{CryptoError, Kind};

    #[test]
    fn each_error_has_its_code() {
        let table: Vec<(Error, Code)> = vec![
            (Error::invalid("name", "is required"), Code::InvalidArgument),
            (
                Error::InvalidMapping(vec![Violation {
                    pointer: "/action".into(),
                    message: "is required".into(),
                }]),
                Code::InvalidArgument,
            ),
            (
                Error::Store(StoreError::NotFound {
                    kind: Kind::Mapping,
                    id: "map_1".into(),
                }),
                Code::NotFound,
            ),
            (
                Error::Store(StoreError::NameTaken {
                    kind: Kind::Destination,
                    name: "prod".into(),
                    scope: None,
                }),
                Code::AlreadyExists,
            ),
            (
                Error::Store(StoreError::TooManyMappings {
                    destination_id: "dst_1".into(),
                    limit: 50,
                }),
                Code::FailedPrecondition,
            ),
            (
                Error::Store(StoreError::StaleVersion {
                    kind: Kind::Mapping,
                    id: "map_1".into(),
                    expected: 1,
                    actual: 2,
                }),
                Code::Aborted,
            ),
            (Error::ShuttingDown, Code::Unavailable),
            (
                Error::UnknownModel {
                    destination_id: "dst_1".into(),
                    model: "order".into(),
                    models: vec!["orders".into(), "users".into()],
                },
                Code::NotFound,
            ),
            (Error::TooManyCalls { limit: 2 }, Code::ResourceExhausted),
            (Error::TooManyStreams { limit: 2 }, Code::ResourceExhausted),
            (
                Error::DestinationDisabled("dst_1".into()),
                Code::FailedPrecondition,
            ),
            (
                Error::Store(StoreError::Crypto(CryptoError::UnknownKey("k1".into()))),
                Code::Internal,
            ),
            (
                Error::Store(StoreError::Backend("disk on fire".into())),
                Code::Internal,
            ),
            (Error::Internal("broken".into()), Code::Internal),
            (
                Error::Store(StoreError::Unavailable("connection refused".into())),
                Code::Unavailable,
            ),
            (
                Error::Store(StoreError::Full("database or disk is full".into())),
                Code::ResourceExhausted,
            ),
        ];
        for (error, code) in table {
            let shown = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{shown}");
            // Every refusal a retry may cure says when to retry; no other status does.
            let retry = status.get_details_retry_info().and_then(|r| r.retry_delay);
            let pushback = status.metadata().get("grpc-retry-pushback-ms");
            match code {
                Code::Unavailable | Code::ResourceExhausted => {
                    let delay = retry.filter(|d| *d > Duration::ZERO).expect(&shown);
                    let ms = delay.as_millis().to_string();
                    assert_eq!(
                        pushback.and_then(|v| v.to_str().ok()),
                        Some(&*ms),
                        "{shown}"
                    );
                }
                _ => assert!(retry.is_none() && pushback.is_none(), "{shown}"),
            }
            if code == Code::Internal {
                // Details stay in the logs.
                assert_eq!(status.message(), "internal error");
            } else if shown.contains("connection refused") {
                // The store's cause (host, port) stays in the logs too.
                assert_eq!(status.message(), "store unavailable, retry later");
            } else if shown.contains("disk is full") {
                assert_eq!(status.message(), STORE_FULL);
            } else {
                assert_eq!(status.message(), shown);
            }
        }
    }

    #[test]
    fn invalid_argument_carries_one_violation_per_field() {
        let status = Status::from(Error::InvalidRequest(vec![
            FieldViolation::new("name", "is required"),
            FieldViolation::new("region", "must be us, eu or an http(s) base URL"),
        ]));
        let details = status.get_details_bad_request().unwrap();
        let fields: Vec<&str> = details
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["name", "region"]);
        assert_eq!(
            status.message(),
            "invalid request: name: is required; region: must be us, eu or an http(s) base URL"
        );
    }
}
