//! `serve`: TCP and UDP echo (or sink, or abort) servers.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::cli::ServeArgs;
use crate::comm::spawn_named;
use crate::output::{print_json, ServeReady};
use crate::sock::{set_linger_zero, BUF_SIZE};

/// Accept queue length for TCP listeners; enough for >10k connects/s.
const LISTEN_BACKLOG: libc::c_int = 4096;
/// Stack for TCP echo threads: they only hold a heap buffer.
const HANDLER_STACK: usize = 128 * 1024;
/// Datagrams waiting for a delayed echo, per UDP socket (bounds memory).
const UDP_ECHO_QUEUE: usize = 1024;
/// An idle pooled TCP echo thread exits after this long without a connection.
const WORKER_IDLE: Duration = Duration::from_secs(2);

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

pub fn serve(args: ServeArgs) -> Result<ExitCode> {
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
