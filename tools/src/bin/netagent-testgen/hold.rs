//! `hold`: TCP connections held open and idle, then used or closed when the
//! test says so (one command per stdin line): idle-connection and reset
//! tests.
//!
//! Output, one JSON line each: `{"held":N,"pid":P}` once every connection
//! is established, then per command `{"command":"…","connections":N}`
//! when it is done. Commands:
//! * `exchange` – on every connection, send 32 bytes and read the echo
//!   (the server must echo: `serve` without `--sink`/`--abort`);
//! * `send BYTES` – on every connection, write BYTES bytes (nothing is
//!   read: the server may be a sink); its line adds `"sent"`, the total;
//! * `unread-close` – on every connection, send 32 bytes, wait until the
//!   echo has arrived, and close without reading it: the kernel resets
//!   the connection (unread data is discarded);
//! * `close` – close every connection normally.
//!
//! End of input closes what is still open and exits 0; `--max-seconds`
//! bounds the run.

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::cli::HoldArgs;
use crate::comm::spawn_named;
use crate::output::print_json;
use crate::sock::{tcp_connect, SocketOpts};

/// Bytes sent per connection by `exchange` and `unread-close`.
const PAYLOAD: &[u8; 32] = b"ntgen-hold-0123456789abcdefghijk";
/// How long one read or poll may wait.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Serialize)]
struct Held {
    held: usize,
    pid: u32,
}

#[derive(Serialize)]
struct Done<'a> {
    command: &'a str,
    connections: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent: Option<u64>,
}

pub fn hold(args: HoldArgs) -> Result<ExitCode> {
    let opts = SocketOpts::new(None, &args.bind)?;
    let max = Duration::from_secs(args.max_seconds);
    // The bound holds even while a command blocks.
    spawn_named(None, move || {
        std::thread::sleep(max);
        eprintln!("netagent-testgen: hold: --max-seconds reached");
        std::process::exit(1);
    })
    .context("spawning the watchdog")?;
    let mut conns = Vec::with_capacity(args.connections as usize);
    for _ in 0..args.connections {
        let s = tcp_connect(args.tcp, &opts).with_context(|| format!("connect {}", args.tcp))?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        conns.push(s);
    }
    print_json(&Held {
        held: conns.len(),
        pid: std::process::id(),
    })?;
    for line in io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        let command = line.trim();
        if command.is_empty() {
            continue;
        }
        let n = conns.len();
        let mut sent = None;
        match command.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["exchange"] => {
                for s in &mut conns {
                    exchange(s)?;
                }
            }
            ["send", bytes] => {
                let bytes: usize = bytes.parse().context("send BYTES")?;
                let buf = vec![b'x'; bytes];
                for s in &mut conns {
                    s.write_all(&buf).context("send")?;
                }
                sent = Some((bytes * n) as u64);
            }
            ["unread-close"] => {
                for s in conns.drain(..) {
                    (&s).write_all(PAYLOAD).context("send")?;
                    wait_readable(&s)?;
                    drop(s);
                }
            }
            ["close"] => conns.clear(),
            _ => bail!("hold: unknown command {command:?}"),
        }
        print_json(&Done {
            command,
            connections: n,
            sent,
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends the payload and reads its echo.
fn exchange(s: &mut TcpStream) -> Result<()> {
    s.write_all(PAYLOAD).context("send")?;
    let mut buf = [0u8; PAYLOAD.len()];
    s.read_exact(&mut buf).context("read the echo")?;
    ensure!(&buf == PAYLOAD, "the echo differs from what was sent");
    Ok(())
}

/// Until data can be read (the echo arrived), bounded by [`IO_TIMEOUT`].
fn wait_readable(s: &TcpStream) -> Result<()> {
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, IO_TIMEOUT.as_millis() as libc::c_int) };
    ensure!(n == 1, "no echo within {IO_TIMEOUT:?} ({n})");
    Ok(())
}
