//! The scene list of `train`: URLs (with `#bands=`), prefixes and `@LIST` files, expanded to the
//! scene specs a training job carries; and the size of the chunk cache training reads through.

use anyhow::Context;

/// Environment variable: MiB of decoded chunks a training process keeps (all of its workers).
pub const CACHE_ENV: &str = "TERRAFILL_TRAIN_CACHE_MB";
/// Default of [`CACHE_ENV`].
const DEFAULT_CACHE_MB: usize = 512;

/// Bytes of the training chunk cache: [`CACHE_ENV`] or 512 MiB.
///
/// # Errors
/// A value that is not a whole number of MiB.
pub fn cache_bytes() -> anyhow::Result<usize> {
    match std::env::var(CACHE_ENV) {
        Ok(v) => {
            let mb: usize = v
                .trim()
                .parse()
                .with_context(|| format!("{CACHE_ENV}={v:?} is not a whole number of MiB"))?;
            Ok(mb << 20)
        }
        Err(_) => Ok(DEFAULT_CACHE_MB << 20),
    }
}

/// The scene specs `args` stand for, in order: a prefix (ending in `/`) becomes the `*.zarr`
/// groups directly below it, `@LIST` the lines of that file or object (blank lines and `#`
/// comments skipped; no nesting), anything else stays as it is.
///
/// # Errors
/// A list or prefix that cannot be read, is empty, or a list that names another list.
pub async fn expand(args: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for arg in args {
        if let Some(list) = arg.strip_prefix('@') {
            let bytes = zarr_io::get_bytes(list)
                .await
                .with_context(|| format!("reading the scene list {list}"))?;
            let text = std::str::from_utf8(&bytes)
                .with_context(|| format!("the scene list {list} is not UTF-8 text"))?;
            let before = out.len();
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if line.starts_with('@') {
                    anyhow::bail!("{list} line {}: a scene list cannot name another", n + 1);
                }
                out.extend(prefix_or_spec(line).await?);
            }
            if out.len() == before {
                anyhow::bail!("the scene list {list} names no scene");
            }
        } else {
            out.extend(prefix_or_spec(arg).await?);
        }
    }
    Ok(out)
}

/// A prefix's groups, or the spec itself.
async fn prefix_or_spec(arg: &str) -> anyhow::Result<Vec<String>> {
    if !arg.ends_with('/') {
        return Ok(vec![arg.to_string()]);
    }
    let groups = zarr_io::child_groups(arg)
        .await
        .with_context(|| format!("listing the scenes under {arg}"))?;
    if groups.is_empty() {
        anyhow::bail!("{arg} holds no *.zarr group to train on");
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lists_and_prefixes_expand_in_order() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        for name in ["b.zarr", "a.zarr"] {
            std::fs::create_dir_all(root.join("scenes").join(name))?;
            std::fs::write(root.join("scenes").join(name).join("zarr.json"), "{}")?;
        }
        // Not a group: no zarr.json, or not named *.zarr.
        std::fs::create_dir_all(root.join("scenes/c.zarr"))?;
        std::fs::create_dir_all(root.join("scenes/notes"))?;
        let prefix = format!("{}/scenes/", root.display());
        let list = root.join("list.txt");
        std::fs::write(
            &list,
            format!("# training scenes\n\n/x/one.zarr#bands=2,1,0\n{prefix}\n"),
        )?;
        let got = expand(&[format!("@{}", list.display()), "/y/two.zarr".into()]).await?;
        let base = format!("{}/scenes", root.display());
        assert_eq!(
            got,
            vec![
                "/x/one.zarr#bands=2,1,0".to_string(),
                format!("{base}/a.zarr"),
                format!("{base}/b.zarr"),
                "/y/two.zarr".to_string(),
            ]
        );
        std::fs::write(&list, "# nothing\n")?;
        let err = expand(&[format!("@{}", list.display())]).await.unwrap_err();
        assert!(format!("{err:#}").contains("names no scene"), "{err:#}");
        let empty = format!("{}/scenes/notes/", root.display());
        let err = expand(std::slice::from_ref(&empty)).await.unwrap_err();
        assert!(format!("{err:#}").contains(&empty), "{err:#}");
        let err = expand(&["@/no/such/list.txt".into()]).await.unwrap_err();
        assert!(format!("{err:#}").contains("/no/such/list.txt"), "{err:#}");
        Ok(())
    }
}
