//! DogStatsD: a strict line parser and a UDP listener on 127.0.0.1 whose
//! datagrams a background thread collects.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub struct StatsdLine {
    pub name: String,
    pub value: f64,
    /// "c", "g", "d", "h", "ms" or "s".
    pub kind: String,
    pub sample_rate: Option<f64>,
    /// In line order; a tag without ':' has value "".
    pub tags: Vec<(String, String)>,
}

impl StatsdLine {
    /// Value of the first tag with this key.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses one DogStatsD metric line strictly:
/// `<name>:<value>[:<value>...]|<type>[|@<rate>][|#<tag>[,<tag>...]][|c:<container>][|T<unix ts>]`.
/// Several values (protocol v1.1) give several `StatsdLine`s. Names must
/// follow Datadog's rule (ASCII letter first, then letters, digits, '_' and
/// '.', at most 200 chars); values must be finite numbers; rates in (0, 1];
/// tags non-empty with no whitespace and a non-empty key; each optional field
/// at most once.
pub fn parse_statsd_line(line: &str) -> Result<Vec<StatsdLine>, String> {
    let mut fields = line.split('|');
    let head = fields.next().unwrap_or("");
    let (name, values) = head
        .split_once(':')
        .ok_or_else(|| "no ':' between name and value".to_string())?;
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "metric name {name:?} must start with an ASCII letter"
        ));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') || name.len() > 200 {
        return Err(format!(
            "metric name {name:?}: only ASCII letters, digits, '_' and '.', at most 200"
        ));
    }
    let kind = fields.next().ok_or("no '|<type>'")?;
    if !["c", "g", "d", "h", "ms", "s"].contains(&kind) {
        return Err(format!("unknown metric type {kind:?}"));
    }
    let mut parsed = Vec::new();
    for v in values.split(':') {
        let x: f64 = v
            .parse()
            .map_err(|_| format!("value {v:?} is not a number"))?;
        if !x.is_finite() {
            return Err(format!("value {v:?} is not a finite number"));
        }
        parsed.push(x);
    }
    let (mut rate, mut tags, mut container, mut ts) = (None, None, false, false);
    for f in fields {
        if let Some(r) = f.strip_prefix('@') {
            let r: f64 = r
                .parse()
                .map_err(|_| format!("sample rate {f:?} is not a number"))?;
            if !(r > 0.0 && r <= 1.0) || rate.replace(r).is_some() {
                return Err(format!("bad or repeated sample rate {f:?}"));
            }
        } else if let Some(t) = f.strip_prefix('#') {
            let mut list = Vec::new();
            for tag in t.split(',') {
                if tag.is_empty() || tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(format!("bad tag {tag:?} in {f:?}"));
                }
                let (k, v) = tag.split_once(':').unwrap_or((tag, ""));
                if k.is_empty() {
                    return Err(format!("tag {tag:?} has an empty key"));
                }
                list.push((k.to_string(), v.to_string()));
            }
            if tags.replace(list).is_some() {
                return Err("repeated '|#' tags field".into());
            }
        } else if let Some(c) = f.strip_prefix("c:") {
            if c.is_empty() || std::mem::replace(&mut container, true) {
                return Err(format!("bad or repeated container field {f:?}"));
            }
        } else if let Some(t) = f.strip_prefix('T') {
            if t.is_empty()
                || !t.bytes().all(|b| b.is_ascii_digit())
                || std::mem::replace(&mut ts, true)
            {
                return Err(format!("bad or repeated timestamp field {f:?}"));
            }
        } else {
            return Err(format!("unknown field {f:?}"));
        }
    }
    let tags = tags.unwrap_or_default();
    Ok(parsed
        .into_iter()
        .map(|value| StatsdLine {
            name: name.to_string(),
            value,
            kind: kind.to_string(),
            sample_rate: rate,
            tags: tags.clone(),
        })
        .collect())
}

/// Parses one datagram: newline-separated lines, an optional final newline.
/// Panics with the offending line on anything malformed.
pub fn parse_statsd_datagram(datagram: &str) -> Vec<StatsdLine> {
    let body = datagram.strip_suffix('\n').unwrap_or(datagram);
    let mut out = Vec::new();
    for line in body.split('\n') {
        match parse_statsd_line(line) {
            Ok(l) => out.extend(l),
            Err(e) => panic!("malformed DogStatsD line {line:?} ({e}) in datagram {datagram:?}"),
        }
    }
    out
}

/// A DogStatsD listener: a UDP socket on 127.0.0.1 whose datagrams a
/// background thread collects (polling with a short timeout, so the thread
/// ends promptly on drop). Parsing happens in the caller's thread, so a
/// malformed line panics the test.
pub struct StatsdListener {
    addr: SocketAddr,
    datagrams: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatsdListener {
    pub fn new() -> StatsdListener {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind statsd listener");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        // A bigger receive buffer (capped by net.core.rmem_max) so a burst
        // from the agent is not dropped by the kernel before we read it.
        {
            use std::os::fd::AsRawFd;
            let size: libc::c_int = 8 << 20;
            // SAFETY: setsockopt on our own socket with a valid int option.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    &size as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        let addr = sock.local_addr().unwrap();
        let datagrams = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (datagrams.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("statsd-{}", addr.port()))
            .spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !s.load(Ordering::Relaxed) {
                    match sock.recv(&mut buf) {
                        Ok(n) => d
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(buf[..n].to_vec()),
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock
                                    | std::io::ErrorKind::TimedOut
                                    | std::io::ErrorKind::Interrupted
                            ) => {}
                        Err(e) => {
                            eprintln!("[statsd listener] recv: {e}");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })
            .expect("spawn statsd thread");
        StatsdListener {
            addr,
            datagrams,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Raw datagrams so far, in arrival order (to check sizes and framing).
    /// Panics on a datagram that is not UTF-8.
    pub fn raw(&self) -> Vec<String> {
        self.datagrams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|d| {
                String::from_utf8(d.clone())
                    .unwrap_or_else(|_| panic!("DogStatsD datagram is not UTF-8: {d:?}"))
            })
            .collect()
    }

    /// Every line received so far, parsed; panics on a malformed one.
    pub fn lines(&self) -> Vec<StatsdLine> {
        self.raw()
            .iter()
            .flat_map(|d| parse_statsd_datagram(d))
            .collect()
    }

    /// Forgets every datagram received so far.
    pub fn clear(&self) {
        self.datagrams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Polls until `cond` holds or `timeout` passes; returns the last parse
    /// either way.
    pub fn wait_for(
        &self,
        timeout: Duration,
        cond: impl Fn(&[StatsdLine]) -> bool,
    ) -> Vec<StatsdLine> {
        let deadline = Instant::now() + timeout;
        loop {
            let l = self.lines();
            if cond(&l) || Instant::now() >= deadline {
                return l;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Default for StatsdListener {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for StatsdListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
