//! Docker: `<data-root>/containers/<id>/config.v2.json`. `Name` (with a
//! leading `/`), `Config.Image` (the image as the user named it) and
//! `Config.Labels`; containers that cri-dockerd runs for the kubelet carry
//! `io.kubernetes.pod.name`, `io.kubernetes.pod.namespace` and
//! `io.kubernetes.container.name` (`POD` for the sandbox).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::{identity, read_capped, ReadError};
use crate::collect::containers::Identity;

const RUNTIME: &str = "docker";

#[derive(Deserialize, Default)]
#[serde(default)]
struct ConfigV2 {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Config")]
    config: Option<Inner>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Inner {
    #[serde(rename = "Image")]
    image: String,
    #[serde(rename = "Labels")]
    labels: Option<HashMap<String, String>>,
}

/// The identity docker's state gives container `id`; `Ok(None)` when
/// docker does not know it.
pub fn read(root: &Path, id: &str) -> Result<Option<Identity>, ReadError> {
    let path = root.join("containers").join(id).join("config.v2.json");
    let Some(text) = read_capped(&path, RUNTIME)? else {
        return Ok(None);
    };
    let c: ConfigV2 =
        serde_json::from_str(&text).map_err(|e| (RUNTIME, format!("{}: {e}", path.display())))?;
    let inner = c.config.unwrap_or_default();
    let labels = inner.labels.unwrap_or_default();
    let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
    let pod = get("io.kubernetes.pod.name");
    let name = match get("io.kubernetes.container.name") {
        "" if pod.is_empty() => c.name.trim_start_matches('/'),
        "" => super::SANDBOX_NAME,
        k8s => k8s,
    };
    Ok(Some(identity(
        id,
        name,
        pod,
        get("io.kubernetes.pod.namespace"),
        &inner.image,
        RUNTIME,
    )))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{text, Tree};
    use super::*;

    const ID: &str = "5e2f8a1c3b7d9e0f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f";

    #[test]
    fn a_docker_container() {
        let t = Tree::new("docker");
        t.put(
            &t.roots.docker,
            &format!("containers/{ID}/config.v2.json"),
            &text("docker/config.v2.json").replace("{ID}", ID),
        );
        let got = read(&t.roots.docker, ID).unwrap().unwrap();
        assert_eq!(
            got,
            Identity {
                id: ID.into(),
                name: "web".into(),
                pod: "".into(),
                namespace: "".into(),
                image: "netagent-test/busybox:latest".into(),
                runtime: "docker",
            }
        );
        assert_eq!(read(&t.roots.docker, &ID.replace('5', "6")), Ok(None));
    }

    #[test]
    fn a_cri_dockerd_container_and_its_sandbox() {
        let t = Tree::new("cri-dockerd");
        let sandbox = ID.replace('e', "1");
        for (id, fixture) in [
            (ID.to_string(), "docker/cri-dockerd-container.json"),
            (sandbox.clone(), "docker/cri-dockerd-sandbox.json"),
        ] {
            t.put(
                &t.roots.docker,
                &format!("containers/{id}/config.v2.json"),
                &text(fixture).replace("{ID}", &id),
            );
        }
        let c = read(&t.roots.docker, ID).unwrap().unwrap();
        assert_eq!(
            (c.name.as_str(), c.pod.as_str(), c.namespace.as_str()),
            ("api", "api-7d9f8b6c5d-x2x9q", "shop")
        );
        assert_eq!(c.image, "registry.local/shop/api:1.4.2");
        let s = read(&t.roots.docker, &sandbox).unwrap().unwrap();
        assert_eq!(
            (s.name.as_str(), s.pod.as_str(), s.namespace.as_str()),
            ("POD", "api-7d9f8b6c5d-x2x9q", "shop")
        );
    }

    #[test]
    fn malformed_state_is_an_error_naming_the_file() {
        let t = Tree::new("docker-bad");
        t.put(
            &t.roots.docker,
            &format!("containers/{ID}/config.v2.json"),
            "[1, 2",
        );
        let (runtime, why) = read(&t.roots.docker, ID).unwrap_err();
        assert_eq!(runtime, "docker");
        assert!(why.contains("config.v2.json"), "{why}");
        // Unexpected shapes of known fields are errors too, absent ones are not.
        t.put(
            &t.roots.docker,
            &format!("containers/{ID}/config.v2.json"),
            r#"{"ID": "x"}"#,
        );
        let got = read(&t.roots.docker, ID).unwrap().unwrap();
        assert_eq!(got.name, &ID[..12], "no name: the short id");
    }
}
