//! Whether our programs are still attached, from the links this process
//! holds. A link can be detached from outside (`bpftool link detach`) or
//! lose its target (an interface deleted); the link object then stays, but
//! its cgroup id or ifindex reads 0.
//!
//! The kernel describes every link fd in `/proc/self/fdinfo/<fd>`; reading
//! our own needs no capability (walking all links on the host would need
//! CAP_SYS_ADMIN).

/// One kernel link held by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub link_id: u32,
    pub prog_id: u32,
    /// `raw_tracepoint`, `cgroup`, `tcx`, …
    pub link_type: String,
    /// cgroup id (cgroup links) or ifindex (TCX links); `None` for link
    /// types without a target (tracepoints); `Some(0)` once detached.
    pub target: Option<u64>,
}

/// Parses one fdinfo file; None when the fd is not a BPF link.
fn parse_fdinfo(text: &str) -> Option<LinkState> {
    let mut link_type = None;
    let (mut link_id, mut prog_id, mut target) = (None, None, None);
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "link_type" => link_type = Some(v.to_string()),
            "link_id" => link_id = v.parse().ok(),
            "prog_id" => prog_id = v.parse().ok(),
            "cgroup_id" | "ifindex" => target = v.parse().ok(),
            _ => {}
        }
    }
    Some(LinkState {
        link_id: link_id?,
        prog_id: prog_id?,
        link_type: link_type?,
        target,
    })
}

/// Every link this process holds.
pub fn held() -> Vec<LinkState> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fdinfo") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        // An fd may close between readdir and read: skip it.
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| parse_fdinfo(&t))
        .collect()
}

/// Links held by this process whose program is one of `prog_ids`.
pub fn links_of(prog_ids: &[u32]) -> Vec<LinkState> {
    let mut links = held();
    links.retain(|l| prog_ids.contains(&l.prog_id));
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_fdinfo() {
        let cg = "pos:\t0\nflags:\t02000000\nmnt_id:\t17\nino:\t1039\nlink_type:\tcgroup\nlink_id:\t4545\n\
                  prog_tag:\t7670f93458d3cef6\nprog_id:\t11320\ncgroup_id:\t1\nattach_type:\t14\n";
        assert_eq!(
            parse_fdinfo(cg),
            Some(LinkState {
                link_id: 4545,
                prog_id: 11320,
                link_type: "cgroup".into(),
                target: Some(1),
            })
        );
        let tp = "link_type:\traw_tracepoint\nlink_id:\t4523\nprog_id:\t11298\ntp_name:\tinet_sock_set_state\n";
        assert_eq!(parse_fdinfo(tp).unwrap().target, None);
        assert_eq!(parse_fdinfo("pos:\t0\nflags:\t0100000\n"), None);
    }

    #[test]
    fn a_process_without_links_holds_none() {
        assert!(links_of(&[1, 2, 3]).is_empty());
    }
}
