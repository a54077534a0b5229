//! The scenario's DNS requests, on every kernel: a DNS server of the
//! test's own on a loopback address of this run (answering after a fixed
//! delay: NOERROR, NXDOMAIN, SERVFAIL), queried by the tracked client over
//! UDP and TCP; counts per qtype and rcode, and durations, exact.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::procs::{self, Server};
use crate::report::Report;
use crate::scenario::{CLIENT_COMM, CLIENT_LABEL, SERVER_COMM};
use crate::scrape::{self, Metrics};

/// The agent's DNS port (its default `dns.ports`).
const DNS_PORT: u16 = 53;
const DELAY_MS: u64 = 20;
/// Queries per name: A NOERROR over UDP and over TCP, A NXDOMAIN, AAAA SERVFAIL.
const OK_UDP: u64 = 3;
const OK_TCP: u64 = 2;
const NXDOMAIN: u64 = 2;
const SERVFAIL: u64 = 1;
const STEP: Duration = Duration::from_secs(120);
/// How long the agent may take to read the answers from its ring buffer.
const SETTLE: Duration = Duration::from_secs(20);

pub fn check(testgen: &Path, agent: SocketAddr, report: &mut Report) -> Result<()> {
    // An address of this run only (another host row may run at the same
    // time under the same process names): the `server` label tells them apart.
    let pid = std::process::id();
    let server_ip = Ipv4Addr::new(127, 53, (pid >> 8) as u8, (pid as u8).max(1));
    let ip = server_ip.to_string();
    let delay = DELAY_MS.to_string();
    let port = DNS_PORT.to_string();
    let _server = Server::start_as(
        testgen,
        SERVER_COMM,
        "dns-serve",
        &[
            "--bind",
            &ip,
            "--port",
            &port,
            "--delay-ms",
            &delay,
            "--zone",
            "ok.matrix.test=A:127.0.0.1",
            "--zone",
            "nx.matrix.test=NXDOMAIN",
            "--zone",
            "fail.matrix.test=SERVFAIL",
        ],
        STEP,
    )?;
    let server = format!("{ip}:{DNS_PORT}");
    for (name, qtype, count, tcp) in [
        ("ok.matrix.test", "A", OK_UDP, false),
        ("ok.matrix.test", "A", OK_TCP, true),
        ("nx.matrix.test", "A", NXDOMAIN, false),
        ("fail.matrix.test", "AAAA", SERVFAIL, false),
    ] {
        let n = count.to_string();
        let mut cmd = Command::new(testgen);
        cmd.args(["--comm", CLIENT_COMM, "dns-query", "--server", &server])
            .args(["--name", name, "--qtype", qtype, "--count", &n]);
        if tcp {
            cmd.arg("--tcp");
        }
        let out = procs::run(&mut cmd, STEP)?;
        if out.status.map(|s| s.success()) != Some(true) {
            bail!("dns-query {name} {qtype}: {:?} {}", out.status, out.stderr);
        }
    }

    let want = [
        ("A", "NOERROR", OK_UDP + OK_TCP),
        ("A", "NXDOMAIN", NXDOMAIN),
        ("AAAA", "SERVFAIL", SERVFAIL),
    ];
    let requests = |m: &Metrics, qtype: &str, rcode: &str| {
        m.sum(
            "netagent_dns_requests_total",
            &[
                ("process", CLIENT_LABEL),
                ("server", &ip),
                ("qtype", qtype),
                ("rcode", rcode),
            ],
        )
    };
    let deadline = Instant::now() + SETTLE;
    let m = loop {
        let m = Metrics::parse(&scrape::get(agent, "/metrics", STEP)?)?;
        let done = want.iter().all(|(q, r, n)| requests(&m, q, r) >= *n as f64);
        if done || Instant::now() >= deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for (qtype, rcode, n) in want {
        report.exact(
            &format!("dns_{}_{}", qtype.to_lowercase(), rcode.to_lowercase()),
            n as f64,
            requests(&m, qtype, rcode),
        );
    }
    let all = m.sum(
        "netagent_dns_requests_total",
        &[("process", CLIENT_LABEL), ("server", &ip)],
    );
    report.exact(
        "dns_requests_total",
        (OK_UDP + OK_TCP + NXDOMAIN + SERVFAIL) as f64,
        all,
    );
    // Every answer came after the server's delay.
    let by = [("process", CLIENT_LABEL), ("qtype", "A")];
    let count = m.sum("netagent_dns_request_duration_seconds_count", &by);
    let sum = m.sum("netagent_dns_request_duration_seconds_sum", &by);
    report.exact(
        "dns_a_durations",
        (OK_UDP + OK_TCP + NXDOMAIN) as f64,
        count,
    );
    let floor = count * DELAY_MS as f64 / 1000.0;
    report.check(
        "dns_a_duration_at_least_the_delay",
        sum >= floor,
        format!(">= {floor:.3} s"),
        format!("{sum:.3} s"),
    );
    Ok(())
}
