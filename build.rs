//! Compiles `proto/` with protox (no system `protoc`) and generates the tonic code into
//! `OUT_DIR`; writes the encoded descriptor set for server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protox + compile_fds emit no rerun-if-changed of their own.
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
    // sqlx::migrate! embeds migrations/ at compile time; new files must rebuild.
    println!("cargo:rerun-if-changed=migrations");
    let fds = protox::compile(["segment_connections/v1/connections.proto"], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("segment_connections_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // prost's codec, with undecodable messages INVALID_ARGUMENT (src/grpc/codec.rs).
        .codec_path("crate::grpc::codec::Codec")
        // google.rpc.RetryInfo (proto/google/rpc, as published) is tonic-types' own type.
        .extern_path(".google.rpc", "::tonic_types::pb")
        .compile_fds(fds)?;
    Ok(())
}
