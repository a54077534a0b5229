//! The `drops:` config section (README, "Packet drops").

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{range, unspanned, KeyError};

/// `drops:` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DropsConfig {
    /// Count packet drops by the kernel's reason (default true). The
    /// program runs only when the kernel drops a packet (a free that is not
    /// a drop goes to another tracepoint), so a host that drops nothing
    /// pays nothing; a flood of drops costs one per-CPU counter update each.
    pub enabled: bool,
    /// (reason, process, container, interface, protocol) keys the kernel
    /// map has room for; drops of further keys are counted as lost
    /// (`drop_map_full`).
    pub max_series: Spanned<u32>,
    /// Reasons not to count (names as in the `reason` label), at most
    /// [`DropsConfig::MAX_IGNORED`]. By default the two that kernels also
    /// give frees in the normal life of a TCP connection (README, "Packet
    /// drops"); `[]` counts every reason.
    pub ignore_reasons: Vec<Spanned<String>>,
}

impl Default for DropsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_series: unspanned(4096),
            ignore_reasons: Self::DEFAULT_IGNORED
                .iter()
                .map(|r| unspanned(r.to_string()))
                .collect(),
        }
    }
}

impl DropsConfig {
    /// Upper bound of `max_series`: a preallocated per-CPU hash of this
    /// many keys, about 120 + 8 × CPUs bytes each (measured: 558 kB for
    /// 4096 keys on 2 CPUs).
    const MAX_SERIES: u32 = 1 << 18;

    /// `NA_DROP_IGNORE_MAX` (bpf/netagent.h).
    pub const MAX_IGNORED: usize = 8;

    /// The default of `ignore_reasons`.
    pub const DEFAULT_IGNORED: [&'static str; 2] = ["not_specified", "queue_purge"];

    pub fn validate(&self) -> Result<(), KeyError> {
        range("drops.max_series", &self.max_series, 1, Self::MAX_SERIES)?;
        if let Some(extra) = self.ignore_reasons.get(Self::MAX_IGNORED) {
            return Err(KeyError {
                key: format!("drops.ignore_reasons[{}]", Self::MAX_IGNORED),
                line: super::line(extra),
                reason: format!("at most {} reasons", Self::MAX_IGNORED),
            });
        }
        for (i, r) in self.ignore_reasons.iter().enumerate() {
            let name = &r.value;
            let why = if name.is_empty()
                || !name
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
            {
                Some(format!(
                    "{name:?} is no reason name: lower case, as in the reason label (e.g. no_socket)"
                ))
            } else if name == "unknown" {
                Some("\"unknown\" is every drop of a kernel without reasons; switch drops off instead (drops.enabled: false)".to_string())
            } else {
                None
            };
            if let Some(reason) = why {
                return Err(KeyError {
                    key: format!("drops.ignore_reasons[{i}]"),
                    line: super::line(r),
                    reason,
                });
            }
        }
        Ok(())
    }

    /// The reason names to leave out.
    pub fn ignored(&self) -> Vec<String> {
        self.ignore_reasons
            .iter()
            .map(|r| r.value.clone())
            .collect()
    }
}
