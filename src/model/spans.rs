//! One observed request/response interval on a socket, as exporters see it
//! (OTLP spans, DogStatsD distributions). The trace id is derived from the
//! flow, so the client's and the server's span of one flow share a trace
//! even when two agents on two hosts observe them.
//!
//! Also how one comes about: a kernel record from the `span_events` ring
//! buffer, decoded (checked, never panics) and converted to Unix time.

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use crate::collect::containers::Identity;

/// A span owner's container (the exporters' name for the collect layer's
/// identity).
pub type Container = Identity;

use crate::kernel::abi::{comm_str, SpanEvent, DIR_OUTBOUND, IPPROTO_TCP, IPPROTO_UDP};

/// Which side of the flow the span was observed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanSide {
    /// The side that connected (or sent first, for UDP): send -> first recv.
    Client,
    /// The side that accepted (or received first): recv -> first send.
    Server,
}

/// A span, decoded from a kernel event and labelled.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSpan {
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// The `process` label (target name or comm).
    pub process: String,
    /// The kernel comm of the owner.
    pub comm: String,
    pub pid: u32,
    /// The owner's container and pod; empty for host processes.
    pub container: Arc<Identity>,
    /// "tcp" or "udp".
    pub proto: &'static str,
    pub side: SpanSide,
    pub local: SocketAddr,
    /// The peer the socket talks to (for a client: the address it dialled).
    pub peer: SocketAddr,
    /// Where a client's dialled peer was translated to on this host (DNAT,
    /// e.g. a Kubernetes ClusterIP to a pod); None when nothing was.
    pub actual_peer: Option<SocketAddr>,
    /// Opaque per-socket id (a hash, never a kernel pointer).
    pub socket_id: u64,
    /// The name the process resolved to the server's address (client
    /// spans; empty when unknown).
    pub dst_name: String,
}

impl FlowSpan {
    /// The client end of the flow.
    pub fn client(&self) -> SocketAddr {
        match self.side {
            SpanSide::Client => self.local,
            SpanSide::Server => self.peer,
        }
    }

    /// The server end of the flow.
    pub fn server(&self) -> SocketAddr {
        match self.side {
            SpanSide::Client => self.peer,
            SpanSide::Server => self.local,
        }
    }

    /// The server end the packets really reach: the translated peer of a
    /// client whose destination was translated, else [`FlowSpan::server`].
    pub fn actual_server(&self) -> SocketAddr {
        match (self.side, self.actual_peer) {
            (SpanSide::Client, Some(actual)) => actual,
            _ => self.server(),
        }
    }

    /// `src_ip,sport,dst_ip,dport,proto`, normalised to client -> server,
    /// with the server end the packets really reach: a client behind a
    /// translation and its server compute the same id.
    pub fn flow_id(&self) -> String {
        let (c, s) = (self.client(), self.actual_server());
        format!(
            "{},{},{},{},{}",
            c.ip(),
            c.port(),
            s.ip(),
            s.port(),
            self.proto
        )
    }

    /// 16 bytes derived deterministically from the normalised flow: both
    /// ends compute the same id. (SHA-256 would do too; FNV-1a 128 is
    /// enough for an id and needs no dependency.)
    pub fn trace_id(&self) -> [u8; 16] {
        fnv1a_128(self.flow_id().as_bytes()).to_be_bytes()
    }

    pub fn duration_seconds(&self) -> f64 {
        self.end_unix_nanos.saturating_sub(self.start_unix_nanos) as f64 / 1e9
    }

    /// The span name: `<process> -> <dst_ip>:<dport> (<proto>)`, where dst
    /// is the server end.
    pub fn name(&self) -> String {
        let s = self.server();
        format!(
            "{} -> {}:{} ({})",
            self.process,
            s.ip(),
            s.port(),
            self.proto
        )
    }
}

/// FNV-1a, 128-bit.
pub fn fnv1a_128(data: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    for b in data {
        h ^= *b as u128;
        h = h.wrapping_mul(PRIME);
    }
    h
}

/// Why a ring-buffer record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record is {0} bytes, expected {1}")]
    Size(usize, usize),
    #[error("unknown protocol {0}")]
    Proto(u8),
    #[error("span ends before it starts")]
    Time,
}

/// Decodes one record (sizes and fields checked; never panics).
pub fn decode(bytes: &[u8]) -> Result<SpanEvent, DecodeError> {
    let want = std::mem::size_of::<SpanEvent>();
    if bytes.len() != want {
        return Err(DecodeError::Size(bytes.len(), want));
    }
    // SAFETY: the length is checked above and SpanEvent is plain old data
    // (every bit pattern is valid); read_unaligned has no alignment demand.
    let ev: SpanEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    if ev.proto != IPPROTO_TCP && ev.proto != IPPROTO_UDP {
        return Err(DecodeError::Proto(ev.proto));
    }
    if ev.end_ns < ev.start_ns {
        return Err(DecodeError::Time);
    }
    Ok(ev)
}

/// Converts CLOCK_MONOTONIC (what BPF timestamps use) to Unix time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// realtime - monotonic, in ns.
    offset_ns: i128,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid pointer to a timespec.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Clock {
    /// Measures the offset now (re-measure now and then: NTP slews realtime).
    pub fn now() -> Self {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Self {
            offset_ns: real - mono,
        }
    }

    pub fn to_unix_nanos(&self, mono_ns: u64) -> u64 {
        (mono_ns as i128 + self.offset_ns).max(0) as u64
    }
}

fn addr(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// Turns kernel records into spans. Socket cookies are hashed with a key
/// chosen at start, so exported socket ids are opaque and not comparable
/// across agents or restarts.
pub struct SpanDecoder {
    clock: Clock,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for SpanDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SpanDecoder {
    pub fn new() -> Self {
        Self {
            clock: Clock::now(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Re-measures the monotonic -> Unix offset.
    pub fn resync(&mut self) {
        self.clock = Clock::now();
    }

    /// `process` and `container` come from the agent's labeling.
    pub fn span(&self, ev: &SpanEvent, process: String, container: Arc<Identity>) -> FlowSpan {
        let mut h = self.hasher.build_hasher();
        h.write_u64(ev.sock_cookie);
        FlowSpan {
            start_unix_nanos: self.clock.to_unix_nanos(ev.start_ns),
            end_unix_nanos: self.clock.to_unix_nanos(ev.end_ns),
            process,
            comm: comm_str(&ev.comm),
            pid: ev.pid,
            container,
            proto: if ev.proto == IPPROTO_TCP {
                "tcp"
            } else {
                "udp"
            },
            side: if ev.direction == DIR_OUTBOUND {
                SpanSide::Client
            } else {
                SpanSide::Server
            },
            local: SocketAddr::new(addr(ev.laddr), ev.lport),
            peer: SocketAddr::new(addr(ev.raddr), ev.rport),
            actual_peer: (ev.nat_rport != 0)
                .then(|| SocketAddr::new(addr(ev.nat_raddr), ev.nat_rport)),
            socket_id: h.finish(),
            dst_name: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(side: SpanSide, local: &str, peer: &str) -> FlowSpan {
        FlowSpan {
            start_unix_nanos: 1,
            end_unix_nanos: 20_000_001,
            process: "p".into(),
            comm: "p".into(),
            pid: 1,
            container: Arc::default(),
            proto: "tcp",
            side,
            local: local.parse().unwrap(),
            peer: peer.parse().unwrap(),
            actual_peer: None,
            socket_id: 7,
            dst_name: String::new(),
        }
    }

    #[test]
    fn a_client_behind_dnat_shares_the_trace_with_the_real_server() {
        // The client dialled a ClusterIP; the kernel translated it to the pod.
        let mut c = span(SpanSide::Client, "10.0.0.1:40000", "10.96.0.10:80");
        let s = span(SpanSide::Server, "10.0.0.2:8080", "10.0.0.1:40000");
        assert_ne!(c.trace_id(), s.trace_id());
        c.actual_peer = Some("10.0.0.2:8080".parse().unwrap());
        assert_eq!(c.flow_id(), "10.0.0.1,40000,10.0.0.2,8080,tcp");
        assert_eq!(c.trace_id(), s.trace_id());
        // The server's own peer is never rewritten.
        let mut s2 = s.clone();
        s2.actual_peer = Some("192.0.2.9:1".parse().unwrap());
        assert_eq!(s2.flow_id(), s.flow_id());
    }

    #[test]
    fn both_ends_of_a_flow_share_the_trace_id() {
        let c = span(SpanSide::Client, "10.0.0.1:40000", "10.0.0.2:80");
        let s = span(SpanSide::Server, "10.0.0.2:80", "10.0.0.1:40000");
        assert_eq!(c.trace_id(), s.trace_id());
        assert_eq!(c.flow_id(), "10.0.0.1,40000,10.0.0.2,80,tcp");
        assert_eq!(s.flow_id(), c.flow_id());
        let other = span(SpanSide::Client, "10.0.0.1:40001", "10.0.0.2:80");
        assert_ne!(other.trace_id(), c.trace_id());
        assert_eq!(c.name(), "p -> 10.0.0.2:80 (tcp)");
        assert!((c.duration_seconds() - 0.02).abs() < 1e-12);
    }

    use crate::kernel::abi::comm_bytes;

    fn event() -> SpanEvent {
        SpanEvent {
            start_ns: 1_000,
            end_ns: 21_000_000,
            cgroup_id: 1,
            sock_cookie: 42,
            comm: comm_bytes("curl"),
            laddr: std::net::Ipv4Addr::new(127, 0, 0, 1)
                .to_ipv6_mapped()
                .octets(),
            raddr: Ipv6Addr::LOCALHOST.octets(),
            nat_raddr: [0; 16],
            pid: 7,
            lport: 40000,
            rport: 80,
            nat_rport: 0,
            proto: IPPROTO_TCP,
            direction: DIR_OUTBOUND,
            _pad: [0; 4],
        }
    }

    fn bytes(ev: &SpanEvent) -> Vec<u8> {
        // SAFETY: reading the bytes of a plain-old-data struct.
        unsafe {
            std::slice::from_raw_parts(
                (ev as *const SpanEvent).cast::<u8>(),
                std::mem::size_of::<SpanEvent>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn decodes_and_rejects_bad_records() {
        let ev = event();
        assert_eq!(decode(&bytes(&ev)), Ok(ev));
        assert!(matches!(
            decode(&bytes(&ev)[1..]),
            Err(DecodeError::Size(..))
        ));
        let mut bad = ev;
        bad.proto = 1;
        assert_eq!(decode(&bytes(&bad)), Err(DecodeError::Proto(1)));
        let mut bad = ev;
        bad.end_ns = 0;
        assert_eq!(decode(&bytes(&bad)), Err(DecodeError::Time));
    }

    #[test]
    fn spans_get_addresses_times_and_opaque_ids() {
        let d = SpanDecoder::new();
        let s = d.span(&event(), "web".into(), Arc::default());
        assert_eq!(s.local, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(s.peer, "[::1]:80".parse().unwrap());
        assert_eq!(s.side, SpanSide::Client);
        assert_ne!(s.socket_id, 42, "the cookie is never exported as is");
        assert!((s.duration_seconds() - 0.020999).abs() < 1e-9);
        assert!(s.start_unix_nanos > 1_600_000_000_000_000_000);
    }
}
