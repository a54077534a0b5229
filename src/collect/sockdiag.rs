//! TCP listening sockets of this network namespace, from sock_diag netlink.

use std::io;
use std::net::IpAddr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, TCP_LISTEN};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr};

/// The kernel sizes dump messages to at most 32 KiB, so one read of this
/// size never truncates a datagram.
const RECV_BUF_LEN: usize = 64 * 1024;

/// One TCP socket in LISTEN state, from the kernel's sock_diag netlink interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListeningSocket {
    /// Local address; `0.0.0.0` / `::` for wildcard listeners. IPv4-mapped
    /// IPv6 addresses are kept as the kernel reports them.
    pub addr: IpAddr,
    /// Local port.
    pub port: u16,
    /// Socket inode, as in `/proc/<pid>/fd` links (`socket:[INODE]`).
    pub inode: u64,
}

/// Dumps TCP LISTEN sockets (IPv4 and IPv6) of the caller's network namespace.
pub fn tcp_listeners() -> io::Result<Vec<ListeningSocket>> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut out = Vec::new();
    // The kernel filters a dump by family: a dual-stack `[::]` listener is an
    // AF_INET6 socket and appears only in the second dump.
    for (seq, family) in [(1, AF_INET), (2, AF_INET6)] {
        send_dump_request(&socket, seq, family)?;
        receive_dump(&socket, &mut out)?;
    }
    Ok(out)
}

fn send_dump_request(socket: &Socket, seq: u32, family: u8) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::LISTEN,
            socket_id,
        })
        .into(),
    );
    packet.finalize();
    // serialize() panics on a buffer of the wrong size; buffer_len() is exact.
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    let sent = socket.send(&buf, 0)?;
    if sent != buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write of sock_diag request",
        ));
    }
    Ok(())
}

/// Reads datagrams until NLMSG_DONE, appending every LISTEN socket.
fn receive_dump(socket: &Socket, out: &mut Vec<ListeningSocket>) -> io::Result<()> {
    let mut buf = vec![0u8; RECV_BUF_LEN];
    loop {
        // MSG_TRUNC makes recv return the real datagram length, so a
        // truncated read is detected instead of misparsed.
        let len = socket.recv(&mut &mut buf[..], libc::MSG_TRUNC)?;
        if len > buf.len() {
            return Err(invalid(format!(
                "sock_diag datagram of {len} bytes exceeds the {RECV_BUF_LEN}-byte buffer"
            )));
        }
        let mut offset = 0;
        while offset < len {
            let msg = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[offset..len])
                .map_err(|e| invalid(format!("bad sock_diag message: {e}")))?;
            let msg_len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(resp))
                    if resp.header.state == TCP_LISTEN =>
                {
                    out.push(ListeningSocket {
                        addr: resp.header.socket_id.source_address,
                        port: resp.header.socket_id.source_port,
                        inode: u64::from(resp.header.inode),
                    });
                }
                _ => {}
            }
            // A zero length would loop forever; messages are 4-byte aligned.
            if msg_len == 0 {
                return Err(invalid("zero-length netlink message".into()));
            }
            offset += msg_len.next_multiple_of(4);
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    use crate::test_support::fd_inode;

    #[test]
    fn finds_own_ipv4_and_ipv6_listeners() {
        let v4 = TcpListener::bind("127.0.0.1:0").expect("bind v4");
        let v6 = match TcpListener::bind("[::1]:0") {
            Ok(l) => Some(l),
            Err(e) => {
                crate::test_support::skip_or_fail(&format!("no IPv6 loopback: {e}"));
                None
            }
        };
        let found = tcp_listeners().expect("sock_diag dump");
        let mut expected = vec![&v4];
        expected.extend(v6.as_ref());
        for l in expected {
            let local = l.local_addr().expect("local addr");
            let want = ListeningSocket {
                addr: local.ip(),
                port: local.port(),
                inode: fd_inode(l.as_raw_fd()),
            };
            assert!(found.contains(&want), "{want:?} not in {found:?}");
        }
    }

    #[test]
    fn wildcard_and_mapped_ipv6_addresses_are_kept() {
        let any = TcpListener::bind("[::]:0").expect("bind [::]");
        let mapped = TcpListener::bind("[::ffff:127.0.0.1]:0").expect("bind mapped");
        let found = tcp_listeners().expect("sock_diag dump");
        for (l, addr) in [(&any, "::"), (&mapped, "::ffff:127.0.0.1")] {
            let want = ListeningSocket {
                addr: addr.parse().expect("addr"),
                port: l.local_addr().expect("local addr").port(),
                inode: fd_inode(l.as_raw_fd()),
            };
            assert!(found.contains(&want), "{want:?} not in {found:?}");
        }
    }

    #[test]
    fn closed_listener_is_gone() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let inode = fd_inode(l.as_raw_fd());
        assert!(tcp_listeners()
            .expect("dump")
            .iter()
            .any(|s| s.inode == inode));
        drop(l);
        assert!(!tcp_listeners()
            .expect("dump")
            .iter()
            .any(|s| s.inode == inode));
    }
}
