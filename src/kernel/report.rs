//! What `netagent probe` prints: per feature, every hook tried on the
//! running kernel, the exact programs behind it (ELF section and program
//! name) and what came of it — as a table, or as JSON with `--json`.

use std::fmt::Write;

use super::hooks::HookTrial;

/// The kernel a report is about.
#[derive(Debug, Clone)]
pub struct KernelInfo {
    /// `uname -r`.
    pub release: String,
    pub arch: &'static str,
    /// The BTF file CO-RE relocations were resolved against.
    pub btf: String,
}

/// True when the core feature has a working hook (exit status 0).
pub fn core_ok(trials: &[HookTrial]) -> bool {
    let core = super::hooks::FEATURES[0].name;
    trials.iter().any(|t| t.feature == core && t.result.is_ok())
}

/// How a trial ended, in the report's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The first working hook of its feature: what the agent uses.
    Used,
    /// Works, but an earlier hook of the feature is used.
    Fallback,
    Rejected,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Verdict::Used => "used",
            Verdict::Fallback => "fallback",
            Verdict::Rejected => "rejected",
        }
    }
}

/// Each trial's verdict: the first working hook of each feature is used.
fn verdicts(trials: &[HookTrial]) -> Vec<Verdict> {
    let mut chosen: Vec<&str> = Vec::new();
    trials
        .iter()
        .map(|t| match &t.result {
            Ok(()) if !chosen.contains(&t.feature) => {
                chosen.push(t.feature);
                Verdict::Used
            }
            Ok(()) => Verdict::Fallback,
            Err(_) => Verdict::Rejected,
        })
        .collect()
}

/// Features of the hook table with no working hook: (name, needed for, core).
fn unavailable(trials: &[HookTrial]) -> Vec<(&'static str, &'static str, bool)> {
    super::hooks::FEATURES
        .iter()
        .filter(|f| {
            !trials
                .iter()
                .any(|t| t.feature == f.name && t.result.is_ok())
        })
        .map(|f| (f.name, f.needed_for, f.core))
        .collect()
}

/// A table of features and hooks, each hook followed by its programs
/// (`section (program)`); the first working hook of each feature is the
/// one the agent uses.
pub fn render(kernel: &KernelInfo, trials: &[HookTrial]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "kernel {} ({}), BTF {}\n",
        kernel.release, kernel.arch, kernel.btf
    );
    let _ = writeln!(out, "{:<16} {:<11} RESULT / PROBES", "FEATURE", "HOOK");
    for (t, v) in trials.iter().zip(verdicts(trials)) {
        let mut result = match (&t.result, v) {
            (Ok(()), Verdict::Used) => "ok, used".to_string(),
            (Ok(()), _) => "ok (fallback, not needed)".to_string(),
            (Err(why), _) => format!("rejected: {why}"),
        };
        if let Ok(()) = &t.result {
            match (t.mode, t.state) {
                (Some(mode), _) => {
                    let _ = write!(result, " — {}", mode.describe());
                }
                (None, Some(state)) => {
                    let _ = write!(result, " — {}", state.describe());
                }
                (None, None) => {}
            }
        }
        if let (Some(note), Ok(())) = (&t.note, &t.result) {
            let _ = write!(result, " — {note}");
        }
        let _ = writeln!(out, "{:<16} {:<11} {result}", t.feature, t.hook.name());
        for p in &t.probes {
            let _ = writeln!(out, "{:<28} {} ({})", "", p.section, p.program);
        }
    }
    out.push('\n');
    for (name, needed_for, core) in unavailable(trials) {
        let _ = writeln!(
            out,
            "unavailable: {name} ({needed_for}){}",
            if core {
                " — core feature, the agent cannot start"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        out,
        "core features: {}",
        if core_ok(trials) { "ok" } else { "NOT WORKING" }
    );
    out
}

/// The same report as JSON (`netagent probe --json`), for scripts and
/// tests: one object per tried hook, in the order tried.
pub fn render_json(kernel: &KernelInfo, trials: &[HookTrial]) -> serde_json::Value {
    let hooks: Vec<serde_json::Value> = trials
        .iter()
        .zip(verdicts(trials))
        .map(|(t, v)| {
            serde_json::json!({
                "feature": t.feature,
                "hook": t.hook.name(),
                "status": v.name(),
                "reason": t.result.as_ref().err(),
                "note": t.note,
                "state": t.state.map(|s| s.name()),
                "mode": t.mode.map(|m| m.name()),
                "probes": t.probes.iter().map(|p| serde_json::json!({
                    "name": p.name,
                    "section": p.section,
                    "program": p.program,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "kernel": {"release": kernel.release, "arch": kernel.arch, "btf": kernel.btf},
        "hooks": hooks,
        "unavailable": unavailable(trials).into_iter().map(|(name, needed_for, core)| {
            serde_json::json!({"feature": name, "needed_for": needed_for, "core": core})
        }).collect::<Vec<_>>(),
        "core_ok": core_ok(trials),
    })
}

#[cfg(test)]
mod tests {
    use super::super::hooks::TrialProbe;
    use super::super::hooks::{HookKind, FEATURES};
    use super::*;

    fn trial(feature: &'static str, hook: HookKind, ok: bool) -> HookTrial {
        let probes = FEATURES
            .iter()
            .filter(|f| f.name == feature)
            .flat_map(|f| f.hooks.iter().filter(|h| h.kind == hook))
            .flat_map(|h| h.programs.iter().map(TrialProbe::from))
            .collect();
        HookTrial {
            feature,
            hook,
            probes,
            result: if ok { Ok(()) } else { Err("EPERM".into()) },
            note: None,
            state: None,
            mode: None,
        }
    }

    fn kernel() -> KernelInfo {
        KernelInfo {
            release: "6.1.0".into(),
            arch: "x86_64",
            btf: "/sys/kernel/btf/vmlinux".into(),
        }
    }

    fn trials() -> Vec<HookTrial> {
        vec![
            trial("connections", HookKind::Tracepoint, true),
            trial("messages", HookKind::Tracepoint, false),
            trial("messages", HookKind::Fexit, true),
            trial("messages", HookKind::Kprobe, true),
        ]
    }

    #[test]
    fn first_working_hook_is_used_and_missing_features_are_named() {
        let trials = trials();
        let text = render(&kernel(), &trials);
        assert!(
            text.contains("messages         tracepoint  rejected: EPERM\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "messages         fexit       ok, used\n\
                 {:28} fexit/inet_sendmsg (fx_inet_sendmsg)\n"
                    .replace("{:28}", &" ".repeat(28))
                    .as_str()
            ),
            "{text}"
        );
        assert!(
            text.contains("connections      tracepoint  ok, used\n"),
            "{text}"
        );
        assert!(
            text.contains("tp_btf/inet_sock_set_state (on_inet_sock_set_state)"),
            "{text}"
        );
        assert!(
            text.contains("messages         kprobe      ok (fallback, not needed)"),
            "{text}"
        );
        assert!(text.contains("kretprobe/inet6_recvmsg (krp_inet6_recvmsg)"));
        assert!(text.contains("unavailable: retransmits"), "{text}");
        assert!(text.contains("core features: ok"), "{text}");
        assert!(core_ok(&trials));
        assert!(!core_ok(&trials[1..]));
    }

    #[test]
    fn json_has_every_hook_with_its_exact_probes() {
        let v = render_json(&kernel(), &trials());
        let hooks = v["hooks"].as_array().unwrap();
        assert_eq!(hooks.len(), 4);
        assert_eq!(hooks[0]["status"], "used");
        assert_eq!(
            hooks[0]["probes"][0]["section"],
            "tp_btf/inet_sock_set_state"
        );
        assert_eq!(
            hooks[0]["probes"][0]["name"],
            "tracepoint/sock:inet_sock_set_state"
        );
        assert_eq!(hooks[1]["status"], "rejected");
        assert_eq!(hooks[1]["reason"], "EPERM");
        assert_eq!(hooks[2]["status"], "used");
        assert_eq!(hooks[3]["status"], "fallback");
        assert_eq!(hooks[3]["probes"].as_array().unwrap().len(), 8);
        assert_eq!(v["core_ok"], true);
        assert!(v["unavailable"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["feature"] == "retransmits"));
    }
}
