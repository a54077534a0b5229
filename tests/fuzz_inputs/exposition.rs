//! The Prometheus encoder on arbitrary label values and sample values: both
//! formats parse back with `openmetrics-parser` to the same labels and
//! values, and `promtool check metrics` accepts a batch of cases (300, or
//! `PROPTEST_CASES` up to 5000, in one exposition).

use super::corpus::{cases, config};
use super::labels::{labels, same_value, series_labels, LABEL_NAMES};
use crate::common;
use netagent::export::prometheus::{encode, Format};
use netagent::metrics::{Family, Histogram, Kind, Value};
use openmetrics_parser::openmetrics::parse_openmetrics;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{MetricNumber, OpenMetricsValue, PrometheusValue};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use std::collections::BTreeMap;

const BOUNDS: &[f64] = &[0.0001, 0.01, 1.0, 10.0];

/// One generated exposition: per family, series of (label values, value).
#[derive(Debug, Clone)]
struct Exposition {
    counters: Vec<([String; 2], f64)>,
    gauges: Vec<([String; 2], f64)>,
    /// (labels, non-cumulative buckets incl. +Inf, sum)
    histograms: Vec<([String; 2], Vec<u64>, f64)>,
}

/// Counters and histogram sums are never negative or NaN in the agent
/// (kernel u64 counters, durations); OpenMetrics forbids both for them.
fn counter_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(|v| v as f64),
        any::<f64>()
            .prop_filter("NaN is no count", |v| !v.is_nan())
            .prop_map(f64::abs),
        Just(f64::INFINITY),
        Just(0.0),
    ]
}

/// `allow_cr: false` turns carriage returns into newlines (which the
/// encoder escapes). A raw CR is legal in a label value in both formats
/// (Prometheus text 0.0.4 reserves only `\n`, `"` and `\`; OpenMetrics
/// 1.0's ABNF `normal-char` includes %x0D) and Prometheus accepts it, so
/// the encoder leaves it as is; but `openmetrics-parser` 0.5 reads a lone
/// CR as a line break (its pest grammar's NEWLINE) and rejects the
/// exposition. CRs are therefore covered by promtool
/// (`promtool_accepts_generated_expositions`, `carriage_return_stays_raw`)
/// and left out of the round trip through that crate.
fn exposition(allow_cr: bool) -> impl Strategy<Value = Exposition> {
    let labels = move || {
        labels().prop_map(move |mut l| {
            if !allow_cr {
                for v in &mut l {
                    *v = v.replace('\r', "\n");
                }
            }
            l
        })
    };
    let counters = proptest::collection::vec((labels(), counter_value()), 0..4);
    let gauges = proptest::collection::vec((labels(), any::<f64>()), 0..4);
    // Bucket counts stay far from u64 overflow: the kernel's counters
    // cannot reach 2^32 per bucket per scrape interval in practice, and
    // the encoder sums them.
    let buckets = proptest::collection::vec(0u64..=u64::from(u32::MAX), BOUNDS.len() + 1);
    let histograms = proptest::collection::vec((labels(), buckets, counter_value()), 0..3);
    (counters, gauges, histograms).prop_map(|(counters, gauges, histograms)| Exposition {
        counters,
        gauges,
        histograms,
    })
}

/// The model families for an exposition; series ids are `<prefix><n>`.
fn families(e: &Exposition, prefix: &str) -> Vec<Family> {
    let mut counter = Family::ad_hoc(
        "fuzz_requests",
        "Requests, \"quoted\" \\ help.",
        Kind::Counter,
    );
    for (i, (l, v)) in e.counters.iter().enumerate() {
        counter.push(
            series_labels(&format!("{prefix}{i}"), l),
            Value::Counter(*v),
        );
    }
    let mut gauge = Family::ad_hoc("fuzz_level", "A level.", Kind::Gauge);
    for (i, (l, v)) in e.gauges.iter().enumerate() {
        gauge.push(series_labels(&format!("{prefix}{i}"), l), Value::Gauge(*v));
    }
    let mut hist = Family::ad_hoc("fuzz_latency_seconds", "Latency.", Kind::Histogram);
    for (i, (l, buckets, sum)) in e.histograms.iter().enumerate() {
        hist.push(
            series_labels(&format!("{prefix}{i}"), l),
            Value::Histogram(Histogram {
                bounds: BOUNDS,
                buckets: buckets.clone(),
                sum: *sum,
            }),
        );
    }
    vec![counter, gauge, hist]
}

fn render(families: &[Family], format: Format) -> String {
    let mut out = String::new();
    encode(families, format, &mut out);
    out
}

/// Expected (other labels, value) by series id.
type Expected<'a> = BTreeMap<String, (&'a [String; 2], f64)>;

fn expected<'a>(series: impl Iterator<Item = (&'a [String; 2], f64)>) -> Expected<'a> {
    series
        .enumerate()
        .map(|(i, (l, v))| (i.to_string(), (l, v)))
        .collect()
}

/// Checks one parsed sample against the expectation for its id.
fn check_labels(
    labelset: &openmetrics_parser::LabelSet<'_>,
    want: &Expected<'_>,
) -> Result<f64, TestCaseError> {
    let id = labelset.get_label_value("id").expect("id label");
    let (labels, value) = want
        .get(id)
        .ok_or_else(|| TestCaseError::fail(format!("unexpected series id {id:?}")))?;
    for (name, v) in LABEL_NAMES.iter().zip(labels.iter()) {
        prop_assert_eq!(
            labelset.get_label_value(name),
            Some(v.as_str()),
            "label {}",
            name
        );
    }
    Ok(*value)
}

fn check_histogram(
    got: &openmetrics_parser::HistogramValue,
    buckets: &[u64],
    sum: f64,
) -> Result<(), TestCaseError> {
    let mut cumulative = 0u64;
    let mut want = Vec::new();
    for (bound, count) in BOUNDS.iter().chain([f64::INFINITY].iter()).zip(buckets) {
        cumulative += count;
        want.push((*bound, cumulative as f64));
    }
    let have: Vec<(f64, f64)> = got
        .buckets
        .iter()
        .map(|b| (b.upper_bound, b.count.as_f64()))
        .collect();
    prop_assert_eq!(have, want);
    prop_assert_eq!(got.count, Some(cumulative));
    let got_sum = got.sum.map(|s| s.as_f64()).unwrap_or(f64::NAN);
    prop_assert!(same_value(got_sum, sum), "sum {} != {}", got_sum, sum);
    Ok(())
}

fn number(n: &MetricNumber) -> f64 {
    n.as_f64()
}

/// Checks every sample of `$families` ((name, expected) pairs) in
/// `$parsed`, a text or OpenMetrics parse (`$value`: that parser's value
/// enum; histograms against `$hists`); the number of samples checked. A
/// macro: the two formats' parsers return distinct types.
macro_rules! check_samples {
    ($parsed:expr, $doc:expr, $families:expr, $hists:expr, $value:ident) => {{
        let mut seen = 0;
        for (name, want) in $families {
            let Some(family) = $parsed.families.get(name) else {
                prop_assert!(want.is_empty(), "family {} missing:\n{}", name, $doc);
                continue;
            };
            for s in family.iter_samples() {
                let labelset = s
                    .get_labelset()
                    .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                let value = check_labels(&labelset, want)?;
                seen += 1;
                match &s.value {
                    $value::Counter(c) => {
                        prop_assert!(
                            same_value(number(&c.value), value),
                            "{:?} vs {}",
                            c.value,
                            value
                        )
                    }
                    $value::Gauge(g) => {
                        prop_assert!(same_value(number(g), value), "{:?} vs {}", g, value)
                    }
                    $value::Histogram(h) => {
                        let id = labelset.get_label_value("id").unwrap();
                        let (_, buckets, sum) = $hists[id];
                        check_histogram(h, buckets, sum)?;
                    }
                    other => prop_assert!(false, "unexpected value {:?}", other),
                }
            }
        }
        seen
    }};
}

/// Renders `e` in both formats and parses it back: same series, labels
/// and values.
fn check_round_trip(e: &Exposition) -> Result<(), TestCaseError> {
    let fams = families(e, "");
    let counters = expected(e.counters.iter().map(|(l, v)| (l, *v)));
    let gauges = expected(e.gauges.iter().map(|(l, v)| (l, *v)));
    let hists: BTreeMap<String, (&[String; 2], &Vec<u64>, f64)> = e
        .histograms
        .iter()
        .enumerate()
        .map(|(i, (l, b, s))| (i.to_string(), (l, b, *s)))
        .collect();
    let hist_expected: Expected<'_> = hists
        .iter()
        .map(|(id, (l, _, s))| (id.clone(), (*l, *s)))
        .collect();

    // Classic text format.
    let text = render(&fams, Format::Text);
    let parsed = parse_prometheus(&text)
        .map_err(|err| TestCaseError::fail(format!("text does not parse: {err:?}\n{text}")))?;
    let families = [
        ("fuzz_requests_total", &counters),
        ("fuzz_level", &gauges),
        ("fuzz_latency_seconds", &hist_expected),
    ];
    let seen = check_samples!(parsed, text, families, hists, PrometheusValue);
    prop_assert_eq!(
        seen,
        counters.len() + gauges.len() + hists.len(),
        "{}",
        text
    );

    // OpenMetrics.
    let om = render(&fams, Format::OpenMetrics);
    if fams.iter().all(|f| f.series.is_empty()) {
        // Legal (`metricset = *metricfamily`), but openmetrics-parser
        // wants at least one family; the agent always has some.
        prop_assert_eq!(om, "# EOF\n");
        return Ok(());
    }
    let parsed = parse_openmetrics(&om)
        .map_err(|err| TestCaseError::fail(format!("OpenMetrics does not parse: {err:?}\n{om}")))?;
    let families = [
        ("fuzz_requests", &counters),
        ("fuzz_level", &gauges),
        ("fuzz_latency_seconds", &hist_expected),
    ];
    let seen = check_samples!(parsed, om, families, hists, OpenMetricsValue);
    prop_assert_eq!(seen, counters.len() + gauges.len() + hists.len(), "{}", om);
    Ok(())
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn prometheus_round_trip(e in exposition(false)) {
        check_round_trip(&e)?;
    }
}

/// `promtool check metrics` (Prometheus's own parser plus its lint rules)
/// on a few hundred generated cases rendered as one exposition.
#[test]
fn promtool_accepts_generated_expositions() {
    if !common::require(common::have("promtool"), "promtool not installed") {
        return;
    }
    let n = cases(300).min(5000) as usize;
    let mut runner = TestRunner::deterministic();
    let strategy = exposition(true);
    let generated: Vec<Exposition> = (0..n)
        .map(|_| strategy.new_tree(&mut runner).expect("generate").current())
        .collect();
    let with_cr = generated
        .iter()
        .flat_map(|e| {
            e.counters
                .iter()
                .chain(&e.gauges)
                .map(|(l, _)| l)
                .chain(e.histograms.iter().map(|(l, _, _)| l))
        })
        .flatten()
        .filter(|v| v.contains('\r'))
        .count();
    assert!(n < 100 || with_cr > 0, "the batch should hold raw CRs");
    let merged = merge(&generated);
    let text = render(&merged, Format::Text);
    if promtool(&text).is_ok() {
        return;
    }
    // Find the first failing case for a readable report.
    for (i, e) in generated.iter().enumerate() {
        let text = render(&families(e, ""), Format::Text);
        if let Err(out) = promtool(&text) {
            panic!("promtool rejects case {i}: {out}\ncase: {e:?}\nexposition:\n{text}");
        }
    }
    panic!("promtool rejects the merged exposition but no single case");
}

/// A raw CR in a label value is emitted as is (the formats have no escape
/// for it) and Prometheus's parser accepts it.
#[test]
fn carriage_return_stays_raw() {
    let e = Exposition {
        counters: vec![(["a\rb".into(), "\r".into()], 1.0)],
        gauges: vec![],
        histograms: vec![],
    };
    let text = render(&families(&e, ""), Format::Text);
    assert!(text.contains("process=\"a\rb\",dst_ip=\"\r\""), "{text:?}");
    if common::require(common::have("promtool"), "promtool not installed") {
        promtool(&text).unwrap_or_else(|out| panic!("promtool: {out}\n{text:?}"));
    }
}

/// One set of families holding every case's series (ids `<case>-<n>`).
fn merge(cases: &[Exposition]) -> Vec<Family> {
    let mut merged = families(&cases[0], "0-");
    for (i, e) in cases.iter().enumerate().skip(1) {
        for (into, from) in merged.iter_mut().zip(families(e, &format!("{i}-"))) {
            into.series.extend(from.series);
        }
    }
    merged
}

fn promtool(text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
