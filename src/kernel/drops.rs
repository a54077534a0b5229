//! Packet drops, kernel side (bpf/netagent/drops.c, `tp_btf/kfree_skb` in
//! the socket object): the `drops` and `drop_lost` maps, the names of the
//! running kernel's drop reasons, and what this kernel's tracepoint passes.
//!
//! Reason values differ between kernels (5.17 numbered NOT_SPECIFIED 0,
//! 6.0 put SKB_NOT_DROPPED_YET there), so names are never hard-coded:
//! they come from the kernel's own `enum skb_drop_reason` in its BTF.

use aya::maps::{Map, MapData, MapError, PerCpuArray, PerCpuHashMap};

use super::abi::{DropKey, DROP_IGNORE_MAX, DROP_LOST_REASONS, DROP_REASON_UNKNOWN};
use super::btf_raw;
use super::hooks::HookTrial;
use super::KernelError;

/// The feature's name in the hook table, `/health` and `netagent probe`.
pub const FEATURE: &str = "drops";

/// The label of drops on kernels whose tracepoint has no reason.
pub const UNKNOWN: &str = "unknown";

/// Reason values above this carry a subsystem in their upper 16 bits
/// (`SKB_DROP_REASON_SUBSYS_SHIFT`): mac80211's and openvswitch's own
/// reasons, named in those modules' BTF, not in vmlinux's.
const SUBSYS_SHIFT: u32 = 16;

/// The two maps of the drops program, read at scrape time, and what the
/// kernel BTF the object was loaded against says of its reasons.
pub struct DropMaps {
    counts: PerCpuHashMap<MapData, DropKey, u64>,
    lost: PerCpuArray<MapData, u64>,
    /// The running kernel's drop reason names.
    pub reasons: ReasonNames,
    /// What its kfree_skb tracepoint passes; None when BTF does not say.
    pub tracepoint: Option<Tracepoint>,
}

/// Totals read from the kernel at one moment.
#[derive(Debug, Default, Clone)]
pub struct DropSnapshot {
    /// Drops per key, summed over CPUs.
    pub drops: Vec<(DropKey, u64)>,
    /// Indexed like [`DROP_LOST_REASONS`].
    pub lost: [u64; DROP_LOST_REASONS.len()],
}

impl DropMaps {
    /// `kernel_btf`: the raw BTF the object was loaded against, read once
    /// by the loader (the reset reasons are named from it the same way).
    pub fn new(counts: Map, lost: Map, kernel_btf: &[u8]) -> Result<Self, KernelError> {
        let obj = |e: MapError| KernelError::Object(e.to_string());
        Ok(Self {
            counts: PerCpuHashMap::try_from(counts).map_err(obj)?,
            lost: PerCpuArray::try_from(lost).map_err(obj)?,
            reasons: ReasonNames::from_btf(kernel_btf),
            tracepoint: Tracepoint::of(kernel_btf),
        })
    }

    /// Deletes a key whose series expired; a later drop creates it anew.
    pub fn remove(&mut self, key: &DropKey) -> Result<(), MapError> {
        match self.counts.remove(key) {
            Err(MapError::KeyNotFound) => Ok(()),
            r => r,
        }
    }

    /// Every key's drops, and the drops that could not be counted.
    pub fn read(&self) -> Result<DropSnapshot, MapError> {
        let mut snap = DropSnapshot::default();
        for entry in self.counts.iter() {
            match entry {
                Ok((key, per_cpu)) => snap.drops.push((key, per_cpu.iter().sum())),
                // A key deleted mid-walk (its series expired): skipped.
                Err(MapError::KeyNotFound) => continue,
                Err(e) => return Err(e),
            }
        }
        for (i, slot) in snap.lost.iter_mut().enumerate() {
            *slot = self.lost.get(&(i as u32), 0)?.iter().sum();
        }
        Ok(snap)
    }
}

/// What this kernel's skb:kfree_skb passes, from its record in BTF
/// (`struct trace_event_raw_kfree_skb`): the same fields the program asks
/// about with CO-RE, so this says what the loaded program does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracepoint {
    /// `reason` (5.17+): without it every drop is counted as "unknown".
    pub reason: bool,
    /// `rx_sk` (6.12+): the receiving socket, so receive-side drops
    /// (a full UDP buffer) have an owner.
    pub rx_sk: bool,
}

impl Tracepoint {
    pub fn of(btf: &[u8]) -> Option<Self> {
        let fields = btf_raw::struct_members(btf, "trace_event_raw_kfree_skb")?;
        let has = |f: &str| fields.iter().any(|m| m == f);
        Some(Self {
            reason: has("reason"),
            rx_sk: has("rx_sk"),
        })
    }

    /// How `netagent probe` and the agent's log describe it.
    pub fn describe(self) -> String {
        let owner = if self.rx_sk {
            "the socket that sent or was receiving the packet (skb->sk, rx_sk)"
        } else {
            "the socket that sent or held the packet (skb->sk; no rx_sk before 6.12)"
        };
        if self.reason {
            format!("counted by the kernel's drop reason, owner from {owner}")
        } else {
            format!(
                "this kernel's kfree_skb has no drop reason (before 5.17): drops are counted \
                 with reason \"{UNKNOWN}\", owner from {owner}"
            )
        }
    }
}

/// Label values of the running kernel's drop reasons.
#[derive(Debug, Clone, Default)]
pub struct ReasonNames {
    /// (value, label), from `enum skb_drop_reason`.
    names: Vec<(u32, String)>,
    /// (subsystem id, label), from `enum skb_drop_reason_subsys`.
    subsystems: Vec<(u32, String)>,
}

impl ReasonNames {
    /// From the kernel's BTF; empty (every value shown as a number) when
    /// the kernel has no `enum skb_drop_reason` (before 5.17: the program
    /// then only counts "unknown").
    pub fn from_btf(btf: &[u8]) -> Self {
        let names = btf_raw::enum_values(btf, "skb_drop_reason")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, value)| Some((u32::try_from(value).ok()?, reason_label(&name)?)))
            .collect();
        let subsystems = btf_raw::enum_values(btf, "skb_drop_reason_subsys")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, value)| {
                let label = name.strip_prefix("SKB_DROP_REASON_SUBSYS_")?;
                if label == "NUM" {
                    return None;
                }
                Some((u32::try_from(value).ok()?, label.to_ascii_lowercase()))
            })
            .collect();
        Self { names, subsystems }
    }

    /// The value of a label (`no_socket`), if this kernel has the reason.
    pub fn value(&self, label: &str) -> Option<u32> {
        self.names.iter().find(|(_, n)| n == label).map(|(v, _)| *v)
    }

    /// Of `labels`, those this kernel has no reason for.
    pub fn missing<'a>(&self, labels: &'a [String]) -> Vec<&'a str> {
        labels
            .iter()
            .filter(|l| self.value(l).is_none())
            .map(String::as_str)
            .collect()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The `reason` label of a value: its name without `SKB_DROP_REASON_`
    /// (or `SKB_`) in lower case; a subsystem's own reason as
    /// `<subsystem>_<code>` (its names are in the module's BTF); a value
    /// this kernel does not name as `reason_<value>`.
    pub fn label(&self, value: u32) -> String {
        if value == DROP_REASON_UNKNOWN {
            return UNKNOWN.to_string();
        }
        if let Some((_, n)) = self.names.iter().find(|(v, _)| *v == value) {
            return n.clone();
        }
        let subsys = value >> SUBSYS_SHIFT;
        match self.subsystems.iter().find(|(v, _)| *v == subsys) {
            Some((_, s)) if subsys != 0 => format!("{s}_{}", value & 0xffff),
            _ => format!("reason_{value}"),
        }
    }
}

/// The `drop_ignore` global for `names` (labels, as in
/// `drops.ignore_reasons`): this kernel's values, unused slots
/// [`DROP_REASON_UNKNOWN`] (which the program never compares). Names this
/// kernel does not have are left out ([`ReasonNames::missing`] says which).
pub fn ignore_values(btf: &[u8], names: &[String]) -> [u32; DROP_IGNORE_MAX] {
    let known = ReasonNames::from_btf(btf);
    let mut out = [DROP_REASON_UNKNOWN; DROP_IGNORE_MAX];
    let values = names.iter().filter_map(|n| known.value(n));
    for (slot, v) in out.iter_mut().zip(values) {
        *slot = v;
    }
    out
}

/// `SKB_DROP_REASON_NO_SOCKET` → `no_socket`, `SKB_CONSUMED` → `consumed`;
/// None for the enum's bounds, which are no reasons.
fn reason_label(name: &str) -> Option<String> {
    if name == "SKB_DROP_REASON_MAX" || name == "SKB_DROP_REASON_SUBSYS_MASK" {
        return None;
    }
    let short = name
        .strip_prefix("SKB_DROP_REASON_")
        .or_else(|| name.strip_prefix("SKB_"))
        .unwrap_or(name);
    Some(short.to_ascii_lowercase())
}

/// `netagent probe`: the drops rows say what this kernel's tracepoint
/// passes (a working hook's note).
pub fn annotate(trials: &mut [HookTrial], btf: &[u8]) {
    let Some(tp) = Tracepoint::of(btf) else {
        return;
    };
    for t in trials
        .iter_mut()
        .filter(|t| t.feature == FEATURE && t.result.is_ok())
    {
        t.note = Some(tp.describe());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> ReasonNames {
        ReasonNames {
            names: [
                (0, "SKB_NOT_DROPPED_YET"),
                (1, "SKB_CONSUMED"),
                (3, "SKB_DROP_REASON_NO_SOCKET"),
                (12, "SKB_DROP_REASON_NETFILTER_DROP"),
            ]
            .into_iter()
            .filter_map(|(v, n)| Some((v, reason_label(n)?)))
            .collect(),
            subsystems: vec![(2, "openvswitch".into())],
        }
    }

    #[test]
    fn labels_are_the_kernels_names_in_lower_case() {
        let n = names();
        assert_eq!(n.label(12), "netfilter_drop");
        assert_eq!(n.label(3), "no_socket");
        assert_eq!(n.label(1), "consumed");
        assert_eq!(n.label(0), "not_dropped_yet");
        assert_eq!(n.label(DROP_REASON_UNKNOWN), "unknown");
        assert_eq!(n.label(2 << 16 | 5), "openvswitch_5");
        assert_eq!(n.label(77), "reason_77");
        assert_eq!(n.value("no_socket"), Some(3));
        assert_eq!(n.value("nothing"), None);
        let asked = ["no_socket".to_string(), "nothing".to_string()];
        assert_eq!(n.missing(&asked), ["nothing"]);
        assert_eq!(reason_label("SKB_DROP_REASON_MAX"), None);
        assert_eq!(reason_label("SKB_DROP_REASON_SUBSYS_MASK"), None);
    }

    /// On the running kernel: names from its BTF, and what its tracepoint
    /// passes.
    #[test]
    fn the_running_kernels_reasons_and_tracepoint() {
        let Ok(raw) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return;
        };
        let Some(tp) = Tracepoint::of(&raw) else {
            return;
        };
        let n = ReasonNames::from_btf(&raw);
        if tp.reason {
            assert!(n.len() > 10, "{n:?}");
            let ignore = ignore_values(&raw, &["no_socket".into(), "nothing".into()]);
            assert_eq!(ignore[0], n.value("no_socket").unwrap());
            assert!(ignore[1..].iter().all(|&v| v == DROP_REASON_UNKNOWN));
            let no_socket = n.names.iter().find(|(_, l)| l == "no_socket");
            assert!(no_socket.is_some(), "{n:?}");
            assert_eq!(n.label(no_socket.unwrap().0), "no_socket");
            assert!(tp
                .describe()
                .starts_with("counted by the kernel's drop reason"));
        } else {
            assert!(tp.describe().contains("reason \"unknown\""));
        }
    }
}
