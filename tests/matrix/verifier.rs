//! The verifier-only job (`netagent probe --load-all` through the driver's
//! `verify` mode): every program of every hook variant of every object is
//! loaded on a kernel — a guest booted for nothing else, or the host —
//! and each result is judged. A program may be absent (its hook does not
//! exist there: the agent never tries it) but only refused where the
//! kernel is listed as refusing it, with the reason given; a refusal that
//! stops happening must be taken off the list, as with known gaps. So a
//! verifier regression on any kernel the matrix can boot fails the suite,
//! whichever hooks that kernel's scenario row happens to use.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::kernels::Series;
use super::verdict::Run;
use super::{boot_guest, row_dir, run_host_driver};

/// A refusal a kernel is known for: programs whose name starts with
/// `program`, in variants whose name starts with `variant`, refused with a
/// reason containing `reason`.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    pub variant: &'static str,
    pub program: &'static str,
    pub reason: &'static str,
    /// Why this kernel refuses it, for whoever reads the list.
    pub why: &'static str,
}

impl Refusal {
    fn matches(&self, r: &serde_json::Value) -> bool {
        let s = |k: &str| r[k].as_str().unwrap_or("");
        s("result") == "rejected"
            && s("variant").starts_with(self.variant)
            && s("program").starts_with(self.program)
            && s("reason").contains(self.reason)
    }
}

/// The results as a table (also kept as `load-all.txt` of the row).
fn table(loads: &[serde_json::Value]) -> String {
    let mut out = String::new();
    let mut counts: BTreeMap<(String, String), [usize; 3]> = BTreeMap::new();
    for r in loads {
        let s = |k: &str| r[k].as_str().unwrap_or("?").to_string();
        let c = counts.entry((s("object"), s("variant"))).or_default();
        match s("result").as_str() {
            "loaded" => c[0] += 1,
            "absent" => c[1] += 1,
            _ => c[2] += 1,
        }
    }
    let _ = writeln!(
        out,
        "{:<9} {:<21} loaded absent rejected",
        "OBJECT", "VARIANT"
    );
    for ((o, v), [l, a, r]) in &counts {
        let _ = writeln!(out, "{o:<9} {v:<21} {l:>6} {a:>6} {r:>8}");
    }
    for r in loads.iter().filter(|r| r["result"] != "loaded") {
        let s = |k: &str| r[k].as_str().unwrap_or("?").to_string();
        let _ = writeln!(
            out,
            "  {} {} {} {} ({}): {}",
            s("result"),
            s("object"),
            s("variant"),
            s("program"),
            s("section"),
            s("reason")
        );
    }
    out
}

/// Every problem with one kernel's results: refusals not on its list, and
/// listed refusals that did not happen.
pub fn problems(run: &Run, refusals: &[Refusal]) -> Vec<String> {
    let mut out = run.problems_of_checks(&["load_all"]);
    if run.loads.is_empty() {
        out.push("no results from netagent probe --load-all".into());
    }
    for r in &run.loads {
        if r.get("unparsed").is_some() {
            out.push(format!("unreadable result line: {r}"));
        } else if r["result"] == "rejected" && !refusals.iter().any(|f| f.matches(r)) {
            out.push(format!(
                "{} {} ({}, variant {}) was refused: {}",
                r["object"], r["program"], r["section"], r["variant"], r["reason"]
            ));
        }
    }
    for f in refusals {
        if !run.loads.iter().any(|r| f.matches(r)) {
            out.push(format!(
                "{}* refused in variant {}* with \"{}\" ({}) no longer happens: take it off \
                 this kernel's list of refusals",
                f.program, f.variant, f.reason, f.why
            ));
        }
    }
    out
}

fn judge(row: &str, run: &Run, refusals: &[Refusal], timing: &str, log: &std::path::Path) {
    let text = table(&run.loads);
    std::fs::write(row_dir(row).join("load-all.txt"), &text).unwrap();
    eprintln!("=== verifier-only job {row}: {timing}");
    eprint!("{text}");
    let mut problems = problems(run, refusals);
    if let Ok(console) = std::fs::read_to_string(log) {
        for line in super::kernel_complaints(&console) {
            problems.push(format!("the kernel complained: {line}"));
        }
    }
    assert!(
        problems.is_empty(),
        "verifier-only job {row} (log: {}):\n  {}",
        log.display(),
        problems.join("\n  ")
    );
}

/// The job on the newest kernel of `series`, booted for it alone.
pub fn guest(series: Series, refusals: &[Refusal]) {
    let row = format!("verifier-debian-{}", series.label);
    let Some(g) = boot_guest(series, &row, "netagent.mode=verify") else {
        return;
    };
    let timing = format!(
        "{}; load-all {} s",
        g.timing,
        g.run.info("load_all_seconds").unwrap_or("?")
    );
    judge(&row, &g.run, refusals, &timing, &g.log);
}

/// The job on the host's kernel (nothing is attached, so no namespace).
pub fn host(refusals: &[Refusal]) {
    let row = "verifier-host";
    let Some((run, log, elapsed)) = run_host_driver(row, &["--mode", "verify"]) else {
        return;
    };
    let timing = format!(
        "host kernel {}; load-all {} s, total {:.1} s",
        run.infos
            .iter()
            .find_map(|i| i.strip_prefix("kernel="))
            .unwrap_or("?"),
        run.info("load_all_seconds").unwrap_or("?"),
        elapsed.as_secs_f64()
    );
    judge(row, &run, refusals, &timing, &log);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_refusals_and_stale_entries_are_problems() {
        let line = |p: &str, res: &str, reason: &str| {
            format!(
                "NETAGENT-MATRIX LOAD {}\n",
                serde_json::json!({"object": "netagent", "variant": "socket_storage",
                    "program": p, "section": "fexit/x", "result": res, "reason": reason})
            )
        };
        let text = format!(
            "{}{}{}NETAGENT-MATRIX CHECK load_all PASS expected=x got=x\nNETAGENT-MATRIX RESULT PASS\n",
            line("fx_a", "rejected", "unknown func bpf_sk_storage_get#107"),
            line("on_b", "loaded", ""),
            line("on_c", "absent", "tracepoint c does not exist"),
        );
        let run = Run::parse(&text);
        let listed = Refusal {
            variant: "socket_storage",
            program: "fx_",
            reason: "bpf_sk_storage_get",
            why: "5.11",
        };
        assert!(
            problems(&run, &[listed]).is_empty(),
            "{:?}",
            problems(&run, &[listed])
        );
        assert_eq!(problems(&run, &[]).len(), 1);
        let stale = Refusal {
            program: "on_b",
            ..listed
        };
        assert_eq!(problems(&run, &[listed, stale]).len(), 1);
    }
}
