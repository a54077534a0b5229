//! DogStatsD export: pushes counters, gauges and per-span durations to a
//! Datadog agent (or any DogStatsD server) over UDP or a Unix datagram socket.
//!
//! [`cadence`] formats the lines and packs them into datagrams (its
//! `MultiLineWriter` fills a buffer of `max_packet_bytes` and sends it whole).
//! Only the last hop, the socket write, is ours: see [`DatagramWriter`] for
//! why cadence's own buffered sinks could not be used as they are.
//!
//! Counters are sent as deltas (`|c`): StatsD servers sum what they receive
//! per flush interval, so sending a cumulative total every interval would
//! count it again and again. Histogram families are not sent: they are
//! cumulative buckets that DogStatsD has no type for; request durations go
//! out per span as distributions instead ([`StatsdExporter::observe_spans`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Write as _};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cadence::ext::{MetricValue, MultiLineWriter, ToCounterValue};
use cadence::prelude::*;
use cadence::{Metric, MetricBuilder, MetricResult, MetricSink, StatsdClient};

use crate::metrics::{Family, Kind, Value};
use crate::model::spans::{FlowSpan, SpanSide};

/// Family names carry this prefix; the configured `prefix` replaces it.
const FAMILY_PREFIX: &str = "netagent_";

/// Metric name (after the prefix) of the per-span duration distribution.
const SPAN_METRIC: &str = "tx_duration_seconds";

/// Smallest accepted `max_packet_bytes`: below this hardly any line fits,
/// so a smaller value is a typo rather than a choice.
const MIN_PACKET_BYTES: usize = 64;

/// Largest UDP payload over IPv4 (65535 - 8 UDP - 20 IP header bytes).
const MAX_UDP_PAYLOAD: usize = 65_507;

pub use crate::config::StatsdConfig;

/// Where datagrams go, parsed from [`StatsdConfig::address`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    /// `host:port`, resolved once when the exporter is created.
    Udp(String),
    Unix(PathBuf),
}

impl Endpoint {
    fn parse(address: &str) -> io::Result<Self> {
        let address = address.trim();
        if let Some(path) = address.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(invalid(format!(
                    "statsd.address {address:?}: unix:// needs a socket path"
                )));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let hostport = address.strip_prefix("udp://").unwrap_or(address);
        if hostport.is_empty() || !hostport.contains(':') {
            return Err(invalid(format!(
                "statsd.address {address:?}: expected host:port or unix:///path"
            )));
        }
        Ok(Endpoint::Udp(hostport.to_string()))
    }
}

/// The socket datagrams are written to.
enum Socket {
    /// Connected, so the kernel reports ICMP "port unreachable" as
    /// `ECONNREFUSED` on a later send: a missing DogStatsD server shows up
    /// in [`StatsdExporter::errors`] instead of vanishing silently.
    Udp(UdpSocket),
    /// Unbound and addressed by path on every send (not connected): when
    /// the Datadog agent restarts and recreates its socket file, the next
    /// send reaches the new socket, where a connected one would keep
    /// failing against the old one.
    Unix { socket: UnixDatagram, path: PathBuf },
}

impl Socket {
    fn open(endpoint: &Endpoint) -> io::Result<Self> {
        match endpoint {
            Endpoint::Udp(hostport) => {
                let mut last_err = None;
                for addr in hostport.to_socket_addrs()? {
                    match connect_udp(addr) {
                        Ok(socket) => return Ok(Socket::Udp(socket)),
                        Err(e) => last_err = Some(e),
                    }
                }
                Err(last_err.unwrap_or_else(|| {
                    invalid(format!("statsd.address {hostport:?} resolves to nothing"))
                }))
            }
            Endpoint::Unix(path) => {
                let socket = UnixDatagram::unbound()?;
                socket.set_nonblocking(true)?;
                Ok(Socket::Unix {
                    socket,
                    path: path.clone(),
                })
            }
        }
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Udp(socket) => socket.send(buf),
            Socket::Unix { socket, path } => socket.send_to(buf, path),
        }
    }
}

/// A non-blocking UDP socket of `addr`'s family, connected to it.
fn connect_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    // A full send buffer must drop a datagram, not stall the agent.
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Lines that reached the socket and lines it refused, shared between the
/// sink (owned by the cadence client) and the exporter.
#[derive(Debug, Default)]
struct Delivery {
    sent: AtomicU64,
    dropped: AtomicU64,
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
struct DatagramSink {
    max_line: usize,
    /// `emit` takes `&self` and cadence requires `Sync`; the exporter is
    /// the only user, so the lock is never contended.
    writer: Mutex<MultiLineWriter<DatagramWriter>>,
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

/// A counter value cadence will send as a float: its counters take
/// integers only, but model counters are `f64` (`process_cpu_seconds`
/// grows by fractions) and DogStatsD parses counts as floats.
/// `ToCounterValue` is cadence's extension point for such value types.
struct FloatCount(f64);

impl ToCounterValue for FloatCount {
    fn try_to_value(self) -> MetricResult<MetricValue> {
        Ok(MetricValue::Float(self.0))
    }
}

/// Last sent counter values: family name -> labels -> value.
///
/// Keyed by the family's `&'static str` name and then by the labels, so a
/// lookup needs no allocation (`Vec` borrows as a slice) and an existing
/// key is moved, not cloned, into the next call's map.
type Previous = HashMap<&'static str, HashMap<Vec<(&'static str, String)>, f64>>;

/// Sends metric families as DogStatsD lines every interval.
///
/// The agent owns the timer: call [`export`](Self::export) (and
/// [`observe_spans`](Self::observe_spans)) once per
/// [`StatsdConfig::interval`]. Both return quickly: sockets are
/// non-blocking, and a datagram the kernel will not take at once is
/// dropped and counted in [`errors`](Self::errors).
pub struct StatsdExporter {
    client: StatsdClient,
    delivery: Arc<Delivery>,
    /// Sanitised global tags, appended to every line.
    global_tags: Vec<String>,
    /// Lines refused before reaching a socket (longer than a datagram).
    rejected: u64,
    /// Whether a refused line was logged already (it repeats every
    /// interval; the count is in `errors()`).
    warned_rejected: bool,
    /// Counter values sent last call, for deltas; holds exactly the
    /// counter series of the last call.
    previous: Previous,
}

impl StatsdExporter {
    /// Opens the socket. A UDP host name is resolved here, once (this may
    /// block on DNS, so call it outside an async context); a Unix socket
    /// path need not exist yet: sends fail and are counted until it does.
    pub fn new(cfg: &StatsdConfig) -> io::Result<Self> {
        cfg.interval().map_err(|e| invalid(e.to_string()))?;
        let endpoint = Endpoint::parse(&cfg.address)?;
        let max_udp = matches!(endpoint, Endpoint::Udp(_)).then_some(MAX_UDP_PAYLOAD);
        if cfg.max_packet_bytes < MIN_PACKET_BYTES
            || max_udp.is_some_and(|max| cfg.max_packet_bytes > max)
        {
            return Err(invalid(format!(
                "statsd.max_packet_bytes must be between {MIN_PACKET_BYTES} and {}, got {}",
                max_udp.map_or_else(|| "any size".to_string(), |m| m.to_string()),
                cfg.max_packet_bytes
            )));
        }
        let socket = Socket::open(&endpoint)?;

        let delivery = Arc::new(Delivery::default());
        let writer = DatagramWriter {
            socket,
            delivery: Arc::clone(&delivery),
            target: cfg.address.clone(),
            failing: false,
        };
        let sink = DatagramSink {
            max_line: cfg.max_packet_bytes,
            writer: Mutex::new(MultiLineWriter::new(writer, cfg.max_packet_bytes)),
        };
        let prefix = sanitize_name(cfg.prefix.trim_matches('.'));
        // Global tags are added per line (not as cadence client tags, which
        // it puts first) so they come after the series' own labels.
        let global_tags = cfg
            .tags
            .iter()
            .map(|t| tag_value(t.trim()).into_owned())
            .filter(|t| !t.is_empty())
            .collect();
        Ok(Self {
            client: StatsdClient::from_sink(&prefix, sink),
            delivery,
            global_tags,
            rejected: 0,
            warned_rejected: false,
            previous: Previous::new(),
        })
    }

    /// Sends one interval of `families` and returns how many lines reached
    /// the socket.
    ///
    /// * Counters go out as the increase since the previous call (`|c`).
    ///   The first time a series is seen its full value is sent: the agent
    ///   counts from zero when it starts, so the whole value happened since
    ///   then. A value below the previous one is a reset (the series was
    ///   recreated) and is sent in full too. Series whose increase is 0 are
    ///   skipped: they carry no information and cost packets.
    /// * Gauges go out every call (`|g`), unchanged or not: DogStatsD keeps
    ///   a gauge only for the flush interval it arrives in.
    /// * Histogram families are skipped (see the module docs).
    ///
    /// Non-finite values are skipped (a counter keeps its previous value).
    /// Only series present in this call are remembered, so memory follows
    /// the current series set; a series that is missing for one call and
    /// then returns is new again and sends its full value.
    pub fn export(&mut self, families: &[Family]) -> usize {
        let sent_before = self.delivery.sent.load(Ordering::Relaxed);
        let mut previous = std::mem::take(&mut self.previous);
        let mut next = Previous::with_capacity(previous.len());

        for family in families {
            let key = metric_key(family.name);
            match family.kind {
                Kind::Counter => {
                    let mut last = previous.get_mut(family.name);
                    let current = next.entry(family.name).or_default();
                    for series in &family.series {
                        let Value::Counter(value) = series.value else {
                            continue;
                        };
                        let labels = series.labels.as_slice();
                        if current.contains_key(labels) {
                            // The same series twice in one call: sending it
                            // again would count its increase twice.
                            continue;
                        }
                        let (labels_owned, last_value) =
                            match last.as_mut().and_then(|m| m.remove_entry(labels)) {
                                Some((owned, v)) => (owned, Some(v)),
                                None => (series.labels.clone(), None),
                            };
                        if !value.is_finite() {
                            if let Some(v) = last_value {
                                current.insert(labels_owned, v);
                            }
                            continue;
                        }
                        current.insert(labels_owned, value);
                        let delta = match last_value {
                            Some(last) if value >= last => value - last,
                            _ => value,
                        };
                        if delta == 0.0 {
                            continue;
                        }
                        let tags = label_tags(labels);
                        let line = self.client.count_with_tags(&key, FloatCount(delta));
                        let ok = send(line, &tags, &self.global_tags);
                        self.note(ok);
                    }
                }
                Kind::Gauge => {
                    for series in &family.series {
                        let Value::Gauge(value) = series.value else {
                            continue;
                        };
                        if !value.is_finite() {
                            continue;
                        }
                        let tags = label_tags(&series.labels);
                        let line = self.client.gauge_with_tags(&key, value);
                        let ok = send(line, &tags, &self.global_tags);
                        self.note(ok);
                    }
                }
                Kind::Histogram => {}
            }
        }
        // Families without counter series leave empty maps; drop them so
        // `previous` holds only live series.
        next.retain(|_, m| !m.is_empty());
        self.previous = next;
        self.flush();
        self.lines_sent_since(sent_before)
    }

    /// Sends each span's duration as a distribution line (`|d`): metric
    /// `<prefix>.tx_duration_seconds`, value in seconds, tags `process`,
    /// `proto`, `dport` and `dst_ip` (the server end, IPv4-mapped IPv6
    /// shown as IPv4 like the Prometheus labels) and `side`
    /// (`client`/`server`). Returns how many lines reached the socket.
    pub fn observe_spans(&mut self, spans: &[FlowSpan]) -> usize {
        let sent_before = self.delivery.sent.load(Ordering::Relaxed);
        for span in spans {
            let server = span.server();
            let dport = server.port().to_string();
            let dst_ip = server.ip().to_canonical().to_string();
            let side = match span.side {
                SpanSide::Client => "client",
                SpanSide::Server => "server",
            };
            let tags: [(Cow<'_, str>, Cow<'_, str>); 5] = [
                ("process".into(), tag_value(&span.process)),
                ("proto".into(), tag_value(span.proto)),
                ("dport".into(), dport.into()),
                ("dst_ip".into(), dst_ip.into()),
                ("side".into(), side.into()),
            ];
            let line = self
                .client
                .distribution_with_tags(SPAN_METRIC, span.duration_seconds());
            let ok = send(line, &tags, &self.global_tags);
            self.note(ok);
        }
        self.flush();
        self.lines_sent_since(sent_before)
    }

    /// Lines that could not be sent: dropped by the socket (server
    /// missing, buffer full) or longer than `max_packet_bytes`.
    pub fn errors(&self) -> u64 {
        self.rejected + self.delivery.dropped.load(Ordering::Relaxed)
    }

    /// Counts a line refused before the socket (socket drops are counted by
    /// the writer when the datagram is sent).
    fn note(&mut self, result: MetricResult<()>) {
        if let Err(e) = result {
            self.rejected += 1;
            if !self.warned_rejected {
                self.warned_rejected = true;
                tracing::warn!(error = %e, "statsd: line not sent; further ones are only counted");
            }
        }
    }

    /// Sends what is buffered, so nothing waits for the next interval.
    fn flush(&self) {
        // Cannot fail: `DatagramWriter` counts failed datagrams instead of
        // returning errors. Logged in case that ever changes.
        if let Err(e) = self.client.flush() {
            tracing::debug!(error = %e, "statsd: flush failed");
        }
    }

    fn lines_sent_since(&self, before: u64) -> usize {
        let sent = self.delivery.sent.load(Ordering::Relaxed) - before;
        usize::try_from(sent).unwrap_or(usize::MAX)
    }
}

/// Adds the tags (then the global tags) and sends the line.
fn send<'m, T>(
    mut line: MetricBuilder<'m, '_, T>,
    tags: &'m [(Cow<'_, str>, Cow<'_, str>)],
    global_tags: &'m [String],
) -> MetricResult<()>
where
    T: Metric + From<String>,
{
    for (key, value) in tags {
        line = line.with_tag(key, value);
    }
    for tag in global_tags {
        line = line.with_tag_value(tag);
    }
    line.try_send().map(drop)
}

/// Series labels as sanitised tag keys and values.
fn label_tags<'a>(labels: &'a [(&'static str, String)]) -> Vec<(Cow<'static, str>, Cow<'a, str>)> {
    labels
        .iter()
        .map(|(k, v)| (tag_key(k), tag_value(v)))
        .collect()
}

/// Metric name after the prefix: the family name without `netagent_`
/// (the prefix takes its place), e.g. `netagent_connect` -> `connect`.
fn metric_key(family: &str) -> Cow<'_, str> {
    sanitize_name(family.strip_prefix(FAMILY_PREFIX).unwrap_or(family))
}

/// Metric names keep ASCII letters, digits, `_` and `.`; anything else
/// (`:` and `|` would end the name early) becomes `_`.
fn sanitize_name(name: &str) -> Cow<'_, str> {
    replace_chars(name, |c| {
        !(c.is_ascii_alphanumeric() || c == '_' || c == '.')
    })
}

/// Tag values must not contain `,` (tag separator), `|` (field separator),
/// `#` or a newline (line separator): each becomes `_`. `:` is allowed in a
/// value (IPv6 addresses) since a tag splits at its first `:`.
fn tag_value(value: &str) -> Cow<'_, str> {
    replace_chars(value, |c| matches!(c, ',' | '|' | '#' | '\n' | '\r'))
}

/// Tag keys: as values, and without `:`, which would end the key.
fn tag_key(key: &'static str) -> Cow<'static, str> {
    replace_chars(key, |c| matches!(c, ',' | '|' | '#' | '\n' | '\r' | ':'))
}

/// `s` with every char matching `bad` replaced by `_`; borrowed when
/// nothing matches (the common case).
fn replace_chars(s: &str, bad: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&bad) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().map(|c| if bad(c) { '_' } else { c }).collect())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Histogram;
    use std::collections::BTreeMap;
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;
    use std::time::Instant;

    /// A UDP receiver on 127.0.0.1 and an exporter pointed at it.
    fn udp_pair(tweak: impl FnOnce(&mut StatsdConfig)) -> (UdpSocket, StatsdExporter) {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let mut cfg = StatsdConfig {
            enabled: true,
            address: rx.local_addr().expect("local addr").to_string(),
            ..StatsdConfig::default()
        };
        tweak(&mut cfg);
        let exporter = StatsdExporter::new(&cfg).expect("exporter");
        (rx, exporter)
    }

    /// Receives datagrams until `lines` lines arrived; returns the
    /// datagrams. Fails (rather than hangs) after the read timeout.
    fn recv_lines(rx: &UdpSocket, lines: usize) -> Vec<String> {
        let mut datagrams = Vec::new();
        let mut got = 0;
        let mut buf = vec![0u8; 70_000];
        while got < lines {
            let n = rx.recv(&mut buf).expect("datagram before timeout");
            let text = String::from_utf8(buf[..n].to_vec()).expect("UTF-8 datagram");
            got += text.lines().count();
            datagrams.push(text);
        }
        assert_eq!(got, lines, "more lines than reported sent");
        datagrams
    }

    /// Asserts that nothing more arrives within a short wait.
    fn assert_quiet(rx: &UdpSocket) {
        rx.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let mut buf = [0u8; 2048];
        if let Ok(n) = rx.recv(&mut buf) {
            panic!(
                "unexpected datagram: {:?}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
    }

    /// One parsed DogStatsD line.
    #[derive(Debug, Clone, PartialEq)]
    struct Line {
        name: String,
        value: f64,
        kind: String,
        tags: Vec<String>,
    }

    /// Parses `<name>:<value>|<type>[|#k:v,...]` strictly: name chars,
    /// a float value, a known type, tags as `k:v` without separators.
    fn parse_line(line: &str) -> Line {
        let (name, rest) = line.split_once(':').expect("name:value");
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'),
            "bad name in {line:?}"
        );
        let mut fields = rest.split('|');
        let value: f64 = fields
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad value in {line:?}"));
        let kind = fields.next().expect("type").to_string();
        assert!(matches!(kind.as_str(), "c" | "g" | "d"), "type in {line:?}");
        let tags = match fields.next() {
            None => Vec::new(),
            Some(t) => {
                let t = t.strip_prefix('#').expect("tags start with #");
                t.split(',')
                    .map(|tag| {
                        let (k, _v) = tag.split_once(':').expect("tag is k:v");
                        assert!(!k.is_empty(), "empty tag key in {line:?}");
                        tag.to_string()
                    })
                    .collect()
            }
        };
        assert!(fields.next().is_none(), "extra fields in {line:?}");
        Line {
            name: name.to_string(),
            value,
            kind,
            tags,
        }
    }

    fn parse_all(datagrams: &[String]) -> Vec<Line> {
        datagrams
            .iter()
            .flat_map(|d| d.lines())
            .map(parse_line)
            .collect()
    }

    fn counter(name: &'static str, series: &[(&str, f64)]) -> Family {
        let mut f = Family::ad_hoc(name, "help", Kind::Counter);
        for (comm, v) in series {
            f.push(vec![("comm", comm.to_string())], Value::Counter(*v));
        }
        f
    }

    fn gauge(name: &'static str, series: &[(&str, f64)]) -> Family {
        let mut f = Family::ad_hoc(name, "help", Kind::Gauge);
        for (comm, v) in series {
            f.push(vec![("comm", comm.to_string())], Value::Gauge(*v));
        }
        f
    }

    /// Lines keyed by `name|tags`, for order-independent comparisons.
    fn by_series(lines: &[Line]) -> BTreeMap<String, (f64, String)> {
        lines
            .iter()
            .map(|l| {
                (
                    format!("{}|{}", l.name, l.tags.join(",")),
                    (l.value, l.kind.clone()),
                )
            })
            .collect()
    }

    #[test]
    fn names_map_to_prefix_dot_base() {
        assert_eq!(metric_key("netagent_connect"), "connect");
        assert_eq!(metric_key("process_cpu_seconds"), "process_cpu_seconds");
        assert_eq!(metric_key("netagent_a:b|c"), "a_b_c");
        assert!(matches!(metric_key("netagent_connect"), Cow::Borrowed(_)));
        assert_eq!(sanitize_name("net agent"), "net_agent");
    }

    #[test]
    fn tag_values_are_escaped() {
        assert_eq!(tag_value("a,b|c#d\ne\rf"), "a_b_c_d_e_f");
        assert_eq!(tag_value("::1"), "::1");
        assert_eq!(tag_value(""), "");
        assert!(matches!(tag_value("nginx"), Cow::Borrowed(_)));
        assert_eq!(tag_key("a:b"), "a_b");
        // Multi-byte characters survive untouched.
        assert_eq!(tag_value("naïve,x"), "naïve_x");
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(
            Endpoint::parse("unix:///var/run/dsd.socket").expect("unix"),
            Endpoint::Unix(PathBuf::from("/var/run/dsd.socket"))
        );
        assert_eq!(
            Endpoint::parse("127.0.0.1:8125").expect("udp"),
            Endpoint::Udp("127.0.0.1:8125".into())
        );
        assert_eq!(
            Endpoint::parse("udp://[::1]:8125").expect("udp://"),
            Endpoint::Udp("[::1]:8125".into())
        );
        for bad in ["", "unix://", "localhost", "udp://"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn config_yaml_defaults_and_unknown_keys() {
        let cfg: StatsdConfig = serde_saphyr::from_str(
            "enabled: true\naddress: unix:///run/dsd.socket\ntags: [\"env:prod\"]\nmax_packet_bytes: 8192\n",
        )
        .expect("parse");
        assert_eq!(
            cfg,
            StatsdConfig {
                enabled: true,
                address: "unix:///run/dsd.socket".into(),
                tags: vec!["env:prod".into()],
                max_packet_bytes: 8192,
                ..StatsdConfig::default()
            }
        );
        assert_eq!(cfg.interval().expect("interval"), Duration::from_secs(10));
        assert!(serde_saphyr::from_str::<StatsdConfig>("adress: x\n").is_err());
    }

    #[test]
    fn invalid_config_is_refused() {
        let bad = [
            StatsdConfig {
                interval_seconds: 0.0,
                ..StatsdConfig::default()
            },
            StatsdConfig {
                interval_seconds: f64::NAN,
                ..StatsdConfig::default()
            },
            StatsdConfig {
                max_packet_bytes: 10,
                ..StatsdConfig::default()
            },
            StatsdConfig {
                max_packet_bytes: 70_000,
                ..StatsdConfig::default()
            },
            StatsdConfig {
                address: "no-port".into(),
                ..StatsdConfig::default()
            },
        ];
        for cfg in bad {
            assert!(StatsdExporter::new(&cfg).is_err(), "accepted {cfg:?}");
        }
        // A Unix socket may take bigger datagrams than UDP.
        let unix = StatsdConfig {
            address: "unix:///nonexistent/dsd.socket".into(),
            max_packet_bytes: 70_000,
            ..StatsdConfig::default()
        };
        assert!(StatsdExporter::new(&unix).is_ok());
    }

    #[test]
    fn counters_send_deltas_over_three_calls() {
        let (rx, mut exp) = udp_pair(|_| {});

        let n = exp.export(&[counter(
            "netagent_connect",
            &[("curl", 5.0), ("nginx", 2.0)],
        )]);
        let lines = parse_all(&recv_lines(&rx, n));
        assert_eq!(
            by_series(&lines),
            BTreeMap::from([
                ("netagent.connect|comm:curl".into(), (5.0, "c".into())),
                ("netagent.connect|comm:nginx".into(), (2.0, "c".into())),
            ]),
            "first call sends full values"
        );

        let n = exp.export(&[counter(
            "netagent_connect",
            &[("curl", 8.0), ("nginx", 2.0)],
        )]);
        let lines = parse_all(&recv_lines(&rx, n));
        assert_eq!(
            by_series(&lines),
            BTreeMap::from([("netagent.connect|comm:curl".into(), (3.0, "c".into()))]),
            "second call: delta, unchanged series skipped"
        );

        let n = exp.export(&[counter(
            "netagent_connect",
            &[("curl", 8.0), ("nginx", 2.0)],
        )]);
        assert_eq!(n, 0, "zero deltas are skipped");
        assert_quiet(&rx);
        assert_eq!(exp.errors(), 0);
    }

    #[test]
    fn counter_state_follows_current_series() {
        let (rx, mut exp) = udp_pair(|_| {});
        let n = exp.export(&[counter("netagent_connect", &[("a", 5.0), ("b", 1.0)])]);
        recv_lines(&rx, n);
        assert_eq!(exp.previous["netagent_connect"].len(), 2);

        // `b` is gone: forgotten. `a` reset to a lower value: sent in full.
        let n = exp.export(&[counter("netagent_connect", &[("a", 2.0)])]);
        let lines = parse_all(&recv_lines(&rx, n));
        assert_eq!(
            by_series(&lines),
            BTreeMap::from([("netagent.connect|comm:a".into(), (2.0, "c".into()))])
        );
        assert_eq!(exp.previous["netagent_connect"].len(), 1);

        // `b` returns: new again, full value. Fractional counters stay floats.
        let n = exp.export(&[
            counter("netagent_connect", &[("a", 2.0), ("b", 1.0)]),
            counter("process_cpu_seconds", &[("x", 1.25)]),
        ]);
        let lines = parse_all(&recv_lines(&rx, n));
        assert_eq!(
            by_series(&lines),
            BTreeMap::from([
                ("netagent.connect|comm:b".into(), (1.0, "c".into())),
                (
                    "netagent.process_cpu_seconds|comm:x".into(),
                    (1.25, "c".into())
                ),
            ])
        );

        // No families at all: nothing remembered.
        assert_eq!(exp.export(&[]), 0);
        assert!(exp.previous.is_empty());
    }

    #[test]
    fn duplicate_series_and_non_finite_values_are_skipped() {
        let (rx, mut exp) = udp_pair(|_| {});
        let n = exp.export(&[
            counter("netagent_connect", &[("a", 5.0), ("a", 5.0)]),
            gauge("netagent_open", &[("a", f64::NAN), ("b", f64::INFINITY)]),
        ]);
        assert_eq!(n, 1);
        let lines = parse_all(&recv_lines(&rx, n));
        assert_eq!(lines[0].value, 5.0);
        assert_quiet(&rx);
    }

    #[test]
    fn gauges_are_sent_every_call_and_histograms_never() {
        let (rx, mut exp) = udp_pair(|_| {});
        let mut hist = Family::ad_hoc("netagent_rtt_seconds", "help", Kind::Histogram);
        hist.push(
            vec![("comm", "a".into())],
            Value::Histogram(Histogram {
                bounds: &[1.0],
                buckets: vec![1, 1],
                sum: 1.5,
            }),
        );
        let families = [
            gauge("netagent_sockets_open", &[("a", 12.0), ("b", -0.25)]),
            hist,
        ];
        for _ in 0..2 {
            let n = exp.export(&families);
            assert_eq!(n, 2);
            let lines = parse_all(&recv_lines(&rx, n));
            assert_eq!(
                by_series(&lines),
                BTreeMap::from([
                    ("netagent.sockets_open|comm:a".into(), (12.0, "g".into())),
                    ("netagent.sockets_open|comm:b".into(), (-0.25, "g".into())),
                ])
            );
        }
    }

    #[test]
    fn labels_and_global_tags() {
        let (rx, mut exp) = udp_pair(|cfg| {
            cfg.prefix = "custom.".into();
            cfg.tags = vec!["env:prod".into(), "  ".into(), "team:a,b".into()];
        });
        let mut f = Family::ad_hoc("netagent_bytes", "help", Kind::Counter);
        f.push(
            vec![
                ("comm", "cu,rl|x#y\nz".into()),
                ("container", String::new()),
            ],
            Value::Counter(7.0),
        );
        let n = exp.export(&[f]);
        let datagrams = recv_lines(&rx, n);
        assert_eq!(
            datagrams,
            ["custom.bytes:7|c|#comm:cu_rl_x_y_z,container:,env:prod,team:a_b\n"]
        );
        parse_all(&datagrams);
    }

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

    #[test]
    fn udp_without_server_counts_errors() {
        // A port nobody listens on (bound, then released).
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free port")
            .port();
        let mut exp = StatsdExporter::new(&StatsdConfig {
            address: format!("127.0.0.1:{port}"),
            ..StatsdConfig::default()
        })
        .expect("exporter");
        // The first datagram leaves; the ICMP "port unreachable" it causes
        // fails a later send on the connected socket.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut calls = 0;
        while exp.errors() == 0 && Instant::now() < deadline {
            exp.export(&[gauge("netagent_sockets_open", &[("a", 1.0)])]);
            calls += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(exp.errors() > 0, "no error after {calls} calls");
    }

    fn span(side: SpanSide, local: &str, peer: &str) -> FlowSpan {
        FlowSpan {
            start_unix_nanos: 1_000,
            end_unix_nanos: 1_000 + 2_500_000,
            process: "my,app".into(),
            comm: "app".into(),
            pid: 1,
            container: String::new(),
            proto: "tcp",
            side,
            local: local.parse().expect("addr"),
            peer: peer.parse().expect("addr"),
            socket_id: 7,
        }
    }

    #[test]
    fn spans_become_distributions() {
        let (rx, mut exp) = udp_pair(|cfg| cfg.tags = vec!["env:prod".into()]);
        let spans = [
            span(SpanSide::Client, "10.0.0.1:40000", "10.0.0.2:80"),
            span(
                SpanSide::Server,
                "[::ffff:10.0.0.2]:80",
                "[::ffff:10.0.0.1]:40000",
            ),
            span(SpanSide::Client, "[fd00::1]:40000", "[fd00::2]:443"),
        ];
        let n = exp.observe_spans(&spans);
        assert_eq!(n, 3);
        let lines = parse_all(&recv_lines(&rx, n));
        let tags: Vec<String> = lines.iter().map(|l| l.tags.join(",")).collect();
        assert_eq!(
            tags,
            [
                "process:my_app,proto:tcp,dport:80,dst_ip:10.0.0.2,side:client,env:prod",
                "process:my_app,proto:tcp,dport:80,dst_ip:10.0.0.2,side:server,env:prod",
                "process:my_app,proto:tcp,dport:443,dst_ip:fd00::2,side:client,env:prod",
            ]
        );
        for l in &lines {
            assert_eq!(l.name, "netagent.tx_duration_seconds");
            assert_eq!(l.kind, "d");
            assert!((l.value - 0.0025).abs() < 1e-12);
        }
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos();
            let dir = std::env::temp_dir().join(format!(
                "netagent-statsd-{tag}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn unix_exporter(path: &std::path::Path) -> StatsdExporter {
        StatsdExporter::new(&StatsdConfig {
            address: format!("unix://{}", path.display()),
            ..StatsdConfig::default()
        })
        .expect("exporter")
    }

    #[test]
    fn unix_datagram_socket() {
        let dir = TempDir::new("uds");
        let path = dir.0.join("dsd.socket");
        let rx = UnixDatagram::bind(&path).expect("bind");
        rx.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let mut exp = unix_exporter(&path);

        let n = exp.export(&[
            counter("netagent_connect", &[("curl", 3.0)]),
            gauge("netagent_sockets_open", &[("curl", 1.0)]),
        ]);
        assert_eq!(n, 2);
        let mut buf = [0u8; 2048];
        let len = rx.recv(&mut buf).expect("datagram");
        let text = std::str::from_utf8(&buf[..len]).expect("UTF-8");
        assert_eq!(
            text,
            "netagent.connect:3|c|#comm:curl\nnetagent.sockets_open:1|g|#comm:curl\n"
        );
        assert_eq!(exp.errors(), 0);
    }

    #[test]
    fn unix_socket_missing_or_full_drops_and_counts() {
        let dir = TempDir::new("uds-full");
        let path = dir.0.join("dsd.socket");

        // Nobody listening yet: every line is counted, nothing panics.
        let mut exp = unix_exporter(&path);
        let families = [counter("netagent_connect", &[("a", 1.0), ("b", 2.0)])];
        assert_eq!(exp.export(&families), 0);
        assert_eq!(exp.errors(), 2);

        // A receiver that never reads: its queue fills, sends would block.
        let rx = UnixDatagram::bind(&path).expect("bind");
        let mut big = Family::ad_hoc("netagent_sockets_open", "help", Kind::Gauge);
        for i in 0..20_000u32 {
            big.push(vec![("comm", format!("p{i}"))], Value::Gauge(1.0));
        }
        let before = exp.errors();
        let start = Instant::now();
        let sent = exp.export(std::slice::from_ref(&big));
        assert!(start.elapsed() < Duration::from_secs(5), "export blocked");
        let dropped = exp.errors() - before;
        assert!(dropped > 0, "a full queue drops lines");
        assert!(sent > 0);
        assert_eq!(sent as u64 + dropped, 20_000, "every line sent or counted");
        drop(rx);
    }
}
