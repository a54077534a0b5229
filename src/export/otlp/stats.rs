//! OTLP's own counters (spans exported and dropped, failed requests) and
//! the self-metric families made from them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::{Family, Kind, Value};

/// Span export counters, shared with the agent's own metrics.
#[derive(Debug, Default)]
pub struct SpanStats {
    pub exported: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_rate_limit: AtomicU64,
    pub dropped_export_failed: AtomicU64,
    pub export_errors: AtomicU64,
    /// Ring-buffer records that did not decode.
    pub decode_errors: AtomicU64,
    /// Spans the DogStatsD buffer had no room for.
    pub dropped_statsd_buffer: AtomicU64,
    /// DogStatsD lines that could not be sent (set by the statsd exporter).
    pub statsd_errors: AtomicU64,
}

impl SpanStats {
    pub fn families(&self) -> Vec<Family> {
        let mut dropped = Family::new(
            "netagent_otlp_spans_dropped",
            "Spans not exported, by reason: queue_full (collector slow or down), rate_limit (otel.max_spans_per_second), export_failed (gave up after retries), decode_error (bad kernel record).",
            Kind::Counter,
        );
        for (reason, n) in [
            ("queue_full", &self.dropped_queue_full),
            ("rate_limit", &self.dropped_rate_limit),
            ("export_failed", &self.dropped_export_failed),
            ("decode_error", &self.decode_errors),
            ("statsd_buffer_full", &self.dropped_statsd_buffer),
        ] {
            dropped.push(
                vec![("reason", reason.to_string())],
                Value::Counter(n.load(Ordering::Relaxed) as f64),
            );
        }
        let mut exported = Family::new(
            "netagent_otlp_spans_exported",
            "Spans accepted by the OTLP collector.",
            Kind::Counter,
        );
        exported.push(
            Vec::new(),
            Value::Counter(self.exported.load(Ordering::Relaxed) as f64),
        );
        let mut errors = Family::new(
            "netagent_otlp_export_errors",
            "Failed OTLP export requests (spans and metrics).",
            Kind::Counter,
        );
        errors.push(
            Vec::new(),
            Value::Counter(self.export_errors.load(Ordering::Relaxed) as f64),
        );
        let mut statsd = Family::new(
            "netagent_statsd_send_errors",
            "DogStatsD lines that could not be sent.",
            Kind::Counter,
        );
        statsd.push(
            Vec::new(),
            Value::Counter(self.statsd_errors.load(Ordering::Relaxed) as f64),
        );
        vec![dropped, exported, errors, statsd]
    }
}
