//! Rust mirror of `bpf/netagent.h`: map keys, values and constants shared
//! with the kernel programs. Keep in sync with the header; the layout test
//! below compares both against the BTF clang emitted for the header.

/// Kernel `comm` length, including the terminating NUL.
pub const COMM_LEN: usize = 16;
/// Number of finite histogram bounds (`NA_HIST_BOUNDS`).
pub const HIST_BOUNDS: usize = 16;

/// `enum na_lost_reason`: why an event was not counted, with the label value
/// exported in `netagent_events_lost_total{reason}`.
pub const LOST_REASONS: [&str; 3] = ["flow_map_full", "duration_map_full", "sock_storage_full"];

/// `struct na_flow_key`: aggregation key of the `flows` and `durations` maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub comm: [u8; COMM_LEN],
    /// IPv6, or IPv4 mapped to `::ffff:a.b.c.d`; network byte order.
    pub daddr: [u8; 16],
    /// Host byte order.
    pub dport: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    pub _pad: u8,
}

/// `struct na_hist`: non-cumulative buckets (last is +Inf) and the sum, in ns.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hist {
    pub buckets: [u64; HIST_BOUNDS + 1],
    pub sum_ns: u64,
}

/// `struct na_sock_state`: per-socket storage. Userspace never reads it; it
/// is mirrored so the layout test covers every shared struct.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockState {
    pub comm: [u8; COMM_LEN],
    pub daddr: [u8; 16],
    pub pending_addr: [u8; 16],
    pub send_ts: u64,
    pub dport: u16,
    pub pending_port: u16,
    pub proto: u8,
    pub has_pending: u8,
    pub _pad: [u8; 2],
}

// SAFETY: plain-old-data `repr(C)` structs without implicit padding.
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for Hist {}

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Maps a kernel `comm` buffer to the string before its NUL.
pub fn comm_str(comm: &[u8; COMM_LEN]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// Encodes a process name as the kernel stores it (truncated to 15 bytes).
pub fn comm_bytes(name: &str) -> [u8; COMM_LEN] {
    let mut out = [0u8; COMM_LEN];
    let n = name.len().min(COMM_LEN - 1);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn comm_roundtrip_truncates_to_15_bytes() {
        assert_eq!(comm_str(&comm_bytes("nginx")), "nginx");
        assert_eq!(
            comm_str(&comm_bytes("a-very-long-process-name")),
            "a-very-long-pro"
        );
    }

    /// Types in the embedded object's BTF, as dumped by bpftool (None when
    /// bpftool is not installed).
    fn object_btf_types() -> Option<Vec<serde_json::Value>> {
        let path = std::env::temp_dir().join(format!("netagent-abi-{}.o", std::process::id()));
        std::fs::write(&path, crate::kernel::loader::OBJECT).unwrap();
        let out = std::process::Command::new("bpftool")
            .args(["-j", "btf", "dump", "file"])
            .arg(&path)
            .output();
        let _ = std::fs::remove_file(&path);
        let out = out.ok()?;
        assert!(
            out.status.success(),
            "bpftool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Some(v["types"].as_array().unwrap().clone())
    }

    /// (member name, byte offset) pairs of a struct in bpftool's JSON BTF dump.
    fn btf_struct(types: &[serde_json::Value], name: &str) -> (usize, Vec<(String, usize)>) {
        let t = types
            .iter()
            .find(|t| t["kind"] == "STRUCT" && t["name"] == name)
            .unwrap_or_else(|| panic!("struct {name} not in the object's BTF"));
        let members = t["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let bits = m["bits_offset"].as_u64().unwrap() as usize;
                (m["name"].as_str().unwrap().to_string(), bits / 8)
            })
            .collect();
        (t["size"].as_u64().unwrap() as usize, members)
    }

    /// The BPF object carries clang's BTF for every struct in netagent.h;
    /// compare sizes and member offsets with the Rust mirrors.
    #[test]
    fn layouts_match_the_c_header() {
        let Some(types) = object_btf_types() else {
            crate::test_support::skip_or_fail("bpftool not found; cannot dump the object's BTF");
            return;
        };
        macro_rules! check {
            ($c:literal, $rust:ty, [$($field:ident),*]) => {{
                let (size, members) = btf_struct(&types, $c);
                assert_eq!(size, size_of::<$rust>(), "size of {}", $c);
                let expect: Vec<(String, usize)> =
                    vec![$((stringify!($field).to_string(), offset_of!($rust, $field))),*];
                assert_eq!(members, expect, "members of {}", $c);
            }};
        }
        check!("na_flow_key", FlowKey, [comm, daddr, dport, proto, _pad]);
        check!("na_hist", Hist, [buckets, sum_ns]);
        check!(
            "na_sock_state",
            SockState,
            [
                comm,
                daddr,
                pending_addr,
                send_ts,
                dport,
                pending_port,
                proto,
                has_pending,
                _pad
            ]
        );
    }
}
