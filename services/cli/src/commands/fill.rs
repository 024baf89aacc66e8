//! `fill` (embedded) and `submit` (coordinator for one job on a cluster).

use anyhow::Context;
use coordinator::FillRequest;
use wire::v1::{JobStatus, Method};

use crate::args::{FillArgs, MethodArg, SubmitArgs};
use crate::config::Config;
use crate::progress::JobProgress;

/// Default tile and overlap of `identity` (which exercises the blend).
const DEFAULT_TILE: u64 = 256;
const DEFAULT_OVERLAP: u64 = 32;
/// Default tile and overlap of `idw`: its tiles give exactly the whole-scene fill (see
/// `idw::search_radii`), so they need no overlap, and larger tiles read less context per pixel.
const IDW_TILE: u64 = 512;
const IDW_OVERLAP: u64 = 0;

pub async fn fill(args: &FillArgs, cfg: &Config) -> anyhow::Result<()> {
    if let Some(url) = &args.broker {
        // Local workers and a local stitcher on a cluster's queues would take a share of its
        // jobs' tiles and results (a second stitcher splits a job's results): be a client instead.
        eprintln!(
            "terrafill fill: a broker is given ({}); submitting the job to that cluster's workers \
             and stitcher instead of running them in this process (drop --broker or unset \
             TERRAFILL_BROKER to fill here)",
            broker::redact_url(url)
        );
        return submit_and_wait(args, url, false, cfg).await;
    }
    let req = request(args).await?;
    let mut cfg = cfg.clone();
    if let Some(device) = &args.device {
        cfg.worker.device = device.clone();
    }
    let super::Served {
        shutdown,
        health,
        registry,
    } = super::serve("fill", args.metrics_addr.as_deref(), &cfg).await?;
    health.set_ready(true);
    let status = crate::embedded::fill(
        &req,
        crate::embedded::Services {
            workers: args.workers,
            stitchers: args.stitchers,
        },
        &cfg,
        &registry,
        &shutdown,
    )
    .await?;
    report(&status);
    shutdown.cancel();
    Ok(())
}

pub async fn submit(args: &SubmitArgs, cfg: &Config) -> anyhow::Result<()> {
    let broker_url = args
        .fill
        .broker
        .as_deref()
        .context("submit needs --broker (or TERRAFILL_BROKER)")?;
    submit_and_wait(&args.fill, broker_url, args.detach, cfg).await
}

/// Publishes the job on the cluster at `broker_url` and, unless `detach`, waits for it.
async fn submit_and_wait(
    args: &FillArgs,
    broker_url: &str,
    detach: bool,
    cfg: &Config,
) -> anyhow::Result<()> {
    let req = request(args).await?;
    let super::Served {
        shutdown,
        health,
        registry,
    } = super::serve("coordinator", args.metrics_addr.as_deref(), cfg).await?;
    let metrics = coordinator::CoordinatorMetrics::register(&registry)?;
    let broker = crate::embedded::connect(broker_url).await?;
    health.set_ready(true);
    let job = coordinator::submit(&req, &cfg.coordinator, &broker, &metrics).await?;
    let resumed = metrics.tiles_resumed.get();
    if resumed > 0 || args.retry {
        eprintln!(
            "job {}: {} tiles queued, {resumed} already staged",
            job.id,
            metrics.tiles_published.get()
        );
    }
    if let Some(status) = &job.finished {
        report(status);
        return Ok(());
    }
    if detach {
        // Later phases go as their neighbours are staged: stay until every tile is queued.
        coordinator::publish_waiting(&job, &cfg.coordinator, &broker, &metrics, &shutdown).await?;
        println!("{}", job.id);
        return Ok(());
    }
    let mut progress = JobProgress::new("waiting");
    let status = coordinator::wait(
        &job,
        &cfg.coordinator,
        &broker,
        &metrics,
        &shutdown,
        &mut |s| progress.update(s),
    )
    .await;
    progress.finish();
    let _ = broker.close().await;
    report(&status?);
    shutdown.cancel();
    Ok(())
}

/// The coordinator request for the flags; diffusion defaults its tile to the checkpoint's.
async fn request(args: &FillArgs) -> anyhow::Result<FillRequest> {
    let lower = args.input.to_lowercase();
    if lower.ends_with(".tif") || lower.ends_with(".tiff") {
        anyhow::bail!(
            "{} looks like a GeoTIFF; fill reads Zarr scenes: convert it first with \
             `terrafill import {} SCENE.zarr`",
            args.input,
            args.input
        );
    }
    let mut req = FillRequest::new(&args.input, &args.output);
    req.array = args.array.clone();
    req.mask_array = args.mask_array.clone();
    req.method = method(args.method);
    req.checkpoint = args.checkpoint.clone();
    req.steps = args.sample.steps;
    req.ensemble = args.ensemble;
    req.member = args.sample.member;
    req.members = args.sample.members;
    req.eta = args.sample.eta;
    req.seed = args.sample.seed;
    req.job_id = args.job_id.clone();
    req.staging = args.staging.clone();
    req.max_distance = args.max_distance;
    req.keep_array = args.keep_array.clone();
    req.retry = args.retry;
    req.generate = args.generate;
    req.phased = args.phases;
    let (tile, overlap) = match (args.method, &args.checkpoint) {
        (MethodArg::Diffusion, Some(url)) => {
            let t = checkpoint_for_input(url, args).await?;
            (t, t / 4)
        }
        (MethodArg::Idw, _) => (IDW_TILE, IDW_OVERLAP),
        _ => (DEFAULT_TILE, DEFAULT_OVERLAP),
    };
    req.tile = args.sample.tile.unwrap_or(tile);
    // A default overlap never takes more than a quarter of a small --tile (stride ≥ half a tile).
    req.overlap = args.sample.overlap.unwrap_or(overlap.min(req.tile / 4));
    req.validate()?;
    Ok(req)
}

/// The tile size of the checkpoint at `url`, once it is known to fit the input: a checkpoint
/// trained on another band count or layout is refused before any tile is planned.
async fn checkpoint_for_input(url: &str, args: &FillArgs) -> anyhow::Result<u64> {
    let model = super::train::load_checkpoint(url).await?;
    let scene = zarr_io::Scene::open(&args.input, &args.array, args.mask_array.as_deref())
        .await
        .with_context(|| format!("opening input {}", args.input))?;
    let shape: Vec<usize> = scene.shape().iter().map(|&d| d as usize).collect();
    model
        .check_scene_shape(&shape)
        .with_context(|| format!("checkpoint {url} does not fit input {}", args.input))?;
    Ok(model.tile_size() as u64)
}

pub fn method(m: MethodArg) -> Method {
    match m {
        MethodArg::Identity => Method::Identity,
        MethodArg::Idw => Method::Idw,
        MethodArg::Diffusion => Method::Diffusion,
    }
}

fn report(status: &JobStatus) {
    println!(
        "job {} complete: {} chunks written, {} tiles computed; output {}",
        status.job_id, status.chunks_total, status.tiles_dirty, status.output_url
    );
}
