//! Which container a cgroup belongs to, and what the container is called:
//! the cgroup v2 id the BPF programs record → the cgroup's path
//! ([`resolver`]) → a container id and the runtime the path suggests
//! ([`paths`]) → name, pod, namespace and image from that runtime's state
//! on the node ([`runtimes`]). Each step is cached: a container's state is
//! read once, when its cgroup is first asked about, and forgotten when the
//! cgroup is gone. Nothing here runs per event.

pub mod paths;
pub mod resolver;
pub mod runtimes;

pub use paths::container_id;
pub use resolver::CgroupResolver;

/// Who a process belongs to. Host processes have every field empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// The full 64-hex container id.
    pub id: String,
    /// The container's name: docker's and podman's `--name`, the
    /// Kubernetes container name (`POD` for a pod's sandbox); the short id
    /// (12 hex) when no runtime's state names the container.
    pub name: String,
    /// Kubernetes pod and namespace; empty outside Kubernetes.
    pub pod: String,
    pub namespace: String,
    /// The image as the runtime recorded it; empty when unknown.
    pub image: String,
    /// `docker`, `containerd`, `cri-o`, `podman`: whose state named it, or
    /// the runtime the cgroup path suggests when none did; empty when
    /// unknown.
    pub runtime: &'static str,
}

impl Identity {
    /// The labels every per-process series carries, in catalog order:
    /// `container`, `container_id`, `pod`, `namespace`.
    pub fn labels(&self) -> [(&'static str, String); 4] {
        [
            ("container", self.name.clone()),
            ("container_id", self.id.clone()),
            ("pod", self.pod.clone()),
            ("namespace", self.namespace.clone()),
        ]
    }

    /// A container no runtime's state names (yet): its short id.
    pub fn unnamed(id: &str, runtime: &'static str) -> Self {
        Self {
            id: id.to_string(),
            name: short_id(id),
            runtime,
            ..Self::default()
        }
    }

    /// Every label `~other` (the fold of a capped store).
    pub fn other() -> Self {
        let o = crate::metrics::OTHER.to_string();
        Self {
            id: o.clone(),
            name: o.clone(),
            pod: o.clone(),
            namespace: o,
            ..Self::default()
        }
    }
}

/// The first 12 hex digits, as `docker ps` shows an id.
pub fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}
