//! The resolver on a directory tree standing in for the cgroup hierarchy
//! (directory inodes are its ids, as in cgroupfs), and on real cgroups
//! when run as root.

use super::*;
use crate::collect::containers::runtimes::fixtures::{text, Tree};
use crate::config::unspanned;

const ID: &str = "4f1c6b3a9d2e8f7a0b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a";

fn config(t: &Tree) -> ContainersConfig {
    ContainersConfig {
        docker_root: unspanned(t.roots.docker.display().to_string()),
        containerd_state: unspanned(t.roots.containerd.display().to_string()),
        storage_root: unspanned(t.roots.storage.display().to_string()),
        storage_run_root: unspanned(t.roots.storage_run.display().to_string()),
        ..ContainersConfig::default()
    }
}

fn ino(p: &Path) -> u64 {
    fs::metadata(p).expect("stat").ino()
}

fn reads(r: &CgroupResolver) -> Vec<((&'static str, &'static str), u64)> {
    r.runtimes.reads().iter().map(|(k, v)| (*k, *v)).collect()
}

#[test]
fn a_docker_container_is_named_once_and_forgotten_with_its_cgroup() {
    let t = Tree::new("resolver");
    let cg = t.dir.0.join("cgroup");
    let scope = cg.join("system.slice").join(format!("docker-{ID}.scope"));
    let sub = scope.join("init.scope");
    fs::create_dir_all(&sub).unwrap();
    t.put(
        &t.roots.docker,
        &format!("containers/{ID}/config.v2.json"),
        &text("docker/config.v2.json").replace("{ID}", ID),
    );
    let mut r = CgroupResolver::new(cg.clone(), &config(&t));
    let web = r.identity(ino(&scope));
    assert_eq!((web.name.as_str(), web.id.as_str()), ("web", ID));
    assert_eq!(web.runtime, "docker");
    assert_eq!(r.identity(ino(&sub)), web, "a container's sub-cgroup");
    assert_eq!(
        *r.identity(ino(&cg.join("system.slice"))),
        Identity::default()
    );
    assert_eq!(*r.identity(ino(&cg)), Identity::default(), "the root");
    assert_eq!(*r.identity(u64::MAX - 3), Identity::default(), "unknown id");
    assert_eq!(r.identity_of_container(ID), web);
    assert_eq!(reads(&r), vec![(("docker", "found"), 1)], "read once");

    let info = r.info_family();
    assert_eq!(info.series.len(), 1);
    assert_eq!(
        info.series[0].labels,
        vec![
            ("container_id", ID.to_string()),
            ("container", "web".to_string()),
            ("pod", String::new()),
            ("namespace", String::new()),
            ("image", "netagent-test/busybox:latest".to_string()),
            ("runtime", "docker".to_string()),
        ]
    );

    // Nothing is gone yet: nothing pruned (the unknown id came within a
    // second of the last walk, so it was not cached at all).
    assert_eq!(r.prune(), 0);
    assert_eq!(r.identities.len(), 1);
    fs::remove_dir(&sub).unwrap();
    assert_eq!(r.prune(), 1);
    assert_eq!(r.identities.len(), 1, "its scope is still there");
    fs::remove_dir(&scope).unwrap();
    assert_eq!(r.prune(), 1);
    assert!(r.identities.is_empty());
    assert!(r.info_family().series.is_empty());
    // A container whose cgroup is gone is not read again: its short id.
    let gone = r.identity_of_container(ID);
    assert_eq!((gone.name.as_str(), gone.id.as_str()), (&ID[..12], ID));
    assert_eq!(reads(&r), vec![(("docker", "found"), 1)]);
    assert!(r.identities.is_empty(), "and not cached");
}

#[test]
fn state_written_after_the_first_lookup_is_found_on_a_retry() {
    let t = Tree::new("resolver-retry");
    let cg = t.dir.0.join("cgroup");
    let dir = cg
        .join("kubepods")
        .join("besteffort")
        .join("pod6a4c2e0b")
        .join(ID);
    fs::create_dir_all(&dir).unwrap();
    let mut r = CgroupResolver::new(cg, &config(&t));
    let first = r.identity(ino(&dir));
    assert_eq!(
        (first.name.as_str(), first.runtime),
        (&ID[..12], ""),
        "no state yet: the short id"
    );
    t.put(
        &t.roots.containerd,
        &format!("io.containerd.runtime.v2.task/k8s.io/{ID}/config.json"),
        &text("containerd/cri-container.json").replace("{ID}", ID),
    );
    assert_eq!(
        r.identity(ino(&dir)),
        first,
        "not before the retry interval"
    );
    r.retry_every = Duration::ZERO;
    let named = r.identity(ino(&dir));
    assert_eq!(
        (
            named.name.as_str(),
            named.pod.as_str(),
            named.namespace.as_str()
        ),
        ("websrv", "websrv-5f7d8c9b4-kq2lz", "shop")
    );
    assert_eq!(r.identity(ino(&dir)), named, "found: never read again");
    assert_eq!(
        reads(&r),
        vec![(("", "missing"), 1), (("containerd", "found"), 1)]
    );
    let families = r.cache_families();
    let entries: Vec<_> = families[0]
        .series
        .iter()
        .map(|s| (s.labels[0].1.clone(), format!("{:?}", s.value)))
        .collect();
    assert!(
        entries.contains(&("container".into(), "Gauge(1.0)".into())),
        "{entries:?}"
    );
}

#[test]
fn without_metadata_nothing_is_read() {
    let t = Tree::new("resolver-off");
    let cg = t.dir.0.join("cgroup");
    let dir = cg.join("docker").join(ID);
    fs::create_dir_all(&dir).unwrap();
    t.put(
        &t.roots.docker,
        &format!("containers/{ID}/config.v2.json"),
        &text("docker/config.v2.json").replace("{ID}", ID),
    );
    let cfg = ContainersConfig {
        metadata: false,
        ..config(&t)
    };
    let mut r = CgroupResolver::new(cg, &cfg);
    let got = r.identity(ino(&dir));
    assert_eq!((got.name.as_str(), got.runtime), (&ID[..12], "docker"));
    assert!(reads(&r).is_empty());
}

#[test]
fn paths_outside_the_root_are_refused() {
    let t = Tree::new("resolver-paths");
    let cg = t.dir.0.join("cgroup");
    fs::create_dir_all(cg.join("a")).unwrap();
    fs::write(cg.join("cgroup.procs"), "").unwrap();
    let r = CgroupResolver::new(cg.clone(), &config(&t));
    assert_eq!(r.id_of_path("/a"), Some(ino(&cg.join("a"))));
    assert_eq!(r.id_of_path("/"), Some(ino(&cg)));
    assert_eq!(r.id_of_path("/../../etc"), None);
    assert_eq!(r.id_of_path("/cgroup.procs"), None, "files are not cgroups");
    assert_eq!(r.id_of_path("/none"), None);
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
    let (id, parent_id) = (ino(&scope), ino(&parent));
    let t = Tree::new("resolver-real");
    let mut r = CgroupResolver::new(root.clone(), &config(&t));
    assert_eq!(r.identity(id).id, ID);
    assert_eq!(r.identity(id).name, &ID[..12], "no docker state here");
    assert_eq!(*r.identity(parent_id), Identity::default());
    let rel = format!("/netagent-test-{}/docker-{ID}.scope", std::process::id());
    assert_eq!(r.id_of_path(&rel), Some(id));

    // Other cgroups may come and go meanwhile; ours must survive.
    r.prune();
    assert!(r.cache.contains_key(&id) && r.cache.contains_key(&parent_id));
    drop(made);
    assert!(!scope.exists() && !parent.exists(), "rmdir failed");
    assert!(r.prune() >= 2);
    assert!(!r.cache.contains_key(&id) && !r.identities.contains_key(ID));
    assert!(r.cache.contains_key(&ino(&root)));
}

#[test]
fn unknown_ids_rescan_at_most_once_per_interval() {
    let Some(root) = writable_v2_root() else {
        return;
    };
    let t = Tree::new("resolver-rescan");
    let mut r = CgroupResolver::new(root.clone(), &config(&t));
    r.rescan_every = Duration::from_secs(3600);
    // Ids count up from 1, so this one is never a real cgroup.
    let bogus = u64::MAX - 7;
    assert_eq!(*r.identity(bogus), Identity::default());
    let first = r.last_rescan.expect("a miss rescans");
    assert_eq!(*r.identity(bogus), Identity::default());
    assert_eq!(*r.identity(bogus - 1), Identity::default());
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
    let id = ino(&scope);
    assert_eq!(*r.identity(id), Identity::default());
    r.rescan_every = Duration::ZERO;
    assert_eq!(r.identity(id).id, ID);
    assert_eq!(r.identity(id).runtime, "podman", "from the path");
    drop(made);
}
