//! Generates the gRPC code with protox, a pure-Rust protobuf compiler, so building
//! needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/mfplane/v1/raft.proto",
        "proto/mfplane/v1/admin.proto",
        "proto/mfplane/v1/steering.proto",
        "proto/mfplane/v1/sessions.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
