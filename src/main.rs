//! `netagent` command line: parse flags, load config, run. Exit codes:
//! 0 clean shutdown, 1 runtime/kernel error, 2 bad configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use netagent::agent::run;
use netagent::config::Config;
use tracing_subscriber::EnvFilter;

/// eBPF network-observability agent: per-process TCP/UDP metrics for Prometheus,
/// OTLP and DogStatsD.
#[derive(Debug, Parser)]
#[command(name = "netagent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// YAML config file; without it every process is tracked and metrics are served on :9102.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter directive).
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    log_level: String,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Try every kernel hook of every feature on this kernel (load, attach,
    /// detach) and print which one the agent would use and why others were
    /// rejected. Exit 0 when the core features work. Honours --config
    /// (`debug.disable_probes`, `kernel.btf_path`, `oom_kills.enabled`,
    /// `interface_stats`).
    Probe {
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// The verifier-only job instead: load (never attach) every program
        /// of every hook variant of every object, and print each verdict.
        #[arg(long)]
        load_all: bool,
    },
    /// Send one test span in netagent's format to an OTLP collector and report the result.
    OtlpCheck {
        /// Collector endpoint, e.g. http://127.0.0.1:4317 (gRPC) or http://127.0.0.1:4318 (HTTP).
        #[arg(long)]
        endpoint: String,
        /// `grpc` or `http/protobuf`.
        #[arg(long, default_value = "grpc")]
        protocol: String,
        /// Use TLS (system roots; add --ca-file for a private CA).
        #[arg(long)]
        tls: bool,
        #[arg(long, value_name = "PEM")]
        ca_file: Option<String>,
    },
}

/// `netagent otlp-check`: exit 0 when the collector accepted the span.
fn otlp_check(endpoint: String, protocol: String, tls: bool, ca_file: Option<String>) -> ExitCode {
    use netagent::export::otlp::{check, OtelConfig, Protocol};
    let protocol = match protocol.as_str() {
        "grpc" => Protocol::Grpc,
        "http" | "http/protobuf" => Protocol::HttpProtobuf,
        other => {
            eprintln!("netagent: --protocol {other:?}: use grpc or http/protobuf");
            return ExitCode::from(2);
        }
    };
    let cfg = OtelConfig {
        endpoint: endpoint.clone(),
        protocol,
        insecure: !tls,
        ca_file: ca_file.unwrap_or_default(),
        ..OtelConfig::default()
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("netagent: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(check(&cfg)) {
        Ok(()) => {
            println!("ok: {endpoint} accepted a test span");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("netagent: {endpoint}: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The kernel a report is about.
fn kernel_info(opts: &netagent::kernel::LoadOptions) -> netagent::kernel::report::KernelInfo {
    netagent::kernel::report::KernelInfo {
        release: netagent::kernel::hooks::kernel_release(),
        arch: std::env::consts::ARCH,
        btf: opts
            .btf_path
            .as_ref()
            .map_or("/sys/kernel/btf/vmlinux".to_string(), |p| {
                p.display().to_string()
            }),
    }
}

/// `netagent probe --load-all`: exit 0 when the job ran (the verdicts are
/// in the output), 1 when an object could not be opened at all.
fn load_all(opts: &netagent::kernel::LoadOptions, json: bool) -> ExitCode {
    use netagent::kernel::verify;
    let results = match verify::load_all(opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netagent: {e}");
            return ExitCode::from(1);
        }
    };
    let kernel = kernel_info(opts);
    let text = if json {
        format!("{}\n", verify::render_json(&kernel, &results))
    } else {
        verify::render(&kernel, &results)
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    ExitCode::SUCCESS
}

/// `netagent probe`: exit 0 when the core features work on this kernel.
fn probe(cfg: &Config, json: bool, all: bool) -> ExitCode {
    use netagent::kernel::{self, iface, oom, report};
    let opts = match netagent::agent::load_options(cfg) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("netagent: {e:#}");
            return ExitCode::from(2);
        }
    };
    if all {
        return load_all(&opts, json);
    }
    let mut trials = match kernel::probe_kernel(&opts) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("netagent: {e}");
            return ExitCode::from(1);
        }
    };
    let off = |what: &str| Some(format!("disabled in the config ({what})"));
    let oom_off = if !cfg.oom_kills.enabled {
        off("oom_kills.enabled: false")
    } else if opts.disabled_probes.iter().any(|p| p == oom::OOM_PROBE) {
        off("debug.disable_probes")
    } else {
        None
    };
    trials.push(oom::trial(oom_off));
    let iface_off = (!cfg.interface_stats.enabled).then(|| off("interface_stats.enabled: false"));
    trials.push(iface::IfaceProbes::trial(
        cfg.interface_stats.netlink_filters,
        iface_off.flatten(),
    ));
    let kernel = kernel_info(&opts);
    let text = if json {
        format!("{:#}\n", report::render_json(&kernel, &trials))
    } else {
        report::render(&kernel, &trials)
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    if report::core_ok(&trials) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    // First, while this is the only thread: file capabilities without the
    // effective bit (the container image's) become effective.
    netagent::kernel::privileges::raise_effective();
    let cli = Cli::parse();
    if let Some(Command::OtlpCheck {
        endpoint,
        protocol,
        tls,
        ca_file,
    }) = cli.command
    {
        return otlp_check(endpoint, protocol, tls, ca_file);
    }
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
        Some(path) => match Config::load(path).and_then(|(cfg, warnings)| {
            netagent::agent::check_config(&cfg, &path.display().to_string())
                .map(|()| (cfg, warnings))
        }) {
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
    if let Some(Command::Probe { json, load_all }) = cli.command {
        return probe(&cfg, json, load_all);
    }
    match runtime.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes (e.g. the errno behind a syscall).
            eprintln!("netagent: {:#}", anyhow::Error::from(e));
            ExitCode::from(1)
        }
    }
}
