//! Where a training run's objects live, next to its checkpoint URL (the layout `TrainJob`
//! documents): versions, the pointer to the last one, and shard results.

/// The folder of the run writing `checkpoint`.
pub fn versions_dir(checkpoint: &str) -> String {
    format!("{checkpoint}.versions")
}

/// Version `version` of the run.
pub fn version(checkpoint: &str, version: usize) -> String {
    format!("{}/v{version:06}.safetensors", versions_dir(checkpoint))
}

/// The object naming the last written version (its number as text).
pub fn latest(checkpoint: &str) -> String {
    format!("{}/latest", versions_dir(checkpoint))
}

/// Shard `shard`'s result of the round that starts from `version`.
pub fn shard_result(checkpoint: &str, version: usize, shard: usize) -> String {
    format!(
        "{}/r{version:06}/s{shard:04}.safetensors",
        versions_dir(checkpoint)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_sort_by_number() {
        let c = "s3://b/m.safetensors";
        assert_eq!(
            super::version(c, 12),
            "s3://b/m.safetensors.versions/v000012.safetensors"
        );
        assert_eq!(
            super::shard_result(c, 3, 1),
            "s3://b/m.safetensors.versions/r000003/s0001.safetensors"
        );
        assert!(super::version(c, 9) < super::version(c, 10));
    }
}
