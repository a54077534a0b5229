//! Exporter-neutral metric values: what a scrape (or a push) sees.
//!
//! Collectors build [`Family`] values from catalog descriptors; exporters
//! render them. Nothing here knows about BPF or about a wire format.

use super::catalog::Desc;

/// Label names and values of one series, in render order.
pub type Labels = Vec<(&'static str, String)>;

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
    pub labels: Labels,
    pub value: Value,
}

/// A metric family: its catalog entry and its series. `name`, `help` and
/// `kind` are the descriptor's, copied for the exporters' convenience.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Base name without `_total` (counters) or `_bucket`/`_sum`/`_count`.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// The catalog entry; None only for [`Family::ad_hoc`] families.
    pub desc: Option<&'static Desc>,
    pub series: Vec<Series>,
}

impl Family {
    pub fn new(desc: &'static Desc) -> Self {
        Self {
            name: desc.name,
            help: desc.help,
            kind: desc.kind,
            desc: Some(desc),
            series: Vec::new(),
        }
    }

    /// A family outside the catalog, with any labels: for tests and
    /// benchmarks of the exporters only (tests/layers.rs checks that the
    /// agent itself never builds one).
    pub fn ad_hoc(name: &'static str, help: &'static str, kind: Kind) -> Self {
        Self {
            name,
            help,
            kind,
            desc: None,
            series: Vec::new(),
        }
    }

    /// Adds a series; the value must match the family's kind and the labels
    /// the catalog's, in order.
    pub fn push(&mut self, labels: Labels, value: Value) {
        debug_assert!(matches!(
            (self.kind, &value),
            (Kind::Counter, Value::Counter(_))
                | (Kind::Gauge, Value::Gauge(_))
                | (Kind::Histogram, Value::Histogram(_))
        ));
        debug_assert!(
            self.desc
                .is_none_or(|d| labels.iter().map(|(k, _)| *k).eq(d.labels.iter().copied())),
            "{}: labels {:?}, catalog says {:?}",
            self.name,
            labels.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            self.desc.map(|d| d.labels)
        );
        self.series.push(Series { labels, value });
    }
}
