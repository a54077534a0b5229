//! Locates the cgroup v2 hierarchy the socket-address hooks attach to.

use std::fs;
use std::path::PathBuf;

/// Mount point of the cgroup v2 (unified) hierarchy from /proc/mounts: it is
/// `/sys/fs/cgroup` on pure v2 hosts and `/sys/fs/cgroup/unified` on hybrid ones.
pub fn v2_root() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    parse_v2_root(&mounts)
}

fn parse_v2_root(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let (_dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir.replace("\\040", " ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hybrid_and_pure_v2_mounts() {
        let hybrid = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(
            parse_v2_root(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure = "cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n";
        assert_eq!(parse_v2_root(pure), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(parse_v2_root("proc /proc proc rw 0 0\n"), None);
    }
}
