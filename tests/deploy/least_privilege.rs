//! The agent under exactly the capabilities the deployments grant
//! (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and, where the kernel needs it,
//! CAP_SYS_RESOURCE): it counts traffic, keeps its probes attached and
//! reports itself healthy.

use crate::common::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
