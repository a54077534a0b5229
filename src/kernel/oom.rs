//! Loads and attaches `bpf/node.bpf.c`: OOM kills counted per victim from
//! the `oom:mark_victim` tracepoint. Optional: when the hook is missing or
//! rejected the agent runs on without it (the probe reads 0 in
//! `netagent_probe_up`).

use aya::maps::{HashMap, MapData, MapError, PerCpuArray};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};
use aya_obj::btf::BtfKind;

use super::abi::{OomKey, NODE_LOST_REASONS};
use super::hooks::{HookKind, HookTrial, TrialProbe};

/// The compiled program (see build.rs).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/node.bpf.o"));

/// Probe name in `netagent_probe_up`, `/health` and `debug.disable_probes`.
pub const OOM_PROBE: &str = "tracepoint/oom:mark_victim";

const EVENT: &str = "mark_victim";

/// The program for each prototype of the tracepoint, newest first: since
/// Linux 6.8 it passes the victim's task_struct, before only its pid.
const VARIANTS: [(&str, &str); 2] = [
    (
        "on_mark_victim",
        "the tracepoint passes the victim's task_struct (Linux 6.8+ and stable kernels with the backport)",
    ),
    (
        "on_mark_victim_pid",
        "the tracepoint passes the victim's pid only (older kernels): victims other than the allocating task are counted as lost",
    ),
];

/// Probe names this module adds (for `debug.disable_probes`).
pub fn probe_names() -> Vec<String> {
    vec![OOM_PROBE.to_string()]
}

/// The attached OOM program and its maps. Drop to detach.
pub struct OomProbe {
    /// Owns the program and its link.
    _ebpf: Ebpf,
    kills: HashMap<MapData, OomKey, u64>,
    lost: PerCpuArray<MapData, u64>,
    /// Kernel id of the attached program (for the link-based probe status).
    pub prog_id: u32,
    /// The variant that fits this kernel, and what it sees.
    pub variant: (&'static str, &'static str),
}

/// Totals read from the kernel at one moment.
#[derive(Debug, Default, Clone)]
pub struct OomSnapshot {
    pub kills: Vec<(OomKey, u64)>,
    /// Indexed like [`NODE_LOST_REASONS`].
    pub lost: [u64; NODE_LOST_REASONS.len()],
}

impl OomProbe {
    /// Loads the object with room for `max_series` (comm, cgroup) keys and
    /// attaches whichever program the running kernel's prototype accepts.
    /// The error says why OOM kills cannot be counted.
    pub fn load(max_series: u32) -> Result<Self, String> {
        let btf = Btf::from_sys_fs().map_err(|e| format!("kernel BTF unavailable: {e}"))?;
        if btf
            .id_by_type_name_kind(&format!("btf_trace_{EVENT}"), BtfKind::Typedef)
            .is_err()
        {
            return Err("tracepoint oom:mark_victim does not exist on this kernel".into());
        }
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .map_max_entries("oom_kills", max_series)
            .load(OBJECT)
            .map_err(|e| format!("BPF object: {e}"))?;
        // The verifier checks argument accesses against the kernel's
        // prototype, so the program that loads is the one that fits.
        let mut rejected = Vec::new();
        let mut prog_id = None;
        let mut variant = VARIANTS[0];
        for (name, what) in VARIANTS {
            match attach(&mut ebpf, name, &btf) {
                Ok(id) => {
                    tracing::debug!(program = name, "oom:mark_victim attached: {what}");
                    if name != VARIANTS[0].0 {
                        tracing::warn!("oom:mark_victim has the old prototype: {what}");
                    }
                    prog_id = Some(id);
                    variant = (name, what);
                    break;
                }
                Err(e) => rejected.push(format!("{name}: {e}")),
            }
        }
        let Some(prog_id) = prog_id else {
            return Err(format!(
                "no program fits oom:mark_victim ({})",
                rejected.join("; ")
            ));
        };
        let kills = ebpf
            .take_map("oom_kills")
            .ok_or("map oom_kills not found")?;
        let lost = ebpf
            .take_map("node_lost")
            .ok_or("map node_lost not found")?;
        Ok(Self {
            kills: HashMap::try_from(kills).map_err(|e| e.to_string())?,
            lost: PerCpuArray::try_from(lost).map_err(|e| e.to_string())?,
            _ebpf: ebpf,
            prog_id,
            variant,
        })
    }

    /// Kills per (comm, cgroup) and the kills that could not be counted.
    pub fn read(&self) -> Result<OomSnapshot, MapError> {
        let mut snap = OomSnapshot::default();
        for entry in self.kills.iter() {
            match entry {
                Ok(kv) => snap.kills.push(kv),
                // Deleted during the walk (never by us, but harmless).
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

/// `netagent probe`'s row for OOM kills: loads and attaches the program
/// that fits this kernel, then detaches it. `disabled` says why not to try.
pub fn trial(disabled: Option<String>) -> HookTrial {
    let probe = |(program, _): (&'static str, &str)| TrialProbe {
        name: OOM_PROBE.to_string(),
        section: format!("tp_btf/{EVENT}"),
        program,
    };
    let (probes, result, note) = match disabled.map_or_else(|| OomProbe::load(16), Err) {
        Ok(p) => (
            vec![probe(p.variant)],
            Ok(()),
            Some(p.variant.1.to_string()),
        ),
        Err(why) => (VARIANTS.into_iter().map(probe).collect(), Err(why), None),
    };
    HookTrial {
        feature: "oom_kills",
        hook: HookKind::Tracepoint,
        probes,
        result,
        note,
        state: None,
        mode: None,
    }
}

/// Loads and attaches one variant; its program id.
fn attach(ebpf: &mut Ebpf, name: &str, btf: &Btf) -> Result<u32, String> {
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} not found"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    prog.load(EVENT, btf).map_err(|e| match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let last = log.lines().rev().find(|l| !l.trim().is_empty());
            format!("{io_error}; verifier: {}", last.unwrap_or(""))
        }
        other => other.to_string(),
    })?;
    prog.attach().map_err(|e| format!("attach: {e}"))?;
    Ok(prog.info().map(|i| i.id()).unwrap_or(0))
}
