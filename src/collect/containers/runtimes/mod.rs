//! A container's identity from what its runtime keeps on the node: docker's
//! `config.v2.json` (`docker`), containerd's task bundle (`containerd`,
//! CRI included), CRI-O's and podman's bundles and podman's
//! `containers.json` (`storage`). Read once per container, off the hot
//! path; every read is counted by runtime and result.

mod containerd;
mod docker;
mod storage;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::paths::Hint;
use super::Identity;
use crate::config::ContainersConfig;

/// Largest state file read (docker's config.v2.json, an OCI spec, podman's
/// containers.json with every container of the node): larger ones are an
/// error, counted, never read whole.
const MAX_FILE_BYTES: u64 = 32 << 20;

/// Label values longer than this are cut (at a character boundary).
const MAX_LABEL_BYTES: usize = 256;

/// Kubernetes' name for a pod's sandbox (pause) container, as cri-dockerd
/// and CRI-O label it.
pub const SANDBOX_NAME: &str = "POD";

/// Where each runtime keeps its state.
#[derive(Debug, Clone)]
pub struct Roots {
    pub docker: PathBuf,
    pub containerd: PathBuf,
    pub storage: PathBuf,
    pub storage_run: PathBuf,
}

impl Roots {
    pub fn from_config(cfg: &ContainersConfig) -> Self {
        Self {
            docker: cfg.docker_root.value.clone().into(),
            containerd: cfg.containerd_state.value.clone().into(),
            storage: cfg.storage_root.value.clone().into(),
            storage_run: cfg.storage_run_root.value.clone().into(),
        }
    }
}

/// The runtime a cgroup path suggests, as the `runtime` label says it
/// (empty when the path does not tell: a bare id under `kubepods`).
pub fn hint_name(h: Hint) -> &'static str {
    match h {
        Hint::Docker => "docker",
        Hint::Containerd => "containerd",
        Hint::Crio => "cri-o",
        Hint::Podman => "podman",
        Hint::Any => "",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Docker,
    Containerd,
    Storage,
}

/// Which state to look at, in order, for a hint.
fn order(h: Hint) -> [Source; 3] {
    use Source::*;
    match h {
        Hint::Docker => [Docker, Containerd, Storage],
        Hint::Containerd => [Containerd, Docker, Storage],
        Hint::Crio | Hint::Podman => [Storage, Containerd, Docker],
        Hint::Any => [Containerd, Storage, Docker],
    }
}

/// Reads identities; keeps podman's parsed `containers.json` and the
/// counts of every read.
#[derive(Debug)]
pub struct Runtimes {
    roots: Option<Roots>,
    podman_names: storage::NamesCache,
    /// (runtime, result) -> reads: `found`, `missing`, `error`.
    reads: BTreeMap<(&'static str, &'static str), u64>,
}

impl Runtimes {
    /// `None`: never read anything (`containers.metadata: false`).
    pub fn new(roots: Option<Roots>) -> Self {
        Self {
            roots,
            podman_names: storage::NamesCache::default(),
            reads: BTreeMap::new(),
        }
    }

    /// Reads so far by (runtime, result).
    pub fn reads(&self) -> &BTreeMap<(&'static str, &'static str), u64> {
        &self.reads
    }

    fn count(&mut self, runtime: &'static str, result: &'static str) {
        *self.reads.entry((runtime, result)).or_default() += 1;
    }

    /// The identity of container `id`, or None when no runtime's state
    /// names it (yet). Errors (unreadable or malformed state) are logged
    /// once per container and counted.
    pub fn read(&mut self, id: &str, hint: Hint) -> Option<Identity> {
        let roots = self.roots.clone()?;
        for source in order(hint) {
            let got = match source {
                Source::Docker => docker::read(&roots.docker, id),
                Source::Containerd => match containerd::read(&roots.containerd, id) {
                    // Docker's own containers, as its containerd sees them:
                    // docker's state has the names.
                    Ok(Some((ns, _))) if ns == "moby" => docker::read(&roots.docker, id),
                    other => other.map(|o| o.map(|(_, identity)| identity)),
                },
                Source::Storage => storage::read(&roots, &mut self.podman_names, id),
            };
            match got {
                Ok(Some(identity)) => {
                    self.count(identity.runtime, "found");
                    return Some(identity);
                }
                Ok(None) => {}
                Err((runtime, e)) => {
                    tracing::warn!(container = id, runtime, error = %e, "cannot read container state");
                    self.count(runtime, "error");
                    return None;
                }
            }
        }
        self.count(hint_name(hint), "missing");
        None
    }
}

/// Why a runtime's state could not be used: (runtime, message).
type ReadError = (&'static str, String);

/// Reads a state file of at most [`MAX_FILE_BYTES`]; `Ok(None)` when it
/// does not exist.
fn read_capped(path: &Path, runtime: &'static str) -> Result<Option<String>, ReadError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A path component that is a file (a half-removed container).
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
        Err(e) => return Err((runtime, format!("{}: {e}", path.display()))),
    };
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| (runtime, format!("{}: {e}", path.display())))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err((
            runtime,
            format!("{} is larger than {MAX_FILE_BYTES} bytes", path.display()),
        ));
    }
    Ok(Some(text))
}

/// A label value: at most [`MAX_LABEL_BYTES`], cut at a character boundary.
fn label(s: &str) -> String {
    if s.len() <= MAX_LABEL_BYTES {
        return s.to_string();
    }
    let mut end = MAX_LABEL_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The fields of an identity, each cut to a label's length.
fn identity(
    id: &str,
    name: &str,
    pod: &str,
    namespace: &str,
    image: &str,
    runtime: &'static str,
) -> Identity {
    Identity {
        id: id.to_string(),
        name: if name.is_empty() {
            super::short_id(id)
        } else {
            label(name)
        },
        pod: label(pod),
        namespace: label(namespace),
        image: label(image),
        runtime,
    }
}

/// Test fixtures: real state files, as the runtimes wrote them (ids,
/// names and images replaced), and a state tree built from them.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::path::{Path, PathBuf};

    use super::Roots;
    use crate::test_support::TempDir;

    pub fn text(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/runtimes")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// State roots under a scratch directory.
    pub struct Tree {
        pub dir: TempDir,
        pub roots: Roots,
    }

    impl Tree {
        pub fn new(tag: &str) -> Self {
            let dir = TempDir::new(&format!("runtimes-{tag}"));
            let roots = Roots {
                docker: dir.0.join("docker"),
                containerd: dir.0.join("containerd"),
                storage: dir.0.join("storage"),
                storage_run: dir.0.join("storage-run"),
            };
            Self { dir, roots }
        }

        /// Writes `text` at `rel` under `root`, creating directories.
        pub fn put(&self, root: &Path, rel: &str, text: &str) -> PathBuf {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{text, Tree};
    use super::*;

    const ID: &str = "0c9d7b3c1f6e4d2a8b5c7e9f1a3b5d7f9e1c3a5b7d9f1e3c5a7b9d1f3e5c7a9b";

    #[test]
    fn hints_choose_the_order_and_moby_defers_to_docker() {
        let t = Tree::new("order");
        // The same id in docker's state and in containerd's `moby` namespace.
        let docker = text("docker/config.v2.json").replace("{ID}", ID);
        t.put(
            &t.roots.docker,
            &format!("containers/{ID}/config.v2.json"),
            &docker,
        );
        let spec = text("containerd/config.json").replace("{ID}", ID);
        t.put(
            &t.roots.containerd,
            &format!("io.containerd.runtime.v2.task/moby/{ID}/config.json"),
            &spec,
        );
        let mut r = Runtimes::new(Some(t.roots.clone()));
        for hint in [Hint::Any, Hint::Containerd, Hint::Docker] {
            let got = r.read(ID, hint).expect("found");
            assert_eq!(
                (got.runtime, got.name.as_str()),
                ("docker", "web"),
                "{hint:?}"
            );
        }
        assert_eq!(r.reads()[&("docker", "found")], 3);
    }

    #[test]
    fn missing_and_broken_state_is_counted() {
        let t = Tree::new("missing");
        let mut r = Runtimes::new(Some(t.roots.clone()));
        assert_eq!(r.read(ID, Hint::Podman), None);
        assert_eq!(r.read(ID, Hint::Any), None);
        t.put(
            &t.roots.docker,
            &format!("containers/{ID}/config.v2.json"),
            "{not json",
        );
        assert_eq!(r.read(ID, Hint::Docker), None);
        let reads: Vec<_> = r.reads().iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(
            reads,
            vec![
                (("", "missing"), 1),
                (("docker", "error"), 1),
                (("podman", "missing"), 1)
            ]
        );
        // Switched off: nothing is read, nothing counted.
        let mut off = Runtimes::new(None);
        assert_eq!(off.read(ID, Hint::Docker), None);
        assert!(off.reads().is_empty());
    }

    #[test]
    fn oversized_files_and_long_values_are_bounded() {
        let t = Tree::new("bounds");
        let big = t.put(&t.roots.docker, "big", "");
        std::fs::File::options()
            .write(true)
            .open(&big)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        let err = read_capped(&big, "docker").unwrap_err();
        assert!(err.1.contains("larger than"), "{err:?}");
        assert_eq!(
            read_capped(&t.roots.docker.join("none"), "docker"),
            Ok(None)
        );
        let long = "é".repeat(200);
        let cut = label(&long);
        assert!(cut.len() <= MAX_LABEL_BYTES && cut.len() >= MAX_LABEL_BYTES - 1);
        assert!(long.starts_with(&cut));
    }
}
