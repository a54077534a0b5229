//! Agent configuration: YAML with defaults and validation. Errors name the
//! offending key and its line, so a typo is found without guessing.
//!
//! The keys are those of the agent netagent replaces (MNA): `targets`,
//! `export.listen_addr`, `otel.*`, plus `interfaces` and `limits`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::kernel::abi::COMM_LEN;

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
    pub otel: crate::export::otlp::OtelConfig,
    /// Limit to sockets of one network namespace: `""` every namespace
    /// (default), `"self"` the agent's own, or a namespace file such as
    /// `/run/netns/NAME` or `/proc/PID/ns/net`.
    #[serde(default = "unspanned_empty")]
    pub netns: Spanned<String>,
    #[serde(default)]
    pub limits: Limits,
    /// DogStatsD export.
    #[serde(default)]
    pub statsd: crate::export::statsd::StatsdConfig,
    /// Self-observability of every BPF program and map on the host.
    #[serde(default)]
    pub bpf_self: crate::model::bpf_self::BpfSelfConfig,
    /// Kernel access: BTF location for kernels without built-in BTF.
    #[serde(default)]
    pub kernel: Kernel,
    /// Switches for testing and troubleshooting.
    #[serde(default)]
    pub debug: Debug,
    /// Cloud instance metadata (`netagent_cloud_info`).
    #[serde(default)]
    pub cloud: crate::node::cloud::CloudConfig,
    /// Per-process CPU and disk delays from taskstats (README, "Delay accounting").
    #[serde(default)]
    pub delay_accounting: crate::node::delayacct::DelayAccountingConfig,
    /// OOM kills per victim (README, "OOM kills").
    #[serde(default)]
    pub oom_kills: crate::node::oom::OomConfig,
    /// Log pattern extraction (off by default).
    #[serde(default)]
    pub logs: crate::node::logs::LogsConfig,
}

/// `kernel:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// BTF file describing the running kernel, for kernels built without
    /// `CONFIG_DEBUG_INFO_BTF` (no /sys/kernel/btf/vmlinux), e.g. from
    /// btfhub. Empty: the kernel's own.
    #[serde(default = "unspanned_empty")]
    pub btf_path: Spanned<String>,
}

impl Default for Kernel {
    fn default() -> Self {
        Self {
            btf_path: unspanned_empty(),
        }
    }
}

/// `debug:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debug {
    /// Probes or hooks not to use, e.g. `tracepoint/tcp:tcp_retransmit_skb`,
    /// `cgroup/sendmsg4` or `messages:tracepoint`: the feature falls back
    /// to its next hook, or is reported unavailable in `/health` and
    /// `netagent_probe_up` while everything else runs.
    #[serde(default)]
    pub disable_probes: Vec<Spanned<String>>,
}

/// One tracked process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Value of the `process` label.
    pub name: Spanned<String>,
    /// Exact `/proc/<pid>/comm` to match (the kernel keeps 15 bytes).
    pub match_comm: Spanned<String>,
}

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

/// Prometheus endpoint and its HTTP server (README, "HTTP security").
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Export {
    /// `host:port`; an empty host (`:9102`) listens on every address.
    #[serde(default = "default_listen_addr")]
    pub listen_addr: Spanned<String>,
    /// Prometheus exporter-toolkit web config (TLS, basic auth), relative
    /// to the working directory; `""` = plain HTTP without auth.
    pub web_config_file: Spanned<String>,
    /// Seconds for a complete request header (TLS handshake included),
    /// from the connection or from the first byte of a further request.
    pub header_read_timeout_seconds: f64,
    /// Seconds to produce a response, and again to send it.
    pub request_timeout_seconds: f64,
    /// Seconds a kept-alive connection may wait for its next request.
    pub idle_timeout_seconds: f64,
    /// Connections served at once; beyond it new ones wait in the listen
    /// backlog until one closes.
    pub max_connections: u32,
}

impl Default for Export {
    fn default() -> Self {
        Self {
            listen_addr: unspanned(default_listen_addr_str()),
            web_config_file: unspanned_empty(),
            header_read_timeout_seconds: 10.0,
            request_timeout_seconds: 30.0,
            idle_timeout_seconds: 120.0,
            max_connections: 256,
        }
    }
}

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

impl Default for Config {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            interface_stats: InterfaceStats::default(),
            targets: Vec::new(),
            export: Export::default(),
            otel: Default::default(),
            netns: unspanned_empty(),
            kernel: Kernel::default(),
            limits: Limits::default(),
            statsd: Default::default(),
            bpf_self: Default::default(),
            debug: Debug::default(),
            cloud: Default::default(),
            delay_accounting: Default::default(),
            oom_kills: Default::default(),
            logs: Default::default(),
        }
    }
}

fn unspanned_empty() -> Spanned<String> {
    unspanned(String::new())
}

fn default_listen_addr_str() -> String {
    ":9102".to_string()
}
fn default_listen_addr() -> Spanned<String> {
    unspanned(default_listen_addr_str())
}
fn default_true() -> bool {
    true
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
    256 * 1024
}
fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
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
    #[error("invalid config {path}: {key}{at}: {message}")]
    Invalid {
        path: String,
        key: String,
        at: LineRef,
        message: String,
    },
}

/// " (line N)" when the line is known.
#[derive(Debug)]
pub struct LineRef(Option<u64>);

impl fmt::Display for LineRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(line) => write!(f, " (line {line})"),
            None => Ok(()),
        }
    }
}

fn line_of<T>(s: &Spanned<T>) -> LineRef {
    let line = s.referenced.line();
    LineRef((line > 0).then_some(line))
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
        let warnings = cfg.validate(path)?;
        Ok((cfg, warnings))
    }

    fn validate(&self, path: &str) -> Result<Vec<Warning>, ConfigError> {
        let invalid = |key: String, at: LineRef, message: String| ConfigError::Invalid {
            path: path.to_string(),
            key,
            at,
            message,
        };
        let mut warnings = Vec::new();
        let mut seen: Vec<(&str, u64)> = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            if t.name.value.is_empty() {
                return Err(invalid(
                    format!("targets[{i}].name"),
                    line_of(&t.name),
                    "must not be empty".into(),
                ));
            }
            let comm = t.match_comm.value.as_str();
            let key = format!("targets[{i}].match_comm");
            if comm.is_empty() || comm.contains('\0') {
                return Err(invalid(
                    key,
                    line_of(&t.match_comm),
                    "must be a non-empty process name".into(),
                ));
            }
            if comm.len() >= COMM_LEN {
                warnings.push(Warning(format!(
                    "{key}{}: {comm:?} is longer than the kernel's 15-byte comm; matching {:?}",
                    line_of(&t.match_comm),
                    kernel_comm(comm)
                )));
            }
            let kc = kernel_comm(comm);
            if let Some((_, line)) = seen.iter().find(|(c, _)| *c == kc) {
                return Err(invalid(
                    key,
                    line_of(&t.match_comm),
                    format!("{kc:?} is already matched by the target on line {line}"),
                ));
            }
            seen.push((kc, t.match_comm.referenced.line()));
        }
        for (i, pattern) in self.interfaces.iter().enumerate() {
            if let Err(e) = glob::Pattern::new(&pattern.value) {
                return Err(invalid(
                    format!("interfaces[{i}]"),
                    line_of(pattern),
                    format!("bad pattern: {e}"),
                ));
            }
        }
        if self.otel.enabled()
            && !(self.otel.metrics_interval_seconds == 0.0
                || self.otel.metrics_interval_seconds >= 0.1)
        {
            return Err(invalid(
                "otel.metrics_interval_seconds".into(),
                LineRef(None),
                "must be 0 (off) or at least 0.1".into(),
            ));
        }
        let known = crate::kernel::loader::probe_names();
        for (i, p) in self.debug.disable_probes.iter().enumerate() {
            if !known.contains(&p.value) {
                return Err(invalid(
                    format!("debug.disable_probes[{i}]"),
                    line_of(p),
                    format!("unknown probe {:?}; known: {}", p.value, known.join(", ")),
                ));
            }
        }
        let ring = self.limits.span_ring_bytes;
        if !ring.is_power_of_two() || ring < 4096 {
            return Err(invalid(
                "limits.span_ring_bytes".into(),
                LineRef(None),
                format!("{ring} must be a power of two of at least 4096"),
            ));
        }
        if let Err(e) = self.netns_inode() {
            return Err(invalid("netns".into(), line_of(&self.netns), e));
        }
        if self.statsd.enabled {
            if let Err(e) = self.statsd.interval() {
                return Err(invalid(
                    "statsd.interval_seconds".into(),
                    LineRef(None),
                    e.to_string(),
                ));
            }
        }
        let iv = self.interface_stats.interval_seconds;
        if !(0.1..=3600.0).contains(&iv) {
            return Err(invalid(
                "interface_stats.interval_seconds".into(),
                LineRef(None),
                format!("{iv} is outside 0.1..=3600"),
            ));
        }
        self.listen_addr().map_err(|message| {
            invalid(
                "export.listen_addr".into(),
                line_of(&self.export.listen_addr),
                message,
            )
        })?;
        let export = &self.export;
        for (key, v) in [
            (
                "export.header_read_timeout_seconds",
                export.header_read_timeout_seconds,
            ),
            (
                "export.request_timeout_seconds",
                export.request_timeout_seconds,
            ),
            ("export.idle_timeout_seconds", export.idle_timeout_seconds),
        ] {
            if !(0.1..=3600.0).contains(&v) {
                return Err(invalid(
                    key.into(),
                    LineRef(None),
                    format!("{v} is outside 0.1..=3600"),
                ));
            }
        }
        if export.max_connections == 0 {
            return Err(invalid(
                "export.max_connections".into(),
                LineRef(None),
                "must be at least 1".into(),
            ));
        }
        if !export.web_config_file.value.is_empty() {
            crate::http::web_config::WebConfig::load(Path::new(&export.web_config_file.value))
                .map_err(|e| {
                    invalid(
                        "export.web_config_file".into(),
                        line_of(&export.web_config_file),
                        e.to_string(),
                    )
                })?;
        }
        for (key, v) in [
            ("limits.max_series", self.limits.max_series),
            (
                "limits.max_series_per_metric",
                self.limits.max_series_per_metric,
            ),
            ("limits.max_listeners", self.limits.max_listeners),
        ] {
            if v == 0 {
                return Err(invalid(
                    key.into(),
                    LineRef(None),
                    "must be at least 1".into(),
                ));
            }
        }
        if let Err(e) = self.cloud.validate() {
            return Err(invalid(
                format!("cloud.{}", e.key),
                LineRef(e.line),
                e.message,
            ));
        }
        if let Err((key, at, message)) = self.delay_accounting.check() {
            let line = at.line();
            return Err(invalid(
                key.into(),
                LineRef((line > 0).then_some(line)),
                message,
            ));
        }
        if let Err(e) = self.logs.validate() {
            return Err(invalid(e.key, LineRef(e.line), e.message));
        }
        Ok(warnings)
    }

    /// The socket address for `export.listen_addr`. An empty host means all
    /// addresses (IPv6 wildcard, which also accepts IPv4 on Linux).
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        parse_listen_addr(&self.export.listen_addr.value)
    }

    /// Inode of the configured network namespace; 0 = every namespace.
    pub fn netns_inode(&self) -> Result<u32, String> {
        use std::os::unix::fs::MetadataExt;
        let path = match self.netns.value.as_str() {
            "" => return Ok(0),
            "self" => "/proc/self/ns/net",
            p => p,
        };
        std::fs::metadata(path)
            .map(|m| m.ino() as u32)
            .map_err(|e| format!("cannot open network namespace {path:?}: {e}"))
    }

    /// True when no targets are configured: every process is tracked.
    pub fn track_all(&self) -> bool {
        self.targets.is_empty()
    }
}

/// The part of a comm the kernel keeps (15 bytes, on a char boundary).
pub fn kernel_comm(comm: &str) -> &str {
    let mut end = comm.len().min(COMM_LEN - 1);
    while !comm.is_char_boundary(end) {
        end -= 1;
    }
    &comm[..end]
}

fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not host:port (e.g. \":9102\" or \"127.0.0.1:9102\")"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{s:?}: port {port:?} is not a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = match host {
        "" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => h
            .parse()
            .map_err(|_| format!("{s:?}: host {h:?} is not an IP address"))?,
    };
    Ok(SocketAddr::new(ip, port))
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
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<Config, String> {
        Config::parse(y, "test.yaml")
            .map(|(c, _)| c)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn mna_example_parses() {
        let c = parse(
            r#"
interfaces: ["eth0"]
targets:
  - name: "nginx"
    match_comm: "nginx"
export:
  listen_addr: ":9102"
otel:
  endpoint: ""
  insecure: true
"#,
        )
        .unwrap();
        assert_eq!(c.targets.len(), 1);
        assert_eq!(c.targets[0].name.value, "nginx");
        assert_eq!(c.interfaces[0].value, "eth0");
        assert_eq!(c.listen_addr().unwrap(), "[::]:9102".parse().unwrap());
        assert!(!c.track_all());
    }

    #[test]
    fn the_example_config_parses() {
        let (c, warnings) = Config::parse(
            include_str!("../config.example.yaml"),
            "config.example.yaml",
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.targets.len(), 2);
    }

    #[test]
    fn empty_file_is_the_default() {
        let c = parse("# nothing\n").unwrap();
        assert!(c.track_all());
        assert_eq!(c.export.listen_addr.value, ":9102");
        assert!(c.otel.insecure);
        assert_eq!(c.limits.max_series, 16384);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("targets: []\nexport:\n  listen_adr: \":9102\"\n").unwrap_err();
        assert!(err.contains("listen_adr"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn unknown_target_key_is_named_with_its_line() {
        let err = parse("targets:\n  - name: a\n    match: a\n").unwrap_err();
        assert!(err.contains("match"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn duplicate_comm_is_rejected_with_both_lines() {
        let err =
            parse("targets:\n  - name: a\n    match_comm: web\n  - name: b\n    match_comm: web\n")
                .unwrap_err();
        assert!(err.contains("targets[1].match_comm (line 5)"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn long_comm_warns_and_truncates() {
        let (c, warnings) = Config::parse(
            "targets:\n  - name: x\n    match_comm: a-very-long-process-name\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(
            kernel_comm(&c.targets[0].match_comm.value),
            "a-very-long-pro"
        );
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].0.contains("line 3"), "{:?}", warnings);
    }

    #[test]
    fn bad_listen_addr_names_key_and_line() {
        let err = parse("export:\n  listen_addr: \"nonsense\"\n").unwrap_err();
        assert!(err.contains("export.listen_addr (line 2)"), "{err}");
        let err = parse("export:\n  listen_addr: \":99999\"\n").unwrap_err();
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn listen_addr_forms() {
        assert_eq!(
            parse_listen_addr("127.0.0.1:9102").unwrap(),
            "127.0.0.1:9102".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("[::1]:0").unwrap(),
            "[::1]:0".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("localhost:1").unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
    }

    #[test]
    fn unknown_probe_names_are_rejected_with_the_known_ones() {
        let err = parse("debug:\n  disable_probes: [\"tracepoint/x:y\"]\n").unwrap_err();
        assert!(err.contains("debug.disable_probes[0] (line 2)"), "{err}");
        assert!(err.contains("tracepoint/sock:inet_sock_set_state"), "{err}");
        parse("debug:\n  disable_probes: [\"cgroup/sendmsg6\"]\n").unwrap();
    }

    #[test]
    fn cloud_defaults_and_keys() {
        let c = parse("# nothing\n").unwrap();
        assert!(c.cloud.enabled);
        assert_eq!(c.cloud.base_url.value, "http://169.254.169.254");
        assert_eq!(c.cloud.timeout(), std::time::Duration::from_secs(1));
        assert_eq!(c.cloud.refresh_interval().as_secs(), 600);
        let c = parse(
            "cloud:\n  enabled: false\n  base_url: \"http://127.0.0.1:8080/\"\n  timeout_seconds: 0.5\n  refresh_interval_seconds: 60\n",
        )
        .unwrap();
        assert!(!c.cloud.enabled);
        assert_eq!(c.cloud.timeout().as_millis(), 500);
        assert_eq!(c.cloud.refresh_interval().as_secs(), 60);
    }

    #[test]
    fn bad_cloud_keys_are_named_with_their_line() {
        let err = parse("targets: []\ncloud:\n  base_url: \"169.254.169.254\"\n").unwrap_err();
        assert!(err.contains("cloud.base_url (line 3)"), "{err}");
        let err = parse("cloud:\n  enabled: true\n  timeout_seconds: 0\n").unwrap_err();
        assert!(err.contains("cloud.timeout_seconds (line 3)"), "{err}");
        let err = parse("cloud:\n  refresh_interval_seconds: 0.5\n").unwrap_err();
        assert!(
            err.contains("cloud.refresh_interval_seconds (line 2)"),
            "{err}"
        );
        let err = parse("cloud:\n  enabled: true\n  timeout: 1\n").unwrap_err();
        assert!(err.contains("timeout") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn node_sections_parse_and_bad_values_name_key_and_line() {
        let c = parse(
            "delay_accounting:\n  enable_sysctl: true\n  interval_seconds: 0.5\noom_kills:\n  enabled: false\n",
        )
        .unwrap();
        assert!(c.delay_accounting.enabled && c.delay_accounting.enable_sysctl);
        assert_eq!(c.delay_accounting.interval_seconds.value, 0.5);
        assert!(!c.oom_kills.enabled);
        let d = parse("").unwrap();
        assert!(d.delay_accounting.enabled && !d.delay_accounting.enable_sysctl);
        assert!(d.oom_kills.enabled);
        let err = parse("delay_accounting:\n  interval_seconds: 0\n").unwrap_err();
        assert!(
            err.contains("delay_accounting.interval_seconds (line 2)"),
            "{err}"
        );
        let err = parse("delay_accounting:\n\n  max_processes: 0\n").unwrap_err();
        assert!(
            err.contains("delay_accounting.max_processes (line 3)"),
            "{err}"
        );
        let err = parse("oom_kills:\n  enable: true\n").unwrap_err();
        assert!(err.contains("enable") && err.contains("line 2"), "{err}");
        let err = parse("delay_accounting:\n  intervall: 1\n").unwrap_err();
        assert!(err.contains("intervall") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn wrong_type_is_reported() {
        let err = parse("targets: 5\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn logs_section_defaults_and_errors_name_key_and_line() {
        let c = parse("logs:\n  enabled: true\n").unwrap();
        assert!(c.logs.enabled && c.logs.journald);
        assert_eq!(c.logs.max_patterns_per_source.value, 100);
        assert!(!parse("# nothing\n").unwrap().logs.enabled);
        let err = parse("logs:\n  enabled: true\n  max_patern: 3\n").unwrap_err();
        assert!(
            err.contains("max_patern") && err.contains("line 3"),
            "{err}"
        );
        let err =
            parse("logs:\n  paths:\n    - /var/log/*.log\n    - relative/*.log\n").unwrap_err();
        assert!(err.contains("logs.paths[1] (line 4)"), "{err}");
        let err = parse("logs:\n  paths: [\"/var/log/[x\"]\n").unwrap_err();
        assert!(err.contains("logs.paths[0] (line 2)"), "{err}");
        let err = parse("logs:\n\n  max_patterns_per_source: 0\n").unwrap_err();
        assert!(
            err.contains("logs.max_patterns_per_source (line 3)"),
            "{err}"
        );
        let err = parse("logs:\n  similarity: 1.5\n").unwrap_err();
        assert!(err.contains("logs.similarity (line 2)"), "{err}");
        let err = parse("logs:\n  journald_directory: journal\n").unwrap_err();
        assert!(err.contains("logs.journald_directory (line 2)"), "{err}");
    }
}
