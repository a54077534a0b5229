//! [`OtlpReceiver`]: a gRPC or HTTP OTLP server on 127.0.0.1, on its own
//! tokio runtime in a background thread, that can be stopped (freeing its
//! port) and restarted on the same port.

use super::decode::lock;
use super::grpc::serve_grpc;
use super::http::serve_http;
use super::received::Received;
use std::net::TcpListener as StdTcpListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a stopping server may drain open connections before its
/// runtime is dropped (which closes every socket it still holds).
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Grpc,
    Http,
}

/// A server running on its own single-threaded tokio runtime in a thread.
struct Running {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn start(proto: Protocol, listener: StdTcpListener, state: Arc<Mutex<Received>>) -> Running {
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("otlp-rx-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let (down_tx, down_rx) = tokio::sync::oneshot::channel();
                    let server = match proto {
                        Protocol::Grpc => tokio::spawn(serve_grpc(listener, state, down_rx)),
                        Protocol::Http => tokio::spawn(serve_http(listener, state, down_rx)),
                    };
                    // Stop asked for, or the handle dropped without asking.
                    let _ = stop_rx.await;
                    let _ = down_tx.send(());
                    // Graceful drain, bounded; what is left is dropped with
                    // the runtime below, closing its sockets.
                    let _ = tokio::time::timeout(DRAIN, server).await;
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .expect("spawn receiver thread");
        Running {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                eprintln!("[otlp receiver] server thread panicked");
            }
        }
    }
}

/// Binds 127.0.0.1:`port` (0 = any free port), retrying for a few seconds
/// while the port is still held (e.g. by the previous server's last sockets).
fn bind_tcp(port: u16) -> StdTcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match StdTcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline && e.kind() == std::io::ErrorKind::AddrInUse => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("bind 127.0.0.1:{port}: {e}"),
        }
    }
}

/// An OTLP receiver on 127.0.0.1: gRPC (TraceService + MetricsService) or
/// HTTP (POST /v1/traces and /v1/metrics with application/x-protobuf bodies,
/// optionally gzip-encoded; answered with the protobuf Export*ServiceResponse).
/// Runs on its own tokio runtime in a background thread so blocking tests can
/// use it. `stop()` frees the port; `restart()` binds the same port again.
pub struct OtlpReceiver {
    proto: Protocol,
    port: u16,
    state: Arc<Mutex<Received>>,
    running: Option<Running>,
}

impl OtlpReceiver {
    /// gRPC receiver on a free port.
    pub fn grpc() -> OtlpReceiver {
        Self::start(Protocol::Grpc)
    }

    /// HTTP/protobuf receiver on a free port.
    pub fn http() -> OtlpReceiver {
        Self::start(Protocol::Http)
    }

    fn start(proto: Protocol) -> OtlpReceiver {
        // Bind port 0 and keep the socket: no window for another process to
        // take the port between choosing and binding it.
        let listener = bind_tcp(0);
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(Received::default()));
        let running = Running::start(proto, listener, state.clone());
        OtlpReceiver {
            proto,
            port,
            state,
            running: Some(running),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "http://127.0.0.1:PORT" — what the agent's otel.endpoint is set to.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Snapshot of everything received so far.
    pub fn received(&self) -> Received {
        lock(&self.state).clone()
    }

    /// Forgets everything received so far (counts and errors included).
    pub fn clear(&self) {
        *lock(&self.state) = Received::default();
    }

    /// Polls until `cond` holds or `timeout` passes; returns the last
    /// snapshot either way.
    pub fn wait_for(&self, timeout: Duration, cond: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.received();
            if cond(&r) || Instant::now() >= deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Shuts the server down and closes the port (and every connection to
    /// it); idempotent. Bounded: at most ~3 s.
    pub fn stop(&mut self) {
        if let Some(mut r) = self.running.take() {
            r.stop();
        }
    }

    /// Serves again on the same port with the same protocol, keeping what
    /// was already received. Stops first if still running.
    pub fn restart(&mut self) {
        self.stop();
        let listener = bind_tcp(self.port);
        self.running = Some(Running::start(self.proto, listener, self.state.clone()));
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}
