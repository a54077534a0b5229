//! Hook fallbacks: the same traffic scenario counted exactly through the
//! preferred message hook (tracepoints) and through the last-resort one
//! (raw syscall hooks), forced by `debug.disable_probes`; a feature with no
//! hook left is reported unavailable while the rest keeps counting; and
//! `netagent probe` names what it would use.
//! (fexit and kprobe cannot load on this host's kernel; they are exercised
//! by the qemu kernel matrix on Debian's 6.1.)

mod common;
use common::*;

use std::process::Command;

const CLIENT: &str = "nettest-cli";
const SERVER: &str = "nettest-srv";
const TARGETS: &str = "targets:\n  - name: cli\n    match_comm: nettest-cli\n  \
                       - name: srv\n    match_comm: nettest-srv\n";

/// Runs known traffic and checks every count the message and connection
/// features produce.
fn scenario(agent: &Agent) {
    let plain = Server::start(SERVER, &["--tcp4", "0", "--tcp6", "0", "--udp4", "0"]);
    let slow = Server::start(SERVER, &["--tcp4", "0", "--udp6", "0", "--delay-ms", "35"]);
    let sink = Server::start(SERVER, &["--tcp4", "0", "--udp6", "0", "--sink"]);
    let (p4, p6, pu4) = (plain.port("tcp4"), plain.port("tcp6"), plain.port("udp4"));
    let (s4, su6) = (slow.port("tcp4"), slow.port("udp6"));
    let (k4, ku6) = (sink.port("tcp4"), sink.port("udp6"));
    let closed = free_port();
    let (n4, n6, udp, exchanges, bulk, dgrams, size) = (13, 7, 9, 6, 100_000u64, 20u64, 300u64);

    let client = |args: &[&str]| testgen(CLIENT, &[&["client"], args].concat());
    client(&[
        "--tcp4",
        &format!("127.0.0.1:{p4}"),
        "--connects",
        &n4.to_string(),
    ]);
    client(&[
        "--tcp6",
        &format!("[::1]:{p6}"),
        "--connects",
        &n6.to_string(),
    ]);
    client(&[
        "--udp4",
        &format!("127.0.0.1:{pu4}"),
        "--sends",
        &udp.to_string(),
    ]);
    client(&[
        "--tcp4",
        &format!("127.0.0.1:{s4}"),
        "--udp6",
        &format!("[::1]:{su6}"),
        "--exchanges",
        &exchanges.to_string(),
    ]);
    client(&[
        "--tcp4",
        &format!("127.0.0.1:{k4}"),
        "--bulk",
        &bulk.to_string(),
    ]);
    client(&[
        "--udp6",
        &format!("[::1]:{ku6}"),
        "--sends",
        &dgrams.to_string(),
        "--size",
        &size.to_string(),
    ]);
    let refused = Command::new(testgen_exe())
        .args(["--comm", CLIENT, "client", "--tcp4"])
        .arg(format!("127.0.0.1:{closed}"))
        .args(["--connects", "2"])
        .output()
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(1),
        "connects to a closed port fail"
    );
    std::thread::sleep(std::time::Duration::from_millis(300)); // sinks read the last bytes

    let m = agent.metrics();
    let get = |name: &str, labels: &[(&str, &str)]| m.get(name, labels);
    let port = |p: u16| p.to_string();
    let connects = |proto: &str, p: u16| {
        get(
            "netagent_connect_total",
            &[("process", "cli"), ("proto", proto), ("dport", &port(p))],
        )
    };
    assert_eq!(connects("tcp", p4), n4 as f64, "IPv4 connects");
    assert_eq!(connects("tcp", p6), n6 as f64, "IPv6 connects");
    assert_eq!(connects("udp", pu4), udp as f64, "UDP datagrams");
    assert_eq!(
        get(
            "netagent_edge_total",
            &[
                ("process", "cli"),
                ("proto", "udp"),
                ("dport", &port(pu4)),
                ("dst_ip", "127.0.0.1")
            ]
        ),
        udp as f64,
        "unconnected sendto() peers"
    );
    for (proto, p, ip) in [("tcp", s4, "127.0.0.1"), ("udp", su6, "::1")] {
        let p = port(p);
        let labels = [
            ("process", "cli"),
            ("proto", proto),
            ("dport", p.as_str()),
            ("dst_ip", ip),
        ];
        assert_eq!(
            get("netagent_tx_duration_seconds_count", &labels),
            exchanges as f64,
            "{proto} send->recv durations"
        );
        let mut le = labels.to_vec();
        le.push(("le", "0.025"));
        assert_eq!(get("netagent_tx_duration_seconds_bucket", &le), 0.0);
    }
    let bytes = |name: &str, process: &str, proto: &str, p: u16| -> f64 {
        m.series(name)
            .iter()
            .filter(|(l, _)| {
                l["process"] == process && l["proto"] == proto && l["dport"] == port(p)
            })
            .map(|(_, v)| v)
            .sum()
    };
    assert_eq!(
        bytes("netagent_bytes_sent_total", "cli", "tcp", k4),
        bulk as f64
    );
    assert_eq!(
        bytes("netagent_bytes_received_total", "srv", "tcp", k4),
        bulk as f64
    );
    assert_eq!(
        bytes("netagent_bytes_sent_total", "cli", "udp", ku6),
        (dgrams * size) as f64
    );
    assert_eq!(
        bytes("netagent_bytes_received_total", "srv", "udp", ku6),
        (dgrams * size) as f64
    );
    let refused: f64 = m
        .series("netagent_tcp_connect_failed_total")
        .iter()
        .filter(|(l, _)| {
            l["process"] == "cli"
                && l["dport"] == port(closed)
                && l["dst_ip"] == "127.0.0.1"
                && l["reason"] == "refused"
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(refused, 2.0, "refused connects");
    for (labels, v) in m.series("netagent_events_lost_total") {
        assert_eq!(v, 0.0, "lost events {labels:?}");
    }
}

fn messages_hook(agent: &Agent) -> String {
    let (_, health) = health(agent.port);
    let f = health["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == "messages")
        .cloned()
        .unwrap();
    f["hook"].as_str().unwrap_or("none").to_string()
}

#[test]
fn tracepoint_hooks_count_the_scenario_exactly() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let agent = Agent::start_with_yaml(TARGETS);
    assert_eq!(messages_hook(&agent), "tracepoint");
    let m = agent.metrics();
    assert_eq!(
        m.get(
            "netagent_probe_info",
            &[("feature", "messages"), ("hook", "tracepoint")]
        ),
        1.0
    );
    scenario(&agent);
}

#[test]
fn syscall_fallback_counts_the_same_scenario_exactly() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    // Tracepoints off; fexit and kprobes do not load here: raw syscalls.
    let agent = Agent::start_with_yaml(&format!(
        "{TARGETS}debug:\n  disable_probes: [\"messages:tracepoint\", \"messages:fexit\", \
         \"messages:kprobe\"]\n"
    ));
    assert_eq!(messages_hook(&agent), "syscalls");
    let m = agent.metrics();
    assert_eq!(
        m.get(
            "netagent_probe_info",
            &[("feature", "messages"), ("hook", "syscalls")]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "netagent_probe_up",
            &[
                ("feature", "messages"),
                ("probe", "tracepoint/raw_syscalls:sys_enter")
            ]
        ),
        1.0
    );
    scenario(&agent);
}

#[test]
fn a_feature_without_any_hook_is_unavailable_and_the_rest_counts() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let agent = Agent::start_with_yaml(&format!(
        "{TARGETS}debug:\n  disable_probes: [\"messages:tracepoint\", \"messages:fexit\", \
         \"messages:kprobe\", \"messages:syscalls\"]\n"
    ));
    assert_eq!(messages_hook(&agent), "none");
    let (status, health) = health(agent.port);
    assert_eq!(status, 503, "{health}");
    let messages = health["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == "messages")
        .unwrap();
    assert_eq!(messages["available"], false);
    assert_eq!(
        messages["rejected"].as_array().unwrap().len(),
        4,
        "{messages}"
    );

    let srv = Server::start(SERVER, &["--tcp4", "0"]);
    let p = srv.port("tcp4").to_string();
    testgen(
        CLIENT,
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{p}"),
            "--connects",
            "5",
        ],
    );
    let m = agent.metrics();
    assert_eq!(
        m.get(
            "netagent_connect_total",
            &[("process", "cli"), ("proto", "tcp"), ("dport", &p)]
        ),
        5.0
    );
    assert_eq!(
        m.get(
            "netagent_probe_info",
            &[("feature", "messages"), ("hook", "none")]
        ),
        1.0
    );
    let up: Vec<f64> = m
        .series("netagent_probe_up")
        .into_iter()
        .filter(|(l, _)| l["feature"] == "messages")
        .map(|(_, v)| v)
        .collect();
    assert!(!up.is_empty() && up.iter().all(|v| *v == 0.0), "{up:?}");
    assert!(m.series("netagent_bytes_sent_total").is_empty());
}

#[test]
fn probe_command_names_the_hook_of_each_feature() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_netagent"))
        .arg("probe")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("connections      tracepoint  ok, used"),
        "{text}"
    );
    assert!(
        text.contains("messages         tracepoint  ok, used"),
        "{text}"
    );
    // On this kernel fexit is refused (EPERM) and kprobes do not exist.
    assert!(
        text.contains("messages         fexit       rejected:"),
        "{text}"
    );
    assert!(
        text.contains("messages         kprobe      rejected:"),
        "{text}"
    );
    assert!(
        text.contains("messages         syscalls    ok (fallback"),
        "{text}"
    );
    // The seeding iterator (sockets older than the agent) loads and runs.
    assert!(
        text.contains("seed             iter        ok, used"),
        "{text}"
    );
    assert!(text.contains("core features: ok"), "{text}");
    // Each hook row is followed by its exact programs: ELF section (which
    // kernel hook) and program name.
    for line in [
        "tp_btf/inet_sock_set_state (on_inet_sock_set_state)",
        "tp_btf/sock_send_length (on_sock_send_length)",
        "kretprobe/inet6_recvmsg (krp_inet6_recvmsg)",
        "fexit/inet_sendmsg (fx_inet_sendmsg)",
        "cgroup/sendmsg4 (on_sendmsg4)",
        "tp_btf/mark_victim (on_mark_victim)",
        "classifier (on_tc_ingress)",
        "iter/tcp (seed_tcp_sockets)",
    ] {
        assert!(
            text.contains(&format!("{:28} {line}\n", "")),
            "{line}: {text}"
        );
    }

    // The same as JSON: one object per tried hook, with its probes.
    let out = Command::new(env!("CARGO_BIN_EXE_netagent"))
        .args(["probe", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["core_ok"], true);
    let hook = |feature: &str, kind: &str| -> serde_json::Value {
        v["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["feature"] == feature && h["hook"] == kind)
            .cloned()
            .unwrap_or_else(|| panic!("{feature}/{kind} missing: {v:#}"))
    };
    let conn = hook("connections", "tracepoint");
    assert_eq!(conn["status"], "used");
    assert_eq!(
        conn["probes"],
        serde_json::json!([{
            "name": "tracepoint/sock:inet_sock_set_state",
            "section": "tp_btf/inet_sock_set_state",
            "program": "on_inet_sock_set_state",
        }])
    );
    let fexit = hook("messages", "fexit");
    assert_eq!(fexit["status"], "rejected");
    assert!(fexit["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(hook("messages", "syscalls")["status"], "fallback");
    assert_eq!(hook("oom_kills", "tracepoint")["status"], "used");
    assert_eq!(hook("interfaces", "tc")["status"], "used");

    // A disabled hook shows why, and the next one is used.
    let dir = TempDir::new("probe");
    let cfg = dir.0.join("config.yaml");
    std::fs::write(
        &cfg,
        "debug:\n  disable_probes: [\"messages:tracepoint\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_netagent"))
        .args(["--config"])
        .arg(&cfg)
        .arg("probe")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("messages         tracepoint  rejected: messages:tracepoint disabled"),
        "{text}"
    );
    assert!(
        text.contains("messages         syscalls    ok, used"),
        "{text}"
    );
    // Nothing of the trials is left loaded (the kernel frees programs once
    // their last descriptor closes, which can take a moment).
    let leftover = || {
        bpftool_programs()
            .into_iter()
            .map(|(_, name)| name)
            .filter(|n| {
                ["fx_inet", "kp_inet", "krp_inet", "on_sys_e"]
                    .iter()
                    .any(|f| n.starts_with(f))
            })
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !leftover().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        leftover().is_empty(),
        "trial programs left: {:?}",
        leftover()
    );
}

#[test]
fn an_external_btf_file_is_used_and_a_missing_one_is_named() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let dir = TempDir::new("btf");
    let run = |btf: &str| {
        let cfg = dir.0.join("config.yaml");
        std::fs::write(&cfg, format!("kernel:\n  btf_path: \"{btf}\"\n")).unwrap();
        Command::new(env!("CARGO_BIN_EXE_netagent"))
            .arg("--config")
            .arg(&cfg)
            .arg("probe")
            .output()
            .unwrap()
    };
    // A copy of the kernel's BTF in a file of our own works like the original.
    let copy = dir.0.join("vmlinux.btf");
    std::fs::copy("/sys/kernel/btf/vmlinux", &copy).unwrap();
    let out = run(copy.to_str().unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("BTF {}", copy.display())), "{text}");
    assert!(
        text.contains("connections      tracepoint  ok, used"),
        "{text}"
    );

    let missing = dir.0.join("absent.btf");
    let out = run(missing.to_str().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("kernel.btf_path") && err.contains("absent.btf"),
        "{err}"
    );
}
