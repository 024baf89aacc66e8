//! `terrafill train` and `fill --method diffusion` end to end with a tiny model: every gap filled,
//! observed pixels kept, `spread` written, the same seed gives the same bytes, and bad
//! checkpoints give clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

#[test]
fn tiny_model_fills_deterministically_with_spread() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.zarr").display().to_string();
    let ckpt = dir.path().join("m.safetensors").display().to_string();
    let shape = [2u64, 64, 56];
    let values = synthetic(&shape, 0.2, 4);
    write(&input, &shape, (32, 32), &values);
    let out = terrafill(&[
        "train",
        &input,
        "--checkpoint",
        &ckpt,
        "--steps",
        "30",
        "--tile",
        "16",
        "--batch",
        "4",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("trained 30 steps"));

    let fill = |name: &str, seed: &str| {
        let output = dir.path().join(name).display().to_string();
        let args = [
            "fill",
            &input,
            &output,
            "--method",
            "diffusion",
            "--checkpoint",
            &ckpt,
            "--ensemble",
            "2",
            "--steps",
            "4",
            "--seed",
            seed,
            "--device",
            "cpu",
        ];
        assert!(terrafill(&args).status.success());
        output
    };
    let a = fill("a.zarr", "1");
    let b = fill("b.zarr", "1");
    let c = fill("c.zarr", "2");
    let (da, db, dc) = (read(&a, "data"), read(&b, "data"), read(&c, "data"));
    assert_eq!(bits(&da), bits(&db), "same seed, different bytes");
    assert_ne!(
        bits(&da),
        bits(&dc),
        "a different seed should give different samples"
    );
    let spread = read(&a, "spread");
    let filled = read(&a, "filled");
    for i in 0..values.len() {
        if values[i].is_nan() {
            assert!(da[i].is_finite(), "gap pixel {i} unfilled");
            assert_eq!(filled[i], 1.0);
            assert!(spread[i].is_finite() && spread[i] >= 0.0);
        } else {
            assert_eq!(
                da[i].to_bits(),
                values[i].to_bits(),
                "observed pixel {i} changed"
            );
            assert_eq!(spread[i], 0.0);
        }
    }
}

#[test]
fn bad_checkpoints_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.zarr").display().to_string();
    let output = dir.path().join("out.zarr").display().to_string();
    write(
        &input,
        &[1, 32, 32],
        (32, 32),
        &synthetic(&[1, 32, 32], 0.2, 1),
    );
    let missing = dir.path().join("missing.safetensors").display().to_string();
    let out = terrafill(&[
        "fill",
        &input,
        &output,
        "--method",
        "diffusion",
        "--checkpoint",
        &missing,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.safetensors"));
    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let corrupt = corrupt.display().to_string();
    let out = terrafill(&[
        "fill",
        &input,
        &output,
        "--method",
        "diffusion",
        "--checkpoint",
        &corrupt,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt.safetensors"));
    assert!(!std::path::Path::new(&output).join("zarr.json").exists());
}
