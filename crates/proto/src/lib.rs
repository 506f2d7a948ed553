//! The vargid.v1 gRPC API, generated from `proto/vargid/v1/face_service.proto`.

/// Messages, client and server of package `vargid.v1`.
pub mod v1 {
    tonic::include_proto!("vargid.v1");
}

/// Encoded `FileDescriptorSet` of the API, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("vargid_descriptor");
