//! Slow-client protection: the header, response and keep-alive idle
//! timeouts of a connection, enforced by [`Guarded`], a wrapper around each
//! TCP stream (under TLS, so the handshake counts too) that fails a pending
//! read or write once the deadline of the connection's current phase has
//! passed:
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

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::lock;

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
pub(super) struct Clock {
    phase: Mutex<Phase>,
    header: Duration,
    request: Duration,
    idle: Duration,
}

impl Clock {
    /// A connection's clock: `header` to read a request's header (TLS
    /// included), `request` to produce and again to send a response, `idle`
    /// between kept-alive requests.
    pub(super) fn new(header: Duration, request: Duration, idle: Duration) -> Self {
        Self {
            phase: Mutex::new(Phase::Header(Instant::now() + header)),
            header,
            request,
            idle,
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

    pub(super) fn handling(&self) {
        let mut p = lock(&self.phase);
        self.set(&mut p, Phase::Handling);
    }

    pub(super) fn responding(&self) {
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
pub(super) struct Guarded<T> {
    io: T,
    clock: Arc<Clock>,
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl<T> Guarded<T> {
    pub(super) fn new(io: T, clock: Arc<Clock>) -> Self {
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
pub(super) struct ClockedBody {
    body: Body,
    clock: Arc<Clock>,
    done: bool,
}

impl ClockedBody {
    pub(super) fn new(body: Body, clock: Arc<Clock>) -> Self {
        Self {
            body,
            clock,
            done: false,
        }
    }

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
