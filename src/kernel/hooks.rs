//! What the kernel side measures (features) and, for each, the hooks that
//! can serve it in order of preference: stable tracepoints first, then BTF
//! trampolines (fexit), kprobes, and raw syscall hooks. The loader attaches
//! the first hook of each feature that works on the running kernel.
//!
//! Longer than ~600 lines because the feature table ([`FEATURES`]) is one
//! list kept in one place, next to what checks each kind of hook against
//! the running kernel's BTF before anything is loaded.

use aya::Btf;
use aya_obj::btf::BtfKind;

/// A kind of kernel hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Tracepoint,
    Fexit,
    Kprobe,
    Syscalls,
    Cgroup,
    /// TC classifiers on interfaces (TCX links or netlink filters).
    Tc,
    /// BPF iterators: run when the agent reads them, not on an event.
    Iter,
    /// cgroup_skb programs on the cgroup v2 root (every packet of every
    /// socket, egress and ingress).
    CgroupSkb,
}

impl HookKind {
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Tracepoint => "tracepoint",
            HookKind::Fexit => "fexit",
            HookKind::Kprobe => "kprobe",
            HookKind::Syscalls => "syscalls",
            HookKind::Cgroup => "cgroup",
            HookKind::Tc => "tc",
            HookKind::Iter => "iter",
            HookKind::CgroupSkb => "cgroup_skb",
        }
    }

    /// Untyped hooks see socket addresses, not BTF-typed sockets, so the
    /// kernel programs keep message state in `sock_index` for them.
    pub fn untyped(self) -> bool {
        matches!(self, HookKind::Kprobe | HookKind::Syscalls)
    }
}

/// Where the kernel programs keep UDP socket state (and the explicit peer
/// of an unconnected send that the cgroup hooks see): one choice for the
/// whole object, made when it is loaded (`msg_index`, `BY_ADDR` in
/// bpf/netagent/addr.h). TCP state is always by address (`tcp_socks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockState {
    /// Socket-local storage, freed with the socket. Needs a BTF-typed
    /// socket, and tracing programs (tp_btf, fexit) may use it since Linux
    /// 5.11 (and ask for a socket cookie, for spans, since 5.12).
    Storage,
    /// An LRU hash keyed by socket address (`sock_index`, sized by
    /// `limits.max_sockets`), the explicit peer by task: any hook, any
    /// kernel. The untyped hooks always use it.
    Address,
}

impl SockState {
    pub fn name(self) -> &'static str {
        match self {
            SockState::Storage => "socket_storage",
            SockState::Address => "address",
        }
    }

    /// How the report describes it.
    pub fn describe(self) -> &'static str {
        match self {
            SockState::Storage => "UDP state in socket-local storage",
            SockState::Address => "UDP state by socket address (LRU hash sock_index)",
        }
    }
}

/// How the socket object is loaded: one per load, set through load-time
/// globals (`msg_index`, `tcp_prealloc`). The features of
/// [`STATE_FEATURES`] need the mode that fits their hook; every other
/// feature's programs are the same in all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectMode {
    /// Typed hooks, UDP state in socket-local storage.
    Storage,
    /// Typed hooks, UDP state by socket address (kernels whose tracing
    /// programs cannot use socket-local storage).
    Address,
    /// Untyped hooks (kprobes, raw syscalls): UDP state by address, and TCP
    /// state in a preallocated hash (`tcp_socks_pre`): kernels 5.6 to 6.0
    /// warn about (PREEMPT_RT ones refuse) kprobe programs that reference
    /// a run-time allocated one.
    Untyped,
}

impl ObjectMode {
    pub fn name(self) -> &'static str {
        match self {
            ObjectMode::Storage => "socket_storage",
            ObjectMode::Address => "address",
            ObjectMode::Untyped => "untyped",
        }
    }

    /// How the report describes it.
    pub fn describe(self) -> &'static str {
        match self {
            ObjectMode::Untyped => {
                "UDP state by socket address (LRU hash sock_index), TCP state in a preallocated \
                 hash (tcp_socks_pre)"
            }
            other => other.state().describe(),
        }
    }

    pub fn state(self) -> SockState {
        match self {
            ObjectMode::Storage => SockState::Storage,
            ObjectMode::Address | ObjectMode::Untyped => SockState::Address,
        }
    }

    /// The mode a hook of a [`STATE_FEATURES`] feature is loaded in, when
    /// its UDP state is kept as `state`.
    pub fn for_hook(kind: HookKind, state: SockState) -> Self {
        match (kind.untyped(), state) {
            (true, _) => ObjectMode::Untyped,
            (false, SockState::Storage) => ObjectMode::Storage,
            (false, SockState::Address) => ObjectMode::Address,
        }
    }
}

/// A hook of a [`STATE_FEATURES`] feature rejected in one state variant:
/// which, why, and what that means where the reason is a known one.
pub fn state_rejection(state: SockState, why: &str) -> String {
    let mut out = format!("with {}: {why}", state.describe());
    if state == SockState::Storage {
        if let Some(hint) = helper_hint(why) {
            out.push_str(&format!(" — {hint}"));
        }
    }
    out
}

/// What a verifier's "unknown func" about a helper of the storage variant
/// means on an older kernel.
fn helper_hint(why: &str) -> Option<&'static str> {
    if why.contains("bpf_sk_storage_get") || why.contains("bpf_sk_storage_delete") {
        Some(
            "this kernel lets tracing programs use socket-local storage only since Linux 5.11; \
             the agent keeps UDP state by socket address instead",
        )
    } else if why.contains("bpf_get_socket_cookie") {
        Some(
            "this kernel lets tracing programs ask for a socket cookie only since Linux 5.12; \
             the agent identifies sockets by address instead",
        )
    } else {
        None
    }
}

/// Features whose programs keep UDP socket state, so they come in both
/// [`SockState`] variants; every other feature's programs are the same in
/// both. NAT reads the UDP state of the datagrams it sees, drops that of
/// the socket a dropped packet belonged to.
pub const STATE_FEATURES: &[&str] = &["messages", "udp_peers", "nat", "drops"];

/// Was a program of the storage variant refused for a helper tracing
/// programs lack on this kernel (so the address variant is worth a try)?
pub fn storage_refusal(why: &str) -> bool {
    helper_hint(why).is_some()
}

/// One program of a hook and where it attaches.
#[derive(Debug, Clone, Copy)]
pub enum Attach {
    /// BTF-typed tracepoint (tp_btf): `category:event`.
    Tracepoint {
        program: &'static str,
        category: &'static str,
        event: &'static str,
        /// An argument the program reads that not every kernel's
        /// tracepoint passes: its index (0 = the first) and type, as
        /// [`super::btf_raw::tracepoint_arg`] names it. The verifier
        /// refuses a read past the arguments, so such a program is only
        /// used where the running kernel's BTF shows it.
        arg: Option<(usize, &'static str)>,
    },
    Fexit {
        program: &'static str,
        func: &'static str,
        /// The function's parameter count the program is written for: the
        /// return value is read right after them.
        args: usize,
    },
    Kprobe {
        program: &'static str,
        func: &'static str,
        ret: bool,
    },
    /// cgroup sock_addr program attached to the cgroup v2 root.
    Cgroup {
        program: &'static str,
        attach: &'static str,
    },
    /// BPF iterator over kernel objects of a kind (`tcp`): loaded and
    /// linked at start, run each time the agent reads it (src/kernel/seed.rs).
    Iter {
        program: &'static str,
        target: &'static str,
    },
    /// cgroup_skb program attached to the cgroup v2 root: `egress` or
    /// `ingress`.
    CgroupSkb {
        program: &'static str,
        attach: &'static str,
    },
}

impl Attach {
    pub fn program(&self) -> &'static str {
        match *self {
            Attach::Tracepoint { program, .. }
            | Attach::Fexit { program, .. }
            | Attach::Kprobe { program, .. }
            | Attach::Cgroup { program, .. }
            | Attach::Iter { program, .. } => program,
            Attach::CgroupSkb { program, .. } => program,
        }
    }

    /// The program's ELF section as its SEC() in bpf/ declares it, which
    /// says exactly what the kernel runs: `tp_btf/inet_sock_set_state` is
    /// the BTF-typed tracepoint sock:inet_sock_set_state,
    /// `kretprobe/inet_sendmsg` a return probe, `cgroup/sendmsg4` a
    /// sock_addr hook.
    pub fn section(&self) -> String {
        match *self {
            Attach::Tracepoint { event, .. } => format!("tp_btf/{event}"),
            Attach::Fexit { func, .. } => format!("fexit/{func}"),
            Attach::Kprobe {
                func, ret: false, ..
            } => format!("kprobe/{func}"),
            Attach::Kprobe {
                func, ret: true, ..
            } => format!("kretprobe/{func}"),
            Attach::Cgroup { attach, .. } => format!("cgroup/{attach}"),
            Attach::Iter { target, .. } => format!("iter/{target}"),
            Attach::CgroupSkb { attach, .. } => format!("cgroup_skb/{attach}"),
        }
    }

    /// The probe's name in `/health`, `netagent_probe_up` and
    /// `debug.disable_probes`.
    pub fn probe_name(&self) -> String {
        match *self {
            Attach::Tracepoint {
                category, event, ..
            } => format!("tracepoint/{category}:{event}"),
            Attach::Fexit { func, .. } => format!("fexit/{func}"),
            Attach::Kprobe {
                func, ret: false, ..
            } => format!("kprobe/{func}"),
            Attach::Kprobe {
                func, ret: true, ..
            } => format!("kretprobe/{func}"),
            Attach::Cgroup { attach, .. } => format!("cgroup/{attach}"),
            Attach::Iter { target, .. } => format!("iter/{target}"),
            Attach::CgroupSkb { attach, .. } => format!("cgroup_skb/{attach}"),
        }
    }

    /// Attached to a cgroup (which can be detached from outside).
    pub fn has_target(&self) -> bool {
        matches!(self, Attach::Cgroup { .. } | Attach::CgroupSkb { .. })
    }
}

/// A way to serve a feature: all of its programs attach, or none is used.
#[derive(Debug)]
pub struct Hook {
    pub kind: HookKind,
    pub programs: &'static [Attach],
}

/// Something the agent measures, and the hooks that can provide it.
#[derive(Debug)]
pub struct Feature {
    pub name: &'static str,
    pub needed_for: &'static str,
    /// Without it the agent has nothing to do: start-up fails.
    pub core: bool,
    pub hooks: &'static [Hook],
}

const fn tp(program: &'static str, category: &'static str, event: &'static str) -> Attach {
    Attach::Tracepoint {
        program,
        category,
        event,
        arg: None,
    }
}

/// A tracepoint program that reads argument `index` of type `ty` (see
/// [`Attach::Tracepoint`]).
const fn tp_arg(
    program: &'static str,
    category: &'static str,
    event: &'static str,
    index: usize,
    ty: &'static str,
) -> Attach {
    Attach::Tracepoint {
        program,
        category,
        event,
        arg: Some((index, ty)),
    }
}

const fn kp(program: &'static str, func: &'static str, ret: bool) -> Attach {
    Attach::Kprobe { program, func, ret }
}

const fn fx(program: &'static str, func: &'static str, args: usize) -> Attach {
    Attach::Fexit {
        program,
        func,
        args,
    }
}

const fn cg(program: &'static str, attach: &'static str) -> Attach {
    Attach::Cgroup { program, attach }
}

const fn skb(program: &'static str, attach: &'static str) -> Attach {
    Attach::CgroupSkb { program, attach }
}

/// Every feature, the core one first.
pub static FEATURES: &[Feature] = &[
    Feature {
        name: "connections",
        needed_for: "TCP connects, connection lifecycle and listeners",
        core: true,
        hooks: &[Hook {
            kind: HookKind::Tracepoint,
            programs: &[tp("on_inet_sock_set_state", "sock", "inet_sock_set_state")],
        }],
    },
    Feature {
        name: "retransmits",
        needed_for: "TCP retransmits",
        core: false,
        hooks: &[Hook {
            kind: HookKind::Tracepoint,
            programs: &[tp("on_tcp_retransmit_skb", "tcp", "tcp_retransmit_skb")],
        }],
    },
    Feature {
        name: "resets_sent",
        needed_for: "TCP resets sent, by the kernel's reason where it gives one",
        core: false,
        // Linux 6.10+ passes the reset's reason (enum sk_rst_reason);
        // before, every reset sent is counted with reason="unknown".
        hooks: &[
            Hook {
                kind: HookKind::Tracepoint,
                programs: &[tp_arg(
                    "on_tcp_send_reset_reason",
                    "tcp",
                    "tcp_send_reset",
                    2,
                    "enum sk_rst_reason",
                )],
            },
            Hook {
                kind: HookKind::Tracepoint,
                programs: &[tp("on_tcp_send_reset", "tcp", "tcp_send_reset")],
            },
        ],
    },
    Feature {
        name: "resets_received",
        needed_for: "TCP resets received",
        core: false,
        hooks: &[Hook {
            kind: HookKind::Tracepoint,
            programs: &[tp("on_tcp_receive_reset", "tcp", "tcp_receive_reset")],
        }],
    },
    Feature {
        name: "messages",
        needed_for: "UDP datagrams, bytes sent and received, send->recv durations and spans",
        core: false,
        hooks: &[
            Hook {
                kind: HookKind::Tracepoint,
                programs: &[
                    tp("on_sock_send_length", "sock", "sock_send_length"),
                    tp("on_sock_recv_length", "sock", "sock_recv_length"),
                ],
            },
            Hook {
                kind: HookKind::Fexit,
                programs: &[
                    fx("fx_inet_sendmsg", "inet_sendmsg", 3),
                    fx("fx_inet6_sendmsg", "inet6_sendmsg", 3),
                    fx("fx_inet_recvmsg", "inet_recvmsg", 4),
                    fx("fx_inet6_recvmsg", "inet6_recvmsg", 4),
                ],
            },
            Hook {
                kind: HookKind::Kprobe,
                programs: &[
                    kp("kp_inet_sendmsg", "inet_sendmsg", false),
                    kp("krp_inet_sendmsg", "inet_sendmsg", true),
                    kp("kp_inet6_sendmsg", "inet6_sendmsg", false),
                    kp("krp_inet6_sendmsg", "inet6_sendmsg", true),
                    kp("kp_inet_recvmsg", "inet_recvmsg", false),
                    kp("krp_inet_recvmsg", "inet_recvmsg", true),
                    kp("kp_inet6_recvmsg", "inet6_recvmsg", false),
                    kp("krp_inet6_recvmsg", "inet6_recvmsg", true),
                ],
            },
            Hook {
                kind: HookKind::Syscalls,
                programs: &[
                    tp("on_sys_enter", "raw_syscalls", "sys_enter"),
                    tp("on_sys_exit", "raw_syscalls", "sys_exit"),
                ],
            },
        ],
    },
    Feature {
        name: "udp_peers",
        needed_for:
            "peers of unconnected UDP sockets, and connected ones known before their first datagram",
        core: false,
        hooks: &[Hook {
            kind: HookKind::Cgroup,
            programs: &[
                cg("on_sendmsg4", "sendmsg4"),
                cg("on_sendmsg6", "sendmsg6"),
                cg("on_recvmsg4", "recvmsg4"),
                cg("on_recvmsg6", "recvmsg6"),
                cg("on_connect4", "connect4"),
                cg("on_connect6", "connect6"),
            ],
        }],
    },
    Feature {
        name: "nat",
        needed_for: "destinations translated on this host (actual_dst_ip, actual_dport)",
        core: false,
        hooks: &[Hook {
            kind: HookKind::Tracepoint,
            programs: &[tp("on_net_dev_queue", "net", "net_dev_queue")],
        }],
    },
    Feature {
        name: "seed",
        needed_for: "TCP connections and listeners opened before the agent started, in every network namespace",
        core: false,
        hooks: &[Hook {
            kind: HookKind::Iter,
            programs: &[Attach::Iter {
                program: "seed_tcp_sockets",
                target: "tcp",
            }],
        }],
    },
    // Sockets are marked as DNS clients by the udp_peers programs
    // (connect4/6, sendmsg4/6): without them this feature has nothing to see.
    Feature {
        name: "dns",
        needed_for: "DNS requests, their answers and durations, and dst_name",
        core: false,
        hooks: &[Hook {
            kind: HookKind::CgroupSkb,
            programs: &[
                skb("on_dns_egress", "egress"),
                skb("on_dns_ingress", "ingress"),
            ],
        }],
    },
    Feature {
        name: "drops",
        needed_for: "packet drops with the kernel's reason (netagent_packet_drops_total)",
        core: false,
        hooks: &[Hook {
            kind: HookKind::Tracepoint,
            programs: &[tp("on_kfree_skb", "skb", "kfree_skb")],
        }],
    },
];

/// What trying a hook on this kernel gave, for `netagent probe`.
#[derive(Debug, Clone)]
pub struct HookTrial {
    pub feature: &'static str,
    pub hook: HookKind,
    pub probes: Vec<TrialProbe>,
    /// Ok, or why it cannot be used.
    pub result: Result<(), String>,
    /// What else to know about a working hook (which variant, how it
    /// attaches).
    pub note: Option<String>,
    /// For the features of [`STATE_FEATURES`]: where UDP state was kept,
    /// and the mode the object was loaded in.
    pub state: Option<SockState>,
    pub mode: Option<ObjectMode>,
}

/// One program of a tried hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialProbe {
    /// As in `/health`, `netagent_probe_up` and `debug.disable_probes`.
    pub name: String,
    /// The ELF section: exactly which kernel hook (`tp_btf/…`, `kprobe/…`).
    pub section: String,
    /// The BPF program's name.
    pub program: &'static str,
}

impl From<&Attach> for TrialProbe {
    fn from(a: &Attach) -> Self {
        Self {
            name: a.probe_name(),
            section: a.section(),
            program: a.program(),
        }
    }
}

/// `feature:hook` names a whole hook in `debug.disable_probes`.
pub fn hook_id(feature: &Feature, hook: &Hook) -> String {
    format!("{}:{}", feature.name, hook.kind.name())
}

/// Every name `debug.disable_probes` accepts: probe names and hook ids.
pub fn disable_names() -> Vec<String> {
    let mut out = Vec::new();
    for f in FEATURES {
        for h in f.hooks {
            out.push(hook_id(f, h));
            for p in h.programs {
                out.push(p.probe_name());
            }
        }
    }
    // A feature may list one kind of hook twice (two variants of a
    // tracepoint program): each name once.
    let mut seen = std::collections::HashSet::new();
    out.retain(|n| seen.insert(n.clone()));
    out
}

/// What to know about a hook that works, beyond its programs (for
/// `netagent probe`): the variant a tracepoint program is.
pub fn note(hook: &Hook) -> Option<String> {
    hook.programs.iter().find_map(|p| match *p {
        Attach::Tracepoint {
            category,
            event,
            arg: Some((index, ty)),
            ..
        } => Some(format!(
            "reads argument {} of {category}:{event} ({ty})",
            index + 1
        )),
        _ => None,
    })
}

/// The running kernel's BTF: parsed for aya, and the raw bytes for what
/// aya does not expose (function prototypes, [`super::btf_raw`]).
pub struct KernelBtf {
    pub btf: Btf,
    pub raw: Vec<u8>,
}

impl KernelBtf {
    /// From a file: `/sys/kernel/btf/vmlinux` or `kernel.btf_path`.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let raw = std::fs::read(path).map_err(|e| e.to_string())?;
        let btf = Btf::parse(&raw, aya::Endianness::default()).map_err(|e| e.to_string())?;
        Ok(Self { btf, raw })
    }
}

/// Why a hook cannot work on this kernel, from BTF alone (before anything
/// is loaded), or None if it may.
pub fn precheck(hook: &Hook, kbtf: &KernelBtf) -> Option<String> {
    let btf = &kbtf.btf;
    if hook.kind == HookKind::Syscalls && !cfg!(target_arch = "x86_64") {
        return Some("raw syscall hooks are implemented for x86-64 only".into());
    }
    for p in hook.programs {
        match *p {
            Attach::Tracepoint {
                category,
                event,
                arg,
                ..
            } => {
                if btf
                    .id_by_type_name_kind(&format!("btf_trace_{event}"), BtfKind::Typedef)
                    .is_err()
                {
                    return Some(format!(
                        "tracepoint {category}:{event} does not exist on this kernel"
                    ));
                }
                if let Some((index, ty)) = arg {
                    let found = super::btf_raw::tracepoint_arg(&kbtf.raw, event, index);
                    let n = index + 1;
                    match found {
                        Some(t) if t == ty => {}
                        Some(t) => {
                            return Some(format!(
                                "argument {n} of tracepoint {category}:{event} is {t} on this \
                                 kernel, the program reads {ty}"
                            ))
                        }
                        None => {
                            return Some(format!(
                                "tracepoint {category}:{event} has no argument {n} ({ty}) on \
                                 this kernel"
                            ))
                        }
                    }
                }
            }
            Attach::Fexit { func, args, .. } => {
                match super::btf_raw::param_count(&kbtf.raw, func) {
                    None => return Some(format!("kernel function {func} not found in BTF")),
                    Some(n) if n != args => {
                        return Some(format!(
                            "kernel function {func} takes {n} parameters here, the fexit \
                             program expects {args} (it reads the return value after them)"
                        ))
                    }
                    Some(_) => {}
                }
            }
            Attach::Kprobe { func, .. } => {
                if btf.id_by_type_name_kind(func, BtfKind::Func).is_err() {
                    return Some(format!("kernel function {func} not found in BTF"));
                }
            }
            Attach::Iter { target, .. } => {
                if btf
                    .id_by_type_name_kind(&format!("bpf_iter_{target}"), BtfKind::Func)
                    .is_err()
                {
                    return Some(format!(
                        "BPF iterator {target} does not exist on this kernel (Linux 5.9+)"
                    ));
                }
            }
            Attach::Cgroup { .. } | Attach::CgroupSkb { .. } => {}
        }
    }
    None
}

/// The running kernel's release string (uname -r), for reports.
pub fn kernel_release() -> String {
    uname_release()
}

fn uname_release() -> String {
    // SAFETY: uname fills the struct it is given; zeroed is a valid start.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    // SAFETY: the kernel NUL-terminates `release`.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_core_is_first() {
        assert!(FEATURES[0].core);
        assert_eq!(FEATURES.iter().filter(|f| f.core).count(), 1);
        let mut progs: Vec<&str> = FEATURES
            .iter()
            .flat_map(|f| f.hooks.iter().flat_map(|h| h.programs.iter()))
            .map(|p| p.program())
            .collect();
        let n = progs.len();
        progs.sort();
        progs.dedup();
        assert_eq!(progs.len(), n, "a program is listed twice");
    }

    /// Every C source and header under `dir`, subfolders included.
    fn c_sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                c_sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "c" || e == "h") {
                out.push(path);
            }
        }
    }

    /// `section()` is what the C source declares for each program, in
    /// whichever file under bpf/ the program is.
    #[test]
    fn sections_match_the_c_source() {
        let mut files = Vec::new();
        c_sources(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf")),
            &mut files,
        );
        let src: String = files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        for p in FEATURES
            .iter()
            .flat_map(|f| f.hooks.iter().flat_map(|h| h.programs.iter()))
        {
            let decl = src
                .split("SEC(\"")
                .skip(1)
                .find(|chunk| {
                    chunk.split_once('\n').is_some_and(|(_, next)| {
                        let line = next.lines().next().unwrap_or("");
                        line.contains(&format!("({},", p.program()))
                            || line.contains(&format!(" {}(", p.program()))
                    })
                })
                .unwrap_or_else(|| panic!("no SEC() before {}", p.program()));
            let section = decl.split('"').next().unwrap();
            assert_eq!(section, p.section(), "{}", p.program());
        }
    }

    #[test]
    fn disable_names_cover_hooks_and_probes() {
        let names = disable_names();
        assert!(names.contains(&"messages:tracepoint".to_string()));
        assert!(names.contains(&"tracepoint/sock:sock_send_length".to_string()));
        assert!(names.contains(&"kretprobe/inet6_recvmsg".to_string()));
        assert!(names.contains(&"cgroup/recvmsg4".to_string()));
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a name twice: {names:?}");
        assert!(names.contains(&"cgroup_skb/egress".to_string()));
        assert!(names.contains(&"dns:cgroup_skb".to_string()));
    }

    #[test]
    fn release_is_read() {
        assert!(kernel_release().starts_with(|c: char| c.is_ascii_digit()));
    }
}
