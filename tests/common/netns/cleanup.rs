//! Listing and deleting namespaces: what runs inside is killed first (never
//! in the host's own namespace), and [`cleanup_stale`] removes the `na-*`
//! namespaces of earlier runs whose creating process is gone.

use super::command::ip;
use super::{KILL_TIMEOUT, PREFIX, START_SLACK_SECS};
use std::time::{Duration, Instant};

/// Names of all named network namespaces.
pub fn list_netns() -> Vec<String> {
    String::from_utf8_lossy(&ip(&["netns", "list"]).stdout)
        .lines()
        // Lines look like `name (id: 3)` or just `name`.
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Names of all veth links in the caller's (root) namespace.
pub fn root_veth_links() -> Vec<String> {
    String::from_utf8_lossy(&ip(&["-o", "link", "show", "type", "veth"]).stdout)
        .lines()
        // `7: name@peer: <...> ...`
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Pids of processes inside namespace `ns` (empty when it does not exist).
fn ns_pids(ns: &str) -> Vec<i32> {
    String::from_utf8_lossy(&ip(&["netns", "pids", ns]).stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// SIGKILLs everything in `ns` until nothing is left (bounded).
fn kill_ns_processes(ns: &str) {
    let me = std::process::id() as i32;
    let deadline = Instant::now() + KILL_TIMEOUT;
    loop {
        let pids: Vec<i32> = ns_pids(ns)
            .into_iter()
            .filter(|&p| p > 1 && p != me)
            .collect();
        if pids.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!("netns: processes {pids:?} still in {ns} after SIGKILL");
            return;
        }
        for pid in pids {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid was
            // just listed inside our own test namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the named namespace is the one this process runs in (or init's):
/// then "everything inside" is the whole host, which must never be killed.
fn is_host_netns(ns: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(named) = std::fs::metadata(format!("/run/netns/{ns}")) else {
        return false;
    };
    ["/proc/self/ns/net", "/proc/1/ns/net"].iter().any(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.ino() == named.ino() && m.dev() == named.dev())
    })
}

/// Kills what runs in `ns` and deletes it; errors (e.g. already gone) ignored.
pub(super) fn delete_netns(ns: &str) {
    if is_host_netns(ns) {
        eprintln!("netns: {ns} names the host's own namespace; only removing the name");
    } else {
        kill_ns_processes(ns);
    }
    let _ = ip(&["netns", "del", ns]);
}

/// `(tag, pid)` of a namespace name made by [`NetnsPair::new`].
fn parse_name(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (rest, side) = rest.rsplit_once('-')?;
    if side != "a" && side != "b" && side != "c" {
        return None;
    }
    let (tag, pid) = rest.rsplit_once('-')?;
    Some((tag, pid.parse().ok()?))
}

/// Start of process `pid` in seconds since the epoch; `None` when it does not
/// exist or is a zombie.
fn process_start(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised comm: state is field 3, starttime field 22.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z" | &"X")) {
        return None;
    }
    let ticks: f64 = fields.get(22 - 3)?.parse().ok()?;
    let btime: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(btime + ticks / if hz > 0 { hz as f64 } else { 100.0 })
}

/// Creation time of a named namespace: its nsfs inode's mtime, set when the
/// namespace was created.
fn netns_created(name: &str) -> Option<f64> {
    let m = std::fs::metadata(format!("/run/netns/{name}")).ok()?;
    let t = m.modified().ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64())
}

/// Whether the process that created namespace `name` (pid in the name) still
/// runs: the pid exists and started before the namespace was created (a later
/// start means the pid was reused).
fn creator_alive(name: &str, pid: u32) -> bool {
    let Some(started) = process_start(pid) else {
        return false;
    };
    match netns_created(name) {
        Some(created) => started <= created + START_SLACK_SECS,
        None => true,
    }
}

/// Deletes namespaces named `na-*` left by earlier runs whose creating pid
/// (encoded in the name) is no longer alive (or was reused by a process that
/// started after the namespace was made), killing processes still inside
/// them first. Call at the start of every netns test. Returns the names
/// removed.
pub fn cleanup_stale() -> Vec<String> {
    let mut removed = Vec::new();
    for name in list_netns() {
        let Some((_, pid)) = parse_name(&name) else {
            continue;
        };
        if creator_alive(&name, pid) {
            continue;
        }
        eprintln!("netns: removing stale namespace {name} (pid {pid} is gone)");
        delete_netns(&name);
        removed.push(name);
    }
    removed
}
