//! Every source of samples: the kernel's maps (counting happens in the
//! kernel; they are read only when someone scrapes), what the kernel cannot
//! see by itself (listeners older than the agent, from sock_diag), the
//! host's BPF objects, containers, and the node signals (delay accounting,
//! OOM kills, cloud metadata, log patterns). Each source labels what it
//! reads and builds its metric families from the catalog.

pub mod bpf_self;
pub mod cloud;
pub mod connections;
pub mod conns;
pub mod containers;
pub mod delayacct;
pub mod dns;
pub mod drops;
pub mod expiry;
pub mod histograms;
pub mod interfaces;
pub mod labels;
pub mod listeners;
pub mod local_listeners;
pub mod logs;
pub mod oom;
pub mod preexisting;
pub mod process;
pub mod sockdiag;
pub mod socket_owners;
pub mod sockets;
pub mod taskstats;
pub mod tcp;

use aya::maps::MapError;

use crate::kernel::abi::{FlowKey, FlowStats, Hist, ListenKey, Listener, LOST_REASONS};
use crate::kernel::links::LinkState;
use crate::kernel::{batch, KernelMaps};
use crate::metrics::Family;
use labels::Labeler;

/// A source of metric families, node_exporter-style: it starts from its
/// config section, and each scrape (or push) asks it once for what it has.
/// The agent keeps a list of them; nothing else is special-cased.
pub trait Collector: Send + Sync {
    /// Its name in logs.
    fn name(&self) -> &'static str;

    /// Adds its families, and the events it could not count, to `scrape`.
    fn collect(&self, scrape: &mut Scrape<'_, '_>) -> anyhow::Result<()>;

    /// Whether the per-metric series cap (`limits.max_series_per_metric`)
    /// applies to its families; false for sources that bound their own
    /// series (BPF objects, cloud instance, the agent process).
    fn capped(&self) -> bool {
        true
    }

    /// The kernel programs it depends on, each attached or not, judged
    /// from the links this process holds (for `/health` and
    /// `netagent_probe_up`).
    fn probes(&self, _links: &[LinkState]) -> Vec<ProbeStatus> {
        Vec::new()
    }

    /// Called once when the agent stops (e.g. to save read positions).
    fn shutdown(&self) {}
}

/// What the sources hand over during one scrape.
pub struct Scrape<'s, 'l> {
    pub families: Vec<Family>,
    /// Events not counted, by reason: the `netagent_events_lost_total`
    /// series, assembled once from every source.
    pub lost: Vec<(&'static str, u64)>,
    /// Series freed because their owner is gone (`limits.series_ttl_seconds`),
    /// by family: the `netagent_series_expired_total` series.
    pub expired: Vec<(&'static str, u64)>,
    /// Process names and containers, looked up once per scrape and shared.
    pub labeler: &'s mut Labeler<'l>,
}

impl<'s, 'l> Scrape<'s, 'l> {
    pub fn new(labeler: &'s mut Labeler<'l>) -> Self {
        Self {
            families: Vec::new(),
            lost: Vec::new(),
            expired: Vec::new(),
            labeler,
        }
    }
}

/// One probe's state for `/health` and `netagent_probe_up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeStatus {
    pub name: String,
    /// The feature the probe serves; TC probes: `interfaces`.
    pub feature: &'static str,
    pub attached: bool,
    /// A required probe that is not attached makes `/health` answer 503.
    pub required: bool,
}

/// Totals of every kernel map at one moment.
#[derive(Debug, Default, Clone)]
pub struct KernelSnapshot {
    /// Counters per flow key.
    pub flows: Vec<(FlowKey, FlowStats)>,
    /// Histograms per flow key (the key's `hist` says which).
    pub hists: Vec<(FlowKey, Hist)>,
    /// Listening sockets of tracked processes.
    pub listeners: Vec<(ListenKey, Listener)>,
    /// Events not counted, indexed like [`LOST_REASONS`].
    pub lost: [u64; LOST_REASONS.len()],
}

/// Reads every map once.
pub fn harvest(maps: &KernelMaps) -> Result<KernelSnapshot, MapError> {
    let flows = maps.flows.read_all()?;
    let hists = maps.hists.read_all()?;
    let listeners = batch::walk(maps.listeners.iter())?;
    let mut lost = [0u64; LOST_REASONS.len()];
    for (i, slot) in lost.iter_mut().enumerate() {
        *slot = maps.lost.get(&(i as u32), 0)?.iter().sum();
    }
    Ok(KernelSnapshot {
        flows,
        hists,
        listeners,
        lost,
    })
}
