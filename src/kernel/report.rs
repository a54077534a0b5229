//! The text `netagent probe` prints: per feature, every hook tried on the
//! running kernel and what came of it.

use std::fmt::Write;

use super::loader::HookTrial;

/// True when the core feature has a working hook (exit status 0).
pub fn core_ok(trials: &[HookTrial]) -> bool {
    let core = super::hooks::FEATURES[0].name;
    trials.iter().any(|t| t.feature == core && t.result.is_ok())
}

/// A table of features and hooks; the first working hook of each feature
/// is the one the agent uses.
pub fn render(kernel: &str, btf: &str, trials: &[HookTrial]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "kernel {kernel}, BTF {btf}\n");
    let _ = writeln!(out, "{:<16} {:<11} RESULT", "FEATURE", "HOOK");
    let mut chosen: Vec<&str> = Vec::new();
    for t in trials {
        let result = match &t.result {
            Ok(()) if !chosen.contains(&t.feature) => {
                chosen.push(t.feature);
                "ok, used".to_string()
            }
            Ok(()) => "ok (fallback, not needed)".to_string(),
            Err(why) => format!("rejected: {why}"),
        };
        let _ = writeln!(out, "{:<16} {:<11} {result}", t.feature, t.hook.name());
    }
    out.push('\n');
    for f in super::hooks::FEATURES {
        if !chosen.contains(&f.name) {
            let _ = writeln!(
                out,
                "unavailable: {} ({}){}",
                f.name,
                f.needed_for,
                if f.core {
                    " — core feature, the agent cannot start"
                } else {
                    ""
                }
            );
        }
    }
    let _ = writeln!(
        out,
        "core features: {}",
        if core_ok(trials) { "ok" } else { "NOT WORKING" }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::super::hooks::HookKind;
    use super::*;

    fn trial(feature: &'static str, hook: HookKind, ok: bool) -> HookTrial {
        HookTrial {
            feature,
            hook,
            probes: vec![],
            result: if ok { Ok(()) } else { Err("EPERM".into()) },
        }
    }

    #[test]
    fn first_working_hook_is_used_and_missing_features_are_named() {
        let trials = vec![
            trial("connections", HookKind::Tracepoint, true),
            trial("messages", HookKind::Tracepoint, false),
            trial("messages", HookKind::Fexit, true),
            trial("messages", HookKind::Kprobe, true),
        ];
        let text = render("6.1.0", "/sys/kernel/btf/vmlinux", &trials);
        assert!(
            text.contains("messages         tracepoint  rejected: EPERM"),
            "{text}"
        );
        assert!(
            text.contains("messages         fexit       ok, used"),
            "{text}"
        );
        assert!(
            text.contains("messages         kprobe      ok (fallback, not needed)"),
            "{text}"
        );
        assert!(text.contains("unavailable: retransmits"), "{text}");
        assert!(text.contains("core features: ok"), "{text}");
        assert!(core_ok(&trials));
        assert!(!core_ok(&trials[1..]));
    }
}
