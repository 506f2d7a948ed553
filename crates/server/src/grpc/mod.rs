//! The gRPC face: the `vargid.v1.FaceService` implementation, plus proto conversion
//! and validation (`convert`) and error-to-status mapping (`status`).

mod convert;
mod face_service;
mod status;

pub use face_service::{FaceServiceImpl, ServiceLimits};
