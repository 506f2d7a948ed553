//! The single writer: applies changes in transactions, grouping the changes that
//! queue up during one commit's sync into the next commit.

use std::sync::mpsc::{channel, Receiver, Sender};

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use crate::codec::{embedding_to_blob, metadata_to_json};
use crate::error::StoreError;
use crate::reader;
use crate::rules::{check_dims, merge_identity};
use crate::types::{Applied, Change, FaceRow, IdentityRow};
use crate::CommitHook;

/// Most changes in one commit: bounds the latency a large group adds to its first member.
const MAX_GROUP: usize = 256;

struct Pending {
    change: Change,
    reply: oneshot::Sender<Result<Applied, StoreError>>,
}

/// What the writer thread is asked to do.
enum Job {
    Change(Pending),
    Compact(oneshot::Sender<Result<(), StoreError>>),
}

pub struct Writer {
    queue: Sender<Job>,
}

impl Writer {
    pub fn start(conn: Connection, hook: CommitHook) -> Result<Self, StoreError> {
        let (queue, rx) = channel();
        std::thread::Builder::new()
            .name("vargid-store".into())
            .spawn(move || run(conn, rx, hook))
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { queue })
    }

    pub async fn apply(&self, change: Change) -> Result<Applied, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Job::Change(Pending { change, reply }))
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Erases what deletions left on disk: VACUUM rewrites the database without free
    /// pages, and a truncating checkpoint empties the WAL, which still holds the pages
    /// as they were before the deletions. Runs between commits.
    pub async fn compact(&self) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Job::Compact(reply))
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }
}

fn compact(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("VACUUM")?;
    let (busy, _, _): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if busy != 0 {
        return Err(StoreError::Database(
            "compaction: a reader kept the WAL from being emptied; try again".into(),
        ));
    }
    Ok(())
}

fn run(mut conn: Connection, queue: Receiver<Job>, hook: CommitHook) {
    while let Ok(first) = queue.recv() {
        let (mut group, mut compactions) = (Vec::new(), Vec::new());
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Change(p) => group.push(p),
                Job::Compact(reply) => compactions.push(reply),
            }
            if group.len() < MAX_GROUP {
                next = queue.try_recv().ok();
            }
        }
        if !group.is_empty() {
            let results = commit_group(&mut conn, &group);
            for (pending, result) in group.into_iter().zip(results) {
                if let Ok(applied) = &result {
                    hook(applied);
                }
                let _ = pending.reply.send(result);
            }
        }
        // After the group's commit, so a deletion queued before the compaction is
        // erased by it.
        for reply in compactions {
            let _ = reply.send(compact(&conn));
        }
    }
}

/// One transaction, one sync. Each change runs in its own savepoint, so a change
/// that fails (unknown identity, say) is rolled back alone.
fn commit_group(conn: &mut Connection, group: &[Pending]) -> Vec<Result<Applied, StoreError>> {
    let fail_all = |e: rusqlite::Error| {
        let err = StoreError::from(e);
        group.iter().map(|_| Err(err.clone())).collect()
    };
    let mut tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return fail_all(e),
    };
    let mut results = Vec::with_capacity(group.len());
    for pending in group {
        let result = match tx.savepoint() {
            Ok(mut sp) => match apply(&sp, &pending.change) {
                Ok(applied) => sp.commit().map(|()| applied).map_err(StoreError::from),
                Err(e) => {
                    let _ = sp.rollback();
                    Err(e)
                }
            },
            Err(e) => Err(e.into()),
        };
        results.push(result);
    }
    match tx.commit() {
        Ok(()) => results,
        Err(e) => {
            tracing::error!(error = %e, changes = group.len(), "commit failed");
            fail_all(e)
        }
    }
}

fn apply(conn: &Connection, change: &Change) -> Result<Applied, StoreError> {
    match change {
        Change::CreateGallery(record) => {
            if reader::gallery(conn, &record.name)?.is_some() {
                return Err(StoreError::GalleryExists(record.name.clone()));
            }
            conn.execute(
                "INSERT INTO galleries (name, index_spec, match_threshold, model_name, model_version,
                                        embedding_size, created_ms, seq, index_parameters)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8)",
                params![
                    record.name,
                    record.index,
                    f64::from(record.match_threshold),
                    record.model.name,
                    record.model.version,
                    record.model.embedding_size as i64,
                    record.created_at_unix_ms,
                    record.index_parameters
                ],
            )?;
            let stored = reader::gallery(conn, &record.name)?
                .ok_or_else(|| StoreError::GalleryNotFound(record.name.clone()))?;
            Ok(Applied::GalleryCreated(stored))
        }
        Change::DropGallery { name } => {
            if reader::gallery(conn, name)?.is_none() {
                return Err(StoreError::GalleryNotFound(name.clone()));
            }
            conn.execute("DELETE FROM faces WHERE gallery = ?1", [name])?;
            conn.execute("DELETE FROM identities WHERE gallery = ?1", [name])?;
            conn.execute("DELETE FROM galleries WHERE name = ?1", [name])?;
            Ok(Applied::GalleryDropped { name: name.clone() })
        }
        Change::Enroll {
            gallery,
            identity_id,
            display_name,
            metadata,
            embeddings,
            at_unix_ms,
        } => {
            let dim = gallery_dim(conn, gallery)?;
            check_dims(gallery, dim, embeddings)?;
            let (identity, created) = upsert_identity(
                conn,
                gallery,
                IdentityRow {
                    identity_id: identity_id.clone(),
                    display_name: display_name.clone().unwrap_or_default(),
                    metadata: metadata.clone(),
                    created_at_unix_ms: *at_unix_ms,
                },
                display_name.is_some(),
            )?;
            let faces = insert_faces(conn, gallery, identity_id, embeddings)?;
            bump(conn, gallery)?;
            let face_count: i64 = conn.query_row(
                "SELECT COUNT(*) FROM faces WHERE gallery = ?1 AND identity_id = ?2",
                params![gallery, identity_id],
                |r| r.get(0),
            )?;
            Ok(Applied::Enrolled {
                gallery: gallery.clone(),
                identity,
                created,
                faces,
                face_count: face_count as usize,
            })
        }
        Change::DeleteIdentity {
            gallery,
            identity_id,
        } => {
            gallery_dim(conn, gallery)?;
            if reader::identity(conn, gallery, identity_id)?.is_none() {
                return Err(StoreError::IdentityNotFound(identity_id.clone()));
            }
            let face_ids = reader::faces_of(conn, gallery, identity_id)?
                .into_iter()
                .map(|f| f.face_id)
                .collect();
            conn.execute(
                "DELETE FROM faces WHERE gallery = ?1 AND identity_id = ?2",
                params![gallery, identity_id],
            )?;
            conn.execute(
                "DELETE FROM identities WHERE gallery = ?1 AND identity_id = ?2",
                params![gallery, identity_id],
            )?;
            bump(conn, gallery)?;
            Ok(Applied::Deleted {
                gallery: gallery.clone(),
                identity_id: identity_id.clone(),
                face_ids,
            })
        }
        Change::Import {
            gallery,
            identities,
        } => {
            let dim = gallery_dim(conn, gallery)?;
            let mut out = Vec::with_capacity(identities.len());
            for (row, embeddings) in identities {
                check_dims(gallery, dim, embeddings)?;
                let (identity, _) =
                    upsert_identity(conn, gallery, row.clone(), !row.display_name.is_empty())?;
                let faces = insert_faces(conn, gallery, &row.identity_id, embeddings)?;
                out.push((identity, faces));
            }
            bump(conn, gallery)?;
            Ok(Applied::Imported {
                gallery: gallery.clone(),
                identities: out,
            })
        }
    }
}

fn gallery_dim(conn: &Connection, gallery: &str) -> Result<usize, StoreError> {
    reader::gallery(conn, gallery)?
        .map(|g| g.model.embedding_size)
        .ok_or_else(|| StoreError::GalleryNotFound(gallery.into()))
}

/// Creates the identity or merges `row` into it; returns the stored row and whether
/// it was created.
fn upsert_identity(
    conn: &Connection,
    gallery: &str,
    row: IdentityRow,
    replace_name: bool,
) -> Result<(IdentityRow, bool), StoreError> {
    let existing = reader::identity(conn, gallery, &row.identity_id)?;
    let (merged, created) = merge_identity(existing, row, replace_name);
    conn.execute(
        "INSERT INTO identities (gallery, identity_id, display_name, metadata, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (gallery, identity_id) DO UPDATE SET
             display_name = excluded.display_name, metadata = excluded.metadata",
        params![
            gallery,
            merged.identity_id,
            merged.display_name,
            metadata_to_json(&merged.metadata),
            merged.created_at_unix_ms
        ],
    )?;
    Ok((merged, created))
}

fn insert_faces(
    conn: &Connection,
    gallery: &str,
    identity_id: &str,
    embeddings: &[Vec<f32>],
) -> Result<Vec<FaceRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO faces (gallery, identity_id, embedding) VALUES (?1, ?2, ?3)",
    )?;
    let mut faces = Vec::with_capacity(embeddings.len());
    for embedding in embeddings {
        stmt.execute(params![gallery, identity_id, embedding_to_blob(embedding)])?;
        faces.push(FaceRow {
            face_id: conn.last_insert_rowid(),
            identity_id: identity_id.to_string(),
            embedding: embedding.clone(),
        });
    }
    Ok(faces)
}

fn bump(conn: &Connection, gallery: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE galleries SET seq = seq + 1 WHERE name = ?1",
        [gallery],
    )?;
    Ok(())
}
