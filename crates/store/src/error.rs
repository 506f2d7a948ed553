/// Store failures. The first four are the caller's to fix; the rest are ours.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum StoreError {
    #[error("gallery {0:?} not found")]
    GalleryNotFound(String),
    #[error("gallery {0:?} already exists")]
    GalleryExists(String),
    #[error("identity {0:?} not found")]
    IdentityNotFound(String),
    #[error("embedding has {got} dimensions, gallery {gallery:?} holds {expected}")]
    DimensionMismatch {
        gallery: String,
        expected: usize,
        got: usize,
    },
    #[error("database: {0}")]
    Database(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("the store's writer has stopped")]
    Stopped,
    /// The database cannot be reached (PostgreSQL down or restarting): retry later.
    #[error("gallery database unavailable: {0}")]
    Unavailable(String),
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}
