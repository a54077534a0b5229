//! One observed request/response interval on a socket, as exporters see it
//! (OTLP spans, DogStatsD distributions). The trace id is derived from the
//! flow, so the client's and the server's span of one flow share a trace
//! even when two agents on two hosts observe them.

use std::net::SocketAddr;

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
    pub container: String,
    /// "tcp" or "udp".
    pub proto: &'static str,
    pub side: SpanSide,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    /// Opaque per-socket id (a hash, never a kernel pointer).
    pub socket_id: u64,
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

    /// `src_ip,sport,dst_ip,dport,proto`, normalised to client -> server.
    pub fn flow_id(&self) -> String {
        let (c, s) = (self.client(), self.server());
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
            container: String::new(),
            proto: "tcp",
            side,
            local: local.parse().unwrap(),
            peer: peer.parse().unwrap(),
            socket_id: 7,
        }
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
}
