//! The server under the router: plain HTTP or TLS and HTTP basic auth, both
//! set by a Prometheus exporter-toolkit `web-config.yml`, and limits that
//! keep slow or idle clients from holding the agent's HTTP port: a header
//! read timeout, a request timeout, a keep-alive idle timeout and a cap on
//! concurrent connections.
//!
//! Timeouts are enforced by [`Guarded`], a wrapper around each TCP stream
//! (under TLS, so the handshake counts too) that fails a pending read or
//! write once the deadline of the connection's current phase has passed:
//!
//! | phase | deadline from | length |
//! |---|---|---|
//! | header | accept, or first byte after an idle wait | `header_read_timeout` |
//! | handling | (service's own timeout) | `request_timeout` |
//! | responding | response start, until flushed | `request_timeout` |
//! | idle | response flushed | `idle_timeout` |
//!
//! Unlike hyper's `header_read_timeout` (which starts as soon as the
//! connection waits for a request, so it is also the idle timeout), the
//! header clock of a kept-alive connection starts at the first byte of the
//! next request, as in Go's `net/http`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

use super::auth::{credentials, unauthorized, Users};
use super::lock;
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

// ---------------------------------------------------------------------------
// Connection deadlines

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a complete request header (TLS handshake included).
    Header(Instant),
    /// The service runs; its own timeout bounds it.
    Handling,
    /// Sending the response.
    Responding(Instant),
    /// The body is done; waiting for the last bytes to be flushed.
    Finishing(Instant),
    /// Kept alive, waiting for the next request.
    Idle(Instant),
}

/// A connection's phase, moved on by the service and by [`Guarded`].
struct Clock {
    phase: Mutex<Phase>,
    header: Duration,
    request: Duration,
    idle: Duration,
}

impl Clock {
    fn new(o: &Options) -> Self {
        Self {
            phase: Mutex::new(Phase::Header(Instant::now() + o.header_read_timeout)),
            header: o.header_read_timeout,
            request: o.request_timeout,
            idle: o.idle_timeout,
        }
    }

    fn deadline(&self) -> Option<(Instant, &'static str)> {
        match *lock(&self.phase) {
            Phase::Header(d) => Some((d, "header read timeout")),
            Phase::Handling => None,
            Phase::Responding(d) | Phase::Finishing(d) => Some((d, "response write timeout")),
            Phase::Idle(d) => Some((d, "keep-alive idle timeout")),
        }
    }

    fn set(&self, p: &mut Phase, to: Phase) {
        tracing::trace!(from = ?*p, to = ?to, "connection phase");
        *p = to;
    }

    fn handling(&self) {
        let mut p = lock(&self.phase);
        self.set(&mut p, Phase::Handling);
    }

    fn responding(&self) {
        let mut p = lock(&self.phase);
        self.set(&mut p, Phase::Responding(Instant::now() + self.request));
    }

    fn body_done(&self) {
        let mut p = lock(&self.phase);
        if let Phase::Responding(d) = *p {
            self.set(&mut p, Phase::Finishing(d));
        }
    }

    /// Finishing -> Idle; true when the phase changed.
    fn flushed(&self) -> bool {
        let mut p = lock(&self.phase);
        let finishing = matches!(*p, Phase::Finishing(_));
        if finishing {
            self.set(&mut p, Phase::Idle(Instant::now() + self.idle));
        }
        finishing
    }

    /// Idle -> Header; true when the phase changed.
    fn bytes_read(&self) -> bool {
        let mut p = lock(&self.phase);
        let idle = matches!(*p, Phase::Idle(_));
        if idle {
            self.set(&mut p, Phase::Header(Instant::now() + self.header));
        }
        idle
    }
}

/// A stream whose pending reads and writes fail once the deadline of the
/// connection's phase has passed.
struct Guarded<T> {
    io: T,
    clock: Arc<Clock>,
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl<T> Guarded<T> {
    fn new(io: T, clock: Arc<Clock>) -> Self {
        Self {
            io,
            clock,
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
            armed: None,
        }
    }

    /// Ready with an error once the current deadline has passed; otherwise
    /// Pending, with the timer registered to wake the task at the deadline.
    fn expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some((deadline, what)) = self.clock.deadline() else {
            return Poll::Pending;
        };
        if self.armed != Some(deadline) {
            self.sleep.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, what)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.expired(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            if buf.filled().len() > before && this.clock.bytes_read() {
                // Arm the new, possibly earlier, deadline now.
                let _ = this.expired(cx);
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.expired(cx) {
            return Poll::Ready(Err(e));
        }
        let r = Pin::new(&mut this.io).poll_flush(cx);
        if let Poll::Ready(Ok(())) = r {
            if this.clock.flushed() {
                // The idle deadline may be earlier than the one armed while
                // responding, and hyper may not poll us again before it:
                // arm it now, with this task's waker.
                let _ = this.expired(cx);
            }
        }
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(e) = this.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// A response body that tells the clock when it is done (or dropped unread,
/// as for HEAD).
struct ClockedBody {
    body: Body,
    clock: Arc<Clock>,
    done: bool,
}

impl ClockedBody {
    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.clock.body_done();
        }
    }
}

impl http_body::Body for ClockedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = r {
            this.finish();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for ClockedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

// ---------------------------------------------------------------------------
// Serving

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
    let clock = Arc::new(Clock::new(&shared.options));
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
                Ok::<_, Infallible>(resp.map(|body| ClockedBody {
                    body,
                    clock,
                    done: false,
                }))
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
