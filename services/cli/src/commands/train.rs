//! `train`: self-supervised training of the diffusion model on a scene's observed pixels.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::TrainArgs;
use crate::config::Config;
use crate::train_metrics::TrainMetrics;

use super::train_cluster::Cluster;
use super::train_rounds as rounds;

pub async fn train(args: &TrainArgs, cfg: &Config) -> anyhow::Result<()> {
    let (health, registry) = super::serve_until(
        "train",
        args.metrics_addr.as_deref(),
        cfg,
        telemetry::Shutdown::new(),
    )
    .await?;
    let metrics = TrainMetrics::register(&registry)?;
    health.set_ready(true);
    let specs = super::train_scenes::expand(&args.scenes).await?;
    let chunks = Arc::new(zarr_io::ChunkCache::new(super::train_scenes::cache_bytes()?));
    let data = Arc::new(open_scenes(args, &specs, chunks.clone()).await?);
    let device = args.device.parse::<model::DeviceSpec>()?.device()?;
    let preset = match &args.model {
        Some(name) => name.parse::<model::Preset>()?,
        None => model::Preset::for_device(&device),
    };
    let mut tcfg = preset.train_config();
    if let Some(s) = args.steps {
        tcfg.steps = s;
    }
    match args.tile {
        Some(t) => tcfg.tile = t,
        None => {
            let (h, w) = data.smallest();
            let preset_tile = tcfg.tile;
            if let Some(t) = tcfg.fit_tile(h, w) {
                eprintln!(
                    "the {preset} model's {preset_tile}-px tile does not fit the {h}×{w} scene: \
                     training {t}-px tiles (fill takes them from the checkpoint)"
                );
            }
        }
    }
    if let Some(b) = args.batch {
        tcfg.batch = b;
    }
    if let Some(lr) = args.lr {
        tcfg.lr = lr;
    }
    if let Some(share) = args.estimate_share {
        tcfg.estimate_share = share;
    }
    if let Some(share) = args.blank_share {
        tcfg.blank_share = share;
    }
    tcfg.seed = args.seed;
    if specs.len() > 1 {
        log_shares(&data, &specs, &tcfg).await?;
    }
    let plan = rounds::Plan::from_args(args, &mut tcfg)?;
    if args.broker.is_some() && plan.is_none() {
        anyhow::bail!(
            "--broker trains in rounds: give --workers N (and --rounds or --inner-steps)"
        );
    }
    metrics.steps_planned.set(tcfg.steps as i64);
    metrics.batch_size.set(tcfg.batch as i64);
    let started = Instant::now();
    let steps = tcfg.steps;
    let bytes = match plan {
        Some(plan) => {
            if args.resume {
                anyhow::bail!(
                    "--resume is for plain training: rounds resume from the last version under \
                     {}.versions by themselves",
                    args.checkpoint
                );
            }
            let cluster = match &args.broker {
                Some(url) => {
                    if args.workers.is_none() {
                        anyhow::bail!(
                            "--broker needs --workers N, the shards per round (the result \
                             depends on it, so it is not taken from the cluster's size)"
                        );
                    }
                    let cluster = Cluster::connect(url, args, &specs, &tcfg, &plan).await?;
                    eprintln!(
                        "training job {} on the cluster at {}: {} shards per round",
                        cluster.job_id(),
                        broker::redact_url(url),
                        plan.shards
                    );
                    cluster
                }
                None => {
                    Cluster::embedded(args, &specs, &tcfg, &plan, &registry, chunks.clone()).await?
                }
            };
            let out = rounds::run(
                &args.checkpoint,
                data,
                tcfg,
                device,
                &plan,
                &cluster,
                metrics,
            )
            .await;
            cluster.close().await;
            out?
        }
        None => {
            let resume = if args.resume {
                Some(
                    zarr_io::get_bytes(&args.checkpoint)
                        .await
                        .with_context(|| {
                            format!("--resume: cannot read checkpoint {}", args.checkpoint)
                        })?,
                )
            } else {
                None
            };
            tokio::task::spawn_blocking(move || {
                let mut report = Reporter::new(steps, metrics);
                let out = model::train(
                    &data,
                    &tcfg,
                    resume.as_deref(),
                    &device,
                    &mut |p: &model::TrainProgress| report.step(p),
                );
                report.finish();
                out
            })
            .await??
        }
    };
    zarr_io::put_bytes(&args.checkpoint, bytes.into())
        .await
        .with_context(|| format!("writing checkpoint {}", args.checkpoint))?;
    println!(
        "trained {} steps of the {preset} model in {:.1} s; checkpoint {}",
        steps,
        started.elapsed().as_secs_f64(),
        args.checkpoint
    );
    Ok(())
}

/// One line per scene: its training windows and the share of samples drawn from it (the scan
/// is kept for training).
async fn log_shares(
    data: &Arc<model::Corpus>,
    specs: &[String],
    tcfg: &model::TrainConfig,
) -> anyhow::Result<()> {
    let (data, tile, min_observed) = (data.clone(), tcfg.tile, tcfg.min_observed);
    let shares =
        tokio::task::spawn_blocking(move || data.draw_shares(tile, min_observed)).await??;
    for (spec, (windows, share)) in specs.iter().zip(shares) {
        eprintln!(
            "{spec}: {windows} training windows, {:.1} % of samples",
            100.0 * share
        );
    }
    Ok(())
}

/// A training run's progress: a bar on a terminal, else a plain line every 10 s (a log file, a
/// CI job); and the step metrics.
pub(crate) struct Reporter {
    bar: Option<ProgressBar>,
    metrics: TrainMetrics,
    started: Instant,
    last_log: Instant,
    last_step: Instant,
    /// The last loss reported.
    loss: f32,
}

impl Reporter {
    /// For a run of `steps` steps.
    pub(crate) fn new(steps: usize, metrics: TrainMetrics) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(steps as u64);
            bar.set_style(
                ProgressStyle::with_template("training [{bar:40}] {pos}/{len} {msg} eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            metrics,
            started: now,
            last_log: now,
            last_step: now,
            loss: f32::NAN,
        }
    }

    /// One finished step.
    pub(crate) fn step(&mut self, p: &model::TrainProgress) {
        self.metrics
            .step(self.last_step.elapsed().as_secs_f64(), p.loss);
        self.last_step = Instant::now();
        self.show(p);
    }

    /// Moves the bar and the log to `p` without counting a step here (steps run elsewhere:
    /// a cluster's workers).
    /// A NaN loss (not known here) shows the last known one.
    pub(crate) fn show(&mut self, p: &model::TrainProgress) {
        if !p.loss.is_nan() {
            self.loss = p.loss;
        }
        let p = &model::TrainProgress {
            loss: self.loss,
            ..*p
        };
        if let Some(bar) = &self.bar {
            bar.set_position(p.step as u64);
            bar.set_message(format!("loss {:.4}", p.loss));
        } else if self.last_log.elapsed().as_secs() >= 10 || p.step == p.steps {
            self.last_log = Instant::now();
            let rate = p.step as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            let left = p.steps.saturating_sub(p.step) as f64 / rate.max(1e-9);
            eprintln!(
                "training: step {}/{} ({:.0}%), loss {:.4}, {rate:.2} steps/s, {left:.0} s left",
                p.step,
                p.steps,
                100.0 * p.step as f64 / p.steps.max(1) as f64,
                p.loss
            );
        }
    }

    /// Prints a line above the bar (or to stderr without one).
    pub(crate) fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// Clears the bar.
    pub(crate) fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The scenes `specs` as one training corpus, read window by window through `chunks`.
async fn open_scenes(
    args: &TrainArgs,
    specs: &[String],
    chunks: Arc<zarr_io::ChunkCache>,
) -> anyhow::Result<model::Corpus> {
    worker::open_corpus(
        specs,
        &args.array,
        args.mask_array.as_deref(),
        chunks,
        "train",
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The tile size a checkpoint was trained for.
pub async fn checkpoint_tile(url: &str) -> anyhow::Result<u64> {
    Ok(load_checkpoint(url).await?.tile_size() as u64)
}

/// The checkpoint at `url`, validated and loaded on the CPU.
pub async fn load_checkpoint(url: &str) -> anyhow::Result<model::FillModel> {
    let bytes = zarr_io::get_bytes(url)
        .await
        .with_context(|| format!("reading checkpoint {url}"))?;
    model::FillModel::from_checkpoint(&bytes, &model::DeviceSpec::Cpu.device()?)
        .with_context(|| format!("checkpoint {url}"))
}
