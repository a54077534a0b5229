//! Reads the kernel's aggregation maps into plain Rust values. Counting
//! happens in the kernel; this runs only when someone scrapes.

use aya::maps::MapError;

use crate::kernel::abi::{FlowKey, Hist, HIST_BOUNDS, LOST_REASONS};
use crate::kernel::KernelMaps;

/// Totals of every kernel map at one moment, summed over CPUs.
#[derive(Debug, Default, Clone)]
pub struct KernelSnapshot {
    /// Connect attempts (TCP) and datagrams sent (UDP) per flow key.
    pub flows: Vec<(FlowKey, u64)>,
    /// send->recv histograms per flow key.
    pub durations: Vec<(FlowKey, Hist)>,
    /// Events not counted, indexed like [`LOST_REASONS`].
    pub lost: [u64; LOST_REASONS.len()],
}

/// Sums each per-CPU map entry. Entries deleted during the walk are skipped.
pub fn harvest(maps: &KernelMaps) -> Result<KernelSnapshot, MapError> {
    let mut snap = KernelSnapshot::default();
    for entry in maps.flows.iter() {
        let (key, per_cpu) = match entry {
            Ok(kv) => kv,
            Err(MapError::KeyNotFound) => continue,
            Err(e) => return Err(e),
        };
        snap.flows.push((key, per_cpu.iter().sum()));
    }
    for entry in maps.durations.iter() {
        let (key, per_cpu) = match entry {
            Ok(kv) => kv,
            Err(MapError::KeyNotFound) => continue,
            Err(e) => return Err(e),
        };
        snap.durations.push((key, sum_hists(per_cpu.iter())));
    }
    for (i, slot) in snap.lost.iter_mut().enumerate() {
        *slot = maps.lost.get(&(i as u32), 0)?.iter().sum();
    }
    Ok(snap)
}

fn sum_hists<'a>(hists: impl Iterator<Item = &'a Hist>) -> Hist {
    let mut total = Hist {
        buckets: [0; HIST_BOUNDS + 1],
        sum_ns: 0,
    };
    for h in hists {
        for (t, b) in total.buckets.iter_mut().zip(h.buckets.iter()) {
            *t += b;
        }
        total.sum_ns += h.sum_ns;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_histograms_add_up() {
        let mut a = Hist {
            buckets: [0; HIST_BOUNDS + 1],
            sum_ns: 5,
        };
        a.buckets[3] = 2;
        let mut b = a;
        b.buckets[HIST_BOUNDS] = 1;
        b.sum_ns = 7;
        let t = sum_hists([a, b].iter());
        assert_eq!(t.buckets[3], 4);
        assert_eq!(t.buckets[HIST_BOUNDS], 1);
        assert_eq!(t.sum_ns, 12);
    }
}
