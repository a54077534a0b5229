//! The scenario's idle connections and resets by reason, on every kernel
//! (and so with every message hook and state mode the matrix forces): a
//! few connections held idle past `tcp.idle_after_seconds`, then used; and
//! resets sent by a SO_LINGER 0 server, counted with the reason the kernel
//! gives (Linux 6.10+; `unknown` before) and received as `unknown`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::procs::{self, Server};
use crate::report::Report;
use crate::scenario::{ACCEPT_COMM, ACCEPT_LABEL, CLIENT_COMM, CLIENT_LABEL};
use crate::scrape::{self, Metrics};

/// `tcp.idle_after_seconds` of the scenario's config.
pub(crate) const IDLE_AFTER_SECONDS: u64 = 2;
/// Connections held idle, and resets the aborting server sends.
const IDLE_CONNECTIONS: u64 = 3;
const RESETS: u64 = 4;
/// Bound of one step; generous because an emulated CPU is slow.
const STEP: Duration = Duration::from_secs(120);

/// `netagent-testgen hold`, killed on drop.
struct Hold {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Hold {
    fn start(testgen: &Path, target: &str) -> Result<Hold> {
        let n = IDLE_CONNECTIONS.to_string();
        let mut child = Command::new(testgen)
            .args(["--comm", CLIENT_COMM, "hold", "--tcp", target])
            .args(["--connections", &n, "--max-seconds", "600"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting netagent-testgen hold")?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut h = Hold {
            child,
            stdin,
            lines,
        };
        let held = h.line()?;
        if held["held"] != IDLE_CONNECTIONS {
            bail!("hold said {held}");
        }
        Ok(h)
    }

    fn line(&mut self) -> Result<serde_json::Value> {
        let line = self
            .lines
            .recv_timeout(STEP)
            .context("hold said nothing in time (or exited)")?;
        serde_json::from_str(&line).with_context(|| format!("hold said {line:?}"))
    }

    fn command(&mut self, c: &str) -> Result<()> {
        writeln!(self.stdin, "{c}")?;
        self.stdin.flush()?;
        let done = self.line()?;
        if done["command"] != c {
            bail!("hold answered {done} to {c}");
        }
        Ok(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Idle gauges of the client (outbound) and the accepting target (inbound).
fn idle(m: &Metrics) -> (f64, f64) {
    let g = |p: &str, dir: &str| {
        m.sum(
            "netagent_tcp_connections_idle",
            &[("process", p), ("direction", dir)],
        )
    };
    (g(CLIENT_LABEL, "outbound"), g(ACCEPT_LABEL, "inbound"))
}

/// `process direction reason` -> resets, for the scenario's two targets.
fn resets(m: &Metrics) -> BTreeMap<String, f64> {
    m.matching("netagent_tcp_resets_total", &[])
        .filter(|(l, _)| {
            let p = l.get("process").map(String::as_str);
            p == Some(CLIENT_LABEL) || p == Some(ACCEPT_LABEL)
        })
        .map(|(l, v)| {
            let get = |k: &str| l.get(k).map(String::as_str).unwrap_or("?");
            (
                format!("{} {} {}", get("process"), get("direction"), get("reason")),
                v,
            )
        })
        .collect()
}

fn scrape(addr: SocketAddr) -> Result<Metrics> {
    Metrics::parse(&scrape::get(addr, "/metrics", STEP)?)
}

pub(crate) fn check(testgen: &Path, addr: SocketAddr, report: &mut Report) -> Result<()> {
    let echo = Server::start(testgen, ACCEPT_COMM, &["--tcp4", "0"], STEP)?;
    let abort = Server::start(testgen, ACCEPT_COMM, &["--tcp6", "0", "--abort"], STEP)?;
    let idle_after = Duration::from_secs(IDLE_AFTER_SECONDS);
    let n = IDLE_CONNECTIONS as f64;

    let mut hold = Hold::start(testgen, &format!("127.0.0.1:{}", echo.port("tcp4")?))?;
    std::thread::sleep(idle_after + Duration::from_secs(1));
    let got = idle(&scrape(addr)?);
    report.check(
        "idle_connections",
        got == (n, n),
        format!("outbound={n} inbound={n}"),
        format!("outbound={} inbound={}", got.0, got.1),
    );
    // Right after a payload on each they are not idle; a scrape that came
    // too late to tell is tried again.
    let mut last = String::from("no timely scrape");
    let mut pass = false;
    for _ in 0..3 {
        hold.command("exchange")?;
        let used = Instant::now();
        let got = idle(&scrape(addr)?);
        if used.elapsed() >= idle_after {
            report.info(format!(
                "idle_after_traffic: scrape took {:?}",
                used.elapsed()
            ));
            continue;
        }
        last = format!("outbound={} inbound={}", got.0, got.1);
        pass = got == (0.0, 0.0);
        break;
    }
    report.check("idle_after_traffic", pass, "outbound=0 inbound=0", last);
    hold.command("close")?;

    // Resets: the accepting target closes each connection with SO_LINGER 0.
    let before = resets(&scrape(addr)?);
    let target = format!("[::1]:{}", abort.port("tcp6")?);
    let (code, out) = procs::testgen_client(
        testgen,
        CLIENT_COMM,
        &[
            "--tcp6",
            &target,
            "--connects",
            &RESETS.to_string(),
            "--wait-reset",
        ],
        STEP,
    )?;
    // On a slow (emulated) CPU the reset may come before the client's
    // connect() returns, which then fails with ECONNRESET: a reset of an
    // established connection all the same.
    let seen = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let t = &out["tcp6"];
    if code.is_none()
        || seen(&t["resets"]) + seen(&t["connect_errors"]["ECONNRESET"]) != RESETS
        || seen(&t["connects_ok"]) + seen(&t["connects_failed"]) != RESETS
    {
        bail!("the aborting server did not reset {RESETS} connections: {out}");
    }
    // What the kernel says for an established connection closed with
    // SO_LINGER 0 (tcp_disconnect), where its tracepoint gives a reason.
    let btf = std::fs::read("/sys/kernel/btf/vmlinux").unwrap_or_default();
    let names = netagent::kernel::conns::reason_names(&btf);
    let reason = if names.values().any(|n| n == "tcp_state") {
        "tcp_state"
    } else {
        "unknown"
    };
    let mut want = before.clone();
    for (key, n) in [
        (format!("{ACCEPT_LABEL} sent {reason}"), RESETS),
        (format!("{CLIENT_LABEL} received unknown"), RESETS),
    ] {
        *want.entry(key).or_default() += n as f64;
    }
    // The server's resets reach the client in softirq: wait a little.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = resets(&scrape(addr)?);
    while got != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        got = resets(&scrape(addr)?);
    }
    report.check(
        "resets_by_reason",
        got == want,
        format!("{want:?}"),
        format!("{got:?}"),
    );
    Ok(())
}
