//! The `interfaces:` patterns and the `interface_stats:` section.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{default_true, line, KeyError};

/// Per-interface traffic counting (TC programs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceStats {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Seconds between collections: rates are computed over it, and new
    /// interfaces are attached within it.
    #[serde(default = "default_interval")]
    pub interval_seconds: f64,
    /// Export only interfaces that carried traffic in the last interval.
    #[serde(default)]
    pub active_only: bool,
    /// Interfaces the kernel map has room for.
    #[serde(default = "default_max_interfaces")]
    pub max_interfaces: u32,
    /// Attach with netlink TC filters on a clsact qdisc even where TCX
    /// links exist (kernels before 6.6 always use them).
    #[serde(default)]
    pub netlink_filters: bool,
}

impl Default for InterfaceStats {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: default_interval(),
            active_only: false,
            max_interfaces: default_max_interfaces(),
            netlink_filters: false,
        }
    }
}

fn default_interval() -> f64 {
    5.0
}
fn default_max_interfaces() -> u32 {
    512
}

impl InterfaceStats {
    pub fn validate(&self) -> Result<(), KeyError> {
        let iv = self.interval_seconds;
        if !(0.1..=3600.0).contains(&iv) {
            return Err(KeyError {
                key: "interface_stats.interval_seconds".into(),
                line: None,
                reason: format!("{iv} is outside 0.1..=3600"),
            });
        }
        Ok(())
    }
}

/// Every pattern of `interfaces:` must be a valid glob.
pub fn validate_patterns(patterns: &[Spanned<String>]) -> Result<(), KeyError> {
    for (i, pattern) in patterns.iter().enumerate() {
        if let Err(e) = glob::Pattern::new(&pattern.value) {
            return Err(KeyError {
                key: format!("interfaces[{i}]"),
                line: line(pattern),
                reason: format!("bad pattern: {e}"),
            });
        }
    }
    Ok(())
}
