//! Proto messages to domain values (validating as it goes) and back.

use std::collections::BTreeMap;

use tonic::Status;
use vargid_index::IdentityRecord;
use vargid_proto::v1 as pb;

use crate::faces::{FaceBox, FaceResult, ImageInput, ImageSource, Location, Rejection};
use crate::galleries::LiveGallery;
use vargid_store::{FaceRow, IdentityRow, ImportedIdentity, ModelTag};

const MAX_IDENTITY_ID_BYTES: usize = 256;

/// A request image; `field` names it in error messages.
pub fn image(field: &str, image: Option<pb::Image>) -> Result<ImageInput, Status> {
    let image = image.ok_or_else(|| Status::invalid_argument(format!("{field}: required")))?;
    let location = match pb::FaceLocation::try_from(image.location) {
        Ok(pb::FaceLocation::Auto) => Location::Auto,
        Ok(pb::FaceLocation::Aligned) => Location::Aligned,
        Ok(pb::FaceLocation::Detect) => Location::Detect,
        Ok(pb::FaceLocation::Landmarks) => Location::Landmarks(landmarks(
            &format!("{field}.landmarks"),
            image.landmarks.as_ref(),
        )?),
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "{field}.location: unknown value {}",
                image.location
            )))
        }
    };
    let source = match image.source {
        Some(pb::image::Source::Encoded(bytes)) => ImageSource::Encoded(bytes),
        Some(pb::image::Source::Raw(raw)) => ImageSource::Raw {
            width: raw.width,
            height: raw.height,
            rgb: raw.rgb,
        },
        None => {
            return Err(Status::invalid_argument(format!(
                "{field}: set either `encoded` (JPEG, PNG, WebP bytes) or `raw` (RGB pixels)"
            )))
        }
    };
    Ok(ImageInput { source, location })
}

/// The five landmarks of FACE_LOCATION_LANDMARKS: finite pixel coordinates.
fn landmarks(
    field: &str,
    given: Option<&pb::Landmarks>,
) -> Result<vargid_model::Landmarks, Status> {
    let points = given.map(|l| l.points.as_slice()).unwrap_or_default();
    if points.len() != 5 {
        return Err(Status::invalid_argument(format!(
            "{field}: FACE_LOCATION_LANDMARKS needs exactly 5 points (right eye, left eye, \
             nose tip, right and left mouth corner), got {}",
            points.len()
        )));
    }
    let mut out = [[0.0f32; 2]; 5];
    for (i, (p, o)) in points.iter().zip(&mut out).enumerate() {
        if !(p.x.is_finite() && p.y.is_finite()) {
            return Err(Status::invalid_argument(format!(
                "{field}.points[{i}]: coordinates must be finite numbers"
            )));
        }
        *o = [p.x, p.y];
    }
    Ok(out)
}

/// Repeated request images, between 1 and `max`.
pub fn images(field: &str, images: Vec<pb::Image>, max: usize) -> Result<Vec<ImageInput>, Status> {
    if images.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field}: at least one image is required"
        )));
    }
    if images.len() > max {
        return Err(Status::invalid_argument(format!(
            "{field}: {} images, at most {max} per request",
            images.len()
        )));
    }
    images
        .into_iter()
        .enumerate()
        .map(|(i, img)| image(&format!("{field}[{i}]"), Some(img)))
        .collect()
}

/// A caller-chosen identity id: 1 to 256 bytes, no control characters.
pub fn identity_id<'a>(field: &str, id: &'a str) -> Result<&'a str, Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field}: must not be empty"
        )));
    }
    if id.len() > MAX_IDENTITY_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "{field}: {} bytes, at most {MAX_IDENTITY_ID_BYTES}",
            id.len()
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "{field}: must not contain control characters"
        )));
    }
    Ok(id)
}

/// A threshold override, or the configured default.
pub fn threshold(field: &str, value: Option<f32>, default: f32) -> Result<f32, Status> {
    match value {
        None => Ok(default),
        Some(t) if (-1.0..=1.0).contains(&t) => Ok(t),
        Some(t) => Err(Status::invalid_argument(format!(
            "{field}: {t} is not a cosine similarity in [-1, 1]"
        ))),
    }
}

/// Page tokens are the hex of the last identity id of the previous page.
pub fn page_token(token: &str) -> Result<Option<String>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Status::invalid_argument("page_token: not a token this server issued");
    if !token.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(token.get(i..i + 2).ok_or_else(invalid)?, 16).map_err(|_| invalid())
        })
        .collect::<Result<Vec<u8>, Status>>()?;
    String::from_utf8(bytes).map(Some).map_err(|_| invalid())
}

pub fn next_page_token(after: Option<String>) -> String {
    after
        .map(|id| id.bytes().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

/// A page size: 0 means 100, at most 1000.
pub fn page_size(requested: u32) -> Result<usize, Status> {
    match requested {
        0 => Ok(100),
        n if n > 1000 => Err(Status::invalid_argument(format!(
            "page_size: {n}, at most 1000"
        ))),
        n => Ok(n as usize),
    }
}

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

/// Imported identities, checked: valid ids, templates of `dim` finite values, at most
/// `max_templates` in all.
pub fn imported_identities(
    identities: Vec<pb::ExportedIdentity>,
    dim: usize,
    max_templates: usize,
) -> Result<Vec<ImportedIdentity>, Status> {
    let total: usize = identities.iter().map(|i| i.templates.len()).sum();
    if total > max_templates {
        return Err(Status::invalid_argument(format!(
            "identities: {total} templates, at most {max_templates} per request"
        )));
    }
    identities
        .into_iter()
        .enumerate()
        .map(|(i, exported)| {
            let field = format!("identities[{i}]");
            let identity = exported
                .identity
                .ok_or_else(|| Status::invalid_argument(format!("{field}.identity: required")))?;
            identity_id(
                &format!("{field}.identity.identity_id"),
                &identity.identity_id,
            )?;
            let templates = exported
                .templates
                .into_iter()
                .enumerate()
                .map(|(j, t)| {
                    if t.embedding.len() != dim || !t.embedding.iter().all(|x| x.is_finite()) {
                        return Err(Status::invalid_argument(format!(
                            "{field}.templates[{j}]: need {dim} finite values, got {}",
                            t.embedding.len()
                        )));
                    }
                    Ok(t.embedding)
                })
                .collect::<Result<Vec<_>, Status>>()?;
            Ok((
                IdentityRow {
                    identity_id: identity.identity_id,
                    display_name: identity.display_name,
                    metadata: identity.metadata.into_iter().collect(),
                    created_at_unix_ms: identity.created_at_unix_ms,
                },
                templates,
            ))
        })
        .collect()
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

pub fn metadata(map: std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip() {
        let token = next_page_token(Some("José #1".into()));
        assert_eq!(page_token(&token).unwrap().as_deref(), Some("José #1"));
        assert_eq!(page_token("").unwrap(), None);
        assert!(page_token("zz").is_err());
        assert!(page_token("abc").is_err());
    }

    #[test]
    fn identity_ids_are_checked() {
        assert!(identity_id("identity_id", "alice").is_ok());
        assert!(identity_id("identity_id", "").is_err());
        assert!(identity_id("identity_id", "a\nb").is_err());
        assert!(identity_id("identity_id", &"x".repeat(257)).is_err());
    }
}
