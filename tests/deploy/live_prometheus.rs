//! Every dashboard query, evaluated by a real Prometheus that scrapes the
//! real agent with the shipped scrape config and alerting rules under
//! generated traffic, returns data with the labels its legend shows, and
//! every metric name in it exists in a real scrape; the rules load and
//! evaluate, and no alert about a healthy agent fires.

use super::dashboard::{dashboard_targets, metric_names, substitute, value_variables};
use super::{read, repo, run, text, ALERTS};
use crate::common::hostlink::HostLink;
use crate::common::netns::wait_bounded;
use crate::common::prometheus_server::{sample_value, Prometheus};
use crate::common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Comms of the traffic generator in the dashboard test (at most 15 bytes).
const DASH_CLIENT: &str = "nettest-dcli";
const DASH_SERVER: &str = "nettest-dsrv";

/// deploy/prometheus/prometheus.yml with the rules file next to it, made to
/// scrape `agent_port` every second.
fn start_with_shipped_config(agent_port: u16) -> Prometheus {
    let dir = TempDir::new("deployprom");
    let mut cfg = read("deploy/prometheus/prometheus.yml");
    for (from, to) in [
        ("scrape_interval: 15s", "scrape_interval: 1s"),
        ("evaluation_interval: 15s", "evaluation_interval: 1s"),
        ("scrape_timeout: 10s", "scrape_timeout: 1s"),
        ("localhost:9102", &format!("127.0.0.1:{agent_port}")),
    ] {
        assert!(cfg.contains(from), "prometheus.yml no longer has {from:?}");
        cfg = cfg.replace(from, to);
    }
    let path = dir.0.join("prometheus.yml");
    std::fs::write(&path, cfg).unwrap();
    std::fs::copy(
        repo().join("deploy/prometheus/netagent.rules.yml"),
        dir.0.join("netagent.rules.yml"),
    )
    .unwrap();
    Prometheus::start(dir, &path)
}

/// A netns host behind a veth in the root namespace runs a sink server
/// whose firewall drops 10 % of the packets to it: retransmits, and traffic
/// on an interface the agent counts.
struct LossyHost {
    link: HostLink,
    server: Child,
    port: u16,
}

impl Drop for LossyHost {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl LossyHost {
    fn start() -> LossyHost {
        let link = HostLink::new("dash");
        let mut server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &link.ns,
                testgen_exe(),
                "--comm",
                DASH_SERVER,
            ])
            .args(["serve", "--tcp4", "0", "--sink", "--max-seconds", "120"])
            .args(["--bind4", &link.ns_ip.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start testgen in the netns");
        let stdout = server.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let port = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["tcp4"].as_u64());
        let Some(port) = port else {
            let _ = server.kill();
            let _ = server.wait();
            panic!("netns server said {line:?}");
        };
        let host = LossyHost {
            link,
            server,
            port: port as u16,
        };
        let ruleset = format!(
            "table inet na {{\n  chain input {{\n    type filter hook input priority 0;\n    \
             tcp dport {port} numgen random mod 10 == 0 drop\n  }}\n}}\n"
        );
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &host.link.ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft");
        use std::io::Write;
        nft.stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        let status = wait_bounded(&mut nft, Duration::from_secs(30)).expect("nft hangs");
        assert!(status.success(), "nft rejected {ruleset}");
        host
    }
}

/// Lines of two templates appended to the log file the agent reads.
fn log_round(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for i in 0..20 {
        writeln!(f, "INFO request {i} served in {}ms", i * 3).unwrap();
        writeln!(f, "ERROR cache miss for key k{i}").unwrap();
    }
}

/// A DNS server on loopback (a free port, which the agent's `dns.ports`
/// lists): a name that resolves and one that does not; killed on drop.
struct DnsServer {
    child: Child,
    port: u16,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl DnsServer {
    fn start() -> DnsServer {
        let mut child = Command::new(testgen_exe())
            .args(["--comm", DASH_SERVER, "dns-serve", "--bind", "127.0.0.1"])
            .args(["--port", "0", "--delay-ms", "5", "--max-seconds", "120"])
            .args([
                "--zone",
                "ok.test=A:127.0.0.1",
                "--zone",
                "nx.test=NXDOMAIN",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start testgen dns-serve");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let port = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["udp"].as_u64());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("dns-serve said {line:?}");
        };
        DnsServer {
            child,
            port: port as u16,
        }
    }
}

/// One round of traffic from DASH_CLIENT: TCP connects, UDP datagrams and
/// request/response exchanges on loopback, connections reset by an aborting
/// server, refused connects to a closed port, a bulk transfer over the
/// lossy veth, and DNS queries answered NOERROR and NXDOMAIN.
fn traffic_round(echo: &Server, abort: &Server, lossy: &LossyHost, closed: u16, dns: &DnsServer) {
    let server = format!("127.0.0.1:{}", dns.port);
    for (name, count) in [("ok.test", "5"), ("nx.test", "2")] {
        testgen(
            DASH_CLIENT,
            &[
                "dns-query",
                "--server",
                &server,
                "--name",
                name,
                "--count",
                count,
            ],
        );
    }
    testgen(
        DASH_CLIENT,
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{}", echo.port("tcp4")),
            "--udp4",
            &format!("127.0.0.1:{}", echo.port("udp4")),
            "--connects",
            "5",
            "--sends",
            "5",
            "--exchanges",
            "5",
        ],
    );
    testgen(
        DASH_CLIENT,
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{}", abort.port("tcp4")),
            "--connects",
            "3",
            "--wait-reset",
        ],
    );
    let refused = run(
        Command::new(testgen_exe())
            .args(["--comm", DASH_CLIENT])
            .args([
                "client",
                "--tcp4",
                &format!("127.0.0.1:{closed}"),
                "--connects",
                "2",
            ]),
        Duration::from_secs(30),
    );
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    testgen(
        DASH_CLIENT,
        &[
            "client",
            "--tcp4",
            &format!("{}:{}", lossy.link.ns_ip, lossy.port),
            "--bulk",
            "1048576",
        ],
    );
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let _g = serial();
    if !require_bpf()
        || !require(
            have("prometheus"),
            "prometheus server (Debian package prometheus) not installed",
        )
        || !require(
            have("ip") && have("nft"),
            "ip (iproute2) and nft (nftables) needed",
        )
    {
        return;
    }
    let started = Instant::now();
    let dash: Value = serde_json::from_str(&read("dashboards/netagent.json")).unwrap();
    let vars = value_variables(&dash);

    let lossy = LossyHost::start();
    // A log file for the log pattern panel, created after the start (so
    // read from its beginning) and written in each round.
    let logs = TempDir::new("dash-logs");
    let log = logs.0.join("app.log");
    let dns = DnsServer::start();
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: \"dashcli\"\n    match_comm: \"{DASH_CLIENT}\"\n  \
         - name: \"dashsrv\"\n    match_comm: \"{DASH_SERVER}\"\n\
         interfaces: [\"{}\"]\ninterface_stats:\n  interval_seconds: 0.5\n\
         logs:\n  enabled: true\n  journald: false\n  paths: [\"{}\"]\n  state_file: \"\"\n  \
         poll_interval_seconds: 0.05\n  rescan_interval_seconds: 0.2\n\
         dns:\n  ports: [53, {}]\n",
        lossy.link.host_if,
        log.display(),
        dns.port
    ));
    let prom = start_with_shipped_config(agent.port);
    prom.wait_for("up{job=\"netagent\"} == 1", Duration::from_secs(30), |r| {
        r.len() == 1
    })
    .expect("Prometheus scrapes the agent with the shipped config");

    let echo = Server::start(
        DASH_SERVER,
        &["--tcp4", "0", "--udp4", "0", "--delay-ms", "5"],
    );
    let abort = Server::start(DASH_SERVER, &["--tcp4", "0", "--abort"]);
    let closed = free_port();
    // Two rounds a few scrapes apart, so that rate() sees the counters grow.
    traffic_round(&echo, &abort, &lossy, closed, &dns);
    log_round(&log);
    std::thread::sleep(Duration::from_secs(3));
    traffic_round(&echo, &abort, &lossy, closed, &dns);
    log_round(&log);
    std::thread::sleep(Duration::from_secs(2));

    // Every metric the dashboard names is in a real scrape of the agent.
    let scrape = agent.scrape();
    let exported: BTreeSet<&str> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let targets = dashboard_targets(&dash);
    for (title, _, expr, _) in &targets {
        for name in metric_names(expr) {
            assert!(
                exported.contains(name.as_str()),
                "panel {title:?} uses {name}, which the agent does not export"
            );
        }
    }

    // Every query returns data, with the labels its legend shows.
    let mut failures = Vec::new();
    let mut results = BTreeMap::new();
    for (title, ref_id, expr, legend) in &targets {
        let q = substitute(expr, &vars);
        let legend_labels: Vec<String> = legend
            .split("{{")
            .skip(1)
            .filter_map(|s| s.split_once("}}").map(|(l, _)| l.trim().to_string()))
            .collect();
        let r = prom.wait_for(&q, Duration::from_secs(20), |r| {
            r.iter().any(|s| sample_value(s).is_finite())
                && r.iter()
                    .all(|s| legend_labels.iter().all(|l| s["metric"].get(l).is_some()))
        });
        match r {
            Ok(r) => {
                results.insert((title.clone(), ref_id.clone()), r);
            }
            Err(r) => failures.push(format!(
                "{title:?}/{ref_id}: {q}\n  legend labels {legend_labels:?}\n  got {r:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "dashboard queries without data:\n{}",
        failures.join("\n")
    );

    // Conditions the traffic created, seen through the panels.
    let find = |title: &str| -> &Vec<Value> {
        results
            .iter()
            .find(|((t, _), _)| t == title)
            .map(|(_, r)| r)
            .unwrap_or_else(|| panic!("no panel {title:?}"))
    };
    let positive = |r: &[Value], label: &str, value: &str| {
        r.iter()
            .any(|s| s["metric"][label] == value && sample_value(s) > 0.0)
    };
    let lossy_ip = lossy.link.ns_ip.to_string();
    assert!(
        positive(find("Retransmits"), "dst_ip", &lossy_ip),
        "retransmits to the lossy host: {:?}",
        find("Retransmits")
    );
    assert!(
        positive(find("Failed connects by reason"), "reason", "refused"),
        "{:?}",
        find("Failed connects by reason")
    );
    assert!(
        positive(find("Resets"), "direction", "received"),
        "{:?}",
        find("Resets")
    );
    // The loudest log patterns read as templates, not as one example line.
    for template in [
        "INFO request <*> served in <*>",
        "ERROR cache miss for key <*>",
    ] {
        assert!(
            positive(find("Loudest log patterns"), "template", template),
            "{template:?} in {:?}",
            find("Loudest log patterns")
        );
    }
    // The lossy host's firewall drops packets: the kernel says so.
    assert!(
        positive(find("Packet drops by reason"), "reason", "netfilter_drop"),
        "{:?}",
        find("Packet drops by reason")
    );
    assert!(
        positive(find("Interface traffic"), "interface", &lossy.link.host_if),
        "{:?}",
        find("Interface traffic")
    );

    // 2 of every 7 lookups are NXDOMAIN; every answer waited 5 ms.
    for panel in ["DNS error ratio", "DNS latency p99"] {
        assert!(
            positive(find(panel), "process", "dashcli"),
            "{panel}: {:?}",
            find(panel)
        );
    }

    // The node graph: nodes have an id and a title, every edge joins two nodes.
    let nodes = &results[&(
        "Service map: process → peer:port".to_string(),
        "nodes".to_string(),
    )];
    let edges = &results[&(
        "Service map: process → peer:port".to_string(),
        "edges".to_string(),
    )];
    let node_ids: BTreeSet<&str> = nodes
        .iter()
        .map(|n| {
            assert!(n["metric"]["title"].is_string(), "node without title: {n}");
            n["metric"]["id"].as_str().expect("node id")
        })
        .collect();
    let echo_peer = format!("127.0.0.1:{}", echo.port("tcp4"));
    assert!(
        node_ids.contains("dashcli") && node_ids.contains(echo_peer.as_str()),
        "{node_ids:?}"
    );
    for e in edges {
        let m = &e["metric"];
        let (src, dst) = (m["source"].as_str().unwrap(), m["target"].as_str().unwrap());
        assert!(m["id"].is_string(), "edge without id: {e}");
        assert!(
            node_ids.contains(src) && node_ids.contains(dst),
            "edge {e} joins unknown nodes {node_ids:?}"
        );
    }
    assert!(
        edges
            .iter()
            .any(|e| e["metric"]["source"] == "dashcli"
                && e["metric"]["target"] == echo_peer.as_str()),
        "{edges:?}"
    );

    // The variables' label_values() queries find values.
    for v in dash["templating"]["list"].as_array().unwrap() {
        let Some(def) = v["query"]["query"].as_str() else {
            continue;
        };
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: {def}", v["name"]));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let q = substitute(&format!("count by ({}) ({selector})", label.trim()), &vars);
        let r = prom.query(&q);
        assert!(
            !r.is_empty() && r.iter().all(|s| s["metric"].get(label.trim()).is_some()),
            "variable {}: {q} gave {r:?}",
            v["name"]
        );
    }

    // The shipped alerting rules loaded and evaluate without errors against
    // the real agent, and none of the "broken agent" alerts is active.
    let deadline = Instant::now() + Duration::from_secs(20);
    let rules = loop {
        let rules = prom.api("/api/v1/rules");
        let all_evaluated = rules["groups"].as_array().is_some_and(|g| {
            !g.is_empty()
                && g.iter()
                    .flat_map(|g| g["rules"].as_array().unwrap())
                    .all(|r| {
                        r["lastEvaluation"]
                            .as_str()
                            .is_some_and(|t| !t.starts_with("0001-"))
                    })
        });
        if all_evaluated || Instant::now() >= deadline {
            break rules;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let loaded: Vec<&Value> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    let names: BTreeSet<&str> = loaded.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ALERTS.into_iter().collect(), "rules loaded");
    for r in &loaded {
        assert_eq!(r["health"], "ok", "rule {} evaluates: {r}", r["name"]);
    }
    let active = prom.query(
        "ALERTS{alertname=~\"NetagentDown|NetagentProbeDown|NetagentSeriesCapHit|NetagentEventsLost\"}",
    );
    assert!(
        active.is_empty(),
        "alerts about a healthy agent: {active:?}"
    );
    eprintln!("dashboard test took {:?}", started.elapsed());
}
