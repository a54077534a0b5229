//! The `dns:` config section (README, "DNS").

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{line, range, unspanned, KeyError};

/// Most DNS ports the kernel checks (`NA_DNS_PORTS` in bpf/netagent.h).
pub const MAX_PORTS: usize = 8;

/// `dns:` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Watch DNS (default true): requests, answers, durations, dst_name.
    pub enabled: bool,
    /// Server ports that make a socket a DNS client (default [53]).
    pub ports: Vec<Spanned<u16>>,
    /// A query with no answer after this long counts as `rcode="timeout"`
    /// (default 5; 0.1 … 300).
    pub timeout_seconds: Spanned<f64>,
    /// Label requests and durations with the queried name (`domain`;
    /// default false), up to `limits.max_series_per_metric` names, the
    /// rest `~other`.
    pub domain_label: bool,
    /// Queries waiting for their answer at once (default 4096); beyond,
    /// new ones are not followed (counted).
    pub max_pending: Spanned<u32>,
    /// (process or container, address) → name entries kept for
    /// `dst_name` (default 16384); beyond, new ones are not kept (counted).
    pub max_names: Spanned<u32>,
    /// A name is kept at least this long, however short its TTL
    /// (default 60: a scrape interval or more, so a name with a TTL of a
    /// few seconds still labels the connection made right after it).
    pub min_ttl_seconds: Spanned<u32>,
    /// Size of the kernel's DNS ring buffer in bytes (default 262144; a
    /// power of two, 4096 … 64 MiB); messages that do not fit are counted
    /// as lost (`dns_ringbuf_full`).
    pub ring_bytes: Spanned<u32>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ports: vec![unspanned(53)],
            timeout_seconds: unspanned(5.0),
            domain_label: false,
            max_pending: unspanned(4096),
            max_names: unspanned(16384),
            min_ttl_seconds: unspanned(60),
            ring_bytes: unspanned(256 * 1024),
        }
    }
}

impl DnsConfig {
    /// The first invalid key, its line and why.
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.ports.is_empty() || self.ports.len() > MAX_PORTS {
            return Err(KeyError {
                key: "dns.ports".into(),
                line: self.ports.first().and_then(line),
                reason: format!("1 to {MAX_PORTS} ports, not {}", self.ports.len()),
            });
        }
        for (i, p) in self.ports.iter().enumerate() {
            if p.value == 0 {
                return Err(KeyError {
                    key: format!("dns.ports[{i}]"),
                    line: line(p),
                    reason: "port 0 is not a DNS port".into(),
                });
            }
        }
        range("dns.timeout_seconds", &self.timeout_seconds, 0.1, 300.0)?;
        range("dns.max_pending", &self.max_pending, 1, 1 << 20)?;
        range("dns.max_names", &self.max_names, 1, 1 << 20)?;
        range("dns.min_ttl_seconds", &self.min_ttl_seconds, 0, 86400)?;
        let ring = &self.ring_bytes;
        if !ring.value.is_power_of_two() || !(4096..=64 << 20).contains(&ring.value) {
            return Err(KeyError {
                key: "dns.ring_bytes".into(),
                line: line(ring),
                reason: format!(
                    "{} must be a power of two from 4096 to 67108864",
                    ring.value
                ),
            });
        }
        Ok(())
    }

    /// The ports, in order, without repeats.
    pub fn port_list(&self) -> Vec<u16> {
        let mut out: Vec<u16> = Vec::new();
        for p in &self.ports {
            if !out.contains(&p.value) {
                out.push(p.value);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn err(y: &str) -> String {
        Config::parse(y, "t.yaml").unwrap_err().to_string()
    }

    #[test]
    fn defaults_and_a_full_section_parse() {
        let (c, _) = Config::parse("# nothing\n", "t.yaml").unwrap();
        assert!(c.dns.enabled && !c.dns.domain_label);
        assert_eq!(c.dns.port_list(), vec![53]);
        let (c, _) = Config::parse(
            "dns:\n  enabled: true\n  ports: [53, 5353, 53]\n  timeout_seconds: 2.5\n  \
             domain_label: true\n  max_pending: 10\n  max_names: 20\n  min_ttl_seconds: 0\n  \
             ring_bytes: 8192\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(c.dns.port_list(), vec![53, 5353]);
        assert_eq!(c.dns.timeout_seconds.value, 2.5);
        assert!(c.dns.domain_label);
    }

    #[test]
    fn errors_name_the_key_and_its_line() {
        let e = err("dns:\n  timeout_seconds: 0\n");
        assert!(e.contains("dns.timeout_seconds (line 2)"), "{e}");
        let e = err("dns:\n  enabled: true\n  ports: [53, 0]\n");
        assert!(e.contains("dns.ports[1] (line 3)"), "{e}");
        let e = err("dns:\n  ports: []\n");
        assert!(e.contains("dns.ports"), "{e}");
        let e = err("dns:\n  ring_bytes: 5000\n");
        assert!(e.contains("dns.ring_bytes (line 2)"), "{e}");
        let e = err("dns:\n  max_pending: 0\n");
        assert!(e.contains("dns.max_pending (line 2)"), "{e}");
        let e = err("dns:\n  timeout: 3\n");
        assert!(e.contains("timeout") && e.contains("line 2"), "{e}");
    }
}
