//! The service map served at `/api/v1/graph` (documented in docs/API.md):
//! processes and peers as nodes, traffic between them as edges with rates,
//! p95 request→response time and errors, plus interface rates.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::collect::connections::Resolved;
use crate::collect::histograms::add_hist;
use crate::collect::interfaces::InterfaceSnapshot;
use crate::collect::labels::KeyLabels;
use crate::kernel::abi::HistKind;
use crate::metrics::Histogram;

#[derive(Debug, Serialize, PartialEq)]
pub struct Graph {
    pub generated_at: f64,
    pub interval_seconds: f64,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub interfaces: Vec<InterfaceRates>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Node {
    pub id: String,
    /// `process` or `peer`.
    pub kind: &'static str,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto: Option<&'static str>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Edge {
    pub source: String,
    pub target: String,
    /// Outbound: connect attempts (TCP) or datagrams (UDP). Inbound:
    /// connections accepted (TCP) or datagrams answered (UDP).
    pub connects_total: u64,
    pub rate_per_second: f64,
    pub p95_seconds: Option<f64>,
    /// Failed connects plus resets.
    pub errors_total: u64,
    pub bytes_sent_total: u64,
    pub bytes_received_total: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct InterfaceRates {
    pub name: String,
    pub ifindex: u32,
    pub active: bool,
    pub rx_packets_per_second: f64,
    pub tx_packets_per_second: f64,
    pub rx_bytes_per_second: f64,
    pub tx_bytes_per_second: f64,
}

/// (source, target) node ids of an edge.
type EdgeKey = (String, String);

/// Edge totals of the previous call, for rates between calls.
#[derive(Debug, Default)]
pub struct RateState {
    previous: Option<(Instant, HashMap<EdgeKey, u64>)>,
    rates: HashMap<EdgeKey, f64>,
    interval: f64,
}

/// Calls closer together than this reuse the previous rates.
const MIN_RATE_WINDOW: f64 = 1.0;

fn process_id(l: &KeyLabels) -> String {
    format!("process:{}", l.process)
}

fn host_port(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// p95 of a histogram, interpolated inside its bucket like PromQL's
/// histogram_quantile; None without observations.
pub fn quantile(h: &Histogram, q: f64) -> Option<f64> {
    let total = h.count();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, n) in h.buckets.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        if (seen + n) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { h.bounds[i - 1] };
            let Some(&upper) = h.bounds.get(i) else {
                return h.bounds.last().copied(); // +Inf bucket: its lower bound
            };
            let within = (rank - seen as f64) / *n as f64;
            return Some(lower + (upper - lower) * within);
        }
        seen += n;
    }
    None
}

/// Builds the graph from one resolved snapshot.
pub fn build(r: &Resolved, ifaces: &InterfaceSnapshot, state: &mut RateState) -> Graph {
    #[derive(Default)]
    struct Acc {
        count: u64,
        errors: u64,
        sent: u64,
        received: u64,
    }
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut edges: BTreeMap<EdgeKey, Acc> = BTreeMap::new();
    for (l, s) in &r.flows {
        let process = process_id(l);
        nodes.entry(process.clone()).or_insert_with(|| Node {
            id: process.clone(),
            kind: "process",
            label: l.process.clone(),
            container: Some(l.identity.name.clone()),
            proto: None,
        });
        let inbound = l.direction == "inbound";
        let (peer, label) = if inbound {
            (format!("peer:{}/{}", l.proto, l.dst_ip), l.dst_ip.clone())
        } else {
            let hp = host_port(&l.dst_ip, &l.dport);
            (format!("peer:{}/{hp}", l.proto), hp)
        };
        nodes.entry(peer.clone()).or_insert_with(|| Node {
            id: peer.clone(),
            kind: "peer",
            label,
            container: None,
            proto: Some(l.proto),
        });
        let key = if inbound {
            (peer, process)
        } else {
            (process, peer)
        };
        let e = edges.entry(key).or_default();
        e.count += if inbound && l.proto == "tcp" {
            s.opened
        } else {
            s.connects
        };
        e.errors += s.failed.iter().sum::<u64>() + s.resets_sent + s.resets_received;
        e.sent += s.bytes_sent;
        e.received += s.bytes_received;
    }
    let mut tx: BTreeMap<crate::metrics::Labels, Histogram> = BTreeMap::new();
    for (l, kind, h) in &r.hists {
        if *kind == HistKind::Tx {
            let peer = format!("peer:{}/{}", l.proto, host_port(&l.dst_ip, &l.dport));
            add_hist(&mut tx, vec![("s", process_id(l)), ("t", peer)], *kind, h);
        }
    }

    let now = Instant::now();
    let totals: HashMap<EdgeKey, u64> = edges.iter().map(|(k, a)| (k.clone(), a.count)).collect();
    match &state.previous {
        Some((at, _)) if now.duration_since(*at).as_secs_f64() < MIN_RATE_WINDOW => {}
        Some((at, prev)) => {
            let dt = now.duration_since(*at).as_secs_f64();
            state.rates = totals
                .iter()
                .map(|(k, v)| {
                    let before = prev.get(k).copied().unwrap_or(0);
                    (k.clone(), v.saturating_sub(before) as f64 / dt)
                })
                .collect();
            state.interval = dt;
            state.previous = Some((now, totals));
        }
        None => state.previous = Some((now, totals)),
    }

    let edges = edges
        .into_iter()
        .map(|((source, target), a)| {
            let p95 = tx
                .get(&vec![("s", source.clone()), ("t", target.clone())])
                .and_then(|h| quantile(h, 0.95));
            let rate = state
                .rates
                .get(&(source.clone(), target.clone()))
                .copied()
                .unwrap_or(0.0);
            Edge {
                source,
                target,
                connects_total: a.count,
                rate_per_second: rate,
                p95_seconds: p95,
                errors_total: a.errors,
                bytes_sent_total: a.sent,
                bytes_received_total: a.received,
            }
        })
        .collect();
    Graph {
        generated_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        interval_seconds: state.interval,
        nodes: nodes.into_values().collect(),
        edges,
        interfaces: ifaces
            .interfaces
            .iter()
            .map(|s| InterfaceRates {
                name: s.name.clone(),
                ifindex: s.ifindex,
                active: s.active,
                rx_packets_per_second: s.ingress_pps,
                tx_packets_per_second: s.egress_pps,
                rx_bytes_per_second: s.ingress_bps,
                tx_bytes_per_second: s.egress_bps,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::histograms::LATENCY_BOUNDS;

    #[test]
    fn quantile_interpolates_like_promql() {
        let mut buckets = vec![0; 17];
        buckets[7] = 10; // (0.01, 0.025]
        let h = Histogram {
            bounds: &LATENCY_BOUNDS,
            buckets,
            sum: 0.2,
        };
        let p95 = quantile(&h, 0.95).unwrap();
        assert!((p95 - (0.01 + 0.015 * 0.95)).abs() < 1e-12, "{p95}");
        let empty = Histogram {
            bounds: &LATENCY_BOUNDS,
            buckets: vec![0; 17],
            sum: 0.0,
        };
        assert_eq!(quantile(&empty, 0.95), None);
    }

    #[test]
    fn ipv6_peers_get_brackets() {
        assert_eq!(host_port("::1", "80"), "[::1]:80");
        assert_eq!(host_port("10.0.0.1", "80"), "10.0.0.1:80");
    }
}
