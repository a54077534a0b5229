//! Keeps the TC counters attached to the interfaces the config selects —
//! including ones that appear later — and turns counter readings into
//! totals and per-second rates once per collection interval; then into
//! the `netagent_interface_*` families.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Collector, ProbeStatus, Scrape};
use crate::kernel::abi::{IfaceCounters, IfaceKey, IFACE_EGRESS, IFACE_INGRESS};
use crate::kernel::iface::IfaceProbes;
use crate::kernel::links::LinkState;
use crate::metrics::{catalog, scalar_family, Family, Labels};

/// Which interfaces to watch: glob patterns (`eth*`, `veth*`), or every
/// interface but loopback when there are none.
#[derive(Debug, Clone)]
pub struct InterfaceFilter(Vec<glob::Pattern>);

impl InterfaceFilter {
    pub fn new(patterns: &[String]) -> Result<Self, glob::PatternError> {
        patterns
            .iter()
            .map(|p| glob::Pattern::new(p))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn matches(&self, name: &str) -> bool {
        if self.0.is_empty() {
            return name != "lo";
        }
        self.0.iter().any(|p| p.matches(name))
    }
}

/// Interfaces of this network namespace: name -> ifindex, from /sys/class/net.
pub fn list_interfaces() -> std::io::Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/sys/class/net")? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // An interface can vanish between readdir and this read.
        if let Ok(idx) = std::fs::read_to_string(entry.path().join("ifindex")) {
            if let Ok(idx) = idx.trim().parse() {
                out.insert(name, idx);
            }
        }
    }
    Ok(out)
}

/// One interface at the last collection.
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceSample {
    pub name: String,
    pub ifindex: u32,
    pub ingress: IfaceCounters,
    pub egress: IfaceCounters,
    pub ingress_pps: f64,
    pub egress_pps: f64,
    pub ingress_bps: f64,
    pub egress_bps: f64,
    /// Carried traffic during the last interval.
    pub active: bool,
}

/// What the last collection saw.
#[derive(Debug, Clone, Default)]
pub struct InterfaceSnapshot {
    pub interfaces: Vec<InterfaceSample>,
    /// Packets the kernel could not count (interface map full).
    pub lost: u64,
    /// Interfaces that could not be attached, with the reason.
    pub failed: BTreeMap<String, String>,
    pub collected_at: Option<std::time::SystemTime>,
    pub interval_seconds: f64,
}

/// Attaches, detaches and samples; call [`Self::tick`] once per interval.
pub struct InterfaceWatcher {
    probes: IfaceProbes,
    filter: InterfaceFilter,
    previous: HashMap<IfaceKey, IfaceCounters>,
    previous_at: Option<Instant>,
}

impl InterfaceWatcher {
    pub fn new(probes: IfaceProbes, filter: InterfaceFilter) -> Self {
        Self {
            probes,
            filter,
            previous: HashMap::new(),
            previous_at: None,
        }
    }

    /// Reconciles attachments with the interfaces present now, then reads
    /// the counters.
    pub fn tick(&mut self) -> InterfaceSnapshot {
        let mut snap = InterfaceSnapshot::default();
        let present = match list_interfaces() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list interfaces");
                return snap;
            }
        };
        let by_index: HashMap<u32, &str> = present.iter().map(|(n, i)| (*i, n.as_str())).collect();
        let gone: Vec<u32> = self
            .probes
            .attached()
            .filter(|(idx, name)| by_index.get(idx) != Some(name))
            .map(|(idx, _)| idx)
            .collect();
        for idx in gone {
            tracing::info!(ifindex = idx, "interface gone; detached");
            self.probes.detach(idx);
        }
        for (name, idx) in &present {
            if !self.filter.matches(name) || self.probes.attached().any(|(i, _)| i == *idx) {
                continue;
            }
            match self.probes.attach(name, *idx) {
                Ok(()) => {
                    tracing::info!(interface = %name, ifindex = idx, "counting interface traffic")
                }
                Err(e) => {
                    tracing::warn!(interface = %name, error = %format!("{e:#}"), "cannot attach TC programs");
                    snap.failed.insert(name.clone(), e.to_string());
                }
            }
        }

        let now = Instant::now();
        let dt = self
            .previous_at
            .map(|t| now.duration_since(t).as_secs_f64());
        let counters: HashMap<IfaceKey, IfaceCounters> = match self.probes.read() {
            Ok(c) => c.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read interface counters");
                return snap;
            }
        };
        for (idx, name) in self.probes.attached() {
            let get = |direction| {
                counters
                    .get(&IfaceKey {
                        ifindex: idx,
                        direction,
                    })
                    .copied()
                    .unwrap_or_default()
            };
            let prev = |direction| {
                self.previous
                    .get(&IfaceKey {
                        ifindex: idx,
                        direction,
                    })
                    .copied()
                    .unwrap_or_default()
            };
            let (ingress, egress) = (get(IFACE_INGRESS), get(IFACE_EGRESS));
            let (pin, peg) = (prev(IFACE_INGRESS), prev(IFACE_EGRESS));
            let rate = |now: u64, before: u64| match dt {
                Some(dt) if dt > 0.0 => now.saturating_sub(before) as f64 / dt,
                _ => 0.0,
            };
            snap.interfaces.push(InterfaceSample {
                name: name.to_string(),
                ifindex: idx,
                ingress,
                egress,
                ingress_pps: rate(ingress.packets, pin.packets),
                egress_pps: rate(egress.packets, peg.packets),
                ingress_bps: rate(ingress.bytes, pin.bytes),
                egress_bps: rate(egress.bytes, peg.bytes),
                active: ingress.packets != pin.packets || egress.packets != peg.packets,
            });
        }
        snap.interfaces.sort_by(|a, b| a.name.cmp(&b.name));
        snap.lost = self.probes.lost();
        snap.collected_at = Some(std::time::SystemTime::now());
        snap.interval_seconds = dt.unwrap_or(0.0);
        self.previous = counters;
        self.previous_at = Some(now);
        snap
    }

    /// Kernel ids of the TC programs.
    pub fn program_ids(&self) -> Vec<(&'static str, u32)> {
        self.probes.program_ids()
    }

    /// True when TC attachments are netlink filters, not TCX links.
    pub fn uses_netlink(&self) -> bool {
        self.probes.uses_netlink()
    }

    /// Attached interfaces (ifindex, name).
    pub fn attached(&self) -> Vec<(u32, String)> {
        self.probes
            .attached()
            .map(|(i, n)| (i, n.to_string()))
            .collect()
    }
}

/// What the watcher thread last collected, shared with scrapes.
#[derive(Default)]
struct InterfaceState {
    snapshot: InterfaceSnapshot,
    /// TC program ids, for health.
    program_ids: Vec<u32>,
    /// Attached with netlink filters (no link descriptors to check).
    netlink: bool,
    attached: Vec<(u32, String)>,
}

/// Per-interface counters: a thread attaches the TC programs to the
/// interfaces the config selects (also ones that appear later) and reads
/// them every interval; scrapes use its last reading. Stopped (and every
/// TC program detached) on drop.
pub struct InterfaceSource {
    state: Arc<Mutex<InterfaceState>>,
    active_only: bool,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn lock(m: &Mutex<InterfaceState>) -> MutexGuard<'_, InterfaceState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl InterfaceSource {
    /// Starts the watcher thread.
    pub fn start(watcher: InterfaceWatcher, interval: Duration, active_only: bool) -> Self {
        let state = Arc::new(Mutex::new(InterfaceState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = spawn_thread(watcher, state.clone(), interval, stop.clone());
        Self {
            state,
            active_only,
            stop,
            thread: Some(thread),
        }
    }

    /// The last reading.
    pub fn snapshot(&self) -> InterfaceSnapshot {
        lock(&self.state).snapshot.clone()
    }

    /// Whether the first collection has happened (every selected interface
    /// attached).
    pub fn collected(&self) -> bool {
        lock(&self.state).snapshot.collected_at.is_some()
    }
}

impl Drop for InterfaceSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Collector for InterfaceSource {
    fn name(&self) -> &'static str {
        "interfaces"
    }

    fn collect(&self, scrape: &mut Scrape<'_, '_>) -> anyhow::Result<()> {
        let state = lock(&self.state);
        scrape
            .families
            .extend(families(&state.snapshot, self.active_only));
        scrape
            .lost
            .push(("interface_map_full", state.snapshot.lost));
        Ok(())
    }

    /// One probe per attached interface: both TCX links present, or for
    /// netlink filters (no descriptor to inspect) the interface still
    /// exists (the watcher detaches vanished ones).
    fn probes(&self, links: &[LinkState]) -> Vec<ProbeStatus> {
        let state = lock(&self.state);
        state
            .attached
            .iter()
            .map(|(ifindex, name)| {
                let attached = if state.netlink {
                    std::path::Path::new("/sys/class/net").join(name).exists()
                } else {
                    links
                        .iter()
                        .filter(|l| {
                            state.program_ids.contains(&l.prog_id)
                                && l.target == Some(*ifindex as u64)
                        })
                        .count()
                        == 2 // ingress and egress links
                };
                ProbeStatus {
                    name: format!("tc/{name}"),
                    feature: "interfaces",
                    attached,
                    required: false,
                }
            })
            .collect()
    }
}

/// Runs the watcher every `interval` until `stop` is set.
fn spawn_thread(
    mut watcher: InterfaceWatcher,
    state: Arc<Mutex<InterfaceState>>,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("netagent-iface".into())
        .spawn(move || {
            let program_ids = watcher
                .program_ids()
                .into_iter()
                .map(|(_, id)| id)
                .collect();
            {
                let mut s = lock(&state);
                s.program_ids = program_ids;
                s.netlink = watcher.uses_netlink();
            }
            while !stop.load(Ordering::Relaxed) {
                let snap = watcher.tick();
                let attached = watcher.attached();
                {
                    let mut s = lock(&state);
                    s.snapshot = snap;
                    s.attached = attached;
                }
                // Sleep in short steps so shutdown is prompt.
                let until = Instant::now() + interval;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50).min(interval));
                }
            }
            // Dropping the watcher detaches every TC program.
        })
        .expect("spawn interface thread")
}

fn iface(name: &str, ifindex: u32) -> Labels {
    vec![
        ("interface", name.to_string()),
        ("ifindex", ifindex.to_string()),
    ]
}

fn dir(mut l: Labels, direction: &str) -> Labels {
    l.push(("direction", direction.to_string()));
    l
}

/// Totals, rates and activity per interface; `active_only` leaves out
/// interfaces that carried nothing in the last interval.
pub fn families(snap: &InterfaceSnapshot, active_only: bool) -> Vec<Family> {
    let mut packets = BTreeMap::new();
    let mut bytes = BTreeMap::new();
    let mut pps = BTreeMap::new();
    let mut bps = BTreeMap::new();
    let mut active = BTreeMap::new();
    for s in &snap.interfaces {
        if active_only && !s.active {
            continue;
        }
        let l = iface(&s.name, s.ifindex);
        for (d, c, p, b) in [
            ("ingress", s.ingress, s.ingress_pps, s.ingress_bps),
            ("egress", s.egress, s.egress_pps, s.egress_bps),
        ] {
            packets.insert(dir(l.clone(), d), c.packets as f64);
            bytes.insert(dir(l.clone(), d), c.bytes as f64);
            pps.insert(dir(l.clone(), d), p);
            bps.insert(dir(l.clone(), d), b);
        }
        active.insert(l, if s.active { 1.0 } else { 0.0 });
    }
    vec![
        scalar_family(&catalog::INTERFACE_PACKETS, packets),
        scalar_family(&catalog::INTERFACE_BYTES, bytes),
        scalar_family(&catalog::INTERFACE_PACKETS_PER_SECOND, pps),
        scalar_family(&catalog::INTERFACE_BYTES_PER_SECOND, bps),
        scalar_family(&catalog::INTERFACE_ACTIVE, active),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_filter_is_everything_but_loopback() {
        let f = InterfaceFilter::new(&[]).unwrap();
        assert!(f.matches("eth0") && f.matches("veth1") && !f.matches("lo"));
        let f = InterfaceFilter::new(&["eth*".into(), "wg0".into()]).unwrap();
        assert!(f.matches("eth12") && f.matches("wg0") && !f.matches("veth0"));
        assert!(InterfaceFilter::new(&["[".into()]).is_err());
    }

    #[test]
    fn lists_loopback() {
        let all = list_interfaces().unwrap();
        assert_eq!(all.get("lo"), Some(&1));
    }

    use crate::collect::interfaces::InterfaceSample;
    use crate::kernel::abi::IfaceCounters;

    fn sample(name: &str, ifindex: u32, active: bool) -> InterfaceSample {
        InterfaceSample {
            name: name.into(),
            ifindex,
            ingress: IfaceCounters {
                packets: 3,
                bytes: 300,
            },
            egress: IfaceCounters {
                packets: 1,
                bytes: 60,
            },
            ingress_pps: 1.5,
            egress_pps: 0.5,
            ingress_bps: 150.0,
            egress_bps: 30.0,
            active,
        }
    }

    #[test]
    fn active_only_leaves_out_idle_interfaces() {
        let snap = InterfaceSnapshot {
            interfaces: vec![sample("eth0", 2, true), sample("eth1", 3, false)],
            ..Default::default()
        };
        let all = families(&snap, false);
        assert_eq!(all[0].series.len(), 4, "two interfaces x two directions");
        assert_eq!(all[4].series.len(), 2);
        let active = families(&snap, true);
        assert_eq!(active[0].series.len(), 2);
        assert!(active
            .iter()
            .all(|f| f.series.iter().all(|s| s.labels[0].1 == "eth0")));
        assert_eq!(active[4].series[0].value, crate::metrics::Value::Gauge(1.0));
    }
}
