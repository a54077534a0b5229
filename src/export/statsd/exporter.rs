//! The exporter handle: opens the socket behind a cadence client, validates
//! the datagram size, and counts lines that could not be sent. What it
//! sends each interval is in `interval.rs`.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use cadence::{MetricResult, StatsdClient};

use super::encode::{sanitize_name, tag_value};
use super::interval::Previous;
use super::invalid;
use super::sink::{DatagramSink, Delivery};
use super::socket::{Endpoint, Socket, MAX_UDP_PAYLOAD};
use crate::config::StatsdConfig;

/// Smallest accepted `max_packet_bytes`: below this hardly any line fits,
/// so a smaller value is a typo rather than a choice.
const MIN_PACKET_BYTES: usize = 64;

/// Sends metric families as DogStatsD lines every interval.
///
/// The agent owns the timer: call [`export`](Self::export) (and
/// [`observe_spans`](Self::observe_spans)) once per
/// [`StatsdConfig::interval`]. Both return quickly: sockets are
/// non-blocking, and a datagram the kernel will not take at once is
/// dropped and counted in [`errors`](Self::errors).
pub struct StatsdExporter {
    pub(super) client: StatsdClient,
    pub(super) delivery: Arc<Delivery>,
    /// Sanitised global tags, appended to every line.
    pub(super) global_tags: Vec<String>,
    /// Lines refused before reaching a socket (longer than a datagram).
    rejected: u64,
    /// Whether a refused line was logged already (it repeats every
    /// interval; the count is in `errors()`).
    warned_rejected: bool,
    /// Counter values sent last call, for deltas; holds exactly the
    /// counter series of the last call.
    pub(super) previous: Previous,
}

impl StatsdExporter {
    /// Opens the socket. A UDP host name is resolved here, once (this may
    /// block on DNS, so call it outside an async context); a Unix socket
    /// path need not exist yet: sends fail and are counted until it does.
    pub fn new(cfg: &StatsdConfig) -> io::Result<Self> {
        cfg.interval().map_err(|e| super::invalid(e.to_string()))?;
        let endpoint = Endpoint::parse(&cfg.address)?;
        let max_udp = matches!(endpoint, Endpoint::Udp(_)).then_some(MAX_UDP_PAYLOAD);
        if cfg.max_packet_bytes < MIN_PACKET_BYTES
            || max_udp.is_some_and(|max| cfg.max_packet_bytes > max)
        {
            return Err(invalid(format!(
                "statsd.max_packet_bytes must be between {MIN_PACKET_BYTES} and {}, got {}",
                max_udp.map_or_else(|| "any size".to_string(), |m| m.to_string()),
                cfg.max_packet_bytes
            )));
        }
        let socket = Socket::open(&endpoint)?;

        let delivery = Arc::new(Delivery::default());
        let sink = DatagramSink::new(
            socket,
            Arc::clone(&delivery),
            cfg.address.clone(),
            cfg.max_packet_bytes,
        );
        let prefix = sanitize_name(cfg.prefix.trim_matches('.'));
        // Global tags are added per line (not as cadence client tags, which
        // it puts first) so they come after the series' own labels.
        let global_tags = cfg
            .tags
            .iter()
            .map(|t| tag_value(t.trim()).into_owned())
            .filter(|t| !t.is_empty())
            .collect();
        Ok(Self {
            client: StatsdClient::from_sink(&prefix, sink),
            delivery,
            global_tags,
            rejected: 0,
            warned_rejected: false,
            previous: Previous::new(),
        })
    }

    /// Lines that could not be sent: dropped by the socket (server
    /// missing, buffer full) or longer than `max_packet_bytes`.
    pub fn errors(&self) -> u64 {
        self.rejected + self.delivery.dropped.load(Ordering::Relaxed)
    }

    /// Counts a line refused before the socket (socket drops are counted by
    /// the writer when the datagram is sent).
    pub(super) fn note(&mut self, result: MetricResult<()>) {
        if let Err(e) = result {
            self.rejected += 1;
            if !self.warned_rejected {
                self.warned_rejected = true;
                tracing::warn!(error = %e, "statsd: line not sent; further ones are only counted");
            }
        }
    }

    /// Sends what is buffered, so nothing waits for the next interval.
    pub(super) fn flush(&self) {
        // Cannot fail: `DatagramWriter` counts failed datagrams instead of
        // returning errors. Logged in case that ever changes.
        if let Err(e) = self.client.flush() {
            tracing::debug!(error = %e, "statsd: flush failed");
        }
    }

    pub(super) fn lines_sent_since(&self, before: u64) -> usize {
        let sent = self.delivery.sent.load(Ordering::Relaxed) - before;
        usize::try_from(sent).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_config_is_refused() {
        let bad = [
            StatsdConfig {
                interval_seconds: 0.0,
                ..StatsdConfig::default()
            },
            StatsdConfig {
                interval_seconds: f64::NAN,
                ..StatsdConfig::default()
            },
            StatsdConfig {
                max_packet_bytes: 10,
                ..StatsdConfig::default()
            },
            StatsdConfig {
                max_packet_bytes: 70_000,
                ..StatsdConfig::default()
            },
            StatsdConfig {
                address: "no-port".into(),
                ..StatsdConfig::default()
            },
        ];
        for cfg in bad {
            assert!(StatsdExporter::new(&cfg).is_err(), "accepted {cfg:?}");
        }
        // A Unix socket may take bigger datagrams than UDP.
        let unix = StatsdConfig {
            address: "unix:///nonexistent/dsd.socket".into(),
            max_packet_bytes: 70_000,
            ..StatsdConfig::default()
        };
        assert!(StatsdExporter::new(&unix).is_ok());
    }
}
