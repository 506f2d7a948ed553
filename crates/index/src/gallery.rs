//! Identities and templates kept in memory beside a FAISS index.
//!
//! Lock order, to stay deadlock-free: `records` before `index`. Searches take the
//! index alone, then read `records`; a template deleted between the two is skipped.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use faiss::index::autotune::ParameterSpace;
use faiss::index::IndexImpl;
use faiss::selector::IdSelector;
use faiss::{index_factory, Idx, Index, MetricType};

use crate::error::IndexError;
use crate::spec::IndexSpec;

/// Id of one face template, unique within a gallery.
pub type FaceId = i64;

/// An enrolled person.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityRecord {
    pub identity_id: String,
    pub display_name: String,
    pub metadata: BTreeMap<String, String>,
    /// Oldest first.
    pub face_ids: Vec<FaceId>,
    pub created_at_unix_ms: i64,
}

/// Why a snapshot was not used, with the entries handed back for a rebuild.
#[derive(Debug)]
pub struct SnapshotRejected {
    pub reason: String,
    pub entries: Vec<IdentityEntry>,
}

/// An identity and templates to put into the gallery.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityEntry {
    pub identity_id: String,
    pub display_name: String,
    pub metadata: BTreeMap<String, String>,
    pub created_at_unix_ms: i64,
    pub faces: Vec<(FaceId, Vec<f32>)>,
}

/// One identity in a search answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub identity_id: String,
    pub display_name: String,
    /// Cosine similarity of the identity's best template.
    pub score: f32,
    pub face_id: FaceId,
}

/// A page of identities in ascending id order.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityPage {
    pub identities: Vec<IdentityRecord>,
    /// The last id of this page when more follow.
    pub next_after: Option<String>,
    pub total: usize,
}

#[derive(Default)]
struct Records {
    identities: BTreeMap<String, IdentityRecord>,
    /// Each template's identity. The vectors live in the index alone (IDMap2 hands
    /// them back by id), so a million templates cost one copy, not two.
    faces: HashMap<FaceId, Arc<str>>,
    /// Removed templates whose vectors are still in the index.
    unreachable: usize,
}

impl Records {
    /// Adds the entries' templates and sets their identities' fields, keeping the
    /// template lists of identities that already exist.
    fn insert(&mut self, entries: Vec<IdentityEntry>) {
        for entry in entries {
            let face_ids: Vec<FaceId> = entry.faces.iter().map(|(id, _)| *id).collect();
            let owner: Arc<str> = Arc::from(entry.identity_id.as_str());
            for id in &face_ids {
                self.faces.insert(*id, owner.clone());
            }
            let identity = self
                .identities
                .entry(entry.identity_id.clone())
                .or_insert_with(|| IdentityRecord {
                    identity_id: entry.identity_id,
                    display_name: String::new(),
                    metadata: BTreeMap::new(),
                    face_ids: Vec::new(),
                    created_at_unix_ms: entry.created_at_unix_ms,
                });
            identity.display_name = entry.display_name;
            identity.metadata = entry.metadata;
            identity.created_at_unix_ms = entry.created_at_unix_ms;
            identity.face_ids.extend(face_ids);
        }
    }
}

/// A gallery of identities searchable by face embedding.
///
/// An IVF gallery needs training on templates it does not have when it is created:
/// until it holds `IndexSpec::train_size` templates it keeps them in an exact flat
/// index ("staging"); the put that reaches that size trains the IVF index on all of
/// them and moves them into it.
pub struct Gallery {
    dim: usize,
    spec: IndexSpec,
    index: Mutex<IndexImpl>,
    /// True while an IVF gallery's templates are in the staging flat index (changed
    /// only with the index lock held).
    staging: AtomicBool,
    records: RwLock<Records>,
}

impl std::fmt::Debug for Gallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gallery")
            .field("dim", &self.dim)
            .field("spec", &self.spec)
            .finish()
    }
}

impl Gallery {
    /// An empty gallery of `dim`-dimensional embeddings, indexed as `spec` says.
    pub fn new(dim: usize, spec: &IndexSpec) -> Result<Self, IndexError> {
        let description = spec.faiss_description();
        let invalid = |reason: &str| IndexError::InvalidIndex {
            description: spec.description.clone(),
            reason: reason.to_string(),
        };
        let dim_u32 = u32::try_from(dim).map_err(|_| invalid("dimension too large"))?;
        let index = index_factory(dim_u32, &description, MetricType::InnerProduct)
            .map_err(|e| invalid(&e.to_string()))?;
        if !index.is_trained() && spec.train_size().is_none() {
            // PQ and other coded layouts need training the gallery does not do.
            return Err(invalid(
                "layouts that need training are not supported, except ivf; use flat, hnsw or ivf",
            ));
        }
        let staging = spec.train_size().is_some();
        let index = if staging {
            index_factory(dim_u32, "IDMap2,Flat", MetricType::InnerProduct)?
        } else {
            apply_parameters(&index, spec)?;
            index
        };
        Ok(Self {
            dim,
            spec: spec.clone(),
            index: Mutex::new(index),
            staging: AtomicBool::new(staging),
            records: RwLock::new(Records::default()),
        })
    }

    pub fn spec(&self) -> &IndexSpec {
        &self.spec
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn face_count(&self) -> usize {
        self.records().faces.len()
    }

    pub fn identity_count(&self) -> usize {
        self.records().identities.len()
    }

    /// Sets identities (creating those that are new, replacing the name, metadata and
    /// creation time of the others) and adds their templates under the given ids, in
    /// one FAISS call. Atomic: on error nothing changed. Used to mirror the durable
    /// record, which assigns the ids.
    pub fn put_many(&self, entries: Vec<IdentityEntry>) -> Result<(), IndexError> {
        for entry in &entries {
            for (_, e) in &entry.faces {
                self.check_dim(e)?;
            }
        }
        let mut records = self.records_mut();
        let flat: Vec<f32> = entries
            .iter()
            .flat_map(|e| e.faces.iter().flat_map(|(_, v)| v.iter().copied()))
            .collect();
        let ids: Vec<Idx> = entries
            .iter()
            .flat_map(|e| e.faces.iter().map(|(id, _)| Idx::new(*id as u64)))
            .collect();
        let mut index = self.index();
        if !ids.is_empty() {
            index.add_with_ids(&flat, &ids)?;
        }
        records.insert(entries);
        self.train_when_due(&mut index, &mut records);
        Ok(())
    }

    /// Whether an IVF gallery still searches its staging flat index (too few templates
    /// to train on yet); None for other layouts.
    pub fn ivf_staging(&self) -> Option<bool> {
        self.spec.ivf.map(|_| self.staging.load(Ordering::Acquire))
    }

    /// Trains the IVF index and moves the templates into it, once a staging gallery
    /// holds enough. A failure leaves the gallery staging (exact, and correct): the
    /// next put tries again.
    fn train_when_due(&self, index: &mut IndexImpl, records: &mut Records) {
        let due = self.staging.load(Ordering::Acquire)
            && self
                .spec
                .train_size()
                .is_some_and(|size| records.faces.len() >= size);
        if !due {
            return;
        }
        if let Ok(trained) = self.trained_ivf(index, records) {
            *index = trained;
            // Removed templates' vectors stayed in the staging index; they are not copied.
            records.unreachable = 0;
            self.staging.store(false, Ordering::Release);
        }
    }

    /// A trained IVF index holding the reachable templates of `staged`.
    fn trained_ivf(&self, staged: &IndexImpl, records: &Records) -> Result<IndexImpl, IndexError> {
        let ids: Vec<FaceId> = records.faces.keys().copied().collect();
        let mut vectors = vec![0.0f32; ids.len() * self.dim];
        for (id, out) in ids.iter().zip(vectors.chunks_exact_mut(self.dim)) {
            staged.reconstruct(Idx::new(*id as u64), out)?;
        }
        let dim = u32::try_from(self.dim).unwrap_or(u32::MAX);
        let mut ivf = index_factory(dim, self.spec.faiss_description(), MetricType::InnerProduct)?;
        ivf.train(&vectors)?;
        if self.spec.rerank().is_none() {
            enable_direct_map(&ivf, &self.spec)?;
        }
        let labels: Vec<Idx> = ids.iter().map(|&id| Idx::new(id as u64)).collect();
        ivf.add_with_ids(&vectors, &labels)?;
        apply_parameters(&ivf, &self.spec)?;
        Ok(ivf)
    }

    /// Writes the FAISS index to `path` (a snapshot for fast start).
    pub fn write_snapshot(&self, path: &Path) -> Result<(), IndexError> {
        let path_str = path.to_string_lossy();
        faiss::write_index(&*self.index(), path_str.as_ref())?;
        Ok(())
    }

    /// Builds a gallery from a FAISS snapshot and the identities it must hold. When
    /// the snapshot is unreadable or does not hold every one of these templates (stale
    /// or foreign), the entries come back so the caller can rebuild with
    /// [`Gallery::put_many`] without having kept a copy of every embedding.
    ///
    /// A snapshot may also hold vectors of templates removed before it was written
    /// (HNSW and IVF keep them, see [`Gallery::remove`]): they come back unreachable,
    /// as they were, so that a few deletions do not cost a full rebuild at start-up.
    /// The caller must only offer a snapshot that reflects the current record (the
    /// server checks its sequence number), so every extra id is a removed template.
    pub fn from_snapshot(
        dim: usize,
        spec: &IndexSpec,
        snapshot: &Path,
        entries: Vec<IdentityEntry>,
    ) -> Result<Self, SnapshotRejected> {
        let reject = |reason: String, entries| SnapshotRejected { reason, entries };
        let path_str = snapshot.to_string_lossy();
        let index = match faiss::read_index(path_str.as_ref()) {
            Ok(index) => index,
            Err(e) => return Err(reject(format!("unreadable: {e}"), entries)),
        };
        let expected: usize = entries.iter().map(|e| e.faces.len()).sum();
        let held = index.ntotal() as usize;
        if index.d() as usize != dim || held < expected {
            return Err(reject("holds other templates".into(), entries));
        }
        if held > expected && spec.removes_in_place() {
            // A flat index drops removed vectors at once: extra ones mean another record.
            return Err(reject("holds other templates".into(), entries));
        }
        // An IVF gallery's snapshot is its trained index, or its staging flat one (no
        // `nprobe`) when it was written before the gallery held enough to train.
        let applied = apply_parameters(&index, spec);
        let staging = spec.train_size().is_some() && applied.is_err();
        let applied = if staging {
            Ok(())
        } else {
            // A compressed layout reads vectors back from its re-rank storage instead.
            applied.and_then(|()| match spec.ivf {
                Some(ivf) if ivf.rerank.is_none() => enable_direct_map(&index, spec),
                _ => Ok(()),
            })
        };
        if let Err(e) = applied {
            return Err(reject(format!("parameters not applicable: {e}"), entries));
        }
        let mut scratch = vec![0.0f32; dim];
        // IDMap2 can look up every id (IVF with its direct map, set above); any miss
        // means the snapshot is not ours.
        let all_present = entries.iter().flat_map(|e| e.faces.iter()).all(|(id, _)| {
            index
                .reconstruct(Idx::new(*id as u64), &mut scratch)
                .is_ok()
        });
        if !all_present {
            return Err(reject("holds other template ids".into(), entries));
        }
        let gallery = Self {
            dim,
            spec: spec.clone(),
            index: Mutex::new(index),
            staging: AtomicBool::new(staging),
            records: RwLock::new(Records::default()),
        };
        {
            let mut records = gallery.records_mut();
            records.insert(entries);
            records.unreachable = held - expected;
            let mut index = gallery.index();
            gallery.train_when_due(&mut index, &mut records);
        }
        Ok(gallery)
    }

    /// The `top_k` identities whose best template is closest to `query`, best first.
    pub fn identify(&self, query: &[f32], top_k: usize) -> Result<Vec<Candidate>, IndexError> {
        self.check_dim(query)?;
        let mut k = top_k.saturating_mul(4).saturating_add(16);
        loop {
            let (hits, total) = {
                let mut index = self.index();
                let total = index.ntotal() as usize;
                if total == 0 || top_k == 0 {
                    return Ok(Vec::new());
                }
                k = k.min(total);
                if !self.staging.load(Ordering::Acquire) {
                    set_rerank_factor(&index, &self.spec, k)?;
                }
                (index.search(query, k)?, total)
            };
            let candidates = self.best_per_identity(&hits, top_k);
            // Several templates of one identity can fill the k nearest; widen until
            // top_k distinct identities are found or every template was seen.
            if candidates.len() >= top_k || k >= total {
                return Ok(candidates);
            }
            k = k.saturating_mul(4);
        }
    }

    fn best_per_identity(&self, hits: &faiss::index::SearchResult, top_k: usize) -> Vec<Candidate> {
        let records = self.records();
        let mut out: Vec<Candidate> = Vec::with_capacity(top_k);
        // FAISS returns hits best first, so an identity's first hit is its best.
        for (score, label) in hits.distances.iter().zip(&hits.labels) {
            let Some(face_id) = label.get() else { continue };
            let face_id = face_id as FaceId;
            let Some(owner) = records.faces.get(&face_id) else {
                continue;
            };
            if out.iter().any(|c| *c.identity_id == **owner) {
                continue;
            }
            let display_name = records
                .identities
                .get(&**owner)
                .map(|i| i.display_name.clone())
                .unwrap_or_default();
            out.push(Candidate {
                identity_id: owner.to_string(),
                display_name,
                score: *score,
                face_id,
            });
            if out.len() == top_k {
                break;
            }
        }
        out
    }

    /// Cosine similarity of `query` to the identity's closest template, and that template.
    pub fn verify(&self, query: &[f32], identity_id: &str) -> Result<(f32, FaceId), IndexError> {
        self.check_dim(query)?;
        let records = self.records();
        let identity = records
            .identities
            .get(identity_id)
            .ok_or_else(|| IndexError::IdentityNotFound(identity_id.to_string()))?;
        // Lock order: records (held) before index.
        let index = self.index();
        let mut template = vec![0.0f32; self.dim];
        let mut best: Option<(f32, FaceId)> = None;
        for &id in &identity.face_ids {
            index.reconstruct(Idx::new(id as u64), &mut template)?;
            let score = dot(query, &template);
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, id));
            }
        }
        best.ok_or_else(|| IndexError::IdentityNotFound(identity_id.to_string()))
    }

    /// Removes an identity and its templates. Returns how many templates were removed.
    ///
    /// They leave every answer at once. Their vectors leave a flat index at once too;
    /// HNSW cannot remove vectors and IVF's removal under an id map is unreliable, so
    /// for those the vectors stay in the structure, unreachable (searches skip ids
    /// without a record), until the index is next rebuilt from the durable record.
    pub fn remove(&self, identity_id: &str) -> Result<usize, IndexError> {
        let mut records = self.records_mut();
        let face_ids = records
            .identities
            .get(identity_id)
            .map(|i| i.face_ids.clone())
            .ok_or_else(|| IndexError::IdentityNotFound(identity_id.to_string()))?;
        if self.spec.removes_in_place() {
            let ids: Vec<Idx> = face_ids.iter().map(|&id| Idx::new(id as u64)).collect();
            self.index().remove_ids(&IdSelector::batch(&ids)?)?;
        } else {
            records.unreachable += face_ids.len();
        }
        records.identities.remove(identity_id);
        for id in &face_ids {
            records.faces.remove(id);
        }
        Ok(face_ids.len())
    }

    /// Vectors of removed templates still inside the index structure (see [`Gallery::remove`]).
    pub fn unreachable_vectors(&self) -> usize {
        self.records().unreachable
    }

    /// Vectors inside the index structure, reachable or not.
    pub fn indexed_vectors(&self) -> usize {
        self.index().ntotal() as usize
    }

    pub fn get(&self, identity_id: &str) -> Option<IdentityRecord> {
        self.records().identities.get(identity_id).cloned()
    }

    /// Up to `limit` identities with ids greater than `after`, in ascending order.
    pub fn list(&self, after: Option<&str>, limit: usize) -> IdentityPage {
        let records = self.records();
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut range = records
            .identities
            .range::<str, _>((lower, Bound::Unbounded))
            .map(|(_, r)| r);
        let identities: Vec<IdentityRecord> = range.by_ref().take(limit).cloned().collect();
        let more = range.next().is_some();
        IdentityPage {
            next_after: more
                .then(|| identities.last().map(|r| r.identity_id.clone()))
                .flatten(),
            identities,
            total: records.identities.len(),
        }
    }

    fn check_dim(&self, v: &[f32]) -> Result<(), IndexError> {
        if v.len() != self.dim {
            return Err(IndexError::DimensionMismatch {
                expected: self.dim,
                got: v.len(),
            });
        }
        Ok(())
    }

    // A panic while a lock was held cannot leave the records half-updated (each
    // mutation is applied after the fallible FAISS call), so poisoning is ignored.
    fn records(&self) -> RwLockReadGuard<'_, Records> {
        self.records.read().unwrap_or_else(|e| e.into_inner())
    }

    fn records_mut(&self) -> RwLockWriteGuard<'_, Records> {
        self.records.write().unwrap_or_else(|e| e.into_inner())
    }

    fn index(&self) -> MutexGuard<'_, IndexImpl> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sets the spec's search and construction parameters on a FAISS index (an IVF
/// gallery's trained index, not its staging one).
fn apply_parameters(index: &IndexImpl, spec: &IndexSpec) -> Result<(), IndexError> {
    if let Some(hnsw) = spec.hnsw {
        let space = ParameterSpace::new()?;
        space.set_index_parameter(index, "efConstruction", hnsw.ef_construction)?;
        space.set_index_parameter(index, "efSearch", hnsw.ef_search)?;
    }
    if let Some(ivf) = spec.ivf {
        ParameterSpace::new()?.set_index_parameter(index, "nprobe", ivf.nprobe)?;
    }
    Ok(())
}

/// Sets how many compressed-code candidates a compressed IVF index re-ranks on the
/// full vectors for a search of `k`: FAISS's `k_factor_rf` multiplies k, and the
/// gallery's setting is a count, so that widening k does not widen the re-rank.
fn set_rerank_factor(index: &IndexImpl, spec: &IndexSpec, k: usize) -> Result<(), IndexError> {
    let Some(rerank) = spec.rerank() else {
        return Ok(());
    };
    let factor = (rerank as usize).div_ceil(k.max(1)).max(1);
    ParameterSpace::new()?.set_index_parameter(index, "k_factor_rf", factor as f64)?;
    Ok(())
}

/// Gives the IVF index inside `IDMap2,IVF..` a direct map, without which it cannot hand
/// back a vector by id (Verify, the snapshot check). The C API offers the array kind,
/// which fits: IDMap2 numbers the inner vectors 0, 1, ... in the order it adds them.
/// Hand-written FFI because the `faiss` crate does not wrap these calls.
fn enable_direct_map(index: &IndexImpl, spec: &IndexSpec) -> Result<(), IndexError> {
    let failed = |reason: &str| IndexError::InvalidIndex {
        description: spec.description.clone(),
        reason: reason.to_string(),
    };
    // SAFETY: the pointers come from a live index owned by `index`; each cast returns
    // null unless the object is of that class, and null is checked before use.
    let code = unsafe {
        let id_map = faiss_sys::faiss_IndexIDMap2_cast(index.inner_ptr());
        if id_map.is_null() {
            return Err(failed("not an IDMap2 index"));
        }
        let ivf = faiss_sys::faiss_IndexIVF_cast(faiss_sys::faiss_IndexIDMap2_sub_index(id_map));
        if ivf.is_null() {
            return Err(failed("no IVF index inside the IDMap2"));
        }
        faiss_sys::faiss_IndexIVF_make_direct_map(ivf, 1)
    };
    if code != 0 {
        return Err(failed("FAISS could not build the IVF direct map"));
    }
    Ok(())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(description: &str) -> IndexSpec {
        IndexSpec::from_stored(description, "").unwrap()
    }

    fn unit(dim: usize, hot: usize) -> Vec<f32> {
        let mut v = vec![0.0; dim];
        v[hot] = 1.0;
        v
    }

    fn mix(dim: usize, a: usize, b: usize, wa: f32) -> Vec<f32> {
        let mut v = vec![0.0; dim];
        v[a] = wa;
        v[b] = (1.0 - wa * wa).sqrt();
        v
    }

    fn entry(identity: &str, name: &str, faces: Vec<(FaceId, Vec<f32>)>) -> IdentityEntry {
        IdentityEntry {
            identity_id: identity.into(),
            display_name: name.into(),
            metadata: BTreeMap::new(),
            created_at_unix_ms: 0,
            faces,
        }
    }

    #[test]
    fn put_identify_verify_remove() {
        let g = Gallery::new(8, &spec("IDMap2,Flat")).unwrap();
        assert!(g.identify(&unit(8, 0), 3).unwrap().is_empty());

        g.put_many(vec![
            entry("alice", "Alice", vec![(10, unit(8, 0)), (11, unit(8, 1))]),
            entry("bob", "", vec![(12, unit(8, 2))]),
        ])
        .unwrap();
        g.put_many(vec![entry("bob", "Bob", vec![(13, unit(8, 3))])])
            .unwrap();
        assert_eq!(g.get("bob").unwrap().face_ids, vec![12, 13]);
        assert_eq!(g.get("bob").unwrap().display_name, "Bob");

        let hits = g.identify(&mix(8, 1, 2, 0.8), 5).unwrap();
        assert_eq!(hits.len(), 2, "one candidate per identity: {hits:?}");
        assert_eq!(hits[0].identity_id, "alice");
        assert_eq!(hits[0].display_name, "Alice");
        assert_eq!(hits[0].face_id, 11);
        assert!((hits[0].score - 0.8).abs() < 1e-6);
        assert_eq!(hits[1].identity_id, "bob");

        let (score, face) = g.verify(&unit(8, 3), "bob").unwrap();
        assert_eq!(face, 13);
        assert!((score - 1.0).abs() < 1e-6);

        assert_eq!(g.remove("alice").unwrap(), 2);
        assert!(matches!(
            g.remove("alice"),
            Err(IndexError::IdentityNotFound(_))
        ));
        let hits = g.identify(&unit(8, 0), 5).unwrap();
        assert!(hits.iter().all(|c| c.identity_id != "alice"));
        assert_eq!(g.face_count(), 2);
    }

    #[test]
    fn top_k_counts_identities_not_templates() {
        let g = Gallery::new(4, &spec("IDMap2,Flat")).unwrap();
        // 40 near-identical templates of one identity crowd the nearest hits.
        let many: Vec<(FaceId, Vec<f32>)> = (0..40).map(|i| (i, mix(4, 0, 1, 0.99))).collect();
        g.put_many(vec![
            entry("crowd", "", many),
            entry("other", "", vec![(100, unit(4, 1))]),
        ])
        .unwrap();
        let hits = g.identify(&unit(4, 0), 2).unwrap();
        let ids: Vec<&str> = hits.iter().map(|c| c.identity_id.as_str()).collect();
        assert_eq!(ids, ["crowd", "other"]);
    }

    #[test]
    fn lists_in_pages() {
        let g = Gallery::new(4, &spec("IDMap2,Flat")).unwrap();
        for (i, name) in ["c", "a", "b", "d", "e"].into_iter().enumerate() {
            g.put_many(vec![entry(name, "", vec![(i as FaceId, unit(4, 0))])])
                .unwrap();
        }
        let p1 = g.list(None, 2);
        let ids: Vec<&str> = p1
            .identities
            .iter()
            .map(|r| r.identity_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(p1.next_after.as_deref(), Some("b"));
        assert_eq!(p1.total, 5);
        let p3 = g.list(Some("d"), 2);
        assert_eq!(p3.identities.len(), 1);
        assert_eq!(p3.next_after, None);
    }

    #[test]
    fn snapshots_restore_and_stale_ones_are_refused() {
        let dir = std::env::temp_dir().join(format!("vargid-index-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.faiss");
        let entries = vec![
            entry("a", "A", vec![(1, unit(4, 0)), (2, unit(4, 1))]),
            entry("b", "B", vec![(5, unit(4, 2))]),
        ];
        let g = Gallery::new(4, &spec("IDMap2,Flat")).unwrap();
        g.put_many(entries.clone()).unwrap();
        g.write_snapshot(&path).unwrap();

        let restored = Gallery::from_snapshot(4, &spec("IDMap2,Flat"), &path, entries.clone())
            .expect("an up-to-date snapshot is used");
        assert_eq!(
            restored.identify(&unit(4, 2), 1).unwrap(),
            g.identify(&unit(4, 2), 1).unwrap()
        );

        let mut more = entries.clone();
        more.push(entry("c", "", vec![(9, unit(4, 3))]));
        assert!(Gallery::from_snapshot(4, &spec("IDMap2,Flat"), &path, more).is_err());
        let mut other_ids = entries;
        other_ids[1].faces[0].0 = 6;
        assert!(Gallery::from_snapshot(4, &spec("IDMap2,Flat"), &path, other_ids).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn removal_from_hnsw_is_effective_at_once() {
        let g = Gallery::new(4, &spec("IDMap2,HNSW8")).unwrap();
        g.put_many(vec![
            entry("a", "", vec![(1, unit(4, 0))]),
            entry("b", "", vec![(2, mix(4, 0, 1, 0.9))]),
        ])
        .unwrap();
        assert_eq!(g.remove("a").unwrap(), 1);
        let hits = g.identify(&unit(4, 0), 1).unwrap();
        assert_eq!(hits[0].identity_id, "b");
        assert_eq!(g.unreachable_vectors(), 1);
    }

    #[test]
    fn hnsw_snapshot_keeps_removed_vectors_unreachable() {
        let dir = std::env::temp_dir().join(format!("vargid-index-hnsw-rm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.faiss");
        let hnsw = spec("IDMap2,HNSW8");
        let g = Gallery::new(4, &hnsw).unwrap();
        let kept = entry("b", "", vec![(2, mix(4, 0, 1, 0.9))]);
        g.put_many(vec![entry("a", "", vec![(1, unit(4, 0))]), kept.clone()])
            .unwrap();
        g.remove("a").unwrap();
        g.write_snapshot(&path).unwrap();

        // The record now holds only "b": the snapshot's extra vector is the removed one.
        let restored = Gallery::from_snapshot(4, &hnsw, &path, vec![kept.clone()])
            .expect("a snapshot with removed vectors is used");
        assert_eq!(restored.unreachable_vectors(), 1);
        assert_eq!(restored.indexed_vectors(), 2);
        let hits = restored.identify(&unit(4, 0), 5).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].identity_id, "b");

        // A flat index removes in place, so extra vectors there mean another record.
        let flat = Gallery::new(4, &spec("IDMap2,Flat")).unwrap();
        flat.put_many(vec![entry("a", "", vec![(1, unit(4, 0))]), kept.clone()])
            .unwrap();
        flat.write_snapshot(&path).unwrap();
        assert!(Gallery::from_snapshot(4, &spec("IDMap2,Flat"), &path, vec![kept]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Deterministic unit vectors spread over the sphere (a small LCG; no rand crate).
    fn spread(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                let v: Vec<f32> = (0..dim)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                    })
                    .collect();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect()
    }

    #[test]
    fn ivf_stages_exactly_then_trains_and_keeps_ids_right() {
        stages_exactly_then_trains_and_keeps_ids_right("IDMap2,IVF16,Flat", "ivf");
    }

    /// The same lifecycle for the compressed layout: its ids, Verify and snapshot check
    /// read the re-rank storage instead of an IVF direct map. The re-rank count (1024)
    /// covers these small galleries, so answers are exact.
    #[test]
    fn ivfpq_stages_exactly_then_trains_and_keeps_ids_right() {
        stages_exactly_then_trains_and_keeps_ids_right("IDMap2,IVF16,PQ8x4fs,RFlat", "ivfpq");
    }

    fn stages_exactly_then_trains_and_keeps_ids_right(description: &str, label: &str) {
        let dim = 16;
        let ivf = spec(description);
        let train = ivf.train_size().unwrap();
        let vectors = spread(train + 100, dim, 7);
        let entries: Vec<IdentityEntry> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| entry(&format!("p{i}"), "", vec![(1000 + i as FaceId, v.clone())]))
            .collect();
        let g = Gallery::new(dim, &ivf).unwrap();
        assert_eq!(g.ivf_staging(), Some(true));
        g.put_many(entries[..train - 1].to_vec()).unwrap();
        assert_eq!(
            g.ivf_staging(),
            Some(true),
            "one template short of training"
        );
        let hit = &g.identify(&vectors[5], 1).unwrap()[0];
        assert_eq!((hit.identity_id.as_str(), hit.face_id), ("p5", 1005));
        g.remove("p3").unwrap();

        g.put_many(entries[train - 1..].to_vec()).unwrap();
        assert_eq!(g.ivf_staging(), Some(false), "trained at {train} templates");
        assert_eq!(
            g.unreachable_vectors(),
            0,
            "removed vectors are not carried over"
        );
        assert_eq!(g.indexed_vectors(), train + 100 - 1);
        for i in [0, 5, train - 1, train + 99] {
            let hit = &g.identify(&vectors[i], 1).unwrap()[0];
            assert_eq!(hit.identity_id, format!("p{i}"));
            assert_eq!(hit.face_id, 1000 + i as FaceId);
            let (score, face) = g.verify(&vectors[i], &format!("p{i}")).unwrap();
            assert!((score - 1.0).abs() < 1e-4 && face == 1000 + i as FaceId);
        }
        assert!(g
            .identify(&vectors[3], 3)
            .unwrap()
            .iter()
            .all(|c| c.identity_id != "p3"));
        // Removal after training: unreachable at once, never returned.
        g.remove("p0").unwrap();
        assert_eq!(g.unreachable_vectors(), 1);
        assert!(g
            .identify(&vectors[0], 5)
            .unwrap()
            .iter()
            .all(|c| c.identity_id != "p0"));

        // The trained index survives a snapshot, with ids and vectors.
        let dir = std::env::temp_dir().join(format!("vargid-index-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.faiss");
        g.write_snapshot(&path).unwrap();
        let kept: Vec<IdentityEntry> = entries
            .iter()
            .filter(|e| e.identity_id != "p0" && e.identity_id != "p3")
            .cloned()
            .collect();
        let restored =
            Gallery::from_snapshot(dim, &ivf, &path, kept).expect("the trained snapshot is used");
        assert_eq!(restored.ivf_staging(), Some(false));
        assert_eq!(restored.unreachable_vectors(), 1);
        let (score, _) = restored.verify(&vectors[7], "p7").unwrap();
        assert!((score - 1.0).abs() < 1e-4);
        assert_eq!(
            restored.identify(&vectors[9], 1).unwrap()[0].identity_id,
            "p9"
        );

        // A snapshot written while staging comes back staging.
        let small = Gallery::new(dim, &ivf).unwrap();
        small.put_many(entries[..10].to_vec()).unwrap();
        small.write_snapshot(&path).unwrap();
        let back = Gallery::from_snapshot(dim, &ivf, &path, entries[..10].to_vec()).unwrap();
        assert_eq!(back.ivf_staging(), Some(true));
        assert_eq!(back.identify(&vectors[4], 1).unwrap()[0].identity_id, "p4");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hnsw_verifies_from_its_own_storage_after_a_snapshot() {
        let dir = std::env::temp_dir().join(format!("vargid-index-hnsw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.faiss");
        let tuned =
            IndexSpec::from_stored("IDMap2,HNSW8", "efConstruction=64,efSearch=200").unwrap();
        let entries = vec![entry(
            "a",
            "",
            vec![(1, unit(4, 0)), (2, mix(4, 0, 1, 0.6))],
        )];
        let g = Gallery::new(4, &tuned).unwrap();
        g.put_many(entries.clone()).unwrap();
        assert_eq!(g.verify(&unit(4, 1), "a").unwrap().1, 2);
        g.write_snapshot(&path).unwrap();
        let restored = Gallery::from_snapshot(4, &tuned, &path, entries).unwrap();
        let (score, face) = restored.verify(&unit(4, 1), "a").unwrap();
        assert_eq!(face, 2);
        assert!((score - 0.8).abs() < 1e-5, "{score}");
        assert_eq!(restored.spec(), &tuned);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_wrong_dimensions_and_bad_descriptions() {
        let g = Gallery::new(4, &spec("IDMap2,Flat")).unwrap();
        assert!(matches!(
            g.put_many(vec![entry("x", "", vec![(0, vec![1.0; 3])])]),
            Err(IndexError::DimensionMismatch {
                expected: 4,
                got: 3
            })
        ));
        assert_eq!(g.identity_count(), 0);
        assert!(Gallery::new(4, &spec("IDMap2,NoSuchIndex")).is_err());
        // Trained codes other than IVF's own are refused.
        assert!(Gallery::new(4, &spec("IDMap2,PQ2")).is_err());
    }
}
