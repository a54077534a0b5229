//! The DogStatsD exporter on arbitrary label values, tags and prefixes:
//! every line it sends to a local UDP socket parses as DogStatsD, and
//! every tag is its input with the separators replaced.

use super::corpus::config;
use super::labels::{label_value, labels, same_value, series_labels, LABEL_NAMES};
use netagent::export::statsd::{StatsdConfig, StatsdExporter};
use netagent::metrics::{Family, Kind, Value};
use netagent::model::spans::{FlowSpan, SpanSide};
use proptest::prelude::*;
use std::net::UdpSocket;
use std::time::Duration;

/// What a DogStatsD parser needs: `<name>:<value>|<type>|@<rate>|#<tag>,<tag>`,
/// the name of `[A-Za-z0-9_.]`, a float value, type c/g/d, an optional
/// sample rate in (0, 1], and tags free of the separators `|`, `,`, `#`
/// and line breaks.
#[derive(Debug)]
struct Line {
    name: String,
    value: f64,
    kind: String,
    rate: Option<f64>,
    tags: Vec<String>,
}

fn parse_dogstatsd(line: &str) -> Result<Line, String> {
    let (name, rest) = line.split_once(':').ok_or("no ':'")?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut fields = rest.split('|');
    let value = fields.next().unwrap_or_default();
    let value: f64 = value.parse().map_err(|_| format!("bad value {value:?}"))?;
    if !value.is_finite() {
        return Err(format!("non-finite value {value}"));
    }
    let kind = fields.next().ok_or("no type")?.to_string();
    if !matches!(kind.as_str(), "c" | "g" | "d") {
        return Err(format!("bad type {kind:?}"));
    }
    let mut next = fields.next();
    let mut rate = None;
    if let Some(r) = next.and_then(|f| f.strip_prefix('@')) {
        let r: f64 = r.parse().map_err(|_| format!("bad rate {r:?}"))?;
        if !(r > 0.0 && r <= 1.0) {
            return Err(format!("rate {r} outside (0, 1]"));
        }
        rate = Some(r);
        next = fields.next();
    }
    let tags = match next {
        None => Vec::new(),
        Some(t) => {
            let t = t.strip_prefix('#').ok_or("tags without '#'")?;
            t.split(',').map(str::to_string).collect()
        }
    };
    if fields.next().is_some() {
        return Err("extra field".into());
    }
    for tag in &tags {
        if tag.is_empty() || tag.contains(['#', '\n', '\r']) {
            return Err(format!("bad tag {tag:?}"));
        }
    }
    Ok(Line {
        name: name.to_string(),
        value,
        kind,
        rate,
        tags,
    })
}

/// The sanitiser's contract: same characters, separators replaced by `_`.
fn is_sanitized_form(got: &str, input: &str) -> bool {
    got.chars().count() == input.chars().count()
        && got
            .chars()
            .zip(input.chars())
            .all(|(g, i)| g == i || (g == '_' && matches!(i, ',' | '|' | '#' | '\n' | '\r')))
        && !got.contains([',', '|', '#', '\n', '\r'])
}

#[derive(Debug, Clone)]
struct StatsdCase {
    prefix: String,
    tags: Vec<String>,
    counters: Vec<([String; 2], f64)>,
    gauges: Vec<([String; 2], f64)>,
    span_processes: Vec<String>,
}

fn statsd_case() -> impl Strategy<Value = StatsdCase> {
    (
        prop_oneof![Just("netagent".to_string()), label_value()],
        proptest::collection::vec(label_value(), 0..3),
        proptest::collection::vec((labels(), any::<f64>()), 0..4),
        proptest::collection::vec((labels(), any::<f64>()), 0..4),
        proptest::collection::vec(label_value(), 0..3),
    )
        .prop_map(
            |(prefix, tags, counters, gauges, span_processes)| StatsdCase {
                prefix,
                tags,
                counters,
                gauges,
                span_processes,
            },
        )
}

fn check_statsd(case: &StatsdCase) -> Result<(), TestCaseError> {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut exporter = StatsdExporter::new(&StatsdConfig {
        enabled: true,
        address: rx.local_addr().unwrap().to_string(),
        prefix: case.prefix.clone(),
        tags: case.tags.clone(),
        ..StatsdConfig::default()
    })
    .map_err(|e| TestCaseError::fail(format!("exporter: {e}")))?;
    let global: Vec<&str> = case
        .tags
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .collect();

    let mut counter = Family::ad_hoc("netagent_fuzz_events", "h", Kind::Counter);
    for (i, (l, v)) in case.counters.iter().enumerate() {
        counter.push(series_labels(&i.to_string(), l), Value::Counter(*v));
    }
    let mut gauge = Family::ad_hoc("netagent_fuzz_level", "h", Kind::Gauge);
    for (i, (l, v)) in case.gauges.iter().enumerate() {
        gauge.push(series_labels(&i.to_string(), l), Value::Gauge(*v));
    }
    // First export: every finite non-zero counter and every finite gauge.
    let want = case
        .counters
        .iter()
        .filter(|(_, v)| v.is_finite() && *v != 0.0)
        .count()
        + case.gauges.iter().filter(|(_, v)| v.is_finite()).count();
    let errors_before = exporter.errors();
    let sent = exporter.export(&[counter, gauge]);
    prop_assert_eq!(
        sent as u64 + exporter.errors() - errors_before,
        want as u64,
        "every line sent or counted"
    );
    let mut lines = receive(&rx, sent)?;

    let spans: Vec<FlowSpan> = case
        .span_processes
        .iter()
        .map(|p| FlowSpan {
            start_unix_nanos: 1_000,
            end_unix_nanos: 2_501_000,
            process: p.clone(),
            comm: p.clone(),
            pid: 1,
            container: Default::default(),
            proto: "tcp",
            side: SpanSide::Client,
            local: "10.0.0.1:40000".parse().unwrap(),
            peer: "[fd00::2]:443".parse().unwrap(),
            actual_peer: None,
            socket_id: 7,
            dst_name: String::new(),
        })
        .collect();
    let errors_before = exporter.errors();
    // Spans sent at a sample rate: each line says what it stands for.
    let sent = exporter.observe_spans(&spans, 0.25);
    prop_assert_eq!(
        sent as u64 + exporter.errors() - errors_before,
        spans.len() as u64
    );
    lines.extend(receive(&rx, sent)?);

    for raw in &lines {
        let line = parse_dogstatsd(raw)
            .map_err(|e| TestCaseError::fail(format!("{e} in {raw:?} ({case:?})")))?;
        let own = if line.kind == "d" { 5 } else { 3 };
        prop_assert_eq!(line.tags.len(), own + global.len(), "tags of {:?}", raw);
        let labels: Vec<(&str, &str)> = match (line.kind.as_str(), line.name.rsplit('.').next()) {
            ("d", _) => {
                let p = &case.span_processes;
                // Span lines: process, proto, dport, dst_ip, side.
                let process = line.tags[0].strip_prefix("process:").unwrap_or("?");
                prop_assert!(
                    p.iter().any(|v| is_sanitized_form(process, v)),
                    "process tag {:?} from none of {:?}",
                    process,
                    p
                );
                prop_assert_eq!(
                    &line.tags[1..5],
                    &["proto:tcp", "dport:443", "dst_ip:fd00::2", "side:client"]
                );
                prop_assert!((line.value - 0.0025).abs() < 1e-12);
                prop_assert_eq!(line.rate, Some(0.25));
                Vec::new()
            }
            (kind, Some(metric)) => {
                let (series, metric_name) = if kind == "c" {
                    (&case.counters, "fuzz_events")
                } else {
                    (&case.gauges, "fuzz_level")
                };
                prop_assert_eq!(metric, metric_name);
                prop_assert_eq!(line.rate, None, "counters and gauges are not sampled");
                let id: usize = line.tags[0]
                    .strip_prefix("id:")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| TestCaseError::fail(format!("no id tag: {raw:?}")))?;
                let (l, v) = &series[id];
                prop_assert!(
                    same_value(line.value, *v) || (line.value - v).abs() <= v.abs() * 1e-15
                );
                vec![
                    (LABEL_NAMES[0], l[0].as_str()),
                    (LABEL_NAMES[1], l[1].as_str()),
                ]
            }
            _ => unreachable!("parse_dogstatsd checked the name"),
        };
        for (tag, (key, input)) in line.tags[1..].iter().zip(labels) {
            let value = tag.strip_prefix(&format!("{key}:")).unwrap_or("?");
            prop_assert!(
                is_sanitized_form(value, input),
                "{:?} from {:?}",
                tag,
                input
            );
        }
        for (tag, input) in line.tags[own..].iter().zip(&global) {
            prop_assert!(is_sanitized_form(tag, input), "{:?} from {:?}", tag, input);
        }
    }
    Ok(())
}

/// Receives datagrams until `lines` lines arrived; returns the lines.
fn receive(rx: &UdpSocket, lines: usize) -> Result<Vec<String>, TestCaseError> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while out.len() < lines {
        let n = rx
            .recv(&mut buf)
            .map_err(|e| TestCaseError::fail(format!("datagram missing: {e}")))?;
        let text = std::str::from_utf8(&buf[..n])
            .map_err(|e| TestCaseError::fail(format!("datagram is not UTF-8: {e}")))?;
        out.extend(text.split_terminator('\n').map(str::to_string));
    }
    prop_assert_eq!(out.len(), lines, "more lines than reported sent");
    Ok(out)
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn statsd_lines_always_parse(case in statsd_case()) {
        check_statsd(&case)?;
    }
}
