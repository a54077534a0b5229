//! Cgroups made by a test (memory-limited ones, container-like ones),
//! removed on drop, children first, also when the test fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A 64-hex id for a fake container cgroup, unique per call (nanoseconds
/// in hex digits 0..32, the pid in 32..48).
pub fn container_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:032x}{:016x}{:016x}",
        nanos,
        std::process::id(),
        0x6e6574u64
    )
}

/// Mount point of a cgroup hierarchy from /proc/self/mounts: `cgroup2`, or
/// the v1 hierarchy carrying `controller`.
pub fn mount_of(fstype: &str, controller: Option<&str>) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dir, ty, opts) = (f.get(1)?, f.get(2)?, f.get(3)?);
        let ok = *ty == fstype && controller.is_none_or(|c| opts.split(',').any(|o| o == c));
        ok.then(|| PathBuf::from(dir.replace("\\040", " ")))
    })
}

/// Directories this test created; removed in reverse order on drop.
#[derive(Default)]
pub struct Cgroups {
    made: Vec<PathBuf>,
}

impl Cgroups {
    /// Creates `dir` (its parent must exist) and remembers it.
    pub fn make(&mut self, dir: &Path) -> PathBuf {
        std::fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        self.made.push(dir.to_path_buf());
        dir.to_path_buf()
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            // A cgroup whose last task just died can refuse rmdir briefly.
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if dir.exists() {
                eprintln!("warning: could not remove cgroup {}", dir.display());
            }
        }
    }
}

/// Where a memory limit can be set, and the cgroups a child must join so
/// that it is limited and sits in a v2 cgroup named like a container.
pub struct MemoryLimited {
    /// `--cgroup` arguments for testgen.
    pub join: Vec<PathBuf>,
    /// The container id the child's v2 cgroup resolves to.
    pub container: String,
    pub version: &'static str,
}

/// Makes a cgroup limited to `limit` bytes with no swap, plus (on hybrid
/// hosts, where memory is a v1 controller) a container-like v2 cgroup.
/// None when neither hierarchy offers a memory controller.
pub fn memory_limited(cg: &mut Cgroups, tag: &str, limit: u64) -> Option<MemoryLimited> {
    let id = container_id();
    let unique = format!("netagent-{tag}-{}-{}", std::process::id(), &id[16..32]);
    let v2 = mount_of("cgroup2", None);
    let v2_memory = v2.as_ref().is_some_and(|root| {
        std::fs::read_to_string(root.join("cgroup.subtree_control"))
            .is_ok_and(|s| s.split_whitespace().any(|c| c == "memory"))
    });
    if let (Some(root), true) = (&v2, v2_memory) {
        // Pure v2: the container-like leaf carries the limit itself.
        let parent = cg.make(&root.join(&unique));
        std::fs::write(parent.join("cgroup.subtree_control"), "+memory").unwrap();
        let leaf = cg.make(&parent.join(format!("docker-{id}.scope")));
        std::fs::write(leaf.join("memory.max"), limit.to_string()).unwrap();
        if leaf.join("memory.swap.max").exists() {
            std::fs::write(leaf.join("memory.swap.max"), "0").unwrap();
        }
        return Some(MemoryLimited {
            join: vec![leaf],
            container: id,
            version: "v2",
        });
    }
    let v1 = mount_of("cgroup", Some("memory"))?;
    let mem = cg.make(&v1.join(&unique));
    std::fs::write(mem.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
    // memsw (memory + swap) must be >= the memory limit; equal = no swap.
    if mem.join("memory.memsw.limit_in_bytes").exists() {
        std::fs::write(mem.join("memory.memsw.limit_in_bytes"), limit.to_string()).unwrap();
    }
    let mut join = vec![mem];
    let mut container = String::new();
    if let Some(root) = v2 {
        let parent = cg.make(&root.join(&unique));
        join.push(cg.make(&parent.join(format!("docker-{id}.scope"))));
        container = id;
    }
    Some(MemoryLimited {
        join,
        container,
        version: "v1",
    })
}

/// A container-like v2 cgroup (`<unique>/docker-<id>.scope`) and its id.
pub fn container_cgroup(cg: &mut Cgroups, tag: &str) -> Option<(PathBuf, String)> {
    let root = mount_of("cgroup2", None)?;
    let id = container_id();
    let parent = cg.make(&root.join(format!(
        "netagent-{tag}-{}-{}",
        std::process::id(),
        &id[16..32]
    )));
    let leaf = cg.make(&parent.join(format!("docker-{id}.scope")));
    Some((leaf, id))
}

/// The owner labels of a process in a container-like cgroup made by a test
/// (`container_id` from [`container_id`]; no runtime has state for it, so
/// its `container` is the short id), or on the host (`container_id` "").
pub fn owner<'a>(process: &'a str, container_id: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("process", process),
        ("container", &container_id[..container_id.len().min(12)]),
        ("container_id", container_id),
        ("pod", ""),
        ("namespace", ""),
    ]
}
