//! Spans waiting for the next DogStatsD interval. The span reader fills the
//! buffer without waiting; the exporter thread empties it once per
//! interval. Bounded so a span flood cannot grow memory: what does not fit
//! is dropped and counted in [`StatsdStats`].
//!
//! The buffer also counts every span it stands for: those it holds, those
//! it had no room for, and those the kernel sampled out over
//! `statsd.max_spans_per_second` (the span reader reports them). The
//! interval's sample rate is held / seen, so the Datadog Agent, scaling
//! each line by 1 / rate, counts every span.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use super::stats::StatsdStats;
use crate::model::spans::FlowSpan;

/// Spans held for one interval at most; beyond it they are dropped.
const CAPACITY: usize = 100_000;

/// The bounded span buffer between the span reader and the exporter.
pub struct SpanBuffer {
    held: Mutex<Held>,
    capacity: usize,
    stats: Arc<StatsdStats>,
}

#[derive(Default)]
struct Held {
    spans: Vec<FlowSpan>,
    /// Spans seen this interval: held, dropped for room, sampled out.
    seen: u64,
}

/// One interval's spans and the fraction of the spans seen they are.
pub struct SampledSpans {
    pub spans: Vec<FlowSpan>,
    /// In (0, 1]: 1 when every span seen is here.
    pub rate: f64,
}

impl SpanBuffer {
    pub fn new(stats: Arc<StatsdStats>) -> Self {
        Self::with_capacity(CAPACITY, stats)
    }

    fn with_capacity(capacity: usize, stats: Arc<StatsdStats>) -> Self {
        Self {
            held: Mutex::new(Held::default()),
            capacity,
            stats,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps as many of `spans` as fit; counts the rest as dropped.
    pub fn offer(&self, spans: &[FlowSpan]) {
        let mut held = self.lock();
        let fit = self
            .capacity
            .saturating_sub(held.spans.len())
            .min(spans.len());
        held.spans.extend_from_slice(&spans[..fit]);
        held.seen += spans.len() as u64;
        let dropped = spans.len() - fit;
        if dropped > 0 {
            self.stats
                .dropped_span_buffer_full
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }

    /// `n` spans the kernel dropped over the cap: the held ones stand for them.
    pub fn sampled_out(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.lock().seen += n;
        self.stats.dropped_sampled.fetch_add(n, Ordering::Relaxed);
    }

    /// Empties the buffer, returning what it held and the rate. With
    /// nothing held, spans seen wait for the next interval's rate.
    pub fn take(&self) -> SampledSpans {
        let mut held = self.lock();
        let spans = std::mem::take(&mut held.spans);
        if spans.is_empty() {
            return SampledSpans { spans, rate: 1.0 };
        }
        let seen = std::mem::take(&mut held.seen).max(spans.len() as u64);
        let rate = spans.len() as f64 / seen as f64;
        SampledSpans { spans, rate }
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
        let taken = buf.take();
        assert_eq!(taken.spans.len(), 3);
        // The 3 sent stand for the 5 seen.
        assert_eq!(taken.rate, 3.0 / 5.0);
        assert_eq!(stats.dropped_span_buffer_full.load(Ordering::Relaxed), 2);
        // Room again after the interval took the spans.
        buf.offer(&[s]);
        let taken = buf.take();
        assert_eq!((taken.spans.len(), taken.rate), (1, 1.0));
        assert_eq!(stats.dropped_span_buffer_full.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn sampled_out_spans_lower_the_rate_and_wait_for_a_held_span() {
        let stats = Arc::new(StatsdStats::default());
        let buf = SpanBuffer::with_capacity(10, stats.clone());
        let s = span(SpanSide::Client, "10.0.0.1:40000", "10.0.0.2:80");
        // Nothing held: the 6 sampled out count towards the next rate.
        buf.sampled_out(6);
        let taken = buf.take();
        assert_eq!((taken.spans.len(), taken.rate), (0, 1.0));
        buf.offer(&[s.clone(), s]);
        buf.sampled_out(2);
        let taken = buf.take();
        assert_eq!((taken.spans.len(), taken.rate), (2, 0.2));
        assert_eq!(stats.dropped_sampled.load(Ordering::Relaxed), 8);
        assert_eq!(buf.take().rate, 1.0);
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
