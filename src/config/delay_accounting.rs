//! The `delay_accounting:` config section (README, "Delay accounting").

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{line, range, unspanned, KeyError};

/// `delay_accounting:` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DelayAccountingConfig {
    /// Collect at all (default true).
    pub enabled: bool,
    /// Turn `kernel.task_delayacct` on if it is off, and back off when the
    /// agent stops (default false: only on the operator's request).
    pub enable_sysctl: bool,
    /// Seconds between collections (default 10; 0.1 … 3600).
    pub interval_seconds: Spanned<f64>,
    /// Processes read per collection (default 10000); the rest are
    /// counted in `netagent_delay_accounting_skipped_total`.
    pub max_processes: Spanned<u32>,
    /// (process, container) series of delay totals kept (default 16384);
    /// delays of further pairs are added to a `~other` series.
    pub max_series: Spanned<u32>,
}

impl Default for DelayAccountingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            enable_sysctl: false,
            interval_seconds: unspanned(10.0),
            max_processes: unspanned(10_000),
            max_series: unspanned(16384),
        }
    }
}

impl DelayAccountingConfig {
    /// The first invalid key, its line and why.
    pub fn validate(&self) -> Result<(), KeyError> {
        range(
            "delay_accounting.interval_seconds",
            &self.interval_seconds,
            0.1,
            3600.0,
        )?;
        for (key, v) in [
            ("delay_accounting.max_processes", &self.max_processes),
            ("delay_accounting.max_series", &self.max_series),
        ] {
            if v.value == 0 {
                return Err(KeyError {
                    key: key.into(),
                    line: line(v),
                    reason: "must be at least 1".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bounds_name_the_key() {
        let mut c = DelayAccountingConfig::default();
        assert!(c.validate().is_ok());
        c.interval_seconds = unspanned(0.0);
        assert_eq!(
            c.validate().unwrap_err().key,
            "delay_accounting.interval_seconds"
        );
        c.interval_seconds = unspanned(1.0);
        c.max_processes = unspanned(0);
        assert_eq!(
            c.validate().unwrap_err().key,
            "delay_accounting.max_processes"
        );
    }
}
