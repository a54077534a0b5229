//! The scenario every kernel of the matrix runs: start the agent, generate
//! known traffic under known process names, and check the scrape against
//! it exactly; then stop the agent and check it left nothing loaded.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use netagent::collect::bpf_self::objects as bpf_objects;

use crate::conns::{self, IDLE_AFTER_SECONDS};
use crate::counts::check_counts;
use crate::dns;
use crate::procs::{self, Agent, Server};
use crate::report::{Report, PROBE_BEGIN, PROBE_END};
use crate::scrape::{self, Metrics};

/// Comm of the traffic the agent tracks, and its label.
pub(crate) const CLIENT_COMM: &str = "nmx-cli";
pub(crate) const CLIENT_LABEL: &str = "matrix-cli";
/// Comm of the servers: not a target, so none of their traffic may appear.
pub(crate) const SERVER_COMM: &str = "nmx-srv";
/// Comm of a listener that is a target: its accepted connections and the
/// bytes it reads are counted.
pub(crate) const ACCEPT_COMM: &str = "nmx-acc";
pub(crate) const ACCEPT_LABEL: &str = "matrix-acc";
const PORT: u16 = 9102;
/// Interface counters are collected this often (seconds).
const IFACE_INTERVAL: f64 = 0.5;

/// Counts of the scenario: distinct, so a swapped label cannot pass.
pub(crate) const TCP4_CONNECTS: u64 = 7;
pub(crate) const TCP6_CONNECTS: u64 = 5;
pub(crate) const UDP4_SENDS: u64 = 9;
pub(crate) const UDP6_SENDS: u64 = 4;
pub(crate) const EXCHANGES: u64 = 6;
/// Connects to the accepting target (each family gets one more: the bulk
/// transfer's connection), and the bytes of each bulk transfer.
pub(crate) const ACCEPT4_CONNECTS: u64 = 3;
pub(crate) const ACCEPT6_CONNECTS: u64 = 2;
pub(crate) const BULK4: u64 = 40_000;
pub(crate) const BULK6: u64 = 30_000;
/// Payload sizes of the UDP datagrams, per family.
pub(crate) const UDP4_SIZE: u64 = 111;
pub(crate) const UDP6_SIZE: u64 = 77;
/// Server delay for exchanges: mid-bucket in (25 ms, 50 ms], and no
/// exchange can be faster than it, however slow the machine.
const DELAY_MS: u64 = 35;

/// Bounds for one step; generous because an emulated CPU is slow.
const AGENT_START: Duration = Duration::from_secs(300);
const STEP: Duration = Duration::from_secs(120);
const SHUTDOWN: Duration = Duration::from_secs(60);
/// Freed BPF objects disappear after an RCU grace period, not at exit.
const UNLOAD_WAIT: Duration = Duration::from_secs(30);

/// Where the binaries are and what to add to the config.
pub struct Setup {
    pub agent: PathBuf,
    pub testgen: PathBuf,
    pub workdir: PathBuf,
    pub extra_yaml: Option<String>,
    /// In a guest nothing else runs: every BPF object must be gone after,
    /// not only the agent's.
    pub guest: bool,
}

/// The agent config: only our client is a target, loopback is counted.
/// A guest runs the default (every network namespace); on a host, where
/// other runs may use the same process names elsewhere, only the
/// driver's private namespace is watched.
fn config(extra: Option<&str>, guest: bool) -> String {
    let mut yaml = format!(
        "targets:\n  - name: \"{CLIENT_LABEL}\"\n    match_comm: \"{CLIENT_COMM}\"\n\
         \x20 - name: \"{ACCEPT_LABEL}\"\n    match_comm: \"{ACCEPT_COMM}\"\n\
         interfaces: [\"lo\"]\ninterface_stats:\n  interval_seconds: {IFACE_INTERVAL}\n\
         export:\n  listen_addr: \"127.0.0.1:{PORT}\"\n\
         tcp:\n  idle_after_seconds: {IDLE_AFTER_SECONDS}\n"
    );
    if !guest {
        yaml.push_str("netns: \"self\"\n");
    }
    if let Some(extra) = extra {
        yaml.push_str("# extra\n");
        yaml.push_str(extra);
        if !extra.ends_with('\n') {
            yaml.push('\n');
        }
    }
    yaml
}

/// Runs everything; a step that cannot run is recorded as a failed check
/// and ends the scenario (later checks would only repeat it).
pub fn run(setup: &Setup, report: &mut Report) {
    print_probe(&setup.agent);
    if let Err(e) = run_agent(setup, report) {
        report.abort("scenario", &e);
    }
}

/// `netagent probe`, printed for the README (it may not exist yet).
fn print_probe(agent: &Path) {
    println!("{PROBE_BEGIN}");
    match procs::run(Command::new(agent).arg("probe"), STEP) {
        Ok(out) => {
            print!("{}", out.stdout);
            for line in out.stderr.lines() {
                println!("stderr: {line}");
            }
            let code = match out.status {
                Some(s) => s.code().map_or("signal".into(), |c| c.to_string()),
                None => "killed at timeout".into(),
            };
            println!("{PROBE_END} (exit {code}) -----");
        }
        Err(e) => println!("{PROBE_END} (not run: {e:#}) -----"),
    }
}

fn run_agent(setup: &Setup, report: &mut Report) -> Result<()> {
    let cfg = setup.workdir.join("config.yaml");
    let yaml = config(setup.extra_yaml.as_deref(), setup.guest);
    std::fs::write(&cfg, &yaml).with_context(|| format!("writing {}", cfg.display()))?;
    if let Some(extra) = &setup.extra_yaml {
        report.info(format!("extra config: {}", extra.replace('\n', " ")));
    }
    let before = loaded_ids();
    let mut agent = Agent::start(&setup.agent, &cfg)?;
    let started = agent.wait_listening(PORT, AGENT_START)?;
    report.info(format!("agent_ready_seconds={:.1}", started.as_secs_f64()));
    // The agent serves only once TC counts on lo, and nothing has crossed
    // lo since it started: from here on both it and the kernel count alike.
    let lo_before = LoStats::read()?;

    let traffic = Traffic::run(setup, report)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], PORT));
    let text = scrape::get(addr, "/metrics", STEP)?;
    let m = Metrics::parse(&text)?;
    let failed_before = report.failures();
    check_counts(&m, &traffic, report);
    if report.failures() > failed_before {
        // What the agent did count, for whoever reads the console log.
        for line in text
            .lines()
            .filter(|l| l.starts_with("netagent_") && !l.contains("_bucket{"))
        {
            report.info(format!("scrape {line}"));
        }
        dump_with_bpftool();
    }
    // Idle connections and resets by reason, after the exact counts
    // (their own servers and connections are not in those).
    if let Err(e) = conns::check(&setup.testgen, addr, report) {
        report.abort("idle_and_resets", &e);
    }
    if let Err(e) = dns::check(&setup.testgen, addr, report) {
        report.abort("dns", &e);
    }
    for (labels, v) in m.matching("netagent_probe_up", &[]) {
        let name = labels.values().cloned().collect::<Vec<_>>().join(",");
        report.info(format!("probe_up {name}={v}"));
    }
    // The hook serving each feature, for the runner to compare with the
    // one this kernel (and forced config) should use.
    for (labels, _) in m.matching("netagent_probe_info", &[]) {
        if let (Some(f), Some(h)) = (labels.get("feature"), labels.get("hook")) {
            report.info(format!("hook_{f}={h}"));
        }
    }
    // Where UDP state is kept (socket-local storage or by address).
    let health: serde_json::Value =
        serde_json::from_str(&scrape::get(addr, "/health", STEP)?).context("/health")?;
    for f in health["features"].as_array().into_iter().flatten() {
        if let (Some(name), Some(state)) = (f["feature"].as_str(), f["state"].as_str()) {
            report.info(format!("state_{name}={state}"));
        }
    }
    check_loopback(addr, &lo_before, report)?;
    drop(traffic);
    shutdown(&mut agent, &before, setup.guest, report)
}

/// The kernel's view of the agent's maps, when the image has bpftool
/// (the runner adds it with `NETAGENT_MATRIX_BPFTOOL=1`).
fn dump_with_bpftool() {
    let bpftool = Path::new("/bin/bpftool");
    if !bpftool.exists() {
        return;
    }
    for args in [
        &["prog", "show"][..],
        &["map", "dump", "name", "targets"][..],
        &["map", "dump", "name", "flows"][..],
        &["map", "dump", "name", "flow_counters"][..],
        &["map", "dump", "name", "tcp_socks"][..],
        &["map", "dump", "name", "lost"][..],
    ] {
        match procs::run(Command::new(bpftool).args(args), STEP) {
            Ok(o) => println!("bpftool {}:\n{}{}", args.join(" "), o.stdout, o.stderr),
            Err(e) => println!("bpftool {}: {e:#}", args.join(" ")),
        }
    }
}

/// Ports of the servers and what the clients reported.
pub(crate) struct Traffic {
    pub(crate) tcp4: u16,
    pub(crate) tcp6: u16,
    pub(crate) udp4: u16,
    pub(crate) udp6: u16,
    pub(crate) delay_tcp4: u16,
    pub(crate) delay_udp6: u16,
    pub(crate) closed: u16,
    pub(crate) accept4: u16,
    pub(crate) accept6: u16,
    _servers: [Server; 3],
}

impl Traffic {
    fn run(setup: &Setup, report: &mut Report) -> Result<Traffic> {
        let tg = &setup.testgen;
        let sink = Server::start(
            tg,
            SERVER_COMM,
            &[
                "--tcp4", "0", "--tcp6", "0", "--udp4", "0", "--udp6", "0", "--sink",
            ],
            STEP,
        )?;
        let delay = DELAY_MS.to_string();
        let slow = Server::start(
            tg,
            SERVER_COMM,
            &["--tcp4", "0", "--udp6", "0", "--delay-ms", &delay],
            STEP,
        )?;
        let acc = Server::start(
            tg,
            ACCEPT_COMM,
            &["--tcp4", "0", "--tcp6", "0", "--sink"],
            STEP,
        )?;
        // A port nobody listens on: bound and released again; in this
        // namespace nothing else can take it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let t = Traffic {
            tcp4: sink.port("tcp4")?,
            tcp6: sink.port("tcp6")?,
            udp4: sink.port("udp4")?,
            udp6: sink.port("udp6")?,
            delay_tcp4: slow.port("tcp4")?,
            delay_udp6: slow.port("udp6")?,
            closed,
            accept4: acc.port("tcp4")?,
            accept6: acc.port("tcp6")?,
            _servers: [sink, slow, acc],
        };
        let client = |args: &[&str]| procs::testgen_client(tg, CLIENT_COMM, args, STEP);
        let v4 = |p: u16| format!("127.0.0.1:{p}");
        let v6 = |p: u16| format!("[::1]:{p}");
        let n = |x: u64| x.to_string();

        let mut problems = Vec::new();
        let mut expect = |what: &str, ok: bool, out: &serde_json::Value| {
            if !ok {
                problems.push(format!("{what}: {out}"));
            }
        };
        let (code, out) = client(&["--tcp4", &v4(t.tcp4), "--connects", &n(TCP4_CONNECTS)])?;
        expect(
            "tcp4",
            code == Some(0) && out["tcp4"]["connects_ok"] == TCP4_CONNECTS,
            &out,
        );
        let (code, out) = client(&["--tcp6", &v6(t.tcp6), "--connects", &n(TCP6_CONNECTS)])?;
        expect(
            "tcp6",
            code == Some(0) && out["tcp6"]["connects_ok"] == TCP6_CONNECTS,
            &out,
        );
        let (code, out) = client(&[
            "--udp4",
            &v4(t.udp4),
            "--sends",
            &n(UDP4_SENDS),
            "--size",
            &n(UDP4_SIZE),
        ])?;
        expect(
            "udp4",
            code == Some(0)
                && out["udp4"]["sends_ok"] == UDP4_SENDS
                && out["udp4"]["bytes_sent"] == UDP4_SENDS * UDP4_SIZE,
            &out,
        );
        let (code, out) = client(&[
            "--udp6",
            &v6(t.udp6),
            "--sends",
            &n(UDP6_SENDS),
            "--size",
            &n(UDP6_SIZE),
        ])?;
        expect(
            "udp6",
            code == Some(0)
                && out["udp6"]["sends_ok"] == UDP6_SENDS
                && out["udp6"]["bytes_sent"] == UDP6_SENDS * UDP6_SIZE,
            &out,
        );
        for (fam, addr, connects, bulk) in [
            ("tcp4", v4(t.accept4), ACCEPT4_CONNECTS, BULK4),
            ("tcp6", v6(t.accept6), ACCEPT6_CONNECTS, BULK6),
        ] {
            let flag = format!("--{fam}");
            let (code, out) =
                client(&[&flag, &addr, "--connects", &n(connects), "--bulk", &n(bulk)])?;
            expect(
                &format!("{fam} accepts and bulk"),
                code == Some(0)
                    && out[fam]["connects_ok"] == connects
                    && out[fam]["bytes_sent"] == bulk,
                &out,
            );
        }
        let (code, out) = client(&[
            "--tcp4",
            &v4(t.delay_tcp4),
            "--udp6",
            &v6(t.delay_udp6),
            "--exchanges",
            &n(EXCHANGES),
        ])?;
        expect(
            "exchanges",
            code == Some(0)
                && out["tcp4"]["exchanges"] == EXCHANGES
                && out["udp6"]["exchanges"] == EXCHANGES,
            &out,
        );
        let (code, out) = client(&["--tcp4", &v4(t.closed), "--connects", "1"])?;
        expect(
            "refused",
            code == Some(1) && out["tcp4"]["connect_errors"]["ECONNREFUSED"] == 1,
            &out,
        );
        let ok = problems.is_empty();
        report.check(
            "traffic_generated",
            ok,
            "every client did what it was asked",
            if ok {
                "yes".into()
            } else {
                problems.join("; ")
            },
        );
        Ok(t)
    }
}

/// The kernel's own loopback counters (exact, since the device came up).
#[derive(Debug, Clone, Copy)]
struct LoStats {
    tx_packets: u64,
    rx_packets: u64,
}

impl LoStats {
    fn read() -> Result<LoStats> {
        let read = |f: &str| -> Result<u64> {
            let p = format!("/sys/class/net/lo/statistics/{f}");
            let s = std::fs::read_to_string(&p).with_context(|| p.clone())?;
            s.trim().parse().with_context(|| format!("{p}: {s:?}"))
        };
        Ok(LoStats {
            tx_packets: read("tx_packets")?,
            rx_packets: read("rx_packets")?,
        })
    }
}

/// TC counts on lo against the kernel's counters over the same span.
/// The agent collects every interval, so: wait quietly past a collection,
/// read the kernel, scrape. A collection that falls between the two adds
/// the scrape's own first packets; then try again (bounded).
fn check_loopback(addr: SocketAddr, before: &LoStats, report: &mut Report) -> Result<()> {
    let quiet = Duration::from_secs_f64(IFACE_INTERVAL * 3.0);
    let mut last = String::new();
    for _attempt in 0..3 {
        std::thread::sleep(quiet);
        let now = LoStats::read()?;
        let m = Metrics::parse(&scrape::get(addr, "/metrics", STEP)?)?;
        let agent = |dir: &str| {
            m.sum(
                "netagent_interface_packets_total",
                &[("interface", "lo"), ("direction", dir)],
            )
        };
        let want = (
            (now.tx_packets - before.tx_packets) as f64,
            (now.rx_packets - before.rx_packets) as f64,
        );
        let got = (agent("egress"), agent("ingress"));
        last = format!("egress={} ingress={}", got.0, got.1);
        // Our traffic alone is well over 50 packets: a zero is no pass.
        if got == want && want.0 > 50.0 {
            report.check(
                "lo_packets",
                true,
                format!("egress={} ingress={}", want.0, want.1),
                last,
            );
            return Ok(());
        }
        report.info(format!(
            "lo_packets: kernel egress={} ingress={}, agent {last}; retrying",
            want.0, want.1
        ));
    }
    report.check("lo_packets", false, "agent == kernel counters", last);
    Ok(())
}

/// BPF program and map ids loaded now, host-wide.
fn loaded_ids() -> (BTreeSet<u32>, BTreeSet<u32>) {
    let objs = bpf_objects::enumerate("");
    (
        objs.programs.iter().map(|p| p.id).collect(),
        objs.maps.iter().map(|m| m.id).collect(),
    )
}

/// Program and map ids the process `pid` holds (its fds: programs, links,
/// maps), from /proc/<pid>/fdinfo.
fn held_ids(pid: u32) -> Result<(BTreeSet<u32>, BTreeSet<u32>)> {
    let (mut progs, mut maps) = (BTreeSet::new(), BTreeSet::new());
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in std::fs::read_dir(&dir).with_context(|| dir.clone())? {
        let Ok(text) = std::fs::read_to_string(entry?.path()) else {
            continue; // closed meanwhile
        };
        for line in text.lines() {
            if let Some((k, v)) = line.split_once(':') {
                let id = v.trim().parse::<u32>();
                match (k, id) {
                    ("prog_id", Ok(id)) => {
                        progs.insert(id);
                    }
                    ("map_id", Ok(id)) => {
                        maps.insert(id);
                    }
                    _ => {}
                }
            }
        }
    }
    Ok((progs, maps))
}

/// SIGTERM: exit 0 in time, and none of the agent's programs or maps left
/// (in a guest: exactly what was loaded before the agent).
fn shutdown(
    agent: &mut Agent,
    before: &(BTreeSet<u32>, BTreeSet<u32>),
    guest: bool,
    report: &mut Report,
) -> Result<()> {
    let (progs, maps) = held_ids(agent.pid())?;
    ensure!(!progs.is_empty(), "the agent holds no BPF program fds");
    report.info(format!(
        "agent held {} programs and {} maps",
        progs.len(),
        maps.len()
    ));
    let status = agent.terminate(SHUTDOWN)?;
    report.check(
        "agent_exit_0",
        status.is_some_and(|s| s.success()),
        "exit status 0 after SIGTERM",
        status.map_or("killed after timeout".into(), |s| s.to_string()),
    );
    let deadline = Instant::now() + UNLOAD_WAIT;
    let left = loop {
        let (p_now, m_now) = loaded_ids();
        let left_p: Vec<u32> = p_now.intersection(&progs).copied().collect();
        let left_m: Vec<u32> = m_now.intersection(&maps).copied().collect();
        let extra = guest && (&p_now, &m_now) != (&before.0, &before.1);
        if (left_p.is_empty() && left_m.is_empty() && !extra) || Instant::now() > deadline {
            let mut left = format!("programs {left_p:?} maps {left_m:?}");
            if extra {
                left += &format!(
                    "; all loaded: programs {p_now:?} maps {m_now:?} (before: {:?} {:?})",
                    before.0, before.1
                );
            }
            break left;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    report.check(
        "nothing_left_loaded",
        left == "programs [] maps []",
        "programs [] maps []",
        left,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_valid_with_and_without_extra_yaml() {
        use netagent::config::Config;
        let (c, _) = Config::parse(&config(None, true), "matrix.yaml").unwrap();
        assert_eq!(c.targets[0].match_comm.value, CLIENT_COMM);
        assert_eq!(c.targets[1].match_comm.value, ACCEPT_COMM);
        let extra = "debug:\n  disable_probes: [\"tracepoint/sock:sock_send_length\"]";
        let (c, _) = Config::parse(&config(Some(extra), false), "matrix.yaml").unwrap();
        assert_eq!(c.netns.value, "self");
        assert_eq!(c.debug.disable_probes.len(), 1);
    }
}
