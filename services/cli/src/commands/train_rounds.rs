//! `train --workers N --rounds R --inner-steps H`: rounds of local SGD ([`model::rounds`]), one
//! shard per worker and round, trained by the workers of a [`Cluster`] (N local ones, or a
//! cluster's with `--broker`).
//!
//! Every version is written next to the checkpoint (`CHECKPOINT.versions/vNNNNNN.safetensors`,
//! then `latest` naming it; each put atomic), so a killed run started again with the same
//! arguments resumes from the last version; a version from another run is refused.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use model::rounds::{self, OuterConfig};
use model::{Corpus, Device, TrainConfig};

use crate::args::TrainArgs;
use crate::train_metrics::TrainMetrics;

use super::train::Reporter;
use super::train_cluster::Cluster;

/// Inner steps per round when `--inner-steps` is not given.
const DEFAULT_INNER_STEPS: usize = 100;

/// The rounds a `train` asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Shards (and local workers) per round.
    pub shards: usize,
    /// Rounds.
    pub rounds: usize,
    /// Inner steps H.
    pub inner_steps: usize,
    /// The outer step.
    pub outer: OuterConfig,
}

impl Plan {
    /// The plan of `args` if it asks for rounds (`--workers`, `--rounds` or `--inner-steps`);
    /// sets `tcfg.steps` to R·H.
    ///
    /// # Errors
    /// Zero workers, rounds or inner steps, a `--steps` other than R·H, or an outer step outside
    /// (0, 2) × [0, 1).
    pub fn from_args(args: &TrainArgs, tcfg: &mut TrainConfig) -> anyhow::Result<Option<Self>> {
        if args.workers.is_none() && args.rounds.is_none() && args.inner_steps.is_none() {
            return Ok(None);
        }
        let shards = args.workers.unwrap_or(1);
        let inner_steps = args.inner_steps.unwrap_or(DEFAULT_INNER_STEPS);
        if shards == 0 || inner_steps == 0 || args.rounds == Some(0) {
            anyhow::bail!("--workers, --rounds and --inner-steps must be positive");
        }
        let rounds = args
            .rounds
            .unwrap_or_else(|| tcfg.steps.div_ceil(inner_steps).max(1));
        if let Some(steps) = args.steps {
            if steps != rounds * inner_steps {
                anyhow::bail!(
                    "--steps {steps} is not --rounds {rounds} × --inner-steps {inner_steps}; \
                     give two of the three"
                );
            }
        }
        let lr_ok = args.outer_lr > 0.0 && args.outer_lr < 2.0;
        if !lr_ok || !(0.0..1.0).contains(&args.outer_momentum) {
            anyhow::bail!(
                "--outer-lr must be in (0, 2) and --outer-momentum in [0, 1), got {} and {}",
                args.outer_lr,
                args.outer_momentum
            );
        }
        tcfg.steps = rounds * inner_steps;
        Ok(Some(Self {
            shards,
            rounds,
            inner_steps,
            outer: OuterConfig {
                lr: args.outer_lr,
                momentum: args.outer_momentum,
            },
        }))
    }
}

use wire::train_keys::{self, version as version_url, versions_dir};

/// Runs the rounds and returns the final, calibrated checkpoint.
///
/// # Errors
/// Store failures (naming the object), a version from another run, and training errors.
pub async fn run(
    checkpoint: &str,
    corpus: Arc<Corpus>,
    tcfg: TrainConfig,
    device: Device,
    plan: &Plan,
    cluster: &Cluster,
    metrics: TrainMetrics,
) -> anyhow::Result<Vec<u8>> {
    let tcfg = Arc::new(tcfg);
    let (mut done, mut version) =
        resume_or_start(checkpoint, &corpus, &tcfg, &device, plan).await?;
    let total = plan.rounds * plan.inner_steps * plan.shards;
    let mut report = Reporter::new(total, metrics.clone());
    if done > 0 {
        report.line(&format!(
            "resuming at version {done} of {} ({})",
            plan.rounds,
            version_url(checkpoint, done)
        ));
    }
    while done < plan.rounds {
        let started = Instant::now();
        let base = done * plan.inner_steps * plan.shards;
        let results = cluster
            .round(done, &mut report, &metrics, (base, total))
            .await?;
        metrics
            .checkpoint_bytes
            .inc_by(results.iter().map(|r| r.len() as u64).sum());
        let next = rounds::average(&version, &results, &plan.outer)
            .with_context(|| format!("averaging round {}", done + 1))?;
        done += 1;
        write_version(checkpoint, done, &next).await?;
        metrics.rounds.inc();
        metrics.checkpoint_bytes.inc_by(next.len() as u64);
        let loss = rounds::version_of(&next)?
            .0
            .loss
            .last()
            .map_or(f32::NAN, |l| l.1);
        metrics.loss.set(f64::from(loss));
        let secs = started.elapsed().as_secs_f64();
        report.show(&model::TrainProgress {
            step: done * plan.inner_steps * plan.shards,
            steps: total,
            loss,
        });
        report.line(&format!(
            "round {done}/{}: loss {loss:.4}, {:.2} steps/s over {} workers, version {}",
            plan.rounds,
            (plan.inner_steps * plan.shards) as f64 / secs.max(1e-9),
            plan.shards,
            version_url(checkpoint, done)
        ));
        version = next;
    }
    report.finish();
    tokio::task::spawn_blocking(move || rounds::finish(&corpus, &tcfg, &version, &device))
        .await?
        .context("calibrating the final version")
}

/// The last written version of this run and its number, or a new version 0 (written).
async fn resume_or_start(
    checkpoint: &str,
    corpus: &Arc<Corpus>,
    tcfg: &Arc<TrainConfig>,
    device: &Device,
    plan: &Plan,
) -> anyhow::Result<(usize, Vec<u8>)> {
    let latest = train_keys::latest(checkpoint);
    match zarr_io::get_bytes(&latest).await {
        Ok(text) => {
            let n: usize = std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .with_context(|| format!("{latest} does not hold a version number"))?;
            let url = version_url(checkpoint, n);
            let bytes = zarr_io::get_bytes(&url)
                .await
                .with_context(|| format!("reading version {url}"))?
                .to_vec();
            let (history, state) =
                rounds::version_of(&bytes).with_context(|| format!("version {url}"))?;
            let step = history.step;
            if state.version != n
                || state.shards != plan.shards
                || state.inner_steps != plan.inner_steps
                || step != n * plan.inner_steps
                || history.seed != tcfg.seed
                || history.target_steps != tcfg.steps
            {
                anyhow::bail!(
                    "{url} belongs to another run (version {}, {} shards of {} steps, seed {}, {} \
                     steps in all; this run: {} shards of {} steps, seed {}, {} steps): remove \
                     {} or write the checkpoint elsewhere",
                    state.version,
                    state.shards,
                    state.inner_steps,
                    history.seed,
                    history.target_steps,
                    plan.shards,
                    plan.inner_steps,
                    tcfg.seed,
                    tcfg.steps,
                    versions_dir(checkpoint)
                );
            }
            Ok((n, bytes))
        }
        Err(zarr_io::ZarrIoError::ObjectNotFound { .. }) => {
            let (corpus, tcfg, device) = (corpus.clone(), tcfg.clone(), device.clone());
            let (shards, h) = (plan.shards, plan.inner_steps);
            let v0 = tokio::task::spawn_blocking(move || {
                rounds::initial_version(&corpus, &tcfg, shards, h, &device)
            })
            .await??;
            write_version(checkpoint, 0, &v0).await?;
            Ok((0, v0))
        }
        Err(e) => Err(e).with_context(|| format!("reading {latest}")),
    }
}

/// Writes version `n`, then points `latest` at it (each put is atomic, so `latest` never names
/// a half-written version).
async fn write_version(checkpoint: &str, n: usize, bytes: &[u8]) -> anyhow::Result<()> {
    let url = version_url(checkpoint, n);
    zarr_io::put_bytes(&url, bytes.to_vec().into())
        .await
        .with_context(|| format!("writing version {url}"))?;
    let latest = train_keys::latest(checkpoint);
    zarr_io::put_bytes(&latest, n.to_string().into_bytes().into())
        .await
        .with_context(|| format!("writing {latest}"))?;
    Ok(())
}
