//! The `limits:` section: how much the kernel and the exposition keep.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{range, unspanned, KeyError};

/// Memory and cardinality bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Distinct (process, container, proto, port, peer) keys kept in the
    /// kernel maps; events for new keys beyond it are counted as lost.
    #[serde(default = "default_max_series")]
    pub max_series: u32,
    /// Series exported per metric; beyond it new series fold into `~other`
    /// and are counted in `netagent_series_dropped_total`.
    #[serde(default = "default_max_series_per_metric")]
    pub max_series_per_metric: u32,
    /// Listening ports of tracked processes remembered by the kernel.
    #[serde(default = "default_max_listeners")]
    pub max_listeners: u32,
    /// Size of the span ring buffer in bytes (power of two, at least one
    /// page); spans that do not fit are counted as lost (`ringbuf_full`).
    /// Default 1 MiB: the agent drains it every 50 ms and is woken sooner
    /// only at a quarter full, so it holds ~55 ms of spans at 100,000/s
    /// when the host's CPUs are busy and the reader runs late.
    #[serde(default = "default_span_ring_bytes")]
    pub span_ring_bytes: u32,
    /// Open TCP sockets of tracked processes the kernel keeps state for
    /// (beyond it, new ones are counted as lost: `sock_storage_full`); also
    /// the UDP sockets kept by address when messages fall back to kprobes
    /// or syscall hooks (LRU beyond it).
    #[serde(default = "default_max_sockets")]
    pub max_sockets: u32,
    /// A series unchanged this long whose process, container and sockets
    /// are gone is dropped and its kernel slots freed; 0 = never.
    #[serde(default = "default_series_ttl_seconds")]
    pub series_ttl_seconds: Spanned<u64>,
}

fn default_series_ttl_seconds() -> Spanned<u64> {
    unspanned(300)
}

fn default_max_sockets() -> u32 {
    65536
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_series: default_max_series(),
            max_series_per_metric: default_max_series_per_metric(),
            max_listeners: default_max_listeners(),
            span_ring_bytes: default_span_ring_bytes(),
            max_sockets: default_max_sockets(),
            series_ttl_seconds: default_series_ttl_seconds(),
        }
    }
}

fn default_max_series() -> u32 {
    16384
}
fn default_max_series_per_metric() -> u32 {
    5000
}
fn default_max_listeners() -> u32 {
    4096
}
fn default_span_ring_bytes() -> u32 {
    1024 * 1024
}

impl Limits {
    /// Kernel slot references keep the slot in 20 bits (bpf/netagent/series.h).
    pub const MAX_SERIES: u32 = 1_000_000;
    /// 30 days.
    pub const MAX_SERIES_TTL: u64 = 2_592_000;

    /// `series_ttl_seconds`; None: series never expire.
    pub fn series_ttl(&self) -> Option<Duration> {
        let v = self.series_ttl_seconds.value;
        (v > 0).then(|| Duration::from_secs(v))
    }

    pub fn validate(&self) -> Result<(), KeyError> {
        range(
            "limits.series_ttl_seconds",
            &self.series_ttl_seconds,
            0,
            Self::MAX_SERIES_TTL,
        )?;
        if self.max_series > Self::MAX_SERIES {
            return Err(KeyError {
                key: "limits.max_series".into(),
                line: None,
                reason: format!("{} is more than {}", self.max_series, Self::MAX_SERIES),
            });
        }
        let ring = self.span_ring_bytes;
        if !ring.is_power_of_two() || ring < 4096 {
            return Err(KeyError {
                key: "limits.span_ring_bytes".into(),
                line: None,
                reason: format!("{ring} must be a power of two of at least 4096"),
            });
        }
        for (key, v) in [
            ("limits.max_series", self.max_series),
            ("limits.max_series_per_metric", self.max_series_per_metric),
            ("limits.max_listeners", self.max_listeners),
        ] {
            if v == 0 {
                return Err(KeyError {
                    key: key.into(),
                    line: None,
                    reason: "must be at least 1".into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::time::Duration;

    fn err(yaml: &str) -> String {
        Config::parse(yaml, "t.yaml").unwrap_err().to_string()
    }

    #[test]
    fn series_ttl_default_zero_and_range() {
        let (c, _) = Config::parse("", "t.yaml").unwrap();
        assert_eq!(c.limits.series_ttl(), Some(Duration::from_secs(300)));
        let (c, _) = Config::parse("limits:\n  series_ttl_seconds: 0\n", "t.yaml").unwrap();
        assert_eq!(c.limits.series_ttl(), None);
        let e = err("limits:\n  max_series: 10\n  series_ttl_seconds: 2592001\n");
        assert!(e.contains("limits.series_ttl_seconds"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        let e = err("limits:\n  series_ttl_seconds: -1\n");
        assert!(e.contains("series_ttl_seconds"), "{e}");
        let e = err("limits:\n  max_series: 1000001\n");
        assert!(e.contains("limits.max_series"), "{e}");
    }
}
