//! The kernel matrix: the same scenario (tools/src/bin/netagent-matrix) on
//! Debian kernels booted under qemu and on the host's own kernel.

pub mod initramfs;
pub mod kernels;
pub mod qemu;
pub mod verdict;
pub mod verifier;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{have, require, require_bpf, testgen_exe, tools, TempDir, AGENT};
use verdict::Run;

/// The scenario driver (tools/src/bin/netagent-matrix), built if need be.
pub fn driver_exe() -> &'static str {
    tools::tool_exe("netagent-matrix")
}

/// Hard limit of one guest boot, scenario included.
const GUEST_TIMEOUT: Duration = Duration::from_secs(420);
/// Hard limit of one host run.
const HOST_TIMEOUT: Duration = Duration::from_secs(180);

/// The build directory (`target/`), where kernels are cached and logs kept.
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR has a parent")
        .to_path_buf()
}

/// The row's extra agent YAML plus `NETAGENT_MATRIX_EXTRA` (for
/// debugging a row, e.g. `bpf_self: {per_object: true, enable_stats: true}`).
fn extra_yaml_for(row: Option<&str>) -> Option<String> {
    let env = std::env::var("NETAGENT_MATRIX_EXTRA").ok();
    match (row, env) {
        (None, None) => None,
        (a, b) => Some(format!("{}\n{}\n", a.unwrap_or(""), b.unwrap_or_default())),
    }
}

/// Per-row output directory: console log, `netagent probe` output.
fn row_dir(row: &str) -> PathBuf {
    let dir = target_dir().join("kernel-matrix").join(row);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The message hook a row must end up with, and where UDP state must be
/// kept (`socket_storage` or `address`, as `/health` says).
#[derive(Debug, Clone, Copy)]
pub struct Messages {
    pub hook: &'static str,
    pub state: &'static str,
}

/// Kernel console lines that mean the kernel complained (a WARN_ON, an
/// oops): a guest row fails on any, whatever its checks say.
fn kernel_complaints(console: &str) -> Vec<String> {
    console
        .lines()
        .filter(|l| {
            [
                "WARNING:",
                "BUG:",
                "Oops:",
                "Call Trace:",
                "general protection fault",
            ]
            .iter()
            .any(|m| l.contains(m))
        })
        .map(|l| l.trim().to_string())
        .collect()
}

/// Judges a run: prints what a README needs, panics with every problem.
fn judge(
    row: &str,
    run: &Run,
    known_gaps: &[&str],
    messages: Messages,
    timing: String,
    log: &Path,
) {
    std::fs::write(row_dir(row).join("probe.txt"), &run.probe).unwrap();
    eprintln!("=== kernel matrix row {row}: {timing}");
    eprint!("{}", run.probe);
    for (name, (pass, _)) in &run.checks {
        eprintln!("  {name}: {}", if *pass { "pass" } else { "FAIL" });
    }
    // Drops the scenario did not cause (not checked): shown, since a
    // change in them on some machine is worth a look.
    if let Some(off) = run.infos.iter().find(|i| i.starts_with("drops_off_lo ")) {
        eprintln!("  {off}");
    }
    if !known_gaps.is_empty() {
        eprintln!("  known gaps (expected to fail): {known_gaps:?}");
    }
    let mut problems = run.problems(known_gaps);
    let hook = run.info("hook_messages").unwrap_or("(not reported)");
    let state = run.info("state_messages").unwrap_or("(not reported)");
    eprintln!(
        "  messages hook: {hook}, UDP state {state} (expected {}, {})",
        messages.hook, messages.state
    );
    if (hook, state) != (messages.hook, messages.state) {
        problems.push(format!(
            "messages served by hook {hook} with UDP state {state}, expected {} with {}",
            messages.hook, messages.state
        ));
    }
    if let Ok(console) = std::fs::read_to_string(log) {
        for line in kernel_complaints(&console) {
            problems.push(format!("the kernel complained: {line}"));
        }
    }
    assert!(
        problems.is_empty(),
        "kernel matrix row {row} (log: {}):\n  {}",
        log.display(),
        problems.join("\n  ")
    );
}

/// One guest boot: what the driver printed, how long each part took, and
/// where the console log is.
pub struct GuestRun {
    pub run: Run,
    pub timing: String,
    pub log: PathBuf,
}

/// Boots the newest kernel of `series` with the driver as init; `params`
/// go on the kernel command line. None when the row cannot run here
/// (already reported by `require`).
pub fn boot_guest(series: kernels::Series, row: &str, params: &str) -> Option<GuestRun> {
    let tools = [
        "qemu-system-x86_64",
        "apt-get",
        "apt-cache",
        "dpkg-deb",
        "xz",
        "zstd",
        "strip",
        "ldd",
    ];
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if !require(
        missing.is_empty(),
        &format!("kernel matrix needs {missing:?} (scripts/setup.sh installs them)"),
    ) {
        return None;
    }
    let dir = row_dir(row);
    let started = Instant::now();
    let kernel = match kernels::fetch(series, &target_dir().join("kernels")) {
        Ok(k) => k,
        Err(e) => {
            require(false, &format!("Debian kernel {}: {e}", series.label));
            return None;
        }
    };
    let fetched = started.elapsed();
    let initrd = dir.join("initramfs.cpio");
    let mut bins = vec![
        ("/bin/netagent", Path::new(AGENT)),
        ("/bin/netagent-testgen", Path::new(testgen_exe())),
    ];
    // Debugging aid: the driver dumps the agent's maps with it on a failure.
    if std::env::var("NETAGENT_MATRIX_BPFTOOL").as_deref() == Ok("1") {
        bins.push(("/bin/bpftool", Path::new("/usr/sbin/bpftool")));
    }
    let size = initramfs::build(
        &initrd,
        &initramfs::Contents {
            init: Path::new(driver_exe()),
            bins: &bins,
            modules: &kernel.modules,
        },
    )
    .unwrap_or_else(|e| panic!("initramfs: {e}"));
    let append = format!("console=ttyS0 panic=-1 quiet {params}");
    let log = dir.join("console.log");
    let prepared = started.elapsed();
    let boot = qemu::boot(&kernel.image, &initrd, append.trim(), &log, GUEST_TIMEOUT);
    let _ = std::fs::remove_file(&initrd);
    let boot = boot.unwrap_or_else(|e| panic!("row {row}: {e}"));
    let run = Run::parse(&boot.console);
    let timing = format!(
        "{} ({}); fetch {:.1} s, initramfs {} MB in {:.1} s, qemu {:.1} s \
         (kernel boot {} s, agent ready {} s, scenario {} s), total {:.1} s",
        kernel.package,
        kernel.image.file_name().unwrap().to_string_lossy(),
        fetched.as_secs_f64(),
        size / 1_000_000,
        (prepared - fetched).as_secs_f64(),
        boot.wall.as_secs_f64(),
        run.info("boot_seconds").unwrap_or("?"),
        run.info("agent_ready_seconds").unwrap_or("?"),
        run.info("scenario_seconds").unwrap_or("?"),
        started.elapsed().as_secs_f64()
    );
    Some(GuestRun { run, timing, log })
}

/// The scenario on the newest kernel of `series`, booted under qemu.
pub fn guest_row(
    series: kernels::Series,
    label: &str,
    extra_yaml: Option<&str>,
    known_gaps: &[&str],
    messages: Messages,
) {
    let row = format!("debian-{}{label}", series.label);
    let mut params = String::new();
    if let Some(extra) = extra_yaml_for(extra_yaml) {
        use base64::Engine;
        params = format!(
            "netagent.extra={}",
            base64::engine::general_purpose::STANDARD.encode(extra)
        );
    }
    let Some(g) = boot_guest(series, &row, &params) else {
        return;
    };
    judge(&row, &g.run, known_gaps, messages, g.timing, &g.log);
}

/// Runs the driver on the host (its own namespaces, unless `args` say
/// otherwise) and returns what it printed, its log and the elapsed time.
pub fn run_host_driver(row: &str, args: &[&str]) -> Option<(Run, PathBuf, Duration)> {
    if !require_bpf() {
        return None;
    }
    let dir = row_dir(row);
    let started = Instant::now();
    // Ours, so it is removed even if the driver has to be killed.
    let scratch = TempDir::new(&format!("matrix-{row}"));
    let mut cmd = Command::new(driver_exe());
    cmd.args(["--agent", AGENT, "--testgen", testgen_exe()]);
    cmd.arg("--workdir").arg(&scratch.0);
    cmd.args(args);
    // If this test is killed, the driver (and through it the agent) goes too.
    // SAFETY: prctl is async-signal-safe; nothing else runs before exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start netagent-matrix");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let deadline = Instant::now() + HOST_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("row {row}: the driver still ran after {HOST_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = reader.join().unwrap();
    let log = dir.join("stdout.log");
    std::fs::write(&log, &out).unwrap();
    Some((Run::parse(&out), log, started.elapsed()))
}

/// The same scenario on the host's kernel, in a private network namespace.
pub fn host_row(row: &str, extra_yaml: Option<&str>, known_gaps: &[&str], messages: Messages) {
    let extra = extra_yaml_for(extra_yaml);
    let mut args = Vec::new();
    if let Some(extra) = &extra {
        args.extend(["--extra-yaml", extra.as_str()]);
    }
    let Some((run, log, elapsed)) = run_host_driver(row, &args) else {
        return;
    };
    let timing = format!(
        "host kernel {}; agent ready {} s, total {:.1} s",
        run.infos
            .iter()
            .find_map(|i| i.strip_prefix("kernel="))
            .unwrap_or("?"),
        run.info("agent_ready_seconds").unwrap_or("?"),
        elapsed.as_secs_f64()
    );
    judge(row, &run, known_gaps, messages, timing, &log);
}
