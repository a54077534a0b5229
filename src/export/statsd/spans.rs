//! Spans waiting for the next DogStatsD interval. The span reader fills the
//! buffer without waiting; the exporter thread empties it once per
//! interval. Bounded so a span flood cannot grow memory: what does not fit
//! is dropped and counted in [`StatsdStats`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use super::stats::StatsdStats;
use crate::model::spans::FlowSpan;

/// Spans held for one interval at most; beyond it they are dropped.
const CAPACITY: usize = 100_000;

/// The bounded span buffer between the span reader and the exporter.
pub struct SpanBuffer {
    spans: Mutex<Vec<FlowSpan>>,
    capacity: usize,
    stats: Arc<StatsdStats>,
}

impl SpanBuffer {
    pub fn new(stats: Arc<StatsdStats>) -> Self {
        Self::with_capacity(CAPACITY, stats)
    }

    fn with_capacity(capacity: usize, stats: Arc<StatsdStats>) -> Self {
        Self {
            spans: Mutex::new(Vec::new()),
            capacity,
            stats,
        }
    }

    /// Keeps as many of `spans` as fit; counts the rest as dropped.
    pub fn offer(&self, spans: &[FlowSpan]) {
        let mut buf = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        let fit = self.capacity.saturating_sub(buf.len()).min(spans.len());
        buf.extend_from_slice(&spans[..fit]);
        let dropped = spans.len() - fit;
        if dropped > 0 {
            self.stats
                .dropped_span_buffer_full
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }

    /// Empties the buffer, returning what it held.
    pub fn take(&self) -> Vec<FlowSpan> {
        std::mem::take(&mut *self.spans.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::otlp::SpanStats;
    use crate::export::prometheus::{encode, Format};
    use crate::export::statsd::test_support::span;
    use crate::model::spans::SpanSide;

    #[test]
    fn full_buffer_drops_are_counted_and_take_empties_it() {
        let stats = Arc::new(StatsdStats::default());
        let buf = SpanBuffer::with_capacity(3, stats.clone());
        let s = span(SpanSide::Client, "10.0.0.1:40000", "10.0.0.2:80");
        buf.offer(&[s.clone(), s.clone()]);
        buf.offer(&[s.clone(), s.clone(), s.clone()]);
        assert_eq!(buf.take().len(), 3);
        assert_eq!(stats.dropped_span_buffer_full.load(Ordering::Relaxed), 2);
        // Room again after the interval took the spans.
        buf.offer(&[s]);
        assert_eq!(buf.take().len(), 1);
        assert_eq!(stats.dropped_span_buffer_full.load(Ordering::Relaxed), 2);
    }

    /// The drop shows under DogStatsD's own family on `/metrics`, and
    /// OTLP's dropped-spans family (rendered alongside, as the agent does)
    /// has none of it.
    #[test]
    fn drops_are_exported_as_statsd_not_otlp() {
        let stats = Arc::new(StatsdStats::default());
        let buf = SpanBuffer::with_capacity(1, stats.clone());
        let s = span(SpanSide::Server, "10.0.0.2:80", "10.0.0.1:40000");
        buf.offer(&[s.clone(), s.clone(), s]);

        let mut families = SpanStats::default().families();
        families.extend(stats.families());
        let mut text = String::new();
        encode(&families, Format::Text, &mut text);

        assert!(
            text.contains("\nnetagent_statsd_dropped_total{reason=\"span_buffer_full\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE netagent_statsd_dropped_total counter\n"));
        let otlp: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("netagent_otlp_spans_dropped_total{"))
            .collect();
        assert_eq!(otlp.len(), 4, "{otlp:?}");
        assert!(
            otlp.iter()
                .all(|l| l.ends_with(" 0") && !l.contains("statsd")),
            "{otlp:?}"
        );
    }
}
