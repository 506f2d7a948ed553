//! Maps domain errors to gRPC statuses with messages a caller can act on.

use tonic::Status;
use vargid_index::IndexError;

use crate::engine::EngineError;
use crate::faces::{ImageFault, PipelineError};

/// `field(i)` names the request field holding image `i`, e.g. `images[2]`.
pub fn pipeline(err: PipelineError, field: impl Fn(usize) -> String) -> Status {
    match err {
        PipelineError::Image { index, fault } => {
            let msg = format!("{}: {fault}", field(index));
            match fault {
                ImageFault::DetectionUnavailable => Status::unimplemented(msg),
                ImageFault::Image(_) => Status::invalid_argument(msg),
            }
        }
        PipelineError::Engine(e) => engine(e),
    }
}

pub fn engine(err: EngineError) -> Status {
    match err {
        EngineError::QueueFull { .. } => Status::resource_exhausted(err.to_string()),
        EngineError::Stopped => Status::unavailable(err.to_string()),
        EngineError::Inference(_) => Status::internal(err.to_string()),
    }
}

pub fn index(err: IndexError) -> Status {
    match err {
        IndexError::IdentityNotFound(_) => Status::not_found(err.to_string()),
        IndexError::DimensionMismatch { .. } => Status::failed_precondition(err.to_string()),
        IndexError::InvalidIndex { .. } | IndexError::Faiss(_) => {
            tracing::error!(error = %err, "gallery failure");
            Status::internal(format!("gallery failure: {err}"))
        }
    }
}
