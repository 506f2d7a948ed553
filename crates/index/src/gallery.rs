//! Identities and templates kept in memory beside a FAISS index.
//!
//! Lock order, to stay deadlock-free: `records` before `index`. Searches take the
//! index alone, then read `records`; a template deleted between the two is skipped.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use faiss::index::IndexImpl;
use faiss::selector::IdSelector;
use faiss::{index_factory, Idx, Index, MetricType};

use crate::error::IndexError;

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

/// The result of an enrollment.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollOutcome {
    pub created: bool,
    pub face_ids: Vec<FaceId>,
    pub face_count: usize,
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
    faces: HashMap<FaceId, FaceRecord>,
    next_face_id: FaceId,
}

struct FaceRecord {
    identity_id: String,
    embedding: Vec<f32>,
}

/// A gallery of identities searchable by face embedding.
pub struct Gallery {
    dim: usize,
    description: String,
    index: Mutex<IndexImpl>,
    records: RwLock<Records>,
}

impl std::fmt::Debug for Gallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gallery")
            .field("dim", &self.dim)
            .field("description", &self.description)
            .finish()
    }
}

impl Gallery {
    /// An empty gallery of `dim`-dimensional embeddings. `description` is a FAISS
    /// index factory string whose outer layer maps ids, e.g. `IDMap2,Flat`.
    pub fn new(dim: usize, description: &str) -> Result<Self, IndexError> {
        let invalid = |reason: &str| IndexError::InvalidIndex {
            description: description.to_string(),
            reason: reason.to_string(),
        };
        if !description.starts_with("IDMap") {
            // Templates are addressed by id (delete, verify), so ids must be ours.
            return Err(invalid("must start with IDMap or IDMap2"));
        }
        let dim_u32 = u32::try_from(dim).map_err(|_| invalid("dimension too large"))?;
        let index = index_factory(dim_u32, description, MetricType::InnerProduct)
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(Self {
            dim,
            description: description.to_string(),
            index: Mutex::new(index),
            records: RwLock::new(Records::default()),
        })
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

    /// Adds templates to an identity, creating it if new. `display_name` replaces the
    /// stored name when set; `metadata` keys replace stored values. Atomic: on error
    /// nothing changed.
    pub fn enroll(
        &self,
        identity_id: &str,
        display_name: Option<&str>,
        metadata: BTreeMap<String, String>,
        embeddings: Vec<Vec<f32>>,
        now_unix_ms: i64,
    ) -> Result<EnrollOutcome, IndexError> {
        for e in &embeddings {
            self.check_dim(e)?;
        }
        let mut records = self.records_mut();
        let first = records.next_face_id;
        let face_ids: Vec<FaceId> = (first..first + embeddings.len() as FaceId).collect();
        let flat: Vec<f32> = embeddings.iter().flatten().copied().collect();
        let ids: Vec<Idx> = face_ids.iter().map(|&id| Idx::new(id as u64)).collect();
        self.index().add_with_ids(&flat, &ids)?;

        records.next_face_id = first + face_ids.len() as FaceId;
        for (id, embedding) in face_ids.iter().zip(embeddings) {
            records.faces.insert(
                *id,
                FaceRecord {
                    identity_id: identity_id.to_string(),
                    embedding,
                },
            );
        }
        let created = !records.identities.contains_key(identity_id);
        let identity = records
            .identities
            .entry(identity_id.to_string())
            .or_insert_with(|| IdentityRecord {
                identity_id: identity_id.to_string(),
                display_name: String::new(),
                metadata: BTreeMap::new(),
                face_ids: Vec::new(),
                created_at_unix_ms: now_unix_ms,
            });
        if let Some(name) = display_name {
            identity.display_name = name.to_string();
        }
        identity.metadata.extend(metadata);
        identity.face_ids.extend_from_slice(&face_ids);
        Ok(EnrollOutcome {
            created,
            face_count: identity.face_ids.len(),
            face_ids,
        })
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
            let Some(face) = records.faces.get(&face_id) else {
                continue;
            };
            if out.iter().any(|c| c.identity_id == face.identity_id) {
                continue;
            }
            let display_name = records
                .identities
                .get(&face.identity_id)
                .map(|i| i.display_name.clone())
                .unwrap_or_default();
            out.push(Candidate {
                identity_id: face.identity_id.clone(),
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
        identity
            .face_ids
            .iter()
            .filter_map(|id| {
                records
                    .faces
                    .get(id)
                    .map(|f| (dot(query, &f.embedding), *id))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .ok_or_else(|| IndexError::IdentityNotFound(identity_id.to_string()))
    }

    /// Removes an identity and its templates from the records and the index.
    /// Returns how many templates were removed.
    pub fn delete(&self, identity_id: &str) -> Result<usize, IndexError> {
        let mut records = self.records_mut();
        let face_ids = records
            .identities
            .get(identity_id)
            .map(|i| i.face_ids.clone())
            .ok_or_else(|| IndexError::IdentityNotFound(identity_id.to_string()))?;
        let ids: Vec<Idx> = face_ids.iter().map(|&id| Idx::new(id as u64)).collect();
        self.index().remove_ids(&IdSelector::batch(&ids)?)?;
        records.identities.remove(identity_id);
        for id in &face_ids {
            records.faces.remove(id);
        }
        Ok(face_ids.len())
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

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn enroll_identify_verify_delete() {
        let g = Gallery::new(8, "IDMap2,Flat").unwrap();
        assert!(g.identify(&unit(8, 0), 3).unwrap().is_empty());

        let a = g
            .enroll(
                "alice",
                Some("Alice"),
                BTreeMap::new(),
                vec![unit(8, 0), unit(8, 1)],
                1,
            )
            .unwrap();
        assert!(a.created);
        assert_eq!(a.face_ids, vec![0, 1]);
        let b = g
            .enroll("bob", None, BTreeMap::new(), vec![unit(8, 2)], 2)
            .unwrap();
        assert_eq!(b.face_ids, vec![2]);
        let again = g
            .enroll("bob", None, BTreeMap::new(), vec![unit(8, 3)], 3)
            .unwrap();
        assert!(!again.created);
        assert_eq!(again.face_count, 2);

        let hits = g.identify(&mix(8, 1, 2, 0.8), 5).unwrap();
        assert_eq!(hits.len(), 2, "one candidate per identity: {hits:?}");
        assert_eq!(hits[0].identity_id, "alice");
        assert_eq!(hits[0].display_name, "Alice");
        assert_eq!(hits[0].face_id, 1);
        assert!((hits[0].score - 0.8).abs() < 1e-6);
        assert_eq!(hits[1].identity_id, "bob");

        let (score, face) = g.verify(&unit(8, 3), "bob").unwrap();
        assert_eq!(face, 3);
        assert!((score - 1.0).abs() < 1e-6);

        assert_eq!(g.delete("alice").unwrap(), 2);
        assert!(matches!(
            g.delete("alice"),
            Err(IndexError::IdentityNotFound(_))
        ));
        let hits = g.identify(&unit(8, 0), 5).unwrap();
        assert!(hits.iter().all(|c| c.identity_id != "alice"));
        assert_eq!(g.face_count(), 2);
    }

    #[test]
    fn top_k_counts_identities_not_templates() {
        let g = Gallery::new(4, "IDMap2,Flat").unwrap();
        // 40 near-identical templates of one identity crowd the nearest hits.
        let many: Vec<Vec<f32>> = (0..40).map(|_| mix(4, 0, 1, 0.99)).collect();
        g.enroll("crowd", None, BTreeMap::new(), many, 0).unwrap();
        g.enroll("other", None, BTreeMap::new(), vec![unit(4, 1)], 0)
            .unwrap();
        let hits = g.identify(&unit(4, 0), 2).unwrap();
        let ids: Vec<&str> = hits.iter().map(|c| c.identity_id.as_str()).collect();
        assert_eq!(ids, ["crowd", "other"]);
    }

    #[test]
    fn lists_in_pages() {
        let g = Gallery::new(4, "IDMap2,Flat").unwrap();
        for name in ["c", "a", "b", "d", "e"] {
            g.enroll(name, None, BTreeMap::new(), vec![unit(4, 0)], 0)
                .unwrap();
        }
        let p1 = g.list(None, 2);
        assert_eq!(
            p1.identities
                .iter()
                .map(|r| r.identity_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(p1.next_after.as_deref(), Some("b"));
        assert_eq!(p1.total, 5);
        let p3 = g.list(Some("d"), 2);
        assert_eq!(p3.identities.len(), 1);
        assert_eq!(p3.next_after, None);
    }

    #[test]
    fn rejects_wrong_dimensions_and_bad_descriptions() {
        let g = Gallery::new(4, "IDMap2,Flat").unwrap();
        assert!(matches!(
            g.enroll("x", None, BTreeMap::new(), vec![vec![1.0; 3]], 0),
            Err(IndexError::DimensionMismatch {
                expected: 4,
                got: 3
            })
        ));
        assert_eq!(g.identity_count(), 0);
        assert!(Gallery::new(4, "Flat").is_err());
        assert!(Gallery::new(4, "IDMap2,NoSuchIndex").is_err());
    }
}
