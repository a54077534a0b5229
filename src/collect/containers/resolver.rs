//! The cache behind every `container`, `pod` and `namespace` label: cgroup
//! v2 id → path → container id → identity. Filled on demand (a cgroup id
//! nobody asked about is never resolved, a container nobody asked about
//! never read), emptied of cgroups that are gone every
//! `containers.prune_interval_seconds`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::paths::{self, Hint};
use super::runtimes::{hint_name, Roots, Runtimes};
use super::Identity;
use crate::config::ContainersConfig;
use crate::metrics::{catalog, scalar_family, Family, Labels};

/// A container whose state was not found is asked about again at most
/// every 5 s (its runtime may write the state just after starting it), for
/// at most this long after it was first asked about.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// One known cgroup: where it is and whose it is.
#[derive(Debug, Clone)]
struct Entry {
    /// Path relative to the root; None for ids a rescan did not find.
    rel: Option<PathBuf>,
    /// Container id and runtime hint; None for host cgroups.
    container: Option<(String, Hint)>,
}

/// A container's identity as far as it is known.
#[derive(Debug)]
struct Slot {
    identity: Arc<Identity>,
    hint: Hint,
    /// Named by a runtime's state; otherwise asked again (see RETRY_FOR).
    found: bool,
    first: Instant,
    tried: Instant,
}

/// Maps cgroup v2 ids (the inode number of the cgroup directory, which is what
/// the BPF helper bpf_get_current_cgroup_id() returns) to container identities.
#[derive(Debug)]
pub struct CgroupResolver {
    root: PathBuf,
    cache: HashMap<u64, Entry>,
    /// Container id -> identity, for the containers asked about.
    identities: HashMap<String, Slot>,
    runtimes: Runtimes,
    host: Arc<Identity>,
    last_rescan: Option<Instant>,
    /// Minimum time between two walks of the hierarchy.
    rescan_every: Duration,
    last_prune: Instant,
    prune_every: Duration,
    retry_every: Duration,
}

impl CgroupResolver {
    /// `root` is the cgroup v2 mount point (see crate::kernel::cgroup::v2_root()).
    pub fn new(root: PathBuf, cfg: &ContainersConfig) -> Self {
        let roots = cfg.metadata.then(|| Roots::from_config(cfg));
        Self {
            root,
            cache: HashMap::new(),
            identities: HashMap::new(),
            runtimes: Runtimes::new(roots),
            host: Arc::new(Identity::default()),
            last_rescan: None,
            rescan_every: Duration::from_secs(1),
            last_prune: Instant::now(),
            prune_every: Duration::from_secs_f64(cfg.prune_interval_seconds.value),
            retry_every: Duration::from_secs(5),
        }
    }

    /// The identity of a cgroup's owner; empty for host cgroups and unknown
    /// ids. On a cache miss, rescans the hierarchy, but at most once per
    /// second so a flood of unknown ids cannot cause repeated walks. Ids
    /// that are still unknown after a rescan resolve to the host.
    pub fn identity(&mut self, cgroup_id: u64) -> Arc<Identity> {
        if !self.cache.contains_key(&cgroup_id) {
            if !self.may_rescan() {
                // Not cached as unknown: the cgroup may be newer than the last walk.
                return self.host.clone();
            }
            self.rescan();
            self.cache.entry(cgroup_id).or_insert(Entry {
                rel: None,
                container: None,
            });
        }
        match self.cache.get(&cgroup_id).and_then(|e| e.container.clone()) {
            Some((id, hint)) => self.container(&id, hint),
            None => self.host.clone(),
        }
    }

    /// The identity of a container by its id (from a cgroup path, e.g. of a
    /// process in /proc). A container whose cgroup is gone is not read: its
    /// state is gone too; it gets its short id.
    pub fn identity_of_container(&mut self, id: &str) -> Arc<Identity> {
        if id.is_empty() {
            return self.host.clone();
        }
        if let Some(hint) = self.identities.get(id).map(|s| s.hint) {
            return self.container(id, hint);
        }
        let mut live = self.live_hint(id);
        if live.is_none() && self.may_rescan() {
            self.rescan();
            live = self.live_hint(id);
        }
        match live {
            Some(hint) => self.container(id, hint),
            None => Arc::new(Identity::unnamed(id, "")),
        }
    }

    fn live_hint(&self, id: &str) -> Option<Hint> {
        self.cache
            .values()
            .find_map(|e| e.container.as_ref().filter(|(c, _)| c == id).map(|c| c.1))
    }

    fn may_rescan(&self) -> bool {
        self.last_rescan
            .is_none_or(|t| t.elapsed() >= self.rescan_every)
    }

    /// The cached identity of a container, read from its runtime's state
    /// when new (or not found yet and due for another try).
    fn container(&mut self, id: &str, hint: Hint) -> Arc<Identity> {
        let now = Instant::now();
        if let Some(s) = self.identities.get(id) {
            let retry = !s.found
                && now.duration_since(s.tried) >= self.retry_every
                && now.duration_since(s.first) < RETRY_FOR;
            if !retry {
                return s.identity.clone();
            }
        }
        let read = self.runtimes.read(id, hint);
        let found = read.is_some();
        let identity = Arc::new(read.unwrap_or_else(|| Identity::unnamed(id, hint_name(hint))));
        let first = self.identities.get(id).map_or(now, |s| s.first);
        self.identities.insert(
            id.to_string(),
            Slot {
                identity: identity.clone(),
                hint,
                found,
                first,
                tried: now,
            },
        );
        identity
    }

    /// Prunes when `containers.prune_interval_seconds` have passed since the
    /// last time; returns how many cgroups were dropped.
    pub fn maybe_prune(&mut self) -> usize {
        if self.last_prune.elapsed() < self.prune_every {
            return 0;
        }
        self.prune()
    }

    /// Drops cache entries for cgroups that no longer exist, and the
    /// identities of containers none of whose cgroups is left; returns how
    /// many cgroups were removed.
    pub fn prune(&mut self) -> usize {
        self.last_prune = Instant::now();
        let before = self.cache.len();
        let root = &self.root;
        // Ids are never reused (64-bit kernfs ids), so a path now holding
        // another inode means the cgroup was removed and one of the same name
        // created. Ids a rescan did not find have no path and go too.
        self.cache.retain(|id, e| {
            e.rel
                .as_ref()
                .and_then(|rel| fs::symlink_metadata(root.join(rel)).ok())
                .is_some_and(|m| m.ino() == *id)
        });
        let live: HashSet<&str> = self
            .cache
            .values()
            .filter_map(|e| e.container.as_ref().map(|(id, _)| id.as_str()))
            .collect();
        self.identities.retain(|id, _| live.contains(id.as_str()));
        before - self.cache.len()
    }

    /// The cgroup id (directory inode) of a path relative to the root as
    /// written in /proc/<pid>/cgroup ("/system.slice/x.scope"), if it exists.
    pub fn id_of_path(&self, rel: &str) -> Option<u64> {
        let meta = fs::symlink_metadata(self.path_of(rel)?).ok()?;
        meta.is_dir().then(|| meta.ino())
    }

    /// `rel` under the root; None for paths that would leave it.
    fn path_of(&self, rel: &str) -> Option<PathBuf> {
        let rel = Path::new(rel);
        // Only plain names: `..` or a second absolute path must not escape root.
        if !rel
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        {
            return None;
        }
        Some(self.root.join(rel.strip_prefix("/").unwrap_or(rel)))
    }

    /// A process in a cached cgroup (the first of its `cgroup.procs`), to
    /// find the cgroup's network namespace.
    pub fn a_pid(&self, cgroup_id: u64) -> Option<u32> {
        let rel = self.cache.get(&cgroup_id)?.rel.as_ref()?;
        let procs = fs::read_to_string(self.root.join(rel).join("cgroup.procs")).ok()?;
        procs.lines().next()?.trim().parse().ok()
    }

    /// Walks every directory under the root and caches id -> container.
    fn rescan(&mut self) {
        self.last_rescan = Some(Instant::now());
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = self.root.join(&rel);
            // A cgroup removed mid-walk is simply not there any more.
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_dir() {
                    continue;
                }
                let child = rel.join(entry.file_name());
                let container = paths::parse(&child.to_string_lossy());
                self.cache.insert(
                    meta.ino(),
                    Entry {
                        rel: Some(child.clone()),
                        container,
                    },
                );
                stack.push(child);
            }
        }
        // The root itself is a host cgroup (id 1 on 64-bit kernels).
        if let Ok(meta) = fs::metadata(&self.root) {
            self.cache.insert(
                meta.ino(),
                Entry {
                    rel: Some(PathBuf::new()),
                    container: None,
                },
            );
        }
    }

    /// `netagent_container_info`: one series per container asked about
    /// whose cgroup is still there.
    pub fn info_family(&self) -> Family {
        let series: BTreeMap<Labels, f64> = self
            .identities
            .values()
            .map(|s| {
                let i = &s.identity;
                let labels = vec![
                    ("container_id", i.id.clone()),
                    ("container", i.name.clone()),
                    ("pod", i.pod.clone()),
                    ("namespace", i.namespace.clone()),
                    ("image", i.image.clone()),
                    ("runtime", i.runtime.to_string()),
                ];
                (labels, 1.0)
            })
            .collect();
        scalar_family(&catalog::CONTAINER_INFO, series)
    }

    /// The cache's own families: entries held, runtime state reads.
    pub fn cache_families(&self) -> Vec<Family> {
        let entries = BTreeMap::from([
            (
                vec![("kind", "cgroup".to_string())],
                self.cache.len() as f64,
            ),
            (
                vec![("kind", "container".to_string())],
                self.identities.len() as f64,
            ),
        ]);
        let reads = self
            .runtimes
            .reads()
            .iter()
            .map(|((runtime, result), n)| {
                (
                    vec![
                        ("runtime", runtime.to_string()),
                        ("result", result.to_string()),
                    ],
                    *n as f64,
                )
            })
            .collect();
        vec![
            scalar_family(&catalog::CONTAINER_CACHE_ENTRIES, entries),
            scalar_family(&catalog::CONTAINER_METADATA_READS, reads),
        ]
    }
}

#[cfg(test)]
mod tests;
