//! NAT resolved in the kernel: a "node" namespace DNATs a virtual service
//! address (as kube-proxy does for a ClusterIP) to a server in a third
//! namespace, and edges carry both the dialled (`dst_ip`, `dport`) and the
//! real destination (`actual_dst_ip`, `actual_dport`), with exact counts.
//!
//! Topology (tests/common/netns): `a` = client pod, `b` = node (routes and
//! DNATs in prerouting and output), `c` = server pod behind `b`.

mod common;
use common::netns::{cleanup_stale, testgen_in, NetnsPair, NsServer};
use common::*;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The virtual service addresses: routed from `a` to `b`, owned by nobody.
const VIP: Ipv4Addr = Ipv4Addr::new(10, 203, 255, 253);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x203, 0xffff, 0, 0, 0, 0, 0x10);
const VPORT: u16 = 8080;
const VPORT_UDP: u16 = 5353;

fn client() -> &'static str {
    static C: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    C.get_or_init(|| unique_comm("natcli"))
}

fn server() -> &'static str {
    static S: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    S.get_or_init(|| unique_comm("natsrv"))
}

/// The node: the pair plus the leg, the server in the leg, DNAT rules in
/// `b` for both hooks (pods' packets: prerouting; the node's own: output).
struct Cluster {
    net: NetnsPair,
    srv: NsServer,
}

impl Cluster {
    fn new(tag: &str) -> Cluster {
        let mut net = NetnsPair::new(tag);
        let leg_ns = net.add_leg(tag).ns.clone();
        let srv = NsServer::start(
            &net,
            &leg_ns,
            server(),
            &["--tcp4", "0", "--tcp6", "0", "--udp4", "0"],
        );
        let (c4, c6) = (net.ip4(&leg_ns), net.ip6(&leg_ns));
        let (t4, t6, u4) = (srv.port("tcp4"), srv.port("tcp6"), srv.port("udp4"));
        let rules4 = format!(
            "ip daddr {VIP} tcp dport {VPORT} dnat to {c4}:{t4}\n\
             ip daddr {VIP} udp dport {VPORT_UDP} dnat to {c4}:{u4}\n"
        );
        let rules6 = format!("ip6 daddr {VIP6} tcp dport {VPORT} dnat to [{c6}]:{t6}\n");
        net.nft(
            &net.b,
            &format!(
                "table ip natagent_test {{\n\
                 chain pre {{ type nat hook prerouting priority -100;\n{rules4}}}\n\
                 chain out {{ type nat hook output priority -100;\n{rules4}}}\n}}\n\
                 table ip6 natagent_test6 {{\n\
                 chain pre {{ type nat hook prerouting priority -100;\n{rules6}}}\n\
                 chain out {{ type nat hook output priority -100;\n{rules6}}}\n}}\n"
            ),
        );
        // The pod reaches the service addresses through the node.
        let (b4, b6) = (net.b_ip.to_string(), net.b_ip6.to_string());
        net.exec(
            &net.a,
            &["ip", "route", "add", &format!("{VIP}/32"), "via", &b4],
        );
        net.exec(
            &net.a,
            &[
                "ip",
                "-6",
                "route",
                "add",
                &format!("{VIP6}/128"),
                "via",
                &b6,
            ],
        );
        // The node needs a route to the service address at all (a default
        // route on a real node): output DNAT runs after the route lookup.
        let b_dev = net.c.as_ref().expect("leg").b_dev.clone();
        net.exec(
            &net.b,
            &["ip", "route", "add", &format!("{VIP}/32"), "dev", &b_dev],
        );
        Cluster { net, srv }
    }

    fn leg(&self) -> &str {
        &self.net.c.as_ref().expect("leg").ns
    }

    /// Runs the client in `ns`; panics unless it exits 0.
    fn client(&self, ns: &str, args: &[&str]) -> serde_json::Value {
        let (code, out) = testgen_in(&self.net, ns, client(), args);
        assert_eq!(code, 0, "client {args:?} in {ns}: {out}");
        out
    }

    /// `client <proto> <addr> <count> <n>` in `ns`, e.g. TCP connects
    /// (`--tcp4`, `--connects`) or UDP sends (`--udp4`, `--sends`).
    fn traffic(&self, ns: &str, proto: &str, addr: &str, count: &str, n: u32) {
        self.client(ns, &["client", proto, addr, count, &n.to_string()]);
    }
}

fn edge(m: &Metrics, proto: &str, dst: &str, dport: u16, actual: Option<(String, u16)>) -> f64 {
    let (ip, port) = actual.map_or((String::new(), String::new()), |(i, p)| (i, p.to_string()));
    m.get(
        "netagent_edge_total",
        &[
            ("process", "cli"),
            ("proto", proto),
            ("dport", &dport.to_string()),
            ("dst_ip", dst),
            ("actual_dst_ip", &ip),
            ("actual_dport", &port),
        ],
    )
}

fn no_nat_losses(m: &Metrics) {
    assert_eq!(
        m.get("netagent_events_lost_total", &[("reason", "nat_unmatched")]),
        0.0,
        "{:?}",
        m.series("netagent_events_lost_total")
    );
}

#[test]
fn a_pods_connections_to_a_service_show_the_pod_behind_it() {
    let _g = serial();
    if !require_bpf() || !common::netns::require_nft() {
        return;
    }
    cleanup_stale();
    let agent = Agent::start(&[("cli", client())]);
    let k = Cluster::new("natpod");
    let (leg, a) = (k.leg().to_string(), k.net.a.clone());
    let (c4, c6) = (k.net.ip4(&leg).to_string(), k.net.ip6(&leg).to_string());
    let (t4, t6, u4) = (k.srv.port("tcp4"), k.srv.port("tcp6"), k.srv.port("udp4"));

    let (n4, n6, x) = (7, 5, 3);
    k.traffic(&a, "--tcp4", &format!("{VIP}:{VPORT}"), "--connects", n4);
    k.traffic(&a, "--tcp6", &format!("[{VIP6}]:{VPORT}"), "--connects", n6);
    // Request/response on one unconnected UDP socket: settled at the reply.
    k.traffic(
        &a,
        "--udp4",
        &format!("{VIP}:{VPORT_UDP}"),
        "--exchanges",
        x,
    );
    // And a pod talking to the server pod directly: nothing translated.
    k.traffic(&a, "--tcp4", &format!("{c4}:{t4}"), "--connects", 2);

    let m = agent.metrics();
    let vip = VIP.to_string();
    let vip6 = VIP6.to_string();
    assert_eq!(
        edge(&m, "tcp", &vip, VPORT, Some((c4.clone(), t4))),
        n4 as f64,
        "{:?}",
        m.series("netagent_edge_total")
    );
    assert_eq!(
        edge(&m, "tcp", &vip6, VPORT, Some((c6.clone(), t6))),
        n6 as f64
    );
    assert_eq!(
        edge(&m, "udp", &vip, VPORT_UDP, Some((c4.clone(), u4))),
        x as f64
    );
    assert_eq!(edge(&m, "tcp", &c4, t4, None), 2.0);
    // Nothing was counted as untranslated for the service.
    assert_eq!(edge(&m, "tcp", &vip, VPORT, None), 0.0);
    assert_eq!(edge(&m, "udp", &vip, VPORT_UDP, None), 0.0);
    assert_eq!(
        m.series("netagent_edge_total").len(),
        4,
        "{:?}",
        m.series("netagent_edge_total")
    );
    // The handshake and request timings carry the same pair.
    let dur = m.get(
        "netagent_tcp_connect_duration_seconds_count",
        &[
            ("process", "cli"),
            ("dport", &VPORT.to_string()),
            ("dst_ip", &vip),
            ("actual_dst_ip", &c4),
            ("actual_dport", &t4.to_string()),
        ],
    );
    assert_eq!(dur, n4 as f64);
    let tx = m.get(
        "netagent_tx_duration_seconds_count",
        &[
            ("process", "cli"),
            ("proto", "udp"),
            ("dport", &VPORT_UDP.to_string()),
            ("dst_ip", &vip),
            ("actual_dst_ip", &c4),
            ("actual_dport", &u4.to_string()),
        ],
    );
    assert_eq!(tx, x as f64);
    no_nat_losses(&m);
}

#[test]
fn the_nodes_own_connections_to_a_service_show_the_pod_behind_it() {
    nodes_own_connections("natnode", "");
}

/// The same through the syscall hooks: the object loaded for untyped
/// hooks, where NAT finds TCP state in the preallocated map and UDP state
/// by socket address (as with every hook on 5.10, whose tracing programs
/// cannot use socket-local storage).
#[test]
fn nat_with_udp_state_by_socket_address() {
    nodes_own_connections(
        "natsys",
        "debug:\n  disable_probes: [\"messages:tracepoint\", \"messages:fexit\", \"messages:kprobe\"]\n",
    );
}

fn nodes_own_connections(tag: &str, extra_yaml: &str) {
    let _g = serial();
    if !require_bpf() || !common::netns::require_nft() {
        return;
    }
    cleanup_stale();
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: cli\n    match_comm: {}\n{extra_yaml}",
        client()
    ));
    let k = Cluster::new(tag);
    let (leg, b) = (k.leg().to_string(), k.net.b.clone());
    let c4 = k.net.ip4(&leg).to_string();
    let (t4, u4) = (k.srv.port("tcp4"), k.srv.port("udp4"));

    // Translated in the client's own namespace (output hook): known at the
    // SYN, so connects that fail later would carry it too.
    let (n, s) = (6, 9);
    k.traffic(&b, "--tcp4", &format!("{VIP}:{VPORT}"), "--connects", n);
    k.traffic(&b, "--udp4", &format!("{VIP}:{VPORT_UDP}"), "--sends", s);
    let m = agent.metrics();
    let vip = VIP.to_string();
    assert_eq!(
        edge(&m, "tcp", &vip, VPORT, Some((c4.clone(), t4))),
        n as f64,
        "{:?}",
        m.series("netagent_edge_total")
    );
    assert_eq!(
        edge(&m, "udp", &vip, VPORT_UDP, Some((c4.clone(), u4))),
        s as f64
    );
    assert_eq!(m.series("netagent_edge_total").len(), 2);
    let sent = m.get(
        "netagent_bytes_sent_total",
        &[
            ("process", "cli"),
            ("proto", "udp"),
            ("dport", &VPORT_UDP.to_string()),
            ("dst_ip", &vip),
            ("actual_dst_ip", &c4),
            ("actual_dport", &u4.to_string()),
            ("direction", "outbound"),
        ],
    );
    assert!(sent > 0.0, "{:?}", m.series("netagent_bytes_sent_total"));
    no_nat_losses(&m);
}

#[test]
fn switched_off_nat_leaves_edges_as_dialled() {
    let _g = serial();
    if !require_bpf() || !common::netns::require_nft() {
        return;
    }
    cleanup_stale();
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: cli\n    match_comm: {}\nnat:\n  enabled: false\n",
        client()
    ));
    let k = Cluster::new("natoff");
    let a = k.net.a.clone();
    k.traffic(&a, "--tcp4", &format!("{VIP}:{VPORT}"), "--connects", 4);
    let m = agent.metrics();
    assert_eq!(edge(&m, "tcp", &VIP.to_string(), VPORT, None), 4.0);
    assert_eq!(m.series("netagent_edge_total").len(), 1);
    let (_, health) = health(agent.port);
    assert!(
        health.to_string().contains("nat.enabled is false"),
        "{health}"
    );
}
