//! The `tcp:` config section (README, "Idle connections").

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{line, unspanned, KeyError};

/// `tcp:` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpConfig {
    /// An established connection that carried no payload either way for
    /// at least this long counts in `netagent_tcp_connections_idle`.
    /// Default 60; 0 turns the gauge off (the agent then does not read the
    /// kernel's socket table at each scrape).
    pub idle_after_seconds: Spanned<f64>,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            idle_after_seconds: unspanned(60.0),
        }
    }
}

impl TcpConfig {
    /// Upper bound of `idle_after_seconds`: 30 days.
    const MAX_IDLE_AFTER: f64 = 30.0 * 86_400.0;

    pub fn validate(&self) -> Result<(), KeyError> {
        let v = self.idle_after_seconds.value;
        if v == 0.0 || (0.1..=Self::MAX_IDLE_AFTER).contains(&v) {
            return Ok(());
        }
        Err(KeyError {
            key: "tcp.idle_after_seconds".into(),
            line: line(&self.idle_after_seconds),
            reason: format!(
                "{v} is neither 0 (off) nor within 0.1..={}",
                Self::MAX_IDLE_AFTER
            ),
        })
    }

    /// The idle threshold; None when the gauge is off.
    pub fn idle_after(&self) -> Option<Duration> {
        let v = self.idle_after_seconds.value;
        (v > 0.0).then(|| Duration::from_secs_f64(v))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn err(yaml: &str) -> String {
        Config::parse(yaml, "t.yaml").unwrap_err().to_string()
    }

    #[test]
    fn default_is_a_minute_and_zero_is_off() {
        let (c, _) = Config::parse("", "t.yaml").unwrap();
        assert_eq!(c.tcp.idle_after(), Some(std::time::Duration::from_secs(60)));
        let (c, _) = Config::parse("tcp:\n  idle_after_seconds: 2\n", "t.yaml").unwrap();
        assert_eq!(c.tcp.idle_after(), Some(std::time::Duration::from_secs(2)));
        let (c, _) = Config::parse("tcp:\n  idle_after_seconds: 0.5\n", "t.yaml").unwrap();
        assert_eq!(
            c.tcp.idle_after(),
            Some(std::time::Duration::from_millis(500))
        );
        let (c, _) = Config::parse("tcp:\n  idle_after_seconds: 0\n", "t.yaml").unwrap();
        assert_eq!(c.tcp.idle_after(), None);
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        let e = err("targets: []\ntcp:\n  idle_after_seconds: -3\n");
        assert!(
            e.contains("tcp.idle_after_seconds (line 3)") && e.contains("-3"),
            "{e}"
        );
        let e = err("tcp:\n  idle_after_seconds: 0.01\n");
        assert!(e.contains("tcp.idle_after_seconds (line 2)"), "{e}");
        let e = err("tcp:\n  idle_after_seconds: 99999999\n");
        assert!(e.contains("tcp.idle_after_seconds (line 2)"), "{e}");
        let e = err("tcp:\n  idle_after_seconds: soon\n");
        assert!(e.contains("idle_after_seconds"), "{e}");
        let e = err("tcp:\n  idle_after: 5\n");
        assert!(e.contains("idle_after"), "unknown key named: {e}");
    }
}
