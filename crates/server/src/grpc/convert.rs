//! Domain values to proto answers. Request fields are validated by `vargid_request`,
//! re-exported here so that handlers read `convert::` for both directions.

use vargid_index::IdentityRecord;
use vargid_proto::v1 as pb;
pub use vargid_request::fields::{
    identity_id, metadata, next_page_token, page_size, page_token, threshold,
};
pub use vargid_request::image::{image, images};
pub use vargid_request::import::imported_identities;
pub use vargid_request::template::{probe_template, same_model};

use crate::faces::{FaceBox, FaceResult, Rejection};
use crate::galleries::LiveGallery;
use vargid_store::{FaceRow, IdentityRow, ModelTag};

pub fn model_tag(m: &ModelTag) -> pb::ModelTag {
    pb::ModelTag {
        name: m.name.clone(),
        version: m.version.clone(),
        embedding_size: u32::try_from(m.embedding_size).unwrap_or(u32::MAX),
    }
}

pub fn gallery_info(g: &LiveGallery) -> pb::GalleryInfo {
    pb::GalleryInfo {
        name: g.record.name.clone(),
        index: g.record.index.clone(),
        match_threshold: g.record.match_threshold,
        model: Some(model_tag(&g.record.model)),
        face_count: g.index.face_count() as u64,
        identity_count: g.index.identity_count() as u64,
        created_at_unix_ms: g.record.created_at_unix_ms,
        index_parameters: index_parameters(g.index.spec()),
    }
}

/// The parameters in effect, None for a flat index.
fn index_parameters(spec: &vargid_index::IndexSpec) -> Option<pb::IndexParameters> {
    match (spec.hnsw, spec.ivf) {
        (Some(h), _) => Some(pb::IndexParameters {
            hnsw_m: Some(h.m),
            hnsw_ef_construction: Some(h.ef_construction),
            hnsw_ef_search: Some(h.ef_search),
            ..Default::default()
        }),
        (None, Some(ivf)) => Some(pb::IndexParameters {
            ivf_nlist: Some(ivf.nlist),
            ivf_nprobe: Some(ivf.nprobe),
            ivf_rerank: ivf.rerank,
            ..Default::default()
        }),
        (None, None) => None,
    }
}

pub fn exported_identity((row, faces): (IdentityRow, Vec<FaceRow>)) -> pb::ExportedIdentity {
    pb::ExportedIdentity {
        identity: Some(pb::Identity {
            identity_id: row.identity_id,
            display_name: row.display_name,
            metadata: row.metadata.into_iter().collect(),
            face_ids: faces.iter().map(|f| f.face_id).collect(),
            created_at_unix_ms: row.created_at_unix_ms,
        }),
        templates: faces
            .into_iter()
            .map(|f| pb::Template {
                face_id: f.face_id,
                embedding: f.embedding,
            })
            .collect(),
    }
}

pub fn face(face: &FaceBox, rejection: Option<&Rejection>) -> pb::Face {
    let code = match rejection {
        None => pb::FaceRejection::None,
        Some(Rejection::TooSmall { .. }) => pb::FaceRejection::TooSmall,
        Some(Rejection::LowScore { .. }) => pb::FaceRejection::LowDetectorScore,
        Some(Rejection::Unalignable) => pb::FaceRejection::Unalignable,
    };
    pb::Face {
        r#box: Some(pb::BoundingBox {
            x: face.x,
            y: face.y,
            width: face.width,
            height: face.height,
        }),
        landmarks: face.landmarks.map(|points| pb::Landmarks {
            points: points
                .iter()
                .map(|p| pb::Point { x: p[0], y: p[1] })
                .collect(),
        }),
        detector_score: face.score,
        rejection: code as i32,
        rejection_detail: rejection.map(ToString::to_string).unwrap_or_default(),
    }
}

/// A face result's `Face` message, rejection included.
pub fn face_result(result: &FaceResult) -> pb::Face {
    face(&result.face, result.embedding.as_ref().err())
}

/// The reason code for an image's face list.
pub fn no_face_reason(faces: &[FaceResult]) -> i32 {
    if faces.is_empty() {
        pb::NoFaceReason::NoneDetected as i32
    } else {
        pb::NoFaceReason::Unspecified as i32
    }
}

pub fn identity(record: IdentityRecord) -> pb::Identity {
    pb::Identity {
        identity_id: record.identity_id,
        display_name: record.display_name,
        metadata: record.metadata.into_iter().collect(),
        face_ids: record.face_ids,
        created_at_unix_ms: record.created_at_unix_ms,
    }
}
