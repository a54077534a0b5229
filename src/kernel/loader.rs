//! Loads the embedded BPF object, fills its configuration, and attaches every
//! program. Dropping [`Probes`] detaches everything: all links are owned by
//! file descriptors, nothing is pinned, so even SIGKILL leaves nothing behind.

use std::fs::File;

use aya::maps::{HashMap, MapData, PerCpuArray};
use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSockAddr, ProgramError};
use aya::{Btf, Ebpf, EbpfLoader};
use aya_obj::btf::BtfKind;

use super::abi::{
    FlowKey, FlowStats, Hist, ListenKey, Listener, COMM_LEN, HIST_BOUNDS, HIST_KINDS,
};
use super::privileges::{self, MissingCapability};

/// The compiled kernel programs (see build.rs).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netagent.bpf.o"));

/// What the kernel side needs to know before it starts counting.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Track every process (label = comm) instead of only `targets`.
    pub track_all: bool,
    /// Kernel comm names of the processes to track.
    pub targets: Vec<[u8; COMM_LEN]>,
    /// Series capacity of the `flows` and `hists` maps.
    pub max_series: u32,
    /// Capacity of the `listeners` map.
    pub max_listeners: u32,
    /// Histogram upper bounds in nanoseconds, per [`super::abi::HistKind`].
    pub hist_bounds_ns: [[u64; HIST_BOUNDS]; HIST_KINDS],
    /// Emit request/response spans into the `span_events` ring buffer.
    pub emit_spans: bool,
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub span_ring_bytes: u32,
    /// Only sockets of this network namespace (inode number); 0 = all.
    pub netns_only: u32,
    /// Probes not to attach (`debug.disable_probes`), by [`probe_names`].
    pub disabled_probes: Vec<String>,
}

/// Why the kernel side could not start. Each message names what is missing.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("missing capability {}: needed for {} (run as root, or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)", .0.name, .0.needed_for)]
    MissingCapability(MissingCapability),
    #[error("kernel BTF is not available at /sys/kernel/btf/vmlinux (the kernel needs CONFIG_DEBUG_INFO_BTF=y): {0}")]
    MissingBtf(#[source] aya::BtfError),
    #[error("missing kernel hook: tracepoint {hook} does not exist on this kernel (needed for {needed_for})")]
    MissingHook {
        hook: String,
        needed_for: &'static str,
    },
    #[error("BPF program {program} was rejected: {detail}")]
    Load {
        program: &'static str,
        detail: String,
    },
    #[error("cannot attach {program} to {hook}: {source}")]
    Attach {
        program: &'static str,
        hook: String,
        #[source]
        source: ProgramError,
    },
    #[error("BPF object is malformed: {0}")]
    Object(String),
}

/// A BTF-typed tracepoint program and what it is for.
struct Tracepoint {
    program: &'static str,
    category: &'static str,
    event: &'static str,
    needed_for: &'static str,
}

const TRACEPOINTS: [Tracepoint; 6] = [
    Tracepoint {
        program: "on_inet_sock_set_state",
        category: "sock",
        event: "inet_sock_set_state",
        needed_for: "TCP connects, connection lifecycle and listeners",
    },
    Tracepoint {
        program: "on_tcp_retransmit_skb",
        category: "tcp",
        event: "tcp_retransmit_skb",
        needed_for: "TCP retransmits",
    },
    Tracepoint {
        program: "on_tcp_send_reset",
        category: "tcp",
        event: "tcp_send_reset",
        needed_for: "TCP resets sent",
    },
    Tracepoint {
        program: "on_tcp_receive_reset",
        category: "tcp",
        event: "tcp_receive_reset",
        needed_for: "TCP resets received",
    },
    Tracepoint {
        program: "on_sock_send_length",
        category: "sock",
        event: "sock_send_length",
        needed_for: "UDP datagrams, bytes sent and send->recv durations",
    },
    Tracepoint {
        program: "on_sock_recv_length",
        category: "sock",
        event: "sock_recv_length",
        needed_for: "bytes received and send->recv durations",
    },
];

/// Socket-address hooks that see the peer of unconnected UDP sends/receives.
const SOCK_ADDR_HOOKS: [&str; 4] = ["on_sendmsg4", "on_sendmsg6", "on_recvmsg4", "on_recvmsg6"];

/// The maps the collector reads (and, for `listeners`, seeds).
pub struct KernelMaps {
    pub flows: HashMap<MapData, FlowKey, FlowStats>,
    pub hists: HashMap<MapData, FlowKey, Hist>,
    pub listeners: HashMap<MapData, ListenKey, Listener>,
    pub lost: PerCpuArray<MapData, u64>,
}

/// One attached program, for health checks.
#[derive(Debug, Clone)]
pub struct ProbeInfo {
    /// e.g. `tracepoint/sock:inet_sock_set_state`, `cgroup/sendmsg4`.
    pub name: String,
    pub prog_id: u32,
    /// Attached to a target (cgroup) that can be detached from outside.
    pub has_target: bool,
}

/// Loaded and attached kernel programs. Drop to detach.
pub struct Probes {
    /// What is attached, for `/health` and `netagent_probe_up`.
    pub probes: Vec<ProbeInfo>,
    /// Owns the programs and their links.
    _ebpf: Ebpf,
    pub maps: KernelMaps,
    /// False when no cgroup v2 hierarchy was found: unconnected UDP sends
    /// and receives are then counted without a peer.
    pub udp_destinations: bool,
    /// Span records, taken by the span reader when spans are exported.
    pub span_events: Option<aya::maps::RingBuf<MapData>>,
}

impl Probes {
    /// Checks privileges and hooks, loads, configures and attaches everything.
    pub fn load(opts: &LoadOptions) -> Result<Self, KernelError> {
        if let Some(missing) = privileges::first_missing() {
            return Err(KernelError::MissingCapability(missing));
        }
        privileges::raise_memlock_limit();
        let btf = Btf::from_sys_fs().map_err(KernelError::MissingBtf)?;
        // Connect counting is the core: without its hook there is nothing to
        // run. Every other hook that is missing or switched off only takes
        // its own feature away (reported in /health and netagent_probe_up).
        let core = &TRACEPOINTS[0];
        if btf
            .id_by_type_name_kind(&format!("btf_trace_{}", core.event), BtfKind::Typedef)
            .is_err()
        {
            return Err(KernelError::MissingHook {
                hook: tracepoint_name(core),
                needed_for: core.needed_for,
            });
        }

        let track_all = u8::from(opts.track_all);
        let emit_spans = u8::from(opts.emit_spans);
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("track_all", &track_all, true)
            .override_global("hist_bounds_ns", &opts.hist_bounds_ns, true)
            .override_global("emit_spans", &emit_spans, true)
            .override_global("netns_only", &opts.netns_only, true)
            .map_max_entries("span_events", opts.span_ring_bytes)
            .map_max_entries("flows", opts.max_series)
            .map_max_entries("hists", opts.max_series)
            .map_max_entries("listeners", opts.max_listeners)
            .load(OBJECT)
            .map_err(|e| KernelError::Object(e.to_string()))?;

        let mut targets: HashMap<_, [u8; COMM_LEN], u8> =
            HashMap::try_from(take_map(&mut ebpf, "targets")?)
                .map_err(|e| KernelError::Object(e.to_string()))?;
        for comm in &opts.targets {
            targets
                .insert(comm, 1, 0)
                .map_err(|e| KernelError::Object(format!("targets map: {e}")))?;
        }

        let mut probes = Vec::new();
        for (i, tp) in TRACEPOINTS.iter().enumerate() {
            let name = format!("tracepoint/{}", tracepoint_name(tp));
            let attached = if opts.disabled_probes.contains(&name) {
                Err(format!("{name} disabled by debug.disable_probes"))
            } else if btf
                .id_by_type_name_kind(&format!("btf_trace_{}", tp.event), BtfKind::Typedef)
                .is_err()
            {
                Err(format!(
                    "tracepoint {} does not exist on this kernel",
                    tracepoint_name(tp)
                ))
            } else {
                attach_tracepoint(&mut ebpf, tp, &btf)
            };
            let prog_id = match attached {
                Ok(id) => id,
                // The core hook must work (checked above for existence).
                Err(e) if i == 0 && !opts.disabled_probes.contains(&name) => {
                    return Err(KernelError::Object(e))
                }
                Err(e) => {
                    tracing::warn!(
                        "{e}: {} unavailable; everything else keeps running",
                        tp.needed_for
                    );
                    0
                }
            };
            probes.push(ProbeInfo {
                name,
                prog_id,
                has_target: false,
            });
        }

        let udp_destinations = match super::cgroup::v2_root() {
            Some(root) => {
                let dir = File::open(&root).map_err(|e| {
                    KernelError::Object(format!(
                        "cannot open cgroup v2 root {}: {e}",
                        root.display()
                    ))
                })?;
                let mut all = true;
                for name in SOCK_ADDR_HOOKS {
                    let probe = format!("cgroup/{}", name.trim_start_matches("on_"));
                    let attached = if opts.disabled_probes.contains(&probe) {
                        Err(format!("{probe} disabled by debug.disable_probes"))
                    } else {
                        attach_sock_addr(&mut ebpf, name, &dir, &root)
                    };
                    let prog_id = attached.unwrap_or_else(|e| {
                        tracing::warn!(
                            "{e}: peers of unconnected UDP sockets are unknown for this family; \
                             everything else keeps running"
                        );
                        all = false;
                        0
                    });
                    probes.push(ProbeInfo {
                        name: probe,
                        prog_id,
                        has_target: true,
                    });
                }
                all
            }
            None => {
                tracing::warn!(
                    "no cgroup v2 hierarchy mounted: peers of unconnected UDP sockets are unknown \
                     (counted with dst_ip=\"::\"); TCP and connected UDP are unaffected"
                );
                false
            }
        };

        let maps = KernelMaps {
            flows: HashMap::try_from(take_map(&mut ebpf, "flows")?)
                .map_err(|e| KernelError::Object(e.to_string()))?,
            hists: HashMap::try_from(take_map(&mut ebpf, "hists")?)
                .map_err(|e| KernelError::Object(e.to_string()))?,
            listeners: HashMap::try_from(take_map(&mut ebpf, "listeners")?)
                .map_err(|e| KernelError::Object(e.to_string()))?,
            lost: PerCpuArray::try_from(take_map(&mut ebpf, "lost")?)
                .map_err(|e| KernelError::Object(e.to_string()))?,
        };
        let span_events = take_map(&mut ebpf, "span_events")
            .ok()
            .and_then(|m| aya::maps::RingBuf::try_from(m).ok());
        Ok(Self {
            probes,
            _ebpf: ebpf,
            maps,
            udp_destinations,
            span_events,
        })
    }
}

/// Loads and attaches one tracepoint program; its kernel id, or why not.
fn attach_tracepoint(ebpf: &mut Ebpf, tp: &Tracepoint, btf: &Btf) -> Result<u32, String> {
    let prog: &mut BtfTracePoint = program(ebpf, tp.program).map_err(|e| e.to_string())?;
    prog.load(tp.event, btf)
        .map_err(|e| load_error(tp.program, e).to_string())?;
    prog.attach().map_err(|source| {
        KernelError::Attach {
            program: tp.program,
            hook: format!("tracepoint {}", tracepoint_name(tp)),
            source,
        }
        .to_string()
    })?;
    Ok(prog.info().map(|i| i.id()).unwrap_or(0))
}

/// Loads and attaches one cgroup socket-address program.
fn attach_sock_addr(
    ebpf: &mut Ebpf,
    name: &'static str,
    dir: &File,
    root: &std::path::Path,
) -> Result<u32, String> {
    let prog: &mut CgroupSockAddr = program(ebpf, name).map_err(|e| e.to_string())?;
    prog.load().map_err(|e| load_error(name, e).to_string())?;
    // Kernel links coexist with other programs on the cgroup by design and
    // reject any attach flag with EINVAL, so `Single` (no flags) is right
    // here, not AllowMultiple.
    prog.attach(dir, CgroupAttachMode::Single)
        .map_err(|source| {
            KernelError::Attach {
                program: name,
                hook: format!("cgroup {}", root.display()),
                source,
            }
            .to_string()
        })?;
    Ok(prog.info().map(|i| i.id()).unwrap_or(0))
}

/// Probe names a config may disable (`debug.disable_probes`).
pub fn probe_names() -> Vec<String> {
    TRACEPOINTS
        .iter()
        .map(|tp| format!("tracepoint/{}", tracepoint_name(tp)))
        .chain(
            SOCK_ADDR_HOOKS
                .iter()
                .map(|n| format!("cgroup/{}", n.trim_start_matches("on_"))),
        )
        .chain(super::node::probe_names())
        .collect()
}

fn tracepoint_name(tp: &Tracepoint) -> String {
    format!("{}:{}", tp.category, tp.event)
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map, KernelError> {
    ebpf.take_map(name)
        .ok_or_else(|| KernelError::Object(format!("map {name} not found")))
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, KernelError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| KernelError::Object(format!("program {name} not found")))?;
    prog.try_into()
        .map_err(|e: ProgramError| KernelError::Object(format!("program {name}: {e}")))
}

/// Turns a load failure into one message: the errno plus the last lines of
/// the verifier log, which is where the actual reason is.
fn load_error(program: &'static str, err: ProgramError) -> KernelError {
    let detail = match &err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("{io_error}; verifier: {}", tail.join(" | "))
        }
        other => other.to_string(),
    };
    KernelError::Load { program, detail }
}
