//! Queries on the read connection (WAL readers see the last commit, never block it).

use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::codec::{blob_to_embedding, json_to_metadata};
use crate::error::StoreError;
use crate::types::{FaceRow, GalleryContents, GalleryRecord, IdentityRow, ModelTag};

pub fn gallery(conn: &Connection, name: &str) -> Result<Option<GalleryRecord>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT name, index_spec, match_threshold, model_name, model_version, embedding_size,
                    created_ms, seq, index_parameters FROM galleries WHERE name = ?1",
            [name],
            gallery_row,
        )
        .optional()?)
}

pub fn galleries(conn: &Connection) -> Result<Vec<GalleryRecord>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT name, index_spec, match_threshold, model_name, model_version, embedding_size,
                created_ms, seq, index_parameters FROM galleries ORDER BY name",
    )?;
    let rows = stmt.query_map([], gallery_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn gallery_row(r: &Row<'_>) -> rusqlite::Result<GalleryRecord> {
    Ok(GalleryRecord {
        name: r.get(0)?,
        index: r.get(1)?,
        index_parameters: r.get(8)?,
        match_threshold: r.get::<_, f64>(2)? as f32,
        model: ModelTag {
            name: r.get(3)?,
            version: r.get(4)?,
            embedding_size: r.get::<_, i64>(5)? as usize,
        },
        created_at_unix_ms: r.get(6)?,
        seq: r.get(7)?,
    })
}

pub fn identity(
    conn: &Connection,
    gallery: &str,
    id: &str,
) -> Result<Option<IdentityRow>, StoreError> {
    let raw = conn
        .query_row(
            "SELECT identity_id, display_name, metadata, created_ms FROM identities
             WHERE gallery = ?1 AND identity_id = ?2",
            params![gallery, id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?, r.get(3)?)),
        )
        .optional()?;
    raw.map(
        |(identity_id, display_name, metadata, created_at_unix_ms)| {
            Ok(IdentityRow {
                identity_id,
                display_name,
                metadata: json_to_metadata(&metadata)?,
                created_at_unix_ms,
            })
        },
    )
    .transpose()
}

pub fn load(conn: &Connection, name: &str) -> Result<GalleryContents, StoreError> {
    let gallery = gallery(conn, name)?.ok_or_else(|| StoreError::GalleryNotFound(name.into()))?;
    let mut stmt = conn.prepare(
        "SELECT identity_id, display_name, metadata, created_ms FROM identities
         WHERE gallery = ?1 ORDER BY identity_id",
    )?;
    let identities = stmt
        .query_map([name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?, r.get(3)?))
        })?
        .map(|row| {
            let (identity_id, display_name, metadata, created_at_unix_ms) = row?;
            Ok(IdentityRow {
                identity_id,
                display_name,
                metadata: json_to_metadata(&metadata)?,
                created_at_unix_ms,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let faces = face_rows(
        conn,
        "SELECT face_id, identity_id, embedding FROM faces WHERE gallery = ?1 ORDER BY face_id",
        params![name],
    )?;
    Ok(GalleryContents {
        gallery,
        identities,
        faces,
    })
}

pub fn faces_of(conn: &Connection, gallery: &str, id: &str) -> Result<Vec<FaceRow>, StoreError> {
    face_rows(
        conn,
        "SELECT face_id, identity_id, embedding FROM faces
         WHERE gallery = ?1 AND identity_id = ?2 ORDER BY face_id",
        params![gallery, id],
    )
}

/// Runs a query selecting (face_id, identity_id, embedding).
fn face_rows(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<FaceRow>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, Vec<u8>>(2)?))
    })?;
    rows.map(|row| {
        let (face_id, identity_id, blob) = row?;
        Ok(FaceRow {
            face_id,
            identity_id,
            embedding: blob_to_embedding(&blob)?,
        })
    })
    .collect()
}

pub fn export_page(
    conn: &Connection,
    gallery_name: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(IdentityRow, Vec<FaceRow>)>, StoreError> {
    if gallery(conn, gallery_name)?.is_none() {
        return Err(StoreError::GalleryNotFound(gallery_name.into()));
    }
    let mut stmt = conn.prepare(
        "SELECT identity_id FROM identities WHERE gallery = ?1 AND identity_id > ?2
         ORDER BY identity_id LIMIT ?3",
    )?;
    let ids: Vec<String> = stmt
        .query_map(
            params![gallery_name, after.unwrap_or(""), limit as i64],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?;
    ids.iter()
        .map(|id| {
            let row = identity(conn, gallery_name, id)?
                .ok_or_else(|| StoreError::IdentityNotFound(id.clone()))?;
            Ok((row, faces_of(conn, gallery_name, id)?))
        })
        .collect()
}
