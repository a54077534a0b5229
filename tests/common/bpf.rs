//! What the kernel has loaded: our programs by name, the programs and maps
//! a process holds, map entries, and what `netagent probe` says the agent
//! uses on this kernel.

use super::{bpftool_maps, bpftool_programs, AGENT};
use std::path::Path;
use std::process::Command;

/// IDs of loaded BPF programs whose names are ours (`on_*` from bpf/).
pub fn our_prog_ids() -> Vec<u64> {
    bpftool_programs()
        .into_iter()
        .filter(|(_, n)| {
            // The kernel keeps 15 bytes of a name; bpftool may show
            // the full BTF name instead.
            n.len() >= 10 && OUR_PROGRAMS.iter().any(|full| full.starts_with(n.as_str()))
        })
        .map(|(id, _)| id)
        .collect()
}

/// Entries in the BPF map `name` (15 bytes at most) that process `pid`
/// holds open (found through its fds' fdinfo), read with bpftool; `None`
/// if it holds no such map.
pub fn map_entries(pid: u32, name: &str) -> Option<usize> {
    map_dump(pid, name)?.as_array().map(Vec::len)
}

/// `bpftool -j map dump` of the BPF map `name` that process `pid` holds
/// open; `None` if it holds no such map.
pub fn map_dump(pid: u32, name: &str) -> Option<serde_json::Value> {
    let fdinfo = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?;
    let maps = bpftool_maps();
    let id = fdinfo.flatten().find_map(|e| {
        let info = std::fs::read_to_string(e.path()).ok()?;
        let id: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))?
            .trim()
            .parse()
            .ok()?;
        maps.iter()
            .any(|(m, n)| *m == id && n == name)
            .then_some(id)
    })?;
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "id", &id.to_string()])
        .output()
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&out.stdout).ok()
}

/// Waits (up to 10 s) until the BPF map `name` of process `pid` is empty;
/// fails naming how many entries are left.
pub fn wait_map_empty(pid: u32, name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = map_entries(pid, name).unwrap_or_else(|| panic!("no map {name} in {pid}"));
        if left == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} entries left in {name}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// BPF programs process `pid` holds (through its descriptors' fdinfo):
/// (id, name as the kernel or bpftool shows it).
pub fn programs_of(pid: u32) -> Vec<(u64, String)> {
    let ids = fdinfo_ids(pid, "prog_id:");
    let loaded = bpftool_programs();
    ids.into_iter()
        .map(|id| {
            let name = loaded
                .iter()
                .find(|(p, _)| *p == id)
                .map(|(_, n)| n.clone())
                .unwrap_or_default();
            (id, name)
        })
        .collect()
}

/// The ids a process holds open for one kind of BPF object: the value of
/// `key` (`prog_id:` or `map_id:`) in each of its /proc/<pid>/fdinfo files.
pub fn fdinfo_ids(pid: u32, key: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The programs `netagent probe --json` (with `config`, if any) says the
/// agent uses on this kernel: those of every hook with status `used`.
pub fn probe_used_programs(config: Option<&Path>) -> Vec<String> {
    let mut cmd = Command::new(AGENT);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd
        .args(["probe", "--json"])
        .output()
        .expect("netagent probe");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "netagent probe --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut names: Vec<String> = v["hooks"]
        .as_array()
        .expect("hooks")
        .iter()
        .filter(|h| h["status"] == "used")
        .flat_map(|h| h["probes"].as_array().cloned().unwrap_or_default())
        .map(|p| p["program"].as_str().expect("program").to_string())
        .collect();
    names.sort();
    names
}

/// A program name as the kernel keeps it (15 bytes); bpftool may show the
/// full name from BTF instead, so both sides are cut before comparing.
pub fn kernel_prog_name(name: &str) -> &str {
    &name[..name.len().min(15)]
}

/// Program names in bpf/netagent.bpf.c (its parts in bpf/netagent/),
/// bpf/iface.bpf.c and bpf/node.bpf.c (of node.bpf.c only the variant this
/// kernel loads: on_mark_victim).
pub const OUR_PROGRAMS: [&str; 35] = [
    "on_tc_ingress",
    "on_tc_egress",
    "on_inet_sock_set_state",
    "on_tcp_retransmit_skb",
    "on_tcp_send_reset",
    "on_tcp_send_reset_reason",
    "on_tcp_receive_reset",
    "on_sock_send_length",
    "on_sock_recv_length",
    "on_sendmsg4",
    "on_sendmsg6",
    "on_recvmsg4",
    "on_recvmsg6",
    "on_connect4",
    "on_connect6",
    "on_net_dev_queue",
    "seed_tcp_sockets",
    "on_dns_egress",
    "on_dns_ingress",
    "on_kfree_skb",
    "on_mark_victim",
    // Fallback message hooks (src/kernel/hooks.rs).
    "fx_inet_sendmsg",
    "fx_inet6_sendmsg",
    "fx_inet_recvmsg",
    "fx_inet6_recvmsg",
    "kp_inet_sendmsg",
    "krp_inet_sendmsg",
    "kp_inet6_sendmsg",
    "krp_inet6_sendmsg",
    "kp_inet_recvmsg",
    "krp_inet_recvmsg",
    "kp_inet6_recvmsg",
    "krp_inet6_recvmsg",
    "on_sys_enter",
    "on_sys_exit",
];
