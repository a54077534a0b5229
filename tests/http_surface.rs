//! The HTTP surface: /health reflecting a probe detached from outside,
//! gzip and OpenMetrics negotiation on /metrics (validated by promtool and
//! the OpenMetrics parser), and the graph API (local destinations by name).

mod common;
use common::*;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

/// GET with headers; returns (status line, headers, raw body bytes).
fn get_raw(port: u16, path: &str, headers: &[(&str, &str)]) -> (String, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let status = head.lines().next().unwrap().to_string();
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

fn gunzip(b: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(b)
        .read_to_string(&mut s)
        .unwrap();
    s
}

#[test]
fn metrics_honour_gzip_and_openmetrics_negotiation() {
    let _g = serial();
    if !require_bpf() || !require(have("promtool"), "promtool not installed") {
        return;
    }
    let agent = Agent::start(&[("cli", "nettest-cli")]);
    let srv = Server::start("nettest-srv", &["--tcp4", "0"]);
    testgen(
        "nettest-cli",
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{}", srv.port("tcp4")),
            "--connects",
            "3",
            "--exchanges",
            "2",
        ],
    );

    let (status, head, body) = get_raw(agent.port, "/metrics", &[("Accept-Encoding", "gzip")]);
    assert!(status.contains("200"), "{status}");
    assert!(
        head.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{head}"
    );
    let text = gunzip(&body);
    assert!(text.contains("netagent_connect_total{process=\"cli\""));
    promtool_check(&text);

    let (_, head, body) = get_raw(
        agent.port,
        "/metrics",
        &[
            ("Accept-Encoding", "gzip"),
            ("Accept", "application/openmetrics-text; version=1.0.0"),
        ],
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let om = gunzip(&body);
    assert!(om.ends_with("# EOF\n"));
    openmetrics_parser::openmetrics::parse_openmetrics(&om).unwrap_or_else(|e| panic!("{e:?}"));

    // Without Accept-Encoding: plain text.
    let (_, head, body) = get_raw(agent.port, "/metrics", &[]);
    assert!(
        !head.to_ascii_lowercase().contains("content-encoding"),
        "{head}"
    );
    promtool_check(&String::from_utf8(body).unwrap());
}

/// The id of the link of program `name` held by process `pid` (found in
/// its /proc/<pid>/fdinfo, so another agent's link is never picked).
fn link_of_program(pid: u32, name: &str) -> Option<u64> {
    let prog_ids: Vec<u64> = bpftool_programs()
        .into_iter()
        .filter(|(_, n)| n == name)
        .map(|(id, _)| id)
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .ok()?
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .find_map(|info| {
            let field = |k: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            let prog = field("prog_id:")?;
            prog_ids
                .contains(&prog)
                .then(|| field("link_id:"))
                .flatten()
        })
}

#[test]
fn health_reports_a_probe_detached_from_outside() {
    let _g = serial();
    if !require_bpf() || !require(have("bpftool"), "bpftool not installed") {
        return;
    }
    let agent = Agent::start(&[("cli", "nettest-cli")]);
    let (status, _, body) = get_raw(agent.port, "/health", &[]);
    assert!(status.contains("200"), "{status}");
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["status"], "ok");
    for key in [
        "version",
        "uptime_seconds",
        "probes",
        "events_lost",
        "last_interface_collection_unix",
    ] {
        assert!(!health[key].is_null(), "{key} missing: {health}");
    }

    let link = link_of_program(agent.child.id(), "on_sendmsg4").expect("link of on_sendmsg4");
    let out = Command::new("bpftool")
        .args(["link", "detach", "id", &link.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (status, _, body) = get_raw(agent.port, "/health", &[]);
    assert!(status.contains("503"), "{status}");
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["status"], "degraded");
    let probe = health["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "cgroup/sendmsg4")
        .unwrap();
    assert_eq!(probe["attached"], false);
    let others_ok = health["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] != "cgroup/sendmsg4")
        .all(|p| p["attached"] == true);
    assert!(others_ok, "{health}");
    let m = agent.metrics();
    assert_eq!(
        m.get(
            "netagent_probe_up",
            &[("feature", "udp_peers"), ("probe", "cgroup/sendmsg4")]
        ),
        0.0
    );
    assert_eq!(
        m.get(
            "netagent_probe_up",
            &[("feature", "udp_peers"), ("probe", "cgroup/sendmsg6")]
        ),
        1.0
    );
}

#[test]
fn graph_api_lists_processes_peers_and_edges() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let agent = Agent::start(&[("graph-cli", "nettest-cli")]);
    let srv = Server::start("nettest-srv", &["--tcp4", "0", "--delay-ms", "20"]);
    let port = srv.port("tcp4");
    testgen(
        "nettest-cli",
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{port}"),
            "--connects",
            "4",
            "--exchanges",
            "5",
        ],
    );
    let g: serde_json::Value =
        serde_json::from_str(&http_get(agent.port, "/api/v1/graph", None).unwrap()).unwrap();
    let peer = format!("peer:tcp/127.0.0.1:{port}");
    let nodes = g["nodes"].as_array().unwrap();
    assert!(
        nodes
            .iter()
            .any(|n| n["id"] == "process:graph-cli" && n["kind"] == "process"),
        "{g}"
    );
    assert!(
        nodes.iter().any(|n| n["id"] == peer && n["kind"] == "peer"),
        "{g}"
    );
    let edge = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == "process:graph-cli" && e["target"] == peer)
        .unwrap_or_else(|| panic!("edge missing: {g}"));
    assert_eq!(
        edge["connects_total"], 5,
        "4 connects + the exchange connection"
    );
    let p95 = edge["p95_seconds"].as_f64().unwrap();
    // 20 ms plus scheduling; a loaded 2-core machine has added ~20 ms.
    assert!((0.01..=0.1).contains(&p95), "p95 {p95}");
    assert_eq!(edge["errors_total"], 0);
}

/// Two tracked processes on this host, one calling the other over
/// loopback: one edge between their names, no address nodes for it.
#[test]
fn two_local_processes_are_one_edge_between_their_names() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let (cli, srv) = (unique_comm("gfront"), unique_comm("gweb"));
    let agent = Agent::start(&[("frontend", &cli), ("websrv", &srv)]);
    // Started after the agent: the kernel records the listener.
    let server = Server::start(&srv, &["--tcp4", "0"]);
    let port = server.port("tcp4");
    testgen(
        &cli,
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{port}"),
            "--connects",
            "6",
            "--exchanges",
            "2",
        ],
    );
    let g: serde_json::Value =
        serde_json::from_str(&http_get(agent.port, "/api/v1/graph", None).unwrap()).unwrap();
    let edges = g["edges"].as_array().unwrap();
    let edge = edges
        .iter()
        .find(|e| e["source"] == "process:frontend" && e["target"] == "process:websrv")
        .unwrap_or_else(|| panic!("no edge frontend -> websrv: {g}"));
    assert_eq!(
        edge["connects_total"], 7,
        "6 connects + the exchanges' connection"
    );
    assert!(edge["p95_seconds"].is_number(), "{edge}");
    assert_eq!(edges.len(), 1, "the accepting side is not drawn again: {g}");
    let ids: Vec<&str> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["process:frontend", "process:websrv"], "{g}");
}

#[test]
fn a_disabled_probe_is_reported_while_everything_else_runs() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let agent = Agent::start_with_yaml(
        "targets:\n  - name: cli\n    match_comm: nettest-cli\n\
         debug:\n  disable_probes: [\"tracepoint/tcp:tcp_retransmit_skb\", \"cgroup/recvmsg4\"]\n",
    );
    let (status, _, body) = get_raw(agent.port, "/health", &[]);
    assert!(status.contains("503"), "{status}");
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["status"], "degraded");
    for p in health["probes"].as_array().unwrap() {
        let off =
            p["name"] == "tracepoint/tcp:tcp_retransmit_skb" || p["name"] == "cgroup/recvmsg4";
        assert_eq!(p["attached"], !off, "{p}");
    }
    // The rest counts exactly.
    let srv = Server::start("nettest-srv", &["--tcp4", "0"]);
    let port = srv.port("tcp4").to_string();
    testgen(
        "nettest-cli",
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{port}"),
            "--connects",
            "9",
        ],
    );
    let m = agent.metrics();
    assert_eq!(
        m.get(
            "netagent_connect_total",
            &[("process", "cli"), ("proto", "tcp"), ("dport", &port)]
        ),
        9.0
    );
    assert_eq!(
        m.get(
            "netagent_probe_up",
            &[
                ("feature", "retransmits"),
                ("probe", "tracepoint/tcp:tcp_retransmit_skb")
            ]
        ),
        0.0
    );
    assert_eq!(
        m.get(
            "netagent_probe_up",
            &[
                ("feature", "connections"),
                ("probe", "tracepoint/sock:inet_sock_set_state")
            ]
        ),
        1.0
    );
}
