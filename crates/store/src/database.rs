//! The SQLite database behind the store: one writer thread (group commit) and one
//! reader connection.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::types::{Applied, Change, FaceRow, GalleryContents, GalleryRecord, IdentityRow};
use crate::{reader, schema, writer, StoreError};

/// Called on the writer thread with each committed change, in commit order.
pub type CommitHook = Box<dyn Fn(&Applied) + Send + 'static>;

/// Handle to the gallery database.
pub struct Store {
    path: PathBuf,
    writer: writer::Writer,
    reader: Mutex<rusqlite::Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and starts its writer.
    pub fn open(path: &Path, on_commit: CommitHook) -> Result<Self, StoreError> {
        let write_conn = schema::open(path)?;
        let reader = schema::open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: writer::Writer::start(write_conn, on_commit)?,
            reader: Mutex::new(reader),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies one change durably; returns once it is committed and the hook ran.
    pub async fn apply(&self, change: Change) -> Result<Applied, StoreError> {
        self.writer.apply(change).await
    }

    /// Erases deleted records' bytes from the database files (see `Writer::compact`).
    pub async fn compact(&self) -> Result<(), StoreError> {
        self.writer.compact().await
    }

    /// One gallery's record, if it exists.
    pub fn gallery(&self, name: &str) -> Result<Option<GalleryRecord>, StoreError> {
        reader::gallery(&self.conn(), name)
    }

    /// Every gallery.
    pub fn galleries(&self) -> Result<Vec<GalleryRecord>, StoreError> {
        reader::galleries(&self.conn())
    }

    /// A gallery's identities and templates, to build its index.
    pub fn load(&self, gallery: &str) -> Result<GalleryContents, StoreError> {
        reader::load(&self.conn(), gallery)
    }

    /// Up to `limit` identities after `after` (ascending ids) with their templates.
    pub fn export_page(
        &self,
        gallery: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(IdentityRow, Vec<FaceRow>)>, StoreError> {
        reader::export_page(&self.conn(), gallery, after, limit)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }
}
