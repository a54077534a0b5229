//! Checks the capabilities the agent needs before touching the kernel, so a
//! missing one is reported by name instead of as a bare EPERM.

use std::fs;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// A capability the agent lacks, with what it is needed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingCapability {
    pub name: &'static str,
    pub needed_for: &'static str,
}

/// Effective capability set of this process (`CapEff` in /proc/self/status).
fn effective_caps() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The first required capability that is missing, if any.
/// CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON (kernels < 5.8 and
/// the kernel's own fallback rules).
pub fn first_missing() -> Option<MissingCapability> {
    let caps = effective_caps()?;
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    let admin = has(CAP_SYS_ADMIN);
    if !(has(CAP_BPF) || admin) {
        return Some(MissingCapability {
            name: "CAP_BPF",
            needed_for: "loading BPF programs and maps",
        });
    }
    if !(has(CAP_PERFMON) || admin) {
        return Some(MissingCapability {
            name: "CAP_PERFMON",
            needed_for: "attaching to tracepoints",
        });
    }
    if !has(CAP_NET_ADMIN) {
        return Some(MissingCapability {
            name: "CAP_NET_ADMIN",
            needed_for: "attaching cgroup socket hooks",
        });
    }
    None
}

/// Lifts RLIMIT_MEMLOCK for kernels that still charge BPF memory to it
/// (< 5.11); harmless elsewhere.
pub fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid pointer to an initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; fine on kernels >= 5.11");
    }
}
