//! The gRPC face: the `vargid.v1.FaceService` implementation, plus proto conversion
//! and validation (`convert`) and error-to-status mapping (`status`).

mod convert;
mod deadline;
mod face_service;
mod gallery_admin;
mod identities;
mod recognition;
mod status;

pub use face_service::{FaceServiceImpl, ServiceLimits};
