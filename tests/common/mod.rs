//! Shared helpers for the end-to-end tests: run the real agent binary with a
//! config, run the traffic generator under a known comm, scrape and read
//! the real HTTP endpoint, and check what the kernel has loaded.
#![allow(dead_code)]

pub mod cdp;
pub mod cgroup;
pub mod fake_cloud;
pub mod hostlink;
pub mod netns;
pub mod prometheus_server;
pub mod receivers;
pub mod tools;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const AGENT: &str = env!("CARGO_BIN_EXE_netagent");

/// The traffic generator (tools/src/bin/netagent-testgen), built if need be
/// and found by [`tools`].
pub fn testgen_exe() -> &'static str {
    tools::tool_exe("netagent-testgen")
}

/// End-to-end tests share the kernel and the CPU: run them one at a time so
/// timing assertions and "nothing left loaded" checks see only their own work.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Missing privilege or tool: a visible skip locally, a failure in CI.
/// Returns true when the test should go on.
pub fn require(cond: bool, why: &str) -> bool {
    if cond {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("required in CI but unavailable: {why}");
    }
    eprintln!("SKIP: {why}");
    false
}

/// Root with BPF available (the agent's own check gives the details).
pub fn require_bpf() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    require(
        root && Path::new("/sys/kernel/btf/vmlinux").exists(),
        "needs root and kernel BTF to load BPF programs",
    )
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A comm (at most 15 bytes) unique to this test process: `prefix` and the
/// pid in hex.
pub fn unique_comm(prefix: &str) -> String {
    let comm = format!("{prefix}{:x}", std::process::id());
    assert!(comm.len() <= 15, "{comm} is longer than a comm");
    comm
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("netagent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running agent; killed on drop so a failing test leaves nothing behind.
pub struct Agent {
    pub child: Child,
    /// Where it serves HTTP: `ip:port`, 127.0.0.1 unless started with
    /// [`Agent::start_with_yaml_on`].
    pub ip: std::net::IpAddr,
    pub port: u16,
    _dir: TempDir,
    stderr: std::sync::Arc<Mutex<String>>,
}

impl Agent {
    /// Starts the agent with `targets` (name, comm) pairs; empty = all processes.
    pub fn start(targets: &[(&str, &str)]) -> Agent {
        let mut yaml = String::from("targets:\n");
        // YAML double-quoted scalars escape `\` and `"`.
        let q = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        for (name, comm) in targets {
            yaml += &format!(
                "  - name: \"{}\"\n    match_comm: \"{}\"\n",
                q(name),
                q(comm)
            );
        }
        if targets.is_empty() {
            yaml = "targets: []\n".into();
        }
        Self::start_with_yaml(&yaml)
    }

    /// Starts the agent with this YAML plus an `export.listen_addr` on a free port.
    pub fn start_with_yaml(yaml: &str) -> Agent {
        Self::start_with_yaml_on(yaml, std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// Like [`Agent::start_with_yaml`], serving HTTP on `ip` (an address of
    /// the root namespace) instead of 127.0.0.1.
    pub fn start_with_yaml_on(yaml: &str, ip: std::net::IpAddr) -> Agent {
        let dir = TempDir::new("agent");
        let port = free_port();
        let cfg = dir.0.join("config.yaml");
        let listen = std::net::SocketAddr::new(ip, port);
        std::fs::write(
            &cfg,
            format!("{yaml}export:\n  listen_addr: \"{listen}\"\n"),
        )
        .unwrap();
        let mut child = Command::new(AGENT)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start netagent");
        let stderr = std::sync::Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[agent] {line}");
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut agent = Agent {
            child,
            ip,
            port,
            _dir: dir,
            stderr,
        };
        agent.wait_ready();
        agent
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("agent exited early ({status}): {}", self.stderr());
            }
            // Serving at all means ready; a degraded agent answers 503.
            match http_get_at(self.ip, self.port, "/health", None) {
                Ok(_) => return,
                Err(e) if e.starts_with("HTTP/1.1 503") => return,
                Err(_) => {}
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("agent not ready within 20 s: {}", self.stderr());
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Classic text scrape.
    pub fn scrape(&self) -> String {
        http_get_at(self.ip, self.port, "/metrics", None).expect("scrape /metrics")
    }

    pub fn metrics(&self) -> Metrics {
        Metrics::parse(&self.scrape())
    }

    /// Sends `sig` and waits for the exit status (bounded).
    pub fn signal_and_wait(&mut self, sig: i32) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not exit after signal {sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Plain HTTP/1.1 GET on loopback; returns the body of a 200 response.
pub fn http_get(port: u16, path: &str, accept: Option<&str>) -> Result<String, String> {
    http_get_at(std::net::Ipv4Addr::LOCALHOST.into(), port, path, accept)
}

/// [`http_get`] to `ip:port`.
pub fn http_get_at(
    ip: std::net::IpAddr,
    port: u16,
    path: &str,
    accept: Option<&str>,
) -> Result<String, String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect((ip, port)).map_err(|e| e.to_string())?;
    // Generous: the soak scrapes hundreds of thousands of kernel entries on
    // a machine it keeps busy.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or("").to_string());
    }
    // The agent answers with a fixed Content-Length body (no chunking needed
    // for our tests); strip chunk framing if a future version uses it.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

/// `/health` as JSON whatever its status (200 ok, 503 degraded).
pub fn health(port: u16) -> (u16, serde_json::Value) {
    match http_get(port, "/health", None) {
        Ok(body) => (200, serde_json::from_str(&body).unwrap()),
        Err(_) => {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            write!(
                s,
                "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).unwrap();
            let (head, body) = raw.split_once("\r\n\r\n").unwrap();
            let code = head.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
            (code, serde_json::from_str(body).unwrap_or_default())
        }
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// Samples of one scrape: (metric name, sorted labels) -> value.
#[derive(Debug, Default)]
pub struct Metrics(pub BTreeMap<(String, BTreeMap<String, String>), f64>);

impl Metrics {
    /// Reads the classic text format (label values must not contain `,` or
    /// escaped quotes; ours in these tests do not).
    pub fn parse(text: &str) -> Self {
        let mut m = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => {
                    let body = rest.strip_suffix('}').unwrap();
                    let labels = body
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once("=\"").unwrap();
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (n.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            m.insert((name, labels), value.parse().unwrap());
        }
        Metrics(m)
    }

    /// Value of the series with exactly these labels (0 when absent).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.0
            .get(&(name.to_string(), want))
            .copied()
            .unwrap_or(0.0)
    }

    /// Every series of a metric name.
    pub fn series(&self, name: &str) -> Vec<(&BTreeMap<String, String>, f64)> {
        self.0
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, l), v)| (l, *v))
            .collect()
    }
}

/// Runs the traffic generator with `--comm comm` and returns its JSON summary.
pub fn testgen(comm: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(testgen_exe())
        .arg("--comm")
        .arg(comm)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run testgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("testgen output {stdout:?}: {e}"));
    assert!(out.status.success(), "testgen {args:?} failed: {v}");
    v
}

/// A testgen server, killed on drop; `ports` holds what it bound.
pub struct Server {
    child: Child,
    pub ports: serde_json::Value,
}

impl Server {
    pub fn start(comm: &str, args: &[&str]) -> Server {
        let mut child = Command::new(testgen_exe())
            .arg("--comm")
            .arg(comm)
            .arg("serve")
            .args(args)
            // A bound for servers a test forgets; soak runs set their own.
            .args(if args.contains(&"--max-seconds") {
                &[][..]
            } else {
                &["--max-seconds", "120"][..]
            })
            .stdout(Stdio::piped())
            .spawn()
            .expect("start testgen serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("serve said {line:?}: {e}"));
        Server { child, ports }
    }

    pub fn port(&self, key: &str) -> u16 {
        self.ports[key].as_u64().unwrap() as u16
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// IDs of loaded BPF programs whose names are ours (`on_*` from bpf/).
pub fn our_prog_ids() -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .expect("bpftool prog show");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|p| {
                    // The kernel keeps 15 bytes of a name; bpftool may show
                    // the full BTF name instead.
                    p["name"].as_str().is_some_and(|n| {
                        n.len() >= 10 && OUR_PROGRAMS.iter().any(|full| full.starts_with(n))
                    })
                })
                .filter_map(|p| p["id"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// Entries in the BPF map `name` (15 bytes at most) that process `pid`
/// holds open (found through its fds' fdinfo), read with bpftool; `None`
/// if it holds no such map.
pub fn map_entries(pid: u32, name: &str) -> Option<usize> {
    let bpftool = |args: &[&str]| -> Option<serde_json::Value> {
        let out = Command::new("bpftool").arg("-j").args(args).output().ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    let fdinfo = std::fs::read_dir(format!("/proc/{pid}/fdinfo")).ok()?;
    let id = fdinfo.flatten().find_map(|e| {
        let info = std::fs::read_to_string(e.path()).ok()?;
        let id = info
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))?
            .trim()
            .to_string();
        let map = bpftool(&["map", "show", "id", &id])?;
        (map["name"].as_str() == Some(name)).then_some(id)
    })?;
    bpftool(&["map", "dump", "id", &id])?
        .as_array()
        .map(Vec::len)
}

/// Waits (up to 10 s) until the BPF map `name` of process `pid` is empty;
/// fails naming how many entries are left.
pub fn wait_map_empty(pid: u32, name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = map_entries(pid, name).unwrap_or_else(|| panic!("no map {name} in {pid}"));
        if left == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} entries left in {name}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// BPF programs process `pid` holds (through its descriptors' fdinfo):
/// (id, name as the kernel or bpftool shows it).
pub fn programs_of(pid: u32) -> Vec<(u64, String)> {
    let mut ids: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .into_iter()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .expect("bpftool prog show");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    ids.into_iter()
        .map(|id| {
            let name = v
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["id"].as_u64() == Some(id))
                .and_then(|p| p["name"].as_str())
                .unwrap_or("")
                .to_string();
            (id, name)
        })
        .collect()
}

/// The programs `netagent probe --json` (with `config`, if any) says the
/// agent uses on this kernel: those of every hook with status `used`.
pub fn probe_used_programs(config: Option<&Path>) -> Vec<String> {
    let mut cmd = Command::new(AGENT);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd
        .args(["probe", "--json"])
        .output()
        .expect("netagent probe");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "netagent probe --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut names: Vec<String> = v["hooks"]
        .as_array()
        .expect("hooks")
        .iter()
        .filter(|h| h["status"] == "used")
        .flat_map(|h| h["probes"].as_array().cloned().unwrap_or_default())
        .map(|p| p["program"].as_str().expect("program").to_string())
        .collect();
    names.sort();
    names
}

/// A program name as the kernel keeps it (15 bytes); bpftool may show the
/// full name from BTF instead, so both sides are cut before comparing.
pub fn kernel_prog_name(name: &str) -> &str {
    &name[..name.len().min(15)]
}

/// Program names in bpf/netagent.bpf.c (its parts in bpf/netagent/),
/// bpf/iface.bpf.c and bpf/node.bpf.c (of node.bpf.c only the variant this
/// kernel loads: on_mark_victim).
pub const OUR_PROGRAMS: [&str; 27] = [
    "on_tc_ingress",
    "on_tc_egress",
    "on_inet_sock_set_state",
    "on_tcp_retransmit_skb",
    "on_tcp_send_reset",
    "on_tcp_receive_reset",
    "on_sock_send_length",
    "on_sock_recv_length",
    "on_sendmsg4",
    "on_sendmsg6",
    "on_recvmsg4",
    "on_recvmsg6",
    "on_mark_victim",
    // Fallback message hooks (src/kernel/hooks.rs).
    "fx_inet_sendmsg",
    "fx_inet6_sendmsg",
    "fx_inet_recvmsg",
    "fx_inet6_recvmsg",
    "kp_inet_sendmsg",
    "krp_inet_sendmsg",
    "kp_inet6_sendmsg",
    "krp_inet6_sendmsg",
    "kp_inet_recvmsg",
    "krp_inet_recvmsg",
    "kp_inet6_recvmsg",
    "krp_inet6_recvmsg",
    "on_sys_enter",
    "on_sys_exit",
];

/// Pipes an exposition to `promtool check metrics`; panics with its output on failure.
pub fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A testgen process that reports on stdout one JSON line per step (ready,
/// done, ...): read them in order, wait for its exit with a bound; killed
/// on drop.
pub struct Stepper {
    pub child: Child,
    out: BufReader<std::process::ChildStdout>,
    /// From its first (ready) line.
    pub pid: u32,
}

impl Stepper {
    /// Spawns `cmd` (stdout is taken over) and reads its ready line, which
    /// must carry its pid.
    pub fn start(mut cmd: Command) -> Stepper {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start testgen");
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut s = Stepper { child, out, pid: 0 };
        let ready = s.line().expect("ready line");
        s.pid = ready["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("no pid in {ready}")) as u32;
        s
    }

    /// The next JSON line; None at EOF (the process died).
    pub fn line(&mut self) -> Option<serde_json::Value> {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        (!line.is_empty()).then(|| {
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("testgen said {line:?}: {e}"))
        })
    }

    /// Its exit status, within `within` or the test fails.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "testgen did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Stepper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
