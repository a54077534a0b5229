//! Where datagrams go: the `statsd.address` parsed into a UDP or Unix
//! datagram endpoint, and the non-blocking socket that sends to it.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use super::invalid;

/// Largest UDP payload over IPv4 (65535 - 8 UDP - 20 IP header bytes).
pub(super) const MAX_UDP_PAYLOAD: usize = 65_507;

/// Where datagrams go, parsed from [`StatsdConfig::address`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// `host:port`, resolved once when the exporter is created.
    Udp(String),
    Unix(PathBuf),
}

impl Endpoint {
    pub(super) fn parse(address: &str) -> io::Result<Self> {
        let address = address.trim();
        if let Some(path) = address.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(invalid(format!(
                    "statsd.address {address:?}: unix:// needs a socket path"
                )));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let hostport = address.strip_prefix("udp://").unwrap_or(address);
        if hostport.is_empty() || !hostport.contains(':') {
            return Err(invalid(format!(
                "statsd.address {address:?}: expected host:port or unix:///path"
            )));
        }
        Ok(Endpoint::Udp(hostport.to_string()))
    }
}

/// The socket datagrams are written to.
pub(super) enum Socket {
    /// Connected, so the kernel reports ICMP "port unreachable" as
    /// `ECONNREFUSED` on a later send: a missing DogStatsD server shows up
    /// in [`StatsdExporter::errors`] instead of vanishing silently.
    Udp(UdpSocket),
    /// Unbound and addressed by path on every send (not connected): when
    /// the Datadog agent restarts and recreates its socket file, the next
    /// send reaches the new socket, where a connected one would keep
    /// failing against the old one.
    Unix { socket: UnixDatagram, path: PathBuf },
}

impl Socket {
    pub(super) fn open(endpoint: &Endpoint) -> io::Result<Self> {
        match endpoint {
            Endpoint::Udp(hostport) => {
                let mut last_err = None;
                for addr in hostport.to_socket_addrs()? {
                    match connect_udp(addr) {
                        Ok(socket) => return Ok(Socket::Udp(socket)),
                        Err(e) => last_err = Some(e),
                    }
                }
                Err(last_err.unwrap_or_else(|| {
                    invalid(format!("statsd.address {hostport:?} resolves to nothing"))
                }))
            }
            Endpoint::Unix(path) => {
                let socket = UnixDatagram::unbound()?;
                socket.set_nonblocking(true)?;
                Ok(Socket::Unix {
                    socket,
                    path: path.clone(),
                })
            }
        }
    }

    pub(super) fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Udp(socket) => socket.send(buf),
            Socket::Unix { socket, path } => socket.send_to(buf, path),
        }
    }
}

/// A non-blocking UDP socket of `addr`'s family, connected to it.
fn connect_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    // A full send buffer must drop a datagram, not stall the agent.
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::statsd::test_support::*;
    use crate::export::statsd::{StatsdConfig, StatsdExporter};
    use crate::metrics::{Family, Kind, Value};
    use std::time::{Duration, Instant};

    #[test]
    fn addresses_parse() {
        assert_eq!(
            Endpoint::parse("unix:///var/run/dsd.socket").expect("unix"),
            Endpoint::Unix(PathBuf::from("/var/run/dsd.socket"))
        );
        assert_eq!(
            Endpoint::parse("127.0.0.1:8125").expect("udp"),
            Endpoint::Udp("127.0.0.1:8125".into())
        );
        assert_eq!(
            Endpoint::parse("udp://[::1]:8125").expect("udp://"),
            Endpoint::Udp("[::1]:8125".into())
        );
        for bad in ["", "unix://", "localhost", "udp://"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn udp_without_server_counts_errors() {
        // A port nobody listens on (bound, then released).
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free port")
            .port();
        let mut exp = StatsdExporter::new(&StatsdConfig {
            address: format!("127.0.0.1:{port}"),
            ..StatsdConfig::default()
        })
        .expect("exporter");
        // The first datagram leaves; the ICMP "port unreachable" it causes
        // fails a later send on the connected socket.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut calls = 0;
        while exp.errors() == 0 && Instant::now() < deadline {
            exp.export(&[gauge("netagent_sockets_open", &[("a", 1.0)])]);
            calls += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(exp.errors() > 0, "no error after {calls} calls");
    }

    #[test]
    fn unix_datagram_socket() {
        let dir = scratch("uds");
        let path = dir.0.join("dsd.socket");
        let rx = UnixDatagram::bind(&path).expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let mut exp = unix_exporter(&path);

        let n = exp.export(&[
            counter("netagent_connect", &[("curl", 3.0)]),
            gauge("netagent_sockets_open", &[("curl", 1.0)]),
        ]);
        assert_eq!(n, 2);
        let mut buf = [0u8; 2048];
        let len = rx.recv(&mut buf).expect("datagram");
        let text = std::str::from_utf8(&buf[..len]).expect("UTF-8");
        assert_eq!(
            text,
            "netagent.connect:3|c|#comm:curl\nnetagent.sockets_open:1|g|#comm:curl\n"
        );
        assert_eq!(exp.errors(), 0);
    }

    #[test]
    fn unix_socket_missing_or_full_drops_and_counts() {
        let dir = scratch("uds-full");
        let path = dir.0.join("dsd.socket");

        // Nobody listening yet: every line is counted, nothing panics.
        let mut exp = unix_exporter(&path);
        let families = [counter("netagent_connect", &[("a", 1.0), ("b", 2.0)])];
        assert_eq!(exp.export(&families), 0);
        assert_eq!(exp.errors(), 2);

        // A receiver that never reads: its queue fills, sends would block.
        let rx = UnixDatagram::bind(&path).expect("bind");
        let mut big = Family::ad_hoc("netagent_sockets_open", "help", Kind::Gauge);
        for i in 0..20_000u32 {
            big.push(vec![("comm", format!("p{i}"))], Value::Gauge(1.0));
        }
        let before = exp.errors();
        let start = Instant::now();
        let sent = exp.export(std::slice::from_ref(&big));
        assert!(start.elapsed() < Duration::from_secs(5), "export blocked");
        let dropped = exp.errors() - before;
        assert!(dropped > 0, "a full queue drops lines");
        assert!(sent > 0);
        assert_eq!(sent as u64 + dropped, 20_000, "every line sent or counted");
        drop(rx);
    }
}
