//! Rust mirror of `bpf/netagent.h`: map keys, values and constants shared
//! with the kernel programs. Keep in sync with the header; the layout test
//! below compares both against the BTF clang emitted for the header.

/// Kernel `comm` length, including the terminating NUL.
pub const COMM_LEN: usize = 16;
/// Number of finite histogram bounds (`NA_HIST_BOUNDS`).
pub const HIST_BOUNDS: usize = 16;

/// `enum na_lost_reason`: why an event was not counted, with the label value
/// exported in `netagent_events_lost_total{reason}`.
pub const LOST_REASONS: [&str; 6] = [
    "flow_map_full",
    "histogram_map_full",
    "sock_storage_full",
    "listener_map_full",
    "ringbuf_full",
    "nat_unmatched",
];

/// `enum na_direction`.
pub const DIR_OUTBOUND: u8 = 0;
pub const DIR_INBOUND: u8 = 1;

/// `enum na_fail_reason`, as label values of `reason`.
pub const FAIL_REASONS: [&str; 5] = ["refused", "timeout", "unreachable", "reset", "other"];

/// `enum na_hist_kind`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HistKind {
    Tx = 0,
    Rtt = 1,
    Connect = 2,
    ConnDuration = 3,
}

/// Number of histogram kinds (`NA_HIST_KINDS`).
pub const HIST_KINDS: usize = 4;

impl HistKind {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Tx),
            1 => Some(Self::Rtt),
            2 => Some(Self::Connect),
            3 => Some(Self::ConnDuration),
            _ => None,
        }
    }
}

/// `struct na_flow_key`: aggregation key of the `flows` and `hists` maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub comm: [u8; COMM_LEN],
    /// Peer: IPv6, or IPv4 mapped to `::ffff:a.b.c.d`; network byte order.
    pub daddr: [u8; 16],
    /// Where the peer's address was translated to (DNAT), same form; all
    /// zero when nothing was translated.
    pub nat_daddr: [u8; 16],
    /// Owner's cgroup v2 id.
    pub cgroup_id: u64,
    /// Server-side port (the peer's for outbound, ours for inbound); host order.
    pub dport: u16,
    /// The translated port; 0 when nothing was translated.
    pub nat_dport: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    /// [`DIR_OUTBOUND`] or [`DIR_INBOUND`].
    pub direction: u8,
    /// [`HistKind`] in `hists`; 0 in `flows`.
    pub hist: u8,
    pub _pad: u8,
}

/// `struct na_flow_stats`: the counters of one key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub connects: u64,
    pub opened: u64,
    pub closed: u64,
    pub failed: [u64; FAIL_REASONS.len()],
    pub retransmits: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// TCP connections found established when the agent started.
    pub seeded: u64,
}

/// `struct na_hist`: non-cumulative buckets (last is +Inf) and the sum, in ns.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hist {
    pub buckets: [u64; HIST_BOUNDS + 1],
    pub sum_ns: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self {
            buckets: [0; HIST_BOUNDS + 1],
            sum_ns: 0,
        }
    }
}

/// `struct na_sock_state`: per-socket state. The agent reads the TCP
/// sockets' (`tcp_socks`) for `netagent_tcp_connections_idle`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockState {
    pub comm: [u8; COMM_LEN],
    pub daddr: [u8; 16],
    pub pending_addr: [u8; 16],
    pub nat_orig: [u8; 16],
    pub nat_daddr: [u8; 16],
    pub nat_saddr: [u8; 16],
    pub cgroup_id: u64,
    pub send_ts: u64,
    pub recv_ts: u64,
    pub syn_ts: u64,
    pub open_ts: u64,
    pub rtt_ts: u64,
    /// TCP: ktime (CLOCK_MONOTONIC ns) of the last payload sent or
    /// received, or of ESTABLISHED.
    pub data_ts: u64,
    pub pid: u32,
    pub dport: u16,
    pub pending_port: u16,
    pub peer_port: u16,
    pub nat_orig_port: u16,
    pub nat_dport: u16,
    pub nat_sport: u16,
    pub proto: u8,
    pub has_pending: u8,
    pub direction: u8,
    pub open: u8,
    pub nat_state: u8,
    /// TCP: left ESTABLISHED (a FIN was sent or received).
    pub closing: u8,
    pub _pad: [u8; 2],
    pub flow_slot: u32,
    pub hist_slot: [u32; HIST_KINDS],
    pub _pad2: u32,
}

/// `NA_RST_REASON_UNKNOWN`: a reset sent without a reason from the kernel.
pub const RST_REASON_UNKNOWN: u32 = u32::MAX;

/// `struct na_reset_key`: resets sent by one owner for one reason
/// (`reset_reasons`, value: the count).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResetKey {
    pub comm: [u8; COMM_LEN],
    pub cgroup_id: u64,
    /// The running kernel's `enum sk_rst_reason`, or [`RST_REASON_UNKNOWN`].
    pub reason: u32,
    pub _pad: u32,
}

/// `struct na_listen_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenKey {
    /// Inode number of the network namespace.
    pub netns: u32,
    /// Host order.
    pub port: u16,
    pub _pad: u16,
}

/// `struct na_listener`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    pub comm: [u8; COMM_LEN],
    /// IPv6, or IPv4 mapped; `::` for a wildcard listener.
    pub addr: [u8; 16],
    pub cgroup_id: u64,
    pub pid: u32,
    pub _pad: u32,
}

/// `struct na_span_event`: a ring-buffer record (one request/response).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanEvent {
    /// CLOCK_MONOTONIC nanoseconds.
    pub start_ns: u64,
    pub end_ns: u64,
    pub cgroup_id: u64,
    /// Kernel socket cookie; hashed before any export.
    pub sock_cookie: u64,
    pub comm: [u8; COMM_LEN],
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
    /// Where the peer address was translated to (DNAT); all zero if not.
    pub nat_raddr: [u8; 16],
    pub pid: u32,
    pub lport: u16,
    pub rport: u16,
    /// The translated peer port; 0 when nothing was translated.
    pub nat_rport: u16,
    pub proto: u8,
    pub direction: u8,
    pub _pad: [u8; 4],
}

/// `enum na_seed_result`: what the seeding iterator did with one socket
/// (one `u32` record each in the iterator's output).
pub const SEED_OPEN: u32 = 0;
pub const SEED_LISTENER: u32 = 1;
pub const SEED_KNOWN: u32 = 2;
pub const SEED_FAILED: u32 = 3;
/// `enum na_drop_lost_reason`: drops not counted, with the label value
/// exported in `netagent_events_lost_total{reason}`.
pub const DROP_LOST_REASONS: [&str; 1] = ["drop_map_full"];

/// `NA_DROP_REASON_UNKNOWN`: the reason of a drop on a kernel whose
/// kfree_skb tracepoint has none.
pub const DROP_REASON_UNKNOWN: u32 = u32::MAX;

/// `NA_DROP_IGNORE_MAX`: slots of the `drop_ignore` global.
pub const DROP_IGNORE_MAX: usize = 8;

/// `struct na_drop_key`: the key of the `drops` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DropKey {
    /// Owner of the packet's socket; all zero when none is known.
    pub comm: [u8; COMM_LEN],
    /// The device's name (NUL-terminated); all zero when none.
    pub ifname: [u8; 16],
    /// The owner's cgroup v2 id; 0 when none.
    pub cgroup_id: u64,
    /// The running kernel's `enum skb_drop_reason` value, or
    /// [`DROP_REASON_UNKNOWN`].
    pub reason: u32,
    /// IP protocol number; 0 when not known.
    pub proto: u8,
    pub _pad: [u8; 3],
}

/// `enum na_iface_direction`.
pub const IFACE_INGRESS: u32 = 0;
pub const IFACE_EGRESS: u32 = 1;

/// `struct na_iface_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfaceKey {
    pub ifindex: u32,
    pub direction: u32,
}

/// `struct na_iface_slot`: the `iface_direct` value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceSlot {
    /// 0: free.
    pub ifindex: u32,
    /// The slot in `iface_counters`.
    pub slot: u32,
}

/// `struct na_iface_counters`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCounters {
    pub packets: u64,
    /// Whole frames as TC sees them (L2 header included).
    pub bytes: u64,
}

/// `enum na_node_lost_reason`: OOM kills not counted, with the label value
/// exported in `netagent_events_lost_total{reason}`.
pub const NODE_LOST_REASONS: [&str; 2] = ["oom_map_full", "oom_victim_unknown"];

/// `struct na_oom_key`: the key of the `oom_kills` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OomKey {
    /// The victim process's comm.
    pub comm: [u8; COMM_LEN],
    /// The victim's cgroup v2 id.
    pub cgroup_id: u64,
}

/// `struct na_oom_proc`: key of `oom_seen`. Only the kernel uses it; it is
/// mirrored so the layout test covers every shared struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomProc {
    pub tgid: u32,
    pub _pad: u32,
    pub start_ns: u64,
}

// SAFETY: plain-old-data `repr(C)` structs without implicit padding.
unsafe impl aya::Pod for FlowKey {}
unsafe impl aya::Pod for FlowStats {}
unsafe impl aya::Pod for Hist {}
unsafe impl aya::Pod for ListenKey {}
unsafe impl aya::Pod for Listener {}
unsafe impl aya::Pod for IfaceKey {}
unsafe impl aya::Pod for IfaceCounters {}
unsafe impl aya::Pod for IfaceSlot {}
unsafe impl aya::Pod for OomKey {}
unsafe impl aya::Pod for SockState {}
unsafe impl aya::Pod for ResetKey {}
unsafe impl aya::Pod for DropKey {}

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
    use crate::test_support::TempDir;
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
    fn object_btf_types(object: &[u8]) -> Option<Vec<serde_json::Value>> {
        let dir = TempDir::new("abi");
        let path = dir.0.join("netagent.bpf.o");
        std::fs::write(&path, object).unwrap();
        let out = std::process::Command::new("bpftool")
            .args(["-j", "btf", "dump", "file"])
            .arg(&path)
            .output();
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
        let Some(types) = object_btf_types(crate::kernel::loader::OBJECT) else {
            crate::test_support::skip_or_fail("bpftool not found; cannot dump the object's BTF");
            return;
        };
        macro_rules! check {
            ($types:expr, $c:literal, $rust:ty, [$($field:ident),*]) => {{
                let (size, members) = btf_struct($types, $c);
                assert_eq!(size, size_of::<$rust>(), "size of {}", $c);
                let expect: Vec<(String, usize)> =
                    vec![$((stringify!($field).to_string(), offset_of!($rust, $field))),*];
                assert_eq!(members, expect, "members of {}", $c);
            }};
        }
        check!(
            &types,
            "na_flow_key",
            FlowKey,
            [comm, daddr, nat_daddr, cgroup_id, dport, nat_dport, proto, direction, hist, _pad]
        );
        check!(
            &types,
            "na_flow_stats",
            FlowStats,
            [
                connects,
                opened,
                closed,
                failed,
                retransmits,
                resets_sent,
                resets_received,
                bytes_sent,
                bytes_received,
                seeded
            ]
        );
        check!(&types, "na_hist", Hist, [buckets, sum_ns]);
        check!(
            &types,
            "na_sock_state",
            SockState,
            [
                comm,
                daddr,
                pending_addr,
                nat_orig,
                nat_daddr,
                nat_saddr,
                cgroup_id,
                send_ts,
                recv_ts,
                syn_ts,
                open_ts,
                rtt_ts,
                data_ts,
                pid,
                dport,
                pending_port,
                peer_port,
                nat_orig_port,
                nat_dport,
                nat_sport,
                proto,
                has_pending,
                direction,
                open,
                nat_state,
                closing,
                _pad,
                flow_slot,
                hist_slot,
                _pad2
            ]
        );
        check!(
            &types,
            "na_reset_key",
            ResetKey,
            [comm, cgroup_id, reason, _pad]
        );
        check!(&types, "na_listen_key", ListenKey, [netns, port, _pad]);
        check!(
            &types,
            "na_listener",
            Listener,
            [comm, addr, cgroup_id, pid, _pad]
        );
        check!(
            &types,
            "na_span_event",
            SpanEvent,
            [
                start_ns,
                end_ns,
                cgroup_id,
                sock_cookie,
                comm,
                laddr,
                raddr,
                nat_raddr,
                pid,
                lport,
                rport,
                nat_rport,
                proto,
                direction,
                _pad
            ]
        );
        check!(
            &types,
            "na_drop_key",
            DropKey,
            [comm, ifname, cgroup_id, reason, proto, _pad]
        );
        let iface = object_btf_types(crate::kernel::iface::OBJECT).unwrap();
        check!(&iface, "na_iface_key", IfaceKey, [ifindex, direction]);
        check!(&iface, "na_iface_counters", IfaceCounters, [packets, bytes]);
        check!(&iface, "na_iface_slot", IfaceSlot, [ifindex, slot]);
        let node = object_btf_types(crate::kernel::oom::OBJECT).unwrap();
        check!(&node, "na_oom_key", OomKey, [comm, cgroup_id]);
        check!(&node, "na_oom_proc", OomProc, [tgid, _pad, start_ns]);
    }
}
