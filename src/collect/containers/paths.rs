//! Container ids from cgroup paths, for every runtime and cgroup driver:
//! systemd scopes (`docker-<id>.scope`, `cri-containerd-<id>.scope`,
//! `crio-<id>.scope`, `libpod-<id>.scope`) and cgroupfs directories
//! (`/docker/<id>`, `/kubepods/<qos>/pod<uid>/<id>`, `/kubepods/…/crio-<id>`,
//! `/libpod_parent/libpod-<id>`, containerd's `/<namespace>/<id>`). The
//! path also says which runtime's state to read first.

/// Length of a full docker/containerd/CRI-O/podman container id in hex.
const ID_LEN: usize = 64;

/// Which runtime a cgroup path points at (where to look first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hint {
    Docker,
    Containerd,
    Crio,
    Podman,
    /// A bare id under `kubepods`: containerd, CRI-O or cri-dockerd.
    Any,
}

/// Name prefixes of a container's own cgroup (systemd scopes end in
/// `.scope`; CRI-O's and podman's cgroupfs directories carry the prefix
/// without it).
const PREFIXES: [(&str, Hint); 4] = [
    ("docker-", Hint::Docker),
    ("cri-containerd-", Hint::Containerd),
    ("crio-", Hint::Crio),
    ("libpod-", Hint::Podman),
];

/// The `*-conmon-` cgroups of CRI-O and podman hold the monitor process,
/// not the container.
const CONMON_PREFIXES: [&str; 2] = ["crio-conmon-", "libpod-conmon-"];

/// Directories under which a cgroupfs driver names a container's cgroup by
/// its bare id: docker's `/docker/<id>`, kubelet's
/// `/kubepods/<qos>/pod<uid>/<id>`, podman's `/libpod_parent/…`, and
/// containerd's default `/<namespace>/<id>` for `k8s.io` and `default`.
const BARE_ID_PARENTS: [(&str, Hint); 5] = [
    ("docker", Hint::Docker),
    ("kubepods", Hint::Any),
    ("libpod_parent", Hint::Podman),
    ("k8s.io", Hint::Containerd),
    ("default", Hint::Containerd),
];

/// The container id (64 hex, lowercase) and runtime hint of a cgroup path,
/// or None for host cgroups. systemd-nspawn machines are not containers
/// here.
pub fn parse(cgroup_path: &str) -> Option<(String, Hint)> {
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
        if let Some(found) = prefixed_id(part) {
            return Some(found);
        }
        if is_id(part) {
            let parent = parts[..i]
                .iter()
                .rev()
                .find_map(|a| BARE_ID_PARENTS.iter().find(|(p, _)| p == a));
            if let Some((_, hint)) = parent {
                return Some((part.to_ascii_lowercase(), *hint));
            }
        }
    }
    None
}

/// Just the id of [`parse`].
pub fn container_id(cgroup_path: &str) -> Option<String> {
    parse(cgroup_path).map(|(id, _)| id)
}

/// The id in `<runtime>-<id>.scope`, or in `crio-<id>`/`libpod-<id>`
/// (cgroupfs), if `part` is such a name.
fn prefixed_id(part: &str) -> Option<(String, Hint)> {
    let (stem, scope) = match part.strip_suffix(".scope") {
        Some(stem) => (stem, true),
        None => (part, false),
    };
    PREFIXES
        .iter()
        // docker's and containerd's cgroupfs names are bare ids.
        .filter(|(_, hint)| scope || matches!(hint, Hint::Crio | Hint::Podman))
        .find_map(|(p, hint)| {
            let id = stem.strip_prefix(p)?;
            is_id(id).then(|| (id.to_ascii_lowercase(), *hint))
        })
}

fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c6b3a9d2e8f7a0b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a";

    fn id(path: &str) -> Option<String> {
        container_id(&path.replace("ID", ID))
    }

    fn hint(path: &str) -> Option<Hint> {
        parse(&path.replace("ID", ID)).map(|(_, h)| h)
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
        assert_eq!(hint("/docker/ID"), Some(Hint::Docker));
        assert_eq!(hint("/system.slice/docker-ID.scope"), Some(Hint::Docker));
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
            // ctr's default: /<namespace>/<id>.
            "/k8s.io/ID",
            "/default/ID",
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
        assert_eq!(
            hint("/system.slice/cri-containerd-ID.scope"),
            Some(Hint::Containerd)
        );
        assert_eq!(hint("/kubepods/besteffort/podx/ID"), Some(Hint::Any));
        assert_eq!(hint("/k8s.io/ID"), Some(Hint::Containerd));
    }

    #[test]
    fn crio() {
        let pod = "/kubepods.slice/kubepods-besteffort.slice/\
                   kubepods-besteffort-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice";
        assert_eq!(id(&format!("{pod}/crio-ID.scope")), Some(ID.to_string()));
        assert_eq!(id(&format!("{pod}/crio-conmon-ID.scope")), None);
        assert_eq!(id("/machine.slice/crio-conmon-ID.scope"), None);
        // cgroupfs driver: no .scope.
        assert_eq!(
            parse(&"/kubepods/besteffort/pod0a1b/crio-ID".replace("ID", ID)),
            Some((ID.to_string(), Hint::Crio))
        );
        assert_eq!(id("/kubepods/besteffort/pod0a1b/crio-conmon-ID"), None);
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
        // cgroupfs manager.
        assert_eq!(id("/libpod_parent/libpod-ID"), want);
        assert_eq!(id("/libpod_parent/libpod-ID/container"), want);
        assert_eq!(id("/libpod_parent/conmon"), None);
        assert_eq!(hint("/libpod_parent/libpod-ID"), Some(Hint::Podman));
        assert_eq!(hint("/machine.slice/libpod-ID.scope"), Some(Hint::Podman));
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
            // docker's and containerd's prefixes only as scopes.
            "/system.slice/docker-ID",
            "/system.slice/cri-containerd-ID",
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
}
