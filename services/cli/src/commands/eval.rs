//! `eval`: scores a fill against the truth on the filled pixels, as JSON.

use anyhow::{ensure, Context};
use tiling::Window;
use zarr_io::Scene;

use crate::args::EvalArgs;

pub async fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    let pred = Scene::open(&args.prediction, "data", None).await?;
    let truth = Scene::open(&args.truth, &args.truth_array, None).await?;
    ensure!(
        pred.shape() == truth.shape(),
        "prediction {} has shape {:?} but truth {} has {:?}",
        args.prediction,
        pred.shape(),
        args.truth,
        truth.shape()
    );
    let (h, w) = (truth.height(), truth.width());
    let all = Window::new(0, 0, h, w);
    let selector = match &args.mask {
        Some(mask) => Some(
            Scene::open(&args.truth, mask, None)
                .await
                .with_context(|| format!("mask {mask}"))?,
        ),
        None => Scene::open(&args.prediction, "filled", None).await.ok(),
    };
    let select = match selector {
        Some(s) => {
            ensure!(
                s.shape() == truth.shape(),
                "mask shape {:?} differs from {:?}",
                s.shape(),
                truth.shape()
            );
            Some(
                s.read_window(all)
                    .await?
                    .values
                    .iter()
                    .map(|&v| v != 0.0 && !v.is_nan())
                    .collect::<Vec<_>>(),
            )
        }
        None => None,
    };
    let p = pred.read_window(all).await?.values;
    let t = truth.read_window(all).await?.values;
    let (h, w) = (h as usize, w as usize);
    let report = scoring::score(&p, &t, select.as_deref(), h, w);
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
            serde_json::to_value(scoring::probabilistic(&p, &s, &t, select.as_deref()))?;
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
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}
