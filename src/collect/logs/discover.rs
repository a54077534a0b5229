//! Finding log files (globs) and what a file's path says about it: its
//! format and the `source` and `container` labels of its lines.
//!
//! | path | format | source | container |
//! |---|---|---|---|
//! | `…/containers/<id>/<id>-json.log[.N]` (Docker json-file) | Docker | `docker` | `<id>` |
//! | `…/containers/<pod>_<ns>_<container>-<id>.log` (kubelet's links) | CRI | `cri` | `<id>` |
//! | `…/pods/<ns>_<pod>_<uid>/<container>/<n>.log[.…]` | CRI | `cri` | `<ns>/<pod>/<container>` |
//! | anything else | plain | the path | empty |
//!
//! Container ids are the 64-hex ids that the connection metrics carry in
//! their `container` label too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::formats::Format;

/// Format and labels of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub format: Format,
    pub source: String,
    pub container: String,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What the path of a log file says about it.
pub fn origin(path: &Path) -> Origin {
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string()
    };
    let file = name(Some(path));
    let dir = name(path.parent());
    let grand = name(path.parent().and_then(Path::parent));

    if is_container_id(&dir) && file.starts_with(&format!("{dir}-json.log")) {
        return Origin {
            format: Format::Docker,
            source: "docker".into(),
            container: dir,
        };
    }
    // kubelet: /var/log/containers/<pod>_<ns>_<container>-<id>.log
    if let Some(stem) = file.strip_suffix(".log") {
        let parts: Vec<&str> = stem.split('_').collect();
        if let [_pod, _ns, rest] = parts[..] {
            if let Some((_, id)) = rest.rsplit_once('-').filter(|(_, id)| is_container_id(id)) {
                return Origin {
                    format: Format::Cri,
                    source: "cri".into(),
                    container: id.to_string(),
                };
            }
        }
    }
    // /var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log (rotated: <n>.log.<time>)
    let numbered = file
        .split_once(".log")
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if numbered && !dir.is_empty() {
        if let [ns, pod, _uid] = grand.split('_').collect::<Vec<_>>()[..] {
            return Origin {
                format: Format::Cri,
                source: "cri".into(),
                container: format!("{ns}/{pod}/{dir}"),
            };
        }
    }
    Origin {
        format: Format::Plain,
        source: path.display().to_string(),
        container: String::new(),
    }
}

/// Regular files (symlinks followed) matching any of the glob patterns,
/// sorted and without duplicates. Unreadable directories are skipped.
pub fn expand(patterns: &[String]) -> Vec<PathBuf> {
    let mut out = BTreeSet::new();
    for p in patterns {
        let Ok(paths) = glob::glob(p) else {
            continue; // validated with the config
        };
        for path in paths.flatten() {
            if path.is_file() {
                out.insert(path);
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_json_logs() {
        let p = format!("/var/lib/docker/containers/{ID}/{ID}-json.log");
        let o = origin(Path::new(&p));
        assert_eq!(o.format, Format::Docker);
        assert_eq!((o.source.as_str(), o.container.as_str()), ("docker", ID));
        let rotated = origin(Path::new(&format!("{p}.1")));
        assert_eq!(rotated.container, ID);
    }

    #[test]
    fn kubelet_links_and_pod_dirs() {
        let o = origin(Path::new(&format!(
            "/var/log/containers/web-7d9f_prod_nginx-{ID}.log"
        )));
        assert_eq!(o.format, Format::Cri);
        assert_eq!((o.source.as_str(), o.container.as_str()), ("cri", ID));
        let o = origin(Path::new(
            "/var/log/pods/prod_web-7d9f_1b2c3d4e-0000-1111-2222-333344445555/nginx/0.log",
        ));
        assert_eq!(o.format, Format::Cri);
        assert_eq!(o.container, "prod/web-7d9f/nginx");
        let o = origin(Path::new(
            "/var/log/pods/prod_web_uid/nginx/3.log.20240101-000000",
        ));
        assert_eq!(o.container, "prod/web/nginx");
    }

    #[test]
    fn anything_else_is_plain() {
        for p in ["/var/log/syslog", "/var/log/app/0.log", "/x/a_b_c.log"] {
            let o = origin(Path::new(p));
            assert_eq!(o.format, Format::Plain, "{p}");
            assert_eq!((o.source.as_str(), o.container.as_str()), (p, ""));
        }
    }
}
