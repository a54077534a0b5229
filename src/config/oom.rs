//! The `oom_kills:` config section (README, "OOM kills").

use serde::Deserialize;

use super::KeyError;

/// `oom_kills:` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OomConfig {
    /// Count OOM kills (default true). The hook costs nothing until the
    /// kernel's OOM killer runs.
    pub enabled: bool,
    /// (process, container) pairs the kernel map keeps kill counts for;
    /// kills of further pairs are counted as lost (`oom_map_full`).
    pub max_series: u32,
}

impl Default for OomConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_series: 16384,
        }
    }
}

impl OomConfig {
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.max_series == 0 {
            return Err(KeyError {
                key: "oom_kills.max_series".into(),
                line: None,
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}
