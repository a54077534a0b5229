//! Series expiry (`limits.series_ttl_seconds`), with real traffic: the
//! series of a process that exited leave the exposition and OTLP after the
//! TTL and their kernel slots are reused; a quiet process that is still
//! alive keeps its series; a process name that comes back counts from zero
//! (over OTLP with a new start time).

mod common;
use common::receivers::OtlpReceiver;
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(2);

fn connects(m: &Metrics, process: &str) -> Option<f64> {
    m.series("netagent_connect_total")
        .into_iter()
        .find(|(l, _)| l["process"] == process)
        .map(|(_, v)| v)
}

/// Every exported line that names `process`.
fn lines_of(text: &str, process: &str) -> Vec<String> {
    let needle = format!("process=\"{process}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn series_of_exited_processes_expire_and_their_slots_are_reused() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let (a, b) = (unique_comm("nexa"), unique_comm("nexb"));
    // Two kernel series per map: A's and B's outbound series fill `flows`,
    // A's first two histograms (connect, then connection duration; the RTT
    // one is lost) fill `hists`. A's second run only gets slots if its
    // first ones were freed.
    let otlp = OtlpReceiver::grpc();
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: app-a\n    match_comm: \"{a}\"\n  - name: app-b\n    match_comm: \"{b}\"\n\
         limits:\n  max_series: 2\n  series_ttl_seconds: {}\n\
         otel:\n  endpoint: \"{}\"\n  protocol: grpc\n  metrics_interval_seconds: 0.3\n",
        TTL.as_secs(),
        otlp.endpoint()
    ));
    // A's OTLP connect points, in arrival order.
    let otlp_a = |r: &common::receivers::Received| -> Vec<(u64, u64, f64)> {
        r.points_named("netagent_connect_total")
            .into_iter()
            .filter(|p| p.attributes.contains(&("process".into(), "app-a".into())))
            .map(|p| (p.start_time_unix_nanos, p.time_unix_nanos, p.value))
            .collect()
    };
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    };
    let srv = Server::start(&unique_comm("nexs"), &["--tcp4", "0"]);
    let target = format!("127.0.0.1:{}", srv.port("tcp4"));
    let (n, m, k) = (7u64, 5u64, 3u64);

    // A: connects and exits.
    let tgt = target.as_str();
    testgen(&a, &["client", "--tcp4", tgt, "--connects", &n.to_string()]);
    let exited = Instant::now();
    // Then B: connects, closes, then stays alive and quiet (waits on stdin).
    let mut cmd = Command::new(testgen_exe());
    cmd.args(["--comm", &b, "hold", "--tcp", &target])
        .args(["--connections", &m.to_string(), "--max-seconds", "60"])
        .stdin(Stdio::piped());
    let mut holder = Stepper::start(cmd);
    let mut stdin = holder.child.stdin.take().expect("stdin");
    writeln!(stdin, "close").unwrap();
    assert_eq!(holder.line().expect("close done")["command"], "close");

    let before = agent.metrics_when(|x| {
        connects(x, "app-a") == Some(n as f64) && connects(x, "app-b") == Some(m as f64)
    });
    assert!(exited.elapsed() < TTL, "too slow to see A before its TTL");
    assert_eq!(connects(&before, "app-a"), Some(n as f64));
    assert_eq!(connects(&before, "app-b"), Some(m as f64));
    let lost = |x: &Metrics| x.get("netagent_events_lost_total", &[("reason", "flow_map_full")]);
    assert_eq!(lost(&before), 0.0, "both series fit");
    let connect_hist = |x: &Metrics, process: &str| {
        x.sum(
            "netagent_tcp_connect_duration_seconds_count",
            &[("process", process)],
        )
    };
    assert_eq!(connect_hist(&before, "app-a"), n as f64);

    // After the TTL (plus a scrape) A's series are gone, B's are kept.
    let after = agent.metrics_when(|x| connects(x, "app-a").is_none());
    assert!(
        exited.elapsed() >= TTL,
        "A expired {:?} after it exited, before the TTL",
        exited.elapsed()
    );
    let text = agent.scrape();
    assert_eq!(
        lines_of(&text, "app-a"),
        Vec::<String>::new(),
        "A's series left"
    );
    assert_eq!(
        connects(&after, "app-b"),
        Some(m as f64),
        "B is alive: kept"
    );
    assert!(!lines_of(&text, "app-b").is_empty());
    let expired =
        |x: &Metrics, family: &str| x.get("netagent_series_expired_total", &[("family", family)]);
    assert_eq!(expired(&after, "flows"), 1.0, "A's one flow series");
    assert_eq!(expired(&after, "histograms"), 2.0, "A's two histograms");
    // OTLP: A was pushed with its count; pushes after the expiry leave it out.
    let gone_at = unix_now();
    let first = otlp_a(&otlp.received());
    let &(first_start, _, first_value) = first.last().expect("A pushed over OTLP");
    assert_eq!(first_value, n as f64);
    let pushes = otlp.received().requests;
    let later = otlp.wait_for(Duration::from_secs(10), |r| r.requests >= pushes + 2);
    assert!(
        later.requests >= pushes + 2,
        "no OTLP push after the expiry"
    );
    let after_expiry: Vec<_> = otlp_a(&later)
        .into_iter()
        .filter(|p| p.1 > gone_at)
        .collect();
    assert_eq!(after_expiry, vec![], "A left OTLP");

    // A again: it gets the freed slot and counts from zero.
    testgen(&a, &["client", "--tcp4", tgt, "--connects", &k.to_string()]);
    let again = agent.metrics_when(|x| connects(x, "app-a").is_some());
    assert_eq!(connects(&again, "app-a"), Some(k as f64), "from zero");
    assert_eq!(lost(&again), 0.0, "A's new series found a free slot");
    assert_eq!(
        connect_hist(&again, "app-a"),
        k as f64,
        "and a histogram slot"
    );
    assert_eq!(connects(&again, "app-b"), Some(m as f64));
    // Over OTLP (cumulative): from zero, with a start after the expiry.
    let back = otlp.wait_for(Duration::from_secs(10), |r| {
        otlp_a(r).iter().any(|p| p.1 > gone_at)
    });
    let &(start, _, value) = otlp_a(&back).last().unwrap();
    assert_eq!(value, k as f64);
    assert!(start > first_start && start >= gone_at, "a new start time");

    // B stays kept for as long as it lives, however quiet.
    std::thread::sleep(2 * TTL);
    assert_eq!(connects(&agent.metrics(), "app-b"), Some(m as f64));
    // End of input: B exits.
    drop(stdin);
    holder.wait(Duration::from_secs(10));
}

/// A child process killed on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `testgen hold` under `comm`: one connection, closed at once; the
/// process stays until its stdin closes.
fn quiet_holder(comm: &str, target: &str) -> (Stepper, std::process::ChildStdin) {
    let mut cmd = Command::new(testgen_exe());
    cmd.args([
        "--comm",
        comm,
        "hold",
        "--tcp",
        target,
        "--max-seconds",
        "60",
    ])
    .stdin(Stdio::piped());
    let mut holder = Stepper::start(cmd);
    let mut stdin = holder.child.stdin.take().expect("stdin");
    writeln!(stdin, "close").unwrap();
    assert_eq!(holder.line().expect("close done")["command"], "close");
    (holder, stdin)
}

#[test]
fn dns_and_delay_accounting_series_of_exited_processes_expire() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let (a, b) = (unique_comm("nexa"), unique_comm("nexb"));
    let mut dns = Command::new(testgen_exe())
        .args([
            "--comm",
            &unique_comm("nexd"),
            "dns-serve",
            "--bind",
            "127.0.0.1",
        ])
        .args(["--port", "0", "--zone", "exp.test=A:127.0.0.9"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("dns-serve");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(dns.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _dns = Killed(dns);
    let ready: serde_json::Value = serde_json::from_str(&line).expect("dns-serve line");
    let port = ready["udp"].as_u64().expect("udp port");
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: app-a\n    match_comm: \"{a}\"\n  - name: app-b\n    match_comm: \"{b}\"\n\
         dns:\n  ports: [{port}]\n\
         delay_accounting:\n  interval_seconds: 0.2\n\
         limits:\n  series_ttl_seconds: {}\n",
        TTL.as_secs()
    ));
    let srv = Server::start(&unique_comm("nexs"), &["--tcp4", "0"]);
    let target = format!("127.0.0.1:{}", srv.port("tcp4"));
    let server = format!("127.0.0.1:{port}");
    let query = |comm: &str, count: u32| {
        let n = count.to_string();
        let args = ["dns-query", "--server", &server, "--name", "exp.test"];
        testgen(comm, &[&args[..], &["--count", &n]].concat());
    };
    let requests =
        |x: &Metrics, process: &str| x.sum("netagent_dns_requests_total", &[("process", process)]);
    let delays = |x: &Metrics, process: &str| {
        x.series("netagent_cpu_delay_seconds_total")
            .iter()
            .filter(|(l, _)| l["process"] == process)
            .count()
    };

    // B lives (quietly) the whole test; a short-lived process under its
    // name asks twice. A lives until delay accounting saw it, asks three
    // times, and exits.
    let (mut b_holder, b_stdin) = quiet_holder(&b, &target);
    query(&b, 2);
    let (mut a_holder, a_stdin) = quiet_holder(&a, &target);
    query(&a, 3);
    let seen = agent.metrics_when(|x| {
        requests(x, "app-a") == 3.0 && requests(x, "app-b") == 2.0 && delays(x, "app-a") == 1
    });
    assert_eq!(requests(&seen, "app-a"), 3.0);
    assert_eq!(delays(&seen, "app-a"), 1, "delay accounting saw A");
    drop(a_stdin);
    a_holder.wait(Duration::from_secs(10));
    let exited = Instant::now();

    let after = agent.metrics_when(|x| !agent_names(x, "app-a"));
    assert!(exited.elapsed() >= TTL, "expired before the TTL");
    assert!(!agent_names(&after, "app-a"), "A's series left");
    let expired = |family: &str| after.get("netagent_series_expired_total", &[("family", family)]);
    assert_eq!(expired("dns"), 2.0, "A's request and duration series");
    assert_eq!(expired("delay_accounting"), 1.0, "A's delay totals");
    assert_eq!(requests(&after, "app-b"), 2.0, "B's name is alive: kept");
    assert_eq!(delays(&after, "app-b"), 1);
    drop(b_stdin);
    b_holder.wait(Duration::from_secs(10));
}

/// Whether any series of the DNS or delay families names `process`.
fn agent_names(m: &Metrics, process: &str) -> bool {
    [
        "netagent_dns_requests_total",
        "netagent_dns_request_duration_seconds_count",
        "netagent_cpu_delay_seconds_total",
        "netagent_disk_delay_seconds_total",
    ]
    .iter()
    .any(|f| m.series(f).iter().any(|(l, _)| l["process"] == process))
}

#[test]
fn a_socket_that_outlives_its_owners_name_counts_into_a_new_series() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let a = unique_comm("nexa");
    let agent = Agent::start_with_yaml(&format!(
        "targets:\n  - name: app-a\n    match_comm: \"{a}\"\n\
         limits:\n  series_ttl_seconds: {}\n",
        TTL.as_secs()
    ));
    let srv = Server::start(&unique_comm("nexs"), &["--udp4", "0"]);
    let target = format!("127.0.0.1:{}", srv.port("udp4"));
    let mut cmd = Command::new(testgen_exe());
    cmd.args([
        "--comm",
        &a,
        "udp-hold",
        "--udp",
        &target,
        "--max-seconds",
        "60",
    ])
    .stdin(Stdio::piped());
    let mut holder = Stepper::start(cmd);
    let mut stdin = holder.child.stdin.take().expect("stdin");
    let mut command = |c: &str| {
        writeln!(stdin, "{c}").unwrap();
        assert_eq!(holder.line().expect("command done")["command"], c);
    };
    let udp = |x: &Metrics| {
        x.series("netagent_connect_total")
            .into_iter()
            .find(|(l, _)| l["process"] == "app-a" && l["proto"] == "udp")
            .map(|(_, v)| v)
    };

    command("send 4");
    assert_eq!(udp(&agent.metrics_when(|x| udp(x) == Some(4.0))), Some(4.0));
    // The process takes another name: no task is called `a` any more, but
    // its socket (and its cached series slot) lives on.
    command(&format!("rename {}", unique_comm("nexz")));
    let renamed = Instant::now();
    let gone = agent.metrics_when(|x| udp(x).is_none());
    assert_eq!(udp(&gone), None, "A's series expired");
    assert!(renamed.elapsed() >= TTL);
    assert!(gone.get("netagent_series_expired_total", &[("family", "flows")]) >= 1.0);
    // The socket's next datagrams find its slot freed (a new generation):
    // they count in a new series of its owner, from zero.
    command("send 3");
    let back = agent.metrics_when(|x| udp(x).is_some());
    assert_eq!(udp(&back), Some(3.0), "a new series, from zero");
    drop(stdin);
    holder.wait(Duration::from_secs(10));
}
