//! Sockets older than the agent (collect/preexisting.rs, bpf/netagent/seed.c):
//! connections opened before it starts are active at once, and their later
//! bytes and closes count exactly; a listener of another network namespace
//! opened before it starts gets its accepts attributed; a restart under
//! connection churn keeps the active count, leaves nothing of the old agent
//! loaded, and neither double counts nor leaks socket state.

mod common;
use common::netns::{cleanup_stale, testgen_in, NetnsPair, NsServer};
use common::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Comms of this test process only (see tests/tcp_health.rs).
fn cli() -> &'static str {
    static C: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    C.get_or_init(|| unique_comm("prcli"))
}

fn srv() -> &'static str {
    static S: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    S.get_or_init(|| unique_comm("prsrv"))
}

fn churn() -> &'static str {
    static S: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    S.get_or_init(|| unique_comm("prchn"))
}

fn targets() -> [(&'static str, &'static str); 3] {
    [("cli", cli()), ("srv", srv()), ("churn", churn())]
}

/// `testgen hold`: N connections opened now, used and closed on command.
struct Holder(Stepper);

impl Holder {
    fn start(comm: &str, target: &str, conns: u64) -> Holder {
        Self::spawn(Command::new(testgen_exe()), comm, target, conns)
    }

    /// The same, in network namespace `ns`.
    fn start_in(ns: &str, comm: &str, target: &str, conns: u64) -> Holder {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, testgen_exe()]);
        Self::spawn(cmd, comm, target, conns)
    }

    fn spawn(mut cmd: Command, comm: &str, target: &str, conns: u64) -> Holder {
        cmd.args(["--comm", comm, "hold", "--tcp", target, "--connections"])
            .arg(conns.to_string())
            .stdin(Stdio::piped());
        Holder(Stepper::start(cmd))
    }

    fn command(&mut self, line: &str) -> serde_json::Value {
        let stdin = self.0.child.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        self.0
            .line()
            .unwrap_or_else(|| panic!("hold died at {line:?}"))
    }

    /// Writes `bytes` on each connection; the total written.
    fn send(&mut self, bytes: u64) -> u64 {
        self.command(&format!("send {bytes}"))["sent"]
            .as_u64()
            .unwrap()
    }

    fn close(&mut self) {
        self.command("close");
        // End of input: hold exits 0.
        drop(self.0.child.stdin.take());
        assert!(self.0.wait(Duration::from_secs(10)).success());
    }
}

/// Sum of the series of `name` whose labels include all of `labels`.
fn sum(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.sum(name, labels)
}

fn conns(m: &Metrics, what: &str, process: &str, direction: &str) -> f64 {
    sum(
        m,
        &format!("netagent_tcp_connections_{what}"),
        &[("process", process), ("direction", direction)],
    )
}

fn bytes(m: &Metrics, what: &str, process: &str) -> f64 {
    sum(
        m,
        &format!("netagent_bytes_{what}_total"),
        &[("process", process)],
    )
}

fn lost(m: &Metrics) -> f64 {
    sum(m, "netagent_events_lost_total", &[])
}

/// Map ids a process holds (its fds' fdinfo).
fn maps_of(pid: u32) -> BTreeSet<u64> {
    fdinfo_ids(pid, "map_id:").into_iter().collect()
}

/// The agent's config: our targets, then `extra`.
fn config(extra: &str) -> String {
    let mut yaml = String::from("targets:\n");
    for (name, comm) in targets() {
        yaml += &format!("  - name: \"{name}\"\n    match_comm: \"{comm}\"\n");
    }
    yaml + extra
}

#[test]
fn connections_opened_before_the_start_are_active_at_once_and_count_exactly() {
    let _g = serial();
    if !require_bpf() || !require(have("bpftool"), "bpftool not installed") {
        return;
    }
    seeded_connections_count_exactly("");
}

/// The same with the untyped message hooks (TCP state in the preallocated
/// `tcp_socks_pre`, which the iterator then seeds).
#[test]
fn connections_opened_before_the_start_count_exactly_through_the_syscall_hooks() {
    let _g = serial();
    if !require_bpf() || !require(have("bpftool"), "bpftool not installed") {
        return;
    }
    seeded_connections_count_exactly(
        "debug:\n  disable_probes: [\"messages:tracepoint\", \"messages:fexit\", \"messages:kprobe\"]\n",
    );
}

fn seeded_connections_count_exactly(extra: &str) {
    let untyped = !extra.is_empty();
    let server = Server::start(srv(), &["--tcp4", "0", "--sink"]);
    let target = format!("127.0.0.1:{}", server.port("tcp4"));
    let mut held = Holder::start(cli(), &target, 30);

    let spawned = Instant::now();
    let agent = Agent::start_with_yaml(&config(extra));
    let ready = spawned.elapsed();
    // Seeding happens before the agent serves: the first scrape is right.
    let m = agent.metrics();
    let first = spawned.elapsed();
    eprintln!("agent serving after {ready:?}; first scrape done after {first:?}");
    for (process, dir) in [("cli", "outbound"), ("srv", "inbound")] {
        assert_eq!(conns(&m, "active", process, dir), 30.0, "{process} active");
        assert_eq!(conns(&m, "seeded_total", process, dir), 30.0, "{process}");
        assert_eq!(conns(&m, "opened_total", process, dir), 0.0, "{process}");
        // Their last payload is taken as the start (never idle too early):
        // not idle before tcp.idle_after_seconds (60) has passed since.
        assert_eq!(conns(&m, "idle", process, dir), 0.0, "{process} idle");
    }
    assert!(
        first - ready < Duration::from_secs(2),
        "active was right {:?} after the start",
        first - ready
    );
    assert_eq!(
        sum(
            &m,
            "netagent_tcp_listen_info",
            &[("process", "srv"), ("listen_addr", "127.0.0.1")]
        ),
        1.0
    );

    // Bytes on them after the start count exactly, on both ends.
    assert_eq!(held.send(1000), 30_000);
    let m = agent.metrics_when(|m| {
        bytes(m, "sent", "cli") >= 30_000.0 && (untyped || bytes(m, "received", "srv") >= 30_000.0)
    });
    assert_eq!(bytes(&m, "sent", "cli"), 30_000.0);
    assert_eq!(bytes(&m, "received", "cli"), 0.0);
    if untyped {
        // The server's threads were blocked in read() since before the
        // start: hooks that pair a call's entry with its exit (kprobes,
        // syscalls) miss a call whose entry came first. The next ones count.
        std::thread::sleep(Duration::from_millis(300)); // the first reads settle
        let before = bytes(&agent.metrics(), "received", "srv");
        assert!(before < 30_000.0, "{before}");
        assert_eq!(held.send(1000), 30_000);
        let m = agent.metrics_when(|m| bytes(m, "received", "srv") >= before + 30_000.0);
        assert_eq!(bytes(&m, "sent", "cli"), 60_000.0);
        assert_eq!(bytes(&m, "received", "srv"), before + 30_000.0);
    } else {
        assert_eq!(bytes(&m, "received", "srv"), 30_000.0);
    }

    // Their closes count; their lifetime is unknown, so none is observed.
    held.close();
    let m = agent.metrics_when(|m| conns(m, "closed_total", "srv", "inbound") >= 30.0);
    for (process, dir) in [("cli", "outbound"), ("srv", "inbound")] {
        assert_eq!(conns(&m, "closed_total", process, dir), 30.0, "{process}");
        assert_eq!(conns(&m, "active", process, dir), 0.0, "{process}");
        assert_eq!(
            sum(
                &m,
                "netagent_connection_duration_seconds_count",
                &[("process", process)]
            ),
            0.0
        );
    }
    assert_eq!(lost(&m), 0.0);
    // Only the listener's state is left; none once it closes.
    let pid = agent.child.id();
    let socks = if untyped {
        "tcp_socks_pre"
    } else {
        "tcp_socks"
    };
    assert_eq!(map_entries(pid, socks), Some(1));
    drop(server);
    wait_map_empty(pid, socks);
    assert_eq!(map_entries(pid, "listeners"), Some(0));
}

#[test]
fn a_listener_of_another_namespace_opened_before_the_start_is_seeded() {
    let _g = serial();
    if !require_bpf() || !netns::require_netns() {
        return;
    }
    cleanup_stale();
    let net = NetnsPair::new("preseed");
    let server = NsServer::start(&net, &net.a, srv(), &["--tcp4", "0", "--sink"]);
    let port = server.port("tcp4");
    let target = format!("{}:{port}", net.a_ip);
    // Three connections from b to a, also older than the agent.
    let mut held = Holder::start_in(&net.b, cli(), &target, 3);

    let agent = Agent::start(&targets());
    let m = agent.metrics();
    let p = port.to_string();
    let a_ip = net.a_ip.to_string();
    assert_eq!(
        sum(
            &m,
            "netagent_tcp_listen_info",
            &[("process", "srv"), ("listen_addr", &a_ip), ("port", &p)]
        ),
        1.0,
        "the listener in {} is seeded",
        net.a
    );
    assert_eq!(conns(&m, "active", "srv", "inbound"), 3.0);
    assert_eq!(conns(&m, "active", "cli", "outbound"), 3.0);

    // Accepts after the start: attributed to the listener's owner.
    let (code, out) = testgen_in(
        &net,
        &net.b,
        cli(),
        &["client", "--tcp4", &target, "--connects", "5"],
    );
    assert_eq!(code, 0, "{out}");
    let accepted = |m: &Metrics| {
        sum(
            m,
            "netagent_tcp_connections_accepted_total",
            &[("process", "srv"), ("port", &p)],
        )
    };
    let m = agent
        .metrics_when(|m| accepted(m) >= 5.0 && conns(m, "closed_total", "srv", "inbound") >= 5.0);
    assert_eq!(accepted(&m), 5.0);
    assert_eq!(conns(&m, "opened_total", "srv", "inbound"), 5.0);
    assert_eq!(conns(&m, "closed_total", "srv", "inbound"), 5.0);
    assert_eq!(conns(&m, "active", "srv", "inbound"), 3.0);

    held.close();
    let m = agent.metrics_when(|m| conns(m, "closed_total", "srv", "inbound") >= 8.0);
    for (process, dir) in [("cli", "outbound"), ("srv", "inbound")] {
        assert_eq!(conns(&m, "seeded_total", process, dir), 3.0, "{process}");
        assert_eq!(conns(&m, "opened_total", process, dir), 5.0, "{process}");
        assert_eq!(conns(&m, "closed_total", process, dir), 8.0, "{process}");
        assert_eq!(conns(&m, "active", process, dir), 0.0, "{process}");
    }
    assert_eq!(lost(&m), 0.0);
}

#[test]
fn a_restart_under_churn_keeps_the_count_and_leaks_nothing() {
    let _g = serial();
    if !require_bpf() || !require(have("bpftool"), "bpftool not installed") {
        return;
    }
    let server = Server::start(srv(), &["--tcp4", "0", "--sink"]);
    let target = format!("127.0.0.1:{}", server.port("tcp4"));
    let mut held = Holder::start(cli(), &target, 30);
    let mut old = Agent::start(&targets());
    let m = old.metrics();
    assert_eq!(conns(&m, "active", "cli", "outbound"), 30.0);
    let old_pid = old.child.id();
    let old_progs: BTreeSet<u64> = programs_of(old_pid).iter().map(|(id, _)| *id).collect();
    let old_maps = maps_of(old_pid);
    assert!(!old_progs.is_empty() && !old_maps.is_empty());

    // Connections all through the restart, so that some close before the
    // new agent's walk, some during it and some after it: short ones
    // (`load`, closed at once with a reset) and some that live ~0.1 s
    // (a `hold` of 3 at a time), open while the walk runs.
    let load = Command::new(testgen_exe())
        .args(["--comm", churn(), "load", "--tcp", &target])
        .args(["--rate", "200", "--seconds", "4", "--threads", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start testgen load");
    let stop = Instant::now() + Duration::from_secs(4);
    let holds = std::thread::spawn({
        let target = target.clone();
        move || {
            let mut n = 0;
            while Instant::now() < stop {
                let mut h = Holder::start(churn(), &target, 3);
                std::thread::sleep(Duration::from_millis(100));
                h.close();
                n += 3;
            }
            n
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    assert!(old.signal_and_wait(libc::SIGTERM).success());
    drop(old);
    let new = Agent::start(&targets());
    let out = load.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let held_churn = holds.join().unwrap();

    // Nothing of the old agent is left.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let progs: BTreeSet<u64> = bpftool_programs().into_iter().map(|(id, _)| id).collect();
        let maps: BTreeSet<u64> = bpftool_maps().into_iter().map(|(id, _)| id).collect();
        let left_p: Vec<_> = progs.intersection(&old_progs).collect();
        let left_m: Vec<_> = maps.intersection(&old_maps).collect();
        if left_p.is_empty() && left_m.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old agent's programs {left_p:?} and maps {left_m:?} are still loaded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The churn's connections are all closed: whatever the new agent saw
    // of them (opened live or seeded) it saw closed, once.
    let m = new.metrics_when(|m| {
        conns(m, "active", "churn", "outbound") == 0.0
            && conns(m, "active", "srv", "inbound") == 30.0
    });
    assert_eq!(conns(&m, "active", "cli", "outbound"), 30.0);
    assert_eq!(conns(&m, "seeded_total", "cli", "outbound"), 30.0);
    assert_eq!(conns(&m, "active", "srv", "inbound"), 30.0);
    assert_eq!(conns(&m, "active", "churn", "outbound"), 0.0);
    let churned = conns(&m, "opened_total", "churn", "outbound")
        + conns(&m, "seeded_total", "churn", "outbound");
    assert_eq!(
        conns(&m, "closed_total", "churn", "outbound"),
        churned,
        "every churn connection the new agent saw open, it saw closed once"
    );
    eprintln!(
        "churn connections seen by the new agent: {churned} ({} seeded); {held_churn} held ~0.1 s",
        conns(&m, "seeded_total", "churn", "outbound").abs()
    );
    assert!(churned > 0.0, "the churn went on after the restart");
    assert_eq!(lost(&m), 0.0);
    // Socket state: the 30 held connections, their 30 accepted ends and the
    // listener; nothing of the churn.
    let pid = new.child.id();
    assert_eq!(map_entries(pid, "tcp_socks"), Some(61));

    // Counts after the restart are exact for the traffic after it.
    assert_eq!(held.send(500), 15_000);
    let m = new.metrics_when(|m| bytes(m, "received", "srv") >= 15_000.0);
    assert_eq!(bytes(&m, "sent", "cli"), 15_000.0);
    assert_eq!(bytes(&m, "received", "srv"), 15_000.0);
    held.close();
    let m = new.metrics_when(|m| conns(m, "active", "srv", "inbound") == 0.0);
    assert_eq!(conns(&m, "closed_total", "cli", "outbound"), 30.0);
    assert_eq!(conns(&m, "active", "cli", "outbound"), 0.0);
    assert_eq!(conns(&m, "active", "srv", "inbound"), 0.0);
    assert_eq!(map_entries(pid, "tcp_socks"), Some(1));
}

/// Holds BPF run-time statistics on (BPF_ENABLE_STATS) while it lives:
/// the kernel turns them off when the descriptor closes.
struct RunStats(#[allow(dead_code)] std::os::fd::OwnedFd);

impl RunStats {
    fn enable() -> RunStats {
        const BPF_ENABLE_STATS: libc::c_long = 32;
        let attr = [0u32; 2]; // type = BPF_STATS_RUN_TIME (0)
                              // SAFETY: bpf(2) reads `attr` (size given) and returns a new fd.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                attr.as_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        assert!(
            fd >= 0,
            "BPF_ENABLE_STATS: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: the kernel just gave us this descriptor.
        RunStats(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) })
    }
}

/// (run_cnt, run_time_ns) of a loaded program.
fn run_stats(prog_id: u64) -> (u64, u64) {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show", "id", &prog_id.to_string()])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["run_cnt"].as_u64().unwrap_or(0),
        v["run_time_ns"].as_u64().unwrap_or(0),
    )
}

/// One walk over a thousand tracked connections (two thousand sockets):
/// exact at that size too, and what it costs in BPF run time.
#[test]
fn seeding_a_thousand_connections_is_exact_and_its_cost_is_known() {
    let _g = serial();
    if !require_bpf() || !require(have("bpftool"), "bpftool not installed") {
        return;
    }
    let server = Server::start(srv(), &["--tcp4", "0", "--sink"]);
    let target = format!("127.0.0.1:{}", server.port("tcp4"));
    let held = Holder::start(cli(), &target, 1000);
    let stats = RunStats::enable();
    let agent = Agent::start(&targets());
    let m = agent.metrics();
    assert_eq!(conns(&m, "active", "cli", "outbound"), 1000.0);
    assert_eq!(conns(&m, "active", "srv", "inbound"), 1000.0);
    let seed = programs_of(agent.child.id())
        .into_iter()
        .find(|(_, n)| n.starts_with("seed_tcp_socket"))
        .expect("the seeding iterator is loaded");
    let (runs, ns) = run_stats(seed.0);
    drop(stats);
    // One run per TCP socket of the namespace (other processes' too) and
    // one at the end of the walk.
    assert!(runs >= 2002, "{runs} runs");
    eprintln!(
        "seeding walk: {runs} runs (TCP sockets in the namespace + 1), {} us BPF time, {} ns a run",
        ns / 1000,
        ns / runs
    );
    drop(held);
}
