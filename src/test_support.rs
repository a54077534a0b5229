//! Helpers shared by unit tests.

/// Tests that need root, BPF or an external tool call this when it is
/// missing: a visible skip locally, a failure under CI (`CI=true`), where
/// everything must actually run.
pub fn skip_or_fail(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("required for CI but unavailable: {why}");
    }
    eprintln!("SKIP: {why}");
}

/// Inode of an open socket, from its `/proc/self/fd` link.
pub fn fd_inode(fd: i32) -> u64 {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("readlink");
    let target = target.to_string_lossy();
    target
        .strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
        .expect("socket link")
        .parse()
        .expect("inode")
}
