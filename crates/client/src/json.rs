//! The API's answers as JSON for `--json` output and export files (the generated
//! protobuf types carry no serde derives).

use serde_json::{json, Value};
use vargid_proto::v1 as pb;

pub fn model(m: &pb::ModelTag) -> Value {
    json!({"name": m.name, "version": m.version, "embedding_size": m.embedding_size})
}

pub fn model_from(v: &Value) -> Option<pb::ModelTag> {
    Some(pb::ModelTag {
        name: v.get("name")?.as_str()?.to_string(),
        version: v.get("version")?.as_str()?.to_string(),
        embedding_size: u32::try_from(v.get("embedding_size")?.as_u64()?).ok()?,
    })
}

pub fn face(f: &pb::Face) -> Value {
    let b = f.r#box.unwrap_or_default();
    json!({
        "box": {"x": b.x, "y": b.y, "width": b.width, "height": b.height},
        "detector_score": f.detector_score,
        "rejection": rejection(f),
    })
}

/// The rejection in words, or null for a face that was used.
pub fn rejection(f: &pb::Face) -> Value {
    if f.rejection == pb::FaceRejection::None as i32 {
        Value::Null
    } else {
        Value::String(f.rejection_detail.clone())
    }
}

pub fn candidate(c: &pb::Candidate) -> Value {
    json!({
        "identity_id": c.identity_id,
        "display_name": c.display_name,
        "score": c.score,
        "is_match": c.is_match,
        "face_id": c.face_id,
    })
}

pub fn gallery(g: &pb::GalleryInfo) -> Value {
    let p = g.index_parameters.unwrap_or_default();
    json!({
        "name": g.name,
        "index": g.index,
        "match_threshold": g.match_threshold,
        "model": g.model.as_ref().map(model),
        "face_count": g.face_count,
        "identity_count": g.identity_count,
        "created_at_unix_ms": g.created_at_unix_ms,
        "hnsw_m": p.hnsw_m,
        "hnsw_ef_construction": p.hnsw_ef_construction,
        "hnsw_ef_search": p.hnsw_ef_search,
        "ivf_nlist": p.ivf_nlist,
        "ivf_nprobe": p.ivf_nprobe,
        "ivf_rerank": p.ivf_rerank,
    })
}

pub fn exported(e: &pb::ExportedIdentity) -> Value {
    let id = e.identity.clone().unwrap_or_default();
    json!({
        "identity_id": id.identity_id,
        "display_name": id.display_name,
        "metadata": id.metadata,
        "created_at_unix_ms": id.created_at_unix_ms,
        "templates": e.templates.iter().map(|t| t.embedding.clone()).collect::<Vec<_>>(),
    })
}

pub fn exported_from(v: &Value) -> Option<pb::ExportedIdentity> {
    let metadata = v
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let templates = v
        .get("templates")?
        .as_array()?
        .iter()
        .map(|t| {
            let embedding = t
                .as_array()?
                .iter()
                .map(|x| x.as_f64().map(|x| x as f32))
                .collect::<Option<Vec<f32>>>()?;
            Some(pb::Template {
                face_id: 0,
                embedding,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(pb::ExportedIdentity {
        identity: Some(pb::Identity {
            identity_id: v.get("identity_id")?.as_str()?.to_string(),
            display_name: v
                .get("display_name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            metadata,
            face_ids: vec![],
            created_at_unix_ms: v
                .get("created_at_unix_ms")
                .and_then(Value::as_i64)
                .unwrap_or_default(),
        }),
        templates,
    })
}
