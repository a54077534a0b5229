//! `hold`: opens a known number of TCP connections and keeps them open,
//! then acts on commands read from stdin, one per line, answering each with
//! one JSON line: `send BYTES` writes BYTES bytes on every connection,
//! `close` closes them all and exits. For tests of connections that are
//! older than the agent (opened before it starts, used and closed after).
//! Stdin's EOF or `--max-seconds` closes them too.

use std::io::{BufRead, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::cli::HoldArgs;
use crate::comm::spawn_named;
use crate::output::print_json;

pub fn hold(args: HoldArgs) -> Result<ExitCode> {
    let mut conns = Vec::new();
    for _ in 0..args.conns {
        let s = TcpStream::connect_timeout(&args.tcp, Duration::from_secs(5))
            .with_context(|| format!("connecting to {}", args.tcp))?;
        conns.push(s);
    }
    let ports: Vec<u16> = conns
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()).unwrap_or(0))
        .collect();
    // Bounded: a test that forgets us does not leave us running.
    let max = Duration::from_secs(args.max_seconds);
    spawn_named(Some(64 * 1024), move || {
        std::thread::sleep(max);
        std::process::exit(0);
    })
    .context("watchdog thread")?;
    print_json(&json!({ "pid": std::process::id(), "conns": conns.len(), "ports": ports }))?;
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("send"), Some(n)) => {
                let n: usize = n.parse().context("send BYTES")?;
                let buf = vec![b'x'; n];
                for s in &mut conns {
                    s.write_all(&buf).context("writing")?;
                }
                print_json(&json!({ "sent": n * conns.len() }))?;
            }
            (Some("close"), None) => break,
            _ => bail!("unknown command {line:?}: send BYTES | close"),
        }
    }
    let closed = conns.len();
    drop(conns);
    print_json(&json!({ "closed": closed }))?;
    Ok(ExitCode::SUCCESS)
}
