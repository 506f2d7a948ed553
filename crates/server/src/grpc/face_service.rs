//! `vargid.v1.FaceService`: each handler validates, runs the face pipeline and the
//! gallery, and converts the answer. Every call is counted and timed by method and code.

use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tonic::{Request, Response, Status};
use vargid_index::Gallery;
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_server::FaceService;

use super::{convert, status};
use crate::faces::{EmbeddedFace, FacePipeline};
use crate::metrics;

/// Settings the handlers need.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    pub max_images_per_request: usize,
    pub max_top_k: usize,
    pub match_threshold: f32,
}

pub struct FaceServiceImpl {
    pipeline: FacePipeline,
    gallery: Arc<Gallery>,
    limits: ServiceLimits,
}

impl FaceServiceImpl {
    pub fn new(pipeline: FacePipeline, gallery: Arc<Gallery>, limits: ServiceLimits) -> Self {
        metrics::gallery_size(gallery.face_count(), gallery.identity_count());
        Self {
            pipeline,
            gallery,
            limits,
        }
    }

    /// The single face of an image that must hold exactly one.
    async fn one_face(
        &self,
        field: &str,
        image: Option<pb::Image>,
    ) -> Result<EmbeddedFace, Status> {
        let input = convert::image(field, image)?;
        let faces = self
            .pipeline
            .embed(vec![input])
            .await
            .map_err(|e| status::pipeline(e, |_| field.to_string()))?;
        exactly_one(field, faces.into_iter().next().unwrap_or_default())
    }

    fn record_gallery_size(&self) {
        metrics::gallery_size(self.gallery.face_count(), self.gallery.identity_count());
    }
}

fn exactly_one(field: &str, mut faces: Vec<EmbeddedFace>) -> Result<EmbeddedFace, Status> {
    match faces.len() {
        1 => Ok(faces.remove(0)),
        0 => Err(Status::invalid_argument(format!("{field}: no face found"))),
        n => Err(Status::invalid_argument(format!(
            "{field}: {n} faces found, exactly one is required"
        ))),
    }
}

/// Runs a handler, recording its count and latency by method and status code.
async fn observed<T>(
    method: &'static str,
    handler: impl Future<Output = Result<T, Status>>,
) -> Result<Response<T>, Status> {
    let started = Instant::now();
    let result = handler.await;
    let code = result
        .as_ref()
        .map_or_else(Status::code, |_| tonic::Code::Ok);
    metrics::request(method, code, started.elapsed());
    if let Err(status) = &result {
        tracing::debug!(method, code = ?status.code(), message = status.message(), "request refused");
    }
    result.map(Response::new)
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[tonic::async_trait]
impl FaceService for FaceServiceImpl {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        observed("Enroll", async {
            let req = request.into_inner();
            let identity_id = convert::identity_id("identity_id", &req.identity_id)?;
            let inputs = convert::images("images", req.images, self.limits.max_images_per_request)?;
            let per_image = self
                .pipeline
                .embed(inputs)
                .await
                .map_err(|e| status::pipeline(e, |i| format!("images[{i}]")))?;
            let embeddings = per_image
                .into_iter()
                .enumerate()
                .map(|(i, faces)| exactly_one(&format!("images[{i}]"), faces).map(|f| f.embedding))
                .collect::<Result<Vec<_>, Status>>()?;
            let display_name = (!req.display_name.is_empty()).then_some(req.display_name.as_str());
            let outcome = self
                .gallery
                .enroll(
                    identity_id,
                    display_name,
                    convert::metadata(req.metadata),
                    embeddings,
                    now_unix_ms(),
                )
                .map_err(status::index)?;
            self.record_gallery_size();
            tracing::info!(
                identity_id,
                faces = outcome.face_ids.len(),
                created = outcome.created,
                "enrolled"
            );
            Ok(pb::EnrollResponse {
                identity_id: identity_id.to_string(),
                created: outcome.created,
                face_ids: outcome.face_ids,
                face_count: u32::try_from(outcome.face_count).unwrap_or(u32::MAX),
            })
        })
        .await
    }

    async fn identify(
        &self,
        request: Request<pb::IdentifyRequest>,
    ) -> Result<Response<pb::IdentifyResponse>, Status> {
        observed("Identify", async {
            let req = request.into_inner();
            let top_k = match req.top_k as usize {
                0 => 1,
                k if k > self.limits.max_top_k => {
                    return Err(Status::invalid_argument(format!(
                        "top_k: {k}, at most {}",
                        self.limits.max_top_k
                    )))
                }
                k => k,
            };
            let threshold =
                convert::threshold("threshold", req.threshold, self.limits.match_threshold)?;
            let input = convert::image("image", req.image)?;
            let faces = self
                .pipeline
                .embed(vec![input])
                .await
                .map_err(|e| status::pipeline(e, |_| "image".to_string()))?
                .into_iter()
                .next()
                .unwrap_or_default();
            let mut out = Vec::with_capacity(faces.len());
            for found in faces {
                let candidates = self
                    .gallery
                    .identify(&found.embedding, top_k)
                    .map_err(status::index)?
                    .into_iter()
                    .map(|c| pb::Candidate {
                        is_match: c.score >= threshold,
                        identity_id: c.identity_id,
                        display_name: c.display_name,
                        score: c.score,
                        face_id: c.face_id,
                    })
                    .collect();
                out.push(pb::FaceIdentification {
                    face: Some(convert::face(&found.face)),
                    candidates,
                });
            }
            Ok(pb::IdentifyResponse {
                faces: out,
                threshold,
            })
        })
        .await
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        observed("Verify", async {
            let req = request.into_inner();
            let threshold =
                convert::threshold("threshold", req.threshold, self.limits.match_threshold)?;
            let score = match req.reference {
                Some(pb::verify_request::Reference::IdentityId(id)) => {
                    let id = convert::identity_id("identity_id", &id)?;
                    // Refuse an unknown identity before spending inference on the probe.
                    if self.gallery.get(id).is_none() {
                        return Err(Status::not_found(format!("identity {id:?} not found")));
                    }
                    let probe = self.one_face("probe", req.probe).await?;
                    self.gallery
                        .verify(&probe.embedding, id)
                        .map_err(status::index)?
                        .0
                }
                Some(pb::verify_request::Reference::Image(image)) => {
                    let inputs = vec![
                        convert::image("probe", req.probe)?,
                        convert::image("image", Some(image))?,
                    ];
                    let field = |i: usize| if i == 0 { "probe" } else { "image" }.to_string();
                    let mut both = self
                        .pipeline
                        .embed(inputs)
                        .await
                        .map_err(|e| status::pipeline(e, field))?
                        .into_iter();
                    let probe = exactly_one("probe", both.next().unwrap_or_default())?;
                    let other = exactly_one("image", both.next().unwrap_or_default())?;
                    probe
                        .embedding
                        .iter()
                        .zip(&other.embedding)
                        .map(|(a, b)| a * b)
                        .sum()
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
        })
        .await
    }

    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        observed("Embed", async {
            let req = request.into_inner();
            let inputs = convert::images("images", req.images, self.limits.max_images_per_request)?;
            let per_image = self
                .pipeline
                .embed(inputs)
                .await
                .map_err(|e| status::pipeline(e, |i| format!("images[{i}]")))?;
            let images = per_image
                .into_iter()
                .map(|faces| pb::ImageEmbeddings {
                    faces: faces
                        .into_iter()
                        .map(|f| pb::FaceEmbedding {
                            face: Some(convert::face(&f.face)),
                            embedding: f.embedding,
                        })
                        .collect(),
                })
                .collect();
            Ok(pb::EmbedResponse { images })
        })
        .await
    }

    async fn delete_identity(
        &self,
        request: Request<pb::DeleteIdentityRequest>,
    ) -> Result<Response<pb::DeleteIdentityResponse>, Status> {
        observed("DeleteIdentity", async {
            let req = request.into_inner();
            let id = convert::identity_id("identity_id", &req.identity_id)?;
            let deleted = self.gallery.delete(id).map_err(status::index)?;
            self.record_gallery_size();
            tracing::info!(identity_id = id, faces = deleted, "deleted");
            Ok(pb::DeleteIdentityResponse {
                deleted_faces: u32::try_from(deleted).unwrap_or(u32::MAX),
            })
        })
        .await
    }

    async fn get_identity(
        &self,
        request: Request<pb::GetIdentityRequest>,
    ) -> Result<Response<pb::Identity>, Status> {
        observed("GetIdentity", async {
            let req = request.into_inner();
            let id = convert::identity_id("identity_id", &req.identity_id)?;
            self.gallery
                .get(id)
                .map(convert::identity)
                .ok_or_else(|| Status::not_found(format!("identity {id:?} not found")))
        })
        .await
    }

    async fn list_identities(
        &self,
        request: Request<pb::ListIdentitiesRequest>,
    ) -> Result<Response<pb::ListIdentitiesResponse>, Status> {
        observed("ListIdentities", async {
            let req = request.into_inner();
            let page_size = match req.page_size {
                0 => 100,
                n if n > 1000 => {
                    return Err(Status::invalid_argument(format!(
                        "page_size: {n}, at most 1000"
                    )))
                }
                n => n as usize,
            };
            let after = convert::page_token(&req.page_token)?;
            let page = self.gallery.list(after.as_deref(), page_size);
            Ok(pb::ListIdentitiesResponse {
                identities: page.identities.into_iter().map(convert::identity).collect(),
                next_page_token: convert::next_page_token(page.next_after),
                total_size: page.total as u64,
            })
        })
        .await
    }

    async fn get_service_info(
        &self,
        _request: Request<pb::GetServiceInfoRequest>,
    ) -> Result<Response<pb::ServiceInfo>, Status> {
        observed("GetServiceInfo", async {
            let info = self.pipeline.engine().model_info();
            Ok(pb::ServiceInfo {
                model_name: info.name.clone(),
                model_version: info.version.clone(),
                embedding_size: u32::try_from(info.embedding_size).unwrap_or(u32::MAX),
                execution_provider: info.execution_provider.to_string(),
                gallery_size: self.gallery.face_count() as u64,
                identity_count: self.gallery.identity_count() as u64,
                match_threshold: self.limits.match_threshold,
                server_version: env!("CARGO_PKG_VERSION").to_string(),
                max_batch_size: u32::try_from(self.pipeline.engine().max_batch_size())
                    .unwrap_or(u32::MAX),
            })
        })
        .await
    }
}
