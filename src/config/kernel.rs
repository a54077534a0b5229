//! The `kernel:`, `debug:` and `netns` keys: where the kernel's BTF is,
//! probes switched off on purpose, and which network namespace to watch.

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::unspanned_empty;

/// `kernel:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// BTF file describing the running kernel, for kernels built without
    /// `CONFIG_DEBUG_INFO_BTF` (no /sys/kernel/btf/vmlinux), e.g. from
    /// btfhub. Empty: the kernel's own.
    #[serde(default = "unspanned_empty")]
    pub btf_path: Spanned<String>,
}

impl Default for Kernel {
    fn default() -> Self {
        Self {
            btf_path: unspanned_empty(),
        }
    }
}

/// `debug:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debug {
    /// Probes or hooks not to use, e.g. `tracepoint/tcp:tcp_retransmit_skb`,
    /// `cgroup/sendmsg4` or `messages:tracepoint`: the feature falls back
    /// to its next hook, or is reported unavailable in `/health` and
    /// `netagent_probe_up` while everything else runs.
    #[serde(default)]
    pub disable_probes: Vec<Spanned<String>>,
}

/// Inode of the network namespace `netns` names; 0 = every namespace.
pub fn netns_inode(netns: &str) -> Result<u32, String> {
    use std::os::unix::fs::MetadataExt;
    let path = match netns {
        "" => return Ok(0),
        "self" => "/proc/self/ns/net",
        p => p,
    };
    std::fs::metadata(path)
        .map(|m| m.ino() as u32)
        .map_err(|e| format!("cannot open network namespace {path:?}: {e}"))
}
