//! Compiles the .proto files with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/conclave/v1/common.proto",
        "proto/conclave/v1/kv.proto",
        "proto/conclave/v1/counter.proto",
        "proto/conclave/v1/cluster.proto",
        "proto/conclave/v1/session.proto",
        "proto/conclave/v1/lease.proto",
        "proto/conclave/v1/watch.proto",
        "proto/conclave/v1/maintenance.proto",
        "proto/conclave/v1/auth.proto",
        "proto/conclave/internal/v1/peer.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
