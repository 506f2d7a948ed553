//! What the store keeps and the changes it applies.

use std::collections::BTreeMap;

/// The model whose embeddings a gallery holds. Templates of another model are not
/// comparable, so a gallery refuses them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelTag {
    pub name: String,
    pub version: String,
    pub embedding_size: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GalleryRecord {
    pub name: String,
    /// FAISS index factory string.
    pub index: String,
    /// The index's tuning, in FAISS `ParameterSpace` syntax (`efSearch=128,...`);
    /// empty for none.
    pub index_parameters: String,
    pub match_threshold: f32,
    pub model: ModelTag,
    pub created_at_unix_ms: i64,
    /// Incremented by every change to the gallery; an index snapshot taken at the
    /// same sequence is up to date.
    pub seq: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdentityRow {
    pub identity_id: String,
    pub display_name: String,
    pub metadata: BTreeMap<String, String>,
    pub created_at_unix_ms: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FaceRow {
    pub face_id: i64,
    pub identity_id: String,
    pub embedding: Vec<f32>,
}

/// Everything needed to rebuild one gallery's index.
#[derive(Debug, Clone)]
pub struct GalleryContents {
    pub gallery: GalleryRecord,
    pub identities: Vec<IdentityRow>,
    /// Oldest first.
    pub faces: Vec<FaceRow>,
}

/// An identity to import, with the embeddings of its templates.
pub type ImportedIdentity = (IdentityRow, Vec<Vec<f32>>);

/// A change to apply atomically.
#[derive(Debug, Clone)]
pub enum Change {
    /// `seq` and `created_at_unix_ms` of the record are set by the store.
    CreateGallery(GalleryRecord),
    DropGallery {
        name: String,
    },
    /// Adds templates to an identity, creating it if new. `display_name` replaces the
    /// stored one when set; `metadata` keys replace stored values.
    Enroll {
        gallery: String,
        identity_id: String,
        display_name: Option<String>,
        metadata: BTreeMap<String, String>,
        embeddings: Vec<Vec<f32>>,
        at_unix_ms: i64,
    },
    DeleteIdentity {
        gallery: String,
        identity_id: String,
    },
    /// Adds exported identities with their templates (new face ids are assigned).
    Import {
        gallery: String,
        identities: Vec<ImportedIdentity>,
    },
}

/// A committed change, as the hook and the caller see it (and as PostgreSQL's change
/// log keeps it, in JSON).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Applied {
    GalleryCreated(GalleryRecord),
    GalleryDropped {
        name: String,
    },
    Enrolled {
        gallery: String,
        /// The identity as stored after the change.
        identity: IdentityRow,
        created: bool,
        /// The new templates, with their ids.
        faces: Vec<FaceRow>,
        face_count: usize,
    },
    Deleted {
        gallery: String,
        identity_id: String,
        face_ids: Vec<i64>,
    },
    Imported {
        gallery: String,
        identities: Vec<(IdentityRow, Vec<FaceRow>)>,
    },
}
