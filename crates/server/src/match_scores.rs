//! Identify's top-1 scores and match rate per gallery, so an operator sees drift (a new
//! camera, a model change, a population the threshold was not chosen for): the
//! Prometheus histogram and counter (see `metrics`), and one log line per gallery
//! every `metrics.match_log_interval_s` summarising the searches since the last one.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Top-1 scores in 0.05-wide bins over [0, 1]; bin 0 also holds negative scores.
const BINS: usize = 20;

#[derive(Debug, Default, Clone, PartialEq)]
struct Window {
    searches: u64,
    /// Searches of an empty gallery (no candidate, so no score).
    empty: u64,
    matches: u64,
    bins: [u64; BINS],
}

impl Window {
    /// The upper edge of the bin holding the q-th quantile of the scores.
    fn quantile(&self, q: f64) -> Option<f64> {
        let scored: u64 = self.bins.iter().sum();
        if scored == 0 {
            return None;
        }
        let wanted = (q * scored as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.bins.iter().enumerate() {
            seen += n;
            if seen >= wanted {
                return Some((i + 1) as f64 / BINS as f64);
            }
        }
        Some(1.0)
    }
}

/// Per-gallery windows of Identify outcomes since the last summary.
#[derive(Debug, Default)]
pub struct MatchScores {
    windows: Mutex<BTreeMap<String, Window>>,
}

impl MatchScores {
    /// One search: its best candidate's score (None: the gallery was empty) and
    /// whether it was a match.
    pub fn record(&self, gallery: &str, top1: Option<f32>, matched: bool) {
        crate::metrics::identify_search(gallery, top1, matched);
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        let w = windows.entry(gallery.to_string()).or_default();
        w.searches += 1;
        w.matches += u64::from(matched);
        match top1 {
            Some(score) => {
                let bin = (score.clamp(0.0, 1.0) * BINS as f32) as usize;
                w.bins[bin.min(BINS - 1)] += 1;
            }
            None => w.empty += 1,
        }
    }

    /// Logs one line per gallery searched since the last call, and starts afresh.
    pub fn log_and_reset(&self) {
        let taken = match self.windows.lock() {
            Ok(mut windows) => std::mem::take(&mut *windows),
            Err(_) => return,
        };
        for (gallery, w) in taken {
            let fmt = |q| w.quantile(q).map_or("-".into(), |v| format!("{v:.2}"));
            tracing::info!(
                gallery = %gallery,
                searches = w.searches,
                match_rate = %format!("{:.3}", w.matches as f64 / w.searches.max(1) as f64),
                empty_gallery = w.empty,
                top1_p10 = %fmt(0.1),
                top1_p50 = %fmt(0.5),
                top1_p90 = %fmt(0.9),
                "identify match rate and top-1 scores since the last summary (bin upper edges, 0.05 wide)"
            );
        }
    }

    /// Logs a summary every `every` until the process ends (spawned by the server).
    pub async fn log_every(self: std::sync::Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.tick().await; // the first tick is immediate
        loop {
            tick.tick().await;
            self.log_and_reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_matches_and_bin_scores() {
        let m = MatchScores::default();
        m.record("a", Some(0.62), true);
        m.record("a", Some(0.21), false);
        m.record("a", Some(-0.1), false);
        m.record("a", None, false);
        let windows = m.windows.lock().unwrap().clone();
        let w = &windows["a"];
        assert_eq!((w.searches, w.matches, w.empty), (4, 1, 1));
        assert_eq!(w.bins[0], 1);
        assert_eq!(w.bins[4], 1);
        assert_eq!(w.bins[12], 1);
        assert_eq!(w.quantile(0.5), Some(0.25));
        assert_eq!(w.quantile(0.9), Some(0.65));
        drop(windows);
        m.log_and_reset();
        assert!(m.windows.lock().unwrap().is_empty());
    }
}
