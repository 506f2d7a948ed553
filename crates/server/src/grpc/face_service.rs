//! `vargid.v1.FaceService`: each handler validates, runs the face pipeline and the
//! gallery, and converts the answer. Every call is counted and timed by method and code.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_server::FaceService;
use vargid_store::{Applied, Change};

use super::{convert, status};
use crate::auth::{Authenticator, Caller, Role};
use crate::clock::now_unix_ms;
use crate::faces::{FacePipeline, FaceResult};
use crate::galleries::{Galleries, LiveGallery};
use crate::metrics;

/// Settings the handlers need.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    pub max_images_per_request: usize,
    pub max_top_k: usize,
    /// Default index and threshold of galleries created without them.
    pub default_index: String,
    pub match_threshold: f32,
}

/// Most templates one ImportGallery request may carry.
const MAX_IMPORT_TEMPLATES: usize = 10_000;

pub struct FaceServiceImpl {
    pipeline: FacePipeline,
    galleries: Arc<Galleries>,
    limits: ServiceLimits,
    auth: Arc<Authenticator>,
}

impl FaceServiceImpl {
    pub fn new(
        pipeline: FacePipeline,
        galleries: Arc<Galleries>,
        limits: ServiceLimits,
        auth: Arc<Authenticator>,
    ) -> Self {
        let service = Self {
            pipeline,
            galleries,
            limits,
            auth,
        };
        service.record_gallery_size();
        service
    }

    /// The authenticated caller, if its key has `role` (see `auth` for the codes).
    fn admit<T>(&self, request: &Request<T>, method: &str, role: Role) -> Result<Caller, Status> {
        let caller = self.auth.authenticate(request.metadata())?;
        caller.require(method, role)?;
        Ok(caller)
    }

    fn gallery(&self, name: &str) -> Result<Arc<LiveGallery>, Status> {
        self.galleries.get(name).map_err(status::gallery)
    }

    /// The embedding of the single usable face of an image (see [`single_face`]).
    async fn one_face(
        &self,
        field: &str,
        image: Option<pb::Image>,
        use_largest: bool,
    ) -> Result<Vec<f32>, Status> {
        let input = convert::image(field, image)?;
        let faces = self
            .pipeline
            .embed(vec![input])
            .await
            .map_err(|e| status::pipeline(e, |_| field.to_string()))?;
        single_face(
            field,
            faces.into_iter().next().unwrap_or_default(),
            use_largest,
        )
    }

    /// Templates and identities over the galleries `counted` accepts (by name).
    fn totals(&self, counted: impl Fn(&str) -> bool) -> (usize, usize) {
        self.galleries
            .list()
            .iter()
            .filter(|g| counted(&g.record.name))
            .fold((0, 0), |(f, i), g| {
                (f + g.index.face_count(), i + g.index.identity_count())
            })
    }

    fn record_gallery_size(&self) {
        let (faces, identities) = self.totals(|_| true);
        metrics::gallery_size(faces, identities);
    }
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

#[tonic::async_trait]
impl FaceService for FaceServiceImpl {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        observed("Enroll", async {
            let caller = self.admit(&request, "Enroll", Role::Write)?;
            let req = request.into_inner();
            caller.gallery(&req.gallery)?;
            let identity_id = convert::identity_id("identity_id", &req.identity_id)?;
            // Refuse an unknown gallery before spending inference.
            let gallery = self.gallery(&req.gallery)?;
            let inputs = convert::images("images", req.images, self.limits.max_images_per_request)?;
            let per_image = self
                .pipeline
                .embed(inputs)
                .await
                .map_err(|e| status::pipeline(e, |i| format!("images[{i}]")))?;
            let embeddings = per_image
                .into_iter()
                .enumerate()
                .map(|(i, faces)| single_face(&format!("images[{i}]"), faces, req.use_largest_face))
                .collect::<Result<Vec<_>, Status>>()?;
            let applied = self
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
                return Err(Status::internal("the store answered an enrollment with another change"));
            };
            self.record_gallery_size();
            tracing::info!(gallery = %gallery.record.name, identity_id, faces = faces.len(), created, "enrolled");
            tracing::info!(target: "vargid::audit", action = "enroll", key_id = caller.name(), gallery = %gallery.record.name, identity_id, face_ids = ?faces.iter().map(|f| f.face_id).collect::<Vec<_>>());
            Ok(pb::EnrollResponse {
                identity_id: identity_id.to_string(),
                created,
                face_ids: faces.iter().map(|f| f.face_id).collect(),
                face_count: u32::try_from(face_count).unwrap_or(u32::MAX),
            })
        })
        .await
    }

    async fn identify(
        &self,
        request: Request<pb::IdentifyRequest>,
    ) -> Result<Response<pb::IdentifyResponse>, Status> {
        observed("Identify", async {
            let caller = self.admit(&request, "Identify", Role::Read)?;
            let req = request.into_inner();
            caller.gallery(&req.gallery)?;
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
            let gallery = self.gallery(&req.gallery)?;
            let threshold =
                convert::threshold("threshold", req.threshold, gallery.record.match_threshold)?;
            let input = convert::image("image", req.image)?;
            let faces = self
                .pipeline
                .embed(vec![input])
                .await
                .map_err(|e| status::pipeline(e, |_| "image".to_string()))?
                .into_iter()
                .next()
                .unwrap_or_default();
            let no_face_reason = convert::no_face_reason(&faces);
            let mut out = Vec::with_capacity(faces.len());
            for found in &faces {
                let candidates = match &found.embedding {
                    Ok(embedding) => gallery
                        .index
                        .identify(embedding, top_k)
                        .map_err(status::index)?
                        .into_iter()
                        .map(|c| pb::Candidate {
                            is_match: c.score >= threshold,
                            identity_id: c.identity_id,
                            display_name: c.display_name,
                            score: c.score,
                            face_id: c.face_id,
                        })
                        .collect(),
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
        })
        .await
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        observed("Verify", async {
            let caller = self.admit(&request, "Verify", Role::Read)?;
            let req = request.into_inner();
            caller.gallery(&req.gallery)?;
            let gallery = self.gallery(&req.gallery)?;
            let threshold =
                convert::threshold("threshold", req.threshold, gallery.record.match_threshold)?;
            let score = match req.reference {
                Some(pb::verify_request::Reference::IdentityId(id)) => {
                    let id = convert::identity_id("identity_id", &id)?;
                    // Refuse an unknown identity before spending inference on the probe.
                    if gallery.index.get(id).is_none() {
                        return Err(Status::not_found(format!("identity {id:?} not found")));
                    }
                    let probe = self
                        .one_face("probe", req.probe, req.use_largest_face)
                        .await?;
                    gallery.index.verify(&probe, id).map_err(status::index)?.0
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
        })
        .await
    }

    async fn embed(
        &self,
        request: Request<pb::EmbedRequest>,
    ) -> Result<Response<pb::EmbedResponse>, Status> {
        observed("Embed", async {
            self.admit(&request, "Embed", Role::Read)?;
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
        })
        .await
    }

    async fn delete_identity(
        &self,
        request: Request<pb::DeleteIdentityRequest>,
    ) -> Result<Response<pb::DeleteIdentityResponse>, Status> {
        observed("DeleteIdentity", async {
            let caller = self.admit(&request, "DeleteIdentity", Role::Write)?;
            let req = request.into_inner();
            caller.gallery(&req.gallery)?;
            let id = convert::identity_id("identity_id", &req.identity_id)?;
            let gallery = self.gallery(&req.gallery)?;
            let applied = self
                .galleries
                .apply(Change::DeleteIdentity {
                    gallery: gallery.record.name.clone(),
                    identity_id: id.to_string(),
                })
                .await
                .map_err(status::gallery)?;
            let deleted = match applied {
                Applied::Deleted { face_ids, .. } => face_ids.len(),
                _ => return Err(Status::internal("the store answered a deletion with another change")),
            };
            self.record_gallery_size();
            tracing::info!(gallery = %gallery.record.name, identity_id = id, faces = deleted, "deleted");
            tracing::info!(target: "vargid::audit", action = "delete", key_id = caller.name(), gallery = %gallery.record.name, identity_id = id, faces = deleted);
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
            let caller = self.admit(&request, "GetIdentity", Role::Read)?;
            let req = request.into_inner();
            caller.gallery(&req.gallery)?;
            let id = convert::identity_id("identity_id", &req.identity_id)?;
            self.gallery(&req.gallery)?
                .index
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
            let caller = self.admit(&request, "ListIdentities", Role::Read)?;
            let req = request.into_inner();
            caller.gallery(&req.gallery)?;
            let page_size = convert::page_size(req.page_size)?;
            let after = convert::page_token(&req.page_token)?;
            let page = self
                .gallery(&req.gallery)?
                .index
                .list(after.as_deref(), page_size);
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
        request: Request<pb::GetServiceInfoRequest>,
    ) -> Result<Response<pb::ServiceInfo>, Status> {
        observed("GetServiceInfo", async {
            let caller = self.admit(&request, "GetServiceInfo", Role::Read)?;
            let info = self.pipeline.engine().model_info();
            // Only the galleries this key may see are counted.
            let (faces, identities) = self.totals(|name| caller.sees(name));
            Ok(pb::ServiceInfo {
                model_name: info.name.clone(),
                model_version: info.version.clone(),
                embedding_size: u32::try_from(info.embedding_size).unwrap_or(u32::MAX),
                execution_provider: info.execution_provider.to_string(),
                gallery_size: faces as u64,
                identity_count: identities as u64,
                match_threshold: self.limits.match_threshold,
                server_version: env!("CARGO_PKG_VERSION").to_string(),
                max_batch_size: u32::try_from(self.pipeline.engine().max_batch_size())
                    .unwrap_or(u32::MAX),
            })
        })
        .await
    }

    async fn create_gallery(
        &self,
        request: Request<pb::CreateGalleryRequest>,
    ) -> Result<Response<pb::GalleryInfo>, Status> {
        observed("CreateGallery", async {
            let caller = self.admit(&request, "CreateGallery", Role::Admin)?;
            let req = request.into_inner();
            caller.gallery(&req.name)?;
            let index = if req.index.is_empty() {
                self.limits.default_index.clone()
            } else {
                req.index
            };
            let threshold = convert::threshold(
                "match_threshold",
                req.match_threshold,
                self.limits.match_threshold,
            )?;
            let live = self
                .galleries
                .create(&req.name, &index, threshold)
                .await
                .map_err(status::gallery)?;
            tracing::info!(gallery = %req.name, index = %index, "gallery created");
            Ok(convert::gallery_info(&live))
        })
        .await
    }

    async fn list_galleries(
        &self,
        request: Request<pb::ListGalleriesRequest>,
    ) -> Result<Response<pb::ListGalleriesResponse>, Status> {
        observed("ListGalleries", async {
            let caller = self.admit(&request, "ListGalleries", Role::Read)?;
            Ok(pb::ListGalleriesResponse {
                galleries: self
                    .galleries
                    .list()
                    .iter()
                    .filter(|g| caller.sees(&g.record.name))
                    .map(|g| convert::gallery_info(g))
                    .collect(),
            })
        })
        .await
    }

    async fn drop_gallery(
        &self,
        request: Request<pb::DropGalleryRequest>,
    ) -> Result<Response<pb::DropGalleryResponse>, Status> {
        observed("DropGallery", async {
            let caller = self.admit(&request, "DropGallery", Role::Admin)?;
            let req = request.into_inner();
            caller.gallery(&req.name)?;
            self.galleries
                .drop_gallery(&req.name)
                .await
                .map_err(status::gallery)?;
            self.record_gallery_size();
            tracing::info!(gallery = %req.name, "gallery dropped");
            Ok(pb::DropGalleryResponse {})
        })
        .await
    }

    async fn export_gallery(
        &self,
        request: Request<pb::ExportGalleryRequest>,
    ) -> Result<Response<pb::ExportGalleryResponse>, Status> {
        observed("ExportGallery", async {
            let caller = self.admit(&request, "ExportGallery", Role::Admin)?;
            let req = request.into_inner();
            caller.gallery(&req.gallery)?;
            let page_size = convert::page_size(req.page_size)?;
            let after = convert::page_token(&req.page_token)?;
            let gallery = self.gallery(&req.gallery)?;
            // One more than asked tells whether another page follows.
            let mut rows = self
                .galleries
                .store()
                .export_page(&gallery.record.name, after.as_deref(), page_size + 1)
                .map_err(status::store)?;
            let more = rows.len() > page_size;
            rows.truncate(page_size);
            let next = more
                .then(|| rows.last().map(|(i, _)| i.identity_id.clone()))
                .flatten();
            Ok(pb::ExportGalleryResponse {
                model: Some(convert::model_tag(&gallery.record.model)),
                identities: rows.into_iter().map(convert::exported_identity).collect(),
                next_page_token: convert::next_page_token(next),
            })
        })
        .await
    }

    async fn import_gallery(
        &self,
        request: Request<pb::ImportGalleryRequest>,
    ) -> Result<Response<pb::ImportGalleryResponse>, Status> {
        observed("ImportGallery", async {
            let caller = self.admit(&request, "ImportGallery", Role::Admin)?;
            let req = request.into_inner();
            caller.gallery(&req.gallery)?;
            let gallery = self.gallery(&req.gallery)?;
            let model = req.model.ok_or_else(|| {
                Status::invalid_argument("model: required (as ExportGalleryResponse.model)")
            })?;
            let stored = &gallery.record.model;
            if model.name != stored.name
                || model.version != stored.version
                || model.embedding_size as usize != stored.embedding_size
            {
                return Err(Status::failed_precondition(format!(
                    "model: templates of {} {} ({}-d) cannot join gallery {:?} of {} {} ({}-d)",
                    model.name,
                    model.version,
                    model.embedding_size,
                    gallery.record.name,
                    stored.name,
                    stored.version,
                    stored.embedding_size
                )));
            }
            let identities = convert::imported_identities(
                req.identities,
                stored.embedding_size,
                MAX_IMPORT_TEMPLATES,
            )?;
            let faces: usize = identities.iter().map(|(_, t)| t.len()).sum();
            let count = identities.len();
            self.galleries
                .apply(Change::Import {
                    gallery: gallery.record.name.clone(),
                    identities,
                })
                .await
                .map_err(status::gallery)?;
            self.record_gallery_size();
            tracing::info!(gallery = %gallery.record.name, identities = count, faces, "imported");
            Ok(pb::ImportGalleryResponse {
                identities: count as u64,
                faces: faces as u64,
            })
        })
        .await
    }

    async fn compact_storage(
        &self,
        request: Request<pb::CompactStorageRequest>,
    ) -> Result<Response<pb::CompactStorageResponse>, Status> {
        observed("CompactStorage", async {
            let caller = self.admit(&request, "CompactStorage", Role::Admin)?;
            self.galleries.compact().await.map_err(status::gallery)?;
            tracing::info!(target: "vargid::audit", action = "compact", key_id = caller.name());
            Ok(pb::CompactStorageResponse {})
        })
        .await
    }
}
