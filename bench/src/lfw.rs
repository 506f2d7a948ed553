//! `vargid-bench lfw`: LFW View 2 through a running service. Every photo that
//! pairs.txt names is sent as it is (JPEG bytes) to `Embed`; the service detects,
//! aligns and embeds. The embeddings go to a JSON file that
//! `python -m vargface.evaluate --embeddings FILE` scores with the same code that
//! scores the model directly, so the two accuracies can be compared.
//!
//! The protocol choices match vargface.evaluate: the largest detected face (even
//! one the quality gate refuses: it is re-sent with its landmarks, which skips the
//! gate); the template centred in the photo when no face is found; and the
//! embedding summed with that of the horizontally mirrored aligned crop. The
//! service only aligns what it is sent, so the client sends the mirrored photo with
//! landmarks chosen to make the service's alignment exactly the mirror of the
//! first crop (see `mirror_landmarks`). `--no-client-flip` sends each photo once
//! and keeps the service's embedding as it is: the figure a caller gets, with or
//! without the service's own `model.flip_test`.
//!
//!     vargid-bench lfw --addr 127.0.0.1:50051 --lfw ../shared/data/lfw --out lfw.json

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use tokio::sync::Semaphore;
use tonic::transport::Channel;
use vargid_model::align::{alignment_transform, Affine};
use vargid_model::{ARCFACE_TEMPLATE, CROP_SIZE};
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;

/// LFW View 2 embeddings through a running service.
#[derive(clap::Args)]
pub struct Args {
    /// The running service.
    #[arg(long, default_value = "127.0.0.1:50051")]
    addr: String,
    /// LFW (photos in `images/`).
    #[arg(long, env = "VARGID_LFW_DIR", default_value = "../shared/data/lfw")]
    lfw: PathBuf,
    /// Where the embeddings go (for `python -m vargface.evaluate --embeddings`).
    #[arg(long, default_value = "target/lfw-service-embeddings.json")]
    out: PathBuf,
    /// Calls at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Send each photo once, without its mirror: the embedding a caller gets.
    #[arg(long = "no-client-flip", action = clap::ArgAction::SetFalse)]
    client_flip: bool,
}

/// Image paths (relative to images/) named by pairs.txt, as vargface.evaluate names them.
fn pair_images(pairs: &str) -> anyhow::Result<BTreeSet<String>> {
    let name = |person: &str, n: &str| -> anyhow::Result<String> {
        let n: u32 = n.parse().with_context(|| format!("image number {n:?}"))?;
        Ok(format!("{person}/{person}_{n:04}.jpg"))
    };
    let mut out = BTreeSet::new();
    for line in pairs.lines().skip(1) {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            [p, a, b] => {
                out.insert(name(p, a)?);
                out.insert(name(p, b)?);
            }
            [p, a, q, b] => {
                out.insert(name(p, a)?);
                out.insert(name(q, b)?);
            }
            [] => {}
            other => bail!("pairs.txt: unexpected line {other:?}"),
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Tally {
    detected: usize,
    fallback: usize,
    gated: usize,
}

type Landmarks = [[f32; 2]; 5];

fn with_landmarks(source: pb::image::Source, marks: &Landmarks) -> pb::Image {
    pb::Image {
        source: Some(source),
        location: pb::FaceLocation::Landmarks as i32,
        landmarks: Some(pb::Landmarks {
            points: marks
                .iter()
                .map(|p| pb::Point { x: p[0], y: p[1] })
                .collect(),
        }),
    }
}

/// Landmarks for the mirrored photo whose alignment is exactly the mirror of the
/// crop aligned from `marks` in the original.
///
/// With M the original's alignment, the wanted one is M' = Fc·M·Fi (Fi mirrors the
/// photo, x -> w-1-x; Fc the crop, x -> 111-x): a similarity, since the two
/// reflections cancel. The points M'^-1(template) fit it with zero residual, so the
/// service's least-squares fit recovers M' itself.
fn mirror_landmarks(marks: &Landmarks, width: u32) -> Option<Landmarks> {
    let m: Affine = alignment_transform(marks)?;
    let (w, c) = (f64::from(width) - 1.0, f64::from(CROP_SIZE) - 1.0);
    let (a, b, tx) = (m[0][0], m[0][1], m[0][2]);
    let (d, e, ty) = (m[1][0], m[1][1], m[1][2]);
    // M'(x, y) = Fc(M(w - x, y)).
    let mp = [[a, -b, c - (a * w + tx)], [-d, e, d * w + ty]];
    let det = mp[0][0] * mp[1][1] - mp[0][1] * mp[1][0];
    if det.abs() < 1e-12 {
        return None;
    }
    Some(ARCFACE_TEMPLATE.map(|t| {
        let (u, v) = (t[0] - mp[0][2], t[1] - mp[1][2]);
        [
            ((mp[1][1] * u - mp[0][1] * v) / det) as f32,
            ((-mp[1][0] * u + mp[0][0] * v) / det) as f32,
        ]
    }))
}

/// `Embed`, retried with exponential backoff while the server sheds load
/// (RESOURCE_EXHAUSTED), as the README asks of clients.
async fn embed_with_backoff(
    client: &mut FaceServiceClient<Channel>,
    request: pb::EmbedRequest,
) -> anyhow::Result<pb::EmbedResponse> {
    let mut pause = std::time::Duration::from_millis(50);
    for _ in 0..10 {
        match client.embed(request.clone()).await {
            Ok(reply) => return Ok(reply.into_inner()),
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(status) => return Err(status.into()),
        }
    }
    Ok(client.embed(request).await?.into_inner())
}

async fn one_image(
    client: &mut FaceServiceClient<Channel>,
    path: &std::path::Path,
    client_flip: bool,
) -> anyhow::Result<(Vec<f32>, Tally)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let rgb = image::load_from_memory(&bytes)?.into_rgb8();
    let (w, h) = rgb.dimensions();
    let mut tally = Tally::default();
    let reply = embed_with_backoff(
        client,
        pb::EmbedRequest {
            images: vec![pb::Image {
                source: Some(pb::image::Source::Encoded(bytes.clone())),
                ..Default::default()
            }],
        },
    )
    .await?;
    let faces = reply
        .images
        .into_iter()
        .next()
        .map(|i| i.faces)
        .unwrap_or_default();
    let largest = faces.into_iter().max_by(|a, b| {
        let area = |f: &pb::FaceEmbedding| {
            let b = f.face.as_ref().and_then(|f| f.r#box).unwrap_or_default();
            b.width * b.height
        };
        area(a).total_cmp(&area(b))
    });
    let (marks, mut embedding): (Landmarks, Option<Vec<f32>>) = match largest {
        Some(f) => {
            tally.detected = 1;
            let points = f
                .face
                .and_then(|f| f.landmarks)
                .map(|l| l.points)
                .unwrap_or_default();
            if points.len() != 5 {
                bail!("{}: a detected face without 5 landmarks", path.display());
            }
            let marks = std::array::from_fn(|i| [points[i].x, points[i].y]);
            (marks, (!f.embedding.is_empty()).then_some(f.embedding))
        }
        None => {
            tally.fallback = 1;
            let (dx, dy) = ((w as f64 - 112.0) / 2.0, (h as f64 - 112.0) / 2.0);
            let marks = ARCFACE_TEMPLATE.map(|p| [(p[0] + dx) as f32, (p[1] + dy) as f32]);
            (marks, None)
        }
    };
    // One more call: the mirrored photo (client flip) and, for a face below the
    // quality gate, the photo again with its landmarks.
    let mut images = Vec::new();
    if client_flip {
        let flipped = image::imageops::flip_horizontal(&rgb);
        images.push(with_landmarks(
            pb::image::Source::Raw(pb::RawImage {
                width: w,
                height: h,
                rgb: flipped.into_raw(),
            }),
            &mirror_landmarks(&marks, w)
                .with_context(|| format!("{}: degenerate landmarks", path.display()))?,
        ));
    }
    if embedding.is_none() {
        tally.gated = usize::from(tally.detected == 1);
        images.push(with_landmarks(pb::image::Source::Encoded(bytes), &marks));
    }
    let mut vectors = Vec::new();
    if !images.is_empty() {
        let reply = embed_with_backoff(client, pb::EmbedRequest { images }).await?;
        vectors = reply
            .images
            .into_iter()
            .map(|i| {
                i.faces
                    .into_iter()
                    .next()
                    .map(|f| f.embedding)
                    .unwrap_or_default()
            })
            .collect();
    }
    let mut vectors = vectors.into_iter();
    let flip = if client_flip { vectors.next() } else { None };
    if embedding.is_none() {
        embedding = vectors.next();
    }
    let embedding = embedding.unwrap_or_default();
    let flip_ok = flip.as_ref().is_none_or(|f| f.len() == embedding.len());
    if embedding.is_empty() || (client_flip && flip.is_none()) || !flip_ok {
        bail!("{}: the service returned no embedding", path.display());
    }
    let summed = match flip {
        Some(flip) => embedding.iter().zip(&flip).map(|(a, b)| a + b).collect(),
        None => embedding,
    };
    Ok((summed, tally))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pairs = std::fs::read_to_string(args.lfw.join("pairs.txt"))
        .with_context(|| format!("reading {}/pairs.txt", args.lfw.display()))?;
    let names: Vec<String> = pair_images(&pairs)?.into_iter().collect();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let channel = Channel::from_shared(format!("http://{}", args.addr))?
            .connect()
            .await
            .with_context(|| format!("connecting to {}", args.addr))?;
        let limit = Arc::new(Semaphore::new(args.concurrency.max(1)));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let client_flip = args.client_flip;
        for name in names.iter().cloned() {
            let mut client = FaceServiceClient::new(channel.clone())
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20);
            let path = args.lfw.join("images").join(&name);
            let limit = limit.clone();
            tasks.spawn(async move {
                let _slot = limit.acquire_owned().await;
                (name, one_image(&mut client, &path, client_flip).await)
            });
        }
        let mut out = BTreeMap::new();
        let mut total = Tally::default();
        while let Some(done) = tasks.join_next().await {
            let (name, result) = done?;
            let (embedding, tally) = result?;
            total.detected += tally.detected;
            total.fallback += tally.fallback;
            total.gated += tally.gated;
            out.insert(name, embedding);
            if out.len() % 1000 == 0 {
                eprintln!("lfw: {} / {} images", out.len(), names.len());
            }
        }
        let secs = started.elapsed().as_secs_f64();
        if let Some(dir) = args.out.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        std::fs::write(&args.out, serde_json::to_vec(&out)?)
            .with_context(|| format!("writing {}", args.out.display()))?;
        println!(
            "lfw: {} images through {} in {secs:.0} s ({:.1} images/s): {} with a detected \
             face ({} of them below the quality gate, re-sent with their landmarks), {} \
             without (centre fallback); embeddings in {}",
            out.len(),
            args.addr,
            out.len() as f64 / secs,
            total.detected,
            total.gated,
            total.fallback,
            args.out.display()
        );
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_landmarks_give_the_mirrored_crop() {
        let img = image::RgbImage::from_fn(250, 230, |x, y| {
            image::Rgb([
                (x * 7 % 251) as u8,
                (y * 13 % 247) as u8,
                ((x + y) % 256) as u8,
            ])
        });
        let marks: Landmarks = [
            [101.8, 110.1],
            [150.1, 111.3],
            [127.7, 137.4],
            [101.8, 156.1],
            [145.8, 158.1],
        ];
        let crop = vargid_model::align(&img, &marks).unwrap();
        let mirrored_photo = image::imageops::flip_horizontal(&img);
        let mirrored = mirror_landmarks(&marks, img.width()).unwrap();
        let flipped = vargid_model::align(&mirrored_photo, &mirrored).unwrap();
        let side = CROP_SIZE as usize;
        let mut worst = 0u8;
        for y in 0..side {
            for x in 0..side {
                for c in 0..3 {
                    let a = crop.rgb()[(y * side + x) * 3 + c];
                    let b = flipped.rgb()[(y * side + side - 1 - x) * 3 + c];
                    worst = worst.max(a.abs_diff(b));
                }
            }
        }
        assert!(worst <= 1, "mirrored crop differs by up to {worst}");
    }
}
