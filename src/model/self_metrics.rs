//! The agent's own metrics: build info, events lost, standard process_*.

use crate::kernel::abi::LOST_REASONS;
use crate::metrics::{catalog, single, Family, Value};

/// `netagent_build_info` and `netagent_events_lost_total` (kernel map
/// reasons plus packets the interface programs could not count).
pub fn agent_families(lost: &[u64; LOST_REASONS.len()], iface_lost: u64) -> Vec<Family> {
    let mut info = Family::new(&catalog::BUILD_INFO);
    info.push(
        vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            (
                "rustc",
                option_env!("NETAGENT_RUSTC")
                    .unwrap_or("unknown")
                    .to_string(),
            ),
        ],
        Value::Gauge(1.0),
    );
    let mut lost_f = Family::new(&catalog::EVENTS_LOST);
    for (reason, n) in LOST_REASONS.iter().zip(lost) {
        lost_f.push(
            vec![("reason", reason.to_string())],
            Value::Counter(*n as f64),
        );
    }
    lost_f.push(
        vec![("reason", "interface_map_full".to_string())],
        Value::Counter(iface_lost as f64),
    );
    vec![info, lost_f]
}

/// The standard `process_*` metrics of the agent itself, from /proc/self.
/// Missing values (e.g. an unreadable limit) are left out, not guessed.
pub fn process_families() -> Vec<Family> {
    let mut out = Vec::new();
    let Ok(me) = procfs::process::Process::myself() else {
        return out;
    };
    let tps = procfs::ticks_per_second() as f64;
    let page = procfs::page_size() as f64;
    let mut gauge = |desc, v: f64| out.push(single(desc, v));
    if let Ok(stat) = me.stat() {
        gauge(
            &catalog::PROCESS_RESIDENT_MEMORY_BYTES,
            stat.rss as f64 * page,
        );
        gauge(&catalog::PROCESS_VIRTUAL_MEMORY_BYTES, stat.vsize as f64);
        if let Ok(boot) = procfs::boot_time_secs() {
            gauge(
                &catalog::PROCESS_START_TIME_SECONDS,
                boot as f64 + stat.starttime as f64 / tps,
            );
        }
        let mut cpu = Family::new(&catalog::PROCESS_CPU_SECONDS);
        cpu.push(
            Vec::new(),
            Value::Counter((stat.utime + stat.stime) as f64 / tps),
        );
        out.push(cpu);
    }
    if let Ok(n) = me.fd_count() {
        let mut f = Family::new(&catalog::PROCESS_OPEN_FDS);
        f.push(Vec::new(), Value::Gauge(n as f64));
        out.push(f);
    }
    if let Ok(limits) = me.limits() {
        if let procfs::process::LimitValue::Value(v) = limits.max_open_files.soft_limit {
            let mut f = Family::new(&catalog::PROCESS_MAX_FDS);
            f.push(Vec::new(), Value::Gauge(v as f64));
            out.push(f);
        }
    }
    out
}
