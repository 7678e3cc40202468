//! The gRPC transport: generated code (`proto`), thin handlers (`service`), proto⇄domain
//! conversion (`convert`), the one Error→Status mapping (`status`) and shutdown's drain
//! (`drain`).

mod auth;
pub mod convert;
mod deadline;
pub mod drain;
pub mod proto;
mod service;
mod status;

pub use auth::BearerAuth;
pub use drain::Drain;
pub use service::{ConnectionsService, Limits};
