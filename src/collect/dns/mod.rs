//! DNS: requests per process and container with the answer's rcode or a
//! timeout, their durations, and the names processes resolved
//! (`dst_name` on edges, bytes and spans).
//!
//! The kernel (bpf/netagent/dns.c) sends every DNS message of a DNS client
//! socket to the `dns_events` ring buffer. A thread of this source drains
//! it and ends timed-out queries every 50 ms; a scrape, and every
//! `dst_name` lookup, drains it first too, so what the kernel saw before
//! the scrape is in it. Parsing (`message`), matching (`tracker`) and the
//! name cache (`names`) are plain data, tested without a kernel.

mod message;
mod names;
mod tracker;

use std::collections::{BTreeMap, HashSet};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::expiry::{LiveOwners, Owner, Quiet};
use super::labels::{format_addr, owner_labels, DstNames};
use super::{Collector, Scrape};
use crate::config::DnsConfig;
use crate::kernel::abi::COMM_LEN;
use crate::kernel::dns::{decode, DnsMaps, LOST_REASONS};
use crate::metrics::{catalog, histogram_family, scalar_family, single, Histogram, Labels};
use message::{qtype_name, rcode_name};
use names::Names;
use tracker::{Limits, Tracker, DURATION_BOUNDS, MALFORMED, TIMEOUT};

/// CLOCK_MONOTONIC in ns: the clock of the kernel's timestamps.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct Inner {
    maps: DnsMaps,
    tracker: Tracker,
    /// `limits.series_ttl_seconds`: when each owner's series last changed.
    quiet: Option<Quiet<Owner>>,
    /// Series of gone owners dropped so far.
    expired: u64,
}

impl Inner {
    /// Takes every record the kernel has written (cheap when there is
    /// none: two reads of the ring's positions).
    fn drain(&mut self) {
        while let Some(item) = self.maps.events.next() {
            match decode(&item) {
                Ok(ev) => self.tracker.on_event(&ev),
                // A kernel/agent mismatch, never expected.
                Err(e) => tracing::warn!(error = %e, "bad DNS record"),
            }
        }
    }

    /// Drains, then ends timed-out queries (a walk over every pending
    /// query: the reader thread's and the scrape's, not every lookup's).
    fn drain_and_expire(&mut self) {
        self.drain();
        self.tracker.expire(monotonic_ns());
    }

    /// Drops the series of owners that are gone and quiet for the TTL.
    fn expire_series(&mut self) {
        let Some(quiet) = self.quiet.as_mut() else {
            return;
        };
        let candidates = quiet.observe(self.tracker.owner_prints(), Instant::now());
        if candidates.is_empty() {
            return;
        }
        let live = LiveOwners::scan(crate::kernel::cgroup::v2_root().as_deref(), &[]);
        let gone: HashSet<Owner> = candidates
            .into_iter()
            .filter(|o| !live.contains(o))
            .collect();
        for o in &gone {
            quiet.forget(o);
        }
        self.expired += self.tracker.forget_owners(|o| gone.contains(o));
    }
}

/// The DNS state, shared by the collector, its reader thread and the
/// labelers (for `dst_name`).
pub struct DnsShared {
    inner: Mutex<Inner>,
    stop: AtomicBool,
}

impl DnsShared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl DstNames for DnsShared {
    fn dst_name(
        &self,
        comm: &[u8; COMM_LEN],
        cgroup_id: u64,
        in_container: bool,
        addr: &[u8; 16],
    ) -> Option<Arc<str>> {
        let mut inner = self.lock();
        inner.drain();
        inner
            .tracker
            .names
            .lookup(comm, cgroup_id, in_container, addr, monotonic_ns())
    }

    fn forget(&self, comm: &[u8; COMM_LEN], cgroup_id: u64, addr: &[u8; 16]) {
        self.lock().tracker.names.forget(comm, cgroup_id, addr);
    }
}

/// The DNS source.
pub struct DnsSource {
    shared: Arc<DnsShared>,
}

impl DnsSource {
    /// Starts the reader thread on the kernel's DNS maps.
    /// `ttl`: the series of a gone owner unchanged this long are dropped.
    pub fn start(
        maps: DnsMaps,
        cfg: &DnsConfig,
        max_series: u32,
        max_per_metric: u32,
        ttl: Option<Duration>,
    ) -> Self {
        let limits = Limits {
            timeout_ns: (cfg.timeout_seconds.value * 1e9) as u64,
            max_pending: cfg.max_pending.value as usize,
            max_series: max_series as usize,
            domains: if cfg.domain_label {
                max_per_metric as usize
            } else {
                0
            },
        };
        let names = Names::new(cfg.max_names.value as usize, cfg.min_ttl_seconds.value);
        let shared = Arc::new(DnsShared {
            inner: Mutex::new(Inner {
                maps,
                tracker: Tracker::new(limits, names),
                quiet: ttl.map(Quiet::new),
                expired: 0,
            }),
            stop: AtomicBool::new(false),
        });
        let reader = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("netagent-dns".into())
            .spawn(move || read_loop(&reader));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the DNS reader; DNS is read at scrapes only");
        }
        Self { shared }
    }

    /// For `dst_name` lookups.
    pub fn names(&self) -> Arc<DnsShared> {
        self.shared.clone()
    }
}

/// Waits for records (or 50 ms: the kernel wakes this thread only once its
/// ring is a quarter full), drains, until stopped.
fn read_loop(shared: &DnsShared) {
    let fd = shared.lock().maps.events.as_fd().as_raw_fd();
    while !shared.stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the ring buffer (and its fd) lives in
        // `shared`, which this thread holds.
        let n = unsafe { libc::poll(&mut pfd, 1, 50) };
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            tracing::warn!("poll on the DNS ring buffer failed; DNS is read at scrapes only");
            return;
        }
        shared.lock().drain_and_expire();
    }
}

impl Collector for DnsSource {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn collect(&self, scrape: &mut Scrape<'_, '_>) -> anyhow::Result<()> {
        let mut inner = self.shared.lock();
        inner.drain_and_expire();
        inner.expire_series();
        scrape.expired.push(("dns", inner.expired));
        let t = &inner.tracker;
        let labeler = &mut *scrape.labeler;
        let mut owners: BTreeMap<([u8; COMM_LEN], u64), Option<Labels>> = BTreeMap::new();
        let mut owner = |comm: &[u8; COMM_LEN], cgroup_id: u64| {
            owners
                .entry((*comm, cgroup_id))
                .or_insert_with(|| {
                    let process = labeler.process(comm)?;
                    Some(owner_labels(process, &labeler.identity(cgroup_id)))
                })
                .clone()
        };
        let mut requests: BTreeMap<Labels, f64> = BTreeMap::new();
        for (k, n) in &t.requests {
            let Some(mut labels) = owner(&k.comm, k.cgroup_id) else {
                continue;
            };
            let rcode = if k.rcode == TIMEOUT {
                "timeout".into()
            } else {
                rcode_name(k.rcode as u8)
            };
            labels.extend([
                ("server", format_addr(k.server)),
                ("qtype", qtype_name(k.qtype).into_owned()),
                ("rcode", rcode.into_owned()),
                ("domain", k.domain.to_string()),
            ]);
            *requests.entry(labels).or_default() += *n as f64;
        }
        let mut durations: BTreeMap<Labels, Histogram> = BTreeMap::new();
        for (k, d) in &t.durations {
            let Some(mut labels) = owner(&k.comm, k.cgroup_id) else {
                continue;
            };
            labels.extend([
                ("qtype", qtype_name(k.qtype).into_owned()),
                ("domain", k.domain.to_string()),
            ]);
            let h = durations.entry(labels).or_insert_with(|| Histogram {
                bounds: DURATION_BOUNDS,
                buckets: vec![0; DURATION_BOUNDS.len() + 1],
                sum: 0.0,
            });
            for (a, b) in h.buckets.iter_mut().zip(&d.buckets) {
                *a += b;
            }
            h.sum += d.sum;
        }
        let malformed = MALFORMED
            .iter()
            .zip(t.malformed)
            .map(|(r, n)| (vec![("reason", r.to_string())], n as f64))
            .collect();
        let full = [
            ("pending", t.pending_full),
            ("names", t.names.full),
            ("series", t.series_full),
        ]
        .into_iter()
        .map(|(table, n)| (vec![("table", table.to_string())], n as f64))
        .collect();
        scrape.families.extend([
            scalar_family(&catalog::DNS_REQUESTS, requests),
            histogram_family(&catalog::DNS_REQUEST_DURATION_SECONDS, durations),
            scalar_family(&catalog::DNS_MALFORMED, malformed),
            single(&catalog::DNS_UNMATCHED_ANSWERS, t.unmatched as f64),
            scalar_family(&catalog::DNS_TABLE_FULL, full),
        ]);
        let lost = inner.maps.lost();
        scrape.lost.extend(LOST_REASONS.iter().copied().zip(lost));
        Ok(())
    }

    fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}
