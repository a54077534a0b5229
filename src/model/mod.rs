//! From kernel totals to labelled metric families: process names, address
//! formatting and histogram bounds. Exporters only ever see [`Family`].

pub mod connections;
pub mod family;
pub mod self_metrics;

pub use family::{Family, Histogram, Kind, Series, Value};

use crate::kernel::abi::HIST_BOUNDS;

/// Upper bounds (seconds) of `netagent_tx_duration_seconds`. The kernel
/// buckets with the same bounds, converted by [`bounds_ns`].
pub const TX_DURATION_BOUNDS: [f64; HIST_BOUNDS] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Bounds in nanoseconds for the kernel.
pub fn bounds_ns(bounds: &[f64; HIST_BOUNDS]) -> [u64; HIST_BOUNDS] {
    bounds.map(|s| (s * 1e9).round() as u64)
}
