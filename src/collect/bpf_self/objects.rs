//! Every BPF program and map loaded on the host (not only the agent's),
//! with the kernel's own memory accounting, for the self-observability
//! metrics built in [`crate::collect::bpf_self`].
//!
//! The kernel hands out objects by id; an object can be unloaded between
//! "next id" and "open by id", so vanished objects (ENOENT/ESRCH) are
//! skipped silently. Any other failure is counted in
//! [`BpfObjects::errors`] and logged at debug level, and the walk goes on.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use aya::maps::{loaded_maps, MapError, MapType};
use aya::programs::{loaded_programs, ProgramError};
use aya::sys::SyscallError;
use aya_obj::generated::bpf_prog_type;

/// One loaded BPF program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramObject {
    /// Kernel program id (unique until the program is unloaded).
    pub id: u32,
    /// Name given at load time (the kernel keeps 15 bytes).
    pub name: String,
    /// bpftool-style type (`tracing`, `sched_cls`), or the kernel's number.
    pub type_name: String,
    /// Kernel memlock accounting (`memlock:` of the fd's fdinfo).
    pub memlock_bytes: u64,
    /// Accumulated run time; advances only while run stats are enabled.
    pub run_time_ns: u64,
    /// Accumulated runs; advances only while run stats are enabled.
    pub run_count: u64,
}

/// One loaded BPF map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapObject {
    /// Kernel map id (unique until the map is freed).
    pub id: u32,
    /// Name given at creation (the kernel keeps 15 bytes).
    pub name: String,
    /// bpftool-style type (`hash`, `percpu_hash`), or the kernel's number.
    pub type_name: String,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes (per CPU for per-CPU maps).
    pub value_size: u32,
    /// Capacity the map was created with.
    pub max_entries: u32,
    /// Kernel memlock accounting (`memlock:` of the fd's fdinfo).
    pub memlock_bytes: u64,
}

/// The result of one walk over the kernel's programs and maps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BpfObjects {
    /// Programs whose name matched, in ascending id order.
    pub programs: Vec<ProgramObject>,
    /// Maps whose name matched, in ascending id order.
    pub maps: Vec<MapObject>,
    /// Failures other than "object vanished" during this walk.
    pub errors: u64,
}

/// Whether an object is selected by the name-prefix filter ("" selects all).
pub fn name_matches(name: &str, prefix: &str) -> bool {
    name.starts_with(prefix)
}

/// Walks every program and map on the host whose name starts with
/// `name_prefix`. Needs CAP_SYS_ADMIN (or CAP_BPF + CAP_PERFMON); without
/// it the walk yields one error per kind and empty lists.
pub fn enumerate(name_prefix: &str) -> BpfObjects {
    let mut out = BpfObjects::default();
    enumerate_programs(name_prefix, &mut out);
    enumerate_maps(name_prefix, &mut out);
    out
}

fn enumerate_programs(prefix: &str, out: &mut BpfObjects) {
    for item in loaded_programs() {
        let info = match item {
            Ok(info) => info,
            Err(e) => {
                out.errors += failure("listing BPF programs", prog_errno(&e), &e);
                continue;
            }
        };
        // `name()` rather than `name_as_str()`: the latter runs aya's
        // feature probes (loading test programs) on first use.
        let name = String::from_utf8_lossy(info.name()).into_owned();
        if !name_matches(&name, prefix) {
            continue;
        }
        // aya's info holds no fd; memlock needs one, opened again by id.
        let fd = match info.fd() {
            Ok(fd) => fd,
            Err(e) => {
                out.errors += failure("opening a BPF program", prog_errno(&e), &e);
                continue;
            }
        };
        let (memlock, type_name) = accounting(
            fd.as_fd(),
            ("program", "prog_type", info.id()),
            prog_type_name(info.program_type()),
            &mut out.errors,
        );
        out.programs.push(ProgramObject {
            id: info.id(),
            name,
            type_name,
            // An object whose memlock is unreadable is still counted; its
            // bytes are missing from the sums and the error counter says so.
            memlock_bytes: memlock.unwrap_or(0),
            run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
            run_count: info.run_count(),
        });
    }
}

fn enumerate_maps(prefix: &str, out: &mut BpfObjects) {
    for item in loaded_maps() {
        let info = match item {
            Ok(info) => info,
            Err(e) => {
                out.errors += failure("listing BPF maps", map_errno(&e), &e);
                continue;
            }
        };
        let name = String::from_utf8_lossy(info.name()).into_owned();
        if !name_matches(&name, prefix) {
            continue;
        }
        let fd = match info.fd() {
            Ok(fd) => fd,
            Err(e) => {
                out.errors += failure("opening a BPF map", map_errno(&e), &e);
                continue;
            }
        };
        // aya clamps unknown types to its own maximum, so the kernel's
        // number comes from fdinfo.
        let (memlock, type_name) = accounting(
            fd.as_fd(),
            ("map", "map_type", info.id()),
            info.map_type().ok().and_then(map_type_name),
            &mut out.errors,
        );
        out.maps.push(MapObject {
            id: info.id(),
            name,
            type_name,
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
            memlock_bytes: memlock.unwrap_or(0),
        });
    }
}

/// An object's memlock (`None` when its fdinfo has none: counted in
/// `errors`) and type label: `known` (bpftool's name), else the kernel's
/// number from fdinfo's `type_key` line.
fn accounting(
    fd: BorrowedFd<'_>,
    (kind, type_key, id): (&str, &str, u32),
    known: Option<&str>,
    errors: &mut u64,
) -> (Option<u64>, String) {
    let fdinfo = read_fdinfo(fd);
    let (memlock, raw_type) = match &fdinfo {
        Ok(f) => (f.get("memlock").copied(), f.get(type_key).copied()),
        Err(_) => (None, None),
    };
    if memlock.is_none() {
        *errors += memlock_failure(kind, id, fdinfo.err());
    }
    let type_name = known
        .map(str::to_string)
        .or_else(|| raw_type.map(|t| t.to_string()))
        .unwrap_or_else(|| "unknown".to_string());
    (memlock, type_name)
}

/// Counts and logs a failure unless the object merely vanished (returns
/// how many errors to add: 0 or 1).
fn failure(what: &str, errno: Option<i32>, e: &dyn std::fmt::Display) -> u64 {
    if matches!(errno, Some(libc::ENOENT) | Some(libc::ESRCH)) {
        return 0;
    }
    if errno == Some(libc::EPERM) {
        // Walking every BPF object on the host needs CAP_SYS_ADMIN; say so
        // once instead of on every scrape.
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "bpf_self: {what}: {e}: enumerating the host's BPF programs and maps needs \
                 CAP_SYS_ADMIN; netagent_bpf_* totals stay 0 and the refusals are counted in \
                 netagent_bpf_collection_errors_total"
            )
        });
    }
    tracing::debug!("bpf_self: {what}: {e}");
    1
}

fn memlock_failure(kind: &str, id: u32, err: Option<io::Error>) -> u64 {
    match err {
        Some(e) => tracing::debug!("bpf_self: reading fdinfo of BPF {kind} {id}: {e}"),
        None => tracing::debug!("bpf_self: fdinfo of BPF {kind} {id} has no memlock line"),
    }
    1
}

fn syscall_errno(e: &SyscallError) -> Option<i32> {
    e.io_error.raw_os_error()
}

fn prog_errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => syscall_errno(s),
        ProgramError::IOError(io) => io.raw_os_error(),
        _ => None,
    }
}

fn map_errno(e: &MapError) -> Option<i32> {
    match e {
        MapError::SyscallError(s) => syscall_errno(s),
        _ => None,
    }
}

/// The numeric `key:\tvalue` lines of /proc/self/fdinfo/<fd> (memlock,
/// prog_type, map_type, ...); other lines are ignored.
fn read_fdinfo(fd: BorrowedFd<'_>) -> io::Result<HashMap<String, u64>> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    Ok(parse_fdinfo(&text))
}

fn parse_fdinfo(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            Some((k.trim().to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// bpftool's name of a program type (libbpf `prog_type_name`); `None` for
/// types this aya version does not know.
pub fn prog_type_name(t: bpf_prog_type) -> Option<&'static str> {
    use bpf_prog_type::*;
    Some(match t {
        BPF_PROG_TYPE_UNSPEC => "unspec",
        BPF_PROG_TYPE_SOCKET_FILTER => "socket_filter",
        BPF_PROG_TYPE_KPROBE => "kprobe",
        BPF_PROG_TYPE_SCHED_CLS => "sched_cls",
        BPF_PROG_TYPE_SCHED_ACT => "sched_act",
        BPF_PROG_TYPE_TRACEPOINT => "tracepoint",
        BPF_PROG_TYPE_XDP => "xdp",
        BPF_PROG_TYPE_PERF_EVENT => "perf_event",
        BPF_PROG_TYPE_CGROUP_SKB => "cgroup_skb",
        BPF_PROG_TYPE_CGROUP_SOCK => "cgroup_sock",
        BPF_PROG_TYPE_LWT_IN => "lwt_in",
        BPF_PROG_TYPE_LWT_OUT => "lwt_out",
        BPF_PROG_TYPE_LWT_XMIT => "lwt_xmit",
        BPF_PROG_TYPE_SOCK_OPS => "sock_ops",
        BPF_PROG_TYPE_SK_SKB => "sk_skb",
        BPF_PROG_TYPE_CGROUP_DEVICE => "cgroup_device",
        BPF_PROG_TYPE_SK_MSG => "sk_msg",
        BPF_PROG_TYPE_RAW_TRACEPOINT => "raw_tracepoint",
        BPF_PROG_TYPE_CGROUP_SOCK_ADDR => "cgroup_sock_addr",
        BPF_PROG_TYPE_LWT_SEG6LOCAL => "lwt_seg6local",
        BPF_PROG_TYPE_LIRC_MODE2 => "lirc_mode2",
        BPF_PROG_TYPE_SK_REUSEPORT => "sk_reuseport",
        BPF_PROG_TYPE_FLOW_DISSECTOR => "flow_dissector",
        BPF_PROG_TYPE_CGROUP_SYSCTL => "cgroup_sysctl",
        BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE => "raw_tracepoint_writable",
        BPF_PROG_TYPE_CGROUP_SOCKOPT => "cgroup_sockopt",
        BPF_PROG_TYPE_TRACING => "tracing",
        BPF_PROG_TYPE_STRUCT_OPS => "struct_ops",
        BPF_PROG_TYPE_EXT => "ext",
        BPF_PROG_TYPE_LSM => "lsm",
        BPF_PROG_TYPE_SK_LOOKUP => "sk_lookup",
        BPF_PROG_TYPE_SYSCALL => "syscall",
        BPF_PROG_TYPE_NETFILTER => "netfilter",
        __MAX_BPF_PROG_TYPE => return None,
    })
}

/// bpftool's name of a map type (libbpf `map_type_name`); `None` for types
/// this aya version does not know.
pub fn map_type_name(t: MapType) -> Option<&'static str> {
    Some(match t {
        MapType::Unspecified => "unspec",
        MapType::Hash => "hash",
        MapType::Array => "array",
        MapType::ProgramArray => "prog_array",
        MapType::PerfEventArray => "perf_event_array",
        MapType::PerCpuHash => "percpu_hash",
        MapType::PerCpuArray => "percpu_array",
        MapType::StackTrace => "stack_trace",
        MapType::CgroupArray => "cgroup_array",
        MapType::LruHash => "lru_hash",
        MapType::LruPerCpuHash => "lru_percpu_hash",
        MapType::LpmTrie => "lpm_trie",
        MapType::ArrayOfMaps => "array_of_maps",
        MapType::HashOfMaps => "hash_of_maps",
        MapType::DevMap => "devmap",
        MapType::SockMap => "sockmap",
        MapType::CpuMap => "cpumap",
        MapType::XskMap => "xskmap",
        MapType::SockHash => "sockhash",
        MapType::CgroupStorage => "cgroup_storage",
        MapType::ReuseportSockArray => "reuseport_sockarray",
        MapType::PerCpuCgroupStorage => "percpu_cgroup_storage",
        MapType::Queue => "queue",
        MapType::Stack => "stack",
        MapType::SkStorage => "sk_storage",
        MapType::DevMapHash => "devmap_hash",
        MapType::StructOps => "struct_ops",
        MapType::RingBuf => "ringbuf",
        MapType::InodeStorage => "inode_storage",
        MapType::TaskStorage => "task_storage",
        MapType::BloomFilter => "bloom_filter",
        MapType::UserRingBuf => "user_ringbuf",
        MapType::CgrpStorage => "cgrp_storage",
        MapType::Arena => "arena",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_numeric_lines() {
        let text = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\n\
                    map_type:\t1\nkey_size:\t4\nmemlock:\t1234\nmap_id:\t7\n\
                    prog_tag:\t0123456789abcdef\n";
        let f = parse_fdinfo(text);
        assert_eq!(f.get("memlock"), Some(&1234));
        assert_eq!(f.get("map_type"), Some(&1));
        assert_eq!(f.get("prog_tag"), None);
    }

    #[test]
    fn type_names_are_bpftool_style() {
        assert_eq!(
            prog_type_name(bpf_prog_type::BPF_PROG_TYPE_TRACING),
            Some("tracing")
        );
        assert_eq!(
            prog_type_name(bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK_ADDR),
            Some("cgroup_sock_addr")
        );
        assert_eq!(prog_type_name(bpf_prog_type::__MAX_BPF_PROG_TYPE), None);
        assert_eq!(map_type_name(MapType::PerCpuHash), Some("percpu_hash"));
        assert_eq!(map_type_name(MapType::SkStorage), Some("sk_storage"));
    }

    #[test]
    fn vanished_objects_are_not_errors() {
        let gone = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(failure("x", Some(libc::ENOENT), &gone), 0);
        assert_eq!(failure("x", Some(libc::ESRCH), &gone), 0);
        assert_eq!(failure("x", Some(libc::EPERM), &gone), 1);
        assert_eq!(failure("x", None, &gone), 1);
    }
}
