//! The server under the router: plain HTTP or TLS and HTTP basic auth, both
//! set by a Prometheus exporter-toolkit `web-config.yml`, and limits that
//! keep slow or idle clients from holding the agent's HTTP port: a header
//! read timeout, a request timeout, a keep-alive idle timeout and a cap on
//! concurrent connections.
//!
//! The timeouts are deadlines of each connection's phases, kept by the
//! stream wrapper in `deadlines.rs`; basic auth is in `auth.rs`, reloading
//! the web config in `reload.rs`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::auth::{credentials, unauthorized, Users};
use super::deadlines::{Clock, ClockedBody, Guarded};
use super::reload::Reloader;
use super::web_config::WebConfig;

/// Request header bytes hyper buffers per connection (its minimum is 8 KiB).
const MAX_HEADER_BUF: usize = 64 * 1024;
/// How long shutdown waits for requests in flight before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the server is run; see `export.*` in the configuration.
#[derive(Debug, Clone)]
pub struct Options {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// `export.web_config_file`; `None` = plain HTTP without auth.
    pub web_config_file: Option<PathBuf>,
}

impl Options {
    /// From a validated `export` section.
    pub fn from_export(e: &crate::config::Export) -> Self {
        let file = e.web_config_file.value.as_str();
        Self {
            header_read_timeout: Duration::from_secs_f64(e.header_read_timeout_seconds),
            request_timeout: Duration::from_secs_f64(e.request_timeout_seconds),
            idle_timeout: Duration::from_secs_f64(e.idle_timeout_seconds),
            max_connections: e.max_connections as usize,
            web_config_file: (!file.is_empty()).then(|| PathBuf::from(file)),
        }
    }
}

/// Shared by every connection.
struct Shared {
    router: TowerToHyperService<Router>,
    web: Option<Reloader>,
    options: Options,
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// requests in flight finish (at most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let web = match &options.web_config_file {
        Some(path) => {
            let w = WebConfig::load(path)?;
            for note in w.notes() {
                tracing::warn!("web config {}: {note}", path.display());
            }
            Some(Reloader::new(path.clone(), &w))
        }
        None => None,
    };
    let active = web.as_ref().map(Reloader::current).unwrap_or_default();
    let local = listener.local_addr()?;
    tracing::info!(
        addr = %local,
        tls = active.tls.is_some(),
        basic_auth = active.users.is_some(),
        max_connections = options.max_connections,
        "serving /metrics"
    );
    let shared = Arc::new(Shared {
        router: TowerToHyperService::new(router),
        web,
        options: options.clone(),
    });

    let slots = Arc::new(Semaphore::new(options.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut at_limit_logged = false;
    tokio::pin!(shutdown);
    'accept: loop {
        while conns.try_join_next().is_some() {}
        // At the limit, stop accepting: new connections wait in the
        // kernel's listen backlog until a slot frees.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                if !at_limit_logged {
                    tracing::warn!(
                        max_connections = options.max_connections,
                        "HTTP connection limit reached; new connections wait until one closes"
                    );
                    at_limit_logged = true;
                }
                tokio::select! {
                    s = slots.clone().acquire_owned() => s.expect("semaphore is never closed"),
                    () = &mut shutdown => break 'accept,
                }
            }
        };
        if slots.available_permits() > options.max_connections / 2 {
            at_limit_logged = false;
        }
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: back off rather than spin.
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        tracing::warn!(error = %e, "cannot accept HTTP connections");
                    } else {
                        tracing::debug!(error = %e, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break 'accept,
        };
        let _ = tcp.set_nodelay(true);
        conns.spawn(connection(tcp, peer, shared.clone(), stop_rx.clone(), slot));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::debug!("dropping HTTP connections still open after the shutdown grace");
        conns.shutdown().await;
    }
    Ok(())
}

/// One connection: TLS handshake if configured, then HTTP/1.1 until the
/// client leaves, a deadline passes or the server stops.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let o = &shared.options;
    let clock = Arc::new(Clock::new(
        o.header_read_timeout,
        o.request_timeout,
        o.idle_timeout,
    ));
    let io = Guarded::new(tcp, clock.clone());
    let active = shared
        .web
        .as_ref()
        .map(Reloader::current)
        .unwrap_or_default();
    let svc = {
        let shared = shared.clone();
        let clock = clock.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let shared = shared.clone();
            let clock = clock.clone();
            async move {
                clock.handling();
                // Users as of this request: a changed password applies to
                // kept-alive connections too.
                let users = shared.web.as_ref().and_then(|w| w.current().users);
                let limit = shared.options.request_timeout;
                let resp = tokio::time::timeout(limit, handle(&shared.router, users, req))
                    .await
                    .unwrap_or_else(|_| {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [(header::CONNECTION, "close")],
                            "request timed out\n",
                        )
                            .into_response()
                    });
                clock.responding();
                Ok::<_, Infallible>(resp.map(|body| ClockedBody::new(body, clock)))
            }
        })
    };
    let result = match active.tls {
        Some(acceptor) => {
            let tls = tokio::select! {
                r = acceptor.accept(io) => r,
                _ = stop.changed() => return,
            };
            match tls {
                Ok(tls) => http1(TokioIo::new(tls), svc, stop).await,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            }
        }
        None => http1(TokioIo::new(io), svc, stop).await,
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
    }
}

/// Runs hyper's HTTP/1.1 connection; on stop, finishes the request in
/// flight and closes.
async fn http1<I, S>(io: I, svc: S, mut stop: watch::Receiver<bool>) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = ClockedBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        // Our Guarded stream keeps the header and idle deadlines.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEADER_BUF);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Basic auth (when configured), then the router.
async fn handle(
    router: &TowerToHyperService<Router>,
    users: Option<Arc<Users>>,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Some(users) = users {
        if !users.check(req.headers()).await {
            let user = credentials(req.headers()).map(|(u, _)| u);
            tracing::debug!(?user, path = %req.uri().path(), "basic auth failed");
            return unauthorized();
        }
    }
    match router.call(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}
