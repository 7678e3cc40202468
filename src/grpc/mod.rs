//! The gRPC transport: generated code (`proto`), thin handlers (`service`; the `Sync` stream's in
//! `sync`), proto⇄domain
//! conversion (`convert`), the one Error→Status mapping (`status`) and the gate calls pass
//! (`gate`: the concurrent-call limit and shutdown's drain), and the connections a listener
//! accepts (`incoming`: a failed accept is logged and paused on, not spun on), the codec
//! (`codec`: prost's, a message that does not decode `INVALID_ARGUMENT`), and the per-call
//! layer (`layer`: admission through the gate, call metrics, the call span, one log line per
//! call).

mod auth;
pub(crate) mod codec;
pub mod convert;
mod deadline;
pub(crate) mod gate;
mod incoming;
pub(crate) mod layer;
pub mod proto;
mod service;
mod status;
mod sync;

pub(crate) use auth::BearerAuth;
pub(crate) use gate::Gate;
pub(crate) use incoming::incoming;
pub(crate) use layer::RpcLayer;
pub(crate) use service::ConnectionsService;
