//! The service map served at `/api/v1/graph` (documented in docs/API.md):
//! host processes, containers and peers as nodes, traffic between them as
//! edges with rates, p95 request→response time and errors, plus interface
//! rates. A destination that is a tracked process or container on this
//! host is that process's or container's node, not an address.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::collect::connections::Resolved;
use crate::collect::containers::Identity;
use crate::collect::histograms::add_hist;
use crate::collect::interfaces::InterfaceSnapshot;
use crate::collect::labels::KeyLabels;
use crate::collect::local_listeners::{LocalService, LocalTargets};
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

#[derive(Debug, Serialize, PartialEq, Clone)]
pub struct Node {
    pub id: String,
    /// `process` (on the host), `container` or `peer`.
    pub kind: &'static str,
    pub label: String,
    /// Processes: "" (host); containers: the container's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub runtime: String,
    /// Containers: the `process` labels seen in it.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub processes: BTreeSet<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto: Option<&'static str>,
}

impl Node {
    fn new(id: String, kind: &'static str, label: String) -> Self {
        Self {
            id,
            kind,
            label,
            container: None,
            container_id: String::new(),
            pod: String::new(),
            namespace: String::new(),
            image: String::new(),
            runtime: String::new(),
            processes: BTreeSet::new(),
            proto: None,
        }
    }

    fn peer(id: String, label: String, proto: &'static str) -> Self {
        Self {
            proto: Some(proto),
            ..Self::new(id, "peer", label)
        }
    }

    /// The node of a process: itself on the host, else its container.
    fn owner(process: &str, c: &Identity) -> Self {
        let id = owner_id(process, c);
        if c.id.is_empty() {
            return Self {
                container: Some(String::new()),
                ..Self::new(id, "process", process.to_string())
            };
        }
        Self {
            container: Some(c.name.clone()),
            container_id: c.id.clone(),
            pod: c.pod.clone(),
            namespace: c.namespace.clone(),
            image: c.image.clone(),
            runtime: c.runtime.to_string(),
            ..Self::new(id, "container", c.name.clone())
        }
    }
}

/// `process:<process>` on the host; `container:<namespace>/<pod>/<name>`
/// in Kubernetes, `container:<name>` for other containers.
fn owner_id(process: &str, c: &Identity) -> String {
    if c.id.is_empty() {
        format!("process:{process}")
    } else if c.pod.is_empty() {
        format!("container:{}", c.name)
    } else {
        format!("container:{}/{}/{}", c.namespace, c.pod, c.name)
    }
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
    owner_id(&l.process, &l.identity)
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

/// The local destination of flow `i`, if known.
fn target_of(i: usize, list: &[Option<Arc<LocalService>>]) -> Option<&Arc<LocalService>> {
    list.get(i).and_then(Option::as_ref)
}

/// Adds a process's node, or the process to its container's node.
fn add_owner(nodes: &mut BTreeMap<String, Node>, process: &str, c: &Identity) -> String {
    let node = Node::owner(process, c);
    let id = node.id.clone();
    nodes
        .entry(id.clone())
        .or_insert(node)
        .processes
        .extend((!c.id.is_empty()).then(|| process.to_string()));
    id
}

/// Builds the graph from one resolved snapshot and the local destinations
/// of its flows (same indexes; empty: none known).
pub fn build(
    r: &Resolved,
    local: &LocalTargets,
    ifaces: &InterfaceSnapshot,
    state: &mut RateState,
) -> Graph {
    #[derive(Default)]
    struct Acc {
        count: u64,
        errors: u64,
        sent: u64,
        received: u64,
    }
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut edges: BTreeMap<EdgeKey, Acc> = BTreeMap::new();
    // Connections local callers made to each (node, port): inbound edges
    // from local addresses that these account for are the same traffic.
    let mut local_callers: HashMap<(String, String), u64> = HashMap::new();
    let mut local_inbound: HashMap<(String, String), u64> = HashMap::new();
    for (i, (l, s)) in r.flows.iter().enumerate() {
        if let Some(t) = target_of(i, &local.flows) {
            let key = (owner_id(&t.process, &t.identity), l.dport.clone());
            *local_callers.entry(key).or_default() += s.opened;
        } else if l.direction == "inbound" && l.proto == "tcp" {
            if let Ok(ip) = l.dst_ip.parse() {
                if local.is_local(ip) {
                    let key = (process_id(l), l.dport.clone());
                    *local_inbound.entry(key).or_default() += s.opened;
                }
            }
        }
    }
    for (i, (l, s)) in r.flows.iter().enumerate() {
        let inbound = l.direction == "inbound";
        let process = add_owner(&mut nodes, &l.process, &l.identity);
        let peer = if let Some(t) = target_of(i, &local.flows) {
            add_owner(&mut nodes, &t.process, &t.identity)
        } else {
            if inbound && l.proto == "tcp" {
                let key = (process.clone(), l.dport.clone());
                let local_ip = l.dst_ip.parse().is_ok_and(|ip| local.is_local(ip));
                let callers = local_callers.get(&key).copied().unwrap_or(0);
                if local_ip && callers > 0 && callers >= local_inbound[&key] {
                    continue; // drawn from the callers' side
                }
            }
            let (peer, label) = if inbound {
                (format!("peer:{}/{}", l.proto, l.dst_ip), l.dst_ip.clone())
            } else {
                let hp = host_port(&l.dst_ip, &l.dport);
                (format!("peer:{}/{hp}", l.proto), hp)
            };
            nodes
                .entry(peer.clone())
                .or_insert_with(|| Node::peer(peer.clone(), label, l.proto));
            peer
        };
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
    for (i, (l, kind, h)) in r.hists.iter().enumerate() {
        if *kind == HistKind::Tx {
            let peer = match target_of(i, &local.hists) {
                Some(t) => owner_id(&t.process, &t.identity),
                None => format!("peer:{}/{}", l.proto, host_port(&l.dst_ip, &l.dport)),
            };
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

    use crate::kernel::abi::FlowStats;

    fn flow(process: &str, c: &Identity, dir: &'static str, ip: &str, port: &str) -> KeyLabels {
        KeyLabels {
            process: process.into(),
            identity: Arc::new(c.clone()),
            cgroup_id: 0,
            proto: "tcp",
            dport: port.into(),
            dst_ip: ip.into(),
            actual_dst_ip: String::new(),
            actual_dport: String::new(),
            direction: dir,
            dst_name: String::new(),
        }
    }

    fn stats(connects: u64, opened: u64, sent: u64) -> FlowStats {
        FlowStats {
            connects,
            opened,
            bytes_sent: sent,
            ..Default::default()
        }
    }

    fn ids(g: &Graph) -> (Vec<&str>, Vec<(&str, &str, u64)>) {
        (
            g.nodes.iter().map(|n| n.id.as_str()).collect(),
            g.edges
                .iter()
                .map(|e| (e.source.as_str(), e.target.as_str(), e.connects_total))
                .collect(),
        )
    }

    #[test]
    fn two_local_processes_are_one_edge_between_their_names() {
        let host = Identity::default();
        let (cli, srv) = (stats(5, 5, 100), stats(0, 5, 40));
        let r = Resolved {
            flows: vec![
                (
                    flow("frontend", &host, "outbound", "127.0.0.1", "18901"),
                    &cli,
                ),
                (flow("websrv", &host, "inbound", "127.0.0.1", "18901"), &srv),
            ],
            hists: vec![],
        };
        let websrv = Arc::new(LocalService {
            process: "websrv".into(),
            identity: Arc::default(),
        });
        let local = LocalTargets {
            flows: vec![Some(websrv), None],
            ..Default::default()
        };
        let g = build(&r, &local, &Default::default(), &mut RateState::default());
        assert_eq!(
            ids(&g),
            (
                vec!["process:frontend", "process:websrv"],
                vec![("process:frontend", "process:websrv", 5)]
            )
        );
        assert_eq!(g.edges[0].bytes_sent_total, 100, "the caller's view");

        // Without the local destination: an address each way, as before.
        let g = build(
            &r,
            &Default::default(),
            &Default::default(),
            &mut RateState::default(),
        );
        assert_eq!(
            ids(&g).1,
            vec![
                ("peer:tcp/127.0.0.1", "process:websrv", 5),
                ("process:frontend", "peer:tcp/127.0.0.1:18901", 5),
            ]
        );
    }

    #[test]
    fn inbound_edges_stay_when_local_callers_do_not_account_for_them() {
        let host = Identity::default();
        // 5 accepted from 127.0.0.1, only 2 made by a tracked caller.
        let (cli, srv, remote) = (stats(2, 2, 0), stats(0, 5, 0), stats(0, 3, 0));
        let r = Resolved {
            flows: vec![
                (flow("frontend", &host, "outbound", "127.0.0.1", "80"), &cli),
                (flow("websrv", &host, "inbound", "127.0.0.1", "80"), &srv),
                (
                    flow("websrv", &host, "inbound", "198.51.100.7", "80"),
                    &remote,
                ),
            ],
            hists: vec![],
        };
        let websrv = Arc::new(LocalService {
            process: "websrv".into(),
            identity: Arc::default(),
        });
        let local = LocalTargets {
            flows: vec![Some(websrv), None, None],
            ..Default::default()
        };
        let g = build(&r, &local, &Default::default(), &mut RateState::default());
        assert_eq!(
            ids(&g).1,
            vec![
                ("peer:tcp/127.0.0.1", "process:websrv", 5),
                ("peer:tcp/198.51.100.7", "process:websrv", 3),
                ("process:frontend", "process:websrv", 2),
            ]
        );
    }

    #[test]
    fn processes_in_containers_are_their_container_or_pod() {
        let web = Identity {
            id: "ab".repeat(32),
            name: "web".into(),
            runtime: "docker",
            image: "nginx:1".into(),
            ..Default::default()
        };
        let api = Identity {
            id: "cd".repeat(32),
            name: "api".into(),
            pod: "api-7d9f".into(),
            namespace: "shop".into(),
            runtime: "containerd",
            ..Default::default()
        };
        let s = stats(1, 1, 0);
        let r = Resolved {
            flows: vec![
                (flow("nginx", &web, "outbound", "10.0.0.9", "443"), &s),
                (flow("sh", &web, "outbound", "10.0.0.9", "443"), &s),
                (flow("api", &api, "outbound", "10.0.0.9", "443"), &s),
            ],
            hists: vec![],
        };
        let g = build(
            &r,
            &Default::default(),
            &Default::default(),
            &mut RateState::default(),
        );
        let (nodes, edges) = ids(&g);
        assert_eq!(
            nodes,
            vec![
                "container:shop/api-7d9f/api",
                "container:web",
                "peer:tcp/10.0.0.9:443"
            ]
        );
        assert_eq!(edges[1], ("container:web", "peer:tcp/10.0.0.9:443", 2));
        let json = serde_json::to_value(&g.nodes[1]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": "container:web", "kind": "container", "label": "web",
                "container": "web", "container_id": "ab".repeat(32), "image": "nginx:1",
                "runtime": "docker", "processes": ["nginx", "sh"]})
        );
        let json = serde_json::to_value(&g.nodes[0]).unwrap();
        assert_eq!(json["pod"], "api-7d9f");
        assert_eq!(json["namespace"], "shop");
    }
}
