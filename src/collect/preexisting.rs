//! Sockets older than the agent, seeded once at start: the kernel programs
//! only see connects, accepts and listen()s that happen while they run, so
//! without this `netagent_tcp_connections_active` is wrong after every
//! restart until the old connections close (for connection pools, never),
//! and their bytes, closes and the accepts of old listeners are lost.
//!
//! The owners of tracked processes' sockets come from /proc/<pid>/fd
//! (socket_owners.rs); the kernel's TCP iterator then walks every network
//! namespace those processes are in and seeds their open connections and
//! listeners (kernel/seed.rs, bpf/netagent/seed.c). Without the iterator
//! (kernels before 5.9, or switched off), only the listeners of the agent's
//! own namespace are seeded, from sock_diag (listeners.rs).
//!
//! UDP needs no seeding: a UDP socket's state is made at its first datagram
//! after start, by the task that sends or receives it, old socket or new.

use super::listeners;
use super::socket_owners::tracked_sockets;
use crate::kernel::abi::{comm_bytes, Listener};
use crate::kernel::seed::{SeedCounts, SeedPlan};
use crate::kernel::Probes;

/// Seeds the sockets of tracked processes (`is_target`, by comm) that are
/// older than the agent; `netns_only` (0 = all) limits the namespaces, and
/// `cgroup_id` maps a cgroup v2 path to its id. Logs what it did; failures
/// only leave the old sockets unseen.
pub fn seed(
    probes: &mut Probes,
    netns_only: u32,
    is_target: impl Fn(&str) -> bool,
    cgroup_id: impl Fn(&str) -> Option<u64>,
) {
    if probes.can_seed() {
        match seed_all(probes, netns_only, &is_target, &cgroup_id) {
            Ok(c) => return report(&c),
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                "cannot seed sockets older than the agent; falling back to the listeners of \
                 this network namespace"
            ),
        }
    }
    match listeners::seed_existing(&mut probes.maps, is_target, cgroup_id) {
        Ok(n) => tracing::info!(
            listeners = n,
            "existing listeners of tracked processes recorded"
        ),
        Err(e) => tracing::warn!(
            error = %format!("{e:#}"),
            "cannot list existing listeners; only listeners opened from now on are attributed"
        ),
    }
}

fn seed_all(
    probes: &mut Probes,
    netns_only: u32,
    is_target: &impl Fn(&str) -> bool,
    cgroup_id: &impl Fn(&str) -> Option<u64>,
) -> anyhow::Result<SeedCounts> {
    let found = tracked_sockets(is_target);
    if found.owners.is_empty() && found.denied > 0 {
        tracing::warn!(
            processes = found.denied,
            "cannot read /proc/<pid>/fd of some processes (needs CAP_SYS_PTRACE, and \
             CAP_DAC_READ_SEARCH for other users): their sockets opened before the agent are \
             not seeded"
        );
    }
    let owners = found
        .owners
        .iter()
        .map(|(inode, o)| {
            let owner = Listener {
                comm: comm_bytes(&o.comm),
                addr: [0; 16],
                cgroup_id: o.cgroup_v2_path.as_deref().and_then(cgroup_id).unwrap_or(0),
                pid: o.pid,
                _pad: 0,
            };
            (*inode, owner)
        })
        .collect();
    let own = listeners::own_netns()?;
    let mut namespaces: Vec<(u32, u32)> = found
        .namespaces
        .into_iter()
        .filter(|(ns, _)| netns_only == 0 || *ns == netns_only)
        .collect();
    // The agent's own first: it needs no CAP_SYS_ADMIN to walk.
    namespaces.sort_by_key(|(ns, _)| *ns != own);
    let plan = SeedPlan { owners, namespaces };
    Ok(probes.seed(&plan)?)
}

fn report(c: &SeedCounts) {
    // The message and the first field are what the listener-only seeding
    // logged (tests/privileges.rs reads it).
    tracing::info!(
        listeners = c.listeners,
        connections = c.connections,
        already_tracked = c.known,
        namespaces = c.namespaces,
        walk_us = c.walk.as_micros() as u64,
        "existing listeners of tracked processes recorded"
    );
    if c.failed > 0 || c.owners_dropped > 0 {
        tracing::warn!(
            connections = c.failed,
            owners = c.owners_dropped,
            "sockets older than the agent not seeded: no room (limits.max_sockets)"
        );
    }
    for (netns, why) in &c.skipped {
        tracing::warn!(netns, "network namespace not seeded: {why}");
    }
}
