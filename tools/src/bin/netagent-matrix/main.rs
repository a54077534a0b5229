//! `netagent-matrix`: the kernel-matrix scenario driver.
//!
//! As PID 1 of a qemu guest (booted by tests/kernel_matrix.rs with a
//! minimal initramfs) it mounts the kernel filesystems, loads the modules
//! shipped next to it, brings up loopback, runs the scenario and powers
//! the machine off; its console lines carry the verdict out. On a host it
//! runs the same scenario in a private network namespace. Either way it
//! prints `netagent probe`, one line per check (expected vs. got) and one
//! verdict line (see `report.rs`). Every wait is bounded.

mod conns;
mod counts;
mod dns;
mod procs;
mod report;
mod scenario;
mod scrape;
mod system;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use report::Report;

/// Runs the kernel-matrix scenario against the real agent.
#[derive(Debug, Parser)]
#[command(name = "netagent-matrix", version, about)]
struct Cli {
    /// The agent binary.
    #[arg(long, default_value = "/bin/netagent")]
    agent: PathBuf,
    /// The traffic generator binary.
    #[arg(long, default_value = "/bin/netagent-testgen")]
    testgen: PathBuf,
    /// YAML appended to the scenario's agent config (keys it does not set,
    /// e.g. `debug:`); in a guest it comes from `netagent.extra=<base64>`
    /// on the kernel command line.
    #[arg(long, value_name = "YAML")]
    extra_yaml: Option<String>,
    /// Directory for the agent config (host runs); without it a temporary
    /// one is made and removed.
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// `scenario` (the default), or `verify`: only the verifier-only job
    /// (`netagent probe --load-all`). In a guest it comes from
    /// `netagent.mode=` on the kernel command line.
    #[arg(long, default_value = "scenario")]
    mode: String,
}

/// Removes the host-mode scratch directory however the run ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> ExitCode {
    let guest = std::process::id() == 1;
    let start = Instant::now();
    let mut report = Report::default();
    // A panic must still reach the verdict line and, in a guest, power-off.
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drive(guest, &mut report)));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => report.abort("setup", &e),
        Err(_) => report.abort("driver", &anyhow::anyhow!("the driver panicked")),
    }
    report.info(format!(
        "scenario_seconds={:.1}",
        start.elapsed().as_secs_f64()
    ));
    let pass = report.verdict();
    if guest {
        system::power_off();
    }
    if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn drive(guest: bool, report: &mut Report) -> anyhow::Result<()> {
    let (cli, extra, workdir, _scratch) = if guest {
        // PID 1 gets the kernel's leftover parameters as arguments: ignore them.
        let cli = Cli::parse_from(["netagent-matrix"]);
        let modules = system::setup_guest()?;
        report.info(format!("modules loaded: {modules:?}"));
        if let Some(up) = system::uptime_seconds() {
            report.info(format!("boot_seconds={up:.1}"));
        }
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        let extra = system::extra_from_cmdline(&cmdline)?;
        let mut cli = cli;
        if let Some(mode) = system::mode_from_cmdline(&cmdline) {
            cli.mode = mode;
        }
        let dir = PathBuf::from("/run/netagent-matrix");
        std::fs::create_dir_all(&dir)?;
        (cli, extra, dir, None)
    } else {
        let cli = Cli::parse();
        if cli.mode == "verify" {
            // Nothing is attached and no traffic made: no namespace needed.
            report.info(format!("kernel={}", system::kernel_release()));
            report.info("mode=host");
            verify::run(&cli.agent, report);
            return Ok(());
        }
        system::isolate_on_host()?;
        let extra = cli.extra_yaml.clone();
        match cli.workdir.clone() {
            Some(dir) => (cli, extra, dir, None),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "netagent-matrix-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or_default()
                ));
                std::fs::create_dir_all(&dir)?;
                (cli, extra, dir.clone(), Some(Scratch(dir)))
            }
        }
    };
    report.info(format!("kernel={}", system::kernel_release()));
    report.info(format!("mode={}", if guest { "guest" } else { "host" }));
    match cli.mode.as_str() {
        "verify" => {
            verify::run(&cli.agent, report);
            return Ok(());
        }
        "scenario" => {}
        other => anyhow::bail!("unknown mode {other:?} (scenario or verify)"),
    }
    let setup = scenario::Setup {
        agent: cli.agent,
        testgen: cli.testgen,
        workdir,
        extra_yaml: extra,
        guest,
    };
    scenario::run(&setup, report);
    Ok(())
}
