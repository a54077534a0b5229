//! Wires config, kernel programs, collection and the HTTP server together,
//! and shuts everything down on SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::collect::interfaces::{InterfaceFilter, InterfaceSnapshot, InterfaceWatcher};
use crate::collect::spans::{decode, SpanDecoder};
use crate::collect::{harvest, listeners, KernelSnapshot};
use crate::config::{kernel_comm, Config};
use crate::export::otlp::{self, MetricEncoder, SpanSink, SpanStats, Transport};
use crate::export::statsd::{SpanBuffer, StatsdExporter, StatsdStats};
use crate::http::{router, Gather};
use crate::kernel::abi::comm_bytes;
use crate::kernel::iface::IfaceProbes;
use crate::kernel::links::links_of;
use crate::kernel::{cgroup, KernelError, LoadOptions, Probes};
use crate::model::bpf_self::BpfSelfCollector;
use crate::model::cardinality::{dropped_family, SeriesLimiter};
use crate::model::connections;
use crate::model::containers::CgroupResolver;
use crate::model::graph::{self, RateState};
use crate::model::labels::{Labeler, ProcessNames};
use crate::model::spans::FlowSpan;
use crate::model::{bounds_ns, interfaces, scalar_family, self_metrics, tcp, Family, Kind};
use crate::node::cloud::{self, CloudState};

/// How often cached cgroup -> container mappings are checked for removal.
const CONTAINER_PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Why the agent stopped with an error; maps to the exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Container resolution state: the resolver and when it was last pruned.
struct Containers {
    resolver: Option<CgroupResolver>,
    last_prune: Instant,
}

/// The interface collector's output, shared with its thread.
#[derive(Default)]
struct InterfaceState {
    snapshot: InterfaceSnapshot,
    /// TC program ids and attached interfaces, for health.
    program_ids: Vec<u32>,
    /// Attached with netlink filters (no link descriptors to check).
    netlink: bool,
    attached: Vec<(u32, String)>,
}

/// One probe's state for `/health` and `netagent_probe_up`.
struct ProbeStatus {
    name: String,
    /// The feature the probe serves; TC probes: `interfaces`.
    feature: &'static str,
    attached: bool,
    required: bool,
}

/// The running agent as the HTTP layer sees it.
struct Agent {
    probes: Mutex<Probes>,
    names: ProcessNames,
    containers: Mutex<Containers>,
    limiter: Mutex<SeriesLimiter>,
    interfaces: Arc<Mutex<InterfaceState>>,
    active_only: bool,
    graph_rates: Mutex<RateState>,
    bpf_self: BpfSelfCollector,
    span_stats: Arc<SpanStats>,
    statsd_stats: Arc<StatsdStats>,
    started: Instant,
    last_scrape: Mutex<Option<SystemTime>>,
    targets: usize,
    /// Cloud instance metadata, filled in by a background task.
    cloud: Arc<CloudState>,
    /// OOM kills per victim (node signals).
    oom: crate::node::oom::OomKills,
    /// Delay accounting, collected by its own thread; None when disabled.
    delays: Option<crate::node::delayacct::DelayAccounting>,
    /// Log pattern extraction (`logs.enabled`).
    logs: Option<crate::node::logs::LogCollector>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix(t: Option<SystemTime>) -> Option<f64> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
}

impl Agent {
    /// Reads the kernel maps, dropping listeners that closed unseen.
    fn snapshot(&self) -> anyhow::Result<KernelSnapshot> {
        let mut probes = lock(&self.probes);
        let mut snap = harvest(&probes.maps).context("reading kernel maps")?;
        match listeners::prune_closed(&mut probes.maps, &snap.listeners) {
            Ok(gone) => snap.listeners.retain(|(k, _)| !gone.contains(k)),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot check listeners"),
        }
        Ok(snap)
    }

    /// Runs `f` with a labeler whose container lookups share the cache.
    fn with_labeler<R>(&self, f: impl FnOnce(&mut Labeler) -> R) -> R {
        let mut containers = lock(&self.containers);
        if containers.last_prune.elapsed() > CONTAINER_PRUNE_EVERY {
            containers.last_prune = Instant::now();
            if let Some(r) = containers.resolver.as_mut() {
                r.prune();
            }
        }
        let resolver = &mut containers.resolver;
        let mut container_of = |id: u64| {
            resolver
                .as_mut()
                .map(|r| r.container(id))
                .unwrap_or_default()
        };
        let mut labeler = Labeler::new(&self.names, &mut container_of);
        f(&mut labeler)
    }

    /// Every probe, attached or not. Tracepoints are attached while their
    /// link exists; cgroup and TC links also need their target.
    fn probe_status(&self) -> Vec<ProbeStatus> {
        let probes = lock(&self.probes).probes.clone();
        let ifs = lock(&self.interfaces);
        let mut ids: Vec<u32> = probes.iter().map(|p| p.prog_id).collect();
        ids.extend(&ifs.program_ids);
        let oom = self.oom.probe();
        ids.extend(oom.map(|(_, id)| id));
        let links = links_of(&ids);
        let mut out: Vec<ProbeStatus> = probes
            .iter()
            .map(|p| ProbeStatus {
                name: p.name.clone(),
                feature: p.feature,
                attached: links.iter().any(|l| {
                    l.prog_id == p.prog_id && (!p.has_target || l.target.unwrap_or(0) != 0)
                }),
                required: true,
            })
            .collect();
        for (ifindex, name) in &ifs.attached {
            let n = links
                .iter()
                .filter(|l| {
                    ifs.program_ids.contains(&l.prog_id) && l.target == Some(*ifindex as u64)
                })
                .count();
            // Netlink filters have no descriptor to inspect: they stay
            // while the interface exists (the watcher detaches vanished ones).
            let attached = if ifs.netlink {
                std::path::Path::new("/sys/class/net").join(name).exists()
            } else {
                n == 2 // ingress and egress links
            };
            out.push(ProbeStatus {
                name: format!("tc/{name}"),
                feature: "interfaces",
                attached,
                required: false,
            });
        }
        if let Some((name, prog_id)) = oom {
            out.push(ProbeStatus {
                name: name.to_string(),
                feature: "oom_kills",
                attached: prog_id != 0 && links.iter().any(|l| l.prog_id == prog_id),
                required: false,
            });
        }
        out
    }
}

impl Gather for Agent {
    fn gather(&self) -> anyhow::Result<Vec<Family>> {
        // One collection at a time: concurrent scrapes queue on the locks.
        let snap = self.snapshot()?;
        let mut oom_lost = Vec::new();
        let mut families = self.with_labeler(|labeler| {
            let resolved = connections::resolve(&snap, labeler);
            let mut f = connections::families(&resolved);
            f.push(tcp::listen_family(&snap.listeners, labeler));
            f.extend(tcp::families(&resolved));
            let (oom, lost) = self.oom.families(labeler);
            f.extend(oom);
            oom_lost = lost;
            f
        });
        let ifs = lock(&self.interfaces);
        families.extend(interfaces::families(&ifs.snapshot, self.active_only));
        let iface_lost = ifs.snapshot.lost;
        drop(ifs);
        if let Some(d) = &self.delays {
            families.extend(d.families());
        }
        if let Some(logs) = &self.logs {
            families.extend(logs.families());
        }

        let mut limiter = lock(&self.limiter);
        let mut dropped = BTreeMap::new();
        for f in &mut families {
            dropped.insert(f.name, limiter.limit(f));
        }
        drop(limiter);
        families.push(dropped_family(&dropped));
        families.extend(self_metrics::agent_families(&snap.lost, iface_lost));
        crate::node::oom::add_lost(&mut families, &oom_lost);
        let up = self
            .probe_status()
            .into_iter()
            .map(|p| {
                (
                    vec![("feature", p.feature.to_string()), ("probe", p.name)],
                    if p.attached { 1.0 } else { 0.0 },
                )
            })
            .collect();
        families.push(scalar_family(
            "netagent_probe_up",
            "1 while the kernel program behind a probe is attached; a feature with no \
             working hook shows its preferred probes at 0.",
            Kind::Gauge,
            up,
        ));
        let info = lock(&self.probes)
            .features
            .iter()
            .map(|f| {
                (
                    vec![
                        ("feature", f.feature.to_string()),
                        ("hook", f.hook.map_or("none", |h| h.name()).to_string()),
                    ],
                    1.0,
                )
            })
            .collect();
        families.push(scalar_family(
            "netagent_probe_info",
            "The kernel hook serving each feature (hook=\"none\": unavailable).",
            Kind::Gauge,
            info,
        ));
        families.extend(self.bpf_self.families());
        families.extend(self.span_stats.families());
        families.extend(self.statsd_stats.families());
        families.extend(self.cloud.families());
        families.extend(self_metrics::process_families());
        *lock(&self.last_scrape) = Some(SystemTime::now());
        Ok(families)
    }

    fn health(&self) -> (bool, serde_json::Value) {
        let probes = self.probe_status();
        let ok = probes.iter().all(|p| p.attached || !p.required);
        let lost: u64 = self.snapshot().map(|s| s.lost.iter().sum()).unwrap_or(0)
            + lock(&self.interfaces).snapshot.lost;
        let ifs = lock(&self.interfaces);
        let doc = serde_json::json!({
            "status": if ok { "ok" } else { "degraded" },
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "targets": self.targets,
            "probes": probes.iter().map(|p| serde_json::json!({
                "name": p.name, "feature": p.feature, "attached": p.attached,
                "required": p.required,
            })).collect::<Vec<_>>(),
            "features": lock(&self.probes).features.iter().map(|f| serde_json::json!({
                "feature": f.feature,
                "hook": f.hook.map(|h| h.name()),
                "available": f.hook.is_some(),
                "needed_for": f.needed_for,
                "rejected": f.rejected.iter().map(|(k, why)| serde_json::json!({
                    "hook": k.name(), "reason": why,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "last_scrape_unix": unix(*lock(&self.last_scrape)),
            "last_interface_collection_unix": unix(ifs.snapshot.collected_at),
            "interfaces_failed": ifs.snapshot.failed,
            "events_lost": lost,
            "udp_peers": lock(&self.probes).udp_destinations,
            "cloud_provider": self.cloud.provider(),
        });
        (ok, doc)
    }

    fn graph(&self) -> anyhow::Result<serde_json::Value> {
        let snap = self.snapshot()?;
        let g = self.with_labeler(|labeler| {
            let resolved = connections::resolve(&snap, labeler);
            let ifs = lock(&self.interfaces);
            graph::build(&resolved, &ifs.snapshot, &mut lock(&self.graph_rates))
        });
        Ok(serde_json::to_value(g)?)
    }
}

/// Drains the span ring buffer, labels each record and offers it to the
/// span pipeline (which never blocks: full means dropped and counted).
async fn read_spans(
    agent: Arc<Agent>,
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    mut otlp: Option<SpanSink>,
    statsd: Option<Arc<SpanBuffer>>,
) {
    // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd
    // owns the ring buffer, and always reports that same fd.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE)
    };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(error = %e, "cannot poll the span ring buffer; OTLP traces are off");
            return;
        }
    };
    let mut decoder = SpanDecoder::new();
    let mut resynced = Instant::now();
    loop {
        let mut guard = match fd.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "span ring buffer poll failed");
                return;
            }
        };
        if resynced.elapsed() > Duration::from_secs(60) {
            decoder.resync(); // follow NTP adjustments of the wall clock
            resynced = Instant::now();
        }
        let ring = guard.get_inner_mut();
        let mut batch = Vec::new();
        while let Some(item) = ring.next() {
            match decode(&item) {
                Ok(ev) => batch.push(ev),
                Err(e) => {
                    agent
                        .span_stats
                        .decode_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(error = %e, "bad span record");
                }
            }
        }
        guard.clear_ready();
        let spans: Vec<FlowSpan> = agent.with_labeler(|labeler| {
            batch
                .iter()
                .filter_map(|ev| {
                    let process = labeler.process(&ev.comm)?;
                    let container = labeler.container(ev.cgroup_id);
                    Some(decoder.span(ev, process, container))
                })
                .collect()
        });
        if let Some(buf) = &statsd {
            buf.offer(&spans);
        }
        if let Some(sink) = otlp.as_mut() {
            for sp in spans {
                sink.offer(sp);
            }
        }
    }
}

/// Sends families (and span durations) to DogStatsD every interval.
fn spawn_statsd_thread(
    mut exporter: StatsdExporter,
    agent: Arc<Agent>,
    spans: Arc<SpanBuffer>,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("netagent-statsd".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let until = Instant::now() + interval;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50).min(interval));
                }
                match agent.gather() {
                    Ok(families) => {
                        exporter.export(&families);
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "statsd: collection failed")
                    }
                }
                exporter.observe_spans(&spans.take());
                agent
                    .statsd_stats
                    .send_errors
                    .store(exporter.errors(), Ordering::Relaxed);
            }
        })
        .expect("spawn statsd thread")
}

/// Pushes every metric family over OTLP each interval.
async fn push_metrics(agent: Arc<Agent>, transport: Transport, cfg: otlp::OtelConfig) {
    let resource = otlp::resource(&cfg);
    let mut encoder = MetricEncoder::new(cfg.metrics_temporality);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(cfg.metrics_interval_seconds));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let a = agent.clone();
        let families = match tokio::task::spawn_blocking(move || a.gather()).await {
            Ok(Ok(f)) => f,
            _ => continue,
        };
        let req = encoder.request(&resource, &families);
        if let Err(e) = transport.export_metrics(req).await {
            agent
                .span_stats
                .export_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(error = %format!("{e:#}"), "OTLP metric push failed");
        }
    }
}

/// Runs the interface collector every `interval` until `stop` is set.
fn spawn_interface_thread(
    mut watcher: InterfaceWatcher,
    state: Arc<Mutex<InterfaceState>>,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("netagent-iface".into())
        .spawn(move || {
            let program_ids = watcher
                .program_ids()
                .into_iter()
                .map(|(_, id)| id)
                .collect();
            {
                let mut s = lock(&state);
                s.program_ids = program_ids;
                s.netlink = watcher.uses_netlink();
            }
            while !stop.load(Ordering::Relaxed) {
                let snap = watcher.tick();
                let attached = watcher.attached();
                {
                    let mut s = lock(&state);
                    s.snapshot = snap;
                    s.attached = attached;
                }
                // Sleep in short steps so shutdown is prompt.
                let until = Instant::now() + interval;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50).min(interval));
                }
            }
            // Dropping the watcher detaches every TC program.
        })
        .expect("spawn interface thread")
}

/// Returns freed heap pages to the kernel (glibc keeps them otherwise).
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What the kernel side is loaded with, from the config.
pub fn load_options(cfg: &Config) -> anyhow::Result<LoadOptions> {
    let targets: Vec<&str> = cfg
        .targets
        .iter()
        .map(|t| kernel_comm(&t.match_comm.value))
        .collect();
    Ok(LoadOptions {
        track_all: cfg.track_all(),
        targets: targets.iter().map(|c| comm_bytes(c)).collect(),
        max_series: cfg.limits.max_series,
        max_listeners: cfg.limits.max_listeners,
        hist_bounds_ns: bounds_ns(),
        // Spans feed OTLP traces and DogStatsD distributions.
        emit_spans: (cfg.otel.enabled() && cfg.otel.traces) || cfg.statsd.enabled,
        span_ring_bytes: cfg.limits.span_ring_bytes,
        netns_only: cfg.netns_inode().map_err(anyhow::Error::msg)?,
        disabled_probes: cfg
            .debug
            .disable_probes
            .iter()
            .map(|p| p.value.clone())
            .collect(),
        max_sockets: cfg.limits.max_sockets,
        btf_path: Some(&cfg.kernel.btf_path.value)
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from),
    })
}

/// Loads the kernel side, serves HTTP until a signal, then detaches.
pub async fn run(cfg: Config) -> Result<(), RunError> {
    let targets: Vec<(&str, &str)> = cfg
        .targets
        .iter()
        .map(|t| (kernel_comm(&t.match_comm.value), t.name.value.as_str()))
        .collect();
    let opts = load_options(&cfg)?;
    let mut probes = Probes::load(&opts)?;
    // Loading parsed the kernel's BTF (several MB, now freed).
    release_freed_memory();
    // Cloud detection runs beside everything else and never delays
    // start-up; it starts once the agent can run at all, so a start that
    // fails says only why. Dropping `_cloud` at return stops it.
    let cloud_state = Arc::new(CloudState::new(cfg.cloud.enabled));
    let _cloud = cloud::spawn(&cfg.cloud, cloud_state.clone());
    tracing::info!(
        targets = targets.len(),
        track_all = opts.track_all,
        "kernel programs attached"
    );
    let names = if opts.track_all {
        ProcessNames::by_comm()
    } else {
        ProcessNames::targets(targets.iter().copied())
    };
    let resolver = cgroup::v2_root().map(CgroupResolver::new);
    // Listeners older than the agent: the kernel side only sees new listen()s.
    match listeners::seed_existing(
        &mut probes.maps,
        |comm| names.tracks(comm),
        |path| resolver.as_ref().and_then(|r| r.id_of_path(path)),
    ) {
        Ok(n) => tracing::info!(
            listeners = n,
            "existing listeners of tracked processes recorded"
        ),
        Err(e) => tracing::warn!(
            error = %format!("{e:#}"),
            "cannot list existing listeners; only listeners opened from now on are attributed"
        ),
    }

    let iface_state = Arc::new(Mutex::new(InterfaceState::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut iface_thread = None;
    if cfg.interface_stats.enabled {
        let patterns: Vec<String> = cfg.interfaces.iter().map(|p| p.value.clone()).collect();
        let filter =
            InterfaceFilter::new(&patterns).map_err(|e| anyhow::anyhow!("interfaces: {e}"))?;
        let iface_probes = IfaceProbes::load(
            cfg.interface_stats.max_interfaces,
            cfg.interface_stats.netlink_filters,
        )?;
        iface_thread = Some(spawn_interface_thread(
            InterfaceWatcher::new(iface_probes, filter),
            iface_state.clone(),
            Duration::from_secs_f64(cfg.interface_stats.interval_seconds),
            stop.clone(),
        ));
        // Serve only once interfaces are attached: readiness means counting.
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&iface_state).snapshot.collected_at.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    let oom = crate::node::oom::OomKills::start(
        &cfg.oom_kills,
        cfg.limits.max_series,
        &opts.disabled_probes,
    );
    let delays = cfg.delay_accounting.enabled.then(|| {
        crate::node::delayacct::DelayAccounting::start(
            &cfg.delay_accounting,
            names.clone(),
            cfg.limits.max_series as usize,
        )
    });
    let agent = Arc::new(Agent {
        probes: Mutex::new(probes),
        names,
        containers: Mutex::new(Containers {
            resolver,
            last_prune: Instant::now(),
        }),
        limiter: Mutex::new(SeriesLimiter::new(
            cfg.limits.max_series_per_metric as usize,
        )),
        interfaces: iface_state,
        active_only: cfg.interface_stats.active_only,
        graph_rates: Mutex::new(RateState::default()),
        bpf_self: BpfSelfCollector::new(cfg.bpf_self.clone()),
        span_stats: Arc::new(SpanStats::default()),
        statsd_stats: Arc::new(StatsdStats::default()),
        started: Instant::now(),
        last_scrape: Mutex::new(None),
        targets: targets.len(),
        cloud: cloud_state,
        oom,
        delays,
        logs: if cfg.logs.enabled {
            // Started before serving: files that exist now are the "old" ones.
            Some(crate::node::logs::LogCollector::start(&cfg.logs).context("logs")?)
        } else {
            None
        },
    });

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(async {
        // Scrapes build and drop large buffers; hand the pages back so
        // RSS follows what is in use, not the largest scrape so far.
        let mut every = tokio::time::interval(Duration::from_secs(10));
        loop {
            every.tick().await;
            release_freed_memory();
        }
    }));
    let mut otlp_sink = None;
    if cfg.otel.enabled() {
        let transport = Transport::new(&cfg.otel).context("otel")?;
        if cfg.otel.traces {
            otlp_sink = Some(otlp::start_span_pipeline(
                &cfg.otel,
                transport.clone(),
                agent.span_stats.clone(),
            ));
        }
        if cfg.otel.metrics_interval_seconds > 0.0 {
            tasks.push(tokio::spawn(push_metrics(
                agent.clone(),
                transport,
                cfg.otel.clone(),
            )));
        }
        tracing::info!(endpoint = %cfg.otel.endpoint, "OTLP export on");
    }
    let mut statsd_spans = None;
    let mut statsd_thread = None;
    if cfg.statsd.enabled {
        let exporter = StatsdExporter::new(&cfg.statsd).context("statsd")?;
        let buffer = Arc::new(SpanBuffer::new(agent.statsd_stats.clone()));
        statsd_spans = Some(buffer.clone());
        statsd_thread = Some(spawn_statsd_thread(
            exporter,
            agent.clone(),
            buffer,
            cfg.statsd.interval().context("statsd")?,
            stop.clone(),
        ));
        tracing::info!(address = %cfg.statsd.address, "DogStatsD export on");
    }
    if otlp_sink.is_some() || statsd_spans.is_some() {
        match lock(&agent.probes).span_events.take() {
            Some(ring) => tasks.push(tokio::spawn(read_spans(
                agent.clone(),
                ring,
                otlp_sink,
                statsd_spans,
            ))),
            None => tracing::warn!("span ring buffer unavailable: no spans or distributions"),
        }
    }

    let served = serve(&cfg, agent.clone()).await;
    for t in tasks {
        t.abort();
    }
    stop.store(true, Ordering::Relaxed);
    for t in [iface_thread, statsd_thread].into_iter().flatten() {
        let _ = t.join();
    }
    if let Some(logs) = &agent.logs {
        logs.shutdown(); // saves the log offsets
    }
    tracing::info!("shutting down; detaching kernel programs");
    drop(agent);
    served
}

/// Serves the router until SIGINT/SIGTERM: TLS and basic auth from the web
/// config, slow-client timeouts and the connection limit from `export.*`.
async fn serve(cfg: &Config, agent: Arc<Agent>) -> Result<(), RunError> {
    use crate::http::server;
    let addr = cfg.listen_addr().map_err(anyhow::Error::msg)?;
    let options = server::Options::from_export(&cfg.export);
    let listener = bind(addr).await?;
    server::serve(listener, router(agent), options, shutdown_signal())
        .await
        .context("HTTP server failed")?;
    Ok(())
}

/// Binds `addr`; the IPv6 wildcard falls back to IPv4 on hosts without IPv6.
async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() => {
            let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
            tracing::debug!(error = %e, "IPv6 wildcard unavailable, using {v4}");
            TcpListener::bind(v4)
                .await
                .with_context(|| format!("cannot listen on {v4}"))
        }
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
