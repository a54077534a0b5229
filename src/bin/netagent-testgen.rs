//! `netagent-testgen`: a traffic generator for netagent's tests and benchmarks.
//!
//! netagent attributes traffic to processes by their kernel `comm`, so this tool
//! sets its own comm (`--comm`, default `nettest-cli`) with `prctl(PR_SET_NAME)` on
//! the main thread and at the start of every thread it spawns, before any network
//! I/O. Tests can then look for exactly that name in the agent's output.
//!
//! Subcommands:
//! * `serve`  – TCP/UDP echo servers on loopback (or given bind addresses); prints
//!   the bound ports as one JSON line, then serves until killed or `--max-seconds`.
//! * `client` – a known number of TCP connects, UDP datagrams and timed
//!   request/response exchanges; prints one JSON summary line.
//! * `load`   – paced TCP connection churn (SO_LINGER 0, so no TIME_WAIT) for
//!   benchmarks; prints one JSON summary line.
//!
//! Traffic only goes to addresses given on the command line (servers bind to
//! loopback by default), and every loop is bounded by a count and/or a deadline.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

/// Largest datagram / read chunk handled (UDP payloads cannot exceed this anyway).
const BUF_SIZE: usize = 64 * 1024;
/// Size of one request in a request/response exchange.
const EXCHANGE_LEN: usize = 32;
/// Per-exchange I/O timeout, so a silent peer cannot stall the client forever.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// `load` reports and exits this long after `--seconds` even if connects hang.
const HARD_STOP_MARGIN: Duration = Duration::from_secs(2);
/// How far a `load` thread may fall behind its schedule before it stops
/// trying to catch up.
const MAX_LAG: Duration = Duration::from_millis(20);
/// Accept queue length for TCP listeners; enough for >10k connects/s.
const LISTEN_BACKLOG: libc::c_int = 4096;
/// Stack for TCP echo threads: they only hold a heap buffer.
const HANDLER_STACK: usize = 128 * 1024;
/// Datagrams waiting for a delayed echo, per UDP socket (bounds memory).
const UDP_ECHO_QUEUE: usize = 1024;
/// An idle pooled TCP echo thread exits after this long without a connection.
const WORKER_IDLE: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(
    name = "netagent-testgen",
    version,
    about = "Generate loopback TCP/UDP traffic under a known process name (comm) for netagent tests"
)]
struct Cli {
    /// Kernel comm (at most 15 bytes) set on every thread before any network I/O.
    #[arg(long, global = true, default_value = "nettest-cli", value_parser = parse_comm)]
    comm: CString,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run TCP/UDP echo servers; print `{"tcp4":P,"tcp6":P,"udp4":P,"udp6":P,"pid":N}`.
    Serve(ServeArgs),
    /// Connect/send a known number of times and time request/response exchanges.
    Client(ClientArgs),
    /// Paced TCP connection churn against one or more targets.
    Load(LoadArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Serve TCP on IPv4 at this port (0 = pick a free port; absent = not served).
    #[arg(long, value_name = "PORT")]
    tcp4: Option<u16>,
    /// Serve TCP on IPv6 at this port (0 = pick a free port; absent = not served).
    #[arg(long, value_name = "PORT")]
    tcp6: Option<u16>,
    /// Serve UDP on IPv4 at this port (0 = pick a free port; absent = not served).
    #[arg(long, value_name = "PORT")]
    udp4: Option<u16>,
    /// Serve UDP on IPv6 at this port (0 = pick a free port; absent = not served).
    #[arg(long, value_name = "PORT")]
    udp6: Option<u16>,
    /// Delay before echoing each TCP read / UDP datagram, in milliseconds.
    #[arg(long, value_name = "D", default_value_t = 0)]
    delay_ms: u64,
    /// IPv4 address to bind.
    #[arg(long, value_name = "ADDR", default_value_t = Ipv4Addr::LOCALHOST)]
    bind4: Ipv4Addr,
    /// IPv6 address to bind.
    #[arg(long, value_name = "ADDR", default_value_t = Ipv6Addr::LOCALHOST)]
    bind6: Ipv6Addr,
    /// Exit (status 0) after this many seconds.
    #[arg(long, value_name = "S", default_value_t = 300)]
    max_seconds: u64,
}

#[derive(Args)]
struct ClientArgs {
    /// IPv4 TCP target.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_v4_target)]
    tcp4: Option<SocketAddr>,
    /// IPv6 TCP target.
    #[arg(long, value_name = "[ADDR]:PORT", value_parser = parse_v6_target)]
    tcp6: Option<SocketAddr>,
    /// IPv4 UDP target.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_v4_target)]
    udp4: Option<SocketAddr>,
    /// IPv6 UDP target.
    #[arg(long, value_name = "[ADDR]:PORT", value_parser = parse_v6_target)]
    udp6: Option<SocketAddr>,
    /// Connect+close this many times to each TCP target.
    #[arg(long, value_name = "N", default_value_t = 0)]
    connects: u64,
    /// Send this many datagrams (one socket, sendto) to each UDP target.
    #[arg(long, value_name = "K", default_value_t = 0)]
    sends: u64,
    /// Timed request/response exchanges per target, on one extra connection/socket.
    #[arg(long, value_name = "E", default_value_t = 0)]
    exchanges: u64,
}

#[derive(Args)]
struct LoadArgs {
    /// TCP target (repeatable; used round-robin).
    #[arg(long = "tcp", value_name = "ADDR:PORT", required = true, value_parser = parse_target)]
    tcp: Vec<SocketAddr>,
    /// Target connect attempts per second, summed over all threads.
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u64).range(1..))]
    rate: u64,
    /// Duration of the run in seconds (fractions allowed).
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    seconds: f64,
    /// Number of connecting threads.
    #[arg(long, value_name = "T", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: u64,
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
// comm handling

static COMM: OnceLock<CString> = OnceLock::new();

/// Set the calling thread's kernel comm.
fn set_comm(name: &CStr) -> io::Result<()> {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (truncated to 16 bytes
    // including NUL) from the pointer, which is valid for the call's duration.
    let rc = unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Spawn a thread that sets its comm before running `f`.
///
/// Threads inherit the comm at creation, but set it explicitly anyway: traffic
/// under the wrong name would silently invalidate a test.
fn spawn_named<F, T>(stack_size: Option<usize>, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let comm: &'static CStr = COMM.get().expect("comm set in main");
    let mut builder = thread::Builder::new();
    if let Some(size) = stack_size {
        builder = builder.stack_size(size);
    }
    builder.spawn(move || {
        if let Err(e) = set_comm(comm) {
            eprintln!("netagent-testgen: prctl(PR_SET_NAME) failed in thread: {e}");
            std::process::exit(2);
        }
        f()
    })
}

// ---------------------------------------------------------------------------
// helpers

/// Symbolic name for an errno, for the `load` error map.
fn errno_name(e: &io::Error) -> String {
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
        _ => return format!("errno {code}"),
    };
    name.to_string()
}

/// Make `close()` send RST and skip TIME_WAIT, so connection churn does not
/// exhaust ephemeral ports. (`TcpStream::set_linger` is still unstable.)
fn set_linger_zero(s: &TcpStream) -> io::Result<()> {
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

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let line = serde_json::to_string(value).context("serializing JSON output")?;
    let mut out = io::stdout().lock();
    writeln!(out, "{line}").context("writing JSON to stdout")?;
    out.flush().context("flushing stdout")
}

/// Milliseconds with microsecond resolution (keeps the JSON short and exact).
fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

// ---------------------------------------------------------------------------
// serve

#[derive(Serialize)]
struct ServeReady {
    tcp4: u16,
    tcp6: u16,
    udp4: u16,
    udp6: u16,
    pid: u32,
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    ensure!(
        args.tcp4.is_some() || args.tcp6.is_some() || args.udp4.is_some() || args.udp6.is_some(),
        "serve: nothing to serve; give at least one of --tcp4/--tcp6/--udp4/--udp6"
    );
    let delay = Duration::from_millis(args.delay_ms);
    let addr4 = |port| SocketAddr::from((args.bind4, port));
    let addr6 = |port| SocketAddr::from((args.bind6, port));

    // Bind everything first so the ready line only appears once all ports work.
    let tcp4 = args.tcp4.map(|p| bind_tcp(addr4(p))).transpose()?;
    let tcp6 = args.tcp6.map(|p| bind_tcp(addr6(p))).transpose()?;
    let udp4 = args.udp4.map(|p| bind_udp(addr4(p))).transpose()?;
    let udp6 = args.udp6.map(|p| bind_udp(addr6(p))).transpose()?;

    let tcp_port = |l: &Option<TcpListener>| -> Result<u16> {
        l.as_ref().map_or(Ok(0), |l| {
            Ok(l.local_addr().context("listener address")?.port())
        })
    };
    let udp_port = |s: &Option<UdpSocket>| -> Result<u16> {
        s.as_ref().map_or(Ok(0), |s| {
            Ok(s.local_addr().context("UDP socket address")?.port())
        })
    };
    let ready = ServeReady {
        tcp4: tcp_port(&tcp4)?,
        tcp6: tcp_port(&tcp6)?,
        udp4: udp_port(&udp4)?,
        udp6: udp_port(&udp6)?,
        pid: std::process::id(),
    };

    for listener in [tcp4, tcp6].into_iter().flatten() {
        spawn_named(None, move || accept_loop(listener, delay))
            .context("spawning accept thread")?;
    }
    for socket in [udp4, udp6].into_iter().flatten() {
        start_udp_echo(socket, delay)?;
    }

    print_json(&ready)?;

    // Serving threads block forever; the process ends here (or when killed).
    thread::sleep(Duration::from_secs(args.max_seconds));
    Ok(ExitCode::SUCCESS)
}

fn bind_tcp(addr: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr).with_context(|| format!("binding TCP {addr}"))?;
    // std listens with a backlog of 128, which overflows under `load` churn
    // (dropped SYNs then stall connects for a second). Calling listen() again on
    // a listening socket just raises the backlog (capped by net.core.somaxconn).
    // SAFETY: plain syscall on a valid fd owned by `listener`.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("raising listen backlog on {addr}"));
    }
    Ok(listener)
}

fn bind_udp(addr: SocketAddr) -> Result<UdpSocket> {
    UdpSocket::bind(addr).with_context(|| format!("binding UDP {addr}"))
}

/// Elastic pool of TCP echo threads.
///
/// A connection goes to an idle worker if there is one, otherwise to a new
/// thread, so long-lived exchange connections never wait behind each other,
/// while connection churn reuses threads (thread creation dominated server CPU
/// at 10k conn/s). Idle workers exit after [`WORKER_IDLE`].
struct EchoPool {
    state: Mutex<PoolState>,
    ready: Condvar,
    delay: Duration,
}

struct PoolState {
    queue: VecDeque<TcpStream>,
    /// Workers waiting for a connection. Invariant: `idle >= queue.len()`, so
    /// every queued connection has a worker that will take it.
    idle: usize,
}

impl EchoPool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dispatch(self: &Arc<Self>, stream: TcpStream) {
        {
            let mut st = self.lock();
            if st.idle > st.queue.len() {
                st.queue.push_back(stream);
                self.ready.notify_one();
                return;
            }
        }
        let pool = Arc::clone(self);
        if let Err(e) = spawn_named(Some(HANDLER_STACK), move || pool.worker(stream)) {
            eprintln!("netagent-testgen: cannot spawn connection thread: {e}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn worker(&self, first: TcpStream) {
        let mut buf = vec![0u8; BUF_SIZE];
        let mut next = Some(first);
        while let Some(stream) = next.take() {
            echo_tcp(stream, &mut buf, self.delay);
            let deadline = Instant::now() + WORKER_IDLE;
            let mut st = self.lock();
            st.idle += 1;
            loop {
                if let Some(s) = st.queue.pop_front() {
                    st.idle -= 1;
                    next = Some(s);
                    break;
                }
                let now = Instant::now();
                if now >= deadline {
                    // Queue is empty, so leaving keeps the invariant.
                    st.idle -= 1;
                    break;
                }
                st = self
                    .ready
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
}

fn accept_loop(listener: TcpListener, delay: Duration) {
    let pool = Arc::new(EchoPool {
        state: Mutex::new(PoolState {
            queue: VecDeque::new(),
            idle: 0,
        }),
        ready: Condvar::new(),
        delay,
    });
    loop {
        match listener.accept() {
            Ok((stream, _)) => pool.dispatch(stream),
            // Out of fds/memory: back off briefly instead of spinning.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) =>
            {
                thread::sleep(Duration::from_millis(10));
            }
            // ECONNABORTED etc. concern a single connection only.
            Err(_) => {}
        }
    }
}

fn echo_tcp(mut stream: TcpStream, buf: &mut [u8], delay: Duration) {
    // Echoes are small request/response messages; don't let Nagle hold them.
    let _ = stream.set_nodelay(true);
    loop {
        let n = match stream.read(buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Load-mode clients close with RST, so ECONNRESET is the normal end.
            Err(_) => return,
        };
        if !delay.is_zero() {
            thread::sleep(delay);
        }
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// A received datagram waiting for its delayed echo.
struct PendingEcho {
    due: Instant,
    data: Vec<u8>,
    peer: SocketAddr,
}

fn start_udp_echo(socket: UdpSocket, delay: Duration) -> Result<()> {
    if delay.is_zero() {
        spawn_named(None, move || udp_echo_inline(socket)).context("spawning UDP thread")?;
        return Ok(());
    }
    // With a delay, echo from a second thread via a FIFO queue (the delay is
    // constant, so FIFO order is due order): datagrams queued behind each other
    // are then delayed by `delay`, not by `delay` times their queue position.
    let sender = socket.try_clone().context("cloning UDP socket")?;
    let (tx, rx) = mpsc::sync_channel::<PendingEcho>(UDP_ECHO_QUEUE);
    spawn_named(None, move || {
        for p in rx {
            let now = Instant::now();
            if p.due > now {
                thread::sleep(p.due - now);
            }
            let _ = sender.send_to(&p.data, p.peer);
        }
    })
    .context("spawning UDP echo thread")?;
    spawn_named(None, move || {
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            // Errors (e.g. ICMP-reported ones) concern one peer; keep serving.
            let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let pending = PendingEcho {
                due: Instant::now() + delay,
                data: buf[..n].to_vec(),
                peer,
            };
            // Queue full: drop the datagram, as an overloaded UDP server would.
            if let Err(TrySendError::Disconnected(_)) = tx.try_send(pending) {
                return;
            }
        }
    })
    .context("spawning UDP receive thread")?;
    Ok(())
}

fn udp_echo_inline(socket: UdpSocket) {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        if let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], peer);
        }
    }
}

// ---------------------------------------------------------------------------
// client

#[derive(Serialize)]
struct TcpClientStats {
    connects_ok: u64,
    connects_failed: u64,
    exchanges: u64,
}

#[derive(Serialize)]
struct UdpClientStats {
    sends_ok: u64,
    sends_failed: u64,
    exchanges: u64,
}

#[derive(Serialize)]
struct ExchangeMs {
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Serialize)]
struct ClientSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp4: Option<TcpClientStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp6: Option<TcpClientStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    udp4: Option<UdpClientStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    udp6: Option<UdpClientStats>,
    exchange_ms: ExchangeMs,
}

/// Wall times of all exchanges, across targets.
#[derive(Default)]
struct Timings {
    min: Option<Duration>,
    max: Option<Duration>,
}

impl Timings {
    fn record(&mut self, d: Duration) {
        self.min = Some(self.min.map_or(d, |m| m.min(d)));
        self.max = Some(self.max.map_or(d, |m| m.max(d)));
    }
}

fn client(args: ClientArgs) -> Result<ExitCode> {
    ensure!(
        args.tcp4.is_some() || args.tcp6.is_some() || args.udp4.is_some() || args.udp6.is_some(),
        "client: no target; give at least one of --tcp4/--tcp6/--udp4/--udp6"
    );
    let mut timings = Timings::default();
    let mut failed = false;

    let mut run_tcp = |target: Option<SocketAddr>, timings: &mut Timings| {
        target.map(|addr| {
            let stats = tcp_client(addr, args.connects, args.exchanges, timings);
            failed |= stats.connects_failed > 0 || stats.exchanges < args.exchanges;
            stats
        })
    };
    let tcp4 = run_tcp(args.tcp4, &mut timings);
    let tcp6 = run_tcp(args.tcp6, &mut timings);

    let mut run_udp = |target: Option<SocketAddr>, timings: &mut Timings| {
        target
            .map(|addr| -> Result<UdpClientStats> {
                let stats = udp_client(addr, args.sends, args.exchanges, timings)?;
                failed |= stats.sends_failed > 0 || stats.exchanges < args.exchanges;
                Ok(stats)
            })
            .transpose()
    };
    let udp4 = run_udp(args.udp4, &mut timings)?;
    let udp6 = run_udp(args.udp6, &mut timings)?;

    print_json(&ClientSummary {
        tcp4,
        tcp6,
        udp4,
        udp6,
        exchange_ms: ExchangeMs {
            min: timings.min.map(ms),
            max: timings.max.map(ms),
        },
    })?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `connects` connect+close cycles, then `exchanges` timed echoes on one extra
/// connection. Connects are plain blocking `connect()` calls, bounded by the
/// kernel's SYN retries.
fn tcp_client(
    addr: SocketAddr,
    connects: u64,
    exchanges: u64,
    timings: &mut Timings,
) -> TcpClientStats {
    let mut stats = TcpClientStats {
        connects_ok: 0,
        connects_failed: 0,
        exchanges: 0,
    };
    for _ in 0..connects {
        match TcpStream::connect(addr) {
            Ok(stream) => {
                stats.connects_ok += 1;
                drop(stream);
            }
            Err(e) => {
                stats.connects_failed += 1;
                eprintln!("netagent-testgen: connect {addr}: {e}");
            }
        }
    }
    if exchanges > 0 {
        match tcp_exchanges(addr, exchanges, timings) {
            Ok(n) => stats.exchanges = n,
            Err((n, e)) => {
                stats.exchanges = n;
                eprintln!("netagent-testgen: TCP exchange with {addr}: {e:#}");
            }
        }
    }
    stats
}

/// A request whose content identifies the exchange, so stale or foreign replies
/// are recognised.
fn exchange_payload(seq: u64) -> [u8; EXCHANGE_LEN] {
    let mut p = [b'x'; EXCHANGE_LEN];
    p[..8].copy_from_slice(b"ntgen-xc");
    p[8..16].copy_from_slice(&seq.to_be_bytes());
    p[16..20].copy_from_slice(&std::process::id().to_be_bytes());
    p
}

/// Returns the number of completed exchanges, plus the error that stopped them.
fn tcp_exchanges(
    addr: SocketAddr,
    count: u64,
    timings: &mut Timings,
) -> Result<u64, (u64, anyhow::Error)> {
    let mut stream = TcpStream::connect(addr)
        .with_context(|| format!("connecting to {addr}"))
        .map_err(|e| (0, e))?;
    let setup = || -> io::Result<()> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))
    };
    setup().context("configuring socket").map_err(|e| (0, e))?;
    let mut reply = [0u8; EXCHANGE_LEN];
    for seq in 0..count {
        let request = exchange_payload(seq);
        let start = Instant::now();
        let result = stream
            .write_all(&request)
            .context("writing request")
            // read_exact loops until the whole echo arrived (it may come in pieces).
            .and_then(|()| stream.read_exact(&mut reply).context("reading echo"))
            .and_then(|()| {
                ensure!(reply == request, "echo does not match request");
                Ok(())
            });
        if let Err(e) = result {
            return Err((seq, e));
        }
        timings.record(start.elapsed());
    }
    Ok(count)
}

fn unspecified_like(addr: SocketAddr) -> SocketAddr {
    if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    }
}

fn udp_client(
    addr: SocketAddr,
    sends: u64,
    exchanges: u64,
    timings: &mut Timings,
) -> Result<UdpClientStats> {
    let mut stats = UdpClientStats {
        sends_ok: 0,
        sends_failed: 0,
        exchanges: 0,
    };
    // One unconnected socket for all plain sends (sendto each time).
    let send_socket = UdpSocket::bind(unspecified_like(addr)).context("binding UDP send socket")?;
    let payload = *b"ntgen-send-datagram-0123456789ab";
    for _ in 0..sends {
        match send_socket.send_to(&payload, addr) {
            Ok(_) => stats.sends_ok += 1,
            Err(e) => {
                stats.sends_failed += 1;
                eprintln!("netagent-testgen: sendto {addr}: {e}");
            }
        }
    }

    // Exchanges use their own socket so echoes of the sends above cannot be
    // mistaken for replies.
    if exchanges > 0 {
        match udp_exchanges(addr, exchanges, timings) {
            Ok(n) => stats.exchanges = n,
            Err((n, e)) => {
                stats.exchanges = n;
                eprintln!("netagent-testgen: UDP exchange with {addr}: {e:#}");
            }
        }
    }

    // Drain whatever echoes already arrived, then close; late ones are discarded
    // by the kernel.
    if send_socket.set_nonblocking(true).is_ok() {
        let mut buf = [0u8; 2048];
        while send_socket.recv_from(&mut buf).is_ok() {}
    }
    drop(send_socket);
    Ok(stats)
}

fn udp_exchanges(
    addr: SocketAddr,
    count: u64,
    timings: &mut Timings,
) -> Result<u64, (u64, anyhow::Error)> {
    let socket = UdpSocket::bind(unspecified_like(addr))
        .context("binding UDP exchange socket")
        .map_err(|e| (0, e))?;
    let mut buf = [0u8; 2048];
    for seq in 0..count {
        let request = exchange_payload(seq);
        let start = Instant::now();
        let deadline = start + IO_TIMEOUT;
        if let Err(e) = socket.send_to(&request, addr) {
            return Err((seq, anyhow::Error::new(e).context("sendto")));
        }
        // Skip anything that is not this exchange's echo from the target
        // (e.g. a late echo of an earlier, timed-out exchange).
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err((seq, anyhow::anyhow!("no echo within {IO_TIMEOUT:?}")));
            }
            if let Err(e) = socket.set_read_timeout(Some(deadline - now)) {
                return Err((seq, anyhow::Error::new(e).context("setting read timeout")));
            }
            match socket.recv_from(&mut buf) {
                Ok((n, peer)) => {
                    let from_target = peer.ip() == addr.ip() && peer.port() == addr.port();
                    if from_target && buf[..n] == request {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The read timeout fired; the loop head reports it.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err((seq, anyhow::Error::new(e).context("recvfrom"))),
            }
        }
        timings.record(start.elapsed());
    }
    Ok(count)
}

// ---------------------------------------------------------------------------
// load

#[derive(Serialize)]
struct LoadSummary {
    attempts: u64,
    ok: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
    seconds: f64,
    rate: f64,
}

#[derive(Default)]
struct LoadCounters {
    /// Also the global round-robin index over targets.
    attempts: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl LoadCounters {
    fn fail(&self, name: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name)
            .or_default() += 1;
    }
}

fn load(args: LoadArgs) -> Result<ExitCode> {
    let duration = Duration::from_secs_f64(args.seconds);
    let targets: Arc<[SocketAddr]> = args.tcp.into();
    let counters = Arc::new(LoadCounters::default());
    // Each thread runs its own schedule at rate/threads, offset so that the
    // threads' attempts interleave evenly.
    let interval = Duration::from_secs_f64(args.threads as f64 / args.rate as f64);

    let start = Instant::now();
    let end = start + duration;
    let mut workers = Vec::new();
    for t in 0..args.threads {
        let targets = Arc::clone(&targets);
        let counters = Arc::clone(&counters);
        let first = start + interval.mul_f64(t as f64 / args.threads as f64);
        let worker = spawn_named(None, move || {
            load_worker(&targets, &counters, first, interval, end)
        })
        .context("spawning load thread")?;
        workers.push(worker);
    }

    // Hard stop: a connect stuck in SYN retransmission must not hold the run.
    let hard_stop = end + HARD_STOP_MARGIN;
    while !workers.iter().all(|w| w.is_finished()) && Instant::now() < hard_stop {
        thread::sleep(Duration::from_millis(10));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let all_done = workers.iter().all(|w| w.is_finished());
    if all_done {
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("load thread panicked"))?;
        }
    }

    let attempts = counters.attempts.load(Ordering::Relaxed);
    let ok = counters.ok.load(Ordering::Relaxed);
    let mut failed = counters.failed.load(Ordering::Relaxed);
    let mut errors = counters
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    // Connects still pending at the hard stop count as failures.
    let unfinished = attempts.saturating_sub(ok + failed);
    if unfinished > 0 {
        failed += unfinished;
        *errors.entry("unfinished".to_string()).or_default() += unfinished;
    }

    print_json(&LoadSummary {
        attempts,
        ok,
        failed,
        errors,
        seconds: elapsed,
        rate: if elapsed > 0.0 {
            attempts as f64 / elapsed
        } else {
            0.0
        },
    })?;
    // Threads still stuck in connect() are detached; returning from main ends
    // the process regardless.
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn load_worker(
    targets: &[SocketAddr],
    counters: &LoadCounters,
    first: Instant,
    interval: Duration,
    end: Instant,
) {
    let mut due = first;
    loop {
        let now = Instant::now();
        if due >= end || now >= end {
            return;
        }
        if due > now {
            thread::sleep(due - now);
        } else if now - due > MAX_LAG {
            // Behind schedule: the machine is too slow for the rate (then this
            // runs flat out) or a connect stalled (e.g. SYN retransmit); resume
            // from now rather than bursting to make up for lost time.
            due = now;
        }
        due += interval;

        let idx = counters.attempts.fetch_add(1, Ordering::Relaxed);
        let target = targets[(idx % targets.len() as u64) as usize];
        match TcpStream::connect(target) {
            Ok(stream) => match set_linger_zero(&stream) {
                Ok(()) => {
                    counters.ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => counters.fail(format!("SO_LINGER {}", errno_name(&e))),
            },
            Err(e) => counters.fail(errno_name(&e)),
        }
    }
}

// ---------------------------------------------------------------------------

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netagent-testgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    // Name the main thread before anything touches the network.
    let comm = COMM.get_or_init(|| cli.comm.clone());
    set_comm(comm).context("prctl(PR_SET_NAME)")?;
    match cli.command {
        Command::Serve(a) => serve(a),
        Command::Client(a) => client(a),
        Command::Load(a) => load(a),
    }
}
