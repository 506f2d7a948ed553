//! `vargid verify A B`: is the face in photo A the person in photo B (or an enrolled
//! identity)?

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use vargid_proto::v1 as pb;

use crate::connection::{Client, ConnectArgs};
use crate::{photo, ClientError};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The probe photo (one face, or --use-largest-face).
    pub probe: PathBuf,
    /// The photo to compare with; or give --identity.
    #[arg(required_unless_present = "identity", conflicts_with = "identity")]
    pub reference: Option<PathBuf>,
    /// Compare with this enrolled identity instead of a second photo.
    #[arg(long)]
    pub identity: Option<String>,
    /// The gallery holding --identity (default: the server's default gallery).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub gallery: String,
    /// Match threshold (cosine) instead of the gallery's.
    #[arg(long)]
    pub threshold: Option<f32>,
    /// With several faces in a photo, compare the largest instead of refusing.
    #[arg(long)]
    pub use_largest_face: bool,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &mut Client, args: VerifyArgs) -> Result<(), ClientError> {
    let reference = match (&args.identity, &args.reference) {
        (Some(id), _) => pb::verify_request::Reference::IdentityId(id.clone()),
        (None, Some(path)) => pb::verify_request::Reference::Image(photo::read(path)?),
        (None, None) => {
            return Err(ClientError::Config(
                "give a second photo or --identity".into(),
            ))
        }
    };
    let r = client
        .verify(pb::VerifyRequest {
            probe: Some(photo::read(&args.probe)?),
            reference: Some(reference),
            threshold: args.threshold,
            gallery: args.gallery.clone(),
            use_largest_face: args.use_largest_face,
            probe_template: None,
        })
        .await
        .map_err(ClientError::call("Verify"))?
        .into_inner();
    if args.json {
        println!(
            "{}",
            json!({"score": r.score, "is_match": r.is_match, "threshold": r.threshold})
        );
    } else {
        println!(
            "{}  score {:.3} (threshold {:.3})",
            if r.is_match { "MATCH" } else { "NO MATCH" },
            r.score,
            r.threshold
        );
    }
    Ok(())
}
