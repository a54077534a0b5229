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
//!   `--sink` discards instead of echoing; `--abort` resets every TCP connection.
//! * `client` – a known number of TCP connects, UDP datagrams, bulk transfers and
//!   timed request/response exchanges; prints one JSON summary line.
//! * `load`   – paced TCP connection churn (SO_LINGER 0, so no TIME_WAIT) for
//!   benchmarks; prints one JSON summary line.
//! * `spin`, `diskio`, `alloc` – CPU, synchronous disk I/O and memory load for
//!   the node-signal tests (delay accounting, OOM kills); each prints a JSON
//!   line when ready and one when done.
//!
//! Traffic only goes to addresses given on the command line (servers bind to
//! loopback by default), and every loop is bounded by a count and/or a deadline.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
/// Write size of `client --bulk`.
const BULK_CHUNK: usize = 64 * 1024;
/// How often the `--bulk` reader looks whether the writer has finished.
const BULK_POLL: Duration = Duration::from_millis(200);
/// Payload of each `client --sends` datagram; `--size` repeats or cuts it.
const SEND_PAYLOAD: &[u8; 32] = b"ntgen-send-datagram-0123456789ab";
/// Largest UDP payload `--size` accepts (the IPv4 limit; also fine for IPv6).
const MAX_UDP_PAYLOAD: u16 = 65_507;

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
    /// Burn CPU (optionally pinned to one core) for a while: delay accounting tests.
    Spin(SpinArgs),
    /// Synchronous disk I/O (O_DIRECT) on a file for a while: delay accounting tests.
    Diskio(DiskioArgs),
    /// Allocate and touch memory, then hold it: OOM tests.
    Alloc(AllocArgs),
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
    /// Discard instead of echoing: TCP connections are read until EOF, UDP
    /// datagrams are dropped. Nothing is sent back.
    #[arg(long, conflicts_with = "abort")]
    sink: bool,
    /// Close every accepted TCP connection at once with SO_LINGER {on, 0}, which
    /// sends RST (UDP still echoes). The count goes to stderr at `--max-seconds`.
    #[arg(long)]
    abort: bool,
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
    /// Payload bytes of each `--sends` datagram.
    #[arg(long, value_name = "S", default_value_t = SEND_PAYLOAD.len() as u16,
          value_parser = clap::value_parser!(u16).range(..=MAX_UDP_PAYLOAD as i64))]
    size: u16,
    /// Per TCP target, one more connection that writes exactly BYTES bytes, shuts
    /// down its write side and waits until the server closes (anything the server
    /// sends meanwhile is read and discarded).
    #[arg(long, value_name = "BYTES")]
    bulk: Option<u64>,
    /// Set TCP_SYNCNT on TCP sockets before connect: SYN retransmissions before
    /// connect() gives up with ETIMEDOUT (1 = about 3 s).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=127))]
    syn_retries: Option<u8>,
    /// After each `--connects` connect, read until the peer closes the connection;
    /// a reset counts in `resets`, a normal close in `eofs` (no close within 5 s
    /// counts in `wait_failed`).
    #[arg(long)]
    wait_reset: bool,
    /// Report TCP_INFO's smoothed RTT of the `--exchanges` connection, read just
    /// before closing it, as `tcpi_rtt_us`.
    #[arg(long)]
    tcp_info: bool,
    /// Source address for TCP and UDP sockets (repeatable: at most one IPv4 and
    /// one IPv6 address; each applies to targets of its family).
    #[arg(long, value_name = "ADDR")]
    bind: Vec<IpAddr>,
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
    /// Spread each IPv4 target over this many consecutive addresses
    /// (127.1.0.0 with 50000 covers 127.1.0.0 .. 127.1.195.79), for many
    /// distinct peers; the server should listen on 0.0.0.0.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=16_000_000))]
    spread: u32,
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

/// Symbolic name for an errno, for the `load` and `client` error maps.
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

/// What the TCP server does with an accepted connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TcpMode {
    /// Echo every read back (after the delay).
    Echo,
    /// Read until EOF and discard.
    Sink,
    /// Close at once with RST.
    Abort,
}

/// Connections closed by `serve --abort`.
static ABORTED: AtomicU64 = AtomicU64::new(0);

fn serve(args: ServeArgs) -> Result<ExitCode> {
    ensure!(
        args.tcp4.is_some() || args.tcp6.is_some() || args.udp4.is_some() || args.udp6.is_some(),
        "serve: nothing to serve; give at least one of --tcp4/--tcp6/--udp4/--udp6"
    );
    let delay = Duration::from_millis(args.delay_ms);
    let mode = if args.abort {
        TcpMode::Abort
    } else if args.sink {
        TcpMode::Sink
    } else {
        TcpMode::Echo
    };
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
        spawn_named(None, move || accept_loop(listener, delay, mode))
            .context("spawning accept thread")?;
    }
    for socket in [udp4, udp6].into_iter().flatten() {
        if args.sink {
            spawn_named(None, move || udp_sink(socket)).context("spawning UDP thread")?;
        } else {
            start_udp_echo(socket, delay)?;
        }
    }

    print_json(&ready)?;

    // Serving threads block forever; the process ends here (or when killed).
    thread::sleep(Duration::from_secs(args.max_seconds));
    if mode == TcpMode::Abort {
        eprintln!(
            "netagent-testgen: aborted {} TCP connections",
            ABORTED.load(Ordering::Relaxed)
        );
    }
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
    /// Discard instead of echoing (`serve --sink`).
    sink: bool,
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
            if self.sink {
                sink_tcp(stream, &mut buf);
            } else {
                echo_tcp(stream, &mut buf, self.delay);
            }
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

fn accept_loop(listener: TcpListener, delay: Duration, mode: TcpMode) {
    let pool = Arc::new(EchoPool {
        state: Mutex::new(PoolState {
            queue: VecDeque::new(),
            idle: 0,
        }),
        ready: Condvar::new(),
        delay,
        sink: mode == TcpMode::Sink,
    });
    loop {
        match listener.accept() {
            Ok((stream, _)) if mode == TcpMode::Abort => abort_tcp(stream),
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

/// Reads until EOF (or an error such as a reset) and drops the data.
fn sink_tcp(mut stream: TcpStream, buf: &mut [u8]) {
    loop {
        match stream.read(buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Closes with RST (`serve --abort`).
fn abort_tcp(stream: TcpStream) {
    match set_linger_zero(&stream) {
        Ok(()) => {
            ABORTED.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => eprintln!("netagent-testgen: SO_LINGER on accepted connection: {e}"),
    }
    drop(stream);
}

fn udp_sink(socket: UdpSocket) {
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        // Errors (e.g. ICMP-reported ones) concern one peer; keep serving.
        let _ = socket.recv_from(&mut buf);
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
    /// Payload bytes written to this target: `--bulk` plus exchange requests.
    bytes_sent: u64,
    /// Failed connect() calls to this target by errno name: the `--connects`
    /// loop (also counted in `connects_failed`), the `--bulk` connection and
    /// the `--exchanges` connection.
    connect_errors: BTreeMap<String, u64>,
    /// `--wait-reset`: connections the peer closed with RST.
    resets: u64,
    /// `--wait-reset`: connections the peer closed normally (FIN).
    #[serde(skip_serializing_if = "Option::is_none")]
    eofs: Option<u64>,
    /// `--wait-reset`: connections not closed by the peer in time, or another
    /// read error.
    #[serde(skip_serializing_if = "Option::is_none")]
    wait_failed: Option<u64>,
    /// `--tcp-info`: smoothed RTT of the exchange connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    tcpi_rtt_us: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The `--bulk` connection's `tcpi_total_retrans`, read once the server
    /// has closed (our FIN acknowledged: nothing more can be retransmitted).
    bulk_total_retrans: Option<u32>,
}

#[derive(Serialize)]
struct UdpClientStats {
    sends_ok: u64,
    sends_failed: u64,
    exchanges: u64,
    /// Payload bytes sent to this target: `--sends` datagrams plus exchange requests.
    bytes_sent: u64,
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

/// How client sockets are set up before connect/send.
#[derive(Clone, Copy, Default)]
struct SocketOpts {
    syn_retries: Option<u8>,
    bind4: Option<Ipv4Addr>,
    bind6: Option<Ipv6Addr>,
}

impl SocketOpts {
    fn from_args(args: &ClientArgs) -> Result<Self> {
        let mut opts = SocketOpts {
            syn_retries: args.syn_retries,
            ..SocketOpts::default()
        };
        for ip in &args.bind {
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
    fn source(&self, target: SocketAddr) -> Option<IpAddr> {
        match target {
            SocketAddr::V4(_) => self.bind4.map(IpAddr::V4),
            SocketAddr::V6(_) => self.bind6.map(IpAddr::V6),
        }
    }

    /// Local address for a UDP socket talking to `target`.
    fn udp_local(&self, target: SocketAddr) -> SocketAddr {
        match self.source(target) {
            Some(ip) => SocketAddr::new(ip, 0),
            None => unspecified_like(target),
        }
    }
}

fn client(args: ClientArgs) -> Result<ExitCode> {
    ensure!(
        args.tcp4.is_some() || args.tcp6.is_some() || args.udp4.is_some() || args.udp6.is_some(),
        "client: no target; give at least one of --tcp4/--tcp6/--udp4/--udp6"
    );
    ensure!(
        !args.tcp_info || args.exchanges > 0,
        "client: --tcp-info reads the exchange connection; give --exchanges too"
    );
    let opts = SocketOpts::from_args(&args)?;
    let mut timings = Timings::default();
    let mut failed = false;

    let mut run_tcp = |target: Option<SocketAddr>, timings: &mut Timings| {
        target.map(|addr| {
            let (stats, ok) = tcp_client(addr, &args, &opts, timings);
            failed |= !ok;
            stats
        })
    };
    let tcp4 = run_tcp(args.tcp4, &mut timings);
    let tcp6 = run_tcp(args.tcp6, &mut timings);

    let mut run_udp = |target: Option<SocketAddr>, timings: &mut Timings| {
        target
            .map(|addr| -> Result<UdpClientStats> {
                let stats = udp_client(addr, &args, &opts, timings)?;
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
fn tcp_connect(addr: SocketAddr, opts: &SocketOpts) -> io::Result<TcpStream> {
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
fn tcp_rtt_us(stream: &TcpStream) -> io::Result<u32> {
    let end = std::mem::offset_of!(libc::tcp_info, tcpi_rtt) + std::mem::size_of::<u32>();
    tcp_info_field(stream, end, "tcpi_rtt", |i| i.tcpi_rtt)
}

/// Segments the kernel retransmitted on this connection (TCP_INFO).
fn tcp_total_retrans(stream: &TcpStream) -> io::Result<u32> {
    let end = std::mem::offset_of!(libc::tcp_info, tcpi_total_retrans) + std::mem::size_of::<u32>();
    tcp_info_field(stream, end, "tcpi_total_retrans", |i| i.tcpi_total_retrans)
}

/// Per-target TCP work: `--connects` connect(+wait)+close cycles, the `--bulk`
/// transfer, then `--exchanges` timed echoes on one extra connection. Connects
/// are plain blocking `connect()` calls, bounded by the SYN retries. Returns the
/// stats and whether everything asked for succeeded.
fn tcp_client(
    addr: SocketAddr,
    args: &ClientArgs,
    opts: &SocketOpts,
    timings: &mut Timings,
) -> (TcpClientStats, bool) {
    let mut stats = TcpClientStats {
        connects_ok: 0,
        connects_failed: 0,
        exchanges: 0,
        bytes_sent: 0,
        connect_errors: BTreeMap::new(),
        resets: 0,
        eofs: args.wait_reset.then_some(0),
        wait_failed: args.wait_reset.then_some(0),
        tcpi_rtt_us: None,
        bulk_total_retrans: None,
    };
    let mut ok = true;
    let connect = |stats: &mut TcpClientStats| {
        tcp_connect(addr, opts).inspect_err(|e| {
            *stats.connect_errors.entry(errno_name(e)).or_default() += 1;
            eprintln!("netagent-testgen: connect {addr}: {e}");
        })
    };

    for _ in 0..args.connects {
        match connect(&mut stats) {
            Ok(stream) => {
                stats.connects_ok += 1;
                if args.wait_reset {
                    match wait_peer_close(&stream) {
                        Ok(PeerClose::Reset) => stats.resets += 1,
                        Ok(PeerClose::Eof) => *stats.eofs.get_or_insert(0) += 1,
                        Err(e) => {
                            *stats.wait_failed.get_or_insert(0) += 1;
                            ok = false;
                            eprintln!("netagent-testgen: waiting for {addr} to close: {e:#}");
                        }
                    }
                }
                drop(stream);
            }
            Err(_) => {
                stats.connects_failed += 1;
                ok = false;
            }
        }
    }

    if let Some(bytes) = args.bulk {
        match connect(&mut stats) {
            Ok(stream) => {
                let (sent, result) = tcp_bulk(&stream, bytes);
                stats.bytes_sent += sent;
                match result.and_then(|()| Ok(tcp_total_retrans(&stream)?)) {
                    Ok(n) => stats.bulk_total_retrans = Some(n),
                    Err(e) => {
                        ok = false;
                        eprintln!("netagent-testgen: bulk transfer to {addr} ({sent} of {bytes} bytes sent): {e:#}");
                    }
                }
            }
            Err(_) => ok = false,
        }
    }

    if args.exchanges > 0 {
        if let Ok(mut stream) = connect(&mut stats) {
            match tcp_exchanges(&mut stream, args.exchanges, timings, &mut stats.bytes_sent) {
                Ok(n) => stats.exchanges = n,
                Err((n, e)) => {
                    stats.exchanges = n;
                    eprintln!("netagent-testgen: TCP exchange with {addr}: {e:#}");
                }
            }
            if args.tcp_info {
                match tcp_rtt_us(&stream) {
                    Ok(rtt) => stats.tcpi_rtt_us = Some(rtt),
                    Err(e) => {
                        ok = false;
                        eprintln!("netagent-testgen: TCP_INFO on {addr}: {e}");
                    }
                }
            }
        }
        ok &= stats.exchanges == args.exchanges;
    }
    (stats, ok)
}

/// How the peer ended a connection.
enum PeerClose {
    Eof,
    Reset,
}

/// Reads (and discards) until the peer closes; bounded by [`IO_TIMEOUT`].
fn wait_peer_close(mut stream: &TcpStream) -> Result<PeerClose> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        ensure!(now < deadline, "peer did not close within {IO_TIMEOUT:?}");
        stream
            .set_read_timeout(Some(deadline - now))
            .context("setting read timeout")?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(PeerClose::Eof),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => return Ok(PeerClose::Reset),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The read timeout fired; the loop head reports it.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("reading")),
        }
    }
}

/// Sets a flag when dropped, also when unwinding.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Writes exactly `bytes` bytes, shuts down the write side and waits until the
/// server closes. A second thread reads (and discards) meanwhile, so an echoing
/// server cannot block the transfer. Returns the bytes written, and the error
/// that stopped the transfer.
fn tcp_bulk(stream: &TcpStream, bytes: u64) -> (u64, Result<()>) {
    let setup = || -> io::Result<TcpStream> {
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_read_timeout(Some(BULK_POLL))?;
        stream.try_clone()
    };
    let reader = match setup() {
        Ok(r) => r,
        Err(e) => return (0, Err(anyhow::Error::new(e).context("configuring socket"))),
    };
    let writer_done = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&writer_done);
    let drain = match spawn_named(None, move || drain_until_close(reader, &done)) {
        Ok(h) => h,
        Err(e) => {
            return (
                0,
                Err(anyhow::Error::new(e).context("spawning reader thread")),
            )
        }
    };

    let mut sent = 0u64;
    let written = {
        let _done = SetOnDrop(&writer_done);
        let chunk: Vec<u8> = SEND_PAYLOAD
            .iter()
            .copied()
            .cycle()
            .take(BULK_CHUNK)
            .collect();
        let mut w = stream;
        let mut result = Ok(());
        while sent < bytes {
            let n = (bytes - sent).min(BULK_CHUNK as u64) as usize;
            match w.write(&chunk[..n]) {
                Ok(0) => {
                    result = Err(anyhow::anyhow!("write returned 0"));
                    break;
                }
                Ok(n) => sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(anyhow::Error::new(e).context("writing"));
                    break;
                }
            }
        }
        result.and_then(|()| {
            stream
                .shutdown(std::net::Shutdown::Write)
                .context("shutting down the write side")
        })
    };
    let drained = drain
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("reader thread panicked")));
    (sent, written.and(drained))
}

/// Reads and discards until EOF; fails on a read error, or when the peer has
/// not closed [`IO_TIMEOUT`] after `writer_done` was set.
fn drain_until_close(mut stream: TcpStream, writer_done: &AtomicBool) -> Result<()> {
    let mut buf = vec![0u8; BUF_SIZE];
    let mut deadline: Option<Instant> = None;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(anyhow::Error::new(e).context("reading until the server closes")),
        }
        // Each read waits at most BULK_POLL, so this runs at least that often.
        if writer_done.load(Ordering::Acquire) {
            let d = *deadline.get_or_insert_with(|| Instant::now() + IO_TIMEOUT);
            ensure!(
                Instant::now() < d,
                "server did not close within {IO_TIMEOUT:?} after the transfer"
            );
        }
    }
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
    stream: &mut TcpStream,
    count: u64,
    timings: &mut Timings,
    bytes_sent: &mut u64,
) -> Result<u64, (u64, anyhow::Error)> {
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
            .inspect(|()| *bytes_sent += EXCHANGE_LEN as u64)
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
    args: &ClientArgs,
    opts: &SocketOpts,
    timings: &mut Timings,
) -> Result<UdpClientStats> {
    let mut stats = UdpClientStats {
        sends_ok: 0,
        sends_failed: 0,
        exchanges: 0,
        bytes_sent: 0,
    };
    let local = opts.udp_local(addr);
    // One unconnected socket for all plain sends (sendto each time).
    let send_socket =
        UdpSocket::bind(local).with_context(|| format!("binding UDP send socket to {local}"))?;
    let payload: Vec<u8> = SEND_PAYLOAD
        .iter()
        .copied()
        .cycle()
        .take(args.size.into())
        .collect();
    for _ in 0..args.sends {
        match send_socket.send_to(&payload, addr) {
            Ok(n) => {
                stats.sends_ok += 1;
                stats.bytes_sent += n as u64;
            }
            Err(e) => {
                stats.sends_failed += 1;
                eprintln!("netagent-testgen: sendto {addr}: {e}");
            }
        }
    }

    // Exchanges use their own socket so echoes of the sends above cannot be
    // mistaken for replies.
    if args.exchanges > 0 {
        match udp_exchanges(addr, local, args.exchanges, timings, &mut stats.bytes_sent) {
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
        let mut buf = vec![0u8; BUF_SIZE];
        while send_socket.recv_from(&mut buf).is_ok() {}
    }
    drop(send_socket);
    Ok(stats)
}

fn udp_exchanges(
    addr: SocketAddr,
    local: SocketAddr,
    count: u64,
    timings: &mut Timings,
    bytes_sent: &mut u64,
) -> Result<u64, (u64, anyhow::Error)> {
    let socket = UdpSocket::bind(local)
        .with_context(|| format!("binding UDP exchange socket to {local}"))
        .map_err(|e| (0, e))?;
    let mut buf = [0u8; 2048];
    for seq in 0..count {
        let request = exchange_payload(seq);
        let start = Instant::now();
        let deadline = start + IO_TIMEOUT;
        match socket.send_to(&request, addr) {
            Ok(n) => *bytes_sent += n as u64,
            Err(e) => return Err((seq, anyhow::Error::new(e).context("sendto"))),
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
    let targets: Arc<[SocketAddr]> = args
        .tcp
        .iter()
        .flat_map(|t| {
            (0..args.spread).map(move |k| match t {
                SocketAddr::V4(v4) => SocketAddr::from((
                    std::net::Ipv4Addr::from(u32::from(*v4.ip()).wrapping_add(k)),
                    v4.port(),
                )),
                other => *other,
            })
        })
        .collect();
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
// spin, diskio, alloc: node-signal load

/// Options shared by the node-signal subcommands.
#[derive(Args)]
struct Placement {
    /// Join this cgroup (write our pid to DIR/cgroup.procs) before starting;
    /// repeatable, e.g. one v1 memory cgroup and one v2 cgroup.
    #[arg(long = "cgroup", value_name = "DIR")]
    cgroups: Vec<std::path::PathBuf>,
    /// Pin to this CPU (sched_setaffinity) before starting.
    #[arg(long, value_name = "N")]
    cpu: Option<usize>,
}

impl Placement {
    fn apply(&self) -> Result<()> {
        for dir in &self.cgroups {
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, std::process::id().to_string())
                .with_context(|| format!("joining {}", procs.display()))?;
        }
        if let Some(cpu) = self.cpu {
            ensure!(cpu < libc::CPU_SETSIZE as usize, "--cpu {cpu} out of range");
            // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
            // sched_setaffinity only touch the set we pass.
            let rc = unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
            };
            ensure!(
                rc == 0,
                "sched_setaffinity to CPU {cpu}: {}",
                io::Error::last_os_error()
            );
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Ready {
    pid: u32,
}

#[derive(Args)]
struct SpinArgs {
    #[command(flatten)]
    place: Placement,
    /// Spin for this many seconds, then exit.
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    seconds: f64,
}

fn spin(args: SpinArgs) -> Result<ExitCode> {
    args.place.apply()?;
    print_json(&Ready {
        pid: std::process::id(),
    })?;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(args.seconds);
    let mut x: u64 = 1;
    while Instant::now() < until {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    #[derive(Serialize)]
    struct Done {
        pid: u32,
        spun_ms: f64,
    }
    print_json(&Done {
        pid: std::process::id(),
        spun_ms: ms(start.elapsed()),
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
struct DiskioArgs {
    #[command(flatten)]
    place: Placement,
    /// File to write and read back (on a real disk: O_DIRECT bypasses the
    /// page cache, tmpfs refuses it). Removed at the end.
    #[arg(long, value_name = "PATH")]
    file: std::path::PathBuf,
    /// File size in MiB.
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    mib: u64,
    /// Keep reading the file back (O_DIRECT) for this many seconds.
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    seconds: f64,
    /// After the I/O, print the summary and sleep this long before exiting
    /// (so a test can read the finished process's counters).
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    hold_seconds: f64,
}

/// Block size of `diskio`: a multiple of any logical block size.
const DISKIO_BLOCK: usize = 64 * 1024;

/// A heap buffer aligned for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len, 4096).expect("layout");
        // SAFETY: non-zero size; checked for null below.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Self { ptr, layout }
    }
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() bytes and owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `new`.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

fn diskio(args: DiskioArgs) -> Result<ExitCode> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    args.place.apply()?;
    print_json(&Ready {
        pid: std::process::id(),
    })?;
    /// Removes the file however we leave.
    struct Remove<'a>(&'a std::path::Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(&args.file)
        .with_context(|| format!("opening {} with O_DIRECT", args.file.display()))?;
    let _remove = Remove(&args.file);
    let mut buf = AlignedBuf::new(DISKIO_BLOCK);
    buf.as_mut().fill(0x5a);
    let blocks = args.mib * 1024 * 1024 / DISKIO_BLOCK as u64;
    for i in 0..blocks {
        file.write_all_at(buf.as_mut(), i * DISKIO_BLOCK as u64)
            .context("O_DIRECT write")?;
    }
    let until = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut reads = 0u64;
    'outer: loop {
        for i in 0..blocks {
            if Instant::now() >= until {
                break 'outer;
            }
            file.read_exact_at(buf.as_mut(), i * DISKIO_BLOCK as u64)
                .context("O_DIRECT read")?;
            reads += 1;
        }
    }
    #[derive(Serialize)]
    struct Done {
        pid: u32,
        writes: u64,
        reads: u64,
    }
    print_json(&Done {
        pid: std::process::id(),
        writes: blocks,
        reads,
    })?;
    thread::sleep(Duration::from_secs_f64(args.hold_seconds.clamp(0.0, 600.0)));
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
struct AllocArgs {
    #[command(flatten)]
    place: Placement,
    /// Allocate and touch this many MiB, 1 MiB at a time.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=65536))]
    mib: u64,
    /// Write this to /proc/self/oom_score_adj first (-1000 … 1000).
    #[arg(long, value_name = "V", allow_hyphen_values = true,
          value_parser = clap::value_parser!(i32).range(-1000..=1000))]
    oom_score_adj: Option<i32>,
    /// Once everything is allocated, print a JSON line and hold the memory
    /// this many seconds before exiting.
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    hold_seconds: f64,
}

fn alloc(args: AllocArgs) -> Result<ExitCode> {
    if let Some(adj) = args.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .context("writing /proc/self/oom_score_adj")?;
    }
    args.place.apply()?;
    print_json(&Ready {
        pid: std::process::id(),
    })?;
    const MIB: usize = 1024 * 1024;
    // Non-zero fill: every page is written, so every page is charged.
    let held: Vec<Vec<u8>> = (0..args.mib).map(|_| vec![0xa5u8; MIB]).collect();
    #[derive(Serialize)]
    struct Allocated {
        pid: u32,
        allocated_mib: usize,
    }
    print_json(&Allocated {
        pid: std::process::id(),
        allocated_mib: held.len(),
    })?;
    thread::sleep(Duration::from_secs_f64(args.hold_seconds.clamp(0.0, 600.0)));
    std::hint::black_box(&held);
    Ok(ExitCode::SUCCESS)
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
        Command::Spin(a) => spin(a),
        Command::Diskio(a) => diskio(a),
        Command::Alloc(a) => alloc(a),
    }
}
