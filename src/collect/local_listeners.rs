//! Destinations that are processes on this host: an outbound flow to
//! `addr:port` reached a tracked process when a listener of that port (the
//! kernel's `listeners` map, every network namespace) accepts `addr` — the
//! address is one of its namespace's own (or loopback, in the caller's
//! namespace) and the listener is bound to it or to the wildcard. Used by
//! the service map to name such a destination instead of showing its IP;
//! never on the per-event path. A namespace's addresses are read from
//! `/proc/<pid>/net/fib_trie` and `if_inet6` of a process inside it.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::connections::Resolved;
use super::containers::Identity;
use super::labels::{KeyLabels, Labeler};
use crate::kernel::abi::{ListenKey, Listener};

/// A namespace's addresses are read again after this long.
const ADDRS_TTL: Duration = Duration::from_secs(10);

/// A tracked listener as a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalService {
    /// The listener's `process` label and container.
    pub process: String,
    pub identity: Arc<Identity>,
}

/// The local destination of each outbound flow of a [`Resolved`] (same
/// index; None: not a tracked listener on this host, or not sure which),
/// and this host's addresses that were seen (loopback not included).
#[derive(Debug, Default)]
pub struct LocalTargets {
    pub flows: Vec<Option<Arc<LocalService>>>,
    pub hists: Vec<Option<Arc<LocalService>>>,
    pub addrs: HashSet<IpAddr>,
}

impl LocalTargets {
    /// Whether `ip` is an address of this host (of any namespace seen).
    pub fn is_local(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.addrs.contains(&ip)
    }
}

/// Addresses per network namespace (inode), read now and then.
#[derive(Debug, Default)]
pub struct NetnsAddrs {
    by_netns: HashMap<u32, (Instant, Arc<HashSet<IpAddr>>)>,
}

impl NetnsAddrs {
    /// The addresses of `netns`, read through `pid` (which must be in it);
    /// None when `pid` is gone or elsewhere.
    fn get(&mut self, netns: u32, pid: u32) -> Option<Arc<HashSet<IpAddr>>> {
        if let Some((at, a)) = self.by_netns.get(&netns) {
            if at.elapsed() < ADDRS_TTL {
                return Some(a.clone());
            }
        }
        if netns_of(pid)? != netns {
            return None;
        }
        let fib = std::fs::read_to_string(format!("/proc/{pid}/net/fib_trie")).unwrap_or_default();
        let v6 = std::fs::read_to_string(format!("/proc/{pid}/net/if_inet6")).unwrap_or_default();
        let mut addrs = local_v4(&fib);
        addrs.extend(local_v6(&v6));
        let addrs = Arc::new(addrs);
        self.by_netns.insert(netns, (Instant::now(), addrs.clone()));
        Some(addrs)
    }

    /// Forgets namespaces not asked about for a while (bounded by the
    /// namespaces of tracked listeners and callers).
    fn expire(&mut self) {
        self.by_netns
            .retain(|_, (at, _)| at.elapsed() < ADDRS_TTL * 6);
    }
}

/// The network namespace (inode) of a process.
pub fn netns_of(pid: u32) -> Option<u32> {
    let meta = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?;
    u32::try_from(meta.ino()).ok()
}

/// `/32 host LOCAL` entries of a fib_trie (the namespace's own IPv4
/// addresses; loopback's are left out).
fn local_v4(fib_trie: &str) -> HashSet<IpAddr> {
    let mut out = HashSet::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let t = line.trim();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.parse().ok();
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last.filter(|a| !a.is_loopback()) {
                out.insert(IpAddr::V4(a));
            }
        }
    }
    out
}

/// Addresses of `if_inet6` (`<32 hex> <ifindex> <plen> <scope> <flags> <name>`),
/// loopback left out.
fn local_v6(if_inet6: &str) -> HashSet<IpAddr> {
    if_inet6
        .lines()
        .filter_map(|l| u128::from_str_radix(l.split_whitespace().next()?, 16).ok())
        .map(Ipv6Addr::from)
        .filter(|a| !a.is_loopback())
        .map(IpAddr::V6)
        .collect()
}

fn ip(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// One tracked listener, with what decides which destinations it takes.
struct Candidate {
    netns: u32,
    /// Bound address; unspecified = every address of its namespace.
    bound: IpAddr,
    addrs: Option<Arc<HashSet<IpAddr>>>,
    service: Arc<LocalService>,
}

impl Candidate {
    /// Whether a connection to `dst` from namespace `from` reaches it.
    fn takes(&self, dst: IpAddr, from: Option<u32>) -> bool {
        let bound_ok = match self.bound {
            // `[::]` takes IPv4 too (unless IPV6_V6ONLY, not visible here).
            IpAddr::V6(b) if b.is_unspecified() => true,
            IpAddr::V4(b) if b.is_unspecified() => dst.is_ipv4(),
            b => b == dst,
        };
        if !bound_ok {
            return false;
        }
        if dst.is_loopback() {
            return from.is_none_or(|f| f == self.netns);
        }
        self.addrs.as_ref().is_some_and(|a| a.contains(&dst))
    }
}

/// Finds the local destination of every outbound flow of `r`.
pub fn resolve(
    r: &Resolved,
    listeners: &[(ListenKey, Listener)],
    labeler: &mut Labeler,
    cache: &mut NetnsAddrs,
) -> LocalTargets {
    let mut by_port: HashMap<u16, Vec<Candidate>> = HashMap::new();
    let mut out = LocalTargets::default();
    for (k, l) in listeners {
        let Some(process) = labeler.process(&l.comm) else {
            continue;
        };
        let addrs = cache.get(k.netns, l.pid);
        if let Some(a) = &addrs {
            out.addrs.extend(a.iter().copied());
        }
        by_port.entry(k.port).or_default().push(Candidate {
            netns: k.netns,
            bound: ip(l.addr),
            addrs,
            service: Arc::new(LocalService {
                process,
                identity: labeler.identity(l.cgroup_id),
            }),
        });
    }
    // The caller's namespace, looked up only when it decides something.
    let mut netns_of_cgroup: HashMap<u64, Option<u32>> = HashMap::new();
    let mut seen = HashSet::new();
    let mut find = |l: &KeyLabels| {
        if l.direction != "outbound" {
            return None;
        }
        // Behind a translation (a Service's ClusterIP) the listener is at
        // the address the packets really reached.
        let (port, ip) = if l.actual_dport.is_empty() {
            (&l.dport, &l.dst_ip)
        } else {
            (&l.actual_dport, &l.actual_dst_ip)
        };
        let (Ok(port), Ok(dst)) = (port.parse::<u16>(), ip.parse::<IpAddr>()) else {
            return None;
        };
        let candidates = by_port.get(&port)?;
        let from = *netns_of_cgroup.entry(l.cgroup_id).or_insert_with(|| {
            let pid = labeler.a_pid(l.cgroup_id)?;
            let netns = netns_of(pid)?;
            if let Some(a) = cache.get(netns, pid) {
                seen.extend(a.iter().copied());
            }
            Some(netns)
        });
        let taking: Vec<&Candidate> = candidates.iter().filter(|c| c.takes(dst, from)).collect();
        match taking.as_slice() {
            [one] => Some(one.service.clone()),
            _ => None, // none, or several namespaces and no way to tell
        }
    };
    let flows = r.flows.iter().map(|(l, _)| find(l)).collect();
    let hists = r.hists.iter().map(|(l, _, _)| find(l)).collect();
    out.flows = flows;
    out.hists = hists;
    out.addrs.extend(seen);
    cache.expire();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fib_trie_local_addresses() {
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n\
                   \x20    +-- 127.0.0.0/8 2 0 2\n           |-- 127.0.0.1\n              /32 host LOCAL\n\
                   \x20       |-- 10.204.240.2\n              /32 host LOCAL\n\
                   \x20       |-- 10.204.240.255\n           /32 link BROADCAST\n\
                   \x20          |-- 10.204.240.0\n              /24 link UNICAST\n";
        let got = local_v4(fib);
        assert_eq!(
            got,
            HashSet::from(["10.204.240.2".parse::<IpAddr>().unwrap()])
        );
        let v6 = "00000000000000000000000000000001 01 80 10 80       lo\n\
                  fd000203000000000000000000000002 04 40 00 82     eth0\n";
        assert_eq!(
            local_v6(v6),
            HashSet::from(["fd00:203::2".parse::<IpAddr>().unwrap()])
        );
    }

    fn candidate(netns: u32, bound: &str, addrs: &[&str]) -> Candidate {
        Candidate {
            netns,
            bound: bound.parse().unwrap(),
            addrs: Some(Arc::new(addrs.iter().map(|a| a.parse().unwrap()).collect())),
            service: Arc::new(LocalService {
                process: "websrv".into(),
                identity: Arc::default(),
            }),
        }
    }

    #[test]
    fn a_listener_takes_its_namespace_addresses_and_loopback_from_inside() {
        let any = candidate(7, "::", &["10.204.240.3"]);
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(
            any.takes(v4("10.204.240.3"), Some(1)),
            "from another namespace"
        );
        assert!(!any.takes(v4("10.204.240.4"), Some(1)));
        assert!(any.takes(v4("127.0.0.1"), Some(7)), "loopback from inside");
        assert!(
            !any.takes(v4("127.0.0.1"), Some(1)),
            "loopback from elsewhere"
        );
        assert!(
            any.takes(v4("127.0.0.1"), None),
            "caller's namespace unknown"
        );
        let lo = candidate(7, "127.0.0.1", &["10.204.240.3"]);
        assert!(
            !lo.takes(v4("10.204.240.3"), Some(7)),
            "bound to loopback only"
        );
        let v4only = candidate(7, "0.0.0.0", &["fd00:203::3"]);
        assert!(!v4only.takes(v4("fd00:203::3"), Some(7)));
    }

    use crate::collect::connections::Resolved;
    use crate::collect::labels::{HostOnly, ProcessNames};
    use crate::kernel::abi::{comm_bytes, FlowStats};

    fn outbound(ip: &str, port: u16) -> KeyLabels {
        KeyLabels {
            process: "frontend".into(),
            identity: Arc::default(),
            cgroup_id: 0,
            proto: "tcp",
            dport: port.to_string(),
            dst_ip: ip.into(),
            actual_dst_ip: String::new(),
            actual_dport: String::new(),
            direction: "outbound",
            dst_name: String::new(),
        }
    }

    #[test]
    fn a_listener_in_this_namespace_is_found_by_address_and_port() {
        let netns = netns_of(std::process::id()).expect("own netns");
        let key = |port| ListenKey {
            netns,
            port,
            _pad: 0,
        };
        let listener = |addr: [u8; 16]| Listener {
            comm: comm_bytes("websrv"),
            addr,
            cgroup_id: 0,
            pid: std::process::id(),
            _pad: 0,
        };
        let wildcard = [0u8; 16];
        let lo = std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets();
        let listeners = [(key(18901), listener(wildcard)), (key(18902), listener(lo))];
        // This namespace's own address, when it has one besides loopback.
        let fib = std::fs::read_to_string("/proc/self/net/fib_trie").unwrap_or_default();
        let own = local_v4(&fib).into_iter().next();
        let s = FlowStats::default();
        let mut flows = vec![
            (outbound("127.0.0.1", 18901), &s),
            (outbound("127.0.0.1", 18902), &s),
            (outbound("192.0.2.250", 18901), &s),
            (outbound("127.0.0.1", 18903), &s),
        ];
        let own_text = own.map(|a| a.to_string());
        if let Some(a) = &own_text {
            flows.push((outbound(a, 18901), &s));
            flows.push((outbound(a, 18902), &s));
        }
        let r = Resolved {
            flows,
            hists: vec![],
        };
        let names = ProcessNames::by_comm();
        let mut host = HostOnly;
        let mut labeler = Labeler::new(&names, &mut host);
        let got = resolve(&r, &listeners, &mut labeler, &mut NetnsAddrs::default());
        let found: Vec<Option<&str>> = got
            .flows
            .iter()
            .map(|t| t.as_ref().map(|t| t.process.as_str()))
            .collect();
        let mut want = vec![Some("websrv"), Some("websrv"), None, None];
        if let Some(own) = own {
            want.extend([Some("websrv"), None]);
            assert!(got.is_local(own));
        }
        assert_eq!(found, want);
        assert!(got.is_local("127.0.0.1".parse().unwrap()));
        assert!(!got.is_local("192.0.2.250".parse().unwrap()));
    }
}
