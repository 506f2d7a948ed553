//! What `vargid evaluate` asks the running server: an embedding per photo (`Embed`, the
//! server detects, aligns and embeds, with its own flip setting), and the 1:N searches
//! (`ImportGallery` of the enrolled templates into a temporary gallery, `Identify` by
//! template for every search, then `DropGallery`). Each photo is embedded once.

use std::path::PathBuf;
use tonic::Code;
use vargid_proto::v1 as pb;

use crate::connection::Client;
use crate::progress::Progress;
use crate::transfer::{self, MAX_TEMPLATES_PER_IMPORT};
use crate::{concurrent, photo, retry, ClientError};

/// What a photo gave: the embedding of its largest face, or why there is none.
#[derive(Debug, Clone)]
pub enum Acquired {
    Embedding(Vec<f32>),
    /// The largest face fell below the server's quality gate (the reason); it was
    /// embedded anyway from its landmarks, as vargface.evaluate takes the largest face.
    BelowGate(Vec<f32>, String),
    Failed(String),
}

impl Acquired {
    pub fn embedding(&self) -> Option<&[f32]> {
        match self {
            Acquired::Embedding(e) | Acquired::BelowGate(e, _) => Some(e),
            Acquired::Failed(_) => None,
        }
    }
}

fn rejection(face: &pb::Face) -> String {
    if face.rejection_detail.is_empty() {
        format!("face rejected ({:?})", face.rejection())
    } else {
        face.rejection_detail.clone()
    }
}

/// One Embed call of one image: its faces, or the server's refusal of the image.
async fn faces_of(
    client: &Client,
    image: pb::Image,
) -> Result<Result<Vec<pb::FaceEmbedding>, String>, ClientError> {
    let request = pb::EmbedRequest {
        images: vec![image],
    };
    match retry::while_shedding(|| {
        let (mut client, request) = (client.clone(), request.clone());
        async move { client.embed(request).await }
    })
    .await
    {
        Ok(r) => Ok(Ok(r
            .into_inner()
            .images
            .into_iter()
            .next()
            .map(|i| i.faces)
            .unwrap_or_default())),
        // The photo itself is bad (undecodable, too large): a failure of this photo.
        Err(s) if s.code() == Code::InvalidArgument => Ok(Err(s.message().to_string())),
        Err(s) => Err(ClientError::call("Embed")(s)),
    }
}

async fn embed_one(
    client: Client,
    path: PathBuf,
    respect_gate: bool,
) -> Result<Acquired, ClientError> {
    let image = photo::read(&path)?;
    let faces = match faces_of(&client, image.clone()).await? {
        Ok(faces) => faces,
        Err(refused) => return Ok(Acquired::Failed(refused)),
    };
    let area = |f: &pb::FaceEmbedding| {
        let b = f.face.as_ref().and_then(|f| f.r#box).unwrap_or_default();
        b.width * b.height
    };
    // The largest face, as vargface.evaluate takes it.
    let Some(largest) = faces.into_iter().max_by(|a, b| area(a).total_cmp(&area(b))) else {
        return Ok(Acquired::Failed("no face found".into()));
    };
    if !largest.embedding.is_empty() {
        return Ok(Acquired::Embedding(largest.embedding));
    }
    let face = largest.face.unwrap_or_default();
    let reason = rejection(&face);
    let Some(landmarks) = face.landmarks.filter(|_| !respect_gate) else {
        return Ok(Acquired::Failed(reason));
    };
    // Again with the face's landmarks: the server aligns them without the gate.
    let again = pb::Image {
        location: pb::FaceLocation::Landmarks as i32,
        landmarks: Some(landmarks),
        ..image
    };
    let embedding = match faces_of(&client, again).await? {
        Ok(faces) => faces
            .into_iter()
            .next()
            .map(|f| f.embedding)
            .unwrap_or_default(),
        Err(refused) => return Ok(Acquired::Failed(refused)),
    };
    if embedding.is_empty() {
        return Ok(Acquired::Failed(reason));
    }
    Ok(Acquired::BelowGate(embedding, reason))
}

/// Embeds every photo, `concurrency` calls in flight, in the order given.
pub async fn embed_all(
    client: &Client,
    photos: &[PathBuf],
    concurrency: usize,
    respect_gate: bool,
) -> Result<Vec<Acquired>, ClientError> {
    let mut progress = Progress::new("evaluate", "photos", photos.len());
    let acquired = concurrent::in_order(
        photos,
        concurrency,
        |path| embed_one(client.clone(), path.clone(), respect_gate),
        |n| progress.done(n),
    )
    .await?;
    progress.finish();
    Ok(acquired)
}

/// A gallery that exists for one evaluation: created empty, dropped afterwards.
pub struct TemporaryGallery {
    pub name: String,
    pub model: pb::ModelTag,
}

impl TemporaryGallery {
    pub async fn create(client: &mut Client, model: pb::ModelTag) -> Result<Self, ClientError> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let name = format!("evaluate-{}-{stamp}", std::process::id());
        client
            .create_gallery(pb::CreateGalleryRequest {
                name: name.clone(),
                // Exact search: the figures are the model's, not an index's.
                index: "flat".into(),
                ..Default::default()
            })
            .await
            .map_err(ClientError::call("CreateGallery"))?;
        Ok(Self { name, model })
    }

    /// Enrolls (identity id, template) pairs, one identity each.
    pub async fn import(
        &self,
        client: &mut Client,
        templates: Vec<(String, Vec<f32>)>,
    ) -> Result<(), ClientError> {
        let mut identities: Vec<pb::ExportedIdentity> = templates
            .into_iter()
            .map(|(id, embedding)| pb::ExportedIdentity {
                identity: Some(pb::Identity {
                    identity_id: id.clone(),
                    display_name: id,
                    ..Default::default()
                }),
                templates: vec![pb::Template {
                    face_id: 0,
                    embedding,
                }],
            })
            .collect();
        while !identities.is_empty() {
            let take = identities.len().min(MAX_TEMPLATES_PER_IMPORT);
            let mut batch: Vec<_> = identities.drain(..take).collect();
            transfer::send(client, &self.name, &self.model, &mut batch).await?;
        }
        Ok(())
    }

    /// The best `top_k` candidates (identity, score) for each probe, in order.
    pub async fn search_all(
        &self,
        client: &Client,
        probes: Vec<Vec<f32>>,
        top_k: u32,
        concurrency: usize,
    ) -> Result<Vec<Vec<(String, f32)>>, ClientError> {
        let replies = concurrent::in_order(
            probes,
            concurrency,
            |embedding| {
                let request = pb::IdentifyRequest {
                    top_k,
                    gallery: self.name.clone(),
                    probe_template: Some(pb::ProbeTemplate {
                        model: Some(self.model.clone()),
                        embedding,
                    }),
                    ..Default::default()
                };
                let client = client.clone();
                async move {
                    retry::while_shedding(|| {
                        let (mut client, request) = (client.clone(), request.clone());
                        async move { client.identify(request).await }
                    })
                    .await
                    .map_err(ClientError::call("Identify"))
                }
            },
            |_| {},
        )
        .await?;
        Ok(replies
            .into_iter()
            .map(|reply| {
                reply
                    .into_inner()
                    .faces
                    .into_iter()
                    .next()
                    .map(|f| {
                        f.candidates
                            .into_iter()
                            .map(|c| (c.identity_id, c.score))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect())
    }

    pub async fn drop_gallery(self, client: &mut Client) -> Result<(), ClientError> {
        client
            .drop_gallery(pb::DropGalleryRequest { name: self.name })
            .await
            .map_err(ClientError::call("DropGallery"))?;
        Ok(())
    }
}
