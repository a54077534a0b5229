//! containerd: the OCI spec of a running task,
//! `<state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json`.
//! The CRI plugin (namespace `k8s.io`) annotates it:
//! `io.kubernetes.cri.container-type` (`container` or `sandbox`),
//! `io.kubernetes.cri.container-name`, `io.kubernetes.cri.sandbox-name`,
//! `io.kubernetes.cri.sandbox-namespace`, `io.kubernetes.cri.image-name`.
//! Containers without these (plain `ctr run`) are named by their short id.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::{identity, read_capped, ReadError};
use crate::collect::containers::Identity;

const RUNTIME: &str = "containerd";
const TASKS: &str = "io.containerd.runtime.v2.task";

/// The part of an OCI runtime spec read here (CRI-O's and podman's too).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Spec {
    pub annotations: Option<HashMap<String, String>>,
}

/// Parses an OCI spec's annotations.
pub fn annotations(text: &str) -> Result<HashMap<String, String>, String> {
    let spec: Spec = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(spec.annotations.unwrap_or_default())
}

/// The containerd namespace holding task `id` and its identity;
/// `Ok(None)` when no namespace has it.
pub fn read(state: &Path, id: &str) -> Result<Option<(String, Identity)>, ReadError> {
    let tasks = state.join(TASKS);
    let Ok(namespaces) = std::fs::read_dir(&tasks) else {
        return Ok(None); // no containerd (or no task yet)
    };
    for ns in namespaces.flatten() {
        let path = ns.path().join(id).join("config.json");
        let Some(text) = read_capped(&path, RUNTIME)? else {
            continue;
        };
        let a = annotations(&text).map_err(|e| (RUNTIME, format!("{}: {e}", path.display())))?;
        let get = |k: &str| a.get(k).map(String::as_str).unwrap_or("");
        let name = match get("io.kubernetes.cri.container-type") {
            "sandbox" => super::SANDBOX_NAME,
            _ => get("io.kubernetes.cri.container-name"),
        };
        let found = identity(
            id,
            name,
            get("io.kubernetes.cri.sandbox-name"),
            get("io.kubernetes.cri.sandbox-namespace"),
            get("io.kubernetes.cri.image-name"),
            RUNTIME,
        );
        return Ok(Some((ns.file_name().to_string_lossy().into_owned(), found)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{text, Tree};
    use super::*;

    const ID: &str = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b";

    fn task(t: &Tree, ns: &str, id: &str, fixture: &str) {
        t.put(
            &t.roots.containerd,
            &format!("{TASKS}/{ns}/{id}/config.json"),
            &text(fixture).replace("{ID}", id),
        );
    }

    #[test]
    fn a_cri_container_and_its_sandbox() {
        let t = Tree::new("containerd-cri");
        let sandbox = ID.replace('a', "0");
        task(&t, "k8s.io", ID, "containerd/cri-container.json");
        task(&t, "k8s.io", &sandbox, "containerd/cri-sandbox.json");
        let (ns, c) = read(&t.roots.containerd, ID).unwrap().unwrap();
        assert_eq!(ns, "k8s.io");
        assert_eq!(
            c,
            Identity {
                id: ID.into(),
                name: "websrv".into(),
                pod: "websrv-5f7d8c9b4-kq2lz".into(),
                namespace: "shop".into(),
                image: "registry.local/shop/websrv:2.0".into(),
                runtime: "containerd",
            }
        );
        let (_, s) = read(&t.roots.containerd, &sandbox).unwrap().unwrap();
        assert_eq!(
            (s.name.as_str(), s.pod.as_str(), s.namespace.as_str()),
            ("POD", "websrv-5f7d8c9b4-kq2lz", "shop")
        );
    }

    #[test]
    fn a_plain_task_is_named_by_its_short_id() {
        let t = Tree::new("containerd-plain");
        task(&t, "default", ID, "containerd/config.json");
        let (ns, c) = read(&t.roots.containerd, ID).unwrap().unwrap();
        assert_eq!(ns, "default");
        assert_eq!((c.name.as_str(), c.pod.as_str()), (&ID[..12], ""));
        assert_eq!(read(&t.roots.containerd, &ID.replace('9', "1")), Ok(None));
        // No state directory at all.
        assert_eq!(read(&t.dir.0.join("none"), ID), Ok(None));
    }
}
