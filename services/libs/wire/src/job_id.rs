//! Validated job ids: they become object-store key segments, so they are checked here once.

use crate::WireError;

/// A job id: 1–64 characters of `[A-Za-z0-9._-]`, not starting with `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(String);

impl JobId {
    /// Validates `id`.
    ///
    /// # Errors
    /// [`WireError::InvalidJobId`] naming the id when it could escape its key prefix.
    pub fn parse(id: &str) -> Result<Self, WireError> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && !id.starts_with('.')
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(Self(id.to_owned()))
        } else {
            Err(WireError::InvalidJobId {
                id: id.chars().take(80).collect(),
            })
        }
    }

    /// `PREFIX-HASH`: a stable 64-bit FNV-1a hash of `key` (everything that determines a
    /// job's output), so that running the same job again finds its state. `prefix` is a short
    /// lowercase word.
    pub fn derived(prefix: &str, key: &str) -> Self {
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Self(format!("{prefix}-{hash:016x}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_path_traversal_and_odd_characters() {
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b", &"x".repeat(65)] {
            assert!(JobId::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            JobId::parse("eu-2026.07_a")
                .map(|j| j.to_string())
                .ok()
                .as_deref(),
            Some("eu-2026.07_a")
        );
    }
}
