//! DogStatsD export: pushes counters, gauges and per-span durations to a
//! Datadog agent (or any DogStatsD server) over UDP or a Unix datagram socket.
//!
//! [`cadence`] formats the lines and packs them into datagrams (its
//! `MultiLineWriter` fills a buffer of `max_packet_bytes` and sends it whole).
//! Only the last hop, the socket write, is ours: see `DatagramWriter` in
//! `sink.rs` for why cadence's own buffered sinks could not be used as
//! they are.
//!
//! Counters are sent as deltas (`|c`): StatsD servers sum what they receive
//! per flush interval, so sending a cumulative total every interval would
//! count it again and again. Histogram families are not sent: they are
//! cumulative buckets that DogStatsD has no type for; request durations go
//! out per span as distributions instead ([`StatsdExporter::observe_spans`]).
//!
//! One job per file: `config` (the `statsd:` section), `socket` (UDP or
//! Unix datagram endpoint), `sink` (datagrams under cadence), `encode`
//! (names and tags), `exporter` (the handle), `interval` (what each
//! interval sends), `spans` (spans waiting for the next interval), `stats`
//! (DogStatsD's self-metrics). This file keeps the public API.

use std::io;

mod encode;
mod exporter;
mod interval;
mod sink;
mod socket;
mod spans;
mod stats;
#[cfg(test)]
mod test_support;

pub use crate::config::StatsdConfig;
pub use exporter::StatsdExporter;
pub use spans::{SampledSpans, SpanBuffer};
pub use stats::StatsdStats;

/// An invalid-config error (bad `statsd.*` value).
fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}
