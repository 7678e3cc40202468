//! The gRPC transport: generated code (`proto`), thin handlers (`service`), proto⇄domain
//! conversion (`convert`) and the one Error→Status mapping (`status`).

mod auth;
pub mod convert;
mod deadline;
pub mod proto;
mod service;
mod status;

pub use auth::BearerAuth;
pub use service::{ConnectionsService, Limits};
