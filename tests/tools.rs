//! The development tools the end-to-end tests run (tools/: netagent-testgen,
//! netagent-matrix) are found, and under `cargo test` built first
//! (tests/common/tools.rs). Runs nothing but `--version`.

mod common;

use std::process::Command;

use common::tools::tool_exe;

#[test]
fn the_tools_are_found_and_run() {
    for name in ["netagent-testgen", "netagent-matrix"] {
        let exe = tool_exe(name);
        let out = Command::new(exe)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("run {exe}: {e}"));
        assert!(out.status.success(), "{exe} --version: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{name} {}\n", env!("CARGO_PKG_VERSION")),
            "{exe}"
        );
    }
}
