//! Generates the vargid.v1 types with a vendored protoc, so no system protoc is needed.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC from the environment.
    std::env::set_var("PROTOC", protoc);
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // No `connect` constructors on the clients: they need tonic's transport, which the
    // request types and the fuzz targets do without. Callers build a `Channel`.
    tonic_prost_build::configure()
        .build_transport(false)
        .file_descriptor_set_path(out_dir.join("vargid_descriptor.bin"))
        .compile_protos(
            &[proto_root.join("vargid/v1/face_service.proto")],
            std::slice::from_ref(&proto_root),
        )?;
    println!("cargo:rerun-if-changed={}", proto_root.display());
    Ok(())
}
