//! The `statsd:` config section (README, "Exporters").

use std::time::Duration;

use super::KeyError;

/// The `statsd:` config section.
///
/// ```yaml
/// statsd:
///   enabled: false
///   address: "127.0.0.1:8125"   # or "unix:///var/run/datadog/dsd.socket"
///   prefix: netagent
///   tags: ["env:prod"]
///   interval_seconds: 10.0
///   max_packet_bytes: 1432
///   max_spans_per_second: 10000
/// ```
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsdConfig {
    /// Whether the agent runs the exporter at all (the exporter itself
    /// does not look at it).
    pub enabled: bool,
    /// `host:port` (optionally `udp://host:port`) for UDP, or
    /// `unix:///path/to/dsd.socket` for a Unix datagram socket.
    pub address: String,
    /// First component of every metric name (`<prefix>.connect`); empty
    /// for none.
    pub prefix: String,
    /// Tags added to every line, e.g. `env:prod` (or a bare `value`).
    pub tags: Vec<String>,
    /// Seconds between exports; see [`StatsdConfig::interval`].
    pub interval_seconds: f64,
    /// Upper bound of one datagram's payload. 1432 keeps a UDP datagram
    /// inside a 1500-byte Ethernet MTU even with IPv6 headers (the default
    /// of Datadog's own clients); Unix sockets can take much more (8192).
    pub max_packet_bytes: usize,
    /// Spans a second, per CPU, that become distribution lines; the kernel
    /// drops the rest before the ring buffer and each line carries the
    /// interval's sample rate (`|@0.25`), so the Datadog Agent's counts
    /// still add up to every span. 0: every span (up to the buffer).
    pub max_spans_per_second: u32,
}

impl Default for StatsdConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            address: "127.0.0.1:8125".to_string(),
            prefix: "netagent".to_string(),
            tags: Vec::new(),
            interval_seconds: 10.0,
            max_packet_bytes: 1432,
            max_spans_per_second: 10_000,
        }
    }
}

impl StatsdConfig {
    /// The export interval, validated: finite and positive.
    pub fn interval(&self) -> Result<Duration, KeyError> {
        Duration::try_from_secs_f64(self.interval_seconds)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| KeyError {
                key: "statsd.interval_seconds".into(),
                line: None,
                reason: format!(
                    "must be a positive number of seconds, got {}",
                    self.interval_seconds
                ),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_yaml_defaults_and_unknown_keys() {
        let cfg: StatsdConfig = serde_saphyr::from_str(
            "enabled: true\naddress: unix:///run/dsd.socket\ntags: [\"env:prod\"]\nmax_packet_bytes: 8192\n",
        )
        .expect("parse");
        assert_eq!(
            cfg,
            StatsdConfig {
                enabled: true,
                address: "unix:///run/dsd.socket".into(),
                tags: vec!["env:prod".into()],
                max_packet_bytes: 8192,
                ..StatsdConfig::default()
            }
        );
        assert_eq!(cfg.interval().expect("interval"), Duration::from_secs(10));
        assert!(serde_saphyr::from_str::<StatsdConfig>("adress: x\n").is_err());
    }
}
