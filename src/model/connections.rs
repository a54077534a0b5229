//! Connection metrics: `netagent_connect_total`, `netagent_edge_total` and
//! `netagent_tx_duration_seconds`, labelled by process, proto, port, peer.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};

use super::{Family, Histogram, Kind, Value, TX_DURATION_BOUNDS};
use crate::collect::KernelSnapshot;
use crate::kernel::abi::{comm_bytes, comm_str, FlowKey, COMM_LEN, IPPROTO_TCP, IPPROTO_UDP};

/// Maps a socket owner's kernel comm to the `process` label.
#[derive(Debug, Clone, Default)]
pub struct ProcessNames {
    /// comm -> configured target name; empty means "label by comm".
    by_comm: HashMap<[u8; COMM_LEN], String>,
}

impl ProcessNames {
    /// Every process, labelled by its comm.
    pub fn by_comm() -> Self {
        Self::default()
    }

    /// Configured targets: (kernel comm, label).
    pub fn targets<'a>(targets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            by_comm: targets
                .into_iter()
                .map(|(comm, name)| (comm_bytes(comm), name.to_string()))
                .collect(),
        }
    }

    /// The label for a comm; None for a comm that is not a target (the
    /// kernel already filters those, this is a second guard).
    pub fn label(&self, comm: &[u8; COMM_LEN]) -> Option<String> {
        if self.by_comm.is_empty() {
            return Some(comm_str(comm));
        }
        self.by_comm.get(comm).cloned()
    }
}

/// `dst_ip` label: IPv4-mapped IPv6 is shown as IPv4.
pub fn format_addr(bytes: [u8; 16]) -> String {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4).to_string(),
        None => v6.to_string(),
    }
}

fn proto_name(proto: u8) -> String {
    match proto {
        IPPROTO_TCP => "tcp".into(),
        IPPROTO_UDP => "udp".into(),
        other => other.to_string(),
    }
}

/// Label values of one flow key, or None when the owner is not a target.
struct FlowLabels {
    process: String,
    proto: String,
    dport: String,
    dst_ip: String,
}

impl FlowLabels {
    fn of(key: &FlowKey, names: &ProcessNames) -> Option<Self> {
        Some(Self {
            process: names.label(&key.comm)?,
            proto: proto_name(key.proto),
            dport: key.dport.to_string(),
            dst_ip: format_addr(key.daddr),
        })
    }

    fn with_dst(&self) -> Vec<(&'static str, String)> {
        vec![
            ("process", self.process.clone()),
            ("proto", self.proto.clone()),
            ("dport", self.dport.clone()),
            ("dst_ip", self.dst_ip.clone()),
        ]
    }
}

/// Builds the three connection families from a kernel snapshot. Series are
/// sorted by labels so successive scrapes list them in the same order.
pub fn families(snap: &KernelSnapshot, names: &ProcessNames) -> Vec<Family> {
    let mut per_port: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    let mut edges: BTreeMap<Vec<(&'static str, String)>, u64> = BTreeMap::new();
    for (key, count) in &snap.flows {
        let Some(l) = FlowLabels::of(key, names) else {
            continue;
        };
        *edges.entry(l.with_dst()).or_default() += count;
        *per_port.entry((l.process, l.proto, l.dport)).or_default() += count;
    }

    let mut connect = Family::new(
        "netagent_connect",
        "TCP connect attempts and UDP datagrams sent, per process and destination port.",
        Kind::Counter,
    );
    for ((process, proto, dport), n) in per_port {
        connect.push(
            vec![("process", process), ("proto", proto), ("dport", dport)],
            Value::Counter(n as f64),
        );
    }

    let mut edge = Family::new(
        "netagent_edge",
        "TCP connect attempts and UDP datagrams sent, per process and destination address and port.",
        Kind::Counter,
    );
    for (labels, n) in edges {
        edge.push(labels, Value::Counter(n as f64));
    }

    let mut hists: BTreeMap<Vec<(&'static str, String)>, Histogram> = BTreeMap::new();
    for (key, h) in &snap.durations {
        let Some(l) = FlowLabels::of(key, names) else {
            continue;
        };
        let entry = hists.entry(l.with_dst()).or_insert_with(|| Histogram {
            bounds: &TX_DURATION_BOUNDS,
            buckets: vec![0; TX_DURATION_BOUNDS.len() + 1],
            sum: 0.0,
        });
        for (t, b) in entry.buckets.iter_mut().zip(h.buckets.iter()) {
            *t += b;
        }
        entry.sum += h.sum_ns as f64 / 1e9;
    }
    let mut duration = Family::new(
        "netagent_tx_duration_seconds",
        "Time on one socket from a send to the first receive after it (request to response).",
        Kind::Histogram,
    );
    for (labels, h) in hists {
        duration.push(labels, Value::Histogram(h));
    }

    vec![connect, edge, duration]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::abi::{Hist, HIST_BOUNDS};

    fn key(comm: &str, addr: [u8; 16], dport: u16, proto: u8) -> FlowKey {
        FlowKey {
            comm: comm_bytes(comm),
            daddr: addr,
            dport,
            proto,
            _pad: 0,
        }
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[10] = 0xff;
        b[11] = 0xff;
        b[12..].copy_from_slice(&a);
        b
    }

    #[test]
    fn addresses_render_v4_mapped_as_v4() {
        assert_eq!(format_addr(v4([127, 0, 0, 1])), "127.0.0.1");
        assert_eq!(format_addr(Ipv6Addr::LOCALHOST.octets()), "::1");
    }

    #[test]
    fn connect_total_sums_edges_per_port_and_filters_non_targets() {
        let snap = KernelSnapshot {
            flows: vec![
                (key("curl", v4([10, 0, 0, 1]), 80, IPPROTO_TCP), 2),
                (key("curl", v4([10, 0, 0, 2]), 80, IPPROTO_TCP), 3),
                (
                    key("curl", Ipv6Addr::LOCALHOST.octets(), 53, IPPROTO_UDP),
                    4,
                ),
                (key("other", v4([10, 0, 0, 1]), 80, IPPROTO_TCP), 9),
            ],
            ..Default::default()
        };
        let names = ProcessNames::targets([("curl", "web-client")]);
        let fams = families(&snap, &names);
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
            buckets: [0; HIST_BOUNDS + 1],
            sum_ns: 40_000_000,
        };
        h.buckets[7] = 2;
        let snap = KernelSnapshot {
            durations: vec![(key("curl", v4([127, 0, 0, 1]), 8080, IPPROTO_TCP), h)],
            ..Default::default()
        };
        let fams = families(&snap, &ProcessNames::by_comm());
        let Value::Histogram(got) = &fams[2].series[0].value else {
            panic!("not a histogram")
        };
        assert_eq!(got.count(), 2);
        assert!((got.sum - 0.04).abs() < 1e-12);
        assert_eq!(fams[2].series[0].labels[0].1, "curl");
    }
}
