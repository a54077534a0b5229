//! Series expiry (`limits.series_ttl_seconds`): a series whose counters did
//! not change for the TTL and whose owner — no task with that comm in that
//! cgroup, and no open TCP socket the kernel keeps for it — is gone leaves
//! the exposition, and its kernel slots are freed for new series. A live
//! owner's series never expire, however quiet; a series that comes back
//! starts from zero (a counter reset to its consumers).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::kernel::abi::{FlowKey, FlowStats, Hist, SockState, COMM_LEN, HIST_KINDS};
use crate::kernel::KernelMaps;

use super::KernelSnapshot;

/// The owner of a series: its comm (up to the first NUL) and cgroup id.
pub type Owner = ([u8; COMM_LEN], u64);

/// The owner part of a comm as the kernel wrote it: bytes after the first
/// NUL are not part of the name.
pub fn owner(comm: &[u8; COMM_LEN], cgroup_id: u64) -> Owner {
    let mut c = [0u8; COMM_LEN];
    let n = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    c[..n].copy_from_slice(&comm[..n]);
    (c, cgroup_id)
}

/// Who is alive now: every task's (comm, cgroup), and every open TCP
/// socket's owner.
#[derive(Debug, Default)]
pub struct LiveOwners {
    owners: HashSet<Owner>,
    /// Comms alone, for hosts without a cgroup v2 hierarchy (ids unknown).
    comms: HashSet<[u8; COMM_LEN]>,
    by_cgroup: bool,
}

impl LiveOwners {
    pub fn contains(&self, o: &Owner) -> bool {
        self.owners.contains(o) || (!self.by_cgroup && self.comms.contains(&o.0))
    }

    /// Scans /proc/*/task/*/comm (threads name themselves: the kernel key
    /// has the thread's comm) and each process's cgroup v2 path.
    pub fn scan(v2_root: Option<&Path>, sockets: &[SockState]) -> Self {
        let mut live = Self {
            by_cgroup: v2_root.is_some(),
            ..Self::default()
        };
        for s in sockets {
            live.owners.insert(owner(&s.comm, s.cgroup_id));
        }
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return live;
        };
        let mut inodes: HashMap<String, u64> = HashMap::new();
        for p in procs.flatten() {
            let name = p.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let dir = p.path();
            let cgroup = v2_root.and_then(|root| {
                let text = std::fs::read_to_string(dir.join("cgroup")).ok()?;
                let path = text
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))?
                    .to_string();
                if let Some(&ino) = inodes.get(&path) {
                    return Some(ino);
                }
                let ino = std::fs::metadata(root.join(path.trim_start_matches('/')))
                    .ok()?
                    .ino();
                inodes.insert(path, ino);
                Some(ino)
            });
            let Ok(tasks) = std::fs::read_dir(dir.join("task")) else {
                continue;
            };
            for t in tasks.flatten() {
                let Ok(comm) = std::fs::read(t.path().join("comm")) else {
                    continue;
                };
                let mut c = [0u8; COMM_LEN];
                let n = comm.len().saturating_sub(1).min(COMM_LEN - 1);
                c[..n].copy_from_slice(&comm[..n]);
                live.comms.insert(c);
                if let Some(cg) = cgroup {
                    live.owners.insert((c, cg));
                }
            }
        }
        live
    }
}

/// When a key's series last changed, by a fingerprint of their values.
#[derive(Debug)]
struct Group {
    fingerprint: u64,
    changed: Instant,
}

/// Which keys' series did not change for a TTL: each sweep gives every
/// key's fingerprint (a hash of its counters: counters only grow, so any
/// count changes it).
#[derive(Debug)]
pub struct Quiet<K> {
    ttl: Duration,
    seen: HashMap<K, Group>,
    /// When quiet keys were last returned. Quiet keys of live owners stay
    /// quiet, and checking owners reads every task in /proc: at most once
    /// a quarter TTL (30 s at most), which delays an expiry by as much.
    checked: Option<Instant>,
}

impl<K: Hash + Eq + Clone> Quiet<K> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            seen: HashMap::new(),
            checked: None,
        }
    }

    /// Notes each key's fingerprint at `now` (keys not given are forgotten)
    /// and returns the keys unchanged for the TTL, when a check is due.
    pub fn observe(&mut self, prints: HashMap<K, u64>, now: Instant) -> Vec<K> {
        self.seen.retain(|k, _| prints.contains_key(k));
        let every = (self.ttl / 4).min(Duration::from_secs(30));
        let due = self
            .checked
            .is_none_or(|at| now.duration_since(at) >= every);
        let mut quiet = Vec::new();
        for (k, fingerprint) in prints {
            let g = self.seen.entry(k.clone()).or_insert(Group {
                fingerprint,
                changed: now,
            });
            if g.fingerprint != fingerprint {
                *g = Group {
                    fingerprint,
                    changed: now,
                };
            }
            if due && now.duration_since(g.changed) >= self.ttl {
                quiet.push(k);
            }
        }
        if due {
            self.checked = Some(now);
        }
        quiet
    }

    /// A key whose series were freed: back, it starts anew.
    pub fn forget(&mut self, k: &K) {
        self.seen.remove(k);
    }
}

/// Expires the kernel series: one per agent, used under the maps' lock.
#[derive(Debug)]
pub struct Expiry {
    ttl: Duration,
    groups: Quiet<FlowKey>,
    /// Series freed so far, by family label of `netagent_series_expired_total`.
    expired: BTreeMap<&'static str, u64>,
    /// Flow keys freed since the last [`Expiry::take_freed`].
    freed: Vec<FlowKey>,
    v2_root: Option<PathBuf>,
}

/// A flow key with its histogram kind cleared: the group of both.
fn group_of(k: &FlowKey) -> FlowKey {
    FlowKey { hist: 0, ..*k }
}

fn bytes_of<T: aya::Pod>(v: &T) -> &[u8] {
    // SAFETY: Pod values are plain bytes without padding (#[repr(C)] mirrors
    // whose every field is written by the kernel).
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

impl Expiry {
    /// `ttl` zero: nothing ever expires.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            groups: Quiet::new(ttl),
            expired: BTreeMap::new(),
            freed: Vec::new(),
            v2_root: crate::kernel::cgroup::v2_root(),
        }
    }

    /// The flow keys freed since the last call (for the names they kept).
    pub fn take_freed(&mut self) -> Vec<FlowKey> {
        std::mem::take(&mut self.freed)
    }

    /// Series freed so far, by family.
    pub fn expired(&self) -> Vec<(&'static str, u64)> {
        ["flows", "histograms", "reset_reasons"]
            .iter()
            .map(|f| (*f, self.expired.get(f).copied().unwrap_or(0)))
            .collect()
    }

    /// Notes what changed since the last sweep; frees the quiet series of
    /// gone owners in the kernel and removes them from `snap`.
    pub fn sweep(
        &mut self,
        maps: &mut KernelMaps,
        snap: &mut KernelSnapshot,
        now: Instant,
    ) -> anyhow::Result<()> {
        if self.ttl.is_zero() {
            return Ok(());
        }
        let mut prints: HashMap<FlowKey, std::collections::hash_map::DefaultHasher> =
            HashMap::new();
        for (k, v) in &snap.flows {
            hash_into(&mut prints, k, bytes_of::<FlowStats>(v));
        }
        for (k, v) in &snap.hists {
            hash_into(&mut prints, k, bytes_of::<Hist>(v));
        }
        let prints = prints.into_iter().map(|(k, h)| (k, h.finish())).collect();
        let quiet = self.groups.observe(prints, now);
        if quiet.is_empty() {
            return Ok(());
        }
        // Only now, and only with candidates: the scan reads every task.
        let sockets = maps.conns.tcp_sockets()?;
        let live = LiveOwners::scan(self.v2_root.as_deref(), &sockets);
        let gone: HashSet<FlowKey> = quiet
            .into_iter()
            .filter(|k| !live.contains(&owner(&k.comm, k.cgroup_id)))
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        let kinds: HashMap<FlowKey, Vec<u8>> =
            snap.hists.iter().fold(HashMap::new(), |mut m, (k, _)| {
                m.entry(group_of(k)).or_default().push(k.hist);
                m
            });
        for k in &gone {
            if let Some(slot) = maps.flows.free(k)? {
                maps.flow_hists.set(slot, [0u32; HIST_KINDS], 0)?;
                *self.expired.entry("flows").or_default() += 1;
            }
            for &hist in kinds.get(k).map(Vec::as_slice).unwrap_or_default() {
                if maps.hists.free(&FlowKey { hist, ..*k })?.is_some() {
                    *self.expired.entry("histograms").or_default() += 1;
                }
            }
            self.groups.forget(k);
        }
        snap.flows.retain(|(k, _)| !gone.contains(k));
        self.freed.extend(gone.iter().copied());
        snap.hists.retain(|(k, _)| !gone.contains(&group_of(k)));
        // Resets by reason belong to an owner: freed with its last series.
        let remaining: HashSet<Owner> = snap
            .flows
            .iter()
            .map(|(k, _)| owner(&k.comm, k.cgroup_id))
            .collect();
        let owners: HashSet<Owner> = gone
            .iter()
            .map(|k| owner(&k.comm, k.cgroup_id))
            .filter(|o| !remaining.contains(o))
            .collect();
        let n = maps
            .conns
            .forget_owners(|comm, cg| owners.contains(&owner(comm, cg)))?;
        *self.expired.entry("reset_reasons").or_default() += n;
        tracing::debug!(series = gone.len(), "expired series of gone owners");
        Ok(())
    }
}

fn hash_into(
    prints: &mut HashMap<FlowKey, std::collections::hash_map::DefaultHasher>,
    k: &FlowKey,
    bytes: &[u8],
) {
    let h = prints.entry(group_of(k)).or_default();
    k.hist.hash(h);
    bytes.hash(h);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_quiet_once_unchanged_for_the_ttl() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(2);
        let mut q = Quiet::new(ttl);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let prints = |a: u64, b: u64| HashMap::from([("a", a), ("b", b)]);
        assert!(q.observe(prints(1, 1), at(0)).is_empty());
        assert!(q.observe(prints(1, 2), at(1)).is_empty(), "b changed");
        assert_eq!(q.observe(prints(1, 2), at(2)), vec!["a"]);
        // Checked at most once a quarter TTL.
        let soon = at(2) + Duration::from_millis(100);
        assert!(q.observe(prints(1, 2), soon).is_empty());
        let mut quiet = q.observe(prints(1, 2), at(3));
        quiet.sort();
        assert_eq!(quiet, vec!["a", "b"]);
        // Forgotten (freed), it starts anew; absent keys are dropped.
        q.forget(&"a");
        assert_eq!(q.observe(prints(1, 2), at(4)), vec!["b"]);
        assert!(q.observe(HashMap::from([("a", 1)]), at(5)).is_empty());
        assert!(!q.seen.contains_key("b"));
    }

    #[test]
    fn comm_owner_stops_at_the_first_nul() {
        let mut a = [0u8; COMM_LEN];
        a[..3].copy_from_slice(b"abc");
        let mut b = a;
        b[5] = b'x'; // garbage after the NUL
        assert_eq!(owner(&a, 7), owner(&b, 7));
        assert_ne!(owner(&a, 7), owner(&a, 8));
    }

    #[test]
    fn this_process_is_alive_and_a_made_up_one_is_not() {
        let root = crate::kernel::cgroup::v2_root();
        let live = LiveOwners::scan(root.as_deref(), &[]);
        let comm = std::fs::read("/proc/thread-self/comm").expect("comm");
        let mut c = [0u8; COMM_LEN];
        c[..comm.len() - 1].copy_from_slice(&comm[..comm.len() - 1]);
        assert!(live.comms.contains(&c));
        let mut other = [0u8; COMM_LEN];
        other[..14].copy_from_slice(b"no-such-task-x");
        assert!(!live.contains(&(other, 1)));
    }
}
