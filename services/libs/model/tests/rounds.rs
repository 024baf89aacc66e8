//! Rounds of local SGD: one shard with a plain outer step is plain training, bit for bit; more
//! shards are deterministic; results that do not belong to a round are refused.

mod common;

use common::tensors;
use model::rounds::{self, OuterConfig, ShardTask};
use model::{train, Device, FillModel, ModelError, TrainConfig};

/// R rounds of `shards` shards of H steps; returns the last version and every shard result.
fn run_rounds(
    cfg: &TrainConfig,
    shards: usize,
    h: usize,
    outer: &OuterConfig,
) -> anyhow::Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let scene = common::scene(64);
    let mut version = rounds::initial_version(
        &model::Corpus::in_memory(vec![scene.clone()])?,
        cfg,
        shards,
        h,
        &Device::Cpu,
    )?;
    let mut all = Vec::new();
    for _ in 0..cfg.steps / h {
        let results = (0..shards)
            .map(|shard| {
                let task = ShardTask {
                    shard,
                    shards,
                    inner_steps: h,
                };
                rounds::train_shard(
                    &model::Corpus::in_memory(vec![scene.clone()])?,
                    cfg,
                    &version,
                    &task,
                    &Device::Cpu,
                    &mut |_| {},
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        version = rounds::average(&version, &results, outer)?;
        all.extend(results);
    }
    Ok((version, all))
}

#[test]
fn one_shard_with_a_plain_outer_step_is_plain_training() -> anyhow::Result<()> {
    let scene = common::scene(64);
    let cfg = TrainConfig {
        calibration_windows: 4,
        ..common::tiny(30)
    };
    let plain = train(
        &model::Corpus::in_memory(vec![scene.clone()])?,
        &cfg,
        None,
        &Device::Cpu,
        &mut |_| {},
    )?;
    let identity = OuterConfig {
        lr: 1.0,
        momentum: 0.0,
    };
    let (version, _) = run_rounds(&cfg, 1, 10, &identity)?;
    let (history, state) = rounds::version_of(&version)?;
    assert_eq!((history.step, state.version), (30, 3));
    let done = rounds::finish(
        &model::Corpus::in_memory(vec![scene.clone()])?,
        &cfg,
        &version,
        &Device::Cpu,
    )?;
    assert_eq!(tensors(&done)?, tensors(&plain)?, "weights and moments");
    let (a, b) = (
        FillModel::from_checkpoint(&done, &Device::Cpu)?,
        FillModel::from_checkpoint(&plain, &Device::Cpu)?,
    );
    assert_eq!(a.history().loss, b.history().loss, "the loss curve");
    assert_eq!(a.meta().spread_scale, b.meta().spread_scale);
    Ok(())
}

#[test]
fn two_shards_are_deterministic_and_move_the_weights() -> anyhow::Result<()> {
    let cfg = common::tiny(20);
    let outer = OuterConfig::default();
    let (a, results) = run_rounds(&cfg, 2, 10, &outer)?;
    let (b, _) = run_rounds(&cfg, 2, 10, &outer)?;
    assert_eq!(tensors(&a)?, tensors(&b)?, "same job, same version bytes");
    assert_ne!(
        tensors(&results[0])?,
        tensors(&results[1])?,
        "the shards draw different batches"
    );
    let names: Vec<String> = tensors(&a)?.into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().any(|n| n.starts_with("outer.u.")));
    let model = FillModel::from_checkpoint(&a, &Device::Cpu)?;
    assert_eq!(model.history().step, 20);
    assert_eq!(model.history().loss.len(), 2, "one mean entry per 10 steps");
    Ok(())
}

#[test]
fn results_that_do_not_belong_to_the_round_are_refused() -> anyhow::Result<()> {
    let scene = common::scene(64);
    let cfg = common::tiny(20);
    let v0 = rounds::initial_version(
        &model::Corpus::in_memory(vec![scene.clone()])?,
        &cfg,
        2,
        10,
        &Device::Cpu,
    )?;
    let shard = |version: &[u8], shard| {
        let task = ShardTask {
            shard,
            shards: 2,
            inner_steps: 10,
        };
        rounds::train_shard(
            &model::Corpus::in_memory(vec![scene.clone()])?,
            &cfg,
            version,
            &task,
            &Device::Cpu,
            &mut |_| {},
        )
    };
    let (r0, r1) = (shard(&v0, 0)?, shard(&v0, 1)?);
    let outer = OuterConfig::default();

    // Swapped shards.
    let err = rounds::average(&v0, &[r1.clone(), r0.clone()], &outer).unwrap_err();
    assert!(
        matches!(err, ModelError::ShardMismatch { shard: 0, .. }),
        "{err}"
    );
    // A result of another job (another seed, so another version 0).
    let other_cfg = TrainConfig {
        seed: 9,
        ..cfg.clone()
    };
    let other = rounds::initial_version(
        &model::Corpus::in_memory(vec![scene.clone()])?,
        &other_cfg,
        2,
        10,
        &Device::Cpu,
    )?;
    let foreign = rounds::train_shard(
        &model::Corpus::in_memory(vec![scene.clone()])?,
        &other_cfg,
        &other,
        &ShardTask {
            shard: 1,
            shards: 2,
            inner_steps: 10,
        },
        &Device::Cpu,
        &mut |_| {},
    )?;
    let err = rounds::average(&v0, &[r0.clone(), foreign], &outer).unwrap_err();
    assert!(
        err.to_string().contains("shard result 1") && err.to_string().contains("digest"),
        "{err}"
    );
    // A result of the next round averaged into this one.
    let v1 = rounds::average(&v0, &[r0.clone(), r1.clone()], &outer)?;
    let late = shard(&v1, 0)?;
    assert!(rounds::average(&v0, &[late, r1.clone()], &outer).is_err());
    // Too few results, a corrupt version, a plain checkpoint, a shard result as a version.
    assert!(rounds::average(&v0, std::slice::from_ref(&r0), &outer).is_err());
    let mut corrupt = v0.clone();
    corrupt.truncate(v0.len() / 2);
    assert!(matches!(
        rounds::average(&corrupt, &[r0.clone(), r1.clone()], &outer),
        Err(ModelError::CheckpointFormat { .. })
    ));
    let plain = train(
        &model::Corpus::in_memory(vec![scene.clone()])?,
        &TrainConfig {
            steps: 2,
            ..cfg.clone()
        },
        None,
        &Device::Cpu,
        &mut |_| {},
    )?;
    let err = shard(&plain, 0).unwrap_err();
    assert!(err.to_string().contains("not a version"), "{err}");
    let err = shard(&r0, 0).unwrap_err();
    assert!(err.to_string().contains("result of shard"), "{err}");
    // A round past the run's steps.
    let v2 = rounds::average(&v1, &[shard(&v1, 0)?, shard(&v1, 1)?], &outer)?;
    let err = shard(&v2, 0).unwrap_err();
    assert!(err.to_string().contains("past the run"), "{err}");
    Ok(())
}
