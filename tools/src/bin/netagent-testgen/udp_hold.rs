//! `udp-hold`: one connected UDP socket kept open, used on command (one
//! per stdin line), for tests of a socket that outlives its owner's name
//! (series expiry: the socket's owner is the comm of its first send).
//!
//! Output, one JSON line each: `{"pid":P}` once the socket is connected,
//! then per command `{"command":"…"}` when it is done. Commands:
//! * `send N` – send N datagrams of 32 bytes (replies are never read);
//! * `rename NAME` – rename every thread of the process (its comm): the
//!   name the socket was first used under is then gone.
//!
//! End of input exits 0; `--max-seconds` bounds the run.

use std::io::{self, BufRead};
use std::net::UdpSocket;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::cli::UdpHoldArgs;
use crate::comm::spawn_named;
use crate::output::print_json;

pub fn udp_hold(args: UdpHoldArgs) -> Result<ExitCode> {
    let max = Duration::from_secs(args.max_seconds);
    spawn_named(None, move || {
        std::thread::sleep(max);
        eprintln!("netagent-testgen: udp-hold: --max-seconds reached");
        std::process::exit(1);
    })
    .context("spawning the watchdog")?;
    let local = if args.udp.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(local).context("bind")?;
    sock.connect(args.udp).context("connect")?;
    print_json(&json!({"pid": std::process::id()}))?;
    for line in io::stdin().lock().lines() {
        let line = line.context("reading stdin")?;
        let command = line.trim();
        match command.split_whitespace().collect::<Vec<_>>().as_slice() {
            [] => continue,
            ["send", n] => {
                for _ in 0..n.parse::<u32>().context("send N")? {
                    sock.send(&[0x5a; 32]).context("send")?;
                }
            }
            ["rename", name] => rename_all(name)?,
            _ => bail!("udp-hold: unknown command {command:?}"),
        }
        print_json(&json!({"command": command}))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `name` to every thread's comm (the watchdog's too).
fn rename_all(name: &str) -> Result<()> {
    for t in std::fs::read_dir("/proc/self/task").context("/proc/self/task")? {
        let path = t?.path().join("comm");
        std::fs::write(&path, name).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
