//! Progress display: a bar on a terminal, a plain line every few seconds otherwise (a log file,
//! a CI job, `demo | tee`), both counting tiles, the unit of work.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use wire::v1::JobStatus;

/// How often a plain progress line is printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Shows the progress of one job.
pub struct JobProgress {
    label: String,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Option<Instant>,
    last_done: u64,
}

impl JobProgress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn new(label: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} tiles {per_sec} {elapsed_precise} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label.to_owned());
            bar
        });
        Self {
            label: label.to_owned(),
            bar,
            started: Instant::now(),
            last_line: None,
            last_done: 0,
        }
    }

    /// Updates from a job status.
    pub fn update(&mut self, status: &JobStatus) {
        if let Some(bar) = &self.bar {
            bar.set_length(status.tiles_dirty);
            bar.set_position(status.tiles_done);
            return;
        }
        let first = self.last_line.is_none() && status.tiles_dirty > 0;
        let moved = status.tiles_done != self.last_done;
        let due = self.last_line.is_some_and(|t| t.elapsed() >= LINE_EVERY);
        let finished = status.tiles_dirty > 0 && status.tiles_done == status.tiles_dirty;
        if first || moved && (due || finished) {
            self.last_line = Some(Instant::now());
            self.last_done = status.tiles_done;
            eprintln!("{}", self.line(status));
        }
    }

    /// "filling: 12/40 tiles (30%), 2.1 tiles/s, 13 s left".
    fn line(&self, status: &JobStatus) -> String {
        let (done, total) = (status.tiles_done, status.tiles_dirty);
        let elapsed = self.started.elapsed().as_secs_f64();
        let mut line = format!("{}: {done}/{total} tiles", self.label);
        if total > 0 {
            line += &format!(" ({:.0}%)", 100.0 * done as f64 / total as f64);
        }
        if done > 0 && elapsed > 0.0 {
            let rate = done as f64 / elapsed;
            line += &format!(", {rate:.2} tiles/s");
            if done < total {
                line += &format!(", {:.0} s left", total.saturating_sub(done) as f64 / rate);
            }
        }
        line
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
