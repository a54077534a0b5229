//! The kernel side of DNS (bpf/netagent/dns.h, dns.c): what the agent
//! loads it with, the maps it reads, and the Rust mirror of the DNS
//! records of `bpf/netagent.h` with a checked decoder.

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::Ebpf;

use super::abi::{COMM_LEN, IPPROTO_TCP, IPPROTO_UDP};
use super::KernelError;

/// `NA_DNS_CAPTURE`: bytes of a message copied to the agent.
pub const CAPTURE: usize = 512;
/// `NA_DNS_PORTS`: how many DNS ports the kernel checks.
pub const MAX_PORTS: usize = 8;

/// `enum na_dns_lost_reason`, as `netagent_events_lost_total{reason}`.
pub const LOST_REASONS: [&str; 2] = ["dns_ringbuf_full", "dns_sock_storage_full"];

/// The udp_peers probes that mark DNS sockets (dns_mark in
/// bpf/netagent/dns.h): without all of them the DNS feature is off.
pub const MARKING_PROBES: [&str; 4] = [
    "cgroup/connect4",
    "cgroup/connect6",
    "cgroup/sendmsg4",
    "cgroup/sendmsg6",
];

/// `enum na_dns_direction`.
pub const EGRESS: u8 = 0;
pub const INGRESS: u8 = 1;

/// How the DNS programs are loaded (`dns:` config section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsOptions {
    /// Server ports that make a socket a DNS client (at most [`MAX_PORTS`]).
    pub ports: Vec<u16>,
    /// Size of the `dns_events` ring buffer in bytes (power of two, at
    /// least a page).
    pub ring_bytes: u32,
}

impl DnsOptions {
    /// The `dns_ports` global: the ports, 0 in unused slots.
    pub fn port_slots(&self) -> [u16; MAX_PORTS] {
        let mut out = [0u16; MAX_PORTS];
        for (slot, p) in out.iter_mut().zip(&self.ports) {
            *slot = *p;
        }
        out
    }
}

/// The DNS maps the collector reads.
pub struct DnsMaps {
    pub events: RingBuf<MapData>,
    pub lost: PerCpuArray<MapData, u64>,
}

impl DnsMaps {
    /// Takes the maps out of the loaded object.
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, KernelError> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| KernelError::Object(format!("map {name} not found")))
        };
        let events = RingBuf::try_from(take("dns_events")?)
            .map_err(|e| KernelError::Object(format!("dns_events: {e}")))?;
        let lost = PerCpuArray::try_from(take("dns_lost")?)
            .map_err(|e| KernelError::Object(format!("dns_lost: {e}")))?;
        Ok(Self { events, lost })
    }

    /// Messages not seen so far, indexed like [`LOST_REASONS`].
    pub fn lost(&self) -> [u64; LOST_REASONS.len()] {
        let mut out = [0u64; LOST_REASONS.len()];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self
                .lost
                .get(&(i as u32), 0)
                .map(|v| v.iter().sum())
                .unwrap_or(0);
        }
        out
    }
}

/// `struct na_dns_owner`: socket-local storage of a DNS client socket.
/// Userspace never reads it; mirrored for the layout test.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DnsOwner {
    pub comm: [u8; COMM_LEN],
    pub cgroup_id: u64,
    pub pid: u32,
    pub tcp_next: [u32; 2],
    pub tcp_body: [u16; 2],
    pub tcp_synced: [u8; 2],
    pub _pad: [u8; 6],
}

/// `struct na_dns_event`: one DNS message of a marked socket.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DnsEvent {
    /// CLOCK_MONOTONIC nanoseconds when the packet passed.
    pub ts_ns: u64,
    pub cgroup_id: u64,
    pub sock_cookie: u64,
    pub comm: [u8; COMM_LEN],
    /// The socket's end (IPv4 mapped into IPv6).
    pub laddr: [u8; 16],
    /// The DNS server's end.
    pub raddr: [u8; 16],
    pub pid: u32,
    pub lport: u16,
    pub rport: u16,
    /// The whole message's length (UDP payload or TCP length prefix).
    pub msg_len: u16,
    /// Bytes of it in `data`.
    pub cap_len: u16,
    pub proto: u8,
    /// [`EGRESS`] or [`INGRESS`].
    pub direction: u8,
    pub _pad: [u8; 2],
    pub data: [u8; CAPTURE],
}

impl DnsEvent {
    /// The captured bytes of the message.
    pub fn message(&self) -> &[u8] {
        &self.data[..(self.cap_len as usize).min(CAPTURE)]
    }
}

/// Why a ring-buffer record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record is {0} bytes, expected {1}")]
    Size(usize, usize),
    #[error("unknown protocol {0}")]
    Proto(u8),
    #[error("unknown direction {0}")]
    Direction(u8),
    #[error("{0} bytes captured, at most {CAPTURE}")]
    Capture(u16),
}

/// Bytes of a record before its message bytes.
pub const HEADER: usize = std::mem::size_of::<DnsEvent>() - CAPTURE;

/// Decodes one record: the header and `cap_len` message bytes (sizes and
/// fields checked; never panics).
pub fn decode(bytes: &[u8]) -> Result<DnsEvent, DecodeError> {
    let full = std::mem::size_of::<DnsEvent>();
    if bytes.len() < HEADER || bytes.len() > full {
        return Err(DecodeError::Size(bytes.len(), HEADER));
    }
    let mut padded = [0u8; std::mem::size_of::<DnsEvent>()];
    padded[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: `padded` is exactly a DnsEvent's size and DnsEvent is plain
    // old data (every bit pattern is valid); read_unaligned has no
    // alignment demand.
    let ev: DnsEvent = unsafe { std::ptr::read_unaligned(padded.as_ptr().cast()) };
    if HEADER + ev.cap_len as usize != bytes.len() {
        return Err(DecodeError::Size(bytes.len(), HEADER + ev.cap_len as usize));
    }
    if ev.proto != IPPROTO_TCP && ev.proto != IPPROTO_UDP {
        return Err(DecodeError::Proto(ev.proto));
    }
    if ev.direction != EGRESS && ev.direction != INGRESS {
        return Err(DecodeError::Direction(ev.direction));
    }
    if ev.cap_len as usize > CAPTURE {
        return Err(DecodeError::Capture(ev.cap_len));
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    fn bytes_of(ev: &DnsEvent) -> Vec<u8> {
        // SAFETY: DnsEvent is repr(C) plain old data without padding.
        unsafe {
            std::slice::from_raw_parts((ev as *const DnsEvent).cast::<u8>(), size_of::<DnsEvent>())
        }
        .to_vec()
    }

    fn event() -> DnsEvent {
        DnsEvent {
            ts_ns: 1,
            cgroup_id: 2,
            sock_cookie: 3,
            comm: [0; COMM_LEN],
            laddr: [0; 16],
            raddr: [0; 16],
            pid: 4,
            lport: 5,
            rport: 53,
            msg_len: 3,
            cap_len: 3,
            proto: IPPROTO_UDP,
            direction: EGRESS,
            _pad: [0; 2],
            data: [7; CAPTURE],
        }
    }

    #[test]
    fn records_are_checked() {
        let ev = event();
        let b = bytes_of(&ev)[..HEADER + 3].to_vec();
        assert_eq!(decode(&b).unwrap().message(), &[7, 7, 7]);
        assert!(matches!(decode(&b[1..]), Err(DecodeError::Size(..))));
        assert!(matches!(
            decode(&b[..HEADER - 1]),
            Err(DecodeError::Size(..))
        ));
        assert!(decode(&bytes_of(&ev)).is_err(), "cap_len says 3 bytes");
        let mut bad = ev;
        bad.proto = 1;
        let cut = |e: &DnsEvent| bytes_of(e)[..HEADER + 3].to_vec();
        assert!(matches!(decode(&cut(&bad)), Err(DecodeError::Proto(1))));
        let mut bad = ev;
        bad.direction = 9;
        assert!(decode(&cut(&bad)).is_err());
        let mut bad = ev;
        bad.cap_len = 600;
        assert!(decode(&bytes_of(&bad)).is_err());
    }

    #[test]
    fn port_slots_fill_unused_with_zero() {
        let o = DnsOptions {
            ports: vec![53, 5353],
            ring_bytes: 4096,
        };
        assert_eq!(o.port_slots(), [53, 5353, 0, 0, 0, 0, 0, 0]);
    }

    /// The mirrors against clang's BTF of netagent.h (as abi.rs does for
    /// the other structs).
    #[test]
    fn layouts_match_the_c_header() {
        let dir = crate::test_support::TempDir::new("dnsabi");
        let path = dir.0.join("netagent.bpf.o");
        std::fs::write(&path, crate::kernel::loader::OBJECT).unwrap();
        let Ok(out) = std::process::Command::new("bpftool")
            .args(["-j", "btf", "dump", "file"])
            .arg(&path)
            .output()
        else {
            crate::test_support::skip_or_fail("bpftool not found; cannot dump the object's BTF");
            return;
        };
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let types = v["types"].as_array().unwrap();
        let members = |name: &str| -> (usize, Vec<(String, usize)>) {
            let t = types
                .iter()
                .find(|t| t["kind"] == "STRUCT" && t["name"] == name)
                .unwrap_or_else(|| panic!("struct {name} not in the object's BTF"));
            let m = t["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap().to_string(),
                        m["bits_offset"].as_u64().unwrap() as usize / 8,
                    )
                })
                .collect();
            (t["size"].as_u64().unwrap() as usize, m)
        };
        macro_rules! check {
            ($c:literal, $rust:ty, [$($field:ident),*]) => {{
                let (size, got) = members($c);
                assert_eq!(size, size_of::<$rust>(), "size of {}", $c);
                let want: Vec<(String, usize)> =
                    vec![$((stringify!($field).to_string(), offset_of!($rust, $field))),*];
                assert_eq!(got, want, "members of {}", $c);
            }};
        }
        check!(
            "na_dns_owner",
            DnsOwner,
            [comm, cgroup_id, pid, tcp_next, tcp_body, tcp_synced, _pad]
        );
        check!(
            "na_dns_event",
            DnsEvent,
            [
                ts_ns,
                cgroup_id,
                sock_cookie,
                comm,
                laddr,
                raddr,
                pid,
                lport,
                rport,
                msg_len,
                cap_len,
                proto,
                direction,
                _pad,
                data
            ]
        );
    }
}
