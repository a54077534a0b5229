//! Queries and their answers: each query a socket sends waits in a bounded
//! table under (socket cookie, transaction id, protocol, both ends); an
//! answer to the same socket from the same server with the same id and
//! question ends it with its rcode and duration, `dns.timeout_seconds`
//! without one ends it as `timeout`. Counts and durations are kept per
//! raw owner (comm, cgroup) and labelled at scrape time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::message::{addresses_of, parse, Malformed, Message};
use super::names::Names;
use crate::collect::expiry::{owner, Owner};
use crate::kernel::abi::COMM_LEN;
use crate::kernel::dns::{DnsEvent, EGRESS};

/// `rcode` value of a request that was never answered.
pub const TIMEOUT: u16 = u16::MAX;

/// Upper bounds of the duration histogram, in seconds.
pub const DURATION_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `netagent_dns_malformed_total{reason}`, by index.
pub const MALFORMED: [&str; 3] = ["short", "question", "answers"];

/// What the tracker is configured with.
#[derive(Debug, Clone)]
pub struct Limits {
    pub timeout_ns: u64,
    pub max_pending: usize,
    /// Request and duration series kept.
    pub max_series: usize,
    /// Distinct `domain` values before `~other`; 0 = no domain label.
    pub domains: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PendingKey {
    cookie: u64,
    id: u16,
    proto: u8,
    laddr: [u8; 16],
    lport: u16,
    raddr: [u8; 16],
    rport: u16,
}

#[derive(Debug, Clone)]
struct Pending {
    ts_ns: u64,
    comm: [u8; COMM_LEN],
    cgroup_id: u64,
    qtype: u16,
    qname: Arc<str>,
}

/// A request series before labelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestKey {
    pub comm: [u8; COMM_LEN],
    pub cgroup_id: u64,
    pub server: [u8; 16],
    pub qtype: u16,
    /// The header's RCODE, or [`TIMEOUT`].
    pub rcode: u16,
    /// Empty without `dns.domain_label`.
    pub domain: Arc<str>,
}

/// A duration series before labelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DurationKey {
    pub comm: [u8; COMM_LEN],
    pub cgroup_id: u64,
    pub qtype: u16,
    pub domain: Arc<str>,
}

/// Non-cumulative buckets (the last is +Inf) and the sum in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Durations {
    pub buckets: Vec<u64>,
    pub sum: f64,
}

/// Every count the DNS source exports.
#[derive(Debug)]
pub struct Tracker {
    limits: Limits,
    pending: HashMap<PendingKey, Pending>,
    pub requests: HashMap<RequestKey, u64>,
    pub durations: HashMap<DurationKey, Durations>,
    pub names: Names,
    domains: HashMap<Arc<str>, ()>,
    pub malformed: [u64; MALFORMED.len()],
    pub unmatched: u64,
    pub pending_full: u64,
    pub series_full: u64,
}

fn other() -> Arc<str> {
    Arc::from(crate::metrics::OTHER)
}

impl Tracker {
    pub fn new(limits: Limits, names: Names) -> Self {
        Self {
            limits,
            pending: HashMap::new(),
            requests: HashMap::new(),
            durations: HashMap::new(),
            names,
            domains: HashMap::new(),
            malformed: [0; MALFORMED.len()],
            unmatched: 0,
            pending_full: 0,
            series_full: 0,
        }
    }

    /// Queries waiting for an answer.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// One message from the kernel.
    pub fn on_event(&mut self, ev: &DnsEvent) {
        let msg = match parse(ev.message()) {
            Ok(m) => m,
            Err(Malformed::Short) => return self.malformed[0] += 1,
            Err(Malformed::Question) => return self.malformed[1] += 1,
        };
        if msg.answers_cut {
            self.malformed[2] += 1;
        }
        if msg.opcode != 0 {
            return; // NOTIFY, UPDATE, …: not lookups
        }
        let key = PendingKey {
            cookie: ev.sock_cookie,
            id: msg.id,
            proto: ev.proto,
            laddr: ev.laddr,
            lport: ev.lport,
            raddr: ev.raddr,
            rport: ev.rport,
        };
        if ev.direction == EGRESS {
            if !msg.response {
                self.on_query(ev, key, &msg);
            }
        } else if msg.response {
            self.on_answer(ev, key, &msg);
        }
    }

    fn on_query(&mut self, ev: &DnsEvent, key: PendingKey, msg: &Message) {
        let Some(q) = &msg.question else {
            return;
        };
        let p = Pending {
            ts_ns: ev.ts_ns,
            comm: ev.comm,
            cgroup_id: ev.cgroup_id,
            qtype: q.qtype,
            qname: Arc::from(q.name.as_str()),
        };
        // The same query again before its answer: the client gave up on
        // the first (a retry), which is then a timeout.
        if let Some(old) = self.pending.remove(&key) {
            self.count(&old, key.raddr, TIMEOUT);
        } else if self.pending.len() >= self.limits.max_pending {
            self.pending_full += 1;
            return;
        }
        self.pending.insert(key, p);
    }

    fn on_answer(&mut self, ev: &DnsEvent, key: PendingKey, msg: &Message) {
        let matches = |p: &Pending| {
            msg.question
                .as_ref()
                .is_none_or(|q| q.qtype == p.qtype && *q.name == *p.qname)
        };
        let Some(p) = self.pending.get(&key).filter(|p| matches(p)).cloned() else {
            self.unmatched += 1;
            return;
        };
        self.pending.remove(&key);
        self.count(&p, key.raddr, u16::from(msg.rcode));
        let domain = self.domain(&p.qname);
        let dk = DurationKey {
            comm: p.comm,
            cgroup_id: p.cgroup_id,
            qtype: p.qtype,
            domain,
        };
        let secs = ev.ts_ns.saturating_sub(p.ts_ns) as f64 / 1e9;
        if let Some(d) = self.series(dk) {
            let i = DURATION_BOUNDS
                .iter()
                .position(|b| secs <= *b)
                .unwrap_or(DURATION_BOUNDS.len());
            d.buckets[i] += 1;
            d.sum += secs;
        }
        if msg.rcode == 0 {
            for (addr, ttl) in addresses_of(&p.qname, &msg.answers) {
                let mapped = match addr {
                    IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                    IpAddr::V6(a) => a.octets(),
                };
                self.names
                    .insert(&p.comm, p.cgroup_id, mapped, &p.qname, ttl, ev.ts_ns);
            }
        }
    }

    /// The duration series of `k`, created if there is room.
    fn series(&mut self, k: DurationKey) -> Option<&mut Durations> {
        if !self.durations.contains_key(&k) && self.durations.len() >= self.limits.max_series {
            self.series_full += 1;
            return None;
        }
        Some(self.durations.entry(k).or_insert_with(|| Durations {
            buckets: vec![0; DURATION_BOUNDS.len() + 1],
            sum: 0.0,
        }))
    }

    fn count(&mut self, p: &Pending, server: [u8; 16], rcode: u16) {
        let k = RequestKey {
            comm: p.comm,
            cgroup_id: p.cgroup_id,
            server,
            qtype: p.qtype,
            rcode,
            domain: self.domain(&p.qname),
        };
        if !self.requests.contains_key(&k) && self.requests.len() >= self.limits.max_series {
            self.series_full += 1;
            return;
        }
        *self.requests.entry(k).or_insert(0) += 1;
    }

    /// The `domain` label of a queried name: empty without the option,
    /// `~other` past the cap (names admitted once stay admitted).
    fn domain(&mut self, name: &Arc<str>) -> Arc<str> {
        if self.limits.domains == 0 {
            return Arc::from("");
        }
        if let Some((k, _)) = self.domains.get_key_value(name) {
            return k.clone();
        }
        if self.domains.len() < self.limits.domains {
            self.domains.insert(name.clone(), ());
            return name.clone();
        }
        other()
    }

    /// Per owner (comm, cgroup): a fingerprint of its request and duration
    /// series, which changes with any count (series expiry).
    pub fn owner_prints(&self) -> HashMap<Owner, u64> {
        let mut prints: HashMap<Owner, u64> = HashMap::new();
        for (k, n) in &self.requests {
            let p = prints.entry(owner(&k.comm, k.cgroup_id)).or_default();
            *p = p.wrapping_add(*n);
        }
        for (k, d) in &self.durations {
            let p = prints.entry(owner(&k.comm, k.cgroup_id)).or_default();
            *p = p.wrapping_add(d.buckets.iter().sum::<u64>());
        }
        prints
    }

    /// Drops every series of the owners `gone` picks; returns how many.
    pub fn forget_owners(&mut self, gone: impl Fn(&Owner) -> bool) -> u64 {
        let before = self.requests.len() + self.durations.len();
        self.requests
            .retain(|k, _| !gone(&owner(&k.comm, k.cgroup_id)));
        self.durations
            .retain(|k, _| !gone(&owner(&k.comm, k.cgroup_id)));
        (before - self.requests.len() - self.durations.len()) as u64
    }

    /// Ends the queries older than the timeout at `now_ns` as `timeout`.
    pub fn expire(&mut self, now_ns: u64) {
        let timeout = self.limits.timeout_ns;
        let expired: Vec<PendingKey> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ns.saturating_sub(p.ts_ns) >= timeout)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(p) = self.pending.remove(&k) {
                self.count(&p, k.raddr, TIMEOUT);
            }
        }
    }
}

#[cfg(test)]
mod tests;
