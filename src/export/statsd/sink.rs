//! The last hop under cadence: packs lines into datagrams of at most
//! `max_packet_bytes` and writes each to the socket once, counting the
//! lines that left and the lines that were dropped.

use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cadence::ext::MultiLineWriter;
use cadence::MetricSink;

use super::socket::Socket;

/// Lines that reached the socket and lines it refused, shared between the
/// sink (owned by the cadence client) and the exporter.
#[derive(Debug, Default)]
pub(super) struct Delivery {
    pub(super) sent: AtomicU64,
    pub(super) dropped: AtomicU64,
}

/// The `Write` end under cadence's `MultiLineWriter`: one `write` call is
/// one datagram.
///
/// Cadence's `BufferedUdpMetricSink`/`BufferedUnixMetricSink` are not used
/// because of how they fail: their socket adapter returns the send error
/// into a `std::io::BufWriter`, which keeps the unsent buffer and retries
/// it on the next write. So while the server is down (or a Unix socket's
/// queue is full) the buffer of already-accepted lines is stuck and is sent
/// late (stale gauges) when the server returns, and every later line fails
/// instead; the error also surfaces on whichever later line triggered the
/// flush, so lines that could not be sent cannot be counted. Here a failed
/// datagram is dropped and its lines are counted, and every datagram
/// either leaves or is counted by the end of each export call.
struct DatagramWriter {
    socket: Socket,
    delivery: Arc<Delivery>,
    /// For logs.
    target: String,
    /// Whether the last datagram failed: logs the transitions only, since a
    /// down server fails every datagram of every interval.
    failing: bool,
}

impl io::Write for DatagramWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let lines = count_lines(buf);
        match self.socket.send(buf) {
            Ok(n) if n == buf.len() => {
                self.delivery.sent.fetch_add(lines, Ordering::Relaxed);
                if self.failing {
                    self.failing = false;
                    tracing::info!(target_addr = %self.target, "statsd: sending again");
                }
            }
            result => {
                self.delivery.dropped.fetch_add(lines, Ordering::Relaxed);
                if !self.failing {
                    self.failing = true;
                    let error = match result {
                        Err(e) => e.to_string(),
                        Ok(n) => format!("short send: {n} of {} bytes", buf.len()),
                    };
                    tracing::warn!(
                        target_addr = %self.target,
                        %error,
                        "statsd: datagram dropped; further drops are only counted until sending works again"
                    );
                }
            }
        }
        // Reported as written either way: the datagram is gone (sent or
        // dropped and counted), so `BufWriter` must not keep it for a retry.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Lines in one datagram: newline-terminated when packed by
/// `MultiLineWriter`, unterminated when a single line filled a datagram on
/// its own. Lines never contain a newline themselves (names and tags are
/// sanitised).
fn count_lines(buf: &[u8]) -> u64 {
    let newlines = buf.iter().filter(|&&b| b == b'\n').count() as u64;
    newlines + u64::from(buf.last().is_some_and(|&b| b != b'\n'))
}

/// The cadence sink: packs lines into datagrams of at most
/// `max_packet_bytes` with cadence's `MultiLineWriter`.
pub(super) struct DatagramSink {
    max_line: usize,
    /// `emit` takes `&self` and cadence requires `Sync`; the exporter is
    /// the only user, so the lock is never contended.
    writer: Mutex<MultiLineWriter<DatagramWriter>>,
}

impl DatagramSink {
    /// A sink writing to `socket`; `target` names it in logs.
    pub(super) fn new(
        socket: Socket,
        delivery: Arc<Delivery>,
        target: String,
        max_packet_bytes: usize,
    ) -> Self {
        let writer = DatagramWriter {
            socket,
            delivery,
            target,
            failing: false,
        };
        Self {
            max_line: max_packet_bytes,
            writer: Mutex::new(MultiLineWriter::new(writer, max_packet_bytes)),
        }
    }
}

impl MetricSink for DatagramSink {
    fn emit(&self, metric: &str) -> io::Result<usize> {
        // `MultiLineWriter` writes a line longer than its buffer as a
        // datagram of its own, which would exceed the limit: refuse it here
        // (the exporter counts it as an error).
        if metric.len() > self.max_line {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "line of {} bytes exceeds max_packet_bytes {}",
                    metric.len(),
                    self.max_line
                ),
            ));
        }
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer.write(metric.as_bytes())
    }

    fn flush(&self) -> io::Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use crate::export::statsd::test_support::*;
    use crate::metrics::{Family, Kind, Value};

    #[test]
    fn no_datagram_exceeds_max_packet_bytes() {
        const MAX: usize = 512;
        let (rx, mut exp) = udp_pair(|cfg| cfg.max_packet_bytes = MAX);
        let mut f = Family::ad_hoc("netagent_bytes_sent", "help", Kind::Counter);
        for i in 0..300u32 {
            f.push(
                vec![
                    (
                        "comm",
                        format!("process-{i}-{}", "x".repeat((i % 40) as usize)),
                    ),
                    ("dst_ip", format!("10.0.{}.{}", i / 256, i % 256)),
                ],
                Value::Counter(f64::from(i) + 1.0),
            );
        }
        // Exactly MAX bytes: fits as a datagram of its own. One more: refused.
        let fixed = "netagent.bytes_sent:1|c|#comm:".len();
        for (name, len) in [("exact", MAX - fixed), ("over", MAX - fixed + 1)] {
            f.push(
                vec![("comm", name.repeat(len / name.len() + 1)[..len].to_string())],
                Value::Counter(1.0),
            );
        }

        let n = exp.export(std::slice::from_ref(&f));
        assert_eq!(n, 301);
        assert_eq!(exp.errors(), 1, "the oversized line is counted");
        let datagrams = recv_lines(&rx, n);
        assert!(datagrams.len() > 10, "lines are spread over datagrams");
        for d in &datagrams {
            assert!(d.len() <= MAX, "datagram of {} bytes", d.len());
        }
        assert!(datagrams.iter().any(|d| d.len() == MAX));
        let lines = parse_all(&datagrams);
        assert_eq!(lines.len(), 301);
        let total: f64 = lines.iter().map(|l| l.value).sum();
        assert_eq!(total, (1..=300).sum::<u32>() as f64 + 1.0);
    }
}
