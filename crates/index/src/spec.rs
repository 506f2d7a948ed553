//! Which index a gallery uses: the FAISS layout and its tuning parameters, checked
//! before anything is recorded, and kept in FAISS's own parameter syntax
//! (`efConstruction=200,efSearch=128`, as `ParameterSpace` reads it).

use crate::error::IndexError;

/// Index settings a caller asked for (the fields of `IndexParameters`); unset fields
/// take the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexRequest {
    pub hnsw_m: Option<u32>,
    pub hnsw_ef_construction: Option<u32>,
    pub hnsw_ef_search: Option<u32>,
    pub ivf_nlist: Option<u32>,
    pub ivf_nprobe: Option<u32>,
    pub ivf_rerank: Option<u32>,
}

impl IndexRequest {
    /// The set fields among HNSW's, by their API names.
    fn hnsw_fields(&self) -> Vec<&'static str> {
        [
            ("hnsw_m", self.hnsw_m),
            ("hnsw_ef_construction", self.hnsw_ef_construction),
            ("hnsw_ef_search", self.hnsw_ef_search),
        ]
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(f, _)| *f)
        .collect()
    }

    fn ivf_fields(&self) -> Vec<&'static str> {
        [
            ("ivf_nlist", self.ivf_nlist),
            ("ivf_nprobe", self.ivf_nprobe),
            ("ivf_rerank", self.ivf_rerank),
        ]
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(f, _)| *f)
        .collect()
    }
}

/// IVF settings in effect: `nlist` lists (k-means cells), `nprobe` of them scanned
/// per search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvfParameters {
    /// Cells the templates are clustered into (the 1024 of `IVF1024,Flat`); the index
    /// is trained once the gallery holds `TRAIN_POINTS_PER_LIST` templates per cell,
    /// and searches exactly until then.
    pub nlist: u32,
    /// Cells scanned per search: the recall / latency knob.
    pub nprobe: u32,
    /// Compressed layouts (`ivfpq`) only: candidates per search whose compressed
    /// scores are re-ranked on the full-precision templates. None for `IVF<n>,Flat`.
    pub rerank: Option<u32>,
}

impl Default for IvfParameters {
    fn default() -> Self {
        Self {
            nlist: 1024,
            nprobe: 32,
            rerank: None,
        }
    }
}

/// Candidates re-ranked exactly per search in an `ivfpq` gallery, when unset.
pub const DEFAULT_RERANK: u32 = 1024;
pub const RERANK_RANGE: std::ops::RangeInclusive<u32> = 1..=65536;
/// Subquantisers of the `ivfpq` layout: 4-bit codes of two dimensions each for 128-d
/// embeddings (32 bytes a template), scanned with FAISS's SIMD "fast scan" kernels.
pub const IVFPQ_SUBQUANTIZERS: u32 = 64;

/// Templates per cell before an IVF index is trained (FAISS warns below 39).
pub const TRAIN_POINTS_PER_LIST: usize = 39;
pub const NLIST_RANGE: std::ops::RangeInclusive<u32> = 16..=65536;

/// The parameters galleries take when a request leaves them unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexDefaults {
    pub hnsw: HnswParameters,
    pub ivf: IvfParameters,
}

/// HNSW settings in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParameters {
    /// Neighbours per node (the 32 of `HNSW32`): more is more exact, bigger and slower.
    pub m: u32,
    /// Candidates kept while inserting: more builds a better graph, more slowly.
    pub ef_construction: u32,
    /// Candidates kept while searching: the recall / latency knob.
    pub ef_search: u32,
}

impl Default for HnswParameters {
    /// Good to about 100k templates of 128-d face embeddings (recall@1 0.96 at efSearch 64,
    /// 0.996 at 256); at 1M they fall short (docs/benchmarks.md, "Gallery search on
    /// realistic embeddings").
    fn default() -> Self {
        Self {
            m: 32,
            ef_construction: 80,
            ef_search: 64,
        }
    }
}

pub const M_RANGE: std::ops::RangeInclusive<u32> = 4..=128;
pub const EF_CONSTRUCTION_RANGE: std::ops::RangeInclusive<u32> = 8..=2048;
pub const EF_SEARCH_RANGE: std::ops::RangeInclusive<u32> = 1..=4096;

/// A gallery's index: a FAISS factory string and, for HNSW and IVF, its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// FAISS index factory string starting with IDMap or IDMap2, e.g. `IDMap2,HNSW32`.
    pub description: String,
    pub hnsw: Option<HnswParameters>,
    pub ivf: Option<IvfParameters>,
}

impl IndexSpec {
    /// The index a caller asked for. `layout` is `flat`, `hnsw`, `ivf`, `ivfpq`, or a
    /// FAISS factory string; fields of `requested` left unset take `defaults`.
    pub fn resolve(
        layout: &str,
        requested: IndexRequest,
        defaults: IndexDefaults,
    ) -> Result<Self, IndexError> {
        let description = match layout.to_ascii_lowercase().as_str() {
            "flat" => "IDMap2,Flat".to_string(),
            "hnsw" => format!("IDMap2,HNSW{}", requested.hnsw_m.unwrap_or(defaults.hnsw.m)),
            "ivf" => format!(
                "IDMap2,IVF{},Flat",
                requested.ivf_nlist.unwrap_or(defaults.ivf.nlist)
            ),
            "ivfpq" => format!(
                "IDMap2,IVF{},PQ{IVFPQ_SUBQUANTIZERS}x4fs,RFlat",
                requested.ivf_nlist.unwrap_or(defaults.ivf.nlist)
            ),
            _ => layout.to_string(),
        };
        check_layout(&description)?;
        let (hnsw_m, ivf_layout) = (hnsw_m(&description), ivf_layout(&description)?);
        let misplaced = |field: &'static str, kind: &str| IndexError::InvalidParameter {
            field,
            reason: format!("applies to {kind} indexes only; the index is {description:?}"),
        };
        if hnsw_m.is_none() {
            if let Some(field) = requested.hnsw_fields().first() {
                return Err(misplaced(field, "HNSW"));
            }
        }
        if ivf_layout.is_none() {
            if let Some(field) = requested.ivf_fields().first() {
                return Err(misplaced(field, "IVF"));
            }
        }
        if matches!(ivf_layout, Some((_, false))) && requested.ivf_rerank.is_some() {
            return Err(misplaced("ivf_rerank", "compressed IVF (ivfpq)"));
        }
        let mut spec = Self {
            description: description.clone(),
            hnsw: None,
            ivf: None,
        };
        if let Some(m) = hnsw_m {
            if let Some(asked) = requested.hnsw_m.filter(|&asked| asked != m) {
                return Err(IndexError::InvalidParameter {
                    field: "hnsw_m",
                    reason: format!("{asked} contradicts the index {description:?} (M = {m})"),
                });
            }
            let hnsw = HnswParameters {
                m,
                ef_construction: requested
                    .hnsw_ef_construction
                    .unwrap_or(defaults.hnsw.ef_construction),
                ef_search: requested.hnsw_ef_search.unwrap_or(defaults.hnsw.ef_search),
            };
            hnsw.check()?;
            spec.hnsw = Some(hnsw);
        }
        if let Some((nlist, compressed)) = ivf_layout {
            if let Some(asked) = requested.ivf_nlist.filter(|&asked| asked != nlist) {
                return Err(IndexError::InvalidParameter {
                    field: "ivf_nlist",
                    reason: format!(
                        "{asked} contradicts the index {description:?} (nlist = {nlist})"
                    ),
                });
            }
            let ivf = IvfParameters {
                nlist,
                nprobe: requested
                    .ivf_nprobe
                    .unwrap_or(defaults.ivf.nprobe.min(nlist)),
                rerank: compressed.then(|| {
                    requested
                        .ivf_rerank
                        .or(defaults.ivf.rerank)
                        .unwrap_or(DEFAULT_RERANK)
                }),
            };
            ivf.check()?;
            spec.ivf = Some(ivf);
        }
        Ok(spec)
    }

    /// A spec as stored: the factory string and [`IndexSpec::parameters`]' text.
    pub fn from_stored(description: &str, parameters: &str) -> Result<Self, IndexError> {
        let mut requested = IndexRequest::default();
        for pair in parameters.split(',').filter(|p| !p.trim().is_empty()) {
            let invalid = || IndexError::InvalidIndex {
                description: description.to_string(),
                reason: format!("stored parameter {pair:?} is not NAME=VALUE"),
            };
            let (name, value) = pair.split_once('=').ok_or_else(invalid)?;
            let value: u32 = value.trim().parse().map_err(|_| invalid())?;
            match name.trim() {
                "efConstruction" => requested.hnsw_ef_construction = Some(value),
                "efSearch" => requested.hnsw_ef_search = Some(value),
                "nprobe" => requested.ivf_nprobe = Some(value),
                "rerank" => requested.ivf_rerank = Some(value),
                _ => return Err(invalid()),
            }
        }
        // Galleries recorded before parameters were stored ran FAISS's defaults.
        let faiss_defaults = IndexDefaults {
            hnsw: HnswParameters {
                m: 32,
                ef_construction: 40,
                ef_search: 16,
            },
            ivf: IvfParameters {
                nlist: 1024,
                nprobe: 1,
                rerank: None,
            },
        };
        Self::resolve(description, requested, faiss_defaults)
    }

    /// The parameters in FAISS `ParameterSpace` syntax (`rerank`, the one of our own,
    /// becomes FAISS's `k_factor_rf` per search), empty for a flat index.
    pub fn parameters(&self) -> String {
        match (self.hnsw, self.ivf) {
            (Some(h), _) => format!(
                "efConstruction={},efSearch={}",
                h.ef_construction, h.ef_search
            ),
            (None, Some(ivf)) => match ivf.rerank {
                Some(rerank) => format!("nprobe={},rerank={rerank}", ivf.nprobe),
                None => format!("nprobe={}", ivf.nprobe),
            },
            (None, None) => String::new(),
        }
    }

    /// Candidates re-ranked on full-precision templates per search, for compressed
    /// layouts.
    pub(crate) fn rerank(&self) -> Option<u32> {
        self.ivf.and_then(|ivf| ivf.rerank)
    }

    /// Templates the gallery must hold before its IVF index is trained; None for
    /// layouts that need no training.
    pub(crate) fn train_size(&self) -> Option<usize> {
        self.ivf
            .map(|ivf| ivf.nlist as usize * TRAIN_POINTS_PER_LIST)
    }

    /// The factory string FAISS builds. `IDMap` becomes `IDMap2`: searches are the
    /// same, and IDMap2 can hand back a template's vector by id, so the gallery keeps
    /// no second copy of the embeddings for Verify.
    pub(crate) fn faiss_description(&self) -> String {
        match self.description.strip_prefix("IDMap,") {
            Some(rest) => format!("IDMap2,{rest}"),
            None => self.description.clone(),
        }
    }

    /// Whether FAISS removes vectors from this index correctly (flat indexes only:
    /// HNSW cannot, and IVF under an id map returns wrong ids after removal, so their
    /// removed vectors stay in the index, unreachable, until a rebuild).
    pub(crate) fn removes_in_place(&self) -> bool {
        matches!(self.faiss_description().as_str(), "IDMap2,Flat")
    }
}

impl IvfParameters {
    pub fn check(&self) -> Result<(), IndexError> {
        let out_of =
            |field, value, range: std::ops::RangeInclusive<u32>| IndexError::InvalidParameter {
                field,
                reason: format!(
                    "{value} is out of range {}..={}",
                    range.start(),
                    range.end()
                ),
            };
        if !NLIST_RANGE.contains(&self.nlist) {
            return Err(out_of("ivf_nlist", self.nlist, NLIST_RANGE));
        }
        if !(1..=self.nlist).contains(&self.nprobe) {
            return Err(out_of("ivf_nprobe", self.nprobe, 1..=self.nlist));
        }
        if let Some(rerank) = self.rerank.filter(|r| !RERANK_RANGE.contains(r)) {
            return Err(out_of("ivf_rerank", rerank, RERANK_RANGE));
        }
        Ok(())
    }
}

impl HnswParameters {
    pub fn check(&self) -> Result<(), IndexError> {
        let checks = [
            ("hnsw_m", self.m, M_RANGE),
            (
                "hnsw_ef_construction",
                self.ef_construction,
                EF_CONSTRUCTION_RANGE,
            ),
            ("hnsw_ef_search", self.ef_search, EF_SEARCH_RANGE),
        ];
        for (field, value, range) in checks {
            if !range.contains(&value) {
                return Err(IndexError::InvalidParameter {
                    field,
                    reason: format!(
                        "{value} is out of range {}..={}",
                        range.start(),
                        range.end()
                    ),
                });
            }
        }
        Ok(())
    }
}

fn check_layout(description: &str) -> Result<(), IndexError> {
    if description.starts_with("IDMap,") || description.starts_with("IDMap2,") {
        Ok(())
    } else {
        // Templates are addressed by id (delete, verify), so ids must be ours.
        Err(IndexError::InvalidIndex {
            description: description.to_string(),
            reason: "use \"flat\", \"hnsw\", or a FAISS factory string starting with IDMap2".into(),
        })
    }
}

/// The nlist of an IVF layout and whether its codes are compressed, or None if not
/// IVF. Two IVF layouts are supported: `IVF<n>,Flat`, and `IVF<n>,PQ<m>x4fs,RFlat`
/// (4-bit product-quantised codes scanned with SIMD, the best candidates re-ranked on
/// the full vectors, which also serve Verify and export); other codes are refused.
fn ivf_layout(description: &str) -> Result<Option<(u32, bool)>, IndexError> {
    let Some(at) = description.find("IVF") else {
        return Ok(None);
    };
    let rest = &description[at + 3..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let codes = &rest[digits.len()..];
    let pq_codes = codes
        .strip_prefix(",PQ")
        .and_then(|c| c.strip_suffix("x4fs,RFlat"))
        .is_some_and(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()));
    match (digits.parse::<u32>(), codes) {
        (Ok(nlist), ",Flat") => Ok(Some((nlist, false))),
        (Ok(nlist), _) if pq_codes => Ok(Some((nlist, true))),
        _ => Err(IndexError::InvalidIndex {
            description: description.to_string(),
            reason: "the IVF layout must be IDMap2,IVF<nlist>,Flat (\"ivf\") or \
                     IDMap2,IVF<nlist>,PQ<m>x4fs,RFlat (\"ivfpq\")"
                .into(),
        }),
    }
}

/// The M of an HNSW layout (`HNSW` alone means FAISS's 32), or None if not HNSW.
fn hnsw_m(description: &str) -> Option<u32> {
    let at = description.find("HNSW")?;
    let digits: String = description[at + 4..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some(digits.parse().unwrap_or(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: IndexDefaults = IndexDefaults {
        hnsw: HnswParameters {
            m: 16,
            ef_construction: 100,
            ef_search: 50,
        },
        ivf: IvfParameters {
            nlist: 256,
            nprobe: 8,
            rerank: None,
        },
    };

    #[test]
    fn resolves_short_names_and_defaults() {
        let flat = IndexSpec::resolve("flat", IndexRequest::default(), DEFAULTS).unwrap();
        assert_eq!(flat.description, "IDMap2,Flat");
        assert_eq!((flat.hnsw, flat.ivf), (None, None));
        assert_eq!(flat.parameters(), "");

        let asked = IndexRequest {
            hnsw_m: Some(24),
            hnsw_ef_search: Some(200),
            ..Default::default()
        };
        let hnsw = IndexSpec::resolve("hnsw", asked, DEFAULTS).unwrap();
        assert_eq!(hnsw.description, "IDMap2,HNSW24");
        assert_eq!(
            hnsw.hnsw,
            Some(HnswParameters {
                m: 24,
                ef_construction: 100,
                ef_search: 200
            })
        );
        assert_eq!(hnsw.parameters(), "efConstruction=100,efSearch=200");
        let stored = IndexSpec::from_stored(&hnsw.description, &hnsw.parameters()).unwrap();
        assert_eq!(stored, hnsw);

        let factory = IndexSpec::resolve("IDMap2,HNSW32", IndexRequest::default(), DEFAULTS);
        assert_eq!(factory.unwrap().hnsw.map(|h| h.m), Some(32));

        let ivf = IndexSpec::resolve(
            "ivf",
            IndexRequest {
                ivf_nlist: Some(64),
                ..Default::default()
            },
            DEFAULTS,
        )
        .unwrap();
        assert_eq!(ivf.description, "IDMap2,IVF64,Flat");
        assert_eq!(
            ivf.ivf,
            Some(IvfParameters {
                nlist: 64,
                nprobe: 8,
                rerank: None
            })
        );
        assert_eq!(ivf.parameters(), "nprobe=8");
        assert_eq!(ivf.train_size(), Some(64 * TRAIN_POINTS_PER_LIST));
        let stored = IndexSpec::from_stored(&ivf.description, &ivf.parameters()).unwrap();
        assert_eq!(stored, ivf);
        assert!(!ivf.removes_in_place());

        let pq = IndexSpec::resolve(
            "ivfpq",
            IndexRequest {
                ivf_nlist: Some(64),
                ivf_nprobe: Some(32),
                ..Default::default()
            },
            DEFAULTS,
        )
        .unwrap();
        assert_eq!(pq.description, "IDMap2,IVF64,PQ64x4fs,RFlat");
        assert_eq!(pq.rerank(), Some(DEFAULT_RERANK));
        assert_eq!(pq.parameters(), "nprobe=32,rerank=1024");
        assert_eq!(pq.train_size(), Some(64 * TRAIN_POINTS_PER_LIST));
        let stored = IndexSpec::from_stored(&pq.description, &pq.parameters()).unwrap();
        assert_eq!(stored, pq);
        assert!(!pq.removes_in_place());
        let factory = IndexSpec::resolve(
            "IDMap2,IVF128,PQ32x4fs,RFlat",
            IndexRequest {
                ivf_rerank: Some(200),
                ..Default::default()
            },
            DEFAULTS,
        )
        .unwrap();
        assert_eq!(
            factory.ivf.map(|i| (i.nlist, i.rerank)),
            Some((128, Some(200)))
        );
    }

    #[test]
    fn names_the_field_of_a_bad_value() {
        let field = |layout: &str, r: IndexRequest| match IndexSpec::resolve(layout, r, DEFAULTS) {
            Err(IndexError::InvalidParameter { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let ef_search = |v| IndexRequest {
            hnsw_ef_search: Some(v),
            ..Default::default()
        };
        assert_eq!(field("hnsw", ef_search(0)), "hnsw_ef_search");
        assert_eq!(field("flat", ef_search(10)), "hnsw_ef_search");
        assert_eq!(field("ivf", ef_search(10)), "hnsw_ef_search");
        let m = |v| IndexRequest {
            hnsw_m: Some(v),
            ..Default::default()
        };
        assert_eq!(field("hnsw", m(1000)), "hnsw_m");
        assert_eq!(field("IDMap2,HNSW32", m(16)), "hnsw_m");
        let ivf = |nlist, nprobe| IndexRequest {
            ivf_nlist: nlist,
            ivf_nprobe: nprobe,
            ..Default::default()
        };
        assert_eq!(field("ivf", ivf(Some(8), None)), "ivf_nlist");
        assert_eq!(field("ivf", ivf(Some(64), Some(65))), "ivf_nprobe");
        assert_eq!(field("ivf", ivf(None, Some(0))), "ivf_nprobe");
        assert_eq!(field("hnsw", ivf(None, Some(4))), "ivf_nprobe");
        assert_eq!(field("IDMap2,IVF64,Flat", ivf(Some(32), None)), "ivf_nlist");
        let rerank = |v| IndexRequest {
            ivf_rerank: Some(v),
            ..Default::default()
        };
        assert_eq!(field("ivf", rerank(100)), "ivf_rerank");
        assert_eq!(field("hnsw", rerank(100)), "ivf_rerank");
        assert_eq!(field("ivfpq", rerank(0)), "ivf_rerank");
        assert!(
            IndexSpec::resolve("IDMap2,IVF64,PQ16x4fs", IndexRequest::default(), DEFAULTS).is_err()
        );
        assert!(IndexSpec::resolve("HNSW32", IndexRequest::default(), DEFAULTS).is_err());
        assert!(
            IndexSpec::resolve("IDMap2,IVF64,PQ16", IndexRequest::default(), DEFAULTS).is_err()
        );
        assert!(IndexSpec::from_stored("IDMap2,HNSW32", "nprobe=3").is_err());
    }

    #[test]
    fn old_records_get_faiss_defaults_and_idmap2() {
        let old = IndexSpec::from_stored("IDMap,HNSW16", "").unwrap();
        assert_eq!(
            old.hnsw.map(|h| (h.ef_construction, h.ef_search)),
            Some((40, 16))
        );
        assert_eq!(old.faiss_description(), "IDMap2,HNSW16");
        assert!(IndexSpec::from_stored("IDMap,Flat", "")
            .unwrap()
            .removes_in_place());
    }
}
