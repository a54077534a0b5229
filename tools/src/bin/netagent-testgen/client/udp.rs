//! The UDP side of `client`: `--sends` datagrams and exchanges.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use anyhow::{Context, Result};

use super::{exchange_payload, Timings, IO_TIMEOUT, SEND_PAYLOAD};
use crate::cli::ClientArgs;
use crate::output::UdpClientStats;
use crate::sock::{SocketOpts, BUF_SIZE};

pub fn udp_client(
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
