//! `vargid enroll DIR`: one identity per sub-folder (or per CSV row group), sent
//! concurrently, resumable.
//!
//! Each identity is one Enroll call holding all its photos, so it is enrolled whole
//! or not at all. A photo the server refuses (`images[i]: ...`) is reported with the
//! server's reason and the call is repeated without it. The identity's metadata
//! `vargid.source` records a digest of its file list (names and sizes): a second run
//! skips identities already enrolled from the same files, so a run that was stopped
//! resumes where it was. A call the server sheds, or one that ran past `--timeout-s`, is
//! tried again (crate::retry's budget); one that may have been applied is looked up
//! first, since Enroll appends and must not add the photos twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;
use sha2::{Digest, Sha256};
use tonic::Code;
use vargid_proto::v1 as pb;

use crate::connection::{Client, ConnectArgs};
use crate::progress::Progress;
use crate::{concurrent, labelled, photo, retry, ClientError};

/// Metadata key holding the digest of the files an identity was enrolled from.
pub const SOURCE_KEY: &str = "vargid.source";

#[derive(Args, Debug)]
pub struct EnrollArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// A folder with one sub-folder of photos per person (the sub-folder's name is the
    /// identity id and display name). Not needed with --csv.
    #[arg(required_unless_present = "csv")]
    pub dir: Option<PathBuf>,
    /// A CSV file with the columns `file,identity_id[,display_name]` (a header row is
    /// allowed); files are relative to the CSV's folder.
    #[arg(long, conflicts_with = "dir")]
    pub csv: Option<PathBuf>,
    /// The gallery to enroll into (default: the server's default gallery).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub gallery: String,
    /// Identities in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Photos with several faces enroll their largest instead of being rejected.
    #[arg(long)]
    pub use_largest_face: bool,
}

/// One person to enroll.
#[derive(Debug, Clone)]
struct Person {
    identity_id: String,
    display_name: String,
    files: Vec<PathBuf>,
}

impl Person {
    fn source_digest(&self) -> Result<String, ClientError> {
        let mut h = Sha256::new();
        let mut names: Vec<(String, u64)> = Vec::new();
        for f in &self.files {
            let size = std::fs::metadata(f).map_err(ClientError::io(f))?.len();
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            names.push((name, size));
        }
        names.sort();
        for (name, size) in names {
            h.update(format!("{name}\t{size}\n"));
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

fn from_folders(dir: &Path) -> Result<Vec<Person>, ClientError> {
    Ok(labelled::read(dir)?
        .into_iter()
        .map(|p| Person {
            identity_id: p.name.clone(),
            display_name: p.name,
            files: p.photos,
        })
        .collect())
}

fn from_csv(path: &Path) -> Result<Vec<Person>, ClientError> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| ClientError::Input {
            path: path.into(),
            message: e.to_string(),
        })?;
    let mut people: BTreeMap<String, Person> = BTreeMap::new();
    for (line, row) in reader.records().enumerate() {
        let row = row.map_err(|e| ClientError::Input {
            path: path.into(),
            message: e.to_string(),
        })?;
        let (file, id) = (row.get(0).unwrap_or(""), row.get(1).unwrap_or(""));
        if line == 0 && file == "file" && id == "identity_id" {
            continue;
        }
        if file.is_empty() || id.is_empty() {
            return Err(ClientError::Input {
                path: path.into(),
                message: format!(
                    "line {}: expected file,identity_id[,display_name]",
                    line + 1
                ),
            });
        }
        let person = people.entry(id.to_string()).or_insert_with(|| Person {
            identity_id: id.to_string(),
            display_name: row.get(2).unwrap_or(id).to_string(),
            files: Vec::new(),
        });
        person.files.push(base.join(file));
    }
    if people.is_empty() {
        return Err(ClientError::Input {
            path: path.into(),
            message: "no rows".into(),
        });
    }
    Ok(people.into_values().collect())
}

/// What happened to one person.
#[derive(Debug, Default)]
struct Outcome {
    enrolled_photos: usize,
    skipped: Option<String>,
    rejected: Vec<(PathBuf, String)>,
    failed: Option<String>,
}

/// The index of the refused image in a status message such as `images[2]: no face`.
fn refused_image(status: &tonic::Status) -> Option<usize> {
    let rest = status.message().strip_prefix("images[")?;
    rest[..rest.find(']')?].parse().ok()
}

/// Codes worth another try after a pause: the server is busy or restarting, this
/// client stopped waiting (its `--timeout-s`), or the server refused a deadline it could
/// not meet.
fn transient(code: Code) -> bool {
    retry::shedding(code) || code == Code::DeadlineExceeded
}

/// Codes after which an Enroll may have been applied although this client saw an
/// error: it stopped waiting, or the connection dropped mid-call. Enroll appends to an
/// existing identity, so such a call is looked up before it is sent again.
fn may_have_landed(code: Code) -> bool {
    matches!(code, Code::DeadlineExceeded | Code::Unavailable)
}

/// The identity as the server has it, or None where it is not enrolled (a missing
/// gallery stays an error).
async fn enrolled(
    client: &mut Client,
    identity_id: &str,
    gallery: &str,
) -> Result<Option<pb::Identity>, tonic::Status> {
    let request = pb::GetIdentityRequest {
        identity_id: identity_id.to_string(),
        gallery: gallery.to_string(),
    };
    match client.get_identity(request).await {
        Ok(found) => Ok(Some(found.into_inner())),
        Err(s) if s.code() == Code::NotFound && s.message().starts_with("identity ") => Ok(None),
        Err(s) => Err(s),
    }
}

/// Whether the identity was enrolled from the files with this source digest.
fn from_these_files(identity: &pb::Identity, digest: &str) -> bool {
    identity.metadata.get(SOURCE_KEY).map(String::as_str) == Some(digest)
}

async fn enroll_person(
    mut client: Client,
    person: Person,
    gallery: String,
    use_largest_face: bool,
) -> Result<Outcome, ClientError> {
    let mut outcome = Outcome::default();
    let digest = person.source_digest()?;
    let found = enrolled(&mut client, &person.identity_id, &gallery)
        .await
        .map_err(ClientError::call("GetIdentity"))?;
    if let Some(found) = found {
        outcome.skipped = Some(if from_these_files(&found, &digest) {
            "already enrolled from these files".into()
        } else {
            "already enrolled from other files (delete it to enroll it again)".into()
        });
        return Ok(outcome);
    }
    let mut files = person.files.clone();
    let mut images = Vec::with_capacity(files.len());
    for f in &files {
        images.push(photo::read(f)?);
    }
    let maybe_landed = AtomicBool::new(false);
    while !images.is_empty() {
        let request = pb::EnrollRequest {
            identity_id: person.identity_id.clone(),
            images: images.clone(),
            display_name: person.display_name.clone(),
            metadata: [(SOURCE_KEY.to_string(), digest.clone())].into(),
            gallery: gallery.clone(),
            use_largest_face,
        };
        let sent = retry::while_code(transient, || {
            let (mut client, request) = (client.clone(), request.clone());
            let (maybe_landed, id, gallery, digest) =
                (&maybe_landed, &person.identity_id, &gallery, &digest);
            async move {
                // An earlier try may have landed: take it rather than add the photos twice.
                if maybe_landed.load(Ordering::Relaxed) {
                    let found = enrolled(&mut client, id, gallery).await?;
                    if let Some(found) = found.filter(|f| from_these_files(f, digest)) {
                        return Ok(found.face_ids.len());
                    }
                }
                let enrolled = client.enroll(request).await;
                if enrolled.as_ref().is_err_and(|s| may_have_landed(s.code())) {
                    maybe_landed.store(true, Ordering::Relaxed);
                }
                Ok(enrolled?.into_inner().face_ids.len())
            }
        })
        .await;
        match sent {
            Ok(templates) => {
                outcome.enrolled_photos = templates;
                return Ok(outcome);
            }
            Err(s) if s.code() == Code::InvalidArgument => match refused_image(&s) {
                Some(i) if i < images.len() => {
                    images.remove(i);
                    let file = files.remove(i);
                    let reason = s.message().split_once(": ").map_or(s.message(), |(_, r)| r);
                    outcome.rejected.push((file, reason.to_string()));
                }
                _ => {
                    outcome.failed = Some(format!("Enroll: {}", s.message()));
                    return Ok(outcome);
                }
            },
            Err(s) => {
                outcome.failed = Some(format!("Enroll: {} ({:?})", s.message(), s.code()));
                return Ok(outcome);
            }
        }
    }
    outcome.failed = Some("no usable photo".into());
    Ok(outcome)
}

pub async fn run(client: &Client, args: EnrollArgs) -> Result<(), ClientError> {
    let people = match (&args.csv, &args.dir) {
        (Some(csv), _) => from_csv(csv)?,
        (None, Some(dir)) => from_folders(dir)?,
        (None, None) => return Err(ClientError::Config("give a folder or --csv".into())),
    };
    let total = people.len();
    let mut progress = Progress::new("enroll", "identities", total);
    let results = concurrent::in_order(
        people,
        args.concurrency,
        |person| {
            let (client, gallery) = (client.clone(), args.gallery.clone());
            let id = person.identity_id.clone();
            let use_largest_face = args.use_largest_face;
            // An identity's failure is reported with it, not a reason to stop the others.
            async move {
                Ok((
                    id,
                    enroll_person(client, person, gallery, use_largest_face).await,
                ))
            }
        },
        |n| progress.done(n),
    )
    .await?;
    progress.finish();

    let (mut enrolled, mut photos, mut skipped, mut failed) = (0, 0, 0, 0);
    let mut rejected = Vec::new();
    let mut problems = Vec::new();
    for (id, result) in results {
        match result {
            Err(e) => {
                failed += 1;
                problems.push(format!("{id}: {e}"));
            }
            Ok(o) => {
                rejected.extend(o.rejected);
                if let Some(why) = o.skipped {
                    skipped += 1;
                    problems.push(format!("{id}: skipped, {why}"));
                } else if let Some(why) = o.failed {
                    failed += 1;
                    problems.push(format!("{id}: not enrolled, {why}"));
                } else {
                    enrolled += 1;
                    photos += o.enrolled_photos;
                }
            }
        }
    }
    println!(
        "enrolled {enrolled} identities ({photos} photos), skipped {skipped}, failed {failed}, \
         {} photos rejected",
        rejected.len()
    );
    for line in &problems {
        println!("  {line}");
    }
    for (file, reason) in &rejected {
        println!("  rejected {}: {reason}", file.display());
    }
    if failed > 0 {
        return Err(ClientError::Failed(format!(
            "{failed} of {total} identities not enrolled"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_enroll_that_may_have_landed_is_looked_up_before_it_is_sent_again() {
        // Retried, and looked up first: the client stopped waiting or the link dropped.
        for code in [Code::DeadlineExceeded, Code::Unavailable] {
            assert!(transient(code) && may_have_landed(code), "{code:?}");
        }
        // Retried as it is: the server refused the call before doing anything.
        assert!(transient(Code::ResourceExhausted) && !may_have_landed(Code::ResourceExhausted));
        // Not retried: the answer is final.
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::PermissionDenied,
        ] {
            assert!(!transient(code), "{code:?}");
        }
    }

    #[test]
    fn refused_image_index_from_the_status() {
        let s = tonic::Status::invalid_argument("images[3]: no face found in the photo");
        assert_eq!(refused_image(&s), Some(3));
        assert_eq!(
            refused_image(&tonic::Status::invalid_argument("identity_id: empty")),
            None
        );
    }

    #[test]
    fn csv_rows_group_by_identity() {
        let dir = std::env::temp_dir().join(format!("vargid-client-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("people.csv");
        std::fs::write(
            &csv,
            "file,identity_id\na.jpg,alice\nb.jpg,bob,Bob B\nc.jpg,alice\n",
        )
        .unwrap();
        let people = from_csv(&csv).unwrap();
        assert_eq!(people.len(), 2);
        assert_eq!(people[0].identity_id, "alice");
        assert_eq!(people[0].files, vec![dir.join("a.jpg"), dir.join("c.jpg")]);
        assert_eq!(people[1].display_name, "Bob B");
        std::fs::write(&csv, "a.jpg\n").unwrap();
        assert!(from_csv(&csv).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
