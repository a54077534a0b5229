//! Delay accounting: how long processes waited for a CPU and for
//! synchronous block I/O, from the kernel's taskstats (see [`super::taskstats`]).
//!
//! Families:
//! - `netagent_cpu_delay_seconds_total{process,container}`: time runnable
//!   but waiting for a CPU (run-queue delay).
//! - `netagent_disk_delay_seconds_total{process,container}`: time waiting
//!   for synchronous block I/O to complete.
//! - `netagent_delay_accounting_enabled`: 1 while `kernel.task_delayacct`
//!   is on. While it is 0 the kernel does not time block I/O waits, so
//!   disk delays stop growing; CPU delays still do (measured on 6.18:
//!   they come from the scheduler's own run-queue statistics).
//! - `netagent_delay_accounting_processes`: processes read in the last
//!   collection.
//! - `netagent_delay_accounting_skipped_total{reason}`: process reads that
//!   did not happen: `max_processes` (over the cap), `query_failed`.
//!
//! A background thread collects every `interval_seconds`; scrapes only
//! copy the last result, so /metrics never waits for a walk over /proc.
//!
//! Values are per process (thread group): the kernel sums its live
//! threads and the threads that already exited. Counters stay monotonic
//! across exits: each (pid, start time) keeps its last reading, only the
//! growth is added to the (process, container) total, and the total stays
//! after the process is gone. A process counts from its start (its first
//! reading is added whole), so the growth between its last collection and
//! its exit is the only part not counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::taskstats::{Delays, Taskstats, TaskstatsError};
use crate::collect::containers::container_id;
use crate::collect::labels::{owner_labels, Labeler, ProcessNames};
use crate::config::DelayAccountingConfig;
use crate::kernel::abi::comm_bytes;
use crate::metrics::catalog;
use crate::metrics::{scalar_family, Family, Labels};

/// The sysctl that switches delay accounting on (off by default since 5.14).
pub const SYSCTL: &str = "/proc/sys/kernel/task_delayacct";

/// Reads a 0/1 sysctl; None when it cannot be read.
fn read_flag(path: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(path).ok()?;
    match text.trim() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// Turns `kernel.task_delayacct` back off on drop, if the agent turned it on.
struct SysctlGuard(Option<PathBuf>);

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            match std::fs::write(&path, "0") {
                Ok(()) => tracing::info!("kernel.task_delayacct turned back off"),
                Err(e) => tracing::warn!(error = %e, "cannot turn kernel.task_delayacct back off"),
            }
        }
    }
}

/// Turns the sysctl on when asked and allowed; warns when it stays off.
fn prepare_sysctl(path: &Path, enable: bool) -> SysctlGuard {
    match read_flag(path) {
        Some(true) => SysctlGuard(None),
        Some(false) if enable => match std::fs::write(path, "1") {
            Ok(()) => {
                tracing::info!("kernel.task_delayacct turned on (delay_accounting.enable_sysctl)");
                SysctlGuard(Some(path.to_path_buf()))
            }
            Err(e) => {
                tracing::warn!(
                    "cannot turn kernel.task_delayacct on ({e}; writing it needs root with \
                     CAP_SYS_ADMIN): netagent_disk_delay_seconds_total will read 0"
                );
                SysctlGuard(None)
            }
        },
        Some(false) => {
            tracing::warn!(
                "kernel.task_delayacct is 0: the kernel does not time block I/O waits, so \
                 netagent_disk_delay_seconds_total will read 0 (CPU delays are still counted). \
                 Enable it with `sysctl kernel.task_delayacct=1` (or boot with `delayacct`), or \
                 let the agent do it: delay_accounting.enable_sysctl: true"
            );
            SysctlGuard(None)
        }
        None => {
            tracing::warn!(
                "{} is unreadable: this kernel may lack delay accounting (CONFIG_TASK_DELAY_ACCT)",
                path.display()
            );
            SysctlGuard(None)
        }
    }
}

/// Per-(pid, start time) readings folded into monotonic per-label totals.
#[derive(Debug, Default)]
struct Totals {
    /// Last reading per live process.
    last: HashMap<(u32, u64), Delays>,
    /// (process, container) -> (cpu ns, blkio ns).
    totals: BTreeMap<(String, String), (u64, u64)>,
    /// Seen in the current round; the rest are gone at its end.
    seen: HashSet<(u32, u64)>,
    /// Distinct label pairs kept; beyond it new ones fold into `~other`.
    max_labels: usize,
    /// Rounds done, and per label pair the last round a process had it.
    round: u64,
    alive: HashMap<(String, String), u64>,
    /// A label pair without a process this many rounds expires (its total
    /// cannot change any more); None: never (`limits.series_ttl_seconds`).
    expire_after: Option<u64>,
    /// Label pairs expired so far.
    expired: u64,
}

impl Totals {
    fn new(max_labels: usize) -> Self {
        Self {
            max_labels,
            ..Self::default()
        }
    }

    /// Adds the growth since the last reading of this process.
    fn observe(&mut self, pid: u32, start: u64, label: (String, String), d: Delays) {
        let key = (pid, start);
        self.seen.insert(key);
        let last = self.last.entry(key).or_default();
        // A reading below the last one (delay accounting switched off and
        // the kernel reporting 0) adds nothing; keeping the maximum means
        // switching it back on does not count the old time twice.
        let cpu = d.cpu_delay_ns.saturating_sub(last.cpu_delay_ns);
        let blkio = d.blkio_delay_ns.saturating_sub(last.blkio_delay_ns);
        last.cpu_delay_ns = last.cpu_delay_ns.max(d.cpu_delay_ns);
        last.blkio_delay_ns = last.blkio_delay_ns.max(d.blkio_delay_ns);
        let label = if self.totals.len() >= self.max_labels && !self.totals.contains_key(&label) {
            ("~other".to_string(), "~other".to_string())
        } else {
            label
        };
        self.alive.insert(label.clone(), self.round);
        let t = self.totals.entry(label).or_default();
        t.0 += cpu;
        t.1 += blkio;
    }

    /// Keeps the last reading of a live process that was not read this
    /// round (over the cap, or its query failed): forgetting it would add
    /// its whole value again at its next reading. Its labels stay alive.
    fn keep(&mut self, pid: u32, start: u64, label: (String, String)) {
        self.seen.insert((pid, start));
        if self.totals.contains_key(&label) {
            self.alive.insert(label, self.round);
        }
    }

    /// Forgets processes not seen since the last call (they exited), and
    /// the totals of labels no process had for `expire_after` rounds.
    fn end_round(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        self.last.retain(|k, _| seen.contains(k));
        self.round += 1;
        if let Some(after) = self.expire_after {
            let (round, alive) = (self.round, &mut self.alive);
            let before = self.totals.len();
            self.totals.retain(|label, _| {
                let keep = alive.get(label).is_some_and(|r| round - r <= after);
                if !keep {
                    alive.remove(label);
                }
                keep
            });
            self.expired += (before - self.totals.len()) as u64;
        }
    }

    /// A round cut short: nobody is known to have exited.
    fn abort_round(&mut self) {
        self.seen.clear();
    }
}

/// Why a process read did not happen, as label values.
const SKIP_REASONS: [&str; 2] = ["max_processes", "query_failed"];

/// One collector: the taskstats socket and the running totals.
struct Collector {
    names: ProcessNames,
    taskstats: Option<Taskstats>,
    max_processes: usize,
    totals: Totals,
    skipped: [u64; SKIP_REASONS.len()],
    processes: usize,
    sysctl: PathBuf,
    enabled: Option<bool>,
    warned_query: bool,
}

impl Collector {
    /// Walks /proc once and reads every tracked process.
    fn tick(&mut self) {
        let enabled = read_flag(&self.sysctl);
        if enabled == Some(false) && self.enabled == Some(true) {
            tracing::warn!("kernel.task_delayacct was switched off: disk delays stop growing");
        }
        self.enabled = enabled;
        if self.taskstats.is_none() {
            match Taskstats::open() {
                Ok(t) => self.taskstats = Some(t),
                Err(e) => {
                    if !self.warned_query {
                        tracing::warn!(error = %e, "cannot open netlink taskstats: no delay accounting");
                        self.warned_query = true;
                    }
                    return;
                }
            }
        }
        let Ok(all) = procfs::process::all_processes() else {
            tracing::warn!("cannot list /proc");
            return;
        };
        let mut read = 0;
        for proc_ in all.flatten() {
            // A process that exits mid-walk simply drops out.
            let Ok(stat) = proc_.stat() else { continue };
            let Some(process) = self.names.label(&comm_bytes(&stat.comm)) else {
                continue;
            };
            let (pid, start) = (stat.pid as u32, stat.starttime);
            if read >= self.max_processes {
                self.skipped[0] += 1;
                self.totals
                    .keep(pid, start, (process, container_of(&proc_)));
                continue;
            }
            let Some(ts) = self.taskstats.as_mut() else {
                break;
            };
            let delays = match ts.tgid(pid) {
                Ok(d) => d,
                Err(TaskstatsError::NoSuchProcess) => continue,
                Err(e) => {
                    self.skipped[1] += 1;
                    self.totals
                        .keep(pid, start, (process, container_of(&proc_)));
                    if !self.warned_query {
                        tracing::warn!(pid, error = %e, "taskstats query failed");
                        self.warned_query = true;
                    }
                    if matches!(e, TaskstatsError::Io(_) | TaskstatsError::Timeout(_)) {
                        // Start over with a fresh socket next round.
                        self.taskstats = None;
                        self.totals.abort_round();
                        self.processes = read;
                        return;
                    }
                    continue;
                }
            };
            read += 1;
            let container = container_of(&proc_);
            self.totals
                .observe(pid, start, (process, container), delays);
        }
        self.totals.end_round();
        self.processes = read;
    }

    /// What a scrape needs of this collection (labels come at the scrape,
    /// which knows the containers' names).
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            totals: self
                .totals
                .totals
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            enabled: self.enabled == Some(true),
            processes: self.processes,
            skipped: self.skipped,
            expired: self.totals.expired,
        }
    }
}

/// The result of one collection.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    /// ((process, container id), (cpu ns, blkio ns)).
    totals: Vec<((String, String), (u64, u64))>,
    enabled: bool,
    processes: usize,
    skipped: [u64; SKIP_REASONS.len()],
    /// (process, container) totals expired so far.
    expired: u64,
}

impl Snapshot {
    fn families(&self, labeler: &mut Labeler) -> Vec<Family> {
        let mut cpu: BTreeMap<Labels, f64> = BTreeMap::new();
        let mut disk: BTreeMap<Labels, f64> = BTreeMap::new();
        for ((process, container), (c, b)) in &self.totals {
            let identity = labeler.identity_of_container(container);
            let labels = owner_labels(process.clone(), &identity);
            // Two ids may share a name; their totals add up.
            *cpu.entry(labels.clone()).or_default() += *c as f64 / 1e9;
            *disk.entry(labels).or_default() += *b as f64 / 1e9;
        }
        let one = |v: f64| BTreeMap::from([(Labels::new(), v)]);
        vec![
            scalar_family(&catalog::CPU_DELAY_SECONDS, cpu),
            scalar_family(&catalog::DISK_DELAY_SECONDS, disk),
            scalar_family(
                &catalog::DELAY_ACCOUNTING_ENABLED,
                one(if self.enabled { 1.0 } else { 0.0 }),
            ),
            scalar_family(
                &catalog::DELAY_ACCOUNTING_PROCESSES,
                one(self.processes as f64),
            ),
            scalar_family(
                &catalog::DELAY_ACCOUNTING_SKIPPED,
                SKIP_REASONS
                    .iter()
                    .zip(self.skipped)
                    .map(|(r, n)| (vec![("reason", r.to_string())], n as f64))
                    .collect(),
            ),
        ]
    }
}

/// Container id from the process's cgroup v2 path (`0::/...`); "" for
/// host processes. The scrape names it, like the kernel-side metrics.
fn container_of(p: &procfs::process::Process) -> String {
    let Ok(groups) = p.cgroups() else {
        return String::new();
    };
    groups
        .0
        .iter()
        .find(|g| g.hierarchy == 0)
        .and_then(|g| container_id(&g.pathname))
        .unwrap_or_default()
}

/// The running collection: a thread and its last result. Dropping it stops
/// the thread and, if the agent turned the sysctl on, turns it back off.
pub struct DelayAccounting {
    snapshot: Arc<Mutex<Snapshot>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _sysctl: SysctlGuard,
}

impl DelayAccounting {
    /// Starts collecting for the processes `names` tracks; `max_series`
    /// bounds the distinct (process, container) totals kept.
    /// A (process, container) pair without a process for `ttl` expires.
    pub fn start(cfg: &DelayAccountingConfig, names: ProcessNames, ttl: Option<Duration>) -> Self {
        let max_series = cfg.max_series.value as usize;
        Self::start_with(cfg, names, max_series, ttl, Path::new(SYSCTL))
    }

    fn start_with(
        cfg: &DelayAccountingConfig,
        names: ProcessNames,
        max_series: usize,
        ttl: Option<Duration>,
        sysctl: &Path,
    ) -> Self {
        let guard = prepare_sysctl(sysctl, cfg.enable_sysctl);
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut collector = Collector {
            names,
            taskstats: None,
            max_processes: cfg.max_processes.value as usize,
            totals: Totals::new(max_series),
            skipped: [0; SKIP_REASONS.len()],
            processes: 0,
            sysctl: sysctl.to_path_buf(),
            enabled: None,
            warned_query: false,
        };
        let interval = Duration::from_secs_f64(cfg.interval_seconds.value);
        // Whole rounds, at least one: the TTL is never cut short.
        collector.totals.expire_after =
            ttl.map(|t| (t.as_secs_f64() / interval.as_secs_f64()).ceil().max(1.0) as u64);
        let (out, halt) = (snapshot.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("netagent-delay".into())
            .spawn(move || {
                while !halt.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    collector.tick();
                    tracing::debug!(
                        processes = collector.processes,
                        ms = started.elapsed().as_secs_f64() * 1e3,
                        "delay accounting collected"
                    );
                    let taken = collector.snapshot();
                    *out.lock().unwrap_or_else(|e| e.into_inner()) = taken;
                    // Sleep in short steps so shutdown is prompt.
                    let until = Instant::now() + interval;
                    while Instant::now() < until && !halt.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50).min(interval));
                    }
                }
            })
            .expect("spawn delay accounting thread");
        Self {
            snapshot,
            stop,
            thread: Some(thread),
            _sysctl: guard,
        }
    }

    /// The families of the last collection (no series before the first).
    pub fn families(&self, labeler: &mut Labeler) -> Vec<Family> {
        let snapshot = self
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        snapshot.families(labeler)
    }
}

impl Drop for DelayAccounting {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl super::Collector for DelayAccounting {
    fn name(&self) -> &'static str {
        "delay_accounting"
    }

    fn collect(&self, scrape: &mut super::Scrape<'_, '_>) -> anyhow::Result<()> {
        let families = self.families(scrape.labeler);
        scrape.families.extend(families);
        let expired = self
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expired;
        scrape.expired.push(("delay_accounting", expired));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    fn d(cpu: u64, blkio: u64) -> Delays {
        Delays {
            cpu_delay_ns: cpu,
            blkio_delay_ns: blkio,
            ..Delays::default()
        }
    }

    fn label(p: &str) -> (String, String) {
        (p.to_string(), String::new())
    }

    #[test]
    fn totals_stay_monotonic_across_exits_and_pid_reuse() {
        let mut t = Totals::new(100);
        t.observe(10, 1000, label("web"), d(5, 7));
        t.observe(11, 1001, label("web"), d(1, 0));
        t.end_round();
        assert_eq!(
            t.totals[&label("web")],
            (6, 7),
            "first readings count whole"
        );
        t.observe(10, 1000, label("web"), d(9, 7));
        t.end_round(); // pid 11 exited
        assert_eq!(t.totals[&label("web")], (10, 7));
        assert!(
            !t.last.contains_key(&(11, 1001)),
            "exited process forgotten"
        );
        // pid 11 reused by a new process: its own start, counted from 0.
        t.observe(11, 2000, label("web"), d(3, 1));
        t.end_round();
        assert_eq!(t.totals[&label("web")], (13, 8));
        t.end_round(); // everything exited: the total stays
        assert_eq!(t.totals[&label("web")], (13, 8));
    }

    #[test]
    fn a_process_not_read_in_a_round_is_not_counted_twice() {
        let mut t = Totals::new(100);
        t.observe(1, 1, label("a"), d(100, 10));
        t.end_round();
        t.keep(1, 1, label("a")); // over the cap this round
        t.end_round();
        t.observe(1, 1, label("a"), d(130, 10));
        t.end_round();
        assert_eq!(t.totals[&label("a")], (130, 10));
        // A round cut short by a socket error forgets nobody.
        t.abort_round();
        t.observe(1, 1, label("a"), d(140, 10));
        assert_eq!(t.totals[&label("a")], (140, 10));
    }

    #[test]
    fn a_drop_to_zero_and_back_is_not_counted_twice() {
        let mut t = Totals::new(100);
        t.observe(1, 1, label("a"), d(100, 50));
        t.observe(1, 1, label("a"), d(0, 0)); // sysctl off: the kernel reports 0
        assert_eq!(t.totals[&label("a")], (100, 50));
        t.observe(1, 1, label("a"), d(120, 50)); // on again, 20 ns more
        assert_eq!(t.totals[&label("a")], (120, 50));
    }

    #[test]
    fn a_renamed_process_adds_its_growth_to_the_new_label() {
        let mut t = Totals::new(100);
        t.observe(1, 1, label("sh"), d(10, 0));
        t.observe(1, 1, label("nginx"), d(15, 0)); // exec: same pid and start
        assert_eq!(t.totals[&label("sh")], (10, 0));
        assert_eq!(t.totals[&label("nginx")], (5, 0));
    }

    #[test]
    fn a_label_without_a_process_expires_after_its_rounds_a_live_one_never() {
        let mut t = Totals::new(100);
        t.expire_after = Some(2);
        t.observe(1, 1, label("cron"), d(5, 0));
        t.observe(2, 1, label("db"), d(5, 0));
        t.end_round();
        // cron exited; db lives, only kept (not read: over the cap).
        t.keep(2, 1, label("db"));
        t.end_round();
        assert!(
            t.totals.contains_key(&label("cron")),
            "one round without it"
        );
        t.keep(2, 1, label("db"));
        t.end_round();
        assert!(!t.totals.contains_key(&label("cron")), "expired");
        assert_eq!(t.expired, 1);
        assert_eq!(t.totals[&label("db")], (5, 0), "alive: kept");
        // cron again: a new total from zero.
        t.observe(3, 9, label("cron"), d(2, 0));
        assert_eq!(t.totals[&label("cron")], (2, 0));
    }

    #[test]
    fn labels_beyond_the_cap_fold_into_other() {
        let mut t = Totals::new(2);
        t.observe(1, 1, label("a"), d(1, 0));
        t.observe(2, 1, label("b"), d(2, 0));
        t.observe(3, 1, label("c"), d(3, 0));
        t.observe(4, 1, label("d"), d(4, 0));
        let other = ("~other".to_string(), "~other".to_string());
        assert_eq!(t.totals[&other], (7, 0), "nothing lost, only folded");
        assert_eq!(t.totals.len(), 3);
    }

    #[test]
    fn sysctl_is_turned_on_only_when_asked_and_back_off_on_drop() {
        let dir = TempDir::new("delayacct");
        let path = dir.0.join("task_delayacct");
        std::fs::write(&path, "0\n").unwrap();
        drop(prepare_sysctl(&path, false));
        assert_eq!(read_flag(&path), Some(false), "not asked: left alone");
        let guard = prepare_sysctl(&path, true);
        assert_eq!(read_flag(&path), Some(true));
        drop(guard);
        assert_eq!(read_flag(&path), Some(false), "restored on drop");
        std::fs::write(&path, "1\n").unwrap();
        drop(prepare_sysctl(&path, true));
        assert_eq!(read_flag(&path), Some(true), "was on before: stays on");
    }
}
