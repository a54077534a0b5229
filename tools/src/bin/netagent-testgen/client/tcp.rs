//! The TCP side of `client`: connects, `--wait-reset`, `--bulk`, exchanges.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use super::{exchange_payload, Timings, EXCHANGE_LEN, IO_TIMEOUT, SEND_PAYLOAD};
use crate::cli::ClientArgs;
use crate::comm::spawn_named;
use crate::output::TcpClientStats;
use crate::sock::{errno_name, tcp_connect, tcp_rtt_us, tcp_total_retrans, SocketOpts, BUF_SIZE};

/// Write size of `client --bulk`.
const BULK_CHUNK: usize = 64 * 1024;
/// How often the `--bulk` reader looks whether the writer has finished.
const BULK_POLL: Duration = Duration::from_millis(200);

/// Per-target TCP work: `--connects` connect(+wait)+close cycles, the `--bulk`
/// transfer, then `--exchanges` timed echoes on one extra connection. Connects
/// are plain blocking `connect()` calls, bounded by the SYN retries. Returns the
/// stats and whether everything asked for succeeded.
pub fn tcp_client(
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
                // Read once the close handshake is over: the agent samples
                // srtt when the socket reaches CLOSE, after our FIN's ACK
                // added an RTT sample; read before it, the two differ by
                // that sample on a loaded machine.
                let closed = stream
                    .shutdown(std::net::Shutdown::Write)
                    .context("shutting down the write side")
                    .and_then(|()| wait_peer_close(&stream));
                match closed.and_then(|_| Ok(tcp_rtt_us(&stream)?)) {
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
