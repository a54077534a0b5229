//! Reads the kernel's maps into plain Rust values (counting happens in the
//! kernel; this runs only when someone scrapes), and finds what the kernel
//! cannot see by itself: listeners older than the agent.

pub mod bpf_objects;
pub mod interfaces;
pub mod listeners;
pub mod sockdiag;
pub mod socket_owners;
pub mod spans;

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
