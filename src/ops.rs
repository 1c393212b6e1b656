//! Operator commands and background work: the historical import, the parent-date backfill, the
//! transparency log's sequencer and publisher, retention, signed exports, and `verify`, the offline
//! audit of a database or of an export.

pub mod backfill;
pub mod export;
pub mod import;
pub mod log;
pub mod retention;
pub mod verify;

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Progress on a terminal as a bar; elsewhere as a plain line every `every` items.
pub struct Progress {
    bar: Option<ProgressBar>,
    every: u64,
    last_line: u64,
    what: &'static str,
}

impl Progress {
    /// Progress over `total` units (`None`: unknown), counting `what`.
    pub fn new(total: Option<u64>, unit_bytes: bool, what: &'static str, every: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(total) => ProgressBar::new(total),
                None => ProgressBar::new_spinner(),
            };
            let template = if unit_bytes {
                "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}"
            } else {
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} ({per_sec}, eta {eta}) {msg}"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            every,
            last_line: 0,
            what,
        }
    }

    /// Moves the bar to `position` and reports `done` items, with a log line each time `done`
    /// passes a multiple of `every` (above the bar on a terminal).
    pub fn update(&mut self, position: u64, done: u64) {
        let line = done / self.every > self.last_line / self.every;
        match &self.bar {
            Some(bar) => {
                bar.set_position(position);
                bar.set_message(format!("{done} {}", self.what));
                if line {
                    bar.println(format!("{done} {}", self.what));
                }
            }
            None if line => tracing::info!(done, "{} {}", done, self.what),
            None => {}
        }
        self.last_line = done;
    }

    /// Ends the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
