//! scripts/smoke-test.sh against the real agent: it passes, it fails
//! (rather than hangs) when the agent exits at once, and it leaves no
//! temporary directories behind.

use super::{repo, run, text};
use crate::common::{have, require, require_bpf, serial, AGENT};
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

#[test]
fn the_smoke_test_script_passes_and_fails_and_cleans_up() {
    let _g = serial();
    if !require_bpf() || !require(have("curl") && have("python3"), "needs curl and python3") {
        return;
    }
    let script = repo().join("scripts/smoke-test.sh");
    let leftovers = || -> BTreeSet<String> {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("netagent-smoke."))
            .collect()
    };
    let before = leftovers();
    let out = run(
        Command::new("bash").arg(&script).env("NETAGENT_BIN", AGENT),
        Duration::from_secs(120),
    );
    let log = text(&out);
    assert!(out.status.success(), "smoke test failed:\n{log}");
    assert!(log.contains("OK: 5 connects counted"), "{log}");
    assert!(
        log.contains("netagent_connect_total{process=\"curl\""),
        "{log}"
    );

    // An "agent" that exits at once: the script must fail, not hang.
    let out = run(
        Command::new("bash")
            .arg(&script)
            .env("NETAGENT_BIN", "/bin/false"),
        Duration::from_secs(60),
    );
    assert!(
        !out.status.success(),
        "smoke test passed without an agent:\n{}",
        text(&out)
    );
    assert_eq!(leftovers(), before, "smoke test left temporary directories");
}
