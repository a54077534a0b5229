//! Attaching one hook's programs, per kind of hook (BTF tracepoint,
//! fexit, kprobe, cgroup sock_addr, cgroup_skb), and detaching them again; load
//! failures become one message with the verifier's last lines.

use std::fs::File;

use aya::programs::{
    BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, FExit, Iter,
    KProbe, ProgramError,
};
use aya::{Btf, Ebpf};

use super::error::KernelError;
use super::hooks::{Attach, Hook, HookKind};

/// One attached program, for health checks.
#[derive(Debug, Clone)]
pub struct ProbeInfo {
    /// e.g. `tracepoint/sock:inet_sock_set_state`, `cgroup/sendmsg4`.
    pub name: String,
    /// The feature it serves (see [`hooks::FEATURES`]).
    pub feature: &'static str,
    /// 0 when it is not attached.
    pub prog_id: u32,
    /// Attached to a target (cgroup) that can be detached from outside.
    pub has_target: bool,
}

/// Loads and attaches every program of a hook. Tracepoint, fexit and kprobe
/// hooks are all-or-nothing (a failure unloads what was attached); cgroup
/// programs attach one by one and a failed one is listed with id 0.
pub(super) fn attach_hook(
    ebpf: &mut Ebpf,
    feature: &'static str,
    hook: &Hook,
    btf: &Btf,
    cgroup_root: Option<&std::path::Path>,
    disabled: &[String],
) -> Result<Vec<ProbeInfo>, String> {
    let dir = match (hook.kind, cgroup_root) {
        (HookKind::Cgroup | HookKind::CgroupSkb, Some(root)) => Some(
            File::open(root)
                .map_err(|e| format!("cannot open cgroup v2 root {}: {e}", root.display()))?,
        ),
        (HookKind::Cgroup | HookKind::CgroupSkb, None) => {
            return Err("no cgroup v2 hierarchy mounted".into())
        }
        _ => None,
    };
    let mut out = Vec::new();
    for p in hook.programs {
        let attached = match *p {
            // A cgroup program switched off alone (debug.disable_probes).
            Attach::Cgroup { .. } if disabled.contains(&p.probe_name()) => Err(format!(
                "{} disabled by debug.disable_probes",
                p.probe_name()
            )),
            Attach::Tracepoint {
                program: name,
                event,
                ..
            } => attach_tracepoint(ebpf, name, event, &p.probe_name(), btf),
            Attach::Fexit {
                program: name,
                func,
                ..
            } => attach_fexit(ebpf, name, func, btf),
            Attach::Kprobe {
                program: name,
                func,
                ..
            } => attach_kprobe(ebpf, name, func),
            Attach::Iter {
                program: name,
                target,
            } => attach_iter(ebpf, name, target, btf),
            Attach::Cgroup { program: name, .. } => attach_sock_addr(
                ebpf,
                name,
                dir.as_ref().expect("cgroup dir"),
                cgroup_root.expect("cgroup root"),
            ),
            Attach::CgroupSkb {
                program: name,
                attach,
            } => attach_cgroup_skb(
                ebpf,
                name,
                attach,
                dir.as_ref().expect("cgroup dir"),
                cgroup_root.expect("cgroup root"),
            ),
        };
        match attached {
            Ok(prog_id) => out.push(ProbeInfo {
                name: p.probe_name(),
                feature,
                prog_id,
                has_target: p.has_target(),
            }),
            Err(e) if hook.kind == HookKind::Cgroup => {
                tracing::debug!("{e}");
                out.push(ProbeInfo {
                    name: p.probe_name(),
                    feature,
                    prog_id: 0,
                    has_target: true,
                })
            }
            Err(e) => {
                unload_hook(ebpf, hook);
                return Err(e);
            }
        }
    }
    if out.iter().all(|p| p.prog_id == 0) {
        return Err("no program of the hook attached".into());
    }
    Ok(out)
}

/// Detaches and unloads a hook's programs (those that were loaded).
pub(super) fn unload_hook(ebpf: &mut Ebpf, hook: &Hook) {
    for p in hook.programs {
        if let Some(prog) = ebpf.program_mut(p.program()) {
            let _ = match prog {
                aya::programs::Program::BtfTracePoint(x) => x.unload(),
                aya::programs::Program::FExit(x) => x.unload(),
                aya::programs::Program::KProbe(x) => x.unload(),
                aya::programs::Program::CgroupSockAddr(x) => x.unload(),
                aya::programs::Program::Iter(x) => x.unload(),
                aya::programs::Program::CgroupSkb(x) => x.unload(),
                _ => Ok(()),
            };
        }
    }
}

/// Loads and attaches one tracepoint program; its kernel id, or why not.
fn attach_tracepoint(
    ebpf: &mut Ebpf,
    name: &'static str,
    event: &str,
    hook: &str,
    btf: &Btf,
) -> Result<u32, String> {
    let prog: &mut BtfTracePoint = program(ebpf, name).map_err(|e| e.to_string())?;
    prog.load(event, btf)
        .map_err(|e| load_error(name, e).to_string())?;
    prog.attach().map_err(|source| {
        KernelError::Attach {
            program: name,
            hook: hook.to_string(),
            source,
        }
        .chain()
    })?;
    Ok(prog.info().map(|i| i.id()).unwrap_or(0))
}

fn attach_fexit(ebpf: &mut Ebpf, name: &'static str, func: &str, btf: &Btf) -> Result<u32, String> {
    let prog: &mut FExit = program(ebpf, name).map_err(|e| e.to_string())?;
    prog.load(func, btf)
        .map_err(|e| load_error(name, e).to_string())?;
    prog.attach().map_err(|source| {
        KernelError::Attach {
            program: name,
            hook: format!("fexit {func}"),
            source,
        }
        .chain()
    })?;
    Ok(prog.info().map(|i| i.id()).unwrap_or(0))
}

fn attach_kprobe(ebpf: &mut Ebpf, name: &'static str, func: &str) -> Result<u32, String> {
    let prog: &mut KProbe = program(ebpf, name).map_err(|e| e.to_string())?;
    prog.load().map_err(|e| load_error(name, e).to_string())?;
    prog.attach(func, 0).map_err(|source| {
        KernelError::Attach {
            program: name,
            hook: format!("kprobe {func}"),
            source,
        }
        .chain()
    })?;
    Ok(prog.info().map(|i| i.id()).unwrap_or(0))
}

/// Loads an iterator program and links it. Nothing runs until the link
/// is opened and read (src/kernel/seed.rs); the link is held so that the
/// probe reads as attached, like every other one.
fn attach_iter(
    ebpf: &mut Ebpf,
    name: &'static str,
    target: &str,
    btf: &Btf,
) -> Result<u32, String> {
    let prog: &mut Iter = program(ebpf, name).map_err(|e| e.to_string())?;
    prog.load(target, btf)
        .map_err(|e| load_error(name, e).to_string())?;
    prog.attach().map_err(|source| {
        KernelError::Attach {
            program: name,
            hook: format!("iter {target}"),
            source,
        }
        .chain()
    })?;
    Ok(prog.info().map(|i| i.id()).unwrap_or(0))
}

/// Loads and attaches one cgroup socket-address program.
fn attach_sock_addr(
    ebpf: &mut Ebpf,
    name: &'static str,
    dir: &File,
    root: &std::path::Path,
) -> Result<u32, String> {
    let prog: &mut CgroupSockAddr = program(ebpf, name).map_err(|e| e.to_string())?;
    prog.load().map_err(|e| load_error(name, e).to_string())?;
    // Kernel links coexist with other programs on the cgroup by design and
    // reject any attach flag with EINVAL, so `Single` (no flags) is right
    // here, not AllowMultiple.
    prog.attach(dir, CgroupAttachMode::Single)
        .map_err(|source| {
            KernelError::Attach {
                program: name,
                hook: format!("cgroup {}", root.display()),
                source,
            }
            .to_string()
        })?;
    Ok(prog.info().map(|i| i.id()).unwrap_or(0))
}

/// Loads and attaches one cgroup_skb program (`egress` or `ingress`).
fn attach_cgroup_skb(
    ebpf: &mut Ebpf,
    name: &'static str,
    attach: &str,
    dir: &File,
    root: &std::path::Path,
) -> Result<u32, String> {
    let kind = match attach {
        "egress" => CgroupSkbAttachType::Egress,
        "ingress" => CgroupSkbAttachType::Ingress,
        other => return Err(format!("{name}: unknown cgroup_skb attach point {other}")),
    };
    let prog: &mut CgroupSkb = program(ebpf, name).map_err(|e| e.to_string())?;
    prog.load().map_err(|e| load_error(name, e).to_string())?;
    // A kernel link, as for the sock_addr programs: it coexists with any
    // other program on the cgroup without flags (see attach_sock_addr).
    prog.attach(dir, kind, CgroupAttachMode::Single)
        .map_err(|source| {
            KernelError::Attach {
                program: name,
                hook: format!("cgroup_skb/{attach} {}", root.display()),
                source,
            }
            .to_string()
        })?;
    Ok(prog.info().map(|i| i.id()).unwrap_or(0))
}

pub(super) fn program<'a, T>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut T, KernelError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| KernelError::Object(format!("program {name} not found")))?;
    prog.try_into()
        .map_err(|e: ProgramError| KernelError::Object(format!("program {name}: {e}")))
}

/// Turns a load failure into one message: the errno plus the last lines of
/// the verifier log, which is where the actual reason is.
pub(super) fn load_error(program: &'static str, err: ProgramError) -> KernelError {
    KernelError::Load {
        program,
        detail: load_detail(&err),
    }
}

/// The errno and the verifier log's last lines of a load failure.
pub(super) fn load_detail(err: &ProgramError) -> String {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .filter(|l| !l.trim().is_empty())
                .take(5)
                .collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            if tail.is_empty() {
                // Refused before verification (EPERM for fexit here).
                format!("{io_error} (no verifier log)")
            } else {
                format!("{io_error}; verifier: {}", tail.join(" | "))
            }
        }
        other => other.to_string(),
    }
}
