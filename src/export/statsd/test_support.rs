//! Test helpers shared by the exporter's unit tests: a receiving socket,
//! a strict DogStatsD line parser, and family and span builders.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;

use super::{StatsdConfig, StatsdExporter};
use crate::metrics::{Family, Kind, Value};
use crate::model::spans::{FlowSpan, SpanSide};
use crate::test_support::TempDir;

/// A UDP receiver on 127.0.0.1 and an exporter pointed at it.
pub(super) fn udp_pair(tweak: impl FnOnce(&mut StatsdConfig)) -> (UdpSocket, StatsdExporter) {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    rx.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    let mut cfg = StatsdConfig {
        enabled: true,
        address: rx.local_addr().expect("local addr").to_string(),
        ..StatsdConfig::default()
    };
    tweak(&mut cfg);
    let exporter = StatsdExporter::new(&cfg).expect("exporter");
    (rx, exporter)
}

/// Receives datagrams until `lines` lines arrived; returns the
/// datagrams. Fails (rather than hangs) after the read timeout.
pub(super) fn recv_lines(rx: &UdpSocket, lines: usize) -> Vec<String> {
    let mut datagrams = Vec::new();
    let mut got = 0;
    let mut buf = vec![0u8; 70_000];
    while got < lines {
        let n = rx.recv(&mut buf).expect("datagram before timeout");
        let text = String::from_utf8(buf[..n].to_vec()).expect("UTF-8 datagram");
        got += text.lines().count();
        datagrams.push(text);
    }
    assert_eq!(got, lines, "more lines than reported sent");
    datagrams
}

/// Asserts that nothing more arrives within a short wait.
pub(super) fn assert_quiet(rx: &UdpSocket) {
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let mut buf = [0u8; 2048];
    if let Ok(n) = rx.recv(&mut buf) {
        panic!(
            "unexpected datagram: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    rx.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
}

/// One parsed DogStatsD line.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Line {
    pub(super) name: String,
    pub(super) value: f64,
    pub(super) kind: String,
    pub(super) tags: Vec<String>,
}

/// Parses `<name>:<value>|<type>[|#k:v,...]` strictly: name chars,
/// a float value, a known type, tags as `k:v` without separators.
pub(super) fn parse_line(line: &str) -> Line {
    let (name, rest) = line.split_once(':').expect("name:value");
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'),
        "bad name in {line:?}"
    );
    let mut fields = rest.split('|');
    let value: f64 = fields
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad value in {line:?}"));
    let kind = fields.next().expect("type").to_string();
    assert!(matches!(kind.as_str(), "c" | "g" | "d"), "type in {line:?}");
    let tags = match fields.next() {
        None => Vec::new(),
        Some(t) => {
            let t = t.strip_prefix('#').expect("tags start with #");
            t.split(',')
                .map(|tag| {
                    let (k, _v) = tag.split_once(':').expect("tag is k:v");
                    assert!(!k.is_empty(), "empty tag key in {line:?}");
                    tag.to_string()
                })
                .collect()
        }
    };
    assert!(fields.next().is_none(), "extra fields in {line:?}");
    Line {
        name: name.to_string(),
        value,
        kind,
        tags,
    }
}

pub(super) fn parse_all(datagrams: &[String]) -> Vec<Line> {
    datagrams
        .iter()
        .flat_map(|d| d.lines())
        .map(parse_line)
        .collect()
}

pub(super) fn counter(name: &'static str, series: &[(&str, f64)]) -> Family {
    let mut f = Family::ad_hoc(name, "help", Kind::Counter);
    for (comm, v) in series {
        f.push(vec![("comm", comm.to_string())], Value::Counter(*v));
    }
    f
}

pub(super) fn gauge(name: &'static str, series: &[(&str, f64)]) -> Family {
    let mut f = Family::ad_hoc(name, "help", Kind::Gauge);
    for (comm, v) in series {
        f.push(vec![("comm", comm.to_string())], Value::Gauge(*v));
    }
    f
}

/// Lines keyed by `name|tags`, for order-independent comparisons.
pub(super) fn by_series(lines: &[Line]) -> BTreeMap<String, (f64, String)> {
    lines
        .iter()
        .map(|l| {
            (
                format!("{}|{}", l.name, l.tags.join(",")),
                (l.value, l.kind.clone()),
            )
        })
        .collect()
}

pub(super) fn span(side: SpanSide, local: &str, peer: &str) -> FlowSpan {
    FlowSpan {
        start_unix_nanos: 1_000,
        end_unix_nanos: 1_000 + 2_500_000,
        process: "my,app".into(),
        comm: "app".into(),
        pid: 1,
        container: Default::default(),
        proto: "tcp",
        side,
        local: local.parse().expect("addr"),
        peer: peer.parse().expect("addr"),
        actual_peer: None,
        socket_id: 7,
        dst_name: String::new(),
    }
}

/// A scratch directory of the exporter's tests (`tag` unique among them).
pub(super) fn scratch(tag: &str) -> TempDir {
    TempDir::new(&format!("statsd-{tag}"))
}

pub(super) fn unix_exporter(path: &std::path::Path) -> StatsdExporter {
    StatsdExporter::new(&StatsdConfig {
        address: format!("unix://{}", path.display()),
        ..StatsdConfig::default()
    })
    .expect("exporter")
}
