//! Which index a gallery uses: the FAISS layout and its tuning parameters, checked
//! before anything is recorded, and kept in FAISS's own parameter syntax
//! (`efConstruction=200,efSearch=128`, as `ParameterSpace` reads it).

use crate::error::IndexError;

/// HNSW settings a caller asked for; unset fields take the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HnswRequest {
    pub m: Option<u32>,
    pub ef_construction: Option<u32>,
    pub ef_search: Option<u32>,
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

/// A gallery's index: a FAISS factory string and, for HNSW, its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// FAISS index factory string starting with IDMap or IDMap2, e.g. `IDMap2,HNSW32`.
    pub description: String,
    pub hnsw: Option<HnswParameters>,
}

impl IndexSpec {
    /// The index a caller asked for. `layout` is `flat`, `hnsw`, or a FAISS factory
    /// string; fields of `requested` left unset take `defaults`.
    pub fn resolve(
        layout: &str,
        requested: HnswRequest,
        defaults: HnswParameters,
    ) -> Result<Self, IndexError> {
        let description = match layout.to_ascii_lowercase().as_str() {
            "flat" => "IDMap2,Flat".to_string(),
            "hnsw" => format!("IDMap2,HNSW{}", requested.m.unwrap_or(defaults.m)),
            _ => layout.to_string(),
        };
        check_layout(&description)?;
        let Some(m) = hnsw_m(&description) else {
            let set = [
                ("hnsw_m", requested.m),
                ("hnsw_ef_construction", requested.ef_construction),
                ("hnsw_ef_search", requested.ef_search),
            ];
            if let Some((field, _)) = set.iter().find(|(_, v)| v.is_some()) {
                return Err(IndexError::InvalidParameter {
                    field,
                    reason: format!("applies to HNSW indexes only; the index is {description:?}"),
                });
            }
            return Ok(Self {
                description,
                hnsw: None,
            });
        };
        if let Some(asked) = requested.m.filter(|&asked| asked != m) {
            return Err(IndexError::InvalidParameter {
                field: "hnsw_m",
                reason: format!("{asked} contradicts the index {description:?} (M = {m})"),
            });
        }
        let hnsw = HnswParameters {
            m,
            ef_construction: requested
                .ef_construction
                .unwrap_or(defaults.ef_construction),
            ef_search: requested.ef_search.unwrap_or(defaults.ef_search),
        };
        hnsw.check()?;
        Ok(Self {
            description,
            hnsw: Some(hnsw),
        })
    }

    /// A spec as stored: the factory string and [`IndexSpec::parameters`]' text.
    pub fn from_stored(description: &str, parameters: &str) -> Result<Self, IndexError> {
        let mut requested = HnswRequest::default();
        for pair in parameters.split(',').filter(|p| !p.trim().is_empty()) {
            let invalid = || IndexError::InvalidIndex {
                description: description.to_string(),
                reason: format!("stored parameter {pair:?} is not NAME=VALUE"),
            };
            let (name, value) = pair.split_once('=').ok_or_else(invalid)?;
            let value: u32 = value.trim().parse().map_err(|_| invalid())?;
            match name.trim() {
                "efConstruction" => requested.ef_construction = Some(value),
                "efSearch" => requested.ef_search = Some(value),
                _ => return Err(invalid()),
            }
        }
        // Galleries recorded before parameters were stored ran FAISS's defaults.
        let faiss_defaults = HnswParameters {
            m: 32,
            ef_construction: 40,
            ef_search: 16,
        };
        Self::resolve(description, requested, faiss_defaults)
    }

    /// The parameters in FAISS `ParameterSpace` syntax, empty for a flat index.
    pub fn parameters(&self) -> String {
        match self.hnsw {
            Some(h) => format!(
                "efConstruction={},efSearch={}",
                h.ef_construction, h.ef_search
            ),
            None => String::new(),
        }
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
    /// HNSW cannot, and IVF under an id map returns wrong ids after removal).
    pub(crate) fn removes_in_place(&self) -> bool {
        matches!(self.faiss_description().as_str(), "IDMap2,Flat")
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

    const DEFAULTS: HnswParameters = HnswParameters {
        m: 16,
        ef_construction: 100,
        ef_search: 50,
    };

    #[test]
    fn resolves_short_names_and_defaults() {
        let flat = IndexSpec::resolve("flat", HnswRequest::default(), DEFAULTS).unwrap();
        assert_eq!(flat.description, "IDMap2,Flat");
        assert_eq!(flat.hnsw, None);
        assert_eq!(flat.parameters(), "");

        let asked = HnswRequest {
            m: Some(24),
            ef_search: Some(200),
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

        let factory = IndexSpec::resolve("IDMap2,HNSW32", HnswRequest::default(), DEFAULTS);
        assert_eq!(factory.unwrap().hnsw.map(|h| h.m), Some(32));
    }

    #[test]
    fn names_the_field_of_a_bad_value() {
        let field = |layout: &str, r: HnswRequest| match IndexSpec::resolve(layout, r, DEFAULTS) {
            Err(IndexError::InvalidParameter { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let ef_search = |v| HnswRequest {
            ef_search: Some(v),
            ..Default::default()
        };
        assert_eq!(field("hnsw", ef_search(0)), "hnsw_ef_search");
        assert_eq!(field("flat", ef_search(10)), "hnsw_ef_search");
        let m = |v| HnswRequest {
            m: Some(v),
            ..Default::default()
        };
        assert_eq!(field("hnsw", m(1000)), "hnsw_m");
        assert_eq!(field("IDMap2,HNSW32", m(16)), "hnsw_m");
        assert!(IndexSpec::resolve("HNSW32", HnswRequest::default(), DEFAULTS).is_err());
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
