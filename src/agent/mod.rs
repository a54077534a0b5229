//! Wires config, kernel programs, the sources, the exporters and the HTTP
//! server together, and shuts everything down on SIGINT/SIGTERM.

mod sources;
mod state;
mod tasks;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::collect::containers::CgroupResolver;
use crate::collect::histograms::bounds_ns;
use crate::collect::labels::ProcessNames;
use crate::collect::preexisting;
use crate::collect::sockets::Sockets;
use crate::config::{self, kernel_comm, Config, ConfigError, KeyError};
use crate::export::otlp::{self, SpanStats, Transport};
use crate::export::statsd::{SpanBuffer, StatsdExporter, StatsdStats};
use crate::http::router;
use crate::kernel::abi::comm_bytes;
use crate::kernel::{cgroup, KernelError, LoadOptions, Probes};
use state::{Agent, Parts};

/// Why the agent stopped with an error; maps to the exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Returns freed heap pages to the kernel (glibc keeps them otherwise).
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The checks of a config that need other layers than the config's own:
/// probe names the kernel side knows (`debug.disable_probes`), and the web
/// config file with its certificates (`export.web_config_file`). Errors
/// have the config's shape, so a bad value still exits with code 2 naming
/// its key and line.
pub fn check_config(cfg: &Config, path: &str) -> Result<(), ConfigError> {
    let invalid = |error| ConfigError::Invalid {
        path: path.to_string(),
        error,
    };
    let known = crate::kernel::loader::probe_names();
    for (i, p) in cfg.debug.disable_probes.iter().enumerate() {
        if !known.contains(&p.value) {
            return Err(invalid(KeyError {
                key: format!("debug.disable_probes[{i}]"),
                line: config::line(p),
                reason: format!("unknown probe {:?}; known: {}", p.value, known.join(", ")),
            }));
        }
    }
    let web = &cfg.export.web_config_file;
    if !web.value.is_empty() {
        crate::http::web_config::WebConfig::load(std::path::Path::new(&web.value)).map_err(
            |e| {
                invalid(KeyError {
                    key: "export.web_config_file".into(),
                    line: config::line(web),
                    reason: e.to_string(),
                })
            },
        )?;
    }
    Ok(())
}

/// Spans a second per CPU the kernel lets into the span ring (span.h):
/// OTLP's cap, DogStatsD's when it reads spans too (its lines carry the
/// sample rate; OTLP still keeps only its own), none when DogStatsD wants
/// every span.
fn span_cap(cfg: &Config) -> Option<u32> {
    let otlp = (cfg.otel.enabled() && cfg.otel.traces).then_some(cfg.otel.max_spans_per_second);
    if !cfg.statsd.enabled {
        return otlp;
    }
    match cfg.statsd.max_spans_per_second {
        0 => None,
        n => Some(n.max(otlp.unwrap_or(0))),
    }
}

/// What the kernel side is loaded with, from the config.
pub fn load_options(cfg: &Config) -> anyhow::Result<LoadOptions> {
    let targets: Vec<&str> = cfg
        .targets
        .iter()
        .map(|t| kernel_comm(&t.match_comm.value))
        .collect();
    Ok(LoadOptions {
        track_all: cfg.track_all(),
        targets: targets.iter().map(|c| comm_bytes(c)).collect(),
        max_series: cfg.limits.max_series,
        max_listeners: cfg.limits.max_listeners,
        hist_bounds_ns: bounds_ns(),
        // Spans feed OTLP traces and DogStatsD distributions.
        emit_spans: (cfg.otel.enabled() && cfg.otel.traces) || cfg.statsd.enabled,
        span_ring_bytes: cfg.limits.span_ring_bytes,
        span_cap: span_cap(cfg),
        netns_only: cfg.netns_inode().map_err(anyhow::Error::msg)?,
        disabled_probes: cfg
            .debug
            .disable_probes
            .iter()
            .map(|p| p.value.clone())
            .collect(),
        max_sockets: cfg.limits.max_sockets,
        btf_path: Some(&cfg.kernel.btf_path.value)
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from),
        nat: cfg.nat.enabled,
        nat_max_pending: cfg.nat.max_pending.value,
        dns: cfg.dns.enabled.then(|| crate::kernel::dns::DnsOptions {
            ports: cfg.dns.port_list(),
            ring_bytes: cfg.dns.ring_bytes.value,
        }),
        drops: cfg.drops.enabled,
        drops_max_series: cfg.drops.max_series.value,
        drops_ignore: cfg.drops.ignored(),
    })
}

/// Loads the kernel side, starts every source from its config section,
/// serves HTTP until a signal, then stops the sources and detaches.
pub async fn run(cfg: Config) -> Result<(), RunError> {
    let targets: Vec<(&str, &str)> = cfg
        .targets
        .iter()
        .map(|t| (kernel_comm(&t.match_comm.value), t.name.value.as_str()))
        .collect();
    let opts = load_options(&cfg)?;
    let mut probes = Probes::load(&opts)?;
    // Loading parsed the kernel's BTF (several MB, now freed).
    release_freed_memory();
    tracing::info!(
        targets = targets.len(),
        track_all = opts.track_all,
        "kernel programs attached"
    );
    let names = if opts.track_all {
        ProcessNames::by_comm()
    } else {
        ProcessNames::targets(targets.iter().copied())
    };
    let resolver = cgroup::v2_root().map(|root| CgroupResolver::new(root, &cfg.containers));
    // Sockets older than the agent: the kernel side only sees new
    // connects, accepts and listen()s (collect/preexisting.rs).
    preexisting::seed(
        &mut probes,
        opts.netns_only,
        |comm| names.tracks(comm),
        |path| resolver.as_ref().and_then(|r| r.id_of_path(path)),
    );
    let sockets = Arc::new(
        Sockets::new(probes)
            .idle_after(cfg.tcp.idle_after())
            .series_ttl(cfg.limits.series_ttl().unwrap_or_default()),
    );
    let sources = sources::start(&cfg, &opts, &names, sockets.clone())?;
    if let Some(ifs) = &sources.interfaces {
        // Serve only once interfaces are attached: readiness means counting.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ifs.collected() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let agent = Arc::new(Agent::new(Parts {
        sockets,
        interfaces: sources.interfaces,
        collectors: sources.collectors,
        names,
        resolver,
        max_series_per_metric: cfg.limits.max_series_per_metric as usize,
        series_ttl: cfg.limits.series_ttl(),
        span_stats: Arc::new(SpanStats::default()),
        statsd_stats: Arc::new(StatsdStats::default()),
        cloud: sources.cloud,
        targets: targets.len(),
        dst_names: sources.dns_names,
    }));
    // Cloud detection runs beside everything else and never delays
    // start-up; it starts once the agent can run at all, so a start that
    // fails says only why. Dropping `_cloud` at return stops it.
    let _cloud = sources.cloud_detector;

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(async {
        // Scrapes build and drop large buffers; hand the pages back so
        // RSS follows what is in use, not the largest scrape so far.
        let mut every = tokio::time::interval(Duration::from_secs(10));
        loop {
            every.tick().await;
            release_freed_memory();
        }
    }));
    let mut otlp_sink = None;
    if cfg.otel.enabled() {
        let transport = Transport::new(&cfg.otel).context("otel")?;
        if cfg.otel.traces {
            otlp_sink = Some(otlp::start_span_pipeline(
                &cfg.otel,
                transport.clone(),
                agent.span_stats.clone(),
            ));
        }
        if cfg.otel.metrics_interval_seconds > 0.0 {
            tasks.push(tokio::spawn(tasks::push_metrics(
                agent.clone(),
                transport,
                cfg.otel.clone(),
            )));
        }
        tracing::info!(endpoint = %cfg.otel.endpoint, "OTLP export on");
    }
    let mut statsd_spans = None;
    let mut statsd_thread = None;
    if cfg.statsd.enabled {
        let exporter = StatsdExporter::new(&cfg.statsd).context("statsd")?;
        let buffer = Arc::new(SpanBuffer::new(agent.statsd_stats.clone()));
        statsd_spans = Some(buffer.clone());
        statsd_thread = Some(tasks::spawn_statsd_thread(
            exporter,
            agent.clone(),
            buffer,
            cfg.statsd.interval().context("statsd")?,
            stop.clone(),
        ));
        tracing::info!(address = %cfg.statsd.address, "DogStatsD export on");
    }
    if otlp_sink.is_some() || statsd_spans.is_some() {
        match agent.sockets.take_span_ring() {
            Some(ring) => tasks.push(tokio::spawn(tasks::read_spans(
                agent.clone(),
                ring,
                agent.sockets.take_span_cap(),
                otlp_sink,
                statsd_spans,
            ))),
            None => tracing::warn!("span ring buffer unavailable: no spans or distributions"),
        }
    }

    let served = serve(&cfg, agent.clone()).await;
    for t in tasks {
        t.abort();
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = statsd_thread {
        let _ = t.join();
    }
    agent.shutdown(); // e.g. saves the log offsets
    tracing::info!("shutting down; detaching kernel programs");
    drop(agent);
    served
}

/// Serves the router until SIGINT/SIGTERM: TLS and basic auth from the web
/// config, slow-client timeouts and the connection limit from `export.*`.
async fn serve(cfg: &Config, agent: Arc<Agent>) -> Result<(), RunError> {
    use crate::http::server;
    let addr = cfg.listen_addr().map_err(anyhow::Error::msg)?;
    let options = server::Options::from_export(&cfg.export);
    let listener = bind(addr).await?;
    server::serve(listener, router(agent), options, shutdown_signal())
        .await
        .context("HTTP server failed")?;
    Ok(())
}

/// Binds `addr`; the IPv6 wildcard falls back to IPv4 on hosts without IPv6.
async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() => {
            let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
            tracing::debug!(error = %e, "IPv6 wildcard unavailable, using {v4}");
            TcpListener::bind(v4)
                .await
                .with_context(|| format!("cannot listen on {v4}"))
        }
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `y` and runs the cross-layer checks, like main does.
    fn check(y: &str) -> Result<(), String> {
        let (cfg, _) = Config::parse(y, "test.yaml").map_err(|e| e.to_string())?;
        check_config(&cfg, "test.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn unknown_probe_names_are_rejected_with_the_known_ones() {
        let err = check("debug:\n  disable_probes: [\"tracepoint/x:y\"]\n").unwrap_err();
        assert!(err.contains("debug.disable_probes[0] (line 2)"), "{err}");
        assert!(err.contains("tracepoint/sock:inet_sock_set_state"), "{err}");
        check("debug:\n  disable_probes: [\"cgroup/sendmsg6\"]\n").unwrap();
    }

    #[test]
    fn the_kernel_span_cap_is_the_larger_reader_cap() {
        let cap = |y: &str| span_cap(&Config::parse(y, "test.yaml").unwrap().0);
        let otel = "otel:\n  endpoint: http://127.0.0.1:4317\n";
        assert_eq!(cap(""), None, "no span reader");
        assert_eq!(cap(otel), Some(1000), "OTLP alone");
        assert_eq!(cap("statsd:\n  enabled: true\n"), Some(10_000));
        assert_eq!(
            cap(&format!(
                "{otel}  max_spans_per_second: 20000\nstatsd:\n  enabled: true\n"
            )),
            Some(20_000)
        );
        assert_eq!(
            cap(&format!(
                "{otel}statsd:\n  enabled: true\n  max_spans_per_second: 0\n"
            )),
            None,
            "DogStatsD wants every span"
        );
        assert_eq!(
            cap(&format!(
                "{otel}  traces: false\nstatsd:\n  enabled: true\n  max_spans_per_second: 5\n"
            )),
            Some(5)
        );
    }
}
