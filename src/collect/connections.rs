//! The MNA-compatible connection metrics: `netagent_connect_total`,
//! `netagent_edge_total` and `netagent_tx_duration_seconds`.

use std::collections::BTreeMap;

use super::histograms::add_hist;
use super::labels::{KeyLabels, Labeler};
use crate::collect::KernelSnapshot;
use crate::kernel::abi::{FlowStats, Hist, HistKind};
use crate::metrics::catalog;
use crate::metrics::{histogram_family, scalar_family, Family, Labels};

/// A snapshot with every flow key resolved to labels once.
pub struct Resolved<'s> {
    pub flows: Vec<(KeyLabels, &'s FlowStats)>,
    pub hists: Vec<(KeyLabels, HistKind, &'s Hist)>,
}

/// Resolves labels; keys of processes that are not targets are dropped.
pub fn resolve<'s>(snap: &'s KernelSnapshot, labeler: &mut Labeler) -> Resolved<'s> {
    Resolved {
        flows: snap
            .flows
            .iter()
            .filter_map(|(k, v)| Some((labeler.key(k)?, v)))
            .collect(),
        hists: snap
            .hists
            .iter()
            .filter_map(|(k, h)| Some((labeler.key(k)?, HistKind::from_u8(k.hist)?, h)))
            .collect(),
    }
}

fn edge_labels(l: &KeyLabels) -> Labels {
    vec![
        ("process", l.process.clone()),
        ("proto", l.proto.to_string()),
        ("dport", l.dport.clone()),
        ("dst_ip", l.dst_ip.clone()),
        ("actual_dst_ip", l.actual_dst_ip.clone()),
        ("actual_dport", l.actual_dport.clone()),
        ("dst_name", l.dst_name.clone()),
    ]
}

/// Builds the three families. Series are sorted by labels so successive
/// scrapes list them in the same order.
pub fn families(r: &Resolved) -> Vec<Family> {
    let mut per_port: BTreeMap<Labels, f64> = BTreeMap::new();
    let mut edges: BTreeMap<Labels, f64> = BTreeMap::new();
    for (l, s) in &r.flows {
        if s.connects == 0 {
            continue;
        }
        let n = s.connects as f64;
        *edges.entry(edge_labels(l)).or_default() += n;
        let port = vec![
            ("process", l.process.clone()),
            ("proto", l.proto.to_string()),
            ("dport", l.dport.clone()),
        ];
        *per_port.entry(port).or_default() += n;
    }
    let mut tx = BTreeMap::new();
    for (l, kind, h) in &r.hists {
        if *kind == HistKind::Tx {
            add_hist(&mut tx, edge_labels(l), *kind, h);
        }
    }
    vec![
        scalar_family(&catalog::CONNECT, per_port),
        scalar_family(&catalog::EDGE, edges),
        histogram_family(&catalog::TX_DURATION_SECONDS, tx),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::labels::{HostOnly, ProcessNames};
    use crate::kernel::abi::{comm_bytes, FlowKey, IPPROTO_TCP, IPPROTO_UDP};
    use crate::metrics::Value;
    use std::net::Ipv6Addr;

    pub(crate) fn key(comm: &str, addr: [u8; 16], dport: u16, proto: u8) -> FlowKey {
        FlowKey {
            comm: comm_bytes(comm),
            daddr: addr,
            nat_daddr: [0; 16],
            cgroup_id: 0,
            dport,
            nat_dport: 0,
            proto,
            direction: 0,
            hist: 0,
            _pad: 0,
        }
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        std::net::Ipv4Addr::from(a).to_ipv6_mapped().octets()
    }

    fn connects(n: u64) -> FlowStats {
        FlowStats {
            connects: n,
            ..Default::default()
        }
    }

    #[test]
    fn connect_total_sums_edges_per_port_and_filters_non_targets() {
        let snap = KernelSnapshot {
            flows: vec![
                (key("curl", v4([10, 0, 0, 1]), 80, IPPROTO_TCP), connects(2)),
                (key("curl", v4([10, 0, 0, 2]), 80, IPPROTO_TCP), connects(3)),
                (
                    key("curl", Ipv6Addr::LOCALHOST.octets(), 53, IPPROTO_UDP),
                    connects(4),
                ),
                (
                    key("other", v4([10, 0, 0, 1]), 80, IPPROTO_TCP),
                    connects(9),
                ),
            ],
            ..Default::default()
        };
        let names = ProcessNames::targets([("curl", "web-client")]);
        let mut none = HostOnly;
        let mut labeler = Labeler::new(&names, &mut none);
        let fams = families(&resolve(&snap, &mut labeler));
        let connect = &fams[0];
        assert_eq!(connect.series.len(), 2);
        assert_eq!(
            connect.series[0].labels,
            vec![
                ("process", "web-client".to_string()),
                ("proto", "tcp".to_string()),
                ("dport", "80".to_string())
            ]
        );
        assert_eq!(connect.series[0].value, Value::Counter(5.0));
        assert_eq!(connect.series[1].value, Value::Counter(4.0));
        assert_eq!(fams[1].series.len(), 3);
        assert!(fams[1].series.iter().any(|s| s.labels[3].1 == "::1"));
    }

    #[test]
    fn histogram_converts_ns_to_seconds() {
        let mut h = Hist {
            sum_ns: 40_000_000,
            ..Default::default()
        };
        h.buckets[7] = 2;
        let mut k = key("curl", v4([127, 0, 0, 1]), 8080, IPPROTO_TCP);
        k.hist = HistKind::Tx as u8;
        let snap = KernelSnapshot {
            hists: vec![(k, h)],
            ..Default::default()
        };
        let names = ProcessNames::by_comm();
        let mut none = HostOnly;
        let mut labeler = Labeler::new(&names, &mut none);
        let fams = families(&resolve(&snap, &mut labeler));
        let Value::Histogram(got) = &fams[2].series[0].value else {
            panic!("not a histogram")
        };
        assert_eq!(got.count(), 2);
        assert!((got.sum - 0.04).abs() < 1e-12);
        assert_eq!(fams[2].series[0].labels[0].1, "curl");
    }
}
