//! BPF self-observability: every BPF program and map on the host (the
//! agent's and everyone else's), their kernel memory and run statistics.
//!
//! Families:
//! - `netagent_bpf_programs`, `netagent_bpf_maps` (gauges): objects whose
//!   name matches `name_prefix`.
//! - `netagent_bpf_programs_memory_bytes`, `netagent_bpf_maps_memory_bytes`
//!   (gauges): sum of the kernel's memlock accounting over those objects.
//! - with `per_object: true`, at most `max_objects` per kind (lowest ids
//!   first): `netagent_bpf_program_memory_bytes{id,name,type}`,
//!   `netagent_bpf_program_run_seconds_total{id,name,type}`,
//!   `netagent_bpf_program_runs_total{id,name,type}` and
//!   `netagent_bpf_map_memory_bytes{id,name,type,key_size,value_size,max_entries}`.
//!   The totals always cover every matching object, so
//!   `netagent_bpf_programs - count(netagent_bpf_program_memory_bytes)` is
//!   how many programs the cap left out.
//! - `netagent_bpf_collection_duration_seconds` (histogram): one
//!   observation per walk over the kernel's objects.
//! - `netagent_bpf_collection_errors_total`: failures other than an object
//!   vanishing mid-walk (details at debug level).
//!
//! Run statistics only advance while `kernel.bpf_stats_enabled` is on; the
//! collector can hold it on for its lifetime (`enable_stats: true`).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub mod objects;

use crate::config::bpf_self::{BpfSelfConfig, DEFAULT_INTERVAL_SECONDS};
use crate::metrics::{catalog, single, Family, Histogram, Value};
use objects::{name_matches, BpfObjects, MapObject, ProgramObject};

/// Upper bounds (seconds) of `netagent_bpf_collection_duration_seconds`:
/// 100 µs … 10 s (an idle host walks in well under a millisecond, one
/// with thousands of objects in tens of milliseconds).
pub const COLLECTION_BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

type Enumerate = Box<dyn Fn(&str) -> BpfObjects + Send + Sync>;

/// The collector the agent keeps for its lifetime.
pub struct BpfSelfCollector {
    cfg: BpfSelfConfig,
    interval: Duration,
    enumerate: Enumerate,
    /// Walks finished so far. Read before taking the lock so that a caller
    /// that waited for someone else's walk can tell and reuse its result
    /// even when `interval` is 0.
    completed: AtomicU64,
    /// Held for the whole walk: that is what makes it single-flight.
    state: Mutex<State>,
    /// Keeps run-time stats on; closing it (on drop) turns them back off.
    _stats: Option<OwnedFd>,
}

struct State {
    last: Option<(Instant, Vec<Family>)>,
    duration: Histogram,
    errors: u64,
}

impl BpfSelfCollector {
    /// A collector for `cfg`; turns run-time stats on if configured.
    pub fn new(cfg: BpfSelfConfig) -> Self {
        let stats = if cfg.enabled && cfg.enable_stats {
            enable_run_stats()
        } else {
            None
        };
        Self::with_enumerator(cfg, Box::new(objects::enumerate), stats)
    }

    fn with_enumerator(cfg: BpfSelfConfig, enumerate: Enumerate, stats: Option<OwnedFd>) -> Self {
        let interval = match Duration::try_from_secs_f64(cfg.interval_seconds) {
            Ok(d) => d,
            Err(_) => {
                tracing::warn!(
                    "bpf_self.interval_seconds = {} is not a valid duration; using {DEFAULT_INTERVAL_SECONDS}",
                    cfg.interval_seconds
                );
                Duration::from_secs_f64(DEFAULT_INTERVAL_SECONDS)
            }
        };
        Self {
            cfg,
            interval,
            enumerate,
            completed: AtomicU64::new(0),
            state: Mutex::new(State {
                last: None,
                duration: Histogram {
                    bounds: &COLLECTION_BOUNDS,
                    buckets: vec![0; COLLECTION_BOUNDS.len() + 1],
                    sum: 0.0,
                },
                errors: 0,
            }),
            _stats: stats,
        }
    }

    /// Families for one scrape (cached per interval, single-flight).
    /// Empty when disabled. Blocks for the duration of a walk, so call it
    /// from a blocking context.
    pub fn families(&self) -> Vec<Family> {
        if !self.cfg.enabled {
            return Vec::new();
        }
        let seen = self.completed.load(Ordering::Acquire);
        let mut st = lock(&self.state);
        if let Some((at, families)) = &st.last {
            let shared = self.completed.load(Ordering::Acquire) > seen;
            if shared || at.elapsed() < self.interval {
                return families.clone();
            }
        }
        let start = Instant::now();
        let objects = (self.enumerate)(&self.cfg.name_prefix);
        observe(&mut st.duration, start.elapsed().as_secs_f64());
        st.errors += objects.errors;
        let families = build_families(&objects, &self.cfg, &st.duration, st.errors);
        // Freshness counts from the end of the walk, so `interval` is the
        // minimum idle time between walks even when a walk is slow.
        st.last = Some((Instant::now(), families.clone()));
        self.completed.fetch_add(1, Ordering::Release);
        families
    }
}

/// A panicking walk must not disable the collector for good.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn enable_run_stats() -> Option<OwnedFd> {
    match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
        Ok(fd) => Some(fd),
        Err(e) => {
            let missing = match e.io_error.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => "CAP_SYS_ADMIN",
                Some(libc::EINVAL) => "kernel support for BPF_ENABLE_STATS (Linux 5.8+)",
                _ => "BPF_ENABLE_STATS",
            };
            tracing::warn!(
                "bpf_self.enable_stats: cannot enable BPF run-time stats ({e}); missing {missing}. \
                 netagent_bpf_program_run_seconds_total and netagent_bpf_program_runs_total \
                 only advance while sysctl kernel.bpf_stats_enabled=1"
            );
            None
        }
    }
}

fn observe(h: &mut Histogram, v: f64) {
    let i = h
        .bounds
        .iter()
        .position(|b| v <= *b)
        .unwrap_or(h.bounds.len());
    h.buckets[i] += 1;
    h.sum += v;
}

/// The families of one walk. The name filter is applied again here (the
/// walk applies it only to save syscalls) so that any object list gives
/// the documented result.
pub fn build_families(
    objects: &BpfObjects,
    cfg: &BpfSelfConfig,
    duration: &Histogram,
    errors: u64,
) -> Vec<Family> {
    let mut progs: Vec<&ProgramObject> = objects
        .programs
        .iter()
        .filter(|p| name_matches(&p.name, &cfg.name_prefix))
        .collect();
    let mut maps: Vec<&MapObject> = objects
        .maps
        .iter()
        .filter(|m| name_matches(&m.name, &cfg.name_prefix))
        .collect();
    // Sorted so that the cap keeps the same (oldest) objects every time.
    progs.sort_by_key(|p| p.id);
    maps.sort_by_key(|m| m.id);

    let mut out = vec![
        single(&catalog::BPF_PROGRAMS, progs.len() as f64),
        single(&catalog::BPF_MAPS, maps.len() as f64),
        single(
            &catalog::BPF_PROGRAMS_MEMORY_BYTES,
            progs.iter().map(|p| p.memlock_bytes as f64).sum(),
        ),
        single(
            &catalog::BPF_MAPS_MEMORY_BYTES,
            maps.iter().map(|m| m.memlock_bytes as f64).sum(),
        ),
    ];

    if cfg.per_object {
        let mut mem = Family::new(&catalog::BPF_PROGRAM_MEMORY_BYTES);
        let mut run_time = Family::new(&catalog::BPF_PROGRAM_RUN_SECONDS);
        let mut runs = Family::new(&catalog::BPF_PROGRAM_RUNS);
        for p in progs.iter().take(cfg.max_objects) {
            let labels = vec![
                ("id", p.id.to_string()),
                ("name", p.name.clone()),
                ("type", p.type_name.clone()),
            ];
            mem.push(labels.clone(), Value::Gauge(p.memlock_bytes as f64));
            run_time.push(labels.clone(), Value::Counter(p.run_time_ns as f64 / 1e9));
            runs.push(labels, Value::Counter(p.run_count as f64));
        }
        let mut map_mem = Family::new(&catalog::BPF_MAP_MEMORY_BYTES);
        for m in maps.iter().take(cfg.max_objects) {
            map_mem.push(
                vec![
                    ("id", m.id.to_string()),
                    ("name", m.name.clone()),
                    ("type", m.type_name.clone()),
                    ("key_size", m.key_size.to_string()),
                    ("value_size", m.value_size.to_string()),
                    ("max_entries", m.max_entries.to_string()),
                ],
                Value::Gauge(m.memlock_bytes as f64),
            );
        }
        out.extend([mem, run_time, runs, map_mem]);
    }

    let mut dur = Family::new(&catalog::BPF_COLLECTION_DURATION_SECONDS);
    dur.push(Vec::new(), Value::Histogram(duration.clone()));
    let mut err = Family::new(&catalog::BPF_COLLECTION_ERRORS);
    err.push(Vec::new(), Value::Counter(errors as f64));
    out.extend([dur, err]);
    out
}

impl super::Collector for BpfSelfCollector {
    fn name(&self) -> &'static str {
        "bpf_self"
    }

    fn collect(&self, scrape: &mut super::Scrape<'_, '_>) -> anyhow::Result<()> {
        scrape.families.extend(self.families());
        Ok(())
    }

    /// Bounded by `bpf_self.max_objects`.
    fn capped(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
