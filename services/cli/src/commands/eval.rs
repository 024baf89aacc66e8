//! `eval`: scores a fill against the truth on the filled pixels, as JSON.

use anyhow::{ensure, Context};
use tiling::Window;
use zarr_io::Scene;

use crate::args::EvalArgs;

pub async fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    let pred = Scene::open(&args.prediction, "data", None).await?;
    let Some(truth_url) = &args.truth else {
        return seams_only(args, &pred).await;
    };
    let truth = Scene::open(truth_url, &args.truth_array, None).await?;
    ensure!(
        pred.shape() == truth.shape(),
        "prediction {} has shape {:?} but truth {truth_url} has {:?}",
        args.prediction,
        pred.shape(),
        truth.shape()
    );
    let (h, w) = (truth.height(), truth.width());
    let all = Window::new(0, 0, h, w);
    let selector = match &args.mask {
        Some(mask) => Some(
            Scene::open(truth_url, mask, None)
                .await
                .with_context(|| format!("mask {mask}"))?,
        ),
        None => Scene::open(&args.prediction, "filled", None).await.ok(),
    };
    let Some(selector) = selector else {
        anyhow::bail!(
            "{} has no `filled` array, so eval cannot tell filled pixels from observed ones; \
             pass --mask ARRAY (an array of {truth_url}, non-zero where pixels are to be scored)",
            args.prediction,
        );
    };
    ensure!(
        selector.shape() == truth.shape(),
        "mask shape {:?} differs from {:?}",
        selector.shape(),
        truth.shape()
    );
    let select: Vec<bool> = selector
        .read_window(all)
        .await?
        .values
        .iter()
        .map(|&v| v != 0.0 && !v.is_nan())
        .collect();
    let p = pred.read_window(all).await?.values;
    let t = truth.read_window(all).await?.values;
    let (h, w) = (h as usize, w as usize);
    let report = scoring::score(&p, &t, Some(&select), h, w);
    let (scored, unfilled) = (report.overall.pixels, report.overall.unfilled);
    ensure!(
        scored > 0,
        "no pixel to score in {}: none of the pixels selected by {} has a finite prediction and \
         truth ({unfilled} of them are NaN in the prediction); was it filled?",
        args.prediction,
        args.mask.as_deref().map_or_else(
            || "its `filled` array".to_owned(),
            |m| format!("--mask {m}")
        )
    );
    if unfilled > 0 {
        eprintln!(
            "warning: {unfilled} selected pixels are NaN in {} and are not scored",
            args.prediction
        );
    }
    let mut json = serde_json::to_value(&report)?;
    // A diffusion fill with --ensemble > 1 also reports its spread: score it as a forecast.
    if let Ok(spread) = Scene::open(&args.prediction, "spread", None).await {
        let s = spread.read_window(all).await?.values;
        ensure!(
            s.len() == t.len(),
            "{}: spread has {} values, data {}",
            args.prediction,
            s.len(),
            t.len()
        );
        json["probabilistic"] =
            serde_json::to_value(scoring::probabilistic(&p, &s, &t, Some(&select)))?;
    }
    // With `--members`: score the ensemble itself (fair CRPS, spread/skill, rank histogram).
    if let Ok(members) = Scene::open_members(&args.prediction).await {
        let k = members.shape()[0] as usize;
        ensure!(
            members.shape()[1..] == *truth.shape() && k >= 2,
            "{}: members has shape {:?}, expected [K ≥ 2, {:?}]",
            args.prediction,
            members.shape(),
            truth.shape()
        );
        let m = members.read_window(all).await?.values;
        json["ensemble"] =
            serde_json::to_value(scoring::ensemble_scores(&m, k, &t, Some(&select)))?;
    }
    if let Some(max_lag) = args.variogram {
        let plane = h * w;
        let bands: Vec<serde_json::Value> = (0..t.len() / plane.max(1))
            .map(|b| {
                let r = b * plane..(b + 1) * plane;
                let pv = scoring::semivariogram(&p[r.clone()], None, h, w, max_lag);
                let tv = scoring::semivariogram(&t[r], None, h, w, max_lag);
                serde_json::json!({
                    "log_ratio_error": scoring::log_ratio_error(&pv, &tv),
                    "prediction": pv,
                    "truth": tv,
                })
            })
            .collect();
        json["variogram"] = bands.into();
    }
    if args.seams {
        let (tile, overlap, scores) = seam_scores(&pred, &[&p, &t], &select, h, w)?;
        json["seams"] = serde_json::json!({
            "tile": tile,
            "overlap": overlap,
            "prediction": scores[0],
            "truth": scores[1],
        });
    }
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

/// `eval PREDICTION --seams` without a truth: the seam metric over every finite pixel.
async fn seams_only(args: &EvalArgs, pred: &Scene) -> anyhow::Result<()> {
    ensure!(
        args.seams && args.mask.is_none() && args.variogram.is_none(),
        "eval without a TRUTH measures only --seams (of the prediction, over all its pixels)"
    );
    let (h, w) = (pred.height(), pred.width());
    let p = pred.read_window(Window::new(0, 0, h, w)).await?.values;
    let select: Vec<bool> = p.iter().map(|v| v.is_finite()).collect();
    let (tile, overlap, scores) = seam_scores(pred, &[&p], &select, h as usize, w as usize)?;
    let json = serde_json::json!({
        "seams": { "tile": tile, "overlap": overlap, "prediction": scores[0] }
    });
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}

/// The seam metric of each of `fields` over the `select`ed pixels, on the tile grid the
/// prediction's provenance records: (tile, overlap, one metric per field).
fn seam_scores(
    pred: &Scene,
    fields: &[&[f32]],
    select: &[bool],
    h: usize,
    w: usize,
) -> anyhow::Result<(u64, u64, Vec<scoring::Seams>)> {
    let provenance = pred.group_attributes();
    let grid_value = |key: &str| {
        provenance
            .get("terrafill")
            .and_then(|v| v.get(key))
            .and_then(serde_json::Value::as_u64)
    };
    let (Some(tile), Some(overlap)) = (grid_value("tile"), grid_value("overlap")) else {
        anyhow::bail!(
            "--seams: {} records no tile grid (group attribute `terrafill` with `tile` and \
             `overlap`); was it written by terrafill?",
            pred.url()
        );
    };
    let grid = tiling::TileGrid::new(h as u64, w as u64, tile, overlap)
        .with_context(|| format!("--seams: tile {tile}, overlap {overlap}"))?;
    let layout = scoring::SeamLayout::of(&grid);
    let scores: Option<Vec<scoring::Seams>> = fields
        .iter()
        .map(|f| scoring::seams(f, Some(select), h, w, &layout))
        .collect();
    let Some(scores) = scores else {
        anyhow::bail!(
            "--seams: tile {tile} with overlap {overlap} leaves no regular overlap zone in a \
             {h} × {w} scene (it needs at least three tiles along each axis and an overlap)"
        );
    };
    Ok((tile, overlap, scores))
}
