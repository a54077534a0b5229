//! What netagent measures, independent of where it comes from and where it
//! goes: the catalog of metric families and the plain values of a scrape.
//! A leaf: it imports nothing else of the crate, and every layer may use it.

pub mod catalog;
mod family;

use std::collections::BTreeMap;

pub use catalog::Desc;

/// The label value of the series that sums everything beyond a cap.
pub const OTHER: &str = "~other";
pub use family::{Family, Histogram, Kind, Labels, Series, Value};

/// A family of counters (or gauges) from aggregated label sets.
pub fn scalar_family(desc: &'static Desc, series: BTreeMap<Labels, f64>) -> Family {
    let mut f = Family::new(desc);
    for (labels, v) in series {
        let value = match desc.kind {
            Kind::Counter => Value::Counter(v),
            _ => Value::Gauge(v),
        };
        f.push(labels, value);
    }
    f
}

/// A histogram family from aggregated label sets.
pub fn histogram_family(desc: &'static Desc, series: BTreeMap<Labels, Histogram>) -> Family {
    let mut f = Family::new(desc);
    for (labels, h) in series {
        f.push(labels, Value::Histogram(h));
    }
    f
}

/// A family with one unlabelled value.
pub fn single(desc: &'static Desc, v: f64) -> Family {
    let mut f = Family::new(desc);
    let value = match desc.kind {
        Kind::Counter => Value::Counter(v),
        _ => Value::Gauge(v),
    };
    f.push(Vec::new(), value);
    f
}
