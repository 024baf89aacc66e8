//! `status --checkpoint URL`: where a training run in rounds stands, read from its versions
//! (`train_keys`): the last version, the round in progress and its shard results, step and loss.

use anyhow::Context;

/// The run's status as JSON.
///
/// # Errors
/// Store failures, and a `latest` or version that does not decode (named).
pub async fn status(checkpoint: &str) -> anyhow::Result<serde_json::Value> {
    let latest = wire::train_keys::latest(checkpoint);
    let text = match zarr_io::get_bytes(&latest).await {
        Ok(t) => t,
        Err(zarr_io::ZarrIoError::ObjectNotFound { .. }) => {
            let done = zarr_io::object_exists(checkpoint).await?;
            anyhow::ensure!(
                done,
                "no training run at {checkpoint}: neither the checkpoint nor {latest} exists"
            );
            return Ok(serde_json::json!({
                "kind": "training",
                "checkpoint": checkpoint,
                "state": "succeeded",
                "rounds": null,
            }));
        }
        Err(e) => return Err(e).with_context(|| format!("reading {latest}")),
    };
    let version: usize = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .with_context(|| format!("{latest} does not hold a version number"))?;
    let url = wire::train_keys::version(checkpoint, version);
    let bytes = zarr_io::get_bytes(&url)
        .await
        .with_context(|| format!("reading version {url}"))?;
    let (history, rounds) =
        model::rounds::version_of(&bytes).with_context(|| format!("version {url}"))?;
    let total_rounds = history.target_steps / rounds.inner_steps.max(1);
    let finished = version >= total_rounds && zarr_io::object_exists(checkpoint).await?;
    let mut shards_done = 0;
    if !finished && version < total_rounds {
        for s in 0..rounds.shards {
            let result = wire::train_keys::shard_result(checkpoint, version, s);
            shards_done += usize::from(zarr_io::object_exists(&result).await?);
        }
    }
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let steps_done = history.step * rounds.shards + shards_done * rounds.inner_steps;
    let steps_total = history.target_steps * rounds.shards;
    Ok(serde_json::json!({
        "kind": "training",
        "checkpoint": checkpoint,
        "state": if finished { "succeeded" } else { "running" },
        "version": version,
        "rounds": total_rounds,
        "round": (!finished).then_some(version + 1),
        "shards": rounds.shards,
        "shards_done": shards_done,
        "inner_steps": rounds.inner_steps,
        "step": history.step,
        "steps": history.target_steps,
        "percent": round(100.0 * steps_done as f64 / steps_total.max(1) as f64),
        "loss": history.loss.last().map(|l| l.1),
        "seed": history.seed,
    }))
}
