//! The verifier-only job (`netagent probe --load-all`): every program of
//! every embedded object, in every variant the agent can load it in, is
//! loaded into the kernel — so the verifier judges it — and unloaded
//! again; nothing is attached. `netagent probe` only loads the hooks it
//! tries until one works, and the agent only the ones it uses, so without
//! this a program the running kernel's verifier rejects (an older kernel,
//! a helper it lacks, a bounds check it cannot follow) would go unnoticed
//! wherever another hook serves its feature. The kernel matrix runs it on
//! every kernel it boots (tests/matrix/verifier.rs).
//!
//! The programs come from the objects' ELF sections, not from the hook
//! table, so a new program is covered the day it is written.

use std::time::Instant;

use aya::programs::Program;
use aya::{Ebpf, EbpfLoader};
use aya_obj::btf::BtfKind;
use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

use super::attach::load_detail;
use super::hooks::{self, Attach, KernelBtf, ObjectMode};
use super::loader::{self, LoadOptions};

/// What loading one program gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The verifier accepted it.
    Loaded,
    /// Its hook does not exist on this kernel, so it was not loaded.
    Absent(String),
    /// The kernel refused it: the errno and the verifier's last lines.
    Rejected(String),
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Loaded => "loaded",
            Outcome::Absent(_) => "absent",
            Outcome::Rejected(_) => "rejected",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Loaded => None,
            Outcome::Absent(r) | Outcome::Rejected(r) => Some(r),
        }
    }
}

/// One program in one variant of its object.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub object: &'static str,
    pub variant: String,
    pub program: String,
    pub section: String,
    pub outcome: Outcome,
    pub millis: u64,
}

/// Program name -> ELF section, for every program of an object.
fn sections(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    let file = object::File::parse(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Text || !sym.is_global() {
            continue;
        }
        let (Ok(name), Some(index)) = (sym.name(), sym.section_index()) else {
            continue;
        };
        let section = file
            .section_by_index(index)
            .and_then(|s| s.name().map(str::to_string))
            .map_err(|e| e.to_string())?;
        if section != ".text" {
            out.push((name.to_string(), section));
        }
    }
    out.sort();
    Ok(out)
}

/// Whether the hook of `section` exists in this kernel's BTF; why not.
fn absent(section: &str, program: &str, kbtf: &KernelBtf) -> Option<String> {
    let btf = &kbtf.btf;
    let (kind, target) = section.split_once('/').unwrap_or((section, ""));
    match kind {
        "tp_btf" => {
            // A variant that reads an argument older kernels do not pass
            // (the hook table's check) is absent there, not refused.
            let listed = hooks::FEATURES
                .iter()
                .flat_map(|f| f.hooks)
                .find(|h| h.programs.iter().any(|p| p.program() == program));
            if let Some(h) = listed.filter(|h| {
                h.programs.iter().any(|p| {
                    matches!(p, Attach::Tracepoint { arg: Some(_), .. }) && p.program() == program
                })
            }) {
                return hooks::precheck(h, kbtf);
            }
            btf.id_by_type_name_kind(&format!("btf_trace_{target}"), BtfKind::Typedef)
                .is_err()
                .then(|| format!("tracepoint {target} does not exist on this kernel"))
        }
        "iter" => btf
            .id_by_type_name_kind(&format!("bpf_iter_{target}"), BtfKind::Func)
            .is_err()
            .then(|| format!("BPF iterator {target} does not exist on this kernel")),
        "fexit" | "fentry" | "kprobe" | "kretprobe" => {
            // The hook table's checks (fexit prototypes) where it lists
            // the program, the function's existence otherwise.
            let listed = hooks::FEATURES
                .iter()
                .flat_map(|f| f.hooks)
                .find(|h| h.programs.iter().any(|p| p.program() == program));
            if let Some(h) = listed.filter(|h| {
                h.programs
                    .iter()
                    .any(|p| matches!(p, Attach::Fexit { .. }) && p.program() == program)
            }) {
                return hooks::precheck(h, kbtf);
            }
            btf.id_by_type_name_kind(target, BtfKind::Func)
                .is_err()
                .then(|| format!("kernel function {target} not found in BTF"))
        }
        _ => None,
    }
}

/// Loads one program (by its type and section); Ok or why not.
fn load_one(ebpf: &mut Ebpf, name: &str, section: &str, kbtf: &KernelBtf) -> Result<(), String> {
    let target = section.split_once('/').map_or("", |(_, t)| t);
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} not found"))?;
    let btf = &kbtf.btf;
    let result = match prog {
        Program::BtfTracePoint(p) => p.load(target, btf),
        Program::FExit(p) => p.load(target, btf),
        Program::FEntry(p) => p.load(target, btf),
        Program::KProbe(p) => p.load(),
        Program::TracePoint(p) => p.load(),
        Program::RawTracePoint(p) => p.load(),
        Program::CgroupSockAddr(p) => p.load(),
        Program::CgroupSock(p) => p.load(),
        Program::CgroupSkb(p) => p.load(),
        Program::SchedClassifier(p) => p.load(),
        Program::Iter(p) => p.load(target, btf),
        other => {
            return Err(format!(
                "the verifier-only job does not load {:?} programs yet (src/kernel/verify.rs)",
                other.prog_type()
            ))
        }
    };
    result.map_err(|e| load_detail(&e))
}

/// Every program of `object` in one variant of it.
fn load_variant(
    object: &'static str,
    variant: &str,
    bytes: &[u8],
    ebpf: Result<Ebpf, String>,
    kbtf: &KernelBtf,
    out: &mut Vec<LoadResult>,
) -> Result<(), String> {
    let mut ebpf = ebpf.map_err(|e| format!("{object} ({variant}): {e}"))?;
    for (program, section) in sections(bytes).map_err(|e| format!("{object}: {e}"))? {
        let started = Instant::now();
        let outcome = match absent(&section, &program, kbtf) {
            Some(why) => Outcome::Absent(why),
            None => match load_one(&mut ebpf, &program, &section, kbtf) {
                Ok(()) => Outcome::Loaded,
                Err(e) => Outcome::Rejected(e),
            },
        };
        out.push(LoadResult {
            object,
            variant: variant.to_string(),
            program,
            section,
            outcome,
            millis: started.elapsed().as_millis() as u64,
        });
    }
    Ok(())
}

/// Runs the job: `opts` as the agent would load (from the config), with
/// small maps. Errors only when an object cannot be opened at all.
pub fn load_all(opts: &LoadOptions) -> Result<Vec<LoadResult>, String> {
    super::privileges::raise_memlock_limit();
    let kbtf = loader::kernel_btf(opts).map_err(|e| e.to_string())?;
    let small = LoadOptions {
        max_series: 64,
        max_listeners: 64,
        max_sockets: 64,
        span_ring_bytes: 4096,
        drops_max_series: 64,
        ..opts.clone()
    };
    let mut out = Vec::new();
    // The socket object: in each mode, without and with
    // what only some configs turn on (spans, the netns filter, DNS) — the
    // verifier walks only the branches the load-time globals leave.
    for mode in [
        ObjectMode::Storage,
        ObjectMode::Address,
        ObjectMode::Untyped,
    ] {
        for extras in [false, true] {
            let o = LoadOptions {
                emit_spans: extras,
                span_cap: extras.then_some(1000),
                netns_only: if extras { 1 } else { 0 },
                track_all: !extras,
                // DNS marking in the sock_addr programs is walked only when on.
                dns: extras.then(|| super::dns::DnsOptions {
                    ports: vec![53],
                    ring_bytes: 4096,
                }),
                ..small.clone()
            };
            let variant = format!("{}{}", mode.name(), if extras { "+spans" } else { "" });
            let ebpf = loader::open_object(&o, &kbtf, mode).map_err(|e| e.to_string());
            load_variant("netagent", &variant, loader::OBJECT, ebpf, &kbtf, &mut out)?;
        }
    }
    for (object, bytes) in [
        ("node", super::oom::OBJECT),
        ("iface", super::iface::OBJECT),
    ] {
        let ebpf = EbpfLoader::new()
            .btf(Some(&kbtf.btf))
            .load(bytes)
            .map_err(|e| e.to_string());
        load_variant(object, "default", bytes, ebpf, &kbtf, &mut out)?;
    }
    Ok(out)
}

/// The job's results as a table.
pub fn render(kernel: &super::report::KernelInfo, results: &[LoadResult]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kernel {} ({}), BTF {}: every program of every variant, loaded (not attached)\n",
        kernel.release, kernel.arch, kernel.btf
    );
    let _ = writeln!(
        out,
        "{:<9} {:<21} {:<24} {:<29} RESULT",
        "OBJECT", "VARIANT", "PROGRAM", "SECTION"
    );
    for r in results {
        let _ = write!(
            out,
            "{:<9} {:<21} {:<24} {:<29} {}",
            r.object,
            r.variant,
            r.program,
            r.section,
            r.outcome.name()
        );
        match r.outcome.reason() {
            Some(why) => {
                let _ = writeln!(out, ": {why}");
            }
            None => {
                let _ = writeln!(out, " ({} ms)", r.millis);
            }
        }
    }
    let count = |n: &str| results.iter().filter(|r| r.outcome.name() == n).count();
    let _ = writeln!(
        out,
        "\nloaded {}, absent {}, rejected {}",
        count("loaded"),
        count("absent"),
        count("rejected")
    );
    out
}

/// The same as JSON, one object per result.
pub fn render_json(
    kernel: &super::report::KernelInfo,
    results: &[LoadResult],
) -> serde_json::Value {
    serde_json::json!({
        "kernel": {"release": kernel.release, "arch": kernel.arch, "btf": kernel.btf},
        "results": results.iter().map(|r| serde_json::json!({
            "object": r.object,
            "variant": r.variant,
            "program": r.program,
            "section": r.section,
            "result": r.outcome.name(),
            "reason": r.outcome.reason(),
            "millis": r.millis,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every program of the hook table is in the socket object's sections,
    /// with the section the table says (so the job covers them all).
    #[test]
    fn sections_cover_the_hook_table() {
        let secs = sections(loader::OBJECT).unwrap();
        for p in hooks::FEATURES
            .iter()
            .flat_map(|f| f.hooks.iter().flat_map(|h| h.programs.iter()))
        {
            assert!(
                secs.iter()
                    .any(|(n, s)| n == p.program() && *s == p.section()),
                "{} ({}) not among {secs:?}",
                p.program(),
                p.section()
            );
        }
        let node = sections(super::super::oom::OBJECT).unwrap();
        assert!(node.len() >= 2, "{node:?}");
        let iface = sections(super::super::iface::OBJECT).unwrap();
        assert_eq!(iface.len(), 2, "{iface:?}");
    }
}
