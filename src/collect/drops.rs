//! Packet drops by the kernel's reason:
//! `netagent_packet_drops_total{process, container, …, interface, proto, reason}`.
//!
//! The kernel program (bpf/netagent/drops.c, part of the socket object)
//! counts each drop per (reason value, socket owner, device name, IP
//! protocol) in a per-CPU map; this reads it at scrape time, names the
//! reason from the running kernel's BTF (`enum skb_drop_reason`) and labels
//! the owner like every other metric. Drops that found the map full go to
//! `netagent_events_lost_total{reason="drop_map_full"}`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::expiry::{owner, LiveOwners, Quiet};
use super::labels::owner_labels;
use super::sockets::Sockets;
use super::{Collector, Scrape};
use crate::config::DropsConfig;
use crate::kernel::abi::{comm_str, DropKey, DROP_LOST_REASONS};
use crate::kernel::drops::{DropSnapshot, ReasonNames};
use crate::kernel::LoadOptions;
use crate::metrics::{catalog, scalar_family, Labels};

/// The drop counters of the socket object (`drops.enabled`).
pub struct PacketDrops {
    sockets: Arc<Sockets>,
    reasons: ReasonNames,
    /// `limits.series_ttl_seconds`: quiet keys of gone owners, and how many
    /// were deleted so far.
    expiry: Option<Mutex<(Quiet<DropKey>, u64)>>,
}

impl PacketDrops {
    /// Takes the reason names the loader read from the kernel's BTF and
    /// says what this kernel's tracepoint passes.
    /// `ttl`: a key of a gone owner without a new drop this long is deleted.
    pub fn start(sockets: Arc<Sockets>, opts: &LoadOptions, ttl: Option<Duration>) -> Self {
        let (reasons, tracepoint) =
            sockets.with_maps(|m| (m.drops.reasons.clone(), m.drops.tracepoint));
        let working = sockets
            .features()
            .iter()
            .any(|f| f.feature == crate::kernel::drops::FEATURE && f.hook.is_some());
        if let (true, Some(tp)) = (working, tracepoint) {
            if tp.reason {
                tracing::debug!(reasons = reasons.len(), "packet drops: {}", tp.describe());
                // A configured name this kernel does not have ignores
                // nothing: probably a typo (the defaults are not on every
                // kernel: queue_purge came with 6.7).
                let unknown: Vec<&str> = reasons
                    .missing(&opts.drops_ignore)
                    .into_iter()
                    .filter(|r| !DropsConfig::DEFAULT_IGNORED.contains(r))
                    .collect();
                if !unknown.is_empty() {
                    tracing::warn!(
                        "drops.ignore_reasons: this kernel has no drop reason {unknown:?}; \
                         nothing is left out for it"
                    );
                }
            } else {
                tracing::info!("packet drops: {}", tp.describe());
            }
        }
        Self {
            sockets,
            reasons,
            expiry: ttl.map(|t| Mutex::new((Quiet::new(t), 0))),
        }
    }

    /// Deletes the keys of gone owners without a new drop for the TTL
    /// (keys without an owner are bounded by reasons and interfaces, and
    /// stay) and leaves them out of `snap`; returns how many so far.
    fn expire(&self, snap: &mut DropSnapshot) -> Option<u64> {
        let mut guard = self
            .expiry
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (quiet, expired) = &mut *guard;
        let prints = snap
            .drops
            .iter()
            .filter(|(k, _)| k.comm != [0; 16])
            .map(|(k, n)| (*k, *n))
            .collect();
        let candidates = quiet.observe(prints, Instant::now());
        if !candidates.is_empty() {
            let live = LiveOwners::scan(crate::kernel::cgroup::v2_root().as_deref(), &[]);
            let gone: HashSet<DropKey> = candidates
                .into_iter()
                .filter(|k| !live.contains(&owner(&k.comm, k.cgroup_id)))
                .collect();
            for k in &gone {
                match self.sockets.with_maps(|m| m.drops.remove(k)) {
                    Ok(()) => *expired += 1,
                    Err(e) => tracing::warn!(error = %e, "cannot delete a packet drop key"),
                }
                quiet.forget(k);
            }
            snap.drops.retain(|(k, _)| !gone.contains(k));
        }
        Some(*expired)
    }

    /// The family from one read of the map (and the lost counts).
    fn families(
        &self,
        snap: &DropSnapshot,
        scrape: &mut Scrape<'_, '_>,
    ) -> (crate::metrics::Family, Vec<(&'static str, u64)>) {
        let mut series: BTreeMap<Labels, f64> = BTreeMap::new();
        for (key, n) in &snap.drops {
            let labels = self.labels(key, scrape);
            *series.entry(labels).or_default() += *n as f64;
        }
        let lost = DROP_LOST_REASONS.iter().copied().zip(snap.lost).collect();
        (scalar_family(&catalog::PACKET_DROPS, series), lost)
    }

    fn labels(&self, key: &DropKey, scrape: &mut Scrape<'_, '_>) -> Labels {
        let labeler = &mut scrape.labeler;
        // No owner (no socket, or one of a process that is not tracked):
        // empty process and container, never a guess.
        let process = (key.comm != [0; 16])
            .then(|| labeler.process(&key.comm))
            .flatten();
        let identity = match process {
            Some(_) => labeler.identity(key.cgroup_id),
            None => labeler.identity(0),
        };
        let mut labels = owner_labels(process.unwrap_or_default(), &identity);
        labels.push(("interface", comm_str(&key.ifname)));
        labels.push(("proto", proto_label(key.proto).to_string()));
        labels.push(("reason", self.reasons.label(key.reason)));
        labels
    }
}

/// `proto`: the IP protocol of the dropped packet.
fn proto_label(proto: u8) -> &'static str {
    match proto {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "icmpv6",
        _ => "other",
    }
}

impl Collector for PacketDrops {
    fn name(&self) -> &'static str {
        "drops"
    }

    fn collect(&self, scrape: &mut Scrape<'_, '_>) -> anyhow::Result<()> {
        let mut snap = match self.sockets.with_maps(|m| m.drops.read()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the packet drop map");
                DropSnapshot::default()
            }
        };
        if let Some(n) = self.expire(&mut snap) {
            scrape.expired.push(("drops", n));
        }
        let (family, lost) = self.families(&snap, scrape);
        scrape.families.push(family);
        scrape.lost.extend(lost);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_named() {
        assert_eq!(proto_label(6), "tcp");
        assert_eq!(proto_label(17), "udp");
        assert_eq!(proto_label(58), "icmpv6");
        assert_eq!(proto_label(0), "other");
    }
}
