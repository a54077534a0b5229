//! What the agent reads of the kernel side besides the series: the state of
//! every TCP socket of a tracked process (`tcp_socks`, for idle
//! connections) and the resets sent by the kernel's reason
//! (`reset_reasons`), with the names of the running kernel's reasons.

use std::collections::HashMap as StdHashMap;
use std::os::fd::{AsFd, OwnedFd};

use aya::maps::{HashMap, Map, MapData, MapError};

use super::abi::{ResetKey, SockState, RST_REASON_UNKNOWN};
use super::batch;
use super::error::KernelError;

/// The label value of a reset whose reason the kernel did not give.
pub const UNKNOWN_REASON: &str = "unknown";

/// The kernel enum whose values `tcp:tcp_send_reset` passes (Linux 6.10+),
/// and the prefix its value names share.
const RST_ENUM: &str = "sk_rst_reason";
const RST_PREFIX: &str = "SK_RST_REASON_";

/// The maps, each with a second descriptor for batch reads.
pub struct ConnMaps {
    tcp_socks: HashMap<MapData, u64, SockState>,
    tcp_socks_fd: OwnedFd,
    reset_reasons: HashMap<MapData, ResetKey, u64>,
    reset_reasons_fd: OwnedFd,
    /// The running kernel's reset reasons by value, as label values.
    reason_names: StdHashMap<u32, String>,
}

impl ConnMaps {
    /// `tcp_socks` is the TCP state map the object was loaded to use
    /// (`tcp_socks`, or `tcp_socks_pre` with the untyped hooks).
    pub fn new(tcp_socks: Map, reset_reasons: Map, kernel_btf: &[u8]) -> Result<Self, KernelError> {
        let object = |e: &dyn std::fmt::Display| KernelError::Object(e.to_string());
        Ok(Self {
            tcp_socks_fd: second_fd(&tcp_socks)?,
            reset_reasons_fd: second_fd(&reset_reasons)?,
            tcp_socks: HashMap::try_from(tcp_socks).map_err(|e| object(&e))?,
            reset_reasons: HashMap::try_from(reset_reasons).map_err(|e| object(&e))?,
            reason_names: reason_names(kernel_btf),
        })
    }

    /// The state of every TCP socket the kernel side keeps (connecting,
    /// established, closing, listening), in no order.
    pub fn tcp_sockets(&self) -> Result<Vec<SockState>, MapError> {
        let all: Vec<(u64, SockState)> =
            batch::lookup_all(self.tcp_socks_fd.as_fd()).or_else(|e| {
                tracing::debug!("batch read of tcp_socks failed ({e}); walking the map");
                batch::walk(self.tcp_socks.iter())
            })?;
        Ok(all.into_iter().map(|(_, s)| s).collect())
    }

    /// Resets sent per owner and reason (the reason's value).
    pub fn resets_by_reason(&self) -> Result<Vec<(ResetKey, u64)>, MapError> {
        batch::lookup_all(self.reset_reasons_fd.as_fd()).or_else(|e| {
            tracing::debug!("batch read of reset_reasons failed ({e}); walking the map");
            batch::walk(self.reset_reasons.iter())
        })
    }

    /// Deletes the resets by reason of the owners `gone(comm, cgroup_id)`
    /// picks (their series expired); returns how many entries went.
    pub fn forget_owners(
        &mut self,
        gone: impl Fn(&[u8; super::abi::COMM_LEN], u64) -> bool,
    ) -> Result<u64, MapError> {
        let mut n = 0;
        for (k, _) in self.resets_by_reason()? {
            if gone(&k.comm, k.cgroup_id) {
                match self.reset_reasons.remove(&k) {
                    Ok(()) => n += 1,
                    Err(MapError::KeyNotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(n)
    }

    /// The label value of a reason's value: its name in the running
    /// kernel's `enum sk_rst_reason`, or [`UNKNOWN_REASON`].
    pub fn reason_name(&self, value: u32) -> &str {
        if value == RST_REASON_UNKNOWN {
            return UNKNOWN_REASON;
        }
        self.reason_names
            .get(&value)
            .map_or(UNKNOWN_REASON, String::as_str)
    }

    /// How many reasons the running kernel names (0 before Linux 6.10).
    pub fn reasons_known(&self) -> usize {
        self.reason_names.len()
    }
}

/// The running kernel's reset reasons from its BTF: `SK_RST_REASON_NO_SOCKET`
/// is `no_socket`. The `…_MAX` end marker is not a reason. Empty where the
/// kernel has no such enum.
pub fn reason_names(kernel_btf: &[u8]) -> StdHashMap<u32, String> {
    super::btf_raw::enum_values(kernel_btf, RST_ENUM)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, value)| {
            let short = name.strip_prefix(RST_PREFIX)?.to_ascii_lowercase();
            let value = u32::try_from(value).ok()?;
            (short != "max" && value != RST_REASON_UNKNOWN).then_some((value, short))
        })
        .collect()
}

/// A second descriptor of a hash map (aya keeps the first in its typed map).
fn second_fd(map: &Map) -> Result<OwnedFd, KernelError> {
    match map {
        Map::HashMap(data) => data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| KernelError::Object(format!("dup map fd: {e}"))),
        _ => Err(KernelError::Object("expected a hash map".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the running kernel: its reasons, named as the kernel names them.
    #[test]
    fn reasons_are_named_from_the_running_kernel() {
        let Ok(raw) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return;
        };
        let names = reason_names(&raw);
        if super::super::btf_raw::enum_values(&raw, RST_ENUM).is_none() {
            assert!(names.is_empty());
            return;
        }
        assert_eq!(names.get(&0).map(String::as_str), Some("not_specified"));
        assert_eq!(names.get(&1).map(String::as_str), Some("no_socket"));
        assert!(names.values().all(|n| n != "max" && n == &n.to_lowercase()));
        assert!(names.values().any(|n| n == "tcp_abort_on_close"));
    }
}
