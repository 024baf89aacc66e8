//! `train` on a scene list: `#bands=` selections, prefixes and `@LIST` files, a time series and
//! a single image together (a single-image model), read window by window through a chunk cache
//! whose size does not change a byte of the result; bad lists and band selections are named.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{checkpoint_tensors, synthetic, write};

#[test]
fn scene_lists_bands_and_mixed_ranks_train_one_model_whatever_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // A 4-band series of 2 dates whose bands 2, 1, 0 match the 3-band image below.
    let series = root.join("series.zarr").display().to_string();
    write(
        &series,
        &[2, 4, 48, 40],
        (16, 16),
        &synthetic(&[2, 4, 48, 40], 0.1, 3),
    );
    std::fs::create_dir_all(root.join("images")).unwrap();
    let image = root.join("images/rgb.zarr").display().to_string();
    write(
        &image,
        &[3, 40, 56],
        (16, 16),
        &synthetic(&[3, 40, 56], 0.2, 5),
    );
    let list = root.join("scenes.txt");
    std::fs::write(
        &list,
        format!(
            "# the training corpus\n{series}#bands=2,1,0\n{}/images/\n",
            root.display()
        ),
    )
    .unwrap();
    let listed = format!("@{}", list.display());
    let train = |scenes: &[&str], ckpt: &str, cache_mb: &str| {
        let mut args = scenes.to_vec();
        args.insert(0, "train");
        args.extend([
            "--checkpoint",
            ckpt,
            "--model",
            "small",
            "--tile",
            "16",
            "--batch",
            "2",
            "--steps",
            "6",
        ]);
        let out = common::bin()
            .args(&args)
            .env("TERRAFILL_TRAIN_CACHE_MB", cache_mb)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let a = root.join("a.safetensors").display().to_string();
    let (ok, stderr) = train(&[&listed], &a, "64");
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("series.zarr#bands=2,1,0: ") && stderr.contains("% of samples"),
        "{stderr}"
    );
    // No cache at all: every window read from the store again, the same bytes.
    let b = root.join("b.safetensors").display().to_string();
    let (ok, stderr) = train(&[&format!("{series}#bands=2,1,0"), &image], &b, "0");
    assert!(ok, "{stderr}");
    let tensors = |p: &str| checkpoint_tensors(&std::fs::read(p).unwrap());
    assert_eq!(
        tensors(&a),
        tensors(&b),
        "the list expands to the same corpus"
    );
    // The model is a single-image one: it fills the image.
    let out = root.join("out.zarr").display().to_string();
    common::fill_ok(&image, &out, &["--method", "diffusion", "--checkpoint", &a]);

    // All four bands of the series against the 3-band image: named, nothing written.
    let c = root.join("c.safetensors").display().to_string();
    let (ok, stderr) = train(&[&series, &image], &c, "64");
    assert!(!ok);
    assert!(
        stderr.contains("rgb.zarr") && stderr.contains("same bands"),
        "{stderr}"
    );
    let (ok, stderr) = train(&[&format!("{series}#bands=0,1,9")], &c, "64");
    assert!(!ok);
    assert!(
        stderr.contains("band 9") && stderr.contains("series.zarr"),
        "{stderr}"
    );
    let (ok, stderr) = train(&[&format!("{series}#bands=0,1,2&weight=0")], &c, "64");
    assert!(!ok);
    assert!(
        stderr.contains("weight=0") && stderr.contains("positive"),
        "{stderr}"
    );
    let empty = format!("{}/nothing/", root.display());
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, stderr) = train(&[&empty], &c, "64");
    assert!(!ok);
    assert!(stderr.contains("no *.zarr group"), "{stderr}");
    let (ok, stderr) = train(&[&image], &c, "lots");
    assert!(!ok);
    assert!(stderr.contains("TERRAFILL_TRAIN_CACHE_MB"), "{stderr}");
    assert!(!std::path::Path::new(&c).exists());
}
