//! The `export:` section: where `/metrics` is served and how the HTTP
//! server protects itself (README, "HTTP security").

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{line, unspanned, unspanned_empty, KeyError};

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

fn default_listen_addr_str() -> String {
    ":9102".to_string()
}

fn default_listen_addr() -> Spanned<String> {
    unspanned(default_listen_addr_str())
}

impl Export {
    /// The socket address of `listen_addr`. An empty host means all
    /// addresses (IPv6 wildcard, which also accepts IPv4 on Linux).
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        parse_listen_addr(&self.listen_addr.value)
    }

    pub fn validate(&self) -> Result<(), KeyError> {
        self.listen_addr().map_err(|reason| KeyError {
            key: "export.listen_addr".into(),
            line: line(&self.listen_addr),
            reason,
        })?;
        for (key, v) in [
            (
                "export.header_read_timeout_seconds",
                self.header_read_timeout_seconds,
            ),
            (
                "export.request_timeout_seconds",
                self.request_timeout_seconds,
            ),
            ("export.idle_timeout_seconds", self.idle_timeout_seconds),
        ] {
            if !(0.1..=3600.0).contains(&v) {
                return Err(KeyError {
                    key: key.into(),
                    line: None,
                    reason: format!("{v} is outside 0.1..=3600"),
                });
            }
        }
        if self.max_connections == 0 {
            return Err(KeyError {
                key: "export.max_connections".into(),
                line: None,
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
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
