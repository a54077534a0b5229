//! `netagent probe`'s trials of the socket object: every hook of every
//! feature is loaded, attached and detached again on the running kernel,
//! and what came of it is kept for the report (report.rs). The features
//! that keep UDP socket state are tried the way the agent would load them:
//! a typed hook with socket-local storage first and, where that is
//! refused, again with UDP state by socket address; untyped hooks only by
//! address.

use aya::Ebpf;

use super::attach::{attach_hook, unload_hook};
use super::hooks::{self, Feature, Hook, HookTrial, KernelBtf, SockState, TrialProbe};
use super::loader::{disabled, kernel_btf, open_object, LoadOptions};
use super::privileges;
use super::KernelError;

/// The object in both state variants, the second opened on first use.
struct Objects<'a> {
    opts: &'a LoadOptions,
    kbtf: &'a KernelBtf,
    storage: Ebpf,
    address: Option<Ebpf>,
}

impl Objects<'_> {
    fn get(&mut self, state: SockState) -> Result<&mut Ebpf, String> {
        match state {
            SockState::Storage => Ok(&mut self.storage),
            SockState::Address => {
                if self.address.is_none() {
                    let o = open_object(self.opts, self.kbtf, SockState::Address)
                        .map_err(|e| e.to_string())?;
                    self.address = Some(o);
                }
                Ok(self.address.as_mut().expect("opened above"))
            }
        }
    }
}

/// Attaches a hook's programs and detaches them again; Ok when every
/// program attached.
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
    })
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
        storage: open_object(opts, &kbtf, SockState::Storage)?,
        address: None,
    };
    // The state the message hook the agent would use keeps; the cgroup
    // hooks are loaded for the same one.
    let mut messages_state = SockState::Storage;
    let mut out = Vec::new();
    for feature in hooks::FEATURES {
        let stateful = hooks::STATE_FEATURES.contains(&feature.name);
        for hook in feature.hooks {
            let mut trial = |result: Result<(), String>, state: Option<SockState>| {
                out.push(HookTrial {
                    feature: feature.name,
                    hook: hook.kind,
                    probes: hook.programs.iter().map(TrialProbe::from).collect(),
                    result,
                    note: None,
                    state,
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
                let r = try_hook(&mut objects.storage, feature, hook, &kbtf, opts);
                trial(r, None);
                continue;
            }
            let first = if hook.kind.untyped() {
                SockState::Address
            } else if feature.name == "messages" {
                SockState::Storage
            } else {
                messages_state
            };
            let r = objects
                .get(first)
                .and_then(|o| try_hook(o, feature, hook, &kbtf, opts));
            let failed = r.is_err();
            let r = match r {
                Err(e) if !hook.kind.untyped() => Err(hooks::state_rejection(first, &e)),
                other => other,
            };
            trial(r, Some(first));
            if failed && first == SockState::Storage {
                let r = objects
                    .get(SockState::Address)
                    .and_then(|o| try_hook(o, feature, hook, &kbtf, opts))
                    .map_err(|e| hooks::state_rejection(SockState::Address, &e));
                trial(r, Some(SockState::Address));
            }
        }
        if feature.name == "messages" {
            messages_state = out
                .iter()
                .find(|t| t.feature == "messages" && t.result.is_ok())
                .and_then(|t| t.state)
                .unwrap_or(SockState::Storage);
        }
    }
    Ok(out)
}
