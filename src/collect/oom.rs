//! OOM kills per victim process and container:
//! `netagent_oom_kills_total{process,container}`.
//!
//! The kernel program (src/kernel/node.rs, bpf/node.bpf.c) counts each
//! victim process once, keyed by its comm and cgroup; this reads the map
//! at scrape time and labels it like every other metric. Kills that could
//! not be counted go to `netagent_events_lost_total` (`oom_map_full`,
//! `oom_victim_unknown`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Collector, ProbeStatus, Scrape};
use crate::collect::labels::{owner_labels, Labeler};
use crate::config::OomConfig;
use crate::kernel::abi::NODE_LOST_REASONS;
use crate::kernel::links::LinkState;
use crate::kernel::oom::{OomProbe, OOM_PROBE};
use crate::metrics::catalog;
use crate::metrics::{scalar_family, Family, Labels};

/// The OOM counter the agent keeps for its lifetime.
pub struct OomKills {
    enabled: bool,
    /// Kernel id of the attached program; 0 when not attached.
    prog_id: u32,
    probe: Option<Mutex<OomProbe>>,
}

impl OomKills {
    /// Loads the probe unless switched off; a hook that cannot be attached
    /// is logged and leaves the feature down, never the agent.
    pub fn start(cfg: &OomConfig, disabled_probes: &[String]) -> Self {
        if !cfg.enabled {
            return Self {
                enabled: false,
                prog_id: 0,
                probe: None,
            };
        }
        let probe = if disabled_probes.iter().any(|p| p == OOM_PROBE) {
            tracing::warn!(
                "{OOM_PROBE} disabled by debug.disable_probes: OOM kills are not counted"
            );
            None
        } else {
            match OomProbe::load(cfg.max_series) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(
                        "{OOM_PROBE}: {e}: OOM kills are not counted; everything else keeps running"
                    );
                    None
                }
            }
        };
        Self {
            enabled: true,
            prog_id: probe.as_ref().map(|p| p.prog_id).unwrap_or(0),
            probe: probe.map(Mutex::new),
        }
    }

    /// The probe's name and program id (0 = not attached), when enabled.
    pub fn probe(&self) -> Option<(&'static str, u32)> {
        self.enabled.then_some((OOM_PROBE, self.prog_id))
    }

    /// `netagent_oom_kills_total` and the lost counts (reason, n), read now.
    pub fn families(&self, labeler: &mut Labeler) -> (Vec<Family>, Vec<(&'static str, u64)>) {
        if !self.enabled {
            return (Vec::new(), Vec::new());
        }
        let snap = match &self.probe {
            Some(p) => match p.lock().unwrap_or_else(|e| e.into_inner()).read() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the OOM kill map");
                    Default::default()
                }
            },
            None => Default::default(),
        };
        let mut series: BTreeMap<Labels, f64> = BTreeMap::new();
        for (key, n) in &snap.kills {
            // Victims that are not targets are counted by the kernel (the
            // hook runs rarely) but not exported, like all other metrics.
            let Some(process) = labeler.process(&key.comm) else {
                continue;
            };
            let labels = owner_labels(process, &labeler.identity(key.cgroup_id));
            *series.entry(labels).or_default() += *n as f64;
        }
        let kills = scalar_family(&catalog::OOM_KILLS, series);
        let lost = NODE_LOST_REASONS.iter().copied().zip(snap.lost).collect();
        (vec![kills], lost)
    }
}

impl Collector for OomKills {
    fn name(&self) -> &'static str {
        "oom_kills"
    }

    fn collect(&self, scrape: &mut Scrape<'_, '_>) -> anyhow::Result<()> {
        let (families, lost) = self.families(scrape.labeler);
        scrape.families.extend(families);
        scrape.lost.extend(lost);
        Ok(())
    }

    fn probes(&self, links: &[LinkState]) -> Vec<ProbeStatus> {
        self.probe()
            .map(|(name, prog_id)| ProbeStatus {
                name: name.to_string(),
                feature: "oom_kills",
                attached: prog_id != 0 && links.iter().any(|l| l.prog_id == prog_id),
                required: false,
            })
            .into_iter()
            .collect()
    }
}
