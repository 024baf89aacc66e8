//! Command-line arguments of `terrafill` (DESIGN.md §1).
//!
//! Numeric flags set `allow_negative_numbers`, so that `--overlap -1` is reported as an invalid
//! value of `--overlap` (naming the flag) rather than as an unknown argument `-1`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Fill gaps in (and generate) Earth-observation rasters with diffusion models, at any scale.
#[derive(Debug, Parser)]
#[command(name = "terrafill", version, about)]
pub struct Cli {
    /// Configuration file (TOML; see config/default.toml). Env: TERRAFILL__SECTION__KEY overrides.
    #[arg(long, global = true, env = "TERRAFILL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log as JSON lines (default: human-readable on a terminal, JSON otherwise).
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fill the gaps of a scene in this process (with --broker: submit it to that cluster instead).
    Fill(FillArgs),
    /// Submit a fill job to a cluster and wait for it (the coordinator for one job). The job may
    /// be a job file: `submit JOB.toml` (keys are the flags; `{date}` templates).
    Submit(SubmitArgs),
    /// Restart a failed job (same arguments or job file): compute only its failed and missing
    /// tiles, in this process or, with --broker, on that cluster.
    Retry(FillArgs),
    /// Generate a new field of any size from a checkpoint (a fill of a blank canvas, with
    /// parity phases), in this process or, with --broker, on that cluster.
    Generate(GenerateArgs),
    /// Run a worker that computes tile tasks from the broker.
    Worker(ServiceArgs),
    /// Run the stitcher that blends tile outputs into mosaics.
    Stitcher(ServiceArgs),
    /// Show the status of a job.
    Status(StatusArgs),
    /// Score a filled scene against the truth (RMSE, MAE, PSNR, SSIM on filled pixels) as JSON.
    Eval(EvalArgs),
    /// Train a diffusion model on a scene's own observed pixels.
    Train(TrainArgs),
    /// Fill gaps in the bundled sample scene and score the result against the withheld truth.
    Demo(DemoArgs),
    /// Draw a filled scene as a PNG: the input, the fill (filled pixels outlined), the spread.
    Preview(PreviewArgs),
    /// Convert a GeoTIFF into a Zarr scene (no-data as NaN; CRS, geotransform, x/y coordinates).
    Import(ImportArgs),
}

/// The methods of `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Returns tiles unchanged (pipeline self-check; output = input bit for bit).
    Identity,
    /// Inverse-distance fill, comparable to GDAL FillNodata.
    Idw,
    /// Conditional diffusion model (needs --checkpoint).
    Diffusion,
}

/// Arguments shared by `fill` and `submit`.
#[derive(Debug, Clone, Args)]
pub struct FillArgs {
    /// Input Zarr group: ./path, file://, s3://, gs://, az://, memory://.
    pub input: String,
    /// Output Zarr group (written last, so an unfinished output never opens as complete).
    pub output: String,
    /// Array with the data.
    #[arg(long, default_value = "data")]
    pub array: String,
    /// Array marking missing pixels with 1 (optional).
    #[arg(long)]
    pub mask_array: Option<String>,
    /// Fill method.
    #[arg(long, value_enum, default_value_t = MethodArg::Idw)]
    pub method: MethodArg,
    /// Leave gaps farther than this many pixels from every observed pixel (of the same band)
    /// missing, like GDAL FillNodata's -md; default: fill every gap.
    #[arg(long, allow_negative_numbers = true)]
    pub max_distance: Option<u64>,
    /// Array (in the input group) non-zero where missing pixels must stay missing, such as a
    /// scene's no-data collar; shaped like the data or like its [y, x].
    #[arg(long)]
    pub keep_array: Option<String>,
    /// Diffusion checkpoint (safetensors) URL.
    #[arg(long)]
    pub checkpoint: Option<String>,
    /// Ensemble members (mean in `data`, standard deviation in `spread`).
    #[arg(long, allow_negative_numbers = true, default_value_t = 4)]
    pub ensemble: u32,
    /// Sampling settings.
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Parity-phase scheduling: a tile starts once its earlier-phase neighbours are staged and
    /// continues from their values in the overlap, so stochastic tiles (a single --member, a
    /// generated field) meet without seams. Needs an overlap.
    #[arg(long)]
    pub phases: bool,
    /// Job id; re-running with the same id resumes. Default: derived from the arguments.
    #[arg(long)]
    pub job_id: Option<String>,
    /// Where intermediate tile outputs live (default: OUTPUT.staging).
    #[arg(long)]
    pub staging: Option<String>,
    /// Broker URL (amqp://…). `fill` then submits the job to that cluster's workers and stitcher
    /// (as `submit` does) instead of running them in this process; `submit` needs one.
    #[arg(long, env = "TERRAFILL_BROKER", hide_env_values = true)]
    pub broker: Option<String>,
    /// Local workers in embedded mode.
    #[arg(long, allow_negative_numbers = true, default_value_t = 2)]
    pub workers: usize,
    /// Local stitchers in embedded mode (they share the results as a cluster's stitchers do).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1)]
    pub stitchers: usize,
    /// auto, cpu or cuda:N (default: the config's `worker.device`, `auto`).
    #[arg(long)]
    pub device: Option<String>,
    /// Serve /metrics and /healthz here (e.g. 127.0.0.1:9100).
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// With a job file (JOB.toml as the first argument): the date of its `{date}` templates,
    /// YYYY-MM-DD, today, yesterday or today-N (UTC; default today).
    #[arg(long)]
    pub date: Option<String>,
    /// Restart the job if it failed (set by `retry`).
    #[arg(skip)]
    pub retry: bool,
    /// The input is a blank canvas to generate on (set by `generate`).
    #[arg(skip)]
    pub generate: bool,
}

/// `generate`: a new field from a checkpoint, on the fill pipeline.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Output Zarr group (a blank canvas is staged beside it as OUTPUT.canvas).
    pub output: String,
    /// Diffusion checkpoint (safetensors) URL, trained with --blank-share above 0.
    #[arg(long)]
    pub checkpoint: String,
    /// Field size in pixels, HEIGHT,WIDTH.
    #[arg(long, conflicts_with = "like")]
    pub shape: Option<String>,
    /// Take the size, CRS, coordinates' attributes and dimension names from this scene.
    #[arg(long)]
    pub like: Option<String>,
    /// Array of --like's scene.
    #[arg(long, default_value = "data")]
    pub array: String,
    /// Output chunk side in pixels (with --shape; --like takes the scene's chunks).
    #[arg(long, allow_negative_numbers = true, default_value_t = 256)]
    pub chunk: u64,
    /// Ensemble members: 1 (the default) writes one sample; above 1 the output is their point
    /// estimate (smooth: the expected field) with `spread`, unless --member picks one.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1)]
    pub ensemble: u32,
    /// Sampling settings.
    #[command(flatten)]
    pub sample: SampleArgs,
    /// Sample every tile independently (no parity phases): faster, with seams.
    #[arg(long)]
    pub no_phases: bool,
    /// Job id (default: derived from the arguments).
    #[arg(long)]
    pub job_id: Option<String>,
    /// Broker URL: submit to that cluster's workers and stitcher instead of running here.
    #[arg(long, env = "TERRAFILL_BROKER", hide_env_values = true)]
    pub broker: Option<String>,
    /// Local workers in embedded mode.
    #[arg(long, allow_negative_numbers = true, default_value_t = 2)]
    pub workers: usize,
    /// auto, cpu or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// Serve /metrics and /healthz here.
    #[arg(long)]
    pub metrics_addr: Option<String>,
}

/// The sampling flags `fill` and `generate` share.
#[derive(Debug, Clone, Args)]
pub struct SampleArgs {
    /// DDIM sampling steps.
    #[arg(long, allow_negative_numbers = true, default_value_t = 25)]
    pub steps: u32,
    /// Write this ensemble member instead of the mean.
    #[arg(long, allow_negative_numbers = true)]
    pub member: Option<u32>,
    /// Also write every member: an array `members` with a leading `member` dimension (their
    /// deviations from the mean carry the checkpoint's spread calibration, like `spread`).
    #[arg(long)]
    pub members: bool,
    /// DDIM η: 1 (default) samples like DDPM; 0 is deterministic DDIM (worse fills in our tests).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    pub eta: f32,
    /// Tile size in pixels (diffusion: default the checkpoint's).
    #[arg(long, allow_negative_numbers = true)]
    pub tile: Option<u64>,
    /// Overlap between tiles in pixels.
    #[arg(long, allow_negative_numbers = true)]
    pub overlap: Option<u64>,
    /// Job seed (ensemble members derive their seeds from it).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub seed: u64,
}

/// `submit`: the fill arguments plus detaching.
#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    /// The job, as for `fill` (--broker is required).
    #[command(flatten)]
    pub fill: FillArgs,
    /// Return once the job is published instead of waiting for it.
    #[arg(long)]
    pub detach: bool,
}

/// `worker` and `stitcher`.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Broker URL (amqp://user:pass@host:5672/%2f).
    #[arg(long, env = "TERRAFILL_BROKER", hide_env_values = true)]
    pub broker: String,
    /// auto, cpu or cuda:N (workers).
    #[arg(long)]
    pub device: Option<String>,
    /// Tiles per batch (workers).
    #[arg(long, allow_negative_numbers = true)]
    pub batch: Option<usize>,
    /// Serve /metrics /healthz /readyz here.
    #[arg(long)]
    pub metrics_addr: Option<String>,
}

/// `status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Job id.
    #[arg(required_unless_present_any = ["list", "checkpoint"])]
    pub job_id: Option<String>,
    /// A training run in rounds instead (`train --workers`): its checkpoint URL. Prints the
    /// last version, the round in progress with its shard results, step and loss.
    #[arg(long, conflicts_with_all = ["job_id", "list", "output", "staging"])]
    pub checkpoint: Option<String>,
    /// List every job staged at --output's (or --staging's) staging location instead, with its
    /// state and progress, as a JSON array.
    #[arg(long, conflicts_with_all = ["job_id", "broker"])]
    pub list: bool,
    /// Output URL of the job (reads its staged status).
    #[arg(long)]
    pub output: Option<String>,
    /// Staging URL, if not OUTPUT.staging.
    #[arg(long)]
    pub staging: Option<String>,
    /// Broker URL: listen for the job's live progress events.
    #[arg(long, env = "TERRAFILL_BROKER", hide_env_values = true)]
    pub broker: Option<String>,
    /// How long to listen on the broker, in seconds.
    #[arg(long, allow_negative_numbers = true, default_value_t = 10)]
    pub wait: u64,
    /// Call a running job `stale` (and warn) when its status has not changed for this many
    /// seconds: its stitcher, workers or coordinator may be down.
    #[arg(long, allow_negative_numbers = true, default_value_t = 300)]
    pub stale_after: u64,
}

/// `eval`.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Filled scene (Zarr group with `data`, and `filled` if terrafill wrote it).
    pub prediction: String,
    /// Truth (Zarr group). Without one only `--seams` is measured, on every pixel of the
    /// prediction (a generated field has no truth).
    pub truth: Option<String>,
    /// Array in the truth group (default: `data`).
    #[arg(long, default_value = "data")]
    pub truth_array: String,
    /// Array (in the truth group) marking the pixels to score with non-zero; default: the
    /// prediction's `filled` array, else every pixel.
    #[arg(long)]
    pub mask: Option<String>,
    /// Also compare semivariograms (texture) up to this lag in pixels, per band.
    #[arg(long, allow_negative_numbers = true)]
    pub variogram: Option<usize>,
    /// Also measure seams where the prediction's tiles overlapped (0 is seamless), over the
    /// scored pixels, for the prediction and for the truth on the same grid (its noise floor).
    /// The grid comes from the prediction's provenance (`terrafill.tile`, `terrafill.overlap`).
    #[arg(long)]
    pub seams: bool,
}

/// `train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Scenes to learn from (their observed pixels): one, or several with the same number of
    /// bands, whose windows are drawn in proportion to their size. Each is a URL, optionally
    /// with `#bands=I,J,…` (0-based) to take those bands in that order; a prefix ending in `/`
    /// (every `*.zarr` group directly below it); or `@LIST` (a file or object with one of these
    /// per line, `#` comments). With a `[band, y, x]` scene among them the model is a
    /// single-image one and each date of a time series is one more image.
    #[arg(required = true, num_args = 1..)]
    pub scenes: Vec<String>,
    /// Where to write the checkpoint (any supported URL).
    #[arg(long)]
    pub checkpoint: String,
    /// Array with the data.
    #[arg(long, default_value = "data")]
    pub array: String,
    /// Array marking missing pixels with 1.
    #[arg(long)]
    pub mask_array: Option<String>,
    /// Model size: small, base or large (default: large on CUDA, base on CPU). Sets the UNet,
    /// tile, batch, steps and learning rate; the flags below override it.
    #[arg(long)]
    pub model: Option<String>,
    /// Optimiser steps (default: the preset's).
    #[arg(long, allow_negative_numbers = true)]
    pub steps: Option<usize>,
    /// Training tile size (default: the preset's); `fill` uses it as its default tile.
    #[arg(long, allow_negative_numbers = true)]
    pub tile: Option<usize>,
    /// Tiles per step (default: the preset's).
    #[arg(long, allow_negative_numbers = true)]
    pub batch: Option<usize>,
    /// Peak learning rate (default: the preset's).
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Fraction of each batch trained at the last noise level, where `fill` reads its point
    /// estimate (0–1; default: the preset's).
    #[arg(long, allow_negative_numbers = true)]
    pub estimate_share: Option<f64>,
    /// Fraction of training windows hidden whole, so the model learns to start a field from
    /// nothing (0–1, below 1; default 0). A checkpoint for `generate` needs it: 0.25 works.
    #[arg(long, allow_negative_numbers = true)]
    pub blank_share: Option<f64>,
    /// Train in rounds of local SGD over this many shards per round, run by as many local
    /// workers (DiLoCo: each shard trains --inner-steps steps from the same version, then the
    /// versions are averaged with an outer Nesterov step).
    #[arg(long, allow_negative_numbers = true)]
    pub workers: Option<usize>,
    /// Rounds of local SGD (default: the preset's steps / --inner-steps, rounded up).
    #[arg(long, allow_negative_numbers = true)]
    pub rounds: Option<usize>,
    /// Inner steps per shard and round (default 100).
    #[arg(long, allow_negative_numbers = true)]
    pub inner_steps: Option<usize>,
    /// Outer learning rate of rounds.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.7)]
    pub outer_lr: f64,
    /// Outer Nesterov momentum of rounds.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.9)]
    pub outer_momentum: f64,
    /// Broker URL (amqp://…): this process coordinates the rounds and the cluster's
    /// `terrafill worker`s train the --workers shards of each (needs --workers).
    #[arg(long)]
    pub broker: Option<String>,
    /// Seed.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub seed: u64,
    /// Continue from the checkpoint at --checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// auto, cpu or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Serve /metrics /healthz /readyz here while training (steps, loss, step seconds).
    #[arg(long)]
    pub metrics_addr: Option<String>,
    /// With a job file (JOB.toml as the first argument): the date of its `{date}` templates,
    /// YYYY-MM-DD, today, yesterday or today-N (UTC; default today).
    #[arg(long)]
    pub date: Option<String>,
}

/// `preview`.
#[derive(Debug, Clone, Args)]
pub struct PreviewArgs {
    /// A `fill` output (Zarr group with `data` and `filled`, and `spread` for ensembles).
    pub output: String,
    /// Where to write the PNG.
    #[arg(long)]
    pub png: PathBuf,
    /// Planes to show, counted over the leading dimensions flattened (band, or time×band): three
    /// for red, green and blue, or one for grey. Default: the first three, or the first one.
    #[arg(long, value_delimiter = ',')]
    pub planes: Option<Vec<u64>>,
}

/// `import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// GeoTIFF (a path or any supported URL).
    pub input: String,
    /// Zarr group to write.
    pub output: String,
    /// Name of the data array.
    #[arg(long, default_value = "data")]
    pub array: String,
    /// Chunk side in pixels.
    #[arg(long, allow_negative_numbers = true, default_value_t = 256)]
    pub chunk: u64,
}

/// `demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Where to write the demo's input, truth and output.
    #[arg(long, default_value = "terrafill-demo")]
    pub dir: PathBuf,
    /// Method (default: diffusion with the bundled checkpoint, plus idw for comparison).
    #[arg(long, value_enum)]
    pub method: Option<MethodArg>,
    /// Local workers.
    #[arg(long, allow_negative_numbers = true, default_value_t = 2)]
    pub workers: usize,
}
