//! CRI-O and podman, which share containers/storage: a container's OCI
//! bundle is `<root>/overlay-containers/<id>/userdata/config.json` (podman:
//! graph root; CRI-O: run root, and a copy in the graph root). CRI-O
//! annotates it with `io.kubernetes.pod.name`, `io.kubernetes.pod.namespace`,
//! `io.kubernetes.container.name` and `io.kubernetes.cri-o.ImageName`;
//! podman (`io.container.manager: libpod`) keeps the container's name and
//! image in `<graph root>/overlay-containers/containers.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Deserialize;

use super::containerd::annotations;
use super::{identity, read_capped, ReadError, Roots};
use crate::collect::containers::Identity;

const CRIO: &str = "cri-o";
const PODMAN: &str = "podman";

fn bundle(root: &Path, id: &str) -> PathBuf {
    root.join("overlay-containers")
        .join(id)
        .join("userdata")
        .join("config.json")
}

/// One entry of containers.json.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Entry {
    id: String,
    names: Vec<String>,
    /// libpod's JSON: `{"image-name": …, "name": …, …}`.
    metadata: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Metadata {
    #[serde(rename = "image-name")]
    image_name: String,
    name: String,
}

/// podman's names by container id, parsed from containers.json again
/// only when the file changed.
#[derive(Debug, Default)]
pub struct NamesCache {
    stamp: Option<(SystemTime, u64)>,
    /// id -> (name, image)
    names: HashMap<String, (String, String)>,
}

impl NamesCache {
    fn lookup(&mut self, root: &Path, id: &str) -> Result<Option<(String, String)>, ReadError> {
        let path = root.join("overlay-containers").join("containers.json");
        let stamp = std::fs::metadata(&path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if stamp != self.stamp {
            self.names.clear();
            self.stamp = stamp;
            if let Some(text) = read_capped(&path, PODMAN)? {
                let entries: Vec<Entry> = serde_json::from_str(&text)
                    .map_err(|e| (PODMAN, format!("{}: {e}", path.display())))?;
                for e in entries {
                    let meta: Metadata = serde_json::from_str(&e.metadata).unwrap_or_default();
                    let name = if meta.name.is_empty() {
                        e.names.into_iter().next().unwrap_or_default()
                    } else {
                        meta.name
                    };
                    self.names.insert(e.id, (name, meta.image_name));
                }
            }
        }
        Ok(self.names.get(id).cloned())
    }
}

/// The identity CRI-O's or podman's state gives container `id`.
pub fn read(
    roots: &Roots,
    names: &mut NamesCache,
    id: &str,
) -> Result<Option<Identity>, ReadError> {
    let mut found = None;
    for root in [&roots.storage_run, &roots.storage] {
        let path = bundle(root, id);
        if let Some(text) = read_capped(&path, CRIO)? {
            found = Some((path, text));
            break;
        }
    }
    let Some((path, text)) = found else {
        return Ok(None);
    };
    let a = annotations(&text).map_err(|e| (CRIO, format!("{}: {e}", path.display())))?;
    let get = |k: &str| a.get(k).map(String::as_str).unwrap_or("");
    let podman = get("io.container.manager") == "libpod"
        || !a.keys().any(|k| k.starts_with("io.kubernetes.cri-o."));
    let (runtime, mut name, mut image) = if podman {
        (PODMAN, String::new(), String::new())
    } else {
        (
            CRIO,
            get("io.kubernetes.container.name").to_string(),
            get("io.kubernetes.cri-o.ImageName").to_string(),
        )
    };
    if podman {
        if let Some((n, i)) = names.lookup(&roots.storage, id)? {
            (name, image) = (n, i);
        }
        // A pod that `podman kube play` made says which Kubernetes names it has.
        if let Some(k8s) = a.get("io.kubernetes.container.name") {
            name.clone_from(k8s);
        }
    }
    Ok(Some(identity(
        id,
        &name,
        get("io.kubernetes.pod.name"),
        get("io.kubernetes.pod.namespace"),
        &image,
        runtime,
    )))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{text, Tree};
    use super::*;

    const ID: &str = "3c5e7a9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c";

    #[test]
    fn a_crio_container_from_the_run_root() {
        let t = Tree::new("crio");
        t.put(
            &t.roots.storage_run,
            &format!("overlay-containers/{ID}/userdata/config.json"),
            &text("crio/config.json").replace("{ID}", ID),
        );
        let mut names = NamesCache::default();
        let got = read(&t.roots, &mut names, ID).unwrap().unwrap();
        assert_eq!(
            got,
            Identity {
                id: ID.into(),
                name: "db".into(),
                pod: "db-0".into(),
                namespace: "shop".into(),
                image: "registry.local/shop/postgres:16".into(),
                runtime: "cri-o",
            }
        );
    }

    #[test]
    fn a_podman_container_named_from_containers_json() {
        let t = Tree::new("podman");
        t.put(
            &t.roots.storage,
            &format!("overlay-containers/{ID}/userdata/config.json"),
            &text("podman/config.json").replace("{ID}", ID),
        );
        let list = t.put(
            &t.roots.storage,
            "overlay-containers/containers.json",
            &text("podman/containers.json").replace("{ID}", ID),
        );
        let mut names = NamesCache::default();
        let got = read(&t.roots, &mut names, ID).unwrap().unwrap();
        assert_eq!(
            (got.name.as_str(), got.image.as_str(), got.runtime),
            ("cache", "localhost/netagent-test:latest", "podman")
        );
        assert_eq!((got.pod.as_str(), got.namespace.as_str()), ("", ""));

        // Renamed (podman rename): the file changes and is read again.
        let renamed = std::fs::read_to_string(&list)
            .unwrap()
            .replace("\\\"name\\\":\\\"cache\\\"", "\\\"name\\\":\\\"cache-2\\\"")
            .replace("\"cache\"", "\"cache-2\"");
        std::fs::write(&list, renamed).unwrap();
        let got = read(&t.roots, &mut names, ID).unwrap().unwrap();
        assert_eq!(got.name, "cache-2");

        // Not (yet) in containers.json: the short id.
        std::fs::write(&list, "[]").unwrap();
        let got = read(&t.roots, &mut names, ID).unwrap().unwrap();
        assert_eq!(got.name, &ID[..12]);
        assert_eq!(read(&t.roots, &mut names, &ID.replace('3', "4")), Ok(None));
    }
}
