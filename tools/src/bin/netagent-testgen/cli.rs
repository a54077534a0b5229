//! The command line: subcommands, their options and the value parsers.
//! Tests, the kernel-matrix driver and the benchmark suite call these
//! options by name; keep them stable.

use std::ffi::CString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use clap::{Args, Parser, Subcommand};

use crate::client::SEND_PAYLOAD;

/// Largest UDP payload `--size` accepts (the IPv4 limit; also fine for IPv6).
const MAX_UDP_PAYLOAD: u16 = 65_507;

#[derive(Parser)]
#[command(
    name = "netagent-testgen",
    version,
    about = "Generate loopback TCP/UDP traffic under a known process name (comm) for netagent tests"
)]
pub struct Cli {
    /// Kernel comm (at most 15 bytes) set on every thread before any network I/O.
    #[arg(long, global = true, default_value = "nettest-cli", value_parser = parse_comm)]
    pub comm: CString,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run TCP/UDP echo servers; print `{"tcp4":P,"tcp6":P,"udp4":P,"udp6":P,"pid":N}`.
    Serve(ServeArgs),
    /// Connect/send a known number of times and time request/response exchanges.
    Client(ClientArgs),
    /// Paced TCP connection churn against one or more targets.
    Load(LoadArgs),
    /// Hold TCP connections open and idle; use or close them on command
    /// (one per stdin line: `exchange`, `send BYTES`, `unread-close`, `close`).
    Hold(HoldArgs),
    /// One connected UDP socket used on command (one per stdin line:
    /// `send N`, `rename NAME`): a socket that outlives its owner's name.
    UdpHold(UdpHoldArgs),
    /// Burn CPU (optionally pinned to one core) for a while: delay accounting tests.
    Spin(SpinArgs),
    /// Synchronous disk I/O (O_DIRECT) on a file for a while: delay accounting tests.
    Diskio(DiskioArgs),
    /// Allocate and touch memory, then hold it: OOM tests.
    Alloc(AllocArgs),
    /// A DNS server with a zone from the command line and a fixed delay (UDP and TCP).
    DnsServe(crate::dns::DnsServeArgs),
    /// DNS queries over UDP (sendto) or TCP; optionally connect to the answer.
    DnsQuery(crate::dns::DnsQueryArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Serve TCP on IPv4 at this port (0 = pick a free port; absent = not served).
    #[arg(long, value_name = "PORT")]
    pub tcp4: Option<u16>,
    /// Serve TCP on IPv6 at this port (0 = pick a free port; absent = not served).
    #[arg(long, value_name = "PORT")]
    pub tcp6: Option<u16>,
    /// Serve UDP on IPv4 at this port (0 = pick a free port; absent = not served).
    #[arg(long, value_name = "PORT")]
    pub udp4: Option<u16>,
    /// Serve UDP on IPv6 at this port (0 = pick a free port; absent = not served).
    #[arg(long, value_name = "PORT")]
    pub udp6: Option<u16>,
    /// Delay before echoing each TCP read / UDP datagram, in milliseconds.
    #[arg(long, value_name = "D", default_value_t = 0)]
    pub delay_ms: u64,
    /// IPv4 address to bind.
    #[arg(long, value_name = "ADDR", default_value_t = Ipv4Addr::LOCALHOST)]
    pub bind4: Ipv4Addr,
    /// IPv6 address to bind.
    #[arg(long, value_name = "ADDR", default_value_t = Ipv6Addr::LOCALHOST)]
    pub bind6: Ipv6Addr,
    /// Discard instead of echoing: TCP connections are read until EOF, UDP
    /// datagrams are dropped. Nothing is sent back.
    #[arg(long, conflicts_with = "abort")]
    pub sink: bool,
    /// Close every accepted TCP connection at once with SO_LINGER {on, 0}, which
    /// sends RST (UDP still echoes). The count goes to stderr at `--max-seconds`.
    #[arg(long)]
    pub abort: bool,
    /// Exit (status 0) after this many seconds.
    #[arg(long, value_name = "S", default_value_t = 300)]
    pub max_seconds: u64,
}

#[derive(Args)]
pub struct ClientArgs {
    /// IPv4 TCP target.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_v4_target)]
    pub tcp4: Option<SocketAddr>,
    /// IPv6 TCP target.
    #[arg(long, value_name = "[ADDR]:PORT", value_parser = parse_v6_target)]
    pub tcp6: Option<SocketAddr>,
    /// IPv4 UDP target.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_v4_target)]
    pub udp4: Option<SocketAddr>,
    /// IPv6 UDP target.
    #[arg(long, value_name = "[ADDR]:PORT", value_parser = parse_v6_target)]
    pub udp6: Option<SocketAddr>,
    /// Connect+close this many times to each TCP target.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub connects: u64,
    /// Send this many datagrams (one socket, sendto) to each UDP target.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub sends: u64,
    /// Timed request/response exchanges per target, on one extra connection/socket.
    #[arg(long, value_name = "E", default_value_t = 0)]
    pub exchanges: u64,
    /// Payload bytes of each `--sends` datagram.
    #[arg(long, value_name = "S", default_value_t = SEND_PAYLOAD.len() as u16,
          value_parser = clap::value_parser!(u16).range(..=MAX_UDP_PAYLOAD as i64))]
    pub size: u16,
    /// Per TCP target, one more connection that writes exactly BYTES bytes, shuts
    /// down its write side and waits until the server closes (anything the server
    /// sends meanwhile is read and discarded).
    #[arg(long, value_name = "BYTES")]
    pub bulk: Option<u64>,
    /// Set TCP_SYNCNT on TCP sockets before connect: SYN retransmissions before
    /// connect() gives up with ETIMEDOUT (1 = about 3 s).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=127))]
    pub syn_retries: Option<u8>,
    /// After each `--connects` connect, read until the peer closes the connection;
    /// a reset counts in `resets`, a normal close in `eofs` (no close within 5 s
    /// counts in `wait_failed`).
    #[arg(long)]
    pub wait_reset: bool,
    /// Report TCP_INFO's smoothed RTT of the `--exchanges` connection, read just
    /// after its close handshake (as the agent samples it), as `tcpi_rtt_us`.
    #[arg(long)]
    pub tcp_info: bool,
    /// Source address for TCP and UDP sockets (repeatable: at most one IPv4 and
    /// one IPv6 address; each applies to targets of its family).
    #[arg(long, value_name = "ADDR")]
    pub bind: Vec<IpAddr>,
}

#[derive(Args)]
pub struct LoadArgs {
    /// TCP target (repeatable; used round-robin).
    #[arg(long = "tcp", value_name = "ADDR:PORT", required = true, value_parser = parse_target)]
    pub tcp: Vec<SocketAddr>,
    /// Target connect attempts per second, summed over all threads.
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: u64,
    /// Duration of the run in seconds (fractions allowed).
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub seconds: f64,
    /// Number of connecting threads.
    #[arg(long, value_name = "T", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: u64,
    /// Spread each IPv4 target over this many consecutive addresses
    /// (127.1.0.0 with 50000 covers 127.1.0.0 .. 127.1.195.79), for many
    /// distinct peers; the server should listen on 0.0.0.0.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=16_000_000))]
    pub spread: u32,
}

#[derive(Args)]
pub struct UdpHoldArgs {
    /// UDP target.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_target)]
    pub udp: SocketAddr,
    /// Exit (status 1) after this many seconds, whatever is going on.
    #[arg(long, value_name = "S", default_value_t = 120)]
    pub max_seconds: u64,
}

#[derive(Args)]
pub struct HoldArgs {
    /// TCP target (an echo server for `exchange` and `unread-close`).
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_target)]
    pub tcp: SocketAddr,
    /// Connections to open and hold.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub connections: u64,
    /// Source address (at most one IPv4 and one IPv6 address).
    #[arg(long, value_name = "ADDR")]
    pub bind: Vec<IpAddr>,
    /// Exit (status 1) after this many seconds, whatever is going on.
    #[arg(long, value_name = "S", default_value_t = 120)]
    pub max_seconds: u64,
}

fn parse_comm(s: &str) -> Result<CString, String> {
    // The kernel silently truncates to 15 bytes; a truncated name would make tests
    // look for a comm that never appears, so refuse instead.
    if s.is_empty() || s.len() > 15 {
        return Err(format!("must be 1..=15 bytes, got {}", s.len()));
    }
    CString::new(s).map_err(|_| "must not contain NUL".to_string())
}

fn parse_target(s: &str) -> Result<SocketAddr, String> {
    // Numeric addresses only, so no name resolution (and no traffic) happens.
    s.parse()
        .map_err(|e| format!("expected ADDR:PORT or [ADDR]:PORT: {e}"))
}

fn parse_v4_target(s: &str) -> Result<SocketAddr, String> {
    let a = parse_target(s)?;
    a.is_ipv4()
        .then_some(a)
        .ok_or_else(|| "expected an IPv4 ADDR:PORT".to_string())
}

fn parse_v6_target(s: &str) -> Result<SocketAddr, String> {
    let a = parse_target(s)?;
    a.is_ipv6()
        .then_some(a)
        .ok_or_else(|| "expected an IPv6 [ADDR]:PORT".to_string())
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(v)
    } else {
        Err("must be > 0 and <= 86400".to_string())
    }
}

// ---------------------------------------------------------------------------
// spin, diskio, alloc: node-signal load

/// Options shared by the node-signal subcommands.
#[derive(Args)]
pub struct Placement {
    /// Join this cgroup (write our pid to DIR/cgroup.procs) before starting;
    /// repeatable, e.g. one v1 memory cgroup and one v2 cgroup.
    #[arg(long = "cgroup", value_name = "DIR")]
    pub cgroups: Vec<std::path::PathBuf>,
    /// Pin to this CPU (sched_setaffinity) before starting.
    #[arg(long, value_name = "N")]
    pub cpu: Option<usize>,
}

#[derive(Args)]
pub struct SpinArgs {
    #[command(flatten)]
    pub place: Placement,
    /// Spin for this many seconds, then exit.
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub seconds: f64,
}

#[derive(Args)]
pub struct DiskioArgs {
    #[command(flatten)]
    pub place: Placement,
    /// File to write and read back (on a real disk: O_DIRECT bypasses the
    /// page cache, tmpfs refuses it). Removed at the end.
    #[arg(long, value_name = "PATH")]
    pub file: std::path::PathBuf,
    /// File size in MiB.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub mib: u64,
    /// Keep reading the file back (O_DIRECT) for this many seconds.
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    pub seconds: f64,
    /// After the I/O, print the summary and sleep this long before exiting
    /// (so a test can read the finished process's counters).
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    pub hold_seconds: f64,
}

#[derive(Args)]
pub struct AllocArgs {
    #[command(flatten)]
    pub place: Placement,
    /// Allocate and touch this many MiB, 1 MiB at a time.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub mib: u64,
    /// Write this to /proc/self/oom_score_adj first (-1000 … 1000).
    #[arg(long, value_name = "V", allow_hyphen_values = true,
          value_parser = clap::value_parser!(i32).range(-1000..=1000))]
    pub oom_score_adj: Option<i32>,
    /// Once everything is allocated, print a JSON line and hold the memory
    /// this many seconds before exiting.
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    pub hold_seconds: f64,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_what_the_tests_pass() {
        let cli = Cli::try_parse_from([
            "netagent-testgen",
            "--comm",
            "nettest-cli",
            "client",
            "--tcp4",
            "127.0.0.1:80",
            "--udp6",
            "[::1]:53",
            "--connects",
            "3",
            "--bind",
            "127.0.0.1",
        ])
        .unwrap();
        assert_eq!(cli.comm.as_bytes(), b"nettest-cli");
        let Command::Client(c) = cli.command else {
            panic!("not client");
        };
        assert_eq!(c.connects, 3);
        assert_eq!(c.size as usize, SEND_PAYLOAD.len());
        assert!(c.tcp6.is_none());
        // A comm the kernel would truncate, and a target of the wrong family.
        assert!(Cli::try_parse_from(["t", "--comm", "sixteen-bytes-xx", "serve"]).is_err());
        assert!(Cli::try_parse_from(["t", "client", "--tcp4", "[::1]:80"]).is_err());
    }
}
