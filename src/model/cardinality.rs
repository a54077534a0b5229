//! Series caps per metric family. Once a family has `cap` series, new label
//! sets are folded into one series whose labels all read `~other`, and the
//! number of folded series is exported as `netagent_series_dropped_total`.
//!
//! Admission is sticky: a series admitted once stays admitted while it is
//! exported, so the same label set never moves between its own series and
//! `~other` (which would make counters jump), and the number of folded
//! series only grows while the kernel keeps its counters. A series absent
//! for `limits.series_ttl_seconds` (it expired) gives its place back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::metrics::catalog;
use crate::metrics::{Family, Labels, Value};

pub use crate::metrics::OTHER;

/// Remembers which series each family has admitted.
#[derive(Debug)]
pub struct SeriesLimiter {
    cap: usize,
    /// Admitted label sets per family, with when each was last exported.
    admitted: HashMap<&'static str, HashMap<Labels, Instant>>,
    /// Admitted series absent this long are forgotten; None: never.
    forget_after: Option<Duration>,
}

impl SeriesLimiter {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            admitted: HashMap::new(),
            forget_after: None,
        }
    }

    /// Forgets admitted series absent for `ttl` (they expired at their source).
    pub fn forget_after(mut self, ttl: Option<Duration>) -> Self {
        self.forget_after = ttl;
        self
    }

    /// Applies the cap to one family in place; returns how many series were
    /// folded into `~other`.
    pub fn limit(&mut self, family: &mut Family) -> u64 {
        self.limit_at(family, Instant::now())
    }

    fn limit_at(&mut self, family: &mut Family, now: Instant) -> u64 {
        let admitted = self.admitted.entry(family.name).or_default();
        if let Some(ttl) = self.forget_after {
            // Only the absent ones: a live series scraped rarely stays.
            let present: HashSet<&Labels> = family.series.iter().map(|s| &s.labels).collect();
            admitted.retain(|l, seen| present.contains(l) || now.duration_since(*seen) < ttl);
        }
        let mut kept = Vec::with_capacity(family.series.len().min(self.cap + 1));
        let mut other: Option<Value> = None;
        let mut other_labels: Option<Labels> = None;
        let mut folded = 0u64;
        for s in family.series.drain(..) {
            if let Some(seen) = admitted.get_mut(&s.labels) {
                *seen = now;
                kept.push(s);
                continue;
            }
            if admitted.len() < self.cap {
                admitted.insert(s.labels.clone(), now);
                kept.push(s);
                continue;
            }
            folded += 1;
            other_labels.get_or_insert_with(|| {
                s.labels
                    .iter()
                    .map(|(k, _)| (*k, OTHER.to_string()))
                    .collect()
            });
            other = Some(match other.take() {
                None => s.value,
                Some(acc) => merge(acc, &s.value),
            });
        }
        family.series = kept;
        if let (Some(labels), Some(value)) = (other_labels, other) {
            family.push(labels, value);
        }
        folded
    }
}

/// Sum of two values of the same kind (counters, gauges, histograms).
fn merge(acc: Value, v: &Value) -> Value {
    match (acc, v) {
        (Value::Counter(a), Value::Counter(b)) => Value::Counter(a + b),
        (Value::Gauge(a), Value::Gauge(b)) => Value::Gauge(a + b),
        (Value::Histogram(mut a), Value::Histogram(b)) => {
            for (x, y) in a.buckets.iter_mut().zip(b.buckets.iter()) {
                *x += y;
            }
            a.sum += b.sum;
            Value::Histogram(a)
        }
        (acc, _) => acc,
    }
}

/// `netagent_series_dropped_total{metric}` from per-family fold counts.
pub fn dropped_family(dropped: &BTreeMap<&'static str, u64>) -> Family {
    let mut f = Family::new(&catalog::SERIES_DROPPED);
    for (metric, n) in dropped {
        f.push(
            vec![("metric", metric.to_string())],
            Value::Counter(*n as f64),
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Kind;

    fn fam(values: &[(&str, f64)]) -> Family {
        let mut f = Family::ad_hoc("m", "h", Kind::Counter);
        for (l, v) in values {
            f.push(vec![("peer", l.to_string())], Value::Counter(*v));
        }
        f
    }

    #[test]
    fn folds_beyond_the_cap_and_sums_into_other() {
        let mut lim = SeriesLimiter::new(2);
        let mut f = fam(&[("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0)]);
        assert_eq!(lim.limit(&mut f), 2);
        assert_eq!(f.series.len(), 3);
        assert_eq!(f.series[2].labels, vec![("peer", OTHER.to_string())]);
        assert_eq!(f.series[2].value, Value::Counter(7.0));
    }

    #[test]
    fn admission_is_sticky_across_scrapes() {
        let mut lim = SeriesLimiter::new(2);
        let mut f = fam(&[("c", 3.0), ("d", 4.0)]);
        assert_eq!(lim.limit(&mut f), 0);
        // Later scrapes list "a" and "b" first (sorted); c and d stay.
        let mut f = fam(&[("a", 1.0), ("b", 2.0), ("c", 5.0), ("d", 6.0)]);
        assert_eq!(lim.limit(&mut f), 2);
        let kept: Vec<_> = f.series.iter().map(|s| s.labels[0].1.clone()).collect();
        assert_eq!(kept, vec!["c", "d", OTHER]);
        assert_eq!(f.series[2].value, Value::Counter(3.0));
    }

    #[test]
    fn an_absent_series_gives_its_place_back_after_the_ttl() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(2);
        let mut lim = SeriesLimiter::new(1).forget_after(Some(ttl));
        assert_eq!(lim.limit_at(&mut fam(&[("a", 1.0)]), t0), 0);
        // "a" expired at its source: absent, but within the TTL still admitted.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(lim.limit_at(&mut fam(&[("b", 1.0)]), t1), 1);
        let t2 = t0 + ttl;
        let mut f = fam(&[("b", 1.0)]);
        assert_eq!(lim.limit_at(&mut f, t2), 0);
        assert_eq!(f.series[0].labels[0].1, "b");
        // Without a TTL admission stays forever.
        let mut lim = SeriesLimiter::new(1);
        lim.limit_at(&mut fam(&[("a", 1.0)]), t0);
        assert_eq!(lim.limit_at(&mut fam(&[("b", 1.0)]), t0 + ttl * 100), 1);
    }
}
