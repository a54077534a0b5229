//! Overload and abrupt death: the agent under more events than it can
//! carry, and killed with SIGKILL in the middle of a load.
//!
//! * A span ring buffer of one page (`limits.span_ring_bytes: 4096`) with
//!   OTLP traces on and a burst of request/response exchanges: spans are
//!   lost and counted (`netagent_events_lost_total{reason="ringbuf_full"}`),
//!   while the counters, which live in kernel maps and never pass through
//!   the ring, stay exact; the agent keeps serving.
//! * SIGKILL under load: the kernel releases every program and link the
//!   agent held (nothing is pinned), and a new agent counts exactly again.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    bpftool_show, free_port, have, http_get, our_prog_ids, require, require_bpf, serial, testgen,
    testgen_exe, Agent, Metrics, Server,
};

/// Sum of the series of `name` whose labels include all of `labels`.
fn sum(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.sum(name, labels)
}

/// Scrapes until `f` holds, at most `secs` seconds.
fn eventually(agent: &Agent, secs: u64, what: &str, f: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let m = agent.metrics();
        if f(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {secs} s\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tiny_span_ring_loses_spans_but_counts_exactly() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    // Spans are only produced for an OTLP endpoint; nothing listens on
    // this one, so their export fails too (counted, never blocking).
    let dead = free_port();
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: cli\n    match_comm: ovl-cli\n\
         limits:\n  span_ring_bytes: 4096\n\
         otel:\n  endpoint: \"http://127.0.0.1:{dead}\"\n"
    ));
    let server = Server::start("ovl-srv", &["--tcp4", "0"]);
    let port = server.port("tcp4");
    let target = format!("127.0.0.1:{port}");
    let lost_spans =
        |m: &Metrics| m.get("netagent_events_lost_total", &[("reason", "ringbuf_full")]);

    // Bursts of 4 concurrent clients x 5000 exchanges (a span each) until
    // the one-page ring has overflowed; the first burst does it in practice.
    let (mut connects, mut exchanges) = (0u64, 0u64);
    for _ in 0..5 {
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let target = target.clone();
                std::thread::spawn(move || {
                    testgen(
                        "ovl-cli",
                        &[
                            "client",
                            "--tcp4",
                            &target,
                            "--connects",
                            "50",
                            "--exchanges",
                            "5000",
                        ],
                    )
                })
            })
            .collect();
        for c in clients {
            let v = c.join().expect("client thread");
            let t = &v["tcp4"];
            assert_eq!(t["connects_failed"], 0, "{v}");
            assert_eq!(t["exchanges"], 5000, "{v}");
            // The exchanges run on one more connection of their own.
            connects += t["connects_ok"].as_u64().unwrap() + 1;
            exchanges += 5000;
        }
        if lost_spans(&agent.metrics()) > 0.0 {
            break;
        }
    }

    let p = port.to_string();
    let edge = [
        ("process", "cli"),
        ("proto", "tcp"),
        ("dport", p.as_str()),
        ("dst_ip", "127.0.0.1"),
    ];
    let m = eventually(&agent, 5, "request/response durations counted", |m| {
        sum(m, "netagent_tx_duration_seconds_count", &edge) >= exchanges as f64
    });
    let lost = lost_spans(&m);
    assert!(
        lost > 0.0,
        "a 4 KiB ring should overflow: {}",
        agent.stderr()
    );
    eprintln!("{exchanges} exchanges, {lost} spans lost to ringbuf_full");
    assert_eq!(
        sum(&m, "netagent_connect_total", &edge[..3]),
        connects as f64,
        "connects exact"
    );
    assert_eq!(
        sum(&m, "netagent_edge_total", &edge),
        connects as f64,
        "edges exact"
    );
    assert_eq!(
        sum(&m, "netagent_tx_duration_seconds_count", &edge),
        exchanges as f64,
        "one request->response per exchange, counted in the kernel"
    );
    for reason in ["flow_map_full", "histogram_map_full", "sock_storage_full"] {
        assert_eq!(
            m.get("netagent_events_lost_total", &[("reason", reason)]),
            0.0,
            "{reason}"
        );
    }

    // Still serving, still alive, a second later (exports keep failing).
    std::thread::sleep(Duration::from_secs(1));
    let health = http_get(agent.port, "/health", None).expect("/health answers 200");
    let h: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(h["status"], "ok", "{h}");
    assert!(h["events_lost"].as_f64().unwrap_or(0.0) >= lost, "{h}");
    let mut agent = agent;
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "agent exited: {}",
        agent.stderr()
    );
    assert!(!agent.stderr().contains("panicked"), "{}", agent.stderr());
}

/// BPF program and link ids held by a process (from its fdinfo).
fn held_bpf(pid: u32) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let (mut progs, mut links) = (BTreeSet::new(), BTreeSet::new());
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let field = |name: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        if let Some(id) = field("link_id:") {
            links.insert(id);
        }
        if let Some(id) = field("prog_id:") {
            progs.insert(id);
        }
    }
    (progs, links)
}

/// Ids listed by `bpftool -j <kind> show`.
fn loaded(kind: &str) -> BTreeSet<u64> {
    bpftool_show(kind).into_iter().map(|(id, _)| id).collect()
}

/// A background process, killed on drop.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigkill_under_load_leaves_nothing_and_restart_counts() {
    let _g = serial();
    if !require_bpf() || !require(have("bpftool"), "bpftool not installed") {
        return;
    }
    let server = Server::start("ovl-srv", &["--tcp4", "0"]);
    let port = server.port("tcp4");
    let target = format!("127.0.0.1:{port}");
    let p = port.to_string();
    let targets = [("load", "ovl-load"), ("fresh", "ovl-fresh")];
    let mut agent = Agent::start(&targets);
    let (progs, links) = held_bpf(agent.child.id());
    assert!(progs.len() >= 10, "programs held: {progs:?}");
    assert!(links.len() >= 10, "links held: {links:?}");
    let ours: BTreeSet<u64> = our_prog_ids().into_iter().collect();
    assert!(progs.is_subset(&ours), "{progs:?} vs {ours:?}");

    // 5 s of connection churn at 5000/s; kill the agent in the middle.
    let mut load = Background(
        Command::new(testgen_exe())
            .args(["--comm", "ovl-load", "load", "--tcp", &target])
            .args(["--rate", "5000", "--seconds", "5"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start testgen load"),
    );
    let load_connects = [("process", "load"), ("proto", "tcp"), ("dport", p.as_str())];
    eventually(&agent, 5, "load under way", |m| {
        sum(m, "netagent_connect_total", &load_connects) >= 2000.0
    });
    let status = agent.signal_and_wait(libc::SIGKILL);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert!(
        load.0.try_wait().unwrap().is_none(),
        "the load should still be running"
    );

    // The kernel frees programs and links once their last fd is gone
    // (asynchronously after the exit).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left_progs: Vec<u64> = loaded("prog").intersection(&progs).copied().collect();
        let left_links: Vec<u64> = loaded("link").intersection(&links).copied().collect();
        if left_progs.is_empty() && left_links.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still loaded 10 s after SIGKILL: programs {left_progs:?}, links {left_links:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let ours_now: BTreeSet<u64> = our_prog_ids().into_iter().collect();
    assert!(ours_now.is_disjoint(&progs), "{ours_now:?}");

    // A new agent, while the load still runs, counts exactly again.
    let agent = Agent::start(&targets);
    let v = testgen(
        "ovl-fresh",
        &["client", "--tcp4", &target, "--connects", "10"],
    );
    assert_eq!(v["tcp4"]["connects_ok"], 10, "{v}");
    let fresh = [
        ("process", "fresh"),
        ("proto", "tcp"),
        ("dport", p.as_str()),
    ];
    let m = eventually(&agent, 5, "fresh connects counted", |m| {
        sum(m, "netagent_connect_total", &fresh) >= 10.0
    });
    assert_eq!(sum(&m, "netagent_connect_total", &fresh), 10.0);
    let mut edge = fresh.to_vec();
    edge.push(("dst_ip", "127.0.0.1"));
    assert_eq!(sum(&m, "netagent_edge_total", &edge), 10.0);

    // The load ends on its own (5 s plus testgen's 2 s hard stop).
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = load.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "testgen load did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "testgen load: {status}");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut load.0.stdout.take().unwrap(), &mut out).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap();
    assert!(summary["ok"].as_u64().unwrap() > 10_000, "{summary}");
}
