//! How a feature's hook choice is reported when the object loads: the
//! fallback taken and why, a core feature without any hook as an error,
//! any other as down (listed under its preferred hook's probe names) or
//! switched off by the config.

use super::attach::ProbeInfo;
use super::error::KernelError;
use super::hooks::{Feature, HookKind};

/// Logs a feature's hook choice; a core feature without one is an error,
/// another one is listed as down under its preferred hook's probe names,
/// unless the config switched it off (`off`).
pub(super) fn log_choice(
    feature: &Feature,
    hook: Option<HookKind>,
    rejected: &[(HookKind, String)],
    have_cgroup_v2: bool,
    off: bool,
    probes: &mut Vec<ProbeInfo>,
) -> Result<(), KernelError> {
    match hook {
        Some(kind) => {
            if !rejected.is_empty() {
                tracing::info!(
                    feature = feature.name,
                    hook = kind.name(),
                    "using a fallback hook ({})",
                    rejected_text(rejected)
                );
            } else {
                tracing::debug!(feature = feature.name, hook = kind.name(), "hook chosen");
            }
        }
        None if feature.core => {
            return Err(KernelError::Object(format!(
                "{} ({}): {}",
                feature.name,
                feature.needed_for,
                rejected_text(rejected)
            )))
        }
        None if off => {
            tracing::info!(
                "{} switched off ({})",
                feature.needed_for,
                rejected_text(rejected)
            );
        }
        None => {
            tracing::warn!(
                "{} unavailable ({}); everything else keeps running",
                feature.needed_for,
                rejected_text(rejected)
            );
            // Reported as down under the preferred hook's probe names;
            // except cgroup hooks on a host without cgroup v2, which is
            // how that host is, not a fault (/health still lists it
            // under `features`).
            let no_cgroup_v2 = matches!(
                feature.hooks[0].kind,
                HookKind::Cgroup | HookKind::CgroupSkb
            ) && !have_cgroup_v2;
            for p in feature.hooks[0].programs.iter().filter(|_| !no_cgroup_v2) {
                probes.push(ProbeInfo {
                    name: p.probe_name(),
                    feature: feature.name,
                    prog_id: 0,
                    has_target: p.has_target(),
                });
            }
        }
    }
    Ok(())
}

fn rejected_text(rejected: &[(HookKind, String)]) -> String {
    if rejected.is_empty() {
        return "no hook".into();
    }
    rejected
        .iter()
        .map(|(k, why)| format!("{}: {why}", k.name()))
        .collect::<Vec<_>>()
        .join("; ")
}
