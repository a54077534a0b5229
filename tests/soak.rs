//! Soak: sustained connection churn over many distinct peers. The agent's
//! memory must stay flat, counts exact, nothing lost, and the kernel's
//! per-socket state must go away with the sockets.
//!
//! CI runs a short form (20 s, 4,000 peers). The full run:
//!   NETAGENT_SOAK_SECONDS=600 cargo test --release --test soak -- --nocapture
//! (>= 1,000,000 connections over 50,000 peer addresses at 2,000/s).

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// TCP sockets allocated in the kernel (/proc/net/sockstat `TCP: … alloc N`).
fn tcp_sockets() -> u64 {
    let s = std::fs::read_to_string("/proc/net/sockstat").unwrap();
    let line = s.lines().find(|l| l.starts_with("TCP:")).unwrap();
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == "alloc" {
            return it.next().unwrap().parse().unwrap();
        }
    }
    panic!("no TCP alloc in {line}");
}

#[test]
fn churn_over_many_peers_keeps_memory_flat_and_counts_exact() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let seconds: u64 = std::env::var("NETAGENT_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    // Every peer is first seen during warm-up (the first fifth), so RSS is
    // compared at steady state: 50,000 peers in the full run, fewer in the
    // short one.
    let rate = 2000u64;
    let peers = (rate * seconds / 10).min(50_000) as u32;
    let sockets_before = tcp_sockets();
    // Room for every key: per peer one counter key and three histogram
    // kinds (connect time, lifetime, RTT) in the histogram map.
    let max_series = (peers as u64 * 4).next_power_of_two().max(16384);
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: soak\n    match_comm: nettest-soak\nlimits:\n  max_series: {max_series}\n"
    ));
    let max = (seconds + 120).to_string();
    let srv = Server::start(
        "nettest-srv",
        &["--tcp4", "0", "--bind4", "0.0.0.0", "--max-seconds", &max],
    );
    let port = srv.port("tcp4");
    let mut load = Command::new(testgen_exe())
        .args([
            "--comm",
            "nettest-soak",
            "load",
            "--tcp",
            &format!("127.1.0.0:{port}"),
        ])
        .args(["--spread", &peers.to_string(), "--rate", &rate.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();

    // Scrape every second like a busy Prometheus; note RSS after warm-up
    // (a fifth of the run) and at the end.
    let pid = agent.child.id();
    let started = Instant::now();
    let warm_up = Duration::from_secs(seconds / 5);
    let mut rss_warm = None;
    let mut slowest = Duration::ZERO;
    while load.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(seconds + 60),
            "load did not stop"
        );
        let t = Instant::now();
        agent.scrape();
        slowest = slowest.max(t.elapsed());
        if rss_warm.is_none() && started.elapsed() >= warm_up {
            rss_warm = Some(rss_kib(pid));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let out = load.wait_with_output().unwrap();
    let r: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(r["failed"], 0, "{r}");
    let attempts = r["attempts"].as_u64().unwrap();
    agent.scrape();
    let rss_end = rss_kib(pid);
    let rss_warm = rss_warm.expect("warm-up RSS");
    eprintln!(
        "soak: {attempts} connects over {peers} peers in {seconds} s; RSS {rss_warm} -> {rss_end} KiB; \
         slowest scrape during the load {slowest:?}"
    );

    let m = agent.metrics();
    let counted = m.get(
        "netagent_connect_total",
        &[
            ("process", "soak"),
            ("proto", "tcp"),
            ("dport", &port.to_string()),
        ],
    );
    assert_eq!(counted, attempts as f64, "every connect counted");
    let lost: f64 = m
        .series("netagent_events_lost_total")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(lost, 0.0, "nothing lost");
    let distinct = attempts.min(peers as u64) as f64;
    let kept = m
        .series("netagent_edge_total")
        .iter()
        .filter(|(l, _)| l["dst_ip"] != "~other")
        .count() as f64;
    let folded = m.get(
        "netagent_series_dropped_total",
        &[("metric", "netagent_edge")],
    );
    assert_eq!(
        kept + folded,
        distinct,
        "one edge per peer, kept or folded into ~other"
    );
    assert!(
        rss_end as f64 <= rss_warm as f64 * 1.05,
        "RSS grew from {rss_warm} KiB after warm-up to {rss_end} KiB"
    );
    // The kernel's TCP socket state is deleted at close: none is left of
    // the churn's connections (nothing of the tracked process is open).
    wait_map_empty(pid, "tcp_socks");
    // And the kernel's sockets are gone too.
    drop(srv);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tcp_sockets() > sockets_before + 16 {
        assert!(
            Instant::now() < deadline,
            "TCP sockets {} vs {sockets_before} before",
            tcp_sockets()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
