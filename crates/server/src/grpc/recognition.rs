//! The handlers that run the face pipeline: Enroll, Identify, Verify and Embed.

use std::time::Duration;

use tonic::{Request, Status};
use vargid_proto::v1 as pb;
use vargid_store::{Applied, Change};

use super::face_service::FaceServiceImpl;
use super::{convert, deadline, status};
use crate::auth::Role;
use crate::clock::now_unix_ms;
use crate::faces::FaceResult;
use crate::galleries::LiveGallery;

pub(super) async fn enroll(
    svc: &FaceServiceImpl,
    request: Request<pb::EnrollRequest>,
) -> Result<pb::EnrollResponse, Status> {
    let caller = svc.admit(&request, "Enroll", Role::Write)?;
    let deadline = deadline::remaining(request.metadata(), svc.limits.request_timeout);
    let req = request.into_inner();
    caller.gallery(&req.gallery)?;
    let identity_id = convert::identity_id("identity_id", &req.identity_id)?;
    // Refuse an unknown gallery before spending inference.
    let gallery = svc.gallery(&req.gallery)?;
    let inputs = convert::images("images", req.images, svc.limits.max_images_per_request)?;
    let per_image = svc
        .pipeline
        .embed(inputs, deadline)
        .await
        .map_err(|e| status::pipeline(e, |i| format!("images[{i}]")))?;
    let embeddings = per_image
        .into_iter()
        .enumerate()
        .map(|(i, faces)| single_face(&format!("images[{i}]"), faces, req.use_largest_face))
        .collect::<Result<Vec<_>, Status>>()?;
    let (sequence, applied) = svc
        .galleries
        .apply(Change::Enroll {
            gallery: gallery.record.name.clone(),
            identity_id: identity_id.to_string(),
            display_name: (!req.display_name.is_empty()).then_some(req.display_name),
            metadata: convert::metadata(req.metadata),
            embeddings,
            at_unix_ms: now_unix_ms(),
        })
        .await
        .map_err(status::gallery)?;
    let Applied::Enrolled {
        created,
        faces,
        face_count,
        ..
    } = applied
    else {
        return Err(Status::internal(
            "the store answered an enrollment with another change",
        ));
    };
    svc.record_gallery_size();
    tracing::info!(gallery = %gallery.record.name, identity_id, faces = faces.len(), created, "enrolled");
    tracing::info!(target: "vargid::audit", action = "enroll", key_id = caller.name(), gallery = %gallery.record.name, identity_id, face_ids = ?faces.iter().map(|f| f.face_id).collect::<Vec<_>>());
    Ok(pb::EnrollResponse {
        identity_id: identity_id.to_string(),
        created,
        face_ids: faces.iter().map(|f| f.face_id).collect(),
        face_count: u32::try_from(face_count).unwrap_or(u32::MAX),
        sequence: sequence.unwrap_or(0),
    })
}

pub(super) async fn identify(
    svc: &FaceServiceImpl,
    request: Request<pb::IdentifyRequest>,
) -> Result<pb::IdentifyResponse, Status> {
    let caller = svc.admit(&request, "Identify", Role::Read)?;
    let deadline = deadline::remaining(request.metadata(), svc.limits.request_timeout);
    let req = request.into_inner();
    caller.gallery(&req.gallery)?;
    let top_k = match req.top_k as usize {
        0 => 1,
        k if k > svc.limits.max_top_k => {
            return Err(Status::invalid_argument(format!(
                "top_k: {k}, at most {}",
                svc.limits.max_top_k
            )))
        }
        k => k,
    };
    // Wait at most nine tenths of the deadline, so the caller hears why.
    let patience = deadline.saturating_sub(deadline / 10);
    if req.min_sequence > 0
        && !svc
            .galleries
            .store()
            .wait_for(req.min_sequence, patience)
            .await
    {
        return Err(Status::unavailable(format!(
            "min_sequence: this replica has applied the gallery changes up to {}, not yet {}; \
             retry, or call the replica that wrote it",
            svc.galleries.store().applied_seq(),
            req.min_sequence
        )));
    }
    let gallery = svc.gallery(&req.gallery)?;
    let threshold = convert::threshold("threshold", req.threshold, gallery.record.match_threshold)?;
    if let Some(template) = req.probe_template {
        if req.image.is_some() {
            return Err(Status::invalid_argument(
                "image, probe_template: set one of them, not both",
            ));
        }
        let probe = convert::probe_template(
            "probe_template",
            template,
            &gallery.record.name,
            &gallery.record.model,
        )?;
        let candidates = candidates(&gallery, &probe, top_k, threshold)?;
        record_search(svc, &gallery, &candidates);
        return Ok(pb::IdentifyResponse {
            faces: vec![pb::FaceIdentification {
                face: None,
                candidates,
            }],
            threshold,
            no_face_reason: pb::NoFaceReason::Unspecified as i32,
        });
    }
    let input = convert::image("image", req.image)?;
    let faces = svc
        .pipeline
        .embed(vec![input], deadline)
        .await
        .map_err(|e| status::pipeline(e, |_| "image".to_string()))?
        .into_iter()
        .next()
        .unwrap_or_default();
    let no_face_reason = convert::no_face_reason(&faces);
    let mut out = Vec::with_capacity(faces.len());
    for found in &faces {
        let candidates = match &found.embedding {
            Ok(embedding) => {
                let candidates = candidates(&gallery, embedding, top_k, threshold)?;
                record_search(svc, &gallery, &candidates);
                candidates
            }
            Err(_) => Vec::new(),
        };
        out.push(pb::FaceIdentification {
            face: Some(convert::face_result(found)),
            candidates,
        });
    }
    Ok(pb::IdentifyResponse {
        faces: out,
        threshold,
        no_face_reason,
    })
}

/// The search's best score and decision, for the drift metrics and log.
fn record_search(svc: &FaceServiceImpl, gallery: &LiveGallery, candidates: &[pb::Candidate]) {
    let best = candidates.first();
    svc.match_scores.record(
        &gallery.record.name,
        best.map(|c| c.score),
        best.is_some_and(|c| c.is_match),
    );
}

/// The gallery's `top_k` best identities for `probe`, with match decisions.
fn candidates(
    gallery: &LiveGallery,
    probe: &[f32],
    top_k: usize,
    threshold: f32,
) -> Result<Vec<pb::Candidate>, Status> {
    Ok(gallery
        .index
        .identify(probe, top_k)
        .map_err(status::index)?
        .into_iter()
        .map(|c| pb::Candidate {
            is_match: c.score >= threshold,
            identity_id: c.identity_id,
            display_name: c.display_name,
            score: c.score,
            face_id: c.face_id,
        })
        .collect())
}

pub(super) async fn verify(
    svc: &FaceServiceImpl,
    request: Request<pb::VerifyRequest>,
) -> Result<pb::VerifyResponse, Status> {
    let caller = svc.admit(&request, "Verify", Role::Read)?;
    let deadline = deadline::remaining(request.metadata(), svc.limits.request_timeout);
    let req = request.into_inner();
    caller.gallery(&req.gallery)?;
    let gallery = svc.gallery(&req.gallery)?;
    let threshold = convert::threshold("threshold", req.threshold, gallery.record.match_threshold)?;
    let template = match (req.probe_template, &req.probe) {
        (Some(_), Some(_)) => {
            return Err(Status::invalid_argument(
                "probe, probe_template: set one of them, not both",
            ))
        }
        (Some(t), None) => Some(convert::probe_template(
            "probe_template",
            t,
            &gallery.record.name,
            &gallery.record.model,
        )?),
        (None, _) => None,
    };
    let score = match req.reference {
        Some(pb::verify_request::Reference::IdentityId(id)) => {
            let id = convert::identity_id("identity_id", &id)?;
            // Refuse an unknown identity before spending inference on the probe.
            if gallery.index.get(id).is_none() {
                return Err(Status::not_found(format!("identity {id:?} not found")));
            }
            let probe = match template {
                Some(t) => t,
                None => one_face(svc, "probe", req.probe, req.use_largest_face, deadline).await?,
            };
            gallery.index.verify(&probe, id).map_err(status::index)?.0
        }
        Some(pb::verify_request::Reference::Image(image)) if template.is_some() => {
            let other = one_face(svc, "image", Some(image), req.use_largest_face, deadline).await?;
            template
                .iter()
                .flatten()
                .zip(&other)
                .map(|(a, b)| a * b)
                .sum()
        }
        Some(pb::verify_request::Reference::Image(image)) => {
            let inputs = vec![
                convert::image("probe", req.probe)?,
                convert::image("image", Some(image))?,
            ];
            let field = |i: usize| if i == 0 { "probe" } else { "image" }.to_string();
            let mut both = svc
                .pipeline
                .embed(inputs, deadline)
                .await
                .map_err(|e| status::pipeline(e, field))?
                .into_iter();
            let largest = req.use_largest_face;
            let probe = single_face("probe", both.next().unwrap_or_default(), largest)?;
            let other = single_face("image", both.next().unwrap_or_default(), largest)?;
            probe.iter().zip(&other).map(|(a, b)| a * b).sum()
        }
        None => {
            return Err(Status::invalid_argument(
                "reference: set `identity_id` or `image` to compare the probe with",
            ))
        }
    };
    Ok(pb::VerifyResponse {
        score,
        is_match: score >= threshold,
        threshold,
    })
}

pub(super) async fn embed(
    svc: &FaceServiceImpl,
    request: Request<pb::EmbedRequest>,
) -> Result<pb::EmbedResponse, Status> {
    svc.admit(&request, "Embed", Role::Read)?;
    let deadline = deadline::remaining(request.metadata(), svc.limits.request_timeout);
    let req = request.into_inner();
    let inputs = convert::images("images", req.images, svc.limits.max_images_per_request)?;
    let per_image = svc
        .pipeline
        .embed(inputs, deadline)
        .await
        .map_err(|e| status::pipeline(e, |i| format!("images[{i}]")))?;
    let images = per_image
        .into_iter()
        .map(|faces| pb::ImageEmbeddings {
            no_face_reason: convert::no_face_reason(&faces),
            faces: faces
                .into_iter()
                .map(|f| pb::FaceEmbedding {
                    face: Some(convert::face_result(&f)),
                    embedding: f.embedding.unwrap_or_default(),
                })
                .collect(),
        })
        .collect();
    Ok(pb::EmbedResponse { images })
}

/// The embedding of the single usable face of an image (see [`single_face`]).
async fn one_face(
    svc: &FaceServiceImpl,
    field: &str,
    image: Option<pb::Image>,
    use_largest: bool,
    deadline: Duration,
) -> Result<Vec<f32>, Status> {
    let input = convert::image(field, image)?;
    let faces = svc
        .pipeline
        .embed(vec![input], deadline)
        .await
        .map_err(|e| status::pipeline(e, |_| field.to_string()))?;
    single_face(
        field,
        faces.into_iter().next().unwrap_or_default(),
        use_largest,
    )
}

/// The embedding of an image's one usable face, or of the largest if `use_largest`.
/// Otherwise INVALID_ARGUMENT saying what was found and what the caller can do.
fn single_face(field: &str, faces: Vec<FaceResult>, use_largest: bool) -> Result<Vec<f32>, Status> {
    let found = faces.len();
    let (usable, rejected): (Vec<_>, Vec<_>) = faces.into_iter().partition(|f| f.embedding.is_ok());
    if usable.is_empty() {
        return Err(Status::invalid_argument(match rejected.first() {
            None => format!("{field}: no face found in the image"),
            Some(FaceResult {
                embedding: Err(why),
                ..
            }) if found == 1 => format!("{field}: the face is not usable: {why}"),
            Some(_) => format!(
                "{field}: none of the {found} faces found is usable: {}",
                rejected
                    .iter()
                    .filter_map(|f| f.embedding.as_ref().err())
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }));
    }
    if usable.len() > 1 && !use_largest {
        return Err(Status::invalid_argument(format!(
            "{field}: {} usable faces found, exactly one is required: send a photo of one \
             person, a crop, or landmarks, or set use_largest_face",
            usable.len()
        )));
    }
    let largest = usable
        .into_iter()
        .max_by(|a, b| a.face.area().total_cmp(&b.face.area()));
    Ok(largest.and_then(|f| f.embedding.ok()).unwrap_or_default())
}
