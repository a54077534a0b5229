//! Every source of samples: the kernel's maps (counting happens in the
//! kernel; they are read only when someone scrapes), what the kernel cannot
//! see by itself (listeners older than the agent, from sock_diag), the
//! host's BPF objects, containers, and the node signals (delay accounting,
//! OOM kills, cloud metadata, log patterns). Each source labels what it
//! reads and builds its metric families from the catalog.

pub mod bpf_self;
pub mod cloud;
pub mod connections;
pub mod containers;
pub mod delayacct;
pub mod histograms;
pub mod interfaces;
pub mod labels;
pub mod listeners;
pub mod logs;
pub mod oom;
pub mod sockdiag;
pub mod socket_owners;
pub mod taskstats;
pub mod tcp;

use aya::maps::MapError;

use crate::kernel::abi::{FlowKey, FlowStats, Hist, ListenKey, Listener, LOST_REASONS};
use crate::kernel::{batch, KernelMaps};

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
