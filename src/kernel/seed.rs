//! Sockets older than the agent (bpf/netagent/seed.c): the owners of
//! tracked processes' sockets go into `seed_owners`, then the TCP iterator
//! is read once in each network namespace that holds one of them, and
//! gives each open connection and listener the state the live hooks would
//! have given it. What decides the owners (which processes, from /proc) is
//! collect/preexisting.rs; this is the kernel's part.
//!
//! A TCP iterator lists the sockets of the network namespace of the task
//! that opens it, so the walk runs on a thread of its own that enters each
//! namespace in turn (setns, which needs CAP_SYS_ADMIN for any namespace
//! but the agent's own); the thread ends with the walk, so no other thread
//! of the agent ever runs in another namespace.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use aya::maps::{HashMap, MapData};
use aya::programs::iter::IterLink;
use aya::programs::Iter;
use aya::Ebpf;

use super::abi::{ListenKey, Listener, SEED_FAILED, SEED_KNOWN, SEED_LISTENER, SEED_OPEN};
use super::attach::program;
use super::error::KernelError;
use super::loader::Probes;

/// The iterator program (hooks.rs, feature `seed`).
pub const PROGRAM: &str = "seed_tcp_sockets";

/// What to seed.
#[derive(Debug, Default, Clone)]
pub struct SeedPlan {
    /// Owner of each socket of a tracked process, by socket inode (a
    /// listener's value; its address is not used).
    pub owners: Vec<(u64, Listener)>,
    /// The network namespaces to walk (inode), each with a process in it
    /// whose /proc/<pid>/ns/net leads there.
    pub namespaces: Vec<(u32, u32)>,
}

/// What the walk did.
#[derive(Debug, Default, Clone)]
pub struct SeedCounts {
    /// Namespaces walked.
    pub namespaces: usize,
    /// Open connections seeded (counted in `seeded`).
    pub connections: u64,
    /// Listeners seeded into `listeners`.
    pub listeners: u64,
    /// Sockets the live hooks had already seen.
    pub known: u64,
    /// Sockets with no room in `tcp_socks` (also counted as lost).
    pub failed: u64,
    /// Owners that did not fit `seed_owners` (limits.max_sockets).
    pub owners_dropped: usize,
    /// Namespaces not walked, and why (the process left, no CAP_SYS_ADMIN).
    pub skipped: Vec<(u32, String)>,
    /// Time spent reading the iterators, all namespaces together.
    pub walk: Duration,
}

impl Probes {
    /// Whether the seeding iterator is loaded (kernel 5.9+, not disabled).
    pub fn can_seed(&self) -> bool {
        self.features
            .iter()
            .any(|f| f.feature == "seed" && f.hook.is_some())
    }

    /// Seeds the sockets of `plan`. The live hooks are attached already
    /// (Probes::load), which the race argument in seed.c relies on.
    pub fn seed(&mut self, plan: &SeedPlan) -> Result<SeedCounts, KernelError> {
        if !self.can_seed() {
            return Err(KernelError::Object(
                "the seeding iterator is not loaded".into(),
            ));
        }
        let mut counts = SeedCounts::default();
        {
            let mut owners = seed_map::<u64, Listener>(&mut self.ebpf, "seed_owners")?;
            for (inode, owner) in &plan.owners {
                if owners.insert(inode, owner, 0).is_err() {
                    counts.owners_dropped += 1;
                }
            }
        }
        let walked = walk_all(&mut self.ebpf, &plan.namespaces, &mut counts);
        // Emptied whatever happened: memory follows entries (no prealloc).
        clear(&mut seed_map::<u64, Listener>(
            &mut self.ebpf,
            "seed_owners",
        )?);
        clear(&mut seed_map::<ListenKey, u8>(
            &mut self.ebpf,
            "seed_ports",
        )?);
        walked.map(|()| counts)
    }
}

fn seed_map<'a, K: aya::Pod, V: aya::Pod>(
    ebpf: &'a mut Ebpf,
    name: &str,
) -> Result<HashMap<&'a mut MapData, K, V>, KernelError> {
    let map = ebpf
        .map_mut(name)
        .ok_or_else(|| KernelError::Object(format!("map {name} not found")))?;
    HashMap::try_from(map).map_err(|e| KernelError::Object(format!("{name}: {e}")))
}

fn clear<K: aya::Pod, V: aya::Pod>(map: &mut HashMap<&mut MapData, K, V>) {
    let keys: Vec<K> = map.keys().filter_map(Result::ok).collect();
    for k in keys {
        let _ = map.remove(&k);
    }
}

/// One link per namespace (an iterator file consumes its link), then the
/// walk on a thread of its own.
fn walk_all(
    ebpf: &mut Ebpf,
    namespaces: &[(u32, u32)],
    counts: &mut SeedCounts,
) -> Result<(), KernelError> {
    let prog: &mut Iter = program(ebpf, PROGRAM)?;
    let mut links = Vec::new();
    for &(netns, pid) in namespaces {
        let id = prog.attach().map_err(|e| attach_error(e.to_string()))?;
        let link = prog
            .take_link(id)
            .map_err(|e| attach_error(e.to_string()))?;
        links.push((netns, pid, link));
    }
    let results = std::thread::scope(|s| {
        s.spawn(|| links.into_iter().map(walk_one).collect::<Vec<_>>())
            .join()
    })
    .map_err(|_| KernelError::Object("the seeding walk panicked".into()))?;
    for (netns, result) in results {
        match result {
            Ok((records, took)) => {
                counts.namespaces += 1;
                counts.walk += took;
                for r in records {
                    match r {
                        SEED_OPEN => counts.connections += 1,
                        SEED_LISTENER => counts.listeners += 1,
                        SEED_KNOWN => counts.known += 1,
                        SEED_FAILED => counts.failed += 1,
                        _ => {}
                    }
                }
            }
            Err(why) => counts.skipped.push((netns, why)),
        }
    }
    Ok(())
}

fn attach_error(why: String) -> KernelError {
    KernelError::Object(format!("linking {PROGRAM}: {why}"))
}

/// Network namespace of the calling thread.
fn current_netns() -> Option<u64> {
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}

/// Enters `netns` (through process `pid`) on this thread, opens the
/// iterator there and reads it: the records, and how long the read took.
fn walk_one(
    (netns, pid, link): (u32, u32, IterLink),
) -> (u32, Result<(Vec<u32>, Duration), String>) {
    let result = (|| {
        if current_netns() != Some(u64::from(netns)) {
            let ns = File::open(format!("/proc/{pid}/ns/net"))
                .map_err(|e| format!("process {pid} left: {e}"))?;
            let ino = ns.metadata().map_err(|e| e.to_string())?.ino();
            if ino != u64::from(netns) {
                return Err(format!("process {pid} is in another namespace now"));
            }
            // SAFETY: setns on a descriptor we own; it changes only this
            // thread's namespace, and the thread ends with the walk.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "cannot enter it: {} (needs CAP_SYS_ADMIN)",
                    std::io::Error::last_os_error()
                ));
            }
        }
        read_iter(link)
    })();
    (netns, result)
}

/// Opens the iterator in the calling thread's namespace and runs it.
fn read_iter(link: IterLink) -> Result<(Vec<u32>, Duration), String> {
    let start = Instant::now();
    let mut file = link.into_file().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    file.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let took = start.elapsed();
    let records = out
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((records, took))
}

/// Runs the iterator once in this namespace with no owners (so it seeds
/// nothing): `netagent probe`'s proof that it runs here, not only loads.
pub(super) fn dry_run(ebpf: &mut Ebpf) -> Result<(), String> {
    let prog: &mut Iter = program(ebpf, PROGRAM).map_err(|e| e.to_string())?;
    let id = prog.attach().map_err(|e| e.to_string())?;
    let link = prog.take_link(id).map_err(|e| e.to_string())?;
    read_iter(link)
        .map(|_| ())
        .map_err(|e| format!("the iterator loads but does not run: {e}"))
}
