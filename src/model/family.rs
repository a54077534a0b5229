//! Exporter-neutral metric model: what a scrape (or a push) sees.
//!
//! Collectors turn kernel data into [`Family`] values; exporters render
//! them. Nothing here knows about BPF or about a wire format.

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One sample value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Monotonic count (rendered with the `_total` suffix).
    Counter(f64),
    Gauge(f64),
    Histogram(Histogram),
}

/// A histogram snapshot with finite upper bounds (seconds etc.).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds of the finite buckets, ascending. `+Inf` is implicit.
    pub bounds: &'static [f64],
    /// Non-cumulative counts: `bounds.len() + 1` entries, the last is `+Inf`.
    pub buckets: Vec<u64>,
    pub sum: f64,
}

impl Histogram {
    /// Total number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// One labelled time series of a family.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Label names and values, in render order. Values are raw (unescaped).
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

/// A metric family: name, help, kind and its series.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Base name without `_total` (counters) or `_bucket`/`_sum`/`_count`.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub series: Vec<Series>,
}

impl Family {
    pub fn new(name: &'static str, help: &'static str, kind: Kind) -> Self {
        Self {
            name,
            help,
            kind,
            series: Vec::new(),
        }
    }

    /// Adds a series; the value must match the family's kind.
    pub fn push(&mut self, labels: Vec<(&'static str, String)>, value: Value) {
        debug_assert!(matches!(
            (self.kind, &value),
            (Kind::Counter, Value::Counter(_))
                | (Kind::Gauge, Value::Gauge(_))
                | (Kind::Histogram, Value::Histogram(_))
        ));
        self.series.push(Series { labels, value });
    }
}
