//! DogStatsD's own counters (spans dropped before sending, lines that could
//! not be sent) and the self-metric families made from them. Kept apart
//! from OTLP's: the two exporters run, fill up and fail independently.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::catalog;
use crate::metrics::{Family, Value};

/// DogStatsD export counters, shared with the agent's own metrics.
#[derive(Debug, Default)]
pub struct StatsdStats {
    /// Spans that found the buffer for the next interval full.
    pub dropped_span_buffer_full: AtomicU64,
    /// Spans the kernel dropped over `statsd.max_spans_per_second`; the
    /// lines sent carry the rate that stands for them.
    pub dropped_sampled: AtomicU64,
    /// Lines that could not be sent (set from
    /// [`StatsdExporter::errors`](super::StatsdExporter::errors)).
    pub send_errors: AtomicU64,
}

impl StatsdStats {
    pub fn families(&self) -> Vec<Family> {
        let mut dropped = Family::new(&catalog::STATSD_DROPPED);
        dropped.push(
            vec![("reason", "span_buffer_full".to_string())],
            Value::Counter(self.dropped_span_buffer_full.load(Ordering::Relaxed) as f64),
        );
        dropped.push(
            vec![("reason", "sampled".to_string())],
            Value::Counter(self.dropped_sampled.load(Ordering::Relaxed) as f64),
        );
        let mut errors = Family::new(&catalog::STATSD_SEND_ERRORS);
        errors.push(
            Vec::new(),
            Value::Counter(self.send_errors.load(Ordering::Relaxed) as f64),
        );
        vec![dropped, errors]
    }
}
