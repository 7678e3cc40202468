//! The generated API (`proto/segment_connections/v1/connections.proto`), its descriptor set
//! for reflection, and short aliases.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("segment_connections.v1");
}

pub use v1::*;

pub use v1::connections_client::ConnectionsClient;
pub use v1::connections_server::{Connections, ConnectionsServer};

/// The encoded `FileDescriptorSet` of the API, written by `build.rs`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(
    env!("OUT_DIR"),
    "/segment_connections_descriptor.bin"
));

/// The fully qualified service name (health checks and reflection use it).
pub const SERVICE_NAME: &str = "segment_connections.v1.Connections";
