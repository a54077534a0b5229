//! TC programs counting packets and bytes per interface and direction.
//! On kernels with TCX (6.6+) every attachment is a link owned by a file
//! descriptor: it coexists with other TC programs, and it is gone when the
//! agent exits, however it exits. Older kernels get netlink filters on a
//! clsact qdisc, which outlive a killed agent: the next start removes the
//! filters of our programs (by name) before attaching, so restarts never
//! duplicate them, and leaves everyone else's alone.

use std::collections::HashMap;

use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use aya::programs::tc::{self, SchedClassifierLinkId, TcAttachType};
use aya::programs::SchedClassifier;
use aya::util::KernelVersion;
use aya::{Ebpf, EbpfLoader};

use super::abi::{IfaceCounters, IfaceKey, IfaceSlot, IFACE_EGRESS, IFACE_INGRESS};
use super::hooks::HookKind;
use super::hooks::{HookTrial, TrialProbe};
use super::KernelError;

/// The compiled TC programs (see build.rs).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/iface.bpf.o"));

const INGRESS: &str = "on_tc_ingress";
const EGRESS: &str = "on_tc_egress";

/// One attached interface.
#[derive(Debug)]
struct Attachment {
    name: String,
    ingress: SchedClassifierLinkId,
    egress: SchedClassifierLinkId,
    /// Its counter slot, when it got its `iface_direct` entry.
    slot: Option<u32>,
}

/// Loaded TC programs and their attachments.
pub struct IfaceProbes {
    ebpf: Ebpf,
    /// Interfaces counted by slot (iface.bpf.c), and their counters.
    direct: Array<MapData, IfaceSlot>,
    counters: PerCpuArray<MapData, IfaceCounters>,
    /// Counter slots not held by an attached interface.
    free_slots: Vec<u32>,
    /// The rest, by ifindex and direction.
    stats: PerCpuHashMap<MapData, IfaceKey, IfaceCounters>,
    lost: PerCpuArray<MapData, u64>,
    attached: HashMap<u32, Attachment>,
    /// Netlink filters instead of TCX links.
    netlink: bool,
}

impl IfaceProbes {
    /// Loads both programs (not attached anywhere yet). `force_netlink`
    /// uses netlink filters even where TCX exists.
    pub fn load(max_interfaces: u32, force_netlink: bool) -> Result<Self, KernelError> {
        let netlink = force_netlink
            || !KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
        let mut ebpf = EbpfLoader::new()
            .map_max_entries("iface_stats", max_interfaces.saturating_mul(2))
            .map_max_entries("iface_counters", max_interfaces.saturating_mul(2))
            .load(OBJECT)
            .map_err(|e| KernelError::Object(e.to_string()))?;
        for name in [INGRESS, EGRESS] {
            let prog: &mut SchedClassifier = classifier(&mut ebpf, name)?;
            prog.load().map_err(|e| KernelError::Load {
                program: name,
                detail: e.to_string(),
            })?;
        }
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| KernelError::Object(format!("map {name} not found")))
        };
        let object = |e: aya::maps::MapError| KernelError::Object(e.to_string());
        let (direct, counters) = (take("iface_direct")?, take("iface_counters")?);
        let (stats, lost) = (take("iface_stats")?, take("iface_lost")?);
        Ok(Self {
            direct: Array::try_from(direct).map_err(object)?,
            counters: PerCpuArray::try_from(counters).map_err(object)?,
            // Popped from the end: the lowest slots first.
            free_slots: (0..max_interfaces).rev().collect(),
            stats: PerCpuHashMap::try_from(stats).map_err(object)?,
            lost: PerCpuArray::try_from(lost).map_err(object)?,
            attached: HashMap::new(),
            ebpf,
            netlink,
        })
    }

    /// True when attachments are netlink filters (no link descriptors).
    pub fn uses_netlink(&self) -> bool {
        self.netlink
    }

    /// `netagent probe`'s row for interface counters: both programs are
    /// loaded (the verifier's verdict); attaching needs an interface, which
    /// the agent does per interface at run time, so nothing is attached here.
    pub fn trial(force_netlink: bool, disabled: Option<String>) -> HookTrial {
        let result = match disabled {
            Some(why) => Err(why),
            None => Self::load(1, force_netlink)
                .map(|p| p.netlink)
                .map_err(|e| e.to_string()),
        };
        let note = result.as_ref().ok().map(|netlink| {
            if *netlink {
                "loaded; attached at run time as netlink filters on a clsact qdisc of each interface"
            } else {
                "loaded; attached at run time as TCX links to each interface"
            }
            .to_string()
        });
        HookTrial {
            feature: "interfaces",
            hook: HookKind::Tc,
            probes: [INGRESS, EGRESS]
                .into_iter()
                .map(|program| TrialProbe {
                    name: "tc/INTERFACE".to_string(),
                    section: "classifier".to_string(),
                    program,
                })
                .collect(),
            result: result.map(|_| ()),
            note,
            state: None,
            mode: None,
        }
    }

    /// Attaches ingress and egress counting to an interface.
    pub fn attach(&mut self, name: &str, ifindex: u32) -> Result<(), KernelError> {
        if self.attached.contains_key(&ifindex) {
            return Ok(());
        }
        let netlink = self.netlink;
        if netlink {
            // Classifiers hang off a clsact qdisc. EEXIST is fine: we never
            // delete a qdisc, it may be someone else's.
            let _ = tc::qdisc_add_clsact(name);
            // Filters of ours left by an agent that was killed (one agent
            // runs per host): removed by program name, others' untouched.
            for (at, prog) in [
                (TcAttachType::Ingress, INGRESS),
                (TcAttachType::Egress, EGRESS),
            ] {
                if tc::qdisc_detach_program(name, at, prog).is_ok() {
                    tracing::info!(
                        interface = name,
                        "removed a TC filter {prog} left by an earlier run"
                    );
                }
            }
        }
        let attach = |ebpf: &mut Ebpf, prog: &'static str, at: TcAttachType| {
            let options = if netlink {
                tc::TcAttachOptions::Netlink(tc::NlOptions::default())
            } else {
                tc::TcAttachOptions::TcxOrder(aya::programs::links::LinkOrder::default())
            };
            classifier(ebpf, prog)?
                .attach_with_options(name, at, options)
                .map_err(|source| KernelError::Attach {
                    program: prog,
                    hook: format!("tc {name} {at:?}"),
                    source,
                })
        };
        // Its slot before its first packet: from then on it is counted there.
        let slot = self.claim_direct(ifindex);
        let ingress = match attach(&mut self.ebpf, INGRESS, TcAttachType::Ingress) {
            Ok(l) => l,
            Err(e) => {
                self.release_direct(ifindex, slot);
                return Err(e);
            }
        };
        let egress = match attach(&mut self.ebpf, EGRESS, TcAttachType::Egress) {
            Ok(l) => l,
            Err(e) => {
                let _ = classifier(&mut self.ebpf, INGRESS).map(|p| p.detach(ingress));
                self.release_direct(ifindex, slot);
                return Err(e);
            }
        };
        self.attached.insert(
            ifindex,
            Attachment {
                name: name.to_string(),
                ingress,
                egress,
                slot,
            },
        );
        Ok(())
    }

    /// A free counter slot, zeroed, written at the interface's
    /// `iface_direct` entry. None when the entry is another interface's or
    /// no slot is free (then it is counted by ifindex).
    fn claim_direct(&mut self, ifindex: u32) -> Option<u32> {
        let at = ifindex % self.direct.len();
        if self.direct.get(&at, 0).ok()?.ifindex != 0 {
            return None;
        }
        let slot = self.free_slots.pop()?;
        let entry = IfaceSlot { ifindex, slot };
        if self.zero_slot(slot).is_err() || self.direct.set(at, entry, 0).is_err() {
            self.free_slots.push(slot);
            return None;
        }
        Some(slot)
    }

    /// Gives an `iface_direct` entry and its slot back (its programs are
    /// detached): counters zeroed for the next interface.
    fn release_direct(&mut self, ifindex: u32, slot: Option<u32>) {
        let Some(slot) = slot else { return };
        let at = ifindex % self.direct.len();
        if self.direct.set(at, IfaceSlot::default(), 0).is_ok() && self.zero_slot(slot).is_ok() {
            self.free_slots.push(slot);
        }
    }

    fn zero_slot(&mut self, slot: u32) -> Result<(), aya::maps::MapError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| aya::maps::MapError::IoError(e))?;
        for direction in [IFACE_INGRESS, IFACE_EGRESS] {
            let zero = PerCpuValues::try_from(vec![IfaceCounters::default(); cpus])?;
            self.counters.set(slot * 2 + direction, zero, 0)?;
        }
        Ok(())
    }

    /// Detaches from an interface (which may be gone already) and forgets
    /// its counters, so its series disappear.
    pub fn detach(&mut self, ifindex: u32) {
        if let Some(a) = self.attached.remove(&ifindex) {
            // Errors are expected when the interface vanished: the kernel
            // already released the link.
            if let Ok(p) = classifier(&mut self.ebpf, INGRESS) {
                let _ = p.detach(a.ingress);
            }
            if let Ok(p) = classifier(&mut self.ebpf, EGRESS) {
                let _ = p.detach(a.egress);
            }
            self.release_direct(ifindex, a.slot);
        }
        for direction in [IFACE_INGRESS, IFACE_EGRESS] {
            let _ = self.stats.remove(&IfaceKey { ifindex, direction });
        }
    }

    /// Attached interfaces: ifindex -> name at attach time.
    pub fn attached(&self) -> impl Iterator<Item = (u32, &str)> {
        self.attached.iter().map(|(i, a)| (*i, a.name.as_str()))
    }

    /// Counters per interface and direction, summed over CPUs; only those
    /// that counted a packet (as the kernel makes `iface_stats` entries).
    pub fn read(&self) -> Result<Vec<(IfaceKey, IfaceCounters)>, aya::maps::MapError> {
        let mut out = Vec::new();
        for (&ifindex, a) in &self.attached {
            let Some(slot) = a.slot else { continue };
            for direction in [IFACE_INGRESS, IFACE_EGRESS] {
                let total = sum(self.counters.get(&(slot * 2 + direction), 0)?.iter());
                if total.packets > 0 {
                    out.push((IfaceKey { ifindex, direction }, total));
                }
            }
        }
        for entry in self.stats.iter() {
            let (k, per_cpu) = match entry {
                Ok(kv) => kv,
                Err(aya::maps::MapError::KeyNotFound) => continue,
                Err(e) => return Err(e),
            };
            out.push((k, sum(per_cpu.iter())));
        }
        Ok(out)
    }

    /// Packets not counted because the map was full.
    pub fn lost(&self) -> u64 {
        self.lost.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }

    /// Kernel ids of the two programs (for health checks).
    pub fn program_ids(&self) -> Vec<(&'static str, u32)> {
        [INGRESS, EGRESS]
            .into_iter()
            .filter_map(|name| {
                let p: &SchedClassifier = self.ebpf.program(name)?.try_into().ok()?;
                Some((name, p.info().ok()?.id()))
            })
            .collect()
    }
}

/// One counter pair from its per-CPU values.
fn sum<'a>(per_cpu: impl Iterator<Item = &'a IfaceCounters>) -> IfaceCounters {
    per_cpu.fold(IfaceCounters::default(), |t, c| IfaceCounters {
        packets: t.packets + c.packets,
        bytes: t.bytes + c.bytes,
    })
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, KernelError> {
    ebpf.program_mut(name)
        .ok_or_else(|| KernelError::Object(format!("program {name} not found")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| {
            KernelError::Object(format!("program {name}: {e}"))
        })
}
