//! Socket helpers shared by the server, the client and `load`: raw socket
//! options std does not offer, a configurable blocking connect, TCP_INFO,
//! errno names for the JSON error maps.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{ensure, Result};

/// Largest datagram / read chunk handled (UDP payloads cannot exceed this anyway).
pub const BUF_SIZE: usize = 64 * 1024;

/// Symbolic name for an errno, for the `load` and `client` error maps.
pub fn errno_name(e: &io::Error) -> String {
    let Some(code) = e.raw_os_error() else {
        return format!("{:?}", e.kind());
    };
    let name = match code {
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOMEM => "ENOMEM",
        libc::EAGAIN => "EAGAIN",
        libc::EINTR => "EINTR",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::EINVAL => "EINVAL",
        libc::EPIPE => "EPIPE",
        libc::ENETDOWN => "ENETDOWN",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::EISCONN => "EISCONN",
        libc::EALREADY => "EALREADY",
        libc::ENOTCONN => "ENOTCONN",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EPROTO => "EPROTO",
        _ => return format!("errno {code}"),
    };
    name.to_string()
}

/// Make `close()` send RST and skip TIME_WAIT, so connection churn does not
/// exhaust ephemeral ports. (`TcpStream::set_linger` is still unstable.)
pub fn set_linger_zero(s: &TcpStream) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd owned by `s`; option value points to a properly sized
    // `linger` that lives for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How client sockets are set up before connect/send.
#[derive(Clone, Copy, Default)]
pub struct SocketOpts {
    syn_retries: Option<u8>,
    bind4: Option<Ipv4Addr>,
    bind6: Option<Ipv6Addr>,
}

impl SocketOpts {
    /// From `client --syn-retries` and `--bind` (at most one address per family).
    pub fn new(syn_retries: Option<u8>, bind: &[IpAddr]) -> Result<Self> {
        let mut opts = SocketOpts {
            syn_retries,
            ..SocketOpts::default()
        };
        for ip in bind {
            match *ip {
                IpAddr::V4(v4) => {
                    ensure!(opts.bind4.is_none(), "--bind: more than one IPv4 address");
                    opts.bind4 = Some(v4);
                }
                IpAddr::V6(v6) => {
                    ensure!(opts.bind6.is_none(), "--bind: more than one IPv6 address");
                    opts.bind6 = Some(v6);
                }
            }
        }
        Ok(opts)
    }

    /// Source address for sockets talking to `target` (`None`: let the kernel choose).
    pub fn source(&self, target: SocketAddr) -> Option<IpAddr> {
        match target {
            SocketAddr::V4(_) => self.bind4.map(IpAddr::V4),
            SocketAddr::V6(_) => self.bind6.map(IpAddr::V6),
        }
    }

    /// Local address for a UDP socket talking to `target`.
    pub fn udp_local(&self, target: SocketAddr) -> SocketAddr {
        match self.source(target) {
            Some(ip) => SocketAddr::new(ip, 0),
            None => unspecified_like(target),
        }
    }
}

fn setsockopt_int(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: valid fd; the option value points to a c_int that lives for the
    // duration of the call, and its size is passed along.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `addr` as a C socket address (std does not expose its conversion).
fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any
            // socket address type, and was zeroed above.
            let sin = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe {
                &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// A blocking TCP connect like `TcpStream::connect`, with `opts` (TCP_SYNCNT,
/// source address) applied to the socket first.
pub fn tcp_connect(addr: SocketAddr, opts: &SocketOpts) -> io::Result<TcpStream> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain syscall; the result is checked before use.
    let raw = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh socket that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if let Some(n) = opts.syn_retries {
        setsockopt_int(&fd, libc::IPPROTO_TCP, libc::TCP_SYNCNT, n.into())?;
    }
    if let Some(ip) = opts.source(addr) {
        // Pick the source port at connect() time, when the whole 4-tuple is
        // known, so many connects from one address do not exhaust ports.
        // Best effort: without it bind() just picks the port itself.
        let _ = setsockopt_int(&fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1);
        let (sa, len) = to_sockaddr(SocketAddr::new(ip, 0));
        // SAFETY: `sa` is a valid socket address of `len` bytes.
        if unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_storage).cast(),
                len,
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    let (sa, len) = to_sockaddr(addr);
    loop {
        // SAFETY: `sa` is a valid socket address of `len` bytes.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_storage).cast(),
                len,
            )
        };
        if rc == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // A blocking connect interrupted by a signal goes on in the
            // background; calling connect() again waits for it.
            Some(libc::EINTR) => continue,
            Some(libc::EISCONN) => break,
            _ => return Err(e),
        }
    }
    Ok(TcpStream::from(fd))
}

/// A field of TCP_INFO, checked to lie within what the kernel returned
/// (older kernels' struct may end early).
fn tcp_info_field(
    stream: &TcpStream,
    end: usize,
    name: &str,
    field: impl Fn(&libc::tcp_info) -> u32,
) -> io::Result<u32> {
    // SAFETY: all-zero bytes are a valid tcp_info.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: valid fd; `info` is writable for `len` bytes and outlives the call.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < end {
        return Err(io::Error::other(format!(
            "TCP_INFO returned {len} bytes, too short for {name}"
        )));
    }
    Ok(field(&info))
}

/// Smoothed RTT (µs) from TCP_INFO.
pub fn tcp_rtt_us(stream: &TcpStream) -> io::Result<u32> {
    let end = std::mem::offset_of!(libc::tcp_info, tcpi_rtt) + std::mem::size_of::<u32>();
    tcp_info_field(stream, end, "tcpi_rtt", |i| i.tcpi_rtt)
}

/// Segments the kernel retransmitted on this connection (TCP_INFO).
pub fn tcp_total_retrans(stream: &TcpStream) -> io::Result<u32> {
    let end = std::mem::offset_of!(libc::tcp_info, tcpi_total_retrans) + std::mem::size_of::<u32>();
    tcp_info_field(stream, end, "tcpi_total_retrans", |i| i.tcpi_total_retrans)
}

fn unspecified_like(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    }
}
