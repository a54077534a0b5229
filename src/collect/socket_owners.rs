//! Which process holds a socket inode open, from a scan of /proc/*/fd:
//! the owners of given inodes, or every socket of the tracked processes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;

use procfs::process::{all_processes, FDTarget, Process};

/// The process that holds a socket open, as seen in /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketOwner {
    /// Process (thread-group) id.
    pub pid: u32,
    /// The process's comm, as in `/proc/<pid>/comm` (at most 15 bytes).
    pub comm: String,
    /// cgroup v2 path from /proc/<pid>/cgroup ("0::/x/y" line), if any
    pub cgroup_v2_path: Option<String>,
}

/// Scans /proc/*/fd once and returns the owner of each requested inode (first
/// pid found; skip processes that vanish or cannot be read).
pub fn socket_owners(inodes: &HashSet<u64>) -> HashMap<u64, SocketOwner> {
    let mut owners = HashMap::new();
    if inodes.is_empty() {
        return owners;
    }
    let processes = match all_processes() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("cannot list /proc: {e}");
            return owners;
        }
    };
    // Processes that exited mid-scan are skipped silently; ones we may not
    // inspect are counted and reported once, naming what is missing.
    let mut denied = 0usize;
    for process in processes.flatten() {
        let fds = match process.fd() {
            Ok(fds) => fds,
            Err(procfs::ProcError::PermissionDenied(_)) => {
                denied += 1;
                continue;
            }
            Err(_) => continue,
        };
        let mut owner: Option<SocketOwner> = None;
        for fd in fds.flatten() {
            let FDTarget::Socket(inode) = fd.target else {
                continue;
            };
            if !inodes.contains(&inode) || owners.contains_key(&inode) {
                continue;
            }
            // Described once per process, and only if it owns a wanted socket.
            if owner.is_none() {
                owner = describe(&process);
            }
            let Some(o) = &owner else { break };
            owners.insert(inode, o.clone());
        }
        if owners.len() == inodes.len() {
            break;
        }
    }
    if owners.len() < inodes.len() && denied > 0 {
        tracing::warn!(
            processes = denied,
            "cannot read /proc/<pid>/fd of some processes (needs CAP_SYS_PTRACE, and \
             CAP_DAC_READ_SEARCH for other users): their listeners opened before the agent \
             are not attributed"
        );
    }
    owners
}

/// Every socket held by a process `is_target` accepts (by its comm: the
/// main thread's, as `ps` shows it), with its owner, and the network
/// namespaces those processes are in.
#[derive(Debug, Default)]
pub struct TrackedSockets {
    /// Socket inode -> its owner (the first tracked process found).
    pub owners: HashMap<u64, SocketOwner>,
    /// Network namespace inode -> a tracked process in it.
    pub namespaces: BTreeMap<u32, u32>,
    /// Processes whose fds could not be read (capabilities).
    pub denied: usize,
}

/// Scans /proc once for the sockets of tracked processes.
pub fn tracked_sockets(is_target: impl Fn(&str) -> bool) -> TrackedSockets {
    let mut found = TrackedSockets::default();
    let processes = match all_processes() {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("cannot list /proc: {e}");
            return found;
        }
    };
    for process in processes.flatten() {
        // The comm first: most processes are not tracked.
        if !process.stat().is_ok_and(|st| is_target(&st.comm)) {
            continue;
        }
        let Some(owner) = describe(&process) else {
            continue;
        };
        let fds = match process.fd() {
            Ok(fds) => fds,
            Err(procfs::ProcError::PermissionDenied(_)) => {
                found.denied += 1;
                continue;
            }
            Err(_) => continue,
        };
        let mut any = false;
        for fd in fds.flatten() {
            if let FDTarget::Socket(inode) = fd.target {
                found.owners.entry(inode).or_insert_with(|| owner.clone());
                any = true;
            }
        }
        let netns = std::fs::metadata(format!("/proc/{}/ns/net", owner.pid));
        if let (true, Ok(ns)) = (any, netns) {
            found.namespaces.entry(ns.ino() as u32).or_insert(owner.pid);
        }
    }
    found
}

/// Pid, comm and cgroup of a process, or None when it exited meanwhile.
fn describe(process: &Process) -> Option<SocketOwner> {
    // Read through procfs's handle on the /proc/<pid> directory: a pid reused
    // by a new process after ours exited fails instead of answering for it.
    let comm = process.stat().ok()?.comm;
    let cgroup_v2_path = process.cgroups().ok().and_then(|groups| {
        groups
            .into_iter()
            .find(|g| g.hierarchy == 0 && g.controllers.is_empty())
            .map(|g| g.pathname)
    });
    Some(SocketOwner {
        pid: u32::try_from(process.pid()).ok()?,
        comm,
        cgroup_v2_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};
    use std::os::fd::AsRawFd;

    use crate::test_support::fd_inode;

    fn v2_line() -> Option<String> {
        std::fs::read_to_string("/proc/self/cgroup")
            .expect("read /proc/self/cgroup")
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_string))
    }

    #[test]
    fn own_sockets_are_owned_by_this_process() {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let wanted: HashSet<u64> = [tcp.as_raw_fd(), udp.as_raw_fd()]
            .into_iter()
            .map(fd_inode)
            .collect();
        let owners = socket_owners(&wanted);
        let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
        let expected = SocketOwner {
            pid: std::process::id(),
            comm: comm.trim_end_matches('\n').to_string(),
            cgroup_v2_path: v2_line(),
        };
        for inode in &wanted {
            assert_eq!(owners.get(inode), Some(&expected), "inode {inode}");
        }
        assert_eq!(owners.len(), 2);
    }

    #[test]
    fn tracked_sockets_are_found_with_their_namespace() {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let inode = fd_inode(tcp.as_raw_fd());
        let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
        let comm = comm.trim_end_matches('\n').to_string();
        let found = tracked_sockets(|c| c == comm);
        assert_eq!(found.owners[&inode].pid, std::process::id());
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
        assert!(found.namespaces.contains_key(&own), "{found:?}");
        assert!(tracked_sockets(|_| false).owners.is_empty());
    }

    #[test]
    fn unknown_inodes_are_absent() {
        assert!(socket_owners(&HashSet::new()).is_empty());
        // Inode 0 is never a live socket.
        assert!(socket_owners(&HashSet::from([0])).is_empty());
    }

    #[test]
    fn socket_held_only_by_a_child_is_owned_by_the_child() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let inode = fd_inode(listener.as_raw_fd());
        // The child gets the socket as its stdin; our copy closes with `cmd`.
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30").stdin(std::os::fd::OwnedFd::from(listener));
        let mut child = cmd.spawn().expect("spawn sleep");
        drop(cmd);
        let owners = socket_owners(&HashSet::from([inode]));
        let _ = child.kill();
        let _ = child.wait();
        let owner = owners.get(&inode).expect("owner of the child's socket");
        assert_eq!(owner.pid, child.id());
        assert_eq!(owner.comm, "sleep");
        assert_eq!(owner.cgroup_v2_path, v2_line());
        // Once the child is gone, so is the socket.
        assert!(socket_owners(&HashSet::from([inode])).is_empty());
    }
}
