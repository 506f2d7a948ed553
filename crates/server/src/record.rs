//! The durable gallery record behind one interface: SQLite in the data directory
//! (one server owns it; the default), or PostgreSQL shared by replicas
//! (`gallery.backend = "postgres"`). Each backend lives in `vargid-store`; this only
//! dispatches, so the galleries and the handlers do not care which one runs.

use std::time::Duration;

use vargid_store::postgres::PgStore;
use vargid_store::{Applied, Change, FaceRow, GalleryRecord, IdentityRow, Store, StoreError};

pub enum Record {
    Sqlite(Store),
    Postgres(PgStore),
}

impl Record {
    /// Applies one change durably; returns once the live indexes reflect it, with the
    /// change's number in the shared log (None with SQLite, which has no replicas).
    pub async fn apply(&self, change: Change) -> Result<(Option<u64>, Applied), StoreError> {
        match self {
            Record::Sqlite(store) => Ok((None, store.apply(change).await?)),
            Record::Postgres(store) => {
                let (seq, applied) = store.apply(change).await?;
                Ok((u64::try_from(seq).ok(), applied))
            }
        }
    }

    pub async fn compact(&self) -> Result<(), StoreError> {
        match self {
            Record::Sqlite(store) => store.compact().await,
            Record::Postgres(store) => store.compact().await,
        }
    }

    pub async fn export_page(
        &self,
        gallery: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(IdentityRow, Vec<FaceRow>)>, StoreError> {
        match self {
            Record::Sqlite(store) => store.export_page(gallery, after, limit),
            Record::Postgres(store) => store.export_page(gallery, after, limit).await,
        }
    }

    /// A gallery's record as SQLite holds it now, for the snapshot's sequence number.
    /// None with PostgreSQL: replicas build their indexes from the database at start.
    pub fn local_gallery(&self, name: &str) -> Option<Result<Option<GalleryRecord>, StoreError>> {
        match self {
            Record::Sqlite(store) => Some(store.gallery(name)),
            Record::Postgres(_) => None,
        }
    }

    /// Waits until this replica has applied change `seq` of the shared log, at most
    /// `timeout`; whether it has. Always true with SQLite (one server: every
    /// acknowledged change is applied).
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        match self {
            Record::Sqlite(_) => true,
            Record::Postgres(store) => {
                store
                    .wait_for(i64::try_from(seq).unwrap_or(i64::MAX), timeout)
                    .await
            }
        }
    }

    /// The last change of the shared log this replica has applied (0 with SQLite).
    pub fn applied_seq(&self) -> u64 {
        match self {
            Record::Sqlite(_) => 0,
            Record::Postgres(store) => u64::try_from(store.applied_seq()).unwrap_or(0),
        }
    }
}
