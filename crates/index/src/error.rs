/// Gallery failures.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("identity {0:?} not found")]
    IdentityNotFound(String),
    #[error("embedding has {got} dimensions, the gallery holds {expected}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("invalid index description {description:?}: {reason}")]
    InvalidIndex { description: String, reason: String },
    /// `field` is the parameter's name in `IndexParameters` (gRPC) and the config.
    #[error("{field}: {reason}")]
    InvalidParameter { field: &'static str, reason: String },
    #[error("FAISS: {0}")]
    Faiss(#[from] faiss::error::Error),
}
