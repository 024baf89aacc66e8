//! The configuration file (`config/default.toml` documents every key).

use std::path::Path;

/// All sections of a terrafill configuration.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[coordinator]`.
    pub coordinator: coordinator::CoordinatorConfig,
    /// `[worker]`.
    pub worker: worker::WorkerConfig,
    /// `[stitcher]`.
    pub stitcher: stitcher::StitcherConfig,
    /// `[telemetry]`.
    pub telemetry: TelemetryConfig,
}

/// `[telemetry]`.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Address for /metrics /healthz /readyz (none: not served).
    pub metrics_addr: Option<String>,
}

/// Loads the configuration: defaults, then the file, then `TERRAFILL__…` variables.
///
/// # Errors
/// A message naming the file or variable at fault.
pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
    let mut cfg: Config = telemetry::load_config(file)?;
    // The job key is a secret: it comes from the environment only, never from a file.
    let key = wire::JobKey::from_env()?;
    cfg.coordinator.job_key.clone_from(&key);
    cfg.worker.job_key.clone_from(&key);
    cfg.stitcher.job_key = key;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_file(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config")
            .join(name)
    }

    #[test]
    fn default_toml_documents_exactly_the_defaults() -> anyhow::Result<()> {
        let documented = load(Some(&repo_file("default.toml")))?;
        assert_eq!(documented, Config::default());
        Ok(())
    }

    #[test]
    fn distributed_example_parses() -> anyhow::Result<()> {
        let cfg = load(Some(&repo_file("distributed.toml")))?;
        assert_eq!(cfg.worker.batch, 8);
        Ok(())
    }
}
