//! The plots of `vargid evaluate`, each as PNG and SVG (`plotters`): the ROC (1:1),
//! the DET curve (1:N) and the genuine and impostor score distributions with the
//! suggested threshold.

use std::path::{Path, PathBuf};

use plotters::coord::combinators::LogCoord;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::metrics::{Identification, ScoreHistogram, Verification, BINS};
use crate::plot_font::{self, FONT};
use crate::ClientError;

const SIZE: (u32, u32) = (900, 600);

type Drawn = Result<(), String>;

/// Labels of a log axis at whole decades only (plotters also labels 2e-1, 3e-1, ...
/// when the range spans few decades, and they overlap).
fn decade(x: &f64) -> String {
    let power = x.log10();
    if (power - power.round()).abs() < 1e-6 {
        format!("{x:.0e}")
    } else {
        String::new()
    }
}

fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

type RateChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<LogCoord<f64>, RangedCoordf64>>;

/// The ROC's and the DET's frame: a rate on a log axis from `lowest` to 1 against a rate
/// from 0 to 1, with the curve `points` (those left of `lowest` dropped) drawn in it.
fn rate_curve<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    caption: &str,
    (x_desc, y_desc): (&str, &str),
    lowest: f64,
    points: impl Iterator<Item = (f64, f64)>,
) -> Result<RateChart<'a, DB>, String> {
    root.fill(&WHITE).map_err(text)?;
    let mut chart = ChartBuilder::on(root)
        .caption(caption, (FONT, 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((lowest..1f64).log_scale(), 0f64..1f64)
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&decade)
        .label_style((FONT, 15))
        .draw()
        .map_err(text)?;
    chart
        .draw_series(LineSeries::new(
            points.filter(|p| p.0 >= lowest),
            BLUE.stroke_width(2),
        ))
        .map_err(text)?;
    Ok(chart)
}

fn roc<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, v: &Verification) -> Drawn {
    let lowest = 1.0 / (v.impostor_pairs.max(10) as f64);
    let mut chart = rate_curve(
        root,
        "1:1 verification: ROC",
        ("false accept rate (FAR)", "true accept rate (TAR)"),
        lowest,
        v.roc.iter().map(|p| (p.far, p.tar)),
    )?;
    chart
        .draw_series(
            v.at_far
                .iter()
                .map(|(_, p)| Circle::new((p.far.max(lowest), p.tar), 5, RED.filled())),
        )
        .map_err(text)?
        .label("TAR at FAR = 1e-2, 1e-3, 1e-4")
        .legend(|(x, y)| Circle::new((x, y), 5, RED.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 15))
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(text)?;
    root.present().map_err(text)
}

fn det<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, id: &Identification) -> Drawn {
    rate_curve(
        root,
        "1:N identification: DET",
        (
            "false positive identification rate (FPIR)",
            "false negative identification rate (FNIR)",
        ),
        1.0 / (id.non_mated.max(10) as f64),
        id.det.iter().map(|p| (p.fpir, p.fnir)),
    )?;
    root.present().map_err(text)
}

/// Shares of scores in 0.01-wide bins: (bin centre, share).
fn density(h: &ScoreHistogram) -> Vec<(f64, f64)> {
    const MERGE: usize = 100;
    let total = h.total().max(1) as f64;
    h.counts()
        .chunks(MERGE)
        .enumerate()
        .map(|(i, c)| {
            let centre = ScoreHistogram::lower_edge(i * MERGE) + MERGE as f64 / BINS as f64;
            (centre, c.iter().sum::<u64>() as f64 / total)
        })
        .collect()
}

fn scores<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    genuine: &ScoreHistogram,
    impostor: &ScoreHistogram,
    threshold: Option<(f64, String)>,
) -> Drawn {
    root.fill(&WHITE).map_err(text)?;
    let (g, i) = (density(genuine), density(impostor));
    let seen = g.iter().chain(&i).filter(|(_, share)| *share > 0.0);
    let lo = seen.clone().map(|p| p.0).fold(1.0, f64::min);
    let hi = seen.clone().map(|p| p.0).fold(-1.0, f64::max);
    let top = seen.map(|p| p.1).fold(0.0, f64::max) * 1.1;
    let (lo, hi) = ((lo * 10.0).floor() / 10.0, (hi * 10.0).ceil() / 10.0);
    let mut chart = ChartBuilder::on(root)
        .caption("1:1 score distributions", (FONT, 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(lo.min(hi - 0.1)..hi, 0f64..top.max(1e-3))
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc("cosine similarity")
        .y_desc("share of pairs per 0.01")
        .label_style((FONT, 15))
        .draw()
        .map_err(text)?;
    chart
        .draw_series(LineSeries::new(g, GREEN.stroke_width(2)))
        .map_err(text)?
        .label(format!("genuine pairs ({})", genuine.total()))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(i, RED.stroke_width(2)))
        .map_err(text)?
        .label(format!("impostor pairs ({})", impostor.total()))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    if let Some((t, label)) = threshold {
        chart
            .draw_series(LineSeries::new(
                [(t, 0.0), (t, top.max(1e-3))],
                BLACK.stroke_width(1),
            ))
            .map_err(text)?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 15))
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(text)?;
    root.present().map_err(text)
}

/// Draws one plot as `DIR/NAME.png` and `DIR/NAME.svg`; returns the two paths.
fn both(
    dir: &Path,
    name: &str,
    draw: impl Fn(&DrawingArea<BitMapBackend, Shift>) -> Drawn,
    draw_svg: impl Fn(&DrawingArea<SVGBackend, Shift>) -> Drawn,
) -> Result<Vec<PathBuf>, ClientError> {
    plot_font::register();
    let (png, svg) = (
        dir.join(format!("{name}.png")),
        dir.join(format!("{name}.svg")),
    );
    let failed = |path: &Path, message: String| ClientError::Input {
        path: path.into(),
        message: format!("drawing the plot: {message}"),
    };
    draw(&BitMapBackend::new(&png, SIZE).into_drawing_area()).map_err(|m| failed(&png, m))?;
    draw_svg(&SVGBackend::new(&svg, SIZE).into_drawing_area()).map_err(|m| failed(&svg, m))?;
    Ok(vec![png, svg])
}

/// Writes every plot the figures allow into `dir`; returns the files written.
pub fn write_all(
    dir: &Path,
    verification: Option<(&Verification, &ScoreHistogram, &ScoreHistogram)>,
    identification: Option<&Identification>,
    threshold: Option<(f64, String)>,
) -> Result<Vec<PathBuf>, ClientError> {
    let mut files = Vec::new();
    if let Some((v, genuine, impostor)) = verification {
        if v.genuine_pairs > 0 && v.impostor_pairs > 0 {
            files.extend(both(dir, "roc", |a| roc(a, v), |a| roc(a, v))?);
            let t = || threshold.clone();
            files.extend(both(
                dir,
                "scores",
                |a| scores(a, genuine, impostor, t()),
                |a| scores(a, genuine, impostor, t()),
            )?);
        }
    }
    if let Some(id) = identification.filter(|id| !id.det.is_empty()) {
        files.extend(both(dir, "det", |a| det(a, id), |a| det(a, id))?);
    }
    Ok(files)
}
