//! Progress on stderr for the commands that send many calls: an `indicatif` bar with
//! rate and ETA on a terminal, plain lines otherwise (logs, CI, pipes).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Progress on stderr: a bar on a terminal, else a plain line every 2 s and at the end.
/// A total of `None` (a stream of unknown length) shows the count and rate only.
pub struct Progress {
    command: &'static str,
    noun: &'static str,
    bar: Option<indicatif::ProgressBar>,
    total: Option<usize>,
    count: usize,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    pub fn new(command: &'static str, noun: &'static str, total: usize) -> Self {
        Self::with_total(command, noun, Some(total))
    }

    pub fn with_total(command: &'static str, noun: &'static str, total: Option<usize>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let (bar, template) = match total {
                Some(n) => (
                    indicatif::ProgressBar::new(n as u64),
                    format!("{{bar:40}} {{pos}}/{{len}} {noun}  {{per_sec}}  ETA {{eta}}  {{msg}}"),
                ),
                None => (
                    indicatif::ProgressBar::no_length(),
                    format!("{{spinner}} {{pos}} {noun}  {{per_sec}}  {{msg}}"),
                ),
            };
            if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            command,
            noun,
            bar,
            total,
            count: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    /// `count` of the total are done.
    pub fn done(&mut self, count: usize) {
        self.count = count;
        if let Some(bar) = &self.bar {
            bar.set_position(count as u64);
            return;
        }
        if Some(count) == self.total || self.last_line.elapsed() >= Duration::from_secs(2) {
            self.line();
        }
    }

    fn line(&mut self) {
        self.last_line = Instant::now();
        let count = self.count;
        let rate = count as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let (command, noun) = (self.command, self.noun);
        match self.total {
            Some(total) => {
                let eta = total.saturating_sub(count) as f64 / rate.max(1e-9);
                eprintln!("{command}: {count}/{total} {noun}, {rate:.1}/s, ETA {eta:.0} s");
            }
            None => eprintln!("{command}: {count} {noun}, {rate:.1}/s"),
        }
    }

    /// The end: the bar stays as it is; without one, a last line when the total was
    /// unknown (a known total printed it when reached).
    pub fn finish(&mut self) {
        match &self.bar {
            Some(bar) => bar.finish(),
            None if self.total.is_none() => self.line(),
            None => {}
        }
    }
}
