//! Listeners that existed before the agent started: the kernel programs
//! only see new `listen()` calls, so the agent finds the old ones through
//! sock_diag and /proc and seeds them into the kernel's `listeners` map.
//! That way accepted connections on old listeners are attributed too, and
//! `netagent_tcp_listen_info` covers them.

use std::collections::HashSet;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;

use anyhow::Context;

use super::sockdiag::tcp_listeners;
use super::socket_owners::socket_owners;
use crate::kernel::abi::{comm_bytes, ListenKey, Listener};
use crate::kernel::KernelMaps;

/// `bpf_map_update_elem` flag: fail if the key exists.
const BPF_NOEXIST: u64 = 1;

/// IPv4 addresses become `::ffff:a.b.c.d`, as the kernel side stores them.
pub fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Inode number of this process's network namespace (what the kernel side
/// reads as `sk->__sk_common.skc_net.net->ns.inum`).
pub fn own_netns() -> anyhow::Result<u32> {
    let meta = std::fs::metadata("/proc/self/ns/net").context("reading /proc/self/ns/net")?;
    Ok(meta.ino() as u32)
}

/// Seeds the listening sockets of tracked processes in this network
/// namespace. `is_target` decides by comm; `cgroup_id` maps a cgroup v2
/// path from /proc/<pid>/cgroup to its id. Returns how many were added.
pub fn seed_existing(
    maps: &mut KernelMaps,
    is_target: impl Fn(&str) -> bool,
    cgroup_id: impl Fn(&str) -> Option<u64>,
) -> anyhow::Result<usize> {
    let netns = own_netns()?;
    let sockets = tcp_listeners().context("listing TCP listeners (sock_diag)")?;
    let inodes: HashSet<u64> = sockets.iter().map(|s| s.inode).collect();
    let owners = socket_owners(&inodes);
    let mut added = 0;
    for s in &sockets {
        let Some(owner) = owners.get(&s.inode) else {
            continue; // owner exited meanwhile, or the socket is in no fd table
        };
        if !is_target(&owner.comm) {
            continue;
        }
        let key = ListenKey {
            netns,
            port: s.port,
            _pad: 0,
        };
        let value = Listener {
            comm: comm_bytes(&owner.comm),
            addr: addr_bytes(s.addr),
            cgroup_id: owner
                .cgroup_v2_path
                .as_deref()
                .and_then(&cgroup_id)
                .unwrap_or(0),
            pid: owner.pid,
            _pad: 0,
        };
        // NOEXIST: a listener the kernel already recorded is fresher.
        match maps.listeners.insert(key, value, BPF_NOEXIST) {
            Ok(()) => added += 1,
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e).context("seeding the listeners map"),
        }
    }
    Ok(added)
}

/// Removes listeners of this network namespace that sock_diag no longer
/// lists. The kernel side removes the listeners it saw start; the ones
/// seeded at start have no socket state there, so they are checked here.
/// `seen` must come from a map read taken *before* this call, so a listener
/// that starts meanwhile is never removed. Returns the keys removed.
pub fn prune_closed(
    maps: &mut KernelMaps,
    seen: &[(ListenKey, Listener)],
) -> anyhow::Result<Vec<ListenKey>> {
    let netns = own_netns()?;
    let open: HashSet<u16> = tcp_listeners()
        .context("listing TCP listeners (sock_diag)")?
        .iter()
        .map(|s| s.port)
        .collect();
    let mut removed = Vec::new();
    for (key, _) in seen {
        if key.netns == netns && !open.contains(&key.port) {
            match maps.listeners.remove(key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => removed.push(*key),
                Err(aya::maps::MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
                {
                    removed.push(*key)
                }
                Err(e) => return Err(e).context("pruning the listeners map"),
            }
        }
    }
    Ok(removed)
}
