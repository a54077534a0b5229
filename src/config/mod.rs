//! Agent configuration: YAML with defaults and validation. Errors name the
//! offending key and its line, so a typo is found without guessing.
//!
//! A leaf of plain data: it imports nothing else of the crate, every layer
//! may read it. Each section lives in a file of its own with its defaults
//! and its checks; every check reports the same shape, [`KeyError`]
//! (`key`, `line`, `reason`). Checks that need other layers (probe names
//! the kernel side knows, the TLS files of the web config) run in the
//! agent's wiring and report the same shape.
//!
//! The keys are those of the agent netagent replaces (MNA): `targets`,
//! `export.listen_addr`, `otel.*`, plus `interfaces` and `limits`.

pub mod bpf_self;
pub mod cloud;
pub mod containers;
pub mod delay_accounting;
pub mod dns;
pub mod drops;
pub mod export;
pub mod interfaces;
pub mod kernel;
pub mod limits;
pub mod logs;
pub mod nat;
pub mod oom;
pub mod otel;
pub mod statsd;
pub mod targets;
pub mod tcp;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub use bpf_self::BpfSelfConfig;
pub use cloud::CloudConfig;
pub use containers::ContainersConfig;
pub use delay_accounting::DelayAccountingConfig;
pub use dns::DnsConfig;
pub use drops::DropsConfig;
pub use export::Export;
pub use interfaces::InterfaceStats;
pub use kernel::{Debug, Kernel};
pub use limits::Limits;
pub use logs::LogsConfig;
pub use nat::NatConfig;
pub use oom::OomConfig;
pub use otel::OtelConfig;
pub use statsd::StatsdConfig;
pub use targets::{kernel_comm, Target, COMM_LEN};
pub use tcp::TcpConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Interfaces for per-interface traffic: names or glob patterns
    /// (`eth*`); empty means every interface except loopback.
    #[serde(default)]
    pub interfaces: Vec<Spanned<String>>,
    #[serde(default)]
    pub interface_stats: InterfaceStats,
    /// Processes to track; empty means every process, labelled by comm.
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub export: Export,
    #[serde(default)]
    pub otel: OtelConfig,
    /// Limit to sockets of one network namespace: `""` every namespace
    /// (default), `"self"` the agent's own, or a namespace file such as
    /// `/run/netns/NAME` or `/proc/PID/ns/net`.
    #[serde(default = "unspanned_empty")]
    pub netns: Spanned<String>,
    #[serde(default)]
    pub limits: Limits,
    /// DogStatsD export.
    #[serde(default)]
    pub statsd: StatsdConfig,
    /// Self-observability of every BPF program and map on the host.
    #[serde(default)]
    pub bpf_self: BpfSelfConfig,
    /// Kernel access: BTF location for kernels without built-in BTF.
    #[serde(default)]
    pub kernel: Kernel,
    /// Switches for testing and troubleshooting.
    #[serde(default)]
    pub debug: Debug,
    /// Cloud instance metadata (`netagent_cloud_info`).
    #[serde(default)]
    pub cloud: CloudConfig,
    /// Per-process CPU and disk delays from taskstats (README, "Delay accounting").
    #[serde(default)]
    pub delay_accounting: DelayAccountingConfig,
    /// OOM kills per victim (README, "OOM kills").
    #[serde(default)]
    pub oom_kills: OomConfig,
    /// Destinations after this host's NAT (README, "NAT").
    #[serde(default)]
    pub nat: NatConfig,
    /// Packet drops by the kernel's reason (README, "Packet drops").
    #[serde(default)]
    pub drops: DropsConfig,
    /// Log pattern extraction (off by default).
    #[serde(default)]
    pub logs: LogsConfig,
    /// Where the container runtimes keep their state (names, pods).
    #[serde(default)]
    pub containers: ContainersConfig,
    /// TCP connection metrics: the idle threshold (README, "Idle connections").
    #[serde(default)]
    pub tcp: TcpConfig,
    /// DNS requests and answers, and destination names (README, "DNS").
    #[serde(default)]
    pub dns: DnsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            interface_stats: InterfaceStats::default(),
            targets: Vec::new(),
            export: Export::default(),
            otel: OtelConfig::default(),
            netns: unspanned_empty(),
            kernel: Kernel::default(),
            limits: Limits::default(),
            statsd: StatsdConfig::default(),
            bpf_self: BpfSelfConfig::default(),
            debug: Debug::default(),
            cloud: CloudConfig::default(),
            delay_accounting: DelayAccountingConfig::default(),
            oom_kills: OomConfig::default(),
            nat: NatConfig::default(),
            drops: DropsConfig::default(),
            logs: LogsConfig::default(),
            containers: ContainersConfig::default(),
            tcp: TcpConfig::default(),
            dns: DnsConfig::default(),
        }
    }
}

/// What is wrong with one key: the one error shape of every section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}{}: {reason}", LineRef(*.line))]
pub struct KeyError {
    /// The full key, e.g. `cloud.base_url` or `targets[1].match_comm`.
    pub key: String,
    /// Its line in the file, when the value came from it.
    pub line: Option<u64>,
    pub reason: String,
}

/// A configuration error; the message names the key and, where known, the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid config {path}: {error}")]
    Invalid { path: String, error: KeyError },
}

/// " (line N)" when the line is known.
#[derive(Debug)]
pub struct LineRef(pub Option<u64>);

impl fmt::Display for LineRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, " (line {line})"),
            None => Ok(()),
        }
    }
}

/// The line of a value, when it came from the file.
pub fn line<T>(s: &Spanned<T>) -> Option<u64> {
    let l = s.referenced.line();
    (l > 0).then_some(l)
}

/// A value that did not come from the file (a default).
pub fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

fn unspanned_empty() -> Spanned<String> {
    unspanned(String::new())
}

fn default_true() -> bool {
    true
}

/// `key` must lie within `lo..=hi`.
pub fn range<T: PartialOrd + fmt::Display + Copy>(
    key: &str,
    v: &Spanned<T>,
    lo: T,
    hi: T,
) -> Result<(), KeyError> {
    if v.value >= lo && v.value <= hi {
        return Ok(());
    }
    Err(KeyError {
        key: key.to_string(),
        line: line(v),
        reason: format!("{} is outside {lo}..={hi}", v.value),
    })
}

/// A warning worth logging at start (the config is still usable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning(pub String);

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<(Self, Vec<Warning>), ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses and validates YAML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &str) -> Result<(Self, Vec<Warning>), ConfigError> {
        // An empty file (or only comments) is the default configuration.
        let cfg: Option<Config> = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: one_line(&e.to_string()),
        })?;
        let cfg = cfg.unwrap_or_default();
        let warnings = cfg.validate().map_err(|error| ConfigError::Invalid {
            path: path.to_string(),
            error,
        })?;
        Ok((cfg, warnings))
    }

    /// Every section's checks, in the order of the file's usual layout.
    fn validate(&self) -> Result<Vec<Warning>, KeyError> {
        let warnings = targets::validate(&self.targets)?;
        interfaces::validate_patterns(&self.interfaces)?;
        self.otel.validate()?;
        self.limits.validate()?;
        kernel::netns_inode(&self.netns.value).map_err(|reason| KeyError {
            key: "netns".into(),
            line: line(&self.netns),
            reason,
        })?;
        if self.statsd.enabled {
            self.statsd.interval()?;
        }
        self.interface_stats.validate()?;
        self.export.validate()?;
        self.cloud.validate()?;
        self.delay_accounting.validate()?;
        self.oom_kills.validate()?;
        self.nat.validate()?;
        self.drops.validate()?;
        self.logs.validate()?;
        self.containers.validate()?;
        self.tcp.validate()?;
        self.dns.validate()?;
        Ok(warnings)
    }

    /// The socket address for `export.listen_addr`.
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.export.listen_addr()
    }

    /// Inode of the configured network namespace; 0 = every namespace.
    pub fn netns_inode(&self) -> Result<u32, String> {
        kernel::netns_inode(&self.netns.value)
    }

    /// True when no targets are configured: every process is tracked.
    pub fn track_all(&self) -> bool {
        self.targets.is_empty()
    }
}

/// serde-saphyr renders a source snippet over several lines; logs want one.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests;
