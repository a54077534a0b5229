//! OTLP's own counters (spans exported and dropped, failed requests) and
//! the self-metric families made from them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::catalog;
use crate::metrics::{Family, Value};

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
}

impl SpanStats {
    pub fn families(&self) -> Vec<Family> {
        let mut dropped = Family::new(&catalog::OTLP_SPANS_DROPPED);
        for (reason, n) in [
            ("queue_full", &self.dropped_queue_full),
            ("rate_limit", &self.dropped_rate_limit),
            ("export_failed", &self.dropped_export_failed),
            ("decode_error", &self.decode_errors),
        ] {
            dropped.push(
                vec![("reason", reason.to_string())],
                Value::Counter(n.load(Ordering::Relaxed) as f64),
            );
        }
        let mut exported = Family::new(&catalog::OTLP_SPANS_EXPORTED);
        exported.push(
            Vec::new(),
            Value::Counter(self.exported.load(Ordering::Relaxed) as f64),
        );
        let mut errors = Family::new(&catalog::OTLP_EXPORT_ERRORS);
        errors.push(
            Vec::new(),
            Value::Counter(self.export_errors.load(Ordering::Relaxed) as f64),
        );
        vec![dropped, exported, errors]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_spans_carry_only_otlp_reasons() {
        let stats = SpanStats::default();
        stats.dropped_rate_limit.fetch_add(3, Ordering::Relaxed);
        let families = stats.families();
        let dropped = families
            .iter()
            .find(|f| f.name == "netagent_otlp_spans_dropped")
            .expect("dropped family");
        let reasons: Vec<(&str, f64)> = dropped
            .series
            .iter()
            .map(|s| match s.value {
                Value::Counter(v) => (s.labels[0].1.as_str(), v),
                _ => unreachable!("counter family"),
            })
            .collect();
        assert_eq!(
            reasons,
            [
                ("queue_full", 0.0),
                ("rate_limit", 3.0),
                ("export_failed", 0.0),
                ("decode_error", 0.0),
            ]
        );
        assert!(families
            .iter()
            .all(|f| f.name.starts_with("netagent_otlp_")));
    }
}
