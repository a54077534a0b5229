//! What a containerized agent holds and may do in the kernel, seen from
//! the host: its capabilities and uid (/proc/PID/status), its BPF programs
//! and maps, and the host's qdiscs; so that the image test can check that
//! it ran with exactly what the deployment grants and left nothing behind.

use super::pod::RunSpec;
use super::run;
use crate::common::{bpftool_maps, bpftool_programs, fdinfo_ids, programs_of};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

/// Capabilities by bit number.
pub(super) fn cap_bit(name: &str) -> u32 {
    match name {
        "NET_ADMIN" => 12,
        "SYS_RESOURCE" => 24,
        "PERFMON" => 38,
        "BPF" => 39,
        other => panic!("capability {other}: add its bit"),
    }
}

pub(super) fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// Capabilities the deployment adds that this machine's runtime can grant
/// (in our bounding set; root here lacks CAP_SYS_RESOURCE, which the agent
/// needs only before Linux 5.11), and those it cannot.
pub(super) fn grantable(spec: &RunSpec) -> (Vec<String>, Vec<String>) {
    let bounding = u64::from_str_radix(&status_field(std::process::id(), "CapBnd:"), 16).unwrap();
    spec.security
        .iter()
        .filter_map(|o| o.strip_prefix("--cap-add="))
        .map(str::to_string)
        .partition(|c| bounding & (1u64 << cap_bit(c)) != 0)
}

/// `tc -j qdisc show`: (device, kind, handle, parent) of every qdisc.
pub(super) fn qdiscs() -> BTreeSet<(String, String, String, String)> {
    let out = run(
        Command::new("tc").args(["-j", "qdisc", "show"]),
        Duration::from_secs(30),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .map(|q| {
            let s = |k: &str| q[k].as_str().unwrap_or("").to_string();
            (s("dev"), s("kind"), s("handle"), s("parent"))
        })
        .collect()
}

/// What a running containerized agent holds in the kernel.
pub(super) struct Held {
    pub(super) progs: Vec<u64>,
    pub(super) maps: Vec<u64>,
}

impl Held {
    pub(super) fn of(pid: u32) -> Held {
        let progs: Vec<u64> = programs_of(pid).into_iter().map(|(id, _)| id).collect();
        let maps = fdinfo_ids(pid, "map_id:");
        assert!(
            !progs.is_empty() && !maps.is_empty(),
            "the containerized agent holds no BPF programs or maps"
        );
        Held { progs, maps }
    }

    /// Waits (10 s at most) until none of them is loaded any more.
    pub(super) fn assert_gone(&self, who: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let progs: BTreeSet<u64> = bpftool_programs().into_iter().map(|(i, _)| i).collect();
            let maps: BTreeSet<u64> = bpftool_maps().into_iter().map(|(i, _)| i).collect();
            let left_p: Vec<_> = self.progs.iter().filter(|i| progs.contains(i)).collect();
            let left_m: Vec<_> = self.maps.iter().filter(|i| maps.contains(i)).collect();
            if left_p.is_empty() && left_m.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{who}: stopped, but its programs {left_p:?} and maps {left_m:?} are still loaded"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
