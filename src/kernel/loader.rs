//! Loads the embedded BPF object, fills its configuration, and attaches every
//! program. Dropping [`Probes`] detaches everything: all links are owned by
//! file descriptors, nothing is pinned, so even SIGKILL leaves nothing behind.

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::{Ebpf, EbpfLoader};

use super::hooks::{
    self, Feature, Hook, HookKind, KernelBtf, ObjectMode, SockState, STATE_FEATURES,
};
use super::series::{self, SeriesMap};

use super::abi::{FlowStats, Hist, ListenKey, Listener, COMM_LEN, HIST_BOUNDS, HIST_KINDS};
use super::attach::attach_hook;
pub use super::attach::ProbeInfo;
use super::choice::log_choice;
use super::conns::ConnMaps;
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
    /// Spans per second and CPU the kernel lets into the ring when only the
    /// OTLP exporter reads them (its `max_spans_per_second`); None: all.
    pub span_cap: Option<u32>,
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
    /// DNS (`dns.enabled`): its ports and ring buffer; None = off.
    pub dns: Option<super::dns::DnsOptions>,
    /// Count packet drops (`drops.enabled`), with room for this many keys
    /// (`drops.max_series`).
    pub drops: bool,
    pub drops_max_series: u32,
    /// Drop reasons not to count (`drops.ignore_reasons`), by name.
    pub drops_ignore: Vec<String>,
}

/// The maps the collector reads (and, for `listeners`, seeds).
pub struct KernelMaps {
    pub flows: SeriesMap<FlowStats>,
    pub hists: SeriesMap<Hist>,
    /// By flow slot: the slot references of its histograms, zeroed when
    /// the flow's slot is freed (`flow_hists` in bpf/netagent/maps.h).
    pub flow_hists: Array<MapData, [u32; HIST_KINDS]>,
    pub listeners: HashMap<MapData, ListenKey, Listener>,
    pub lost: PerCpuArray<MapData, u64>,
    /// TCP socket state (idle connections) and resets sent by reason.
    pub conns: ConnMaps,
    pub drops: super::drops::DropMaps,
}

/// Which hook serves a feature, and why the ones before it were not used.
#[derive(Debug, Clone)]
pub struct FeatureStatus {
    pub feature: &'static str,
    pub needed_for: &'static str,
    /// None: no hook works; the feature is unavailable.
    pub hook: Option<HookKind>,
    pub rejected: Vec<(HookKind, String)>,
    /// Where UDP socket state is kept, for the features of
    /// [`STATE_FEATURES`] that have a hook.
    pub state: Option<SockState>,
}

/// Loaded and attached kernel programs. Drop to detach.
pub struct Probes {
    /// What is attached, for `/health` and `netagent_probe_up`.
    pub probes: Vec<ProbeInfo>,
    /// The hook chosen per feature, for `netagent_probe_info` and `/health`.
    pub features: Vec<FeatureStatus>,
    /// Owns the programs and their links (and the seeding iterator, seed.rs).
    pub(super) ebpf: Ebpf,
    pub maps: KernelMaps,
    /// False when unconnected UDP peers cannot be seen (no cgroup v2
    /// hierarchy, or a hook missing): they are then counted without a peer.
    pub udp_destinations: bool,
    /// Span records, taken by the span reader when spans are exported.
    pub span_events: Option<aya::maps::RingBuf<MapData>>,
    /// Spans the kernel dropped over `span_cap`, for the span reader.
    pub span_cap: Option<super::spans::SpanCap>,
    /// DNS messages and their lost counts, when the DNS feature is attached.
    pub dns: Option<super::dns::DnsMaps>,
}

/// Kernel BTF: the configured file, or the running kernel's.
pub(super) fn kernel_btf(opts: &LoadOptions) -> Result<KernelBtf, KernelError> {
    match &opts.btf_path {
        Some(path) => KernelBtf::read(path).map_err(|e| {
            KernelError::MissingBtf(format!(
                "cannot read kernel.btf_path {}: {e}",
                path.display()
            ))
        }),
        None => KernelBtf::read(std::path::Path::new("/sys/kernel/btf/vmlinux")).map_err(|e| {
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
        let kbtf = kernel_btf(opts)?;
        // Connect counting is the core: without its hook there is nothing to
        // run. Every other feature without a working hook is only reported
        // (in /health and netagent_probe_up) while the rest runs.
        let core = &hooks::FEATURES[0];
        if let Some(why) = hooks::precheck(&core.hooks[0], &kbtf) {
            return Err(KernelError::MissingHook {
                hook: why,
                needed_for: core.needed_for,
            });
        }
        // Socket-local storage first; where no typed message hook works with
        // it (or the cgroup hooks cannot use it), the object is loaded again
        // with UDP state by address for the typed hooks still in question,
        // and then for the untyped ones.
        let mut mode = ObjectMode::Storage;
        let mut earlier = Retry::default();
        loop {
            let (mut probes, next) = load_with(opts, &kbtf, mode, &earlier)?;
            let Some((next_mode, found)) = next else {
                for f in &mut probes.features {
                    if let Some((_, before)) =
                        earlier.rejected.iter().find(|(n, _)| *n == f.feature)
                    {
                        let mut all = before.clone();
                        all.extend(f.rejected.drain(..).filter(|r| !before.contains(r)));
                        f.rejected = all;
                    }
                }
                return Ok(probes);
            };
            drop(probes);
            earlier.absorb(found);
            mode = next_mode;
        }
    }
}

/// The object with its configuration, loaded in `mode`. Map sizes come
/// from `opts` (the verifier-only job passes tiny ones); the maps a mode
/// does not use get one entry.
pub(super) fn open_object(
    opts: &LoadOptions,
    kbtf: &KernelBtf,
    mode: ObjectMode,
) -> Result<Ebpf, KernelError> {
    let track_all = u8::from(opts.track_all);
    let emit_spans = u8::from(opts.emit_spans);
    let by_address = mode != ObjectMode::Storage;
    let untyped = mode == ObjectMode::Untyped;
    let msg_index = u8::from(by_address);
    let tcp_prealloc = u8::from(untyped);
    let sockets = opts.max_sockets.max(1);
    let size = |used: bool, n: u32| if used { n } else { 1 };
    let dns_on = u8::from(opts.dns.is_some());
    let dns_ports = opts
        .dns
        .as_ref()
        .map(|d| d.port_slots())
        .unwrap_or_default();
    let dns_ring = opts.dns.as_ref().map_or(4096, |d| d.ring_bytes);
    EbpfLoader::new()
        .btf(Some(&kbtf.btf))
        .override_global("track_all", &track_all, true)
        .override_global("hist_bounds_ns", &opts.hist_bounds_ns, true)
        .override_global("emit_spans", &emit_spans, true)
        .override_global("span_cap", &opts.span_cap.unwrap_or(u32::MAX), true)
        .override_global("netns_only", &opts.netns_only, true)
        .override_global("msg_index", &msg_index, true)
        .override_global("tcp_prealloc", &tcp_prealloc, true)
        .override_global("dns_on", &dns_on, true)
        .override_global("dns_ports", &dns_ports, true)
        .map_max_entries("dns_events", dns_ring)
        .override_global(
            "drop_ignore",
            &super::drops::ignore_values(&kbtf.raw, &opts.drops_ignore),
            true,
        )
        // One page when nothing reads spans: the programs never write it.
        .map_max_entries(
            "span_events",
            if opts.emit_spans {
                opts.span_ring_bytes
            } else {
                4096
            },
        )
        .map_max_entries("flows", opts.max_series)
        .map_max_entries("flow_counters", opts.max_series)
        .map_max_entries("flow_slots", opts.max_series)
        .map_max_entries("flow_gens", opts.max_series)
        .map_max_entries("hist_gens", opts.max_series)
        .map_max_entries("hists", opts.max_series)
        .map_max_entries("hist_counters", opts.max_series)
        .map_max_entries("hist_slots", opts.max_series)
        .map_max_entries("flow_hists", opts.max_series)
        .map_max_entries("reset_reasons", opts.max_series)
        .map_max_entries("listeners", opts.max_listeners)
        .map_max_entries("tcp_socks", size(!untyped, sockets))
        .map_max_entries("tcp_socks_pre", size(untyped, sockets))
        .map_max_entries("sock_index", size(by_address, opts.max_sockets.max(1024)))
        .map_max_entries("task_pending", size(by_address, 8192))
        .map_max_entries("msg_calls", size(untyped, 8192))
        .map_max_entries("nat_flows", opts.nat_max_pending.max(1))
        .map_max_entries("nat_found", opts.nat_max_pending.max(1))
        .map_max_entries("seed_owners", sockets)
        .map_max_entries("drops", size(opts.drops, opts.drops_max_series.max(1)))
        .load(OBJECT)
        .map_err(|e| KernelError::Object(e.to_string()))
}

/// The config switch that turns a whole feature off, when it is off. Such
/// a feature is not down: its probes are not reported (as with
/// `oom_kills.enabled`), only its reason in `/health`'s `features`.
fn switched_off(opts: &LoadOptions, feature: &Feature) -> Option<&'static str> {
    match feature.name {
        "nat" if !opts.nat => Some("nat.enabled is false"),
        "drops" if !opts.drops => Some("drops.enabled is false"),
        _ => None,
    }
}

/// Why the config or `debug.disable_probes` switches this hook off, if it does.
pub(super) fn disabled(opts: &LoadOptions, feature: &Feature, hook: &Hook) -> Option<String> {
    let id = hooks::hook_id(feature, hook);
    if let Some(why) = switched_off(opts, feature) {
        return Some(why.into());
    }
    if feature.name == "dns" && opts.dns.is_none() {
        return Some("dns.enabled is false".into());
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

/// What the loads so far found about the features of [`STATE_FEATURES`],
/// for the next load (in the next [`ObjectMode`]).
#[derive(Debug, Default)]
struct Retry {
    /// Per feature, the hooks rejected so far, reported before those of
    /// the final load.
    rejected: Vec<(&'static str, Vec<(HookKind, String)>)>,
    /// Hooks rejected for reasons no mode changes (switched off, missing
    /// on this kernel, no cgroup v2): not tried again.
    skip: Vec<(&'static str, HookKind)>,
}

impl Retry {
    fn absorb(&mut self, found: Retry) {
        for (feature, rejected) in found.rejected {
            match self.rejected.iter_mut().find(|(f, _)| *f == feature) {
                Some((_, all)) => {
                    for r in rejected {
                        if !all.contains(&r) {
                            all.push(r);
                        }
                    }
                }
                None => self.rejected.push((feature, rejected)),
            }
        }
        for s in found.skip {
            if !self.skip.contains(&s) {
                self.skip.push(s);
            }
        }
    }
}

/// A load: the probes, and, when the feature's hooks need another mode,
/// that mode and what this load found.
type Loaded = (Probes, Option<(ObjectMode, Retry)>);

fn load_with(
    opts: &LoadOptions,
    kbtf: &KernelBtf,
    mode: ObjectMode,
    earlier: &Retry,
) -> Result<Loaded, KernelError> {
    let btf = &kbtf.btf;
    let mut ebpf = open_object(opts, kbtf, mode)?;

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
    let mut slots = slots.into_iter();

    let cgroup_root = super::cgroup::v2_root();
    let mut probes = Vec::new();
    let mut features = Vec::new();
    let mut udp_destinations = false;
    // The udp_peers programs that mark DNS sockets are attached.
    let mut dns_marking = false;
    // The mode the next load needs, if any: a message hook of another mode
    // is next in line, or the cgroup hooks could not load with storage.
    let mut next: Option<ObjectMode> = None;
    // A typed message hook failed in this mode (so worth a try by address).
    let mut typed_failed = false;
    let mut found = Retry::default();
    for feature in hooks::FEATURES {
        let stateful = STATE_FEATURES.contains(&feature.name);
        let mut status = FeatureStatus {
            feature: feature.name,
            needed_for: feature.needed_for,
            hook: None,
            rejected: Vec::new(),
            state: None,
        };
        for hook in feature.hooks {
            if stateful && earlier.skip.contains(&(feature.name, hook.kind)) {
                continue;
            }
            let mut reject = |why: String| {
                found.skip.push((feature.name, hook.kind));
                status.rejected.push((hook.kind, why));
            };
            if let Some(why) = disabled(opts, feature, hook) {
                reject(why);
                continue;
            }
            if let Some(why) = hooks::precheck(hook, kbtf) {
                reject(why);
                continue;
            }
            if feature.name == "dns" && !dns_marking {
                reject(
                    "the udp_peers cgroup hooks (connect4/6, sendmsg4/6), which mark DNS \
                     sockets, are not all attached"
                        .into(),
                );
                continue;
            }
            if matches!(hook.kind, HookKind::Cgroup | HookKind::CgroupSkb) && cgroup_root.is_none()
            {
                reject(
                    "no cgroup v2 hierarchy mounted (unconnected UDP peers are counted as \
                     dst_ip=\"::\"; TCP and connected UDP are unaffected)"
                        .into(),
                );
                continue;
            }
            if stateful {
                let wants = ObjectMode::for_hook(hook.kind, mode.state());
                if wants == ObjectMode::Untyped && mode != ObjectMode::Untyped {
                    // Untyped programs work only in their own mode; typed
                    // ones that failed with storage get a try by address
                    // first.
                    next = Some(if mode == ObjectMode::Storage && typed_failed {
                        ObjectMode::Address
                    } else {
                        ObjectMode::Untyped
                    });
                    break;
                }
                let has_untyped = feature.hooks.iter().any(|h| h.kind.untyped());
                if wants != ObjectMode::Untyped && mode == ObjectMode::Untyped && has_untyped {
                    continue; // a typed message hook: tried in an earlier mode
                }
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
                        dns_marking = attached
                            .iter()
                            .filter(|a| super::dns::MARKING_PROBES.contains(&a.name.as_str()))
                            .all(|a| a.prog_id != 0);
                    }
                    probes.append(&mut attached);
                    status.hook = Some(hook.kind);
                    status.state = stateful.then_some(mode.state());
                    break;
                }
                Err(e) if stateful && !hook.kind.untyped() => {
                    status
                        .rejected
                        .push((hook.kind, hooks::state_rejection(mode.state(), &e)));
                    typed_failed = true;
                    // A feature with no untyped hook to fall back to gets
                    // its own try by address: the cgroup hooks on any
                    // error, NAT when refused a storage helper (otherwise
                    // NAT's failure would move every feature's state).
                    let retry = !feature.hooks.iter().any(|h| h.kind.untyped())
                        && (hook.kind == HookKind::Cgroup || hooks::storage_refusal(&e));
                    if mode == ObjectMode::Storage && retry {
                        next.get_or_insert(ObjectMode::Address);
                    }
                }
                Err(e) => status.rejected.push((hook.kind, e)),
            }
        }
        if stateful {
            found.rejected.push((feature.name, status.rejected.clone()));
        }
        if feature.core && status.hook.is_none() {
            log_choice(
                feature,
                status.hook,
                &status.rejected,
                true,
                false,
                &mut probes,
            )?;
        }
        features.push(status);
    }
    // A load that is followed by another logs nothing: the last decides.
    if next.is_none() {
        for (feature, status) in hooks::FEATURES.iter().zip(&features) {
            let off = switched_off(opts, feature).is_some();
            log_choice(
                feature,
                status.hook,
                &status.rejected,
                cgroup_root.is_some(),
                off,
                &mut probes,
            )?;
        }
    }

    let maps = KernelMaps {
        flows: SeriesMap::new(
            take_map(&mut ebpf, "flows")?,
            take_map(&mut ebpf, "flow_counters")?,
            take_map(&mut ebpf, "flow_gens")?,
            slots
                .next()
                .ok_or_else(|| KernelError::Object("flow_slots".into()))?,
        )?,
        hists: SeriesMap::new(
            take_map(&mut ebpf, "hists")?,
            take_map(&mut ebpf, "hist_counters")?,
            take_map(&mut ebpf, "hist_gens")?,
            slots
                .next()
                .ok_or_else(|| KernelError::Object("hist_slots".into()))?,
        )?,
        flow_hists: Array::try_from(take_map(&mut ebpf, "flow_hists")?)
            .map_err(|e| KernelError::Object(e.to_string()))?,
        listeners: HashMap::try_from(take_map(&mut ebpf, "listeners")?)
            .map_err(|e| KernelError::Object(e.to_string()))?,
        lost: PerCpuArray::try_from(take_map(&mut ebpf, "lost")?)
            .map_err(|e| KernelError::Object(e.to_string()))?,
        conns: ConnMaps::new(
            take_map(
                &mut ebpf,
                if mode == ObjectMode::Untyped {
                    "tcp_socks_pre"
                } else {
                    "tcp_socks"
                },
            )?,
            take_map(&mut ebpf, "reset_reasons")?,
            &kbtf.raw,
        )?,
        drops: super::drops::DropMaps::new(
            take_map(&mut ebpf, "drops")?,
            take_map(&mut ebpf, "drop_lost")?,
            &kbtf.raw,
        )?,
    };
    let span_events = take_map(&mut ebpf, "span_events")
        .ok()
        .and_then(|m| aya::maps::RingBuf::try_from(m).ok());
    let span_cap = match opts.span_cap {
        Some(_) => Some(super::spans::SpanCap::new(take_map(
            &mut ebpf,
            "span_rate",
        )?)?),
        None => None,
    };
    let dns = if features
        .iter()
        .any(|f| f.feature == "dns" && f.hook.is_some())
    {
        Some(super::dns::DnsMaps::take(&mut ebpf)?)
    } else {
        None
    };
    Ok((
        Probes {
            probes,
            features,
            ebpf,
            maps,
            udp_destinations,
            span_events,
            span_cap,
            dns,
        },
        next.map(|m| (m, found)),
    ))
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
