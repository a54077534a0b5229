//! Where the tests find the development tools (tools/: `netagent-testgen`,
//! `netagent-matrix`). They are binaries of the `netagent-tools` package, so
//! cargo gives these tests no `CARGO_BIN_EXE_*` for them; they sit next to
//! the agent binary instead (target/<profile>/, the directory of
//! `CARGO_BIN_EXE_netagent`).
//!
//! Under cargo (`CARGO` set: `cargo test`), the first use in a test process
//! runs `cargo build -p netagent-tools --bins` for this profile, so the tools
//! are never missing or stale; when they are up to date that is a no-op
//! (well under a second). Cargo holds its build-directory lock only while it
//! compiles, not while it runs the tests, so this inner build cannot wait on
//! the `cargo test` that runs us (checked with cargo 1.95: tests/tools.rs
//! under plain `cargo test` with the tools stale; should a later cargo keep
//! the lock, BUILD_TIMEOUT ends the wait with a message). Without `CARGO` (a
//! test binary run by hand), or with `NETAGENT_TESTS_NO_BUILD=1`
//! (scripts/test.sh, which builds the whole workspace first), the binaries
//! are used as they are.
//!
//! The inner build resolves features for the tools alone, without the
//! agent's dev-dependencies, so its first run compiles its own copy of the
//! agent library (a few minutes); `cargo build --workspace --all-targets`
//! builds the tools with exactly the units `cargo test` uses instead.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The package the tools belong to.
const PACKAGE: &str = "netagent-tools";
/// The command that builds the tools (debug profile; `--release` for release tests).
const BUILD_HINT: &str = "cargo build -p netagent-tools --bins";
/// Bound of the on-demand build (a full debug build of the tools and the
/// agent library they use takes a few minutes on two cores).
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Absolute path of the tool binary `name`; panics with the build command
/// when it cannot be built or found.
pub fn tool_exe(name: &str) -> &'static str {
    static TOOLS: OnceLock<Result<BTreeMap<String, String>, String>> = OnceLock::new();
    let tools = TOOLS.get_or_init(locate).as_ref().unwrap_or_else(|e| {
        panic!("{e}");
    });
    tools
        .get(name)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{name} is not a binary of {PACKAGE}"))
}

/// Where cargo puts this build's binaries: target/<profile>/ (or
/// target/<triple>/<profile>/).
fn bin_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_netagent"))
        .parent()
        .expect("the agent binary has a directory")
}

/// The cargo profile whose output directory is `dir` (debug is `dev`).
fn profile_of(dir: &Path) -> String {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(name) => name.to_string(),
    }
}

/// Builds the tools if cargo runs us, then returns every tool binary by name.
fn locate() -> Result<BTreeMap<String, String>, String> {
    let dir = bin_dir();
    let built = match std::env::var_os("CARGO") {
        Some(cargo) if std::env::var("NETAGENT_TESTS_NO_BUILD").as_deref() != Ok("1") => {
            build(Path::new(&cargo), &profile_of(dir))?
        }
        _ => BTreeMap::new(),
    };
    let mut tools = BTreeMap::new();
    for name in ["netagent-testgen", "netagent-matrix"] {
        // Cargo's own report of where it put the binary; otherwise next to the agent.
        let path = built.get(name).cloned().unwrap_or_else(|| dir.join(name));
        if !path.is_file() {
            return Err(format!(
                "{} not found: build the tools with `{BUILD_HINT}`{} \
                 (scripts/test.sh does)",
                path.display(),
                match profile_of(dir).as_str() {
                    "dev" => String::new(),
                    "release" => " --release".to_string(),
                    p => format!(" --profile {p}"),
                }
            ));
        }
        tools.insert(name.to_string(), path.to_string_lossy().into_owned());
    }
    Ok(tools)
}

/// `cargo build -p netagent-tools --bins` for `profile`, offline (the tests
/// run under the network guard; the tools need no crate the agent does not).
/// Returns the binaries cargo reported, by name.
fn build(cargo: &Path, profile: &str) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "-p",
        PACKAGE,
        "--bins",
        "--offline",
        "--profile",
        profile,
    ])
    // Messages as JSON on stdout (for the paths); progress and errors
    // stay human-readable on stderr.
    .arg("--message-format=json-render-diagnostics")
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let shown = format!("{BUILD_HINT} --offline --profile {profile}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", cargo.display()))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + BUILD_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{shown}` still running after {BUILD_TIMEOUT:?} (waiting for a build \
                     lock?); build the tools first, then run the tests with \
                     NETAGENT_TESTS_NO_BUILD=1"
                ));
            }
            Err(e) => return Err(format!("waiting for `{shown}`: {e}")),
        }
    };
    let messages = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("`{shown}` failed ({status}); its errors are above"));
    }
    let mut built = BTreeMap::new();
    for line in messages.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let (Some(name), Some(exe)) =
            (msg["target"]["name"].as_str(), msg["executable"].as_str())
        {
            built.insert(name.to_string(), PathBuf::from(exe));
        }
    }
    Ok(built)
}
