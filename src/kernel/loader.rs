//! Loads the embedded BPF object, fills its configuration, and attaches every
//! program. Dropping [`Probes`] detaches everything: all links are owned by
//! file descriptors, nothing is pinned, so even SIGKILL leaves nothing behind.

use aya::maps::{HashMap, MapData, PerCpuArray};
use aya::{Btf, Ebpf, EbpfLoader};

use super::hooks::{self, Attach, Feature, Hook, HookKind};
use super::series::{self, SeriesMap};

use super::abi::{FlowStats, Hist, ListenKey, Listener, COMM_LEN, HIST_BOUNDS, HIST_KINDS};
pub use super::attach::ProbeInfo;
use super::attach::{attach_hook, unload_hook};
pub use super::error::KernelError;
pub use super::hooks::{HookTrial, TrialProbe};
use super::privileges;

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
    /// Probes or hooks not to use (`debug.disable_probes`), by [`probe_names`].
    pub disabled_probes: Vec<String>,
    /// Capacity of the TCP socket state (`tcp_socks`), and of the UDP
    /// state by address when messages fall back to kprobes or syscall hooks.
    pub max_sockets: u32,
    /// Kernel BTF file for kernels without /sys/kernel/btf/vmlinux.
    pub btf_path: Option<std::path::PathBuf>,
    /// Resolve this host's NAT (`nat.enabled`), and how many questions
    /// may wait for an answer at once (`nat.max_pending`).
    pub nat: bool,
    pub nat_max_pending: u32,
}

/// The maps the collector reads (and, for `listeners`, seeds).
pub struct KernelMaps {
    pub flows: SeriesMap<FlowStats>,
    pub hists: SeriesMap<Hist>,
    /// The free-slot queues of both, kept open with the programs.
    pub _slots: Vec<aya::maps::Map>,
    pub listeners: HashMap<MapData, ListenKey, Listener>,
    pub lost: PerCpuArray<MapData, u64>,
}

/// Which hook serves a feature, and why the ones before it were not used.
#[derive(Debug, Clone)]
pub struct FeatureStatus {
    pub feature: &'static str,
    pub needed_for: &'static str,
    /// None: no hook works; the feature is unavailable.
    pub hook: Option<HookKind>,
    pub rejected: Vec<(HookKind, String)>,
}

/// Loaded and attached kernel programs. Drop to detach.
pub struct Probes {
    /// What is attached, for `/health` and `netagent_probe_up`.
    pub probes: Vec<ProbeInfo>,
    /// The hook chosen per feature, for `netagent_probe_info` and `/health`.
    pub features: Vec<FeatureStatus>,
    /// Owns the programs and their links.
    _ebpf: Ebpf,
    pub maps: KernelMaps,
    /// False when unconnected UDP peers cannot be seen (no cgroup v2
    /// hierarchy, or a hook missing): they are then counted without a peer.
    pub udp_destinations: bool,
    /// Span records, taken by the span reader when spans are exported.
    pub span_events: Option<aya::maps::RingBuf<MapData>>,
}

/// Kernel BTF: the configured file, or the running kernel's.
fn kernel_btf(opts: &LoadOptions) -> Result<Btf, KernelError> {
    match &opts.btf_path {
        Some(path) => Btf::parse_file(path, aya::Endianness::default()).map_err(|e| {
            KernelError::MissingBtf(format!(
                "cannot read kernel.btf_path {}: {e}",
                path.display()
            ))
        }),
        None => Btf::from_sys_fs().map_err(|e| {
            KernelError::MissingBtf(format!(
                "kernel BTF is not available at /sys/kernel/btf/vmlinux ({e}); the kernel needs \
                 CONFIG_DEBUG_INFO_BTF=y, or point kernel.btf_path at a BTF file for this exact \
                 kernel (for example from btfhub)"
            ))
        }),
    }
}

impl Probes {
    /// Checks privileges and hooks, loads, configures and attaches everything.
    pub fn load(opts: &LoadOptions) -> Result<Self, KernelError> {
        if let Some(missing) = privileges::first_missing() {
            return Err(KernelError::MissingCapability(missing));
        }
        privileges::raise_memlock_limit();
        let btf = kernel_btf(opts)?;
        // Connect counting is the core: without its hook there is nothing to
        // run. Every other feature without a working hook is only reported
        // (in /health and netagent_probe_up) while the rest runs.
        let core = &hooks::FEATURES[0];
        if let Some(why) = hooks::precheck(&core.hooks[0], &btf) {
            return Err(KernelError::MissingHook {
                hook: why,
                needed_for: core.needed_for,
            });
        }
        let first = load_with(opts, &btf, None)?;
        match first.1 {
            // The chosen message hook only sees socket addresses: the object
            // is loaded again with its programs set up for that.
            Some((kind, rejected)) => {
                drop(first.0);
                let (mut probes, _) = load_with(opts, &btf, Some(kind))?;
                for f in &mut probes.features {
                    if f.feature == "messages" {
                        let mut r = rejected.clone();
                        r.append(&mut f.rejected);
                        f.rejected = r;
                    }
                }
                Ok(probes)
            }
            None => Ok(first.0),
        }
    }
}

/// Tries every hook of every feature on the running kernel (load, attach,
/// detach) without keeping anything: what `netagent probe` prints.
pub fn probe_kernel(opts: &LoadOptions) -> Result<Vec<HookTrial>, KernelError> {
    if let Some(missing) = privileges::first_missing() {
        return Err(KernelError::MissingCapability(missing));
    }
    privileges::raise_memlock_limit();
    let btf = kernel_btf(opts)?;
    let mut ebpf = open_object(opts, &btf, None)?;
    let cgroup_root = super::cgroup::v2_root();
    let mut out = Vec::new();
    for feature in hooks::FEATURES {
        for hook in feature.hooks {
            let result = if let Some(why) = disabled(opts, feature, hook) {
                Err(why)
            } else if let Some(why) = hooks::precheck(hook, &btf) {
                Err(why)
            } else {
                let attached = attach_hook(
                    &mut ebpf,
                    feature.name,
                    hook,
                    &btf,
                    cgroup_root.as_deref(),
                    &opts.disabled_probes,
                );
                unload_hook(&mut ebpf, hook);
                attached.and_then(|probes| {
                    let failed: Vec<&str> = probes
                        .iter()
                        .filter(|p| p.prog_id == 0)
                        .map(|p| p.name.as_str())
                        .collect();
                    if failed.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("not attached: {}", failed.join(", ")))
                    }
                })
            };
            out.push(HookTrial {
                feature: feature.name,
                hook: hook.kind,
                probes: hook.programs.iter().map(TrialProbe::from).collect(),
                result,
                note: None,
            });
        }
    }
    Ok(out)
}

/// Loads the object; `untyped` = the message hook kind it is loaded for,
/// when that hook only sees socket addresses.
fn open_object(
    opts: &LoadOptions,
    btf: &Btf,
    untyped: Option<HookKind>,
) -> Result<Ebpf, KernelError> {
    let track_all = u8::from(opts.track_all);
    let emit_spans = u8::from(opts.emit_spans);
    let msg_index = u8::from(untyped.is_some());
    // The address-keyed maps cost memory only when they are used.
    let (index_entries, call_entries) = if untyped.is_some() {
        (opts.max_sockets.max(1024), 8192)
    } else {
        (1, 1)
    };
    EbpfLoader::new()
        .btf(Some(btf))
        .override_global("track_all", &track_all, true)
        .override_global("hist_bounds_ns", &opts.hist_bounds_ns, true)
        .override_global("emit_spans", &emit_spans, true)
        .override_global("netns_only", &opts.netns_only, true)
        .override_global("msg_index", &msg_index, true)
        .map_max_entries("span_events", opts.span_ring_bytes)
        .map_max_entries("flows", opts.max_series)
        .map_max_entries("flow_counters", opts.max_series)
        .map_max_entries("flow_slots", opts.max_series)
        .map_max_entries("hists", opts.max_series)
        .map_max_entries("hist_counters", opts.max_series)
        .map_max_entries("hist_slots", opts.max_series)
        .map_max_entries("flow_hists", opts.max_series)
        .map_max_entries("listeners", opts.max_listeners)
        .map_max_entries("tcp_socks", opts.max_sockets.max(1))
        .map_max_entries("sock_index", index_entries)
        .map_max_entries("task_pending", call_entries)
        .map_max_entries("msg_calls", call_entries)
        .map_max_entries("nat_flows", opts.nat_max_pending.max(1))
        .map_max_entries("nat_found", opts.nat_max_pending.max(1))
        .load(OBJECT)
        .map_err(|e| KernelError::Object(e.to_string()))
}

/// Why `debug.disable_probes` switches this hook off, if it does.
fn disabled(opts: &LoadOptions, feature: &Feature, hook: &Hook) -> Option<String> {
    let id = hooks::hook_id(feature, hook);
    if feature.name == "nat" && !opts.nat {
        return Some("nat.enabled is false".into());
    }
    if opts.disabled_probes.contains(&id) {
        return Some(format!("{id} disabled by debug.disable_probes"));
    }
    // One cgroup program can be switched off alone; any other hook only
    // works with all of its programs.
    if hook.kind == HookKind::Cgroup {
        return None;
    }
    hook.programs
        .iter()
        .map(|p| p.probe_name())
        .find(|n| opts.disabled_probes.contains(n))
        .map(|n| format!("{n} disabled by debug.disable_probes"))
}

/// A trial or final load: the probes, and (on a trial) the untyped message
/// hook that won together with the hooks rejected before it.
type Loaded = (Probes, Option<(HookKind, Vec<(HookKind, String)>)>);

fn load_with(
    opts: &LoadOptions,
    btf: &Btf,
    untyped: Option<HookKind>,
) -> Result<Loaded, KernelError> {
    let mut ebpf = open_object(opts, btf, untyped)?;

    let mut targets: HashMap<_, [u8; COMM_LEN], u8> =
        HashMap::try_from(take_map(&mut ebpf, "targets")?)
            .map_err(|e| KernelError::Object(e.to_string()))?;
    for comm in &opts.targets {
        targets
            .insert(comm, 1, 0)
            .map_err(|e| KernelError::Object(format!("targets map: {e}")))?;
    }
    // Free series slots, before any program can need one.
    let mut slots = Vec::new();
    for name in ["flow_slots", "hist_slots"] {
        let mut queue = take_map(&mut ebpf, name)?;
        series::fill_slots(&mut queue, opts.max_series)?;
        slots.push(queue);
    }

    let cgroup_root = super::cgroup::v2_root();
    let mut probes = Vec::new();
    let mut features = Vec::new();
    let mut reload_for = None;
    let mut udp_destinations = false;
    for feature in hooks::FEATURES {
        let mut status = FeatureStatus {
            feature: feature.name,
            needed_for: feature.needed_for,
            hook: None,
            rejected: Vec::new(),
        };
        for hook in feature.hooks {
            // Reloaded for an untyped message hook: that one, nothing else.
            if feature.name == "messages" && untyped.is_some_and(|k| k != hook.kind) {
                continue;
            }
            if let Some(why) = disabled(opts, feature, hook) {
                status.rejected.push((hook.kind, why));
                continue;
            }
            if let Some(why) = hooks::precheck(hook, btf) {
                status.rejected.push((hook.kind, why));
                continue;
            }
            if hook.kind == HookKind::Cgroup && cgroup_root.is_none() {
                status.rejected.push((
                    hook.kind,
                    "no cgroup v2 hierarchy mounted (unconnected UDP peers are counted as \
                     dst_ip=\"::\"; TCP and connected UDP are unaffected)"
                        .into(),
                ));
                continue;
            }
            match attach_hook(
                &mut ebpf,
                feature.name,
                hook,
                btf,
                cgroup_root.as_deref(),
                &opts.disabled_probes,
            ) {
                Ok(mut attached) => {
                    if hook.kind.untyped() && untyped.is_none() {
                        // It works; load again with the programs set up for it.
                        unload_hook(&mut ebpf, hook);
                        reload_for = Some((hook.kind, status.rejected.clone()));
                    } else {
                        for (p, a) in hook.programs.iter().zip(&attached) {
                            if a.prog_id == 0 {
                                let name = p.probe_name();
                                let why = if opts.disabled_probes.contains(&name) {
                                    "disabled by debug.disable_probes"
                                } else {
                                    "failed to attach"
                                };
                                tracing::warn!(
                                    "{name} {why}: {} partly unavailable; everything else keeps running",
                                    feature.needed_for
                                );
                            }
                        }
                        if hook.kind == HookKind::Cgroup {
                            udp_destinations = attached.iter().all(|a| a.prog_id != 0);
                        }
                        probes.append(&mut attached);
                    }
                    status.hook = Some(hook.kind);
                    break;
                }
                Err(e) => status.rejected.push((hook.kind, e)),
            }
        }
        match status.hook {
            Some(kind) => {
                if !status.rejected.is_empty() {
                    tracing::info!(
                        feature = feature.name,
                        hook = kind.name(),
                        "using a fallback hook ({})",
                        rejected_text(&status.rejected)
                    );
                } else {
                    tracing::debug!(feature = feature.name, hook = kind.name(), "hook chosen");
                }
            }
            None if feature.core => {
                return Err(KernelError::Object(format!(
                    "{} ({}): {}",
                    feature.name,
                    feature.needed_for,
                    rejected_text(&status.rejected)
                )))
            }
            None => {
                tracing::warn!(
                    "{} unavailable ({}); everything else keeps running",
                    feature.needed_for,
                    rejected_text(&status.rejected)
                );
                // Reported as down under the preferred hook's probe names;
                // except cgroup hooks on a host without cgroup v2, which is
                // how that host is, not a fault (/health still lists it
                // under `features`).
                let no_cgroup_v2 =
                    feature.hooks[0].kind == HookKind::Cgroup && cgroup_root.is_none();
                for p in feature.hooks[0].programs.iter().filter(|_| !no_cgroup_v2) {
                    probes.push(ProbeInfo {
                        name: p.probe_name(),
                        feature: feature.name,
                        prog_id: 0,
                        has_target: matches!(p, Attach::Cgroup { .. }),
                    });
                }
            }
        }
        features.push(status);
    }

    let maps = KernelMaps {
        flows: SeriesMap::new(
            take_map(&mut ebpf, "flows")?,
            take_map(&mut ebpf, "flow_counters")?,
        )?,
        hists: SeriesMap::new(
            take_map(&mut ebpf, "hists")?,
            take_map(&mut ebpf, "hist_counters")?,
        )?,
        _slots: slots,
        listeners: HashMap::try_from(take_map(&mut ebpf, "listeners")?)
            .map_err(|e| KernelError::Object(e.to_string()))?,
        lost: PerCpuArray::try_from(take_map(&mut ebpf, "lost")?)
            .map_err(|e| KernelError::Object(e.to_string()))?,
    };
    let span_events = take_map(&mut ebpf, "span_events")
        .ok()
        .and_then(|m| aya::maps::RingBuf::try_from(m).ok());
    Ok((
        Probes {
            probes,
            features,
            _ebpf: ebpf,
            maps,
            udp_destinations,
            span_events,
        },
        reload_for,
    ))
}

fn rejected_text(rejected: &[(HookKind, String)]) -> String {
    if rejected.is_empty() {
        return "no hook".into();
    }
    rejected
        .iter()
        .map(|(k, why)| format!("{}: {why}", k.name()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Names a config may list in `debug.disable_probes`.
pub fn probe_names() -> Vec<String> {
    let mut names = hooks::disable_names();
    names.extend(super::oom::probe_names());
    names
}

/// A second descriptor of a hash map (for batch reads).
fn take_map(ebpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map, KernelError> {
    ebpf.take_map(name)
        .ok_or_else(|| KernelError::Object(format!("map {name} not found")))
}
