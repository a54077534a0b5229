//! Which capabilities the agent needs, measured on the running kernel.
//!
//! The real agent is started with exactly a given capability set: uid 0,
//! but `setpriv` (util-linux) cuts the bounding, inheritable and ambient
//! sets to the list, so after `execve` the permitted and effective sets
//! are exactly it (checked against `CapEff` in /proc/<pid>/status). As uid
//! 0 the agent keeps root's file ownership (DAC still lets it read
//! root-owned files); the question here is which *capabilities* it needs.
//! One test also runs it as an unprivileged user with ambient
//! capabilities, as a systemd unit or a Kubernetes pod would.
//!
//! Measured (Linux 6.18; the README's "Privileges" section says the same):
//!
//! | capability | without it |
//! |---|---|
//! | `CAP_BPF` | exit 1: `missing capability CAP_BPF: …` |
//! | `CAP_PERFMON` | exit 1: `missing capability CAP_PERFMON: …` |
//! | `CAP_NET_ADMIN` | exit 1: `missing capability CAP_NET_ADMIN: …` |
//! | `CAP_SYS_PTRACE` | starts and counts; listeners opened before the agent by processes with capabilities it lacks are not seeded (no `netagent_tcp_listen_info`, their accepted connections not attributed); no message names it |
//! | `CAP_DAC_READ_SEARCH` | same, for listeners of processes of *other users* (their /proc/<pid>/fd is mode 0500) |
//! | `CAP_SYS_ADMIN` | starts, counts and is healthy; only the host-wide BPF self-metrics need it: without it `netagent_bpf_programs`/`_maps` read 0 and `netagent_bpf_collection_errors_total` counts the refusals |
//!
//! The probe status comes from walking every BPF link on the host
//! (`BPF_LINK_GET_NEXT_ID`) and bpf_self from walking every program and
//! map: the kernel allows those walks only with CAP_SYS_ADMIN. CAP_SYS_ADMIN
//! also stands in for CAP_BPF and CAP_PERFMON (kernel and agent agree), but
//! not for CAP_NET_ADMIN in the agent's own check. CAP_SYS_RESOURCE is
//! never needed (BPF memory is charged to the memory cgroup since 5.11;
//! none of the sets below has it).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    free_port, have, require, require_bpf, serial, testgen, testgen_exe, Metrics, Server, TempDir,
};

const AGENT: &str = common::AGENT;

/// Capability numbers (linux/capability.h).
fn cap_bit(name: &str) -> u32 {
    match name {
        "dac_read_search" => 2,
        "net_admin" => 12,
        "sys_ptrace" => 19,
        "sys_admin" => 21,
        "sys_resource" => 24,
        "perfmon" => 38,
        "bpf" => 39,
        other => panic!("unknown capability {other}"),
    }
}

fn mask(caps: &[&str]) -> u64 {
    caps.iter().fold(0, |m, c| m | 1u64 << cap_bit(c))
}

/// The least-privilege set the agent asks for by name.
const REQUIRED: [&str; 3] = ["bpf", "perfmon", "net_admin"];

/// Runs as another user (uid/gid 65534, "nobody").
const NOBODY: &str = "65534";

const TARGETS: &str = "targets:\n  - name: cli\n    match_comm: priv-cli\n  \
                       - name: srv\n    match_comm: priv-srv\n";

/// `setpriv` arguments that leave exactly `caps` (and, with `user`, switch
/// to that uid/gid first, keeping the capabilities as ambient ones).
fn setpriv(caps: &[&str], user: Option<&str>) -> Command {
    let list: String = caps.iter().map(|c| format!(",+{c}")).collect();
    let mut cmd = Command::new("setpriv");
    if let Some(uid) = user {
        // As a service manager would: another user, no supplementary
        // groups, no_new_privs (ambient capabilities survive it).
        cmd.args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
            "--no-new-privs".into(),
        ]);
    }
    cmd.args([
        format!("--inh-caps=-all{list}"),
        format!("--ambient-caps=-all{list}"),
        format!("--bounding-set=-all{list}"),
    ]);
    cmd
}

fn available() -> bool {
    require(have("setpriv"), "setpriv (util-linux) not installed")
        && require(have("bpftool"), "bpftool not installed")
        && require_bpf()
}

/// An agent run under `setpriv`; killed on drop.
struct Restricted {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
    _dir: TempDir,
}

/// How a start ended: serving HTTP, or exited with a code and stderr.
enum Started {
    Serving(Restricted),
    Exited(Option<i32>, String),
}

fn start(tag: &str, caps: &[&str], user: Option<&str>) -> Started {
    let dir = TempDir::new(&format!("priv-{tag}"));
    let port = free_port();
    let cfg = dir.0.join("config.yaml");
    std::fs::write(
        &cfg,
        format!("{TARGETS}export:\n  listen_addr: \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let mut child = setpriv(caps, user)
        .arg(AGENT)
        .arg("--config")
        .arg(&cfg)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start setpriv netagent");
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    let pipe = child.stderr.take().unwrap();
    let tag = tag.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            eprintln!("[agent {tag}] {line}");
            let mut s = sink.lock().unwrap();
            s.push_str(&strip_ansi(&line));
            s.push('\n');
        }
    });
    let mut agent = Restricted {
        child,
        port,
        stderr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(status) = agent.child.try_wait().unwrap() {
            // Let the reader thread take the last lines.
            std::thread::sleep(Duration::from_millis(100));
            return Started::Exited(status.code(), agent.stderr());
        }
        if get(port, "/health").is_ok() {
            return Started::Serving(agent);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "agent neither served nor exited within 20 s: {}",
        agent.stderr()
    );
}

fn start_serving(tag: &str, caps: &[&str], user: Option<&str>) -> Restricted {
    match start(tag, caps, user) {
        Started::Serving(a) => a,
        Started::Exited(code, err) => panic!("agent with {caps:?} exited ({code:?}): {err}"),
    }
}

impl Restricted {
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn metrics(&self) -> Metrics {
        let (status, body) = get(self.port, "/metrics").expect("scrape");
        assert_eq!(status, 200, "{body}");
        Metrics::parse(&body)
    }

    /// (HTTP status, parsed JSON) of /health.
    fn health(&self) -> (u16, serde_json::Value) {
        let (status, body) = get(self.port, "/health").expect("/health answers");
        let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (status, json)
    }

    /// The agent's effective capability set.
    fn cap_eff(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .expect("CapEff");
        u64::from_str_radix(hex.trim(), 16).unwrap()
    }

    /// Program ids referenced by the BPF links the agent holds (from its
    /// fdinfo): what it has attached, read without any BPF syscall.
    fn attached_programs(&self) -> BTreeSet<u64> {
        let mut ids = BTreeSet::new();
        let dir = format!("/proc/{}/fdinfo", self.pid());
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let Ok(info) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            if !info.contains("link_id:") {
                continue;
            }
            if let Some(id) = info
                .lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|v| v.trim().parse().ok())
            {
                ids.insert(id);
            }
        }
        ids
    }
}

impl Drop for Restricted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// HTTP/1.1 GET on loopback: (status, body), whatever the status.
fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// Sum of the series of `name` whose labels include all of `labels`.
fn sum(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.sum(name, labels)
}

/// Polls the agent until `f` holds (counters are read at scrape time, but
/// an accepted connection may complete just after the client returns).
fn eventually(agent: &Restricted, what: &str, f: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = agent.metrics();
        if f(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within 5 s\n{:?}\nagent log:\n{}",
            m,
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 10 connects by `priv-cli` to `port`; returns how many succeeded.
fn connect_10(port: u16) -> f64 {
    let v = testgen(
        "priv-cli",
        &[
            "client",
            "--tcp4",
            &format!("127.0.0.1:{port}"),
            "--connects",
            "10",
        ],
    );
    let ok = v["tcp4"]["connects_ok"].as_u64().unwrap();
    assert_eq!(ok, 10, "{v}");
    ok as f64
}

/// Connects and edges of `priv-cli` to `port` are exactly 10.
fn assert_connects_counted(agent: &Restricted, port: u16) {
    let p = port.to_string();
    let want = connect_10(port);
    let connect = [("process", "cli"), ("proto", "tcp"), ("dport", p.as_str())];
    let m = eventually(agent, "connects counted", |m| {
        sum(m, "netagent_connect_total", &connect) >= want
    });
    assert_eq!(sum(&m, "netagent_connect_total", &connect), want);
    let edge = [
        ("process", "cli"),
        ("proto", "tcp"),
        ("dport", p.as_str()),
        ("dst_ip", "127.0.0.1"),
    ];
    assert_eq!(sum(&m, "netagent_edge_total", &edge), want);
}

/// Accepted connections attributed to `srv` on `port` (after the connects).
fn accepted(agent: &Restricted, port: u16) -> f64 {
    let p = port.to_string();
    sum(
        &agent.metrics(),
        "netagent_tcp_connections_accepted_total",
        &[("process", "srv"), ("port", p.as_str())],
    )
}

fn listen_info(agent: &Restricted, port: u16) -> f64 {
    let p = port.to_string();
    sum(
        &agent.metrics(),
        "netagent_tcp_listen_info",
        &[("process", "srv"), ("port", p.as_str())],
    )
}

/// Every required probe attached per /health, 200 and `ok`.
fn assert_healthy(agent: &Restricted) {
    let (status, h) = agent.health();
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["status"], "ok", "{h}");
    for p in h["probes"].as_array().unwrap() {
        if p["required"] == true {
            assert_eq!(p["attached"], true, "{p}");
        }
    }
    let m = agent.metrics();
    let up = m.series("netagent_probe_up");
    assert!(!up.is_empty());
    assert!(up.iter().all(|(_, v)| *v == 1.0), "{up:?}");
}

/// The agent has attached (links it holds) at least the ten socket
/// programs: six tracepoints and four cgroup hooks.
fn assert_attached(agent: &Restricted) {
    let progs = agent.attached_programs();
    assert!(
        progs.len() >= 10,
        "links of {} programs: {progs:?}",
        progs.len()
    );
}

#[test]
fn missing_required_capability_exits_1_naming_it() {
    let _g = serial();
    if !available() {
        return;
    }
    let base = ["bpf", "perfmon", "net_admin", "sys_ptrace"];
    for missing in REQUIRED {
        let caps: Vec<&str> = base.iter().copied().filter(|c| *c != missing).collect();
        match start(&format!("without-{missing}"), &caps, None) {
            Started::Serving(a) => panic!(
                "started without CAP_{}: {}",
                missing.to_uppercase(),
                a.stderr()
            ),
            Started::Exited(code, err) => {
                assert_eq!(code, Some(1), "{err}");
                let name = format!("missing capability CAP_{}", missing.to_uppercase());
                assert!(err.contains(&name), "{err}");
                assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
            }
        }
    }
}

/// Exactly CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN and CAP_SYS_PTRACE: the
/// agent attaches everything and counts exactly, including connections to
/// a listener older than the agent; but its self-checks need CAP_SYS_ADMIN.
#[test]
fn least_privilege_set_counts_exactly() {
    let _g = serial();
    if !available() {
        return;
    }
    // A listener opened before the agent, by a process with every
    // capability of this test (more than the agent will have).
    let old = Server::start("priv-srv", &["--tcp4", "0"]);
    let old_port = old.port("tcp4");

    let caps = ["bpf", "perfmon", "net_admin", "sys_ptrace"];
    let agent = start_serving("least", &caps, None);
    assert_eq!(agent.cap_eff(), mask(&caps), "effective set");
    assert_attached(&agent);
    assert_eq!(listen_info(&agent, old_port), 1.0, "old listener seeded");
    assert_connects_counted(&agent, old_port);
    eventually(&agent, "accepted on the old listener", |m| {
        let p = old_port.to_string();
        sum(
            m,
            "netagent_tcp_connections_accepted_total",
            &[("process", "srv"), ("port", p.as_str())],
        ) == 10.0
    });

    // Probe status comes from the agent's own link fds (/proc/self/fdinfo),
    // so it needs no CAP_SYS_ADMIN: healthy with the least-privilege set.
    assert_healthy(&agent);
    let m = agent.metrics();
    assert!(m.series("netagent_probe_up").iter().all(|(_, v)| *v == 1.0));
    // Enumerating every BPF object on the host does need CAP_SYS_ADMIN:
    let m = agent.metrics();
    assert_eq!(m.get("netagent_bpf_programs", &[]), 0.0);
    assert_eq!(m.get("netagent_bpf_maps", &[]), 0.0);
    assert!(m.get("netagent_bpf_collection_errors_total", &[]) > 0.0);
}

/// Exactly CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN: counting works, but a
/// listener that a more privileged process opened before the agent is not
/// found (its /proc/<pid>/fd needs CAP_SYS_PTRACE), silently.
#[test]
fn without_sys_ptrace_old_listeners_are_not_seeded() {
    let _g = serial();
    if !available() {
        return;
    }
    let old = Server::start("priv-srv", &["--tcp4", "0"]);
    let old_port = old.port("tcp4");
    let agent = start_serving("no-ptrace", &REQUIRED, None);
    assert_eq!(agent.cap_eff(), mask(&REQUIRED));
    assert_attached(&agent);
    assert_connects_counted(&agent, old_port);
    assert_eq!(listen_info(&agent, old_port), 0.0, "not seeded");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(accepted(&agent, old_port), 0.0, "not attributed");
    assert!(
        agent
            .stderr()
            .contains("existing listeners of tracked processes recorded listeners=0"),
        "{}",
        agent.stderr()
    );

    // A listener opened after the start is seen by the kernel programs.
    let new = Server::start("priv-srv", &["--tcp4", "0"]);
    let new_port = new.port("tcp4");
    assert_connects_counted(&agent, new_port);
    eventually(&agent, "accepted on the new listener", |m| {
        let p = new_port.to_string();
        sum(
            m,
            "netagent_tcp_connections_accepted_total",
            &[("process", "srv"), ("port", p.as_str())],
        ) == 10.0
    });
}

/// Adding CAP_SYS_ADMIN makes /health, `netagent_probe_up` and bpf_self
/// work. It also stands in for CAP_BPF and CAP_PERFMON: CAP_SYS_ADMIN,
/// CAP_NET_ADMIN and CAP_SYS_PTRACE alone give the same.
#[test]
fn with_sys_admin_health_is_ok() {
    let _g = serial();
    if !available() {
        return;
    }
    let old = Server::start("priv-srv", &["--tcp4", "0"]);
    let old_port = old.port("tcp4");
    for caps in [
        &["bpf", "perfmon", "net_admin", "sys_ptrace", "sys_admin"][..],
        &["net_admin", "sys_ptrace", "sys_admin"][..],
    ] {
        let agent = start_serving("sys-admin", caps, None);
        assert_eq!(agent.cap_eff(), mask(caps));
        assert_healthy(&agent);
        assert_attached(&agent);
        assert_eq!(listen_info(&agent, old_port), 1.0);
        let before = accepted(&agent, old_port);
        assert_connects_counted(&agent, old_port);
        eventually(&agent, "accepted", |m| {
            let p = old_port.to_string();
            sum(
                m,
                "netagent_tcp_connections_accepted_total",
                &[("process", "srv"), ("port", p.as_str())],
            ) == before + 10.0
        });
        let m = agent.metrics();
        assert!(m.get("netagent_bpf_programs", &[]) >= 10.0);
        assert_eq!(m.get("netagent_bpf_collection_errors_total", &[]), 0.0);
    }
}

/// A testgen server run as another user, killed on drop.
struct OtherUserServer {
    child: Child,
    port: u16,
}

impl OtherUserServer {
    fn start() -> Self {
        let mut child = Command::new("setpriv")
            .args([
                format!("--reuid={NOBODY}"),
                format!("--regid={NOBODY}"),
                "--clear-groups".into(),
            ])
            .arg(testgen_exe())
            .args([
                "--comm",
                "priv-srv",
                "serve",
                "--tcp4",
                "0",
                "--max-seconds",
                "60",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start testgen as nobody");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        OtherUserServer {
            port: v["tcp4"].as_u64().unwrap() as u16,
            child,
        }
    }
}

impl Drop for OtherUserServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Listeners of other users: their /proc/<pid>/fd is mode 0500, so the
/// agent also needs CAP_DAC_READ_SEARCH to find them.
#[test]
fn listeners_of_other_users_need_dac_read_search() {
    let _g = serial();
    if !available() {
        return;
    }
    let old = OtherUserServer::start();
    let caps = ["bpf", "perfmon", "net_admin", "sys_ptrace"];
    let agent = start_serving("other-user", &caps, None);
    assert_eq!(listen_info(&agent, old.port), 0.0, "not seeded");
    drop(agent);

    let caps = [
        "bpf",
        "perfmon",
        "net_admin",
        "sys_ptrace",
        "dac_read_search",
    ];
    let agent = start_serving("other-user-dac", &caps, None);
    assert_eq!(agent.cap_eff(), mask(&caps));
    assert_eq!(listen_info(&agent, old.port), 1.0, "seeded");
    assert_connects_counted(&agent, old.port);
    eventually(&agent, "accepted", |m| {
        let p = old.port.to_string();
        sum(
            m,
            "netagent_tcp_connections_accepted_total",
            &[("process", "srv"), ("port", p.as_str())],
        ) == 10.0
    });
}

/// The deployment shape of the README: a dedicated user with ambient
/// capabilities (systemd `AmbientCapabilities=`, Kubernetes
/// `capabilities.add` with `runAsUser`), nothing else.
#[test]
fn unprivileged_user_with_ambient_capabilities() {
    let _g = serial();
    if !available() {
        return;
    }
    let old = Server::start("priv-srv", &["--tcp4", "0"]);
    let old_port = old.port("tcp4");
    let caps = [
        "bpf",
        "perfmon",
        "net_admin",
        "sys_ptrace",
        "dac_read_search",
        "sys_admin",
    ];
    let agent = start_serving("nobody", &caps, Some(NOBODY));
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some(NOBODY)),
        "{status}"
    );
    assert_eq!(agent.cap_eff(), mask(&caps));
    assert_healthy(&agent);
    assert_eq!(listen_info(&agent, old_port), 1.0, "root's listener seeded");
    assert_connects_counted(&agent, old_port);
}
