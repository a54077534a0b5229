//! The `limits:` section: how much the kernel and the exposition keep.

use serde::Deserialize;

use super::KeyError;

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
    pub fn validate(&self) -> Result<(), KeyError> {
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
