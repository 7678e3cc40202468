//! The one mapping from [`Error`] to a gRPC [`Status`]: exhaustive, no catch-all arm, so a new
//! error variant has to be given its code here.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::Error;
use crate::store::StoreError;

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
            Error::Store(StoreError::NotFound { .. }) => Status::not_found(message),
            Error::Store(StoreError::NameTaken { .. }) => Status::already_exists(message),
            Error::Store(StoreError::TooManyMappings { .. }) => {
                Status::failed_precondition(message)
            }
            Error::Store(StoreError::StaleVersion { .. }) => Status::aborted(message),
            Error::Unimplemented(_) => Status::unimplemented(message),
            Error::Store(StoreError::Crypto(_))
            | Error::Store(StoreError::Backend(_))
            | Error::Internal(_) => {
                tracing::error!(error = %message, "request failed");
                Status::internal("internal error")
            }
        }
    }
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
