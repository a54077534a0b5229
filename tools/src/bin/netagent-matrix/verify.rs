//! The verifier-only job on one kernel: `netagent probe --load-all --json`
//! (every program of every hook variant loaded, none attached), its
//! results re-printed one per console line for the runner
//! (tests/matrix/verifier.rs), which judges them against what each kernel
//! may refuse. No traffic, no agent run: on a host it needs no namespace.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::procs;
use crate::report::{Report, MARK};

/// Loading every program is the verifier's whole work: slow under TCG.
const LOAD_ALL: Duration = Duration::from_secs(300);

pub fn run(agent: &Path, report: &mut Report) {
    let started = Instant::now();
    let out = match procs::run(
        Command::new(agent).args(["probe", "--load-all", "--json"]),
        LOAD_ALL,
    ) {
        Ok(o) => o,
        Err(e) => return report.abort("load_all", &e),
    };
    report.info(format!(
        "load_all_seconds={:.1}",
        started.elapsed().as_secs_f64()
    ));
    for line in out.stderr.lines() {
        report.info(format!("load_all stderr: {line}"));
    }
    let doc: serde_json::Value = match serde_json::from_str(&out.stdout) {
        Ok(v) => v,
        Err(e) => {
            return report.check(
                "load_all",
                false,
                "JSON from netagent probe --load-all",
                format!("{e}: {}", out.stdout.chars().take(300).collect::<String>()),
            )
        }
    };
    let results = doc["results"].as_array().cloned().unwrap_or_default();
    for r in &results {
        // One self-contained line each: a console may interleave kernel lines.
        println!("{MARK} LOAD {r}");
    }
    report.check(
        "load_all",
        out.status.is_some_and(|s| s.success()) && !results.is_empty(),
        "exit 0 with results",
        format!(
            "{} with {} results",
            out.status
                .map_or("killed at timeout".to_string(), |s| s.to_string()),
            results.len()
        ),
    );
}
