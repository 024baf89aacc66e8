//! Bad checkpoints give clear errors.

mod common;

use model::{train, Device, FillModel, ModelError};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

fn good() -> anyhow::Result<Vec<u8>> {
    let mut cfg = common::tiny(2);
    cfg.save_optimizer = false;
    Ok(train(
        &model::Corpus::in_memory(vec![common::scene(32)])?,
        &cfg,
        None,
        &Device::Cpu,
        &mut |_| {},
    )?)
}

/// Rewrite a checkpoint with `edit` applied to its tensors and metadata.
fn rewrite(
    bytes: &[u8],
    edit: impl Fn(
        &mut Vec<(String, Vec<usize>, Vec<u8>)>,
        &mut std::collections::HashMap<String, String>,
    ),
) -> anyhow::Result<Vec<u8>> {
    let st = SafeTensors::deserialize(bytes)?;
    let (_, header) = SafeTensors::read_metadata(bytes)?;
    let mut meta = header.metadata().clone().unwrap_or_default();
    let mut ts: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut ts, &mut meta);
    let views: Vec<(String, TensorView<'_>)> = ts
        .iter()
        .map(|(n, s, d)| TensorView::new(Dtype::F32, s.clone(), d).map(|v| (n.clone(), v)))
        .collect::<Result<_, _>>()?;
    Ok(safetensors::serialize(views, Some(meta))?)
}

fn err(bytes: &[u8]) -> ModelError {
    match FillModel::from_checkpoint(bytes, &Device::Cpu) {
        Ok(_) => panic!("bad checkpoint accepted"),
        Err(e) => e,
    }
}

#[test]
fn good_checkpoint_loads() -> anyhow::Result<()> {
    FillModel::from_checkpoint(&good()?, &Device::Cpu)?;
    Ok(())
}

#[test]
fn truncated_or_empty_bytes_are_format_errors() -> anyhow::Result<()> {
    let g = good()?;
    for bytes in [
        &g[..g.len() - 100],
        &g[..4],
        &[][..],
        b"not a checkpoint at all",
    ] {
        assert!(
            matches!(err(bytes), ModelError::CheckpointFormat { .. }),
            "{}",
            err(bytes)
        );
    }
    Ok(())
}

#[test]
fn missing_metadata_or_tensor_is_named() -> anyhow::Result<()> {
    let g = good()?;
    let no_meta = rewrite(&g, |_, m| {
        m.remove("normalisation");
    })?;
    assert!(err(&no_meta)
        .to_string()
        .contains("'normalisation' is missing"));
    let no_tensor = rewrite(&g, |ts, _| {
        ts.retain(|(n, _, _)| n != "model.conv_in.weight")
    })?;
    assert!(
        err(&no_tensor)
            .to_string()
            .contains("'conv_in.weight' is missing"),
        "{}",
        err(&no_tensor)
    );
    Ok(())
}

#[test]
fn corrupt_tensors_and_metadata_are_errors() -> anyhow::Result<()> {
    let g = good()?;
    // A tensor reshaped: right byte count, wrong shape.
    let reshaped = rewrite(&g, |ts, _| {
        for (n, s, _) in ts.iter_mut() {
            if n == "model.conv_out.weight" {
                let total: usize = s.iter().product();
                *s = vec![total];
            }
        }
    })?;
    assert!(
        err(&reshaped)
            .to_string()
            .contains("conv_out.weight' has shape"),
        "{}",
        err(&reshaped)
    );
    // Garbage JSON.
    let bad_json = rewrite(&g, |_, m| {
        m.insert("model".into(), "{not json".into());
    })?;
    assert!(matches!(
        err(&bad_json),
        ModelError::CheckpointMetadata { key: "model", .. }
    ));
    // Flipped bytes in the header region.
    let mut flipped = g.clone();
    for b in &mut flipped[8..40] {
        *b ^= 0x5a;
    }
    assert!(matches!(err(&flipped), ModelError::CheckpointFormat { .. }));
    Ok(())
}

#[test]
fn nan_weights_are_rejected() -> anyhow::Result<()> {
    let g = good()?;
    let nan = rewrite(&g, |ts, _| {
        for (n, _, d) in ts.iter_mut() {
            if n == "model.mid.res1.conv1.weight" {
                d[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
                d[4..8].copy_from_slice(&f32::INFINITY.to_le_bytes());
            }
        }
    })?;
    let e = err(&nan);
    assert!(
        matches!(&e, ModelError::NonFiniteWeights { name, count: 2 } if name == "model.mid.res1.conv1.weight"),
        "{e}"
    );
    Ok(())
}

#[test]
fn wrong_band_count_vs_input_is_named() -> anyhow::Result<()> {
    let model = FillModel::from_checkpoint(&good()?, &Device::Cpu)?;
    let tile = model::TileInput {
        shape: vec![4, 16, 16],
        values: vec![f32::NAN; 4 * 256],
        seed: 0,
        prior: None,
        member_values: None,
    };
    let e = model
        .fill(&[tile], &model::SampleOptions::default())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("[3]") && e.contains("[4]"), "{e}");
    // And a tile whose side is not a multiple of the UNet's downsampling.
    let tile = model::TileInput {
        shape: vec![3, 15, 16],
        values: vec![1.0; 3 * 240],
        seed: 0,
        prior: None,
        member_values: None,
    };
    assert!(model
        .fill(&[tile], &model::SampleOptions::default())
        .is_err());
    Ok(())
}

#[test]
fn bundled_demo_checkpoint_loads() -> anyhow::Result<()> {
    let bytes = include_bytes!("../../../../assets/demo/landsat7_crop.safetensors");
    let m = FillModel::from_checkpoint(bytes, &Device::Cpu)?;
    assert_eq!((m.tile_size(), m.lead_shape()), (64, &[3usize][..]));
    assert_eq!(m.history().step, 400);
    assert_eq!(m.history().preset.as_deref(), Some("base"));
    Ok(())
}

/// A checkpoint written before presets and the fast layers existed (the previous demo
/// checkpoint: `small` sizes, no `preset` entry) still loads and fills, bit-identically run to run.
#[test]
fn checkpoint_from_before_presets_loads_and_fills() -> anyhow::Result<()> {
    let bytes = include_bytes!("fixtures/small_before_presets.safetensors");
    let m = FillModel::from_checkpoint(bytes, &Device::Cpu)?;
    assert_eq!(m.tile_size(), 32);
    assert_eq!(m.history().preset, None);
    let mut values: Vec<f32> = (0..3 * 32 * 32).map(|i| 60.0 + (i % 97) as f32).collect();
    for v in values.iter_mut().skip(3 * 32 * 10).take(40) {
        *v = f32::NAN;
    }
    let tile = model::TileInput {
        shape: vec![3, 32, 32],
        values,
        seed: 5,
        prior: None,
        member_values: None,
    };
    let opts = model::SampleOptions::default();
    let a = m.fill(std::slice::from_ref(&tile), &opts)?;
    let b = m.fill(&[tile], &opts)?;
    assert!(a[0].values.iter().all(|v| v.is_finite()));
    let bits =
        |o: &[model::TileOutput]| o[0].values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    Ok(())
}
