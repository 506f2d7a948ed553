//! The figures of `vargid evaluate`, from scores alone (no I/O).
//!
//! 1:1 verification: every genuine pair (two photos of one person) and every impostor
//! pair (two people) is scored; the scores go into fixed-width histograms, so a folder
//! of 13k photos (87M pairs) needs no memory for them. Thresholds are bin edges, 1e-4
//! apart in cosine.
//!
//! 1:N identification follows `vargface.evaluate` (NIST FRVT's open-set terms): rank-k
//! is the share of mated searches whose person is among the k best candidates; FNIR at
//! FPIR=f uses as threshold the lowest score that at most a share f of the non-mated
//! searches' best scores exceed, and a mated search is missed unless its best
//! candidate is the right person with a score above it.

/// Histogram bins over cosine [-1, 1].
pub const BINS: usize = 20_000;

/// Counts of scores in `BINS` equal bins over [-1, 1].
#[derive(Debug, Clone)]
pub struct ScoreHistogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for ScoreHistogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BINS],
            total: 0,
        }
    }
}

impl ScoreHistogram {
    fn bin(score: f32) -> usize {
        let at = (f64::from(score.clamp(-1.0, 1.0)) + 1.0) / 2.0 * BINS as f64;
        (at as usize).min(BINS - 1)
    }

    /// The lowest score that falls in `bin`.
    pub fn lower_edge(bin: usize) -> f64 {
        bin as f64 / BINS as f64 * 2.0 - 1.0
    }

    pub fn add(&mut self, score: f32) {
        self.counts[Self::bin(score)] += 1;
        self.total += 1;
    }

    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// tail[b]: the share of scores in bin b or above, i.e. >= lower_edge(b); tail[BINS] = 0.
    fn tail_shares(&self) -> Vec<f64> {
        let mut tail = vec![0.0; BINS + 1];
        let mut above = 0u64;
        for b in (0..BINS).rev() {
            above += self.counts[b];
            tail[b] = above as f64 / self.total.max(1) as f64;
        }
        tail
    }
}

/// One operating point: accept a pair when its score >= threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VerificationPoint {
    pub threshold: f64,
    pub far: f64,
    pub tar: f64,
}

#[derive(Debug, Clone)]
pub struct Verification {
    pub genuine_pairs: u64,
    pub impostor_pairs: u64,
    /// For each asked FAR: the lowest threshold whose FAR is at most that.
    pub at_far: Vec<(f64, VerificationPoint)>,
    /// Equal error rate (where FAR = 1 - TAR) and its threshold.
    pub eer: f64,
    pub eer_threshold: f64,
    /// The ROC, one point per threshold where either rate changes, for the plots.
    pub roc: Vec<VerificationPoint>,
}

/// 1:1 figures from the genuine and impostor score histograms.
pub fn verification(
    genuine: &ScoreHistogram,
    impostor: &ScoreHistogram,
    far_targets: &[f64],
) -> Verification {
    let (tar, far) = (genuine.tail_shares(), impostor.tail_shares());
    let point = |b: usize| VerificationPoint {
        threshold: ScoreHistogram::lower_edge(b),
        far: far[b],
        tar: tar[b],
    };
    let at_far = far_targets
        .iter()
        .map(|&target| {
            // far is non-increasing in b: the first bin at or under the target.
            let b = far.partition_point(|&f| f > target).min(BINS - 1);
            (target, point(b))
        })
        .collect();
    let (mut eer, mut eer_bin, mut gap) = (1.0, 0, f64::INFINITY);
    for b in 0..BINS {
        let (frr, fa) = (1.0 - tar[b], far[b]);
        if (frr - fa).abs() < gap {
            gap = (frr - fa).abs();
            eer = (frr + fa) / 2.0;
            eer_bin = b;
        }
    }
    let mut roc: Vec<VerificationPoint> = Vec::new();
    for b in 0..BINS {
        if genuine.counts[b] > 0 || impostor.counts[b] > 0 {
            roc.push(point(b));
        }
    }
    Verification {
        genuine_pairs: genuine.total,
        impostor_pairs: impostor.total,
        at_far,
        eer,
        eer_threshold: ScoreHistogram::lower_edge(eer_bin),
        roc,
    }
}

/// One search's outcome: its best candidates (identity, score), best first.
#[derive(Debug, Clone)]
pub struct Search {
    /// The person searched for; `None` for a non-mated search (not enrolled).
    pub truth: Option<String>,
    /// Empty when the photo gave no face to search with (counted as a miss).
    pub candidates: Vec<(String, f32)>,
}

/// One point of the DET curve: searches scored against `threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetPoint {
    pub threshold: f64,
    pub fpir: f64,
    pub fnir: f64,
}

#[derive(Debug, Clone)]
pub struct Identification {
    pub mated: usize,
    pub non_mated: usize,
    /// cmc[k-1]: the share of mated searches with the right person in the best k.
    pub cmc: Vec<f64>,
    /// For each asked FPIR: (threshold, FNIR).
    pub at_fpir: Vec<(f64, f64, f64)>,
    pub det: Vec<DetPoint>,
}

/// The share of mated searches missed at `threshold`: wrong, absent or not above it.
fn fnir(correct_scores: &[f32], mated: usize, threshold: f64) -> f64 {
    // correct_scores is sorted ascending: count those strictly above the threshold.
    let above =
        correct_scores.len() - correct_scores.partition_point(|&s| f64::from(s) <= threshold);
    1.0 - above as f64 / mated.max(1) as f64
}

/// 1:N figures (CMC up to `max_rank`, FNIR at each FPIR, the DET curve).
pub fn identification(
    searches: &[Search],
    max_rank: usize,
    fpir_targets: &[f64],
) -> Identification {
    let mated: Vec<&Search> = searches.iter().filter(|s| s.truth.is_some()).collect();
    let mut non_mated_best: Vec<f32> = searches
        .iter()
        .filter(|s| s.truth.is_none())
        .filter_map(|s| s.candidates.first().map(|c| c.1))
        .collect();
    let non_mated = searches.len() - mated.len();
    let mut cmc = vec![0.0; max_rank];
    let mut correct_scores = Vec::new();
    for s in &mated {
        let truth = s.truth.as_deref();
        if let Some(rank) = s
            .candidates
            .iter()
            .position(|c| Some(c.0.as_str()) == truth)
        {
            for hit in cmc.iter_mut().skip(rank) {
                *hit += 1.0;
            }
            if rank == 0 {
                correct_scores.push(s.candidates[0].1);
            }
        }
    }
    for hit in &mut cmc {
        *hit /= mated.len().max(1) as f64;
    }
    correct_scores.sort_by(f32::total_cmp);
    non_mated_best.sort_by(|a, b| b.total_cmp(a));
    let threshold_at = |fpir: f64| -> f64 {
        let n = non_mated_best.len();
        let allowed = (fpir * n as f64).floor() as usize;
        match non_mated_best.get(allowed) {
            Some(&s) => f64::from(s),
            None => non_mated_best.last().map_or(-1.0, |&s| f64::from(s) - 1e-6),
        }
    };
    let at_fpir = if non_mated_best.is_empty() {
        Vec::new()
    } else {
        fpir_targets
            .iter()
            .map(|&f| {
                let t = threshold_at(f);
                (f, t, fnir(&correct_scores, mated.len(), t))
            })
            .collect()
    };
    let n = non_mated_best.len();
    let det = non_mated_best
        .iter()
        .enumerate()
        .map(|(i, &s)| DetPoint {
            threshold: f64::from(s),
            fpir: i as f64 / n as f64,
            fnir: fnir(&correct_scores, mated.len(), f64::from(s)),
        })
        .collect();
    Identification {
        mated: mated.len(),
        non_mated,
        cmc,
        at_fpir,
        det,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_from_known_scores() {
        let (mut genuine, mut impostor) = (ScoreHistogram::default(), ScoreHistogram::default());
        for s in [0.9, 0.8, 0.7, 0.6, 0.2] {
            genuine.add(s);
        }
        for i in 0..1000 {
            impostor.add(-0.5 + i as f32 / 1000.0 * 0.9); // -0.5 .. 0.4
        }
        let v = verification(&genuine, &impostor, &[1e-2, 1e-3]);
        assert_eq!((v.genuine_pairs, v.impostor_pairs), (5, 1000));
        let (_, p) = v.at_far[0];
        assert!(p.far <= 1e-2 && p.far > 0.005, "{p:?}");
        assert!((p.threshold - 0.391).abs() < 2e-3, "{p:?}");
        assert!(
            (p.tar - 0.8).abs() < 1e-9,
            "4 of 5 genuine scores are above: {p:?}"
        );
        let (_, p) = v.at_far[1];
        assert!(p.far <= 1e-3, "{p:?}");
        assert!(v.eer > 0.0 && v.eer < 0.25, "{}", v.eer);
        assert!(v.roc.windows(2).all(|w| w[0].far >= w[1].far));
    }

    #[test]
    fn identification_as_vargface_evaluate_defines_it() {
        let search = |truth: Option<&str>, c: &[(&str, f32)]| Search {
            truth: truth.map(str::to_string),
            candidates: c.iter().map(|(i, s)| (i.to_string(), *s)).collect(),
        };
        let searches = vec![
            search(Some("a"), &[("a", 0.9), ("b", 0.3)]),
            search(Some("b"), &[("a", 0.5), ("b", 0.4)]),
            search(Some("c"), &[("c", 0.35)]),
            search(Some("d"), &[]), // no face: a miss
            search(None, &[("a", 0.6)]),
            search(None, &[("b", 0.3)]),
        ];
        let id = identification(&searches, 3, &[0.5, 0.01]);
        assert_eq!((id.mated, id.non_mated), (4, 2));
        assert_eq!(id.cmc, vec![0.5, 0.75, 0.75]);
        // FPIR 0.5: one of two non-mated may pass: threshold 0.3; a (0.9) and c (0.35) pass.
        assert_eq!(id.at_fpir[0].1, f64::from(0.3f32));
        assert!((id.at_fpir[0].2 - 0.5).abs() < 1e-9);
        // FPIR 0.01: none may pass: threshold 0.6; only a passes.
        assert!((id.at_fpir[1].2 - 0.75).abs() < 1e-9);
        assert_eq!(id.det.len(), 2);
        assert_eq!(id.det[0].fpir, 0.0);
    }
}
