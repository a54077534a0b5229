//! Container ids from cgroup paths and from the cgroup ids BPF programs see.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// Length of a full docker/containerd/CRI-O/podman container id in hex.
const ID_LEN: usize = 64;

/// systemd scope prefixes that name a container; the `*-conmon-` scopes of
/// CRI-O and podman hold the monitor process, not the container.
const SCOPE_PREFIXES: [&str; 4] = ["docker-", "cri-containerd-", "crio-", "libpod-"];
const CONMON_PREFIXES: [&str; 2] = ["crio-conmon-", "libpod-conmon-"];

/// Directories under which the cgroupfs drivers name a container's cgroup by
/// its bare id: `/docker/<id>`, `/kubepods/<qos>/pod<uid>/<id>`.
const BARE_ID_PARENTS: [&str; 2] = ["docker", "kubepods"];

/// Extracts a container id from a cgroup path, or None for host processes.
///
/// Recognises docker (`docker-<64hex>.scope`, `/docker/<64hex>`),
/// containerd/CRI (`cri-containerd-<id>.scope`, `/kubepods/.../<64hex>`),
/// CRI-O (`crio-<id>.scope`; `crio-conmon-` is ignored), podman/libpod
/// (`libpod-<id>.scope`; `libpod-conmon-` is ignored) and the same scopes
/// inside Kubernetes pod slices. systemd-nspawn machines are not containers
/// here. Returns the full 64-hex id, lowercase.
pub fn container_id(cgroup_path: &str) -> Option<String> {
    // /proc/<pid>/cgroup marks a removed cgroup that a dying task still sits in.
    let path = cgroup_path
        .strip_suffix(" (deleted)")
        .unwrap_or(cgroup_path);
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    // Deepest match wins: sub-cgroups a container creates for itself
    // (systemd inside it, podman's `container` leaf) still belong to it, and
    // a nested container beats the one around it.
    for (i, part) in parts.iter().enumerate().rev() {
        if CONMON_PREFIXES.iter().any(|p| part.starts_with(p)) {
            return None;
        }
        if let Some(id) = scope_id(part) {
            return Some(id);
        }
        let under_runtime = parts[..i].iter().any(|a| BARE_ID_PARENTS.contains(a));
        if under_runtime && is_id(part) {
            return Some(part.to_ascii_lowercase());
        }
    }
    None
}

/// The id in `<runtime>-<id>.scope`, if `part` is such a scope.
fn scope_id(part: &str) -> Option<String> {
    let stem = part.strip_suffix(".scope")?;
    SCOPE_PREFIXES
        .iter()
        .filter_map(|p| stem.strip_prefix(p))
        .find(|id| is_id(id))
        .map(str::to_ascii_lowercase)
}

fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One known cgroup: where it is and whose it is.
#[derive(Debug, Clone)]
struct Entry {
    /// Path relative to the root; None for ids a rescan did not find.
    rel: Option<PathBuf>,
    /// Container id, None for host cgroups.
    container: Option<String>,
}

/// Maps cgroup v2 ids (the inode number of the cgroup directory, which is what
/// the BPF helper bpf_get_current_cgroup_id() returns) to container ids.
#[derive(Debug)]
pub struct CgroupResolver {
    root: PathBuf,
    cache: HashMap<u64, Entry>,
    last_rescan: Option<Instant>,
    /// Minimum time between two walks of the hierarchy.
    rescan_every: Duration,
}

impl CgroupResolver {
    /// `root` is the cgroup v2 mount point (see crate::kernel::cgroup::v2_root()).
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            cache: HashMap::new(),
            last_rescan: None,
            rescan_every: Duration::from_secs(1),
        }
    }

    /// Container id for a cgroup id; "" for host cgroups and unknown ids. On a
    /// cache miss, rescans the hierarchy, but at most once per second so a
    /// flood of unknown ids cannot cause repeated walks. Ids that are still
    /// unknown after a rescan resolve to "".
    pub fn container(&mut self, cgroup_id: u64) -> String {
        if let Some(e) = self.cache.get(&cgroup_id) {
            return e.container.clone().unwrap_or_default();
        }
        if self
            .last_rescan
            .is_some_and(|t| t.elapsed() < self.rescan_every)
        {
            // Not cached as unknown: the cgroup may be newer than the last walk.
            return String::new();
        }
        self.rescan();
        self.cache
            .entry(cgroup_id)
            .or_insert(Entry {
                rel: None,
                container: None,
            })
            .container
            .clone()
            .unwrap_or_default()
    }

    /// Drops cache entries for cgroups that no longer exist (call
    /// periodically); returns how many were removed.
    pub fn prune(&mut self) -> usize {
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
        before - self.cache.len()
    }

    /// The cgroup id (directory inode) of a path relative to the root as
    /// written in /proc/<pid>/cgroup ("/system.slice/x.scope"), if it exists.
    pub fn id_of_path(&self, rel: &str) -> Option<u64> {
        let rel = Path::new(rel);
        // Only plain names: `..` or a second absolute path must not escape root.
        if !rel
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        {
            return None;
        }
        let path = self.root.join(rel.strip_prefix("/").unwrap_or(rel));
        let meta = fs::symlink_metadata(path).ok()?;
        meta.is_dir().then(|| meta.ino())
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
                let container = container_id(&child.to_string_lossy());
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c6b3a9d2e8f7a0b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a";

    fn id(path: &str) -> Option<String> {
        container_id(&path.replace("ID", ID))
    }

    #[test]
    fn docker() {
        let want = Some(ID.to_string());
        assert_eq!(id("/system.slice/docker-ID.scope"), want);
        assert_eq!(id("0::/system.slice/docker-ID.scope"), want);
        assert_eq!(id("/docker/ID"), want);
        // A container running systemd (cgroupns=private) makes sub-cgroups.
        assert_eq!(id("/system.slice/docker-ID.scope/init.scope"), want);
        assert_eq!(id("/docker/ID/system.slice/nginx.service"), want);
        // Removed cgroup of a dying task.
        assert_eq!(id("/system.slice/docker-ID.scope (deleted)"), want);
        assert_eq!(id("/system.slice/docker.service"), None);
        assert_eq!(id("/system.slice/containerd.service"), None);
    }

    #[test]
    fn containerd_and_kubernetes() {
        let want = Some(ID.to_string());
        for path in [
            "/system.slice/cri-containerd-ID.scope",
            "/kubepods.slice/kubepods-burstable.slice/\
             kubepods-burstable-pod2c7e6f38_9d1b_4b4a_8f27_1b3e0c9a7d11.slice/cri-containerd-ID.scope",
            "/kubepods.slice/kubepods-besteffort.slice/\
             kubepods-besteffort-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/cri-containerd-ID.scope",
            "/kubepods.slice/kubepods-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/docker-ID.scope",
            "/kubepods/burstable/pod2c7e6f38-9d1b-4b4a-8f27-1b3e0c9a7d11/ID",
            "/kubepods/pod2c7e6f38-9d1b-4b4a-8f27-1b3e0c9a7d11/ID",
        ] {
            assert_eq!(id(path), want, "{path}");
        }
        // The pod slice alone is no container.
        assert_eq!(
            id("/kubepods.slice/kubepods-burstable.slice/\
                kubepods-burstable-pod2c7e6f38_9d1b_4b4a_8f27_1b3e0c9a7d11.slice"),
            None
        );
        assert_eq!(id("/kubepods.slice"), None);
    }

    #[test]
    fn crio() {
        let pod = "/kubepods.slice/kubepods-besteffort.slice/\
                   kubepods-besteffort-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice";
        assert_eq!(id(&format!("{pod}/crio-ID.scope")), Some(ID.to_string()));
        assert_eq!(id(&format!("{pod}/crio-conmon-ID.scope")), None);
        assert_eq!(id("/machine.slice/crio-conmon-ID.scope"), None);
    }

    #[test]
    fn podman() {
        let want = Some(ID.to_string());
        assert_eq!(id("/machine.slice/libpod-ID.scope"), want);
        assert_eq!(id("/machine.slice/libpod-ID.scope/container"), want);
        assert_eq!(
            id("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-ID.scope"),
            want
        );
        assert_eq!(id("/machine.slice/libpod-conmon-ID.scope"), None);
        assert_eq!(id("/machine.slice/libpod-pod-1234.slice"), None);
    }

    #[test]
    fn host_and_malformed_paths() {
        for path in [
            "/",
            "",
            "/user.slice/user-0.slice/session-1.scope",
            "/system.slice/sshd.service",
            "/init.scope",
            // systemd-nspawn machines are not container-id sources.
            "/machine.slice/systemd-nspawn@debian.service",
            "/machine.slice/machine-debian.scope",
            // Too short, too long, not hex, bare id outside a runtime dir.
            "/system.slice/docker-4f1c6b3a9d2e.scope",
            "/docker/4f1c6b3a9d2e",
            "/system.slice/docker-IDaa.scope",
            "/system.slice/docker-ID.service",
            "/system.slice/ID",
        ] {
            assert_eq!(id(path), None, "{path}");
        }
        let bad_hex = format!("/system.slice/docker-{}g.scope", &ID[1..]);
        assert_eq!(container_id(&bad_hex), None);
    }

    #[test]
    fn ids_are_lowercased() {
        let upper = format!("/system.slice/docker-{}.scope", ID.to_ascii_uppercase());
        assert_eq!(container_id(&upper), Some(ID.to_string()));
    }

    #[test]
    fn nested_container_wins() {
        let inner = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let path = format!("/docker/{ID}/docker/{inner}");
        assert_eq!(container_id(&path), Some(inner.to_string()));
    }

    /// A cgroup made for the test, removed (rmdir, children first) on drop
    /// so a failing assertion does not leave it behind.
    struct TestCgroups(Vec<PathBuf>);

    impl Drop for TestCgroups {
        fn drop(&mut self) {
            for dir in self.0.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
        }
    }

    /// The v2 root when the test can create cgroups there.
    fn writable_v2_root() -> Option<PathBuf> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            crate::test_support::skip_or_fail("creating cgroups needs root");
            return None;
        }
        let root = crate::kernel::cgroup::v2_root();
        if root.is_none() {
            crate::test_support::skip_or_fail("no cgroup v2 hierarchy mounted");
        }
        root
    }

    #[test]
    fn resolves_and_prunes_a_real_cgroup() {
        let Some(root) = writable_v2_root() else {
            return;
        };
        let parent = root.join(format!("netagent-test-{}", std::process::id()));
        let scope = parent.join(format!("docker-{ID}.scope"));
        let mut made = TestCgroups(Vec::new());
        for dir in [&parent, &scope] {
            fs::create_dir(dir).expect("mkdir cgroup");
            made.0.push(dir.clone());
        }
        let ino = fs::metadata(&scope).expect("stat cgroup").ino();
        let parent_ino = fs::metadata(&parent).expect("stat cgroup").ino();

        let mut r = CgroupResolver::new(root.clone());
        assert_eq!(r.container(ino), ID);
        assert_eq!(r.container(parent_ino), "", "parent is a host cgroup");
        let root_ino = fs::metadata(&root).expect("stat root").ino();
        assert_eq!(r.container(root_ino), "");

        let rel = format!("/netagent-test-{}/docker-{ID}.scope", std::process::id());
        assert_eq!(r.id_of_path(&rel), Some(ino));
        assert_eq!(r.id_of_path("/"), Some(root_ino));
        assert_eq!(r.id_of_path("/netagent-no-such-cgroup"), None);
        assert_eq!(r.id_of_path("/../../etc"), None);
        assert_eq!(r.id_of_path("/cgroup.procs"), None, "files are not cgroups");

        // Other cgroups may come and go meanwhile; ours must survive.
        r.prune();
        assert!(r.cache.contains_key(&ino) && r.cache.contains_key(&parent_ino));
        drop(made);
        assert!(!scope.exists() && !parent.exists(), "rmdir failed");
        assert!(r.prune() >= 2);
        assert!(!r.cache.contains_key(&ino));
        assert!(!r.cache.contains_key(&parent_ino));
        assert!(r.cache.contains_key(&root_ino));
    }

    #[test]
    fn unknown_ids_rescan_at_most_once_per_interval() {
        let Some(root) = writable_v2_root() else {
            return;
        };
        let mut r = CgroupResolver::new(root.clone());
        r.rescan_every = Duration::from_secs(3600);
        // Ids count up from 1, so this one is never a real cgroup.
        let bogus = u64::MAX - 7;
        assert_eq!(r.container(bogus), "");
        let first = r.last_rescan.expect("a miss rescans");
        assert_eq!(r.container(bogus), "");
        assert_eq!(r.container(bogus - 1), "");
        assert_eq!(r.last_rescan, Some(first), "second miss walked again");

        // A cgroup created after the walk resolves only once the interval
        // has passed, and is not remembered as unknown meanwhile.
        let dir = root.join(format!("netagent-test-rescan-{}", std::process::id()));
        let scope = dir.join(format!("libpod-{ID}.scope"));
        let mut made = TestCgroups(Vec::new());
        for d in [&dir, &scope] {
            fs::create_dir(d).expect("mkdir cgroup");
            made.0.push(d.clone());
        }
        let ino = fs::metadata(&scope).expect("stat cgroup").ino();
        assert_eq!(r.container(ino), "");
        r.rescan_every = Duration::ZERO;
        assert_eq!(r.container(ino), ID);
        drop(made);
    }
}
