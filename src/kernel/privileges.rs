//! Checks the capabilities the agent needs before touching the kernel, so a
//! missing one is reported by name instead of as a bare EPERM; and makes
//! permitted capabilities effective, so that the binary can carry them as
//! file capabilities without the effective bit (`setcap …+p`, as the
//! container image does).

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

/// `struct __user_cap_header_struct` (linux/capability.h).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`; version 3 takes two (capabilities 0-31, 32-63).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Makes this thread's permitted capabilities effective. A binary with file
/// capabilities but no effective bit (`setcap cap_bpf,…+p`) starts with them
/// permitted only; unlike `+ep`, such a binary still starts when the
/// runtime's bounding set lacks one of them (CAP_SYS_RESOURCE is often
/// withheld, and the agent needs it only before Linux 5.11). Call it first
/// in `main`, before any thread exists: capabilities are per thread, and
/// new threads inherit them. False when capget/capset fail.
pub fn raise_effective() -> bool {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget with a valid header and room for the two data structs
    // version 3 writes.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return false;
    }
    if data.iter().all(|d| d.effective == d.permitted) {
        return true;
    }
    for d in &mut data {
        d.effective = d.permitted;
    }
    // SAFETY: capset with the header capget filled in and two initialised
    // data structs; raising effective within permitted needs no privilege.
    unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) == 0 }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(field: &str) -> u64 {
        let status = fs::read_to_string("/proc/thread-self/status").unwrap();
        let hex = status.lines().find_map(|l| l.strip_prefix(field)).unwrap();
        u64::from_str_radix(hex.trim(), 16).unwrap()
    }

    /// In a thread of its own (capabilities are per thread): drop the
    /// effective set to nothing, raise it again, and it equals the permitted.
    #[test]
    fn raise_effective_makes_the_permitted_set_effective() {
        std::thread::spawn(|| {
            let mut header = CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            };
            let mut data = [CapData::default(); 2];
            // SAFETY: as in raise_effective.
            assert_eq!(
                unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) },
                0
            );
            for d in &mut data {
                d.effective = 0;
            }
            // SAFETY: lowering the effective set is always allowed.
            assert_eq!(
                unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) },
                0
            );
            assert_eq!(caps("CapEff:"), 0);
            assert!(raise_effective());
            assert_eq!(caps("CapEff:"), caps("CapPrm:"));
            assert!(raise_effective(), "nothing to do is fine too");
        })
        .join()
        .unwrap();
    }
}
