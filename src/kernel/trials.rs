//! `netagent probe`'s trials of the socket object: every hook of every
//! feature is loaded, attached and detached again on the running kernel,
//! and what came of it is kept for the report (report.rs). The features
//! that keep UDP socket state are tried the way the agent would load them:
//! a typed hook with socket-local storage first and, where that is
//! refused, again with UDP state by socket address; untyped hooks only by
//! address.

use aya::Ebpf;

use super::attach::{attach_hook, unload_hook};
use super::hooks::{
    self, Feature, Hook, HookKind, HookTrial, KernelBtf, ObjectMode, SockState, TrialProbe,
};
use super::loader::{disabled, kernel_btf, open_object, LoadOptions};
use super::privileges;
use super::KernelError;

/// The object in each mode it was needed in, opened on first use.
struct Objects<'a> {
    opts: &'a LoadOptions,
    kbtf: &'a KernelBtf,
    open: Vec<(ObjectMode, Ebpf)>,
}

impl Objects<'_> {
    fn get(&mut self, mode: ObjectMode) -> Result<&mut Ebpf, String> {
        if !self.open.iter().any(|(m, _)| *m == mode) {
            let o = open_object(self.opts, self.kbtf, mode).map_err(|e| e.to_string())?;
            self.open.push((mode, o));
        }
        Ok(self
            .open
            .iter_mut()
            .find(|(m, _)| *m == mode)
            .map(|(_, o)| o)
            .expect("opened above"))
    }
}

/// Attaches a hook's programs and detaches them again; Ok when every
/// program attached (and an iterator also ran once).
fn try_hook(
    ebpf: &mut Ebpf,
    feature: &Feature,
    hook: &Hook,
    kbtf: &KernelBtf,
    opts: &LoadOptions,
) -> Result<(), String> {
    let cgroup_root = super::cgroup::v2_root();
    let attached = attach_hook(
        ebpf,
        feature.name,
        hook,
        &kbtf.btf,
        cgroup_root.as_deref(),
        &opts.disabled_probes,
    );
    let ran = match (&attached, hook.kind) {
        (Ok(_), HookKind::Iter) => super::seed::dry_run(ebpf),
        _ => Ok(()),
    };
    unload_hook(ebpf, hook);
    attached.and_then(|probes| {
        let failed: Vec<&str> = probes
            .iter()
            .filter(|p| p.prog_id == 0)
            .map(|p| p.name.as_str())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("not attached: {}", failed.join(", ")))
        }
    })?;
    ran
}

/// Tries every hook of every feature on the running kernel (load, attach,
/// detach) without keeping anything: what `netagent probe` prints.
pub fn probe_kernel(opts: &LoadOptions) -> Result<Vec<HookTrial>, KernelError> {
    if let Some(missing) = privileges::first_missing() {
        return Err(KernelError::MissingCapability(missing));
    }
    privileges::raise_memlock_limit();
    let kbtf = kernel_btf(opts)?;
    let mut objects = Objects {
        opts,
        kbtf: &kbtf,
        open: Vec::new(),
    };
    // Fail early, as the agent would, when the object cannot load at all.
    objects
        .get(ObjectMode::Storage)
        .map_err(KernelError::Object)?;
    // The mode of the message hook the agent would use; the cgroup hooks
    // are loaded in the same one.
    let mut messages_mode = ObjectMode::Storage;
    let mut out = Vec::new();
    for feature in hooks::FEATURES {
        let stateful = hooks::STATE_FEATURES.contains(&feature.name);
        for hook in feature.hooks {
            let mut trial = |result: Result<(), String>, mode: Option<ObjectMode>| {
                out.push(HookTrial {
                    feature: feature.name,
                    hook: hook.kind,
                    probes: hook.programs.iter().map(TrialProbe::from).collect(),
                    result,
                    note: hooks::note(hook),
                    state: mode.map(ObjectMode::state),
                    mode,
                })
            };
            if let Some(why) = disabled(opts, feature, hook) {
                trial(Err(why), None);
                continue;
            }
            if let Some(why) = hooks::precheck(hook, &kbtf) {
                trial(Err(why), None);
                continue;
            }
            if !stateful {
                let r = objects
                    .get(ObjectMode::Storage)
                    .and_then(|o| try_hook(o, feature, hook, &kbtf, opts));
                trial(r, None);
                continue;
            }
            let first = if hook.kind.untyped() {
                ObjectMode::Untyped
            } else if feature.name == "messages" {
                ObjectMode::Storage
            } else {
                messages_mode
            };
            let r = objects
                .get(first)
                .and_then(|o| try_hook(o, feature, hook, &kbtf, opts));
            let failed = r.is_err();
            let r = match r {
                Err(e) if !hook.kind.untyped() => Err(hooks::state_rejection(first.state(), &e)),
                other => other,
            };
            trial(r, Some(first));
            if failed && first == ObjectMode::Storage {
                let r = objects
                    .get(ObjectMode::Address)
                    .and_then(|o| try_hook(o, feature, hook, &kbtf, opts))
                    .map_err(|e| hooks::state_rejection(SockState::Address, &e));
                trial(r, Some(ObjectMode::Address));
            }
        }
        if feature.name == "messages" {
            messages_mode = out
                .iter()
                .find(|t| t.feature == "messages" && t.result.is_ok())
                .and_then(|t| t.mode)
                .unwrap_or(ObjectMode::Storage);
        }
    }
    super::drops::annotate(&mut out, &kbtf.raw);
    Ok(out)
}
