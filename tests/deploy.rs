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
//! * the agent under exactly the capabilities the deployments grant;
//! * the container image: built from the Dockerfile on a locally made base
//!   by a Docker daemon of the test's own, run as the DaemonSet and the
//!   compose file run it (exact counts, /health, nothing left in the
//!   kernel), scraped by the compose file's Prometheus.
//!
//! Tools beyond scripts/setup.sh come from scripts/setup-deploy.sh; the
//! image's base and Docker (docker.io) from scripts/setup.sh.
//!
//! One file per kind of artifact in tests/deploy/; this one holds what they
//! share: reading the repository, running a tool with a time limit, the
//! alerts and the capabilities every deployment agrees on.

mod common;

#[path = "deploy/compose.rs"]
mod compose;
#[path = "deploy/containerd.rs"]
mod containerd;
#[path = "deploy/dashboard.rs"]
mod dashboard;
#[path = "deploy/docker.rs"]
mod docker;
#[path = "deploy/image.rs"]
mod image;
#[path = "deploy/kernel.rs"]
mod kernel;
#[path = "deploy/kubernetes.rs"]
mod kubernetes;
#[path = "deploy/least_privilege.rs"]
mod least_privilege;
#[path = "deploy/live_prometheus.rs"]
mod live_prometheus;
#[path = "deploy/packaging.rs"]
mod packaging;
#[path = "deploy/pod.rs"]
mod pod;
#[path = "deploy/smoke_test.rs"]
mod smoke_test;

use common::netns::wait_bounded;
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The alerts of deploy/prometheus/netagent.rules.yml.
const ALERTS: [&str; 9] = [
    "NetagentDown",
    "NetagentEventsLost",
    "NetagentConnectFailuresSpike",
    "NetagentHighRetransmitRatio",
    "NetagentPacketDropsOverload",
    "NetagentSeriesCapHit",
    "NetagentProbeDown",
    "NetagentDnsFailures",
    "NetagentDnsSlow",
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
