//! Layered configuration: built-in defaults, then a TOML file, then `TERRAFILL__SECTION__KEY`
//! environment variables. Flags are applied by the binary on top.

use std::path::Path;

use serde::de::DeserializeOwned;

/// Prefix of configuration environment variables.
const ENV_PREFIX: &str = "TERRAFILL__";

/// Configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The file or an override is not valid for the schema.
    #[error("invalid configuration in {origin}: {message}")]
    Invalid {
        /// File path, or "environment".
        origin: String,
        /// What is wrong (unknown key, wrong type …).
        message: String,
    },
}

/// Loads `T` from the optional TOML file, then applies `TERRAFILL__SECTION__KEY=value` overrides
/// (keys lower-cased; values parsed as TOML scalars, else taken as strings). Unknown keys are
/// refused when `T` uses `#[serde(deny_unknown_fields)]`.
///
/// # Errors
/// [`ConfigError`] naming the file or the environment.
pub fn load_config<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, ConfigError> {
    load_with_env(file, std::env::vars())
}

fn load_with_env<T: DeserializeOwned>(
    file: Option<&Path>,
    env: impl Iterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let origin = file.map_or_else(|| "defaults".to_owned(), |p| p.display().to_string());
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: origin.clone(),
                source,
            })?;
            text.parse::<toml::Table>()
                .map_err(|e| ConfigError::Invalid {
                    origin: origin.clone(),
                    message: e.to_string(),
                })?
        }
        None => toml::Table::new(),
    };
    let mut overridden = false;
    for (key, value) in env {
        let Some(path) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        set_path(&mut table, &parts, parse_scalar(&value));
        overridden = true;
    }
    let origin = if overridden {
        format!("{origin} + environment")
    } else {
        origin
    };
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid {
            origin,
            message: e.to_string(),
        })
}

fn parse_scalar(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(table: &mut toml::Table, parts: &[String], value: toml::Value) {
    match parts {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = entry {
                set_path(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Cfg {
        worker: Worker,
    }

    #[derive(Debug, serde::Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Worker {
        batch: u32,
        device: String,
    }

    #[test]
    fn env_overrides_file_and_unknown_keys_fail() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("tf-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("c.toml");
        std::fs::write(&file, "[worker]\nbatch = 2\ndevice = \"cpu\"\n")?;
        let env = vec![("TERRAFILL__WORKER__BATCH".to_owned(), "8".to_owned())];
        let cfg: Cfg = load_with_env(Some(&file), env.into_iter())?;
        assert_eq!(
            cfg.worker,
            Worker {
                batch: 8,
                device: "cpu".into()
            }
        );

        std::fs::write(&file, "[worker]\nbatchh = 2\n")?;
        let err = load_with_env::<Cfg>(Some(&file), std::iter::empty()).err();
        assert!(err
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("batchh"));
        Ok(())
    }
}
