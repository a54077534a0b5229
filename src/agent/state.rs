//! The running agent as the HTTP layer and the exporters see it: one
//! scrape asks every collector in turn, applies the per-metric series cap
//! to the families of the sources that do not bound themselves, and adds
//! the agent's own families; `/health` and the service map come from the
//! same sources.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::collect::cloud::CloudState;
use crate::collect::containers::CgroupResolver;
use crate::collect::dns::DnsShared;
use crate::collect::interfaces::InterfaceSource;
use crate::collect::labels::{DstNames, HostOnly, Labeler, ProcessNames};
use crate::collect::local_listeners::{self, NetnsAddrs};
use crate::collect::sockets::Sockets;
use crate::collect::{connections, Collector, ProbeStatus, Scrape};
use crate::export::otlp::SpanStats;
use crate::export::statsd::StatsdStats;
use crate::http::Gather;
use crate::kernel::links;
use crate::metrics::{catalog, scalar_family, Family};
use crate::model::cardinality::{dropped_family, SeriesLimiter};
use crate::model::graph::{self, RateState};
use crate::model::self_metrics;

/// The running agent: its sources, in exposition order, and what a scrape
/// shares between them.
pub struct Agent {
    /// The socket programs' maps (also read for the service map).
    pub sockets: Arc<Sockets>,
    /// Interface counters, when `interface_stats.enabled`.
    pub interfaces: Option<Arc<InterfaceSource>>,
    /// Every source, sockets and interfaces included, in exposition order.
    pub collectors: Vec<Arc<dyn Collector>>,
    names: ProcessNames,
    /// Cgroup -> container identity; None without a cgroup v2 hierarchy.
    containers: Mutex<Option<CgroupResolver>>,
    limiter: Mutex<SeriesLimiter>,
    graph_rates: Mutex<RateState>,
    /// Addresses of the network namespaces of listeners (service map).
    netns_addrs: Mutex<NetnsAddrs>,
    /// The exporters' own counters (spans exported, dropped, errors).
    pub span_stats: Arc<SpanStats>,
    pub statsd_stats: Arc<StatsdStats>,
    pub cloud: Arc<CloudState>,
    started: Instant,
    last_scrape: Mutex<Option<SystemTime>>,
    targets: usize,
    /// Names processes resolved, for `dst_name` (None without DNS).
    dst_names: Option<Arc<DnsShared>>,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix(t: Option<SystemTime>) -> Option<f64> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
}

/// What [`Agent::new`] is built from.
pub struct Parts {
    pub sockets: Arc<Sockets>,
    pub interfaces: Option<Arc<InterfaceSource>>,
    pub collectors: Vec<Arc<dyn Collector>>,
    pub names: ProcessNames,
    pub resolver: Option<CgroupResolver>,
    pub max_series_per_metric: usize,
    /// `limits.series_ttl_seconds`: admitted series absent this long are forgotten.
    pub series_ttl: Option<std::time::Duration>,
    pub span_stats: Arc<SpanStats>,
    pub statsd_stats: Arc<StatsdStats>,
    pub cloud: Arc<CloudState>,
    pub targets: usize,
    pub dst_names: Option<Arc<DnsShared>>,
}

impl Agent {
    pub fn new(p: Parts) -> Self {
        Self {
            sockets: p.sockets,
            interfaces: p.interfaces,
            collectors: p.collectors,
            names: p.names,
            containers: Mutex::new(p.resolver),
            limiter: Mutex::new(
                SeriesLimiter::new(p.max_series_per_metric).forget_after(p.series_ttl),
            ),
            graph_rates: Mutex::new(RateState::default()),
            netns_addrs: Mutex::new(NetnsAddrs::default()),
            span_stats: p.span_stats,
            statsd_stats: p.statsd_stats,
            cloud: p.cloud,
            started: Instant::now(),
            last_scrape: Mutex::new(None),
            targets: p.targets,
            dst_names: p.dst_names,
        }
    }

    /// Runs `f` with a labeler whose container lookups share the cache
    /// (pruned of removed cgroups when it is time).
    pub fn with_labeler<R>(&self, f: impl FnOnce(&mut Labeler) -> R) -> R {
        let mut containers = lock(&self.containers);
        let dst_names = self.dst_names.as_deref().map(|d| d as &dyn DstNames);
        match containers.as_mut() {
            Some(resolver) => {
                resolver.maybe_prune();
                f(&mut Labeler::new(&self.names, resolver).with_dst_names(dst_names))
            }
            None => f(&mut Labeler::new(&self.names, &mut HostOnly).with_dst_names(dst_names)),
        }
    }

    /// `netagent_container_info` and the cache's own families.
    fn container_families(&self) -> Vec<Family> {
        let containers = lock(&self.containers);
        let Some(r) = containers.as_ref() else {
            return Vec::new();
        };
        let mut families = vec![r.info_family()];
        families.extend(r.cache_families());
        families
    }

    /// Every probe of every source, attached or not.
    fn probe_status(&self) -> Vec<ProbeStatus> {
        let held = links::held();
        self.collectors
            .iter()
            .flat_map(|c| c.probes(&held))
            .collect()
    }

    /// Tells every source the agent is stopping.
    pub fn shutdown(&self) {
        for c in &self.collectors {
            c.shutdown();
        }
    }
}

impl Gather for Agent {
    fn gather(&self) -> anyhow::Result<Vec<Family>> {
        // One collection at a time: concurrent scrapes queue on the locks.
        let (mut capped, free, (lost, expired)) = self.with_labeler(|labeler| {
            let mut scrape = Scrape::new(labeler);
            let (mut capped, mut free) = (Vec::new(), Vec::new());
            for c in &self.collectors {
                c.collect(&mut scrape)?;
                let added = std::mem::take(&mut scrape.families);
                if c.capped() {
                    capped.extend(added);
                } else {
                    free.extend(added);
                }
            }
            anyhow::Ok((capped, free, (scrape.lost, scrape.expired)))
        })?;
        // After the sources: the containers they asked about are cached.
        capped.extend(self.container_families());

        let mut limiter = lock(&self.limiter);
        let mut dropped = BTreeMap::new();
        for f in &mut capped {
            dropped.insert(f.name, limiter.limit(f));
        }
        drop(limiter);
        let mut families = capped;
        families.push(dropped_family(&dropped));
        families.extend(self_metrics::agent_families(&lost, &expired));
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
        families.push(scalar_family(&catalog::PROBE_UP, up));
        let info = self
            .sockets
            .features()
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
        families.push(scalar_family(&catalog::PROBE_INFO, info));
        families.extend(free);
        families.extend(self.span_stats.families());
        families.extend(self.statsd_stats.families());
        *lock(&self.last_scrape) = Some(SystemTime::now());
        Ok(families)
    }

    fn health(&self) -> (bool, serde_json::Value) {
        let probes = self.probe_status();
        let ok = probes.iter().all(|p| p.attached || !p.required);
        let ifs = self.interfaces.as_ref().map(|i| i.snapshot());
        let lost = self.sockets.lost_total() + ifs.as_ref().map_or(0, |s| s.lost);
        let doc = serde_json::json!({
            "status": if ok { "ok" } else { "degraded" },
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "targets": self.targets,
            "probes": probes.iter().map(|p| serde_json::json!({
                "name": p.name, "feature": p.feature, "attached": p.attached,
                "required": p.required,
            })).collect::<Vec<_>>(),
            "features": self.sockets.features().iter().map(|f| serde_json::json!({
                "feature": f.feature,
                "hook": f.hook.map(|h| h.name()),
                "state": f.state.map(|s| s.name()),
                "available": f.hook.is_some(),
                "needed_for": f.needed_for,
                "rejected": f.rejected.iter().map(|(k, why)| serde_json::json!({
                    "hook": k.name(), "reason": why,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "last_scrape_unix": unix(*lock(&self.last_scrape)),
            "last_interface_collection_unix": unix(ifs.as_ref().and_then(|s| s.collected_at)),
            "interfaces_failed": ifs.as_ref().map(|s| s.failed.clone()).unwrap_or_default(),
            "events_lost": lost,
            "udp_peers": self.sockets.udp_destinations(),
            "cloud_provider": self.cloud.provider(),
        });
        (ok, doc)
    }

    fn graph(&self) -> anyhow::Result<serde_json::Value> {
        let snap = self.sockets.snapshot()?;
        let ifs = self
            .interfaces
            .as_ref()
            .map(|i| i.snapshot())
            .unwrap_or_default();
        let g = self.with_labeler(|labeler| {
            let resolved = connections::resolve(&snap, labeler);
            let local = local_listeners::resolve(
                &resolved,
                &snap.listeners,
                labeler,
                &mut lock(&self.netns_addrs),
            );
            graph::build(&resolved, &local, &ifs, &mut lock(&self.graph_rates))
        });
        Ok(serde_json::to_value(g)?)
    }
}
