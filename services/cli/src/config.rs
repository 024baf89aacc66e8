//! The configuration file (`config/default.toml` documents every key).

use std::path::Path;

/// All sections of a terrafill configuration.
#[derive(Debug, Clone, Default, serde::Deserialize)]
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
#[derive(Debug, Clone, Default, serde::Deserialize)]
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
    Ok(telemetry::load_config(file)?)
}
