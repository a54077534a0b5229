//! Starts every source from its config section, in exposition order: the
//! list a scrape walks. Adding a source is one entry here (and its catalog
//! entries); see docs/ARCHITECTURE.md.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::collect::bpf_self::BpfSelfCollector;
use crate::collect::cloud::{self, CloudState, Detector};
use crate::collect::delayacct::DelayAccounting;
use crate::collect::dns::{DnsShared, DnsSource};
use crate::collect::drops::PacketDrops;
use crate::collect::interfaces::{InterfaceFilter, InterfaceSource, InterfaceWatcher};
use crate::collect::labels::ProcessNames;
use crate::collect::logs::LogCollector;
use crate::collect::oom::OomKills;
use crate::collect::process::Process;
use crate::collect::sockets::Sockets;
use crate::collect::Collector;
use crate::config::Config;
use crate::kernel::iface::IfaceProbes;
use crate::kernel::LoadOptions;

/// The running sources.
pub struct Sources {
    /// Every source, in exposition order.
    pub collectors: Vec<Arc<dyn Collector>>,
    /// The interface source again, typed: health and the service map read
    /// its last collection.
    pub interfaces: Option<Arc<InterfaceSource>>,
    pub cloud: Arc<CloudState>,
    /// The background cloud detection; dropping it stops it.
    pub cloud_detector: Option<Detector>,
    /// The names processes resolved (`dst_name`), when DNS runs.
    pub dns_names: Option<Arc<DnsShared>>,
}

/// Starts the sources the config enables. A source whose kernel hook is
/// missing logs why and reports its probe down; it never stops the others.
pub fn start(
    cfg: &Config,
    opts: &LoadOptions,
    names: &ProcessNames,
    sockets: Arc<Sockets>,
) -> anyhow::Result<Sources> {
    // Taken before `sockets` moves into the list.
    let dns_maps = sockets.take_dns();
    let mut collectors: Vec<Arc<dyn Collector>> = vec![sockets.clone()];
    let mut dns_names = None;
    if let Some(maps) = dns_maps {
        let dns = DnsSource::start(
            maps,
            &cfg.dns,
            cfg.limits.max_series,
            cfg.limits.max_series_per_metric,
            cfg.limits.series_ttl(),
        );
        dns_names = Some(dns.names());
        collectors.push(Arc::new(dns));
    }
    collectors.push(Arc::new(OomKills::start(
        &cfg.oom_kills,
        &opts.disabled_probes,
    )));
    if cfg.drops.enabled {
        collectors.push(Arc::new(PacketDrops::start(
            sockets,
            opts,
            cfg.limits.series_ttl(),
        )));
    }
    let mut interfaces = None;
    if cfg.interface_stats.enabled {
        let patterns: Vec<String> = cfg.interfaces.iter().map(|p| p.value.clone()).collect();
        let filter =
            InterfaceFilter::new(&patterns).map_err(|e| anyhow::anyhow!("interfaces: {e}"))?;
        let probes = IfaceProbes::load(
            cfg.interface_stats.max_interfaces,
            cfg.interface_stats.netlink_filters,
        )?;
        let source = Arc::new(InterfaceSource::start(
            InterfaceWatcher::new(probes, filter),
            Duration::from_secs_f64(cfg.interface_stats.interval_seconds),
            cfg.interface_stats.active_only,
        ));
        collectors.push(source.clone());
        interfaces = Some(source);
    }
    if cfg.delay_accounting.enabled {
        collectors.push(Arc::new(DelayAccounting::start(
            &cfg.delay_accounting,
            names.clone(),
            cfg.limits.series_ttl(),
        )));
    }
    if cfg.logs.enabled {
        // Started before serving: files that exist now are the "old" ones.
        collectors.push(Arc::new(LogCollector::start(&cfg.logs).context("logs")?));
    }
    if cfg.bpf_self.enabled {
        collectors.push(Arc::new(BpfSelfCollector::new(cfg.bpf_self.clone())));
    }
    let cloud = Arc::new(CloudState::new(cfg.cloud.enabled));
    let cloud_detector = cloud::spawn(&cfg.cloud, cloud.clone());
    collectors.push(cloud.clone());
    collectors.push(Arc::new(Process));
    Ok(Sources {
        collectors,
        interfaces,
        cloud,
        cloud_detector,
        dns_names,
    })
}
