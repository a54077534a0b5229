//! Idle connections and resets by the kernel's reason, with real traffic:
//! connections held by `netagent-testgen hold` under known process names,
//! idle past a short `tcp.idle_after_seconds`, then used; resets from
//! closes with unread data and from SO_LINGER 0 closes, each counted with
//! the reason the running kernel gives (`unknown` for received ones, and
//! on kernels before 6.10 for all). Remote hosts are network namespaces
//! the tests create.

mod common;
use common::netns::{cleanup_stale, require_netns, NetnsPair, NsServer};
use common::*;
use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Comms of this test process only (see tests/tcp_health.rs).
fn client() -> &'static str {
    static C: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    C.get_or_init(|| unique_comm("nicli"))
}

fn server() -> &'static str {
    static S: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    S.get_or_init(|| unique_comm("nisrv"))
}

/// The agent, tracking the client and the server, with a 2 s idle threshold.
fn agent() -> Agent {
    agent_with("")
}

fn agent_with(more_yaml: &str) -> Agent {
    Agent::start_with_yaml(&format!(
        "targets:\n  - name: cli\n    match_comm: \"{}\"\n  - name: srv\n    match_comm: \"{}\"\n\
         tcp:\n  idle_after_seconds: {IDLE_AFTER_SECONDS}\n{more_yaml}",
        client(),
        server()
    ))
}

const IDLE_AFTER_SECONDS: u64 = 2;
/// Connections each test holds.
const N: u64 = 10;

/// `netagent-testgen hold`: connections held until told (stdin) to use or
/// close them; killed on drop.
struct Holder {
    steps: Stepper,
    stdin: ChildStdin,
    /// When the connections were all established.
    pub held_at: Instant,
}

impl Holder {
    /// Runs `prefix` (e.g. `ip netns exec NS`, or nothing) + testgen hold,
    /// under the client's comm, and waits until its connections are up.
    fn start(prefix: &[&str], target: &str, connections: u64) -> Holder {
        let n = connections.to_string();
        let mut argv: Vec<&str> = prefix.to_vec();
        argv.extend([
            testgen_exe(),
            "--comm",
            client(),
            "hold",
            "--tcp",
            target,
            "--connections",
            &n,
            "--max-seconds",
            "60",
        ]);
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]).stdin(Stdio::piped());
        // Stepper reads the first line ({"held":N,"pid":P}).
        let mut steps = Stepper::start(cmd);
        let held_at = Instant::now();
        let stdin = steps.child.stdin.take().expect("piped stdin");
        Holder {
            steps,
            stdin,
            held_at,
        }
    }

    /// Sends one command and waits until it is done.
    fn command(&mut self, c: &str) {
        writeln!(self.stdin, "{c}").unwrap();
        self.stdin.flush().unwrap();
        let done = self
            .steps
            .line()
            .unwrap_or_else(|| panic!("hold exited during {c}"));
        assert_eq!(done["command"], c, "{done}");
        assert_eq!(done["connections"], N, "{done}");
    }
}

fn owner<'a>(process: &'a str, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut l = vec![
        ("process", process),
        ("container", ""),
        ("container_id", ""),
        ("pod", ""),
        ("namespace", ""),
    ];
    l.extend_from_slice(more);
    l
}

/// The idle and active gauges of the client (outbound) and the server (inbound).
fn gauges(m: &Metrics) -> [f64; 4] {
    let g = |name: &str, p: &str, dir: &str| m.get(name, &owner(p, &[("direction", dir)]));
    [
        g("netagent_tcp_connections_idle", "cli", "outbound"),
        g("netagent_tcp_connections_idle", "srv", "inbound"),
        g("netagent_tcp_connections_active", "cli", "outbound"),
        g("netagent_tcp_connections_active", "srv", "inbound"),
    ]
}

fn sleep_until(t: Instant) {
    if let Some(d) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(d);
    }
}

/// The whole scenario on one holder: not idle at first, idle past the
/// threshold, not idle right after one exchange, idle again, and gone
/// once closed.
fn idle_then_used(agent: &Agent, mut h: Holder) {
    let n = N as f64;
    let idle_after = Duration::from_secs(IDLE_AFTER_SECONDS);
    let m = agent.metrics();
    assert!(
        h.held_at.elapsed() < idle_after,
        "too slow to see them fresh"
    );
    assert_eq!(
        gauges(&m),
        [0.0, 0.0, n, n],
        "fresh connections are not idle"
    );

    sleep_until(h.held_at + idle_after + Duration::from_millis(500));
    let m = agent.metrics();
    assert_eq!(
        gauges(&m),
        [n, n, n, n],
        "idle past the threshold, both ends: {:?}",
        m.series("netagent_tcp_connections_idle")
    );

    h.command("exchange");
    let used_at = Instant::now();
    let m = agent.metrics();
    assert!(used_at.elapsed() < idle_after, "too slow to see them used");
    assert_eq!(gauges(&m), [0.0, 0.0, n, n], "traffic on every connection");

    sleep_until(used_at + idle_after + Duration::from_millis(500));
    assert_eq!(gauges(&agent.metrics()), [n, n, n, n], "idle again");

    h.command("close");
    let m = agent.metrics_when(|m| gauges(m) == [0.0; 4]);
    assert_eq!(gauges(&m), [0.0; 4], "closed: neither active nor idle");
}

#[test]
fn ten_idle_connections_on_loopback_then_traffic() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let agent = agent();
    let srv = Server::start(server(), &["--tcp4", "0"]);
    let target = format!("127.0.0.1:{}", srv.port("tcp4"));
    idle_then_used(&agent, Holder::start(&[], &target, N));
}

/// With the raw syscall hooks the TCP state is the preallocated map's
/// (tcp_socks_pre) and payloads are seen at the system calls.
#[test]
fn ten_idle_connections_with_the_syscall_hooks() {
    let _g = serial();
    if !require_bpf() || !cfg!(target_arch = "x86_64") {
        return;
    }
    let agent = agent_with(
        "debug:\n  disable_probes: [\"messages:tracepoint\", \"messages:fexit\", \"messages:kprobe\"]\n",
    );
    let (_, h) = health(agent.port);
    let messages = h["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == "messages")
        .cloned()
        .unwrap();
    assert_eq!(messages["hook"], "syscalls", "{h}");
    let srv = Server::start(server(), &["--tcp4", "0"]);
    let target = format!("127.0.0.1:{}", srv.port("tcp4"));
    idle_then_used(&agent, Holder::start(&[], &target, N));
}

/// Client and server in two other namespaces, over IPv6: the kernel side
/// covers every namespace, and so do the idle connections.
#[test]
fn ten_idle_connections_between_namespaces_then_traffic() {
    let _g = serial();
    if !require_bpf() || !require_netns() {
        return;
    }
    cleanup_stale();
    let agent = agent();
    let net = NetnsPair::new("idle");
    let srv = NsServer::start(&net, &net.b, server(), &["--tcp6", "0"]);
    let target = format!("[{}]:{}", net.ip6(&net.b), srv.port("tcp6"));
    let h = Holder::start(&["ip", "netns", "exec", &net.a], &target, N);
    idle_then_used(&agent, h);
}

/// Whether the agent reads the kernel's reset reasons here (the variant
/// of the `tcp_send_reset` program `netagent probe` says it uses).
fn kernel_gives_reset_reasons() -> bool {
    let out = Command::new(AGENT)
        .args(["probe", "--json"])
        .output()
        .expect("netagent probe");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("probe --json: {e}: {out:?}"));
    let used = v["hooks"]
        .as_array()
        .expect("hooks")
        .iter()
        .find(|h| h["feature"] == "resets_sent" && h["status"] == "used")
        .unwrap_or_else(|| panic!("no hook used for resets_sent: {v}"));
    used["probes"][0]["program"] == "on_tcp_send_reset_reason"
}

#[test]
fn resets_are_counted_by_the_kernels_reason() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let reasons = kernel_gives_reset_reasons();
    // What Linux 6.10+ says for each close (include/net/rstreason.h):
    // a close with unread data, and a SO_LINGER {on, 0} close (via
    // tcp_disconnect) of an established connection.
    let (unread, linger) = if reasons {
        ("tcp_abort_on_close", "tcp_state")
    } else {
        ("unknown", "unknown")
    };
    let agent = agent();

    // The client closes N connections with the server's echo unread.
    let echo = Server::start(server(), &["--tcp4", "0"]);
    let mut h = Holder::start(&[], &format!("127.0.0.1:{}", echo.port("tcp4")), N);
    h.command("unread-close");

    // The server closes K accepted connections with SO_LINGER 0.
    let k = 4u64;
    let abort = Server::start(server(), &["--tcp6", "0", "--abort"]);
    let r = testgen(
        client(),
        &[
            "client",
            "--tcp6",
            &format!("[::1]:{}", abort.port("tcp6")),
            "--connects",
            &k.to_string(),
            "--wait-reset",
        ],
    );
    assert_eq!(r["tcp6"]["resets"], k, "{r}");

    let resets = |m: &Metrics| {
        let mut s: Vec<(String, f64)> = m
            .series("netagent_tcp_resets_total")
            .into_iter()
            .filter(|(l, _)| l["process"] == "cli" || l["process"] == "srv")
            .map(|(l, v)| {
                (
                    format!("{} {} {}", l["process"], l["direction"], l["reason"]),
                    v,
                )
            })
            .collect();
        s.sort_by(|a, b| a.0.cmp(&b.0));
        s
    };
    let mut want = vec![
        ("cli received unknown".to_string(), k as f64),
        (format!("cli sent {unread}"), N as f64),
        ("srv received unknown".to_string(), N as f64),
        (format!("srv sent {linger}"), k as f64),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    // The server's side of an aborted connection sees the reset in softirq,
    // maybe just after the client's close returned.
    let m = agent.metrics_when(|m| resets(m) == want);
    assert_eq!(
        resets(&m),
        want,
        "lost: {:?}",
        m.series("netagent_events_lost_total")
    );
    let lost: f64 = m
        .series("netagent_events_lost_total")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(lost, 0.0);
}
