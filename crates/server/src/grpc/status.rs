//! Maps domain errors to gRPC statuses with messages a caller can act on.

use tonic::Status;
use vargid_index::IndexError;
use vargid_store::StoreError;

use crate::engine::EngineError;
use crate::faces::{ImageFault, PipelineError};
use crate::galleries::GalleryError;

/// `field(i)` names the request field holding image `i`, e.g. `images[2]`.
pub fn pipeline(err: PipelineError, field: impl Fn(usize) -> String) -> Status {
    match err {
        PipelineError::Image { index, fault } => {
            let msg = format!("{}: {fault}", field(index));
            match fault {
                ImageFault::Image(_) | ImageFault::Landmarks(_) => Status::invalid_argument(msg),
                ImageFault::Detector(_) => Status::internal(msg),
            }
        }
        PipelineError::Engine(e) => engine(e),
    }
}

pub fn engine(err: EngineError) -> Status {
    match err {
        EngineError::QueueFull { .. }
        | EngineError::Overloaded { .. }
        | EngineError::QueueTimeout { .. } => Status::resource_exhausted(err.to_string()),
        // Refused early: the caller would have seen its deadline pass anyway.
        EngineError::DeadlineTooShort { .. } => Status::deadline_exceeded(err.to_string()),
        EngineError::Stopped => Status::unavailable(err.to_string()),
        EngineError::Inference(_) => Status::internal(err.to_string()),
    }
}

pub fn index(err: IndexError) -> Status {
    match err {
        IndexError::IdentityNotFound(_) => Status::not_found(err.to_string()),
        IndexError::DimensionMismatch { .. } => Status::failed_precondition(err.to_string()),
        IndexError::InvalidParameter { field, reason } => {
            Status::invalid_argument(format!("index_parameters.{field}: {reason}"))
        }
        IndexError::InvalidIndex { .. } | IndexError::Faiss(_) => {
            tracing::error!(error = %err, "gallery failure");
            Status::internal(format!("gallery failure: {err}"))
        }
    }
}

pub fn gallery(err: GalleryError) -> Status {
    match err {
        GalleryError::NotFound(_) => Status::not_found(err.to_string()),
        GalleryError::ModelMismatch { .. } => Status::failed_precondition(err.to_string()),
        GalleryError::InvalidName(_) => Status::invalid_argument(err.to_string()),
        GalleryError::Index(IndexError::InvalidIndex { .. }) => {
            Status::invalid_argument(format!("index: {err}"))
        }
        GalleryError::Index(e) => index(e),
        GalleryError::Store(e) => store(e),
    }
}

pub fn store(err: StoreError) -> Status {
    match err {
        StoreError::GalleryNotFound(_) | StoreError::IdentityNotFound(_) => {
            Status::not_found(err.to_string())
        }
        StoreError::GalleryExists(_) => Status::already_exists(err.to_string()),
        StoreError::DimensionMismatch { .. } => Status::failed_precondition(err.to_string()),
        StoreError::Stopped | StoreError::Unavailable(_) => Status::unavailable(err.to_string()),
        StoreError::Database(_) | StoreError::Corrupt(_) => {
            tracing::error!(error = %err, "store failure");
            Status::internal(format!("storage failure: {err}"))
        }
    }
}
