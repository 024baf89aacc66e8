//! `train --workers N --rounds R --inner-steps H` (embedded rounds of local SGD): versions are
//! written as it goes, a restarted run resumes from the last one and ends with the same weights,
//! a version from another run is refused, and the result fills.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{checkpoint_tensors, synthetic, terrafill, write};

fn tensors(path: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    checkpoint_tensors(&std::fs::read(path).unwrap())
}

#[test]
fn rounds_write_versions_resume_and_fill() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.zarr").display().to_string();
    let shape = [2u64, 64, 56];
    write(&input, &shape, (32, 32), &synthetic(&shape, 0.2, 4));
    let ckpt = dir.path().join("m.safetensors");
    let c = ckpt.display().to_string();
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            &input,
            "--checkpoint",
            &c,
            "--model",
            "small",
            "--tile",
            "16",
            "--batch",
            "3",
            "--workers",
            "2",
            "--rounds",
            "3",
            "--inner-steps",
            "4",
        ];
        args.extend_from_slice(extra);
        terrafill(&args)
    };
    let out = train(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("trained 12 steps"));
    assert!(stderr.contains("round 3/3: loss"), "{stderr}");
    let versions = dir.path().join("m.safetensors.versions");
    for v in 0..=3 {
        assert!(versions.join(format!("v{v:06}.safetensors")).is_file());
    }
    assert_eq!(
        std::fs::read_to_string(versions.join("latest")).unwrap(),
        "3"
    );
    let first = tensors(&ckpt);

    // As if killed after writing version 1: the run starts again from it, recomputes rounds 2
    // and 3 and ends with the same bytes.
    std::fs::write(versions.join("latest"), "1").unwrap();
    std::fs::remove_file(&ckpt).unwrap();
    let out = train(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming at version 1 of 3"), "{stderr}");
    assert!(!stderr.contains("round 1/3"), "{stderr}");
    assert_eq!(
        tensors(&ckpt),
        first,
        "a resumed run gives the same checkpoint"
    );

    // Another run's versions are refused, naming the version.
    let out = train(&["--seed", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        stderr.contains("v000003.safetensors") && stderr.contains("another run"),
        "{stderr}"
    );
    // A corrupt version is an error naming it, not a fresh start.
    std::fs::write(versions.join("v000003.safetensors"), b"not a checkpoint").unwrap();
    let out = train(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(stderr.contains("v000003.safetensors"), "{stderr}");
    // Inconsistent round flags.
    let out = train(&["--steps", "10"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rounds 3"));

    let output = dir.path().join("out.zarr").display().to_string();
    common::fill_ok(
        &input,
        &output,
        &["--method", "diffusion", "--checkpoint", &c],
    );
}
