//! `netagent` command line: parse flags, load config, run. Exit codes:
//! 0 clean shutdown, 1 runtime/kernel error, 2 bad configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use netagent::agent::run;
use netagent::config::Config;
use tracing_subscriber::EnvFilter;

/// eBPF network-observability agent: per-process TCP/UDP metrics for Prometheus.
#[derive(Debug, Parser)]
#[command(name = "netagent", version, about)]
struct Cli {
    /// YAML config file; without it every process is tracked and metrics are served on :9102.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter directive).
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    log_level: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match EnvFilter::try_new(&cli.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("netagent: invalid --log-level {:?}: {e}", cli.log_level);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let (cfg, warnings) = match &cli.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("netagent: {e}");
                return ExitCode::from(2);
            }
        },
        None => (Config::default(), Vec::new()),
    };
    for w in warnings {
        tracing::warn!("{}", w.0);
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netagent: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes (e.g. the errno behind a syscall).
            eprintln!("netagent: {:#}", anyhow::Error::from(e));
            ExitCode::from(1)
        }
    }
}
