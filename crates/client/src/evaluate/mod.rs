//! `vargid evaluate DIR`: how well the running server's model separates the people of
//! a labelled folder (one sub-folder per person), and which match threshold gives a
//! wanted false-match rate on that population.
//!
//! Every photo is embedded once through the server (`Embed`: detection, alignment,
//! the server's flip setting; the largest face). 1:N searches run through the server
//! against a temporary flat gallery of one photo per person (see `split`); 1:1 scores
//! every pair of photos. Figures go to stdout and `OUT/report.txt`, `OUT/report.json`;
//! ROC, DET and score-distribution plots to `OUT/*.png` and `*.svg`.

mod metrics;
mod pairs;
mod plots;
mod service;
mod split;

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};
use vargid_proto::v1 as pb;

use crate::connection::{Client, ConnectArgs};
use crate::{labelled, ClientError};
use metrics::{Identification, Search, Verification};
use service::{Acquired, TemporaryGallery};

/// The FARs every report gives TAR at.
const FAR_POINTS: [f64; 3] = [1e-2, 1e-3, 1e-4];
/// The FPIRs every report gives FNIR at (those of vargface.evaluate).
const FPIR_POINTS: [f64; 2] = [0.1, 0.01];

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// A folder with one sub-folder of photos per person (at least some people with two
    /// or more photos).
    pub dir: PathBuf,
    /// Where the report and the plots go (created if missing).
    #[arg(long, default_value = "vargid-evaluation")]
    pub out: PathBuf,
    /// Suggest the Verify threshold that keeps the false accept rate at or under this.
    #[arg(long, default_value_t = 1e-3)]
    pub target_far: f64,
    /// Suggest the Identify threshold that keeps the false positive identification rate
    /// (searches for people not enrolled that return a match) at or under this.
    #[arg(long, default_value_t = 0.01)]
    pub target_fpir: f64,
    /// The CMC curve's last rank (candidates asked of each search).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub ranks: u32,
    /// Also keep every N-th person with several photos out of the gallery, as people who
    /// are not enrolled (needed for FNIR at FPIR when nobody has a single photo).
    #[arg(long, value_name = "N")]
    pub unenrolled_every: Option<usize>,
    /// Count faces below the server's quality gate (too small, low detector score) as
    /// failures, as Identify would answer them. By default they are embedded anyway
    /// from their landmarks, so the figures are the model's on every largest face, as
    /// `vargface.evaluate` measures them; the report counts them either way.
    #[arg(long)]
    pub respect_quality_gate: bool,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Print the JSON report on stdout instead of the text one.
    #[arg(long)]
    pub json: bool,
}

fn check_rate(name: &str, value: f64) -> Result<(), ClientError> {
    if value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(ClientError::Config(format!(
            "--{name} {value}: must be between 0 and 1"
        )))
    }
}

/// The FPIR/FAR list with the target added when it is not already there.
fn with_target(points: &[f64], target: f64) -> Vec<f64> {
    let mut all = points.to_vec();
    if !all.iter().any(|&p| (p - target).abs() < 1e-12) {
        all.push(target);
    }
    all
}

fn verification_json(v: &Verification) -> Value {
    json!({
        "genuine_pairs": v.genuine_pairs,
        "impostor_pairs": v.impostor_pairs,
        "eer": v.eer,
        "eer_threshold": v.eer_threshold,
        "tar_at_far": v.at_far.iter().map(|(target, p)| json!({
            "far_target": target, "threshold": p.threshold, "far": p.far, "tar": p.tar,
        })).collect::<Vec<_>>(),
    })
}

/// Keys as vargface.evaluate writes them, so the two JSONs compare directly.
fn identification_json(id: &Identification, gallery: usize) -> Value {
    let mut out = json!({
        "gallery": gallery,
        "mated_probes": id.mated,
        "non_mated_probes": id.non_mated,
        "rank1": id.cmc.first().copied().unwrap_or(0.0),
        "cmc": id.cmc,
    });
    for (fpir, threshold, fnir) in &id.at_fpir {
        out[format!("fnir_at_fpir_{fpir}")] = json!(fnir);
        out[format!("fpir_{fpir}_threshold")] = json!(threshold);
    }
    out
}

pub async fn run(client: &mut Client, args: EvaluateArgs) -> Result<(), ClientError> {
    check_rate("target-far", args.target_far)?;
    check_rate("target-fpir", args.target_fpir)?;
    let people = labelled::read(&args.dir)?;
    let info = client
        .get_service_info(pb::GetServiceInfoRequest {})
        .await
        .map_err(ClientError::call("GetServiceInfo"))?
        .into_inner();
    let model = pb::ModelTag {
        name: info.model_name.clone(),
        version: info.model_version.clone(),
        embedding_size: info.embedding_size,
    };
    std::fs::create_dir_all(&args.out).map_err(ClientError::io(&args.out))?;

    let photos: Vec<PathBuf> = people.iter().flat_map(|p| p.photos.clone()).collect();
    let mut first = Vec::with_capacity(people.len());
    let mut offset = 0;
    for p in &people {
        first.push(offset);
        offset += p.photos.len();
    }
    let at = |(p, i): (usize, usize)| first[p] + i;
    let acquired =
        service::embed_all(client, &photos, args.concurrency, args.respect_quality_gate).await?;
    let embedding = |k: usize| acquired[k].embedding();
    // Photos without a face to measure, and those measured below the quality gate.
    let mut failures: Vec<(&PathBuf, &str)> = Vec::new();
    let mut below_gate: Vec<(&PathBuf, &str)> = Vec::new();
    for (path, a) in photos.iter().zip(&acquired) {
        match a {
            Acquired::Failed(why) => failures.push((path, why)),
            Acquired::BelowGate(_, why) => below_gate.push((path, why)),
            Acquired::Embedding(_) => {}
        }
    }

    // 1:N, through the server.
    let counts: Vec<usize> = people.iter().map(|p| p.photos.len()).collect();
    let split = split::split(
        &counts,
        |p, i| embedding(at((p, i))).is_some(),
        args.unenrolled_every,
    );
    let fpir_points = with_target(&FPIR_POINTS, args.target_fpir);
    let identification = if split.gallery.is_empty() || split.mated.is_empty() {
        None
    } else {
        let searches = search_split(
            client,
            &model,
            &split,
            |r| people[r.0].name.clone(),
            |r| embedding(at(r)),
            args.ranks,
            args.concurrency,
        )
        .await?;
        Some(metrics::identification(
            &searches,
            args.ranks as usize,
            &fpir_points,
        ))
    };

    // 1:1, every pair of embedded photos.
    let embedded: Vec<(usize, &[f32])> = people
        .iter()
        .enumerate()
        .flat_map(|(p, person)| (0..person.photos.len()).map(move |i| (p, i)))
        .filter_map(|r| Some((r.0, embedding(at(r))?)))
        .collect();
    let (genuine, impostor) = pairs::score_pairs(&embedded);
    let far_points = with_target(&FAR_POINTS, args.target_far);
    let verification = metrics::verification(&genuine, &impostor, &far_points);
    let has_pairs = verification.genuine_pairs > 0 && verification.impostor_pairs > 0;

    let verify_threshold = verification
        .at_far
        .iter()
        .find(|(t, _)| (t - args.target_far).abs() < 1e-12)
        .map(|(_, p)| *p)
        .filter(|_| has_pairs);
    let identify_threshold = identification.as_ref().and_then(|id| {
        id.at_fpir
            .iter()
            .find(|(f, ..)| (f - args.target_fpir).abs() < 1e-12)
            .copied()
    });
    let plots = plots::write_all(
        &args.out,
        Some((&verification, &genuine, &impostor)),
        identification.as_ref(),
        verify_threshold.map(|p| {
            (
                p.threshold,
                format!(
                    "suggested threshold {:.3} (FAR {:e})",
                    p.threshold, args.target_far
                ),
            )
        }),
    )?;

    let report = json!({
        "dir": args.dir.display().to_string(),
        "server": {
            "address": args.connect.address,
            "version": info.server_version,
            "model": {"name": model.name, "version": model.version, "embedding_size": model.embedding_size},
            "execution_provider": info.execution_provider,
            "flip_test": info.flip_test,
        },
        "people": people.len(),
        "photos": photos.len(),
        "failed_to_acquire": failures.len(),
        "failures": failures.iter().map(|(p, why)| json!({"file": p.display().to_string(), "reason": why})).collect::<Vec<_>>(),
        "quality_gate": if args.respect_quality_gate { "respected" } else { "measured anyway" },
        "below_quality_gate": below_gate.iter().map(|(p, why)| json!({"file": p.display().to_string(), "reason": why})).collect::<Vec<_>>(),
        "verification": has_pairs.then(|| verification_json(&verification)),
        "identification": identification.as_ref().map(|id| identification_json(id, split.gallery.len())),
        "suggested_thresholds": {
            "verify": verify_threshold.map(|p| json!({"far": args.target_far, "threshold": p.threshold, "tar": p.tar})),
            "identify": identify_threshold.map(|(f, t, fnir)| json!({"fpir": f, "threshold": t, "fnir": fnir})),
        },
        "plots": plots.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    let text = text_report(
        &args,
        &info,
        &report,
        &verification,
        identification.as_ref(),
        &failures,
        below_gate.len(),
    );
    let json_path = args.out.join("report.json");
    let text_path = args.out.join("report.txt");
    let pretty = serde_json::to_string_pretty(&report)
        .map_err(|e| ClientError::Failed(format!("report: {e}")))?;
    std::fs::write(&json_path, format!("{pretty}\n")).map_err(ClientError::io(&json_path))?;
    std::fs::write(&text_path, &text).map_err(ClientError::io(&text_path))?;
    if args.json {
        println!("{pretty}");
    } else {
        print!("{text}");
    }
    Ok(())
}

/// 1:N through the server: the split's enrolled photos imported into a temporary flat
/// gallery (dropped afterwards, whatever happened), then every mated and non-mated
/// photo searched by template. A photo without an embedding is a search with no
/// candidates: a miss.
async fn search_split<'a>(
    client: &mut Client,
    model: &pb::ModelTag,
    split: &split::Split,
    person: impl Fn(split::PhotoRef) -> String,
    embedding: impl Fn(split::PhotoRef) -> Option<&'a [f32]>,
    ranks: u32,
    concurrency: usize,
) -> Result<Vec<Search>, ClientError> {
    let gallery = TemporaryGallery::create(client, model.clone()).await?;
    let templates = split
        .gallery
        .iter()
        .filter_map(|&r| Some((person(r), embedding(r)?.to_vec())))
        .collect();
    let probes: Vec<(Option<String>, Option<&[f32]>)> = split
        .mated
        .iter()
        .map(|&r| (Some(person(r)), embedding(r)))
        .chain(split.non_mated.iter().map(|&r| (None, embedding(r))))
        .collect();
    let searchable: Vec<Vec<f32>> = probes
        .iter()
        .filter_map(|(_, e)| e.map(<[f32]>::to_vec))
        .collect();
    let searched = async {
        gallery.import(client, templates).await?;
        gallery
            .search_all(client, searchable, ranks, concurrency)
            .await
    }
    .await;
    // The first error is the one reported.
    let dropped = gallery.drop_gallery(client).await;
    let mut found = searched?.into_iter();
    dropped?;
    Ok(probes
        .into_iter()
        .map(|(truth, e)| Search {
            truth,
            candidates: if e.is_some() {
                found.next().unwrap_or_default()
            } else {
                Vec::new()
            },
        })
        .collect())
}

fn text_report(
    args: &EvaluateArgs,
    info: &pb::ServiceInfo,
    report: &Value,
    v: &Verification,
    id: Option<&Identification>,
    failures: &[(&PathBuf, &str)],
    below_gate: usize,
) -> String {
    let mut t = String::new();
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    let _ = writeln!(
        t,
        "{}: {} people, {} photos, {} without a face to measure, {below_gate} below the \
         quality gate ({})",
        args.dir.display(),
        report["people"],
        report["photos"],
        failures.len(),
        report["quality_gate"].as_str().unwrap_or_default()
    );
    let _ = writeln!(
        t,
        "model {} {} on {} (flip test {})",
        info.model_name,
        info.model_version,
        info.execution_provider,
        if info.flip_test { "on" } else { "off" }
    );
    if report["verification"].is_null() {
        let _ = writeln!(t, "1:1: needs two photos of someone and two people");
    } else {
        let _ = writeln!(
            t,
            "1:1: {} genuine and {} impostor pairs, EER {} (threshold {:.3})",
            v.genuine_pairs,
            v.impostor_pairs,
            pct(v.eer),
            v.eer_threshold
        );
        for (target, p) in &v.at_far {
            let _ = writeln!(
                t,
                "  TAR {} at FAR={target:e} (threshold {:.3})",
                pct(p.tar),
                p.threshold
            );
        }
    }
    match id {
        None => {
            let _ = writeln!(t, "1:N: needs people with two or more photos");
        }
        Some(id) => {
            let ranks: Vec<String> = id.cmc.iter().map(|&c| pct(c)).collect();
            let _ = writeln!(
                t,
                "1:N: {} enrolled, {} mated and {} non-mated searches: rank-1 {}",
                report["identification"]["gallery"],
                id.mated,
                id.non_mated,
                pct(id.cmc.first().copied().unwrap_or(0.0))
            );
            let _ = writeln!(t, "  CMC rank 1..{}: {}", id.cmc.len(), ranks.join(" "));
            if id.at_fpir.is_empty() {
                let _ = writeln!(
                    t,
                    "  FNIR at FPIR needs people who are not enrolled: people with one photo, \
                     or --unenrolled-every N"
                );
            }
            for (fpir, threshold, fnir) in &id.at_fpir {
                let _ = writeln!(
                    t,
                    "  FNIR {} at FPIR={fpir} (threshold {threshold:.3})",
                    pct(*fnir)
                );
            }
        }
    }
    let suggested = &report["suggested_thresholds"];
    if let Some(th) = suggested["verify"]["threshold"].as_f64() {
        let _ = writeln!(
            t,
            "suggested Verify threshold for FAR {:e}: {th:.3}",
            args.target_far
        );
    }
    if let Some(th) = suggested["identify"]["threshold"].as_f64() {
        let _ = writeln!(
            t,
            "suggested Identify threshold for FPIR {} with {} enrolled: {th:.3} \
             (set it as the gallery's match_threshold)",
            args.target_fpir, report["identification"]["gallery"]
        );
    }
    for (path, why) in failures.iter().take(20) {
        let _ = writeln!(t, "  no face measured in {}: {why}", path.display());
    }
    if failures.len() > 20 {
        let _ = writeln!(t, "  ... {} more in report.json", failures.len() - 20);
    }
    let _ = writeln!(t, "report and plots in {}", args.out.display());
    t
}
