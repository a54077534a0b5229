//! Wires config, kernel programs, collection and the HTTP server together,
//! and shuts everything down on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::collect::harvest;
use crate::config::{kernel_comm, Config};
use crate::http::{router, Gather};
use crate::kernel::abi::comm_bytes;
use crate::kernel::{KernelError, LoadOptions, Probes};
use crate::model::connections::{self, ProcessNames};
use crate::model::{bounds_ns, self_metrics, Family, TX_DURATION_BOUNDS};

/// Why the agent stopped with an error; maps to the exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The running agent as the HTTP layer sees it.
struct Agent {
    probes: Mutex<Probes>,
    names: ProcessNames,
    started: Instant,
    targets: usize,
}

impl Gather for Agent {
    fn gather(&self) -> anyhow::Result<Vec<Family>> {
        // One collection at a time: concurrent scrapes queue here.
        let snap = {
            let probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
            harvest(&probes.maps).context("reading kernel maps")?
        };
        let mut families = connections::families(&snap, &self.names);
        families.extend(self_metrics::agent_families(&snap.lost));
        families.extend(self_metrics::process_families());
        Ok(families)
    }

    fn health(&self) -> (bool, serde_json::Value) {
        let udp = self
            .probes
            .lock()
            .map(|p| p.udp_destinations)
            .unwrap_or(false);
        (
            true,
            serde_json::json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": self.started.elapsed().as_secs_f64(),
                "targets": self.targets,
                "udp_sendto_destinations": udp,
            }),
        )
    }
}

/// Loads the kernel side, serves HTTP until a signal, then detaches.
pub async fn run(cfg: Config) -> Result<(), RunError> {
    let targets: Vec<(&str, &str)> = cfg
        .targets
        .iter()
        .map(|t| (kernel_comm(&t.match_comm.value), t.name.value.as_str()))
        .collect();
    let opts = LoadOptions {
        track_all: cfg.track_all(),
        targets: targets.iter().map(|(c, _)| comm_bytes(c)).collect(),
        max_series: cfg.limits.max_series,
        hist_bounds_ns: bounds_ns(&TX_DURATION_BOUNDS),
    };
    let probes = Probes::load(&opts)?;
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
    let agent = Arc::new(Agent {
        probes: Mutex::new(probes),
        names,
        started: Instant::now(),
        targets: targets.len(),
    });

    let addr = cfg.listen_addr().map_err(anyhow::Error::msg)?;
    let listener = bind(addr).await?;
    let local = listener.local_addr().context("listener address")?;
    tracing::info!(addr = %local, "serving /metrics");
    axum::serve(listener, router(agent.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server failed")?;
    tracing::info!("shutting down; detaching kernel programs");
    drop(agent);
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
