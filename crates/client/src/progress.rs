//! Progress on stderr for the commands that send many calls: an `indicatif` bar with
//! rate and ETA on a terminal, plain lines otherwise (logs, CI, pipes).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Progress on stderr: a bar on a terminal, else a plain line every 2 s and at the end.
pub struct Progress {
    command: &'static str,
    noun: &'static str,
    bar: Option<indicatif::ProgressBar>,
    total: usize,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    pub fn new(command: &'static str, noun: &'static str, total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
                "{{bar:40}} {{pos}}/{{len}} {noun}  {{per_sec}}  ETA {{eta}}  {{msg}}"
            )) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            command,
            noun,
            bar,
            total,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    pub fn done(&mut self, count: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(count as u64);
            return;
        }
        if count == self.total || self.last_line.elapsed() >= Duration::from_secs(2) {
            self.last_line = Instant::now();
            let elapsed = self.started.elapsed().as_secs_f64();
            let rate = count as f64 / elapsed.max(1e-3);
            let eta = (self.total - count) as f64 / rate.max(1e-9);
            eprintln!(
                "{}: {count}/{} {}, {rate:.1}/s, ETA {eta:.0} s",
                self.command, self.total, self.noun
            );
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
