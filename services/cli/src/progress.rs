//! Progress display: a bar on a terminal, periodic log lines otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use wire::v1::JobStatus;

/// Shows the progress of one job.
pub struct JobProgress {
    bar: Option<ProgressBar>,
    last_log: Instant,
}

impl JobProgress {
    /// A bar when stderr is a terminal.
    pub fn new(label: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} chunks {elapsed_precise} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label.to_owned());
            bar
        });
        Self {
            bar,
            last_log: Instant::now(),
        }
    }

    /// Updates from a job status.
    pub fn update(&mut self, status: &JobStatus) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(status.chunks_total);
                bar.set_position(status.chunks_written);
            }
            None if self.last_log.elapsed() >= Duration::from_secs(5) => {
                self.last_log = Instant::now();
                tracing::info!(
                    job = %status.job_id,
                    chunks_written = status.chunks_written,
                    chunks_total = status.chunks_total,
                    tiles_done = status.tiles_done,
                    tiles_dirty = status.tiles_dirty,
                    "progress"
                );
            }
            None => {}
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
