//! `vargid-bench gallery`: Identify's search at scale on realistic face embeddings.
//!
//! The gallery holds the real templates of `bench/python/gallery_embeddings.py` (the
//! shipped model's embeddings of every face in ../shared/data/faces and of LFW's
//! enrolled people), then synthetic distractors drawn from a Gaussian fitted to them
//! (mean and covariance, normalised). Probes are real: other LFW photos of enrolled
//! people and mirrored training faces. Recall@1 is the share of probes whose best
//! identity equals exact search's (FAISS flat over the same templates).
//!
//! - In process (default): the gallery's `identify` (search and grouping), an HNSW
//!   build, its memory, a snapshot written and loaded, and a sweep of efSearch.
//! - `--service`: the same through the real server and the gRPC API: templates
//!   imported with ImportGallery, Identify by template, the server's resident memory,
//!   a clean restart from the snapshot, enrollment into the full gallery, deletes.
//!
//! Then durable enrollments per second through the store alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use faiss::{index_factory, Index, MetricType};
use vargid_index::{
    Gallery, HnswParameters, IdentityEntry, IndexDefaults, IndexRequest, IndexSpec, IvfParameters,
};
use vargid_proto::v1 as pb;
use vargid_proto::v1::face_service_client::FaceServiceClient;
use vargid_store::{Change, GalleryRecord, ModelTag, Store};

use crate::load::quantile;
use crate::service::{connect, Service};

/// Search latency and recall, flat against approximate, and durable enrollments per
/// second, on embeddings from bench/python/gallery_embeddings.py.
#[derive(clap::Args)]
pub struct Args {
    /// Embeddings written by bench/python/gallery_embeddings.py.
    #[arg(long, required = true)]
    data: PathBuf,
    /// Gallery sizes, one level each.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    sizes: Vec<usize>,
    /// Searches per level.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// The approximate layout.
    #[arg(long, default_value = "hnsw", value_parser = ["hnsw", "ivf", "ivfpq"])]
    index: String,
    /// HNSW neighbours per node.
    #[arg(long, default_value_t = HnswParameters::default().m)]
    m: u32,
    /// HNSW candidates kept while inserting.
    #[arg(long, default_value_t = HnswParameters::default().ef_construction)]
    ef_construction: u32,
    /// HNSW candidates kept while searching.
    #[arg(long, default_value_t = HnswParameters::default().ef_search)]
    ef_search: u32,
    /// IVF cells.
    #[arg(long, default_value_t = IvfParameters::default().nlist)]
    nlist: u32,
    /// IVF cells scanned per search.
    #[arg(long, default_value_t = IvfParameters::default().nprobe)]
    nprobe: u32,
    /// Candidates re-scored on the full vectors (ivfpq).
    #[arg(long)]
    rerank: Option<u32>,
    /// efSearch (HNSW) or nprobe (IVF) values searched after one build.
    #[arg(
        long,
        alias = "ef-sweep",
        value_delimiter = ',',
        default_value = "16,32,64,128"
    )]
    sweep: Vec<u32>,
    /// Also through the running service (gRPC), not only in process.
    #[arg(long)]
    service: bool,
    /// Durable enrollments timed per level.
    #[arg(long, default_value_t = 3000)]
    enrollments: usize,
}

impl Args {
    fn hnsw(&self) -> HnswParameters {
        HnswParameters {
            m: self.m,
            ef_construction: self.ef_construction,
            ef_search: self.ef_search,
        }
    }

    fn ivf(&self) -> IvfParameters {
        IvfParameters {
            nlist: self.nlist,
            nprobe: self.nprobe,
            rerank: self.rerank,
        }
    }

    /// The index spec, with the sweep value `knob` (efSearch or nprobe) when given.
    fn spec(&self, knob: Option<u32>) -> anyhow::Result<IndexSpec> {
        let defaults = IndexDefaults {
            hnsw: HnswParameters {
                ef_search: knob.unwrap_or(self.ef_search),
                ..self.hnsw()
            },
            ivf: IvfParameters {
                nprobe: knob.unwrap_or(self.nprobe),
                ..self.ivf()
            },
        };
        Ok(IndexSpec::resolve(
            &self.index,
            IndexRequest::default(),
            defaults,
        )?)
    }

    /// The knob's name and the build settings, for the report.
    fn describe(&self) -> (&'static str, String) {
        match self.index.as_str() {
            "ivf" => ("nprobe", format!("nlist {}", self.nlist)),
            "ivfpq" => (
                "nprobe",
                format!(
                    "nlist {}, rerank {}",
                    self.nlist,
                    self.rerank.unwrap_or(vargid_index::DEFAULT_RERANK)
                ),
            ),
            _ => (
                "efSearch",
                format!("M {}, efConstruction {}", self.m, self.ef_construction),
            ),
        }
    }
}

/// xorshift64* and Box-Muller.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gaussian(&mut self) -> f32 {
        ((-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos())
            as f32
    }
}

fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

fn read_f32(path: &Path) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The embeddings `gallery_embeddings.py` wrote.
struct Data {
    dim: usize,
    /// Real templates, row-major.
    real: Vec<f32>,
    probes: Vec<f32>,
    mean: Vec<f32>,
    /// Lower Cholesky factor of the real templates' covariance, row-major.
    cholesky: Vec<f32>,
}

impl Data {
    fn load(dir: &Path) -> anyhow::Result<Self> {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("meta.json")).with_context(|| {
                format!(
                    "{}/meta.json: run bench/python/gallery_embeddings.py",
                    dir.display()
                )
            })?)?;
        let dim = meta["dim"].as_u64().context("meta.json: dim")? as usize;
        let distribution = read_f32(&dir.join("distractors.f32"))?;
        anyhow::ensure!(
            distribution.len() == dim + dim * dim,
            "distractors.f32: size"
        );
        Ok(Self {
            dim,
            real: read_f32(&dir.join("templates.f32"))?,
            probes: read_f32(&dir.join("probes.f32"))?,
            mean: distribution[..dim].to_vec(),
            cholesky: distribution[dim..].to_vec(),
        })
    }

    fn real_count(&self) -> usize {
        self.real.len() / self.dim
    }

    /// `n` templates: the real ones, then distractors x = mean + L z, normalised.
    fn gallery(&self, n: usize, rng: &mut Rng) -> Vec<f32> {
        let d = self.dim;
        let real = n.min(self.real_count());
        let mut out = Vec::with_capacity(n * d);
        out.extend_from_slice(&self.real[..real * d]);
        let mut z = vec![0.0f32; d];
        for _ in real..n {
            z.iter_mut().for_each(|v| *v = rng.gaussian());
            let start = out.len();
            for row in 0..d {
                let l = &self.cholesky[row * d..row * d + row + 1];
                let x: f32 = l.iter().zip(&z).map(|(a, b)| a * b).sum();
                out.push(self.mean[row] + x);
            }
            normalise(&mut out[start..]);
        }
        out
    }

    /// `q` probes spread evenly over the real ones (LFW's and the mirrored faces).
    fn queries(&self, q: usize) -> Vec<Vec<f32>> {
        let total = self.probes.len() / self.dim;
        let q = q.min(total).max(1);
        (0..q)
            .map(|i| {
                let row = i * total / q;
                self.probes[row * self.dim..(row + 1) * self.dim].to_vec()
            })
            .collect()
    }
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn identity_id(row: usize) -> String {
    format!("t{row:07}")
}

/// Exact search's best template per query, with its per-query latency.
fn exact(
    dim: usize,
    templates: &[f32],
    queries: &[Vec<f32>],
) -> anyhow::Result<(Vec<i64>, Vec<f64>)> {
    let mut flat = index_factory(dim as u32, "Flat", MetricType::InnerProduct)?;
    flat.add(templates)?;
    let mut best = Vec::with_capacity(queries.len());
    let mut ms = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let hit = flat.search(q, 1)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        best.push(hit.labels[0].get().map_or(-1, |l| l as i64));
    }
    ms.sort_by(f64::total_cmp);
    Ok((best, ms))
}

fn entries(templates: &[f32], dim: usize, first_row: usize) -> Vec<IdentityEntry> {
    templates
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, t)| {
            let row = first_row + i;
            IdentityEntry {
                identity_id: identity_id(row),
                display_name: String::new(),
                metadata: BTreeMap::new(),
                created_at_unix_ms: 0,
                faces: vec![(row as i64, t.to_vec())],
            }
        })
        .collect()
}

fn search(
    gallery: &Gallery,
    queries: &[Vec<f32>],
    truth: &[i64],
) -> anyhow::Result<(Vec<f64>, f64)> {
    let mut ms = Vec::with_capacity(queries.len());
    let mut hits = 0;
    for (q, want) in queries.iter().zip(truth) {
        let t = Instant::now();
        let found = gallery.identify(q, 1)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        if found.first().map(|c| c.face_id) == Some(*want) {
            hits += 1;
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms, hits as f64 / queries.len() as f64))
}

fn in_process(
    args: &Args,
    data: &Data,
    n: usize,
    templates: &[f32],
    queries: &[Vec<f32>],
    truth: &[i64],
) -> anyhow::Result<()> {
    let d = data.dim;
    let spec = args.spec(None)?;
    let before = resident_bytes();
    let started = Instant::now();
    let gallery = Gallery::new(d, &spec)?;
    for (c, chunk) in templates.chunks(50_000 * d).enumerate() {
        gallery.put_many(entries(chunk, d, c * 50_000))?;
    }
    let build_s = started.elapsed().as_secs_f64();
    let per_template = resident_bytes().saturating_sub(before) as f64 / n as f64;
    let dir = std::env::temp_dir().join(format!("vargid-bench-gallery-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("g.faiss");
    let t = Instant::now();
    gallery.write_snapshot(&path)?;
    let write_s = t.elapsed().as_secs_f64();
    let snapshot_mb = std::fs::metadata(&path)?.len() as f64 / 1e6;
    drop(gallery);
    let (knob, settings) = args.describe();
    println!(
        "\n{n} templates, {} ({settings}): build {build_s:.1} s, {per_template:.0} B \
         resident per template (index and records), snapshot {snapshot_mb:.0} MB written in \
         {write_s:.1} s\n",
        spec.description
    );
    println!("| {knob} | snapshot load (s) | p50 (ms) | p99 (ms) | recall@1 vs exact |\n|---:|---:|---:|---:|---:|");
    for &ef in &args.sweep {
        let tuned = args.spec(Some(ef))?;
        let t = Instant::now();
        let gallery = Gallery::from_snapshot(d, &tuned, &path, entries(templates, d, 0))
            .map_err(|r| anyhow::anyhow!("snapshot refused: {}", r.reason))?;
        let load_s = t.elapsed().as_secs_f64();
        let (ms, recall) = search(&gallery, queries, truth)?;
        println!(
            "| {ef} | {load_s:.1} | {:.3} | {:.3} | {recall:.4} |",
            quantile(&ms, 0.5),
            quantile(&ms, 0.99)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn model_of(info: &pb::ServiceInfo) -> pb::ModelTag {
    pb::ModelTag {
        name: info.model_name.clone(),
        version: info.model_version.clone(),
        embedding_size: info.embedding_size,
    }
}

fn probe(model: &pb::ModelTag, q: &[f32]) -> pb::IdentifyRequest {
    pb::IdentifyRequest {
        gallery: "bench".into(),
        top_k: 1,
        probe_template: Some(pb::ProbeTemplate {
            model: Some(model.clone()),
            embedding: q.to_vec(),
        }),
        ..Default::default()
    }
}

type Client = FaceServiceClient<tonic::transport::Channel>;

async fn import(
    client: &mut Client,
    model: &pb::ModelTag,
    templates: &[f32],
    dim: usize,
    first_row: usize,
) -> anyhow::Result<()> {
    let identities = templates
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, t)| pb::ExportedIdentity {
            identity: Some(pb::Identity {
                identity_id: identity_id(first_row + i),
                ..Default::default()
            }),
            templates: vec![pb::Template {
                face_id: 0,
                embedding: t.to_vec(),
            }],
        })
        .collect();
    client
        .import_gallery(pb::ImportGalleryRequest {
            gallery: "bench".into(),
            model: Some(model.clone()),
            identities,
        })
        .await?;
    Ok(())
}

/// Identify by template over `queries`: sorted latencies (ms) and the best identity ids.
async fn identify_all(
    client: &mut Client,
    model: &pb::ModelTag,
    queries: &[Vec<f32>],
) -> anyhow::Result<(Vec<f64>, Vec<String>)> {
    let mut ms = Vec::with_capacity(queries.len());
    let mut top = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let answer = client.identify(probe(model, q)).await?.into_inner();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        top.push(
            answer
                .faces
                .first()
                .and_then(|f| f.candidates.first())
                .map(|c| c.identity_id.clone())
                .unwrap_or_default(),
        );
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms, top))
}

async fn through_service(
    args: &Args,
    data: &Data,
    n: usize,
    templates: &[f32],
    queries: &[Vec<f32>],
    truth: &[i64],
) -> anyhow::Result<()> {
    let d = data.dim;
    let dir = std::env::temp_dir().join(format!("vargid-bench-gallery-svc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let service = Service::start_in(&dir, &[]).await?;
    let mut client = FaceServiceClient::new(connect(&service.addr).await?)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let info = client
        .get_service_info(pb::GetServiceInfoRequest {})
        .await?
        .into_inner();
    anyhow::ensure!(
        info.embedding_size as usize == d,
        "the server's model is {}-d, the data {d}-d",
        info.embedding_size
    );
    let model = model_of(&info);
    let created = client
        .create_gallery(pb::CreateGalleryRequest {
            name: "bench".into(),
            index: args.index.clone(),
            match_threshold: None,
            index_parameters: Some(match args.index.as_str() {
                "ivf" => pb::IndexParameters {
                    ivf_nlist: Some(args.nlist),
                    ivf_nprobe: Some(args.nprobe),
                    ..Default::default()
                },
                "ivfpq" => pb::IndexParameters {
                    ivf_nlist: Some(args.nlist),
                    ivf_nprobe: Some(args.nprobe),
                    ivf_rerank: args.rerank,
                    ..Default::default()
                },
                _ => pb::IndexParameters {
                    hnsw_m: Some(args.m),
                    hnsw_ef_construction: Some(args.ef_construction),
                    hnsw_ef_search: Some(args.ef_search),
                    ..Default::default()
                },
            }),
        })
        .await?
        .into_inner();
    let idle_rss = service.resident_bytes()?;
    const PAGE: usize = 5000;
    let started = Instant::now();
    for (c, chunk) in templates.chunks(PAGE * d).enumerate() {
        import(&mut client, &model, chunk, d, c * PAGE).await?;
    }
    let import_s = started.elapsed().as_secs_f64();
    let rss = service.resident_bytes()?;
    let truth_ids: Vec<String> = truth.iter().map(|&r| identity_id(r as usize)).collect();
    let recall = |top: &[String]| {
        top.iter().zip(&truth_ids).filter(|(a, b)| a == b).count() as f64 / top.len() as f64
    };
    let (ms, top) = identify_all(&mut client, &model, queries).await?;

    // Enrolling into the full gallery: one identity per call, durable and indexed.
    let mut enroll_ms = Vec::new();
    let mut rng = Rng(99);
    let extra = data.gallery(data.real_count() + 200, &mut rng);
    for (i, t) in extra[data.real_count() * d..].chunks_exact(d).enumerate() {
        let t0 = Instant::now();
        import(&mut client, &model, t, d, n + i).await?;
        enroll_ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    enroll_ms.sort_by(f64::total_cmp);
    service.stop().await?;

    let t = Instant::now();
    let restarted = Service::start_in(&dir, &[]).await?;
    let startup_s = t.elapsed().as_secs_f64();
    let mut client = FaceServiceClient::new(connect(&restarted.addr).await?);
    let (ms_after, top_after) = identify_all(&mut client, &model, queries).await?;
    let same = top_after.iter().zip(&top).filter(|(a, b)| a == b).count();

    // Deletes: the probes' best identities leave every answer at once.
    let doomed: std::collections::BTreeSet<&String> =
        top.iter().take(100).filter(|t| !t.is_empty()).collect();
    for id in &doomed {
        client
            .delete_identity(pb::DeleteIdentityRequest {
                identity_id: (*id).clone(),
                gallery: "bench".into(),
            })
            .await?;
    }
    let (_, top_deleted) =
        identify_all(&mut client, &model, &queries[..100.min(queries.len())]).await?;
    let returned = top_deleted.iter().filter(|t| doomed.contains(t)).count();
    restarted.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "| {n} | {} {} | {import_s:.0} | {:.0} | {:.2} | {:.2} | {:.4} | {startup_s:.1} | {:.2} / {:.4} | {same}/{} | {:.1} / {:.1} | {returned} of {} |",
        created.index,
        args.describe().1,
        rss.saturating_sub(idle_rss) as f64 / n as f64,
        quantile(&ms, 0.5),
        quantile(&ms, 0.99),
        recall(&top),
        quantile(&ms_after, 0.5),
        recall(&top_after),
        top.len(),
        quantile(&enroll_ms, 0.5),
        quantile(&enroll_ms, 0.99),
        doomed.len(),
    );
    Ok(())
}

async fn durable_enrollments(n: usize, concurrency: usize, dim: usize) -> anyhow::Result<f64> {
    let dir = std::env::temp_dir().join(format!(
        "vargid-bench-store-{}-{concurrency}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(Store::open(
        &dir.join("galleries.sqlite3"),
        Box::new(|_| {}),
    )?);
    store
        .apply(Change::CreateGallery(GalleryRecord {
            name: "g".into(),
            index: "IDMap2,Flat".into(),
            index_parameters: String::new(),
            match_threshold: 0.4,
            model: ModelTag {
                name: "bench".into(),
                version: "1".into(),
                embedding_size: dim,
            },
            created_at_unix_ms: 0,
            seq: 0,
        }))
        .await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let store = store.clone();
        let per = n / concurrency;
        tasks.spawn(async move {
            let mut rng = Rng(w as u64 + 7);
            for i in 0..per {
                let mut v: Vec<f32> = (0..dim).map(|_| rng.gaussian()).collect();
                normalise(&mut v);
                store
                    .apply(Change::Enroll {
                        gallery: "g".into(),
                        identity_id: format!("w{w}-{i}"),
                        display_name: None,
                        metadata: BTreeMap::new(),
                        embeddings: vec![v],
                        at_unix_ms: 0,
                    })
                    .await?;
            }
            anyhow::Ok(per)
        });
    }
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        done += r??;
    }
    let rate = done as f64 / started.elapsed().as_secs_f64();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(rate)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let data = Data::load(&args.data)?;
    let queries = data.queries(args.queries);
    println!(
        "Gallery of {}-d embeddings: {} real templates (the shipped model on ../shared/data/faces \
         and LFW), then Gaussian distractors fitted to them; {} real probes (other LFW photos of \
         enrolled people, mirrored training faces); one template per identity; recall@1 against \
         exact search (FAISS flat); OMP_NUM_THREADS={}.",
        data.dim,
        data.real_count(),
        queries.len(),
        std::env::var("OMP_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.service {
        println!(
            "\nThrough the server (its defaults; ImportGallery pages of 5,000; Identify by \
             template, one call at a time; resident memory added by the templates; a clean \
             restart from the snapshot; 200 single-identity imports into the full gallery; \
             deletes of 100 probes' best identities):\n"
        );
        println!("| templates | index | import (s) | B/template (RSS) | p50 (ms) | p99 (ms) | recall@1 | restart (s) | after restart p50 / recall | same answers | enroll p50 / p99 (ms) | deleted returned |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    }
    let mut rng = Rng(2024);
    for &n in &args.sizes {
        let templates = data.gallery(n, &mut rng);
        let (truth, exact_ms) = exact(data.dim, &templates, &queries)?;
        if args.service {
            runtime.block_on(through_service(
                &args, &data, n, &templates, &queries, &truth,
            ))?;
        } else {
            println!(
                "\n{n} templates: exact search (FAISS flat, one query at a time) p50 {:.2} ms, p99 {:.2} ms",
                quantile(&exact_ms, 0.5),
                quantile(&exact_ms, 0.99)
            );
            in_process(&args, &data, n, &templates, &queries, &truth)?;
        }
    }

    if args.enrollments > 0 {
        println!(
            "\nDurable enrollments per second (store only: SQLite WAL, synchronous=FULL, group \
             commit; one {}-d template each; inference excluded), {} enrollments:\n",
            data.dim, args.enrollments
        );
        println!("| concurrent writers | enrollments/s |\n|---:|---:|");
        for c in [1, 16, 64] {
            let rate = runtime.block_on(durable_enrollments(args.enrollments, c, data.dim))?;
            println!("| {c} | {rate:.0} |");
        }
    }
    Ok(())
}
