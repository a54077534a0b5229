//! OOM kills end to end: processes in a memory-limited cgroup allocate past
//! the limit; the kernel's OOM killer kills one, and the agent counts it
//! exactly once, for the victim (not the task that ran out of memory).

mod common;
use common::cgroup::{memory_limited, owner, Cgroups};
use common::*;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

/// A testgen child, killed on drop.
/// Starts `alloc` and waits for its ready line (it has joined the cgroups).
fn alloc(comm: &str, join: &[std::path::PathBuf], args: &[&str]) -> Stepper {
    let mut cmd = Command::new(testgen_exe());
    cmd.args(["--comm", comm, "alloc"]).args(args);
    for dir in join {
        cmd.arg("--cgroup").arg(dir);
    }
    Stepper::start(cmd)
}

/// Polls until `ok` holds for a scrape (bounded).
fn eventually(agent: &Agent, what: &str, ok: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = agent.metrics();
        if ok(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {:?}",
            m.series("netagent_oom_kills_total")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn kills(m: &Metrics, process: &str) -> f64 {
    m.series("netagent_oom_kills_total")
        .iter()
        .filter(|(l, _)| l["process"] == process)
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn a_process_over_its_memory_limit_is_counted_once_as_the_victim() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let agent = Agent::start(&[]);
    eventually(&agent, "probe attached", |m| {
        m.get(
            "netagent_probe_up",
            &[
                ("feature", "oom_kills"),
                ("probe", "tracepoint/oom:mark_victim"),
            ],
        ) == 1.0
    });
    let mut cg = Cgroups::default();
    let Some(limited) = memory_limited(&mut cg, "oom", 64 * MIB) else {
        require(false, "no cgroup hierarchy with a memory controller");
        return;
    };
    eprintln!(
        "memory limit via cgroup {}: {:?}",
        limited.version, limited.join
    );

    // One process alone: it runs out of memory and is itself the victim.
    let mut alone = alloc("oom-alone", &limited.join, &["--mib", "200"]);
    let status = alone.wait(Duration::from_secs(30));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");

    // Two processes: the hog holds 40 MiB and sleeps, the trigger then
    // allocates 40 MiB more. The OOM killer runs in the trigger's context
    // and picks the hog (largest, oom_score_adj 1000); the trigger finishes.
    let mut hog = alloc(
        "oom-hog",
        &limited.join,
        &[
            "--mib",
            "40",
            "--oom-score-adj",
            "1000",
            "--hold-seconds",
            "60",
        ],
    );
    let held = hog.line().expect("hog allocated");
    assert_eq!(held["allocated_mib"], 40, "{held}");
    let mut trigger = alloc("oom-trigger", &limited.join, &["--mib", "40"]);
    let status = hog.wait(Duration::from_secs(30));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "hog: {status}");
    let done = trigger.line().expect("the trigger finished its allocation");
    assert_eq!(done["allocated_mib"], 40, "{done}");
    assert!(trigger.wait(Duration::from_secs(30)).success());

    // The container of a cgroup created moments ago resolves at the
    // resolver's next walk of the hierarchy (at most one per second).
    let container = limited.container.as_str();
    let m = eventually(&agent, "both kills counted", |m| {
        ["oom-alone", "oom-hog"]
            .iter()
            .all(|p| m.get("netagent_oom_kills_total", &owner(p, container)) >= 1.0)
    });
    for victim in ["oom-alone", "oom-hog"] {
        assert_eq!(
            m.get("netagent_oom_kills_total", &owner(victim, container)),
            1.0,
            "{victim} in container {container:?}: {:?}",
            m.series("netagent_oom_kills_total")
        );
        assert_eq!(kills(&m, victim), 1.0, "{victim} counted exactly once");
    }
    assert_eq!(
        kills(&m, "oom-trigger"),
        0.0,
        "the allocating task was not the victim"
    );
    for reason in ["oom_map_full", "oom_victim_unknown"] {
        assert_eq!(
            m.get("netagent_events_lost_total", &[("reason", reason)]),
            0.0
        );
    }
}

#[test]
fn kills_beyond_the_map_capacity_are_counted_as_lost() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    // Room for one (process, container) key.
    let agent = Agent::start_with_yaml("targets: []\noom_kills:\n  max_series: 1\n");
    let mut cg = Cgroups::default();
    let Some(limited) = memory_limited(&mut cg, "oomcap", 32 * MIB) else {
        require(false, "no cgroup hierarchy with a memory controller");
        return;
    };
    for comm in ["oom-first", "oom-second", "oom-third"] {
        let mut g = alloc(comm, &limited.join, &["--mib", "200"]);
        let status = g.wait(Duration::from_secs(30));
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{comm}: {status}");
    }
    let m = eventually(&agent, "one counted, two lost", |m| {
        m.get("netagent_events_lost_total", &[("reason", "oom_map_full")]) >= 2.0
    });
    assert_eq!(kills(&m, "oom-first"), 1.0);
    assert_eq!(m.series("netagent_oom_kills_total").len(), 1);
    assert_eq!(
        m.get("netagent_events_lost_total", &[("reason", "oom_map_full")]),
        2.0
    );
}

#[test]
fn a_disabled_hook_reads_down_and_the_rest_keeps_running() {
    let _g = serial();
    if !require_bpf() {
        return;
    }
    let agent = Agent::start_with_yaml(
        "targets: []\ndebug:\n  disable_probes: [\"tracepoint/oom:mark_victim\"]\n",
    );
    let m = agent.metrics();
    assert_eq!(
        m.get(
            "netagent_probe_up",
            &[
                ("feature", "oom_kills"),
                ("probe", "tracepoint/oom:mark_victim")
            ]
        ),
        0.0
    );
    assert_eq!(
        m.get(
            "netagent_probe_up",
            &[
                ("feature", "connections"),
                ("probe", "tracepoint/sock:inet_sock_set_state")
            ]
        ),
        1.0
    );
    // Optional hook: /health stays ok (HTTP 200).
    let health = http_get(agent.port, "/health", None).expect("/health 200");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    assert!(
        agent.stderr().contains("OOM kills are not counted"),
        "{}",
        agent.stderr()
    );
}
