//! `vargid identify PHOTO...`: who is in each photo, a table per face or JSON.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{json, Value};
use vargid_proto::v1 as pb;

use crate::connection::{Client, ConnectArgs};
use crate::{annotate, json, photo, ClientError};

#[derive(Args, Debug)]
pub struct IdentifyArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Photos (JPEG, PNG or WebP); every face in each is searched.
    #[arg(required = true)]
    pub photos: Vec<PathBuf>,
    /// The gallery to search (default: the server's default gallery).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub gallery: String,
    /// Candidates per face, best first.
    #[arg(long, default_value_t = 3)]
    pub top_k: u32,
    /// Match threshold (cosine) instead of the gallery's.
    #[arg(long)]
    pub threshold: Option<f32>,
    /// One JSON document on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Write the photo with each face's box and name as PNG to this file (with several
    /// photos: into this folder, as <photo name>.png).
    #[arg(long, value_name = "OUT")]
    pub annotate: Option<PathBuf>,
}

/// Where the annotated copy of `photo` goes.
fn annotated_path(out: &Path, photo: &Path, several: bool) -> PathBuf {
    if !several {
        return out.to_path_buf();
    }
    let stem = photo
        .file_stem()
        .map_or("photo".into(), |s| s.to_string_lossy());
    out.join(format!("{stem}.png"))
}

/// One photo's answer; `Err` holds the server's refusal of this photo.
fn photo_json(photo: &str, answer: &Result<pb::IdentifyResponse, ClientError>) -> Value {
    match answer {
        Err(e) => json!({"photo": photo, "error": e.to_string()}),
        Ok(r) => json!({
            "photo": photo,
            "threshold": r.threshold,
            "no_face": r.faces.is_empty(),
            "faces": r.faces.iter().map(|f| {
                let mut face = f.face.as_ref().map(json::face).unwrap_or(json!({}));
                face["candidates"] = f.candidates.iter().map(json::candidate).collect();
                face
            }).collect::<Vec<_>>(),
        }),
    }
}

fn print_table(photo: &str, answer: &Result<pb::IdentifyResponse, ClientError>) {
    let r = match answer {
        Err(e) => {
            println!("{photo}: error: {e}");
            return;
        }
        Ok(r) => r,
    };
    if r.faces.is_empty() {
        println!("{photo}: no face found");
        return;
    }
    println!(
        "{photo}: {} face{} (match threshold {:.3})",
        r.faces.len(),
        if r.faces.len() == 1 { "" } else { "s" },
        r.threshold
    );
    for (i, f) in r.faces.iter().enumerate() {
        let face = f.face.clone().unwrap_or_default();
        let b = face.r#box.unwrap_or_default();
        println!(
            "  face {}  box x={:.0} y={:.0} {:.0}x{:.0}  detector {:.2}",
            i + 1,
            b.x,
            b.y,
            b.width,
            b.height,
            face.detector_score
        );
        if face.rejection != pb::FaceRejection::None as i32 {
            println!("    not searched: {}", face.rejection_detail);
            continue;
        }
        if f.candidates.is_empty() {
            println!("    no candidates (the gallery is empty)");
        }
        for (rank, c) in f.candidates.iter().enumerate() {
            println!(
                "    {}. {:<24} {:<20} {:.3}  {}",
                rank + 1,
                c.identity_id,
                c.display_name,
                c.score,
                if c.is_match { "MATCH" } else { "-" }
            );
        }
    }
}

/// Runs every photo; fails (after printing all) when any photo could not be searched.
pub async fn run(client: &mut Client, args: IdentifyArgs) -> Result<(), ClientError> {
    let mut failed = 0;
    let mut all = Vec::new();
    let several = args.photos.len() > 1;
    if let (Some(out), true) = (&args.annotate, several) {
        std::fs::create_dir_all(out).map_err(ClientError::io(out))?;
    }
    for path in &args.photos {
        let name = path.display().to_string();
        let answer = match photo::read(path) {
            Err(e) => Err(e),
            Ok(image) => client
                .identify(pb::IdentifyRequest {
                    image: Some(image),
                    top_k: args.top_k,
                    threshold: args.threshold,
                    gallery: args.gallery.clone(),
                    probe_template: None,
                    min_sequence: 0,
                })
                .await
                .map(tonic::Response::into_inner)
                .map_err(ClientError::call("Identify")),
        };
        let answer = match (answer, &args.annotate) {
            (Ok(r), Some(out)) => {
                annotate::write(path, &r, &annotated_path(out, path, several)).map(|()| r)
            }
            (answer, _) => answer,
        };
        failed += usize::from(answer.is_err());
        if args.json {
            all.push(photo_json(&name, &answer));
        } else {
            print_table(&name, &answer);
        }
    }
    if args.json {
        println!("{}", Value::Array(all));
    }
    match failed {
        0 => Ok(()),
        n => Err(ClientError::Failed(format!(
            "{n} of {} photos could not be searched",
            args.photos.len()
        ))),
    }
}
