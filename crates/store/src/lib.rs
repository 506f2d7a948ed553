//! The durable record of the galleries: the source of truth from which the in-memory
//! FAISS indexes are built.
//!
//! SQLite (through rusqlite, SQLite compiled in) in WAL mode with `synchronous=FULL`:
//! a change is on disk once its commit returns, a torn tail of the log is discarded
//! by SQLite's checksums on the next open, and the whole engine is one well-tested C
//! library rather than a log format of our own. One writer thread applies changes;
//! changes that arrive while a commit is being synced are applied together and share
//! the next sync (group commit). A hook sees each committed change, in commit order,
//! before its caller is answered, so in-memory state never runs ahead of the disk.
//!
//! Without the `sqlite` feature (on by default) the crate is only the record types and
//! their codec: what request validation and the fuzz targets need.

pub mod codec;
#[cfg(feature = "sqlite")]
mod database;
mod error;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
mod reader;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod rules;
#[cfg(feature = "sqlite")]
mod schema;
mod types;
#[cfg(feature = "sqlite")]
mod writer;

#[cfg(feature = "sqlite")]
pub use database::{CommitHook, Store};
pub use error::StoreError;
pub use types::{
    Applied, Change, FaceRow, GalleryContents, GalleryRecord, IdentityRow, ImportedIdentity,
    ModelTag,
};
