//! Delay accounting end to end: a CPU-bound process pinned to one core with
//! a competitor shows CPU delay growing, a process doing synchronous disk
//! I/O shows disk delay, both checked against the kernel's own per-process
//! figures (/proc/<pid>/schedstat, /proc/<pid>/stat) read by the test.

mod common;
use common::cgroup::{container_cgroup, owner, Cgroups};
use common::*;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const SYSCTL: &str = "/proc/sys/kernel/task_delayacct";
const SPIN: &str = "delay-spin";
const RIVAL: &str = "delay-rival";
const DISK: &str = "delay-disk";
/// Collection interval the agent runs with here.
const INTERVAL: f64 = 0.5;
/// Enough for one whole collection to start and finish after "now".
const ONE_COLLECTION: Duration = Duration::from_millis(1500);

/// Puts kernel.task_delayacct back to what it was, also on failure.
struct SysctlRestore(String);

impl SysctlRestore {
    fn save() -> Self {
        Self(std::fs::read_to_string(SYSCTL).expect("read task_delayacct"))
    }
}

impl Drop for SysctlRestore {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, self.0.trim());
    }
}

/// A testgen child, killed on drop.
/// `netagent-testgen --comm COMM ARGS...`, past its ready line.
fn start_gen(comm: &str, args: &[&str]) -> Stepper {
    let mut cmd = Command::new(testgen_exe());
    cmd.args(["--comm", comm]).args(args);
    Stepper::start(cmd)
}

/// Run-queue delay of a process's main thread in ns (schedstat field 2);
/// for a single-threaded process, what taskstats reports as cpu_delay_total.
fn run_delay_ns(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    s.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `delayacct_blkio_ticks` (field 42 of /proc/<pid>/stat): block I/O delay
/// in clock ticks, the kernel's own rounding (down) of blkio_delay_total.
fn blkio_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &s[s.rfind(')').unwrap() + 1..];
    // Fields after the comm start at field 3.
    after_comm
        .split_whitespace()
        .nth(42 - 3)
        .unwrap()
        .parse()
        .unwrap()
}

/// The highest CPU this process may run on: the spinners share it.
fn a_cpu() -> usize {
    // SAFETY: a zeroed cpu_set_t is valid; the kernel fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
            0
        );
        (0..libc::CPU_SETSIZE as usize)
            .rev()
            .find(|&c| libc::CPU_ISSET(c, &set))
            .unwrap()
    }
}

fn agent_yaml() -> String {
    format!(
        "targets:\n  - name: spinner\n    match_comm: {SPIN}\n  - name: disk-reader\n    match_comm: {DISK}\n\
         delay_accounting:\n  enable_sysctl: true\n  interval_seconds: {INTERVAL}\n"
    )
}

fn eventually(agent: &Agent, secs: u64, what: &str, ok: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let m = agent.metrics();
        if ok(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what} within {secs} s: {m:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn cpu_delay_of_a_pinned_process_with_a_competitor_grows_and_matches_schedstat() {
    let _g = serial();
    if !require_bpf()
        || !require(
            std::path::Path::new(SYSCTL).exists(),
            "no kernel.task_delayacct",
        )
    {
        return;
    }
    let _restore = SysctlRestore::save();
    let agent = Agent::start_with_yaml(&agent_yaml());
    let mut cgroups = Cgroups::default();
    let (container_dir, container) = container_cgroup(&mut cgroups, "delay")
        .map(|(d, id)| (Some(d), id))
        .unwrap_or((None, String::new()));
    let cpu = a_cpu().to_string();
    let mut spin_args = vec!["spin", "--cpu", &cpu, "--seconds", "10"];
    let dir = container_dir
        .as_ref()
        .map(|d| d.to_string_lossy().into_owned());
    if let Some(d) = &dir {
        spin_args.extend(["--cgroup", d]);
    }
    let mut spinner = start_gen(SPIN, &spin_args);
    let _rival = start_gen(RIVAL, &["spin", "--cpu", &cpu, "--seconds", "10"]);
    let labels = owner("spinner", &container);
    let cpu_delay = |m: &Metrics| m.get("netagent_cpu_delay_seconds_total", &labels);
    eventually(&agent, 10, "the spinner's series", |m| cpu_delay(m) > 0.0);

    // Exact: the agent's value was read between two readings of the
    // kernel's own counter for that process.
    let before = run_delay_ns(spinner.pid);
    std::thread::sleep(ONE_COLLECTION);
    let t1 = Instant::now();
    let m1 = agent.metrics();
    let after = run_delay_ns(spinner.pid);
    let v1 = cpu_delay(&m1);
    assert!(
        before as f64 / 1e9 - 1e-6 <= v1 && v1 <= after as f64 / 1e9 + 1e-6,
        "agent {v1} s outside the kernel's [{before}, {after}] ns"
    );
    assert_eq!(m1.get("netagent_delay_accounting_enabled", &[]), 1.0);

    // Growth: two busy processes on one core each wait about half the time.
    std::thread::sleep(Duration::from_secs(3));
    let m2 = agent.metrics();
    let wall = t1.elapsed().as_secs_f64();
    let grown = cpu_delay(&m2) - v1;
    // The two values were read up to one collection before their scrapes.
    let window = wall - INTERVAL - ONE_COLLECTION.as_secs_f64();
    eprintln!("cpu delay grew {grown:.3} s in {wall:.3} s of wall time (window >= {window:.3} s)");
    assert!(
        grown >= 0.25 * window,
        "cpu delay grew only {grown} s in {wall} s"
    );
    // Only targets are exported: the rival is not one.
    for (l, _) in m2.series("netagent_cpu_delay_seconds_total") {
        assert!(
            ["spinner", "disk-reader"].contains(&l["process"].as_str()),
            "{l:?}"
        );
    }

    // After the exit the total stays, unchanged.
    let status = spinner.wait(Duration::from_secs(20));
    assert!(status.success(), "{status}");
    std::thread::sleep(ONE_COLLECTION);
    let v3 = cpu_delay(&agent.metrics());
    std::thread::sleep(ONE_COLLECTION);
    let v4 = cpu_delay(&agent.metrics());
    assert!(
        v3 >= cpu_delay(&m2),
        "not monotonic: {v3} after {}",
        cpu_delay(&m2)
    );
    assert_eq!(v3, v4, "the total of an exited process changed");
}

#[test]
fn disk_delay_of_synchronous_io_is_counted_as_the_kernel_reports_it() {
    let _g = serial();
    if !require_bpf()
        || !require(
            std::path::Path::new(SYSCTL).exists(),
            "no kernel.task_delayacct",
        )
    {
        return;
    }
    let _restore = SysctlRestore::save();
    let agent = Agent::start_with_yaml(&agent_yaml());
    // On the real disk: O_DIRECT reads wait for the device every time.
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("netagent-diskio-{}.bin", std::process::id()));
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _remove = Remove(file.clone());
    let file_arg = file.to_string_lossy().into_owned();
    let mut disk = start_gen(
        DISK,
        &[
            "diskio",
            "--file",
            &file_arg,
            "--seconds",
            "2",
            "--hold-seconds",
            "30",
        ],
    );
    let done = disk.line().expect("I/O done line"); // I/O finished; the process now sleeps
    assert!(done["reads"].as_u64().unwrap() > 0, "{done}");

    let ticks = blkio_ticks(disk.pid);
    std::thread::sleep(ONE_COLLECTION);
    let m = agent.metrics();
    assert_eq!(blkio_ticks(disk.pid), ticks, "no I/O while holding");
    let labels = owner("disk-reader", "");
    let v = m.get("netagent_disk_delay_seconds_total", &labels);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    eprintln!(
        "disk delay {v:.4} s for {} O_DIRECT reads; kernel says {ticks} ticks",
        done["reads"]
    );
    assert!(v > 0.0, "no disk delay: {m:?}");
    // The kernel rounds the same nanoseconds down to ticks.
    let in_ticks = v * hz;
    assert!(
        in_ticks >= ticks as f64 - 1e-6 && in_ticks < ticks as f64 + 1.0,
        "agent {v} s vs kernel {ticks} ticks at {hz} Hz"
    );
}

#[test]
fn the_sysctl_is_switched_on_only_when_asked_and_back_off_at_exit() {
    let _g = serial();
    if !require_bpf()
        || !require(
            std::path::Path::new(SYSCTL).exists(),
            "no kernel.task_delayacct",
        )
    {
        return;
    }
    let _restore = SysctlRestore::save();
    std::fs::write(SYSCTL, "0").unwrap();

    let mut agent = Agent::start_with_yaml(&agent_yaml());
    eventually(&agent, 5, "enabled gauge", |m| {
        m.get("netagent_delay_accounting_enabled", &[]) == 1.0
    });
    assert_eq!(std::fs::read_to_string(SYSCTL).unwrap().trim(), "1");
    let status = agent.signal_and_wait(libc::SIGTERM);
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(SYSCTL).unwrap().trim(),
        "0",
        "the agent turned it on, so it turns it off"
    );

    let agent = Agent::start_with_yaml(&format!(
        "delay_accounting:\n  interval_seconds: {INTERVAL}\n"
    ));
    let m = eventually(&agent, 5, "first collection", |m| {
        m.get("netagent_delay_accounting_processes", &[]) > 0.0
    });
    assert_eq!(m.get("netagent_delay_accounting_enabled", &[]), 0.0);
    assert_eq!(
        std::fs::read_to_string(SYSCTL).unwrap().trim(),
        "0",
        "not asked"
    );
    assert!(
        agent.stderr().contains("kernel.task_delayacct is 0"),
        "{}",
        agent.stderr()
    );
}
