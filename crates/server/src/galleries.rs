//! Named galleries: the durable record (`vargid-store`) is the source of truth, and
//! each gallery's FAISS index (`vargid-index`) is derived from it: loaded from a
//! snapshot when that is up to date, rebuilt from the record otherwise, and kept in
//! step by the store's commit hook, in commit order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use vargid_index::{Gallery, IdentityEntry, IndexSpec};
use vargid_store::postgres::{Followed, PgStore};
use vargid_store::{
    Applied, Change, FaceRow, GalleryContents, GalleryRecord, IdentityRow, ModelTag, Store,
    StoreError,
};

use crate::config::PostgresSettings;
use crate::record::Record;

/// The gallery used when a request names none.
pub const DEFAULT_GALLERY: &str = "default";

/// The gallery a request names: its `gallery` field, "" meaning the default.
pub fn gallery_name(name: &str) -> &str {
    if name.is_empty() {
        DEFAULT_GALLERY
    } else {
        name
    }
}

/// One gallery: its record and its live index.
pub struct LiveGallery {
    pub record: GalleryRecord,
    pub index: Gallery,
}

type GalleryMap = Arc<RwLock<HashMap<String, Arc<LiveGallery>>>>;

#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error("gallery {0:?} not found")]
    NotFound(String),
    #[error(
        "gallery {gallery:?} holds templates of model {stored}; this server runs {running}: \
         its embeddings are not comparable (see docs/galleries.md, moving to a new model)"
    )]
    ModelMismatch {
        gallery: String,
        stored: String,
        running: String,
    },
    #[error("invalid gallery name {0:?}: use 1 to 64 letters, digits, '-' or '_'")]
    InvalidName(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] vargid_index::IndexError),
}

pub struct Galleries {
    map: GalleryMap,
    store: Record,
    model: ModelTag,
    snapshots: PathBuf,
    /// Galleries whose removed vectors must leave the disk (`CompactStorage` ran
    /// while the index still held them): no snapshot until a rebuild purges them.
    purge_pending: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// Above this share of removed vectors a snapshot is not written: the next start
/// rebuilds, which frees their memory and the search time spent skipping them.
const MAX_UNREACHABLE_SHARE: f64 = 0.2;

impl Galleries {
    /// Opens the record (SQLite under `data_dir`, or the shared PostgreSQL database
    /// when `postgres` is set), builds every gallery's index, and creates the default
    /// gallery if it is missing.
    pub async fn open(
        data_dir: &Path,
        postgres: Option<&PostgresSettings>,
        model: ModelTag,
        default_index: &IndexSpec,
        default_threshold: f32,
    ) -> Result<Self, GalleryError> {
        let map: GalleryMap = Arc::default();
        let snapshots = data_dir.join("index");
        std::fs::create_dir_all(&snapshots)
            .map_err(|e| StoreError::Database(format!("creating {}: {e}", snapshots.display())))?;
        let insert = |live: LiveGallery| {
            map.write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(live.record.name.clone(), Arc::new(live));
        };
        let hook_map = map.clone();
        let store = match postgres {
            None => {
                let store = Store::open(
                    &data_dir.join("galleries.sqlite3"),
                    Box::new(move |applied| apply_to_indexes(&hook_map, applied)),
                )?;
                for record in store.galleries()? {
                    insert(build_index(store.load(&record.name)?, Some(&snapshots))?);
                }
                Record::Sqlite(store)
            }
            Some(settings) => {
                let store =
                    PgStore::open(&settings.url, settings.max_connections, &settings.tls()).await?;
                // One consistent read of every gallery and the log position it reflects;
                // the follower applies what comes after. No local snapshots: another
                // replica may have changed a gallery since one was written.
                let snapshot = store.snapshot().await?;
                for contents in snapshot.galleries {
                    insert(build_index(contents, None)?);
                }
                tracing::info!(
                    seq = snapshot.seq,
                    "galleries loaded from PostgreSQL; following its change log"
                );
                store.follow(
                    snapshot.seq,
                    settings.log_keep,
                    Box::new(move |followed| match followed {
                        Followed::Change(logged) => {
                            crate::metrics::replication_applied(
                                logged.seq,
                                logged.committed_unix_ms,
                            );
                            apply_to_indexes(&hook_map, &logged.applied);
                        }
                        Followed::Reset(snapshot) => rebuild_all(&hook_map, snapshot.galleries),
                    }),
                );
                Record::Postgres(store)
            }
        };
        let galleries = Self {
            map,
            store,
            model,
            snapshots,
            purge_pending: Default::default(),
        };
        if galleries.find(DEFAULT_GALLERY).is_none() {
            match galleries
                .create(DEFAULT_GALLERY, default_index, default_threshold)
                .await
            {
                // Another replica created it first.
                Err(GalleryError::Store(StoreError::GalleryExists(_))) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(galleries)
    }

    pub fn model(&self) -> &ModelTag {
        &self.model
    }

    pub fn store(&self) -> &Record {
        &self.store
    }

    fn find(&self, name: &str) -> Option<Arc<LiveGallery>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// A gallery by name ("" is the default), usable with this server's model.
    pub fn get(&self, name: &str) -> Result<Arc<LiveGallery>, GalleryError> {
        let name = gallery_name(name);
        let live = self
            .find(name)
            .ok_or_else(|| GalleryError::NotFound(name.into()))?;
        if live.record.model != self.model {
            return Err(GalleryError::ModelMismatch {
                gallery: name.into(),
                stored: describe(&live.record.model),
                running: describe(&self.model),
            });
        }
        Ok(live)
    }

    /// Every gallery, by name.
    pub fn list(&self) -> Vec<Arc<LiveGallery>> {
        let mut all: Vec<_> = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        all
    }

    pub async fn create(
        &self,
        name: &str,
        index: &IndexSpec,
        threshold: f32,
    ) -> Result<Arc<LiveGallery>, GalleryError> {
        check_name(name)?;
        // Refuse a bad index description before anything is recorded.
        Gallery::new(self.model.embedding_size, index)?;
        let record = GalleryRecord {
            name: name.into(),
            index: index.description.clone(),
            index_parameters: index.parameters(),
            match_threshold: threshold,
            model: self.model.clone(),
            created_at_unix_ms: crate::clock::now_unix_ms(),
            seq: 0,
        };
        self.store.apply(Change::CreateGallery(record)).await?;
        self.find(name)
            .ok_or_else(|| GalleryError::NotFound(name.into()))
    }

    pub async fn drop_gallery(&self, name: &str) -> Result<(), GalleryError> {
        self.store
            .apply(Change::DropGallery { name: name.into() })
            .await?;
        let _ = std::fs::remove_file(snapshot_path(&self.snapshots, name));
        Ok(())
    }

    /// Erasure: after deletions, no file under the data directory keeps the deleted
    /// templates. The database is vacuumed and its WAL emptied; index snapshots, which
    /// may predate the deletions, are removed. The next clean shutdown writes them
    /// again from the live indexes, except for those that still hold removed vectors
    /// (HNSW): those are rebuilt at the next start.
    pub async fn compact(&self) -> Result<(), GalleryError> {
        {
            let mut pending = self.purge_pending.lock().unwrap_or_else(|e| e.into_inner());
            for live in self.list() {
                if live.index.unreachable_vectors() > 0 {
                    pending.insert(live.record.name.clone());
                }
            }
        }
        self.store.compact().await?;
        if let Ok(entries) = std::fs::read_dir(&self.snapshots) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Applies a change durably; the index reflects it when this returns. The number
    /// is the change's in the shared log (PostgreSQL), for read-your-writes on other
    /// replicas.
    pub async fn apply(&self, change: Change) -> Result<(Option<u64>, Applied), GalleryError> {
        Ok(self.store.apply(change).await?)
    }

    /// Writes every index's snapshot (on clean shutdown), so the next start skips
    /// rebuilding. A snapshot names the record sequence it reflects.
    pub fn write_snapshots(&self) {
        for live in self.list() {
            let Some(Ok(Some(current))) = self.store.local_gallery(&live.record.name) else {
                continue;
            };
            let path = snapshot_path(&self.snapshots, &live.record.name);
            let unreachable = live.index.unreachable_vectors();
            let purge = unreachable > 0
                && (self
                    .purge_pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&live.record.name)
                    || unreachable as f64
                        > MAX_UNREACHABLE_SHARE * live.index.indexed_vectors() as f64);
            if purge {
                // Rebuilding on the next start purges the removed vectors (HNSW, IVF).
                let _ = std::fs::remove_file(&path);
                tracing::info!(gallery = %live.record.name, unreachable, "no index snapshot: the next start rebuilds to purge removed vectors");
                continue;
            }
            let tmp = path.with_extension("faiss.tmp");
            let result = live
                .index
                .write_snapshot(&tmp)
                .map_err(|e| e.to_string())
                .and_then(|()| std::fs::rename(&tmp, &path).map_err(|e| e.to_string()))
                .and_then(|()| {
                    std::fs::write(path.with_extension("seq"), current.seq.to_string())
                        .map_err(|e| e.to_string())
                });
            match result {
                Ok(()) => {
                    tracing::info!(gallery = %live.record.name, seq = current.seq, "index snapshot written")
                }
                Err(e) => {
                    tracing::warn!(gallery = %live.record.name, error = %e, "index snapshot not written")
                }
            }
        }
    }
}

fn describe(m: &ModelTag) -> String {
    format!("{} {} ({}-d)", m.name, m.version, m.embedding_size)
}

fn check_name(name: &str) -> Result<(), GalleryError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(GalleryError::InvalidName(name.into()))
    }
}

fn snapshot_path(dir: &Path, gallery: &str) -> PathBuf {
    dir.join(format!("{gallery}.faiss"))
}

fn entries(identities: Vec<IdentityRow>, faces: Vec<FaceRow>) -> Vec<IdentityEntry> {
    let mut by_id: HashMap<String, IdentityEntry> = identities
        .into_iter()
        .map(|row| {
            (
                row.identity_id.clone(),
                IdentityEntry {
                    identity_id: row.identity_id,
                    display_name: row.display_name,
                    metadata: row.metadata,
                    created_at_unix_ms: row.created_at_unix_ms,
                    faces: Vec::new(),
                },
            )
        })
        .collect();
    for face in faces {
        if let Some(entry) = by_id.get_mut(&face.identity_id) {
            entry.faces.push((face.face_id, face.embedding));
        }
    }
    by_id.into_values().collect()
}

/// The gallery's index: from an up-to-date snapshot in `snapshots` if there is one,
/// else rebuilt.
fn build_index(
    contents: GalleryContents,
    snapshots: Option<&Path>,
) -> Result<LiveGallery, GalleryError> {
    let GalleryContents {
        gallery: record,
        identities,
        faces,
    } = contents;
    let dim = record.model.embedding_size;
    let spec = IndexSpec::from_stored(&record.index, &record.index_parameters)?;
    let mut entries = entries(identities, faces);
    let path = snapshots.map(|dir| snapshot_path(dir, &record.name));
    let snapshot_seq = path.as_ref().and_then(|path| {
        std::fs::read_to_string(path.with_extension("seq"))
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
    });
    if let Some(path) = path.filter(|p| snapshot_seq == Some(record.seq) && p.is_file()) {
        match Gallery::from_snapshot(dim, &spec, &path, entries) {
            Ok(index) => {
                tracing::info!(gallery = %record.name, faces = index.face_count(), "index loaded from snapshot");
                return Ok(LiveGallery { record, index });
            }
            Err(rejected) => {
                tracing::warn!(gallery = %record.name, reason = %rejected.reason, "snapshot not used; rebuilding");
                entries = rejected.entries;
            }
        }
    }
    let index = Gallery::new(dim, &spec)?;
    index.put_many(entries)?;
    tracing::info!(gallery = %record.name, faces = index.face_count(), "index rebuilt from the record");
    Ok(LiveGallery { record, index })
}

/// Replaces every live gallery with one built from `galleries` (a replica that fell
/// behind the shared log's trimmed start).
fn rebuild_all(map: &GalleryMap, galleries: Vec<GalleryContents>) {
    let mut fresh = HashMap::new();
    for contents in galleries {
        let name = contents.gallery.name.clone();
        match build_index(contents, None) {
            Ok(live) => {
                fresh.insert(name, Arc::new(live));
            }
            Err(e) => tracing::error!(gallery = %name, error = %e, "rebuilding the gallery"),
        }
    }
    *map.write().unwrap_or_else(|e| e.into_inner()) = fresh;
}

/// The commit hook: mirrors each committed change into the live indexes.
fn apply_to_indexes(map: &GalleryMap, applied: &Applied) {
    let result = match applied {
        Applied::GalleryCreated(record) => {
            IndexSpec::from_stored(&record.index, &record.index_parameters)
                .and_then(|spec| Gallery::new(record.model.embedding_size, &spec))
                .map(|index| {
                    map.write().unwrap_or_else(|e| e.into_inner()).insert(
                        record.name.clone(),
                        Arc::new(LiveGallery {
                            record: record.clone(),
                            index,
                        }),
                    );
                })
        }
        Applied::GalleryDropped { name } => {
            map.write().unwrap_or_else(|e| e.into_inner()).remove(name);
            Ok(())
        }
        Applied::Enrolled {
            gallery,
            identity,
            faces,
            ..
        } => with_gallery(map, gallery, |g| {
            g.index
                .put_many(entries(vec![identity.clone()], faces.clone()))
        }),
        Applied::Deleted {
            gallery,
            identity_id,
            ..
        } => with_gallery(map, gallery, |g| g.index.remove(identity_id).map(|_| ())),
        Applied::Imported {
            gallery,
            identities,
        } => with_gallery(map, gallery, |g| {
            let (rows, faces): (Vec<_>, Vec<_>) = identities.iter().cloned().unzip();
            g.index
                .put_many(entries(rows, faces.into_iter().flatten().collect()))
        }),
    };
    if let Err(e) = result {
        // The record is durable; the index is derived and rebuilt from it on restart.
        tracing::error!(error = %e, "a committed change could not be applied to the index");
    }
}

fn with_gallery(
    map: &GalleryMap,
    name: &str,
    f: impl FnOnce(&LiveGallery) -> Result<(), vargid_index::IndexError>,
) -> Result<(), vargid_index::IndexError> {
    let live = map
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .cloned();
    match live {
        Some(live) => f(&live),
        None => Ok(()),
    }
}
