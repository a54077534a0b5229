//! The `bpf_self:` config section (README, "BPF self-metrics").

use serde::Deserialize;

/// `bpf_self:` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BpfSelfConfig {
    /// Export the `netagent_bpf_*` families at all (default true).
    pub enabled: bool,
    /// Also export one series per program and map (default false: the `id`
    /// label churns whenever programs are reloaded).
    pub per_object: bool,
    /// Only objects whose name starts with this; empty (default) = all.
    /// Applies to the totals as well as to the per-object series. The
    /// kernel keeps only the first 15 bytes of a name.
    pub name_prefix: String,
    /// Per-object series per kind (programs, maps), lowest ids first
    /// (default 1000). The totals still cover every matching object.
    pub max_objects: usize,
    /// Minimum seconds between two walks over the kernel's objects
    /// (default 10); scrapes in between reuse the last result. Fractions
    /// are allowed; 0 walks on every scrape (concurrent scrapes still
    /// share one walk). Negative or non-finite values fall back to 10.
    pub interval_seconds: f64,
    /// Turn on kernel BPF run-time statistics (`BPF_ENABLE_STATS`) while
    /// the agent runs, so the run counters advance (default false: it adds
    /// a little overhead to every BPF program run on the host).
    pub enable_stats: bool,
}

impl Default for BpfSelfConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_object: false,
            name_prefix: String::new(),
            max_objects: 1000,
            interval_seconds: DEFAULT_INTERVAL_SECONDS,
            enable_stats: false,
        }
    }
}

pub const DEFAULT_INTERVAL_SECONDS: f64 = 10.0;
