//! The deployment artifacts, checked with the real tools:
//!
//! * the Grafana dashboard: every PromQL expression, evaluated by a real
//!   Prometheus (scraping the real agent with the shipped scrape config and
//!   alerting rules) under generated traffic, returns data, and every metric
//!   name in it exists in a real scrape;
//! * the Prometheus config and rules: `promtool check config|rules` and the
//!   rules' unit tests (`promtool test rules`), which fire and clear every alert;
//! * the Kubernetes manifests, the Helm chart rendered by Helm's own engine and
//!   the compose file: validated offline against the Kubernetes, Prometheus
//!   Operator and Compose schemas (scripts/validate-deploy.py), plus the
//!   consistency the schemas cannot see (ports, probes, capabilities, labels);
//! * the systemd unit: `systemd-analyze verify` and its offline security score;
//! * the .deb: built with `cargo deb`, installed with dpkg, run, removed, purged;
//! * scripts/smoke-test.sh, passing and failing;
//! * the agent under exactly the capabilities the deployments grant.
//!
//! Tools beyond scripts/setup.sh come from scripts/setup-deploy.sh.

mod common;
use common::hostlink::HostLink;
use common::netns::wait_bounded;
use common::prometheus_server::{sample_value, Prometheus};
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Comms of the traffic generator in the dashboard test (at most 15 bytes).
const DASH_CLIENT: &str = "nettest-dcli";
const DASH_SERVER: &str = "nettest-dsrv";

/// The alerts of deploy/prometheus/netagent.rules.yml.
const ALERTS: [&str; 6] = [
    "NetagentDown",
    "NetagentEventsLost",
    "NetagentConnectFailuresSpike",
    "NetagentHighRetransmitRatio",
    "NetagentSeriesCapHit",
    "NetagentProbeDown",
];

/// The capabilities every deployment grants (systemd unit, Dockerfile,
/// DaemonSet, Helm chart, compose file).
const CAPS: [&str; 4] = ["BPF", "PERFMON", "NET_ADMIN", "SYS_RESOURCE"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let p = repo().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"))
}

/// Validators installed by scripts/setup-deploy.sh.
fn tools() -> PathBuf {
    std::env::var_os("NETAGENT_DEPLOY_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/deploy-tools"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `cmd`, killing it after `timeout` (then panics); stdout and stderr
/// are collected.
fn run(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = wait_bounded(&mut child, timeout).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {timeout:?}; killed");
    });
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ------------------------------------------------------------------ Prometheus

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

// ------------------------------------------------------------------ dashboard

/// Every (panel title, refId, expr, legendFormat) of the dashboard.
fn dashboard_targets(dash: &Value) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        let mut panels = vec![p];
        if let Some(inner) = p["panels"].as_array() {
            panels.extend(inner);
        }
        for p in panels {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    p["title"].as_str().unwrap_or("").to_string(),
                    t["refId"].as_str().unwrap_or("").to_string(),
                    t["expr"]
                        .as_str()
                        .expect("every target has an expr")
                        .to_string(),
                    t["legendFormat"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
    }
    out
}

/// Names of the dashboard's variables that hold label values (not data sources).
fn value_variables(dash: &Value) -> Vec<String> {
    dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] != "datasource")
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

/// Grafana's substitutions for a query made at "All": the interval macros
/// and every value variable as the regex `.*` (so each must be used as
/// `label=~"$var"`).
fn substitute(expr: &str, vars: &[String]) -> String {
    let mut s = expr.to_string();
    for (from, to) in [
        ("${__rate_interval}", "1m"),
        ("$__rate_interval", "1m"),
        ("${__interval}", "15s"),
        ("$__interval", "15s"),
    ] {
        s = s.replace(from, to);
    }
    for v in vars {
        for form in [format!("${{{v}}}"), format!("${v}")] {
            let uses = s.matches(form.as_str()).count();
            let regex_uses = s.matches(&format!("=~\"{form}\"")).count();
            assert_eq!(
                uses, regex_uses,
                "{form} must only be used as label=~\"{form}\" in {expr}"
            );
            s = s.replace(form.as_str(), ".*");
        }
    }
    let leftover = s.match_indices('$').map(|(i, _)| &s[i..]).find(|rest| {
        rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == '{')
    });
    assert!(
        leftover.is_none(),
        "unknown variable in {expr}: {leftover:?}"
    );
    s
}

/// Metric names in a PromQL expression: identifiers outside strings, ranges,
/// label matchers and label lists that are not functions, aggregations or
/// keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    const LIST_KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &["and", "or", "unless", "offset", "bool", "inf", "nan"];
    let b = expr.as_bytes();
    let (mut i, mut braces, mut in_list, mut list_next) = (0, 0usize, false, false);
    let mut names = BTreeSet::new();
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'[' => {
                while i < b.len() && b[i] != b']' {
                    i += 1;
                }
                i += 1;
            }
            b'{' => {
                braces += 1;
                i += 1;
            }
            b'}' => {
                braces = braces.saturating_sub(1);
                i += 1;
            }
            b'(' => {
                in_list = list_next;
                list_next = false;
                i += 1;
            }
            b')' => {
                in_list = false;
                i += 1;
            }
            b'0'..=b'9' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let next = expr[i..].trim_start().bytes().next();
                let lower = word.to_ascii_lowercase();
                if braces > 0 || in_list || KEYWORDS.contains(&lower.as_str()) {
                    continue;
                }
                if LIST_KEYWORDS.contains(&lower.as_str()) {
                    list_next = true;
                    continue;
                }
                if AGGREGATIONS.contains(&lower.as_str()) || next == Some(b'(') {
                    continue;
                }
                names.insert(word.to_string());
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn the_promql_metric_name_scanner_finds_names_and_skips_the_rest() {
    let names = metric_names(
        r#"histogram_quantile(0.95, sum by (process, le) (rate(a_bucket{x=~"b_c", y="d"}[1m]))) / ignoring (z) group_left (w) b_total and on (job) c:info offset 5m or -sum without (le) (label_replace(d_x, "id", "$1", "p", "(.*)")) * 8 > bool 1e-05"#,
    );
    let want: BTreeSet<String> = ["a_bucket", "b_total", "c:info", "d_x"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, want);
    assert_eq!(
        substitute(
            r#"rate(m{i=~"$instance", p=~"${process}"}[$__rate_interval])"#,
            &["instance".into(), "process".into()]
        ),
        r#"rate(m{i=~".*", p=~".*"}[1m])"#
    );
}

/// Structure of dashboards/netagent.json, without a Prometheus: the data
/// source is a variable, every panel and query uses it, and the panels the
/// issue asks for are there.
#[test]
fn the_dashboard_is_well_formed() {
    let dash: Value =
        serde_json::from_str(&read("dashboards/netagent.json")).expect("dashboard is JSON");
    assert_eq!(dash["uid"], "netagent");
    let vars = dash["templating"]["list"].as_array().unwrap();
    let ds: Vec<&Value> = vars.iter().filter(|v| v["type"] == "datasource").collect();
    assert_eq!(ds.len(), 1, "one data source variable");
    assert_eq!(ds[0]["name"], "DS_PROMETHEUS");
    assert_eq!(ds[0]["query"], "prometheus");
    let ds_ref = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"], ds_ref, "variable {}", v["name"]);
        assert_eq!(v["allValue"], ".*", "variable {}", v["name"]);
        assert_eq!(v["includeAll"], true, "variable {}", v["name"]);
    }

    let mut ids = BTreeSet::new();
    let mut kinds = BTreeMap::new();
    for p in dash["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id {}",
            p["id"]
        );
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(
            x + w <= 24 && g["h"].as_u64().unwrap() > 0,
            "gridPos of {}",
            p["title"]
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"], ds_ref, "panel {}", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        let mut refs = BTreeSet::new();
        for t in targets {
            assert_eq!(t["datasource"], ds_ref, "query of {}", p["title"]);
            assert!(
                refs.insert(t["refId"].as_str().unwrap()),
                "refIds of {}",
                p["title"]
            );
        }
        *kinds
            .entry(p["type"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(
        kinds.get("nodeGraph"),
        Some(&1),
        "one node graph: {kinds:?}"
    );
    let graph = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "nodeGraph")
        .unwrap();
    let refs: BTreeSet<&str> = graph["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["refId"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["edges", "nodes"].into_iter().collect());

    // The panels of the issue, by the metric each one needs.
    let all: BTreeSet<String> = dashboard_targets(&dash)
        .iter()
        .flat_map(|(_, _, e, _)| metric_names(e))
        .collect();
    for needed in [
        "netagent_connect_total",
        "netagent_edge_total",
        "netagent_tx_duration_seconds_bucket",
        "netagent_tcp_connect_failed_total",
        "netagent_tcp_resets_total",
        "netagent_tcp_retransmits_total",
        "netagent_tcp_rtt_seconds_bucket",
        "netagent_bytes_sent_total",
        "netagent_bytes_received_total",
        "netagent_interface_bytes_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "netagent_bpf_programs_memory_bytes",
        "netagent_events_lost_total",
        "netagent_probe_up",
        "netagent_series_dropped_total",
    ] {
        assert!(all.contains(needed), "no panel shows {needed}");
    }
}

/// Every metric a dashboard panel or an alert rule queries is one the
/// agent exports: a catalog family (with `_total`, `_bucket`, `_sum`,
/// `_count` as the wire has them), or Prometheus' own `up`.
#[test]
fn every_metric_the_dashboard_and_the_rules_query_is_in_the_catalog() {
    let mut exposed = BTreeSet::from(["up".to_string()]);
    for d in netagent::metrics::catalog::ALL {
        exposed.insert(d.exposed_name());
        if d.kind == netagent::metrics::Kind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                exposed.insert(format!("{}{suffix}", d.name));
            }
        }
    }
    let dash: Value =
        serde_json::from_str(&read("dashboards/netagent.json")).expect("dashboard is JSON");
    let mut queries: Vec<(String, String)> = dashboard_targets(&dash)
        .into_iter()
        .map(|(title, _, expr, _)| (format!("panel {title}"), expr))
        .collect();
    let rules = yaml(&read("deploy/prometheus/netagent.rules.yml"), "rules");
    for g in rules["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
            queries.push((
                format!("rule {name}"),
                r["expr"].as_str().expect("expr").to_string(),
            ));
            if let Some(rec) = r["record"].as_str() {
                exposed.insert(rec.to_string());
            }
        }
    }
    assert!(queries.len() > 10, "{queries:?}");
    for (what, expr) in &queries {
        for name in metric_names(expr) {
            assert!(
                exposed.contains(&name),
                "{what} queries {name}, which the catalog does not have: {expr}"
            );
        }
    }
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

/// One round of traffic from DASH_CLIENT: TCP connects, UDP datagrams and
/// request/response exchanges on loopback, connections reset by an aborting
/// server, refused connects to a closed port, and a bulk transfer over the
/// lossy veth.
fn traffic_round(echo: &Server, abort: &Server, lossy: &LossyHost, closed: u16) {
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
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: \"dashcli\"\n    match_comm: \"{DASH_CLIENT}\"\n  \
         - name: \"dashsrv\"\n    match_comm: \"{DASH_SERVER}\"\n\
         interfaces: [\"{}\"]\ninterface_stats:\n  interval_seconds: 0.5\n",
        lossy.link.host_if
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
    traffic_round(&echo, &abort, &lossy, closed);
    std::thread::sleep(Duration::from_secs(3));
    traffic_round(&echo, &abort, &lossy, closed);
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
    assert!(
        positive(find("Interface traffic"), "interface", &lossy.link.host_if),
        "{:?}",
        find("Interface traffic")
    );

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

// ------------------------------------------------------------------ promtool

#[test]
fn promtool_checks_the_scrape_config_the_rules_and_their_unit_tests() {
    if !require(
        have("promtool"),
        "promtool (Debian package prometheus) not installed",
    ) {
        return;
    }
    let dir = repo().join("deploy/prometheus");
    for args in [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "netagent.rules.yml"],
        ["test", "rules", "netagent.rules.test.yml"],
    ] {
        let out = run(
            Command::new("promtool").args(args).current_dir(&dir),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "promtool {args:?}:\n{}", text(&out));
    }

    // Every alert of the issue exists, and the unit tests see each one both
    // firing and not firing.
    let rules = yaml(&read("deploy/prometheus/netagent.rules.yml"), "rules");
    let defined: BTreeSet<&str> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter_map(|r| r["alert"].as_str())
        .collect();
    assert_eq!(defined, ALERTS.into_iter().collect());
    let tests = yaml(
        &read("deploy/prometheus/netagent.rules.test.yml"),
        "rule tests",
    );
    for alert in ALERTS {
        let cases: Vec<&Value> = tests["tests"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
            .filter(|c| c["alertname"] == alert)
            .collect();
        let firing = cases
            .iter()
            .any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()));
        let quiet = cases
            .iter()
            .any(|c| c["exp_alerts"].as_array().is_some_and(|a| a.is_empty()));
        assert!(
            firing && quiet,
            "{alert}: firing tested {firing}, not firing tested {quiet}"
        );
    }
}

// ------------------------------------------------------------------ Kubernetes, Helm, compose

/// Objects of one deployment flavour: "static" (deploy/kubernetes) or a chart render.
fn flavour(source: &str) -> String {
    source
        .strip_prefix("chart[")
        .and_then(|s| s.split_once(']'))
        .map(|(tag, _)| format!("chart-{tag}"))
        .unwrap_or_else(|| "static".into())
}

fn string_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

#[test]
fn kubernetes_manifests_helm_chart_and_compose_file_validate_offline() {
    let python = tools().join("venv/bin/python");
    if !require(
        python.exists() && tools().join("node/node_modules").exists() && have("node"),
        "validators missing (run scripts/setup-deploy.sh; needs node)",
    ) {
        return;
    }
    let dir = TempDir::new("k8s");
    let objects = dir.0.join("objects.json");
    let out = run(
        Command::new(&python)
            .arg(repo().join("scripts/validate-deploy.py"))
            .arg("--tools")
            .arg(tools())
            .arg("--render-out")
            .arg(dir.0.join("rendered"))
            .arg("--dump-json")
            .arg(&objects),
        Duration::from_secs(300),
    );
    let log = text(&out);
    assert!(out.status.success(), "validate-deploy.py failed:\n{log}");
    let summary: Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or(""),
    )
    .unwrap_or_else(|e| panic!("no summary ({e}):\n{log}"));
    // Static manifests + the chart rendered twice (defaults, everything on).
    assert_eq!(
        summary["validated"],
        serde_json::json!({"ConfigMap": 3, "DaemonSet": 3, "Namespace": 1, "Service": 3, "ServiceAccount": 3}),
        "{log}"
    );
    assert_eq!(summary["podmonitors"], 2, "{log}");
    assert_eq!(summary["compose_files"], 1, "{log}");
    assert_eq!(summary["kustomizations"], 1, "{log}");

    // What the schemas cannot check: the pieces fit together.
    let all: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&objects).unwrap()).unwrap();
    let mut by_flavour: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for o in &all {
        by_flavour
            .entry(flavour(o["source"].as_str().unwrap()))
            .or_default()
            .push(&o["object"]);
    }
    assert_eq!(
        by_flavour.keys().map(String::as_str).collect::<Vec<_>>(),
        ["chart-all-on", "chart-defaults", "static"]
    );
    let want_caps: BTreeSet<String> = CAPS.iter().map(|c| c.to_string()).collect();
    for (fl, objs) in &by_flavour {
        let of_kind = |k: &str| {
            objs.iter()
                .filter(|o| o["kind"] == k)
                .copied()
                .collect::<Vec<_>>()
        };
        let ds = of_kind("DaemonSet");
        assert_eq!(ds.len(), 1, "{fl}");
        let ds = ds[0];
        let pod = &ds["spec"]["template"];
        let spec = &pod["spec"];
        let pod_labels = &pod["metadata"]["labels"];
        assert!(
            labels_match(&ds["spec"]["selector"]["matchLabels"], pod_labels),
            "{fl}: selector"
        );
        assert_eq!(spec["hostNetwork"], true, "{fl}");
        assert_eq!(spec["hostPID"], true, "{fl}");
        let c = &spec["containers"][0];
        let sc = &c["securityContext"];
        assert!(
            sc["privileged"].is_null() || sc["privileged"] == false,
            "{fl}: privileged"
        );
        assert_eq!(string_set(&sc["capabilities"]["add"]), want_caps, "{fl}");
        assert_eq!(
            string_set(&sc["capabilities"]["drop"]),
            ["ALL".to_string()].into(),
            "{fl}"
        );
        let port = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "metrics")
            .unwrap_or_else(|| panic!("{fl}: no metrics port"));
        assert_eq!(port["containerPort"], 9102, "{fl}");
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(c[probe]["httpGet"]["path"], "/health", "{fl}: {probe}");
            assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{fl}: {probe}");
        }
        for r in ["requests", "limits"] {
            assert!(
                c["resources"][r]["cpu"].is_string() && c["resources"][r]["memory"].is_string(),
                "{fl}: resources.{r}"
            );
        }
        for path in ["/sys/fs/cgroup", "/sys/kernel/btf"] {
            let mount = c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["mountPath"] == path)
                .unwrap_or_else(|| panic!("{fl}: {path} not mounted"));
            assert_eq!(mount["readOnly"], true, "{fl}: {path}");
            let vol = spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == mount["name"])
                .unwrap();
            assert_eq!(vol["hostPath"]["path"], path, "{fl}");
        }
        let config_mount = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == "/etc/netagent")
            .unwrap_or_else(|| panic!("{fl}: config not mounted"));
        let config_volume = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == config_mount["name"])
            .unwrap();
        assert_eq!(c["args"][0], "--config", "{fl}");
        assert_eq!(c["args"][1], "/etc/netagent/config.yaml", "{fl}");

        // The agent accepts the ConfigMap's config and listens on the pod's port.
        let cms = of_kind("ConfigMap");
        let cm = cms
            .iter()
            .find(|m| m["metadata"]["name"] == config_volume["configMap"]["name"])
            .unwrap_or_else(|| panic!("{fl}: ConfigMap of the DaemonSet missing"));
        let cfg_text = cm["data"]["config.yaml"].as_str().expect("config.yaml");
        let (cfg, warnings) = netagent::config::Config::parse(cfg_text, "configmap")
            .unwrap_or_else(|e| panic!("{fl}: the agent rejects its ConfigMap: {e}\n{cfg_text}"));
        assert!(warnings.is_empty(), "{fl}: {warnings:?}");
        assert_eq!(cfg.listen_addr().unwrap().port(), 9102, "{fl}");

        let sa = &spec["serviceAccountName"];
        assert!(
            of_kind("ServiceAccount")
                .iter()
                .any(|s| &s["metadata"]["name"] == sa),
            "{fl}: ServiceAccount {sa} missing"
        );
        for svc in of_kind("Service") {
            assert!(
                labels_match(&svc["spec"]["selector"], pod_labels),
                "{fl}: Service selector"
            );
            assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics", "{fl}");
        }
        let pms = of_kind("PodMonitor");
        assert_eq!(
            pms.len(),
            usize::from(fl != "chart-defaults"),
            "{fl}: PodMonitors"
        );
        for pm in pms {
            assert!(
                labels_match(&pm["spec"]["selector"]["matchLabels"], pod_labels),
                "{fl}: PodMonitor selector"
            );
            let endpoint = &pm["spec"]["podMetricsEndpoints"][0];
            assert_eq!(endpoint["port"], "metrics", "{fl}");
            assert_eq!(endpoint["path"], "/metrics", "{fl}");
            // job = the value of the pods' jobLabel: "netagent", as the rules expect.
            let job_label = pm["spec"]["jobLabel"].as_str().unwrap();
            assert_eq!(pod_labels[job_label], "netagent", "{fl}: job label");
        }
    }

    // The validator does reject broken objects (strict schema, CRD schema).
    for (name, doc, complaint) in [
        (
            "daemonset.yaml",
            read("deploy/kubernetes/daemonset.yaml").replace("hostPID: true", "hostPid: true"),
            "hostPid",
        ),
        (
            "podmonitor.yaml",
            read("deploy/kubernetes/podmonitor.yaml").replace("interval: 15s", "interval: 15"),
            "interval",
        ),
    ] {
        let bad = TempDir::new("k8sbad");
        std::fs::write(bad.0.join(name), &doc).unwrap();
        let out = run(
            Command::new(&python)
                .arg(repo().join("scripts/validate-deploy.py"))
                .arg("--tools")
                .arg(tools())
                .args(["--no-chart", "--no-compose", "--manifests"])
                .arg(&bad.0),
            Duration::from_secs(120),
        );
        let log = text(&out);
        assert!(
            !out.status.success() && log.contains(complaint),
            "broken {name} passed:\n{log}"
        );
    }
}

/// The agent configs shipped with the deployments parse, and the pieces that
/// must agree across files do.
#[test]
fn shipped_configs_parse_and_agree() {
    let parse = |text: &str, what: &str| {
        let (cfg, warnings) = netagent::config::Config::parse(text, what)
            .unwrap_or_else(|e| panic!("the agent rejects {what}: {e}"));
        assert!(warnings.is_empty(), "{what}: {warnings:?}");
        cfg
    };
    let cm = yaml(&read("deploy/kubernetes/configmap.yaml"), "configmap");
    parse(
        cm["data"]["config.yaml"].as_str().unwrap(),
        "configmap.yaml",
    );

    // Compose: the agent sends OTLP to the collector's published port, and
    // Prometheus (scraping localhost:9102) finds the agent there.
    let stack = parse(
        &read("deploy/observability/netagent.yaml"),
        "observability/netagent.yaml",
    );
    assert_eq!(stack.otel.endpoint, "http://127.0.0.1:4317");
    assert_eq!(stack.listen_addr().unwrap().port(), 9102);
    let compose = yaml(&read("deploy/observability/compose.yaml"), "compose.yaml");
    let services = &compose["services"];
    assert!(string_set(&services["otel-collector"]["ports"]).contains("127.0.0.1:4317:4317"));
    let agent = &services["netagent"];
    assert_eq!(agent["network_mode"], "host");
    assert_eq!(agent["pid"], "host");
    assert_eq!(
        string_set(&agent["cap_add"]),
        CAPS.iter().map(|c| c.to_string()).collect()
    );
    assert_eq!(string_set(&agent["cap_drop"]), ["ALL".to_string()].into());
    let volumes = string_set(&agent["volumes"]);
    for v in [
        "/sys/fs/cgroup:/sys/fs/cgroup:ro",
        "/sys/kernel/btf:/sys/kernel/btf:ro",
    ] {
        assert!(volumes.contains(v), "compose netagent volumes: {volumes:?}");
    }
    assert!(read("deploy/prometheus/prometheus.yml").contains("localhost:9102"));
    let ds = yaml(
        &read("deploy/observability/grafana/provisioning/datasources/datasources.yaml"),
        "datasources",
    );
    let prom = ds["datasources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "prometheus")
        .expect("a Prometheus data source");
    assert_eq!(
        prom["isDefault"], true,
        "the dashboard's DS_PROMETHEUS picks the default"
    );
    assert!(prom["url"].as_str().unwrap().ends_with(":9090"));

    // One capability set everywhere: unit, Dockerfile, Helm values.
    let unit = read("deploy/systemd/netagent.service");
    let unit_caps = |key: &str| -> BTreeSet<String> {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("unit has no {key}="))
            .split_whitespace()
            .map(|c| c.trim_start_matches("CAP_").to_string())
            .collect()
    };
    let want: BTreeSet<String> = CAPS.iter().map(|c| c.to_string()).collect();
    assert_eq!(unit_caps("CapabilityBoundingSet"), want);
    assert_eq!(unit_caps("AmbientCapabilities"), want);
    let dockerfile = read("Dockerfile");
    let setcap = dockerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("&& setcap "))
        .expect("Dockerfile runs setcap");
    let file_caps: BTreeSet<String> = setcap
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches("+ep")
        .split(',')
        .map(|c| c.trim_start_matches("cap_").to_ascii_uppercase())
        .collect();
    assert_eq!(file_caps, want, "Dockerfile setcap");
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(dockerfile.contains("FROM debian:bookworm-slim"));
    assert!(dockerfile.contains("COPY config.example.yaml /etc/netagent/config.yaml"));
    assert!(dockerfile
        .lines()
        .any(|l| l.starts_with("USER ") && !l.contains("root") && !l.starts_with("USER 0")));
    let values = yaml(&read("deploy/helm/netagent/values.yaml"), "values.yaml");
    assert_eq!(
        string_set(&values["securityContext"]["capabilities"]["add"]),
        want
    );
}

// ------------------------------------------------------------------ systemd

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = read("deploy/systemd/netagent.service");
    let directive = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("unit has no {key}="))
            .to_string()
    };
    assert_eq!(
        directive("ExecStart"),
        "/usr/bin/netagent --config /etc/netagent/config.yaml"
    );
    for (k, v) in [
        ("Restart", "on-failure"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
    ] {
        assert_eq!(directive(k), v, "{k}");
    }
    if !have("systemd-analyze") {
        // Allowed to skip even under CI=true: the CI machine has no systemd.
        eprintln!("SKIP: systemd-analyze not installed; the unit was only checked as text");
        return;
    }
    // verify also checks that ExecStart exists: point it at the built binary.
    let dir = TempDir::new("unit");
    let path = dir.0.join("netagent.service");
    std::fs::write(
        &path,
        unit.replace("ExecStart=/usr/bin/netagent", &format!("ExecStart={AGENT}")),
    )
    .unwrap();
    let out = run(
        Command::new("systemd-analyze").arg("verify").arg(&path),
        Duration::from_secs(60),
    );
    let log = text(&out);
    assert!(out.status.success(), "systemd-analyze verify:\n{log}");
    // Unknown or malformed settings are only warned about ("…, ignoring").
    assert!(
        !log.contains("netagent.service"),
        "systemd-analyze verify warns:\n{log}"
    );

    // Exposure (0 = locked down … 10 = unprotected) at most 5.0.
    let out = run(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=50", "--no-pager"])
            .arg(&path),
        Duration::from_secs(60),
    );
    let log = text(&out);
    let score = log
        .lines()
        .find_map(|l| l.split("netagent.service: ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{log}"));
    assert!(
        out.status.success() && score <= 5.0,
        "exposure {score}:\n{log}"
    );
}

// ------------------------------------------------------------------ .deb

/// Purges the netagent package when dropped (also when the test fails).
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "netagent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn package_installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "netagent"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

#[test]
fn the_deb_package_builds_installs_and_uninstalls() {
    let _g = serial();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let cargo_deb = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !require(
        is_root() && have("dpkg"),
        "needs root and dpkg to install the package",
    ) || !require(
        cargo_deb,
        "cargo-deb not installed (scripts/setup-deploy.sh)",
    ) || !require(
        !package_installed()
            && !Path::new("/usr/bin/netagent").exists()
            && !Path::new("/etc/netagent").exists(),
        "netagent is already installed on this machine; not touching it",
    ) {
        return;
    }
    let block = read("deploy/debian/cargo-deb.toml");
    assert!(
        read("Cargo.toml").contains(block.trim()),
        "Cargo.toml lacks the [package.metadata.deb] block: append deploy/debian/cargo-deb.toml to it"
    );

    // Package the binary this test run built (target/debug/netagent, the
    // dev profile; `cargo deb` proper builds and packages the release one),
    // so the test needs no release build. cargo-deb 3.8 warns about dev.
    let out_dir = TempDir::new("deb");
    let out = run(
        Command::new(&cargo)
            .args([
                "deb",
                "--no-build",
                "--locked",
                "--profile",
                "dev",
                "--fast",
                "--output",
            ])
            .arg(&out_dir.0)
            .current_dir(repo()),
        Duration::from_secs(150),
    );
    assert!(out.status.success(), "cargo deb:\n{}", text(&out));
    let deb = std::fs::read_dir(&out_dir.0)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb");
    let contents = text(&run(
        Command::new("dpkg-deb").arg("-c").arg(&deb),
        Duration::from_secs(60),
    ));
    for f in [
        "./usr/bin/netagent",
        "./lib/systemd/system/netagent.service",
        "./etc/netagent/config.yaml",
    ] {
        assert!(contents.contains(f), "{f} not in the package:\n{contents}");
    }

    let _installed = Installed;
    let out = run(
        Command::new("dpkg").arg("-i").arg(&deb),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "dpkg -i:\n{}", text(&out));
    let version = run(
        Command::new("/usr/bin/netagent").arg("--version"),
        Duration::from_secs(30),
    );
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("netagent {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        std::fs::read_to_string("/etc/netagent/config.yaml").unwrap(),
        read("config.example.yaml")
    );
    assert_eq!(
        std::fs::read_to_string("/lib/systemd/system/netagent.service").unwrap(),
        read("deploy/systemd/netagent.service")
    );
    let conffiles = run(
        Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "netagent"]),
        Duration::from_secs(30),
    );
    assert!(
        String::from_utf8_lossy(&conffiles.stdout).contains("/etc/netagent/config.yaml"),
        "not a conffile: {}",
        text(&conffiles)
    );

    // Remove keeps the (conf)figuration, purge removes it.
    let out = run(
        Command::new("dpkg").args(["-r", "netagent"]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "dpkg -r:\n{}", text(&out));
    assert!(!Path::new("/usr/bin/netagent").exists());
    assert!(Path::new("/etc/netagent/config.yaml").exists());
    let out = run(
        Command::new("dpkg").args(["--purge", "netagent"]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "dpkg --purge:\n{}", text(&out));
    assert!(!Path::new("/etc/netagent").exists());
    assert!(!Path::new("/lib/systemd/system/netagent.service").exists());
    assert!(!package_installed());
    // cargo-deb's (empty) staging directory.
    let _ = std::fs::remove_dir(repo().join("target/netagent"));
}

// ------------------------------------------------------------------ smoke test

#[test]
fn the_smoke_test_script_passes_and_fails_and_cleans_up() {
    let _g = serial();
    if !require_bpf() || !require(have("curl") && have("python3"), "needs curl and python3") {
        return;
    }
    let script = repo().join("scripts/smoke-test.sh");
    let leftovers = || -> BTreeSet<String> {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("netagent-smoke."))
            .collect()
    };
    let before = leftovers();
    let out = run(
        Command::new("bash").arg(&script).env("NETAGENT_BIN", AGENT),
        Duration::from_secs(120),
    );
    let log = text(&out);
    assert!(out.status.success(), "smoke test failed:\n{log}");
    assert!(log.contains("OK: 5 connects counted"), "{log}");
    assert!(
        log.contains("netagent_connect_total{process=\"curl\""),
        "{log}"
    );

    // An "agent" that exits at once: the script must fail, not hang.
    let out = run(
        Command::new("bash")
            .arg(&script)
            .env("NETAGENT_BIN", "/bin/false"),
        Duration::from_secs(60),
    );
    assert!(
        !out.status.success(),
        "smoke test passed without an agent:\n{}",
        text(&out)
    );
    assert_eq!(leftovers(), before, "smoke test left temporary directories");
}

// ------------------------------------------------------------------ least privilege

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The deployments (systemd unit, container image, DaemonSet, Helm chart,
/// compose) give the agent CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN (and
/// CAP_SYS_RESOURCE) and nothing else. Under exactly that set it must count
/// traffic and report itself healthy: /health is the Kubernetes liveness and
/// readiness probe, and netagent_probe_up == 0 fires NetagentProbeDown.
#[test]
fn the_agent_is_healthy_with_only_the_capabilities_the_deployments_grant() {
    let _g = serial();
    if !require_bpf() || !require(have("setpriv"), "setpriv (util-linux) not installed") {
        return;
    }
    // setpriv cannot grant what this process lacks (CAP_SYS_RESOURCE may be
    // missing in a container; the agent needs it only before Linux 5.11).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap();
    let bits = [
        ("BPF", 39),
        ("PERFMON", 38),
        ("NET_ADMIN", 12),
        ("SYS_RESOURCE", 24),
    ];
    let granted: Vec<(&str, u32)> = bits
        .into_iter()
        .filter(|(name, bit)| *name != "SYS_RESOURCE" || bounding & (1u64 << bit) != 0)
        .collect();
    let spec = std::iter::once("-all".to_string())
        .chain(
            granted
                .iter()
                .map(|(n, _)| format!("+{}", n.to_ascii_lowercase())),
        )
        .collect::<Vec<_>>()
        .join(",");
    let mask: u64 = granted.iter().map(|(_, b)| 1u64 << b).sum();

    let dir = TempDir::new("leastpriv");
    let port = free_port();
    let cfg = dir.0.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "targets:\n  - name: \"lpcli\"\n    match_comm: \"nettest-lpcli\"\n\
             export:\n  listen_addr: \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    // As in the unit: root's uid, only these capabilities, no_new_privs.
    let mut agent = Killed(
        Command::new("setpriv")
            .arg("--no-new-privs")
            .arg(format!("--bounding-set={spec}"))
            .arg(format!("--inh-caps={spec}"))
            .arg(format!("--ambient-caps={spec}"))
            .arg(AGENT)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("setpriv"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            panic!("agent with capabilities {spec} exited: {s}");
        }
        match http_get(port, "/health", None) {
            Ok(_) => break,
            Err(e) if e.starts_with("HTTP/1.1") => break,
            Err(_) => {}
        }
        assert!(Instant::now() < deadline, "agent not serving within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let eff = std::fs::read_to_string(format!("/proc/{}/status", agent.0.id()))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("CapEff:")
                .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        })
        .unwrap();
    assert_eq!(eff, mask, "the agent runs with exactly {spec}");

    let srv = Server::start("nettest-lpsrv", &["--tcp4", "0"]);
    testgen(
        "nettest-lpcli",
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{}", srv.port("tcp4")),
            "--connects",
            "3",
        ],
    );
    let m = Metrics::parse(&http_get(port, "/metrics", None).expect("scrape"));
    assert_eq!(
        m.get(
            "netagent_connect_total",
            &[
                ("process", "lpcli"),
                ("proto", "tcp"),
                ("dport", &srv.port("tcp4").to_string())
            ]
        ),
        3.0,
        "connects counted under {spec}"
    );
    let detached: Vec<String> = m
        .series("netagent_probe_up")
        .into_iter()
        .filter(|(_, v)| *v != 1.0)
        .map(|(l, _)| l["probe"].clone())
        .collect();
    assert!(
        detached.is_empty(),
        "with only {spec} the agent reports attached probes as detached: {detached:?} \
         (probe state must not need CAP_SYS_ADMIN)"
    );
    let health = http_get(port, "/health", None);
    assert!(
        health
            .as_ref()
            .is_ok_and(|b| b.contains("\"status\":\"ok\"")),
        "/health under {spec}: {health:?}"
    );
}
