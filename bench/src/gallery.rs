//! `vargid-bench gallery`: Identify's search (the gallery's `identify`, grouping by
//! identity included) at several gallery sizes, flat (exact) vs an approximate index,
//! with recall@1 against the exact answer; and durable enrollments per second through
//! the store (group commit), inference excluded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use vargid_index::{Gallery, IdentityEntry};
use vargid_store::{Change, GalleryRecord, ModelTag, Store};

const DIM: usize = 512;

struct Args {
    sizes: Vec<usize>,
    queries: usize,
    approx: String,
    ef_search: usize,
    enrollments: usize,
}

fn parse(argv: Vec<String>) -> anyhow::Result<Args> {
    let mut args = Args {
        sizes: vec![10_000, 100_000, 1_000_000],
        queries: 200,
        approx: "IDMap2,HNSW32".into(),
        ef_search: 64,
        enrollments: 3000,
    };
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--sizes" => {
                args.sizes = value()?
                    .split(',')
                    .map(|v| v.trim().parse().context("sizes"))
                    .collect::<anyhow::Result<_>>()?
            }
            "--queries" => args.queries = value()?.parse()?,
            "--approx" => args.approx = value()?,
            "--ef-search" => args.ef_search = value()?.parse()?,
            "--enrollments" => args.enrollments = value()?.parse()?,
            other => bail!(
                "unknown argument {other}; usage: vargid-bench gallery [--sizes 10000,100000,1000000] \
                 [--queries 200] [--approx IDMap2,HNSW32] [--ef-search 64] [--enrollments 3000]"
            ),
        }
    }
    Ok(args)
}

/// xorshift64* and Box-Muller: Gaussian vectors, so random directions are uniform.
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
    fn unit(&mut self) -> Vec<f32> {
        normalised((0..DIM).map(|_| self.gaussian()).collect())
    }
}

fn normalised(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

struct SearchResult {
    build_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    top1: Vec<String>,
}

fn measure(
    description: &str,
    templates: &[Vec<f32>],
    queries: &[Vec<f32>],
    ef_search: usize,
) -> anyhow::Result<SearchResult> {
    let gallery = Gallery::new(DIM, description)?;
    let started = Instant::now();
    // One template per identity, added in chunks to bound the temporary copies.
    for (c, chunk) in templates.chunks(50_000).enumerate() {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let id = (c * 50_000 + i) as i64;
                IdentityEntry {
                    identity_id: format!("id{id:07}"),
                    display_name: String::new(),
                    metadata: BTreeMap::new(),
                    created_at_unix_ms: 0,
                    faces: vec![(id, t.clone())],
                }
            })
            .collect();
        gallery.put_many(entries)?;
    }
    let build_s = started.elapsed().as_secs_f64();
    if description.contains("HNSW") {
        gallery.set_search_parameter("efSearch", ef_search as f64)?;
    }
    let mut latencies = Vec::with_capacity(queries.len());
    let mut top1 = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let hits = gallery.identify(q, 1)?;
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        top1.push(
            hits.first()
                .map(|c| c.identity_id.clone())
                .unwrap_or_default(),
        );
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    Ok(SearchResult {
        build_s,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        top1,
    })
}

async fn durable_enrollments(n: usize, concurrency: usize) -> anyhow::Result<f64> {
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
            match_threshold: 0.4,
            model: ModelTag {
                name: "bench".into(),
                version: "1".into(),
                embedding_size: DIM,
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
                store
                    .apply(Change::Enroll {
                        gallery: "g".into(),
                        identity_id: format!("w{w}-{i}"),
                        display_name: None,
                        metadata: BTreeMap::new(),
                        embeddings: vec![rng.unit()],
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

pub fn run(argv: Vec<String>) -> anyhow::Result<()> {
    let args = parse(argv)?;
    let mut rng = Rng(2024);
    println!(
        "Identify search over {DIM}-d unit vectors, one template per identity, {} queries per size; \
         each query is a template plus an equal-norm random perturbation (cosine about 0.7 to \
         its true match, like another photo of an enrolled person). Recall@1: the approximate \
         index's best identity equals the exact (flat) one. Single-threaded search \
         (OMP_NUM_THREADS={}).\n",
        args.queries,
        std::env::var("OMP_NUM_THREADS").unwrap_or_else(|_| "unset".into())
    );
    println!("| templates | index | build (s) | p50 (ms) | p99 (ms) | recall@1 vs exact |\n|---:|---|---:|---:|---:|---:|");
    for &n in &args.sizes {
        let templates: Vec<Vec<f32>> = (0..n).map(|_| rng.unit()).collect();
        let queries: Vec<Vec<f32>> = (0..args.queries)
            .map(|_| {
                let t = &templates[(rng.next() % n as u64) as usize];
                let noise = rng.unit();
                normalised(t.iter().zip(&noise).map(|(a, b)| a + b).collect())
            })
            .collect();
        let exact = measure("IDMap2,Flat", &templates, &queries, args.ef_search)?;
        println!(
            "| {n} | IDMap2,Flat | {:.1} | {:.2} | {:.2} | 1.000 |",
            exact.build_s, exact.p50_ms, exact.p99_ms
        );
        let approx = measure(&args.approx, &templates, &queries, args.ef_search)?;
        let hits = approx
            .top1
            .iter()
            .zip(&exact.top1)
            .filter(|(a, b)| a == b)
            .count();
        println!(
            "| {n} | {} (efSearch {}) | {:.1} | {:.2} | {:.2} | {:.3} |",
            args.approx,
            args.ef_search,
            approx.build_s,
            approx.p50_ms,
            approx.p99_ms,
            hits as f64 / queries.len() as f64
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "\nDurable enrollments per second (store only: SQLite WAL, synchronous=FULL, group \
         commit; one {DIM}-d template each; inference excluded), {} enrollments:\n",
        args.enrollments
    );
    println!("| concurrent writers | enrollments/s |\n|---:|---:|");
    for c in [1, 16, 64] {
        let rate = runtime.block_on(durable_enrollments(args.enrollments, c))?;
        println!("| {c} | {rate:.0} |");
    }
    Ok(())
}
