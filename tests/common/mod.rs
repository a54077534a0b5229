//! Shared helpers for the end-to-end tests: run the real agent binary with a
//! config, run the traffic generator under a known comm, scrape and read
//! the real HTTP endpoint, and check what the kernel has loaded.
//!
//! One file per kind of helper: the agent process (`agent`), HTTP GETs
//! against it (`http_client`), a parsed scrape (`metrics`), the traffic
//! generator (`testgen`), what the kernel has loaded (`bpf`); the rest
//! (network namespaces, receivers, fake clouds, …) in their own modules.
//! What the unit tests use too (the skip-or-fail rule, `TempDir`, the
//! bpftool listings) is src/test_support.rs, included here by path. This
//! file holds the rules every end-to-end test follows: one at a time, skip
//! or fail when something is missing.
#![allow(dead_code)]

pub mod cdp;
pub mod cgroup;
pub mod fake_cloud;
pub mod hostlink;
pub mod netns;
pub mod prometheus_server;
pub mod receivers;
pub mod runtimes;
pub mod tools;

mod agent;
mod bpf;
mod http_client;
mod metrics;
#[path = "../../src/test_support.rs"]
mod support;
mod testgen;

// Each test crate uses some of these; unused re-exports are not an error
// (as unused helpers are not: `dead_code` above).
#[allow(unused_imports)]
pub use agent::Agent;
#[allow(unused_imports)]
pub use bpf::*;
#[allow(unused_imports)]
pub use http_client::{health, http_get, http_get_at};
#[allow(unused_imports)]
pub use metrics::{promtool_check, Metrics};
#[allow(unused_imports)]
pub use support::*;
#[allow(unused_imports)]
pub use testgen::{testgen, Server, Stepper};

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

pub const AGENT: &str = env!("CARGO_BIN_EXE_netagent");

/// The traffic generator (tools/src/bin/netagent-testgen), built if need be
/// and found by [`tools`].
pub fn testgen_exe() -> &'static str {
    tools::tool_exe("netagent-testgen")
}

/// End-to-end tests share the kernel and the CPU: run them one at a time so
/// timing assertions and "nothing left loaded" checks see only their own work.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Missing privilege or tool: a visible skip locally, a failure in CI
/// ([`skip_or_fail`]). Returns true when the test should go on.
pub fn require(cond: bool, why: &str) -> bool {
    if !cond {
        skip_or_fail(why);
    }
    cond
}

/// Root with BPF available (the agent's own check gives the details).
pub fn require_bpf() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    require(
        root && Path::new("/sys/kernel/btf/vmlinux").exists(),
        "needs root and kernel BTF to load BPF programs",
    )
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A comm (at most 15 bytes) unique to this test process: `prefix` and the
/// pid in hex.
pub fn unique_comm(prefix: &str) -> String {
    let comm = format!("{prefix}{:x}", std::process::id());
    assert!(comm.len() <= 15, "{comm} is longer than a comm");
    comm
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
