//! 1:1 scores of every pair of photos: genuine (same person) and impostor (two
//! people), into histograms. All pairs are scored here, on the client's cores, from the
//! server's embeddings; a cosine is what `Verify` computes.

use super::metrics::ScoreHistogram;

/// Pairs of a folder of this many photos or fewer are all scored (13k photos, 87M
/// pairs, take a few seconds); above it impostor pairs are sampled evenly.
pub const MAX_IMPOSTOR_PAIRS: u64 = 200_000_000;

/// A dot product in eight lanes, which the compiler turns into SIMD (a plain
/// iterator sum must add in order and does not).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((lane, p), q) in lanes.iter_mut().zip(x).zip(y) {
            *lane += p * q;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}

/// (genuine, impostor) histograms over the pairs of `photos` (person, embedding).
pub fn score_pairs(photos: &[(usize, &[f32])]) -> (ScoreHistogram, ScoreHistogram) {
    let n = photos.len() as u64;
    let pairs = n * n.saturating_sub(1) / 2;
    // Every stride-th impostor partner of a photo is scored.
    let stride = pairs.div_ceil(MAX_IMPOSTOR_PAIRS).max(1) as usize;
    let vectors: Vec<Vec<f32>> = photos.iter().map(|(_, v)| normalised(v)).collect();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let partials: Vec<(ScoreHistogram, ScoreHistogram)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let vectors = &vectors;
                scope.spawn(move || {
                    let (mut genuine, mut impostor) =
                        (ScoreHistogram::default(), ScoreHistogram::default());
                    // Interleaved rows: row i has n-1-i partners, so blocks would be uneven.
                    for i in (t..vectors.len()).step_by(threads) {
                        let (person, a) = (photos[i].0, &vectors[i]);
                        for (j, b) in vectors.iter().enumerate().skip(i + 1) {
                            let same = photos[j].0 == person;
                            if !same && stride > 1 && (i + j) % stride != 0 {
                                continue;
                            }
                            let score = dot(a, b);
                            if same {
                                genuine.add(score);
                            } else {
                                impostor.add(score);
                            }
                        }
                    }
                    (genuine, impostor)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let (mut genuine, mut impostor) = (ScoreHistogram::default(), ScoreHistogram::default());
    for (g, i) in &partials {
        genuine.merge(g);
        impostor.merge(i);
    }
    (genuine, impostor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genuine_and_impostor_pairs_are_counted() {
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 2.0];
        let photos: Vec<(usize, &[f32])> = vec![(0, &a), (0, &a), (1, &b)];
        let (genuine, impostor) = score_pairs(&photos);
        assert_eq!((genuine.total(), impostor.total()), (1, 2));
        assert_eq!(genuine.counts()[super::super::metrics::BINS - 1], 1);
    }
}
