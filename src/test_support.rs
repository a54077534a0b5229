//! Helpers shared by every test: the unit tests use them as
//! `crate::test_support` (src/lib.rs), the end-to-end tests through
//! tests/common, which includes this file by path. So it names nothing of
//! the crate (`crate::` is a different crate on each side): only std and
//! serde_json.
//!
//! * [`skip_or_fail`]: the rule for a missing privilege or tool;
//! * [`TempDir`]: a scratch directory removed on drop;
//! * [`bpftool_programs`], [`bpftool_maps`] ([`bpftool_show`]): what the
//!   kernel has loaded, as `bpftool -j … show` lists it;
//! * [`fd_inode`]: the inode of an open socket.

// Each side uses a part of these.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// Tests that need root, BPF or an external tool call this when it is
/// missing: a visible skip locally, a failure under CI (`CI=true`), where
/// everything must actually run.
pub fn skip_or_fail(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("required in CI but unavailable: {why}");
    }
    eprintln!("SKIP: {why}");
}

/// A scratch directory, `netagent-<tag>-<pid>` in the system temp dir,
/// emptied when created and removed on drop. `tag` must be unique among the
/// tests of one process that can run at the same time.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("netagent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    /// Writes `text` to the file `name` in the directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every loaded BPF program, as `bpftool -j prog show` lists it: (id,
/// name as the kernel keeps it or, with BTF, its full name; "" without
/// one). See [`bpftool_show`].
pub fn bpftool_programs() -> Vec<(u64, String)> {
    bpftool_show("prog")
}

/// Every BPF map, as `bpftool -j map show` lists it: (id, name).
pub fn bpftool_maps() -> Vec<(u64, String)> {
    bpftool_show("map")
}

/// (id, name) of every object `bpftool -j <kind> show` lists (kind: prog,
/// map, link, …; "" for an object without a name, as links are). Panics
/// when bpftool cannot run or answers with anything but a list, so a
/// broken bpftool fails a check rather than passing it with nothing loaded.
pub fn bpftool_show(kind: &str) -> Vec<(u64, String)> {
    let out = Command::new("bpftool")
        .args(["-j", kind, "show"])
        .output()
        .unwrap_or_else(|e| panic!("bpftool {kind} show: {e}"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let Some(list) = v.as_array() else {
        panic!(
            "bpftool {kind} show gave no list ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    list.iter()
        .filter_map(|o| {
            let name = o["name"].as_str().unwrap_or("").to_string();
            Some((o["id"].as_u64()?, name))
        })
        .collect()
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
