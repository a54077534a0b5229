//! Wires config, kernel programs, collection and the HTTP server together,
//! and shuts everything down on SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::collect::{harvest, listeners};
use crate::config::{kernel_comm, Config};
use crate::http::{router, Gather};
use crate::kernel::abi::comm_bytes;
use crate::kernel::{cgroup, KernelError, LoadOptions, Probes};
use crate::model::cardinality::{dropped_family, SeriesLimiter};
use crate::model::connections;
use crate::model::containers::CgroupResolver;
use crate::model::labels::{Labeler, ProcessNames};
use crate::model::{bounds_ns, self_metrics, tcp, Family};

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

/// The running agent as the HTTP layer sees it.
struct Agent {
    probes: Mutex<Probes>,
    names: ProcessNames,
    containers: Mutex<Containers>,
    limiter: Mutex<SeriesLimiter>,
    started: Instant,
    targets: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Gather for Agent {
    fn gather(&self) -> anyhow::Result<Vec<Family>> {
        // One collection at a time: concurrent scrapes queue here.
        let snap = {
            let mut probes = lock(&self.probes);
            let mut snap = harvest(&probes.maps).context("reading kernel maps")?;
            match listeners::prune_closed(&mut probes.maps, &snap.listeners) {
                Ok(gone) => snap.listeners.retain(|(k, _)| !gone.contains(k)),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot check listeners"),
            }
            snap
        };

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
        let resolved = connections::resolve(&snap, &mut labeler);
        let mut families = connections::families(&resolved);
        families.push(tcp::listen_family(&snap.listeners, &mut labeler));
        families.extend(tcp::families(&resolved));

        let mut limiter = lock(&self.limiter);
        let mut dropped = BTreeMap::new();
        for f in &mut families {
            dropped.insert(f.name, limiter.limit(f));
        }
        families.push(dropped_family(&dropped));
        families.extend(self_metrics::agent_families(&snap.lost));
        families.extend(self_metrics::process_families());
        Ok(families)
    }

    fn health(&self) -> (bool, serde_json::Value) {
        let udp = lock(&self.probes).udp_destinations;
        (
            true,
            serde_json::json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": self.started.elapsed().as_secs_f64(),
                "targets": self.targets,
                "udp_sendto_destinations": udp,
            }),
        )
    }
}

/// Loads the kernel side, serves HTTP until a signal, then detaches.
pub async fn run(cfg: Config) -> Result<(), RunError> {
    let targets: Vec<(&str, &str)> = cfg
        .targets
        .iter()
        .map(|t| (kernel_comm(&t.match_comm.value), t.name.value.as_str()))
        .collect();
    let opts = LoadOptions {
        track_all: cfg.track_all(),
        targets: targets.iter().map(|(c, _)| comm_bytes(c)).collect(),
        max_series: cfg.limits.max_series,
        max_listeners: cfg.limits.max_listeners,
        hist_bounds_ns: bounds_ns(),
    };
    let mut probes = Probes::load(&opts)?;
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
        started: Instant::now(),
        targets: targets.len(),
    });

    let addr = cfg.listen_addr().map_err(anyhow::Error::msg)?;
    let listener = bind(addr).await?;
    let local = listener.local_addr().context("listener address")?;
    tracing::info!(addr = %local, "serving /metrics");
    axum::serve(listener, router(agent.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server failed")?;
    tracing::info!("shutting down; detaching kernel programs");
    drop(agent);
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
