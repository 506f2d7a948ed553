//! `vargid export FILE` and `vargid import FILE`: a gallery's identities and templates
//! to and from a JSON Lines file, page by page.
//!
//! The first line is `{"vargid_export": 1, "gallery": ..., "model": {...}}`; each
//! further line is one identity with its templates. Templates only mean something to
//! the same model, so import refuses a file of another model (the server checks it).

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{json, Value};
use vargid_proto::v1 as pb;

use crate::connection::{Client, ConnectArgs};
use crate::progress::Progress;
use crate::{json, ClientError};

/// ImportGallery takes at most this many templates a request.
pub(crate) const MAX_TEMPLATES_PER_IMPORT: usize = 10_000;

#[derive(Args, Debug)]
pub struct TransferArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The JSON Lines file to write (export) or read (import); `-` for stdout/stdin.
    pub file: PathBuf,
    /// The gallery (default: the server's default gallery).
    #[arg(long, default_value = "", hide_default_value = true)]
    pub gallery: String,
}

fn out(path: &Path) -> Result<Box<dyn Write>, ClientError> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::stdout().lock()));
    }
    let file = std::fs::File::create(path).map_err(ClientError::io(path))?;
    Ok(Box::new(BufWriter::new(file)))
}

/// How many identities the gallery holds (the export's total), if it can be listed.
async fn identity_count(client: &mut Client, gallery: &str) -> Option<usize> {
    let name = if gallery.is_empty() {
        "default"
    } else {
        gallery
    };
    let list = client
        .list_galleries(pb::ListGalleriesRequest {})
        .await
        .ok()?;
    let found = list
        .into_inner()
        .galleries
        .into_iter()
        .find(|g| g.name == name)?;
    usize::try_from(found.identity_count).ok()
}

/// Data lines of an export file (its length, for the import's progress); None for stdin.
fn data_lines(path: &Path) -> Option<usize> {
    if path == Path::new("-") {
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    let lines = BufReader::new(file).lines().map_while(Result::ok);
    Some(
        lines
            .filter(|l| !l.trim().is_empty())
            .count()
            .saturating_sub(1),
    )
}

pub async fn export(client: &mut Client, args: TransferArgs) -> Result<(), ClientError> {
    let total = identity_count(client, &args.gallery).await;
    let mut progress = Progress::with_total("export", "identities", total);
    let mut writer = out(&args.file)?;
    let write =
        |w: &mut Box<dyn Write>, v: Value| writeln!(w, "{v}").map_err(ClientError::io(&args.file));
    let (mut token, mut identities, mut templates, mut first) = (String::new(), 0, 0, true);
    loop {
        let page = client
            .export_gallery(pb::ExportGalleryRequest {
                gallery: args.gallery.clone(),
                page_size: 500,
                page_token: token.clone(),
            })
            .await
            .map_err(ClientError::call("ExportGallery"))?
            .into_inner();
        if first {
            let model = page.model.as_ref().map(json::model);
            write(
                &mut writer,
                json!({"vargid_export": 1, "gallery": args.gallery, "model": model}),
            )?;
            first = false;
        }
        for e in &page.identities {
            templates += e.templates.len();
            write(&mut writer, json::exported(e))?;
        }
        identities += page.identities.len();
        progress.done(identities);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    writer.flush().map_err(ClientError::io(&args.file))?;
    progress.finish();
    eprintln!("export: {identities} identities, {templates} templates");
    Ok(())
}

/// One ImportGallery call with the batch (emptied); (identities, templates) imported.
pub(crate) async fn send(
    client: &mut Client,
    gallery: &str,
    model: &pb::ModelTag,
    batch: &mut Vec<pb::ExportedIdentity>,
) -> Result<(u64, u64), ClientError> {
    if batch.is_empty() {
        return Ok((0, 0));
    }
    let r = client
        .import_gallery(pb::ImportGalleryRequest {
            gallery: gallery.to_string(),
            model: Some(model.clone()),
            identities: std::mem::take(batch),
        })
        .await
        .map_err(ClientError::call("ImportGallery"))?
        .into_inner();
    Ok((r.identities, r.faces))
}

pub async fn import(client: &mut Client, args: TransferArgs) -> Result<(), ClientError> {
    let reader: Box<dyn BufRead> = if args.file == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.file).map_err(ClientError::io(&args.file))?;
        Box::new(BufReader::new(file))
    };
    let bad = |line: usize, what: &str| ClientError::Input {
        path: args.file.clone(),
        message: format!("line {line}: {what}"),
    };
    let mut lines = reader.lines();
    let header: Value = match lines.next() {
        Some(line) => serde_json::from_str(&line.map_err(ClientError::io(&args.file))?)
            .map_err(|e| bad(1, &e.to_string()))?,
        None => return Err(bad(1, "empty file")),
    };
    if header.get("vargid_export").and_then(Value::as_u64) != Some(1) {
        return Err(bad(
            1,
            "not a vargid export (no \"vargid_export\": 1 header)",
        ));
    }
    let model = header
        .get("model")
        .and_then(json::model_from)
        .ok_or_else(|| bad(1, "the header has no model"))?;
    let mut progress = Progress::with_total("import", "identities", data_lines(&args.file));
    let (mut batch, mut pending, mut identities, mut faces) = (Vec::new(), 0, 0, 0);
    for (i, line) in lines.enumerate() {
        let line = line.map_err(ClientError::io(&args.file))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line).map_err(|e| bad(i + 2, &e.to_string()))?;
        let identity = json::exported_from(&value)
            .ok_or_else(|| bad(i + 2, "expected identity_id and templates"))?;
        if pending + identity.templates.len() > MAX_TEMPLATES_PER_IMPORT {
            let (n, f) = send(client, &args.gallery, &model, &mut batch).await?;
            (identities, faces, pending) = (identities + n, faces + f, 0);
            progress.done(identities as usize);
        }
        pending += identity.templates.len();
        batch.push(identity);
    }
    let (n, f) = send(client, &args.gallery, &model, &mut batch).await?;
    progress.done((identities + n) as usize);
    progress.finish();
    eprintln!(
        "import: {} identities, {} templates",
        identities + n,
        faces + f
    );
    Ok(())
}
