//! Kernel histograms (nanoseconds, fixed buckets) as metric histograms
//! (seconds): the bucket bounds of each kind, shared with the kernel side
//! at load, and the conversion.

use std::collections::BTreeMap;

use crate::kernel::abi::{Hist, HistKind, HIST_BOUNDS, HIST_KINDS};
use crate::metrics::{Histogram, Labels};

/// Upper bounds (seconds) of `netagent_tx_duration_seconds` and
/// `netagent_tcp_connect_duration_seconds`: 100 µs … 10 s.
pub const LATENCY_BOUNDS: [f64; HIST_BOUNDS] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Upper bounds (seconds) of `netagent_tcp_rtt_seconds`: 10 µs … 1 s
/// (loopback RTTs are tens of µs, WAN ones tens of ms).
pub const RTT_BOUNDS: [f64; HIST_BOUNDS] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0,
];

/// Upper bounds (seconds) of `netagent_connection_duration_seconds`: 1 ms … 1 day.
pub const LIFETIME_BOUNDS: [f64; HIST_BOUNDS] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0,
    86400.0,
];

/// The bounds of each histogram kind.
pub fn bounds(kind: HistKind) -> &'static [f64; HIST_BOUNDS] {
    match kind {
        HistKind::Tx | HistKind::Connect => &LATENCY_BOUNDS,
        HistKind::Rtt => &RTT_BOUNDS,
        HistKind::ConnDuration => &LIFETIME_BOUNDS,
    }
}

/// All bounds in nanoseconds, indexed by kind, for the kernel.
pub fn bounds_ns() -> [[u64; HIST_BOUNDS]; HIST_KINDS] {
    [
        HistKind::Tx,
        HistKind::Rtt,
        HistKind::Connect,
        HistKind::ConnDuration,
    ]
    .map(|k| bounds(k).map(|s| (s * 1e9).round() as u64))
}

/// Adds a kernel histogram (ns) into an aggregated one (seconds).
pub fn add_hist(into: &mut BTreeMap<Labels, Histogram>, labels: Labels, kind: HistKind, h: &Hist) {
    let b = bounds(kind);
    let entry = into.entry(labels).or_insert_with(|| Histogram {
        bounds: b,
        buckets: vec![0; b.len() + 1],
        sum: 0.0,
    });
    for (t, n) in entry.buckets.iter_mut().zip(h.buckets.iter()) {
        *t += n;
    }
    entry.sum += h.sum_ns as f64 / 1e9;
}
