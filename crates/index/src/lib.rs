//! The face gallery: identities, their face templates, and a FAISS inner-product index
//! over the templates' L2-normalised embeddings (inner product = cosine similarity).

mod error;
mod gallery;
mod spec;

pub use error::IndexError;
pub use gallery::{
    Candidate, FaceId, Gallery, IdentityEntry, IdentityPage, IdentityRecord, SnapshotRejected,
};
pub use spec::{
    HnswParameters, IndexDefaults, IndexRequest, IndexSpec, IvfParameters, DEFAULT_RERANK,
    TRAIN_POINTS_PER_LIST,
};
