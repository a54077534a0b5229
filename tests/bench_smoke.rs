//! The performance suite's smoke mode (`scripts/bench/run.sh --smoke`) on
//! the binaries of this build: every workload under every configuration
//! (no tracer, netagent default and all features, bpftrace, tcpstates),
//! the exact-count run and each scaling curve must produce figures, with no
//! error, and the suite must leave no namespace, mount or program behind.
//!
//! Bounded: the suite gets 10 minutes (it takes about two).

mod common;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SUITE_TIMEOUT: Duration = Duration::from_secs(600);
const TOOLS: [&str; 9] = [
    "nginx",
    "wrk",
    "sockperf",
    "iperf3",
    "bpftrace",
    "tcpstates",
    "bpftool",
    "ip",
    "python3",
];
const WORKLOADS: [&str; 6] = [
    "churn",
    "keepalive",
    "udp_rr",
    "bulk",
    "churn_netns",
    "udp_drop",
];
const CONFIGS: [&str; 5] = [
    "none",
    "netagent-default",
    "netagent-all",
    "bpftrace",
    "tcpstates",
];

/// The running suite; SIGTERM on drop lets it clean up (bounded), then SIGKILL.
struct Suite(Child);

impl Drop for Suite {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn tracefs_mounted() -> bool {
    Path::new("/sys/kernel/tracing/events").exists()
}

fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn smoke_run_fills_every_row_and_leaves_nothing_behind() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    for tool in TOOLS {
        if !require(
            have(tool),
            &format!("needs {tool} (scripts/setup.sh --bench)"),
        ) {
            return;
        }
    }
    let tracefs_before = tracefs_mounted();
    let dir = TempDir::new("bench-smoke");
    let out_dir = dir.0.join("out");
    let root = env!("CARGO_MANIFEST_DIR");
    let started = Instant::now();
    let mut suite = Suite(
        Command::new(format!("{root}/scripts/bench/run.sh"))
            .args(["--smoke", "--out"])
            .arg(&out_dir)
            .args(["--agent", AGENT, "--testgen", testgen_exe()])
            .env("NETAGENT_BENCH_NO_BUILD", "1")
            .current_dir(root)
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start scripts/bench/run.sh"),
    );
    let status = loop {
        if let Some(s) = suite.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < SUITE_TIMEOUT,
            "suite still running after {SUITE_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("bench smoke took {:?}", started.elapsed());
    let json = std::fs::read_to_string(out_dir.join("results.json")).expect("results.json");
    let r: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(r["errors"], serde_json::json!([]), "suite errors");
    assert!(status.success(), "suite exited with {status}");

    // Every workload x configuration has a row with real figures, and no
    // more rows than that.
    let table = r["table"].as_array().expect("table");
    assert_eq!(
        table.len(),
        WORKLOADS.len() * CONFIGS.len(),
        "rows: {:?}",
        table
            .iter()
            .map(|g| format!("{}/{}", g["workload"], g["config"]))
            .collect::<Vec<_>>()
    );
    for w in WORKLOADS {
        for c in CONFIGS {
            let row = table
                .iter()
                .find(|g| g["workload"] == w && g["config"] == c)
                .unwrap_or_else(|| panic!("no row for {w} / {c}"));
            eprintln!(
                "{w}/{c}: rate {:.0}/s ratio {:.3} lost {} {}",
                num(row, "rate"),
                num(row, "ratio"),
                row["lost"],
                row["lost_reasons"]
            );
            assert!(num(row, "rate") > 0.0, "{w}/{c}: no throughput: {row}");
            if c == "none" {
                assert_eq!(num(row, "ratio"), 1.0, "{row}");
                continue;
            }
            // Throughput against no tracer: noisy on a shared machine, but a
            // ratio outside 0.05..5 is a broken run, not noise.
            let ratio = num(row, "ratio");
            assert!(
                (0.05..=5.0).contains(&ratio),
                "{w}/{c}: ratio {ratio} is not a measurement: {row}"
            );
            assert!(num(row, "hwm_mib") > 0.0, "{w}/{c}: no peak RSS: {row}");
            let lost = row["lost"].as_u64().expect("lost");
            match c {
                // The default config counts in kernel maps only: nothing
                // may be lost, whatever the load.
                "netagent-default" => assert_eq!(lost, 0, "{w}/{c}: {row}"),
                // With every feature on, the one thing that can be lost is
                // span records when the span ring buffer is full (counters
                // stay exact); spans beyond the export cap are dropped in
                // userspace, so the ring fills under the heaviest loads.
                "netagent-all" => {
                    let reasons = row["lost_reasons"].as_object().expect("lost_reasons");
                    let other: u64 = reasons
                        .iter()
                        .filter(|(k, _)| k.as_str() != "ringbuf_full")
                        .map(|(_, v)| v.as_u64().unwrap_or(0))
                        .sum();
                    assert_eq!(other, 0, "{w}/{c}: lost beyond span records: {row}");
                }
                _ => {}
            }
            // Connection churn runs every tracer's programs.
            if w.starts_with("churn") {
                assert!(num(row, "bpf_runs") > 0.0, "{w}/{c}: no BPF runs: {row}");
                assert!(num(row, "ns_per_run") > 0.0, "{row}");
            }
        }
    }
    // The agent counted the unthrottled churn exactly.
    let exact = &r["exact"];
    assert_eq!(exact["failed"], 0, "{exact}");
    assert!(num(exact, "attempts") > 0.0, "{exact}");
    assert_eq!(exact["counted"], exact["attempts"], "{exact}");
    assert_eq!(exact["lost"], 0, "{exact}");
    // Each curve has its points.
    for (curve, points) in [("targets", 2), ("series", 1), ("conns", 1), ("rates", 2)] {
        let rows = r["curves"][curve].as_array().expect(curve);
        assert_eq!(rows.len(), points, "{curve}: {rows:?}");
    }
    // BPF cost per short connection: one row per rate (1,000/s and
    // unthrottled), each with the connects it measured and their cost.
    let cc = r["conn_cost"].as_array().expect("conn_cost");
    assert_eq!(cc.len(), 2, "{cc:?}");
    for row in cc {
        assert_eq!(row["config"], "netagent-default", "{row}");
        assert!(num(row, "connects") > 0.0, "{row}");
        assert!(num(row, "ns_per_connect") > 0.0, "{row}");
        assert!(num(row, "runs_per_connect") >= 1.0, "{row}");
    }
    let conns = &r["curves"]["conns"][0];
    assert_eq!(conns["open"], 1000, "{conns}");
    assert!(
        num(conns, "active_outbound_seen") >= 1000.0,
        "held connections not seen: {conns}"
    );
    let series = &r["curves"]["series"][0];
    assert!(num(series, "series") >= 900.0, "{series}");
    assert!(Path::new(&out_dir.join("scaling.png")).exists(), "no plot");
    let md = std::fs::read_to_string(out_dir.join("results.md")).unwrap();
    for c in CONFIGS {
        assert!(md.contains(&format!("| {c} |")), "results.md lacks {c}");
    }
    assert!(md.contains("## Against the targets"), "{md}");
    assert!(md.contains("## BPF cost per short TCP connection"), "{md}");

    // Nothing left behind: the suite's namespaces, its tracefs mount, and
    // the tracers' BPF programs (their fds died with them).
    let tag = r["netns_tag"].as_str().expect("netns_tag");
    assert!(
        !netns_list().contains(&format!("nb-{tag}-")),
        "namespaces left: {}",
        netns_list()
    );
    assert_eq!(tracefs_mounted(), tracefs_before, "tracefs mount changed");
    let ids: Vec<u64> = r["prog_ids"]
        .as_array()
        .expect("prog_ids")
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    assert!(!ids.is_empty());
    let left: Vec<u64> = bpftool_programs()
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| ids.contains(id))
        .collect();
    assert!(
        left.is_empty(),
        "BPF programs of the suite still loaded: {left:?}"
    );
}
