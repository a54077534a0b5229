//! The standard `process_*` metrics of the agent itself, from /proc/self.

use super::{Collector, Scrape};
use crate::metrics::{catalog, single, Family, Value};

/// The agent's own process.
pub struct Process;

impl Collector for Process {
    fn name(&self) -> &'static str {
        "process"
    }

    fn collect(&self, scrape: &mut Scrape<'_, '_>) -> anyhow::Result<()> {
        scrape.families.extend(process_families());
        Ok(())
    }

    /// A handful of unlabelled gauges.
    fn capped(&self) -> bool {
        false
    }
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
