//! The `containers:` config section (README, "Containers and Kubernetes
//! pods"): where the container runtimes keep their state on the node. The
//! agent reads a container's name, pod, namespace and image from there,
//! once per new container cgroup, never per event.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{line, range, unspanned, KeyError};

pub const DEFAULT_DOCKER_ROOT: &str = "/var/lib/docker";
pub const DEFAULT_CONTAINERD_STATE: &str = "/run/containerd";
pub const DEFAULT_STORAGE_ROOT: &str = "/var/lib/containers/storage";
pub const DEFAULT_STORAGE_RUN_ROOT: &str = "/run/containers/storage";

/// `containers:` config section.
///
/// ```yaml
/// containers:
///   metadata: true
///   docker_root: /var/lib/docker
///   containerd_state: /run/containerd
///   storage_root: /var/lib/containers/storage
///   storage_run_root: /run/containers/storage
///   prune_interval_seconds: 60
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainersConfig {
    /// Read names from the runtimes' state (default true); false: every
    /// container is named by its short id and has no pod or namespace.
    pub metadata: bool,
    /// Docker's data root (`dockerd --data-root`): `containers/<id>/config.v2.json`.
    pub docker_root: Spanned<String>,
    /// containerd's state directory (`state` in its config.toml): task
    /// bundles under `io.containerd.runtime.v2.task/<namespace>/<id>/`.
    pub containerd_state: Spanned<String>,
    /// containers/storage graph root (podman, CRI-O): `containers.json`
    /// with podman's names, and podman's OCI bundles.
    pub storage_root: Spanned<String>,
    /// containers/storage run root: CRI-O's OCI bundles.
    pub storage_run_root: Spanned<String>,
    /// How often cached cgroups are checked for removal (default 60 s;
    /// 0.1 … 3600): a removed container's entry is gone within this time.
    pub prune_interval_seconds: Spanned<f64>,
}

impl Default for ContainersConfig {
    fn default() -> Self {
        Self {
            metadata: true,
            docker_root: unspanned(DEFAULT_DOCKER_ROOT.to_string()),
            containerd_state: unspanned(DEFAULT_CONTAINERD_STATE.to_string()),
            storage_root: unspanned(DEFAULT_STORAGE_ROOT.to_string()),
            storage_run_root: unspanned(DEFAULT_STORAGE_RUN_ROOT.to_string()),
            prune_interval_seconds: unspanned(60.0),
        }
    }
}

impl ContainersConfig {
    /// The first invalid key, its line and why.
    pub fn validate(&self) -> Result<(), KeyError> {
        for (key, v) in [
            ("containers.docker_root", &self.docker_root),
            ("containers.containerd_state", &self.containerd_state),
            ("containers.storage_root", &self.storage_root),
            ("containers.storage_run_root", &self.storage_run_root),
        ] {
            if !v.value.starts_with('/') {
                return Err(KeyError {
                    key: key.into(),
                    line: line(v),
                    reason: format!("{:?} is not an absolute path", v.value),
                });
            }
        }
        range(
            "containers.prune_interval_seconds",
            &self.prune_interval_seconds,
            0.1,
            3600.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_absolute_and_the_interval_bounded() {
        let mut c = ContainersConfig::default();
        assert!(c.validate().is_ok());
        c.storage_root = unspanned("var/lib".into());
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "containers.storage_root");
        assert!(e.reason.contains("absolute"), "{e}");
        c.storage_root = unspanned("/x".into());
        c.prune_interval_seconds = unspanned(0.0);
        assert_eq!(
            c.validate().unwrap_err().key,
            "containers.prune_interval_seconds"
        );
    }
}
