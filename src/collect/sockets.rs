//! The socket programs' counters (bpf/netagent.bpf.c): connections per
//! process and peer, TCP lifecycle and health, listeners, and the events
//! the kernel side could not count. Read only when someone scrapes.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use aya::maps::{MapData, RingBuf};

use super::expiry::Expiry;
use super::{
    connections, conns, harvest, listeners, tcp, Collector, KernelSnapshot, ProbeStatus, Scrape,
};
use crate::kernel::abi::LOST_REASONS;
use crate::kernel::links::LinkState;
use crate::kernel::loader::FeatureStatus;
use crate::kernel::{KernelMaps, Probes};

/// The loaded socket programs and their maps.
pub struct Sockets {
    probes: Mutex<Probes>,
    /// `tcp.idle_after_seconds`; None: no idle gauge.
    idle_after: Option<Duration>,
    /// Frees the series of gone owners; locked after `probes`.
    expiry: Mutex<Expiry>,
}

impl Sockets {
    pub fn new(probes: Probes) -> Self {
        Self {
            probes: Mutex::new(probes),
            idle_after: None,
            expiry: Mutex::new(Expiry::new(Duration::ZERO)),
        }
    }

    /// Expires series of gone owners after `ttl` without change (zero: never).
    pub fn series_ttl(self, ttl: Duration) -> Self {
        *self.expiry.lock().unwrap_or_else(|p| p.into_inner()) = Expiry::new(ttl);
        self
    }

    /// Exports `netagent_tcp_connections_idle` with this threshold. Only
    /// where a message hook works: without one no payload is seen, and
    /// every connection would look idle.
    pub fn idle_after(mut self, idle_after: Option<Duration>) -> Self {
        let messages = self
            .features()
            .iter()
            .any(|f| f.feature == "messages" && f.hook.is_some());
        if idle_after.is_some() && !messages {
            tracing::warn!(
                "netagent_tcp_connections_idle is not exported: no message hook works, so \
                 payloads are not seen"
            );
        }
        self.idle_after = idle_after.filter(|_| messages);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Probes> {
        self.probes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the kernel maps (e.g. to seed listeners at start).
    pub fn with_maps<R>(&self, f: impl FnOnce(&mut KernelMaps) -> R) -> R {
        f(&mut self.lock().maps)
    }

    /// Reads the kernel maps, dropping listeners that closed unseen and
    /// series that expired.
    pub fn snapshot(&self) -> anyhow::Result<KernelSnapshot> {
        let mut probes = self.lock();
        let mut snap = harvest(&probes.maps).context("reading kernel maps")?;
        match listeners::prune_closed(&mut probes.maps, &snap.listeners) {
            Ok(gone) => snap.listeners.retain(|(k, _)| !gone.contains(k)),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot check listeners"),
        }
        let mut expiry = self.expiry.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = expiry.sweep(&mut probes.maps, &mut snap, Instant::now()) {
            tracing::warn!(error = %format!("{e:#}"), "cannot expire series");
        }
        Ok(snap)
    }

    /// Series freed so far because their owner is gone, by family.
    pub fn expired(&self) -> Vec<(&'static str, u64)> {
        self.expiry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expired()
    }

    /// The hook chosen per feature, and why others were rejected.
    pub fn features(&self) -> Vec<FeatureStatus> {
        self.lock().features.clone()
    }

    /// Whether peers of unconnected UDP sockets are seen.
    pub fn udp_destinations(&self) -> bool {
        self.lock().udp_destinations
    }

    /// The DNS maps, once (for the DNS source), when DNS is attached.
    pub fn take_dns(&self) -> Option<crate::kernel::dns::DnsMaps> {
        self.lock().dns.take()
    }

    /// The span ring buffer, once (for the span reader).
    pub fn take_span_ring(&self) -> Option<RingBuf<MapData>> {
        self.lock().span_events.take()
    }

    /// The kernel's span cap counter, once (for the span reader).
    pub fn take_span_cap(&self) -> Option<crate::kernel::spans::SpanCap> {
        self.lock().span_cap.take()
    }

    /// Events the kernel side could not count so far, all reasons.
    pub fn lost_total(&self) -> u64 {
        self.snapshot().map(|s| s.lost.iter().sum()).unwrap_or(0)
    }
}

impl Collector for Sockets {
    fn name(&self) -> &'static str {
        "sockets"
    }

    fn collect(&self, scrape: &mut Scrape<'_, '_>) -> anyhow::Result<()> {
        let snap = self.snapshot()?;
        // After the series (see conns::resets_family), then the sockets.
        let (reasons, sockets) = self.with_maps(|m| {
            let sockets = self.idle_after.map(|_| m.conns.tcp_sockets()).transpose();
            (m.conns.resets_by_reason(), sockets)
        });
        let now = conns::monotonic_ns();
        let freed = self
            .expiry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_freed();
        // A name is kept per (owner, peer): let go once no flow of the
        // pair is left, or a flow still exported would change its label.
        let left: HashSet<_> = snap
            .flows
            .iter()
            .map(|(k, _)| (k.comm, k.cgroup_id, k.daddr))
            .collect();
        for k in &freed {
            if !left.contains(&(k.comm, k.cgroup_id, k.daddr)) {
                scrape
                    .labeler
                    .forget_dst_name(&k.comm, k.cgroup_id, &k.daddr);
            }
        }
        let resolved = connections::resolve(&snap, scrape.labeler);
        scrape.families.extend(connections::families(&resolved));
        scrape
            .families
            .push(tcp::listen_family(&snap.listeners, scrape.labeler));
        scrape.families.extend(tcp::families(&resolved));
        let reasons = reasons.context("reading reset_reasons")?;
        scrape.families.push(self.with_maps(|m| {
            conns::resets_family(
                &resolved,
                &reasons,
                |v| m.conns.reason_name(v),
                scrape.labeler,
            )
        }));
        if let (Some(after), Some(sockets)) =
            (self.idle_after, sockets.context("reading tcp_socks")?)
        {
            scrape.families.push(conns::idle_family(
                &sockets,
                &resolved,
                now,
                after,
                scrape.labeler,
            ));
        }
        scrape
            .lost
            .extend(LOST_REASONS.iter().copied().zip(snap.lost));
        scrape.expired.extend(self.expired());
        Ok(())
    }

    /// Tracepoints are attached while their link exists; cgroup links also
    /// need their target (a detached one reads cgroup id 0).
    fn probes(&self, links: &[LinkState]) -> Vec<ProbeStatus> {
        self.lock()
            .probes
            .iter()
            .map(|p| ProbeStatus {
                name: p.name.clone(),
                feature: p.feature,
                attached: links.iter().any(|l| {
                    l.prog_id == p.prog_id && (!p.has_target || l.target.unwrap_or(0) != 0)
                }),
                required: true,
            })
            .collect()
    }
}
